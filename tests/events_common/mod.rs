//! Helpers shared by the event-side tests: a real nats-server with `DCOS_EVENTS`, accounts, a recording
//! consumer, and reading back what JetStream stored.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use dcos_driver::config::AccountConfig;
use dcos_driver::events::{ClusterId, EventConsumer, MarathonEvent};
use dcos_driver::names;
use dcos_driver::testkit::NatsServer;
use parking_lot::Mutex;

/// The `DCOS_EVENTS` stream exactly as the bus setup creates it.
pub fn events_stream_config() -> stream::Config {
    dcos_driver::bus::setup::stream_configs(&dcos_driver::bus::BusSettings::default())
        .into_iter()
        .find(|c| c.name == names::EVENTS_STREAM)
        .expect("the bus sets up DCOS_EVENTS")
}

/// A nats-server with the `DCOS_EVENTS` stream as the bus setup creates it.
pub async fn nats() -> (NatsServer, jetstream::Context) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.get_or_create_stream(events_stream_config())
        .await
        .unwrap();
    (server, js)
}

/// Accounts parsed from TOML lines (`name root` pairs) on one Marathon URL.
pub fn accounts(url: &str, pairs: &[(&str, Option<&str>)]) -> Vec<AccountConfig> {
    let mut text = String::new();
    for (name, root) in pairs {
        text.push_str(&format!(
            "[[account]]\nname = \"{name}\"\nmarathon_urls = [\"{url}\"]\n"
        ));
        if let Some(root) = root {
            text.push_str(&format!("root_group = \"{root}\"\n"));
        }
    }
    dcos_driver::config::Config::from_toml(std::path::Path::new("t.toml"), &text, |_| None)
        .unwrap()
        .accounts
}

/// One stored message of `DCOS_EVENTS`.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub payload: bytes::Bytes,
    pub headers: Vec<(String, String)>,
}

impl Stored {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Every message stored in `DCOS_EVENTS` so far, in stream order.
pub async fn stored(js: &jetstream::Context) -> Vec<Stored> {
    let mut stream = js.get_stream(names::EVENTS_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let headers = m
                .headers
                .iter()
                .flat_map(|(n, vs)| vs.iter().map(move |v| (n.to_string(), v.to_string())))
                .collect();
            out.push(Stored {
                subject: m.subject.to_string(),
                payload: m.payload,
                headers,
            });
        }
    }
    out
}

/// Messages in `DCOS_EVENTS` now.
pub async fn count(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream(names::EVENTS_STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a consumer was told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    Attached,
    Event(String, String),
    Lost,
}

/// A consumer that records everything it is told.
#[derive(Default)]
pub struct Recorder {
    pub told: Mutex<Vec<Told>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }
    pub fn attached(&self) -> usize {
        self.told
            .lock()
            .iter()
            .filter(|t| **t == Told::Attached)
            .count()
    }
    pub fn lost(&self) -> usize {
        self.told
            .lock()
            .iter()
            .filter(|t| **t == Told::Lost)
            .count()
    }
    pub fn events(&self) -> Vec<(String, String)> {
        self.told
            .lock()
            .iter()
            .filter_map(|t| match t {
                Told::Event(a, b) => Some((a.clone(), b.clone())),
                _ => None,
            })
            .collect()
    }
}

impl EventConsumer for Recorder {
    fn attached(&self, _cluster: &ClusterId) {
        self.told.lock().push(Told::Attached);
    }
    fn event(&self, _cluster: &ClusterId, event: &Arc<MarathonEvent>) {
        self.told.lock().push(Told::Event(
            event.event_type.clone(),
            String::from_utf8_lossy(&event.data).into_owned(),
        ));
    }
    fn lost(&self, _cluster: &ClusterId) {
        self.told.lock().push(Told::Lost);
    }
}
