//! Tasks: `GET /v2/tasks`, `POST /v2/tasks/delete`, the task endpoints under an app, `GET /v2/queue`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::changes::{steps_for, take_lock};
use super::deployments::{self, ActionKind};
use super::http::{self, Query};
use super::lifecycle;
use super::model::task_value;
use super::render::{render, Embed};
use super::State as MarathonState;
use crate::sim::clock::timestamp;
use crate::sim::Sim;

/// `GET /v2/apps/{id}/tasks`.
pub fn app_tasks(sim: &Sim, id: &str) -> Response {
    let tasks = {
        let mut state = sim.marathon.state.lock();
        match state.apps.get_mut(id).filter(|a| !a.deleted) {
            Some(app) => app.tasks_json(),
            None => return http::app_not_found(id),
        }
    };
    let mut out = String::with_capacity(tasks.len() + 12);
    out.push_str("{\"tasks\":");
    out.push_str(&tasks);
    out.push('}');
    http::raw(StatusCode::OK, out)
}

/// `GET /v2/tasks`.
pub async fn list(State(sim): State<Arc<Sim>>) -> Response {
    let parts: Vec<Arc<str>> = {
        let mut state = sim.marathon.state.lock();
        state
            .apps
            .values_mut()
            .filter(|a| !a.deleted && !a.tasks.is_empty())
            .map(|a| a.tasks_json())
            .collect()
    };
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 16);
    out.push_str("{\"tasks\":[");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&part[1..part.len() - 1]);
    }
    out.push_str("]}");
    http::raw(StatusCode::OK, out)
}

/// The killed tasks (as JSON) and, when scaling, the deployment `(id, version)`.
type Killed = (Vec<Value>, Option<(String, String)>);

/// Kills the given tasks of one app. With `scale`, lowers `instances` by their number in a new
/// version and answers that deployment; without, Marathon replaces them and answers the tasks.
fn kill(
    sim: &Arc<Sim>,
    state: &mut MarathonState,
    app_id: &str,
    task_ids: &[String],
    scale: bool,
    force: bool,
) -> Result<Killed, Response> {
    if scale {
        take_lock(sim, state, &[app_id.to_string()], force)?;
    }
    let app = state
        .apps
        .get(app_id)
        .ok_or_else(|| http::app_not_found(app_id))?;
    let mut killed = Vec::new();
    for task in app.tasks.iter().filter(|t| task_ids.contains(&t.id)) {
        killed.push(task_value(task, &app.service_ports));
    }
    for id in task_ids {
        lifecycle::kill(sim, state, app_id, id);
    }
    if !scale {
        return Ok((killed, None));
    }
    let app = state.apps.get_mut(app_id).expect("checked");
    let original = app.def.clone();
    let mut def = original.clone();
    let version = timestamp();
    let instances = (app.instances as usize).saturating_sub(task_ids.len());
    def.insert("instances".into(), json!(instances));
    def.insert("version".into(), json!(version));
    def["versionInfo"]["lastScalingAt"] = json!(version);
    app.set_def(def);
    let deployment = deployments::start(
        sim,
        state,
        steps_for(ActionKind::Scale, app_id),
        vec![(app_id.to_string(), Some(original))],
        &version,
    );
    Ok((killed, Some((deployment, version))))
}

/// `DELETE /v2/apps/{id}/tasks?host=&scale=`.
pub fn kill_app_tasks(sim: &Arc<Sim>, app_id: &str, query: &Query) -> Response {
    let mut state = sim.marathon.state.lock();
    let Some(app) = state.apps.get(app_id).filter(|a| !a.deleted) else {
        return http::app_not_found(app_id);
    };
    let host = query.get("host");
    let ids: Vec<String> = app
        .tasks
        .iter()
        .filter(|t| t.alive() && host.is_none_or(|h| h == "*" || t.host() == h))
        .map(|t| t.id.clone())
        .collect();
    kill_and_answer(sim, &mut state, app_id, &ids, query, false)
}

/// Kills tasks of one app and answers: the deployment when scaling, else `{"tasks":[…]}` (or
/// `{"task":…}` for a single task).
fn kill_and_answer(
    sim: &Arc<Sim>,
    state: &mut MarathonState,
    app_id: &str,
    ids: &[String],
    query: &Query,
    single: bool,
) -> Response {
    let scale = query.flag("scale", false);
    match kill(sim, state, app_id, ids, scale, query.flag("force", false)) {
        Err(response) => response,
        Ok((_, Some((id, version)))) => http::deployment_result(StatusCode::OK, &id, &version),
        Ok((mut tasks, None)) if single => {
            http::json(StatusCode::OK, &json!({ "task": tasks.pop() }))
        }
        Ok((tasks, None)) => http::json(StatusCode::OK, &json!({ "tasks": tasks })),
    }
}

/// `DELETE /v2/apps/{id}/tasks/{taskId}?scale=&wipe=`.
pub fn kill_app_task(sim: &Arc<Sim>, app_id: &str, task_id: &str, query: &Query) -> Response {
    let scale = query.flag("scale", false);
    if scale && query.flag("wipe", false) {
        return http::message(
            StatusCode::BAD_REQUEST,
            "You cannot use scale and wipe at the same time.",
        );
    }
    let mut state = sim.marathon.state.lock();
    let Some(app) = state.apps.get(app_id).filter(|a| !a.deleted) else {
        return http::app_not_found(app_id);
    };
    if !app.tasks.iter().any(|t| t.id == task_id && t.alive()) {
        return http::task_not_found(task_id);
    }
    kill_and_answer(sim, &mut state, app_id, &[task_id.to_string()], query, true)
}

/// `POST /v2/tasks/delete?scale=&force=` with `{"ids":[…]}`.
pub async fn delete_many(
    State(sim): State<Arc<Sim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(query.as_deref());
    let body = match http::parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(ids) = body["ids"].as_array() else {
        return http::invalid(&[("/ids".into(), "error.path.missing".into())]);
    };
    let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
    let scale = query.flag("scale", false);
    let force = query.flag("force", false);
    let mut state = sim.marathon.state.lock();
    // Group the ids by app; an unknown id is a 404, as Marathon.
    let mut by_app: Vec<(String, Vec<String>)> = Vec::new();
    for id in &ids {
        let app = state
            .apps
            .values()
            .find(|a| !a.deleted && a.tasks.iter().any(|t| t.id == *id && t.alive()));
        let Some(app) = app else {
            return http::task_not_found(id);
        };
        match by_app.iter_mut().find(|(a, _)| *a == app.id) {
            Some((_, tasks)) => tasks.push(id.to_string()),
            None => by_app.push((app.id.clone(), vec![id.to_string()])),
        }
    }
    if scale {
        let apps: Vec<String> = by_app.iter().map(|(a, _)| a.clone()).collect();
        if let Err(response) = take_lock(&sim, &mut state, &apps, force) {
            return response;
        }
    }
    let mut killed = Vec::new();
    let mut last = None;
    for (app, tasks) in &by_app {
        match kill(&sim, &mut state, app, tasks, scale, true) {
            Err(response) => return response,
            Ok((t, deployment)) => {
                killed.extend(t);
                last = deployment.or(last);
            }
        }
    }
    drop(state);
    match last {
        Some((id, version)) => http::deployment_result(StatusCode::OK, &id, &version),
        None if scale => http::json(
            StatusCode::OK,
            &json!({ "deploymentId": uuid::Uuid::new_v4().to_string(), "version": timestamp() }),
        ),
        None => http::json(StatusCode::OK, &json!({ "tasks": killed })),
    }
}

/// `GET /v2/queue`: apps with fewer live tasks than instances.
pub async fn queue(State(sim): State<Arc<Sim>>) -> Response {
    let mut state = sim.marathon.state.lock();
    let deployments = super::render::deployments_by_app(&state);
    let since = timestamp();
    let mut queue = Vec::new();
    for app in state.apps.values_mut().filter(|a| !a.deleted) {
        let waiting = app
            .tasks
            .iter()
            .filter(|t| t.state == super::TaskState::Staging)
            .count();
        if waiting == 0 {
            continue;
        }
        let ids = deployments
            .get(&app.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = String::new();
        let rendered = render(
            app,
            ids,
            Embed {
                counts: false,
                ..Embed::default()
            },
        );
        rendered.write(&mut out);
        let app_value: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        queue.push(json!({
            "count": waiting,
            "delay": { "timeLeftSeconds": 0, "overdue": false },
            "since": since,
            "app": app_value,
        }));
    }
    drop(state);
    http::json(StatusCode::OK, &json!({ "queue": queue }))
}
