//! `GET /v2/events` of the simulator over real HTTP: framing bytes, keep-alives, the filter, and every
//! stream fault.

use std::time::Duration;

use dcos_driver::sim::bus::SimEvent;
use dcos_driver::sim::faults::Leader;
use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A call to the `/sim` admin API.
async fn admin(
    sim: &SimHandle,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = client().request(method, format!("{}{path}", sim.url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

const WAIT: Duration = Duration::from_secs(5);

async fn sim_with(config: SimConfig) -> SimHandle {
    spawn(config).await.expect("simulator starts")
}

async fn sim() -> SimHandle {
    sim_with(SimConfig::instant()).await
}

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET` an event-stream URL as an SSE client does (no redirect following).
async fn attach(url: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap()
}

/// The body of an open event stream, read as raw bytes.
struct Sse {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    ended: bool,
}

impl Sse {
    async fn open(url: &str) -> Sse {
        let response = attach(url).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream;charset=UTF-8"
        );
        Sse {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            ended: false,
        }
    }

    /// Reads until `n` bytes are buffered (or the stream ends); returns them.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buffer.len() < n && !self.ended {
            self.fill(WAIT).await.expect("bytes arrive in time");
        }
        let n = n.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }

    /// Reads one frame `event: …\r\ndata: …\r\n\r\n`, skipping keep-alives; `None` at the end.
    async fn event(&mut self) -> Option<(String, String)> {
        loop {
            while self.buffer.starts_with(b"\r\n") {
                self.buffer.drain(..2);
            }
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 4).collect();
                let text = String::from_utf8(frame).unwrap();
                let mut lines = text.trim_end_matches("\r\n").split("\r\n");
                let event = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                assert!(lines.next().is_none(), "one event and one data line");
                return Some((event.to_string(), data.to_string()));
            }
            if self.ended {
                assert!(
                    self.buffer.is_empty(),
                    "stream ended mid-frame: {:?}",
                    self.buffer
                );
                return None;
            }
            self.fill(WAIT).await.expect("an event arrives in time");
        }
    }

    /// Skips frames until one of `event_type` (panics if the stream ends first).
    async fn event_of(&mut self, event_type: &str) -> Value {
        loop {
            let (t, data) = self.event().await.expect("stream still open");
            if t == event_type {
                return serde_json::from_str(&data).unwrap();
            }
        }
    }

    /// Waits up to `d` for more bytes; false if none came.
    async fn fill(&mut self, d: Duration) -> Result<(), ()> {
        match tokio::time::timeout(d, self.body.next()).await {
            Ok(Some(Ok(chunk))) => {
                self.buffer.extend_from_slice(&chunk);
                Ok(())
            }
            Ok(Some(Err(_))) | Ok(None) => {
                self.ended = true;
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    /// Whether the stream ends within `WAIT`, ignoring what is still sent.
    async fn ends(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.ended {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            let _ = self.fill(WAIT).await;
        }
        true
    }
}

/// An open `/v2/events` stream whose own `event_stream_attached` has been read.
async fn attached(sim: &SimHandle) -> Sse {
    let mut sse = Sse::open(&format!("{}/v2/events", sim.url())).await;
    sse.event_of("event_stream_attached").await;
    sse
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn publish(handle: &SimHandle, event_type: &str, n: u64) {
    for i in 0..n {
        handle.sim.bus.publish(event_type, json!({"n": i}));
    }
}

#[tokio::test]
async fn attach_event_first_then_crlf_frames() {
    let sim = sim().await;
    let mut sse = Sse::open(&format!("{}/v2/events", sim.url())).await;
    let prefix = sse
        .take(b"event: event_stream_attached\r\ndata: ".len())
        .await;
    assert_eq!(prefix, b"event: event_stream_attached\r\ndata: ");
    let rest = {
        while find(&sse.buffer, b"\r\n\r\n").is_none() {
            sse.fill(WAIT).await.unwrap();
        }
        let end = find(&sse.buffer, b"\r\n\r\n").unwrap();
        let line: Vec<u8> = sse.buffer.drain(..end + 4).collect();
        String::from_utf8(line).unwrap()
    };
    let data: Value = serde_json::from_str(rest.trim_end_matches("\r\n\r\n")).unwrap();
    assert_eq!(data["eventType"], "event_stream_attached");
    assert_eq!(data["remoteAddress"], "127.0.0.1");
    let ts = data["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 24, "millis and Z: {ts}");

    sim.sim.bus.publish_raw(SimEvent {
        event_type: "status_update_event".into(),
        data: r#"{"eventType":"status_update_event","taskId":"a.1"}"#.into(),
    });
    let expected =
        b"event: status_update_event\r\ndata: {\"eventType\":\"status_update_event\",\"taskId\":\"a.1\"}\r\n\r\n";
    assert_eq!(sse.take(expected.len()).await, expected.to_vec());
}

#[tokio::test]
async fn wire_headers_and_no_id_or_retry() {
    let sim = sim().await;
    let mut tcp = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    tcp.write_all(
        b"GET /service/marathon/v2/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("event_stream_attached") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
    assert!(text.contains("\r\ncontent-type: text/event-stream;charset=utf-8\r\n"));
    assert!(text.contains("\r\nconnection: close\r\n"));
    assert!(!text.contains("\r\nid:") && !text.contains("retry:"));
}

#[tokio::test]
async fn keepalive_is_a_bare_crlf_when_idle() {
    let sim = sim_with(SimConfig {
        keepalive_seconds: 0.1,
        ..SimConfig::instant()
    })
    .await;
    let mut sse = attached(&sim).await;
    let started = std::time::Instant::now();
    assert_eq!(sse.take(2).await, b"\r\n");
    assert_eq!(sse.take(2).await, b"\r\n");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(sse.buffer.is_empty());
}

#[tokio::test]
async fn event_type_filter_repeats_and_matches_exactly() {
    let sim = sim().await;
    let mut sse = Sse::open(&format!(
        "{}/v2/events?event_type=deployment_success&event_type=app_terminated_event",
        sim.url()
    ))
    .await;
    publish(&sim, "status_update_event", 1);
    publish(&sim, "deployment_success", 1);
    publish(&sim, "deployment", 1);
    publish(&sim, "app_terminated_event", 1);
    assert_eq!(sse.event().await.unwrap().0, "deployment_success");
    assert_eq!(sse.event().await.unwrap().0, "app_terminated_event");
    sim.sim.faults.close_streams();
    assert_eq!(sse.event().await, None);
}

#[tokio::test]
async fn without_or_with_wrong_accept_is_405() {
    let sim = sim().await;
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut request = client().get(format!("{}/v2/events", sim.url()));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 405, "{accept:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains("HTTP ERROR 405"), "{body}");
    }
}

#[tokio::test]
async fn close_after_n_events() {
    let sim = sim().await;
    sim.sim.faults.set_stream_close_after(Some(2));
    let mut sse = attached(&sim).await;
    publish(&sim, "status_update_event", 5);
    assert_eq!(sse.event().await.unwrap().0, "status_update_event");
    assert_eq!(sse.event().await.unwrap().0, "status_update_event");
    assert_eq!(sse.event().await, None);
    wait_until(|| sim.sim.faults.open_streams() == 0).await;
}

#[tokio::test]
async fn close_after_n_via_admin_and_close_now() {
    let sim = sim().await;
    let view: Value = admin(
        &sim,
        Method::PUT,
        "/sim/faults",
        Some(json!({"streamCloseAfter": 1})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(view["streamCloseAfter"], 1);
    let mut sse = Sse::open(&format!("{}/v2/events", sim.url())).await;
    publish(&sim, "x", 3);
    sse.event_of("x").await;
    assert!(sse.ends().await);

    admin(
        &sim,
        Method::PUT,
        "/sim/faults",
        Some(json!({"streamCloseAfter": null})),
    )
    .await;
    let mut a = Sse::open(&format!("{}/v2/events", sim.url())).await;
    let mut b = Sse::open(&format!("{}/v2/events", sim.url())).await;
    let status = admin(&sim, Method::POST, "/sim/stream/close", None)
        .await
        .status();
    assert_eq!(status, 200);
    assert!(a.ends().await);
    assert!(b.ends().await);
}

#[tokio::test]
async fn stall_keeps_socket_open_but_silent() {
    let sim = sim_with(SimConfig {
        keepalive_seconds: 0.05,
        ..SimConfig::instant()
    })
    .await;
    let mut sse = attached(&sim).await;
    sim.sim.faults.stall_streams(None);
    tokio::time::sleep(Duration::from_millis(60)).await;
    sse.buffer.clear();
    while sse.fill(Duration::from_millis(10)).await.is_ok() {
        sse.buffer.clear();
    }
    publish(&sim, "status_update_event", 1);
    assert!(
        sse.fill(Duration::from_millis(400)).await.is_err(),
        "stalled stream wrote {:?}",
        sse.buffer
    );
    assert!(!sse.ended);
    assert_eq!(sim.sim.faults.open_streams(), 1);
    sim.sim.faults.clear_stall();
    sse.event_of("status_update_event").await;
}

#[tokio::test]
async fn stall_for_a_duration_via_admin() {
    let sim = sim().await;
    let mut sse = attached(&sim).await;
    admin(
        &sim,
        Method::POST,
        "/sim/stream/stall",
        Some(json!({"seconds": 0.3})),
    )
    .await;
    publish(&sim, "a", 1);
    assert!(sse.fill(Duration::from_millis(150)).await.is_err());
    sse.event_of("a").await;
}

#[tokio::test]
async fn dropped_events_reach_no_connection() {
    let sim = sim().await;
    let url = format!("{}/v2/events?event_type=a&event_type=b", sim.url());
    let mut one = Sse::open(&url).await;
    let mut two = Sse::open(&url).await;
    sim.sim.faults.drop_next_events(2);
    sim.sim.bus.publish("a", json!({"n": 1}));
    sim.sim.bus.publish("a", json!({"n": 2}));
    sim.sim.bus.publish("a", json!({"n": 3}));
    sim.sim.faults.drop_event_types(["b".to_string()]);
    sim.sim.bus.publish("b", json!({"n": 4}));
    sim.sim.bus.publish("a", json!({"n": 5}));
    for sse in [&mut one, &mut two] {
        assert_eq!(sse.event_of("a").await["n"], 3);
        assert_eq!(sse.event_of("a").await["n"], 5);
    }
    assert_eq!(sim.sim.faults.dropped_events(), 3);

    sim.sim.faults.clear_drops();
    admin(
        &sim,
        Method::POST,
        "/sim/stream/drop",
        Some(json!({"share": 1.0})),
    )
    .await;
    sim.sim.bus.publish("a", json!({"n": 6}));
    admin(&sim, Method::DELETE, "/sim/stream/drop", None).await;
    sim.sim.bus.publish("a", json!({"n": 7}));
    assert_eq!(one.event_of("a").await["n"], 7);
}

#[tokio::test]
async fn slow_consumer_is_closed() {
    let sim = sim_with(SimConfig {
        event_buffer: 8,
        ..SimConfig::instant()
    })
    .await;
    let mut sse = attached(&sim).await;
    sim.sim.faults.stall_streams(None);
    publish(&sim, "status_update_event", 20);
    assert!(sse.ends().await, "a connection 20 events behind is closed");
    assert_eq!(sim.sim.faults.slow_consumer_closes(), 1);

    sim.sim.faults.clear_stall();
    let mut sse = Sse::open(&format!("{}/v2/events", sim.url())).await;
    admin(
        &sim,
        Method::POST,
        "/sim/stream/close",
        Some(json!({"slowConsumer": true})),
    )
    .await;
    assert!(sse.ends().await);
    assert_eq!(sim.sim.faults.slow_consumer_closes(), 2);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_slow_consumer() {
    let sim = sim_with(SimConfig {
        event_buffer: 8,
        ..SimConfig::instant()
    })
    .await;
    let mut sse = attached(&sim).await;
    // Never read while publishing: once socket buffers are full, frames queue up in the simulator.
    let blob = "x".repeat(256 * 1024);
    for i in 0..200 {
        sim.sim
            .bus
            .publish("status_update_event", json!({"n": i, "blob": blob}));
        if sim.sim.faults.slow_consumer_closes() > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    wait_until(|| sim.sim.faults.slow_consumer_closes() == 1).await;
    let mut seen = 0;
    while sse.event().await.is_some() {
        seen += 1;
    }
    assert!(seen < 200, "the stream closed before delivering everything");
}

#[tokio::test]
async fn standby_redirects_to_leader_with_same_query() {
    let sim = sim_with(SimConfig {
        standby_of: Some("http://leader.example:8080/".into()),
        ..SimConfig::instant()
    })
    .await;
    for prefix in ["", "/service/marathon"] {
        let response = client()
            .get(format!(
                "{}{prefix}/v2/events?event_type=a&event_type=b",
                sim.url()
            ))
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
        assert_eq!(
            response.headers()["location"],
            "http://leader.example:8080/v2/events?event_type=a&event_type=b"
        );
    }
}

#[tokio::test]
async fn no_leader_is_502_and_leader_switch_closes_streams() {
    let sim = sim().await;
    let mut sse = attached(&sim).await;
    let view: Value = admin(
        &sim,
        Method::POST,
        "/sim/leader",
        Some(json!({"leader": null})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(view["leader"], Value::Null);
    assert!(sse.ends().await, "leadership change closes streams");
    let response = attach(&format!("{}/v2/events", sim.url())).await;
    assert_eq!(response.status(), 502);

    sim.sim.faults.set_leader(Leader::This);
    let mut sse = attached(&sim).await;
    sim.sim
        .faults
        .set_leader(Leader::Other("http://other:8080".into()));
    assert!(sse.ends().await);
    let response = attach(&format!("{}/v2/events", sim.url())).await;
    assert_eq!(response.status(), 302);
}

#[tokio::test]
async fn detach_is_published_when_a_connection_closes() {
    let sim = sim().await;
    let mut watcher = Sse::open(&format!("{}/v2/events", sim.url())).await;
    watcher.event_of("event_stream_attached").await;
    let other = Sse::open(&format!("{}/v2/events", sim.url())).await;
    watcher.event_of("event_stream_attached").await;
    drop(other);
    let detached = watcher.event_of("event_stream_detached").await;
    assert_eq!(detached["remoteAddress"], "127.0.0.1");
}

#[tokio::test]
async fn injected_raw_events_pass_unchanged() {
    let sim = sim().await;
    let mut sse = attached(&sim).await;
    let big = format!(r#"{{"eventType":"huge","blob":"{}"}}"#, "x".repeat(1 << 20));
    let two = r#"{"eventType":"a"}{"eventType":"b"}"#;
    for (event_type, data) in [("huge", big.as_str()), ("brand_new_event", two)] {
        let status = admin(
            &sim,
            Method::POST,
            "/sim/events",
            Some(json!({"eventType": event_type, "data": data})),
        )
        .await
        .status();
        assert_eq!(status, 204);
    }
    assert_eq!(
        sse.event().await.unwrap(),
        ("huge".to_string(), big.clone())
    );
    assert_eq!(
        sse.event().await.unwrap(),
        ("brand_new_event".to_string(), two.to_string())
    );
}

#[tokio::test]
async fn stopping_the_simulator_closes_open_streams() {
    let sim = sim().await;
    let mut sse = attached(&sim).await;
    tokio::time::timeout(WAIT, sim.stop())
        .await
        .expect("stop does not wait for open streams");
    assert!(sse.ends().await);
}
