//! The operation worker: pulls requests from the durable consumer in bounded batches, runs up to
//! `max_concurrent_operations` at once, and acks each message only after its terminal task document
//! is stored.
//!
//! Ack discipline (each decision in `Disposition`):
//! - terminal document stored → **Ack**;
//! - the request can never be valid → DLQ entry + REJECTED document stored → **Term**;
//! - storing (or the DLQ) failed, the operation asked to retry, or shutdown outlasted the grace
//!   period → **Nak** (with a delay where there is one): the request comes back, nothing is lost;
//! - an operation is running → **Progress** every third of `ack_wait`.
//!
//! Idempotency: before anything runs, the task document is looked up by task id. A terminal one is
//! re-published and the message acked (the operation never runs twice); a non-terminal one means a
//! driver stopped mid-operation, and the executor gets it as [`Request::previous`] to resume.
//!
//! Decisions: an unknown account (not in the configuration) ends FAILED with `FORBIDDEN` and no DLQ
//! entry (the request is well-formed, just not allowed here); unsupported operations are answered by
//! the worker (UNSUPPORTED, `UNSUPPORTED_OPERATION`, the reason from the vocabulary) without the
//! executor; malformed requests end REJECTED without an ACCEPTED step.
//!
//! Metrics (when [`BusSettings::metrics`] is set): every terminal document stored is counted by
//! operation and status with the time since the driver first took the task, a dead-letter entry once
//! its REJECTED document is stored, and failed publishes where they fail ([`TaskStore`], `Dlq`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::dlq::{Dlq, DlqEntry};
use super::executor::{Executor, Outcome, Progress, Request};
use super::request::Envelope;
use super::task::{TaskDocument, TaskError, TaskStatus, TaskStore};
use super::{setup, BusError, BusSettings};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::vocabulary::{ErrorCode, Operation};

/// What to tell JetStream about one message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Disposition {
    Ack,
    Nak(Option<Duration>),
    Term,
}

/// Everything a message handler needs, shared by all handlers.
struct Shared {
    config: Arc<Config>,
    settings: BusSettings,
    executor: Arc<dyn Executor>,
    store: TaskStore,
    dlq: Dlq,
}

/// Pulls operation requests and runs them. Several workers (in one process or many) may share the
/// durable consumer; each request is delivered to one of them at a time.
pub struct Worker {
    client: async_nats::Client,
    js: jetstream::Context,
    shared: Arc<Shared>,
}

impl Worker {
    /// A worker on an already set-up JetStream (see [`setup::setup`]).
    pub async fn new(
        client: async_nats::Client,
        config: Arc<Config>,
        settings: BusSettings,
        executor: Arc<dyn Executor>,
    ) -> Result<Worker, BusError> {
        let js = jetstream::new(client.clone());
        let metrics = settings.metrics.clone();
        let store = TaskStore::open(client.clone())
            .await?
            .with_metrics(metrics.clone());
        let shared = Arc::new(Shared {
            config,
            dlq: Dlq::new(js.clone()).with_metrics(metrics),
            settings,
            executor,
            store,
        });
        Ok(Worker { client, js, shared })
    }

    /// Runs until `shutdown` is cancelled: stops fetching, gives in-flight operations the grace period,
    /// hands back (Nak) those still running, flushes and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let settings = &self.shared.settings;
        let slots = Arc::new(Semaphore::new(settings.max_concurrent_operations));
        let tracker = TaskTracker::new();
        let hand_back = CancellationToken::new();
        let mut consumer: Option<PullConsumer> = None;
        let mut backoff = Backoff::default();

        'fetching: while !shutdown.is_cancelled() {
            // Ask only for as many messages as there are free slots, so nothing waits unacked.
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                _ = shutdown.cancelled() => break,
            };
            let mut permits = vec![first];
            while permits.len() < settings.fetch_batch.max(1) {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let pull = match &consumer {
                Some(c) => c.clone(),
                None => match setup::ops_consumer(&self.js, settings).await {
                    Ok(c) => {
                        consumer = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot bind the operation consumer; retrying");
                        backoff.wait(&shutdown).await;
                        continue;
                    }
                },
            };
            let batch = tokio::select! {
                batch = pull.batch().max_messages(permits.len()).expires(settings.fetch_expires).messages() => batch,
                _ = shutdown.cancelled() => break,
            };
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "pull request failed; retrying");
                    consumer = None;
                    backoff.wait(&shutdown).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        hand_back_buffered(&mut batch).await;
                        break 'fetching;
                    }
                    next = batch.next() => next,
                };
                match next {
                    None => break,
                    Some(Ok(message)) => {
                        backoff.reset();
                        let permit = permits.pop();
                        let shared = self.shared.clone();
                        let hand_back = hand_back.clone();
                        tracker.spawn(handle(shared, message, permit, hand_back));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "pull batch ended with an error; retrying");
                        consumer = None;
                        backoff.wait(&shutdown).await;
                        break;
                    }
                }
            }
        }

        tracker.close();
        let in_flight = tracker.len();
        if in_flight > 0 {
            tracing::info!(in_flight, grace = ?settings.shutdown_grace, "waiting for in-flight operations");
        }
        if tokio::time::timeout(settings.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = tracker.len(),
                "grace period over: handing the rest back"
            );
            hand_back.cancel();
            tracker.wait().await;
        }
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "cannot flush at shutdown");
        }
        Ok(())
    }
}

/// Hands back (Nak) the messages of a pull that already arrived but were not started, so another
/// replica gets them now rather than after `ack_wait`.
async fn hand_back_buffered(batch: &mut async_nats::jetstream::consumer::pull::Batch) {
    while let Some(Some(Ok(message))) = batch.next().now_or_never() {
        if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
            tracing::debug!(error = %e, "cannot hand back a buffered message");
        }
    }
}

/// Handles one message to its ack. `permit` is the operation slot it occupies (released on return).
async fn handle(
    shared: Arc<Shared>,
    message: jetstream::Message,
    permit: Option<OwnedSemaphorePermit>,
    hand_back: CancellationToken,
) {
    let _permit = permit;
    let (stream_sequence, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(e) => {
            tracing::warn!(subject = %message.subject, error = %e, "not a JetStream message; ignored");
            return;
        }
    };
    let (message, acker) = message.split();
    let envelope = Envelope::read(
        message.subject.as_str(),
        message.headers.as_ref(),
        message.payload,
        stream_sequence,
        delivered,
        shared.settings.max_request_bytes,
    );
    let acker = Arc::new(acker);
    let span = tracing::info_span!(
        "task",
        task_id = %envelope.task_id,
        account = %envelope.account,
        operation = %envelope.operation_token,
        delivery = delivered,
    );
    let disposition = process(&shared, &envelope, &acker, &hand_back)
        .instrument(span)
        .await;
    tracing::debug!(task_id = %envelope.task_id, ?disposition, "request handled");
    let result = match disposition {
        // Confirmed, so a test (or an operator) sees the ack land; a lost ack only means a
        // redelivery, which finds the terminal document and acks again.
        Disposition::Ack => acker.double_ack().await,
        Disposition::Nak(delay) => acker.ack_with(AckKind::Nak(delay)).await,
        Disposition::Term => acker.ack_with(AckKind::Term).await,
    };
    if let Err(e) = result {
        tracing::warn!(task_id = %envelope.task_id, ?disposition, error = %e, "cannot ack; JetStream will redeliver");
    }
}

async fn process(
    shared: &Shared,
    envelope: &Envelope,
    acker: &Arc<Acker>,
    hand_back: &CancellationToken,
) -> Disposition {
    let store = &shared.store;
    let retry_later = Disposition::Nak(Some(shared.settings.store_retry_delay));
    let reply_to = envelope.reply_to.as_deref();

    let previous = match store.get(&envelope.task_id).await {
        Ok(previous) => previous,
        Err(e) => {
            tracing::warn!(task_id = %envelope.task_id, error = %e, "cannot read the task document; retrying later");
            return retry_later;
        }
    };
    if let Some(done) = previous.as_ref().filter(|d| d.status.is_terminal()) {
        tracing::info!(task_id = %done.task_id, status = done.status.as_str(), "already finished; re-publishing");
        store.announce(done, reply_to).await;
        return Disposition::Ack;
    }

    let (operation, body) = match &envelope.verdict {
        Ok(valid) => valid.clone(),
        Err(error) => return reject(shared, envelope, error.clone(), None).await,
    };
    let name = operation.name();

    if shared.config.account(&envelope.account).is_none() {
        let error = TaskError::new(
            ErrorCode::Forbidden,
            format!(
                "unknown account `{}`: this driver is not configured for it",
                envelope.account
            ),
        )
        .with_details(serde_json::json!({"field": "subject.account", "value": envelope.account}));
        let doc = TaskDocument::ended(
            &envelope.task_id,
            &envelope.account,
            name,
            TaskStatus::Failed,
            error,
        );
        return finish(shared, &doc, reply_to).await;
    }

    if let Some(reason) = operation.unsupported_reason() {
        let error = TaskError::new(ErrorCode::UnsupportedOperation, reason);
        let doc = TaskDocument::ended(
            &envelope.task_id,
            &envelope.account,
            name,
            TaskStatus::Unsupported,
            error,
        );
        return finish(shared, &doc, reply_to).await;
    }

    let doc = match &previous {
        Some(previous) => {
            let mut doc = previous.clone();
            doc.transition(
                TaskStatus::Running,
                format!(
                    "delivered again (delivery {}): resuming",
                    envelope.delivered
                ),
            );
            doc
        }
        None => TaskDocument::new(
            &envelope.task_id,
            &envelope.account,
            name,
            TaskStatus::Accepted,
            "accepted",
        ),
    };
    if let Err(e) = store.record(&doc, reply_to).await {
        tracing::warn!(task_id = %doc.task_id, error = %e, "cannot store the accepted document; retrying later");
        return retry_later;
    }

    let request = Request {
        task_id: envelope.task_id.clone(),
        account: envelope.account.clone(),
        operation,
        body,
        previous,
        redelivered: envelope.delivered > 1,
        delivery: envelope.delivered.max(1) as u64,
    };
    let progress = Progress::new(store.clone(), doc, envelope.reply_to.clone(), acker.clone());
    let outcome = run_executor(shared, &request, &progress, acker, hand_back).await;
    let mut doc = progress.into_document();
    match outcome {
        None => {
            doc.transition(
                TaskStatus::Running,
                "driver shutting down: handed back to another replica",
            );
            if let Err(e) = store.record(&doc, reply_to).await {
                tracing::warn!(task_id = %doc.task_id, error = %e, "cannot store the hand-back note");
            }
            Disposition::Nak(None)
        }
        Some(Outcome::Retry { after, reason }) => {
            doc.transition(
                TaskStatus::Running,
                format!("will retry in {}s: {reason}", after.as_secs_f64()),
            );
            if let Err(e) = store.record(&doc, reply_to).await {
                tracing::warn!(task_id = %doc.task_id, error = %e, "cannot store the retry note");
            }
            Disposition::Nak(Some(after))
        }
        Some(Outcome::Rejected(error)) => reject(shared, envelope, error, Some(doc)).await,
        Some(Outcome::Succeeded(result)) => {
            doc.succeed(result);
            finish(shared, &doc, reply_to).await
        }
        Some(Outcome::Failed(error)) => {
            doc.fail(TaskStatus::Failed, error);
            finish(shared, &doc, reply_to).await
        }
        Some(Outcome::Unsupported(reason)) => {
            doc.fail(
                TaskStatus::Unsupported,
                TaskError::new(ErrorCode::UnsupportedOperation, reason),
            );
            finish(shared, &doc, reply_to).await
        }
    }
}

/// Runs the executor, keeping the message alive; `None` when the shutdown grace period ran out.
async fn run_executor(
    shared: &Shared,
    request: &Request,
    progress: &Progress,
    acker: &Acker,
    hand_back: &CancellationToken,
) -> Option<Outcome> {
    // A panicking operation is a driver bug: the request is kept (handed back after a pause) rather
    // than lost, and the service goes on.
    let execution =
        std::panic::AssertUnwindSafe(shared.executor.execute(request, progress)).catch_unwind();
    tokio::pin!(execution);
    let period = shared.settings.heartbeat_interval();
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            outcome = &mut execution => {
                return Some(outcome.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(task_id = %request.task_id, panic = %what, "the operation panicked");
                    Outcome::Retry {
                        after: shared.settings.panic_retry_delay,
                        reason: format!("the operation panicked (a driver bug): {what}"),
                    }
                }));
            }
            _ = heartbeat.tick() => {
                if let Err(e) = acker.ack_with(AckKind::Progress).await {
                    tracing::warn!(task_id = %request.task_id, error = %e, "cannot send a progress ack");
                }
            }
            _ = hand_back.cancelled() => return None,
        }
    }
}

/// Stores a terminal document and announces it; Ack, or Nak with `store_retry_delay` when it could
/// not be stored.
async fn finish(shared: &Shared, doc: &TaskDocument, reply_to: Option<&str>) -> Disposition {
    debug_assert!(doc.status.is_terminal());
    match shared.store.record(doc, reply_to).await {
        Ok(()) => {
            tracing::info!(task_id = %doc.task_id, status = doc.status.as_str(), "task finished");
            if let Some(metrics) = &shared.settings.metrics {
                record_terminal(metrics, doc);
            }
            Disposition::Ack
        }
        Err(e) => {
            tracing::warn!(task_id = %doc.task_id, error = %e, "cannot store the terminal document; retrying later");
            Disposition::Nak(Some(shared.settings.store_retry_delay))
        }
    }
}

/// Counts a task that just reached its terminal status, with the time since the driver first took
/// it. A REJECTED request naming no known operation is counted by the dead-letter counter alone
/// (the operation label only takes the 34 names).
fn record_terminal(metrics: &Metrics, doc: &TaskDocument) {
    let Ok(operation) = doc.operation.parse::<Operation>() else {
        return;
    };
    let took = doc
        .ended_at
        .unwrap_or(doc.updated_at)
        .signed_duration_since(doc.started_at)
        .to_std()
        .unwrap_or_default();
    metrics.record_operation(operation, doc.status.as_str(), took);
}

/// A request that can never be valid: DLQ entry with the original bytes, REJECTED document, Term.
/// `started` is the document so far when the operation itself rejected the description.
async fn reject(
    shared: &Shared,
    envelope: &Envelope,
    error: TaskError,
    started: Option<TaskDocument>,
) -> Disposition {
    let retry_later = Disposition::Nak(Some(shared.settings.store_retry_delay));
    let error_code = error.code;
    let entry = DlqEntry {
        account: &envelope.account,
        task_id: &envelope.task_id,
        original_subject: &envelope.subject,
        error_code: error.code.as_str(),
        reason: &error.message,
        payload: envelope.payload.clone(),
    };
    if let Err(e) = shared.dlq.publish(entry).await {
        tracing::warn!(task_id = %envelope.task_id, error = %e, "cannot write the dead-letter entry; retrying later");
        return retry_later;
    }
    let doc = match started {
        Some(mut doc) => {
            doc.fail(TaskStatus::Rejected, error);
            doc
        }
        None => TaskDocument::ended(
            &envelope.task_id,
            &envelope.account,
            envelope.operation_name(),
            TaskStatus::Rejected,
            error,
        ),
    };
    match finish(shared, &doc, envelope.reply_to.as_deref()).await {
        Disposition::Ack => {
            // Counted once the REJECTED document is stored: a retried entry is not counted twice.
            if let Some(metrics) = &shared.settings.metrics {
                metrics.request_dead_lettered(error_code);
            }
            Disposition::Term
        }
        other => other,
    }
}

/// Pause after a failed pull: 100 ms doubling to 5 s, back to the start after a message arrives.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    async fn wait(&mut self, shutdown: &CancellationToken) {
        let delay =
            Duration::from_millis(100 * 2u64.pow(self.failures.min(6))).min(Duration::from_secs(5));
        self.failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}
