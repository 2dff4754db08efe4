//! The DC/OS login and the token check. (Stub.)

use std::sync::Arc;

use axum::Router;

use super::{Sim, SimConfig};

/// Users, service accounts and issued tokens.
pub struct Auth {}

impl Auth {
    pub fn new(_config: &SimConfig) -> Self {
        Auth {}
    }
}

/// `POST /acs/api/v1/auth/login`.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
}

/// Puts the token check in front of the Marathon and Metronome routes.
pub fn layer(api: Router<Arc<Sim>>, _sim: Arc<Sim>) -> Router<Arc<Sim>> {
    api
}
