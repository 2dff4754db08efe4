//! The typed DC/OS client: Marathon `/v2`, Metronome `/v1` and the DC/OS login, for one account.
//!
//! [`DcosClient`] is cheap to clone (an `Arc` inside) and shares one HTTP connection pool, one token and one
//! bound on concurrent calls per cluster. Every call goes through the same loop: token → permit → request →
//! [`retry::decide`] → backoff per [`RetryPolicy`]; failures end as a [`DcosError`] whose
//! [`code`](DcosError::code) is the task error code.
//!
//! Decisions:
//! - 400 and 422 are both `DCOS_VALIDATION` with DC/OS's `details` kept (a string for Marathon's "Invalid
//!   JSON", a list of `{path, errors}` otherwise): the driver validated the request before calling, so a
//!   refusal is DC/OS's verdict on what the driver built. Other unexpected 4xx are `INVALID_REQUEST`.
//! - Every method is retried the same way, POST included: after an ambiguous failure (timeout, 502/504) a
//!   create may have happened, so a retried `create_app`/`create_job` can end in `CONFLICT` "already exists";
//!   operations that must be idempotent check for their own earlier result (they know the id they used).
//! - `Retry-After` is honoured up to the policy's `cap`; a locked app has its own budget
//!   ([`RetryPolicy::on_locked`]), after which it is `CONFLICT` with the locking deployments in `details`.
//! - The token is renewed at 80 % of its life (`exp` read from the token without verifying; 5 days if it is
//!   not a JWT), and once after a 401; a 401 right after a fresh login is `AUTH_FAILED`.
//!
//! Layout:
//! - [`error`]: `DcosError`, what failed and its task error code.
//! - [`retry`]: the retry decision and the retry policy.
//! - [`auth`]: the login (password or service account) and the shared, refreshed token.
//! - `transport`: one call with retries, URL rotation, the concurrency bound, tracing and the call hook.
//! - [`marathon`], [`metronome`]: the typed APIs.
//! - [`types`]: apps, tasks, deployments, jobs, runs, schedules.

pub mod auth;
pub mod error;
pub mod marathon;
pub mod metronome;
pub mod retry;
mod transport;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

pub use error::{Call, DcosError};
pub use marathon::{AppsQuery, Marathon};
pub use metronome::Metronome;
pub use retry::RetryPolicy;
pub use transport::{CallRecord, Service};
pub use types::{
    App, Deployment, DeploymentAction, DeploymentRef, DeploymentStep, HealthCheckResult, IpAddress,
    Job, JobRun, Schedule, Task,
};

use crate::config::{AccountConfig, DriverConfig};
use transport::{Answer, CallSpec, Endpoints, Transport};

/// Called once per HTTP attempt (for request, error and latency metrics by endpoint).
pub type CallHook = Arc<dyn Fn(&CallRecord<'_>) + Send + Sync>;

/// Limits and behaviour of a client (the account's own settings come from [`AccountConfig`]).
#[derive(Clone)]
pub struct ClientOptions {
    /// Concurrent HTTP calls to this cluster.
    pub max_concurrent_calls: usize,
    /// Default retry policy (per call: [`DcosClient::with_retry`]).
    pub retry: RetryPolicy,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Largest answer body read into memory (a full `/v2/apps?embed=apps.tasks` can be tens of MB).
    pub max_response_bytes: usize,
    /// Per-attempt hook for metrics.
    pub on_call: Option<CallHook>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_concurrent_calls: 32,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 256 * 1024 * 1024,
            on_call: None,
        }
    }
}

impl ClientOptions {
    /// The defaults with the driver's concurrency bound.
    pub fn from_driver(driver: &DriverConfig) -> Self {
        ClientOptions {
            max_concurrent_calls: driver.max_concurrent_dcos_calls.max(1),
            ..ClientOptions::default()
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("on_call", &self.on_call.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

/// What the event reader needs to open its own `GET /v2/events` connection.
#[derive(Clone)]
pub struct EventsRequest {
    /// The Marathon base URL in use (give it back to [`DcosClient::marathon_unreachable`] if it fails).
    pub base: String,
    /// `<base>/v2/events`.
    pub url: String,
    /// The `Authorization` header value, when the account logs in (sensitive: never log it).
    pub authorization: Option<http::HeaderValue>,
    /// The login this token came from (give it back to [`DcosClient::token_rejected`] on a 401).
    pub token_generation: Option<u64>,
    /// An HTTP client with the account's TLS settings and connect timeout but no total timeout.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for EventsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsRequest")
            .field("url", &self.url)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("token_generation", &self.token_generation)
            .finish()
    }
}

/// The client of one DC/OS account. Clone freely.
#[derive(Clone)]
pub struct DcosClient {
    inner: Arc<Transport>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for DcosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcosClient")
            .field("marathon", &self.marathon_base())
            .field("metronome", &self.inner.metronome)
            .field("retry", &self.retry)
            .finish()
    }
}

impl DcosClient {
    /// Builds the client: reads the CA file and the service-account key now, so mistakes show at start.
    pub fn new(account: &AccountConfig, options: ClientOptions) -> Result<DcosClient, DcosError> {
        // reqwest is built without a default crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let setup = |what: &str, message: String| DcosError::Setup {
            what: format!("account {}: {what}", account.name),
            message,
        };
        let mut certificates = Vec::new();
        if let Some(path) = &account.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| setup("ca_file", format!("cannot read {}: {e}", path.display())))?;
            certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup("ca_file", format!("{}: {e}", path.display())))?;
        }
        let builder = |total_timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("dcos-driver/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(options.connect_timeout)
                .redirect(reqwest::redirect::Policy::limited(5))
                .tls_danger_accept_invalid_certs(account.insecure_tls);
            for certificate in &certificates {
                b = b.add_root_certificate(certificate.clone());
            }
            if let Some(timeout) = total_timeout {
                b = b.timeout(timeout);
            }
            b.build().map_err(|e| setup("HTTP client", e.to_string()))
        };
        let http = builder(Some(Duration::from_secs(
            account.request_timeout_seconds.max(1),
        )))?;
        let stream_http = builder(None)?;
        let auth = account
            .credentials
            .as_ref()
            .map(auth::TokenSource::new)
            .transpose()?;
        if auth.is_some() && account.login_base().is_none() {
            return Err(setup(
                "credentials",
                "logging in needs dcos_url (the /acs login lives there)".into(),
            ));
        }
        let transport = Transport {
            http,
            stream_http,
            marathon: Endpoints::new(account.marathon_bases()),
            metronome: account.metronome_base(),
            login: account.login_base(),
            auth,
            permits: Semaphore::new(options.max_concurrent_calls.max(1)),
            max_response_bytes: options.max_response_bytes,
            hook: options.on_call,
            account: account.name.clone(),
        };
        Ok(DcosClient {
            inner: Arc::new(transport),
            retry: options.retry,
        })
    }

    /// The same client (same pool, token and bound) with another retry policy, e.g. a longer locked budget.
    pub fn with_retry(&self, policy: RetryPolicy) -> DcosClient {
        DcosClient {
            inner: self.inner.clone(),
            retry: policy,
        }
    }

    /// The retry policy of this handle.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The Marathon API.
    pub fn marathon(&self) -> Marathon<'_> {
        Marathon::new(self)
    }

    /// The Metronome API.
    pub fn metronome(&self) -> Metronome<'_> {
        Metronome::new(self)
    }

    /// The Marathon base URL in use (the last one that answered).
    pub fn marathon_base(&self) -> String {
        if self.inner.marathon.len() == 0 {
            return String::new();
        }
        self.inner.marathon.current().1.to_string()
    }

    /// Logins made so far by this account's client (0 without credentials).
    pub fn logins(&self) -> u64 {
        self.inner.auth.as_ref().map_or(0, |a| a.logins())
    }

    /// What the event reader needs for `GET /v2/events`, with a valid token (logging in if needed).
    pub async fn events_request(&self) -> Result<EventsRequest, DcosError> {
        let (authorization, token_generation) = match &self.inner.auth {
            Some(auth) => {
                let token = auth.current(&self.inner, &self.retry).await?;
                (
                    Some(transport::authorization(&token.value)),
                    Some(token.generation),
                )
            }
            None => (None, None),
        };
        let base = self.marathon_base();
        Ok(EventsRequest {
            url: format!("{base}/v2/events"),
            base,
            authorization,
            token_generation,
            http: self.inner.stream_http.clone(),
        })
    }

    /// The event reader could not connect to `base`: move on to the next Marathon URL.
    pub fn marathon_unreachable(&self, base: &str) {
        self.inner.marathon.rotate_from(base);
    }

    /// DC/OS answered 401 to the token of login `generation`: the next call logs in again (once).
    pub fn token_rejected(&self, generation: u64) {
        if let Some(auth) = &self.inner.auth {
            auth.rejected(generation);
        }
    }

    async fn execute(&self, spec: CallSpec) -> Result<Answer, DcosError> {
        self.inner.execute(spec, &self.retry).await
    }

    async fn json<T: DeserializeOwned>(&self, spec: CallSpec) -> Result<T, DcosError> {
        let call = spec.call();
        let answer = self.execute(spec).await?;
        serde_json::from_slice(&answer.body).map_err(|source| DcosError::Decode { call, source })
    }
}
