//! Following a Marathon deployment to its end.
//!
//! Two sources race: the [`DeploymentHub`](crate::deployments::DeploymentHub), fed by the event
//! reader with `deployment_success` / `deployment_failed` (the fast path), and polling of
//! `GET /v2/deployments` (the fallback when events are late or the reader is down). Polling starts
//! soon after the call (quick deployments end in milliseconds) and slows down to
//! [`WaitSettings::poll_interval`]. When polling sees the deployment gone, the event side gets
//! [`WaitSettings::event_grace`] to say how it ended (only the event says "failed"); without a
//! verdict the app itself decides: no deployment left and the goal reached is success.
//!
//! Every change of the deployment's step, actions or task counts is published as RUNNING progress
//! (`deploymentId`, `step`, `totalSteps`, `actions`, `tasksRunning`, `tasksHealthy`, `target`); the
//! first one carries `deploymentId`, so a redelivered request can resume waiting for it.
//! `timeoutSeconds` bounds the whole wait: then `TIMEOUT`, the deployment keeps running.
//!
//! Limitation: only the event stream says "failed". With polling alone (event reader down), a failed
//! deployment is seen only when the app misses its target afterwards (`DEPLOYMENT_FAILED`); if
//! Marathon's relaunches bring the app to its target anyway, the wait ends SUCCEEDED.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::context::OpContext;
use super::error::OpError;
use crate::bus::Progress;
use crate::dcos::{App, DcosError, Deployment};
use crate::deployments::DeploymentEnd;
use crate::vocabulary::ErrorCode;

/// How waiting polls.
#[derive(Debug, Clone)]
pub struct WaitSettings {
    /// Delay of the first poll after the call; doubles up to `poll_interval`.
    pub first_poll: Duration,
    /// Longest delay between two polls.
    pub poll_interval: Duration,
    /// When polling sees the deployment gone: how long the event side may take to report its end.
    pub event_grace: Duration,
}

impl Default for WaitSettings {
    fn default() -> Self {
        WaitSettings {
            first_poll: Duration::from_millis(50),
            poll_interval: Duration::from_secs(1),
            event_grace: Duration::from_millis(300),
        }
    }
}

impl WaitSettings {
    /// Short timings for tests and benchmarks against the simulator at time scale 0.
    pub fn fast() -> Self {
        WaitSettings {
            first_poll: Duration::from_millis(5),
            poll_interval: Duration::from_millis(50),
            event_grace: Duration::from_millis(100),
        }
    }
}

/// What the deployment should reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// The app runs `target` instances (healthy ones, when it has health checks); `None`: the
    /// app's own `instances`.
    Instances { app_id: String, target: Option<u64> },
    /// The app no longer exists.
    Gone { app_id: String },
}

impl Goal {
    /// The app the goal is about.
    pub fn app_id(&self) -> &str {
        match self {
            Goal::Instances { app_id, .. } | Goal::Gone { app_id } => app_id,
        }
    }
}

/// How a wait ended successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    /// The deployment followed.
    pub deployment_id: String,
    /// Who saw the end first: `events` or `polling`.
    pub seen_by: &'static str,
    /// Tasks running at the end (as last seen), when known.
    pub tasks_running: Option<u64>,
}

/// The state of the app and its deployment at one poll.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    step: u32,
    total_steps: u32,
    actions: Vec<Value>,
    running: u64,
    healthy: u64,
    target: u64,
}

/// Follows `deployment_id` until it ends, `ctx.deadline` passes, or Marathon says it failed.
/// An empty `deployment_id` (Marathon gave none) is judged by the app alone.
pub async fn follow(
    ctx: &OpContext,
    deployment_id: &str,
    goal: &Goal,
    progress: &Progress,
) -> Result<Waited, OpError> {
    let settings = &ctx.wait_settings;
    let mut ended = ctx.hub.wait(ctx.account_name(), deployment_id);
    let mut hub_alive = !deployment_id.is_empty();
    let mut delay = settings.first_poll;
    let mut last: Option<Snapshot> = None;
    progress
        .update(
            format!("following deployment {deployment_id} of {}", goal.app_id()),
            Some(json!({ "deploymentId": deployment_id, "app": goal.app_id() })),
        )
        .await;
    loop {
        let end = ended.borrow_and_update().clone();
        if let Some(end) = end {
            return from_event(deployment_id, end);
        }
        tokio::select! {
            changed = ended.changed(), if hub_alive => {
                if changed.is_err() {
                    hub_alive = false;
                }
                continue;
            }
            _ = tokio::time::sleep_until(ctx.deadline) => {
                return Err(timeout(ctx, deployment_id, goal, last.as_ref()));
            }
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(settings.poll_interval);
        let deployments = ctx.client.marathon().deployments().await?;
        if let Some(d) = deployments.iter().find(|d| d.id == deployment_id) {
            let snapshot = observe(ctx, d, goal).await?;
            if last.as_ref() != Some(&snapshot) {
                report(progress, deployment_id, goal, &snapshot).await;
                last = Some(snapshot);
            }
            continue;
        }
        // Gone from the list: give the event side a moment to say how it ended.
        if hub_alive {
            let grace = Instant::now() + settings.event_grace;
            while ended.borrow().is_none() {
                tokio::select! {
                    changed = ended.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep_until(grace) => break,
                }
            }
            let end = ended.borrow().clone();
            if let Some(end) = end {
                return from_event(deployment_id, end);
            }
        }
        match judge(ctx, deployment_id, goal, &deployments).await? {
            Some(waited) => return Ok(waited),
            None => continue,
        }
    }
}

fn from_event(deployment_id: &str, end: DeploymentEnd) -> Result<Waited, OpError> {
    match end {
        DeploymentEnd::Succeeded => Ok(Waited {
            deployment_id: deployment_id.to_string(),
            seen_by: "events",
            tasks_running: None,
        }),
        DeploymentEnd::Failed { reason } => Err(deployment_failed(deployment_id, reason)),
    }
}

fn deployment_failed(deployment_id: &str, reason: Option<String>) -> OpError {
    let reason_text = reason.clone().unwrap_or_else(|| "no reason given".into());
    OpError::failed(
        ErrorCode::DeploymentFailed,
        format!("Marathon reported deployment {deployment_id} failed: {reason_text}"),
    )
    .with_details(json!({ "deploymentId": deployment_id, "reason": reason }))
}

/// The deployment is no longer listed: decide from the app. `None` = not decided, keep polling.
async fn judge(
    ctx: &OpContext,
    deployment_id: &str,
    goal: &Goal,
    deployments: &[Deployment],
) -> Result<Option<Waited>, OpError> {
    let polled = |tasks_running| Waited {
        deployment_id: deployment_id.to_string(),
        seen_by: "polling",
        tasks_running,
    };
    let still_deploying = deployments
        .iter()
        .any(|d| d.affected_apps.iter().any(|a| a == goal.app_id()));
    let app = match ctx.client.marathon().get_app(goal.app_id()).await {
        Ok(app) => Some(app),
        Err(DcosError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    match (goal, app) {
        (Goal::Gone { .. }, None) => Ok(Some(polled(Some(0)))),
        (Goal::Gone { .. }, Some(_)) if still_deploying => Ok(None),
        (Goal::Gone { app_id }, Some(_)) => Err(deployment_failed(
            deployment_id,
            Some(format!("the deployment ended but {app_id} still exists")),
        )),
        (Goal::Instances { app_id, .. }, None) => Err(OpError::failed(
            ErrorCode::NotFound,
            format!("{app_id} disappeared while deployment {deployment_id} ran"),
        )),
        (Goal::Instances { target, .. }, Some(app)) => {
            if still_deploying || !app.deployments().is_empty() {
                // A newer deployment of the app (e.g. a forced change) took over: wait for it too.
                return Ok(None);
            }
            let counts = Counts::of(&app, *target);
            if counts.reached() {
                Ok(Some(polled(Some(counts.running))))
            } else {
                Err(deployment_failed(
                    deployment_id,
                    Some(format!(
                        "the deployment ended with {} of {} instances running ({} healthy)",
                        counts.running, counts.target, counts.healthy
                    )),
                ))
            }
        }
    }
}

/// Task counts of an app against a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub running: u64,
    pub healthy: u64,
    pub target: u64,
    pub has_health_checks: bool,
}

impl Counts {
    /// Counts from an app read with its tasks (or Marathon's `tasksRunning`/`tasksHealthy`).
    pub fn of(app: &App, target: Option<u64>) -> Counts {
        let tasks = app.tasks();
        let count = |key: &str| app.get(key).and_then(Value::as_u64);
        let running = count("tasksRunning").unwrap_or_else(|| {
            tasks
                .iter()
                .filter(|t| t.state.as_deref() == Some("TASK_RUNNING"))
                .count() as u64
        });
        let healthy = count("tasksHealthy").unwrap_or_else(|| {
            tasks
                .iter()
                .filter(|t| !t.health_check_results.is_empty() && t.healthy())
                .count() as u64
        });
        let has_health_checks = app
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty());
        Counts {
            running,
            healthy,
            target: target.or(app.instances()).unwrap_or(1),
            has_health_checks,
        }
    }

    /// Whether the app runs its target (healthy, when it has health checks).
    pub fn reached(&self) -> bool {
        let ready = if self.has_health_checks {
            self.healthy
        } else {
            self.running
        };
        self.running >= self.target && ready >= self.target
    }
}

async fn observe(ctx: &OpContext, d: &Deployment, goal: &Goal) -> Result<Snapshot, OpError> {
    let (running, healthy, target) = match goal {
        Goal::Gone { .. } => match ctx.client.marathon().get_app(goal.app_id()).await {
            Ok(app) => {
                let c = Counts::of(&app, Some(0));
                (c.running, c.healthy, 0)
            }
            Err(DcosError::NotFound { .. }) => (0, 0, 0),
            Err(e) => return Err(e.into()),
        },
        Goal::Instances { target, .. } => {
            match ctx.client.marathon().get_app(goal.app_id()).await {
                Ok(app) => {
                    let c = Counts::of(&app, *target);
                    (c.running, c.healthy, c.target)
                }
                Err(DcosError::NotFound { .. }) => (0, 0, target.unwrap_or(0)),
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(Snapshot {
        step: d.current_step,
        total_steps: d.total_steps,
        actions: d
            .current_actions
            .iter()
            .map(|a| json!({ "action": a.action, "app": a.app }))
            .collect(),
        running,
        healthy,
        target,
    })
}

async fn report(progress: &Progress, deployment_id: &str, goal: &Goal, s: &Snapshot) {
    let actions: Vec<String> = s
        .actions
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap_or(""),
                a["app"].as_str().unwrap_or("")
            )
        })
        .collect();
    let message = format!(
        "deployment {deployment_id}: step {}/{} ({}); {}/{} running, {} healthy",
        s.step,
        s.total_steps,
        actions.join(", "),
        s.running,
        s.target,
        s.healthy
    );
    progress
        .update(
            message,
            Some(json!({
                "deploymentId": deployment_id,
                "app": goal.app_id(),
                "step": s.step,
                "totalSteps": s.total_steps,
                "actions": s.actions,
                "tasksRunning": s.running,
                "tasksHealthy": s.healthy,
                "target": s.target,
            })),
        )
        .await;
}

fn timeout(ctx: &OpContext, deployment_id: &str, goal: &Goal, last: Option<&Snapshot>) -> OpError {
    let seen = last
        .map(|s| {
            format!(
                "; last seen {}/{} running, {} healthy",
                s.running, s.target, s.healthy
            )
        })
        .unwrap_or_default();
    OpError::failed(
        ErrorCode::Timeout,
        format!(
            "deployment {deployment_id} of {} did not end within {} s{seen}; it keeps running in Marathon",
            goal.app_id(),
            ctx.timeout.as_secs()
        ),
    )
    .with_details(json!({
        "deploymentId": deployment_id,
        "timeoutSeconds": ctx.timeout.as_secs(),
        "tasksRunning": last.map(|s| s.running),
        "tasksHealthy": last.map(|s| s.healthy),
        "target": last.map(|s| s.target),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(value: Value) -> App {
        App::from_value(value).unwrap()
    }

    #[test]
    fn counts_follow_health_checks() {
        let plain =
            app(json!({"id": "/t/a", "instances": 2, "tasksRunning": 2, "tasksHealthy": 0}));
        assert!(Counts::of(&plain, None).reached());
        assert!(!Counts::of(&plain, Some(3)).reached());
        let checked = app(
            json!({"id": "/t/a", "instances": 2, "tasksRunning": 2, "tasksHealthy": 1,
                                 "healthChecks": [{"protocol": "HTTP"}]}),
        );
        assert!(!Counts::of(&checked, None).reached());
        assert!(Counts::of(&checked, Some(1)).reached());
        assert!(Counts::of(&checked, Some(0)).reached());
    }

    #[test]
    fn counts_from_tasks_when_marathon_gives_none() {
        let a = app(json!({"id": "/t/a", "instances": 1, "tasks": [
            {"id": "t1", "state": "TASK_RUNNING"}, {"id": "t2", "state": "TASK_STAGING"}]}));
        let c = Counts::of(&a, None);
        assert_eq!((c.running, c.target), (1, 1));
        assert!(c.reached());
    }
}
