//! Fault injection: latency, 5xx share, stream faults, standby/leader, and the `/sim` admin API. (Stub.)

use std::sync::Arc;

use axum::Router;

use super::{Sim, SimConfig};

/// Faults in force, changeable at run time.
pub struct Faults {}

impl Faults {
    pub fn new(_config: &SimConfig) -> Self {
        Faults {}
    }
}

/// The `/sim/...` admin routes.
pub fn admin_routes() -> Router<Arc<Sim>> {
    Router::new()
}

/// Puts latency and error injection in front of the API routes.
pub fn layer(api: Router<Arc<Sim>>, _sim: Arc<Sim>) -> Router<Arc<Sim>> {
    api
}
