//! End to end: the real `dcos-driver` binary as child processes (`serve`, and the CLI client) against a
//! real nats-server and the simulator (in-process, so the tests can look at its truth and stop it).
//!
//! - SIGTERM mid-operation: the worker hands the request back (or finishes it within the grace
//!   period), the process exits 0, and a restarted `serve` brings the task to exactly one terminal
//!   document with exactly one app created.
//! - `/healthz`, `/readyz` (ready with `nats` and `dcos:e2e`; 503 naming `dcos:e2e` once the simulator
//!   is gone), `/metrics` after operations.
//! - The NATS service API (`$SRV.PING.dcos-driver`, `dcos.driver.status`).
//! - The CLI: `op … --wait`, an account the driver does not know, `task <id> --json`.
//!
//! Every child is killed on drop; every wait polls against a deadline.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use dcos_driver::sim::{self, SimConfig, SimHandle};
use dcos_driver::testkit::{free_port, NatsServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dcos-driver");
const ACCOUNT: &str = "e2e";

/// The environment variables the binary reads that must not leak in from the caller's shell.
const ENV_OVERRIDES: [&str; 3] = [
    "DCOS_DRIVER_NATS_URL",
    "DCOS_DRIVER_CONFIG",
    "DCOS_DRIVER_NATS_TOKEN",
];

/// A `dcos-driver serve` child with its own configuration file and log, killed on drop.
struct Serve {
    dir: tempfile::TempDir,
    http_port: u16,
    child: Option<Child>,
    starts: usize,
}

impl Serve {
    /// Writes the configuration (account `e2e` rooted at `/e2e` on the simulator) and starts `serve`.
    fn start(nats_url: &str, sim_url: &str, shutdown_grace_seconds: u64) -> Serve {
        let dir = tempfile::Builder::new()
            .prefix("dcos-driver-e2e-")
            .tempdir()
            .expect("temp dir");
        let http_port = free_port();
        let config = format!(
            r#"[nats]
url = "{nats_url}"

[driver]
http_listen = "127.0.0.1:{http_port}"
events_enabled = false
shutdown_grace_seconds = {shutdown_grace_seconds}
probe_interval_seconds = 1

[[account]]
name = "{ACCOUNT}"
marathon_urls = ["{sim_url}"]
metronome_url = "{sim_url}"
root_group = "/{ACCOUNT}"
request_timeout_seconds = 5
"#
        );
        std::fs::write(dir.path().join("dcos-driver.toml"), config).expect("write the config");
        let mut serve = Serve {
            dir,
            http_port,
            child: None,
            starts: 0,
        };
        serve.spawn();
        serve
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "serve is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("create the log");
        let mut command = Command::new(BIN);
        for key in ENV_OVERRIDES {
            command.env_remove(key);
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("dcos-driver.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start dcos-driver serve");
        self.child = Some(child);
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.dir.path().join(format!("serve-{start}.log"))
    }

    /// Every log of this `serve` (all its starts), for failure messages.
    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                format!("--- serve start {n} ---\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("serve is running")
    }

    /// Sends SIGTERM (through `kill`: neither libc nor nix is a dependency).
    async fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit, at most `within`.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("serve is running");
        match timeout(within, child.wait()).await {
            Ok(status) => {
                self.child = None;
                status.expect("wait for serve")
            }
            Err(_) => panic!(
                "serve did not exit within {within:?} of SIGTERM\n{}",
                self.logs()
            ),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `GET path` → (status, body); `None` while nothing listens.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = http()
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Polls `/readyz` until it answers 200.
    async fn ready(&self) -> Value {
        let got = poll(Duration::from_secs(30), || async {
            match self.get("/readyz").await {
                Some((200, body)) => serde_json::from_str::<Value>(&body).ok(),
                _ => None,
            }
        })
        .await;
        got.unwrap_or_else(|| panic!("serve never became ready\n{}", self.logs()))
    }
}

fn http() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// Calls `probe` every 100 ms until it returns `Some` or `within` has passed.
async fn poll<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// NATS, the in-process simulator and a connection to NATS.
struct Stack {
    nats: NatsServer,
    sim: Option<SimHandle>,
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Stack {
    async fn start(time_scale: f64) -> Stack {
        let nats = NatsServer::start();
        let sim = sim::spawn(SimConfig {
            time_scale,
            ..SimConfig::instant()
        })
        .await
        .expect("start the simulator");
        let client = async_nats::connect(nats.url()).await.expect("connect NATS");
        let js = jetstream::new(client.clone());
        Stack {
            nats,
            sim: Some(sim),
            client,
            js,
        }
    }

    fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("the simulator runs")
    }

    fn serve(&self, shutdown_grace_seconds: u64) -> Serve {
        Serve::start(&self.nats.url(), &self.sim().url(), shutdown_grace_seconds)
    }

    /// Publishes a request the way any client would; returns the JetStream ack's sequence.
    async fn publish(&self, operation: &str, task_id: &str, body: &Value) -> u64 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", task_id);
        self.js
            .publish_with_headers(
                format!("dcos.op.{ACCOUNT}.{operation}"),
                headers,
                serde_json::to_vec(body).unwrap().into(),
            )
            .await
            .expect("publish")
            .await
            .expect("JetStream stores the request")
            .sequence
    }

    async fn tasks(&self) -> kv::Store {
        self.js
            .get_key_value("dcos_tasks")
            .await
            .expect("serve created KV dcos_tasks")
    }

    /// The stored task document, if any.
    async fn task(&self, task_id: &str) -> Option<Value> {
        let bytes = self.tasks().await.get(task_id).await.ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// Polls KV until the task document satisfies `accept`.
    async fn task_where(
        &self,
        task_id: &str,
        within: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        poll(within, || async {
            self.task(task_id).await.filter(|doc| accept(doc))
        })
        .await
    }

    /// App ids the simulator holds under the account's root group.
    fn apps(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sim()
            .sim
            .marathon
            .app_ids()
            .into_iter()
            .filter(|id| id.starts_with(&format!("/{ACCOUNT}/")))
            .collect();
        ids.sort();
        ids
    }
}

fn status(doc: &Value) -> &str {
    doc["status"].as_str().unwrap_or("")
}

fn is_terminal(doc: &Value) -> bool {
    matches!(
        status(doc),
        "SUCCEEDED" | "FAILED" | "REJECTED" | "UNSUPPORTED"
    )
}

/// A server group with health checks: at time scale 1 its deployment takes about 5 s (two launch
/// steps of 1 s, then the first health result 3 s after RUNNING).
fn create_body() -> Value {
    json!({
        "application": "e2e",
        "stack": "web",
        "region": "",
        "desiredCapacity": 2,
        "cmd": "python3 -m http.server $PORT0",
        "cpus": 0.1,
        "mem": 64,
        "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0,
                          "gracePeriodSeconds": 3, "intervalSeconds": 5}],
    })
}

/// Every document published on the task's subject, collected in the background.
fn collect_updates(
    mut subscriber: async_nats::Subscriber,
) -> std::sync::Arc<parking_lot::Mutex<Vec<Value>>> {
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            if let Ok(doc) = serde_json::from_slice::<Value>(&message.payload) {
                sink.lock().push(doc);
            }
        }
    });
    seen
}

/// The SIGTERM scenario: a create whose deployment outlasts (or not) the grace period.
///
/// Returns whether the first `serve` handed the request back (true) or finished it (false).
async fn sigterm_mid_create(time_scale: f64, grace_seconds: u64) -> bool {
    let stack = Stack::start(time_scale).await;
    let mut serve = stack.serve(grace_seconds);
    serve.ready().await;

    let task_id = format!("e2e-sigterm-{grace_seconds}");
    let updates = collect_updates(
        stack
            .client
            .subscribe(format!("dcos.task.{ACCOUNT}.{task_id}"))
            .await
            .unwrap(),
    );
    stack.client.flush().await.unwrap();
    stack
        .publish("create_server_group", &task_id, &create_body())
        .await;

    // Mid-operation: RUNNING in KV, the app created, its deployment still going.
    let running = stack
        .task_where(&task_id, Duration::from_secs(20), |d| {
            status(d) == "RUNNING" && d["progress"]["deploymentId"].is_string()
        })
        .await
        .unwrap_or_else(|| panic!("the create never reported its deployment\n{}", serve.logs()));
    assert!(
        !stack.sim().sim.marathon.deployment_ids().is_empty(),
        "the deployment is still running at SIGTERM: {running}"
    );

    let sent = Instant::now();
    serve.sigterm().await;
    let exit = serve.exited(Duration::from_secs(grace_seconds + 10)).await;
    assert!(
        exit.success(),
        "serve exits 0 after SIGTERM: {exit}\n{}",
        serve.logs()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(grace_seconds + 10),
        "exited within the grace period + margin"
    );

    let after_exit = stack
        .task(&task_id)
        .await
        .expect("the task document is kept");
    let handed_back = !is_terminal(&after_exit);
    if handed_back {
        assert_eq!(status(&after_exit), "RUNNING", "{after_exit}");
        let log = serve.logs();
        assert!(
            log.contains("handing the rest back"),
            "serve says it handed the request back\n{log}"
        );
    } else {
        assert_eq!(status(&after_exit), "SUCCEEDED", "{after_exit}");
    }

    // A new driver: the request reaches its terminal state (resumed if it was handed back).
    serve.spawn();
    let done = stack
        .task_where(&task_id, Duration::from_secs(40), is_terminal)
        .await
        .unwrap_or_else(|| panic!("no terminal document after the restart\n{}", serve.logs()));
    assert_eq!(status(&done), "SUCCEEDED", "{done}");
    eprintln!(
        "grace {grace_seconds} s: after the first serve exited: {after_exit}\nterminal: {done}"
    );
    if handed_back {
        assert_eq!(done["result"]["resumed"], true, "{done}");
    }
    // Let a duplicate terminal publication (if any) arrive before counting.
    serve.ready().await;
    sleep(Duration::from_millis(1500)).await;
    let terminal: Vec<Value> = updates
        .lock()
        .iter()
        .filter(|d| is_terminal(d))
        .cloned()
        .collect();
    assert_eq!(
        terminal.len(),
        1,
        "exactly one terminal document on dcos.task.{ACCOUNT}.{task_id}: {terminal:#?}"
    );
    assert_eq!(terminal[0]["status"], "SUCCEEDED");

    let apps = stack.apps();
    assert_eq!(
        apps,
        vec![done["result"]["appId"].as_str().unwrap().to_string()],
        "exactly one app, no second create"
    );
    assert_eq!(apps[0], "/e2e/e2e-web-v000");
    let tasks = stack.sim().sim.marathon.app_tasks(&apps[0]);
    assert_eq!(tasks.len(), 2, "the app runs its 2 instances: {tasks:?}");
    handed_back
}

/// Grace 1 s, deployment ~10 s: the worker hands the request back and the next `serve` resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_operation_hands_back_and_the_restart_finishes_it() {
    assert!(
        sigterm_mid_create(2.0, 1).await,
        "the request was handed back"
    );
}

/// Grace 20 s, deployment ~3 s: the in-flight request finishes before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_operation_finishes_within_the_grace_period() {
    assert!(!sigterm_mid_create(0.6, 20).await, "the request finished");
}

/// `/healthz`, `/readyz`, `/metrics` and the NATS service API of a running `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_the_service_api() {
    let mut stack = Stack::start(0.0).await;
    let serve = stack.serve(5);

    let (code, _) = poll(Duration::from_secs(30), || serve.get("/healthz"))
        .await
        .unwrap_or_else(|| panic!("/healthz never answered\n{}", serve.logs()));
    assert_eq!(code, 200);
    let report = serve.ready().await;
    assert_eq!(report["status"], "ready", "{report}");
    for check in ["nats", "dcos:e2e"] {
        assert_eq!(report["checks"][check]["ready"], true, "{check}: {report}");
    }

    // The NATS service API. It starts a moment after the readiness checks pass (serve spawns it
    // after the DC/OS probes), so the first PING may meet no responder yet.
    let pong = poll(Duration::from_secs(10), || async {
        timeout(
            Duration::from_secs(2),
            stack.client.request("$SRV.PING.dcos-driver", "".into()),
        )
        .await
        .ok()?
        .ok()
    })
    .await
    .unwrap_or_else(|| panic!("$SRV.PING.dcos-driver never answered\n{}", serve.logs()));
    let pong: Value = serde_json::from_slice(&pong.payload).unwrap();
    assert_eq!(pong["name"], "dcos-driver", "{pong}");
    let status_answer = timeout(
        Duration::from_secs(5),
        stack.client.request("dcos.driver.status", "".into()),
    )
    .await
    .expect("status answered in time")
    .expect("status answered");
    let status_report: Value = serde_json::from_slice(&status_answer.payload).unwrap();
    assert_eq!(status_report["status"], "ready", "{status_report}");
    assert_eq!(status_report["checks"]["dcos:e2e"]["ready"], true);
    assert_eq!(status_report["checks"]["nats"]["ready"], true);

    // Two operations, then the counters.
    stack
        .publish("create_server_group", "e2e-metrics-create", &create_body())
        .await;
    let created = stack
        .task_where("e2e-metrics-create", Duration::from_secs(20), is_terminal)
        .await
        .unwrap_or_else(|| panic!("create did not finish\n{}", serve.logs()));
    assert_eq!(status(&created), "SUCCEEDED", "{created}");
    stack
        .publish(
            "resize_server_group",
            "e2e-metrics-resize",
            &json!({"serverGroupName": "e2e-web-v000", "region": "", "capacity": {"desired": 3}}),
        )
        .await;
    let resized = stack
        .task_where("e2e-metrics-resize", Duration::from_secs(20), is_terminal)
        .await
        .unwrap_or_else(|| panic!("resize did not finish\n{}", serve.logs()));
    assert_eq!(status(&resized), "SUCCEEDED", "{resized}");

    let expected =
        r#"dcos_driver_operations_total{operation="RESIZE_SERVER_GROUP",status="SUCCEEDED"} 1"#;
    let mut metrics = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics.contains(expected) && Instant::now() < deadline {
        metrics = serve
            .get("/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains(expected),
        "/metrics lacks `{expected}`:\n{metrics}"
    );
    let dcos_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("dcos_driver_dcos_requests_total{"))
        .collect();
    assert!(
        !dcos_lines.is_empty() && dcos_lines.iter().all(|l| l.contains(r#"account="e2e""#)),
        "DC/OS calls are counted per account: {dcos_lines:#?}"
    );

    // The cluster goes away: not ready, naming it.
    stack.sim.take().expect("the simulator runs").stop().await;
    let not_ready = poll(Duration::from_secs(15), || async {
        match serve.get("/readyz").await {
            Some((503, body)) => Some(body),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|| panic!("/readyz never turned 503\n{}", serve.logs()));
    let report: Value = serde_json::from_str(&not_ready).unwrap();
    assert_eq!(report["failing"], json!(["dcos:e2e"]), "{report}");
    assert_eq!(report["checks"]["nats"]["ready"], true, "{report}");
    // Liveness does not depend on the cluster.
    assert_eq!(serve.get("/healthz").await.map(|(c, _)| c), Some(200));
}

/// Runs the CLI to its end (at most 60 s): (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    for key in ENV_OVERRIDES {
        command.env_remove(key);
    }
    let output = timeout(
        Duration::from_secs(60),
        command
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("dcos-driver {args:?} did not end within 60 s"))
    .expect("run dcos-driver");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `dcos-driver op … --wait`, `op --account nope` and `task <id> --json` against a running `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_against_a_running_serve() {
    let stack = Stack::start(0.2).await;
    let serve = stack.serve(5);
    serve.ready().await;
    let url = stack.nats.url();

    stack
        .publish("create_server_group", "e2e-cli-create", &create_body())
        .await;
    let created = stack
        .task_where("e2e-cli-create", Duration::from_secs(20), is_terminal)
        .await
        .unwrap_or_else(|| panic!("create did not finish\n{}", serve.logs()));
    assert_eq!(status(&created), "SUCCEEDED", "{created}");
    let name = created["result"]["serverGroupName"].as_str().unwrap();

    let server_group = format!("serverGroupName={name}");
    let (code, out, err) = cli(&[
        "op",
        "resize_server_group",
        "--account",
        ACCOUNT,
        "-s",
        &server_group,
        "-s",
        "region=",
        "-s",
        "capacity.desired=2",
        "--wait",
        "--id",
        "e2e-cli-resize",
        "--nats-url",
        &url,
    ])
    .await;
    eprintln!("dcos-driver op resize_server_group --wait:\n{out}");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\n{}", serve.logs());
    assert!(
        out.contains("published RESIZE_SERVER_GROUP on dcos.op.e2e.resize_server_group as task e2e-cli-resize"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let running = lines.iter().position(|l| l.contains(" RUNNING "));
    let succeeded = lines.iter().position(|l| l.contains(" SUCCEEDED "));
    assert!(
        matches!((running, succeeded), (Some(r), Some(s)) if r < s),
        "a RUNNING line, then a SUCCEEDED line:\n{out}"
    );
    assert_eq!(
        stack
            .sim()
            .sim
            .marathon
            .app_tasks(&format!("/e2e/{name}"))
            .len(),
        2
    );

    // An account this driver is not configured for.
    let (code, out, err) = cli(&[
        "op",
        "resize_server_group",
        "--account",
        "nope",
        "-s",
        &server_group,
        "-s",
        "capacity.desired=1",
        "--wait",
        "--timeout",
        "30",
        "--nats-url",
        &url,
    ])
    .await;
    eprintln!("dcos-driver op --account nope (exit {code}):\n{out}");
    assert_ne!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("FAILED") && out.contains("FORBIDDEN"),
        "stdout:\n{out}\nstderr:\n{err}"
    );

    // The stored document.
    let (code, out, err) = cli(&["task", "e2e-cli-resize", "--json", "--nats-url", &url]).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let doc: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert_eq!(doc["taskId"], "e2e-cli-resize", "{doc}");
    assert_eq!(doc["account"], ACCOUNT);
    assert_eq!(doc["operation"], "RESIZE_SERVER_GROUP");
    assert_eq!(doc["status"], "SUCCEEDED");
    assert!(
        doc["history"].as_array().is_some_and(|h| h.len() >= 2),
        "{doc}"
    );
}
