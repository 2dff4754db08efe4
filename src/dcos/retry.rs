//! Whether and when to try a DC/OS call again: [`decide`] is the one place that reads an attempt's outcome,
//! and [`RetryPolicy`] says how long and how often.
//!
//! Retried: connection failures and timeouts, 408, 429, 5xx (honouring `Retry-After`), and Marathon's 409
//! "App is locked by one or more deployments" (its own, usually longer, budget). A 401 asks for one fresh
//! login. Every other 4xx is final.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use rand::Rng;

/// What one attempt produced, as far as retrying cares.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// The connection could not be made (refused, DNS, TLS handshake): nothing reached DC/OS.
    ConnectFailed,
    /// The request or its answer timed out.
    TimedOut,
    /// Another transport error (reset mid-answer, …).
    NetworkFailed,
    /// DC/OS answered.
    Answered {
        status: StatusCode,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
}

/// Why an attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Nothing reached DC/OS: try the next base URL.
    Connect,
    /// A timeout or transport error.
    Network,
    /// 408, 429 or 5xx.
    Status(u16),
    /// 409 locked by a deployment.
    Locked,
}

/// The decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Success, or a failure that would repeat: hand the answer back.
    Final,
    /// 401: log in again (once) and repeat.
    Reauthenticate,
    /// Try again, after at least `after` when DC/OS said so (`Retry-After`).
    Retry {
        reason: RetryReason,
        after: Option<Duration>,
    },
}

/// The retry decision: the one function that says which outcomes are worth another attempt.
pub fn decide(attempt: Attempt<'_>) -> Verdict {
    let (status, headers, body) = match attempt {
        Attempt::ConnectFailed => {
            return Verdict::Retry {
                reason: RetryReason::Connect,
                after: None,
            }
        }
        Attempt::TimedOut | Attempt::NetworkFailed => {
            return Verdict::Retry {
                reason: RetryReason::Network,
                after: None,
            }
        }
        Attempt::Answered {
            status,
            headers,
            body,
        } => (status, headers, body),
    };
    match status.as_u16() {
        401 => Verdict::Reauthenticate,
        408 | 429 | 500..=599 => Verdict::Retry {
            reason: RetryReason::Status(status.as_u16()),
            after: retry_after(headers),
        },
        409 if is_locked(body) => Verdict::Retry {
            reason: RetryReason::Locked,
            after: retry_after(headers),
        },
        _ => Verdict::Final,
    }
}

/// Whether a 409 body is Marathon's "App is locked by one or more deployments".
pub fn is_locked(body: &[u8]) -> bool {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|j| {
            j.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message
        .to_ascii_lowercase()
        .contains("locked by one or more deployments")
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// How often and how long to retry. Injectable per client and per call ([`super::DcosClient::with_retry`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First backoff; doubles per attempt.
    pub base: Duration,
    /// Largest single backoff (also the largest honoured `Retry-After`).
    pub cap: Duration,
    /// Attempts in all for network errors, 408, 429 and 5xx (1 = no retry).
    pub max_attempts: u32,
    /// Attempts in all while the app stays locked by a deployment; then `CONFLICT`.
    pub locked_attempts: u32,
    /// Backoff between attempts on a locked app (a deployment takes seconds to minutes).
    pub locked_delay: Duration,
    /// No new attempt starts after this much time since the first one.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
            max_attempts: 5,
            locked_attempts: 10,
            locked_delay: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Tiny delays, for tests against the simulator.
    pub fn fast() -> Self {
        RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(20),
            max_attempts: 5,
            locked_attempts: 50,
            locked_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(10),
        }
    }

    /// One attempt, no retries (a 401 still gets its one fresh login).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            locked_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The same policy with a locked budget of `attempts` (e.g. an operation that waits for a running
    /// deployment to end before it changes the app).
    pub fn on_locked(mut self, attempts: u32, delay: Duration) -> Self {
        self.locked_attempts = attempts.max(1);
        self.locked_delay = delay;
        self
    }

    /// The wait before attempt `attempt + 1`, or `None` when the budget is spent. `attempt` counts the attempts
    /// made so far (≥ 1) for this reason class; `elapsed` runs from the first attempt.
    pub fn delay(&self, reason: RetryReason, attempt: u32, elapsed: Duration) -> Option<Duration> {
        self.delay_with(reason, attempt, elapsed, None)
    }

    /// Like [`delay`](Self::delay), honouring DC/OS's `Retry-After` (capped at `cap`).
    pub fn delay_with(
        &self,
        reason: RetryReason,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let (budget, nominal) = match reason {
            RetryReason::Locked => (self.locked_attempts, self.locked_delay),
            _ => (self.max_attempts, self.exponential(attempt)),
        };
        if attempt >= budget {
            return None;
        }
        let wait = jitter(nominal).max(retry_after.unwrap_or(Duration::ZERO).min(self.cap));
        if elapsed + wait > self.max_elapsed {
            return None;
        }
        Some(wait)
    }

    fn exponential(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// A uniformly random wait in `[nominal / 2, nominal]`, so many callers do not retry in step.
fn jitter(nominal: Duration) -> Duration {
    if nominal.is_zero() {
        return nominal;
    }
    let half = nominal / 2;
    let extra = rand::rng().random_range(0..=half.as_micros() as u64);
    half + Duration::from_micros(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, body: &str) -> Verdict {
        answered_with(status, body, HeaderMap::new())
    }

    fn answered_with(status: u16, body: &str, headers: HeaderMap) -> Verdict {
        decide(Attempt::Answered {
            status: StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: body.as_bytes(),
        })
    }

    const LOCKED: &str = r#"{"message":"App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/abc'.","deployments":[{"id":"abc"}]}"#;

    #[test]
    fn decision_table() {
        let retry = |reason| Verdict::Retry {
            reason,
            after: None,
        };
        assert_eq!(decide(Attempt::ConnectFailed), retry(RetryReason::Connect));
        assert_eq!(decide(Attempt::TimedOut), retry(RetryReason::Network));
        assert_eq!(decide(Attempt::NetworkFailed), retry(RetryReason::Network));
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                answered(status, ""),
                retry(RetryReason::Status(status)),
                "{status}"
            );
        }
        assert_eq!(answered(409, LOCKED), retry(RetryReason::Locked));
        assert_eq!(answered(401, "<html/>"), Verdict::Reauthenticate);
        for status in [200, 201, 202, 204, 400, 403, 404, 405, 413, 422] {
            assert_eq!(answered(status, "{}"), Verdict::Final, "{status}");
        }
        let exists = r#"{"message":"An app with id [/x] already exists."}"#;
        assert_eq!(answered(409, exists), Verdict::Final);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            answered_with(503, "", headers),
            Verdict::Retry {
                reason: RetryReason::Status(503),
                after: Some(Duration::from_secs(7))
            }
        );
        let mut headers = HeaderMap::new();
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        headers.insert(
            http::header::RETRY_AFTER,
            later.to_rfc2822().replace("+0000", "GMT").parse().unwrap(),
        );
        let Verdict::Retry {
            after: Some(after), ..
        } = answered_with(429, "", headers)
        else {
            panic!("429 retries")
        };
        assert!(
            after > Duration::from_secs(25) && after <= Duration::from_secs(30),
            "{after:?}"
        );
    }

    #[test]
    fn policy_budgets() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: 3,
            locked_attempts: 5,
            locked_delay: Duration::from_millis(500),
            max_elapsed: Duration::from_secs(60),
        };
        let status = RetryReason::Status(503);
        let first = policy.delay(status, 1, Duration::ZERO).unwrap();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = policy.delay(status, 2, Duration::ZERO).unwrap();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        assert_eq!(policy.delay(status, 3, Duration::ZERO), None);
        // The cap bounds the exponential growth.
        let big = RetryPolicy {
            max_attempts: 100,
            ..policy.clone()
        };
        assert!(big.delay(status, 40, Duration::ZERO).unwrap() <= Duration::from_secs(1));
        // Locked has its own budget.
        assert!(policy
            .delay(RetryReason::Locked, 4, Duration::ZERO)
            .is_some());
        assert_eq!(policy.delay(RetryReason::Locked, 5, Duration::ZERO), None);
        // Retry-After is honoured up to the cap.
        let after = policy
            .delay_with(status, 1, Duration::ZERO, Some(Duration::from_millis(800)))
            .unwrap();
        assert_eq!(after, Duration::from_millis(800));
        let capped = policy
            .delay_with(status, 1, Duration::ZERO, Some(Duration::from_secs(3600)))
            .unwrap();
        assert_eq!(capped, Duration::from_secs(1));
        // Nothing starts after max_elapsed.
        assert_eq!(policy.delay(status, 1, Duration::from_secs(60)), None);
        assert_eq!(RetryPolicy::none().delay(status, 1, Duration::ZERO), None);
        let patient = RetryPolicy::none().on_locked(3, Duration::from_millis(10));
        assert!(patient
            .delay(RetryReason::Locked, 2, Duration::ZERO)
            .is_some());
    }

    #[test]
    fn locked_is_recognised_from_the_body() {
        assert!(is_locked(LOCKED.as_bytes()));
        assert!(!is_locked(
            br#"{"message":"An app with id [/x] already exists."}"#
        ));
        assert!(!is_locked(b""));
    }
}
