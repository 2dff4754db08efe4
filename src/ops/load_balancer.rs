//! Load-balancer operations: the marathon-lb app of an account.
//!
//! A load balancer `<name>` is the app `<root>/<name>`, labelled
//! [`LOAD_BALANCER_LABEL`]`=<name>`. It runs marathon-lb in SSE mode against the account's
//! Marathon, serving the apps labelled `HAPROXY_GROUP=<account>_<name>` ([`haproxy_group`]; a
//! server group's `loadBalancers` sets that label), on
//! host networking: port definitions for 80 and 443 (only with `bindHttpHttps`; otherwise
//! marathon-lb is started with `--dont-bind-http-https`), 9090 (stats and health) and 9091, then
//! the `portRange` (service ports ≥ 10000) it reserves for the apps behind it.
//!
//! Decisions:
//! - The driver manages only apps carrying the label: an upsert or delete of `<root>/<name>` when
//!   that app exists without the label is `FORBIDDEN` (it is someone else's app).
//! - An upsert of an existing load balancer is a partial update of the fields the description
//!   controls (others, e.g. constraints or labels added by hand, are kept); creating when the id was just
//!   taken by an earlier delivery falls back to the update, so a redelivery is harmless.
//! - Deleting a load balancer that does not exist is `NOT_FOUND` on a first delivery and success
//!   (`alreadyGone`) on a redelivery.

use serde_json::{json, Map, Value};

use super::context::OpContext;
use super::description::app::haproxy_group;
use super::description::load_balancer::{
    load_balancer_app, DeleteLoadBalancerDescription, UpsertLoadBalancerDescription, DEFAULT_IMAGE,
};
use super::error::OpError;
use super::wait::Goal;
use crate::bus::Progress;
use crate::dcos::{App, DcosError};
use crate::vocabulary::ErrorCode;

/// The label that marks an app as a load balancer managed by the driver (value: its name).
pub const LOAD_BALANCER_LABEL: &str = "DCOS_DRIVER_LOAD_BALANCER";

/// marathon-lb's port for stats and `/_haproxy_health_check`.
const STATS_PORT: u32 = 9090;

/// marathon-lb's command line: SSE mode against `marathon_url`, serving `group`.
pub fn marathon_lb_args(marathon_url: &str, group: &str, bind_http_https: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "sse",
        "-m",
        marathon_url,
        "--health-check",
        "--haproxy-map",
        "--group",
        group,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !bind_http_https {
        args.push("--dont-bind-http-https".into());
    }
    args
}

/// The host ports the app reserves, in order: 80/443 (optional), 9090, 9091, then the range.
fn port_definitions(d: &UpsertLoadBalancerDescription) -> Vec<Value> {
    let named = |port: u32, name: &str| json!({ "port": port, "protocol": "tcp", "name": name });
    let mut ports = Vec::new();
    if d.bind_http_https {
        ports.push(named(80, "http"));
        ports.push(named(443, "https"));
    }
    ports.push(named(STATS_PORT, "stats"));
    ports.push(named(STATS_PORT + 1, "appid"));
    if let Some(range) = &d.port_range {
        let protocol = range.protocol.clone().unwrap_or_else(|| "tcp".into());
        for port in range.min_port..=range.max_port {
            ports.push(json!({ "port": port, "protocol": protocol }));
        }
    }
    ports
}

/// The marathon-lb app definition (the fields an upsert controls).
fn definition(ctx: &OpContext, d: &UpsertLoadBalancerDescription, app_id: &str) -> App {
    let marathon_url = d
        .marathon_url
        .clone()
        .unwrap_or_else(|| ctx.client.marathon_base());
    let group = haproxy_group(ctx.account_name(), &d.name);
    let ports = port_definitions(d);
    let stats_index = ports
        .iter()
        .position(|p| p["port"] == json!(STATS_PORT))
        .unwrap_or(0);
    let roles = d
        .accepted_resource_roles
        .clone()
        .unwrap_or_else(|| vec!["slave_public".into()]);
    let value = json!({
        "id": app_id,
        "instances": d.instances.unwrap_or(1),
        "cpus": d.cpus.unwrap_or(1.0),
        "mem": d.mem.unwrap_or(1024.0),
        "container": {
            "type": "DOCKER",
            "docker": {
                "image": d.image.as_deref().unwrap_or(DEFAULT_IMAGE),
                "privileged": true,
                "forcePullImage": false,
            },
        },
        "networks": [{ "mode": "host" }],
        "args": marathon_lb_args(&marathon_url, &group, d.bind_http_https),
        "labels": { LOAD_BALANCER_LABEL: d.name },
        "acceptedResourceRoles": roles,
        "portDefinitions": ports,
        "requirePorts": true,
        "healthChecks": [{
            "protocol": "MESOS_HTTP",
            "path": "/_haproxy_health_check",
            "portIndex": stats_index,
            "gracePeriodSeconds": 60,
            "intervalSeconds": 5,
            "timeoutSeconds": 2,
            "maxConsecutiveFailures": 2,
        }],
        // Host ports are fixed: a new task cannot start on an agent before the old one is gone.
        "upgradeStrategy": { "minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0 },
    });
    App::from_value(value).expect("an object")
}

/// The app at `app_id`, if it exists; `FORBIDDEN` when it is not load balancer `name`.
async fn managed_app(ctx: &OpContext, app_id: &str, name: &str) -> Result<Option<App>, OpError> {
    let app = match ctx.client.marathon().get_app(app_id).await {
        Ok(app) => app,
        Err(DcosError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match app.labels().get(LOAD_BALANCER_LABEL) {
        Some(label) if label == name => Ok(Some(app)),
        _ => Err(OpError::forbidden(format!(
            "{app_id} exists but is not load balancer `{name}` (no {LOAD_BALANCER_LABEL}={name} label): the driver leaves it alone"
        ))),
    }
}

/// `def` with the labels `existing` has beside the driver's own: a partial update replaces the
/// whole `labels` object, and labels added by hand (HAProxy settings) must survive an upsert.
fn keep_labels(mut def: App, existing: &App) -> App {
    let mut labels: Map<String, Value> = existing
        .labels()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if let Some(ours) = def.get("labels").and_then(Value::as_object) {
        labels.extend(ours.clone());
    }
    def.set("labels", Value::Object(labels));
    def
}

/// UPSERT_LOAD_BALANCER.
pub async fn upsert(
    ctx: &OpContext,
    d: &UpsertLoadBalancerDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let app_id = load_balancer_app(&ctx.scope, "name", &d.name)?;
    let def = definition(ctx, d, &app_id);
    let existing = managed_app(ctx, &app_id, &d.name).await?;
    let marathon = ctx.client.marathon();
    let (deployment, created) = match existing {
        Some(app) => (
            marathon
                .update_app(&app_id, &keep_labels(def, &app), d.force, true)
                .await?,
            false,
        ),
        None => match marathon.create_app(&def).await {
            Ok(created) => (created.deployment, true),
            // Taken between the read and the create (e.g. by an earlier delivery of this request).
            Err(DcosError::Conflict { .. }) => {
                let app = managed_app(ctx, &app_id, &d.name)
                    .await?
                    .unwrap_or_default();
                (
                    marathon
                        .update_app(&app_id, &keep_labels(def, &app), d.force, true)
                        .await?,
                    false,
                )
            }
            Err(e) => return Err(e.into()),
        },
    };
    let instances = d.instances.unwrap_or(1);
    let waited = ctx
        .follow(
            &deployment.deployment_id,
            &Goal::Instances {
                app_id: app_id.clone(),
                target: Some(u64::from(instances)),
            },
            progress,
        )
        .await?;
    let mut result = Map::new();
    result.insert("loadBalancerName".into(), json!(d.name));
    result.insert("appId".into(), json!(app_id));
    result.insert(
        "haproxyGroup".into(),
        json!(haproxy_group(ctx.account_name(), &d.name)),
    );
    result.insert("created".into(), json!(created));
    result.insert("instances".into(), json!(instances));
    result.insert("deploymentId".into(), json!(deployment.deployment_id));
    result.insert("version".into(), json!(deployment.version));
    result.insert("seenBy".into(), json!(waited.seen_by));
    Ok(Value::Object(result))
}

/// DELETE_LOAD_BALANCER.
pub async fn delete(
    ctx: &OpContext,
    d: &DeleteLoadBalancerDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let name = &d.load_balancer_name;
    let app_id = load_balancer_app(&ctx.scope, "loadBalancerName", name)?;
    let mut result = Map::new();
    result.insert("loadBalancerName".into(), json!(name));
    result.insert("appId".into(), json!(app_id));
    let gone = match managed_app(ctx, &app_id, name).await? {
        None => true,
        Some(_) => match ctx.client.marathon().delete_app(&app_id, true).await {
            Ok(deployment) => {
                let goal = Goal::Gone {
                    app_id: app_id.clone(),
                };
                ctx.follow(&deployment.deployment_id, &goal, progress)
                    .await?;
                result.insert("deploymentId".into(), json!(deployment.deployment_id));
                false
            }
            Err(DcosError::NotFound { .. }) => true,
            Err(e) => return Err(e.into()),
        },
    };
    if gone && !ctx.is_resumed() {
        return Err(OpError::failed(
            ErrorCode::NotFound,
            format!("load balancer `{name}` ({app_id}) does not exist"),
        ));
    }
    result.insert("alreadyGone".into(), json!(gone));
    result.insert("deleted".into(), json!(true));
    Ok(Value::Object(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_lb_command_line() {
        assert_eq!(
            marathon_lb_args("http://m:8080", "prod_edge", true),
            vec![
                "sse",
                "-m",
                "http://m:8080",
                "--health-check",
                "--haproxy-map",
                "--group",
                "prod_edge"
            ]
        );
        assert_eq!(
            marathon_lb_args("http://m", "g", false).last().unwrap(),
            "--dont-bind-http-https"
        );
    }
}
