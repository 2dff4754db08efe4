//! The discovery document: what `dcos_instances` holds per instance and what every change publishes on
//! `dcos.discovery.<account>.<app tokens>`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::state::{DiscoveryState, Instance, Reason};
use crate::names;

/// The discovery state of one instance, as stored and published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryDocument {
    /// The account whose root group holds the app.
    pub account: String,
    /// The Marathon app id (`/prod/web/api-v001`).
    pub app_id: String,
    /// The server group: the last segment of the app id (`api-v001`).
    pub server_group: String,
    /// Marathon's instance id (`prod_web_api-v001.instance-<uuid>`, or a legacy task id).
    pub instance_id: String,
    /// The task currently behind the instance (`<instance id>._app.<incarnation>`); empty when unknown.
    pub task_id: String,
    /// The agent's host.
    pub host: String,
    /// Host ports of the task.
    pub ports: Vec<u32>,
    /// IP addresses of the task.
    pub ip_addresses: Vec<String>,
    /// The discovery state.
    pub state: DiscoveryState,
    /// The state before this change (absent for a new instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<DiscoveryState>,
    /// What caused the change.
    pub reason: Reason,
    /// The last health-check result: absent without health checks or before the first result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// The app version the task was launched with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the change happened: Marathon's event time, or the time of the resync or overlay change
    /// (ISO-8601 with milliseconds and `Z`).
    pub timestamp: String,
}

impl DiscoveryDocument {
    /// The document of an instance of `account`.
    pub fn of(account: &str, instance: &Instance) -> DiscoveryDocument {
        DiscoveryDocument {
            account: account.to_string(),
            app_id: instance.app_id.clone(),
            server_group: server_group(&instance.app_id).to_string(),
            instance_id: instance.instance_id.clone(),
            task_id: instance.task_id.clone(),
            host: instance.host.clone(),
            ports: instance.ports.clone(),
            ip_addresses: instance.ip_addresses.clone(),
            state: instance.state,
            previous_state: instance.previous_state,
            reason: instance.reason,
            healthy: instance.healthy,
            version: instance.version.clone(),
            timestamp: instance.timestamp.clone(),
        }
    }

    /// Its key in `dcos_instances`.
    pub fn kv_key(&self) -> String {
        instance_kv_key(&self.account, &self.instance_id)
    }

    /// The subject its changes are published on.
    pub fn subject(&self) -> String {
        names::discovery_subject(&self.account, &self.app_id)
    }
}

/// The key of an instance in `dcos_instances`: `<account>.<instance id>`.
pub fn instance_kv_key(account: &str, instance_id: &str) -> String {
    names::kv_key(&format!("{account}.{instance_id}"))
}

/// The last segment of an app id.
pub fn server_group(app_id: &str) -> &str {
    app_id.rsplit('/').next().unwrap_or(app_id)
}

/// The deterministic `Nats-Msg-Id` of a change, so two replicas that see the same change leave one copy:
/// account, instance, previous and new state, and `basis` (the event time, the overlay revision, or for a
/// resync the task's newest own timestamp).
pub fn message_id(
    account: &str,
    instance_id: &str,
    previous: Option<DiscoveryState>,
    state: DiscoveryState,
    basis: &str,
) -> String {
    let previous = previous.map_or("NEW", DiscoveryState::as_str);
    format!(
        "{account}.{instance_id}.{previous}-{}.{basis}",
        state.as_str()
    )
}

/// Now, written as Marathon writes times.
pub fn now_timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
