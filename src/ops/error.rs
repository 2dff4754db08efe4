//! The operations layer's error: what failed, and the task error (code, message, details) and
//! [`Outcome`] it ends in.
//!
//! Mapping decisions:
//! - description problems → `INVALID_REQUEST`, REJECTED (with `details.field`); a DC/OS refusal that
//!   the client codes `INVALID_REQUEST` (405, 413, …) ends FAILED, never REJECTED;
//! - paths outside the root, another account → `FORBIDDEN`, FAILED;
//! - DC/OS failures → [`DcosError::code`] (404 `NOT_FOUND`, 422 `DCOS_VALIDATION` with Marathon's
//!   `details`, still locked `CONFLICT`, 5xx/network `DCOS_UNAVAILABLE`, `AUTH_FAILED`), FAILED;
//! - **DC/OS unreachable** (network failure or 5xx after the client's own retries) and a NATS KV
//!   failure become [`Outcome::Retry`] for the first [`RETRY_DELIVERIES`] deliveries, because every
//!   operation resumes safely on a redelivery (see the idempotency rule in [`super`]); after that
//!   they end FAILED with `DCOS_UNAVAILABLE`.

use std::time::Duration;

use serde_json::{json, Value};

use super::naming::NamingError;
use super::paths::PathError;
use crate::bus::{Outcome, TaskError};
use crate::dcos::DcosError;
use crate::overlays::OverlayError;
use crate::vocabulary::ErrorCode;

/// Deliveries (1 = the first) after which an unreachable DC/OS no longer means "retry later".
pub const RETRY_DELIVERIES: u64 = 3;

/// Base delay of a [`Outcome::Retry`]; grows with the delivery count.
pub const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Why an operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The description is not valid: `INVALID_REQUEST`, REJECTED.
    #[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Invalid { field: String, message: String },

    /// Outside the account's root group, or another account: `FORBIDDEN`.
    #[error("{0}")]
    Forbidden(String),

    /// A path could not be resolved.
    #[error(transparent)]
    Path(#[from] PathError),

    /// A server group name could not be made.
    #[error(transparent)]
    Naming(#[from] NamingError),

    /// A DC/OS call failed.
    #[error(transparent)]
    Dcos(#[from] DcosError),

    /// The overlay store (NATS KV) failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),

    /// Another failure with its own code: `NOT_FOUND`, `DEPLOYMENT_FAILED`, `TIMEOUT`, `CONFLICT`….
    #[error("{message}")]
    Failed {
        code: ErrorCode,
        message: String,
        details: Option<Value>,
    },

    /// The operation has no implementation in this build yet.
    #[error("{0} is not implemented by this driver yet")]
    NotImplemented(&'static str),
}

impl OpError {
    /// An invalid description field.
    pub fn invalid(field: &str, message: impl Into<String>) -> OpError {
        OpError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A `FORBIDDEN` failure.
    pub fn forbidden(message: impl Into<String>) -> OpError {
        OpError::Forbidden(message.into())
    }

    /// A failure with `code`.
    pub fn failed(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError::Failed {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The same failure with `details` (only for [`OpError::Failed`]).
    pub fn with_details(self, details: Value) -> OpError {
        match self {
            OpError::Failed { code, message, .. } => OpError::Failed {
                code,
                message,
                details: Some(details),
            },
            other => other,
        }
    }

    /// The task error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            OpError::Invalid { .. } => ErrorCode::InvalidRequest,
            OpError::Forbidden(_) => ErrorCode::Forbidden,
            OpError::Path(PathError::Outside { .. }) => ErrorCode::Forbidden,
            OpError::Path(_) => ErrorCode::InvalidRequest,
            OpError::Naming(NamingError::InvalidPart { .. }) => ErrorCode::InvalidRequest,
            OpError::Naming(NamingError::Exhausted { .. }) => ErrorCode::Conflict,
            OpError::Dcos(e) => e.code(),
            OpError::Overlay(_) => ErrorCode::DcosUnavailable,
            OpError::Failed { code, .. } => *code,
            OpError::NotImplemented(_) => ErrorCode::UnsupportedOperation,
        }
    }

    /// The task error: code, message and machine-readable details.
    pub fn to_task_error(&self) -> TaskError {
        let details = match self {
            OpError::Invalid { field, .. } => Some(json!({ "field": field })),
            OpError::Path(e) => Some(json!({ "field": e.field() })),
            OpError::Naming(NamingError::InvalidPart { field, .. }) => {
                Some(json!({ "field": field }))
            }
            OpError::Dcos(e) => Some(e.details()).filter(|d| !d.is_null()),
            OpError::Failed { details, .. } => details.clone(),
            _ => None,
        };
        let error = TaskError::new(self.code(), self.to_string());
        match details {
            Some(details) => error.with_details(details),
            None => error,
        }
    }

    /// Whether trying the whole operation again later may help (DC/OS or KV unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OpError::Dcos(DcosError::Network { .. } | DcosError::Unavailable { .. })
                | OpError::Overlay(OverlayError::Store(_))
        )
    }

    /// The outcome of a request that failed with this error on its `delivery`-th delivery.
    pub fn into_outcome(self, delivery: u64) -> Outcome {
        if self.is_transient() && delivery < RETRY_DELIVERIES {
            return Outcome::Retry {
                after: RETRY_DELAY * delivery.max(1) as u32,
                reason: format!(
                    "{} (delivery {delivery} of at most {RETRY_DELIVERIES}; trying again later)",
                    self
                ),
            };
        }
        // Only the description itself can be "never valid" (REJECTED, kept in the DLQ); a refusal
        // by DC/OS is a failure of this attempt, whatever its code.
        let rejected =
            !matches!(self, OpError::Dcos(_)) && self.code() == ErrorCode::InvalidRequest;
        let error = self.to_task_error();
        if rejected {
            Outcome::Rejected(error)
        } else {
            Outcome::Failed(error)
        }
    }
}

impl From<crate::bus::BusError> for OpError {
    fn from(e: crate::bus::BusError) -> Self {
        OpError::Overlay(OverlayError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_outcomes() {
        let invalid = OpError::invalid("capacity.desired", "invalid type");
        assert_eq!(invalid.to_string(), "capacity.desired: invalid type");
        assert!(
            matches!(invalid.into_outcome(1), Outcome::Rejected(e) if e.details.as_ref().unwrap()["field"] == "capacity.desired")
        );
        let outside = OpError::from(PathError::Outside {
            field: "region".into(),
            given: "..".into(),
            resolved: "/".into(),
            root: "/test".into(),
        });
        assert!(
            matches!(outside.into_outcome(1), Outcome::Failed(e) if e.code == ErrorCode::Forbidden)
        );
        let timeout =
            OpError::failed(ErrorCode::Timeout, "late").with_details(json!({"deploymentId": "d"}));
        assert!(
            matches!(timeout.into_outcome(9), Outcome::Failed(e) if e.details.as_ref().unwrap()["deploymentId"] == "d")
        );
        let kv = OpError::Overlay(OverlayError::Store("down".into()));
        assert!(matches!(kv.into_outcome(1), Outcome::Retry { .. }));
        let kv = OpError::Overlay(OverlayError::Store("down".into()));
        assert!(
            matches!(kv.into_outcome(RETRY_DELIVERIES), Outcome::Failed(e) if e.code == ErrorCode::DcosUnavailable)
        );
    }
}
