//! Turning a JetStream message from `DCOS_OPS` into a validated request, or into the reason it can
//! never be valid.
//!
//! The checks, in order: the subject has the form `dcos.op.<account>.<operation>`; the `Nats-Msg-Id`
//! header (if any) is a valid task id; the body is at most `max_request_bytes`; the operation is one of
//! the 34; the body is a JSON object. Any failure is an `INVALID_REQUEST` rejection with a field path.

use std::sync::LazyLock;

use async_nats::HeaderMap;
use bytes::Bytes;
use regex::Regex;
use serde_json::{json, Value};

use super::task::TaskError;
use crate::names::{self, MSG_ID_HEADER};
use crate::vocabulary::{ErrorCode, Operation};

static TASK_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,128}$").expect("static regex"));

/// Whether `id` may be a task id: `[A-Za-z0-9_-]{1,128}`.
pub fn is_valid_task_id(id: &str) -> bool {
    TASK_ID.is_match(id)
}

/// Task ids a client may choose: valid, and not in the `auto-` space the driver derives from stream
/// sequences (a client id `auto-57` would collide with the id given to an id-less request at sequence 57).
pub fn is_client_task_id(id: &str) -> bool {
    is_valid_task_id(id) && !id.starts_with(AUTO_PREFIX)
}

const AUTO_PREFIX: &str = "auto-";

/// The task id of a request without (or with an invalid) `Nats-Msg-Id`: derived from the stream
/// sequence, which the client got in its publish ack, so a redelivery gets the same id.
pub fn auto_task_id(stream_sequence: u64) -> String {
    format!("{AUTO_PREFIX}{stream_sequence}")
}

/// What the worker knows about a message before deciding whether it is valid.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The subject it was published on.
    pub subject: String,
    /// The account token of the subject (`_` when the subject has none).
    pub account: String,
    /// The operation token of the subject, as sent.
    pub operation_token: String,
    /// The task id (from `Nats-Msg-Id`, else [`auto_task_id`]).
    pub task_id: String,
    /// The `Dcos-Reply-To` subject, when present and usable.
    pub reply_to: Option<String>,
    /// Stream sequence of the message in `DCOS_OPS`.
    pub stream_sequence: u64,
    /// How many times JetStream has delivered it (1 = first time).
    pub delivered: i64,
    /// The body as sent.
    pub payload: Bytes,
    /// The checks' verdict: the operation and the description, or why the request is invalid.
    pub verdict: Result<(Operation, Value), TaskError>,
}

impl Envelope {
    /// Reads and validates a message.
    pub fn read(
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
        stream_sequence: u64,
        delivered: i64,
        max_request_bytes: usize,
    ) -> Envelope {
        let tokens: Vec<&str> = subject.split('.').collect();
        let account = tokens.get(2).copied().unwrap_or("_").to_string();
        let operation_token = tokens.get(3).copied().unwrap_or("").to_string();
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let given_id = header(MSG_ID_HEADER);
        let reply_to = header(names::REPLY_TO_HEADER).filter(|s| usable_reply_subject(s));
        let task_id = match &given_id {
            Some(id) if is_client_task_id(id) => id.clone(),
            _ => auto_task_id(stream_sequence),
        };
        let verdict = validate(&tokens, given_id.as_deref(), &payload, max_request_bytes);
        Envelope {
            subject: subject.to_string(),
            account,
            operation_token,
            task_id,
            reply_to,
            stream_sequence,
            delivered,
            payload,
            verdict,
        }
    }

    /// The operation name for the task document: upper case when known, else the token as sent.
    pub fn operation_name(&self) -> String {
        match &self.verdict {
            Ok((op, _)) => op.name().to_string(),
            Err(_) => self
                .operation_token
                .parse::<Operation>()
                .map(|op| op.name().to_string())
                .unwrap_or_else(|_| self.operation_token.clone()),
        }
    }
}

fn invalid(message: impl Into<String>, details: Value) -> TaskError {
    TaskError::new(ErrorCode::InvalidRequest, message).with_details(details)
}

fn validate(
    tokens: &[&str],
    given_id: Option<&str>,
    payload: &[u8],
    max_request_bytes: usize,
) -> Result<(Operation, Value), TaskError> {
    if tokens.len() != 4 || tokens[0] != "dcos" || tokens[1] != "op" {
        return Err(invalid(
            format!(
                "subject `{}` is not dcos.op.<account>.<operation>",
                tokens.join(".")
            ),
            json!({"field": "subject", "expected": "dcos.op.<account>.<operation>"}),
        ));
    }
    if let Some(id) = given_id {
        if !is_valid_task_id(id) {
            return Err(invalid(
                format!("header {MSG_ID_HEADER} `{id}` must match [A-Za-z0-9_-]{{1,128}}"),
                json!({"field": format!("headers.{MSG_ID_HEADER}"), "value": id}),
            ));
        }
        if !is_client_task_id(id) {
            return Err(invalid(
                format!("header {MSG_ID_HEADER} `{id}` uses the reserved prefix `{AUTO_PREFIX}` (ids the driver gives requests without one)"),
                json!({"field": format!("headers.{MSG_ID_HEADER}"), "value": id}),
            ));
        }
    }
    if payload.len() > max_request_bytes {
        return Err(invalid(
            format!(
                "body is {} bytes, more than the limit of {max_request_bytes}",
                payload.len()
            ),
            json!({"field": "body", "size": payload.len(), "limit": max_request_bytes}),
        ));
    }
    let operation: Operation = tokens[3].parse().map_err(|_| {
        invalid(
            format!(
                "unknown operation `{}`: use the lower-case name of one of the 34 operations, e.g. resize_server_group",
                tokens[3]
            ),
            json!({"field": "subject.operation", "value": tokens[3]}),
        )
    })?;
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "body is empty: send the operation's description as a JSON object (at least `{}`)",
            json!({"field": "body"}),
        ));
    }
    let body: Value = serde_json::from_slice(payload).map_err(|e| {
        invalid(
            format!("body is not valid JSON: {e}"),
            json!({"field": "body", "line": e.line(), "column": e.column()}),
        )
    })?;
    if !body.is_object() {
        return Err(invalid(
            "body must be a JSON object (the operation's description)",
            json!({"field": "body", "path": "$"}),
        ));
    }
    Ok((operation, body))
}

/// A reply subject must be a plain subject: no wildcards, no white space, no empty tokens.
fn usable_reply_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.chars().any(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(subject: &str, id: Option<&str>, body: &str) -> Envelope {
        let mut headers = HeaderMap::new();
        if let Some(id) = id {
            headers.insert(MSG_ID_HEADER, id);
        }
        Envelope::read(
            subject,
            Some(&headers),
            Bytes::from(body.to_string()),
            7,
            1,
            64,
        )
    }

    #[test]
    fn valid_request() {
        let e = read(
            "dcos.op.prod.resize_server_group",
            Some("abc-1"),
            "{\"a\":1}",
        );
        assert_eq!(e.task_id, "abc-1");
        assert_eq!(e.verdict.unwrap().0, Operation::ResizeServerGroup);
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let field = |e: Envelope| e.verdict.unwrap_err().details.unwrap()["field"].clone();
        assert_eq!(field(read("dcos.op.prod", None, "{}")), "subject");
        assert_eq!(
            field(read("dcos.op.prod.nope", None, "{}")),
            "subject.operation"
        );
        let bad_id = read("dcos.op.prod.run_job", Some("a.b"), "{}");
        assert_eq!(bad_id.task_id, "auto-7");
        assert_eq!(field(bad_id), "headers.Nats-Msg-Id");
        assert_eq!(field(read("dcos.op.prod.run_job", None, "[1]")), "body");
        assert_eq!(field(read("dcos.op.prod.run_job", None, "{")), "body");
        assert_eq!(field(read("dcos.op.prod.run_job", None, "")), "body");
        assert_eq!(
            field(read("dcos.op.prod.run_job", None, &"x".repeat(65))),
            "body"
        );
    }

    #[test]
    fn task_ids() {
        assert!(is_valid_task_id("A_z-09"));
        assert!(!is_valid_task_id(""));
        assert!(!is_valid_task_id(&"a".repeat(129)));
        assert!(!is_valid_task_id("a b"));
        assert!(is_valid_task_id("auto-57"));
        assert!(!is_client_task_id("auto-57"));
        assert!(is_client_task_id("autoscale-1"));
    }
}
