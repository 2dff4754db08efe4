//! Simulated Marathon: apps, tasks, deployments, groups, queue, info, leader, ping, and the timed lifecycle.
//! (Stub: filled in by the simulator work.)

use std::sync::Arc;

use axum::{routing::get, Router};

use super::{Sim, SimConfig};

/// Marathon's in-memory state.
pub struct Marathon {}

impl Marathon {
    pub fn new(_config: &SimConfig) -> Self {
        Marathon {}
    }
}

/// Marathon's REST routes (mounted at `/` and `/service/marathon`).
pub fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/ping", get(|| async { "pong" }))
}
