//! Creates or updates, idempotently, everything the driver needs in JetStream: the three streams, the
//! durable pull consumer and the KV buckets. Safe when several replicas start at once, and works on
//! nats-server 2.9.
//!
//! Each object is "created or updated": the update is tried first, a missing object is created, and a
//! lost race (another replica created it in between) is settled by trying once more.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use super::{BusError, BusSettings};
use crate::names;

/// Sets up streams, the consumer and the buckets; returns the consumer.
pub async fn setup(
    js: &jetstream::Context,
    settings: &BusSettings,
) -> Result<PullConsumer, BusError> {
    for config in stream_configs(settings) {
        let name = config.name.clone();
        twice(&format!("stream {name}"), || {
            js.create_or_update_stream(config.clone())
        })
        .await?;
    }
    // KV buckets are made through their backing streams: the client's own KV creation asks for
    // account info in a shape nats-server 2.9 does not send.
    for config in bucket_configs(settings) {
        let name = config.name.clone();
        twice(&format!("KV bucket {name}"), || {
            js.create_or_update_stream(config.clone())
        })
        .await?;
    }
    ops_consumer(js, settings).await
}

/// Creates or updates the durable consumer `dcos-driver` on `DCOS_OPS`.
pub async fn ops_consumer(
    js: &jetstream::Context,
    settings: &BusSettings,
) -> Result<PullConsumer, BusError> {
    let config = consumer_config(settings);
    twice(&format!("consumer {}", names::OPS_CONSUMER), || {
        // On 2.9 the CREATE call with an existing durable name updates it (or is a no-op when equal).
        js.create_consumer_on_stream(config.clone(), names::OPS_STREAM)
    })
    .await
}

/// Runs `attempt`, and once more after a short pause if it fails (a concurrent replica's create).
async fn twice<T, E, F, Fut>(what: &str, mut attempt: F) -> Result<T, BusError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match attempt().await {
        Ok(v) => Ok(v),
        Err(first) => {
            tracing::debug!(what, error = %first, "setup step failed once; trying again");
            tokio::time::sleep(Duration::from_millis(200)).await;
            attempt().await.map_err(|e| BusError::Setup {
                what: what.to_string(),
                message: e.to_string(),
            })
        }
    }
}

/// `DCOS_OPS`, `DCOS_EVENTS` and `DCOS_DLQ`.
pub fn stream_configs(settings: &BusSettings) -> Vec<stream::Config> {
    vec![
        stream::Config {
            name: names::OPS_STREAM.into(),
            description: Some("dcos-driver operation requests (work queue)".into()),
            subjects: vec![names::OPS_SUBJECTS.into()],
            retention: RetentionPolicy::WorkQueue,
            // A full stream refuses new requests (the publisher sees it) instead of dropping old ones.
            discard: DiscardPolicy::New,
            storage: StorageType::File,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        },
        stream::Config {
            name: names::EVENTS_STREAM.into(),
            description: Some(
                "Marathon events and discovery changes republished by dcos-driver".into(),
            ),
            subjects: vec![
                names::EVENT_SUBJECTS.into(),
                names::DISCOVERY_SUBJECTS.into(),
            ],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            max_age: settings.events_max_age,
            duplicate_window: settings.events_duplicate_window,
            ..Default::default()
        },
        stream::Config {
            name: names::DLQ_STREAM.into(),
            description: Some("requests dcos-driver rejected, with their original bytes".into()),
            subjects: vec![names::DLQ_SUBJECTS.into()],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            max_age: settings.dlq_max_age,
            duplicate_window: settings.duplicate_window.min(settings.dlq_max_age),
            ..Default::default()
        },
    ]
}

/// `dcos_tasks`, `dcos_instances`, `dcos_overlays`, `dcos_snapshots`, as the streams backing them
/// (`KV_<bucket>`, configured the way the KV clients expect).
pub fn bucket_configs(settings: &BusSettings) -> Vec<stream::Config> {
    let bucket = |name: &str, description: &str, history: i64, max_age: Duration| stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: history,
        max_age,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    vec![
        bucket(
            names::TASKS_BUCKET,
            "task id → latest task document",
            1,
            settings.tasks_max_age,
        ),
        bucket(
            names::INSTANCES_BUCKET,
            "account + instance id → discovery document",
            1,
            Duration::ZERO,
        ),
        bucket(
            names::OVERLAYS_BUCKET,
            "administrative overlays: disabled server groups and instances, suspended counts",
            5,
            Duration::ZERO,
        ),
        bucket(
            names::SNAPSHOTS_BUCKET,
            "saved group-tree snapshots",
            1,
            Duration::ZERO,
        ),
    ]
}

/// The durable pull consumer: explicit acks, bounded in-flight, and no delivery limit (a request is
/// never dropped silently: it ends in a terminal task document).
pub fn consumer_config(settings: &BusSettings) -> pull::Config {
    pull::Config {
        durable_name: Some(names::OPS_CONSUMER.into()),
        description: Some("dcos-driver operation workers (shared by every replica)".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: -1,
        max_ack_pending: settings.max_ack_pending,
        ..Default::default()
    }
}
