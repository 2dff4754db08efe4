//! The health and metrics endpoint: `GET /healthz` (liveness), `GET /readyz` (readiness, with the
//! state of every component that registered a check) and `GET /metrics` (Prometheus / OpenMetrics).
//!
//! Components report into a shared [`Readiness`]: `nats`, `dcos:<account>`, `events:<account>`, …
//! The process is ready when every registered check passes, so no checks at all means ready: `serve`
//! should [`Readiness::register`] every component it starts (not ready until it reports) before it
//! binds the endpoint, so the driver is never announced ready too early.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::RwLock;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Content type of `GET /metrics`: prometheus-client writes OpenMetrics text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness component of the NATS connection (and JetStream setup).
pub const NATS_COMPONENT: &str = "nats";

/// Readiness component of one account's DC/OS API (login and Marathon reachable): `dcos:<account>`.
pub fn dcos_component(account: &str) -> String {
    format!("dcos:{account}")
}

/// Readiness component of one account's event stream: `events:<account>`.
pub fn events_component(account: &str) -> String {
    format!("events:{account}")
}

/// The latest state of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Whether the component can do its work now.
    pub ready: bool,
    /// What it last said: `connected`, `login refused: 401`, …
    pub detail: String,
    /// When `ready` last changed (RFC 3339).
    pub since: String,
}

/// What `GET /readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessReport {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// Names of the failing components, sorted.
    pub failing: Vec<String>,
    /// Every registered component by name.
    pub checks: BTreeMap<String, Check>,
}

impl ReadinessReport {
    /// True when no check fails.
    pub fn is_ready(&self) -> bool {
        self.failing.is_empty()
    }
}

/// The readiness checks of the process, shared by every component. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<String, Check>>>,
}

impl Readiness {
    /// No checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a component that is not ready until it says so (a no-op when it already reported).
    pub fn register(&self, component: &str) {
        self.checks
            .write()
            .entry(component.to_string())
            .or_insert_with(|| Check {
                ready: false,
                detail: "not checked yet".into(),
                since: now(),
            });
    }

    /// Records the state of `component` (`nats`, `dcos:<account>`, `events:<account>`).
    pub fn set(&self, component: &str, ready: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let mut checks = self.checks.write();
        match checks.get_mut(component) {
            Some(check) => {
                if check.ready != ready {
                    check.since = now();
                }
                check.ready = ready;
                check.detail = detail;
            }
            None => {
                checks.insert(
                    component.to_string(),
                    Check {
                        ready,
                        detail,
                        since: now(),
                    },
                );
            }
        }
    }

    /// Forgets a component (an account that was removed, a task that ended on purpose).
    pub fn remove(&self, component: &str) {
        self.checks.write().remove(component);
    }

    /// A snapshot of every check.
    pub fn report(&self) -> ReadinessReport {
        let checks = self.checks.read().clone();
        let failing: Vec<String> = checks
            .iter()
            .filter(|(_, check)| !check.ready)
            .map(|(name, _)| name.clone())
            .collect();
        ReadinessReport {
            status: if failing.is_empty() {
                "ready"
            } else {
                "not ready"
            },
            failing,
            checks,
        }
    }

    /// True when every registered check passes.
    pub fn is_ready(&self) -> bool {
        self.checks.read().values().all(|check| check.ready)
    }
}

fn now() -> String {
    let now: DateTime<Utc> = Utc::now();
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Clone)]
struct Endpoints {
    readiness: Readiness,
    metrics: Metrics,
}

/// The routes, for embedding or tests; [`serve`] runs them.
pub fn router(readiness: Readiness, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Endpoints { readiness, metrics })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    let report = endpoints.readiness.report();
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics_text(State(endpoints): State<Endpoints>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        endpoints.metrics.encode(),
    )
        .into_response()
}

/// The running endpoint: where it listens and its server task.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl HealthServer {
    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has stopped (after the shutdown token was cancelled).
    pub async fn stopped(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

/// Binds `listen` and serves the endpoints in a background task until `shutdown` is cancelled.
///
/// Binding happens before this returns, so a taken port is an error here, not in a log line later.
pub async fn serve(
    listen: SocketAddr,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<HealthServer> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("health endpoint {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let app = router(readiness, metrics);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    tracing::info!(%addr, "health and metrics endpoint listening");
    Ok(HealthServer { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_ready_registered_is_not() {
        let r = Readiness::new();
        assert!(r.is_ready());
        r.register("nats");
        assert!(!r.is_ready());
        assert_eq!(r.report().failing, vec!["nats"]);
        r.set("nats", true, "connected");
        r.register("nats");
        assert!(r.is_ready());
        assert_eq!(r.report().status, "ready");
    }

    #[test]
    fn since_changes_only_with_state() {
        let r = Readiness::new();
        assert_eq!(dcos_component("prod"), "dcos:prod");
        assert_eq!(events_component("prod"), "events:prod");
        r.set(&dcos_component("prod"), true, "ok");
        let first = r.report().checks["dcos:prod"].since.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        r.set("dcos:prod", true, "still ok");
        let check = r.report().checks["dcos:prod"].clone();
        assert_eq!(check.since, first);
        assert_eq!(check.detail, "still ok");
        r.set("dcos:prod", false, "503");
        assert_ne!(r.report().checks["dcos:prod"].since, first);
        r.remove("dcos:prod");
        assert!(r.is_ready());
    }
}
