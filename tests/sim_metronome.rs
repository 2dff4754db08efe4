//! The simulated Metronome over real HTTP: jobs, runs, schedules.

use std::time::Duration;

use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn sim() -> SimHandle {
    spawn(SimConfig::instant()).await.unwrap()
}

async fn call(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method, format!("{}{path}", sim.url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn job(id: &str, labels: Value) -> Value {
    json!({"id": id, "labels": labels, "run": {"cmd": "sleep 1", "cpus": 0.1, "mem": 32, "disk": 0}})
}

/// Polls until the run is finished and returns its final status.
async fn final_status(sim: &SimHandle, job_id: &str, run_id: &str) -> String {
    for _ in 0..500 {
        let run = sim.sim.metronome.run(job_id, run_id).expect("run known");
        if run.completed_at.is_some() {
            return run.status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} did not finish");
}

#[tokio::test]
async fn job_crud() {
    let sim = sim().await;
    use reqwest::Method;
    let (status, created) = call(
        &sim,
        Method::POST,
        "/v1/jobs",
        Some(job("prod.nightly-report", json!({}))),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["id"], "prod.nightly-report");
    let (status, body) = call(
        &sim,
        Method::POST,
        "/service/metronome/v1/jobs",
        Some(job("prod.nightly-report", json!({}))),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    let (status, list) = call(
        &sim,
        Method::GET,
        "/v1/jobs?embed=activeRuns&embed=schedules&embed=history",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], "prod.nightly-report");
    assert_eq!(list[0]["activeRuns"], json!([]));
    assert_eq!(list[0]["schedules"], json!([]));
    assert_eq!(list[0]["history"]["successCount"], 0);

    let mut changed = job("ignored", json!({"team": "ops"}));
    changed["run"]["mem"] = json!(64);
    let (status, updated) = call(
        &sim,
        Method::PUT,
        "/v1/jobs/prod.nightly-report",
        Some(changed),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["id"], "prod.nightly-report");
    let (_, got) = call(&sim, Method::GET, "/v1/jobs/prod.nightly-report", None).await;
    assert_eq!(got["run"]["mem"], 64);
    assert_eq!(got["labels"]["team"], "ops");

    let (status, _) = call(&sim, Method::DELETE, "/v1/jobs/prod.nightly-report", None).await;
    assert_eq!(status, 200);
    let (status, body) = call(&sim, Method::GET, "/v1/jobs/prod.nightly-report", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "Job 'prod.nightly-report' does not exist");
}

#[tokio::test]
async fn invalid_jobs_are_422_with_details() {
    let sim = sim().await;
    let cases = [
        (job("Bad_Id", json!({})), "/id"),
        (job("a..b", json!({})), "/id"),
        (job("trailing-", json!({})), "/id"),
        (json!({"id": "ok"}), "/run"),
        (
            json!({"id": "ok", "run": {"cpus": 0.001, "mem": 32, "disk": 0}}),
            "/run/cpus",
        ),
        (
            json!({"id": "ok", "run": {"cpus": 1, "mem": 16, "disk": 0}}),
            "/run/mem",
        ),
    ];
    for (spec, path) in cases {
        let (status, body) = call(&sim, reqwest::Method::POST, "/v1/jobs", Some(spec)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["message"], "Object is not valid");
        assert_eq!(body["details"][0]["path"], path, "{body}");
        assert!(body["details"][0]["errors"][0].is_string());
    }
}

#[tokio::test]
async fn runs_end_in_success_or_failure() {
    let sim = sim().await;
    use reqwest::Method;
    call(&sim, Method::POST, "/v1/jobs", Some(job("ok", json!({})))).await;
    call(
        &sim,
        Method::POST,
        "/v1/jobs",
        Some(job("bad", json!({"SIM_RUN": "fail"}))),
    )
    .await;
    let mut failing_cmd = job("bad-cmd", json!({}));
    failing_cmd["run"]["cmd"] = json!("echo hi; exit 1");
    call(&sim, Method::POST, "/v1/jobs", Some(failing_cmd)).await;

    for (id, expected) in [("ok", "SUCCESS"), ("bad", "FAILED"), ("bad-cmd", "FAILED")] {
        let (status, run) = call(&sim, Method::POST, &format!("/v1/jobs/{id}/runs"), None).await;
        assert_eq!(status, 201);
        assert_eq!(run["jobId"], id);
        assert_eq!(run["status"], "INITIAL");
        assert_eq!(run["completedAt"], Value::Null);
        assert_eq!(run["tasks"], json!([]));
        let run_id = run["id"].as_str().unwrap();
        assert_eq!(final_status(&sim, id, run_id).await, expected);
        // Like Metronome: a finished run is gone from /runs and found in the history.
        let (status, _) = call(
            &sim,
            Method::GET,
            &format!("/v1/jobs/{id}/runs/{run_id}"),
            None,
        )
        .await;
        assert_eq!(status, 404);
        let (_, job) = call(
            &sim,
            Method::GET,
            &format!("/v1/jobs/{id}?embed=history"),
            None,
        )
        .await;
        let list = if expected == "SUCCESS" {
            "successfulFinishedRuns"
        } else {
            "failedFinishedRuns"
        };
        assert_eq!(job["history"][list][0]["id"], run_id);
    }
}

#[tokio::test]
async fn run_goes_through_its_states_with_time() {
    let sim = spawn(SimConfig {
        time_scale: 0.05,
        ..SimConfig::instant()
    })
    .await
    .unwrap();
    use reqwest::Method;
    call(&sim, Method::POST, "/v1/jobs", Some(job("slow", json!({})))).await;
    let (_, run) = call(&sim, Method::POST, "/v1/jobs/slow/runs", None).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let mut seen = vec!["INITIAL".to_string()];
    loop {
        let run = sim.sim.metronome.run("slow", &run_id).unwrap();
        if seen.last() != Some(&run.status) {
            seen.push(run.status.clone());
        }
        if run.completed_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, ["INITIAL", "STARTING", "ACTIVE", "SUCCESS"]);
}

#[tokio::test]
async fn delete_with_active_run_is_409_unless_stopping_runs() {
    let sim = sim().await;
    use reqwest::Method;
    call(
        &sim,
        Method::POST,
        "/v1/jobs",
        Some(job("forever", json!({"SIM_RUN": "hang"}))),
    )
    .await;
    let (_, run) = call(&sim, Method::POST, "/v1/jobs/forever/runs", None).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let (status, runs) = call(&sim, Method::GET, "/v1/jobs/forever/runs", None).await;
    assert_eq!(status, 200);
    assert_eq!(runs[0]["id"], run_id.as_str());

    let (status, body) = call(&sim, Method::DELETE, "/v1/jobs/forever", None).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = call(
        &sim,
        Method::DELETE,
        "/v1/jobs/forever?stopCurrentJobRuns=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&sim, Method::GET, "/v1/jobs/forever", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn stopping_a_run_fails_it() {
    let sim = sim().await;
    use reqwest::Method;
    call(
        &sim,
        Method::POST,
        "/v1/jobs",
        Some(job("forever", json!({"SIM_RUN": "hang"}))),
    )
    .await;
    let (_, run) = call(&sim, Method::POST, "/v1/jobs/forever/runs", None).await;
    let run_id = run["id"].as_str().unwrap().to_string();
    let (status, _) = call(
        &sim,
        Method::POST,
        &format!("/v1/jobs/forever/runs/{run_id}/actions/stop"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(final_status(&sim, "forever", &run_id).await, "FAILED");
    let (status, body) = call(
        &sim,
        Method::POST,
        &format!("/v1/jobs/forever/runs/{run_id}/actions/stop"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], format!("JobRun '{run_id}' does not exist"));
}

#[tokio::test]
async fn schedules_crud() {
    let sim = sim().await;
    use reqwest::Method;
    call(&sim, Method::POST, "/v1/jobs", Some(job("cron", json!({})))).await;
    let (status, created) = call(
        &sim,
        Method::POST,
        "/v1/jobs/cron/schedules",
        Some(json!({"id": "nightly", "cron": "0 3 * * *"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["concurrencyPolicy"], "ALLOW");
    assert_eq!(created["enabled"], true);
    assert!(created["startingDeadlineSeconds"].is_number());
    let (status, _) = call(
        &sim,
        Method::POST,
        "/v1/jobs/cron/schedules",
        Some(json!({"id": "nightly", "cron": "0 3 * * *"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &sim,
        Method::POST,
        "/v1/jobs/cron/schedules",
        Some(json!({"id": "bad", "cron": "often"})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, updated) = call(
        &sim,
        Method::PUT,
        "/v1/jobs/cron/schedules/nightly",
        Some(json!({"id": "nightly", "cron": "0 4 * * *", "concurrencyPolicy": "FORBID", "enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["concurrencyPolicy"], "FORBID");
    let (_, list) = call(&sim, Method::GET, "/v1/jobs/cron/schedules", None).await;
    assert_eq!(list[0]["cron"], "0 4 * * *");
    let (_, job) = call(&sim, Method::GET, "/v1/jobs/cron?embed=schedules", None).await;
    assert_eq!(job["schedules"][0]["id"], "nightly");
    let (status, _) = call(
        &sim,
        Method::DELETE,
        "/v1/jobs/cron/schedules/nightly",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(&sim, Method::GET, "/v1/jobs/cron/schedules/nightly", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "Schedule 'nightly' does not exist");
}
