//! The one error type of the DC/OS client, and how each failure maps to a task error code.
//!
//! Every variant names the call that failed (`PUT /v2/apps/prod/api-v001`). Messages carry what DC/OS said,
//! never a credential: login bodies are not echoed and tokens are not logged.

use std::fmt;

use serde_json::Value;

use crate::vocabulary::ErrorCode;

/// The call that failed: HTTP method and path (without the base URL and query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `GET`, `PUT`, …
    pub method: http::Method,
    /// `/v2/apps/prod/api-v001`.
    pub path: String,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// What went wrong talking to DC/OS.
#[derive(Debug, thiserror::Error)]
pub enum DcosError {
    /// 404: the app, task, deployment, group, job or run does not exist.
    #[error("{call}: not found: {message}")]
    NotFound { call: Call, message: String },

    /// 422 (or 400): Marathon/Metronome refused the request; `details` as DC/OS sent them.
    #[error("{call}: rejected by DC/OS ({status}): {message}")]
    Validation {
        call: Call,
        status: u16,
        message: String,
        /// Boxed: a JSON value is large and errors travel by value.
        details: Box<Value>,
    },

    /// 409 "App is locked by one or more deployments", still so after the allowed retries.
    #[error("{call}: locked by deployment(s) {deployments:?} after {attempts} attempt(s)")]
    Locked {
        call: Call,
        message: String,
        deployments: Vec<String>,
        attempts: u32,
    },

    /// Another 409: the id is already taken, a job still has active runs, ….
    #[error("{call}: conflict: {message}")]
    Conflict { call: Call, message: String },

    /// The login failed, or a token was refused (401/403), also after a fresh login.
    #[error("{call}: authentication failed: {reason}")]
    Auth { call: Call, reason: String },

    /// Another 4xx DC/OS would answer the same way again (405, 406, 413, …).
    #[error("{call}: refused by DC/OS ({status}): {message}")]
    Refused {
        call: Call,
        status: u16,
        message: String,
    },

    /// 5xx, 408 or 429, still so after the allowed retries.
    #[error("{call}: DC/OS answered {status} after {attempts} attempt(s): {message}")]
    Unavailable {
        call: Call,
        status: u16,
        attempts: u32,
        message: String,
    },

    /// Connection refused, reset, timed out, …, still so after the allowed retries (and on every base URL).
    #[error("{call}: cannot reach DC/OS after {attempts} attempt(s): {source}")]
    Network {
        call: Call,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    /// The answer did not have the expected shape.
    #[error("{call}: unexpected answer: {source}")]
    Decode {
        call: Call,
        #[source]
        source: serde_json::Error,
    },

    /// The answer was larger than the configured bound.
    #[error("{call}: answer larger than {limit} bytes")]
    TooLarge { call: Call, limit: usize },

    /// The account has no such service (e.g. no Metronome URL).
    #[error("{call}: the account has no {service} configured")]
    NotConfigured { call: Call, service: &'static str },

    /// The client could not be built (CA file, private key, TLS setup).
    #[error("DC/OS client setup: {what}: {message}")]
    Setup { what: String, message: String },
}

impl DcosError {
    /// The task error code (DESIGN.md) this failure ends in.
    ///
    /// 400 and 422 both become `DCOS_VALIDATION`: the driver validated the description before calling, so a
    /// refusal from DC/OS is DC/OS's judgement of what the driver built from it, and its `details` are the
    /// useful part for the caller.
    pub fn code(&self) -> ErrorCode {
        match self {
            DcosError::NotFound { .. } => ErrorCode::NotFound,
            DcosError::Validation { .. } => ErrorCode::DcosValidation,
            DcosError::Locked { .. } | DcosError::Conflict { .. } => ErrorCode::Conflict,
            DcosError::Auth { .. } => ErrorCode::AuthFailed,
            DcosError::Refused { .. } => ErrorCode::InvalidRequest,
            DcosError::Unavailable { .. }
            | DcosError::Network { .. }
            | DcosError::Decode { .. }
            | DcosError::TooLarge { .. }
            | DcosError::Setup { .. } => ErrorCode::DcosUnavailable,
            DcosError::NotConfigured { .. } => ErrorCode::UnsupportedOperation,
        }
    }

    /// The human-readable message for the task document.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Structured details for the task document: DC/OS's validation details, the locking deployments, the
    /// HTTP status, or `null`.
    pub fn details(&self) -> Value {
        match self {
            DcosError::Validation {
                status, details, ..
            } => serde_json::json!({ "status": status, "details": details }),
            DcosError::Locked { deployments, .. } => {
                serde_json::json!({ "status": 409, "deployments": deployments })
            }
            DcosError::Unavailable { status, .. } | DcosError::Refused { status, .. } => {
                serde_json::json!({ "status": status })
            }
            _ => Value::Null,
        }
    }

    /// The call that failed, if the error came from one.
    pub fn call(&self) -> Option<&Call> {
        match self {
            DcosError::NotFound { call, .. }
            | DcosError::Validation { call, .. }
            | DcosError::Locked { call, .. }
            | DcosError::Conflict { call, .. }
            | DcosError::Auth { call, .. }
            | DcosError::Refused { call, .. }
            | DcosError::Unavailable { call, .. }
            | DcosError::Network { call, .. }
            | DcosError::Decode { call, .. }
            | DcosError::TooLarge { call, .. }
            | DcosError::NotConfigured { call, .. } => Some(call),
            DcosError::Setup { .. } => None,
        }
    }

    /// Builds the error for a final, unsuccessful answer (after retries were spent or not allowed).
    pub(crate) fn from_answer(call: Call, status: u16, body: &[u8], attempts: u32) -> DcosError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let message = answer_message(json.as_ref(), body);
        match status {
            404 => DcosError::NotFound { call, message },
            400 | 422 => DcosError::Validation {
                call,
                status,
                message,
                details: Box::new(
                    json.as_ref()
                        .and_then(|j| j.get("details"))
                        .cloned()
                        .unwrap_or(Value::Null),
                ),
            },
            409 if super::retry::is_locked(body) => DcosError::Locked {
                call,
                message,
                deployments: super::types::deployment_ids(
                    json.as_ref().and_then(|j| j.get("deployments")),
                ),
                attempts,
            },
            409 => DcosError::Conflict { call, message },
            401 | 403 => DcosError::Auth {
                call,
                reason: format!("DC/OS answered {status}: {message}"),
            },
            408 | 429 | 500..=599 => DcosError::Unavailable {
                call,
                status,
                attempts,
                message,
            },
            _ => DcosError::Refused {
                call,
                status,
                message,
            },
        }
    }
}

/// DC/OS's own words: `message` (Marathon, Metronome) or `description`/`title` (IAM), else the start of the body.
fn answer_message(json: Option<&Value>, body: &[u8]) -> String {
    if let Some(j) = json {
        for key in ["message", "description", "title"] {
            if let Some(text) = j.get(key).and_then(Value::as_str) {
                return text.to_string();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call {
            method: http::Method::PUT,
            path: "/v2/apps/prod/api".into(),
        }
    }

    fn code_of(status: u16, body: &str) -> ErrorCode {
        DcosError::from_answer(call(), status, body.as_bytes(), 1).code()
    }

    #[test]
    fn statuses_map_to_codes() {
        assert_eq!(
            code_of(404, r#"{"message":"App '/x' does not exist"}"#),
            ErrorCode::NotFound
        );
        assert_eq!(
            code_of(422, r#"{"message":"Object is not valid"}"#),
            ErrorCode::DcosValidation
        );
        assert_eq!(
            code_of(400, r#"{"message":"Invalid JSON","details":"eof"}"#),
            ErrorCode::DcosValidation
        );
        assert_eq!(
            code_of(409, r#"{"message":"An app with id [/x] already exists."}"#),
            ErrorCode::Conflict
        );
        assert_eq!(
            code_of(401, "<html>Unauthorized</html>"),
            ErrorCode::AuthFailed
        );
        assert_eq!(code_of(403, ""), ErrorCode::AuthFailed);
        assert_eq!(code_of(503, ""), ErrorCode::DcosUnavailable);
        assert_eq!(code_of(429, ""), ErrorCode::DcosUnavailable);
        assert_eq!(code_of(405, ""), ErrorCode::InvalidRequest);
    }

    #[test]
    fn validation_keeps_details_and_names_the_call() {
        let body = r#"{"message":"Object is not valid","details":[{"path":"/upgradeStrategy/minimumHealthCapacity","errors":["is greater than 1"]}]}"#;
        let err = DcosError::from_answer(call(), 422, body.as_bytes(), 1);
        assert_eq!(
            err.details()["details"][0]["path"],
            "/upgradeStrategy/minimumHealthCapacity"
        );
        assert_eq!(err.details()["status"], 422);
        let message = err.message();
        assert!(message.contains("PUT /v2/apps/prod/api"), "{message}");
        assert!(message.contains("Object is not valid"), "{message}");
    }

    #[test]
    fn locked_keeps_the_deployments() {
        let body = r#"{"message":"App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/d1'.","deployments":[{"id":"d1"}]}"#;
        let err = DcosError::from_answer(call(), 409, body.as_bytes(), 4);
        assert_eq!(err.code(), ErrorCode::Conflict);
        assert!(
            matches!(&err, DcosError::Locked { deployments, attempts: 4, .. } if deployments == &["d1"])
        );
        assert_eq!(err.details()["deployments"][0], "d1");
    }

    #[test]
    fn html_bodies_are_cut_short() {
        let body = format!("<html>{}</html>", "x".repeat(1000));
        let err = DcosError::from_answer(call(), 502, body.as_bytes(), 3);
        assert!(err.message().len() < 400);
    }
}
