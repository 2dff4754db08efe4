//! The server-group operations end to end: a real nats-server, the real worker, the operations
//! executor and the in-process simulator. Requests are published on `dcos.op.test.<op>` and judged
//! by their terminal task documents in KV.

mod common;

use std::time::Duration;

use common::outcome::{error_code, interrupted, result};
use common::{app_body, Harness, HubFeed, Options};
use dcos_driver::bus::{TaskDocument, TaskStatus};
use dcos_driver::sim::SimConfig;
use dcos_driver::vocabulary::ErrorCode;
use serde_json::{json, Value};

fn details(doc: &TaskDocument) -> Value {
    doc.error
        .as_ref()
        .unwrap()
        .details
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn create_picks_versions_in_order_and_resize_and_destroy_follow_deployments() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let doc = h
            .run(
                "create_server_group",
                json!({"application": "api", "stack": "main", "region": "web", "cmd": "sleep 1000",
                       "capacity": {"min": 1, "max": 4, "desired": 2}, "mem": 64, "account": "test",
                       "cloudProvider": "dcos"}),
            )
            .await;
        let r = result(&doc).clone();
        assert_eq!(r["region"], "web");
        assert_eq!(r["instances"], 2);
        assert!(
            r["deploymentId"].as_str().is_some_and(|d| !d.is_empty()),
            "{r}"
        );
        ids.push((
            r["appId"].as_str().unwrap().to_string(),
            r["sequence"].clone(),
        ));
        // Progress was published while waiting.
        assert!(
            doc.history.iter().any(|h| h.status == TaskStatus::Running),
            "{doc:#?}"
        );
    }
    assert_eq!(
        ids,
        vec![
            ("/test/web/api-main-v000".to_string(), json!("v000")),
            ("/test/web/api-main-v001".to_string(), json!("v001")),
            ("/test/web/api-main-v002".to_string(), json!("v002")),
        ]
    );
    let app = h.app("/test/web/api-main-v001").await.unwrap();
    assert_eq!(app["instances"], 2);
    assert_eq!(app["tasksRunning"], 2);
    assert!(app["labels"]["DCOS_DRIVER_TASK_ID"]
        .as_str()
        .unwrap()
        .starts_with("create_server_group-"));

    let doc = h
        .run(
            "resize_server_group",
            json!({"region": "web", "serverGroupName": "api-main-v001", "targetSize": 3}),
        )
        .await;
    assert_eq!(result(&doc)["instances"], 3);
    let app = h.app("/test/web/api-main-v001").await.unwrap();
    assert_eq!(
        (app["instances"].clone(), app["tasksRunning"].clone()),
        (json!(3), json!(3))
    );

    // clouddriver-style region and a full app id both work.
    let doc = h
        .run(
            "resize_server_group",
            json!({"serverGroupName": "/test/web/api-main-v001", "capacity": {"desired": 1}}),
        )
        .await;
    assert_eq!(result(&doc)["instances"], 1);

    let doc = h
        .run(
            "destroy_server_group",
            json!({"region": "web", "serverGroupName": "api-main-v000"}),
        )
        .await;
    assert_eq!(result(&doc)["destroyed"], true);
    assert!(h.app("/test/web/api-main-v000").await.is_none());
    // A new create continues after the highest existing version.
    let doc = h
        .run(
            "create_server_group",
            json!({"application": "api", "stack": "main", "region": "web_", "cmd": "x"}),
        )
        .await;
    assert_eq!(result(&doc)["serverGroupName"], "api-main-v003");
}

#[tokio::test]
async fn create_from_a_raw_app_and_clone_with_overrides() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "create_server_group",
            json!({"app": {"id": "svc/worker", "cmd": "sleep 1", "instances": 1, "mem": 32,
                           "labels": {"team": "a"}},
                   "labels": {"extra": "1"}}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["appId"], "/test/svc/worker-v000");
    let app = h.app("/test/svc/worker-v000").await.unwrap();
    assert_eq!(app["labels"]["team"], "a");
    assert_eq!(app["labels"]["extra"], "1");

    let clone = h
        .run(
            "clone_server_group",
            json!({"source": {"region": "svc", "serverGroupName": "worker-v000"},
                   "mem": 48, "capacity": {"desired": 2}, "loadBalancers": ["public"]}),
        )
        .await;
    let r = result(&clone);
    assert_eq!(r["appId"], "/test/svc/worker-v001");
    assert_eq!(r["source"]["appId"], "/test/svc/worker-v000");
    let app = h.app("/test/svc/worker-v001").await.unwrap();
    assert_eq!(app["mem"], 48.0);
    assert_eq!(app["instances"], 2);
    assert_eq!(app["cmd"], "sleep 1");
    assert_eq!(app["labels"]["team"], "a");
    assert_eq!(app["labels"]["HAPROXY_GROUP"], "test_public");
    assert_eq!(app["labels"]["DCOS_DRIVER_TASK_ID"], clone.task_id.as_str());

    // Clone into another cluster name and group.
    let other = h
        .run(
            "clone_server_group",
            json!({"source": {"serverGroupName": "/test/svc/worker-v001"}, "application": "batch",
                   "region": "jobs"}),
        )
        .await;
    assert_eq!(result(&other)["appId"], "/test/jobs/batch-v000");

    let missing = h
        .run(
            "clone_server_group",
            json!({"source": {"serverGroupName": "nope-v000"}}),
        )
        .await;
    assert_eq!(error_code(&missing), ErrorCode::NotFound);
}

#[tokio::test]
async fn disable_suspend_and_enable_restore_the_count() {
    let h = Harness::start().await;
    let app_id = h
        .create(json!({"application": "web", "cmd": "x", "desiredCapacity": 2}))
        .await;
    assert_eq!(app_id, "/test/web-v000");
    let overlays = h.overlays().await;

    let doc = h
        .run(
            "disable_server_group",
            json!({"serverGroupName": "web-v000"}),
        )
        .await;
    assert_eq!(result(&doc)["disabled"], true);
    let overlay: Value = serde_json::from_slice(
        &overlays
            .get("sg.test.test.web-v000")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(overlay["disabled"], true);
    assert!(overlay.get("suspendedInstances").is_none());
    assert_eq!(h.app(&app_id).await.unwrap()["instances"], 2);

    let doc = h
        .run(
            "disable_server_group",
            json!({"serverGroupName": "web-v000", "suspend": true}),
        )
        .await;
    assert_eq!(result(&doc)["suspendedInstances"], 2);
    let app = h.app(&app_id).await.unwrap();
    assert_eq!(
        (app["instances"].clone(), app["tasksRunning"].clone()),
        (json!(0), json!(0))
    );
    // Disabling again keeps the recorded count (the app's own count is 0 now).
    let doc = h
        .run(
            "disable_server_group",
            json!({"serverGroupName": "web-v000", "suspend": true}),
        )
        .await;
    assert_eq!(result(&doc)["suspendedInstances"], 2);

    let doc = h
        .run(
            "enable_server_group",
            json!({"serverGroupName": "web-v000"}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(
        (r["enabled"].clone(), r["instances"].clone()),
        (json!(true), json!(2))
    );
    let app = h.app(&app_id).await.unwrap();
    assert_eq!(
        (app["instances"].clone(), app["tasksRunning"].clone()),
        (json!(2), json!(2))
    );
    assert!(overlays
        .get("sg.test.test.web-v000")
        .await
        .unwrap()
        .is_none_or(|b| b.is_empty()));

    // Destroy clears the overlays too.
    h.run(
        "disable_server_group",
        json!({"serverGroupName": "web-v000"}),
    )
    .await;
    let doc = h
        .run(
            "destroy_server_group",
            json!({"serverGroupName": "web-v000"}),
        )
        .await;
    result(&doc);
    assert!(overlays
        .get("sg.test.test.web-v000")
        .await
        .unwrap()
        .is_none_or(|b| b.is_empty()));
}

#[tokio::test]
async fn tags_and_launch_config_make_new_versions() {
    let h = Harness::start().await;
    let app_id = h
        .create(json!({"application": "api", "cmd": "x", "labels": {"keep": "1", "drop": "2"}}))
        .await;
    let doc = h
        .run(
            "upsert_server_group_tags",
            json!({"serverGroupName": "api-v000", "tags": {"owner": "team-a"}, "deleteTags": ["drop"]}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["newAppVersion"], true);
    assert!(r["version"].as_str().is_some());
    let labels = &h.app(&app_id).await.unwrap()["labels"];
    assert_eq!(labels["owner"], "team-a");
    assert_eq!(labels["keep"], "1");
    assert!(labels.get("drop").is_none());
    // The same tags again change nothing.
    let again = h
        .run(
            "upsert_server_group_tags",
            json!({"serverGroupName": "api-v000", "tags": {"owner": "team-a"}}),
        )
        .await;
    assert_eq!(result(&again)["newAppVersion"], false);

    let doc = h
        .run(
            "update_launch_config",
            json!({"serverGroupName": "api-v000", "mem": 96, "env": {"MODE": "fast"},
                   "docker": {"image": {"repository": "team/api", "tag": "2"}}}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["newAppVersion"], true);
    let app = h.app(&app_id).await.unwrap();
    assert_eq!(app["mem"], 96.0);
    assert_eq!(app["env"]["MODE"], "fast");
    assert_eq!(app["container"]["docker"]["image"], "team/api:2");
    assert_eq!(app["tasksRunning"], 1);
}

#[tokio::test]
async fn dcos_failures_become_task_errors() {
    let h = Harness::start().await;
    // 404
    let doc = h
        .run(
            "resize_server_group",
            json!({"serverGroupName": "missing-v000", "targetSize": 2}),
        )
        .await;
    assert_eq!(doc.status, TaskStatus::Failed);
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
    // 422 with Marathon's details passed through
    let doc = h
        .run(
            "create_server_group",
            json!({"application": "bad", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2.0}}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::DcosValidation, "{doc:#?}");
    let paths: Vec<String> = details(&doc)["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        paths.contains(&"/upgradeStrategy/minimumHealthCapacity".to_string()),
        "{paths:?}"
    );
    assert!(h.apps_under("/test/bad").is_empty());
}

#[tokio::test]
async fn a_failed_deployment_is_deployment_failed() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "create_server_group",
            json!({"application": "doomed", "cmd": "x", "labels": {"SIM_DEPLOYMENT": "fail"}}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::DeploymentFailed, "{doc:#?}");
    assert!(details(&doc)["deploymentId"].as_str().is_some());
}

#[tokio::test]
async fn a_deployment_that_never_ends_times_out() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "create_server_group",
            json!({"application": "sick", "cmd": "x", "timeoutSeconds": 1,
                   "labels": {"SIM_HEALTH": "fail"},
                   "healthChecks": [{"protocol": "COMMAND", "command": "false", "gracePeriodSeconds": 0,
                                     "intervalSeconds": 1, "maxConsecutiveFailures": 1}]}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::Timeout, "{doc:#?}");
    let d = details(&doc);
    assert_eq!(d["timeoutSeconds"], 1);
    assert!(d["deploymentId"].as_str().is_some());
    let elapsed = doc.ended_at.unwrap() - doc.started_at;
    assert!(elapsed.num_milliseconds() < 10_000, "{elapsed}");
}

#[tokio::test]
async fn a_locked_app_is_retried_until_the_other_deployment_ends() {
    let h = Harness::start_with(Options {
        sim: SimConfig {
            time_scale: 0.5,
            ..SimConfig::instant()
        },
        ..Options::default()
    })
    .await;
    let app_id = h.create(json!({"application": "busy", "cmd": "x"})).await;
    // Someone else starts a deployment directly on Marathon.
    let http = reqwest::Client::new();
    let answer = http
        .put(format!("{}/v2/apps{app_id}", h.sim.url()))
        .json(&json!({"instances": 3}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let doc = h
        .run(
            "resize_server_group",
            json!({"serverGroupName": "busy-v000", "targetSize": 2}),
        )
        .await;
    assert_eq!(result(&doc)["instances"], 2, "{doc:#?}");
    // The resize could only start once the other deployment (3 instances, ~1 s at this scale) ended.
    let waited = doc.ended_at.unwrap() - doc.started_at;
    assert!(waited.num_milliseconds() >= 300, "{waited}");
    let app = h.app(&app_id).await.unwrap();
    assert_eq!(
        (app["instances"].clone(), app["tasksRunning"].clone()),
        (json!(2), json!(2))
    );
}

#[tokio::test]
async fn paths_outside_the_root_and_other_accounts_are_forbidden() {
    let h = Harness::start().await;
    h.create(json!({"application": "mine", "cmd": "x"})).await;
    for body in [
        json!({"serverGroupName": "../other/x-v000", "targetSize": 1}),
        json!({"region": "../other", "serverGroupName": "x-v000", "targetSize": 1}),
        json!({"region": "/other", "serverGroupName": "x-v000", "targetSize": 1}),
        json!({"serverGroupName": "/other/x-v000", "targetSize": 1}),
        json!({"serverGroupName": "/test/../other/x-v000", "targetSize": 1}),
        json!({"serverGroupName": "mine-v000", "targetSize": 1, "account": "other"}),
    ] {
        let doc = h.run("resize_server_group", body.clone()).await;
        assert_eq!(doc.status, TaskStatus::Failed, "{body}: {doc:#?}");
        assert_eq!(error_code(&doc), ErrorCode::Forbidden, "{body}");
    }
    let doc = h
        .run(
            "create_server_group",
            json!({"application": "x", "region": "a/../../other", "cmd": "x"}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::Forbidden);
    // An account the driver does not know.
    let id = h.task_id("unknown");
    h.publish_to(
        "nobody",
        "resize_server_group",
        &id,
        &json!({"serverGroupName": "a-v000", "targetSize": 1}),
    )
    .await;
    let doc = h.terminal(&id).await;
    assert_eq!(error_code(&doc), ErrorCode::Forbidden);
    assert!(h.apps_under("/other").is_empty());
}

#[tokio::test]
async fn bad_descriptions_are_rejected_with_field_paths() {
    let h = Harness::start().await;
    let cases = [
        (
            "resize_server_group",
            json!({"targetSize": 1}),
            "serverGroupName",
            "missing field",
        ),
        (
            "resize_server_group",
            json!({"serverGroupName": "a-v000", "capacity": {"desired": "x"}}),
            "capacity.desired",
            "invalid type: string \"x\", expected u32",
        ),
        (
            "resize_server_group",
            json!({"serverGroupName": "a-v000", "size": 1}),
            "size",
            "unknown field",
        ),
        (
            "resize_server_group",
            json!({"serverGroupName": "a-v000"}),
            "targetSize",
            "missing field",
        ),
        (
            "create_server_group",
            json!({"application": "a", "cmd": "x", "healthChecks": [{"port": "80"}]}),
            "healthChecks[0].port",
            "invalid type",
        ),
        (
            "create_server_group",
            json!({"application": "Bad_Name", "cmd": "x"}),
            "application",
            "must match",
        ),
    ];
    for (op, body, field, words) in cases {
        let doc = h.run(op, body.clone()).await;
        assert_eq!(doc.status, TaskStatus::Rejected, "{body}: {doc:#?}");
        assert_eq!(error_code(&doc), ErrorCode::InvalidRequest);
        assert_eq!(details(&doc)["field"], field, "{body}");
        let message = &doc.error.as_ref().unwrap().message;
        assert!(message.contains(words), "{body}: {message}");
    }
}

#[tokio::test]
async fn a_redelivered_create_does_not_create_twice() {
    let h = Harness::start_with(Options {
        duplicate_window: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let task_id = "redelivered-create";
    let body = app_body("once", "r");
    let first = h.run_as("create_server_group", task_id, body.clone()).await;
    let first_app = result(&first)["appId"].clone();
    // The driver "died" mid-operation: the stored document is a RUNNING one.
    interrupted(&h, task_id, "CREATE_SERVER_GROUP", None).await;
    // JetStream delivers the same request again (after its duplicate window).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.publish("create_server_group", task_id, &body).await;
    let second = h.terminal(task_id).await;
    let r = result(&second);
    assert_eq!(r["resumed"], true, "{second:#?}");
    assert_eq!(r["appId"], first_app);
    assert_eq!(
        h.apps_under("/test/r/"),
        vec!["/test/r/once-v000".to_string()]
    );
}

#[tokio::test]
async fn a_redelivered_destroy_of_a_gone_app_succeeds() {
    let h = Harness::start_with(Options {
        duplicate_window: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    h.create(app_body("gone", "")).await;
    let task_id = "redelivered-destroy";
    let body = json!({"serverGroupName": "gone-v000"});
    let first = h
        .run_as("destroy_server_group", task_id, body.clone())
        .await;
    result(&first);
    interrupted(&h, task_id, "DESTROY_SERVER_GROUP", None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.publish("destroy_server_group", task_id, &body).await;
    let second = h.terminal(task_id).await;
    assert_eq!(result(&second)["alreadyGone"], true, "{second:#?}");
    // A first delivery on a missing app is NOT_FOUND.
    let doc = h.run("destroy_server_group", body).await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
}

#[tokio::test]
async fn operations_on_one_app_take_turns_and_polling_alone_suffices() {
    let h = Harness::start_with(Options {
        hub: HubFeed::None,
        ..Options::default()
    })
    .await;
    let app_id = h.create(app_body("turns", "")).await;
    let ids: Vec<String> = (1..=5).map(|n| format!("turn-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        h.publish(
            "resize_server_group",
            id,
            &json!({"serverGroupName": "turns-v000", "targetSize": n + 1}),
        )
        .await;
    }
    for id in &ids {
        let doc = h.terminal(id).await;
        assert_eq!(result(&doc)["seenBy"], "polling");
    }
    let app = h.app(&app_id).await.unwrap();
    assert!(app["instances"].as_u64().unwrap() >= 1);
    assert_eq!(app["instances"], app["tasksRunning"]);
}

#[tokio::test]
async fn clone_from_another_configured_account() {
    let h = Harness::start().await;
    let id = h.task_id("other-create");
    h.publish_to(
        "other",
        "create_server_group",
        &id,
        &app_body("shared", "svc"),
    )
    .await;
    let doc = h.terminal(&id).await;
    assert_eq!(result(&doc)["appId"], "/other/svc/shared-v000");
    // The target region is required: the source's group is in the other account's root.
    let doc = h
        .run(
            "clone_server_group",
            json!({"source": {"account": "other", "region": "svc", "serverGroupName": "shared-v000"}}),
        )
        .await;
    assert_eq!(error_code(&doc), ErrorCode::InvalidRequest);
    let doc = h
        .run(
            "clone_server_group",
            json!({"source": {"account": "other", "region": "svc", "serverGroupName": "shared-v000"},
                   "region": "copied"}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["appId"], "/test/copied/shared-v000");
    assert_eq!(
        r["source"],
        json!({"account": "other", "appId": "/other/svc/shared-v000"})
    );
    // The source must still lie under its own account's root, and the account must exist.
    for source in [
        json!({"account": "other", "serverGroupName": "/test/copied/shared-v000"}),
        json!({"account": "nobody", "serverGroupName": "x-v000"}),
    ] {
        let doc = h
            .run(
                "clone_server_group",
                json!({"source": source, "region": "copied"}),
            )
            .await;
        assert_eq!(error_code(&doc), ErrorCode::Forbidden, "{source}");
    }
}

#[tokio::test]
async fn a_create_handed_back_mid_deployment_resumes_on_the_next_worker() {
    let mut h = Harness::start_with(Options {
        sim: SimConfig {
            time_scale: 1.0,
            ..SimConfig::instant()
        },
        ..Options::default()
    })
    .await;
    let task_id = "handed-back-create";
    h.publish(
        "create_server_group",
        task_id,
        &json!({"application": "slow", "cmd": "x", "desiredCapacity": 2}),
    )
    .await;
    // The deployment is under way (its id is in the progress) when the driver stops.
    let running = h
        .wait_doc(task_id, Duration::from_secs(20), |d| {
            d.progress
                .as_ref()
                .is_some_and(|p| p.get("deploymentId").is_some())
        })
        .await;
    assert_eq!(running.status, TaskStatus::Running);
    h.stop_worker().await;
    let stopped = h.doc(task_id).await.unwrap();
    assert!(!stopped.status.is_terminal(), "{stopped:#?}");
    h.start_worker().await;
    let doc = h.terminal(task_id).await;
    let r = result(&doc);
    assert_eq!(r["resumed"], true, "{doc:#?}");
    assert_eq!(
        h.apps_under("/test/slow"),
        vec!["/test/slow-v000".to_string()]
    );
    let app = h.app("/test/slow-v000").await.unwrap();
    assert_eq!(app["tasksRunning"], 2);
}

#[tokio::test]
async fn waiting_publishes_deployment_progress() {
    let h = Harness::start_with(Options {
        sim: SimConfig {
            time_scale: 0.5,
            ..SimConfig::instant()
        },
        hub: HubFeed::None,
        ..Options::default()
    })
    .await;
    h.create(json!({"application": "watched", "cmd": "x"}))
        .await;
    let doc = h
        .run(
            "resize_server_group",
            json!({"serverGroupName": "watched-v000", "targetSize": 3}),
        )
        .await;
    result(&doc);
    let progress = doc.progress.clone().expect("progress recorded");
    assert_eq!(progress["app"], "/test/watched-v000");
    assert_eq!(progress["deploymentId"], result(&doc)["deploymentId"]);
    assert_eq!(progress["target"], 3, "{progress}");
    assert_eq!(progress["totalSteps"], 1, "{progress}");
    assert_eq!(
        progress["actions"][0]["action"], "ScaleApplication",
        "{progress}"
    );
    let steps: Vec<&str> = doc
        .history
        .iter()
        .filter(|e| e.status == TaskStatus::Running)
        .map(|e| e.message.as_str())
        .collect();
    assert!(
        steps
            .iter()
            .any(|m| m.contains("step 1/1 (ScaleApplication /test/watched-v000)")),
        "{steps:#?}"
    );
}
