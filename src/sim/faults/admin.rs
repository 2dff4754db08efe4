//! The `/sim` admin API: fault injection over HTTP (mounted outside the auth and fault layers).
//!
//! JSON in and out:
//! - `GET /sim/faults` → [`FaultsView`]; `PUT /sim/faults` with a [`FaultsPatch`] (absent fields unchanged,
//!   `null` clears an optional one) → the new [`FaultsView`].
//! - `POST /sim/stream/close` → closes every open `/v2/events` connection now; `{"slowConsumer":true}`
//!   marks it as a slow-consumer close (same bytes on the wire: the connection just ends).
//! - `POST /sim/stream/stall` `{"seconds": 2.5}` (stall for that long, real time) or `{}` (until cleared);
//!   `DELETE /sim/stream/stall` clears it. A stalled stream writes nothing, not even keep-alives, and keeps
//!   the socket open; a connection that falls more than `--event-buffer` behind meanwhile is closed.
//! - `POST /sim/stream/drop` `{"next": 3, "types": ["status_update_event"], "share": 0.5}` (each optional)
//!   → events are dropped at publish time, so no connection sees them; `DELETE /sim/stream/drop` clears.
//!   `event_stream_attached`/`detached` are only dropped when named in `types`.
//! - `POST /sim/leader` `{"leader": "self"}` | `{"leader": "http://other:8080"}` | `{"leader": null}`:
//!   this node becomes leader / a standby of that URL (302) / leaderless (502); open streams are closed.
//! - `POST /sim/auth/expire-tokens` → every token issued so far is rejected from now on.
//! - `POST /sim/events` `{"eventType": "x", "data": "<raw data line>"}` → published as is (no JSON check).
//! - `GET /sim/stats` → `{"openStreams", "logins", "droppedEvents", "slowConsumerCloses"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Leader;
use crate::sim::bus::SimEvent;
use crate::sim::Sim;

/// `GET /sim/faults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultsView {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub error_status: u16,
    pub error_paths: Vec<String>,
    pub stream_close_after: Option<u64>,
    pub stalled: bool,
    pub drop_next: u64,
    pub drop_types: Vec<String>,
    pub drop_share: f64,
    /// `"self"`, the leader's URL, or `null` for no leader.
    pub leader: Option<String>,
}

/// `PUT /sim/faults`: every field optional; `streamCloseAfter: null` turns it off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub error_paths: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    pub stream_close_after: Option<Option<u64>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CloseRequest {
    #[serde(default)]
    slow_consumer: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StallRequest {
    seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DropRequest {
    next: Option<u64>,
    types: Option<Vec<String>>,
    share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaderRequest {
    leader: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEventRequest {
    event_type: String,
    data: String,
}

/// A malformed admin request: 400 with a `message`.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("invalid request: {}", self.0)})),
        )
            .into_response()
    }
}

/// Parses an optional JSON body; an empty body counts as `{}`.
fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, BadRequest> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    parse(body)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| BadRequest(e.to_string()))
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Json<FaultsView> {
    Json(sim.faults.view())
}

async fn put_faults(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let patch: FaultsPatch = match parse(&body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let faults = &sim.faults;
    {
        let mut http = faults.http.lock();
        if let Some(ms) = patch.latency_ms {
            http.latency_ms = ms;
        }
        if let Some(rate) = patch.error_rate {
            http.error_rate = rate.clamp(0.0, 1.0);
        }
        if let Some(status) = patch.error_status {
            http.error_status = status;
        }
        if let Some(paths) = patch.error_paths {
            http.error_paths = paths;
        }
    }
    if let Some(n) = patch.stream_close_after {
        faults.set_stream_close_after(n);
    }
    Json(faults.view()).into_response()
}

async fn close_streams(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let request: CloseRequest = match body_or_default(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if request.slow_consumer {
        sim.faults.force_slow_consumer();
    } else {
        sim.faults.close_streams();
    }
    Json(sim.faults.view()).into_response()
}

async fn stall_streams(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let request: StallRequest = match body_or_default(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let duration = request.seconds.map(|s| Duration::from_secs_f64(s.max(0.0)));
    sim.faults.stall_streams(duration);
    Json(sim.faults.view()).into_response()
}

async fn clear_stall(State(sim): State<Arc<Sim>>) -> Json<FaultsView> {
    sim.faults.clear_stall();
    Json(sim.faults.view())
}

async fn drop_events(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let request: DropRequest = match body_or_default(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Some(n) = request.next {
        sim.faults.drop_next_events(n);
    }
    if let Some(types) = request.types {
        sim.faults.drop_event_types(types);
    }
    if let Some(share) = request.share {
        sim.faults.drop_event_share(share);
    }
    Json(sim.faults.view()).into_response()
}

async fn clear_drops(State(sim): State<Arc<Sim>>) -> Json<FaultsView> {
    sim.faults.clear_drops();
    Json(sim.faults.view())
}

async fn set_leader(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let request: LeaderRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let leader = match request.leader.as_deref() {
        None => Leader::None,
        Some("self") => Leader::This,
        Some(url) => Leader::Other(url.to_string()),
    };
    sim.faults.set_leader(leader);
    Json(sim.faults.view()).into_response()
}

async fn expire_tokens(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.auth.expire_tokens();
    StatusCode::NO_CONTENT
}

async fn inject_event(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let request: RawEventRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    sim.bus.publish_raw(SimEvent {
        event_type: request.event_type,
        data: request.data,
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({
        "openStreams": sim.faults.open_streams(),
        "logins": sim.auth.logins(),
        "droppedEvents": sim.faults.dropped_events(),
        "slowConsumerCloses": sim.faults.slow_consumer_closes(),
    }))
}

/// The `/sim/...` admin routes.
pub fn admin_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/sim/faults", get(get_faults).put(put_faults))
        .route("/sim/stream/close", post(close_streams))
        .route("/sim/stream/stall", post(stall_streams).delete(clear_stall))
        .route("/sim/stream/drop", post(drop_events).delete(clear_drops))
        .route("/sim/leader", post(set_leader))
        .route("/sim/auth/expire-tokens", post(expire_tokens))
        .route("/sim/events", post(inject_event))
        .route("/sim/stats", get(stats))
}
