//! Snapshot operations: save the account's group tree to KV `dcos_snapshots`, restore it.
//!
//! Not implemented yet: each function ends the task FAILED with `UNSUPPORTED_OPERATION` and a
//! message saying so, so dispatch is complete. See the framework notes in [`super`].

use serde_json::Value;

use super::context::OpContext;
use super::description::snapshots::{RestoreSnapshotDescription, SaveSnapshotDescription};
use super::error::OpError;
use crate::bus::Progress;

/// SAVE_SNAPSHOT.
pub async fn save(
    _ctx: &OpContext,
    _d: &SaveSnapshotDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("SAVE_SNAPSHOT"))
}

/// RESTORE_SNAPSHOT.
pub async fn restore(
    _ctx: &OpContext,
    _d: &RestoreSnapshotDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("RESTORE_SNAPSHOT"))
}
