//! `/v2/apps`: list, get, create, update (PUT/PATCH), delete, restart; the task endpoints under an
//! app are in [`super::tasks`].

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::changes::{begin_change, deploy_change, upsert};
use super::deployments::{self, ActionKind};
use super::http::{self, ApiCall, Query};
use super::model::App;
use super::render::{join, one, render, render_where, Embed};
use super::tasks;
use super::validate::{canonical, check_app, strip_read_only, with_defaults};
use crate::sim::Sim;

/// Marathon's label selector, simplified: comma-separated `key`, `key==value`, `key!=value`.
fn labels_match(app: &App, selector: &str) -> bool {
    selector.split(',').map(str::trim).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            app.label(k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==") {
            app.label(k.trim()) == Some(v.trim())
        } else {
            app.def["labels"].get(term).is_some()
        }
    })
}

/// `GET /v2/apps` (`embed`, `id` and `cmd` filters: case-insensitive substring, as Marathon).
pub async fn list(State(sim): State<Arc<Sim>>, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref());
    let embed = Embed::from_query(&query);
    let id = query.get("id").map(str::to_lowercase);
    let cmd = query.get("cmd").map(str::to_lowercase);
    let label = query.get("label").map(str::to_string);
    let apps = render_where(&sim, embed, |a| {
        id.as_ref().is_none_or(|s| a.id.to_lowercase().contains(s))
            && label.as_ref().is_none_or(|l| labels_match(a, l))
            && cmd.as_ref().is_none_or(|s| {
                a.def["cmd"]
                    .as_str()
                    .is_some_and(|c| c.to_lowercase().contains(s))
            })
    });
    http::raw(StatusCode::OK, join("apps", &apps))
}

/// `GET /v2/apps/{id}`, `/v2/apps/{id}/tasks`, `/v2/apps/{group}/*`, `/v2/apps/{id}/versions`.
pub async fn get_path(State(sim): State<Arc<Sim>>, Path(path): Path<String>) -> Response {
    if let Some(app) = path.strip_suffix("/tasks") {
        return tasks::app_tasks(&sim, &canonical("/", app));
    }
    if path == "*" || path.ends_with("/*") {
        let group = canonical("/", path.trim_end_matches('*'));
        let prefix = if group == "/" {
            group.clone()
        } else {
            format!("{group}/")
        };
        let apps = render_where(&sim, Embed::all(), |a| a.id.starts_with(&prefix));
        return http::raw(StatusCode::OK, join("*", &apps));
    }
    if let Some(app) = path.strip_suffix("/versions") {
        let id = canonical("/", app);
        let state = sim.marathon.state.lock();
        return match state.apps.get(&id).filter(|a| !a.deleted) {
            Some(a) => http::json(StatusCode::OK, &json!({ "versions": [a.version] })),
            None => http::app_not_found(&id),
        };
    }
    let id = canonical("/", &path);
    let rendered = {
        let mut state = sim.marathon.state.lock();
        let deployments = deployments::locking(&state, std::slice::from_ref(&id));
        state
            .apps
            .get_mut(&id)
            .filter(|a| !a.deleted)
            .map(|a| render(a, &deployments, Embed::all()))
    };
    match rendered {
        Some(app) => http::raw(StatusCode::OK, one(&app, "app")),
        None => http::app_not_found(&id),
    }
}

/// Parses a body as an app object (400 when not JSON, 422 when not an object).
fn app_body(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match http::parse_body(body)? {
        Value::Object(mut map) => {
            strip_read_only(&mut map);
            Ok(map)
        }
        _ => Err(http::invalid(&[(
            "/".into(),
            "error.expected.jsobject".into(),
        )])),
    }
}

/// `Location: <prefix>/v2/apps<id>` (the prefix being `/service/marathon` behind DC/OS).
fn set_location(response: &mut Response, call: &ApiCall, id: &str) {
    let path = call.uri.as_str();
    let base = path.find("/v2/apps").map_or("", |i| &path[..i]);
    if let Ok(value) = HeaderValue::from_str(&format!("{base}/v2/apps{id}")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

/// `POST /v2/apps`.
pub async fn create(
    State(sim): State<Arc<Sim>>,
    call: ApiCall,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(query.as_deref());
    let mut def = match app_body(&body) {
        Ok(def) => def,
        Err(response) => return response,
    };
    let id = canonical("/", def.get("id").and_then(Value::as_str).unwrap_or(""));
    def.insert("id".into(), json!(id));
    let violations = check_app(&def);
    if !violations.is_empty() {
        return http::invalid(&violations);
    }
    let mut state = sim.marathon.state.lock();
    if state.apps.get(&id).is_some_and(|a| !a.deleted) {
        return http::message(
            StatusCode::CONFLICT,
            format!("An app with id [{id}] already exists."),
        );
    }
    let version = match begin_change(&sim, &mut state, &id, query.flag("force", false)) {
        Ok(version) => version,
        Err(response) => return response,
    };
    let def = with_defaults(def, &mut state.next_service_port);
    let (kind, original) = upsert(&mut state, def, &version);
    let deployment = deploy_change(&sim, &mut state, &call, &id, kind, original, &version);
    let app = state.apps.get_mut(&id).expect("just stored");
    let embed = Embed {
        tasks: true,
        counts: true,
        deployments: true,
        ..Embed::default()
    };
    let rendered = render(app, &[deployment], embed);
    drop(state);
    let mut out = String::new();
    rendered.write(&mut out);
    let mut response = http::raw(StatusCode::CREATED, out);
    set_location(&mut response, &call, &id);
    response
}

/// `PUT /v2/apps/{id}` (`partialUpdate` defaults to true, `force`).
pub async fn put(
    State(sim): State<Arc<Sim>>,
    call: ApiCall,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(query.as_deref());
    let partial = query.flag("partialUpdate", true);
    update(&sim, &call, &path, &query, &body, partial, true)
}

/// `PATCH /v2/apps/{id}`: a partial update of an existing app.
pub async fn patch(
    State(sim): State<Arc<Sim>>,
    call: ApiCall,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(query.as_deref());
    update(&sim, &call, &path, &query, &body, true, false)
}

fn update(
    sim: &Arc<Sim>,
    call: &ApiCall,
    path: &str,
    query: &Query,
    body: &[u8],
    partial: bool,
    may_create: bool,
) -> Response {
    let id = canonical("/", path);
    let body = match app_body(body) {
        Ok(def) => def,
        Err(response) => return response,
    };
    let mut state = sim.marathon.state.lock();
    let existing = state
        .apps
        .get(&id)
        .filter(|a| !a.deleted)
        .map(|a| a.def.clone());
    if existing.is_none() && !may_create {
        return http::app_not_found(&id);
    }
    let sets = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    let (sets_cmd, sets_args) = (sets("cmd"), sets("args"));
    let mut def = match (&existing, partial) {
        (Some(old), true) => {
            let mut def = old.clone();
            // `cmd` and `args` replace each other in a partial update.
            if sets_cmd && !sets_args {
                def.remove("args");
            }
            if sets_args && !sets_cmd {
                def.remove("cmd");
            }
            def.extend(body);
            def
        }
        _ => body,
    };
    def.insert("id".into(), json!(id));
    let violations = check_app(&def);
    if !violations.is_empty() {
        return http::invalid(&violations);
    }
    let version = match begin_change(sim, &mut state, &id, query.flag("force", false)) {
        Ok(version) => version,
        Err(response) => return response,
    };
    let def = with_defaults(def, &mut state.next_service_port);
    let (kind, original) = upsert(&mut state, def, &version);
    let created = original.is_none();
    let deployment = deploy_change(sim, &mut state, call, &id, kind, original, &version);
    drop(state);
    if !created {
        return http::deployment_result(StatusCode::OK, &deployment, &version);
    }
    let mut response = http::deployment_result(StatusCode::CREATED, &deployment, &version);
    set_location(&mut response, call, &id);
    response
}

/// `DELETE /v2/apps/{id}`, `/v2/apps/{id}/tasks`, `/v2/apps/{id}/tasks/{taskId}`.
pub async fn delete_path(
    State(sim): State<Arc<Sim>>,
    call: ApiCall,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = Query::parse(query.as_deref());
    if let Some(app) = path.strip_suffix("/tasks") {
        return tasks::kill_app_tasks(&sim, &canonical("/", app), &query);
    }
    if let Some((app, task)) = path.rsplit_once("/tasks/") {
        return tasks::kill_app_task(&sim, &canonical("/", app), task, &query);
    }
    let id = canonical("/", &path);
    let mut state = sim.marathon.state.lock();
    let Some(app) = state.apps.get(&id).filter(|a| !a.deleted) else {
        return http::app_not_found(&id);
    };
    let original = app.def.clone();
    let version = match begin_change(&sim, &mut state, &id, query.flag("force", true)) {
        Ok(version) => version,
        Err(response) => return response,
    };
    let deployment = deploy_change(
        &sim,
        &mut state,
        &call,
        &id,
        ActionKind::Stop,
        Some(original),
        &version,
    );
    if let Some(app) = state.apps.get_mut(&id) {
        app.deleted = true;
    }
    drop(state);
    http::deployment_result(StatusCode::OK, &deployment, &version)
}

/// `POST /v2/apps/{id}/restart?force=`.
pub async fn post_path(
    State(sim): State<Arc<Sim>>,
    call: ApiCall,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = Query::parse(query.as_deref());
    let Some(app) = path.strip_suffix("/restart") else {
        return http::message(StatusCode::NOT_FOUND, "Not found");
    };
    let id = canonical("/", app);
    let mut state = sim.marathon.state.lock();
    let Some(app) = state.apps.get(&id).filter(|a| !a.deleted) else {
        return http::app_not_found(&id);
    };
    let mut def = app.def.clone();
    let version = match begin_change(&sim, &mut state, &id, query.flag("force", false)) {
        Ok(version) => version,
        Err(response) => return response,
    };
    let original = def.clone();
    def.insert("version".into(), json!(version));
    def.insert(
        "versionInfo".into(),
        json!({ "lastScalingAt": version, "lastConfigChangeAt": version }),
    );
    let app = state.apps.get_mut(&id).expect("checked");
    app.set_def(def);
    let deployment = deploy_change(
        &sim,
        &mut state,
        &call,
        &id,
        ActionKind::Restart,
        Some(original),
        &version,
    );
    drop(state);
    http::deployment_result(StatusCode::OK, &deployment, &version)
}
