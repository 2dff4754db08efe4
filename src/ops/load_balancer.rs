//! Load-balancer operations: the marathon-lb app of an account.
//!
//! Not implemented yet: each function ends the task FAILED with `UNSUPPORTED_OPERATION` and a
//! message saying so, so dispatch is complete. See the framework notes in [`super`].

use serde_json::Value;

use super::context::OpContext;
use super::description::load_balancer::{
    DeleteLoadBalancerDescription, UpsertLoadBalancerDescription,
};
use super::error::OpError;
use crate::bus::Progress;

/// UPSERT_LOAD_BALANCER.
pub async fn upsert(
    _ctx: &OpContext,
    _d: &UpsertLoadBalancerDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("UPSERT_LOAD_BALANCER"))
}

/// DELETE_LOAD_BALANCER.
pub async fn delete(
    _ctx: &OpContext,
    _d: &DeleteLoadBalancerDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    Err(OpError::NotImplemented("DELETE_LOAD_BALANCER"))
}
