//! The server-group operations: create, clone, disable, enable, destroy, resize, tags, launch config.
//!
//! Each one is `async fn(ctx, description, progress) -> Result<Value, OpError>`; the framework has
//! already parsed the description, checked its paths and locked its app (or, for create and clone,
//! its cluster). Results always carry `serverGroupName`, `region` (below the root) and `appId`;
//! `version` is always Marathon's app version (a timestamp), `sequence` the `vNNN` of a new server group.

use serde_json::{json, Map, Value};

use super::context::OpContext;
use super::description::app::ApplyContext;
use super::description::server_group::*;
use super::error::OpError;
use super::naming;
use super::wait::Goal;
use super::TASK_ID_LABEL;
use crate::bus::Progress;
use crate::dcos::{App, AppsQuery, DcosError};
use crate::overlays::{self, Overlay};
use crate::vocabulary::ErrorCode;

/// How often a create picks another version when Marathon says the id is taken (another replica or
/// a person created it between listing and posting).
const CREATE_ATTEMPTS: usize = 3;

/// The fields every server-group result starts with.
pub(super) fn identity(ctx: &OpContext, app_id: &str) -> Map<String, Value> {
    let group = naming::parent_group(app_id);
    let region = group
        .strip_prefix(ctx.scope.root())
        .unwrap_or(group)
        .trim_matches('/');
    let mut result = Map::new();
    result.insert(
        "serverGroupName".into(),
        json!(naming::last_segment(app_id)),
    );
    result.insert("region".into(), json!(region));
    result.insert("appId".into(), json!(app_id));
    result
}

/// Reads an app; a missing one is `NOT_FOUND` naming the field it came from.
pub(super) async fn read_app(ctx: &OpContext, app_id: &str, what: &str) -> Result<App, OpError> {
    match ctx.client.marathon().get_app(app_id).await {
        Ok(app) => Ok(app),
        Err(DcosError::NotFound { .. }) => Err(OpError::failed(
            ErrorCode::NotFound,
            format!("{what} {app_id} does not exist"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// CREATE_SERVER_GROUP.
pub async fn create(
    ctx: &OpContext,
    d: &CreateServerGroupDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let (group, cluster) = d.target(&ctx.scope)?;
    let app = d.app.clone().unwrap_or_default();
    create_versioned(
        ctx,
        &group,
        &cluster,
        app,
        |app, app_id| {
            d.app_settings().apply(
                app,
                &ApplyContext {
                    account: ctx.account_name(),
                    app_id,
                },
            )
        },
        progress,
    )
    .await
}

/// CLONE_SERVER_GROUP.
pub async fn clone(
    ctx: &OpContext,
    d: &CloneServerGroupDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let same_account = !d.cross_account(ctx.account_name());
    let (source_scope, source_client) = match &d.source.account {
        Some(account) if !same_account => ctx.other_account(account)?,
        _ => (ctx.scope.clone(), ctx.client.clone()),
    };
    let source_id = d.source_app(&source_scope)?;
    let (group, cluster) = d.target(&ctx.scope, &source_id, same_account)?;
    let source = match source_client.marathon().get_app(&source_id).await {
        Ok(app) => app,
        Err(DcosError::NotFound { .. }) => {
            return Err(OpError::failed(
                ErrorCode::NotFound,
                format!("source server group {source_id} does not exist"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut copy = source.writable().0;
    if let Some(labels) = copy.get_mut("labels").and_then(Value::as_object_mut) {
        labels.remove(TASK_ID_LABEL);
    }
    free_service_ports(&mut copy);
    let mut result = create_versioned(
        ctx,
        &group,
        &cluster,
        copy,
        |app, app_id| {
            d.app_settings().apply(
                app,
                &ApplyContext {
                    account: ctx.account_name(),
                    app_id,
                },
            )
        },
        progress,
    )
    .await?;
    if let Some(object) = result.as_object_mut() {
        object.insert(
            "source".into(),
            json!({ "account": source_scope.account(), "appId": source_id }),
        );
    }
    Ok(result)
}

/// Service ports are unique per cluster: a copy asks Marathon for new ones (0 = assign).
fn free_service_ports(app: &mut Map<String, Value>) {
    if let Some(ports) = app.get_mut("portDefinitions").and_then(Value::as_array_mut) {
        for port in ports {
            port["port"] = json!(0);
        }
    }
    let mappings = app
        .get_mut("container")
        .and_then(|c| c.get_mut("portMappings"))
        .and_then(Value::as_array_mut);
    for mapping in mappings.into_iter().flatten() {
        if mapping.get("servicePort").is_some() {
            mapping["servicePort"] = json!(0);
        }
    }
}

/// Creates `app` as the next version of `cluster` in `group` and waits for it; `customise` writes
/// the description's settings once the id is known. Resumed requests find the app they created by
/// its [`TASK_ID_LABEL`] and only wait.
async fn create_versioned(
    ctx: &OpContext,
    group: &str,
    cluster: &str,
    mut app: Map<String, Value>,
    customise: impl Fn(&mut Map<String, Value>, &str) -> Result<(), OpError>,
    progress: &Progress,
) -> Result<Value, OpError> {
    for attempt in 1..=CREATE_ATTEMPTS {
        let siblings = apps_in_group(ctx, group).await?;
        if let Some(mine) = siblings
            .iter()
            .find(|a| a.labels().get(TASK_ID_LABEL) == Some(&ctx.task_id))
        {
            return resume_create(ctx, mine, progress).await;
        }
        let names: Vec<&str> = siblings
            .iter()
            .map(|a| naming::last_segment(a.id()))
            .collect();
        let sequence = naming::next_sequence(cluster, names)?;
        let name = naming::server_group_name(cluster, sequence);
        let app_id = format!("{}/{name}", group.trim_end_matches('/'));
        app.insert("id".into(), json!(app_id));
        customise(&mut app, &app_id)?;
        let labels = app.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            return Err(OpError::invalid(
                "app.labels",
                "must be an object of strings",
            ));
        }
        labels[TASK_ID_LABEL] = json!(ctx.task_id);
        let definition = App(app.clone());
        let created = match ctx.client.marathon().create_app(&definition).await {
            Ok(created) => created,
            Err(DcosError::Conflict { message, .. }) if attempt < CREATE_ATTEMPTS => {
                tracing::info!(task_id = %ctx.task_id, %app_id, %message, "id taken meanwhile; picking the next version");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let instances = definition.instances().unwrap_or(1);
        let deployment_id = created.deployment.deployment_id.clone();
        let waited = ctx
            .follow(
                &deployment_id,
                &Goal::Instances {
                    app_id: app_id.clone(),
                    target: Some(instances),
                },
                progress,
            )
            .await?;
        let mut result = identity(ctx, &app_id);
        result.insert("sequence".into(), json!(format!("v{sequence:03}")));
        result.insert("version".into(), json!(created.deployment.version));
        result.insert("deploymentId".into(), json!(deployment_id));
        result.insert("instances".into(), json!(instances));
        result.insert("seenBy".into(), json!(waited.seen_by));
        return Ok(Value::Object(result));
    }
    Err(OpError::failed(
        ErrorCode::Conflict,
        format!(
            "cluster {cluster} in {group}: every new version was taken by someone else meanwhile"
        ),
    ))
}

/// The apps directly in `group` (not in its subgroups).
async fn apps_in_group(ctx: &OpContext, group: &str) -> Result<Vec<App>, OpError> {
    let prefix = format!("{}/", group.trim_end_matches('/'));
    let apps = ctx
        .client
        .marathon()
        .list_apps(&AppsQuery::default().under(prefix.clone()))
        .await?;
    Ok(apps
        .into_iter()
        .filter(|a| naming::parent_group(a.id()) == group)
        .collect())
}

/// A resumed create found the app it made before: wait for its deployment, if any is left.
async fn resume_create(ctx: &OpContext, mine: &App, progress: &Progress) -> Result<Value, OpError> {
    let app_id = mine.id().to_string();
    let instances = mine.instances().unwrap_or(1);
    let deployment_id = mine
        .deployments()
        .into_iter()
        .next()
        .or_else(|| {
            ctx.previous_progress("deploymentId")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    progress
        .update(
            format!("resuming: {app_id} was already created by this task"),
            None,
        )
        .await;
    let waited = if mine.deployments().is_empty() {
        None
    } else {
        Some(
            ctx.follow(
                &deployment_id,
                &Goal::Instances {
                    app_id: app_id.clone(),
                    target: Some(instances),
                },
                progress,
            )
            .await?,
        )
    };
    let name = naming::last_segment(&app_id);
    let mut result = identity(ctx, &app_id);
    if let (_, Some(sequence)) = naming::split_sequence(name) {
        result.insert("sequence".into(), json!(format!("v{sequence:03}")));
    }
    result.insert("version".into(), json!(mine.version()));
    result.insert("deploymentId".into(), json!(deployment_id));
    result.insert("instances".into(), json!(instances));
    result.insert("resumed".into(), json!(true));
    if let Some(w) = waited {
        result.insert("seenBy".into(), json!(w.seen_by));
    }
    Ok(Value::Object(result))
}

/// `PUT /v2/apps/{id}?partialUpdate=true` on an app that must exist. Marathon's PUT creates a
/// missing app, which a partial body cannot describe, so it answers 422; that is turned back into
/// the `NOT_FOUND` it really is.
async fn update_existing(
    ctx: &OpContext,
    app_id: &str,
    patch: &App,
) -> Result<crate::dcos::DeploymentRef, OpError> {
    match ctx
        .client
        .marathon()
        .update_app(app_id, patch, false, true)
        .await
    {
        Ok(deployment) => Ok(deployment),
        Err(invalid @ DcosError::Validation { .. }) => {
            match ctx.client.marathon().get_app(app_id).await {
                Err(DcosError::NotFound { .. }) => Err(OpError::failed(
                    ErrorCode::NotFound,
                    format!("server group {app_id} does not exist"),
                )),
                _ => Err(invalid.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A change Marathon deployed and the driver followed to its end.
struct Deployed {
    deployment_id: String,
    version: String,
    seen_by: &'static str,
}

impl Deployed {
    /// Writes `deploymentId`, `version` and `seenBy` into a result.
    fn record(&self, result: &mut Map<String, Value>) {
        result.insert("deploymentId".into(), json!(self.deployment_id));
        result.insert("version".into(), json!(self.version));
        result.insert("seenBy".into(), json!(self.seen_by));
    }
}

/// Sends `patch` to an existing app and follows the deployment until it runs `target` instances
/// (`None`: its own count).
async fn change(
    ctx: &OpContext,
    app_id: &str,
    patch: Map<String, Value>,
    target: Option<u64>,
    progress: &Progress,
) -> Result<Deployed, OpError> {
    let deployment = update_existing(ctx, app_id, &App(patch)).await?;
    let goal = Goal::Instances {
        app_id: app_id.to_string(),
        target,
    };
    let waited = ctx
        .follow(&deployment.deployment_id, &goal, progress)
        .await?;
    Ok(Deployed {
        deployment_id: deployment.deployment_id,
        version: deployment.version,
        seen_by: waited.seen_by,
    })
}

/// Sets `instances` and follows the deployment.
async fn scale(
    ctx: &OpContext,
    app_id: &str,
    instances: u64,
    progress: &Progress,
) -> Result<Deployed, OpError> {
    let patch = Map::from_iter([("instances".to_string(), json!(instances))]);
    change(ctx, app_id, patch, Some(instances), progress).await
}

/// RESIZE_SERVER_GROUP.
pub async fn resize(
    ctx: &OpContext,
    d: &ResizeServerGroupDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let instances = u64::from(d.instances());
    let deployed = scale(ctx, &app_id, instances, progress).await?;
    let mut result = identity(ctx, &app_id);
    result.insert("instances".into(), json!(instances));
    deployed.record(&mut result);
    Ok(Value::Object(result))
}

/// DISABLE_SERVER_GROUP.
pub async fn disable(
    ctx: &OpContext,
    d: &DisableServerGroupDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let app = read_app(ctx, &app_id, "server group").await?;
    let existing = ctx
        .overlays
        .server_group(ctx.account_name(), &app_id)
        .await?;
    // A count recorded by an earlier suspend (or an earlier delivery of this one) is kept: after
    // the first scale to 0, the app's own count would be 0.
    let recorded = existing.as_ref().and_then(|o| o.suspended_instances);
    let current = app.instances().unwrap_or(1);
    let suspended_instances = match (d.suspend, recorded) {
        (_, Some(n)) => Some(n),
        (true, None) => Some(current),
        (false, None) => None,
    };
    ctx.overlays
        .put(&Overlay {
            account: ctx.account_name().to_string(),
            app_id: app_id.clone(),
            instance_id: None,
            disabled: true,
            suspended_instances,
            task_id: Some(ctx.task_id.clone()),
            updated_at: chrono::Utc::now().to_rfc3339(),
        })
        .await?;
    progress
        .update(format!("{app_id} is out of service"), None)
        .await;
    let mut result = identity(ctx, &app_id);
    result.insert("disabled".into(), json!(true));
    result.insert("suspended".into(), json!(suspended_instances.is_some()));
    if let Some(n) = suspended_instances {
        result.insert("suspendedInstances".into(), json!(n));
    }
    if d.suspend && current != 0 {
        scale(ctx, &app_id, 0, progress).await?.record(&mut result);
    }
    Ok(Value::Object(result))
}

/// ENABLE_SERVER_GROUP.
pub async fn enable(
    ctx: &OpContext,
    d: &EnableServerGroupDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let app = read_app(ctx, &app_id, "server group").await?;
    let overlay = ctx
        .overlays
        .server_group(ctx.account_name(), &app_id)
        .await?;
    let mut result = identity(ctx, &app_id);
    let recorded = overlay.as_ref().and_then(|o| o.suspended_instances);
    if let Some(n) = recorded {
        // Scale back first: if this fails, the overlay still knows the count for the next attempt.
        if app.instances() != Some(n) {
            scale(ctx, &app_id, n, progress).await?.record(&mut result);
        }
        result.insert("instances".into(), json!(n));
    }
    if overlay.is_some() {
        ctx.overlays
            .remove(&overlays::server_group_key(ctx.account_name(), &app_id))
            .await?;
    }
    result.insert("enabled".into(), json!(true));
    result.insert("wasDisabled".into(), json!(overlay.is_some()));
    Ok(Value::Object(result))
}

/// DESTROY_SERVER_GROUP.
pub async fn destroy(
    ctx: &OpContext,
    d: &DestroyServerGroupDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let mut result = identity(ctx, &app_id);
    // force: a server group stuck in a deployment that never ends is exactly what people destroy.
    match ctx.client.marathon().delete_app(&app_id, true).await {
        Ok(deployment) => {
            ctx.follow(
                &deployment.deployment_id,
                &Goal::Gone {
                    app_id: app_id.clone(),
                },
                progress,
            )
            .await?;
            result.insert("deploymentId".into(), json!(deployment.deployment_id));
        }
        Err(DcosError::NotFound { .. }) if ctx.is_resumed() => {
            result.insert("alreadyGone".into(), json!(true));
        }
        Err(DcosError::NotFound { .. }) => {
            return Err(OpError::failed(
                ErrorCode::NotFound,
                format!("server group {app_id} does not exist"),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    clear_overlays(ctx, &app_id).await?;
    result.insert("destroyed".into(), json!(true));
    Ok(Value::Object(result))
}

/// Removes the server-group overlay and the instance overlays of a destroyed app.
async fn clear_overlays(ctx: &OpContext, app_id: &str) -> Result<(), OpError> {
    let account = ctx.account_name();
    ctx.overlays
        .remove(&overlays::server_group_key(account, app_id))
        .await?;
    for overlay in ctx.overlays.all().await? {
        if overlay.account == account && overlay.app_id == app_id {
            if let Some(instance) = &overlay.instance_id {
                ctx.overlays
                    .remove(&overlays::instance_key(account, instance))
                    .await?;
            }
        }
    }
    Ok(())
}

/// UPSERT_SERVER_GROUP_TAGS.
pub async fn upsert_tags(
    ctx: &OpContext,
    d: &UpsertServerGroupTagsDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let app = read_app(ctx, &app_id, "server group").await?;
    let before = app.labels();
    let mut labels = before.clone();
    labels.extend(d.tags.clone());
    for key in &d.delete_tags {
        labels.remove(key);
    }
    let mut result = identity(ctx, &app_id);
    result.insert("labels".into(), json!(labels));
    if labels == before {
        // Nothing changes (also what a redelivery after success sees): no new version.
        result.insert("newAppVersion".into(), json!(false));
        result.insert("version".into(), json!(app.version()));
        return Ok(Value::Object(result));
    }
    let patch = Map::from_iter([("labels".to_string(), json!(labels))]);
    change(ctx, &app_id, patch, app.instances(), progress)
        .await?
        .record(&mut result);
    result.insert("newAppVersion".into(), json!(true));
    Ok(Value::Object(result))
}

/// UPDATE_LAUNCH_CONFIG.
pub async fn update_launch_config(
    ctx: &OpContext,
    d: &UpdateLaunchConfigDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = d.app_id(&ctx.scope)?;
    let app = read_app(ctx, &app_id, "server group").await?;
    let before = app.writable().0;
    let mut after = before.clone();
    d.app_settings().apply(
        &mut after,
        &ApplyContext {
            account: ctx.account_name(),
            app_id: &app_id,
        },
    )?;
    let patch: Map<String, Value> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut result = identity(ctx, &app_id);
    result.insert("changed".into(), json!(patch.keys().collect::<Vec<_>>()));
    if patch.is_empty() {
        result.insert("newAppVersion".into(), json!(false));
        result.insert("version".into(), json!(app.version()));
        return Ok(Value::Object(result));
    }
    let target = patch
        .get("instances")
        .and_then(Value::as_u64)
        .or(app.instances());
    change(ctx, &app_id, patch, target, progress)
        .await?
        .record(&mut result);
    result.insert("newAppVersion".into(), json!(true));
    Ok(Value::Object(result))
}
