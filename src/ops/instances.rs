//! Instance operations: reboot, terminate (with or without decrement), enable/disable in discovery,
//! rolling restart.
//!
//! The framework has already checked that every instance belongs to an app under the account's
//! root and locked those apps. Each operation first reads the apps and matches the given ids
//! (task ids or instance ids) to their live tasks: an id no app knows is `NOT_FOUND`, except on a
//! redelivery, where an id that is gone was most likely killed by the earlier delivery and counts
//! as done (`alreadyGone` in the result).
//!
//! Redelivery rules (see the idempotency notes in [`super`]):
//! - REBOOT and TERMINATE kill only the tasks still alive; REBOOT then waits as usual.
//! - TERMINATE_INSTANCE_AND_DECREMENT never kills a task that is already gone, so a redelivery
//!   cannot scale the app down twice; a deployment recorded in the previous progress is followed
//!   instead of killing anything.
//! - UPDATE_INSTANCES follows the recorded restart deployment instead of restarting again.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::context::OpContext;
use super::description::instances::{
    instance_of_task, InstancesInDiscoveryDescription, RebootInstancesDescription,
    TerminateInstanceAndDecrementDescription, TerminateInstancesDescription,
    UpdateInstancesDescription,
};
use super::error::OpError;
use super::server_group::{identity, read_app};
use super::wait::Goal;
use crate::bus::Progress;
use crate::dcos::marathon::{KillOptions, Killed};
use crate::dcos::{App, DcosError, Task};
use crate::overlays::{self, Overlay};
use crate::vocabulary::ErrorCode;

/// Task states after which a task is no longer alive (Marathon drops it from the app soon after).
const TERMINAL_STATES: &[&str] = &[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_ERROR",
    "TASK_LOST",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

fn alive(task: &Task) -> bool {
    !task
        .state
        .as_deref()
        .is_some_and(|s| TERMINAL_STATES.contains(&s))
}

/// Whether `given` (a task id or an instance id) names `task`.
fn names(given: &str, task: &Task) -> bool {
    task.id == given || instance_of_task(&task.id) == given
}

/// The given ids of one app matched to its live tasks.
struct Matched {
    app_id: String,
    app: Option<App>,
    /// Live tasks named by the request.
    tasks: Vec<Task>,
    /// Ids no live task of the app answers to.
    missing: Vec<String>,
}

/// Reads each app and matches the ids to live tasks. A missing id (or app) is `NOT_FOUND`, unless
/// `tolerate_missing` (a redelivery), where it is reported in `missing`.
async fn match_instances(
    ctx: &OpContext,
    by_app: Vec<(String, Vec<String>)>,
    tolerate_missing: bool,
) -> Result<Vec<Matched>, OpError> {
    let mut out = Vec::with_capacity(by_app.len());
    for (app_id, ids) in by_app {
        let app = match read_app(ctx, &app_id, "server group").await {
            Ok(app) => Some(app),
            Err(e) if tolerate_missing && e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        let live: Vec<Task> = app
            .as_ref()
            .map(|a| a.tasks().into_iter().filter(alive).collect())
            .unwrap_or_default();
        let mut tasks = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match live.iter().find(|t| names(&id, t)) {
                Some(task) if !tasks.iter().any(|t: &Task| t.id == task.id) => {
                    tasks.push(task.clone())
                }
                Some(_) => {}
                None => missing.push(id),
            }
        }
        if !missing.is_empty() && !tolerate_missing {
            return Err(OpError::failed(
                ErrorCode::NotFound,
                format!(
                    "no running instance {} in server group {app_id}",
                    missing.join(", ")
                ),
            )
            .with_details(json!({ "appId": app_id, "instanceIds": missing })));
        }
        out.push(Matched {
            app_id,
            app,
            tasks,
            missing,
        });
    }
    Ok(out)
}

fn task_ids(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(|t| t.id.clone()).collect()
}

fn all_missing(matched: &[Matched]) -> Vec<String> {
    matched.iter().flat_map(|m| m.missing.clone()).collect()
}

/// Kills the matched live tasks; Marathon replaces them. Their ids.
async fn kill_without_scaling(
    ctx: &OpContext,
    matched: &[Matched],
) -> Result<Vec<String>, OpError> {
    let to_kill: Vec<String> = matched.iter().flat_map(|m| task_ids(&m.tasks)).collect();
    if !to_kill.is_empty() {
        ctx.client
            .marathon()
            .kill_tasks(&to_kill, KillOptions::default())
            .await?;
    }
    Ok(to_kill)
}

/// REBOOT_INSTANCES.
pub async fn reboot(
    ctx: &OpContext,
    d: &RebootInstancesDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let matched = match_instances(ctx, d.by_app(&ctx.scope)?, ctx.is_resumed()).await?;
    let to_kill = kill_without_scaling(ctx, &matched).await?;
    progress
        .update(
            format!(
                "killed {} task(s); waiting for their replacements",
                to_kill.len()
            ),
            Some(json!({ "killed": to_kill })),
        )
        .await;
    let mut apps = Vec::new();
    for m in &matched {
        // Ids gone before this delivery were killed by an earlier one: they must stay gone too.
        let mut killed = task_ids(&m.tasks);
        killed.extend(m.missing.iter().cloned());
        let back = wait_back(ctx, &m.app_id, &killed, progress).await?;
        apps.push(json!({
            "appId": m.app_id,
            "tasksRunning": back.running,
            "tasksHealthy": back.healthy,
            "target": back.target,
        }));
    }
    Ok(json!({
        "instanceIds": to_kill,
        "alreadyGone": all_missing(&matched),
        "apps": apps,
    }))
}

/// An app's way back to its target after some of its tasks were killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recovery {
    /// Killed tasks not gone yet.
    lingering: usize,
    /// Other tasks running.
    running: u64,
    /// Of those, healthy (all health checks alive).
    healthy: u64,
    target: u64,
    has_health_checks: bool,
}

impl Recovery {
    fn of(app: &App, killed: &[String]) -> Recovery {
        let tasks = app.tasks();
        let killed_alive = |t: &Task| killed.iter().any(|k| names(k, t)) && alive(t);
        let fresh: Vec<&Task> = tasks
            .iter()
            .filter(|t| !killed.iter().any(|k| names(k, t)))
            .filter(|t| t.state.as_deref() == Some("TASK_RUNNING"))
            .collect();
        Recovery {
            lingering: tasks.iter().filter(|t| killed_alive(t)).count(),
            running: fresh.len() as u64,
            healthy: fresh
                .iter()
                .filter(|t| !t.health_check_results.is_empty() && t.healthy())
                .count() as u64,
            target: app.instances().unwrap_or(1),
            has_health_checks: app
                .get("healthChecks")
                .and_then(Value::as_array)
                .is_some_and(|h| !h.is_empty()),
        }
    }

    fn back(&self) -> bool {
        let ready = if self.has_health_checks {
            self.healthy
        } else {
            self.running
        };
        self.lingering == 0 && self.running >= self.target && ready >= self.target
    }
}

/// Polls the app until the killed tasks are gone and it runs its target again (healthy, with
/// health checks), publishing each change; `TIMEOUT` when the request's time is up. No deployment
/// is involved: Marathon's launch queue replaces killed tasks on its own.
async fn wait_back(
    ctx: &OpContext,
    app_id: &str,
    killed: &[String],
    progress: &Progress,
) -> Result<Recovery, OpError> {
    let mut delay = ctx.wait_settings.first_poll;
    let mut last: Option<Recovery> = None;
    loop {
        let app = match ctx.client.marathon().get_app(app_id).await {
            Ok(app) => app,
            Err(DcosError::NotFound { .. }) => {
                return Err(OpError::failed(
                    ErrorCode::NotFound,
                    format!("{app_id} disappeared while its instances were being replaced"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let now = Recovery::of(&app, killed);
        if now.back() {
            return Ok(now);
        }
        if last != Some(now) {
            progress
                .update(
                    format!(
                        "{app_id}: {} killed task(s) still going, {}/{} running, {} healthy",
                        now.lingering, now.running, now.target, now.healthy
                    ),
                    Some(json!({
                        "app": app_id,
                        "killed": killed,
                        "lingering": now.lingering,
                        "tasksRunning": now.running,
                        "tasksHealthy": now.healthy,
                        "target": now.target,
                    })),
                )
                .await;
            last = Some(now);
        }
        if Instant::now() >= ctx.deadline {
            return Err(OpError::failed(
                ErrorCode::Timeout,
                format!(
                    "{app_id} was not back at {} instance(s) within {} s ({} running, {} healthy, {} killed task(s) still going)",
                    now.target,
                    ctx.timeout.as_secs(),
                    now.running,
                    now.healthy,
                    now.lingering
                ),
            )
            .with_details(json!({
                "appId": app_id,
                "timeoutSeconds": ctx.timeout.as_secs(),
                "tasksRunning": now.running,
                "tasksHealthy": now.healthy,
                "target": now.target,
            })));
        }
        tokio::time::sleep(delay.min(ctx.remaining())).await;
        delay = (delay * 2).min(ctx.wait_settings.poll_interval);
    }
}

/// TERMINATE_INSTANCES.
pub async fn terminate(
    ctx: &OpContext,
    d: &TerminateInstancesDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    let matched = match_instances(ctx, d.by_app(&ctx.scope)?, ctx.is_resumed()).await?;
    let to_kill = kill_without_scaling(ctx, &matched).await?;
    Ok(json!({
        "killed": to_kill,
        "alreadyGone": all_missing(&matched),
        "apps": matched.iter().map(|m| m.app_id.clone()).collect::<Vec<_>>(),
    }))
}

/// TERMINATE_INSTANCE_AND_DECREMENT.
pub async fn terminate_and_decrement(
    ctx: &OpContext,
    d: &TerminateInstanceAndDecrementDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let matched = match_instances(ctx, d.by_app(&ctx.scope)?, ctx.is_resumed()).await?;
    // The deployment an earlier delivery started (and recorded) is followed, never repeated.
    let recorded = ctx
        .previous_progress("deploymentId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let recorded_app = ctx
        .previous_progress("app")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut apps = Vec::new();
    let mut killed_all = Vec::new();
    let mut already_gone = all_missing(&matched);
    for m in &matched {
        let goal = Goal::Instances {
            app_id: m.app_id.clone(),
            target: None,
        };
        // On a redelivery, a task already being killed was killed by the earlier delivery.
        let (being_killed, alive): (Vec<&Task>, Vec<&Task>) = m
            .tasks
            .iter()
            .partition(|t| ctx.is_resumed() && t.state.as_deref() == Some("TASK_KILLING"));
        already_gone.extend(being_killed.iter().map(|t| t.id.clone()));
        let mut killed: Vec<String> = alive.iter().map(|t| t.id.clone()).collect();
        let deployment_id = if recorded.is_some() && recorded_app.as_deref() == Some(&m.app_id) {
            // This app's kill happened and its deployment was recorded: follow it, kill nothing.
            killed.clear();
            recorded.clone()
        } else if !killed.is_empty() {
            let options = KillOptions {
                scale: true,
                force: d.force,
                ..KillOptions::default()
            };
            match ctx.client.marathon().kill_tasks(&killed, options).await? {
                Killed::Deployment(deployment) => Some(deployment.deployment_id),
                Killed::Tasks(_) => None,
            }
        } else {
            // Everything named is gone already (a redelivery): wait for whatever deployment the
            // app still has, scaling nothing.
            m.app
                .as_ref()
                .and_then(|a| a.deployments().into_iter().next())
        };
        let mut entry = Map::new();
        entry.insert("appId".into(), json!(m.app_id));
        entry.insert("killed".into(), json!(killed));
        if let Some(deployment_id) = &deployment_id {
            progress
                .update(
                    format!(
                        "killed {} task(s) of {} and scaled it down",
                        killed.len(),
                        m.app_id
                    ),
                    Some(
                        json!({ "deploymentId": deployment_id, "app": m.app_id, "killed": killed }),
                    ),
                )
                .await;
            let waited = ctx.follow(deployment_id, &goal, progress).await?;
            entry.insert("deploymentId".into(), json!(deployment_id));
            entry.insert("seenBy".into(), json!(waited.seen_by));
        }
        let app = read_app(ctx, &m.app_id, "server group").await?;
        entry.insert("instances".into(), json!(app.instances().unwrap_or(1)));
        apps.push(Value::Object(entry));
        killed_all.extend(killed);
    }
    Ok(json!({
        "killed": killed_all,
        "alreadyGone": already_gone,
        "apps": apps,
    }))
}

/// ENABLE_INSTANCES_IN_DISCOVERY.
pub async fn enable_in_discovery(
    ctx: &OpContext,
    d: &InstancesInDiscoveryDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    set_in_discovery(ctx, d, false).await
}

/// DISABLE_INSTANCES_IN_DISCOVERY.
pub async fn disable_in_discovery(
    ctx: &OpContext,
    d: &InstancesInDiscoveryDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    set_in_discovery(ctx, d, true).await
}

/// Writes (disable) or removes (enable) the instance overlays. The discovery side watches the
/// bucket and publishes the new states itself. Enabling an instance that is gone only clears its
/// overlay, if it had one; otherwise an unknown instance is `NOT_FOUND`.
async fn set_in_discovery(
    ctx: &OpContext,
    d: &InstancesInDiscoveryDescription,
    disable: bool,
) -> Result<Value, OpError> {
    let account = ctx.account_name();
    let matched = match_instances(ctx, d.by_app(&ctx.scope)?, true).await?;
    let mut unknown = Vec::new();
    let mut changes: Vec<(String, Option<Task>, String)> = Vec::new();
    for m in &matched {
        for task in &m.tasks {
            let instance = instance_of_task(&task.id).to_string();
            changes.push((m.app_id.clone(), Some(task.clone()), instance));
        }
        for id in &m.missing {
            let instance = instance_of_task(id).to_string();
            let has_overlay = ctx
                .overlays
                .get(&overlays::instance_key(account, &instance))
                .await?
                .is_some();
            if disable || !has_overlay {
                unknown.push(id.clone());
            } else {
                changes.push((m.app_id.clone(), None, instance));
            }
        }
    }
    if !unknown.is_empty() {
        return Err(OpError::failed(
            ErrorCode::NotFound,
            format!("no running instance {}", unknown.join(", ")),
        )
        .with_details(json!({ "instanceIds": unknown })));
    }
    let mut disabled_groups = BTreeSet::new();
    for m in &matched {
        if let Some(o) = ctx.overlays.server_group(account, &m.app_id).await? {
            if o.disabled {
                disabled_groups.insert(m.app_id.clone());
            }
        }
    }
    let mut instances = Vec::new();
    for (app_id, task, instance) in changes {
        if disable {
            ctx.overlays
                .put(&Overlay {
                    account: account.to_string(),
                    app_id: app_id.clone(),
                    instance_id: Some(instance.clone()),
                    disabled: true,
                    suspended_instances: None,
                    task_id: Some(ctx.task_id.clone()),
                    updated_at: chrono::Utc::now().to_rfc3339(),
                })
                .await?;
        } else {
            ctx.overlays
                .remove(&overlays::instance_key(account, &instance))
                .await?;
        }
        let out_of_service = disable || disabled_groups.contains(&app_id);
        instances.push(json!({
            "instanceId": instance,
            "taskId": task.as_ref().map(|t| t.id.clone()),
            "appId": app_id,
            "administrativeState": if disable { "DISABLED" } else { "ENABLED" },
            "serverGroupDisabled": disabled_groups.contains(&app_id),
            "discoveryState": discovery_state(task.as_ref(), out_of_service),
        }));
    }
    Ok(json!({ "instances": instances }))
}

/// The discovery state an instance has right after the change (DESIGN.md, "Discovery state").
fn discovery_state(task: Option<&Task>, out_of_service: bool) -> &'static str {
    let Some(task) = task else { return "DOWN" };
    match task.state.as_deref() {
        Some("TASK_STAGING" | "TASK_STARTING") => "STARTING",
        Some("TASK_UNREACHABLE" | "TASK_UNKNOWN") => "UNKNOWN",
        Some("TASK_RUNNING") if !task.healthy() => "DOWN",
        Some("TASK_RUNNING") if out_of_service => "OUT_OF_SERVICE",
        Some("TASK_RUNNING") => "UP",
        _ => "DOWN",
    }
}

/// UPDATE_INSTANCES.
pub async fn update(
    ctx: &OpContext,
    d: &UpdateInstancesDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let recorded = ctx
        .previous_progress("deploymentId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let (deployment_id, version) = match recorded {
        Some(id) => (id, None),
        None => {
            read_app(ctx, &app_id, "server group").await?;
            let deployment = ctx.client.marathon().restart_app(&app_id, d.force).await?;
            (deployment.deployment_id, Some(deployment.version))
        }
    };
    let goal = Goal::Instances {
        app_id: app_id.clone(),
        target: None,
    };
    let waited = ctx.follow(&deployment_id, &goal, progress).await?;
    let mut result = identity(ctx, &app_id);
    result.insert("deploymentId".into(), json!(deployment_id));
    if let Some(version) = version {
        result.insert("version".into(), json!(version));
    }
    result.insert("seenBy".into(), json!(waited.seen_by));
    Ok(Value::Object(result))
}
