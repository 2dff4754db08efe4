//! Timings and limits of the NATS side, with defaults in one place.

use std::time::Duration;

use crate::config::DriverConfig;
use crate::metrics::Metrics;

/// Timings and bounds of the worker and of the JetStream objects it creates, and where it counts
/// what it did.
///
/// [`BusSettings::from_config`] gives the production values; tests shorten the timings.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// Operations run at once by this process (`driver.max_concurrent_operations`).
    pub max_concurrent_operations: usize,
    /// Largest accepted request body in bytes (`driver.max_request_bytes`); larger ones are REJECTED.
    pub max_request_bytes: usize,
    /// How long JetStream waits for an ack before redelivering. The worker sends progress acks every
    /// third of it while an operation runs, so only a dead driver lets it expire.
    pub ack_wait: Duration,
    /// Messages delivered but not yet acked, across all replicas.
    pub max_ack_pending: i64,
    /// Most messages asked for in one pull (also bounded by the free operation slots).
    pub fetch_batch: usize,
    /// How long one pull request waits on the server for messages.
    pub fetch_expires: Duration,
    /// At shutdown, how long in-flight operations may still run before they are handed back (Nak)
    /// (`driver.shutdown_grace_seconds`).
    pub shutdown_grace: Duration,
    /// Delay of the Nak when the task document cannot be stored (KV unavailable): try again later.
    pub store_retry_delay: Duration,
    /// Pause before a request whose operation panicked (a driver bug) is tried again; the task stays
    /// RUNNING meanwhile, so it is kept rather than lost.
    pub panic_retry_delay: Duration,
    /// Window in which JetStream drops a request whose `Nats-Msg-Id` it has already seen.
    pub duplicate_window: Duration,
    /// How long task documents are kept in KV `dcos_tasks` (idempotency after the duplicate window
    /// relies on them).
    pub tasks_max_age: Duration,
    /// How long rejected requests are kept in `DCOS_DLQ`.
    pub dlq_max_age: Duration,
    /// How long `DCOS_EVENTS` keeps events (`driver.events_max_age_seconds`).
    pub events_max_age: Duration,
    /// Duplicate window of `DCOS_EVENTS` for the event reader's deterministic message ids.
    pub events_duplicate_window: Duration,
    /// Where the worker counts terminal tasks (by operation and status, with their duration),
    /// dead-lettered requests and failed publishes; `None` counts nothing.
    pub metrics: Option<Metrics>,
}

impl BusSettings {
    /// Production settings; the limits come from the `[driver]` section.
    pub fn from_config(driver: &DriverConfig) -> BusSettings {
        let events_max_age = Duration::from_secs(driver.events_max_age_seconds.max(1));
        BusSettings {
            max_concurrent_operations: driver.max_concurrent_operations.max(1),
            max_request_bytes: driver.max_request_bytes,
            ack_wait: Duration::from_secs(45),
            max_ack_pending: 1000,
            fetch_batch: 16,
            fetch_expires: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(driver.shutdown_grace_seconds),
            store_retry_delay: Duration::from_secs(2),
            panic_retry_delay: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(3600),
            tasks_max_age: Duration::from_secs(7 * 24 * 3600),
            dlq_max_age: Duration::from_secs(30 * 24 * 3600),
            events_max_age,
            events_duplicate_window: Duration::from_secs(600).min(events_max_age),
            metrics: None,
        }
    }

    /// The same settings, counting into `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> BusSettings {
        BusSettings {
            metrics: Some(metrics),
            ..self
        }
    }

    /// Interval of the worker's progress acks (`+WPI`) while an operation runs.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.ack_wait / 3).max(Duration::from_millis(100))
    }
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings::from_config(&DriverConfig::default())
    }
}
