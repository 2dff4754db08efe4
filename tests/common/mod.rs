//! A driver for operation tests: a real nats-server, the in-process simulator, and the real worker
//! with [`Operations`] as its executor, for account `test` rooted at `/test` (and account `other`
//! rooted at `/other` on the same simulator, for cross-account cases).
//!
//! ```ignore
//! mod common;
//! let h = common::Harness::start().await;
//! let doc = h.run("resize_server_group", json!({"serverGroupName": "api-v000", "targetSize": 2})).await;
//! assert_eq!(doc.status, TaskStatus::Succeeded);
//! ```
//!
//! The event reader is not part of this harness: [`HubFeed::FromSimulator`] feeds the deployment
//! hub straight from the simulator's event bus (what the reader would do); [`HubFeed::None`] leaves
//! waiting to polling alone.

#![allow(dead_code)]

pub mod outcome;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use dcos_driver::bus::{self, AppLocks, BusSettings, TaskDocument};
use dcos_driver::config::Config;
use dcos_driver::dcos::{ClientOptions, RetryPolicy};
use dcos_driver::deployments::{DeploymentEnd, DeploymentHub};
use dcos_driver::ops::{Operations, OpsSettings, WaitSettings};
use dcos_driver::sim::{self, SimConfig, SimHandle};
use dcos_driver::testkit::NatsServer;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where the deployment hub learns about deployment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubFeed {
    /// From the simulator's event bus (stands in for the event reader).
    FromSimulator,
    /// Nowhere: operations rely on polling.
    None,
}

/// How to start a [`Harness`].
#[derive(Debug, Clone)]
pub struct Options {
    pub sim: SimConfig,
    pub hub: HubFeed,
    pub max_concurrent_operations: usize,
    pub default_timeout_seconds: u64,
    pub wait: WaitSettings,
    /// JetStream's duplicate window for `Nats-Msg-Id` (short, so redelivery tests can re-publish).
    pub duplicate_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sim: SimConfig::instant(),
            hub: HubFeed::FromSimulator,
            max_concurrent_operations: 16,
            default_timeout_seconds: 30,
            wait: WaitSettings::fast(),
            duplicate_window: Duration::from_secs(60),
        }
    }
}

/// NATS + simulator + worker.
pub struct Harness {
    pub nats: NatsServer,
    pub sim: SimHandle,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub tasks: kv::Store,
    pub hub: Arc<DeploymentHub>,
    pub config: Config,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<Result<(), bus::BusError>>>,
    feeder: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    options: Options,
}

impl Harness {
    /// Starts everything with the default [`Options`].
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    /// Starts everything.
    pub async fn start_with(options: Options) -> Harness {
        let nats = NatsServer::start();
        let sim = sim::spawn(options.sim.clone())
            .await
            .expect("simulator starts");
        let toml = format!(
            "[driver]\ndefault_timeout_seconds = {}\nmax_concurrent_operations = {}\n\
             [[account]]\nname = \"test\"\nmarathon_urls = [\"{url}\"]\nmetronome_url = \"{url}\"\n\
             [[account]]\nname = \"other\"\nmarathon_urls = [\"{url}\"]\n",
            options.default_timeout_seconds,
            options.max_concurrent_operations,
            url = sim.url()
        );
        let config = Config::from_toml(Path::new("test.toml"), &toml, |_| None).unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let hub = Arc::new(DeploymentHub::new());
        let feeder = (options.hub == HubFeed::FromSimulator).then(|| feed_hub(&sim, hub.clone()));
        bus::setup::setup(&js, &bus_settings(&options))
            .await
            .unwrap();
        let tasks = js.get_key_value("dcos_tasks").await.unwrap();
        let mut harness = Harness {
            nats,
            sim,
            client,
            js,
            tasks,
            hub,
            config,
            shutdown: CancellationToken::new(),
            worker: None,
            feeder,
            next_id: AtomicU64::new(1),
            options,
        };
        harness.start_worker().await;
        harness
    }

    /// (Re)starts the worker (JetStream setup, Operations, serve).
    pub async fn start_worker(&mut self) {
        let settings = bus_settings(&self.options);
        let ops = Operations::open(
            &self.js,
            &self.config,
            self.hub.clone(),
            AppLocks::new(),
            OpsSettings {
                max_concurrent_operations: self.options.max_concurrent_operations,
                default_timeout: Duration::from_secs(self.options.default_timeout_seconds),
                wait: self.options.wait.clone(),
                client: ClientOptions {
                    retry: RetryPolicy::fast(),
                    ..ClientOptions::default()
                },
            },
        )
        .await
        .unwrap();
        self.shutdown = CancellationToken::new();
        let (client, config, token) = (
            self.client.clone(),
            self.config.clone(),
            self.shutdown.clone(),
        );
        self.worker = Some(tokio::spawn(async move {
            bus::serve_with(client, &config, settings, Arc::new(ops), token).await
        }));
    }

    /// Stops the worker (in-flight operations get the short grace period, then are handed back).
    pub async fn stop_worker(&mut self) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), worker).await;
        }
    }

    /// A fresh task id.
    pub fn task_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// Publishes a request on `dcos.op.test.<operation>` with `Nats-Msg-Id = task_id`.
    pub async fn publish(&self, operation: &str, task_id: &str, body: &Value) {
        self.publish_to("test", operation, task_id, body).await
    }

    /// Publishes a request for `account`.
    pub async fn publish_to(&self, account: &str, operation: &str, task_id: &str, body: &Value) {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", task_id);
        let subject = format!("dcos.op.{account}.{operation}");
        let payload = bytes::Bytes::from(serde_json::to_vec(body).unwrap());
        self.js
            .publish_with_headers(subject, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The stored task document.
    pub async fn doc(&self, task_id: &str) -> Option<TaskDocument> {
        self.tasks
            .get(task_id)
            .await
            .ok()
            .flatten()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// Waits until the task's document satisfies `pred` (panics after `within`).
    pub async fn wait_doc(
        &self,
        task_id: &str,
        within: Duration,
        pred: impl Fn(&TaskDocument) -> bool,
    ) -> TaskDocument {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(d) = self.doc(task_id).await {
                if pred(&d) {
                    return d;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {task_id} did not reach the expected state within {within:?}: {:#?}",
                self.doc(task_id).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the terminal document of a task.
    pub async fn terminal(&self, task_id: &str) -> TaskDocument {
        self.wait_doc(task_id, Duration::from_secs(60), |d| d.status.is_terminal())
            .await
    }

    /// Publishes a request and waits for its terminal document.
    pub async fn run(&self, operation: &str, body: Value) -> TaskDocument {
        let id = self.task_id(operation);
        self.publish(operation, &id, &body).await;
        self.terminal(&id).await
    }

    /// Publishes a request with this task id and waits for its terminal document.
    pub async fn run_as(&self, operation: &str, task_id: &str, body: Value) -> TaskDocument {
        self.publish(operation, task_id, &body).await;
        self.terminal(task_id).await
    }

    /// Creates `/test/<region>/<application>-v000`-style server groups through the driver and
    /// returns the new app id.
    pub async fn create(&self, body: Value) -> String {
        let doc = self.run("create_server_group", body).await;
        assert_eq!(doc.status.as_str(), "SUCCEEDED", "create failed: {doc:#?}");
        doc.result.unwrap()["appId"].as_str().unwrap().to_string()
    }

    /// The simulator's app ids under `prefix`.
    pub fn apps_under(&self, prefix: &str) -> Vec<String> {
        self.sim
            .sim
            .marathon
            .app_ids()
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .collect()
    }

    /// An app as the simulator's REST API shows it (`GET /v2/apps/{id}`), or `None` on 404.
    pub async fn app(&self, app_id: &str) -> Option<Value> {
        let url = format!("{}/v2/apps{app_id}", self.sim.url());
        let answer = reqwest::get(url).await.unwrap();
        if answer.status() == 404 {
            return None;
        }
        let body: Value = answer.json().await.unwrap();
        Some(body["app"].clone())
    }

    /// The overlays bucket.
    pub async fn overlays(&self) -> kv::Store {
        self.js.get_key_value("dcos_overlays").await.unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(f) = self.feeder.take() {
            f.abort();
        }
    }
}

/// A minimal app body for CREATE.
pub fn app_body(application: &str, region: &str) -> Value {
    json!({
        "application": application,
        "region": region,
        "cmd": "sleep 1000",
        "cpus": 0.1,
        "mem": 32,
        "desiredCapacity": 1,
    })
}

/// Bus settings with short timings.
pub fn bus_settings(options: &Options) -> BusSettings {
    BusSettings {
        max_concurrent_operations: options.max_concurrent_operations,
        ack_wait: Duration::from_secs(5),
        fetch_expires: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(500),
        store_retry_delay: Duration::from_millis(200),
        duplicate_window: options.duplicate_window,
        ..BusSettings::default()
    }
}

/// Feeds `deployment_success` / `deployment_failed` from the simulator's bus into the hub, for
/// account `test` (what the event reader does for real).
fn feed_hub(sim: &SimHandle, hub: Arc<DeploymentHub>) -> JoinHandle<()> {
    let mut events = sim.sim.bus.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let end = match event.event_type.as_str() {
                "deployment_success" => DeploymentEnd::Succeeded,
                "deployment_failed" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                    DeploymentEnd::Failed {
                        reason: data["reason"].as_str().map(str::to_string),
                    }
                }
                _ => continue,
            };
            let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
            if let Some(id) = data["id"].as_str() {
                for account in ["test", "other"] {
                    hub.finished(account, id, end.clone());
                }
            }
        }
    })
}
