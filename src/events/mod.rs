//! The event side: Marathon's SSE stream read per DC/OS cluster, every event republished onto NATS, and
//! handed to the consumers that derive state from it (discovery, the deployment hub).
//!
//! This file holds the seam between the reader and its consumers; the reader and the publisher live in
//! submodules.
//!
//! # Layout
//! - [`reader`]: the connection state machine of one cluster (connect, 302 with the token, URL rotation,
//!   idle deadline, backoff), handing events to the consumers and, through a bounded buffer, to the
//!   publisher. [`spawn_readers`] starts one per cluster.
//! - [`endpoint`]: where each connection attempt gets its URL, token and HTTP client (the DC/OS client).
//! - [`sse`]: framing glue on the `sse-stream` crate (why that crate: see there), the idle deadline on the
//!   byte chunks, several JSON objects on one `data:` line split.
//! - [`publisher`]: deterministic `Nats-Msg-Id`, pipelined acks into `DCOS_EVENTS`, truncation markers.
//! - [`route`]: which accounts an event goes to (the root group holding its app), with which app id.
//! - [`backoff`]: jittered exponential reconnect delays that start over after a healthy connection.
//! - [`state`]: what a reader shows: its phase (readiness) and counters (metrics).
//! - [`hub`]: the consumer that feeds deployment ends into the [`DeploymentHub`].

pub mod backoff;
pub mod endpoint;
pub mod hub;
pub mod publisher;
pub mod reader;
pub mod route;
pub mod sse;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::{AccountConfig, Config};
use crate::dcos::DcosClient;
use crate::deployments::DeploymentHub;
pub use endpoint::{EventsEndpoint, PlainEndpoint};
pub use reader::{spawn_reader, ReaderHandle, ReaderOptions};

/// One Marathon event exactly as it arrived: its `event:` type and its `data:` bytes (one JSON object, or
/// occasionally several on one line).
#[derive(Debug, Clone)]
pub struct MarathonEvent {
    /// The SSE `event:` field (falls back to the payload's `eventType`).
    pub event_type: String,
    /// The `data:` payload, unchanged.
    pub data: Bytes,
}

/// A DC/OS cluster the driver reads one event stream from. Several accounts may share a cluster (the same
/// Marathon URLs); each event is routed to the accounts whose root group holds its app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub String);

impl ClusterId {
    /// The cluster of an account: its Marathon base URLs, normalised and joined.
    pub fn of(account: &AccountConfig) -> ClusterId {
        let mut bases = account.marathon_bases();
        bases.sort();
        ClusterId(bases.join(","))
    }
}

/// What the reader tells the consumers of a cluster's events. Every method must return quickly: the reader
/// never waits on a consumer (Marathon closes a slow consumer's stream after 1024 outstanding events), so a
/// consumer queues internally and, when its queue overflows, resyncs instead of dropping silently.
pub trait EventConsumer: Send + Sync + 'static {
    /// A stream connection is attached (first connect or reconnect): events may have been missed, resync.
    fn attached(&self, cluster: &ClusterId);
    /// One event, in stream order.
    fn event(&self, cluster: &ClusterId, event: &Arc<MarathonEvent>);
    /// Events were lost between the stream and this consumer (overflow): resync.
    fn lost(&self, cluster: &ClusterId);
}

/// The accounts (by index in `accounts`) whose root group holds `app_id`.
pub fn accounts_for_app<'a>(accounts: &'a [AccountConfig], app_id: &str) -> Vec<&'a AccountConfig> {
    accounts
        .iter()
        .filter(|a| {
            let root = a.root();
            app_id == root || app_id.starts_with(&format!("{root}/"))
        })
        .collect()
}

/// Starts one reader (and publisher) per cluster of `config.accounts`: accounts with the same Marathon
/// URLs share one stream, read with the first such account's client (its token and URL rotation).
/// Deployment ends are fed into `hub` for every account of the cluster, besides `consumers`.
/// An account without an entry in `clients` (by account name) is left out, with an error logged.
/// After `shutdown`, [`ReaderHandle::join`] waits until each publisher has flushed. With
/// `driver.events_enabled = false` nothing is started.
pub fn spawn_readers(
    config: &Config,
    clients: &HashMap<String, DcosClient>,
    js: async_nats::jetstream::Context,
    consumers: Vec<Arc<dyn EventConsumer>>,
    hub: Arc<DeploymentHub>,
    options: ReaderOptions,
    shutdown: CancellationToken,
) -> Vec<ReaderHandle> {
    if !config.driver.events_enabled {
        return Vec::new();
    }
    let mut clusters: BTreeMap<ClusterId, Vec<AccountConfig>> = BTreeMap::new();
    for account in &config.accounts {
        if clients.contains_key(&account.name) {
            clusters
                .entry(ClusterId::of(account))
                .or_default()
                .push(account.clone());
        } else {
            tracing::error!(account = %account.name, "no DC/OS client for this account: its events are not read");
        }
    }
    let names = clusters
        .iter()
        .map(|(cluster, accounts)| {
            let names = accounts.iter().map(|a| a.name.clone()).collect();
            (cluster.clone(), names)
        })
        .collect();
    let mut consumers = consumers;
    consumers.push(Arc::new(hub::DeploymentEnds::new(hub, names)));
    clusters
        .into_iter()
        .map(|(cluster, accounts)| {
            let client = clients[&accounts[0].name].clone();
            reader::spawn_reader(
                cluster,
                accounts,
                Arc::new(client),
                js.clone(),
                consumers.clone(),
                options.clone(),
                shutdown.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, root: Option<&str>) -> AccountConfig {
        let text = format!(
            "[[account]]\nname = \"{name}\"\nmarathon_urls = [\"http://m:8080\"]\n{}",
            root.map(|r| format!("root_group = \"{r}\"\n"))
                .unwrap_or_default()
        );
        crate::config::Config::from_toml(std::path::Path::new("t.toml"), &text, |_| None)
            .unwrap()
            .accounts
            .remove(0)
    }

    #[test]
    fn routes_by_root_group() {
        let accounts = vec![
            account("prod", None),
            account("web", Some("/prod/web")),
            account("dev", None),
        ];
        let names = |app: &str| {
            accounts_for_app(&accounts, app)
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("/prod/web/api-v001"), vec!["prod", "web"]);
        assert_eq!(names("/prod/db"), vec!["prod"]);
        assert_eq!(names("/production/x"), Vec::<String>::new());
        assert_eq!(ClusterId::of(&accounts[0]), ClusterId::of(&accounts[2]));
    }
}
