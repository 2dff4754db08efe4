//! The consumer that tells the [`DeploymentHub`] when a deployment ended (`deployment_success` /
//! `deployment_failed`, by the event's `id`), for every account of the cluster: a deployment id is
//! unique in the cluster, so whichever account's operation waits for it is woken.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{ClusterId, EventConsumer, MarathonEvent};
use crate::deployments::{DeploymentEnd, DeploymentHub};

/// Feeds deployment ends from the event stream into the hub.
pub struct DeploymentEnds {
    hub: Arc<DeploymentHub>,
    accounts: HashMap<ClusterId, Vec<String>>,
}

#[derive(Deserialize)]
struct End {
    id: String,
    #[serde(default)]
    reason: Option<String>,
}

impl DeploymentEnds {
    /// `accounts`: the account names of each cluster.
    pub fn new(hub: Arc<DeploymentHub>, accounts: HashMap<ClusterId, Vec<String>>) -> Self {
        DeploymentEnds { hub, accounts }
    }
}

impl EventConsumer for DeploymentEnds {
    fn attached(&self, _cluster: &ClusterId) {}

    fn event(&self, cluster: &ClusterId, event: &Arc<MarathonEvent>) {
        let succeeded = match event.event_type.as_str() {
            "deployment_success" => true,
            "deployment_failed" => false,
            _ => return,
        };
        let end: End = match serde_json::from_slice(&event.data) {
            Ok(end) => end,
            Err(error) => {
                tracing::warn!(%error, event_type = %event.event_type, "deployment end without an id");
                return;
            }
        };
        let how = if succeeded {
            DeploymentEnd::Succeeded
        } else {
            DeploymentEnd::Failed { reason: end.reason }
        };
        for account in self.accounts.get(cluster).into_iter().flatten() {
            self.hub.finished(account, &end.id, how.clone());
        }
    }

    fn lost(&self, _cluster: &ClusterId) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_reach_every_account_of_the_cluster() {
        let hub = Arc::new(DeploymentHub::new());
        let cluster = ClusterId("http://m".into());
        let feed = DeploymentEnds::new(
            hub.clone(),
            HashMap::from([(cluster.clone(), vec!["prod".to_string(), "dev".to_string()])]),
        );
        let event = |t: &str, data: &'static str| {
            Arc::new(MarathonEvent {
                event_type: t.into(),
                data: bytes::Bytes::from_static(data.as_bytes()),
            })
        };
        feed.event(
            &cluster,
            &event(
                "deployment_failed",
                r#"{"id":"d1","reason":"boom","plan":{}}"#,
            ),
        );
        feed.event(&cluster, &event("deployment_success", r#"{"id":"d2"}"#));
        feed.event(&cluster, &event("deployment_info", r#"{"id":"d3"}"#));
        assert_eq!(
            *hub.wait("dev", "d1").borrow(),
            Some(DeploymentEnd::Failed {
                reason: Some("boom".into())
            })
        );
        assert_eq!(
            *hub.wait("prod", "d2").borrow(),
            Some(DeploymentEnd::Succeeded)
        );
        assert_eq!(*hub.wait("prod", "d3").borrow(), None);
    }
}
