//! The dead-letter queue: a request that can never be valid is kept on `dcos.dlq.<account>`
//! (stream `DCOS_DLQ`) with its original bytes and headers saying why.

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;

use super::BusError;
use crate::metrics::Metrics;
use crate::names;

/// One rejected request.
#[derive(Debug, Clone)]
pub struct DlqEntry<'a> {
    pub account: &'a str,
    pub task_id: &'a str,
    pub original_subject: &'a str,
    pub error_code: &'a str,
    pub reason: &'a str,
    pub payload: Bytes,
}

/// Publishes dead-letter entries with JetStream, awaiting the ack.
#[derive(Clone)]
pub struct Dlq {
    js: jetstream::Context,
    metrics: Option<Metrics>,
}

impl Dlq {
    pub fn new(js: jetstream::Context) -> Dlq {
        Dlq { js, metrics: None }
    }

    /// The same queue, counting failed publishes into `metrics`.
    pub fn with_metrics(self, metrics: Option<Metrics>) -> Dlq {
        Dlq { metrics, ..self }
    }

    /// Stores `entry` on `dcos.dlq.<account>`. Its `Nats-Msg-Id` is `dlq-<task id>`, so a redelivered
    /// request does not make a second entry.
    pub async fn publish(&self, entry: DlqEntry<'_>) -> Result<(), BusError> {
        let subject = names::dlq_subject(&names::token(entry.account));
        let one_line = |s: &str| s.replace(['\r', '\n'], " ");
        let mut headers = HeaderMap::new();
        headers.insert(
            names::MSG_ID_HEADER,
            format!("dlq-{}", entry.task_id).as_str(),
        );
        headers.insert(names::DLQ_REASON_HEADER, one_line(entry.reason).as_str());
        headers.insert(names::DLQ_ERROR_CODE_HEADER, entry.error_code);
        headers.insert(names::DLQ_TASK_ID_HEADER, entry.task_id);
        headers.insert(
            names::DLQ_ORIGINAL_SUBJECT_HEADER,
            one_line(entry.original_subject).as_str(),
        );
        headers.insert(names::ACCOUNT_HEADER, entry.account);
        let failed = |e: &dyn std::fmt::Display| {
            if let Some(metrics) = &self.metrics {
                metrics.nats_publish_error(&subject);
            }
            BusError::Publish {
                subject: subject.clone(),
                message: e.to_string(),
            }
        };
        self.js
            .publish_with_headers(subject.clone(), headers, entry.payload)
            .await
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        Ok(())
    }
}
