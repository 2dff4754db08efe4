//! Job operations (Metronome): run, destroy, clone.
//!
//! Decisions:
//! - RUN_JOB creates the job or updates it (`PUT`: a description without `job` changes only the
//!   fields it names), creates or updates the schedule when one is given, and starts a run now.
//!   With `waitForCompletion` it follows the run to its end; a FAILED run ends the task FAILED with
//!   `DEPLOYMENT_FAILED` (a run is to a job what a deployment is to an app), the message naming
//!   the run and the details carrying `jobId`, `runId`, `status`.
//! - Metronome answers 404 for a run that has finished; its end is then read from the job's
//!   `embed=history` (`successfulFinishedRuns` / `failedFinishedRuns`).
//! - A redelivered RUN_JOB never starts a second run: the run id is recorded in the progress as
//!   soon as the run exists and followed from there; if the earlier delivery died between starting
//!   the run and recording it, the newest run created since the task started (active or finished)
//!   is adopted instead of starting another.
//! - DESTROY_JOB stops the job's active runs (`stopCurrentJobRuns=true`); a job that is gone is
//!   `NOT_FOUND`, or success (`alreadyGone`) on a redelivery.
//! - CLONE_JOB copies the definition (and, by default, the schedules) under a new id, labelled with
//!   the task id, so a redelivery recognises its own clone; any other job with that id is
//!   `CONFLICT`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::context::OpContext;
use super::description::jobs::{
    merge_object, CloneJobDescription, DestroyJobDescription, RunJobDescription, EMBEDDED_FIELDS,
};
use super::error::OpError;
use super::TASK_ID_LABEL;
use crate::bus::Progress;
use crate::dcos::{DcosClient, DcosError, Job, JobRun, Schedule};
use crate::vocabulary::ErrorCode;

/// How far before the task's start a run may have been created and still count as the task's own
/// (clocks of the driver and Metronome differ a little).
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// RUN_JOB.
pub async fn run(
    ctx: &OpContext,
    d: &RunJobDescription,
    progress: &Progress,
) -> Result<Value, OpError> {
    let job_id = d.job_id(&ctx.scope)?;
    let mut result = Map::new();
    result.insert("jobId".into(), json!(job_id));
    let recorded = ctx
        .previous_progress("runId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (run_id, status) = match recorded {
        Some(run_id) => {
            let status = run_status(ctx, &job_id, &run_id).await?;
            result.insert("resumed".into(), json!(true));
            (run_id, status)
        }
        None => {
            let created = upsert_job(ctx, d, &job_id).await?;
            result.insert("created".into(), json!(created));
            if let Some(schedule) = &d.schedule {
                let schedule = upsert_schedule(ctx, &job_id, &schedule.to_schedule()).await?;
                result.insert("scheduleId".into(), json!(schedule));
            }
            let run = match adoptable_run(ctx, &job_id).await? {
                Some(run) => {
                    result.insert("resumed".into(), json!(true));
                    run
                }
                None => ctx.client.metronome().start_run(&job_id).await?,
            };
            progress
                .update(
                    format!("run {} of job {job_id}: {}", run.id, run.status),
                    Some(json!({ "jobId": job_id, "runId": run.id, "status": run.status })),
                )
                .await;
            (run.id, run.status)
        }
    };
    result.insert("runId".into(), json!(run_id));
    let status = if d.wait_for_completion {
        follow_run(ctx, &job_id, &run_id, status, progress).await?
    } else {
        status
    };
    result.insert("status".into(), json!(status));
    Ok(Value::Object(result))
}

/// Creates the job, or updates it; true when it was created.
async fn upsert_job(ctx: &OpContext, d: &RunJobDescription, job_id: &str) -> Result<bool, OpError> {
    let metronome = ctx.client.metronome();
    match metronome.get_job(job_id).await {
        Ok(existing) => {
            metronome
                .update_job(job_id, &d.spec(job_id, Some(&existing)))
                .await?;
            Ok(false)
        }
        Err(DcosError::NotFound { .. }) => {
            match metronome.create_job(&d.spec(job_id, None)).await {
                Ok(_) => Ok(true),
                // Created between the read and the create: update what is there.
                Err(DcosError::Conflict { .. }) => {
                    let existing = metronome.get_job(job_id).await?;
                    metronome
                        .update_job(job_id, &d.spec(job_id, Some(&existing)))
                        .await?;
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates or updates one schedule of a job; its id.
async fn upsert_schedule(
    ctx: &OpContext,
    job_id: &str,
    schedule: &Schedule,
) -> Result<String, OpError> {
    let metronome = ctx.client.metronome();
    let exists = metronome
        .list_schedules(job_id)
        .await?
        .iter()
        .any(|s| s.id == schedule.id);
    if exists {
        metronome.update_schedule(job_id, schedule).await?;
    } else {
        metronome.create_schedule(job_id, schedule).await?;
    }
    Ok(schedule.id.clone())
}

/// On a redelivery that recorded no run: the newest run of the job created since the task
/// started, active or finished (the earlier delivery's, most likely).
async fn adoptable_run(ctx: &OpContext, job_id: &str) -> Result<Option<JobRun>, OpError> {
    let Some(previous) = &ctx.previous else {
        return Ok(None);
    };
    let since = previous.started_at - chrono::Duration::from_std(CLOCK_SLACK).unwrap_or_default();
    let job = ctx
        .client
        .metronome()
        .get_job_embedded(job_id, &["activeRuns", "history"])
        .await?;
    let mut runs: Vec<JobRun> = job
        .get("activeRuns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_value::<JobRun>(r.clone()).ok())
        .collect();
    for (list, status) in [
        ("successfulFinishedRuns", "SUCCESS"),
        ("failedFinishedRuns", "FAILED"),
    ] {
        for run in history_runs(&job, list) {
            runs.push(JobRun {
                id: run,
                job_id: job_id.to_string(),
                status: status.into(),
                ..JobRun::default()
            });
        }
    }
    let created = |run: &JobRun| -> Option<DateTime<Utc>> {
        let at = run
            .created_at
            .clone()
            .or_else(|| history_created(&job, &run.id))?;
        parse_time(&at)
    };
    Ok(runs
        .into_iter()
        .filter_map(|r| created(&r).map(|at| (at, r)))
        .filter(|(at, _)| *at >= since)
        .max_by_key(|(at, _)| *at)
        .map(|(_, run)| run))
}

/// Metronome's timestamps: `2026-01-01T10:00:00.000+0000` (or RFC 3339).
fn parse_time(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(at))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Run ids in one list of a job's `history`.
fn history_runs(job: &Job, list: &str) -> Vec<String> {
    job.get("history")
        .and_then(|h| h.get(list))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn history_created(job: &Job, run_id: &str) -> Option<String> {
    let history = job.get("history")?;
    ["successfulFinishedRuns", "failedFinishedRuns"]
        .iter()
        .filter_map(|list| history.get(*list).and_then(Value::as_array))
        .flatten()
        .find(|r| r.get("id").and_then(Value::as_str) == Some(run_id))
        .and_then(|r| r.get("createdAt").and_then(Value::as_str))
        .map(str::to_string)
}

/// A run's status: from the run while it is active, from the job's history once it has finished.
async fn run_status(ctx: &OpContext, job_id: &str, run_id: &str) -> Result<String, OpError> {
    let metronome = ctx.client.metronome();
    match metronome.get_run(job_id, run_id).await {
        Ok(run) => return Ok(run.status),
        Err(DcosError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let job = metronome.get_job_embedded(job_id, &["history"]).await?;
    if history_runs(&job, "successfulFinishedRuns")
        .iter()
        .any(|r| r == run_id)
    {
        return Ok("SUCCESS".into());
    }
    if history_runs(&job, "failedFinishedRuns")
        .iter()
        .any(|r| r == run_id)
    {
        return Ok("FAILED".into());
    }
    Err(OpError::failed(
        ErrorCode::NotFound,
        format!("run {run_id} of job {job_id} is neither active nor in the job's history"),
    ))
}

/// Polls the run until it ends: SUCCESS is the answer, FAILED is `DEPLOYMENT_FAILED`, the
/// request's time running out is `TIMEOUT` (the run goes on).
async fn follow_run(
    ctx: &OpContext,
    job_id: &str,
    run_id: &str,
    mut status: String,
    progress: &Progress,
) -> Result<String, OpError> {
    let mut delay = ctx.wait_settings.first_poll;
    loop {
        match status.as_str() {
            "SUCCESS" => return Ok(status),
            "FAILED" => {
                return Err(OpError::failed(
                    ErrorCode::DeploymentFailed,
                    format!("run {run_id} of job {job_id} ended FAILED"),
                )
                .with_details(json!({ "jobId": job_id, "runId": run_id, "status": status })))
            }
            _ => {}
        }
        if Instant::now() >= ctx.deadline {
            return Err(OpError::failed(
                ErrorCode::Timeout,
                format!(
                    "run {run_id} of job {job_id} did not end within {} s (last status {status}); it keeps running",
                    ctx.timeout.as_secs()
                ),
            )
            .with_details(json!({ "jobId": job_id, "runId": run_id, "status": status })));
        }
        tokio::time::sleep(delay.min(ctx.remaining())).await;
        delay = (delay * 2).min(ctx.wait_settings.poll_interval);
        let now = run_status(ctx, job_id, run_id).await?;
        if now != status {
            progress
                .update(
                    format!("run {run_id} of job {job_id}: {now}"),
                    Some(json!({ "jobId": job_id, "runId": run_id, "status": now })),
                )
                .await;
            status = now;
        }
    }
}

/// DESTROY_JOB.
pub async fn destroy(
    ctx: &OpContext,
    d: &DestroyJobDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    let job_id = ctx.scope.job("jobId", &d.job_id)?;
    let metronome = ctx.client.metronome();
    let gone = |ctx: &OpContext| {
        if ctx.is_resumed() {
            Ok(json!({ "jobId": job_id, "destroyed": true, "alreadyGone": true }))
        } else {
            Err(OpError::failed(
                ErrorCode::NotFound,
                format!("job {job_id} does not exist"),
            ))
        }
    };
    let active = match metronome.list_runs(&job_id).await {
        Ok(runs) => runs,
        Err(DcosError::NotFound { .. }) => return gone(ctx),
        Err(e) => return Err(e.into()),
    };
    match metronome.delete_job(&job_id, true).await {
        Ok(()) => {}
        Err(DcosError::NotFound { .. }) => return gone(ctx),
        Err(e) => return Err(e.into()),
    }
    let stopped: Vec<String> = active.into_iter().map(|r| r.id).collect();
    Ok(json!({ "jobId": job_id, "destroyed": true, "stoppedRuns": stopped }))
}

/// CLONE_JOB.
pub async fn clone(
    ctx: &OpContext,
    d: &CloneJobDescription,
    _progress: &Progress,
) -> Result<Value, OpError> {
    let target = ctx.scope.job("jobId", &d.job_id)?;
    let source_account = d
        .source
        .account
        .clone()
        .unwrap_or_else(|| ctx.account_name().to_string());
    let (source_scope, source_client): (_, DcosClient) = if source_account == ctx.account_name() {
        (ctx.scope.clone(), ctx.client.clone())
    } else {
        ctx.other_account(&source_account)?
    };
    let source_id = source_scope.job("source.jobId", &d.source.job_id)?;
    if source_id == target && source_account == ctx.account_name() {
        return Err(OpError::invalid(
            "jobId",
            "the clone needs an id of its own (it is the source's)",
        ));
    }
    let mut result = Map::new();
    result.insert("jobId".into(), json!(target));
    result.insert("sourceJobId".into(), json!(source_id));
    result.insert("sourceAccount".into(), json!(source_account));
    let metronome = ctx.client.metronome();
    match metronome.get_job(&target).await {
        Ok(existing) if is_mine(ctx, &existing) => {
            result.insert("resumed".into(), json!(true));
            return Ok(Value::Object(result));
        }
        Ok(_) => {
            return Err(OpError::failed(
                ErrorCode::Conflict,
                format!("job {target} already exists"),
            ))
        }
        Err(DcosError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let source = match source_client.metronome().get_job(&source_id).await {
        Ok(job) => job,
        Err(DcosError::NotFound { .. }) => {
            return Err(OpError::failed(
                ErrorCode::NotFound,
                format!("source job {source_id} does not exist"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let spec = clone_spec(ctx, d, source, &target);
    metronome.create_job(&spec).await?;
    let mut schedules = Vec::new();
    if d.copy_schedules {
        for schedule in source_client.metronome().list_schedules(&source_id).await? {
            schedules.push(upsert_schedule(ctx, &target, &schedule).await?);
        }
    }
    result.insert("schedules".into(), json!(schedules));
    Ok(Value::Object(result))
}

/// Whether a job was made by this task (an earlier delivery of it).
fn is_mine(ctx: &OpContext, job: &Job) -> bool {
    job.get("labels")
        .and_then(|l| l.get(TASK_ID_LABEL))
        .and_then(Value::as_str)
        == Some(ctx.task_id.as_str())
}

/// The source's definition under the new id, with the overrides and the task id label.
fn clone_spec(ctx: &OpContext, d: &CloneJobDescription, source: Job, target: &str) -> Job {
    let mut spec = source.0;
    for embedded in EMBEDDED_FIELDS {
        spec.remove(*embedded);
    }
    spec.insert("id".into(), json!(target));
    if let Some(description) = &d.description {
        spec.insert("description".into(), json!(description));
    }
    let mut labels: Map<String, Value> = d
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(TASK_ID_LABEL.into(), json!(ctx.task_id));
    merge_object(&mut spec, "labels", &labels);
    if let Some(overrides) = &d.run {
        let run = spec.entry("run").or_insert_with(|| json!({}));
        if let Some(run) = run.as_object_mut() {
            overrides.apply(run);
        }
    }
    Job(spec)
}
