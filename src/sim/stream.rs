//! `GET /v2/events` as Marathon serves it. (Stub.)

use std::sync::Arc;

use axum::Router;

use super::Sim;

/// The event-stream route.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
}
