//! The Marathon app settings a description may carry (CREATE, CLONE as overrides,
//! UPDATE_LAUNCH_CONFIG), in clouddriver-dcos's field names, and how they become app JSON.
//!
//! The descriptions are strict structs (unknown fields refused) and serde cannot combine that with
//! `flatten`, so [`with_app_settings!`] writes the shared fields into each description struct and an
//! `app_settings()` accessor that copies them into one [`AppSettings`] value for [`AppSettings::apply`].
//! Semantic checks stay with Marathon (its 422 comes back as `DCOS_VALIDATION` with its details);
//! the driver checks shapes and its own conventions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::ops::error::OpError;

/// `capacity`: Spinnaker's min/max/desired; Marathon only knows `desired` (`instances`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capacity {
    /// Ignored by Marathon (no autoscaler); accepted for Spinnaker compatibility.
    #[serde(default)]
    pub min: Option<u32>,
    /// Ignored by Marathon (no autoscaler); accepted for Spinnaker compatibility.
    #[serde(default)]
    pub max: Option<u32>,
    /// The instance count.
    pub desired: u32,
}

/// Placement constraints: clouddriver's string (`hostname:UNIQUE,rack:GROUP_BY:3`) or Marathon's
/// arrays (`[["hostname","UNIQUE"]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Constraints {
    /// `field:OPERATOR[:value]` entries separated by commas.
    Text(String),
    /// Marathon's own form.
    Lists(Vec<Vec<String>>),
}

impl Constraints {
    /// Marathon's form; the field path is used in errors.
    pub fn to_marathon(&self, field: &str) -> Result<Value, OpError> {
        let lists = match self {
            Constraints::Lists(lists) => lists.clone(),
            Constraints::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| c.split(':').map(str::to_string).collect())
                .collect(),
        };
        for (i, constraint) in lists.iter().enumerate() {
            if !(2..=3).contains(&constraint.len()) || constraint.iter().any(String::is_empty) {
                return Err(OpError::invalid(
                    &format!("{field}[{i}]"),
                    format!(
                        "constraint `{}` must be field:OPERATOR or field:OPERATOR:value",
                        constraint.join(":")
                    ),
                ));
            }
        }
        Ok(json!(lists))
    }
}

/// A Docker image: `"repo/name:tag"`, `{"imageId": …}` or `{"registry", "repository", "tag"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DockerImage {
    /// The full image reference.
    Reference(String),
    /// clouddriver's `{imageId}`.
    Id {
        #[serde(rename = "imageId")]
        image_id: String,
    },
    /// clouddriver's parts.
    Parts {
        #[serde(default)]
        registry: Option<String>,
        repository: String,
        #[serde(default)]
        tag: Option<String>,
    },
}

impl DockerImage {
    /// `registry/repository:tag`.
    pub fn reference(&self) -> String {
        match self {
            DockerImage::Reference(r) => r.clone(),
            DockerImage::Id { image_id } => image_id.clone(),
            DockerImage::Parts {
                registry,
                repository,
                tag,
            } => {
                let mut out = String::new();
                if let Some(registry) = registry.as_deref().filter(|r| !r.is_empty()) {
                    out.push_str(registry.trim_end_matches('/'));
                    out.push('/');
                }
                out.push_str(repository);
                if let Some(tag) = tag.as_deref().filter(|t| !t.is_empty()) {
                    out.push(':');
                    out.push_str(tag);
                }
                out
            }
        }
    }
}

/// `docker`: the container image and its runtime options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Docker {
    /// The image.
    pub image: DockerImage,
    /// Old-style network (`HOST`, `BRIDGE`, `USER`); `networkType` on the description wins.
    #[serde(default)]
    pub network: Option<String>,
    /// Run privileged.
    #[serde(default)]
    pub privileged: Option<bool>,
    /// Pull the image even if the agent has it.
    #[serde(default)]
    pub force_pull_image: Option<bool>,
    /// `docker run` parameters.
    #[serde(default)]
    pub parameters: Option<Vec<DockerParameter>>,
}

/// One `docker run` parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerParameter {
    pub key: String,
    pub value: String,
}

/// A URI Mesos fetches into the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fetchable {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

/// A health check command: clouddriver's string or Marathon's `{"value": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HealthCommand {
    Text(String),
    Object { value: String },
}

/// A Marathon health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// `HTTP`, `HTTPS`, `TCP`, `COMMAND`, `MESOS_HTTP`, `MESOS_HTTPS`, `MESOS_TCP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<HealthCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_http1xx: Option<bool>,
}

/// A Marathon readiness check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status_codes_for_ready: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_last_response: Option<bool>,
}

/// How Marathon replaces tasks in a rolling deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_health_capacity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_over_capacity: Option<f64>,
}

/// Residency of an app with persistent volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Residency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_lost_behavior: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relaunch_escalation_timeout_seconds: Option<u32>,
}

/// A port the app serves (clouddriver's service endpoint): a port definition on the host network,
/// a port mapping in a container network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEndpoint {
    /// Kept for clouddriver compatibility; the description's `networkType` decides.
    #[serde(default)]
    pub network_type: Option<String>,
    /// Container port (container networks) or host port (host network; 0 = any).
    #[serde(default)]
    pub port: Option<u32>,
    /// Service port (0 or absent = assigned by Marathon).
    #[serde(default)]
    pub service_port: Option<u32>,
    #[serde(default)]
    pub name: Option<String>,
    /// `tcp` (default), `udp`, `udp,tcp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Announce a VIP (`VIP_<n>` label `/<app id>:<port>`).
    #[serde(default)]
    pub load_balanced: bool,
    /// On a container network, also map the port on the host.
    #[serde(default)]
    pub expose_to_host: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The settings shared by CREATE, CLONE and UPDATE_LAUNCH_CONFIG, copied out of a description.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppSettings {
    pub cmd: Option<String>,
    pub args: Option<Vec<String>>,
    pub dcos_user: Option<String>,
    pub env: Option<Map<String, Value>>,
    pub desired_capacity: Option<u32>,
    pub capacity: Option<Capacity>,
    pub cpus: Option<f64>,
    pub mem: Option<f64>,
    pub disk: Option<f64>,
    pub gpus: Option<f64>,
    pub constraints: Option<Constraints>,
    pub fetch: Option<Vec<Fetchable>>,
    pub store_urls: Option<Vec<String>>,
    pub backoff_seconds: Option<u32>,
    pub backoff_factor: Option<f64>,
    pub max_launch_delay_seconds: Option<u32>,
    pub docker: Option<Docker>,
    pub health_checks: Option<Vec<HealthCheck>>,
    pub readiness_checks: Option<Vec<ReadinessCheck>>,
    pub dependencies: Option<Vec<String>>,
    pub upgrade_strategy: Option<UpgradeStrategy>,
    pub labels: Option<BTreeMap<String, String>>,
    pub accepted_resource_roles: Option<Vec<String>>,
    pub residency: Option<Residency>,
    pub task_kill_grace_period_seconds: Option<u32>,
    pub secrets: Option<Map<String, Value>>,
    pub network_type: Option<String>,
    pub network_name: Option<String>,
    pub service_endpoints: Option<Vec<ServiceEndpoint>>,
    pub load_balancers: Option<Vec<String>>,
    pub require_ports: Option<bool>,
}

/// Writes a description struct with the shared app settings after its own fields, plus
/// `fn app_settings(&self) -> AppSettings`.
macro_rules! with_app_settings {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Command run in a shell (exclusive with `args`).
            #[serde(default)]
            pub cmd: Option<String>,
            /// Arguments (the container's entry point runs them; exclusive with `cmd`).
            #[serde(default)]
            pub args: Option<Vec<String>>,
            /// User the tasks run as (Marathon `user`).
            #[serde(default)]
            pub dcos_user: Option<String>,
            /// Environment: strings, or `{"secret": "<name>"}` references.
            #[serde(default)]
            pub env: Option<serde_json::Map<String, serde_json::Value>>,
            /// Instance count (Marathon `instances`); `capacity.desired` is the same.
            #[serde(default)]
            pub desired_capacity: Option<u32>,
            /// Spinnaker capacity; `desired` is the instance count.
            #[serde(default)]
            pub capacity: Option<$crate::ops::description::app::Capacity>,
            /// CPU shares per instance.
            #[serde(default)]
            pub cpus: Option<f64>,
            /// Memory per instance, MiB.
            #[serde(default)]
            pub mem: Option<f64>,
            /// Disk per instance, MiB.
            #[serde(default)]
            pub disk: Option<f64>,
            /// GPUs per instance.
            #[serde(default)]
            pub gpus: Option<f64>,
            /// `hostname:UNIQUE,rack:GROUP_BY:3` or `[["hostname","UNIQUE"]]`.
            #[serde(default)]
            pub constraints: Option<$crate::ops::description::app::Constraints>,
            /// URIs fetched into the sandbox.
            #[serde(default)]
            pub fetch: Option<Vec<$crate::ops::description::app::Fetchable>>,
            /// URLs Marathon posts the app definition to before deploying.
            #[serde(default)]
            pub store_urls: Option<Vec<String>>,
            /// Initial delay before relaunching a failed task.
            #[serde(default)]
            pub backoff_seconds: Option<u32>,
            /// Factor the relaunch delay grows by.
            #[serde(default)]
            pub backoff_factor: Option<f64>,
            /// Largest relaunch delay.
            #[serde(default)]
            pub max_launch_delay_seconds: Option<u32>,
            /// Docker container settings.
            #[serde(default)]
            pub docker: Option<$crate::ops::description::app::Docker>,
            /// Health checks (replace the app's).
            #[serde(default)]
            pub health_checks: Option<Vec<$crate::ops::description::app::HealthCheck>>,
            /// Readiness checks (replace the app's).
            #[serde(default)]
            pub readiness_checks: Option<Vec<$crate::ops::description::app::ReadinessCheck>>,
            /// App ids this app depends on.
            #[serde(default)]
            pub dependencies: Option<Vec<String>>,
            /// Rolling-deployment capacities.
            #[serde(default)]
            pub upgrade_strategy: Option<$crate::ops::description::app::UpgradeStrategy>,
            /// App labels (merged over the app's).
            #[serde(default)]
            pub labels: Option<std::collections::BTreeMap<String, String>>,
            /// Mesos roles whose resources the tasks may use.
            #[serde(default)]
            pub accepted_resource_roles: Option<Vec<String>>,
            /// Residency (apps with persistent volumes).
            #[serde(default)]
            pub residency: Option<$crate::ops::description::app::Residency>,
            /// Seconds between SIGTERM and SIGKILL.
            #[serde(default)]
            pub task_kill_grace_period_seconds: Option<u32>,
            /// Secrets (`{"<name>": {"source": "<path>"}}`).
            #[serde(default)]
            pub secrets: Option<serde_json::Map<String, serde_json::Value>>,
            /// `HOST` (default), `BRIDGE` (`container/bridge`) or `USER` (`container`, with `networkName`).
            #[serde(default)]
            pub network_type: Option<String>,
            /// The CNI network of `networkType: USER`.
            #[serde(default)]
            pub network_name: Option<String>,
            /// Ports the app serves: port definitions or port mappings, by network type.
            #[serde(default)]
            pub service_endpoints: Option<Vec<$crate::ops::description::app::ServiceEndpoint>>,
            /// Load balancers to join: each name adds the label `HAPROXY_GROUP=<account>_<name>`.
            #[serde(default)]
            pub load_balancers: Option<Vec<String>>,
            /// Host ports must be the ports asked for.
            #[serde(default)]
            pub require_ports: Option<bool>,
        }

        impl $name {
            /// The shared app settings of this description.
            pub fn app_settings(&self) -> $crate::ops::description::app::AppSettings {
                $crate::ops::description::app::AppSettings {
                    cmd: self.cmd.clone(),
                    args: self.args.clone(),
                    dcos_user: self.dcos_user.clone(),
                    env: self.env.clone(),
                    desired_capacity: self.desired_capacity,
                    capacity: self.capacity.clone(),
                    cpus: self.cpus,
                    mem: self.mem,
                    disk: self.disk,
                    gpus: self.gpus,
                    constraints: self.constraints.clone(),
                    fetch: self.fetch.clone(),
                    store_urls: self.store_urls.clone(),
                    backoff_seconds: self.backoff_seconds,
                    backoff_factor: self.backoff_factor,
                    max_launch_delay_seconds: self.max_launch_delay_seconds,
                    docker: self.docker.clone(),
                    health_checks: self.health_checks.clone(),
                    readiness_checks: self.readiness_checks.clone(),
                    dependencies: self.dependencies.clone(),
                    upgrade_strategy: self.upgrade_strategy.clone(),
                    labels: self.labels.clone(),
                    accepted_resource_roles: self.accepted_resource_roles.clone(),
                    residency: self.residency.clone(),
                    task_kill_grace_period_seconds: self.task_kill_grace_period_seconds,
                    secrets: self.secrets.clone(),
                    network_type: self.network_type.clone(),
                    network_name: self.network_name.clone(),
                    service_endpoints: self.service_endpoints.clone(),
                    load_balancers: self.load_balancers.clone(),
                    require_ports: self.require_ports,
                }
            }
        }
    };
}
pub(crate) use with_app_settings;

/// The label marathon-lb uses to pick the apps of a load balancer.
pub const HAPROXY_GROUP_LABEL: &str = "HAPROXY_GROUP";

/// `<account>_<lbName>`: the `HAPROXY_GROUP` value of load balancer `name` of `account`.
pub fn haproxy_group(account: &str, name: &str) -> String {
    format!("{account}_{name}")
}

/// What [`AppSettings::apply`] needs to know besides the settings.
pub struct ApplyContext<'a> {
    /// The account (for `HAPROXY_GROUP` labels).
    pub account: &'a str,
    /// The app id being written (for VIP labels).
    pub app_id: &'a str,
}

impl AppSettings {
    /// The instance count asked for: `capacity.desired`, else `desiredCapacity`.
    pub fn instances(&self) -> Option<u32> {
        self.capacity
            .as_ref()
            .map(|c| c.desired)
            .or(self.desired_capacity)
    }

    /// Whether no setting is given at all.
    pub fn is_empty(&self) -> bool {
        *self == AppSettings::default()
    }

    /// Writes the given settings over `app` (a Marathon app JSON object); settings not given leave
    /// the app's fields alone. Labels are merged; `docker` updates the container in place.
    pub fn apply(
        &self,
        app: &mut Map<String, Value>,
        cx: &ApplyContext<'_>,
    ) -> Result<(), OpError> {
        let mut set = |key: &str, value: Value| {
            app.insert(key.to_string(), value);
        };
        if let Some(cmd) = &self.cmd {
            set("cmd", json!(cmd));
        }
        if let Some(args) = &self.args {
            set("args", json!(args));
        }
        if let Some(user) = &self.dcos_user {
            set("user", json!(user));
        }
        if let Some(env) = &self.env {
            set("env", Value::Object(env.clone()));
        }
        if let Some(n) = self.instances() {
            set("instances", json!(n));
        }
        for (key, value) in [
            ("cpus", self.cpus),
            ("mem", self.mem),
            ("disk", self.disk),
            ("gpus", self.gpus),
            ("backoffFactor", self.backoff_factor),
        ] {
            if let Some(v) = value {
                set(key, json!(v));
            }
        }
        for (key, value) in [
            ("backoffSeconds", self.backoff_seconds),
            ("maxLaunchDelaySeconds", self.max_launch_delay_seconds),
            (
                "taskKillGracePeriodSeconds",
                self.task_kill_grace_period_seconds,
            ),
        ] {
            if let Some(v) = value {
                set(key, json!(v));
            }
        }
        if let Some(constraints) = &self.constraints {
            set("constraints", constraints.to_marathon("constraints")?);
        }
        if let Some(fetch) = &self.fetch {
            set("fetch", json!(fetch));
        }
        if let Some(urls) = &self.store_urls {
            set("storeUrls", json!(urls));
        }
        if let Some(checks) = &self.health_checks {
            let checks: Vec<Value> = checks.iter().map(health_check_json).collect();
            set("healthChecks", Value::Array(checks));
        }
        if let Some(checks) = &self.readiness_checks {
            set("readinessChecks", json!(checks));
        }
        if let Some(deps) = &self.dependencies {
            set("dependencies", json!(deps));
        }
        if let Some(strategy) = &self.upgrade_strategy {
            set("upgradeStrategy", json!(strategy));
        }
        if let Some(roles) = &self.accepted_resource_roles {
            set("acceptedResourceRoles", json!(roles));
        }
        if let Some(residency) = &self.residency {
            set("residency", json!(residency));
        }
        if let Some(secrets) = &self.secrets {
            set("secrets", Value::Object(secrets.clone()));
        }
        if let Some(require) = self.require_ports {
            set("requirePorts", json!(require));
        }
        self.apply_labels(app, cx);
        self.apply_container(app)?;
        self.apply_network(app, cx)?;
        Ok(())
    }

    fn apply_labels(&self, app: &mut Map<String, Value>, cx: &ApplyContext<'_>) {
        if self.labels.is_none() && self.load_balancers.is_none() {
            return;
        }
        if !app.get("labels").is_some_and(Value::is_object) {
            app.insert("labels".into(), json!({}));
        }
        let labels = app
            .get_mut("labels")
            .and_then(Value::as_object_mut)
            .expect("made an object above");
        for (k, v) in self.labels.iter().flatten() {
            labels.insert(k.clone(), json!(v));
        }
        if let Some(lbs) = &self.load_balancers {
            let groups: Vec<String> = lbs.iter().map(|lb| haproxy_group(cx.account, lb)).collect();
            if groups.is_empty() {
                labels.remove(HAPROXY_GROUP_LABEL);
            } else {
                labels.insert(HAPROXY_GROUP_LABEL.into(), json!(groups.join(",")));
            }
        }
    }

    fn apply_container(&self, app: &mut Map<String, Value>) -> Result<(), OpError> {
        let Some(docker) = &self.docker else {
            return Ok(());
        };
        let container = app
            .entry("container")
            .or_insert_with(|| json!({"type": "DOCKER"}));
        if !container.is_object() {
            *container = json!({"type": "DOCKER"});
        }
        let container = container.as_object_mut().expect("made an object above");
        container.insert("type".into(), json!("DOCKER"));
        let entry = container.entry("docker").or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let d = entry.as_object_mut().expect("made an object above");
        d.insert("image".into(), json!(docker.image.reference()));
        if let Some(p) = docker.privileged {
            d.insert("privileged".into(), json!(p));
        }
        if let Some(f) = docker.force_pull_image {
            d.insert("forcePullImage".into(), json!(f));
        }
        if let Some(params) = &docker.parameters {
            d.insert("parameters".into(), json!(params));
        }
        Ok(())
    }

    fn network_mode(&self) -> Option<String> {
        let raw = self
            .network_type
            .clone()
            .or_else(|| self.docker.as_ref().and_then(|d| d.network.clone()))?;
        Some(match raw.to_ascii_uppercase().as_str() {
            "HOST" => "host".into(),
            "BRIDGE" | "CONTAINER/BRIDGE" => "container/bridge".into(),
            "USER" | "CONTAINER" => "container".into(),
            _ => raw,
        })
    }

    fn apply_network(
        &self,
        app: &mut Map<String, Value>,
        cx: &ApplyContext<'_>,
    ) -> Result<(), OpError> {
        let mode = self.network_mode();
        if let Some(mode) = &mode {
            let mut network = json!({ "mode": mode });
            if mode == "container" {
                match &self.network_name {
                    Some(name) => network["name"] = json!(name),
                    None => {
                        return Err(OpError::invalid(
                            "networkName",
                            "networkType USER (a container network) needs networkName",
                        ))
                    }
                }
            }
            app.insert("networks".into(), json!([network]));
        }
        let Some(endpoints) = &self.service_endpoints else {
            return Ok(());
        };
        let container_network = mode.as_deref().is_some_and(|m| m != "host");
        let mut vip = 0;
        let mut ports = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            let mut labels: Map<String, Value> = e
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            if e.load_balanced {
                let port = e.port.ok_or_else(|| {
                    OpError::invalid(
                        &format!("serviceEndpoints[{i}].port"),
                        "a load-balanced endpoint needs its port",
                    )
                })?;
                labels.insert(format!("VIP_{vip}"), json!(format!("{}:{port}", cx.app_id)));
                vip += 1;
            }
            let mut port = Map::new();
            let protocol = e.protocol.clone().unwrap_or_else(|| "tcp".into());
            port.insert("protocol".into(), json!(protocol));
            if let Some(name) = &e.name {
                port.insert("name".into(), json!(name));
            }
            port.insert("labels".into(), Value::Object(labels));
            if container_network {
                port.insert("containerPort".into(), json!(e.port.unwrap_or(0)));
                if e.expose_to_host || mode.as_deref() == Some("container/bridge") {
                    port.insert("hostPort".into(), json!(0));
                }
                port.insert("servicePort".into(), json!(e.service_port.unwrap_or(0)));
            } else {
                port.insert("port".into(), json!(e.service_port.or(e.port).unwrap_or(0)));
            }
            ports.push(Value::Object(port));
        }
        if container_network {
            let container = app
                .entry("container")
                .or_insert_with(|| json!({"type": "MESOS"}));
            if let Some(c) = container.as_object_mut() {
                c.insert("portMappings".into(), Value::Array(ports));
            }
            app.remove("portDefinitions");
        } else {
            app.insert("portDefinitions".into(), Value::Array(ports));
        }
        Ok(())
    }
}

fn health_check_json(check: &HealthCheck) -> Value {
    let mut value = json!(check);
    if let Some(HealthCommand::Text(text)) = &check.command {
        value["command"] = json!({ "value": text });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ApplyContext<'static> {
        ApplyContext {
            account: "test",
            app_id: "/test/web/api-v000",
        }
    }

    #[test]
    fn constraints_in_both_forms() {
        let text = Constraints::Text("hostname:UNIQUE, rack:GROUP_BY:3".into());
        assert_eq!(
            text.to_marathon("constraints").unwrap(),
            json!([["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]])
        );
        let bad = Constraints::Text("hostname".into());
        let err = bad.to_marathon("constraints").unwrap_err();
        assert!(err.to_string().starts_with("constraints[0]:"), "{err}");
        let lists = Constraints::Lists(vec![vec!["a".into(), "LIKE".into(), "x".into()]]);
        assert_eq!(lists.to_marathon("c").unwrap(), json!([["a", "LIKE", "x"]]));
    }

    #[test]
    fn images_in_every_form() {
        let parse = |v: Value| {
            serde_json::from_value::<DockerImage>(v)
                .unwrap()
                .reference()
        };
        assert_eq!(parse(json!("nginx:1.25")), "nginx:1.25");
        assert_eq!(parse(json!({"imageId": "r/x:1"})), "r/x:1");
        assert_eq!(
            parse(json!({"registry": "reg.io", "repository": "team/api", "tag": "2"})),
            "reg.io/team/api:2"
        );
        assert_eq!(parse(json!({"repository": "api"})), "api");
    }

    #[test]
    fn settings_become_marathon_fields() {
        let settings = AppSettings {
            cmd: Some("sleep 1000".into()),
            capacity: Some(Capacity {
                min: None,
                max: None,
                desired: 3,
            }),
            desired_capacity: Some(9),
            cpus: Some(0.5),
            dcos_user: Some("nobody".into()),
            labels: Some([("team".to_string(), "x".to_string())].into()),
            load_balancers: Some(vec!["public".into()]),
            health_checks: Some(vec![HealthCheck {
                protocol: Some("COMMAND".into()),
                command: Some(HealthCommand::Text("true".into())),
                path: None,
                port: None,
                port_index: None,
                grace_period_seconds: Some(5),
                interval_seconds: None,
                timeout_seconds: None,
                max_consecutive_failures: None,
                delay_seconds: None,
                ignore_http1xx: None,
            }]),
            docker: Some(Docker {
                image: DockerImage::Reference("nginx".into()),
                network: Some("BRIDGE".into()),
                privileged: None,
                force_pull_image: Some(true),
                parameters: None,
            }),
            service_endpoints: Some(vec![ServiceEndpoint {
                network_type: None,
                port: Some(80),
                service_port: None,
                name: Some("http".into()),
                protocol: None,
                load_balanced: true,
                expose_to_host: false,
                labels: BTreeMap::new(),
            }]),
            ..AppSettings::default()
        };
        let mut app = Map::new();
        app.insert("labels".into(), json!({"keep": "1"}));
        settings.apply(&mut app, &cx()).unwrap();
        let app = Value::Object(app);
        assert_eq!(app["instances"], 3, "capacity.desired wins");
        assert_eq!(app["user"], "nobody");
        assert_eq!(
            app["labels"],
            json!({"keep": "1", "team": "x", "HAPROXY_GROUP": "test_public"})
        );
        assert_eq!(app["healthChecks"][0]["command"], json!({"value": "true"}));
        assert_eq!(app["container"]["docker"]["image"], "nginx");
        assert_eq!(app["container"]["docker"]["forcePullImage"], true);
        assert_eq!(app["networks"], json!([{"mode": "container/bridge"}]));
        let mapping = &app["container"]["portMappings"][0];
        assert_eq!(mapping["containerPort"], 80);
        assert_eq!(mapping["hostPort"], 0);
        assert_eq!(mapping["labels"]["VIP_0"], "/test/web/api-v000:80");
        assert!(app.get("portDefinitions").is_none());
    }

    #[test]
    fn host_endpoints_are_port_definitions_and_user_networks_need_a_name() {
        let mut settings = AppSettings {
            service_endpoints: Some(vec![ServiceEndpoint {
                network_type: None,
                port: Some(8080),
                service_port: Some(10101),
                name: None,
                protocol: Some("udp".into()),
                load_balanced: false,
                expose_to_host: false,
                labels: BTreeMap::new(),
            }]),
            ..AppSettings::default()
        };
        let mut app = Map::new();
        settings.apply(&mut app, &cx()).unwrap();
        assert_eq!(
            app["portDefinitions"],
            json!([{"protocol": "udp", "labels": {}, "port": 10101}])
        );
        settings.network_type = Some("USER".into());
        let err = settings.apply(&mut Map::new(), &cx()).unwrap_err();
        assert!(err.to_string().starts_with("networkName:"), "{err}");
    }
}
