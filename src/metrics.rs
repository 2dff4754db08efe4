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
use prometheus_client::registry::{Registry, Unit};

use crate::vocabulary::{ErrorCode, Operation};

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

struct Families {
    registry: Registry,
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

/// Every metric of the driver. Cheap to clone: all clones record into the same registry.
#[derive(Clone)]
pub struct Metrics {
    families: Arc<Families>,
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
        let registry = root.sub_registry_with_prefix("dcos_driver");

        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "operations",
            "Operations that reached a terminal status, by operation and status",
            operations.clone(),
        );
        let operation_duration: HistogramFamily<OperationKind> =
            Family::new_with_constructor(operation_histogram);
        registry.register_with_unit(
            "operation_duration",
            "Time from accepting an operation to its terminal status",
            Unit::Seconds,
            operation_duration.clone(),
        );
        let dead_lettered = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests_dead_lettered",
            "Requests that could not be parsed or validated and went to the DLQ, by error code",
            dead_lettered.clone(),
        );
        let dcos_requests = Family::<DcosCallLabels, Counter>::default();
        registry.register(
            "dcos_requests",
            "HTTP requests to DC/OS by account, route template and status code (`error` = no answer)",
            dcos_requests.clone(),
        );
        let dcos_request_duration: HistogramFamily<DcosRouteLabels> =
            Family::new_with_constructor(dcos_call_histogram);
        registry.register_with_unit(
            "dcos_request_duration",
            "Latency of HTTP requests to DC/OS by account and route template",
            Unit::Seconds,
            dcos_request_duration.clone(),
        );
        let events_in = Family::<EventLabels, Counter>::default();
        registry.register(
            "marathon_events_received",
            "Events read from Marathon's event stream, by account and event type",
            events_in.clone(),
        );
        let events_out = Family::<EventLabels, Counter>::default();
        registry.register(
            "marathon_events_published",
            "Marathon events published to NATS (read or synthesised by a resync), by account and event type",
            events_out.clone(),
        );
        let discovery_changes = Family::<InstanceLabels, Counter>::default();
        registry.register(
            "discovery_changes_published",
            "Discovery state changes published to NATS, by account and new state",
            discovery_changes.clone(),
        );
        let reconnects = Family::<AccountLabels, Counter>::default();
        registry.register(
            "event_stream_reconnects",
            "Times the Marathon event stream was (re)connected after a loss, by account",
            reconnects.clone(),
        );
        let resyncs = Family::<AccountLabels, Counter>::default();
        registry.register(
            "event_stream_resyncs",
            "Full state resyncs of the event side (after connects and periodic), by account",
            resyncs.clone(),
        );
        let instances = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "instances",
            "Instances currently in each discovery state, by account",
            instances.clone(),
        );
        let nats_publish_errors = Family::<SubjectKindLabels, Counter>::default();
        registry.register(
            "nats_publish_errors",
            "NATS publishes that failed or were not acknowledged, by subject kind",
            nats_publish_errors.clone(),
        );

        Metrics {
            families: Arc::new(Families {
                registry: root,
                operations,
                operation_duration,
                dead_lettered,
                dcos_requests,
                dcos_request_duration,
                events_in,
                events_out,
                discovery_changes,
                reconnects,
                resyncs,
                instances,
                nats_publish_errors,
            }),
        }
    }

    /// An operation reached a terminal `status` (`SUCCEEDED`, `FAILED`, `REJECTED`, `UNSUPPORTED`).
    pub fn record_operation(&self, operation: Operation, status: &str, duration: Duration) {
        let f = &self.families;
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
        self.families
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
        let f = &self.families;
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
        self.families
            .events_in
            .get_or_create(&event_labels(account, event_type))
            .inc();
    }

    /// A Marathon event was published to NATS (and acknowledged).
    pub fn event_out(&self, account: &str, event_type: &str) {
        self.families
            .events_out
            .get_or_create(&event_labels(account, event_type))
            .inc();
    }

    /// A discovery change to `state` was published to NATS.
    pub fn discovery_out(&self, account: &str, state: &str) {
        self.families
            .discovery_changes
            .get_or_create(&InstanceLabels {
                account: account.to_string(),
                state: state.to_string(),
            })
            .inc();
    }

    /// The event stream of `account` connected again after a loss.
    pub fn reconnect(&self, account: &str) {
        self.families
            .reconnects
            .get_or_create(&account_labels(account))
            .inc();
    }

    /// The event side of `account` re-read the full state.
    pub fn resync(&self, account: &str) {
        self.families
            .resyncs
            .get_or_create(&account_labels(account))
            .inc();
    }

    /// `n` instances of `account` are now in discovery `state` (`UP`, `STARTING`, …).
    pub fn set_instances(&self, account: &str, state: &str, n: u64) {
        self.families
            .instances
            .get_or_create(&InstanceLabels {
                account: account.to_string(),
                state: state.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A publish to `subject` failed or its JetStream ack did not come; counted by subject kind.
    pub fn nats_publish_error(&self, subject: &str) {
        self.families
            .nats_publish_errors
            .get_or_create(&SubjectKindLabels {
                kind: subject_kind(subject),
            })
            .inc();
    }

    /// Every metric in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.families.registry)
            .expect("writing to a String cannot fail");
        out
    }
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

/// Path words that are part of a DC/OS route, never an id.
const ROUTE_WORDS: &[&str] = &[
    "acs",
    "actions",
    "api",
    "apps",
    "auth",
    "delay",
    "delete",
    "deployments",
    "events",
    "groups",
    "info",
    "jobs",
    "leader",
    "login",
    "metrics",
    "ping",
    "queue",
    "restart",
    "runs",
    "schedules",
    "stop",
    "tasks",
    "v0",
    "v1",
    "v2",
    "versions",
];

/// The route template of one DC/OS call, for the `endpoint` label: `("get", "/service/marathon/v2/apps/prod/web/api-v001?embed=apps.tasks")`
/// → `GET /v2/apps/{id}`.
///
/// App, group, task, job, run, deployment and version ids all become `{id}`, so the label has a
/// bounded set of values whatever the cluster holds. The admin-router prefixes
/// (`/service/marathon`, `/service/metronome`), a scheme and host, and the query string are dropped.
pub fn endpoint_template(method: &str, path: &str) -> String {
    let method = match method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "OTHER".to_string(),
    };
    let path = strip_origin(path);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() >= 2
        && segments[0] == "service"
        && matches!(segments[1], "marathon" | "metronome")
    {
        segments.drain(..2);
    }
    let route = match segments.as_slice() {
        // Marathon ids span several segments: the route is decided by the known suffix.
        ["v2", resource @ ("apps" | "groups" | "queue"), id @ ..] if !id.is_empty() => {
            format!("/v2/{resource}/{}", marathon_id_route(id))
        }
        other => collapse_ids(other),
    };
    format!("{method} {route}")
}

/// The part after `/v2/apps/`, `/v2/groups/` or `/v2/queue/`: `{id}` plus a known suffix.
fn marathon_id_route(rest: &[&str]) -> &'static str {
    match rest {
        [_, .., "restart"] => "{id}/restart",
        [_, .., "delay"] => "{id}/delay",
        [_, .., "tasks"] => "{id}/tasks",
        [_, .., "versions"] => "{id}/versions",
        [_, .., "tasks", _] => "{id}/tasks/{id}",
        [_, .., "versions", _] => "{id}/versions/{id}",
        _ => "{id}",
    }
}

/// Keeps route words and turns every run of other segments into one `{id}`.
fn collapse_ids(segments: &[&str]) -> String {
    let mut route = String::new();
    let mut in_id = false;
    for segment in segments {
        if ROUTE_WORDS.contains(segment) {
            route.push('/');
            route.push_str(segment);
            in_id = false;
        } else if !in_id {
            route.push_str("/{id}");
            in_id = true;
        }
    }
    if route.is_empty() {
        route.push('/');
    }
    route
}

fn strip_origin(path: &str) -> &str {
    match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_app_routes_hide_ids() {
        let t = endpoint_template;
        assert_eq!(t("GET", "/v2/apps"), "GET /v2/apps");
        assert_eq!(
            t("GET", "/v2/apps?embed=apps.tasks&label=x"),
            "GET /v2/apps"
        );
        assert_eq!(t("get", "/v2/apps/prod/web/api-v001"), "GET /v2/apps/{id}");
        assert_eq!(
            t("PUT", "/v2/apps/prod/web/api-v001?force=true"),
            "PUT /v2/apps/{id}"
        );
        assert_eq!(
            t("POST", "/v2/apps/prod/api-v001/restart"),
            "POST /v2/apps/{id}/restart"
        );
        assert_eq!(
            t("GET", "/v2/apps/prod/api-v001/tasks"),
            "GET /v2/apps/{id}/tasks"
        );
        assert_eq!(
            t(
                "DELETE",
                "/v2/apps/prod/api-v001/tasks/prod_api-v001.instance-6f1c._app.1"
            ),
            "DELETE /v2/apps/{id}/tasks/{id}"
        );
        assert_eq!(
            t(
                "GET",
                "/v2/apps/prod/api-v001/versions/2026-11-26T14:00:00.000Z"
            ),
            "GET /v2/apps/{id}/versions/{id}"
        );
    }

    #[test]
    fn groups_queue_tasks_deployments() {
        let t = endpoint_template;
        assert_eq!(t("GET", "/v2/groups/prod"), "GET /v2/groups/{id}");
        assert_eq!(
            t("PUT", "/v2/groups/prod/web?dryRun=true"),
            "PUT /v2/groups/{id}"
        );
        assert_eq!(t("GET", "/v2/groups/"), "GET /v2/groups");
        assert_eq!(
            t("DELETE", "/v2/queue/prod/api-v001/delay"),
            "DELETE /v2/queue/{id}/delay"
        );
        assert_eq!(
            t("POST", "/v2/tasks/delete?scale=true"),
            "POST /v2/tasks/delete"
        );
        assert_eq!(
            t(
                "DELETE",
                "/v2/deployments/5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"
            ),
            "DELETE /v2/deployments/{id}"
        );
        assert_eq!(t("GET", "/v2/events"), "GET /v2/events");
        assert_eq!(t("GET", "/ping"), "GET /ping");
    }

    #[test]
    fn metronome_login_and_prefixes() {
        let t = endpoint_template;
        assert_eq!(
            t(
                "GET",
                "/service/metronome/v1/jobs/prod.web.backup?embed=activeRuns"
            ),
            "GET /v1/jobs/{id}"
        );
        assert_eq!(
            t("POST", "/v1/jobs/prod.backup/runs"),
            "POST /v1/jobs/{id}/runs"
        );
        assert_eq!(
            t(
                "POST",
                "/v1/jobs/prod.backup/runs/20261126140000abcde/actions/stop"
            ),
            "POST /v1/jobs/{id}/runs/{id}/actions/stop"
        );
        assert_eq!(
            t("PUT", "/v1/jobs/prod.backup/schedules/nightly"),
            "PUT /v1/jobs/{id}/schedules/{id}"
        );
        assert_eq!(
            t("POST", "https://dcos.example.com/acs/api/v1/auth/login"),
            "POST /acs/api/v1/auth/login"
        );
        assert_eq!(
            t("GET", "http://m:8080/service/marathon/v2/apps/prod/a"),
            "GET /v2/apps/{id}"
        );
        assert_eq!(t("BREW", "/"), "OTHER /");
    }

    #[test]
    fn unknown_routes_stay_bounded() {
        let t = endpoint_template;
        // Pods are not a route the driver uses: every unknown segment run collapses.
        assert_eq!(t("GET", "/v2/pods/prod/a/b::status"), "GET /v2/{id}");
        assert_eq!(t("GET", "/x/y/z/1/2/3"), "GET /{id}");
    }

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
