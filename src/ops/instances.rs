//! Instance operations: reboot, terminate (with or without decrement), enable/disable in discovery,
//! rolling restart.
//!
//! Not implemented yet: each function ends the task FAILED with `UNSUPPORTED_OPERATION` and a
//! message saying so, so dispatch is complete. See the framework notes in [`super`].

use serde_json::Value;

use super::context::OpContext;
use super::description::instances::{
    InstancesInDiscoveryDescription, RebootInstancesDescription,
    TerminateInstanceAndDecrementDescription, TerminateInstancesDescription,
    UpdateInstancesDescription,
};
use super::error::OpError;
use crate::bus::Progress;

/// REBOOT_INSTANCES.
pub async fn reboot(
    _ctx: &OpContext,
    _d: &RebootInstancesDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("REBOOT_INSTANCES"))
}

/// TERMINATE_INSTANCES.
pub async fn terminate(
    _ctx: &OpContext,
    _d: &TerminateInstancesDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("TERMINATE_INSTANCES"))
}

/// TERMINATE_INSTANCE_AND_DECREMENT.
pub async fn terminate_and_decrement(
    _ctx: &OpContext,
    _d: &TerminateInstanceAndDecrementDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("TERMINATE_INSTANCE_AND_DECREMENT"))
}

/// ENABLE_INSTANCES_IN_DISCOVERY.
pub async fn enable_in_discovery(
    _ctx: &OpContext,
    _d: &InstancesInDiscoveryDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("ENABLE_INSTANCES_IN_DISCOVERY"))
}

/// DISABLE_INSTANCES_IN_DISCOVERY.
pub async fn disable_in_discovery(
    _ctx: &OpContext,
    _d: &InstancesInDiscoveryDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("DISABLE_INSTANCES_IN_DISCOVERY"))
}

/// UPDATE_INSTANCES.
pub async fn update(
    _ctx: &OpContext,
    _d: &UpdateInstancesDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("UPDATE_INSTANCES"))
}
