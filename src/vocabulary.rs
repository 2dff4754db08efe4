//! The shared vocabulary of the contract: the 34 atomic operations and the error codes of task documents.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The error code of a failed or rejected task (DESIGN.md, "Task result document").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Bad JSON or a description that does not fit the schema (details carry field paths).
    InvalidRequest,
    /// The operation has no DC/OS counterpart (the message says why).
    UnsupportedOperation,
    /// Outside the account's root group, or an unknown account.
    Forbidden,
    /// The app, task, job, deployment or snapshot does not exist.
    NotFound,
    /// Still locked by another deployment after retries, or an id already taken.
    Conflict,
    /// Marathon or Metronome answered 422; its `details` are passed through.
    DcosValidation,
    /// 5xx or network failure after retries.
    DcosUnavailable,
    /// The DC/OS login failed or the token was refused.
    AuthFailed,
    /// Marathon reported `deployment_failed`.
    DeploymentFailed,
    /// The deployment did not end within `timeoutSeconds`.
    Timeout,
}

impl ErrorCode {
    /// The wire name, e.g. `NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::UnsupportedOperation => "UNSUPPORTED_OPERATION",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::DcosValidation => "DCOS_VALIDATION",
            ErrorCode::DcosUnavailable => "DCOS_UNAVAILABLE",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::DeploymentFailed => "DEPLOYMENT_FAILED",
            ErrorCode::Timeout => "TIMEOUT",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! operations {
    ($($variant:ident => $name:literal,)*) => {
        /// The 34 atomic operations, named as in Spinnaker (`CREATE_SERVER_GROUP`); on subjects they are
        /// written in lower case (`dcos.op.<account>.create_server_group`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum Operation {
            $($variant,)*
        }

        impl Operation {
            /// Every operation, in the order of DESIGN.md.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            /// The upper-case name, e.g. `RESIZE_SERVER_GROUP`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)*
                }
            }
        }
    };
}

operations! {
    CreateServerGroup => "CREATE_SERVER_GROUP",
    CloneServerGroup => "CLONE_SERVER_GROUP",
    DisableServerGroup => "DISABLE_SERVER_GROUP",
    EnableServerGroup => "ENABLE_SERVER_GROUP",
    DestroyServerGroup => "DESTROY_SERVER_GROUP",
    ResizeServerGroup => "RESIZE_SERVER_GROUP",
    UpsertServerGroupTags => "UPSERT_SERVER_GROUP_TAGS",
    UpdateLaunchConfig => "UPDATE_LAUNCH_CONFIG",
    UpsertScalingPolicy => "UPSERT_SCALING_POLICY",
    DeleteScalingPolicy => "DELETE_SCALING_POLICY",
    MigrateServerGroup => "MIGRATE_SERVER_GROUP",
    MigrateClusterConfigurations => "MIGRATE_CLUSTER_CONFIGURATIONS",
    RebootInstances => "REBOOT_INSTANCES",
    TerminateInstances => "TERMINATE_INSTANCES",
    TerminateInstanceAndDecrement => "TERMINATE_INSTANCE_AND_DECREMENT",
    AttachClassicLinkVpc => "ATTACH_CLASSIC_LINK_VPC",
    RegisterInstancesWithLoadBalancer => "REGISTER_INSTANCES_WITH_LOAD_BALANCER",
    DeregisterInstancesFromLoadBalancer => "DEREGISTER_INSTANCES_FROM_LOAD_BALANCER",
    EnableInstancesInDiscovery => "ENABLE_INSTANCES_IN_DISCOVERY",
    DisableInstancesInDiscovery => "DISABLE_INSTANCES_IN_DISCOVERY",
    UpdateInstances => "UPDATE_INSTANCES",
    DetachInstances => "DETACH_INSTANCES",
    DeleteLoadBalancer => "DELETE_LOAD_BALANCER",
    UpsertLoadBalancer => "UPSERT_LOAD_BALANCER",
    MigrateLoadBalancer => "MIGRATE_LOAD_BALANCER",
    DeleteSecurityGroup => "DELETE_SECURITY_GROUP",
    UpsertSecurityGroup => "UPSERT_SECURITY_GROUP",
    MigrateSecurityGroup => "MIGRATE_SECURITY_GROUP",
    RunJob => "RUN_JOB",
    DestroyJob => "DESTROY_JOB",
    CloneJob => "CLONE_JOB",
    UpsertImageTags => "UPSERT_IMAGE_TAGS",
    SaveSnapshot => "SAVE_SNAPSHOT",
    RestoreSnapshot => "RESTORE_SNAPSHOT",
}

impl Operation {
    /// The subject token, e.g. `resize_server_group`.
    pub fn subject_name(self) -> String {
        self.name().to_ascii_lowercase()
    }

    /// Why DC/OS cannot do this operation, or `None` when the driver supports it.
    pub fn unsupported_reason(self) -> Option<&'static str> {
        use Operation::*;
        Some(match self {
            UpsertScalingPolicy | DeleteScalingPolicy => {
                "DC/OS has no autoscaler: Marathon keeps the instance count it is given (use RESIZE_SERVER_GROUP)"
            }
            MigrateServerGroup | MigrateClusterConfigurations => {
                "AWS VPC migrations have no DC/OS counterpart"
            }
            DetachInstances => {
                "a Marathon task cannot outlive its app; to take instances out of service use DISABLE_INSTANCES_IN_DISCOVERY"
            }
            AttachClassicLinkVpc => "ClassicLink is an AWS feature with no DC/OS counterpart",
            RegisterInstancesWithLoadBalancer | DeregisterInstancesFromLoadBalancer => {
                "marathon-lb membership is per server group (the HAPROXY_GROUP label), not per instance; \
                 use UPSERT_SERVER_GROUP_TAGS or DISABLE_INSTANCES_IN_DISCOVERY"
            }
            MigrateLoadBalancer => "load balancer migration is an AWS VPC concept with no DC/OS counterpart",
            UpsertSecurityGroup | DeleteSecurityGroup | MigrateSecurityGroup => {
                "DC/OS has no security groups: isolation is per CNI network"
            }
            UpsertImageTags => "DC/OS has no image catalogue to tag",
            _ => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of the 34 operations.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown operation `{0}`")]
pub struct UnknownOperation(pub String);

impl FromStr for Operation {
    type Err = UnknownOperation;

    /// Accepts `RESIZE_SERVER_GROUP`, `resize_server_group` and clouddriver's camelCase `resizeServerGroup`.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let camel = raw.chars().any(|c| c.is_ascii_lowercase())
            && raw.chars().any(|c| c.is_ascii_uppercase());
        let mut normalised = String::with_capacity(raw.len() + 8);
        for c in raw.chars() {
            if camel && c.is_ascii_uppercase() && !normalised.is_empty() {
                normalised.push('_');
            }
            normalised.push(c.to_ascii_uppercase());
        }
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.name() == normalised)
            .ok_or_else(|| UnknownOperation(raw.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_four_operations_ten_plus_supported() {
        assert_eq!(Operation::ALL.len(), 34);
        let supported = Operation::ALL
            .iter()
            .filter(|o| o.unsupported_reason().is_none())
            .count();
        assert_eq!(supported, 21);
    }

    #[test]
    fn names_parse_in_every_spelling() {
        for op in Operation::ALL {
            assert_eq!(op.name().parse::<Operation>().unwrap(), *op);
            assert_eq!(op.subject_name().parse::<Operation>().unwrap(), *op);
        }
        assert_eq!(
            "resizeServerGroup".parse::<Operation>().unwrap(),
            Operation::ResizeServerGroup
        );
        assert!("resize".parse::<Operation>().is_err());
    }

    #[test]
    fn serde_uses_upper_case_names() {
        assert_eq!(
            serde_json::to_string(&Operation::RunJob).unwrap(),
            "\"RUN_JOB\""
        );
        assert_eq!(
            serde_json::to_string(&ErrorCode::DcosValidation).unwrap(),
            "\"DCOS_VALIDATION\""
        );
    }
}
