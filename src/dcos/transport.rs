//! One HTTP exchange with DC/OS, repeated as the retry decision says: base-URL rotation, the concurrency
//! bound, the token, the response-size bound, tracing and the per-attempt [`CallRecord`] hook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use super::auth::{Token, TokenSource};
use super::error::{Call, DcosError};
use super::retry::{decide, Attempt, RetryPolicy, RetryReason, Verdict};

/// Which part of DC/OS a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Marathon `/v2`, `/ping`.
    Marathon,
    /// Metronome `/v1`.
    Metronome,
    /// The IAM login `/acs`.
    Login,
}

impl Service {
    /// The metric label: `marathon`, `metronome`, `login`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Marathon => "marathon",
            Service::Metronome => "metronome",
            Service::Login => "login",
        }
    }
}

/// One attempt, as reported to the [`CallHook`](super::CallHook) (Prometheus counts these).
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    /// The account whose client made the call.
    pub account: &'a str,
    /// Marathon, Metronome or the login.
    pub service: Service,
    /// HTTP method.
    pub method: &'a Method,
    /// A low-cardinality name of the endpoint, e.g. `apps.update` (for metric labels).
    pub endpoint: &'static str,
    /// The actual path (high cardinality: for logs, not labels).
    pub path: &'a str,
    /// The HTTP status, or `None` when no answer came.
    pub status: Option<u16>,
    /// `connect`, `timeout` or `network` when no answer came.
    pub failure: Option<&'static str>,
    /// Duration of this attempt.
    pub elapsed: Duration,
    /// 1 for the first attempt of a call, 2 for its first retry, ….
    pub attempt: u32,
}

/// What a typed method asks the transport to do.
#[derive(Debug, Clone)]
pub(crate) struct CallSpec {
    pub service: Service,
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    /// An already-encoded query string, appended as is.
    pub raw_query: Option<String>,
    pub body: Option<Bytes>,
    pub endpoint: &'static str,
}

impl CallSpec {
    pub fn new(
        service: Service,
        method: Method,
        path: impl Into<String>,
        endpoint: &'static str,
    ) -> Self {
        CallSpec {
            service,
            method,
            path: path.into(),
            query: Vec::new(),
            raw_query: None,
            body: None,
            endpoint,
        }
    }

    pub fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    pub fn query_if(self, on: bool, key: &'static str, value: impl ToString) -> Self {
        if on {
            self.query(key, value)
        } else {
            self
        }
    }

    pub fn json_body<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = Some(Bytes::from(
            serde_json::to_vec(body).expect("JSON values always serialize"),
        ));
        self
    }

    pub fn call(&self) -> Call {
        Call {
            method: self.method.clone(),
            path: self.path.clone(),
        }
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Marathon's base URLs, and which one worked last.
pub(crate) struct Endpoints {
    bases: Vec<String>,
    current: AtomicUsize,
}

impl Endpoints {
    pub fn new(bases: Vec<String>) -> Self {
        Endpoints {
            bases,
            current: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn current(&self) -> (usize, &str) {
        let index = self.current.load(Ordering::Relaxed) % self.bases.len().max(1);
        (index, &self.bases[index])
    }

    /// Moves on from `failed`, unless a concurrent caller already did.
    pub fn rotate(&self, failed: usize) {
        let next = (failed + 1) % self.bases.len().max(1);
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Moves on from `base` (by URL), for callers that hold a URL rather than an index.
    pub fn rotate_from(&self, base: &str) {
        if let Some(index) = self.bases.iter().position(|b| b == base) {
            self.rotate(index);
        }
    }
}

enum SendFailure {
    Http(reqwest::Error),
    TooLarge,
}

/// The shared machinery of one account's client.
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub stream_http: reqwest::Client,
    pub marathon: Endpoints,
    pub metronome: Option<String>,
    pub login: Option<String>,
    pub auth: Option<TokenSource>,
    pub permits: Semaphore,
    pub max_response_bytes: usize,
    pub hook: Option<super::CallHook>,
    pub account: String,
}

impl Transport {
    /// Runs the call to a 2xx answer or a final error, retrying as [`decide`] and `policy` say.
    pub async fn execute(&self, spec: CallSpec, policy: &RetryPolicy) -> Result<Answer, DcosError> {
        let span = tracing::info_span!(
            "dcos_call",
            service = spec.service.as_str(),
            method = %spec.method,
            path = %spec.path,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.run(&spec, policy).instrument(span.clone()).await;
        span.record("elapsed_ms", started.elapsed().as_millis() as u64);
        if let Err(error) = &result {
            span.in_scope(|| tracing::debug!(%error, "DC/OS call failed"));
        }
        result
    }

    async fn run(&self, spec: &CallSpec, policy: &RetryPolicy) -> Result<Answer, DcosError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut transient = 0u32;
        let mut locked = 0u32;
        let mut rotations = 0usize;
        let mut reauthenticated = false;
        loop {
            let token = self.token_for(spec.service, policy).await?;
            let (base, base_index) = self.base(spec)?;
            let url = match &spec.raw_query {
                Some(query) => format!("{base}{}?{query}", spec.path),
                None => format!("{base}{}", spec.path),
            };
            attempts += 1;
            let attempt_started = Instant::now();
            let sent = {
                let _permit = self.permits.acquire().await.expect("never closed");
                self.send(spec, &url, token.as_ref()).await
            };
            let elapsed = attempt_started.elapsed();
            let outcome = match &sent {
                Ok(answer) => Attempt::Answered {
                    status: answer.status,
                    headers: &answer.headers,
                    body: &answer.body,
                },
                Err(SendFailure::TooLarge) => {
                    self.record(spec, None, Some("too_large"), elapsed, attempts);
                    return Err(DcosError::TooLarge {
                        call: spec.call(),
                        limit: self.max_response_bytes,
                    });
                }
                Err(SendFailure::Http(e)) if e.is_connect() => Attempt::ConnectFailed,
                Err(SendFailure::Http(e)) if e.is_timeout() => Attempt::TimedOut,
                Err(SendFailure::Http(_)) => Attempt::NetworkFailed,
            };
            let (status, failure) = match outcome {
                Attempt::Answered { status, .. } => (Some(status.as_u16()), None),
                Attempt::ConnectFailed => (None, Some("connect")),
                Attempt::TimedOut => (None, Some("timeout")),
                Attempt::NetworkFailed => (None, Some("network")),
            };
            self.record(spec, status, failure, elapsed, attempts);
            let span = tracing::Span::current();
            span.record("attempts", attempts);
            if let Some(status) = status {
                span.record("status", status);
            }
            let verdict = decide(outcome);
            let sent = match sent {
                Ok(answer) => Ok(answer),
                Err(SendFailure::Http(e)) => Err(e),
                Err(SendFailure::TooLarge) => unreachable!("returned above"),
            };
            match verdict {
                Verdict::Final => return finish(spec, sent, attempts),
                Verdict::Reauthenticate => match (&self.auth, &token) {
                    (Some(auth), Some(token)) if !reauthenticated => {
                        tracing::info!(
                            generation = token.generation,
                            "token refused; logging in again"
                        );
                        auth.rejected(token.generation);
                        reauthenticated = true;
                    }
                    _ => return finish(spec, sent, attempts),
                },
                Verdict::Retry { reason, after } => {
                    if reason == RetryReason::Connect
                        && spec.service == Service::Marathon
                        && self.marathon.len() > 1
                    {
                        self.marathon.rotate(base_index);
                        rotations += 1;
                        if rotations < self.marathon.len() {
                            tracing::warn!(%base, "Marathon unreachable; trying the next URL");
                            continue;
                        }
                        rotations = 0;
                    }
                    let counted = if reason == RetryReason::Locked {
                        locked += 1;
                        locked
                    } else {
                        transient += 1;
                        transient
                    };
                    match policy.delay_with(reason, counted, started.elapsed(), after) {
                        Some(wait) => {
                            tracing::debug!(
                                ?reason,
                                attempt = attempts,
                                wait_ms = wait.as_millis() as u64,
                                "retrying"
                            );
                            tokio::time::sleep(wait).await;
                        }
                        None => return finish(spec, sent, attempts),
                    }
                }
            }
        }
    }

    async fn token_for(
        &self,
        service: Service,
        policy: &RetryPolicy,
    ) -> Result<Option<Token>, DcosError> {
        match (&self.auth, service) {
            (Some(auth), Service::Marathon | Service::Metronome) => {
                Ok(Some(auth.current(self, policy).await?))
            }
            _ => Ok(None),
        }
    }

    fn base(&self, spec: &CallSpec) -> Result<(String, usize), DcosError> {
        let missing = |service| DcosError::NotConfigured {
            call: spec.call(),
            service,
        };
        match spec.service {
            Service::Marathon if self.marathon.len() > 0 => {
                let (index, base) = self.marathon.current();
                Ok((base.to_string(), index))
            }
            Service::Marathon => Err(missing("Marathon")),
            Service::Metronome => self
                .metronome
                .clone()
                .map(|b| (b, 0))
                .ok_or_else(|| missing("Metronome")),
            Service::Login => self
                .login
                .clone()
                .map(|b| (b, 0))
                .ok_or_else(|| missing("DC/OS login URL")),
        }
    }

    async fn send(
        &self,
        spec: &CallSpec,
        url: &str,
        token: Option<&Token>,
    ) -> Result<Answer, SendFailure> {
        let mut request = self
            .http
            .request(spec.method.clone(), url)
            .header(ACCEPT, "application/json");
        if !spec.query.is_empty() {
            request = request.query(&spec.query);
        }
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, authorization(&token.value));
        }
        if let Some(body) = &spec.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut response = request.send().await.map_err(SendFailure::Http)?;
        let status = response.status();
        let headers = response.headers().clone();
        // Sized from Content-Length when Marathon gives one (bounded by the limit): a 48 MB snapshot then
        // costs one allocation instead of doubling its way up (and a peak of about twice its size).
        let expected = response
            .content_length()
            .map(|n| (n as usize).min(self.max_response_bytes))
            .unwrap_or(0);
        let mut body = Vec::with_capacity(expected);
        while let Some(chunk) = response.chunk().await.map_err(SendFailure::Http)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(SendFailure::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    fn record(
        &self,
        spec: &CallSpec,
        status: Option<u16>,
        failure: Option<&'static str>,
        elapsed: Duration,
        attempt: u32,
    ) {
        if let Some(hook) = &self.hook {
            hook(&CallRecord {
                account: &self.account,
                service: spec.service,
                method: &spec.method,
                endpoint: spec.endpoint,
                path: &spec.path,
                status,
                failure,
                elapsed,
                attempt,
            });
        }
    }
}

/// `Authorization: token=<token>`, marked sensitive so no debug output shows it.
pub(crate) fn authorization(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("token={token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("token=invalid"));
    value.set_sensitive(true);
    value
}

/// The answer to hand back once no further attempt will be made.
fn finish(
    spec: &CallSpec,
    sent: Result<Answer, reqwest::Error>,
    attempts: u32,
) -> Result<Answer, DcosError> {
    match sent {
        Ok(answer) if answer.status.is_success() => Ok(answer),
        Ok(answer) => Err(DcosError::from_answer(
            spec.call(),
            answer.status.as_u16(),
            &answer.body,
            attempts,
        )),
        Err(source) => Err(DcosError::Network {
            call: spec.call(),
            attempts,
            source,
        }),
    }
}
