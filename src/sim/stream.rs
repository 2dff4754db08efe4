//! `GET /v2/events` as Marathon serves it, with the stream faults of [`super::faults`].
//!
//! Wire format (Marathon's Jetty `EventSourceServlet`): `event: <type>\r\n` `data: <line>\r\n` `\r\n`,
//! no `id:`/`retry:`, a bare `\r\n` keep-alive every `--keepalive-seconds` (real time). Marathon
//! publishes `event_stream_attached` on its bus when a connection opens (so the new connection sees it
//! first, and every other connection sees it too) and `event_stream_detached` when one closes; so does
//! this simulator. A connection more than `--event-buffer` events behind is closed (Marathon ≥ 1.8).
//!
//! One difference: Jetty sends the body close-delimited (`Connection: close`, no length); hyper always
//! frames an HTTP/1.1 body of unknown length with `Transfer-Encoding: chunked`, so the SSE bytes arrive
//! inside chunks (any HTTP client removes them). The header `Connection: close` is sent as Marathon does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio::time::{Interval, MissedTickBehavior};

use super::bus::SimEvent;
use super::faults::{Leader, StreamControl};
use super::Sim;

/// The event-stream route.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/v2/events", get(events))
}

async fn events(State(sim): State<Arc<Sim>>, request: Request) -> Response {
    let accepted = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"text/event-stream");
    if !accepted {
        return method_not_allowed(request.uri().path());
    }
    let query = request.uri().query().unwrap_or("").to_string();
    match sim.faults.leader() {
        Leader::This => {}
        Leader::Other(url) => {
            let mut location = format!("{url}/v2/events");
            if !query.is_empty() {
                location.push('?');
                location.push_str(&query);
            }
            return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
        }
        Leader::None => {
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({"message": "Could not determine the current leader"})),
            )
                .into_response();
        }
    }
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let connection = Connection::open(sim, event_types(&query), remote);
    let body = Body::from_stream(futures::stream::unfold(connection, |mut c| async move {
        c.next_chunk()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), c))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream;charset=UTF-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Every `event_type` value of the raw query (the parameter may repeat), percent-decoded.
pub fn event_types(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == "event_type")
        .map(|(_, value)| percent_decode(value))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => Some(high * 16 + low),
                _ => None,
            },
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Jetty's answer when the servlet does not take the request (no or wrong `Accept`).
fn method_not_allowed(path: &str) -> Response {
    let reason = "HTTP method GET is not supported by this URL";
    let body = format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n\
         <title>Error 405 {reason}</title>\n</head>\n<body><h2>HTTP ERROR 405</h2>\n\
         <p>Problem accessing {path}. Reason:\n<pre>    {reason}</pre></p>\n</body>\n</html>\n"
    );
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::CONTENT_TYPE, "text/html;charset=ISO-8859-1")],
        body,
    )
        .into_response()
}

/// One SSE frame as Marathon writes it.
pub fn frame(event: &SimEvent) -> Bytes {
    let mut out = String::with_capacity(event.event_type.len() + event.data.len() + 18);
    out.push_str("event: ");
    out.push_str(&event.event_type);
    out.push_str("\r\ndata: ");
    out.push_str(&event.data);
    out.push_str("\r\n\r\n");
    Bytes::from(out)
}

/// An open `/v2/events` connection: reads the bus and the fault controls, yields body chunks.
struct Connection {
    sim: Arc<Sim>,
    events: broadcast::Receiver<Arc<SimEvent>>,
    control: watch::Receiver<StreamControl>,
    close_epoch: u64,
    keepalive: Interval,
    event_types: Vec<String>,
    remote: String,
    written: u64,
    finished: bool,
}

impl Connection {
    fn open(sim: Arc<Sim>, event_types: Vec<String>, remote: String) -> Connection {
        let events = sim.bus.subscribe();
        let control = sim.faults.stream_control();
        let close_epoch = control.borrow().close_epoch;
        let period = Duration::from_secs_f64(sim.config.keepalive_seconds.max(0.001));
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        sim.faults.stream_opened();
        sim.bus
            .publish("event_stream_attached", json!({"remoteAddress": remote}));
        Connection {
            sim,
            events,
            control,
            close_epoch,
            keepalive,
            event_types,
            remote,
            written: 0,
            finished: false,
        }
    }

    fn subscribed(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// The next bytes to write, or `None` to close the connection.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            let control = self.control.borrow_and_update().clone();
            if control.close_epoch != self.close_epoch {
                return None;
            }
            if let Some(stall) = control.stall_at(Instant::now()) {
                self.wait_out_stall(stall).await?;
                continue;
            }
            tokio::select! {
                biased;
                _ = self.control.changed() => continue,
                received = self.events.recv() => match received {
                    Ok(event) => {
                        if !self.subscribed(&event.event_type) {
                            continue;
                        }
                        if !event.event_type.starts_with("event_stream_") {
                            self.written += 1;
                            if let Some(limit) = self.sim.faults.stream_close_after() {
                                if self.written >= limit {
                                    self.finished = true;
                                }
                            }
                        }
                        return Some(frame(&event));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.close_slow_consumer(missed);
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.keepalive.tick() => return Some(Bytes::from_static(b"\r\n")),
            }
        }
    }

    /// Writes nothing while stalled; `None` if the connection must close meanwhile (closed by a fault,
    /// or fell more than the bus buffer behind).
    async fn wait_out_stall(&mut self, stall: super::faults::Stall) -> Option<()> {
        let deadline = match stall {
            super::faults::Stall::Until(end) => Some(tokio::time::Instant::from_std(end)),
            super::faults::Stall::Forever => None,
        };
        let mut check = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = self.control.changed() => break,
                _ = check.tick() => {
                    if self.events.len() > self.sim.config.event_buffer {
                        self.close_slow_consumer(self.events.len() as u64);
                        return None;
                    }
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        break;
                    }
                }
            }
        }
        self.keepalive.reset();
        Some(())
    }

    fn close_slow_consumer(&mut self, behind: u64) {
        tracing::warn!(remote = %self.remote, behind, "closing event stream of a slow consumer");
        self.sim.faults.slow_consumer_closed();
        self.finished = true;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.sim.faults.stream_closed();
        self.sim.bus.publish(
            "event_stream_detached",
            json!({"remoteAddress": self.remote}),
        );
    }
}
