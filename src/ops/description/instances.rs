//! Instance descriptions: reboot, terminate (with or without decrement), enable/disable in
//! discovery, rolling restart.
//!
//! Instances are Marathon task ids (`prod_web_api-v001.instance-<uuid>._app.1`, legacy
//! `prod_web_api-v001.<uuid>`) or instance ids (the task id without `._app.<n>`). The app of each
//! one is read from the id itself (Marathon writes the app id's `/` as `_`, and its ids never hold
//! `_`), so an instance of an app outside the account's root is `FORBIDDEN` before anything is
//! locked, whatever `serverGroupName` says. When `serverGroupName` is given, every instance must
//! belong to it.

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

/// The instance id of a task id: `a.instance-x._app.3` → `a.instance-x`; a legacy task id (or an
/// instance id) is its own instance id. Discovery and the instance overlays use this id.
pub fn instance_of_task(task_id: &str) -> &str {
    match task_id.rfind("._app.") {
        Some(pos) => &task_id[..pos],
        None => task_id,
    }
}

/// The instances a description names, grouped by app: `(app id, ids as given)`, apps sorted.
/// `serverGroupName` (with `region`), when given, must be the app of every instance.
pub fn instances_by_app(
    scope: &Scope,
    region: &str,
    server_group_name: Option<&str>,
    instance_ids: &[String],
) -> Result<Vec<(String, Vec<String>)>, OpError> {
    if instance_ids.is_empty() {
        return Err(OpError::invalid(
            "instanceIds",
            "give at least one instance id",
        ));
    }
    let named = server_group_name
        .map(|name| scope.app("serverGroupName", region, name))
        .transpose()?;
    let mut by_app: Vec<(String, Vec<String>)> = Vec::new();
    for (i, id) in instance_ids.iter().enumerate() {
        let field = format!("instanceIds[{i}]");
        let app = app_of_instance(id)
            .ok_or_else(|| OpError::invalid(&field, format!("`{id}` is not a Marathon task id")))?;
        let app = scope.check(&field, &app)?;
        if let Some(named) = named.as_deref().filter(|named| *named != app) {
            return Err(OpError::invalid(
                &field,
                format!("`{id}` is an instance of {app}, not of the server group {named}"),
            ));
        }
        match by_app.iter_mut().find(|(a, _)| *a == app) {
            Some((_, ids)) if !ids.contains(id) => ids.push(id.clone()),
            Some(_) => {}
            None => by_app.push((app, vec![id.clone()])),
        }
    }
    by_app.sort();
    Ok(by_app)
}

/// REBOOT_INSTANCES: kill the tasks without scaling; Marathon starts replacements; wait until the
/// app is back at its target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebootInstancesDescription {
    /// Group below the account's root of `serverGroupName`.
    #[serde(default)]
    pub region: String,
    /// The server group of the instances (default: read from each instance id).
    #[serde(default)]
    pub server_group_name: Option<String>,
    /// Marathon task (or instance) ids.
    pub instance_ids: Vec<String>,
    /// Seconds to wait for the app to be back at its target (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// TERMINATE_INSTANCES: kill the tasks (`POST /v2/tasks/delete`); Marathon starts replacements.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TerminateInstancesDescription {
    /// Group below the account's root of `serverGroupName`.
    #[serde(default)]
    pub region: String,
    /// The server group of the instances (default: read from each instance id).
    #[serde(default)]
    pub server_group_name: Option<String>,
    /// Marathon task (or instance) ids.
    pub instance_ids: Vec<String>,
}

/// TERMINATE_INSTANCE_AND_DECREMENT: kill the tasks and lower the instance count by their number
/// (`POST /v2/tasks/delete?scale=true`); wait for the deployment.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TerminateInstanceAndDecrementDescription {
    /// Group below the account's root of `serverGroupName`.
    #[serde(default)]
    pub region: String,
    /// The server group of the instances (default: read from each instance id); clouddriver's
    /// `appId` is accepted too.
    #[serde(default, alias = "appId")]
    pub server_group_name: Option<String>,
    /// Marathon task (or instance) ids (clouddriver-dcos: `taskIds`).
    #[serde(default, alias = "taskIds")]
    pub instance_ids: Vec<String>,
    /// One instance (Spinnaker's single-instance form; joins `instanceIds`).
    #[serde(default, alias = "instanceId")]
    pub instance: Option<String>,
    /// Override a deployment lock held by another deployment of the app.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for the deployment (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl TerminateInstanceAndDecrementDescription {
    /// `instanceIds` with `instance` added.
    pub fn ids(&self) -> Vec<String> {
        let mut ids = self.instance_ids.clone();
        if let Some(one) = &self.instance {
            if !ids.contains(one) {
                ids.push(one.clone());
            }
        }
        ids
    }
}

/// ENABLE_INSTANCES_IN_DISCOVERY / DISABLE_INSTANCES_IN_DISCOVERY: set or clear the administrative
/// overlay of these instances; no Marathon change.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstancesInDiscoveryDescription {
    /// Group below the account's root of `serverGroupName`.
    #[serde(default)]
    pub region: String,
    /// The server group of the instances (default: read from each instance id).
    #[serde(default)]
    pub server_group_name: Option<String>,
    /// Marathon task (or instance) ids.
    pub instance_ids: Vec<String>,
}

/// Implements [`Description`] for an instance description: its lock keys are the apps of its
/// instances.
macro_rules! instance_description {
    ($name:ident, $ids:expr, $timeout:expr) => {
        impl $name {
            /// The instances grouped by app (see [`instances_by_app`]).
            pub fn by_app(&self, scope: &Scope) -> Result<Vec<(String, Vec<String>)>, OpError> {
                let ids: Vec<String> = $ids(self);
                instances_by_app(scope, &self.region, self.server_group_name.as_deref(), &ids)
            }
        }

        impl Description for $name {
            fn timeout_seconds(&self) -> Option<u64> {
                $timeout(self)
            }

            fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
                Ok(self
                    .by_app(scope)?
                    .into_iter()
                    .map(|(app, _)| app)
                    .collect())
            }
        }
    };
}

instance_description!(
    RebootInstancesDescription,
    |d: &RebootInstancesDescription| d.instance_ids.clone(),
    |d: &RebootInstancesDescription| d.timeout_seconds
);
instance_description!(
    TerminateInstancesDescription,
    |d: &TerminateInstancesDescription| d.instance_ids.clone(),
    |_: &TerminateInstancesDescription| None
);
instance_description!(
    TerminateInstanceAndDecrementDescription,
    |d: &TerminateInstanceAndDecrementDescription| d.ids(),
    |d: &TerminateInstanceAndDecrementDescription| d.timeout_seconds
);
instance_description!(
    InstancesInDiscoveryDescription,
    |d: &InstancesInDiscoveryDescription| d.instance_ids.clone(),
    |_: &InstancesInDiscoveryDescription| None
);

server_group_description! {
    /// UPDATE_INSTANCES: a rolling restart of the server group (`POST /v2/apps/{id}/restart`); wait.
    UpdateInstancesDescription {
        /// Override a deployment lock held by another deployment of the app.
        #[serde(default)]
        pub force: bool,
    }
}
locks_its_app!(UpdateInstancesDescription);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::description::parse;
    use crate::vocabulary::ErrorCode;
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
        assert_eq!(instance_of_task("a_b.instance-x._app.3"), "a_b.instance-x");
        assert_eq!(instance_of_task("a_b.instance-x"), "a_b.instance-x");
        assert_eq!(instance_of_task("a_b.1234"), "a_b.1234");
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
        for body in [
            json!({"instanceIds": ["other_a-v000.instance-1._app.1"]}),
            // naming a server group of the account does not make a foreign instance ours
            json!({"instanceIds": ["other_a-v000.instance-1._app.1"], "serverGroupName": "a-v000"}),
        ] {
            let d: TerminateInstancesDescription = parse("test", &body).unwrap();
            assert_eq!(
                d.lock_keys(&scope).unwrap_err().code(),
                ErrorCode::Forbidden
            );
        }
    }

    #[test]
    fn server_group_must_match_and_ids_are_required() {
        let scope = Scope::new("test", "/test");
        let d: RebootInstancesDescription = parse(
            "test",
            &json!({"instanceIds": ["test_b-v001.instance-1._app.1"], "serverGroupName": "a-v001", "timeoutSeconds": 5}),
        )
        .unwrap();
        assert_eq!(d.timeout_seconds(), Some(5));
        let err = d.lock_keys(&scope).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(
            err.to_task_error().details.unwrap()["field"],
            "instanceIds[0]"
        );
        let d: InstancesInDiscoveryDescription =
            parse("test", &json!({"instanceIds": []})).unwrap();
        assert_eq!(
            d.lock_keys(&scope).unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn decrement_accepts_the_single_instance_forms() {
        let scope = Scope::new("test", "/test");
        let d: TerminateInstanceAndDecrementDescription = parse(
            "test",
            &json!({"instanceId": "test_a-v000.instance-1._app.1", "appId": "/test/a-v000"}),
        )
        .unwrap();
        assert_eq!(
            d.by_app(&scope).unwrap(),
            vec![(
                "/test/a-v000".to_string(),
                vec!["test_a-v000.instance-1._app.1".to_string()]
            )]
        );
        let d: TerminateInstanceAndDecrementDescription =
            parse("test", &json!({"force": true})).unwrap();
        assert_eq!(
            d.lock_keys(&scope).unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
    }
}
