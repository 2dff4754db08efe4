//! Job descriptions (Metronome). A job id is dot-separated; a bare name goes under the account's
//! root (`/prod` → `prod.<name>`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Description;
use crate::ops::error::OpError;
use crate::ops::paths::Scope;

/// A Metronome schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSchedule {
    /// Schedule id (default `default`).
    #[serde(default)]
    pub id: Option<String>,
    /// Cron expression.
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub starting_deadline_seconds: Option<u64>,
    /// `ALLOW` or `FORBID`.
    #[serde(default)]
    pub concurrency_policy: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// What a job runs, as overrides of a job spec's `run`.
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

/// RUN_JOB: create or update the job (and its schedule), start a run; optionally wait for its end.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunJobDescription {
    /// Job id or bare name (under the root).
    #[serde(alias = "name")]
    pub job_id: String,
    /// A raw Metronome job spec to start from.
    #[serde(default)]
    pub job: Option<Map<String, Value>>,
    /// Run settings applied over `job.run`.
    #[serde(default)]
    pub run: Option<JobRunSpec>,
    /// Job labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// A schedule to create or update.
    #[serde(default)]
    pub schedule: Option<JobSchedule>,
    /// Wait for the run to end (SUCCESS or FAILED) before the task ends.
    #[serde(default)]
    pub wait: bool,
    /// Seconds to wait for the run (default 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
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
    /// The source account (default: the request's).
    #[serde(default)]
    pub account: Option<String>,
    /// Job id or bare name.
    pub job_id: String,
}

/// CLONE_JOB: read a job, create it under a new id with overrides.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloneJobDescription {
    /// The job to copy.
    pub source: JobSource,
    /// The new job's id or bare name (under the root).
    pub job_id: String,
    /// Run settings applied over the copy.
    #[serde(default)]
    pub run: Option<JobRunSpec>,
    /// Labels merged over the copy's.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Description for RunJobDescription {
    fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![format!("job:{}", scope.job("jobId", &self.job_id)?)])
    }
}

impl Description for DestroyJobDescription {
    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![format!("job:{}", scope.job("jobId", &self.job_id)?)])
    }
}

impl Description for CloneJobDescription {
    fn lock_keys(&self, scope: &Scope) -> Result<Vec<String>, OpError> {
        Ok(vec![format!("job:{}", scope.job("jobId", &self.job_id)?)])
    }
}
