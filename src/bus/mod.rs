//! The NATS side of `dcos-driver serve`: JetStream setup, the operation-request worker, task documents,
//! the dead-letter queue and the per-app lock the operations use.
//!
//! # How a request travels
//! 1. A client publishes on `dcos.op.<account>.<operation>` (captured by `DCOS_OPS`; a plain NATS
//!    request is answered by JetStream's publish ack). Header `Nats-Msg-Id` is the idempotency key
//!    and the task id.
//! 2. The [`worker`] pulls it from the durable consumer, validates it ([`request`]), and either ends it
//!    at once (REJECTED + [`dlq`] entry, UNSUPPORTED, FORBIDDEN) or publishes ACCEPTED and hands it to
//!    the [`Executor`], which reports RUNNING updates through [`Progress`] and returns an [`Outcome`].
//! 3. The terminal [`TaskDocument`] is stored in KV `dcos_tasks` first, then published on
//!    `dcos.task.<account>.<task_id>` (and the `Dcos-Reply-To` inbox); only then is the message acked.
//!
//! # Layout
//! - [`connect`](mod@connect): the NATS connection (auth, TLS, reconnects).
//! - [`setup`]: streams, the durable consumer and the KV buckets, created or updated idempotently.
//! - [`task`]: the task document and [`TaskStore`] (KV + publishing).
//! - [`request`]: turning a JetStream message into a validated request, or a rejection.
//! - [`executor`]: the interface the operations implement ([`Executor`], [`Request`], [`Progress`], [`Outcome`]).
//! - [`worker`]: the pull loop, ack discipline, idempotency and graceful shutdown.
//! - [`dlq`]: the dead-letter queue for requests that can never be valid.
//! - [`locks`]: [`AppLocks`], so two operations never act on the same app at once.
//! - [`service`]: the NATS service API (`$SRV.*` discovery; task lookup, status and vocabulary).

pub mod connect;
pub mod dlq;
pub mod executor;
pub mod locks;
pub mod request;
pub mod service;
pub mod settings;
pub mod setup;
pub mod task;
pub mod worker;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub use connect::connect;
pub use executor::{BoxFuture, Executor, Outcome, Progress, Request};
pub use locks::{AppLockGuard, AppLocks};
pub use service::{start_service, StatusFn};
pub use settings::BusSettings;
pub use task::{HistoryEntry, TaskDocument, TaskError, TaskStatus, TaskStore};
pub use worker::Worker;

/// What went wrong on the NATS side. One failed message never stops the worker; these errors come
/// out of [`serve`] only when setup fails or the connection cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JetStream setup of {what} failed: {message}")]
    Setup { what: String, message: String },
    #[error("KV {bucket}: {action} of key {key} failed: {message}")]
    Kv {
        bucket: &'static str,
        key: String,
        action: &'static str,
        message: String,
    },
    #[error("publishing to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("NATS service API: {what} failed: {message}")]
    Service { what: &'static str, message: String },
    #[error("task document {key} in KV is not valid JSON: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Sets up JetStream and runs the operation worker until `shutdown` is cancelled, with settings taken
/// from `config.driver` (see [`BusSettings::from_config`]).
///
/// On shutdown it stops fetching, lets in-flight operations finish within the grace period, hands the
/// rest back (Nak) for another replica, flushes, and returns.
pub async fn serve(
    client: async_nats::Client,
    config: &Config,
    executor: Arc<dyn Executor>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    serve_with(
        client,
        config,
        BusSettings::from_config(&config.driver),
        executor,
        shutdown,
    )
    .await
}

/// [`serve`] with explicit settings: tests use short timings, `serve` counts into the driver's
/// metrics with `BusSettings::from_config(&config.driver).with_metrics(metrics)`.
pub async fn serve_with(
    client: async_nats::Client,
    config: &Config,
    settings: BusSettings,
    executor: Arc<dyn Executor>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let js = async_nats::jetstream::new(client.clone());
    setup::setup(&js, &settings).await?;
    let worker = Worker::new(client, Arc::new(config.clone()), settings, executor).await?;
    worker.run(shutdown).await
}
