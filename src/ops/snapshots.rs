//! Snapshot operations: save the account's group tree to KV `dcos_snapshots`, restore it.
//!
//! A snapshot is the tree `GET /v2/groups/<group>` answers (the account's root, or a `region` below
//! it) without what Marathon computes (versions, tasks, counts, deployments: [`App::writable`]).
//! Its id is `<account>.<task id>`, so a redelivered SAVE writes the same snapshot again.
//!
//! Storage: a KV value may not exceed the server's `max_payload` (1 MiB by default) and a large
//! cluster's tree is bigger, so the compact JSON is split into parts of [`PART_BYTES`] under
//! `<id>.part-<n>`, and the manifest ([`Manifest`]) goes last under `<id>`: a snapshot without a
//! manifest is incomplete and does not exist. No compression, so no new dependency.
//!
//! RESTORE puts the tree back with `PUT /v2/groups/<group>` (Marathon computes the plan: apps made
//! since are stopped, deleted ones started, changed ones restarted or scaled); `dryRun` answers
//! with that plan and changes nothing. A snapshot id of another account is `FORBIDDEN`, an
//! unknown one `NOT_FOUND`. A redelivered restore follows the deployment it recorded.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::context::OpContext;
use super::description::snapshots::{RestoreSnapshotDescription, SaveSnapshotDescription};
use super::error::OpError;
use crate::bus::{BusError, Progress};
use crate::dcos::marathon::GroupChange;
use crate::dcos::{App, DcosError};
use crate::deployments::DeploymentEnd;
use crate::names;
use crate::vocabulary::ErrorCode;

/// Bytes per stored part: well under NATS's default `max_payload` of 1 MiB.
pub const PART_BYTES: usize = 256 * 1024;

/// What is stored under a snapshot's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub snapshot_id: String,
    pub account: String,
    /// The group saved (the root, or a group below it).
    pub group: String,
    pub task_id: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Apps in the tree (all levels).
    pub apps: usize,
    /// Size of the tree's JSON.
    pub bytes: usize,
    /// Number of parts under `<id>.part-<n>`.
    pub parts: usize,
}

fn part_key(snapshot_id: &str, n: usize) -> String {
    format!("{snapshot_id}.part-{n}")
}

/// A KV failure: transient, so the request is tried again later (see [`super::error`]).
fn kv_error(action: &'static str, key: &str, e: impl std::fmt::Display) -> OpError {
    OpError::from(BusError::Kv {
        bucket: names::SNAPSHOTS_BUCKET,
        key: key.to_string(),
        action,
        message: e.to_string(),
    })
}

/// Removes what Marathon computes from a group tree, in place; returns the number of apps.
fn strip(group: &mut Value) -> usize {
    let Some(object) = group.as_object_mut() else {
        return 0;
    };
    object.remove("version");
    let mut apps = 0;
    if let Some(list) = object.get_mut("apps").and_then(Value::as_array_mut) {
        for app in list.iter_mut() {
            if let Some(a) = App::from_value(app.take()) {
                *app = a.writable().into_value();
                apps += 1;
            }
        }
    }
    if let Some(list) = object.get_mut("groups").and_then(Value::as_array_mut) {
        for child in list.iter_mut() {
            apps += strip(child);
        }
    }
    apps
}

/// Every app id in a tree.
fn app_ids(group: &Value, out: &mut Vec<String>) {
    for app in group["apps"].as_array().into_iter().flatten() {
        if let Some(id) = app["id"].as_str() {
            out.push(id.to_string());
        }
    }
    for child in group["groups"].as_array().into_iter().flatten() {
        app_ids(child, out);
    }
}

/// SAVE_SNAPSHOT.
pub async fn save(
    ctx: &OpContext,
    d: &SaveSnapshotDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let group = ctx.scope.group("region", &d.region)?;
    let mut tree = match ctx.client.marathon().get_group(&group).await {
        Ok(tree) => tree,
        // Nothing deployed under the group yet: an empty tree (restoring it removes everything).
        Err(DcosError::NotFound { .. }) => json!({ "id": group, "apps": [], "groups": [] }),
        Err(e) => return Err(e.into()),
    };
    let apps = strip(&mut tree);
    let bytes = serde_json::to_vec(&tree).expect("JSON serialises");
    let snapshot_id = names::kv_key(&format!("{}.{}", ctx.account_name(), ctx.task_id));
    let parts: Vec<&[u8]> = bytes.chunks(PART_BYTES).collect();
    for (n, part) in parts.iter().enumerate() {
        let key = part_key(&snapshot_id, n);
        ctx.snapshots
            .put(&key, Bytes::copy_from_slice(part))
            .await
            .map_err(|e| kv_error("put", &key, e))?;
    }
    let manifest = Manifest {
        snapshot_id: snapshot_id.clone(),
        account: ctx.account_name().to_string(),
        group: group.clone(),
        task_id: ctx.task_id.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        description: d.description.clone(),
        apps,
        bytes: bytes.len(),
        parts: parts.len(),
    };
    ctx.snapshots
        .put(
            &snapshot_id,
            serde_json::to_vec(&manifest).expect("serialises").into(),
        )
        .await
        .map_err(|e| kv_error("put", &snapshot_id, e))?;
    progress
        .update(
            format!("saved {apps} app(s) of {group} as {snapshot_id}"),
            None,
        )
        .await;
    Ok(json!({
        "snapshotId": snapshot_id,
        "group": group,
        "apps": apps,
        "bytes": bytes.len(),
        "parts": parts.len(),
    }))
}

/// Reads a snapshot: its manifest and tree. Another account's is `FORBIDDEN`, a missing one
/// `NOT_FOUND`.
async fn load(ctx: &OpContext, snapshot_id: &str) -> Result<(Manifest, Value), OpError> {
    let account = ctx.account_name();
    let mine = snapshot_id
        .strip_prefix(account)
        .is_some_and(|rest| rest.starts_with('.'));
    if !mine {
        return Err(OpError::forbidden(format!(
            "snapshotId: snapshot `{snapshot_id}` does not belong to account `{account}` (its ids start with `{account}.`)"
        )));
    }
    let not_found = || {
        OpError::failed(
            ErrorCode::NotFound,
            format!("snapshot `{snapshot_id}` does not exist"),
        )
    };
    let raw = ctx
        .snapshots
        .get(snapshot_id)
        .await
        .map_err(|e| kv_error("get", snapshot_id, e))?
        .filter(|b| !b.is_empty())
        .ok_or_else(not_found)?;
    let manifest: Manifest = serde_json::from_slice(&raw).map_err(|e| {
        OpError::failed(
            ErrorCode::NotFound,
            format!("snapshot `{snapshot_id}` is not a snapshot manifest: {e}"),
        )
    })?;
    if manifest.account != account {
        return Err(OpError::forbidden(format!(
            "snapshotId: snapshot `{snapshot_id}` was saved by account `{}`",
            manifest.account
        )));
    }
    let mut bytes = Vec::with_capacity(manifest.bytes);
    for n in 0..manifest.parts {
        let key = part_key(snapshot_id, n);
        let part = ctx
            .snapshots
            .get(&key)
            .await
            .map_err(|e| kv_error("get", &key, e))?
            .ok_or_else(not_found)?;
        bytes.extend_from_slice(&part);
    }
    let tree = serde_json::from_slice(&bytes).map_err(|e| {
        OpError::failed(
            ErrorCode::NotFound,
            format!("snapshot `{snapshot_id}` is damaged: {e}"),
        )
    })?;
    Ok((manifest, tree))
}

/// RESTORE_SNAPSHOT.
pub async fn restore(
    ctx: &OpContext,
    d: &RestoreSnapshotDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let (manifest, tree) = load(ctx, &d.snapshot_id).await?;
    // Saved under this account's root, but the root may have moved since.
    let group = ctx.scope.check("snapshotId", &manifest.group)?;
    let mut apps = Vec::new();
    app_ids(&tree, &mut apps);
    for app in &apps {
        ctx.scope.check("snapshotId", app)?;
    }
    let mut result = serde_json::Map::new();
    result.insert("snapshotId".into(), json!(d.snapshot_id));
    result.insert("group".into(), json!(group));
    result.insert("apps".into(), json!(apps.len()));
    result.insert("dryRun".into(), json!(d.dry_run));
    let recorded = ctx
        .previous_progress("deploymentId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && !d.dry_run)
        .map(str::to_string);
    let deployment_id = match recorded {
        Some(id) => id,
        None => {
            let marathon = ctx.client.marathon();
            match marathon
                .put_group(&group, &tree, d.dry_run, d.force)
                .await?
            {
                GroupChange::Plan(plan) => {
                    result.insert("plan".into(), plan);
                    return Ok(Value::Object(result));
                }
                GroupChange::Deployment(deployment) => deployment.deployment_id,
            }
        }
    };
    result.insert("deploymentId".into(), json!(deployment_id));
    follow_group(ctx, &deployment_id, &group, progress).await?;
    Ok(Value::Object(result))
}

/// Follows a group deployment to its end: the event side's verdict when it has one, else the
/// deployment leaving `/v2/deployments`. Progress carries `deploymentId` first, then each step.
async fn follow_group(
    ctx: &OpContext,
    deployment_id: &str,
    group: &str,
    progress: &Progress,
) -> Result<(), OpError> {
    let mut ended = ctx.hub.wait(ctx.account_name(), deployment_id);
    let mut hub_alive = true;
    let mut delay = ctx.wait_settings.first_poll;
    let mut last_step = None;
    progress
        .update(
            format!("following deployment {deployment_id} of group {group}"),
            Some(json!({ "deploymentId": deployment_id, "group": group })),
        )
        .await;
    loop {
        let end = ended.borrow_and_update().clone();
        match end {
            Some(DeploymentEnd::Succeeded) => return Ok(()),
            Some(DeploymentEnd::Failed { reason }) => {
                return Err(OpError::failed(
                    ErrorCode::DeploymentFailed,
                    format!(
                        "Marathon reported deployment {deployment_id} of group {group} failed: {}",
                        reason.as_deref().unwrap_or("no reason given")
                    ),
                )
                .with_details(json!({ "deploymentId": deployment_id, "reason": reason })))
            }
            None => {}
        }
        tokio::select! {
            changed = ended.changed(), if hub_alive => {
                hub_alive = changed.is_ok();
                continue;
            }
            _ = tokio::time::sleep_until(ctx.deadline) => {
                return Err(OpError::failed(
                    ErrorCode::Timeout,
                    format!(
                        "deployment {deployment_id} of group {group} did not end within {} s; it keeps running in Marathon",
                        ctx.timeout.as_secs()
                    ),
                )
                .with_details(json!({ "deploymentId": deployment_id, "timeoutSeconds": ctx.timeout.as_secs() })));
            }
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(ctx.wait_settings.poll_interval);
        let deployments = ctx.client.marathon().deployments().await?;
        let Some(d) = deployments.iter().find(|d| d.id == deployment_id) else {
            // Gone from the list: give the event side a moment to tell a failure apart.
            let grace = Instant::now() + ctx.wait_settings.event_grace;
            while hub_alive && ended.borrow().is_none() {
                tokio::select! {
                    changed = ended.changed() => hub_alive = changed.is_ok(),
                    _ = tokio::time::sleep_until(grace) => break,
                }
            }
            if matches!(&*ended.borrow(), Some(DeploymentEnd::Failed { .. })) {
                continue;
            }
            return Ok(());
        };
        if last_step != Some(d.current_step) {
            last_step = Some(d.current_step);
            let actions: Vec<Value> = d
                .current_actions
                .iter()
                .map(|a| json!({ "action": a.action, "app": a.app }))
                .collect();
            progress
                .update(
                    format!(
                        "deployment {deployment_id}: step {}/{}",
                        d.current_step, d.total_steps
                    ),
                    Some(json!({
                        "deploymentId": deployment_id,
                        "group": group,
                        "step": d.current_step,
                        "totalSteps": d.total_steps,
                        "actions": actions,
                    })),
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_what_marathon_computes() {
        let mut tree = json!({
            "id": "/t", "version": "v", "apps": [{"id": "/t/a", "version": "v", "tasks": [], "tasksRunning": 1, "cmd": "x"}],
            "groups": [{"id": "/t/g", "version": "v", "apps": [{"id": "/t/g/b", "deployments": [], "cmd": "y"}], "groups": []}]
        });
        assert_eq!(strip(&mut tree), 2);
        assert_eq!(
            tree,
            json!({"id": "/t", "apps": [{"id": "/t/a", "cmd": "x"}],
                   "groups": [{"id": "/t/g", "apps": [{"id": "/t/g/b", "cmd": "y"}], "groups": []}]})
        );
        let mut ids = Vec::new();
        app_ids(&tree, &mut ids);
        assert_eq!(ids, vec!["/t/a", "/t/g/b"]);
    }
}
