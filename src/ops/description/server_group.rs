//! The server-group descriptions (clouddriver-dcos's `…DcosServerGroupDescription`s).
//!
//! Common fields: `region` (group path below the account's root, `web/api` or `web_api`; empty = the
//! root), `serverGroupName` (a bare `api-main-v003` under root + region, or a full app id under the
//! root) and `timeoutSeconds` (how long to wait for the deployment).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::app::{with_app_settings, Capacity};
use super::Description;
use crate::ops::error::OpError;
use crate::ops::naming;
use crate::ops::paths::Scope;

/// The lock key of a cluster in a group: creates and clones of one cluster take turns, so two of
/// them never pick the same `vNNN`.
pub fn cluster_lock_key(group: &str, cluster: &str) -> String {
    format!("cluster:{}/{cluster}", group.trim_end_matches('/'))
}

with_app_settings! {
    /// CREATE_SERVER_GROUP: a new server group `<root>/<region>/<application>-<stack>-<freeFormDetails>-vNNN`
    /// from these settings, or from a raw Marathon `app` (whose `id`, if given, names the group and
    /// cluster; the driver appends the next `-vNNN`). Settings given beside `app` are applied over it.
    #[derive(Debug, Clone, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct CreateServerGroupDescription {
        /// Spinnaker application: the first part of the name. Required unless `app.id` is given.
        #[serde(default)]
        pub application: Option<String>,
        /// Stack: the second part of the name.
        #[serde(default)]
        pub stack: Option<String>,
        /// Free-form details: the third part of the name.
        #[serde(default)]
        pub free_form_details: Option<String>,
        /// Group below the account's root (`web/api` or `web_api`); empty = the root.
        #[serde(default)]
        pub region: String,
        /// Seconds to wait for the deployment (default from the driver configuration, 300).
        #[serde(default)]
        pub timeout_seconds: Option<u64>,
        /// A raw Marathon app definition to start from.
        #[serde(default)]
        pub app: Option<Map<String, Value>>,
    }
}

impl CreateServerGroupDescription {
    /// The group the new server group goes into, and its cluster name.
    pub fn target(&self, scope: &Scope) -> Result<(String, String), OpError> {
        let raw_id = self
            .app
            .as_ref()
            .and_then(|a| a.get("id"))
            .map(|id| {
                id.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| OpError::invalid("app.id", "must be a string"))
            })
            .transpose()?
            .filter(|id| !id.trim().is_empty());
        let (group, id_cluster) = match &raw_id {
            Some(id) => {
                let app_id = scope.app("app.id", &self.region, id)?;
                let name = naming::last_segment(&app_id);
                let cluster = naming::split_sequence(name).0.to_string();
                (naming::parent_group(&app_id).to_string(), Some(cluster))
            }
            None => (scope.group("region", &self.region)?, None),
        };
        let cluster = match (&self.application, id_cluster) {
            (Some(application), _) => naming::cluster_name(
                application,
                self.stack.as_deref(),
                self.free_form_details.as_deref(),
            )?,
            (None, Some(cluster)) => cluster,
            (None, None) => {
                return Err(OpError::invalid(
                    "application",
                    "missing field `application` (or give a raw `app` with an `id`)",
                ))
            }
        };
        Ok((group, cluster))
    }
}

impl Description for CreateServerGroupDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn validate(&self) -> Result<(), OpError> {
        if self.app.is_none() && self.cmd.is_none() && self.args.is_none() && self.docker.is_none()
        {
            return Err(OpError::invalid(
                "",
                "give `cmd`, `args` or `docker` (or a raw `app`): Marathon needs something to run",
            ));
        }
        Ok(())
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        let (group, cluster) = self.target(scope)?;
        Ok(vec![cluster_lock_key(&group, &cluster)])
    }
}

/// Where a clone comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloneSource {
    /// The account of the source (default: the request's account).
    #[serde(default)]
    pub account: Option<String>,
    /// The source's group below its account's root.
    #[serde(default)]
    pub region: String,
    /// The source server group (bare name or full app id).
    pub server_group_name: String,
}

with_app_settings! {
    /// CLONE_SERVER_GROUP: read the source app, apply the settings given here as overrides, and
    /// create it as the next version of its cluster (or of the cluster named by
    /// `application`/`stack`/`freeFormDetails`), in `region` (default: the source's group).
    #[derive(Debug, Clone, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct CloneServerGroupDescription {
        /// The server group to copy.
        pub source: CloneSource,
        /// Cluster override: application.
        #[serde(default)]
        pub application: Option<String>,
        /// Cluster override: stack.
        #[serde(default)]
        pub stack: Option<String>,
        /// Cluster override: free-form details.
        #[serde(default)]
        pub free_form_details: Option<String>,
        /// Target group below the root (default: the source's group, when it is in this account).
        #[serde(default)]
        pub region: Option<String>,
        /// Seconds to wait for the deployment (default from the driver configuration, 300).
        #[serde(default)]
        pub timeout_seconds: Option<u64>,
    }
}

impl CloneServerGroupDescription {
    /// Whether the source is in another account than `account`.
    pub fn cross_account(&self, account: &str) -> bool {
        self.source
            .account
            .as_deref()
            .is_some_and(|a| !a.is_empty() && a != account)
    }

    /// The source app id, resolved in the source account's scope.
    pub fn source_app(&self, source_scope: &Scope) -> Result<String, OpError> {
        Ok(source_scope.app(
            "source.serverGroupName",
            &self.source.region,
            &self.source.server_group_name,
        )?)
    }

    /// The target group and cluster (in the request's account).
    pub fn target(
        &self,
        scope: &Scope,
        source_app: &str,
        same_account: bool,
    ) -> Result<(String, String), OpError> {
        let group = match &self.region {
            Some(region) => scope.group("region", region)?,
            None if same_account => naming::parent_group(source_app).to_string(),
            None => {
                let below = scope.root().to_string();
                return Err(OpError::invalid(
                    "region",
                    format!(
                        "a clone from another account needs the target `region` (below {below})"
                    ),
                ));
            }
        };
        let cluster = match &self.application {
            Some(application) => naming::cluster_name(
                application,
                self.stack.as_deref(),
                self.free_form_details.as_deref(),
            )?,
            None => naming::split_sequence(naming::last_segment(source_app))
                .0
                .to_string(),
        };
        Ok((group, cluster))
    }
}

impl Description for CloneServerGroupDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        let same_account = !self.cross_account(scope.account());
        // A source in another account is resolved against that account's root by the operation;
        // here its name only shapes the cluster.
        let source = if same_account {
            self.source_app(scope)?
        } else {
            let name = naming::last_segment(&self.source.server_group_name).to_string();
            format!("{}/{name}", scope.root())
        };
        let (group, cluster) = self.target(scope, &source, same_account)?;
        Ok(vec![cluster_lock_key(&group, &cluster)])
    }
}

/// Fields of every description that names one existing server group.
macro_rules! server_group_description {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Group below the account's root (`web/api` or `web_api`); empty = the root.
            #[serde(default)]
            pub region: String,
            /// The server group: `api-main-v003` (under root + region) or a full app id under the root.
            pub server_group_name: String,
            /// Seconds to wait for the deployment (default from the driver configuration, 300).
            #[serde(default)]
            pub timeout_seconds: Option<u64>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The app id of the server group.
            pub fn app_id(&self, scope: &Scope) -> Result<String, OpError> {
                Ok(scope.app("serverGroupName", &self.region, &self.server_group_name)?)
            }
        }
    };
}

pub(crate) use server_group_description;

/// `Description` for a server-group description: lock its app; `validate` as given.
macro_rules! locks_its_app {
    ($name:ident) => {
        locks_its_app!($name, |_d: &$name| Ok(()));
    };
    ($name:ident, $validate:expr) => {
        impl Description for $name {
            fn timeout_seconds(&self) -> Option<u64> {
                self.timeout_seconds
            }

            fn validate(&self) -> Result<(), OpError> {
                let check: fn(&$name) -> Result<(), OpError> = $validate;
                check(self)
            }

            fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
                Ok(vec![self.app_id(scope)?])
            }
        }
    };
}

pub(crate) use locks_its_app;

server_group_description! {
    /// DISABLE_SERVER_GROUP: take every instance out of service (discovery OUT_OF_SERVICE);
    /// `suspend: true` also scales it to 0 and records the previous count.
    DisableServerGroupDescription {
        /// Also scale to 0 instances (DC/OS "suspend"); ENABLE scales back.
        #[serde(default)]
        pub suspend: bool,
    }
}
locks_its_app!(DisableServerGroupDescription);

server_group_description! {
    /// ENABLE_SERVER_GROUP: back in service; a suspended group is scaled back to its recorded count.
    EnableServerGroupDescription {}
}
locks_its_app!(EnableServerGroupDescription);

server_group_description! {
    /// DESTROY_SERVER_GROUP: delete the app and wait until it is gone.
    DestroyServerGroupDescription {}
}
locks_its_app!(DestroyServerGroupDescription);

server_group_description! {
    /// RESIZE_SERVER_GROUP: set the instance count (`targetSize` or `capacity.desired`).
    ResizeServerGroupDescription {
        /// The instance count.
        #[serde(default)]
        pub target_size: Option<u32>,
        /// Spinnaker capacity; `desired` is the instance count.
        #[serde(default)]
        pub capacity: Option<Capacity>,
    }
}
locks_its_app!(
    ResizeServerGroupDescription,
    |d| match (d.target_size, &d.capacity) {
        (Some(a), Some(c)) if a != c.desired => Err(OpError::invalid(
            "targetSize",
            format!("targetSize {a} and capacity.desired {} disagree", c.desired),
        )),
        (None, None) => Err(OpError::invalid(
            "targetSize",
            "missing field `targetSize` (or `capacity.desired`)",
        )),
        _ => Ok(()),
    }
);

impl ResizeServerGroupDescription {
    /// The instance count asked for.
    pub fn instances(&self) -> u32 {
        self.target_size
            .or(self.capacity.as_ref().map(|c| c.desired))
            .unwrap_or_default()
    }
}

server_group_description! {
    /// UPSERT_SERVER_GROUP_TAGS: merge `tags` into the app's labels and remove `deleteTags`. Marathon
    /// makes a new app version (and restarts the tasks) for a label change.
    UpsertServerGroupTagsDescription {
        /// Labels to set.
        #[serde(default)]
        pub tags: BTreeMap<String, String>,
        /// Labels to remove.
        #[serde(default)]
        pub delete_tags: Vec<String>,
    }
}
locks_its_app!(UpsertServerGroupTagsDescription, |d| {
    if d.tags.is_empty() && d.delete_tags.is_empty() {
        return Err(OpError::invalid("tags", "give `tags` or `deleteTags`"));
    }
    if let Some(key) = d.tags.keys().find(|k| d.delete_tags.contains(k)) {
        return Err(OpError::invalid(
            "deleteTags",
            format!("`{key}` is both set (tags) and deleted (deleteTags)"),
        ));
    }
    if let Some(key) = d
        .tags
        .keys()
        .chain(d.delete_tags.iter())
        .find(|k| k.as_str() == crate::ops::TASK_ID_LABEL)
    {
        return Err(OpError::invalid(
            "tags",
            format!("`{key}` is the driver's own label"),
        ));
    }
    Ok(())
});

with_app_settings! {
    /// UPDATE_LAUNCH_CONFIG: change image, command, environment, resources, health checks,
    /// constraints… of a server group in place: a rolling deployment.
    #[derive(Debug, Clone, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct UpdateLaunchConfigDescription {
        /// Group below the account's root (`web/api` or `web_api`); empty = the root.
        #[serde(default)]
        pub region: String,
        /// The server group: `api-main-v003` (under root + region) or a full app id under the root.
        pub server_group_name: String,
        /// Seconds to wait for the deployment (default from the driver configuration, 300).
        #[serde(default)]
        pub timeout_seconds: Option<u64>,
    }
}

impl UpdateLaunchConfigDescription {
    /// The app id of the server group.
    pub fn app_id(&self, scope: &Scope) -> Result<String, OpError> {
        Ok(scope.app("serverGroupName", &self.region, &self.server_group_name)?)
    }
}

locks_its_app!(UpdateLaunchConfigDescription, |d| {
    if d.app_settings().is_empty() {
        return Err(OpError::invalid(
            "",
            "nothing to change: give at least one setting (docker, cmd, args, env, cpus, mem, disk, healthChecks, constraints, …)",
        ));
    }
    Ok(())
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::description::parse;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new("test", "/test")
    }

    #[test]
    fn create_targets() {
        let d: CreateServerGroupDescription = parse(
            "test",
            &json!({"application": "api", "stack": "main", "region": "web_api", "cmd": "x",
                    "capacity": {"min": 1, "max": 5, "desired": 2}}),
        )
        .unwrap();
        assert_eq!(
            d.target(&scope()).unwrap(),
            ("/test/web/api".into(), "api-main".into())
        );
        assert_eq!(d.app_settings().instances(), Some(2));
        assert_eq!(
            d.lock_keys(&scope()).unwrap(),
            vec!["cluster:/test/web/api/api-main"]
        );

        let raw: CreateServerGroupDescription =
            parse("test", &json!({"app": {"id": "web/api-v007", "cmd": "x"}})).unwrap();
        assert_eq!(
            raw.target(&scope()).unwrap(),
            ("/test/web".into(), "api".into())
        );

        let missing: CreateServerGroupDescription = parse("test", &json!({"cmd": "x"})).unwrap();
        assert_eq!(
            missing.target(&scope()).unwrap_err().to_string(),
            "application: missing field `application` (or give a raw `app` with an `id`)"
        );

        let outside: CreateServerGroupDescription = parse(
            "test",
            &json!({"application": "a", "region": "../other", "cmd": "x"}),
        )
        .unwrap();
        assert_eq!(
            outside.lock_keys(&scope()).unwrap_err().code(),
            crate::vocabulary::ErrorCode::Forbidden
        );
    }

    #[test]
    fn create_rejects_unknown_and_mistyped_fields() {
        let err =
            parse::<CreateServerGroupDescription>("test", &json!({"application": "a", "cpu": 1}))
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `cpu`"), "{err}");
        let err = parse::<CreateServerGroupDescription>(
            "test",
            &json!({"application": "a", "docker": {"image": "x", "privileged": "yes"}}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("docker.privileged: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn resize_needs_a_size() {
        let d: ResizeServerGroupDescription = parse(
            "test",
            &json!({"serverGroupName": "api-v000", "capacity": {"desired": 4}}),
        )
        .unwrap();
        assert_eq!(d.instances(), 4);
        d.validate().unwrap();
        let d: ResizeServerGroupDescription =
            parse("test", &json!({"serverGroupName": "api-v000"})).unwrap();
        assert!(d.validate().is_err());
        let d: ResizeServerGroupDescription = parse(
            "test",
            &json!({"serverGroupName": "/other/api-v000", "targetSize": 1}),
        )
        .unwrap();
        assert_eq!(
            d.lock_keys(&scope()).unwrap_err().code(),
            crate::vocabulary::ErrorCode::Forbidden
        );
    }

    #[test]
    fn clone_targets() {
        let d: CloneServerGroupDescription = parse(
            "test",
            &json!({"source": {"region": "web", "serverGroupName": "api-main-v004"}, "mem": 256}),
        )
        .unwrap();
        let source = d.source_app(&scope()).unwrap();
        assert_eq!(source, "/test/web/api-main-v004");
        assert_eq!(
            d.target(&scope(), &source, true).unwrap(),
            ("/test/web".into(), "api-main".into())
        );
        assert_eq!(
            d.lock_keys(&scope()).unwrap(),
            vec!["cluster:/test/web/api-main"]
        );
    }

    #[test]
    fn tags_validation() {
        let d: UpsertServerGroupTagsDescription = parse(
            "test",
            &json!({"serverGroupName": "a-v000", "tags": {"a": "1"}, "deleteTags": ["a"]}),
        )
        .unwrap();
        assert!(d.validate().is_err());
        let d: UpsertServerGroupTagsDescription =
            parse("test", &json!({"serverGroupName": "a-v000"})).unwrap();
        assert!(d.validate().is_err());
    }
}
