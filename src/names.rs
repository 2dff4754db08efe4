//! Every NATS name the driver uses, in one place: subjects, streams, consumers, KV buckets and headers.
//!
//! Subjects are part of the public API (see README and `schemas/asyncapi.yaml`).

/// Stream holding operation requests (`dcos.op.>`), work-queue retention.
pub const OPS_STREAM: &str = "DCOS_OPS";
/// Durable pull consumer shared by every `serve` replica.
pub const OPS_CONSUMER: &str = "dcos-driver";
/// Stream holding Marathon events and discovery changes, limits retention.
pub const EVENTS_STREAM: &str = "DCOS_EVENTS";
/// Stream keeping rejected requests with their original bytes and the reason.
pub const DLQ_STREAM: &str = "DCOS_DLQ";

/// KV bucket: task id → latest task document.
pub const TASKS_BUCKET: &str = "dcos_tasks";
/// KV bucket: account + instance id → discovery document.
pub const INSTANCES_BUCKET: &str = "dcos_instances";
/// KV bucket: administrative overlays (disabled server groups and instances, suspended counts).
pub const OVERLAYS_BUCKET: &str = "dcos_overlays";
/// KV bucket: saved group-tree snapshots.
pub const SNAPSHOTS_BUCKET: &str = "dcos_snapshots";

/// Header carrying a request's idempotency key and task id (JetStream's message id).
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Header naming an inbox that also receives a task's updates.
pub const REPLY_TO_HEADER: &str = "Dcos-Reply-To";
/// Header carrying the account on published events and discovery changes.
pub const ACCOUNT_HEADER: &str = "Dcos-Account";
/// Header carrying the Marathon app id on published events.
pub const APP_ID_HEADER: &str = "Dcos-App-Id";
/// Header carrying the Marathon event type on published events.
pub const EVENT_TYPE_HEADER: &str = "Dcos-Event-Type";

/// DLQ header: why the request was rejected (one line).
pub const DLQ_REASON_HEADER: &str = "Dcos-Dlq-Reason";
/// DLQ header: the error code (`INVALID_REQUEST`, …).
pub const DLQ_ERROR_CODE_HEADER: &str = "Dcos-Error-Code";
/// DLQ header: the task id of the REJECTED task document.
pub const DLQ_TASK_ID_HEADER: &str = "Dcos-Task-Id";
/// DLQ header: the subject the request was published on.
pub const DLQ_ORIGINAL_SUBJECT_HEADER: &str = "Dcos-Original-Subject";

/// Name of the driver's NATS service API: answered on `$SRV.PING|INFO|STATS[.dcos-driver]`.
pub const SERVICE_NAME: &str = "dcos-driver";
/// Service endpoint: the request body is a task id, the answer its task document.
pub const SERVICE_TASK_SUBJECT: &str = "dcos.driver.task";
/// Service endpoint: the driver's readiness report.
pub const SERVICE_STATUS_SUBJECT: &str = "dcos.driver.status";
/// Service endpoint: the 34 operations, and why the unsupported ones are.
pub const SERVICE_OPERATIONS_SUBJECT: &str = "dcos.driver.operations";

/// Subjects captured by [`OPS_STREAM`].
pub const OPS_SUBJECTS: &str = "dcos.op.>";
/// Subjects captured by [`EVENTS_STREAM`].
pub const EVENT_SUBJECTS: &str = "dcos.event.>";
/// Discovery subjects, also captured by [`EVENTS_STREAM`].
pub const DISCOVERY_SUBJECTS: &str = "dcos.discovery.>";
/// Subjects captured by [`DLQ_STREAM`].
pub const DLQ_SUBJECTS: &str = "dcos.dlq.>";

/// `dcos.op.<account>.<operation>`: where a client publishes a request.
pub fn op_subject(account: &str, operation: &str) -> String {
    format!("dcos.op.{account}.{operation}")
}

/// `dcos.task.<account>.<task_id>`: a task's status updates.
pub fn task_subject(account: &str, task_id: &str) -> String {
    format!("dcos.task.{account}.{task_id}")
}

/// `dcos.event.<account>.<event_type>`: one republished Marathon event.
pub fn event_subject(account: &str, event_type: &str) -> String {
    format!("dcos.event.{account}.{}", token(event_type))
}

/// `dcos.discovery.<account>.<app path tokens>`: an instance's discovery state changed.
pub fn discovery_subject(account: &str, app_id: &str) -> String {
    format!("dcos.discovery.{account}.{}", app_tokens(app_id))
}

/// `dcos.dlq.<account>`: a request that could not be parsed or validated.
pub fn dlq_subject(account: &str) -> String {
    format!("dcos.dlq.{account}")
}

/// Turns an app id into subject tokens: `/prod/web/api-v001` → `prod.web.api-v001`.
///
/// A `.` inside a segment becomes `_` (Marathon ids never contain `_`), and characters NATS reserves
/// in tokens (`*`, `>`, white space) become `_` too, so a subscriber's wildcards always line up
/// with path segments.
pub fn app_tokens(app_id: &str) -> String {
    app_id
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(token)
        .collect::<Vec<_>>()
        .join(".")
}

/// Makes one string safe as a single subject token.
pub fn token(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}

/// KV keys may hold `[-/_=.a-zA-Z0-9]`; this maps anything else to `_` and trims leading/trailing dots.
pub fn kv_key(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '/' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.trim_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_path_becomes_tokens() {
        assert_eq!(app_tokens("/prod/web/api-v001"), "prod.web.api-v001");
        assert_eq!(app_tokens("/prod/a.b/c"), "prod.a_b.c");
        assert_eq!(
            discovery_subject("prod", "/prod/web/api-v001"),
            "dcos.discovery.prod.prod.web.api-v001"
        );
    }

    #[test]
    fn event_type_is_one_token() {
        assert_eq!(
            event_subject("prod", "status_update_event"),
            "dcos.event.prod.status_update_event"
        );
        assert_eq!(event_subject("prod", "a.b>"), "dcos.event.prod.a_b_");
    }

    #[test]
    fn kv_keys_are_safe() {
        assert_eq!(
            kv_key("prod/web_api-v001.instance-1._app.1"),
            "prod/web_api-v001.instance-1._app.1"
        );
        assert_eq!(kv_key("a b:c"), "a_b_c");
    }
}
