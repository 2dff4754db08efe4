//! Prometheus metrics: one registry, a typed recording method per thing worth counting, and the
//! OpenMetrics text for `GET /metrics`.
//!
//! Label values are kept low-cardinality on purpose: operations and error codes come from the
//! vocabulary, DC/OS endpoints are route templates ([`endpoint_template`]), and NATS subjects are
//! reduced to their kind (`op`, `task`, `event`, …). Accounts are configured, so they are bounded too.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::vocabulary::{ErrorCode, Operation};

mod endpoint;
pub use endpoint::endpoint_template;

/// Seconds an operation may take: from an unsupported answer (instant) to a long rolling deployment.
const OPERATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Seconds one HTTP call to Marathon, Metronome or the login may take.
const DCOS_CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationKind {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DcosCallLabels {
    account: String,
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DcosRouteLabels {
    account: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    account: String,
    event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    account: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubjectKindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn operation_histogram() -> Histogram {
    Histogram::new(OPERATION_BUCKETS.iter().copied())
}

fn dcos_call_histogram() -> Histogram {
    Histogram::new(DCOS_CALL_BUCKETS.iter().copied())
}

/// The handles the recording methods use; every one is also registered in [`Shared::registry`].
struct Families {
    operations: Family<OperationLabels, Counter>,
    operation_duration: HistogramFamily<OperationKind>,
    dead_lettered: Family<ReasonLabels, Counter>,
    dcos_requests: Family<DcosCallLabels, Counter>,
    dcos_request_duration: HistogramFamily<DcosRouteLabels>,
    events_in: Family<EventLabels, Counter>,
    events_out: Family<EventLabels, Counter>,
    discovery_changes: Family<InstanceLabels, Counter>,
    reconnects: Family<AccountLabels, Counter>,
    resyncs: Family<AccountLabels, Counter>,
    instances: Family<InstanceLabels, Gauge>,
    nats_publish_errors: Family<SubjectKindLabels, Counter>,
}

struct Shared {
    registry: Registry,
    families: Families,
}

/// Every metric of the driver. Cheap to clone: all clones record into the same registry.
#[derive(Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (all names start with `dcos_driver_`).
    pub fn new() -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("dcos_driver");
        let families = Families {
            operations: register(
                r,
                "operations",
                "Operations that reached a terminal status, by operation and status",
                Family::default(),
            ),
            operation_duration: register_seconds(
                r,
                "operation_duration",
                "Time from accepting an operation to its terminal status",
                Family::new_with_constructor(operation_histogram),
            ),
            dead_lettered: register(
                r,
                "requests_dead_lettered",
                "Requests that could not be parsed or validated and went to the DLQ, by error code",
                Family::default(),
            ),
            dcos_requests: register(
                r,
                "dcos_requests",
                "HTTP requests to DC/OS by account, route template and status code (`error` = no answer)",
                Family::default(),
            ),
            dcos_request_duration: register_seconds(
                r,
                "dcos_request_duration",
                "Latency of HTTP requests to DC/OS by account and route template",
                Family::new_with_constructor(dcos_call_histogram),
            ),
            events_in: register(
                r,
                "marathon_events_received",
                "Events read from Marathon's event stream, by account and event type",
                Family::default(),
            ),
            events_out: register(
                r,
                "marathon_events_published",
                "Marathon events published to NATS (read or synthesised by a resync), by account and event type",
                Family::default(),
            ),
            discovery_changes: register(
                r,
                "discovery_changes_published",
                "Discovery state changes published to NATS, by account and new state",
                Family::default(),
            ),
            reconnects: register(
                r,
                "event_stream_reconnects",
                "Times the Marathon event stream was (re)connected after a loss, by account",
                Family::default(),
            ),
            resyncs: register(
                r,
                "event_stream_resyncs",
                "Full state resyncs of the event side (after connects and periodic), by account",
                Family::default(),
            ),
            instances: register(
                r,
                "instances",
                "Instances currently in each discovery state, by account",
                Family::default(),
            ),
            nats_publish_errors: register(
                r,
                "nats_publish_errors",
                "NATS publishes that failed or were not acknowledged, by subject kind",
                Family::default(),
            ),
        };
        Metrics {
            shared: Arc::new(Shared {
                registry: root,
                families,
            }),
        }
    }

    /// An operation reached a terminal `status` (`SUCCEEDED`, `FAILED`, `REJECTED`, `UNSUPPORTED`).
    pub fn record_operation(&self, operation: Operation, status: &str, duration: Duration) {
        let f = &self.shared.families;
        f.operations
            .get_or_create(&OperationLabels {
                operation: operation.name(),
                status: status.to_string(),
            })
            .inc();
        f.operation_duration
            .get_or_create(&OperationKind {
                operation: operation.name(),
            })
            .observe(duration.as_secs_f64());
    }

    /// A request went to the DLQ (it may not even name a known operation).
    pub fn request_dead_lettered(&self, reason: ErrorCode) {
        self.shared
            .families
            .dead_lettered
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// One HTTP call to DC/OS ended: `status` is the HTTP code, or `None` when no answer came
    /// (connect error, timeout). `endpoint` should come from [`endpoint_template`].
    pub fn record_dcos_call(
        &self,
        account: &str,
        endpoint: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let f = &self.shared.families;
        let status = status.map_or_else(|| "error".to_string(), |code| code.to_string());
        f.dcos_requests
            .get_or_create(&DcosCallLabels {
                account: account.to_string(),
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
        f.dcos_request_duration
            .get_or_create(&DcosRouteLabels {
                account: account.to_string(),
                endpoint: endpoint.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A Marathon event was read from the event stream.
    pub fn event_in(&self, account: &str, event_type: &str) {
        self.shared
            .families
            .events_in
            .get_or_create(&event_labels(account, event_type))
            .inc();
    }

    /// A Marathon event was published to NATS (and acknowledged).
    pub fn event_out(&self, account: &str, event_type: &str) {
        self.shared
            .families
            .events_out
            .get_or_create(&event_labels(account, event_type))
            .inc();
    }

    /// A discovery change to `state` was published to NATS.
    pub fn discovery_out(&self, account: &str, state: &str) {
        self.shared
            .families
            .discovery_changes
            .get_or_create(&InstanceLabels {
                account: account.to_string(),
                state: state.to_string(),
            })
            .inc();
    }

    /// The event stream of `account` connected again after a loss.
    pub fn reconnect(&self, account: &str) {
        self.shared
            .families
            .reconnects
            .get_or_create(&account_labels(account))
            .inc();
    }

    /// The event side of `account` re-read the full state.
    pub fn resync(&self, account: &str) {
        self.shared
            .families
            .resyncs
            .get_or_create(&account_labels(account))
            .inc();
    }

    /// `n` instances of `account` are now in discovery `state` (`UP`, `STARTING`, …).
    pub fn set_instances(&self, account: &str, state: &str, n: u64) {
        self.shared
            .families
            .instances
            .get_or_create(&InstanceLabels {
                account: account.to_string(),
                state: state.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A publish to `subject` failed or its JetStream ack did not come; counted by subject kind.
    pub fn nats_publish_error(&self, subject: &str) {
        self.shared
            .families
            .nats_publish_errors
            .get_or_create(&SubjectKindLabels {
                kind: subject_kind(subject),
            })
            .inc();
    }

    /// Every metric in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.shared.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Registers `metric` and hands back the handle the recording methods use.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`register`] for a metric measured in seconds (the name gets the `_seconds` suffix).
fn register_seconds<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, Unit::Seconds, metric.clone());
    metric
}

fn event_labels(account: &str, event_type: &str) -> EventLabels {
    EventLabels {
        account: account.to_string(),
        event_type: event_type.to_string(),
    }
}

fn account_labels(account: &str) -> AccountLabels {
    AccountLabels {
        account: account.to_string(),
    }
}

/// `dcos.<kind>.…` → `<kind>` for the kinds of the contract, `other` for anything else.
fn subject_kind(subject: &str) -> &'static str {
    let mut tokens = subject.split('.');
    if tokens.next() != Some("dcos") {
        return "other";
    }
    match tokens.next() {
        Some("op") => "op",
        Some("task") => "task",
        Some("event") => "event",
        Some("discovery") => "discovery",
        Some("dlq") => "dlq",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, path as the client sends it, the `endpoint` label).
    #[test]
    fn records_and_encodes_openmetrics() {
        let m = Metrics::new();
        m.record_operation(
            Operation::ResizeServerGroup,
            "SUCCEEDED",
            Duration::from_millis(1500),
        );
        m.record_dcos_call(
            "prod",
            &endpoint_template("GET", "/v2/apps/prod/a"),
            Some(200),
            Duration::from_millis(12),
        );
        m.record_dcos_call("prod", "GET /v2/apps", None, Duration::from_secs(30));
        m.event_in("prod", "status_update_event");
        m.event_out("prod", "status_update_event");
        m.discovery_out("prod", "UP");
        m.reconnect("prod");
        m.resync("prod");
        m.set_instances("prod", "UP", 3);
        m.nats_publish_error("dcos.task.prod.abc");
        m.nats_publish_error("elsewhere");
        m.request_dead_lettered(ErrorCode::InvalidRequest);

        let text = m.clone().encode();
        for line in [
            "dcos_driver_operations_total{operation=\"RESIZE_SERVER_GROUP\",status=\"SUCCEEDED\"} 1",
            "dcos_driver_operation_duration_seconds_count{operation=\"RESIZE_SERVER_GROUP\"} 1",
            "dcos_driver_dcos_requests_total{account=\"prod\",endpoint=\"GET /v2/apps/{id}\",status=\"200\"} 1",
            "dcos_driver_dcos_requests_total{account=\"prod\",endpoint=\"GET /v2/apps\",status=\"error\"} 1",
            "dcos_driver_dcos_request_duration_seconds_bucket{le=\"0.025\",account=\"prod\",endpoint=\"GET /v2/apps/{id}\"} 1",
            "dcos_driver_marathon_events_received_total{account=\"prod\",event_type=\"status_update_event\"} 1",
            "dcos_driver_marathon_events_published_total{account=\"prod\",event_type=\"status_update_event\"} 1",
            "dcos_driver_discovery_changes_published_total{account=\"prod\",state=\"UP\"} 1",
            "dcos_driver_event_stream_reconnects_total{account=\"prod\"} 1",
            "dcos_driver_event_stream_resyncs_total{account=\"prod\"} 1",
            "dcos_driver_instances{account=\"prod\",state=\"UP\"} 3",
            "dcos_driver_nats_publish_errors_total{kind=\"task\"} 1",
            "dcos_driver_nats_publish_errors_total{kind=\"other\"} 1",
            "dcos_driver_requests_dead_lettered_total{reason=\"INVALID_REQUEST\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
