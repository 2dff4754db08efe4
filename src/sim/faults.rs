//! Fault injection: HTTP latency and 5xx answers, event-stream faults (close, stall, drop, slow
//! consumer), standby/leader switching, and the `/sim` admin API that changes all of them at run time.
//!
//! Every fault can be set in-process through the pub methods of [`Faults`] (tests hold
//! `SimHandle::sim.faults`) or over HTTP through [`admin_routes`]; both change the same state.
//!
//! Admin API (outside the auth and fault layers; JSON in and out):
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
//! - `GET /sim/stats` → `{"openStreams", "logins", "droppedEvents"}`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::bus::{Gate, SimEvent};
use super::{Sim, SimConfig};

/// Who leads the simulated Marathon cluster, as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leader {
    /// This node leads: `/v2/events` streams.
    This,
    /// This node is a standby: `/v2/events` answers 302 to `<url>/v2/events?<query>`.
    Other(String),
    /// No leader is elected: `/v2/events` answers 502.
    None,
}

/// A stall of every event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    Until(Instant),
    Forever,
}

/// What every open stream watches: a change of `close_epoch` ends it, `stall` silences it.
#[derive(Debug, Clone, Default)]
pub struct StreamControl {
    pub close_epoch: u64,
    pub stall: Option<Stall>,
}

impl StreamControl {
    /// The stall in force at `now`, if any.
    pub fn stall_at(&self, now: Instant) -> Option<Stall> {
        match self.stall {
            Some(Stall::Until(end)) if end <= now => None,
            other => other,
        }
    }
}

/// Which published events vanish before any connection sees them.
#[derive(Debug, Clone, Default)]
struct DropRules {
    next: u64,
    types: HashSet<String>,
    share: f64,
}

/// The drop rules and their count, shared with the bus gate.
#[derive(Debug, Default)]
struct DropState {
    rules: Mutex<DropRules>,
    dropped: AtomicU64,
}

impl DropState {
    fn admit(&self, event: &SimEvent) -> bool {
        let mut drops = self.rules.lock();
        let dropped = if drops.types.contains(&event.event_type) {
            true
        } else if event.event_type.starts_with("event_stream_") {
            false
        } else if drops.next > 0 {
            drops.next -= 1;
            true
        } else {
            drops.share > 0.0 && rand::random::<f64>() < drops.share
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        !dropped
    }
}

/// HTTP faults applied by [`layer`].
#[derive(Debug, Clone)]
struct HttpFaults {
    latency_ms: u64,
    error_rate: f64,
    error_status: u16,
    error_paths: Vec<String>,
}

/// Faults in force, changeable at run time.
pub struct Faults {
    http: Mutex<HttpFaults>,
    close_after: Mutex<Option<u64>>,
    leader: Mutex<Leader>,
    drops: Arc<DropState>,
    control: watch::Sender<StreamControl>,
    open_streams: AtomicUsize,
    shutting_down: AtomicBool,
    slow_consumer_closes: AtomicU64,
}

impl Faults {
    pub fn new(config: &SimConfig) -> Self {
        let leader = match &config.standby_of {
            Some(url) => Leader::Other(url.trim_end_matches('/').to_string()),
            None => Leader::This,
        };
        Faults {
            http: Mutex::new(HttpFaults {
                latency_ms: config.latency_ms,
                error_rate: config.error_rate,
                error_status: 503,
                error_paths: Vec::new(),
            }),
            close_after: Mutex::new(config.stream_close_after),
            leader: Mutex::new(leader),
            drops: Arc::new(DropState::default()),
            control: watch::channel(StreamControl::default()).0,
            open_streams: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            slow_consumer_closes: AtomicU64::new(0),
        }
    }

    // ---- HTTP faults ----

    /// Adds `ms` milliseconds (real time, not scaled) before every API answer.
    pub fn set_latency_ms(&self, ms: u64) {
        self.http.lock().latency_ms = ms;
    }

    /// Answers a share (0..=1) of API requests with `status` (503: Marathon-like JSON
    /// `{"message": …}`; 502: Admin Router-like HTML), only for paths starting with one of
    /// `path_prefixes` (empty = every API path).
    pub fn set_error_rate(&self, share: f64, status: u16, path_prefixes: Vec<String>) {
        let mut http = self.http.lock();
        http.error_rate = share.clamp(0.0, 1.0);
        http.error_status = status;
        http.error_paths = path_prefixes;
    }

    // ---- stream faults ----

    /// Closes every stream after it has written `n` events (not counting `event_stream_attached`/
    /// `detached`); `None` turns it off. Applies to open streams too.
    pub fn set_stream_close_after(&self, n: Option<u64>) {
        *self.close_after.lock() = n;
    }

    /// The close-after-N setting.
    pub fn stream_close_after(&self) -> Option<u64> {
        *self.close_after.lock()
    }

    /// Closes every open stream now.
    pub fn close_streams(&self) {
        self.control.send_modify(|c| c.close_epoch += 1);
    }

    /// Closes every open stream and refuses new ones (503): the simulator is stopping.
    pub fn shut_down_streams(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.close_streams();
    }

    /// Whether [`Faults::shut_down_streams`] was called.
    pub fn streams_shut_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Closes every open stream now, logged as Marathon's slow-consumer close.
    pub fn force_slow_consumer(&self) {
        self.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
        tracing::info!("closing every event stream as slow consumers (injected)");
        self.close_streams();
    }

    /// Silences every stream (no events, no keep-alives, socket stays open) for `duration`
    /// (`None` = until [`Faults::clear_stall`]). Events published meanwhile are delivered afterwards,
    /// unless a connection fell more than the bus buffer behind: then it is closed.
    pub fn stall_streams(&self, duration: Option<Duration>) {
        let stall = match duration {
            Some(d) => Stall::Until(Instant::now() + d),
            None => Stall::Forever,
        };
        self.control.send_modify(|c| c.stall = Some(stall));
    }

    /// Ends a stall.
    pub fn clear_stall(&self) {
        self.control.send_modify(|c| c.stall = None);
    }

    /// Drops the next `n` published events (other than `event_stream_*`), for every connection.
    pub fn drop_next_events(&self, n: u64) {
        self.drops.rules.lock().next = n;
    }

    /// Drops every published event of these types until cleared.
    pub fn drop_event_types<I: IntoIterator<Item = String>>(&self, types: I) {
        self.drops.rules.lock().types = types.into_iter().collect();
    }

    /// Drops this share (0..=1) of published events (other than `event_stream_*`) at random.
    pub fn drop_event_share(&self, share: f64) {
        self.drops.rules.lock().share = share.clamp(0.0, 1.0);
    }

    /// Removes every drop rule.
    pub fn clear_drops(&self) {
        *self.drops.rules.lock() = DropRules::default();
    }

    /// Events dropped so far by the drop rules.
    pub fn dropped_events(&self) -> u64 {
        self.drops.dropped.load(Ordering::Relaxed)
    }

    /// The bus gate applying the drop rules (decided once per event, so no connection sees a dropped
    /// one). [`super::Sim::new`] installs it.
    pub fn drop_gate(&self) -> Gate {
        let drops = self.drops.clone();
        Arc::new(move |event: &SimEvent| drops.admit(event))
    }

    // ---- leadership ----

    /// Changes the leader; open streams are closed, as Marathon does when leadership moves.
    pub fn set_leader(&self, leader: Leader) {
        let leader = match leader {
            Leader::Other(url) => Leader::Other(url.trim_end_matches('/').to_string()),
            other => other,
        };
        *self.leader.lock() = leader;
        self.close_streams();
    }

    /// The current leader.
    pub fn leader(&self) -> Leader {
        self.leader.lock().clone()
    }

    // ---- what streams read ----

    /// A watch on the stream controls (for the SSE connections).
    pub fn stream_control(&self) -> watch::Receiver<StreamControl> {
        self.control.subscribe()
    }

    /// Number of `/v2/events` connections open now.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::SeqCst)
    }

    /// Streams closed so far because they fell behind (or by [`Faults::force_slow_consumer`]).
    pub fn slow_consumer_closes(&self) -> u64 {
        self.slow_consumer_closes.load(Ordering::Relaxed)
    }

    pub(crate) fn stream_opened(&self) {
        self.open_streams.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn stream_closed(&self) {
        self.open_streams.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn slow_consumer_closed(&self) {
        self.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole fault state, as `GET /sim/faults` shows it.
    pub fn view(&self) -> FaultsView {
        let http = self.http.lock().clone();
        let drops = self.drops.rules.lock().clone();
        let control = self.control.borrow().clone();
        let mut drop_types: Vec<String> = drops.types.into_iter().collect();
        drop_types.sort();
        FaultsView {
            latency_ms: http.latency_ms,
            error_rate: http.error_rate,
            error_status: http.error_status,
            error_paths: http.error_paths,
            stream_close_after: self.stream_close_after(),
            stalled: control.stall_at(Instant::now()).is_some(),
            drop_next: drops.next,
            drop_types,
            drop_share: drops.share,
            leader: match self.leader() {
                Leader::This => Some("self".into()),
                Leader::Other(url) => Some(url),
                Leader::None => None,
            },
        }
    }
}

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

/// Puts latency and error injection in front of the API routes.
pub fn layer(api: Router<Arc<Sim>>, sim: Arc<Sim>) -> Router<Arc<Sim>> {
    api.layer(middleware::from_fn_with_state(sim, inject_http_faults))
}

async fn inject_http_faults(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let http = sim.faults.http.lock().clone();
    if http.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(http.latency_ms)).await;
    }
    let path = request.uri().path();
    let applies =
        http.error_paths.is_empty() || http.error_paths.iter().any(|p| path.starts_with(p));
    if applies && http.error_rate > 0.0 && rand::random::<f64>() < http.error_rate {
        return injected_error(http.error_status);
    }
    next.run(request).await
}

/// 503 as Marathon answers while it cannot serve; 502 (or any other code) as DC/OS Admin Router's
/// HTML error page.
fn injected_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return (
            status,
            Json(json!({"message": "Simulated failure: service temporarily unavailable"})),
        )
            .into_response();
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n",
        code = status.as_u16()
    );
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}
