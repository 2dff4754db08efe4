//! Simulated Metronome: jobs, runs, schedules. (Stub.)

use std::sync::Arc;

use axum::Router;

use super::{Sim, SimConfig};

/// Metronome's in-memory state.
pub struct Metronome {}

impl Metronome {
    pub fn new(_config: &SimConfig) -> Self {
        Metronome {}
    }
}

/// Metronome's routes (mounted at `/` and `/service/metronome`).
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
}
