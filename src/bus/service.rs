//! The driver's NATS service API (the `async_nats::service` "micro" protocol): discoverable with
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (also `.dcos-driver`), and three request/reply
//! endpoints for operators and tools:
//!
//! - `dcos.driver.task`: body = a task id → its task document from KV `dcos_tasks`, or a service
//!   error `404` `no task <id>` (`400` for a malformed id, `503` when the bucket cannot be read);
//! - `dcos.driver.status`: the status the caller supplies (the readiness report);
//! - `dcos.driver.operations`: the 34 operations, whether each is supported, and why not.
//!
//! Every replica registers; requests to an endpoint go to one of them (queue group `q`).

use std::future::Future;
use std::sync::Arc;

use async_nats::service::endpoint::Endpoint;
use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::{StreamExt, TryFutureExt};
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::request::is_valid_task_id;
use super::{BusError, TaskStore};
use crate::names;
use crate::vocabulary::Operation;

/// What `dcos.driver.status` answers, computed at each request.
pub type StatusFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// What `$SRV.INFO` says the service is.
const DESCRIPTION: &str =
    "Drives DC/OS through NATS: task documents, driver status and the operation vocabulary";

/// An error answer: the `Nats-Service-Error-Code` and `Nats-Service-Error` headers, empty body.
type Answer = Result<Bytes, service::error::Error>;

fn error_answer(code: usize, status: impl Into<String>) -> service::error::Error {
    service::error::Error {
        code,
        status: status.into(),
    }
}

/// Registers the `dcos-driver` service and answers its endpoints until `shutdown` is cancelled,
/// then deregisters.
///
/// The task bucket is opened at the first task request (and again after a failure), so the service
/// may start before JetStream is set up.
pub async fn start_service(
    client: async_nats::Client,
    status: StatusFn,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let failed = |what: &'static str| {
        move |e: async_nats::Error| BusError::Service {
            what,
            message: e.to_string(),
        }
    };
    let service = client
        .service_builder()
        .description(DESCRIPTION)
        .start(names::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(failed("registering the service"))?;
    let endpoint = |name: &'static str, subject: &'static str| {
        service
            .endpoint_builder()
            .name(name)
            .add(subject)
            .map_err(failed("adding an endpoint"))
    };
    let task = endpoint("task", names::SERVICE_TASK_SUBJECT).await?;
    let status_endpoint = endpoint("status", names::SERVICE_STATUS_SUBJECT).await?;
    let operations = endpoint("operations", names::SERVICE_OPERATIONS_SUBJECT).await?;
    tracing::info!(name = names::SERVICE_NAME, "NATS service API registered");

    let tasks = Tasks {
        client: client.clone(),
        store: OnceCell::new(),
    };
    let vocabulary = Bytes::from(operations_document().to_string());
    tokio::join!(
        answer_each(task, &shutdown, |body| tasks.document(body)),
        answer_each(status_endpoint, &shutdown, |_| {
            let report = status();
            async move { Ok(Bytes::from(report.to_string())) }
        }),
        answer_each(operations, &shutdown, |_| {
            let vocabulary = vocabulary.clone();
            async move { Ok(vocabulary) }
        }),
    );
    service
        .stop()
        .await
        .map_err(failed("stopping the service"))?;
    tracing::info!(name = names::SERVICE_NAME, "NATS service API stopped");
    Ok(())
}

/// Answers the requests of one endpoint, one at a time, until shutdown.
async fn answer_each<F, Fut>(mut endpoint: Endpoint, shutdown: &CancellationToken, answer: F)
where
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = Answer>,
{
    loop {
        let request = tokio::select! {
            request = endpoint.next() => match request {
                Some(request) => request,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let response = answer(request.message.payload.clone()).await;
        if let Err(e) = request.respond(response).await {
            tracing::warn!(subject = %request.message.subject, error = %e, "cannot answer a service request");
        }
    }
}

/// Task documents, read through a [`TaskStore`] opened on first use.
struct Tasks {
    client: async_nats::Client,
    store: OnceCell<TaskStore>,
}

impl Tasks {
    async fn document(&self, body: Bytes) -> Answer {
        let id = std::str::from_utf8(&body).unwrap_or_default().trim();
        if !is_valid_task_id(id) {
            return Err(error_answer(
                400,
                format!("`{id}` is not a task id ([A-Za-z0-9_-]{{1,128}})"),
            ));
        }
        let unavailable = |e: BusError| error_answer(503, e.to_string());
        let store = self
            .store
            .get_or_try_init(|| TaskStore::open(self.client.clone()))
            .await
            .map_err(unavailable)?;
        match store.get(id).await.map_err(unavailable)? {
            Some(doc) => Ok(doc.to_json()),
            None => Err(error_answer(404, format!("no task {id}"))),
        }
    }
}

/// `[{name, subject, supported, reason?}]` for the 34 operations.
fn operations_document() -> Value {
    Operation::ALL
        .iter()
        .map(|op| {
            let mut entry = json!({
                "name": op.name(),
                "subject": names::op_subject("<account>", &op.subject_name()),
                "supported": op.unsupported_reason().is_none(),
            });
            if let Some(reason) = op.unsupported_reason() {
                entry["reason"] = json!(reason);
            }
            entry
        })
        .collect()
}
