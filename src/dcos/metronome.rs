//! The typed Metronome `/v1` API: jobs, runs and schedules.

use http::Method;
use serde_json::Value;

use super::error::DcosError;
use super::transport::{CallSpec, Service};
use super::types::{Job, JobRun, Schedule};
use super::DcosClient;

/// The Metronome API of one account; from [`DcosClient::metronome`]. Calls fail with
/// [`DcosError::NotConfigured`] when the account has no Metronome URL.
#[derive(Debug, Clone, Copy)]
pub struct Metronome<'a> {
    client: &'a DcosClient,
}

impl<'a> Metronome<'a> {
    pub(crate) fn new(client: &'a DcosClient) -> Self {
        Metronome { client }
    }

    /// `GET /v1/jobs`.
    pub async fn list_jobs(&self) -> Result<Vec<Job>, DcosError> {
        self.client
            .json(spec(Method::GET, "/v1/jobs", "jobs.list"))
            .await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn get_job(&self, id: &str) -> Result<Job, DcosError> {
        self.client
            .json(spec(Method::GET, job_path(id, ""), "jobs.get"))
            .await
    }

    /// `GET /v1/jobs/{id}?embed=…`: the job with `activeRuns`, `schedules`, `history` (finished runs:
    /// `successfulFinishedRuns` / `failedFinishedRuns`) or `historySummary` embedded.
    pub async fn get_job_embedded(&self, id: &str, embed: &[&str]) -> Result<Job, DcosError> {
        let mut call = spec(Method::GET, job_path(id, ""), "jobs.get");
        for what in embed {
            call = call.query("embed", what);
        }
        self.client.json(call).await
    }

    /// `POST /v1/jobs` (an existing id is `CONFLICT`, an invalid spec `DCOS_VALIDATION`).
    pub async fn create_job(&self, job: &Job) -> Result<Job, DcosError> {
        self.client
            .json(spec(Method::POST, "/v1/jobs", "jobs.create").json_body(job))
            .await
    }

    /// `PUT /v1/jobs/{id}`: replaces the job definition.
    pub async fn update_job(&self, id: &str, job: &Job) -> Result<Job, DcosError> {
        self.client
            .json(spec(Method::PUT, job_path(id, ""), "jobs.update").json_body(job))
            .await
    }

    /// `DELETE /v1/jobs/{id}?stopCurrentJobRuns=`: without it, active runs make this a `CONFLICT`.
    pub async fn delete_job(&self, id: &str, stop_current_job_runs: bool) -> Result<(), DcosError> {
        let call = spec(Method::DELETE, job_path(id, ""), "jobs.delete")
            .query("stopCurrentJobRuns", stop_current_job_runs);
        self.client.execute(call).await.map(|_| ())
    }

    /// `POST /v1/jobs/{id}/runs`: starts a run now.
    pub async fn start_run(&self, job_id: &str) -> Result<JobRun, DcosError> {
        let call = spec(Method::POST, job_path(job_id, "/runs"), "runs.start")
            .json_body(&Value::Object(Default::default()));
        self.client.json(call).await
    }

    /// `GET /v1/jobs/{id}/runs`: the active runs.
    pub async fn list_runs(&self, job_id: &str) -> Result<Vec<JobRun>, DcosError> {
        self.client
            .json(spec(Method::GET, job_path(job_id, "/runs"), "runs.list"))
            .await
    }

    /// `GET /v1/jobs/{id}/runs/{runId}`.
    pub async fn get_run(&self, job_id: &str, run_id: &str) -> Result<JobRun, DcosError> {
        let path = job_path(job_id, &format!("/runs/{run_id}"));
        self.client.json(spec(Method::GET, path, "runs.get")).await
    }

    /// `POST /v1/jobs/{id}/runs/{runId}/actions/stop`.
    pub async fn stop_run(&self, job_id: &str, run_id: &str) -> Result<(), DcosError> {
        let path = job_path(job_id, &format!("/runs/{run_id}/actions/stop"));
        self.client
            .execute(
                spec(Method::POST, path, "runs.stop").json_body(&Value::Object(Default::default())),
            )
            .await
            .map(|_| ())
    }

    /// `GET /v1/jobs/{id}/schedules`.
    pub async fn list_schedules(&self, job_id: &str) -> Result<Vec<Schedule>, DcosError> {
        self.client
            .json(spec(
                Method::GET,
                job_path(job_id, "/schedules"),
                "schedules.list",
            ))
            .await
    }

    /// `POST /v1/jobs/{id}/schedules`.
    pub async fn create_schedule(
        &self,
        job_id: &str,
        schedule: &Schedule,
    ) -> Result<Schedule, DcosError> {
        let call = spec(
            Method::POST,
            job_path(job_id, "/schedules"),
            "schedules.create",
        )
        .json_body(schedule);
        self.client.json(call).await
    }

    /// `PUT /v1/jobs/{id}/schedules/{scheduleId}`.
    pub async fn update_schedule(
        &self,
        job_id: &str,
        schedule: &Schedule,
    ) -> Result<Schedule, DcosError> {
        let path = job_path(job_id, &format!("/schedules/{}", schedule.id));
        let call = spec(Method::PUT, path, "schedules.update").json_body(schedule);
        self.client.json(call).await
    }

    /// `DELETE /v1/jobs/{id}/schedules/{scheduleId}`.
    pub async fn delete_schedule(&self, job_id: &str, schedule_id: &str) -> Result<(), DcosError> {
        let path = job_path(job_id, &format!("/schedules/{schedule_id}"));
        self.client
            .execute(spec(Method::DELETE, path, "schedules.delete"))
            .await
            .map(|_| ())
    }
}

fn spec(method: Method, path: impl Into<String>, endpoint: &'static str) -> CallSpec {
    CallSpec::new(Service::Metronome, method, path, endpoint)
}

/// Metronome job ids are dotted (`prod.nightly`), never slashed.
fn job_path(id: &str, suffix: &str) -> String {
    format!("/v1/jobs/{}{suffix}", id.trim_matches('/'))
}
