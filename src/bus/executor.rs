//! The interface the operations implement: an [`Executor`] gets a validated [`Request`] and a
//! [`Progress`] handle, and returns an [`Outcome`]; the worker does everything NATS.
//!
//! # Contract for implementors
//! - **Idempotent resumption.** A request can reach `execute` more than once: when a driver died
//!   mid-operation (or shut down and handed it back), the next delivery carries the stored document in
//!   [`Request::previous`] (and `redelivered = true`). The operation must then finish the job rather
//!   than do it twice, e.g. look for the app it would create (by a label carrying the task id) before
//!   creating another one, or follow the deployment recorded in `previous.progress`. A request whose
//!   stored document is already terminal never reaches `execute` again.
//! - **Never two operations on one app at once**: take [`super::AppLocks::lock`] on the app id.
//! - **Report progress** with [`Progress::update`]: it stores and publishes a RUNNING document. The
//!   worker keeps the JetStream message alive on its own while `execute` runs (progress acks every
//!   third of `ack_wait`), so a long deployment is never redelivered to another replica.
//! - **Bound retries.** [`Outcome::Retry`] hands the message back with a delay and the task stays
//!   RUNNING; [`Request::delivery`] counts deliveries so an operation can give up (FAILED with
//!   `DCOS_UNAVAILABLE` or `TIMEOUT`) instead of retrying forever.
//! - **Cancellation.** At shutdown, after the grace period, the worker drops the `execute` future
//!   and hands the message back; the next delivery resumes it (see above).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use parking_lot::Mutex;
use serde_json::Value;

use super::task::{TaskDocument, TaskError, TaskStatus, TaskStore};
use crate::vocabulary::Operation;

/// A boxed future, so [`Executor`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs operations against DC/OS. Implemented by the operations module; the worker holds it as
/// `Arc<dyn Executor>` and may call it for many requests at once (up to `max_concurrent_operations`).
pub trait Executor: Send + Sync {
    /// Runs one request to its end (or to a retry). See the module documentation for the contract.
    fn execute<'a>(
        &'a self,
        request: &'a Request,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Outcome>;
}

/// A validated operation request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The task id: the request's `Nats-Msg-Id`, or `auto-<stream sequence>`.
    pub task_id: String,
    /// The account, known to the configuration.
    pub account: String,
    /// The operation (a supported one: unsupported ones are answered by the worker).
    pub operation: Operation,
    /// The description: always a JSON object.
    pub body: Value,
    /// The stored task document when this request was already started once (a redelivery after a
    /// driver died or handed it back, or a retry): resume from it.
    pub previous: Option<TaskDocument>,
    /// Whether JetStream has delivered this message before.
    pub redelivered: bool,
    /// How many times JetStream has delivered this message (1 = first time).
    pub delivery: u64,
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done: SUCCEEDED with this operation-specific result; the message is acked.
    Succeeded(Value),
    /// Could not be done: FAILED with this error; the message is acked.
    Failed(TaskError),
    /// The description can never be valid (e.g. a schema error found by the operation): REJECTED,
    /// a dead-letter entry with the original bytes, and the message is terminated.
    Rejected(TaskError),
    /// DC/OS cannot do what was asked (the reason is the message): UNSUPPORTED; acked.
    Unsupported(String),
    /// Try again later: the message is handed back (Nak) with this delay; the task stays RUNNING with
    /// the reason in its history.
    Retry {
        /// Delay before the redelivery.
        after: Duration,
        /// Why, for the history.
        reason: String,
    },
}

/// Lets a running operation publish RUNNING updates. Each update is stored in KV, published on the
/// task subject and the reply subject, and keeps the JetStream message alive (`+WPI`).
pub struct Progress {
    store: TaskStore,
    document: Mutex<TaskDocument>,
    reply_to: Option<String>,
    acker: Arc<Acker>,
}

impl Progress {
    pub(crate) fn new(
        store: TaskStore,
        document: TaskDocument,
        reply_to: Option<String>,
        acker: Arc<Acker>,
    ) -> Progress {
        Progress {
            store,
            document: Mutex::new(document),
            reply_to,
            acker,
        }
    }

    /// Records a RUNNING update: `message` goes into the history, `progress` (if given) replaces the
    /// document's `progress`. Storing or publishing failures are logged, never returned: the
    /// operation goes on, and its terminal document is what counts.
    pub async fn update(&self, message: impl Into<String>, progress: Option<Value>) {
        let snapshot = {
            let mut doc = self.document.lock();
            if let Some(progress) = progress {
                doc.progress = Some(progress);
            }
            doc.transition(TaskStatus::Running, message);
            doc.clone()
        };
        if let Err(e) = self.acker.ack_with(AckKind::Progress).await {
            tracing::warn!(task_id = %snapshot.task_id, error = %e, "cannot send a progress ack");
        }
        if let Err(e) = self.store.record(&snapshot, self.reply_to.as_deref()).await {
            tracing::warn!(task_id = %snapshot.task_id, error = %e, "cannot store a progress update");
        }
    }

    /// The task document as it stands.
    pub fn document(&self) -> TaskDocument {
        self.document.lock().clone()
    }

    /// The document, for the worker to finish it.
    pub(crate) fn into_document(self) -> TaskDocument {
        self.document.into_inner()
    }
}
