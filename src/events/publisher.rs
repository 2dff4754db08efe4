//! Every event onto `dcos.event.<account>.<event_type>` in `DCOS_EVENTS`, once per account whose root
//! group holds the event's app (events without an app go to every account of the cluster).
//!
//! The payload is Marathon's, unchanged; headers `Dcos-Account`, `Dcos-App-Id` (when there is one),
//! `Dcos-Event-Type` and a deterministic `Nats-Msg-Id` (UUID v5 of account, event type and payload), so
//! replicas reading the same stream publish the same ids and JetStream keeps one copy.
//!
//! Every ack is awaited, pipelined: up to `window` publishes are in flight. A failed ack is retried
//! with the same id (harmless: deduplicated). An event larger than the server's max payload cannot be
//! published: a small marker with `"truncated": true` and header `Dcos-Event-Truncated` takes its place.
//!
//! The publisher reads a bounded buffer the reader fills without waiting (see the reader); it ends when
//! the reader drops its side, after the buffer is drained and every ack has come back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::route::route;
use super::state::ReaderStats;
use super::MarathonEvent;
use crate::config::AccountConfig;
use crate::metrics::Metrics;
use crate::names;

/// Header on a truncation marker: the size in bytes of the event it stands for.
pub const TRUNCATED_HEADER: &str = "Dcos-Event-Truncated";

/// Attempts per message before it is given up (counted and logged).
const MAX_ATTEMPTS: u32 = 5;

/// The namespace of the `Nats-Msg-Id` UUIDs (v5 of a fixed name, so every replica derives the same).
fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:dcos-driver:marathon-event")
}

/// The deterministic `Nats-Msg-Id` of one event for one account.
pub fn message_id(account: &str, event_type: &str, payload: &[u8]) -> String {
    let mut name = Vec::with_capacity(account.len() + event_type.len() + payload.len() + 2);
    name.extend_from_slice(account.as_bytes());
    name.push(b'\n');
    name.extend_from_slice(event_type.as_bytes());
    name.push(b'\n');
    name.extend_from_slice(payload);
    Uuid::new_v5(&namespace(), &name).to_string()
}

/// Settings of one publisher.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Publishes awaiting their ack at once.
    pub window: usize,
    /// First retry delay of a failed publish (doubles per attempt).
    pub retry_delay: Duration,
    /// Where events in (routed to an account) and out (acknowledged) are counted; `None` counts nothing.
    pub metrics: Option<Metrics>,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            window: 256,
            retry_delay: Duration::from_millis(100),
            metrics: None,
        }
    }
}

/// What a truncation marker repeats of the event it stands for.
struct Facts {
    event_type: String,
    id: Option<String>,
    timestamp: Option<String>,
}

/// One message to publish (kept for retries).
struct Outgoing {
    account: String,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    id: String,
    app_id: Option<String>,
    facts: Arc<Facts>,
}

impl Outgoing {
    fn message(&self) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone())
            .headers(self.headers.clone())
            .message_id(&self.id)
    }
}

/// Publishes the events of one cluster.
pub struct Publisher {
    js: jetstream::Context,
    accounts: Vec<AccountConfig>,
    options: PublisherOptions,
    stats: Arc<ReaderStats>,
}

impl Publisher {
    pub fn new(
        js: jetstream::Context,
        accounts: Vec<AccountConfig>,
        options: PublisherOptions,
        stats: Arc<ReaderStats>,
    ) -> Self {
        Publisher {
            js,
            accounts,
            options,
            stats,
        }
    }

    /// Publishes what arrives on `events` until the sender is dropped, then waits for every ack.
    pub async fn run(self, mut events: mpsc::Receiver<Arc<MarathonEvent>>) {
        let window = self.options.window.max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        while open || !in_flight.is_empty() {
            let received = tokio::select! {
                biased;
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                received = events.recv(), if open && in_flight.len() < window => received,
            };
            match received {
                Some(event) => {
                    for outgoing in self.messages(&event) {
                        let delivery = self.send(outgoing).await;
                        in_flight.push(delivery);
                    }
                }
                None => open = false,
            }
        }
    }

    /// The messages of one event, one per account it goes to.
    fn messages(&self, event: &MarathonEvent) -> Vec<Outgoing> {
        let routing = route(&self.accounts, &event.data);
        if routing.deliveries.is_empty() {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(event_type = %event.event_type, "event concerns no account");
        }
        let facts = Arc::new(Facts {
            event_type: event.event_type.clone(),
            id: routing.id,
            timestamp: routing.timestamp,
        });
        routing
            .deliveries
            .into_iter()
            .map(|delivery| {
                let account = &self.accounts[delivery.account].name;
                if let Some(metrics) = &self.options.metrics {
                    metrics.event_in(account, &event.event_type);
                }
                let mut headers = HeaderMap::new();
                headers.insert(names::ACCOUNT_HEADER, account.as_str());
                if let Some(app) = &delivery.app_id {
                    headers.insert(names::APP_ID_HEADER, app.as_str());
                }
                headers.insert(names::EVENT_TYPE_HEADER, event.event_type.as_str());
                Outgoing {
                    account: account.clone(),
                    subject: names::event_subject(account, &event.event_type),
                    headers,
                    payload: event.data.clone(),
                    id: message_id(account, &event.event_type, &event.data),
                    app_id: delivery.app_id,
                    facts: facts.clone(),
                }
            })
            .collect()
    }

    /// Sends one message (a truncation marker instead when it is too large for the server) and
    /// returns the future that awaits its ack (and retries).
    async fn send(
        &self,
        outgoing: Outgoing,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (outgoing, ack) = match self
            .js
            .send_publish(outgoing.subject.clone(), outgoing.message())
            .await
        {
            Ok(ack) => (outgoing, Ok(ack)),
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                let marker = outgoing.truncated();
                tracing::warn!(
                    subject = %marker.subject,
                    bytes = outgoing.payload.len(),
                    "event larger than NATS max_payload: publishing a truncation marker"
                );
                self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                let ack = self
                    .js
                    .send_publish(marker.subject.clone(), marker.message())
                    .await;
                (marker, ack)
            }
            Err(e) => (outgoing, Err(e)),
        };
        let js = self.js.clone();
        let stats = self.stats.clone();
        let options = self.options.clone();
        deliver(js, outgoing, ack, stats, options)
    }
}

impl Outgoing {
    /// The marker published instead of an event too large for the server: same subject, id and
    /// headers, payload `{"eventType", "truncated": true, "originalBytes", "id"?, "timestamp"?, "appId"?}`.
    fn truncated(&self) -> Outgoing {
        let mut payload = serde_json::Map::new();
        payload.insert("eventType".into(), self.facts.event_type.clone().into());
        payload.insert("truncated".into(), true.into());
        payload.insert("originalBytes".into(), self.payload.len().into());
        if let Some(id) = &self.facts.id {
            payload.insert("id".into(), id.clone().into());
        }
        if let Some(ts) = &self.facts.timestamp {
            payload.insert("timestamp".into(), ts.clone().into());
        }
        if let Some(app) = &self.app_id {
            payload.insert("appId".into(), app.clone().into());
        }
        let mut headers = self.headers.clone();
        headers.insert(TRUNCATED_HEADER, self.payload.len().to_string().as_str());
        Outgoing {
            account: self.account.clone(),
            subject: self.subject.clone(),
            headers,
            payload: Bytes::from(serde_json::Value::Object(payload).to_string()),
            id: self.id.clone(),
            app_id: self.app_id.clone(),
            facts: self.facts.clone(),
        }
    }
}

/// Awaits one message's ack, publishing it again (same id) on failure, up to [`MAX_ATTEMPTS`].
async fn deliver(
    js: jetstream::Context,
    outgoing: Outgoing,
    first: Result<PublishAckFuture, async_nats::jetstream::context::PublishError>,
    stats: Arc<ReaderStats>,
    options: PublisherOptions,
) {
    let mut sent = first;
    let mut attempt = 1;
    loop {
        let error = match sent {
            Ok(ack) => match ack.await {
                Ok(ack) => {
                    stats.published.fetch_add(1, Ordering::Relaxed);
                    if let Some(metrics) = &options.metrics {
                        metrics.event_out(&outgoing.account, &outgoing.facts.event_type);
                    }
                    if ack.duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(e) => e,
            },
            Err(e) => e,
        };
        if attempt >= MAX_ATTEMPTS {
            stats.publish_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(subject = %outgoing.subject, id = %outgoing.id, %error, attempts = attempt, "giving up publishing an event");
            return;
        }
        tracing::warn!(subject = %outgoing.subject, %error, attempt, "publishing an event failed; retrying");
        tokio::time::sleep(options.retry_delay * 2u32.pow(attempt - 1)).await;
        attempt += 1;
        sent = js
            .send_publish(outgoing.subject.clone(), outgoing.message())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_deterministic_and_distinct() {
        let one = message_id("prod", "x", b"{}");
        assert_eq!(one, message_id("prod", "x", b"{}"));
        assert_ne!(one, message_id("dev", "x", b"{}"));
        assert_ne!(one, message_id("prod", "y", b"{}"));
        assert_ne!(one, message_id("prod", "x", b"{ }"));
    }
}
