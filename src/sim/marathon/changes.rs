//! Changing apps: storing a new definition (with its version), the steps a change needs, and the
//! deployment lock.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::deployments::{self, Action, ActionKind};
use super::http::{self, ApiCall};
use super::model::App;
use super::State as MarathonState;
use crate::sim::clock::timestamp;
use crate::sim::Sim;
use axum::response::Response;

/// Stores a complete definition (with defaults) under a new version; answers the action the
/// change needs (`Start` for a new app, `Restart` for a new configuration, else `Scale`) and the
/// previous definition.
pub fn upsert(
    state: &mut MarathonState,
    mut def: Map<String, Value>,
    version: &str,
) -> (ActionKind, Option<Map<String, Value>>) {
    let id = def["id"].as_str().unwrap_or("/").to_string();
    def.insert("version".into(), json!(version));
    let existing = state
        .apps
        .get(&id)
        .filter(|a| !a.deleted)
        .map(|a| a.def.clone());
    let (kind, info) = match &existing {
        None => (
            ActionKind::Start,
            json!({ "lastScalingAt": version, "lastConfigChangeAt": version }),
        ),
        Some(old) => {
            let mut info = old["versionInfo"].clone();
            if super::validate::config_changed(old, &def) {
                info = json!({ "lastScalingAt": version, "lastConfigChangeAt": version });
                (ActionKind::Restart, info)
            } else {
                info["lastScalingAt"] = json!(version);
                (ActionKind::Scale, info)
            }
        }
    };
    def.insert("versionInfo".into(), info);
    match state.apps.get_mut(&id) {
        Some(app) => {
            app.deleted = false;
            app.set_def(def);
        }
        None => {
            state.apps.insert(id, App::from_def(def));
        }
    }
    (kind, existing)
}

/// The steps of a change of one app.
pub fn steps_for(kind: ActionKind, app: &str) -> Vec<Vec<Action>> {
    let action = |kind| Action {
        kind,
        app: app.to_string(),
    };
    match kind {
        ActionKind::Start => vec![
            vec![action(ActionKind::Start)],
            vec![action(ActionKind::Scale)],
        ],
        kind => vec![vec![action(kind)]],
    }
}

/// 409 unless `force`; with `force` the holding deployments are cancelled.
pub fn take_lock(
    sim: &Sim,
    state: &mut MarathonState,
    apps: &[String],
    force: bool,
) -> Result<(), Response> {
    let ids = deployments::locking(state, apps);
    if ids.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(http::locked(&ids));
    }
    deployments::cancel(
        sim,
        state,
        &ids,
        "The deployment was cancelled by a forced change",
    );
    Ok(())
}

/// Takes the deployment lock of one app for a change (see [`take_lock`]); answers the version
/// (timestamp) of the change.
pub fn begin_change(
    sim: &Sim,
    state: &mut MarathonState,
    id: &str,
    force: bool,
) -> Result<String, Response> {
    take_lock(sim, state, &[id.to_string()], force)?;
    Ok(timestamp())
}

/// Announces an API change of one app (`api_post_event` with its definition as it now is, then
/// `group_change_success`) and starts the deployment carrying it out; answers the deployment id.
pub fn deploy_change(
    sim: &Arc<Sim>,
    state: &mut MarathonState,
    call: &ApiCall,
    id: &str,
    kind: ActionKind,
    original: Option<Map<String, Value>>,
    version: &str,
) -> String {
    let definition = state
        .apps
        .get(id)
        .map_or(Value::Null, |a| Value::Object(a.def.clone()));
    publish_api_change(sim, call, &definition, version);
    deployments::start(
        sim,
        state,
        steps_for(kind, id),
        vec![(id.to_string(), original)],
        version,
    )
}

/// The `api_post_event` and `group_change_success` of an API change.
pub fn publish_api_change(sim: &Sim, call: &ApiCall, app: &Value, version: &str) {
    sim.bus.publish(
        "api_post_event",
        json!({ "clientIp": call.client_ip, "uri": call.uri, "appDefinition": app }),
    );
    sim.bus.publish(
        "group_change_success",
        json!({ "groupId": "/", "version": version }),
    );
}
