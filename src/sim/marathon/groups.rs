//! `/v2/groups`: the group tree (derived from app ids), group updates with `dryRun`, group removal.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::changes::{take_lock, upsert};
use super::deployments::{self, steps_value, Action, ActionKind};
use super::http::{self, Query};
use super::validate::{canonical, check_app, config_changed, strip_read_only, with_defaults};
use super::State as MarathonState;
use crate::sim::clock::timestamp;
use crate::sim::Sim;

fn parent(id: &str) -> &str {
    match id.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &id[..i],
    }
}

fn under(group: &str, id: &str) -> bool {
    group == "/" || id.starts_with(&format!("{group}/"))
}

/// The group `id` with its apps and nested groups, built from `apps` (all under `id`).
fn build(id: &str, apps: &[(String, Value)], version: &str) -> Value {
    let direct: Vec<Value> = apps
        .iter()
        .filter(|(app, _)| parent(app) == id)
        .map(|(_, def)| def.clone())
        .collect();
    let children: BTreeSet<String> = apps
        .iter()
        .filter(|(app, _)| parent(app) != id)
        .map(|(app, _)| {
            let rest = app[id.len()..].trim_start_matches('/');
            let first = rest.split('/').next().unwrap_or_default();
            canonical(id, first)
        })
        .collect();
    let groups: Vec<Value> = children
        .iter()
        .map(|child| {
            let inside: Vec<(String, Value)> = apps
                .iter()
                .filter(|(app, _)| under(child, app))
                .cloned()
                .collect();
            build(child, &inside, version)
        })
        .collect();
    json!({
        "id": id,
        "apps": direct,
        "groups": groups,
        "pods": [],
        "dependencies": [],
        "version": version,
    })
}

fn apps_under(state: &MarathonState, group: &str) -> Vec<(String, Value)> {
    state
        .apps
        .values()
        .filter(|a| !a.deleted && under(group, &a.id))
        .map(|a| (a.id.clone(), Value::Object(a.def.clone())))
        .collect()
}

fn get_group(sim: &Sim, path: &str) -> Response {
    let id = canonical("/", path);
    let state = sim.marathon.state.lock();
    let apps = apps_under(&state, &id);
    drop(state);
    if apps.is_empty() && id != "/" {
        return http::message(
            StatusCode::NOT_FOUND,
            format!("Group '{id}' does not exist"),
        );
    }
    let version = apps
        .iter()
        .filter_map(|(_, def)| def["version"].as_str())
        .max()
        .map(str::to_string)
        .unwrap_or_else(timestamp);
    http::json(StatusCode::OK, &build(&id, &apps, &version))
}

/// `GET /v2/groups`.
pub async fn get_root(State(sim): State<Arc<Sim>>) -> Response {
    get_group(&sim, "/")
}

/// `GET /v2/groups/{id}`.
pub async fn get(State(sim): State<Arc<Sim>>, Path(path): Path<String>) -> Response {
    get_group(&sim, &path)
}

/// Flattens a group body into app definitions with absolute ids.
fn flatten(
    base: &str,
    group: &Map<String, Value>,
    json_path: &str,
    out: &mut Vec<Map<String, Value>>,
    violations: &mut Vec<(String, String)>,
) {
    let id = canonical(base, group.get("id").and_then(Value::as_str).unwrap_or(""));
    for (i, app) in group
        .get("apps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(app) = app.as_object() else {
            violations.push((
                format!("{json_path}/apps({i})"),
                "error.expected.jsobject".into(),
            ));
            continue;
        };
        let mut app = app.clone();
        strip_read_only(&mut app);
        let app_id = canonical(&id, app.get("id").and_then(Value::as_str).unwrap_or(""));
        app.insert("id".into(), json!(app_id));
        for (path, error) in check_app(&app) {
            let path = if path == "/" { String::new() } else { path };
            violations.push((format!("{json_path}/apps({i}){path}"), error));
        }
        out.push(app);
    }
    for (i, child) in group
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(child) = child.as_object() {
            flatten(
                &id,
                child,
                &format!("{json_path}/groups({i})"),
                out,
                violations,
            );
        }
    }
}

fn put_group(sim: &Arc<Sim>, path: &str, query: &Query, body: &[u8]) -> Response {
    let group_id = canonical("/", path);
    let body = match http::parse_body(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return http::invalid(&[("/".into(), "error.expected.jsobject".into())]),
        Err(response) => return response,
    };
    let mut body = body;
    body.insert("id".into(), json!(group_id));
    let mut target = Vec::new();
    let mut violations = Vec::new();
    flatten("/", &body, "", &mut target, &mut violations);
    if !violations.is_empty() {
        return http::invalid(&violations);
    }
    let target_ids: BTreeSet<String> = target
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut state = sim.marathon.state.lock();
    let existed = !apps_under(&state, &group_id).is_empty();
    let mut ports = state.next_service_port;
    let mut planned: Vec<(ActionKind, Map<String, Value>)> = Vec::new();
    for def in target {
        let id = def["id"].as_str().unwrap_or_default().to_string();
        let current = state.apps.get(&id).filter(|a| !a.deleted);
        let mut def = def;
        if let Some(app) = current {
            // Keep the service ports Marathon already assigned when the group omits them.
            if !def.contains_key("portDefinitions") {
                def.insert("portDefinitions".into(), app.def["portDefinitions"].clone());
            }
        }
        let def = with_defaults(def, &mut ports);
        let kind = match current {
            None => ActionKind::Start,
            Some(app) if config_changed(&app.def, &def) => ActionKind::Restart,
            Some(app) if app.def["instances"] != def["instances"] => ActionKind::Scale,
            Some(_) => continue,
        };
        planned.push((kind, def));
    }
    let keep: BTreeSet<String> = planned
        .iter()
        .map(|(_, d)| d["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let stops: Vec<String> = apps_under(&state, &group_id)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !target_ids.contains(id))
        .collect();
    let action = |kind, app: &str| Action {
        kind,
        app: app.to_string(),
    };
    let mut steps: Vec<Vec<Action>> = vec![
        stops.iter().map(|a| action(ActionKind::Stop, a)).collect(),
        planned
            .iter()
            .filter(|(k, _)| *k == ActionKind::Start)
            .map(|(k, d)| action(*k, d["id"].as_str().unwrap_or_default()))
            .collect(),
        planned
            .iter()
            .map(|(k, d)| {
                let kind = if *k == ActionKind::Start {
                    ActionKind::Scale
                } else {
                    *k
                };
                action(kind, d["id"].as_str().unwrap_or_default())
            })
            .collect(),
    ];
    steps.retain(|s| !s.is_empty());
    if query.flag("dryRun", false) {
        return http::json(StatusCode::OK, &json!({ "steps": steps_value(&steps) }));
    }
    let affected: Vec<String> = stops.iter().cloned().chain(keep.iter().cloned()).collect();
    if let Err(response) = take_lock(sim, &mut state, &affected, query.flag("force", false)) {
        return response;
    }
    state.next_service_port = ports;
    let version = timestamp();
    let mut original = Vec::new();
    for id in &stops {
        if let Some(app) = state.apps.get_mut(id) {
            original.push((id.clone(), Some(app.def.clone())));
            app.deleted = true;
        }
    }
    for (_, def) in planned {
        let id = def["id"].as_str().unwrap_or_default().to_string();
        let (_, before) = upsert(&mut state, def, &version);
        original.push((id, before));
    }
    publish_api_change_group(sim, &group_id, &version);
    let deployment = deployments::start(sim, &mut state, steps, original, &version);
    drop(state);
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    http::deployment_result(status, &deployment, &version)
}

fn publish_api_change_group(sim: &Sim, group: &str, version: &str) {
    sim.bus.publish(
        "group_change_success",
        json!({ "groupId": group, "version": version }),
    );
}

/// `PUT /v2/groups`.
pub async fn put_root(
    State(sim): State<Arc<Sim>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    put_group(&sim, "/", &Query::parse(query.as_deref()), &body)
}

/// `PUT /v2/groups/{id}?dryRun=&force=`.
pub async fn put(
    State(sim): State<Arc<Sim>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    put_group(&sim, &path, &Query::parse(query.as_deref()), &body)
}

/// `DELETE /v2/groups/{id}?force=`: stops every app under it.
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = Query::parse(query.as_deref());
    let group_id = canonical("/", &path);
    let mut state = sim.marathon.state.lock();
    let apps: Vec<String> = apps_under(&state, &group_id)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if apps.is_empty() {
        return http::message(
            StatusCode::NOT_FOUND,
            format!("Group '{group_id}' does not exist"),
        );
    }
    if let Err(response) = take_lock(&sim, &mut state, &apps, query.flag("force", false)) {
        return response;
    }
    let version = timestamp();
    let mut original = Vec::new();
    for id in &apps {
        if let Some(app) = state.apps.get_mut(id) {
            original.push((id.clone(), Some(app.def.clone())));
            app.deleted = true;
        }
    }
    publish_api_change_group(&sim, &group_id, &version);
    let steps = vec![apps
        .iter()
        .map(|a| Action {
            kind: ActionKind::Stop,
            app: a.clone(),
        })
        .collect()];
    let deployment = deployments::start(&sim, &mut state, steps, original, &version);
    drop(state);
    http::deployment_result(StatusCode::OK, &deployment, &version)
}
