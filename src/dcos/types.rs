//! The shapes DC/OS answers with. Apps, groups and jobs are open-ended JSON objects wrapped with typed
//! accessors, so fields this driver does not know survive a read-modify-write; tasks, deployments and runs
//! are typed structs that keep their unknown fields in `extra`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Marathon app definition (as read, or as to be written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct App(pub Map<String, Value>);

impl App {
    /// Wraps a JSON object; `None` when `value` is not an object.
    pub fn from_value(value: Value) -> Option<App> {
        match value {
            Value::Object(map) => Some(App(map)),
            _ => None,
        }
    }

    /// The app id (`/prod/web/api-v001`), or `""` when absent.
    pub fn id(&self) -> &str {
        self.str_field("id").unwrap_or("")
    }

    /// The target number of instances (`None`: Marathon's default, 1).
    pub fn instances(&self) -> Option<u64> {
        self.0.get("instances").and_then(Value::as_u64)
    }

    /// The app's labels (non-string values are skipped: Marathon only has string labels).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.0
            .get("labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The embedded tasks (present with `embed=apps.tasks` and on `GET /v2/apps/{id}`); tasks that do not
    /// parse are skipped with a warning.
    pub fn tasks(&self) -> Vec<Task> {
        self.0
            .get("tasks")
            .and_then(Value::as_array)
            .map(|tasks| {
                tasks
                    .iter()
                    .filter_map(|t| match Task::deserialize(t) {
                        Ok(task) => Some(task),
                        Err(error) => {
                            tracing::warn!(app = self.id(), %error, "skipping a task that does not parse");
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of the deployments running for this app.
    pub fn deployments(&self) -> Vec<String> {
        deployment_ids(self.0.get("deployments"))
    }

    /// The version (an ISO timestamp).
    pub fn version(&self) -> Option<&str> {
        self.str_field("version")
    }

    /// Any field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets any field.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.0.insert(key.into(), value);
    }

    /// A copy without the fields Marathon computes and refuses or ignores on write (`version`, `tasks`,
    /// counts, deployments, …): what a clone or an update should start from.
    pub fn writable(&self) -> App {
        const READ_ONLY: &[&str] = &[
            "version",
            "versionInfo",
            "tasks",
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "readinessCheckResults",
            "lastTaskFailure",
            "taskStats",
            "uris",
        ];
        let mut map = self.0.clone();
        for key in READ_ONLY {
            map.remove(*key);
        }
        App(map)
    }

    /// The JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
}

/// The ids in Marathon's `deployments: [{"id": …}]` (on apps and in locked answers).
pub(crate) fn deployment_ids(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|d| d.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One Marathon task (instance).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub ports: Vec<u32>,
    #[serde(default)]
    pub service_ports: Vec<u32>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub health_check_results: Vec<HealthCheckResult>,
    /// Fields not named above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Task {
    /// Whether every health check is alive (true without health checks).
    pub fn healthy(&self) -> bool {
        self.health_check_results.iter().all(|h| h.alive)
    }
}

/// One address of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: String,
    #[serde(default)]
    pub protocol: String,
}

/// The latest result of one health check of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    #[serde(default)]
    pub alive: bool,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a deployment-creating call answers: `{"deploymentId","version"}` (and `Marathon-Deployment-Id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRef {
    pub deployment_id: String,
    pub version: String,
}

/// A running Marathon deployment (`GET /v2/deployments`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub affected_apps: Vec<String>,
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
    #[serde(default)]
    pub current_actions: Vec<DeploymentAction>,
    #[serde(default)]
    pub current_step: u32,
    #[serde(default)]
    pub total_steps: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One step of a deployment plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStep {
    #[serde(default)]
    pub actions: Vec<DeploymentAction>,
}

/// One action: `StartApplication`, `ScaleApplication`, `RestartApplication`, `StopApplication`, ….
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentAction {
    /// Marathon writes `action`; very old versions wrote `type`.
    #[serde(default, alias = "type")]
    pub action: String,
    #[serde(default)]
    pub app: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Metronome job definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Job(pub Map<String, Value>);

impl Job {
    /// Wraps a JSON object; `None` when `value` is not an object.
    pub fn from_value(value: Value) -> Option<Job> {
        match value {
            Value::Object(map) => Some(Job(map)),
            _ => None,
        }
    }

    /// The job id (`prod.nightly-report`), or `""`.
    pub fn id(&self) -> &str {
        self.0.get("id").and_then(Value::as_str).unwrap_or("")
    }

    /// Any field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// One run of a Metronome job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    pub id: String,
    #[serde(default)]
    pub job_id: String,
    /// INITIAL, STARTING, ACTIVE, SUCCESS, FAILED.
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub tasks: Vec<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl JobRun {
    /// Whether the run has ended (SUCCESS or FAILED).
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "SUCCESS" | "FAILED")
    }
}

/// A Metronome schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub id: String,
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u64>,
    /// ALLOW or FORBID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_accessors_and_unknown_fields_survive() {
        let raw = serde_json::json!({
            "id": "/prod/api-v001", "instances": 3, "version": "2026-01-01T00:00:00.000Z",
            "labels": {"HAPROXY_GROUP": "prod_lb", "n": 1},
            "someFutureField": {"x": [1, 2]},
            "deployments": [{"id": "d1"}],
            "tasks": [{"id": "t1", "appId": "/prod/api-v001", "host": "a1", "state": "TASK_RUNNING",
                       "ports": [31000], "healthCheckResults": [{"alive": true, "consecutiveFailures": 0}],
                       "localVolumes": []}]
        });
        let app: App = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(app.id(), "/prod/api-v001");
        assert_eq!(app.instances(), Some(3));
        assert_eq!(app.labels().get("HAPROXY_GROUP").unwrap(), "prod_lb");
        assert_eq!(app.deployments(), vec!["d1"]);
        let tasks = app.tasks();
        assert_eq!(tasks[0].state.as_deref(), Some("TASK_RUNNING"));
        assert!(tasks[0].healthy());
        assert!(tasks[0].extra.contains_key("localVolumes"));
        assert_eq!(serde_json::to_value(&app).unwrap(), raw);
        let writable = app.writable();
        assert!(writable.get("tasks").is_none() && writable.get("version").is_none());
        assert!(writable.get("someFutureField").is_some());
    }

    #[test]
    fn deployment_parses_marathon_shape() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "id": "d1", "version": "v", "affectedApps": ["/a"],
            "steps": [{"actions": [{"action": "ScaleApplication", "app": "/a"}]}],
            "currentActions": [{"action": "ScaleApplication", "app": "/a", "readinessCheckResults": []}],
            "currentStep": 1, "totalSteps": 1
        }))
        .unwrap();
        assert_eq!(d.steps[0].actions[0].action, "ScaleApplication");
        assert_eq!(d.current_actions[0].app, "/a");
        assert_eq!((d.current_step, d.total_steps), (1, 1));
    }
}
