//! The task document (one accepted operation request, its status history and its result) and
//! [`TaskStore`], which keeps it in KV `dcos_tasks` and announces every change.

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BusError;
use crate::metrics::Metrics;
use crate::names;
use crate::vocabulary::ErrorCode;

/// Where a task stands. ACCEPTED and RUNNING are passing states; the other four are terminal, and a
/// task reaches exactly one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// The request is valid and stored; the operation has not reported progress yet.
    Accepted,
    /// The operation is under way (see `progress`), or waits to be retried.
    Running,
    /// The operation did what was asked (see `result`).
    Succeeded,
    /// The operation could not be done (see `error`).
    Failed,
    /// The request can never be valid; it is also kept in the dead-letter queue.
    Rejected,
    /// DC/OS has no counterpart of this operation (the error message says why).
    Unsupported,
}

impl TaskStatus {
    /// SUCCEEDED, FAILED, REJECTED or UNSUPPORTED.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Accepted | TaskStatus::Running)
    }

    /// The wire name, e.g. `RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Accepted => "ACCEPTED",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Rejected => "REJECTED",
            TaskStatus::Unsupported => "UNSUPPORTED",
        }
    }
}

/// Why a task failed, was rejected or is unsupported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskError {
    /// The error code (DESIGN.md, "Task result document").
    pub code: ErrorCode,
    /// What went wrong, for a human.
    pub message: String,
    /// Machine-readable details: field paths of an invalid request, Marathon's 422 `details`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl TaskError {
    /// An error without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> TaskError {
        TaskError {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The same error with `details`.
    pub fn with_details(mut self, details: Value) -> TaskError {
        self.details = Some(details);
        self
    }
}

/// One step of a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The status the task had after this step.
    pub status: TaskStatus,
    /// When (RFC 3339, UTC).
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: DateTime<Utc>,
    /// What happened.
    pub message: String,
}

/// The latest state of one task: stored in KV `dcos_tasks` under its task id and published on
/// `dcos.task.<account>.<taskId>` (and the `Dcos-Reply-To` subject) at every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Task document")]
pub struct TaskDocument {
    /// The request's `Nats-Msg-Id`, or `auto-<stream sequence>` when it had none (or an invalid one).
    pub task_id: String,
    /// The account from the subject `dcos.op.<account>.<operation>`.
    pub account: String,
    /// The operation's upper-case name (`RESIZE_SERVER_GROUP`); for a rejected request whose
    /// operation is unknown, the subject token as sent.
    pub operation: String,
    /// Where the task stands.
    pub status: TaskStatus,
    /// When the driver first took the request (RFC 3339, UTC).
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub started_at: DateTime<Utc>,
    /// When this document last changed.
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub updated_at: DateTime<Utc>,
    /// When the task reached its terminal status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub ended_at: Option<DateTime<Utc>>,
    /// Operation-specific progress (deployment steps, instance counts…), latest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// Operation-specific result of a SUCCEEDED task (app id, version, deploymentId, runId, snapshotId…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the task FAILED, was REJECTED or is UNSUPPORTED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// Every status change, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

impl TaskDocument {
    /// A new document in `status`, with one history entry.
    pub fn new(
        task_id: impl Into<String>,
        account: impl Into<String>,
        operation: impl Into<String>,
        status: TaskStatus,
        message: impl Into<String>,
    ) -> TaskDocument {
        let now = Utc::now();
        let mut doc = TaskDocument {
            task_id: task_id.into(),
            account: account.into(),
            operation: operation.into(),
            status,
            started_at: now,
            updated_at: now,
            ended_at: None,
            progress: None,
            result: None,
            error: None,
            history: Vec::new(),
        };
        doc.transition(status, message);
        doc
    }

    /// A document that ends at once (REJECTED, UNSUPPORTED, FAILED before any work), with one history
    /// entry.
    pub fn ended(
        task_id: impl Into<String>,
        account: impl Into<String>,
        operation: impl Into<String>,
        status: TaskStatus,
        error: TaskError,
    ) -> TaskDocument {
        let mut doc = TaskDocument::new(task_id, account, operation, status, "");
        doc.history.clear();
        doc.fail(status, error);
        doc
    }

    /// Moves to `status`, recording it in the history (and `endedAt` for a terminal status).
    pub fn transition(&mut self, status: TaskStatus, message: impl Into<String>) {
        let now = Utc::now();
        self.status = status;
        self.updated_at = now;
        if status.is_terminal() {
            self.ended_at = Some(now);
        }
        self.history.push(HistoryEntry {
            status,
            at: now,
            message: message.into(),
        });
    }

    /// Ends the task with an error (FAILED, REJECTED or UNSUPPORTED).
    pub fn fail(&mut self, status: TaskStatus, error: TaskError) {
        let message = format!("{}: {}", error.code, error.message);
        self.error = Some(error);
        self.transition(status, message);
    }

    /// Ends the task SUCCEEDED with `result`.
    pub fn succeed(&mut self, result: Value) {
        self.result = Some(result);
        self.error = None;
        self.transition(TaskStatus::Succeeded, "succeeded");
    }

    /// Serialised for KV and the subjects.
    pub fn to_json(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a task document always serialises")
            .into()
    }
}

/// Keeps task documents in KV `dcos_tasks` (key = task id) and announces them on the task subject and
/// the optional reply subject with core NATS publishes (followed by a flush).
#[derive(Clone)]
pub struct TaskStore {
    client: async_nats::Client,
    kv: kv::Store,
    metrics: Option<Metrics>,
}

impl TaskStore {
    /// Opens the bucket (created by [`super::setup::setup`]).
    pub async fn open(client: async_nats::Client) -> Result<TaskStore, BusError> {
        let js = jetstream::new(client.clone());
        let kv = js
            .get_key_value(names::TASKS_BUCKET)
            .await
            .map_err(|e| BusError::Setup {
                what: format!("KV bucket {}", names::TASKS_BUCKET),
                message: e.to_string(),
            })?;
        Ok(TaskStore {
            client,
            kv,
            metrics: None,
        })
    }

    /// The same store, counting failed puts and announcements into `metrics`.
    pub fn with_metrics(self, metrics: Option<Metrics>) -> TaskStore {
        TaskStore { metrics, ..self }
    }

    fn publish_failed(&self, subject: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.nats_publish_error(subject);
        }
    }

    /// The stored document of `task_id`, if any.
    pub async fn get(&self, task_id: &str) -> Result<Option<TaskDocument>, BusError> {
        let raw = self.kv.get(task_id).await.map_err(|e| BusError::Kv {
            bucket: names::TASKS_BUCKET,
            key: task_id.to_string(),
            action: "get",
            message: e.to_string(),
        })?;
        raw.map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|source| BusError::Decode {
                key: task_id.to_string(),
                source,
            })
        })
        .transpose()
    }

    /// Stores `doc` under its task id.
    pub async fn put(&self, doc: &TaskDocument) -> Result<(), BusError> {
        self.kv
            .put(&doc.task_id, doc.to_json())
            .await
            .map_err(|e| {
                self.publish_failed(&format!("$KV.{}.{}", names::TASKS_BUCKET, doc.task_id));
                BusError::Kv {
                    bucket: names::TASKS_BUCKET,
                    key: doc.task_id.clone(),
                    action: "put",
                    message: e.to_string(),
                }
            })?;
        Ok(())
    }

    /// Publishes `doc` on `dcos.task.<account>.<task_id>` and on `reply_to`, then flushes.
    /// Failures are logged only: the document is in KV, which is the record.
    pub async fn announce(&self, doc: &TaskDocument, reply_to: Option<&str>) {
        let payload = doc.to_json();
        let subject = names::task_subject(&doc.account, &doc.task_id);
        let targets = std::iter::once(subject).chain(reply_to.map(str::to_string));
        for target in targets {
            if let Err(e) = self.client.publish(target.clone(), payload.clone()).await {
                tracing::warn!(subject = %target, error = %e, "cannot publish a task update");
                self.publish_failed(&target);
            }
        }
        if let Err(e) = self.client.flush().await {
            tracing::warn!(task_id = %doc.task_id, error = %e, "cannot flush task updates");
        }
    }

    /// Stores `doc`, then announces it. Announcing happens only once the store succeeded.
    pub async fn record(&self, doc: &TaskDocument, reply_to: Option<&str>) -> Result<(), BusError> {
        self.put(doc).await?;
        self.announce(doc, reply_to).await;
        Ok(())
    }
}
