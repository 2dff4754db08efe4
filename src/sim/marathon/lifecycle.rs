//! The timed life of tasks: launch (STAGING → STARTING → RUNNING, ~1 s each at scale 1), health
//! results, kills (KILLING → KILLED), failures, replacements, and the events of every step.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::model::{new_task_ids, App, Health, Task, TaskState, AGENTS};
use super::validate::{canonical, with_defaults};
use super::State;
use crate::sim::clock::timestamp;
use crate::sim::Sim;

/// Time between two launch states.
const STEP: Duration = Duration::from_secs(1);
/// Time a kill takes.
const KILL: Duration = Duration::from_millis(500);
/// Real-time floor between two health failures of a task, so `SIM_HEALTH=fail` at time scale 0
/// does not turn into a busy loop.
const FAILURE_FLOOR: Duration = Duration::from_millis(20);

fn status_event(task: &Task, message: &str) -> Value {
    json!({
        "slaveId": task.slave_id(),
        "taskId": task.id,
        "taskStatus": task.state.mesos(),
        "message": message,
        "appId": task.app_id,
        "host": task.host(),
        "ipAddresses": [{ "ipAddress": task.host(), "protocol": "IPv4" }],
        "ports": task.ports,
        "version": task.version,
    })
}

fn instance_event(task: &Task) -> Value {
    json!({
        "instanceId": task.instance_id,
        "condition": task.state.condition(),
        "runSpecId": task.app_id,
        "agentId": task.slave_id(),
        "host": task.host(),
        "runSpecVersion": task.version,
    })
}

/// Publishes the `status_update_event` and `instance_changed_event` of a task's new state.
fn publish_state(sim: &Sim, task: &Task, message: &str) {
    sim.bus
        .publish("status_update_event", status_event(task, message));
    sim.bus
        .publish("instance_changed_event", instance_event(task));
}

/// What a new task takes from its app.
struct Spec {
    app_id: String,
    version: String,
    config_version: String,
    port_count: usize,
}

impl Spec {
    fn of(app: &App) -> Spec {
        Spec {
            app_id: app.id.clone(),
            version: app.version.clone(),
            config_version: app.config_version.clone(),
            port_count: app.service_ports.len(),
        }
    }
}

fn new_task(state: &mut State, app: &Spec, task_state: TaskState) -> Task {
    let (instance_id, id) = new_task_ids(&app.app_id);
    let seq = state.next_seq;
    state.next_seq += 1;
    let agent = state.next_agent % AGENTS.len();
    state.next_agent += 1;
    let ports = (0..app.port_count)
        .map(|_| {
            let port = state.next_host_port;
            state.next_host_port = if port >= 31999 { 20000 } else { port + 1 };
            port
        })
        .collect();
    let now = timestamp();
    Task {
        id,
        instance_id,
        app_id: app.app_id.clone(),
        agent,
        state: task_state,
        staged_at: now.clone(),
        started_at: (task_state == TaskState::Running).then_some(now),
        version: app.version.clone(),
        config_version: app.config_version.clone(),
        ports,
        health: None,
        seq,
    }
}

/// Launches one task of the app with its current version; the task then moves on by itself.
pub fn launch(sim: &Arc<Sim>, state: &mut State, app_id: &str) -> Option<String> {
    let spec = Spec::of(state.apps.get(app_id)?);
    let task = new_task(state, &spec, TaskState::Staging);
    publish_state(sim, &task, "");
    let task_id = task.id.clone();
    let app = state.apps.get_mut(app_id)?;
    app.tasks.push(task);
    app.tasks_json = None;
    let (sim2, app_id2, task_id2) = (sim.clone(), app_id.to_string(), task_id.clone());
    tokio::spawn(async move { progress(sim2, app_id2, task_id2).await });
    sim.marathon.notify();
    Some(task_id)
}

async fn progress(sim: Arc<Sim>, app_id: String, task_id: String) {
    for next in [TaskState::Starting, TaskState::Running] {
        sim.clock.sleep(STEP).await;
        if !advance(&sim, &app_id, &task_id, next) {
            return;
        }
    }
    let (delay, fail) = {
        let state = sim.marathon.state.lock();
        match state.apps.get(&app_id) {
            Some(app) if app.has_health_checks() => {
                (app.health_delay(), app.label("SIM_HEALTH") == Some("fail"))
            }
            _ => return,
        }
    };
    if fail {
        let started = tokio::time::Instant::now();
        sim.clock.sleep(Duration::from_secs_f64(delay)).await;
        tokio::time::sleep_until(started + FAILURE_FLOOR).await;
    } else {
        sim.clock.sleep(Duration::from_secs_f64(delay)).await;
    }
    health_result(&sim, &app_id, &task_id, !fail, true);
}

/// Moves a live task to `next` (with its events); false if it is gone, terminal or being killed.
fn transition(sim: &Sim, state: &mut State, app_id: &str, task_id: &str, next: TaskState) -> bool {
    let Some(app) = state.apps.get_mut(app_id) else {
        return false;
    };
    let Some(task) = app.tasks.iter_mut().find(|t| t.id == task_id && t.alive()) else {
        return false;
    };
    task.state = next;
    if next == TaskState::Running {
        task.started_at = Some(timestamp());
    }
    publish_state(sim, task, "");
    app.tasks_json = None;
    true
}

fn advance(sim: &Sim, app_id: &str, task_id: &str, next: TaskState) -> bool {
    let moved = transition(sim, &mut sim.marathon.state.lock(), app_id, task_id, next);
    sim.marathon.notify();
    moved
}

/// Records a health check result with its events; a failing task is killed when `kill_unhealthy`.
/// False if the task is not running.
fn health_result(
    sim: &Arc<Sim>,
    app_id: &str,
    task_id: &str,
    alive: bool,
    kill_unhealthy: bool,
) -> bool {
    let mut state = sim.marathon.state.lock();
    let Some(app) = state.apps.get_mut(app_id) else {
        return false;
    };
    let health_check = app.def["healthChecks"][0].clone();
    let Some(task) = app.tasks.iter_mut().find(|t| t.id == task_id) else {
        return false;
    };
    if task.state != TaskState::Running {
        return false;
    }
    let now = timestamp();
    task.health = Some(if alive {
        Health {
            alive: true,
            consecutive_failures: 0,
            first_success: Some(now.clone()),
            last_success: Some(now),
            last_failure: None,
            last_failure_cause: None,
        }
    } else {
        Health {
            alive: false,
            consecutive_failures: 3,
            first_success: None,
            last_success: None,
            last_failure: Some(now),
            last_failure_cause: Some("Simulated health check failure (SIM_HEALTH=fail)".into()),
        }
    });
    let task = task.clone();
    app.tasks_json = None;
    if !alive {
        sim.bus.publish(
            "failed_health_check_event",
            json!({ "appId": app_id, "healthCheck": health_check, "taskId": task.instance_id }),
        );
    }
    sim.bus.publish(
        "instance_health_changed_event",
        json!({
            "instanceId": task.instance_id,
            "runSpecId": app_id,
            "healthy": alive,
            "runSpecVersion": task.version,
        }),
    );
    sim.bus.publish(
        "health_status_changed_event",
        json!({
            "appId": app_id,
            "instanceId": task.instance_id,
            "version": task.version,
            "alive": alive,
        }),
    );
    if !alive && kill_unhealthy {
        sim.bus.publish(
            "unhealthy_instance_kill_event",
            json!({
                "appId": app_id,
                "taskId": task.id,
                "instanceId": task.instance_id,
                "version": task.version,
                "reason": "HealthCheck failed",
                "host": task.host(),
                "slaveId": task.slave_id(),
            }),
        );
        kill(sim, &mut state, app_id, task_id);
    }
    drop(state);
    sim.marathon.notify();
    true
}

fn app_of(sim: &Sim, task_id: &str) -> Option<String> {
    let state = sim.marathon.state.lock();
    state
        .apps
        .values()
        .find(|a| a.tasks.iter().any(|t| t.id == task_id && t.alive()))
        .map(|a| a.id.clone())
}

/// See [`super::Marathon::set_task_health`].
pub fn set_health(sim: &Arc<Sim>, task_id: &str, alive: bool) -> bool {
    app_of(sim, task_id).is_some_and(|app| health_result(sim, &app, task_id, alive, false))
}

/// See [`super::Marathon::lose_task`].
pub fn lose(sim: &Arc<Sim>, task_id: &str) -> bool {
    let Some(app_id) = app_of(sim, task_id) else {
        return false;
    };
    if !transition(
        sim,
        &mut sim.marathon.state.lock(),
        &app_id,
        task_id,
        TaskState::Unreachable,
    ) {
        return false;
    }
    finish(sim, &app_id, task_id, TaskState::Gone, "Agent was lost")
}

/// Starts killing a live task (KILLING now, KILLED a moment later, then removed). False if the
/// task is not alive.
pub fn kill(sim: &Arc<Sim>, state: &mut State, app_id: &str, task_id: &str) -> bool {
    if !transition(sim, state, app_id, task_id, TaskState::Killing) {
        return false;
    }
    let (sim2, app_id2, task_id2) = (sim.clone(), app_id.to_string(), task_id.to_string());
    tokio::spawn(async move {
        sim2.clock.sleep(KILL).await;
        finish(&sim2, &app_id2, &task_id2, TaskState::Killed, "");
    });
    sim.marathon.notify();
    true
}

/// Ends a task in a terminal state, removes it and replaces it if the app needs it.
fn finish(sim: &Arc<Sim>, app_id: &str, task_id: &str, end: TaskState, message: &str) -> bool {
    let mut state = sim.marathon.state.lock();
    let Some(app) = state.apps.get_mut(app_id) else {
        return false;
    };
    let Some(pos) = app.tasks.iter().position(|t| t.id == task_id) else {
        return false;
    };
    let mut task = app.tasks.remove(pos);
    app.tasks_json = None;
    task.state = end;
    publish_state(sim, &task, message);
    if matches!(end, TaskState::Failed | TaskState::Gone) {
        app.last_task_failure = Some(json!({
            "appId": app_id,
            "host": task.host(),
            "message": message,
            "state": end.mesos(),
            "taskId": task.id,
            "timestamp": timestamp(),
            "version": task.version,
            "slaveId": task.slave_id(),
        }));
    }
    replace_missing(sim, &mut state, app_id);
    reap_deleted(sim, &mut state, app_id);
    drop(state);
    sim.marathon.notify();
    true
}

/// An app deleted by the API whose stop deployment was cancelled: Marathon still kills its
/// tasks; once none is left it is gone.
pub fn reap_deleted(sim: &Arc<Sim>, state: &mut State, app_id: &str) {
    if !state.deployments.iter().any(|d| d.affects(app_id)) {
        stop_deleted(sim, state, app_id);
    }
}

/// Kills every task of a deleted app; once none is left, removes it (`app_terminated_event`).
/// True when it is gone (or was never deleted).
pub fn stop_deleted(sim: &Arc<Sim>, state: &mut State, app_id: &str) -> bool {
    let Some(app) = state.apps.get(app_id).filter(|a| a.deleted) else {
        return true;
    };
    if app.tasks.is_empty() {
        state.apps.remove(app_id);
        sim.bus
            .publish("app_terminated_event", json!({ "appId": app_id }));
        return true;
    }
    let alive: Vec<String> = app
        .tasks
        .iter()
        .filter(|t| t.alive())
        .map(|t| t.id.clone())
        .collect();
    for task in alive {
        kill(sim, state, app_id, &task);
    }
    false
}

/// A task dies on its own (no API call): terminal state, events, then a replacement.
pub fn terminate(sim: &Arc<Sim>, task_id: &str, end: TaskState, message: &str) -> bool {
    match app_of(sim, task_id) {
        Some(app_id) => finish(sim, &app_id, task_id, end, message),
        None => false,
    }
}

/// Launches replacements up to `instances` unless a deployment is converging the app (it does that).
pub fn replace_missing(sim: &Arc<Sim>, state: &mut State, app_id: &str) {
    if state.deployments.iter().any(|d| d.affects(app_id)) {
        return;
    }
    let Some(app) = state.apps.get(app_id) else {
        return;
    };
    if app.deleted {
        return;
    }
    let alive = app.tasks.iter().filter(|t| t.alive()).count();
    for _ in alive..app.instances as usize {
        launch(sim, state, app_id);
    }
}

/// Builds `apps` running, healthy apps of `tasks` tasks each under `group` (no events).
pub fn preload(state: &mut State, apps: usize, tasks: usize, group: &str) {
    if apps == 0 {
        return;
    }
    let group = canonical("/", group);
    let version = timestamp();
    let template = json!({
        "cmd": "sleep 100000",
        "instances": tasks,
        "cpus": 0.1,
        "mem": 32.0,
        "healthChecks": [{
            "protocol": "MESOS_HTTP",
            "path": "/health",
            "portIndex": 0,
            "gracePeriodSeconds": 300,
            "intervalSeconds": 60,
            "timeoutSeconds": 20,
            "maxConsecutiveFailures": 3,
            "delaySeconds": 15,
            "ipProtocol": "IPv4",
        }],
        "version": version,
        "versionInfo": { "lastScalingAt": version, "lastConfigChangeAt": version },
    });
    let Value::Object(template) = template else {
        return;
    };
    // Defaults once; each app only differs in its id and service port.
    let mut no_ports = 0;
    let template = with_defaults(template, &mut no_ports);
    let width = apps.to_string().len().max(4);
    for i in 0..apps {
        let mut def = template.clone();
        let id = canonical(&group, &format!("app-{i:0width$}"));
        def.insert("id".into(), json!(id));
        def["portDefinitions"][0]["port"] = json!(state.next_service_port);
        state.next_service_port += 1;
        let mut app = App::from_def(def);
        let spec = Spec::of(&app);
        for _ in 0..tasks {
            let mut task = new_task(state, &spec, TaskState::Running);
            task.health = Some(Health {
                alive: true,
                consecutive_failures: 0,
                first_success: Some(version.clone()),
                last_success: Some(version.clone()),
                last_failure: None,
                last_failure_cause: None,
            });
            app.tasks.push(task);
        }
        app.tasks_json();
        state.apps.insert(id, app);
    }
}
