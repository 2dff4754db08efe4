//! The NATS service API against a real nats-server, with a plain NATS client as the caller.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Message, RequestErrorKind};
use dcos_driver::bus::{self, BusSettings, TaskDocument, TaskStatus, TaskStore};
use dcos_driver::testkit::NatsServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Sends a request, retrying while the service is not registered yet (no responders).
async fn request(client: &async_nats::Client, subject: &str, body: &str) -> Message {
    for _ in 0..100 {
        match client
            .request(subject.to_string(), body.to_string().into())
            .await
        {
            Ok(reply) => return reply,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no answer on {subject}");
}

fn json_of(message: &Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap()
}

/// The `(Nats-Service-Error-Code, Nats-Service-Error)` headers of an error answer.
fn service_error(message: &Message) -> (String, String) {
    let headers = message
        .headers
        .as_ref()
        .expect("an error answer has headers");
    let get = |name: &str| headers.get(name).unwrap().as_str().to_string();
    (get("Nats-Service-Error-Code"), get("Nats-Service-Error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_is_discoverable_and_answers_its_endpoints() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let shutdown = CancellationToken::new();
    let status: bus::StatusFn = Arc::new(|| json!({"ready": true, "components": []}));
    let service = tokio::spawn(bus::start_service(client.clone(), status, shutdown.clone()));

    let pong = json_of(&request(&client, "$SRV.PING.dcos-driver", "").await);
    assert_eq!(pong["name"], "dcos-driver");
    assert_eq!(pong["version"], env!("CARGO_PKG_VERSION"));
    let pong = json_of(&request(&client, "$SRV.PING", "").await);
    assert_eq!(pong["name"], "dcos-driver");

    let info = json_of(&request(&client, "$SRV.INFO.dcos-driver", "").await);
    assert!(!info["description"].as_str().unwrap().is_empty());
    let subjects: HashSet<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        HashSet::from([
            "dcos.driver.task",
            "dcos.driver.status",
            "dcos.driver.operations"
        ])
    );

    // Before JetStream is set up the task bucket is missing: unavailable, not fatal.
    let early = request(&client, "dcos.driver.task", "t-1").await;
    assert_eq!(service_error(&early).0, "503");

    let js = async_nats::jetstream::new(client.clone());
    bus::setup::setup(&js, &BusSettings::default())
        .await
        .unwrap();
    let stored = TaskDocument::new("t-1", "prod", "RUN_JOB", TaskStatus::Accepted, "accepted");
    TaskStore::open(client.clone())
        .await
        .unwrap()
        .put(&stored)
        .await
        .unwrap();
    let found = request(&client, "dcos.driver.task", " t-1\n").await;
    assert!(found.headers.is_none(), "{:?}", found.headers);
    let found: TaskDocument = serde_json::from_slice(&found.payload).unwrap();
    assert_eq!(found, stored);

    let missing = request(&client, "dcos.driver.task", "nope").await;
    assert_eq!(
        service_error(&missing),
        ("404".to_string(), "no task nope".to_string())
    );
    assert!(missing.payload.is_empty());
    let malformed = request(&client, "dcos.driver.task", "a b").await;
    assert_eq!(service_error(&malformed).0, "400");

    let status = json_of(&request(&client, "dcos.driver.status", "").await);
    assert_eq!(status, json!({"ready": true, "components": []}));

    let operations = json_of(&request(&client, "dcos.driver.operations", "").await);
    let operations = operations.as_array().unwrap();
    assert_eq!(operations.len(), 34);
    let scaling = operations
        .iter()
        .find(|op| op["name"] == "UPSERT_SCALING_POLICY")
        .unwrap();
    assert_eq!(scaling["supported"], false);
    assert!(scaling["reason"].as_str().unwrap().contains("autoscaler"));
    let resize = operations
        .iter()
        .find(|op| op["name"] == "RESIZE_SERVER_GROUP")
        .unwrap();
    assert_eq!(
        resize,
        &json!({"name": "RESIZE_SERVER_GROUP", "subject": "dcos.op.<account>.resize_server_group", "supported": true})
    );

    let stats = json_of(&request(&client, "$SRV.STATS.dcos-driver", "").await);
    let task_stats = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "task")
        .unwrap()
        .clone();
    assert_eq!(task_stats["num_requests"], 4, "{task_stats}");
    assert_eq!(task_stats["num_errors"], 3, "{task_stats}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("the service stops at shutdown")
        .unwrap()
        .unwrap();
    // The service's subscriptions go when its tasks are dropped: soon after, not at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ping = client.request("$SRV.PING.dcos-driver", "".into());
        match tokio::time::timeout(Duration::from_millis(500), ping).await {
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "still registered after shutdown: {other:?}"
            ),
        }
    }
}
