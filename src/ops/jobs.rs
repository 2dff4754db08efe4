//! Job operations (Metronome): run, destroy, clone.
//!
//! Not implemented yet: each function ends the task FAILED with `UNSUPPORTED_OPERATION` and a
//! message saying so, so dispatch is complete. See the framework notes in [`super`].

use serde_json::Value;

use super::context::OpContext;
use super::description::jobs::{CloneJobDescription, DestroyJobDescription, RunJobDescription};
use super::error::OpError;
use crate::bus::Progress;

/// RUN_JOB.
pub async fn run(
    _ctx: &OpContext,
    _d: &RunJobDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("RUN_JOB"))
}

/// DESTROY_JOB.
pub async fn destroy(
    _ctx: &OpContext,
    _d: &DestroyJobDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("DESTROY_JOB"))
}

/// CLONE_JOB.
pub async fn clone(
    _ctx: &OpContext,
    _d: &CloneJobDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("CLONE_JOB"))
}
