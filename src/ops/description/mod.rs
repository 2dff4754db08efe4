//! Descriptions: the JSON body of each operation request, as typed serde structs with
//! clouddriver-dcos's camelCase field names and a JSON Schema each.
//!
//! Parsing ([`parse`]) is strict: unknown fields are refused, and an error names the field path
//! (`capacity.desired: invalid type: string "x", expected u32`). Spinnaker's envelope fields
//! ([`ENVELOPE_FIELDS`]) are accepted and ignored, except `account`, which must name the account of
//! the subject the request came on.
//!
//! Layout:
//! - [`app`]: the Marathon app settings CREATE, CLONE and UPDATE_LAUNCH_CONFIG share, and how they
//!   become Marathon app JSON.
//! - [`server_group`]: the eight server-group descriptions.
//! - [`instances`], [`load_balancer`], [`jobs`], [`snapshots`]: the other families.

pub mod app;
pub mod instances;
pub mod jobs;
pub mod load_balancer;
pub mod server_group;
pub mod snapshots;

use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::error::OpError;
use super::paths::Scope;
use crate::vocabulary::Operation;

/// Fields of Spinnaker's operation envelope that may appear in any description. `account` is
/// checked against the subject; the others are ignored.
pub const ENVELOPE_FIELDS: &[&str] = &[
    "account",
    "cloudProvider",
    "credentials",
    "dcosCluster",
    "type",
    "user",
];

/// What every description tells the framework before its operation runs.
pub trait Description: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The request's own bound on waiting for a deployment (`timeoutSeconds`), if it gives one.
    fn timeout_seconds(&self) -> Option<u64> {
        None
    }

    /// Checks across fields that serde cannot express (`INVALID_REQUEST` with the field path).
    fn validate(&self) -> Result<(), OpError> {
        Ok(())
    }

    /// The keys to lock before running (app ids, a cluster key, a job id…), resolved against the
    /// account's root: a path outside it fails here with `FORBIDDEN`, before anything is locked.
    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError>;
}

/// Parses a request body into description `T` for the subject's `account`.
///
/// Envelope fields are removed first (`account` must match); then `T` is read strictly, and an
/// error becomes `INVALID_REQUEST` with `details.field` holding the path.
pub fn parse<T: DeserializeOwned>(account: &str, body: &Value) -> Result<T, OpError> {
    let mut object = match body {
        Value::Object(map) => map.clone(),
        _ => {
            return Err(OpError::invalid(
                "",
                "the description must be a JSON object",
            ))
        }
    };
    for field in ENVELOPE_FIELDS {
        let Some(value) = object.remove(*field) else {
            continue;
        };
        if *field == "account" && !value.is_null() && value.as_str() != Some(account) {
            return Err(OpError::forbidden(format!(
                "account: the description names account {value} but was published on the subject of account `{account}`"
            )));
        }
    }
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        OpError::invalid(&field_path(&path, &message), message)
    })
}

/// The path of the field an error is about: serde_path_to_error stops at the object that misses a
/// field (or has an unknown one), so the field named in the message is appended.
fn field_path(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(name) if !parent.ends_with(name) => {
            if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}.{name}")
            }
        }
        _ => parent.to_string(),
    }
}

/// The JSON Schema of description `T`, with the envelope fields allowed beside its own.
pub fn schema<T: JsonSchema>(operation: Operation) -> Schema {
    let mut schema = schemars::schema_for!(T);
    let object = schema
        .as_object_mut()
        .expect("a struct's schema is an object");
    object.insert(
        "title".into(),
        json!(format!("{} description", operation.name())),
    );
    let properties = object
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("properties is an object");
    properties.insert(
        "account".into(),
        json!({"type": "string", "description": "Spinnaker envelope: must equal the account of the subject when given."}),
    );
    for field in ENVELOPE_FIELDS.iter().filter(|f| **f != "account") {
        properties.insert(
            (*field).into(),
            json!({"description": "Spinnaker envelope field: accepted and ignored."}),
        );
    }
    schema
}

/// Every supported operation's description schema, with its file name
/// (`descriptions/<operation_lower>.schema.json`).
pub fn all_schemas() -> Vec<(String, Schema)> {
    use Operation::*;
    let file = |op: Operation| format!("descriptions/{}.schema.json", op.subject_name());
    let mut out = Vec::new();
    for op in Operation::ALL.iter().copied() {
        let schema = match op {
            CreateServerGroup => schema::<server_group::CreateServerGroupDescription>(op),
            CloneServerGroup => schema::<server_group::CloneServerGroupDescription>(op),
            DisableServerGroup => schema::<server_group::DisableServerGroupDescription>(op),
            EnableServerGroup => schema::<server_group::EnableServerGroupDescription>(op),
            DestroyServerGroup => schema::<server_group::DestroyServerGroupDescription>(op),
            ResizeServerGroup => schema::<server_group::ResizeServerGroupDescription>(op),
            UpsertServerGroupTags => schema::<server_group::UpsertServerGroupTagsDescription>(op),
            UpdateLaunchConfig => schema::<server_group::UpdateLaunchConfigDescription>(op),
            RebootInstances => schema::<instances::RebootInstancesDescription>(op),
            TerminateInstances => schema::<instances::TerminateInstancesDescription>(op),
            TerminateInstanceAndDecrement => {
                schema::<instances::TerminateInstanceAndDecrementDescription>(op)
            }
            EnableInstancesInDiscovery => schema::<instances::InstancesInDiscoveryDescription>(op),
            DisableInstancesInDiscovery => schema::<instances::InstancesInDiscoveryDescription>(op),
            UpdateInstances => schema::<instances::UpdateInstancesDescription>(op),
            UpsertLoadBalancer => schema::<load_balancer::UpsertLoadBalancerDescription>(op),
            DeleteLoadBalancer => schema::<load_balancer::DeleteLoadBalancerDescription>(op),
            RunJob => schema::<jobs::RunJobDescription>(op),
            DestroyJob => schema::<jobs::DestroyJobDescription>(op),
            CloneJob => schema::<jobs::CloneJobDescription>(op),
            SaveSnapshot => schema::<snapshots::SaveSnapshotDescription>(op),
            RestoreSnapshot => schema::<snapshots::RestoreSnapshotDescription>(op),
            _ => continue,
        };
        out.push((file(op), schema));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Sample {
        server_group_name: String,
        #[serde(default)]
        capacity: Option<Capacity>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Capacity {
        desired: u32,
    }

    fn field_of(err: OpError) -> String {
        err.to_task_error().details.unwrap()["field"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn errors_name_the_field_path() {
        let err = parse::<Sample>(
            "test",
            &json!({"serverGroupName": "a", "capacity": {"desired": "x"}}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid type: string \"x\", expected u32"),
            "{err}"
        );
        assert_eq!(field_of(err), "capacity.desired");
        let err = parse::<Sample>("test", &json!({})).unwrap_err();
        assert!(
            err.to_string().contains("missing field `serverGroupName`"),
            "{err}"
        );
        let err =
            parse::<Sample>("test", &json!({"serverGroupName": "a", "colour": 1})).unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        assert_eq!(field_of(err), "colour");
    }

    #[test]
    fn envelope_fields_are_ignored_and_account_checked() {
        let body = json!({"serverGroupName": "a", "account": "test", "cloudProvider": "dcos",
                          "credentials": "test", "dcosCluster": "c", "type": "resizeServerGroup", "user": "me"});
        parse::<Sample>("test", &body).unwrap();
        let err = parse::<Sample>("test", &json!({"serverGroupName": "a", "account": "prod"}))
            .unwrap_err();
        assert_eq!(err.code(), crate::vocabulary::ErrorCode::Forbidden);
    }

    #[test]
    fn every_supported_operation_has_a_schema() {
        let schemas = all_schemas();
        let supported = Operation::ALL
            .iter()
            .filter(|o| o.unsupported_reason().is_none())
            .count();
        assert_eq!(schemas.len(), supported);
        for (name, schema) in schemas {
            let props = schema.get("properties").unwrap();
            assert!(props.get("cloudProvider").is_some(), "{name}");
        }
    }
}
