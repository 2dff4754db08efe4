//! Shared by the discovery tests: a NATS server with the stream and buckets, accounts, snapshot sources,
//! a collector of published changes and a KV reader.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use dcos_driver::config::{AccountConfig, Config};
use dcos_driver::discovery::{
    AccountFeed, Discovery, DiscoveryDocument, DiscoveryOptions, SnapshotSource, SNAPSHOT_PATH,
};
use dcos_driver::events::{ClusterId, EventConsumer, MarathonEvent};
use dcos_driver::names;
use dcos_driver::overlays::OverlayStore;
use dcos_driver::testkit::NatsServer;
use futures::future::BoxFuture;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// A NATS server with `DCOS_EVENTS`, `dcos_instances` and `dcos_overlays`.
pub struct Bus {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub instances: kv::Store,
    pub overlays: OverlayStore,
}

impl Bus {
    pub async fn start() -> Bus {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = NatsServer::start();
        // A server that has just opened its port may still reset the first connection.
        let mut attempt = 0;
        let client = loop {
            match async_nats::connect(server.url()).await {
                Ok(client) => break client,
                Err(error) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("connect to nats-server: {error}; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot connect to nats-server: {error}"),
            }
        };
        let js = jetstream::new(client.clone());
        dcos_driver::bus::setup::setup(&js, &dcos_driver::bus::BusSettings::default())
            .await
            .unwrap();
        let instances = js.get_key_value(names::INSTANCES_BUCKET).await.unwrap();
        let overlays = js.get_key_value(names::OVERLAYS_BUCKET).await.unwrap();
        Bus {
            server,
            client,
            js,
            instances,
            overlays: OverlayStore::new(overlays),
        }
    }

    /// Every document in `dcos_instances`, by instance id.
    pub async fn kv_documents(&self) -> BTreeMap<String, DiscoveryDocument> {
        let mut out = BTreeMap::new();
        let mut keys = match self.instances.keys().await {
            Ok(k) => k,
            Err(_) => return out,
        };
        let mut all = Vec::new();
        while let Some(Ok(key)) = keys.next().await {
            all.push(key);
        }
        for key in all {
            if let Ok(Some(bytes)) = self.instances.get(&key).await {
                let doc: DiscoveryDocument = serde_json::from_slice(&bytes).unwrap();
                out.insert(doc.instance_id.clone(), doc);
            }
        }
        out
    }

    /// Messages in `DCOS_EVENTS` on `dcos.discovery.>`.
    pub async fn discovery_messages(&self) -> u64 {
        let mut s = self.js.get_stream(names::EVENTS_STREAM).await.unwrap();
        s.info().await.unwrap().state.messages
    }

    /// Starts collecting every published discovery change.
    pub async fn collector(&self) -> Collector {
        let mut sub = self.client.subscribe("dcos.discovery.>").await.unwrap();
        self.client.flush().await.unwrap();
        let seen: Arc<Mutex<Vec<(String, DiscoveryDocument)>>> = Arc::default();
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let doc: DiscoveryDocument = serde_json::from_slice(&msg.payload).unwrap();
                sink.lock().push((msg.subject.to_string(), doc));
            }
        });
        Collector { seen }
    }
}

/// The discovery changes seen on NATS.
#[derive(Clone)]
pub struct Collector {
    pub seen: Arc<Mutex<Vec<(String, DiscoveryDocument)>>>,
}

impl Collector {
    /// States published for an instance, in order.
    pub fn states_of(&self, instance: &str) -> Vec<String> {
        self.seen
            .lock()
            .iter()
            .filter(|(_, d)| d.instance_id == instance)
            .map(|(_, d)| d.state.as_str().to_string())
            .collect()
    }

    /// Waits until `check` holds (up to `secs`).
    pub async fn wait(
        &self,
        secs: u64,
        check: impl Fn(&[(String, DiscoveryDocument)]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if check(&self.seen.lock()) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An account `name` with root `/<name>` on a Marathon at `url`.
pub fn account(name: &str, url: &str) -> AccountConfig {
    let text = format!("[[account]]\nname = \"{name}\"\nmarathon_urls = [\"{url}\"]\n");
    Config::from_toml(std::path::Path::new("t.toml"), &text, |_| None)
        .unwrap()
        .accounts
        .remove(0)
}

/// A snapshot the test sets by hand.
#[derive(Default)]
pub struct FixedSource {
    pub body: Mutex<Bytes>,
    pub fetches: Mutex<u64>,
}

impl FixedSource {
    pub fn set(&self, body: &serde_json::Value) {
        *self.body.lock() = Bytes::from(serde_json::to_vec(body).unwrap());
    }
}

impl SnapshotSource for FixedSource {
    fn snapshot(&self) -> BoxFuture<'_, Result<Bytes, String>> {
        *self.fetches.lock() += 1;
        let body = self.body.lock().clone();
        Box::pin(async move { Ok(body) })
    }
}

/// The snapshot read over HTTP from a (simulated) Marathon.
pub struct HttpSource {
    pub http: reqwest::Client,
    pub base: String,
}

impl SnapshotSource for HttpSource {
    fn snapshot(&self) -> BoxFuture<'_, Result<Bytes, String>> {
        Box::pin(async move {
            let response = self
                .http
                .get(format!("{}{SNAPSHOT_PATH}", self.base))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            // Read as the DC/OS client does: chunks appended to one buffer, here sized up front.
            let mut response = response;
            let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                body.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(body))
        })
    }
}

/// Fast options for tests.
pub fn options() -> DiscoveryOptions {
    DiscoveryOptions {
        resync_interval: None,
        tick: Duration::from_millis(50),
        ..DiscoveryOptions::default()
    }
}

/// Starts a feed for one account.
pub async fn start(
    bus: &Bus,
    options: DiscoveryOptions,
    account: AccountConfig,
    source: Arc<dyn SnapshotSource>,
) -> (Arc<Discovery>, ClusterId, CancellationToken) {
    let cluster = ClusterId::of(&account);
    let shutdown = CancellationToken::new();
    let feed = AccountFeed { account, source };
    let discovery = Discovery::start(
        options,
        vec![feed],
        bus.js.clone(),
        bus.overlays.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    (discovery, cluster, shutdown)
}

/// Hands one event to a consumer as the reader does.
pub fn send(
    consumer: &dyn EventConsumer,
    cluster: &ClusterId,
    event_type: &str,
    data: serde_json::Value,
) {
    consumer.event(
        cluster,
        &Arc::new(MarathonEvent {
            event_type: event_type.into(),
            data: Bytes::from(data.to_string()),
        }),
    );
}
