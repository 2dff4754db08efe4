//! The operation worker against a real nats-server: lifecycle, idempotency, redelivery, bad input,
//! sharing, restarts, graceful shutdown and setup.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use dcos_driver::bus::{
    self, BoxFuture, BusSettings, Executor, Outcome, Progress, Request, TaskDocument, TaskError,
    TaskStatus,
};
use dcos_driver::config::Config;
use dcos_driver::metrics::Metrics;
use dcos_driver::testkit::NatsServer;
use dcos_driver::vocabulary::{ErrorCode, Operation};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------- helpers ----------

fn config() -> Arc<Config> {
    Arc::new(
        Config::from_toml(
            Path::new("test.toml"),
            "[[account]]\nname = \"prod\"\nmarathon_urls = [\"http://127.0.0.1:1\"]\n",
            |_| None,
        )
        .unwrap(),
    )
}

fn settings() -> BusSettings {
    BusSettings {
        max_concurrent_operations: 8,
        max_request_bytes: 1024,
        ack_wait: Duration::from_secs(2),
        fetch_expires: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(3),
        store_retry_delay: Duration::from_millis(200),
        panic_retry_delay: Duration::from_millis(200),
        ..BusSettings::default()
    }
}

/// Behaviour chosen by the request body: `mode` = succeed | fail | reject | retry_once | unsupported;
/// `sleepMs` sleeps before finishing; `sleepFirstMs` sleeps only on a first run (no `previous`).
#[derive(Default)]
struct TestExecutor {
    calls: AtomicUsize,
    requests: Mutex<Vec<Request>>,
}

impl TestExecutor {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Executor for TestExecutor {
    fn execute<'a>(
        &'a self,
        request: &'a Request,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.requests.lock().push(request.clone());
            let body = &request.body;
            progress
                .update("working", Some(json!({"step": 1, "of": 2})))
                .await;
            if let Some(ms) = body["sleepMs"].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(ms) = body["sleepFirstMs"].as_u64() {
                if request.previous.is_none() {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
            let mode = body["mode"].as_str().unwrap_or("succeed");
            if mode == "panic_once" && request.delivery == 1 {
                panic!("boom");
            }
            match mode {
                "fail" => Outcome::Failed(TaskError::new(ErrorCode::NotFound, "no such app")),
                "reject" => Outcome::Rejected(
                    TaskError::new(ErrorCode::InvalidRequest, "targetSize must be ≥ 0")
                        .with_details(json!({"field": "targetSize"})),
                ),
                "unsupported" => Outcome::Unsupported("not on this cluster".into()),
                "retry_once" if request.delivery == 1 => Outcome::Retry {
                    after: Duration::from_millis(200),
                    reason: "locked by deployment".into(),
                },
                _ => Outcome::Succeeded(json!({
                    "resumed": request.previous.is_some(),
                    "redelivered": request.redelivered,
                })),
            }
        })
    }
}

struct Running {
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), bus::BusError>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn connect(server: &NatsServer) -> async_nats::Client {
    let nats = dcos_driver::config::NatsConfig {
        url: server.url(),
        ..Default::default()
    };
    bus::connect(&nats).await.unwrap()
}

fn start(
    client: async_nats::Client,
    executor: Arc<TestExecutor>,
    settings: BusSettings,
) -> Running {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle =
        tokio::spawn(
            async move { bus::serve_with(client, &config(), settings, executor, token).await },
        );
    Running { shutdown, handle }
}

/// Publishes a request with JetStream and returns the stream sequence.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: Option<&str>,
    reply_to: Option<&str>,
    body: impl Into<bytes::Bytes>,
) -> u64 {
    let body: bytes::Bytes = body.into();
    let mut headers = HeaderMap::new();
    if let Some(id) = id {
        headers.insert("Nats-Msg-Id", id);
    }
    if let Some(reply) = reply_to {
        headers.insert("Dcos-Reply-To", reply);
    }
    for _ in 0..100 {
        match js
            .publish_with_headers(subject.to_string(), headers.clone(), body.clone())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(ack) => return ack.sequence,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("cannot publish on {subject}");
}

async fn tasks(js: &jetstream::Context) -> kv::Store {
    for _ in 0..100 {
        if let Ok(kv) = js.get_key_value("dcos_tasks").await {
            return kv;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bucket dcos_tasks never appeared");
}

async fn doc(kv: &kv::Store, id: &str) -> Option<TaskDocument> {
    kv.get(id)
        .await
        .ok()
        .flatten()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

/// Waits until the task's document satisfies `pred`.
async fn wait_doc(
    kv: &kv::Store,
    id: &str,
    within: Duration,
    pred: impl Fn(&TaskDocument) -> bool,
) -> TaskDocument {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(d) = doc(kv, id).await {
            if pred(&d) {
                return d;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} did not reach the expected state in {within:?}: {:?}",
            doc(kv, id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_running(kv: &kv::Store, id: &str) -> TaskDocument {
    wait_doc(kv, id, Duration::from_secs(10), |d| {
        d.status == TaskStatus::Running
    })
    .await
}

async fn wait_terminal(kv: &kv::Store, id: &str) -> TaskDocument {
    wait_doc(kv, id, Duration::from_secs(15), |d| d.status.is_terminal()).await
}

/// Statuses received on a subscription until a terminal one.
async fn statuses(sub: &mut async_nats::Subscriber) -> Vec<TaskStatus> {
    let mut seen = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(15), sub.next()).await {
        let d: TaskDocument = serde_json::from_slice(&msg.payload).unwrap();
        seen.push(d.status);
        if d.status.is_terminal() {
            break;
        }
    }
    seen
}

async fn consumer_idle(js: &jetstream::Context) {
    let stream = js.get_stream("DCOS_OPS").await.unwrap();
    for _ in 0..100 {
        let mut c: jetstream::consumer::PullConsumer =
            stream.get_consumer("dcos-driver").await.unwrap();
        let info = c.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the consumer still has pending or unacked messages");
}

/// A server, a client, and one worker with a fresh [`TestExecutor`].
struct Harness {
    /// Kept so the server lives as long as the harness.
    _server: NatsServer,
    client: async_nats::Client,
    js: jetstream::Context,
    executor: Arc<TestExecutor>,
    worker: Running,
    kv: kv::Store,
}

impl Harness {
    async fn start(settings: BusSettings) -> Harness {
        let server = NatsServer::start();
        let client = connect(&server).await;
        let js = jetstream::new(client.clone());
        let executor = Arc::new(TestExecutor::default());
        let worker = start(client.clone(), executor.clone(), settings);
        let kv = tasks(&js).await;
        Harness {
            _server: server,
            client,
            js,
            executor,
            worker,
            kv,
        }
    }
}

/// Publishes a request with a task id and no reply subject.
async fn send(js: &jetstream::Context, subject: &str, id: &str, body: &'static str) -> u64 {
    publish(js, subject, Some(id), None, body).await
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_running_then_one_terminal_everywhere() {
    let h = Harness::start(settings()).await;
    let Harness {
        client,
        js,
        executor,
        kv,
        worker,
        ..
    } = h;

    let mut on_task = client.subscribe("dcos.task.prod.t-1").await.unwrap();
    let inbox = client.new_inbox();
    let mut on_inbox = client.subscribe(inbox.clone()).await.unwrap();
    client.flush().await.unwrap();
    publish(
        &js,
        "dcos.op.prod.resize_server_group",
        Some("t-1"),
        Some(&inbox),
        "{\"targetSize\":3}",
    )
    .await;

    use TaskStatus::*;
    assert_eq!(
        statuses(&mut on_task).await,
        vec![Accepted, Running, Succeeded]
    );
    assert_eq!(
        statuses(&mut on_inbox).await,
        vec![Accepted, Running, Succeeded]
    );
    let d = wait_terminal(&kv, "t-1").await;
    assert_eq!(d.status, Succeeded);
    assert_eq!(d.operation, "RESIZE_SERVER_GROUP");
    assert_eq!(d.account, "prod");
    assert_eq!(d.progress, Some(json!({"step": 1, "of": 2})));
    assert_eq!(
        d.result,
        Some(json!({"resumed": false, "redelivered": false}))
    );
    assert!(d.ended_at.is_some());
    let history: Vec<_> = d.history.iter().map(|h| h.status).collect();
    assert_eq!(history, vec![Accepted, Running, Succeeded]);
    let req = executor.requests.lock()[0].clone();
    assert_eq!(req.operation, Operation::ResizeServerGroup);
    assert_eq!(req.body, json!({"targetSize": 3}));
    consumer_idle(&js).await;

    // A failing operation ends FAILED with its error.
    send(
        &js,
        "dcos.op.prod.destroy_server_group",
        "t-2",
        "{\"mode\":\"fail\"}",
    )
    .await;
    let d = wait_terminal(&kv, "t-2").await;
    assert_eq!(d.status, Failed);
    assert_eq!(d.error.unwrap().code, ErrorCode::NotFound);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_request_is_answered_by_the_publish_ack() {
    let h = Harness::start(settings()).await;
    let Harness {
        client, kv, worker, ..
    } = h;
    let reply = loop {
        match client.request("dcos.op.prod.run_job", "{}".into()).await {
            Ok(reply) => break reply,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let ack: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(ack["stream"], "DCOS_OPS");
    let seq = ack["seq"].as_u64().unwrap();
    // Without a Nats-Msg-Id the task id comes from the stream sequence the client was told.
    let d = wait_terminal(&kv, &format!("auto-{seq}")).await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_msg_id_runs_once_even_after_it_finished() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    let executor = Arc::new(TestExecutor::default());
    let settings = BusSettings {
        duplicate_window: Duration::from_secs(1),
        ..settings()
    };
    let worker = start(client.clone(), executor.clone(), settings);
    let kv = tasks(&js).await;

    let body = "{\"sleepMs\":300}";
    publish(
        &js,
        "dcos.op.prod.resize_server_group",
        Some("dup"),
        None,
        body,
    )
    .await;
    publish(
        &js,
        "dcos.op.prod.resize_server_group",
        Some("dup"),
        None,
        body,
    )
    .await;
    let first = wait_terminal(&kv, "dup").await;
    assert_eq!(executor.calls(), 1, "JetStream dropped the duplicate");

    // After the duplicate window JetStream stores it again: the KV check stops it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut on_task = client.subscribe("dcos.task.prod.dup").await.unwrap();
    client.flush().await.unwrap();
    publish(
        &js,
        "dcos.op.prod.resize_server_group",
        Some("dup"),
        None,
        body,
    )
    .await;
    let again = tokio::time::timeout(Duration::from_secs(10), on_task.next())
        .await
        .unwrap()
        .unwrap();
    let again: TaskDocument = serde_json::from_slice(&again.payload).unwrap();
    assert_eq!(
        again, first,
        "the stored terminal document is published again"
    );
    consumer_idle(&js).await;
    assert_eq!(executor.calls(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_dying_mid_operation_is_resumed_by_the_next() {
    let server = NatsServer::start();
    let url = server.url();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());

    // Driver A runs on its own runtime so it can die abruptly, connection and all.
    let dying = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let executor_a = Arc::new(TestExecutor::default());
    let exec_a = executor_a.clone();
    dying.spawn(async move {
        let client = async_nats::connect(url).await.unwrap();
        bus::serve_with(
            client,
            &config(),
            settings(),
            exec_a,
            CancellationToken::new(),
        )
        .await
    });
    let kv = tasks(&js).await;
    send(
        &js,
        "dcos.op.prod.create_server_group",
        "resume-me",
        "{\"sleepFirstMs\":60000}",
    )
    .await;
    wait_running(&kv, "resume-me").await;
    dying.shutdown_background();

    let executor_b = Arc::new(TestExecutor::default());
    let worker = start(client.clone(), executor_b.clone(), settings());
    let d = wait_terminal(&kv, "resume-me").await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    assert_eq!(
        d.result,
        Some(json!({"resumed": true, "redelivered": true}))
    );
    assert_eq!(executor_b.calls(), 1);
    let req = executor_b.requests.lock()[0].clone();
    let previous = req
        .previous
        .expect("the next driver sees the stored document");
    assert_eq!(previous.status, TaskStatus::Running);
    assert!(req.delivery >= 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_kept_in_the_dlq_and_not_redelivered() {
    let h = Harness::start(settings()).await;
    let Harness {
        js,
        executor,
        kv,
        worker,
        ..
    } = h;

    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2000));
    let cases: Vec<(&str, Option<&str>, String, &str)> = vec![
        ("dcos.op.prod", Some("bad-subject"), "{}".into(), "subject"),
        (
            "dcos.op.prod.resize_server_group.extra",
            Some("bad-subject-2"),
            "{}".into(),
            "subject",
        ),
        (
            "dcos.op.prod.frobnicate",
            Some("bad-op"),
            "{}".into(),
            "subject.operation",
        ),
        (
            "dcos.op.prod.resize_server_group",
            Some("has.dots"),
            "{}".into(),
            "headers.Nats-Msg-Id",
        ),
        (
            "dcos.op.prod.resize_server_group",
            Some("too-big"),
            big,
            "body",
        ),
        (
            "dcos.op.prod.resize_server_group",
            Some("not-json"),
            "{nope".into(),
            "body",
        ),
        (
            "dcos.op.prod.resize_server_group",
            Some("not-object"),
            "[1,2]".into(),
            "body",
        ),
        (
            "dcos.op.prod.resize_server_group",
            Some("empty"),
            "".into(),
            "body",
        ),
        (
            "dcos.op.prod.resize_server_group",
            Some("op-rejects"),
            "{\"mode\":\"reject\"}".into(),
            "targetSize",
        ),
    ];
    let mut expected = Vec::new();
    for (subject, id, body, field) in &cases {
        let seq = publish(&js, subject, *id, None, body.clone()).await;
        let task_id = match id {
            Some(id) if !id.contains('.') => id.to_string(),
            _ => format!("auto-{seq}"),
        };
        expected.push((task_id, subject.to_string(), body.clone(), *field));
    }
    for (task_id, subject, _, field) in &expected {
        let d = wait_terminal(&kv, task_id).await;
        assert_eq!(d.status, TaskStatus::Rejected, "{subject}");
        // Malformed requests end at once; one the operation rejects keeps its earlier steps.
        let steps = if task_id == "op-rejects" { 3 } else { 1 };
        assert_eq!(d.history.len(), steps, "{task_id}: {:?}", d.history);
        let error = d.error.unwrap();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(
            error.details.unwrap()["field"],
            *field,
            "{subject}: {}",
            error.message
        );
        assert!(!error.message.is_empty());
    }
    consumer_idle(&js).await;

    // Every one is in the DLQ with its original bytes and why.
    let dlq = js.get_stream("DCOS_DLQ").await.unwrap();
    let mut entries = Vec::new();
    for seq in 1..=expected.len() as u64 {
        entries.push(dlq.get_raw_message(seq).await.unwrap());
    }
    for (task_id, subject, body, _) in &expected {
        let entry = entries
            .iter()
            .find(|m| m.headers.get("Dcos-Task-Id").map(|v| v.as_str()) == Some(task_id.as_str()))
            .unwrap_or_else(|| panic!("no DLQ entry for {task_id}"));
        assert_eq!(entry.subject.as_str(), "dcos.dlq.prod");
        assert_eq!(entry.payload.as_ref(), body.as_bytes());
        assert_eq!(
            entry.headers.get("Dcos-Original-Subject").unwrap().as_str(),
            subject
        );
        assert_eq!(
            entry.headers.get("Dcos-Error-Code").unwrap().as_str(),
            "INVALID_REQUEST"
        );
        assert!(!entry
            .headers
            .get("Dcos-Dlq-Reason")
            .unwrap()
            .as_str()
            .is_empty());
    }
    // Only the well-formed one reached the executor; nothing comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(executor.calls(), 1);
    assert_eq!(
        dlq.get_info().await.unwrap().state.messages,
        expected.len() as u64
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_unknown_account_end_without_the_executor() {
    let h = Harness::start(settings()).await;
    let Harness {
        js,
        executor,
        kv,
        worker,
        ..
    } = h;

    send(&js, "dcos.op.prod.upsert_scaling_policy", "unsup", "{}").await;
    send(&js, "dcos.op.staging.resize_server_group", "who", "{}").await;
    send(
        &js,
        "dcos.op.prod.resize_server_group",
        "op-unsup",
        "{\"mode\":\"unsupported\"}",
    )
    .await;
    let d = wait_terminal(&kv, "unsup").await;
    assert_eq!(d.status, TaskStatus::Unsupported);
    let error = d.error.unwrap();
    assert_eq!(error.code, ErrorCode::UnsupportedOperation);
    assert!(error.message.contains("autoscaler"), "{}", error.message);
    let d = wait_terminal(&kv, "who").await;
    assert_eq!(d.status, TaskStatus::Failed);
    assert_eq!(d.error.unwrap().code, ErrorCode::Forbidden);
    let d = wait_terminal(&kv, "op-unsup").await;
    assert_eq!(d.status, TaskStatus::Unsupported);
    assert_eq!(executor.calls(), 1);
    consumer_idle(&js).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_hands_the_message_back_and_runs_again() {
    let h = Harness::start(settings()).await;
    let Harness {
        js,
        executor,
        kv,
        worker,
        ..
    } = h;
    send(
        &js,
        "dcos.op.prod.resize_server_group",
        "again",
        "{\"mode\":\"retry_once\"}",
    )
    .await;
    let d = wait_terminal(&kv, "again").await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    assert_eq!(executor.calls(), 2);
    assert!(d
        .history
        .iter()
        .any(|h| h.message.contains("locked by deployment")));
    let second = executor.requests.lock()[1].clone();
    assert!(second.redelivered && second.previous.is_some());

    // A panicking operation does not take the worker down and the request is kept.
    send(
        &js,
        "dcos.op.prod.resize_server_group",
        "boom",
        "{\"mode\":\"panic_once\"}",
    )
    .await;
    let d = wait_terminal(&kv, "boom").await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    assert!(d.history.iter().any(|h| h.message.contains("panicked")));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_consumer_and_each_request_runs_once() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    let (a, b) = (
        Arc::new(TestExecutor::default()),
        Arc::new(TestExecutor::default()),
    );
    let worker_a = start(connect(&server).await, a.clone(), settings());
    let worker_b = start(connect(&server).await, b.clone(), settings());
    let kv = tasks(&js).await;
    // Let both bind before the burst.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..24 {
        publish(
            &js,
            "dcos.op.prod.update_instances",
            Some(&format!("many-{i}")),
            None,
            "{\"sleepMs\":200}",
        )
        .await;
    }
    for i in 0..24 {
        assert_eq!(
            wait_terminal(&kv, &format!("many-{i}")).await.status,
            TaskStatus::Succeeded
        );
    }
    consumer_idle(&js).await;
    let ids: Vec<String> = a
        .requests
        .lock()
        .iter()
        .chain(b.requests.lock().iter())
        .map(|r| r.task_id.clone())
        .collect();
    assert_eq!(ids.len(), 24, "each request ran exactly once");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 24);
    assert!(
        a.calls() > 0 && b.calls() > 0,
        "both workers took some: {} / {}",
        a.calls(),
        b.calls()
    );
    worker_a.stop().await;
    worker_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    let executor = Arc::new(TestExecutor::default());
    let worker = start(client.clone(), executor.clone(), settings());
    let kv = tasks(&js).await;
    send(&js, "dcos.op.prod.resize_server_group", "before", "{}").await;
    wait_terminal(&kv, "before").await;

    server.restart();
    send(&js, "dcos.op.prod.resize_server_group", "after", "{}").await;
    let d = wait_doc(&kv, "after", Duration::from_secs(30), |d| {
        d.status.is_terminal()
    })
    .await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_short_work_and_hands_back_long_work() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    // A long ack_wait: only the Nak can bring the long request back quickly.
    let slow = BusSettings {
        ack_wait: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(1500),
        ..settings()
    };
    let a = Arc::new(TestExecutor::default());
    let worker_a = start(connect(&server).await, a.clone(), slow.clone());
    let kv = tasks(&js).await;
    send(
        &js,
        "dcos.op.prod.resize_server_group",
        "short",
        "{\"sleepMs\":500}",
    )
    .await;
    send(
        &js,
        "dcos.op.prod.resize_server_group",
        "long",
        "{\"sleepFirstMs\":60000}",
    )
    .await;
    wait_running(&kv, "long").await;
    wait_running(&kv, "short").await;
    let stopping = tokio::time::Instant::now();
    worker_a.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10));
    // The short one finished within the grace period; the long one was handed back.
    assert_eq!(
        doc(&kv, "short").await.unwrap().status,
        TaskStatus::Succeeded
    );
    let handed = doc(&kv, "long").await.unwrap();
    assert_eq!(handed.status, TaskStatus::Running);
    assert!(handed
        .history
        .last()
        .unwrap()
        .message
        .contains("handed back"));

    let b = Arc::new(TestExecutor::default());
    let worker_b = start(client.clone(), b.clone(), slow);
    let d = wait_doc(&kv, "long", Duration::from_secs(10), |d| {
        d.status.is_terminal()
    })
    .await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    assert_eq!(b.calls(), 1);
    assert!(b.requests.lock()[0].previous.is_some());
    worker_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_concurrent_and_updates_what_exists() {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());

    // Existing objects with other settings, as an older version might have left them.
    js.create_stream(jetstream::stream::Config {
        name: "DCOS_OPS".into(),
        subjects: vec!["dcos.op.>".into()],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_consumer_on_stream(
        jetstream::consumer::pull::Config {
            durable_name: Some("dcos-driver".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(10),
            ..Default::default()
        },
        "DCOS_OPS",
    )
    .await
    .unwrap();

    let s = settings();
    let (r1, r2, r3) = tokio::join!(
        bus::setup::setup(&js, &s),
        bus::setup::setup(&js, &s),
        bus::setup::setup(&js, &s)
    );
    r1.unwrap();
    r2.unwrap();
    r3.unwrap();
    bus::setup::setup(&js, &s).await.unwrap();

    let mut ops = js.get_stream("DCOS_OPS").await.unwrap();
    assert_eq!(
        ops.info().await.unwrap().config.duplicate_window,
        Duration::from_secs(3600)
    );
    let mut consumer: jetstream::consumer::PullConsumer =
        ops.get_consumer("dcos-driver").await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.config.ack_wait, s.ack_wait);
    assert_eq!(info.config.max_ack_pending, s.max_ack_pending);
    let mut events = js.get_stream("DCOS_EVENTS").await.unwrap();
    let events = events.info().await.unwrap().config.clone();
    assert_eq!(events.subjects, vec!["dcos.event.>", "dcos.discovery.>"]);
    assert_eq!(events.max_age, s.events_max_age);
    js.get_stream("DCOS_DLQ").await.unwrap();
    for bucket in [
        "dcos_tasks",
        "dcos_instances",
        "dcos_overlays",
        "dcos_snapshots",
    ] {
        js.get_key_value(bucket).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_operation_outlives_ack_wait_without_redelivery() {
    let h = Harness::start(settings()).await;
    let Harness {
        client,
        js,
        executor,
        kv,
        worker,
        ..
    } = h;
    // A second worker that would get the message if it were redelivered.
    let other = Arc::new(TestExecutor::default());
    let other_worker = start(client.clone(), other.clone(), settings());
    // Three times ack_wait (2 s): only the worker's progress acks keep it from being redelivered.
    send(
        &js,
        "dcos.op.prod.update_instances",
        "long-run",
        "{\"sleepMs\":6000}",
    )
    .await;
    let d = wait_terminal(&kv, "long-run").await;
    assert_eq!(d.status, TaskStatus::Succeeded);
    assert_eq!(
        executor.calls() + other.calls(),
        1,
        "ran once, never redelivered"
    );
    assert_eq!(
        d.result,
        Some(json!({"resumed": false, "redelivered": false}))
    );
    worker.stop().await;
    other_worker.stop().await;
}

/// Waits until the metrics text has every one of `lines`.
async fn wait_metrics(metrics: &Metrics, lines: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics.encode();
        let missing: Vec<_> = lines.iter().filter(|l| !text.contains(*l)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_terminal_tasks_dead_letters_and_publish_errors() {
    let metrics = Metrics::new();
    let h = Harness::start(settings().with_metrics(metrics.clone())).await;
    let Harness { js, kv, worker, .. } = h;

    send(
        &js,
        "dcos.op.prod.resize_server_group",
        "m-ok",
        "{\"sleepMs\":300}",
    )
    .await;
    send(
        &js,
        "dcos.op.prod.destroy_server_group",
        "m-fail",
        "{\"mode\":\"fail\"}",
    )
    .await;
    send(&js, "dcos.op.prod.resize_server_group", "m-bad-body", "[1]").await;
    send(&js, "dcos.op.prod.no_such_operation", "m-unknown", "{}").await;
    send(&js, "dcos.op.prod.upsert_scaling_policy", "m-unsup", "{}").await;
    send(&js, "dcos.op.staging.run_job", "m-forbidden", "{}").await;
    for id in [
        "m-ok",
        "m-fail",
        "m-bad-body",
        "m-unknown",
        "m-unsup",
        "m-forbidden",
    ] {
        wait_terminal(&kv, id).await;
    }
    wait_metrics(
        &metrics,
        &[
            "dcos_driver_operations_total{operation=\"RESIZE_SERVER_GROUP\",status=\"SUCCEEDED\"} 1",
            "dcos_driver_operations_total{operation=\"DESTROY_SERVER_GROUP\",status=\"FAILED\"} 1",
            "dcos_driver_operations_total{operation=\"RESIZE_SERVER_GROUP\",status=\"REJECTED\"} 1",
            "dcos_driver_operations_total{operation=\"UPSERT_SCALING_POLICY\",status=\"UNSUPPORTED\"} 1",
            "dcos_driver_operations_total{operation=\"RUN_JOB\",status=\"FAILED\"} 1",
            "dcos_driver_operation_duration_seconds_count{operation=\"RESIZE_SERVER_GROUP\"} 2",
            // The malformed body and the unknown operation.
            "dcos_driver_requests_dead_lettered_total{reason=\"INVALID_REQUEST\"} 2",
        ],
    )
    .await;
    let text = metrics.encode();
    assert!(!text.contains("NO_SUCH_OPERATION"), "{text}");
    // The successful one slept 300 ms: it lands above the 0.25 s bucket.
    assert!(
        text.contains(
            "dcos_driver_operation_duration_seconds_bucket{le=\"0.25\",operation=\"RESIZE_SERVER_GROUP\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("nats_publish_errors_total{"), "{text}");

    // Without its stream, a dead-letter entry cannot be stored: counted, and the request kept.
    js.delete_stream("DCOS_DLQ").await.unwrap();
    send(&js, "dcos.op.prod.resize_server_group", "m-dlq-lost", "[2]").await;
    wait_metrics(
        &metrics,
        &["dcos_driver_nats_publish_errors_total{kind=\"dlq\"}"],
    )
    .await;
    assert!(doc(&kv, "m-dlq-lost").await.is_none());
    worker.stop().await;
}
