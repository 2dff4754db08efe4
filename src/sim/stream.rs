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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use super::bus::SimEvent;
use super::faults::{Leader, Stall, StreamControl};
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
    if sim.faults.streams_shut_down() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
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
    // One chunk in flight: everything else waits in the connection's own queue, which is what
    // Marathon counts as outstanding.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(connection.pump(tx));
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
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

/// An open `/v2/events` connection: reads the bus and the fault controls, queues frames for the
/// client and closes the connection when the queue outgrows `--event-buffer` (slow consumer).
struct Connection {
    sim: Arc<Sim>,
    events: broadcast::Receiver<Arc<SimEvent>>,
    control: watch::Receiver<StreamControl>,
    close_epoch: u64,
    keepalive: Interval,
    event_types: Vec<String>,
    remote: String,
    written: u64,
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
        }
    }

    fn subscribed(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// Runs the connection until it closes: by a fault, as a slow consumer, after close-after-N, or
    /// because the client went away. Dropping `tx` ends the response body.
    async fn pump(mut self, tx: mpsc::Sender<Bytes>) {
        let mut queue: VecDeque<Bytes> = VecDeque::new();
        // Close-after-N reached: deliver what is queued, then close.
        let mut draining = false;
        loop {
            let control = self.control.borrow_and_update().clone();
            let closed =
                control.close_epoch != self.close_epoch || self.sim.faults.streams_shut_down();
            if closed || (draining && queue.is_empty()) {
                return;
            }
            let stall = control.stall_at(Instant::now());
            let stall_end = match stall {
                Some(Stall::Until(end)) => Some(tokio::time::Instant::from_std(end)),
                _ => None,
            };
            tokio::select! {
                biased;
                _ = self.control.changed() => {}
                _ = tx.closed() => return,
                permit = tx.reserve(), if stall.is_none() && !queue.is_empty() => match permit {
                    Ok(permit) => permit.send(queue.pop_front().expect("queue not empty")),
                    Err(_) => return,
                },
                received = self.events.recv(), if !draining => match received {
                    Ok(event) => {
                        if !self.subscribed(&event.event_type) {
                            continue;
                        }
                        queue.push_back(frame(&event));
                        if queue.len() > self.sim.config.event_buffer {
                            self.close_slow_consumer(queue.len());
                            return;
                        }
                        if !event.event_type.starts_with("event_stream_") {
                            self.written += 1;
                            let limit = self.sim.faults.stream_close_after();
                            draining = limit.is_some_and(|n| self.written >= n);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.close_slow_consumer(missed as usize);
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = self.keepalive.tick(), if stall.is_none() => {
                    if queue.is_empty() {
                        queue.push_back(Bytes::from_static(b"\r\n"));
                    }
                }
                _ = tokio::time::sleep_until(stall_end.unwrap_or_else(tokio::time::Instant::now)),
                    if stall_end.is_some() => {}
            }
        }
    }

    fn close_slow_consumer(&self, outstanding: usize) {
        tracing::warn!(remote = %self.remote, outstanding, "closing event stream of a slow consumer");
        self.sim.faults.slow_consumer_closed();
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
