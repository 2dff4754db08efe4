//! Load-balancer descriptions: a marathon-lb app at `<root>/<name>` (clouddriver-dcos's
//! `UpsertDcosLoadBalancerAtomicOperationDescription` and `DeleteDcosLoadBalancer…`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Description;
use crate::ops::error::OpError;
use crate::ops::paths::Scope;

/// The marathon-lb image used when a description names none.
pub const DEFAULT_IMAGE: &str = "mesosphere/marathon-lb:v1.15.0";

/// The most ports a `portRange` may reserve (each one is a port definition of the app).
pub const MAX_RANGE_PORTS: u32 = 1000;

/// The ports marathon-lb serves (service ports of the apps it balances).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// First port (≥ 10000).
    pub min_port: u32,
    /// Last port.
    pub max_port: u32,
}

/// UPSERT_LOAD_BALANCER: create or update the marathon-lb app `<root>/<name>`; wait.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpsertLoadBalancerDescription {
    /// The load balancer's name: the app `<root>/<name>`, group `<account>_<name>`.
    #[serde(alias = "loadBalancerName")]
    pub name: String,
    /// Accepted for clouddriver compatibility and ignored: a load balancer always lives directly
    /// under the account's root.
    #[serde(default)]
    pub region: Option<String>,
    /// Accepted for clouddriver compatibility and ignored (clouddriver's UI composed `name` from
    /// them).
    #[serde(default)]
    pub app: Option<String>,
    /// See `app`.
    #[serde(default)]
    pub stack: Option<String>,
    /// See `app`.
    #[serde(default)]
    pub detail: Option<String>,
    /// marathon-lb image (default [`DEFAULT_IMAGE`]).
    #[serde(default)]
    pub image: Option<String>,
    /// The Marathon URL marathon-lb reads apps and events from (default: the account's Marathon
    /// URL as the driver uses it; inside a cluster often `http://marathon.mesos:8080`).
    #[serde(default)]
    pub marathon_url: Option<String>,
    /// Override a deployment lock held by another deployment of the app.
    #[serde(default)]
    pub force: bool,
    /// CPU shares per instance.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory per instance, MiB.
    #[serde(default)]
    pub mem: Option<f64>,
    /// Instances.
    #[serde(default)]
    pub instances: Option<u32>,
    /// Also bind 80 and 443.
    #[serde(default)]
    pub bind_http_https: bool,
    /// Mesos roles (e.g. `slave_public`).
    #[serde(default)]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// The service ports it serves.
    #[serde(default)]
    pub port_range: Option<PortRange>,
    /// Seconds to wait for the deployment (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// DELETE_LOAD_BALANCER: delete the marathon-lb app; wait until it is gone.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteLoadBalancerDescription {
    /// The load balancer's name.
    #[serde(alias = "name")]
    pub load_balancer_name: String,
    /// Accepted for clouddriver compatibility and ignored (see the upsert).
    #[serde(default)]
    pub region: Option<String>,
    /// Seconds to wait for the deployment (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// The app id of load balancer `name`: `<root>/<name>`.
pub fn load_balancer_app(scope: &Scope, field: &str, name: &str) -> Result<String, OpError> {
    if name.contains('/') {
        return Err(OpError::invalid(
            field,
            "a load balancer name is one segment (no `/`)",
        ));
    }
    Ok(scope.app(field, "", name)?)
}

impl Description for UpsertLoadBalancerDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn validate(&self) -> Result<(), OpError> {
        if let Some(range) = &self.port_range {
            if range.min_port < 10000 || range.max_port < range.min_port || range.max_port > 65535 {
                return Err(OpError::invalid(
                    "portRange",
                    "ports must satisfy 10000 ≤ minPort ≤ maxPort ≤ 65535",
                ));
            }
            if range.max_port - range.min_port >= MAX_RANGE_PORTS {
                return Err(OpError::invalid(
                    "portRange",
                    format!("a range reserves at most {MAX_RANGE_PORTS} ports"),
                ));
            }
            if let Some(p) = range
                .protocol
                .as_deref()
                .filter(|p| !matches!(*p, "tcp" | "udp" | "udp,tcp" | "tcp,udp"))
            {
                return Err(OpError::invalid(
                    "portRange.protocol",
                    format!("`{p}` is not tcp or udp"),
                ));
            }
        }
        let positive = [("cpus", self.cpus), ("mem", self.mem)];
        if let Some((field, _)) = positive
            .iter()
            .find(|(_, v)| v.is_some_and(|v| v.is_nan() || v <= 0.0))
        {
            return Err(OpError::invalid(field, "must be greater than 0"));
        }
        Ok(())
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![load_balancer_app(scope, "name", &self.name)?])
    }
}

impl Description for DeleteLoadBalancerDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![load_balancer_app(
            scope,
            "loadBalancerName",
            &self.load_balancer_name,
        )?])
    }
}
