//! Changing apps: storing a new definition (with its version), the steps a change needs, and the
//! deployment lock.

use serde_json::{json, Map, Value};

use super::deployments::{self, Action, ActionKind};
use super::http;
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
