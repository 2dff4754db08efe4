//! HTTP faults and the `/sim` admin API of the simulator.

use std::time::{Duration, Instant};

use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use reqwest::Method;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

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

async fn sim() -> SimHandle {
    spawn(SimConfig::instant()).await.unwrap()
}

async fn status_of(sim: &SimHandle, path: &str) -> u16 {
    client()
        .get(format!("{}{path}", sim.url()))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn put_faults(sim: &SimHandle, patch: Value) -> Value {
    let response = client()
        .put(format!("{}/sim/faults", sim.url()))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn latency_is_added_to_api_answers_only() {
    let sim = sim().await;
    let view = put_faults(&sim, json!({"latencyMs": 200})).await;
    assert_eq!(view["latencyMs"], 200);
    let started = Instant::now();
    assert_eq!(status_of(&sim, "/ping").await, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(status_of(&sim, "/sim/faults").await, 200);
    assert!(started.elapsed() < Duration::from_millis(150));
    sim.sim.faults.set_latency_ms(0);
    let started = Instant::now();
    status_of(&sim, "/ping").await;
    assert!(started.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn error_share_answers_503_json_or_502_html() {
    let sim = sim().await;
    put_faults(&sim, json!({"errorRate": 1.0})).await;
    let response = client()
        .get(format!("{}/service/marathon/ping", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].is_string());

    put_faults(&sim, json!({"errorStatus": 502})).await;
    let response = client()
        .get(format!("{}/v1/jobs", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("502 Bad Gateway"));

    // Roughly half when the share is 0.5.
    put_faults(&sim, json!({"errorRate": 0.5, "errorStatus": 503})).await;
    let mut failed = 0;
    for _ in 0..200 {
        if status_of(&sim, "/ping").await == 503 {
            failed += 1;
        }
    }
    assert!((50..150).contains(&failed), "{failed} of 200 failed");
}

#[tokio::test]
async fn error_share_can_target_path_prefixes() {
    let sim = sim().await;
    sim.sim
        .faults
        .set_error_rate(1.0, 503, vec!["/v1/".into(), "/service/metronome".into()]);
    assert_eq!(status_of(&sim, "/v1/jobs").await, 503);
    assert_eq!(status_of(&sim, "/service/metronome/v1/jobs").await, 503);
    assert_eq!(status_of(&sim, "/ping").await, 200);
    let view: Value = admin(&sim, Method::GET, "/sim/faults", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["errorPaths"], json!(["/v1/", "/service/metronome"]));
    assert_eq!(view["errorRate"], 1.0);
}

#[tokio::test]
async fn config_flags_seed_the_faults() {
    let sim = spawn(SimConfig {
        latency_ms: 5,
        error_rate: 0.25,
        stream_close_after: Some(7),
        standby_of: Some("http://leader:8080".into()),
        ..SimConfig::instant()
    })
    .await
    .unwrap();
    let view: Value = admin(&sim, Method::GET, "/sim/faults", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        view,
        json!({
            "latencyMs": 5, "errorRate": 0.25, "errorStatus": 503, "errorPaths": [],
            "streamCloseAfter": 7, "stalled": false, "dropNext": 0, "dropTypes": [],
            "dropShare": 0.0, "leader": "http://leader:8080"
        })
    );
}

#[tokio::test]
async fn bad_admin_requests_are_400() {
    let sim = sim().await;
    let response = admin(
        &sim,
        Method::PUT,
        "/sim/faults",
        Some(json!({"latency": 5})),
    )
    .await;
    assert_eq!(response.status(), 400);
    let stats: Value = admin(&sim, Method::GET, "/sim/stats", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["openStreams"], 0);
    assert_eq!(stats["logins"], 0);
}
