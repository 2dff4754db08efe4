//! The health and metrics endpoint over real HTTP on a free port.

use std::time::Duration;

use dcos_driver::health::{self, Readiness, METRICS_CONTENT_TYPE};
use dcos_driver::metrics::{endpoint_template, Metrics};
use dcos_driver::vocabulary::Operation;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Running {
    base: String,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
    server: health::HealthServer,
    http: reqwest::Client,
}

async fn start() -> Running {
    let readiness = Readiness::new();
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let server = health::serve(
        ([127, 0, 0, 1], 0).into(),
        readiness.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await
    .expect("bind the health endpoint");
    assert_ne!(server.local_addr().port(), 0, "the real port is reported");
    Running {
        base: format!("http://{}", server.local_addr()),
        readiness,
        metrics,
        shutdown,
        server,
        http: http_client(),
    }
}

fn http_client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Running {
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn readyz(&self) -> (u16, Value) {
        let (status, content_type, body) = self.get("/readyz").await;
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        (status, serde_json::from_str(&body).unwrap())
    }
}

#[tokio::test]
async fn healthz_answers_ok_while_running() {
    let running = start().await;
    let (status, _, body) = running.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // Liveness does not depend on readiness.
    running.readiness.set("nats", false, "connection refused");
    assert_eq!(running.get("/healthz").await.0, 200);
    assert_eq!(running.get("/nowhere").await.0, 404);
}

#[tokio::test]
async fn readyz_follows_every_registered_check() {
    let running = start().await;
    let readiness = &running.readiness;
    readiness.register("nats");
    readiness.register("dcos:prod");

    let (status, body) = running.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["failing"], serde_json::json!(["dcos:prod", "nats"]));
    assert_eq!(body["checks"]["nats"]["detail"], "not checked yet");

    readiness.set("nats", true, "connected to nats://127.0.0.1:4222");
    readiness.set("dcos:prod", false, "login refused: 401".to_string());
    let (status, body) = running.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"], serde_json::json!(["dcos:prod"]));
    assert_eq!(body["checks"]["dcos:prod"]["ready"], false);
    assert_eq!(body["checks"]["dcos:prod"]["detail"], "login refused: 401");
    assert_eq!(body["checks"]["nats"]["ready"], true);
    assert!(body["checks"]["nats"]["since"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    readiness.set("dcos:prod", true, "token valid");
    readiness.set("events:prod", true, "streaming");
    let (status, body) = running.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["failing"], serde_json::json!([]));
    assert_eq!(body["checks"].as_object().unwrap().len(), 3);

    // A component that loses its dependency takes the process out of rotation again.
    readiness.set("events:prod", false, "idle deadline passed, reconnecting");
    let (status, body) = running.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"], serde_json::json!(["events:prod"]));
}

#[tokio::test]
async fn metrics_are_openmetrics_text() {
    let running = start().await;
    let m = &running.metrics;
    m.record_operation(
        Operation::CreateServerGroup,
        "SUCCEEDED",
        Duration::from_secs(4),
    );
    m.record_dcos_call(
        "prod",
        &endpoint_template("POST", "/service/marathon/v2/apps"),
        Some(201),
        Duration::from_millis(40),
    );
    m.event_in("prod", "deployment_success");
    m.set_instances("prod", "UP", 7);

    let (status, content_type, body) = running.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, METRICS_CONTENT_TYPE);
    for expected in [
        "# TYPE dcos_driver_operations counter",
        "dcos_driver_operations_total{operation=\"CREATE_SERVER_GROUP\",status=\"SUCCEEDED\"} 1",
        "# TYPE dcos_driver_operation_duration_seconds histogram",
        "dcos_driver_dcos_requests_total{account=\"prod\",endpoint=\"POST /v2/apps\",status=\"201\"} 1",
        "dcos_driver_marathon_events_received_total{account=\"prod\",event_type=\"deployment_success\"} 1",
        "dcos_driver_instances{account=\"prod\",state=\"UP\"} 7",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in\n{body}");
    }
    assert!(body.ends_with("# EOF\n"));

    // Recording after the first scrape shows up in the next one.
    m.set_instances("prod", "UP", 6);
    let (_, _, body) = running.get("/metrics").await;
    assert!(body.contains("dcos_driver_instances{account=\"prod\",state=\"UP\"} 6"));
}

#[tokio::test]
async fn shutdown_stops_the_server_and_frees_the_port() {
    let running = start().await;
    let addr = running.server.local_addr();
    assert_eq!(running.get("/healthz").await.0, 200);
    running.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.server.stopped())
        .await
        .expect("server stops after cancel")
        .expect("server ended cleanly");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens any more"
    );
    // The port can be bound again, and a taken port is reported at bind time.
    let taken = tokio::net::TcpListener::bind(addr).await.unwrap();
    let err = health::serve(
        addr,
        Readiness::new(),
        Metrics::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    drop(taken);
}
