//! Fault injection: HTTP latency and 5xx answers, event-stream faults (close, stall, drop, slow
//! consumer), standby/leader switching, and the `/sim` admin API that changes all of them at run time.
//!
//! Every fault can be set in-process through the pub methods of [`Faults`] (tests hold
//! `SimHandle::sim.faults`) or over HTTP through the `/sim` admin API ([`admin_routes`], documented in
//! [`admin`]); both change the same state.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

pub mod admin;

pub use admin::{admin_routes, FaultsPatch, FaultsView};

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
