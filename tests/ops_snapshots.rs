//! Snapshot operations end to end: the group tree of account `test` saved to KV `dcos_snapshots`
//! and put back into the simulator.

mod common;

use common::outcome::{error_code, result};
use common::{app_body, Harness};
use dcos_driver::bus::TaskStatus;
use dcos_driver::vocabulary::ErrorCode;
use serde_json::{json, Value};

#[tokio::test]
async fn save_then_restore_brings_a_deleted_app_back_and_dry_run_changes_nothing() {
    let h = Harness::start().await;
    let api = h.create(app_body("api", "web")).await;
    let mut worker = app_body("worker", "batch");
    worker["desiredCapacity"] = json!(2);
    let worker = h.create(worker).await;

    let doc = h
        .run_as("save_snapshot", "snap-1", json!({"description": "before"}))
        .await;
    let r = result(&doc);
    assert_eq!(r["snapshotId"], "test.snap-1");
    assert_eq!(r["group"], "/test");
    assert_eq!(r["apps"], 2);
    assert_eq!(r["parts"], 1);
    let bucket = h.js.get_key_value("dcos_snapshots").await.unwrap();
    let manifest: Value =
        serde_json::from_slice(&bucket.get("test.snap-1").await.unwrap().unwrap()).unwrap();
    assert_eq!(manifest["account"], "test");
    assert_eq!(manifest["description"], "before");
    let tree: Value =
        serde_json::from_slice(&bucket.get("test.snap-1.part-0").await.unwrap().unwrap()).unwrap();
    assert!(
        !tree.to_string().contains("\"tasks\""),
        "volatile fields are stripped"
    );

    let doc = h
        .run(
            "destroy_server_group",
            json!({"serverGroupName": worker.clone()}),
        )
        .await;
    result(&doc);
    assert!(h.app(&worker).await.is_none());

    let doc = h
        .run(
            "restore_snapshot",
            json!({"snapshotId": "test.snap-1", "dryRun": true}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["dryRun"], true);
    let plan = r["plan"].to_string();
    assert!(
        plan.contains("StartApplication") && plan.contains(&worker),
        "{plan}"
    );
    assert!(h.app(&worker).await.is_none(), "a dry run changes nothing");

    let doc = h
        .run("restore_snapshot", json!({"snapshotId": "test.snap-1"}))
        .await;
    let r = result(&doc);
    assert!(r["deploymentId"].as_str().is_some_and(|d| !d.is_empty()));
    let back = h.app(&worker).await.expect("the app is back");
    assert_eq!(
        (back["instances"].clone(), back["tasksRunning"].clone()),
        (json!(2), json!(2))
    );
    assert!(h.app(&api).await.is_some());
}

#[tokio::test]
async fn big_trees_are_stored_in_parts_and_restored_whole() {
    let h = Harness::start().await;
    let big = "x".repeat(600 * 1024);
    let created = reqwest::Client::new()
        .post(format!("{}/v2/apps", h.sim.url()))
        .json(&json!({"id": "/test/big", "cmd": "sleep 1000", "mem": 32, "cpus": 0.1, "env": {"BIG": big}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    h.sim.sim.marathon.settled().await;
    let doc = h.run_as("save_snapshot", "snap-big", json!({})).await;
    let r = result(&doc);
    assert_eq!(r["parts"], 3, "{r}");

    let deleted = reqwest::Client::new()
        .delete(format!("{}/v2/apps/test/big", h.sim.url()))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    h.sim.sim.marathon.settled().await;
    let doc = h
        .run("restore_snapshot", json!({"snapshotId": "test.snap-big"}))
        .await;
    result(&doc);
    let back = h.app("/test/big").await.unwrap();
    assert_eq!(back["env"]["BIG"].as_str().unwrap().len(), 600 * 1024);
}

#[tokio::test]
async fn other_accounts_snapshots_are_forbidden_missing_ones_not_found() {
    let h = Harness::start().await;
    h.publish_to("other", "save_snapshot", "theirs", &json!({}))
        .await;
    let doc = h.terminal("theirs").await;
    assert_eq!(result(&doc)["snapshotId"], "other.theirs");

    let doc = h
        .run("restore_snapshot", json!({"snapshotId": "other.theirs"}))
        .await;
    assert_eq!(doc.status, TaskStatus::Failed);
    assert_eq!(error_code(&doc), ErrorCode::Forbidden);
    let doc = h
        .run(
            "restore_snapshot",
            json!({"snapshotId": "test.never-saved"}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);

    for (body, field) in [
        (json!({}), "snapshotId"),
        (json!({"snapshotId": "test.x", "dryRun": "yes"}), "dryRun"),
    ] {
        let doc = h.run("restore_snapshot", body.clone()).await;
        assert_eq!(doc.status, TaskStatus::Rejected, "{body}: {doc:#?}");
        assert_eq!(doc.error.unwrap().details.unwrap()["field"], field);
    }
    let doc = h.run("save_snapshot", json!({"region": "../other"})).await;
    assert_eq!(error_code(&doc), ErrorCode::Forbidden);
}
