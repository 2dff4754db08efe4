//! Snapshot descriptions: the account's group tree saved to KV `dcos_snapshots` and put back.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Description;
use crate::ops::error::OpError;
use crate::ops::paths::Scope;

/// The lock key of a whole group tree (snapshots save and restore it as one).
pub fn tree_lock_key(group: &str) -> String {
    format!("tree:{group}")
}

/// SAVE_SNAPSHOT: read the group tree (`/v2/groups/<root>[/<region>]`) and store it; result =
/// snapshot id.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaveSnapshotDescription {
    /// Group below the root to save (default: the whole root).
    #[serde(default)]
    pub region: String,
    /// A note stored with the snapshot.
    #[serde(default)]
    pub description: Option<String>,
}

/// RESTORE_SNAPSHOT: `PUT /v2/groups/<group>` with a stored snapshot; `dryRun` answers with the plan.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreSnapshotDescription {
    /// The snapshot to restore.
    pub snapshot_id: String,
    /// Only compute Marathon's plan.
    #[serde(default)]
    pub dry_run: bool,
    /// Override deployment locks.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for the deployment (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl Description for SaveSnapshotDescription {
    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![tree_lock_key(&scope.group("region", &self.region)?)])
    }
}

impl Description for RestoreSnapshotDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![tree_lock_key(scope.root())])
    }
}
