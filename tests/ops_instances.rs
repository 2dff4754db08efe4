//! Instance operations end to end: a real nats-server, the real worker with the operations
//! executor, and the in-process simulator (account `test` rooted at `/test`).

mod common;

use std::collections::BTreeSet;

use common::outcome::{error_code, interrupted, result};
use common::{app_body, Harness, Options};
use dcos_driver::bus::TaskStatus;
use dcos_driver::sim::SimConfig;
use dcos_driver::vocabulary::ErrorCode;
use serde_json::{json, Value};

/// A server group `/test/web/<application>-v000` with `n` running tasks.
async fn server_group(h: &Harness, application: &str, n: u64) -> String {
    let mut body = app_body(application, "web");
    body["desiredCapacity"] = json!(n);
    h.create(body).await
}

fn task_ids(h: &Harness, app_id: &str) -> Vec<String> {
    h.sim
        .sim
        .marathon
        .app_tasks(app_id)
        .into_iter()
        .map(|t| t.task_id)
        .collect()
}

fn running(h: &Harness, app_id: &str) -> usize {
    h.sim
        .sim
        .marathon
        .app_tasks(app_id)
        .iter()
        .filter(|t| t.state == "TASK_RUNNING")
        .count()
}

#[tokio::test]
async fn reboot_replaces_exactly_the_killed_tasks_and_waits() {
    let h = Harness::start().await;
    let app = server_group(&h, "reboot", 3).await;
    let before = task_ids(&h, &app);
    assert_eq!(before.len(), 3);
    let doc = h
        .run(
            "reboot_instances",
            json!({"instanceIds": [before[0], before[1]], "serverGroupName": "reboot-v000", "region": "web"}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["instanceIds"], json!([before[0], before[1]]));
    assert_eq!(r["apps"][0]["tasksRunning"], 3);
    // The task is done only once the app is back: no wait needed here.
    let after: BTreeSet<String> = task_ids(&h, &app).into_iter().collect();
    assert_eq!(after.len(), 3);
    assert!(after.contains(&before[2]), "the untouched task stays");
    assert!(!after.contains(&before[0]) && !after.contains(&before[1]));
    assert_eq!(running(&h, &app), 3);
    assert_eq!(h.app(&app).await.unwrap()["instances"], 3, "no scaling");
    assert!(doc.history.iter().any(|e| e.status == TaskStatus::Running));
}

#[tokio::test]
async fn reboot_times_out_when_the_replacements_are_not_back_in_time() {
    // At time scale 1 a launch takes about 2 s, longer than the request allows.
    let h = Harness::start_with(Options {
        sim: SimConfig {
            time_scale: 1.0,
            ..SimConfig::instant()
        },
        ..Options::default()
    })
    .await;
    let app = server_group(&h, "slow", 1).await;
    let task = task_ids(&h, &app).remove(0);
    let doc = h
        .run(
            "reboot_instances",
            json!({"instanceIds": [task], "timeoutSeconds": 1}),
        )
        .await;
    assert_eq!(doc.status, TaskStatus::Failed, "{doc:#?}");
    let error = doc.error.unwrap();
    assert_eq!(error.code, ErrorCode::Timeout);
    assert!(error.message.contains(&app), "{}", error.message);
    assert_eq!(error.details.unwrap()["target"], 1);
}

#[tokio::test]
async fn terminate_kills_and_marathon_replaces_unknown_ids_are_not_found() {
    let h = Harness::start().await;
    let app = server_group(&h, "term", 2).await;
    let before = task_ids(&h, &app);
    let doc = h
        .run("terminate_instances", json!({"instanceIds": [before[0]]}))
        .await;
    assert_eq!(result(&doc)["killed"], json!([before[0]]));
    assert_eq!(h.app(&app).await.unwrap()["instances"], 2);

    let unknown = format!(
        "{}.instance-00000000-0000-0000-0000-000000000000._app.1",
        "test_web_term-v000"
    );
    let doc = h
        .run("terminate_instances", json!({"instanceIds": [unknown]}))
        .await;
    assert_eq!(doc.status, TaskStatus::Failed);
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
    assert!(doc.error.unwrap().message.contains("no running instance"));

    // A redelivery of a terminate whose task is already gone succeeds without killing anything.
    interrupted(&h, "term-again", "TERMINATE_INSTANCES", None).await;
    let doc = h
        .run_as(
            "terminate_instances",
            "term-again",
            json!({"instanceIds": [before[0]]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["killed"], json!([]));
    assert_eq!(r["alreadyGone"], json!([before[0]]));
}

#[tokio::test]
async fn terminate_and_decrement_scales_down_once_even_when_redelivered() {
    let h = Harness::start().await;
    let app = server_group(&h, "dec", 3).await;
    let before = task_ids(&h, &app);
    let doc = h
        .run(
            "terminate_instance_and_decrement",
            json!({"instanceIds": [before[0]]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["killed"], json!([before[0]]));
    assert_eq!(r["apps"][0]["instances"], 2);
    let deployment = r["apps"][0]["deploymentId"].as_str().unwrap().to_string();
    let live = h.app(&app).await.unwrap();
    assert_eq!(
        (live["instances"].clone(), live["tasksRunning"].clone()),
        (json!(2), json!(2))
    );
    assert!(!task_ids(&h, &app).contains(&before[0]));

    // The driver died after the kill and before finishing: the redelivery must not kill another.
    interrupted(&h, "dec-again", "TERMINATE_INSTANCE_AND_DECREMENT", None).await;
    let doc = h
        .run_as(
            "terminate_instance_and_decrement",
            "dec-again",
            json!({"instance": before[0]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["killed"], json!([]));
    assert_eq!(r["alreadyGone"], json!([before[0]]));
    assert_eq!(
        h.app(&app).await.unwrap()["instances"],
        2,
        "not lowered twice"
    );
    assert_eq!(running(&h, &app), 2);

    // The driver died while following the recorded deployment: it follows it, kills nothing.
    interrupted(
        &h,
        "dec-recorded",
        "TERMINATE_INSTANCE_AND_DECREMENT",
        Some(json!({"deploymentId": deployment, "app": app})),
    )
    .await;
    let doc = h
        .run_as(
            "terminate_instance_and_decrement",
            "dec-recorded",
            json!({"instanceIds": [before[0]]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["killed"], json!([]));
    assert_eq!(r["apps"][0]["deploymentId"], json!(deployment));
    assert_eq!(
        h.app(&app).await.unwrap()["instances"],
        2,
        "not lowered twice"
    );
}

#[tokio::test]
async fn disable_and_enable_in_discovery_write_and_remove_the_overlay() {
    let h = Harness::start().await;
    let app = server_group(&h, "disc", 2).await;
    let tasks = task_ids(&h, &app);
    let instance = tasks[0].trim_end_matches("._app.1").to_string();
    let key = format!("inst.test.{instance}");
    let overlays = h.overlays().await;

    let doc = h
        .run(
            "disable_instances_in_discovery",
            json!({"instanceIds": [tasks[0]]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["instances"][0]["instanceId"], instance);
    assert_eq!(r["instances"][0]["administrativeState"], "DISABLED");
    assert_eq!(r["instances"][0]["discoveryState"], "OUT_OF_SERVICE");
    let stored: Value =
        serde_json::from_slice(&overlays.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["disabled"], true);
    assert_eq!(stored["appId"], app);
    assert_eq!(stored["instanceId"], instance);
    assert_eq!(running(&h, &app), 2, "no Marathon change");

    // The instance id (without `._app.1`) is accepted as well.
    let doc = h
        .run(
            "enable_instances_in_discovery",
            json!({"instanceIds": [instance]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["instances"][0]["administrativeState"], "ENABLED");
    assert_eq!(r["instances"][0]["discoveryState"], "UP");
    let entry = overlays.get(&key).await.unwrap();
    assert!(entry.is_none_or(|b| b.is_empty()), "overlay removed");

    let doc = h
        .run(
            "disable_instances_in_discovery",
            json!({"instanceIds": ["test_web_disc-v000.instance-nope._app.1"]}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
}

#[tokio::test]
async fn instances_of_another_accounts_app_are_forbidden() {
    let h = Harness::start().await;
    let theirs = format!("{}-{}", "other", "create");
    h.publish_to(
        "other",
        "create_server_group",
        &theirs,
        &app_body("secret", "web"),
    )
    .await;
    let doc = h.terminal(&theirs).await;
    let app = result(&doc)["appId"].as_str().unwrap().to_string();
    assert_eq!(app, "/other/web/secret-v000");
    let foreign = task_ids(&h, &app).remove(0);
    let ours = server_group(&h, "mine", 1).await;
    for (operation, body) in [
        ("terminate_instances", json!({"instanceIds": [foreign]})),
        (
            "reboot_instances",
            json!({"instanceIds": [foreign], "serverGroupName": "mine-v000", "region": "web"}),
        ),
        (
            "disable_instances_in_discovery",
            json!({"instanceIds": [foreign]}),
        ),
        (
            "terminate_instance_and_decrement",
            json!({"instanceId": foreign}),
        ),
    ] {
        let doc = h.run(operation, body).await;
        assert_eq!(doc.status, TaskStatus::Failed, "{operation}: {doc:#?}");
        assert_eq!(error_code(&doc), ErrorCode::Forbidden, "{operation}");
    }
    assert_eq!(running(&h, &app), 1, "their task is untouched");
    assert_eq!(running(&h, &ours), 1);
}

#[tokio::test]
async fn update_instances_restarts_every_task() {
    let h = Harness::start().await;
    let app = server_group(&h, "upd", 2).await;
    let before: BTreeSet<String> = task_ids(&h, &app).into_iter().collect();
    let doc = h
        .run(
            "update_instances",
            json!({"serverGroupName": "upd-v000", "region": "web"}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["appId"], app);
    assert!(r["deploymentId"].as_str().is_some_and(|d| !d.is_empty()));
    let after: BTreeSet<String> = task_ids(&h, &app).into_iter().collect();
    assert_eq!(after.len(), 2);
    assert!(after.is_disjoint(&before), "{before:?} → {after:?}");

    let doc = h
        .run("update_instances", json!({"serverGroupName": "nope-v000"}))
        .await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
}

#[tokio::test]
async fn bad_input_is_rejected_with_the_field_path() {
    let h = Harness::start().await;
    for (operation, body, field) in [
        ("reboot_instances", json!({}), "instanceIds"),
        (
            "terminate_instances",
            json!({"instanceIds": "x"}),
            "instanceIds",
        ),
        (
            "terminate_instances",
            json!({"instanceIds": []}),
            "instanceIds",
        ),
        (
            "terminate_instances",
            json!({"instanceIds": ["nodots"]}),
            "instanceIds[0]",
        ),
        (
            "enable_instances_in_discovery",
            json!({"instanceIds": ["a.b"], "colour": 1}),
            "colour",
        ),
        (
            "update_instances",
            json!({"serverGroupName": "a-v000", "force": "yes"}),
            "force",
        ),
        (
            "reboot_instances",
            json!({"instanceIds": ["test_a-v000.instance-1._app.1"], "serverGroupName": "b-v000"}),
            "instanceIds[0]",
        ),
    ] {
        let doc = h.run(operation, body.clone()).await;
        assert_eq!(
            doc.status,
            TaskStatus::Rejected,
            "{operation} {body}: {doc:#?}"
        );
        let error = doc.error.unwrap();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(error.details.unwrap()["field"], field, "{operation} {body}");
    }
}
