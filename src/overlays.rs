//! Administrative overlays: server groups and instances taken out of service by an operator
//! (DISABLE_SERVER_GROUP, DISABLE_INSTANCES_IN_DISCOVERY and their reverses).
//!
//! They live in the KV bucket `dcos_overlays`, so every `serve` replica sees the same state and the
//! discovery side can watch the bucket and republish affected instances at once. Keys:
//! - `sg.<account>.<app tokens>` → [`Overlay`] for a server group (app `/prod/web/api-v001` → `prod.web.api-v001`);
//! - `inst.<account>.<instance id>` → [`Overlay`] for one instance.

use async_nats::jetstream::kv;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names;

/// One administrative overlay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overlay {
    /// The account it belongs to.
    pub account: String,
    /// The server group (Marathon app id).
    pub app_id: String,
    /// The instance, for an instance overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Taken out of service.
    pub disabled: bool,
    /// For a suspended server group: the instance count before it was scaled to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_instances: Option<u64>,
    /// The task that set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// When it was set (RFC 3339).
    pub updated_at: String,
}

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayKey {
    ServerGroup {
        account: String,
        app_tokens: String,
    },
    Instance {
        account: String,
        instance_id: String,
    },
}

/// The KV key of a server-group overlay.
pub fn server_group_key(account: &str, app_id: &str) -> String {
    names::kv_key(&format!("sg.{account}.{}", names::app_tokens(app_id)))
}

/// The KV key of an instance overlay.
pub fn instance_key(account: &str, instance_id: &str) -> String {
    names::kv_key(&format!("inst.{account}.{instance_id}"))
}

/// Reads a key back into what it names.
pub fn parse_key(key: &str) -> Option<OverlayKey> {
    let (kind, rest) = key.split_once('.')?;
    let (account, tail) = rest.split_once('.')?;
    match kind {
        "sg" => Some(OverlayKey::ServerGroup {
            account: account.to_string(),
            app_tokens: tail.to_string(),
        }),
        "inst" => Some(OverlayKey::Instance {
            account: account.to_string(),
            instance_id: tail.to_string(),
        }),
        _ => None,
    }
}

/// Failure to read or write an overlay.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay store: {0}")]
    Store(String),
    #[error("overlay {key} is not valid JSON: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The overlays bucket.
#[derive(Clone)]
pub struct OverlayStore {
    kv: kv::Store,
}

impl OverlayStore {
    /// Wraps an opened `dcos_overlays` bucket.
    pub fn new(kv: kv::Store) -> Self {
        OverlayStore { kv }
    }

    /// The underlying bucket (for watchers).
    pub fn bucket(&self) -> &kv::Store {
        &self.kv
    }

    /// Writes an overlay under its key.
    pub async fn put(&self, overlay: &Overlay) -> Result<(), OverlayError> {
        let key = match &overlay.instance_id {
            Some(instance) => instance_key(&overlay.account, instance),
            None => server_group_key(&overlay.account, &overlay.app_id),
        };
        let bytes = serde_json::to_vec(overlay).expect("overlay serialises");
        self.kv
            .put(key, bytes.into())
            .await
            .map_err(|e| OverlayError::Store(e.to_string()))?;
        Ok(())
    }

    /// Removes an overlay (an enabled instance or server group needs none).
    pub async fn remove(&self, key: &str) -> Result<(), OverlayError> {
        self.kv
            .delete(key)
            .await
            .map_err(|e| OverlayError::Store(e.to_string()))
    }

    /// Reads one overlay.
    pub async fn get(&self, key: &str) -> Result<Option<Overlay>, OverlayError> {
        let entry = self
            .kv
            .get(key)
            .await
            .map_err(|e| OverlayError::Store(e.to_string()))?;
        match entry {
            None => Ok(None),
            Some(bytes) if bytes.is_empty() => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| OverlayError::Decode {
                        key: key.to_string(),
                        source,
                    })
            }
        }
    }

    /// The server-group overlay of an app, if any.
    pub async fn server_group(
        &self,
        account: &str,
        app_id: &str,
    ) -> Result<Option<Overlay>, OverlayError> {
        self.get(&server_group_key(account, app_id)).await
    }

    /// Every overlay currently stored (for a discovery engine starting up).
    pub async fn all(&self) -> Result<Vec<Overlay>, OverlayError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| OverlayError::Store(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| OverlayError::Store(e.to_string()))?;
            if let Some(overlay) = self.get(&key).await? {
                out.push(overlay);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = server_group_key("prod", "/prod/web/api-v001");
        assert_eq!(k, "sg.prod.prod.web.api-v001");
        assert_eq!(
            parse_key(&k),
            Some(OverlayKey::ServerGroup {
                account: "prod".into(),
                app_tokens: "prod.web.api-v001".into()
            })
        );
        let k = instance_key("prod", "prod_web_api-v001.instance-3f2a");
        assert_eq!(
            parse_key(&k),
            Some(OverlayKey::Instance {
                account: "prod".into(),
                instance_id: "prod_web_api-v001.instance-3f2a".into()
            })
        );
    }
}
