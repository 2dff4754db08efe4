//! Instance descriptions: reboot, terminate (with or without decrement), enable/disable in
//! discovery, rolling restart. Instances are Marathon task ids; the server group they belong to is
//! `serverGroupName` when given, else read from each instance id (its app part).

use schemars::JsonSchema;
use serde::Deserialize;

use super::server_group::{locks_its_app, server_group_description};
use super::Description;
use crate::ops::error::OpError;
use crate::ops::paths::Scope;

/// The app id an instance id belongs to: `prod_web_api-v001.instance-<uuid>._app.1` and legacy
/// `prod_web_api-v001.<uuid>` both give `/prod/web/api-v001` (Marathon writes `/` as `_`).
pub fn app_of_instance(instance_id: &str) -> Option<String> {
    let app_part = match instance_id.find(".instance-") {
        Some(i) => &instance_id[..i],
        None => instance_id.rsplit_once('.')?.0,
    };
    (!app_part.is_empty()).then(|| format!("/{}", app_part.replace('_', "/")))
}

/// Instance ids, optionally with the server group they belong to.
macro_rules! instances_description {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Group below the account's root of `serverGroupName`.
            #[serde(default)]
            pub region: String,
            /// The server group of the instances (default: read from each instance id).
            #[serde(default)]
            pub server_group_name: Option<String>,
            /// Marathon task ids.
            pub instance_ids: Vec<String>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The app ids the instances belong to (sorted, without repeats), all under the root.
            pub fn app_ids(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
                if self.instance_ids.is_empty() {
                    return Err(OpError::invalid("instanceIds", "give at least one instance id"));
                }
                if let Some(name) = &self.server_group_name {
                    return Ok(vec![scope.app("serverGroupName", &self.region, name)?]);
                }
                let mut apps = Vec::new();
                for (i, id) in self.instance_ids.iter().enumerate() {
                    let field = format!("instanceIds[{i}]");
                    let app = app_of_instance(id).ok_or_else(|| {
                        OpError::invalid(&field, format!("`{id}` is not a Marathon task id"))
                    })?;
                    apps.push(scope.check(&field, &app)?);
                }
                apps.sort();
                apps.dedup();
                Ok(apps)
            }
        }

        impl Description for $name {
            fn timeout_seconds(&self) -> Option<u64> {
                instances_description!(@timeout self $($field)*)
            }

            fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
                self.app_ids(scope)
            }
        }
    };
    (@timeout $self:ident timeout_seconds $($rest:ident)*) => { $self.timeout_seconds };
    (@timeout $self:ident $first:ident $($rest:ident)*) => { instances_description!(@timeout $self $($rest)*) };
    (@timeout $self:ident) => { None };
}

instances_description! {
    /// REBOOT_INSTANCES: kill the tasks without scaling; Marathon starts replacements; wait until
    /// the app is back to its target.
    RebootInstancesDescription {
        /// Seconds to wait for the app to be back at its target (default 300).
        #[serde(default)]
        pub timeout_seconds: Option<u64>,
    }
}

instances_description! {
    /// TERMINATE_INSTANCES: kill the tasks (`POST /v2/tasks/delete`); Marathon starts replacements.
    TerminateInstancesDescription {}
}

instances_description! {
    /// TERMINATE_INSTANCE_AND_DECREMENT: kill the tasks and lower the instance count
    /// (`POST /v2/tasks/delete?scale=true`); wait for the deployment.
    TerminateInstanceAndDecrementDescription {
        /// Seconds to wait for the deployment (default 300).
        #[serde(default)]
        pub timeout_seconds: Option<u64>,
    }
}

instances_description! {
    /// ENABLE_INSTANCES_IN_DISCOVERY / DISABLE_INSTANCES_IN_DISCOVERY: set or clear the
    /// administrative overlay of these instances; no Marathon change.
    InstancesInDiscoveryDescription {}
}

server_group_description! {
    /// UPDATE_INSTANCES: a rolling restart of the server group (`POST /v2/apps/{id}/restart`); wait.
    UpdateInstancesDescription {}
}
locks_its_app!(UpdateInstancesDescription);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::description::parse;
    use serde_json::json;

    #[test]
    fn instance_ids_name_their_app() {
        assert_eq!(
            app_of_instance("test_web_api-v001.instance-3f2a-11ee._app.1").unwrap(),
            "/test/web/api-v001"
        );
        assert_eq!(
            app_of_instance("test_api-v001.3f2a-11ee").unwrap(),
            "/test/api-v001"
        );
        assert_eq!(app_of_instance("nodots"), None);
    }

    #[test]
    fn instances_outside_the_root_are_forbidden() {
        let scope = Scope::new("test", "/test");
        let d: TerminateInstancesDescription = parse(
            "test",
            &json!({"instanceIds": ["test_a-v000.instance-1._app.1", "test_a-v000.instance-2._app.1"]}),
        )
        .unwrap();
        assert_eq!(d.lock_keys(&scope).unwrap(), vec!["/test/a-v000"]);
        let d: TerminateInstancesDescription = parse(
            "test",
            &json!({"instanceIds": ["other_a-v000.instance-1._app.1"]}),
        )
        .unwrap();
        assert_eq!(
            d.lock_keys(&scope).unwrap_err().code(),
            crate::vocabulary::ErrorCode::Forbidden
        );
        let d: RebootInstancesDescription = parse(
            "test",
            &json!({"instanceIds": ["x.y"], "serverGroupName": "a-v001", "timeoutSeconds": 5}),
        )
        .unwrap();
        assert_eq!(d.timeout_seconds(), Some(5));
        assert_eq!(d.lock_keys(&scope).unwrap(), vec!["/test/a-v001"]);
    }
}
