//! Simulated Metronome: jobs, runs and schedules (mounted at `/` and `/service/metronome`).
//!
//! As Metronome does, `GET …/runs` and `GET …/runs/{runId}` know only *active* runs: a finished run
//! answers 404 and shows up in the job's `embed=history` (`successfulFinishedRuns`/`failedFinishedRuns`).
//! In-process tests can read any run, finished or not, with [`Metronome::run`].
//!
//! A run goes INITIAL → STARTING → ACTIVE → SUCCESS, about one second per step (scaled by the
//! simulator clock). Conventions that steer a run (label or `run.env` entry, label first):
//! - `SIM_RUN=fail` (or a `run.cmd` containing `exit 1`): the run ends FAILED;
//! - `SIM_RUN=hang`: the run stays ACTIVE until stopped (or its job deleted with `stopCurrentJobRuns`);
//! - `SIM_RUN_SECONDS=<n>`: the ACTIVE phase lasts n seconds (scaled) instead of one.
//!
//! Stopping a run ends it FAILED. Schedules are stored and validated but never trigger runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};

mod spec;

use spec::{invalid, normalize_job, normalize_schedule, parse_body};

use super::{Sim, SimConfig};

/// One simulated step of a run (INITIAL → STARTING, STARTING → ACTIVE), before scaling.
const STEP: Duration = Duration::from_secs(1);

/// Metronome's in-memory state.
pub struct Metronome {
    jobs: Mutex<BTreeMap<String, Job>>,
}

struct Job {
    spec: Value,
    schedules: BTreeMap<String, Value>,
    active: BTreeMap<String, Run>,
    finished: Vec<Run>,
}

/// A run as Metronome shows it.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub job_id: String,
    pub status: String,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub tasks: Vec<Value>,
}

impl Run {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "jobId": self.job_id,
            "status": self.status,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
            "tasks": self.tasks,
        })
    }
}

/// How a run behaves, read from the job's labels and env.
struct RunPlan {
    fails: bool,
    hangs: bool,
    active_for: Duration,
}

impl RunPlan {
    fn of(spec: &Value) -> RunPlan {
        let setting = |name: &str| {
            spec["labels"][name]
                .as_str()
                .or_else(|| spec["run"]["env"][name].as_str())
                .map(str::to_string)
        };
        let mode = setting("SIM_RUN").unwrap_or_default();
        let cmd_fails = spec["run"]["cmd"]
            .as_str()
            .is_some_and(|c| c.contains("exit 1"));
        let seconds = setting("SIM_RUN_SECONDS")
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(1.0)
            .max(0.0);
        RunPlan {
            fails: mode == "fail" || cmd_fails,
            hangs: mode == "hang",
            active_for: Duration::from_secs_f64(seconds),
        }
    }
}

impl Metronome {
    pub fn new(_config: &SimConfig) -> Self {
        Metronome {
            jobs: Mutex::new(BTreeMap::new()),
        }
    }

    /// A run of a job, active or finished (`None` if unknown).
    pub fn run(&self, job_id: &str, run_id: &str) -> Option<Run> {
        let jobs = self.jobs.lock();
        let job = jobs.get(job_id)?;
        job.active
            .get(run_id)
            .or_else(|| job.finished.iter().find(|r| r.id == run_id))
            .cloned()
    }

    /// Ids of all jobs.
    pub fn job_ids(&self) -> Vec<String> {
        self.jobs.lock().keys().cloned().collect()
    }
}

fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

fn run_id() -> String {
    use rand::Rng;
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(5)
        .map(|c| (c as char).to_ascii_uppercase())
        .collect();
    format!("{}{suffix}", chrono::Utc::now().format("%Y%m%d%H%M%S"))
}

fn message(status: StatusCode, text: String) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

fn job_missing(id: &str) -> Response {
    message(StatusCode::NOT_FOUND, format!("Job '{id}' does not exist"))
}

/// Every value of a repeated query parameter.
fn query_values(query: &Option<String>, name: &str) -> Vec<String> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .collect()
}

fn query_flag(query: &Option<String>, name: &str) -> bool {
    query_values(query, name)
        .iter()
        .any(|v| v.eq_ignore_ascii_case("true"))
}

fn job_json(job: &Job, embed: &[String]) -> Value {
    let mut out = job.spec.clone();
    let object = out.as_object_mut().expect("job spec is an object");
    for what in embed {
        match what.as_str() {
            "activeRuns" => {
                let runs: Vec<Value> = job.active.values().map(Run::to_json).collect();
                object.insert("activeRuns".into(), Value::Array(runs));
            }
            "schedules" => {
                let schedules: Vec<Value> = job.schedules.values().cloned().collect();
                object.insert("schedules".into(), Value::Array(schedules));
            }
            "history" | "historySummary" => {
                let (ok, failed): (Vec<&Run>, Vec<&Run>) =
                    job.finished.iter().partition(|r| r.status == "SUCCESS");
                let last = |runs: &[&Run]| runs.last().and_then(|r| r.completed_at.clone());
                let mut history = json!({
                    "successCount": ok.len(),
                    "failureCount": failed.len(),
                    "lastSuccessAt": last(&ok),
                    "lastFailureAt": last(&failed),
                });
                let key = if what == "history" {
                    let list = |runs: &[&Run]| -> Vec<Value> {
                        runs.iter()
                            .map(|r| json!({"id": r.id, "createdAt": r.created_at, "finishedAt": r.completed_at}))
                            .collect()
                    };
                    history["successfulFinishedRuns"] = Value::Array(list(&ok));
                    history["failedFinishedRuns"] = Value::Array(list(&failed));
                    "history"
                } else {
                    "historySummary"
                };
                object.insert(key.into(), history);
            }
            _ => {}
        }
    }
    out
}

async fn list_jobs(State(sim): State<Arc<Sim>>, RawQuery(query): RawQuery) -> Json<Value> {
    let embed = query_values(&query, "embed");
    let jobs = sim.metronome.jobs.lock();
    Json(Value::Array(
        jobs.values().map(|job| job_json(job, &embed)).collect(),
    ))
}

async fn create_job(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let spec = match parse_body(&body).map(normalize_job) {
        Ok(Ok(spec)) => spec,
        Ok(Err(details)) => return invalid(details),
        Err(e) => return e.into_response(),
    };
    let id = spec["id"].as_str().unwrap_or_default().to_string();
    let mut jobs = sim.metronome.jobs.lock();
    if jobs.contains_key(&id) {
        return message(
            StatusCode::CONFLICT,
            format!("Job with id '{id}' already exists"),
        );
    }
    jobs.insert(
        id,
        Job {
            spec: spec.clone(),
            schedules: BTreeMap::new(),
            active: BTreeMap::new(),
            finished: Vec::new(),
        },
    );
    (StatusCode::CREATED, Json(spec)).into_response()
}

async fn get_job(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let embed = query_values(&query, "embed");
    match sim.metronome.jobs.lock().get(&id) {
        Some(job) => Json(job_json(job, &embed)).into_response(),
        None => job_missing(&id),
    }
}

async fn put_job(State(sim): State<Arc<Sim>>, Path(id): Path<String>, body: Bytes) -> Response {
    let mut spec = match parse_body(&body) {
        Ok(spec) => spec,
        Err(e) => return e.into_response(),
    };
    spec["id"] = json!(id);
    let spec = match normalize_job(spec) {
        Ok(spec) => spec,
        Err(details) => return invalid(details),
    };
    match sim.metronome.jobs.lock().get_mut(&id) {
        Some(job) => {
            job.spec = spec.clone();
            Json(spec).into_response()
        }
        None => job_missing(&id),
    }
}

async fn delete_job(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get(&id) else {
        return job_missing(&id);
    };
    if !job.active.is_empty() && !query_flag(&query, "stopCurrentJobRuns") {
        return message(
            StatusCode::CONFLICT,
            format!(
                "Job '{id}' has active runs. Use stopCurrentJobRuns=true to stop them and delete the job."
            ),
        );
    }
    let job = jobs.remove(&id).expect("checked above");
    Json(job.spec).into_response()
}

async fn list_runs(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    match sim.metronome.jobs.lock().get(&id) {
        Some(job) => Json(Value::Array(
            job.active.values().map(Run::to_json).collect(),
        ))
        .into_response(),
        None => job_missing(&id),
    }
}

async fn start_run(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    let (run, plan) = {
        let mut jobs = sim.metronome.jobs.lock();
        let Some(job) = jobs.get_mut(&id) else {
            return job_missing(&id);
        };
        let run = Run {
            id: run_id(),
            job_id: id.clone(),
            status: "INITIAL".into(),
            created_at: timestamp(),
            completed_at: None,
            tasks: Vec::new(),
        };
        job.active.insert(run.id.clone(), run.clone());
        (run, RunPlan::of(&job.spec))
    };
    tokio::spawn(drive_run(sim.clone(), id, run.id.clone(), plan));
    (StatusCode::CREATED, Json(run.to_json())).into_response()
}

/// Moves a run through its states; stops when the run is no longer active (stopped, job deleted).
async fn drive_run(sim: Arc<Sim>, job_id: String, run_id: String, plan: RunPlan) {
    let task_id = format!("{job_id}_{run_id}.{}", uuid::Uuid::new_v4());
    let step = |status: &'static str| {
        let mut jobs = sim.metronome.jobs.lock();
        let Some(run) = jobs
            .get_mut(&job_id)
            .and_then(|job| job.active.get_mut(&run_id))
        else {
            return false;
        };
        run.status = status.into();
        if status == "ACTIVE" {
            run.tasks = vec![json!({
                "id": task_id,
                "status": "TASK_RUNNING",
                "startedAt": timestamp(),
                "completedAt": null,
            })];
        }
        true
    };
    sim.clock.sleep(STEP).await;
    if !step("STARTING") {
        return;
    }
    sim.clock.sleep(STEP).await;
    if !step("ACTIVE") || plan.hangs {
        return;
    }
    sim.clock.sleep(plan.active_for).await;
    let status = if plan.fails { "FAILED" } else { "SUCCESS" };
    let task_status = if plan.fails {
        "TASK_FAILED"
    } else {
        "TASK_FINISHED"
    };
    finish_run(&sim, &job_id, &run_id, status, task_status);
}

/// Ends an active run with `status`; false if it was not active.
fn finish_run(sim: &Sim, job_id: &str, run_id: &str, status: &str, task_status: &str) -> bool {
    let mut jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get_mut(job_id) else {
        return false;
    };
    let Some(mut run) = job.active.remove(run_id) else {
        return false;
    };
    let now = timestamp();
    run.status = status.into();
    run.completed_at = Some(now.clone());
    for task in &mut run.tasks {
        task["status"] = json!(task_status);
        task["completedAt"] = json!(now);
    }
    job.finished.push(run);
    true
}

async fn get_run(
    State(sim): State<Arc<Sim>>,
    Path((id, run_id)): Path<(String, String)>,
) -> Response {
    let jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get(&id) else {
        return job_missing(&id);
    };
    match job.active.get(&run_id) {
        Some(run) => Json(run.to_json()).into_response(),
        None => message(
            StatusCode::NOT_FOUND,
            format!("JobRun '{run_id}' does not exist"),
        ),
    }
}

async fn stop_run(
    State(sim): State<Arc<Sim>>,
    Path((id, run_id)): Path<(String, String)>,
) -> Response {
    if !sim.metronome.jobs.lock().contains_key(&id) {
        return job_missing(&id);
    }
    if finish_run(&sim, &id, &run_id, "FAILED", "TASK_KILLED") {
        Json(json!({})).into_response()
    } else {
        message(
            StatusCode::NOT_FOUND,
            format!("JobRun '{run_id}' does not exist"),
        )
    }
}

async fn list_schedules(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    match sim.metronome.jobs.lock().get(&id) {
        Some(job) => Json(Value::Array(job.schedules.values().cloned().collect())).into_response(),
        None => job_missing(&id),
    }
}

async fn create_schedule(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let spec = match parse_body(&body).map(normalize_schedule) {
        Ok(Ok(spec)) => spec,
        Ok(Err(details)) => return invalid(details),
        Err(e) => return e.into_response(),
    };
    let mut jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get_mut(&id) else {
        return job_missing(&id);
    };
    let schedule_id = spec["id"].as_str().unwrap_or_default().to_string();
    if job.schedules.contains_key(&schedule_id) {
        return message(
            StatusCode::CONFLICT,
            format!("Schedule with id '{schedule_id}' already exists"),
        );
    }
    job.schedules.insert(schedule_id, spec.clone());
    (StatusCode::CREATED, Json(spec)).into_response()
}

fn schedule_missing(id: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        format!("Schedule '{id}' does not exist"),
    )
}

async fn get_schedule(
    State(sim): State<Arc<Sim>>,
    Path((id, schedule_id)): Path<(String, String)>,
) -> Response {
    let jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get(&id) else {
        return job_missing(&id);
    };
    match job.schedules.get(&schedule_id) {
        Some(s) => Json(s.clone()).into_response(),
        None => schedule_missing(&schedule_id),
    }
}

async fn put_schedule(
    State(sim): State<Arc<Sim>>,
    Path((id, schedule_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut spec = match parse_body(&body) {
        Ok(spec) => spec,
        Err(e) => return e.into_response(),
    };
    spec["id"] = json!(schedule_id);
    let spec = match normalize_schedule(spec) {
        Ok(spec) => spec,
        Err(details) => return invalid(details),
    };
    let mut jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get_mut(&id) else {
        return job_missing(&id);
    };
    match job.schedules.get_mut(&schedule_id) {
        Some(s) => {
            *s = spec.clone();
            Json(spec).into_response()
        }
        None => schedule_missing(&schedule_id),
    }
}

async fn delete_schedule(
    State(sim): State<Arc<Sim>>,
    Path((id, schedule_id)): Path<(String, String)>,
) -> Response {
    let mut jobs = sim.metronome.jobs.lock();
    let Some(job) = jobs.get_mut(&id) else {
        return job_missing(&id);
    };
    match job.schedules.remove(&schedule_id) {
        Some(_) => StatusCode::OK.into_response(),
        None => schedule_missing(&schedule_id),
    }
}

/// Metronome's routes (mounted at `/` and `/service/metronome`).
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1/jobs", get(list_jobs).post(create_job))
        .route(
            "/v1/jobs/{id}",
            get(get_job).put(put_job).delete(delete_job),
        )
        .route("/v1/jobs/{id}/runs", get(list_runs).post(start_run))
        .route("/v1/jobs/{id}/runs/{run_id}", get(get_run))
        .route("/v1/jobs/{id}/runs/{run_id}/actions/stop", post(stop_run))
        .route("/v1/jobs/{id}/runs/{run_id}/action/stop", post(stop_run))
        .route(
            "/v1/jobs/{id}/schedules",
            get(list_schedules).post(create_schedule),
        )
        .route(
            "/v1/jobs/{id}/schedules/{schedule_id}",
            get(get_schedule).put(put_schedule).delete(delete_schedule),
        )
}
