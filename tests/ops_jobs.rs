//! Job operations end to end against the simulated Metronome (account `test`, jobs `test.<name>`).
//! Run behaviour follows the simulator's conventions: label `SIM_RUN=fail|hang`.

mod common;

use common::outcome::{error_code, interrupted, result};
use common::Harness;
use dcos_driver::bus::TaskStatus;
use dcos_driver::vocabulary::ErrorCode;
use serde_json::{json, Value};

/// `GET <sim>/v1/jobs/<id>?embed=…` (`None` on 404).
async fn job(h: &Harness, id: &str, embed: &str) -> Option<Value> {
    let answer = reqwest::get(format!("{}/v1/jobs/{id}?embed={embed}", h.sim.url()))
        .await
        .unwrap();
    if answer.status() == 404 {
        return None;
    }
    Some(answer.json().await.unwrap())
}

/// All runs of a job the simulator knows: active and finished.
async fn run_count(h: &Harness, id: &str) -> usize {
    let job = job(h, id, "history").await.unwrap();
    let active = reqwest::get(format!("{}/v1/jobs/{id}/runs", h.sim.url()))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .len();
    let history = &job["history"];
    active
        + history["successfulFinishedRuns"].as_array().unwrap().len()
        + history["failedFinishedRuns"].as_array().unwrap().len()
}

#[tokio::test]
async fn run_job_creates_runs_and_waits_for_success() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"general": {"id": "hello", "cmd": "echo hi", "cpus": 0.1, "mem": 32, "disk": 0},
                   "labels": {"team": "a"}, "env": {"GREETING": "hi"},
                   "schedule": {"id": "nightly", "cron": "0 3 * * *", "enabled": false},
                   "waitForCompletion": true}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["jobId"], "test.hello");
    assert_eq!(r["status"], "SUCCESS");
    assert_eq!(r["created"], true);
    assert_eq!(r["scheduleId"], "nightly");
    let run_id = r["runId"].as_str().unwrap();
    let run = h.sim.sim.metronome.run("test.hello", run_id).unwrap();
    assert_eq!(run.status, "SUCCESS");
    let spec = job(&h, "test.hello", "schedules").await.unwrap();
    assert_eq!(spec["run"]["cmd"], "echo hi");
    assert_eq!(spec["run"]["env"]["GREETING"], "hi");
    assert_eq!(spec["labels"]["team"], "a");
    assert_eq!(spec["schedules"][0]["cron"], "0 3 * * *");

    // Running it again updates the job (only what is named) and starts a second run.
    let doc = h
        .run(
            "run_job",
            json!({"jobId": "hello", "env": {"GREETING": "hello"}, "waitForCompletion": true}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["created"], false);
    assert_ne!(r["runId"], json!(run_id));
    let spec = job(&h, "test.hello", "").await.unwrap();
    assert_eq!(spec["run"]["cmd"], "echo hi");
    assert_eq!(spec["run"]["env"]["GREETING"], "hello");
    assert_eq!(run_count(&h, "test.hello").await, 2);
}

#[tokio::test]
async fn a_failing_run_fails_the_task_with_a_clear_error() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"job": {"id": "test.broken", "run": {"cmd": "false", "cpus": 0.1, "mem": 32, "disk": 0}},
                   "labels": {"SIM_RUN": "fail"}, "waitForCompletion": true}),
        )
        .await;
    assert_eq!(doc.status, TaskStatus::Failed, "{doc:#?}");
    let error = doc.error.unwrap();
    assert_eq!(error.code, ErrorCode::DeploymentFailed);
    assert!(error.message.contains("ended FAILED"), "{}", error.message);
    let details = error.details.unwrap();
    assert_eq!(details["jobId"], "test.broken");
    assert_eq!(details["status"], "FAILED");
    let run = h
        .sim
        .sim
        .metronome
        .run("test.broken", details["runId"].as_str().unwrap())
        .unwrap();
    assert_eq!(run.status, "FAILED");
}

#[tokio::test]
async fn without_waiting_the_task_ends_once_the_run_started() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"jobId": "sleeper", "general": {"cmd": "sleep 100"}, "labels": {"SIM_RUN": "hang"}}),
        )
        .await;
    let r = result(&doc);
    assert!(
        ["INITIAL", "STARTING", "ACTIVE"].contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    let run = h
        .sim
        .sim
        .metronome
        .run("test.sleeper", r["runId"].as_str().unwrap())
        .unwrap();
    assert!(!["SUCCESS", "FAILED"].contains(&run.status.as_str()));
}

#[tokio::test]
async fn waiting_for_a_run_that_never_ends_times_out() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"jobId": "stuck", "general": {"cmd": "sleep 100"}, "labels": {"SIM_RUN": "hang"},
                   "waitForCompletion": true, "timeoutSeconds": 1}),
        )
        .await;
    assert_eq!(doc.status, TaskStatus::Failed, "{doc:#?}");
    let error = doc.error.unwrap();
    assert_eq!(error.code, ErrorCode::Timeout);
    assert_eq!(error.details.unwrap()["status"], "ACTIVE");
    // The run was followed: its id is in the progress, and it keeps running.
    let run_id = doc.progress.unwrap()["runId"].as_str().unwrap().to_string();
    assert_eq!(
        h.sim
            .sim
            .metronome
            .run("test.stuck", &run_id)
            .unwrap()
            .status,
        "ACTIVE"
    );
}

#[tokio::test]
async fn a_redelivered_run_job_never_starts_a_second_run() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"jobId": "once", "general": {"cmd": "sleep 100"}, "labels": {"SIM_RUN": "hang"}}),
        )
        .await;
    let run_id = result(&doc)["runId"].as_str().unwrap().to_string();

    // Died after recording the run: the redelivery follows that run.
    interrupted(
        &h,
        "once-recorded",
        "RUN_JOB",
        Some(json!({"jobId": "test.once", "runId": run_id})),
    )
    .await;
    let doc = h
        .run_as(
            "run_job",
            "once-recorded",
            json!({"jobId": "once", "general": {"cmd": "sleep 100"}}),
        )
        .await;
    assert_eq!(result(&doc)["runId"], json!(run_id));
    assert_eq!(result(&doc)["resumed"], true);
    assert_eq!(run_count(&h, "test.once").await, 1);

    // Died between starting the run and recording it: the redelivery adopts that run.
    interrupted(&h, "once-unrecorded", "RUN_JOB", None).await;
    let started: Value = reqwest::Client::new()
        .post(format!("{}/v1/jobs/test.once/runs", h.sim.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc = h
        .run_as("run_job", "once-unrecorded", json!({"jobId": "once"}))
        .await;
    assert_eq!(result(&doc)["runId"], started["id"]);
    assert_eq!(run_count(&h, "test.once").await, 2);
}

#[tokio::test]
async fn destroy_stops_active_runs() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"jobId": "forever", "general": {"cmd": "sleep 100"}, "labels": {"SIM_RUN": "hang"}}),
        )
        .await;
    let run_id = result(&doc)["runId"].clone();
    let doc = h.run("destroy_job", json!({"jobId": "test.forever"})).await;
    let r = result(&doc);
    assert_eq!(r["destroyed"], true);
    assert_eq!(r["stoppedRuns"], json!([run_id]));
    assert!(job(&h, "test.forever", "").await.is_none());
    let doc = h.run("destroy_job", json!({"jobId": "forever"})).await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
}

#[tokio::test]
async fn clone_copies_the_job_and_its_schedules_with_overrides() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "run_job",
            json!({"general": {"id": "report", "cmd": "make report", "cpus": 0.2, "mem": 64},
                   "labels": {"team": "a"}, "schedule": {"cron": "0 1 * * *"}, "waitForCompletion": true}),
        )
        .await;
    result(&doc);
    let doc = h
        .run(
            "clone_job",
            json!({"source": {"jobId": "report"}, "jobId": "report-copy",
                   "run": {"cmd": "make report --dry"}, "labels": {"copy": "yes"}}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["jobId"], "test.report-copy");
    assert_eq!(r["schedules"], json!(["default"]));
    let copy = job(&h, "test.report-copy", "schedules").await.unwrap();
    assert_eq!(copy["run"]["cmd"], "make report --dry");
    assert_eq!(copy["run"]["mem"], 64.0);
    assert_eq!(copy["labels"]["team"], "a");
    assert_eq!(copy["labels"]["copy"], "yes");
    assert_eq!(copy["schedules"][0]["cron"], "0 1 * * *");
    let original = job(&h, "test.report", "").await.unwrap();
    assert_eq!(original["run"]["cmd"], "make report");

    // The same id again is someone else's job now.
    let doc = h
        .run(
            "clone_job",
            json!({"source": {"jobId": "report"}, "jobId": "report-copy"}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::Conflict);
    let doc = h
        .run(
            "clone_job",
            json!({"source": {"jobId": "missing"}, "jobId": "x"}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
}

#[tokio::test]
async fn jobs_outside_the_root_are_forbidden_and_bad_input_rejected() {
    let h = Harness::start().await;
    for (operation, body) in [
        (
            "run_job",
            json!({"jobId": "other.x", "general": {"cmd": "true"}}),
        ),
        (
            "run_job",
            json!({"job": {"id": "other.x", "run": {"cmd": "true"}}}),
        ),
        ("destroy_job", json!({"jobId": "other.x"})),
        (
            "clone_job",
            json!({"source": {"jobId": "other.x"}, "jobId": "x"}),
        ),
        (
            "clone_job",
            json!({"source": {"jobId": "x", "account": "nobody"}, "jobId": "y"}),
        ),
    ] {
        let doc = h.run(operation, body.clone()).await;
        assert_eq!(doc.status, TaskStatus::Failed, "{body}: {doc:#?}");
        assert_eq!(error_code(&doc), ErrorCode::Forbidden, "{body}");
    }
    for (operation, body, field) in [
        ("run_job", json!({}), "jobId"),
        (
            "run_job",
            json!({"general": {"id": "a", "cpus": "x"}}),
            "general.cpus",
        ),
        (
            "run_job",
            json!({"jobId": "a", "schedule": {"cron": "hourly"}}),
            "schedule.cron",
        ),
        (
            "run_job",
            json!({"jobId": "a", "general": {"id": "b"}}),
            "general.id",
        ),
        ("run_job", json!({"jobId": "Bad_Id"}), "jobId"),
        ("destroy_job", json!({}), "jobId"),
        (
            "clone_job",
            json!({"source": {"jobId": "a"}, "jobId": "a"}),
            "jobId",
        ),
    ] {
        let doc = h.run(operation, body.clone()).await;
        assert_eq!(doc.status, TaskStatus::Rejected, "{body}: {doc:#?}");
        let error = doc.error.unwrap();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(error.details.unwrap()["field"], field, "{body}");
    }
}
