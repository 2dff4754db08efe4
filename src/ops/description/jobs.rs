//! Job descriptions (Metronome). A job id is dot-separated; a bare name goes under the account's
//! root (`/prod` → `prod.<name>`), and a dotted id must start with the root's parts.
//!
//! RUN_JOB takes clouddriver-dcos's `RunDcosJobDescription` fields (`general`, `docker`, `labels`,
//! `env`, `user`, `maxLaunchDelay`, `constraints`, `restartPolicy`, `artifacts`, `volumes`,
//! `schedule`), a raw Metronome job spec in `job`, or both: the clouddriver fields are applied over
//! the raw spec.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::app::DockerImage;
use super::Description;
use crate::dcos::{Job, Schedule};
use crate::ops::error::OpError;
use crate::ops::paths::Scope;

/// The lock key of a job.
pub fn job_lock_key(job_id: &str) -> String {
    format!("job:{job_id}")
}

/// A Metronome schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSchedule {
    /// Schedule id (default `default`).
    #[serde(default)]
    pub id: Option<String>,
    /// Cron expression (five fields).
    pub cron: String,
    /// Time zone of the cron expression (Metronome's default: UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Seconds a missed start may still happen late.
    #[serde(default)]
    pub starting_deadline_seconds: Option<u64>,
    /// `ALLOW` or `FORBID` (runs while one is active).
    #[serde(default)]
    pub concurrency_policy: Option<String>,
    /// Whether the schedule triggers runs (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl JobSchedule {
    /// The Metronome schedule (id `default` when none is given).
    pub fn to_schedule(&self) -> Schedule {
        Schedule {
            id: self.id.clone().unwrap_or_else(|| "default".into()),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            starting_deadline_seconds: self.starting_deadline_seconds,
            concurrency_policy: self.concurrency_policy.clone(),
            enabled: self.enabled,
            extra: Map::new(),
        }
    }

    fn validate(&self) -> Result<(), OpError> {
        if self.cron.split_whitespace().count() != 5 {
            return Err(OpError::invalid(
                "schedule.cron",
                format!("`{}` is not a five-field cron expression", self.cron),
            ));
        }
        if let Some(p) = self
            .concurrency_policy
            .as_deref()
            .filter(|p| !matches!(*p, "ALLOW" | "FORBID"))
        {
            return Err(OpError::invalid(
                "schedule.concurrencyPolicy",
                format!("`{p}` is not ALLOW or FORBID"),
            ));
        }
        Ok(())
    }
}

/// What a job runs, as overrides of a job spec's `run` (CLONE_JOB).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRunSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
    /// Docker image reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_launch_delay: Option<u64>,
}

impl JobRunSpec {
    /// Applies these overrides to a job spec's `run` object.
    pub fn apply(&self, run: &mut Map<String, Value>) {
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                run.insert(key.into(), value);
            }
        };
        set("cmd", self.cmd.clone().map(Value::from));
        set("args", self.args.clone().map(|a| json!(a)));
        set("cpus", self.cpus.map(Value::from));
        set("mem", self.mem.map(Value::from));
        set("disk", self.disk.map(Value::from));
        set("maxLaunchDelay", self.max_launch_delay.map(Value::from));
        if let Some(image) = &self.image {
            run.insert("docker".into(), json!({ "image": image }));
        }
        if let Some(env) = &self.env {
            merge_object(run, "env", env);
        }
    }
}

/// clouddriver's `general` block.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneralSettings {
    /// Job id or bare name (under the root).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub gpus: Option<f64>,
    /// MiB.
    #[serde(default)]
    pub mem: Option<f64>,
    /// MiB.
    #[serde(default)]
    pub disk: Option<f64>,
    #[serde(default)]
    pub cmd: Option<String>,
}

/// clouddriver's `docker` block.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerSettings {
    pub image: DockerImage,
}

/// A placement constraint (`{"attribute": "hostname", "operator": "LIKE", "value": "a.*"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobConstraint {
    pub attribute: String,
    /// `EQ`, `LIKE` or `UNLIKE`.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What Metronome does when a run fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    /// `NEVER` or `ON_FAILURE`.
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
}

/// RUN_JOB: create or update the job (and its schedule), start a run; optionally wait for its end.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunJobDescription {
    /// Job id or bare name (under the root); default `general.id`, then `job.id`.
    #[serde(default, alias = "name")]
    pub job_id: Option<String>,
    /// A raw Metronome job spec to start from.
    #[serde(default)]
    pub job: Option<Map<String, Value>>,
    /// clouddriver's general settings: id, description, cpus, gpus, mem, disk, cmd.
    #[serde(default)]
    pub general: Option<GeneralSettings>,
    /// The Docker image to run.
    #[serde(default)]
    pub docker: Option<DockerSettings>,
    /// Job labels (merged over `job.labels`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Environment (merged over `job.run.env`; values are strings or Metronome secret refs).
    #[serde(default)]
    pub env: Option<Map<String, Value>>,
    /// The user the run's task runs as.
    #[serde(default)]
    pub user: Option<String>,
    /// Seconds Metronome may delay a launch.
    #[serde(default)]
    pub max_launch_delay: Option<u64>,
    /// Placement constraints.
    #[serde(default)]
    pub constraints: Option<Vec<JobConstraint>>,
    /// Restart policy.
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// Artifacts to fetch (`{uri, executable, extract, cache}`), as Metronome takes them.
    #[serde(default)]
    pub artifacts: Option<Vec<Map<String, Value>>>,
    /// Volumes (`{containerPath, hostPath, mode}`), as Metronome takes them.
    #[serde(default)]
    pub volumes: Option<Vec<Map<String, Value>>>,
    /// A schedule to create or update (the run is started now as well).
    #[serde(default)]
    pub schedule: Option<JobSchedule>,
    /// Wait for the run to end (SUCCESS or FAILED) before the task ends (default false: the task
    /// ends once the run is started).
    #[serde(default, alias = "wait")]
    pub wait_for_completion: bool,
    /// Seconds to wait for the run (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl RunJobDescription {
    /// The job id under the root, from `jobId`, `general.id` or `job.id` (which must agree).
    pub fn job_id(&self, scope: &Scope) -> Result<String, OpError> {
        let given = [
            ("jobId", self.job_id.clone()),
            (
                "general.id",
                self.general.as_ref().and_then(|g| g.id.clone()),
            ),
            (
                "job.id",
                self.job
                    .as_ref()
                    .and_then(|j| j.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
        ];
        let mut resolved: Option<String> = None;
        for (field, value) in given {
            let Some(value) = value else { continue };
            let id = scope.job(field, &value)?;
            match &resolved {
                Some(first) if *first != id => {
                    return Err(OpError::invalid(
                        field,
                        format!("names job {id}, but the description already named {first}"),
                    ))
                }
                Some(_) => {}
                None => resolved = Some(id),
            }
        }
        resolved.ok_or_else(|| OpError::invalid("jobId", "give jobId, general.id or job.id"))
    }

    /// The Metronome job spec with id `job_id`: the other fields applied over `job` (a whole new
    /// definition) or else over the `existing` job (so `{"jobId": "x", "env": {…}}` changes only
    /// the environment of job x), with Metronome's minimum resources where nothing sets them.
    pub fn spec(&self, job_id: &str, existing: Option<&Job>) -> Job {
        let mut spec = match (&self.job, existing) {
            (Some(raw), _) => raw.clone(),
            (None, Some(existing)) => existing.0.clone(),
            (None, None) => Map::new(),
        };
        for embedded in EMBEDDED_FIELDS {
            spec.remove(*embedded);
        }
        spec.insert("id".into(), json!(job_id));
        if let Some(labels) = &self.labels {
            let labels: Map<String, Value> =
                labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            merge_object(&mut spec, "labels", &labels);
        }
        if let Some(description) = self.general.as_ref().and_then(|g| g.description.clone()) {
            spec.insert("description".into(), json!(description));
        }
        let run = spec.entry("run").or_insert_with(|| json!({}));
        if !run.is_object() {
            *run = json!({});
        }
        let run = run.as_object_mut().expect("an object");
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                run.insert(key.into(), value);
            }
        };
        if let Some(g) = &self.general {
            set("cpus", g.cpus.map(Value::from));
            set("gpus", g.gpus.map(Value::from));
            set("mem", g.mem.map(Value::from));
            set("disk", g.disk.map(Value::from));
            set("cmd", g.cmd.clone().map(Value::from));
        }
        set("user", self.user.clone().map(Value::from));
        set("maxLaunchDelay", self.max_launch_delay.map(Value::from));
        set(
            "docker",
            self.docker
                .as_ref()
                .map(|d| json!({ "image": d.image.reference() })),
        );
        set(
            "placement",
            self.constraints
                .as_ref()
                .map(|c| json!({ "constraints": c })),
        );
        set("restart", self.restart_policy.as_ref().map(|r| json!(r)));
        set("artifacts", self.artifacts.as_ref().map(|a| json!(a)));
        set("volumes", self.volumes.as_ref().map(|v| json!(v)));
        if let Some(env) = &self.env {
            merge_object(run, "env", env);
        }
        for (key, minimum) in [
            ("cpus", json!(1.0)),
            ("mem", json!(128)),
            ("disk", json!(0)),
        ] {
            run.entry(key).or_insert(minimum);
        }
        Job(spec)
    }
}

/// Fields Metronome adds to a job read with `embed=…`; never part of a definition.
pub const EMBEDDED_FIELDS: &[&str] = &["activeRuns", "history", "historySummary", "schedules"];

/// Merges `extra` into the object at `map[key]` (creating it; a non-object is replaced).
pub fn merge_object(map: &mut Map<String, Value>, key: &str, extra: &Map<String, Value>) {
    let target = map.entry(key).or_insert_with(|| json!({}));
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().expect("an object");
    for (k, v) in extra {
        target.insert(k.clone(), v.clone());
    }
}

/// DESTROY_JOB: delete the job, stopping its runs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestroyJobDescription {
    /// Job id or bare name (under the root).
    #[serde(alias = "name")]
    pub job_id: String,
}

/// The job a clone copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSource {
    /// The source account (default: the request's); it must be configured in this driver.
    #[serde(default)]
    pub account: Option<String>,
    /// Job id or bare name (under the source account's root).
    #[serde(alias = "name")]
    pub job_id: String,
}

/// CLONE_JOB: read a job (and its schedules), create it under a new id with overrides.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloneJobDescription {
    /// The job to copy.
    pub source: JobSource,
    /// The new job's id or bare name (under the root).
    #[serde(alias = "name")]
    pub job_id: String,
    /// Run settings applied over the copy.
    #[serde(default)]
    pub run: Option<JobRunSpec>,
    /// Labels merged over the copy's.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// A new description.
    #[serde(default)]
    pub description: Option<String>,
    /// Copy the source's schedules too (default true).
    #[serde(default = "yes")]
    pub copy_schedules: bool,
}

fn yes() -> bool {
    true
}

impl Description for RunJobDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn validate(&self) -> Result<(), OpError> {
        if let Some(schedule) = &self.schedule {
            schedule.validate()?;
        }
        if let Some(run) = self.job.as_ref().and_then(|j| j.get("run")) {
            if !run.is_object() {
                return Err(OpError::invalid("job.run", "must be an object"));
            }
        }
        Ok(())
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![job_lock_key(&self.job_id(scope)?)])
    }
}

impl Description for DestroyJobDescription {
    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![job_lock_key(&scope.job("jobId", &self.job_id)?)])
    }
}

impl Description for CloneJobDescription {
    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![job_lock_key(&scope.job("jobId", &self.job_id)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::description::parse;
    use crate::vocabulary::ErrorCode;

    fn scope() -> Scope {
        Scope::new("prod", "/prod")
    }

    #[test]
    fn clouddriver_fields_make_a_metronome_spec() {
        let d: RunJobDescription = parse(
            "prod",
            &json!({
                "general": {"id": "nightly", "cpus": 0.5, "mem": 64, "disk": 10, "cmd": "echo hi", "description": "d"},
                "docker": {"image": {"registry": "r.io", "repository": "team/x", "tag": "1.2"}},
                "labels": {"team": "a"},
                "env": {"A": "1"},
                "constraints": [{"attribute": "hostname", "operator": "LIKE", "value": "a.*"}],
                "restartPolicy": {"policy": "NEVER"},
                "schedule": {"cron": "0 * * * *"},
                "waitForCompletion": true
            }),
        )
        .unwrap();
        d.validate().unwrap();
        let id = d.job_id(&scope()).unwrap();
        assert_eq!(id, "prod.nightly");
        let spec = d.spec(&id, None).into_value();
        assert_eq!(spec["id"], "prod.nightly");
        assert_eq!(spec["description"], "d");
        assert_eq!(spec["labels"]["team"], "a");
        assert_eq!(spec["run"]["cpus"], 0.5);
        assert_eq!(spec["run"]["docker"]["image"], "r.io/team/x:1.2");
        assert_eq!(spec["run"]["env"]["A"], "1");
        assert_eq!(
            spec["run"]["placement"]["constraints"][0]["operator"],
            "LIKE"
        );
        assert_eq!(d.schedule.unwrap().to_schedule().id, "default");
    }

    #[test]
    fn raw_jobs_get_minimum_resources_and_ids_must_agree() {
        let d: RunJobDescription = parse(
            "prod",
            &json!({"job": {"id": "prod.a", "run": {"cmd": "true"}, "labels": {"x": "1"}}, "labels": {"y": "2"}}),
        )
        .unwrap();
        let spec = d.spec(&d.job_id(&scope()).unwrap(), None).into_value();
        assert_eq!(spec["run"]["mem"], 128);
        assert_eq!(spec["labels"], json!({"x": "1", "y": "2"}));
        // Without `job`, the fields change the existing definition and keep the rest.
        let existing = Job::from_value(
            json!({"id": "prod.a", "run": {"cmd": "x", "cpus": 2, "mem": 64, "disk": 0},
                                              "labels": {"keep": "1"}, "history": {}}),
        )
        .unwrap();
        let d: RunJobDescription =
            parse("prod", &json!({"jobId": "a", "env": {"E": "1"}})).unwrap();
        let spec = d.spec("prod.a", Some(&existing)).into_value();
        assert_eq!(spec["run"]["cmd"], "x");
        assert_eq!(spec["run"]["cpus"], 2);
        assert_eq!(spec["run"]["env"]["E"], "1");
        assert_eq!(spec["labels"]["keep"], "1");
        assert!(spec.get("history").is_none());
        let d: RunJobDescription = parse(
            "prod",
            &json!({"jobId": "a", "job": {"id": "prod.b", "run": {}}}),
        )
        .unwrap();
        let err = d.job_id(&scope()).unwrap_err();
        assert_eq!(err.to_task_error().details.unwrap()["field"], "job.id");
        let d: RunJobDescription = parse("prod", &json!({"jobId": "other.a"})).unwrap();
        assert_eq!(
            d.lock_keys(&scope()).unwrap_err().code(),
            ErrorCode::Forbidden
        );
        let d: RunJobDescription = parse("prod", &json!({})).unwrap();
        assert_eq!(
            d.lock_keys(&scope()).unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
        let d: RunJobDescription = parse(
            "prod",
            &json!({"jobId": "a", "schedule": {"cron": "every hour"}}),
        )
        .unwrap();
        assert_eq!(
            d.validate().unwrap_err().to_task_error().details.unwrap()["field"],
            "schedule.cron"
        );
    }
}
