//! Load-balancer operations end to end: the marathon-lb app of account `test` in the simulator.

mod common;

use common::outcome::{error_code, result};
use common::Harness;
use dcos_driver::bus::TaskStatus;
use dcos_driver::vocabulary::ErrorCode;
use serde_json::{json, Value};

fn ports(app: &Value) -> Vec<u64> {
    app["portDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn upsert_creates_then_updates_and_delete_removes() {
    let h = Harness::start().await;
    let doc = h
        .run(
            "upsert_load_balancer",
            json!({"name": "edge", "cpus": 0.5, "mem": 256, "instances": 1, "bindHttpHttps": true,
                   "portRange": {"protocol": "tcp", "minPort": 10000, "maxPort": 10002},
                   "account": "test", "cloudProvider": "dcos"}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["appId"], "/test/edge");
    assert_eq!(r["haproxyGroup"], "test_edge");
    assert_eq!(r["created"], true);
    let app = h.app("/test/edge").await.unwrap();
    assert_eq!(app["labels"]["DCOS_DRIVER_LOAD_BALANCER"], "edge");
    assert_eq!(
        app["args"],
        json!([
            "sse",
            "-m",
            h.sim.url(),
            "--health-check",
            "--haproxy-map",
            "--group",
            "test_edge"
        ])
    );
    assert_eq!(
        app["container"]["docker"]["image"],
        "mesosphere/marathon-lb:v1.15.0"
    );
    assert_eq!(app["acceptedResourceRoles"], json!(["slave_public"]));
    assert_eq!(app["networks"], json!([{"mode": "host"}]));
    assert_eq!(ports(&app), vec![80, 443, 9090, 9091, 10000, 10001, 10002]);
    assert_eq!(
        (app["cpus"].clone(), app["mem"].clone()),
        (json!(0.5), json!(256.0))
    );
    assert_eq!(app["tasksRunning"], 1);

    // A label added by hand survives the next upsert.
    let patched = reqwest::Client::new()
        .patch(format!("{}/v2/apps/test/edge", h.sim.url()))
        .json(&json!({"labels": {"DCOS_DRIVER_LOAD_BALANCER": "edge", "HAPROXY_SYSLOGD": "true"}}))
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success(), "{}", patched.status());
    h.sim.sim.marathon.settled().await;

    // The second upsert updates the same app (clouddriver's field name works too).
    let doc = h
        .run(
            "upsert_load_balancer",
            json!({"loadBalancerName": "edge", "instances": 2, "image": "mesosphere/marathon-lb:v1.14.1"}),
        )
        .await;
    let r = result(&doc);
    assert_eq!(r["created"], false);
    let app = h.app("/test/edge").await.unwrap();
    assert_eq!(
        (app["instances"].clone(), app["tasksRunning"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        app["container"]["docker"]["image"],
        "mesosphere/marathon-lb:v1.14.1"
    );
    assert_eq!(
        app["args"].as_array().unwrap().last().unwrap(),
        "--dont-bind-http-https"
    );
    assert_eq!(ports(&app), vec![9090, 9091]);
    assert_eq!(app["labels"]["HAPROXY_SYSLOGD"], "true");
    assert_eq!(h.apps_under("/test/").len(), 1);

    let doc = h
        .run(
            "delete_load_balancer",
            json!({"loadBalancerName": "edge", "region": ""}),
        )
        .await;
    assert_eq!(result(&doc)["deleted"], true);
    assert!(h.app("/test/edge").await.is_none());
    let doc = h
        .run("delete_load_balancer", json!({"loadBalancerName": "edge"}))
        .await;
    assert_eq!(error_code(&doc), ErrorCode::NotFound);
}

#[tokio::test]
async fn apps_that_are_not_load_balancers_are_left_alone() {
    let h = Harness::start().await;
    let created = reqwest::Client::new()
        .post(format!("{}/v2/apps", h.sim.url()))
        .json(&json!({"id": "/test/plain", "cmd": "sleep 1000", "mem": 32, "cpus": 0.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    h.sim.sim.marathon.settled().await;
    for (operation, body) in [
        ("upsert_load_balancer", json!({"name": "plain"})),
        ("delete_load_balancer", json!({"loadBalancerName": "plain"})),
    ] {
        let doc = h.run(operation, body).await;
        assert_eq!(doc.status, TaskStatus::Failed, "{doc:#?}");
        assert_eq!(error_code(&doc), ErrorCode::Forbidden, "{operation}");
    }
    let app = h.app("/test/plain").await.unwrap();
    assert_eq!(app["cmd"], "sleep 1000");
    assert!(app["labels"].get("DCOS_DRIVER_LOAD_BALANCER").is_none());
}

#[tokio::test]
async fn bad_input_is_rejected_with_the_field_path() {
    let h = Harness::start().await;
    for (operation, body, field) in [
        ("upsert_load_balancer", json!({}), "name"),
        ("upsert_load_balancer", json!({"name": "a/b"}), "name"),
        ("upsert_load_balancer", json!({"name": "Edge"}), "name"),
        (
            "upsert_load_balancer",
            json!({"name": "e", "portRange": {"minPort": 80, "maxPort": 90}}),
            "portRange",
        ),
        (
            "upsert_load_balancer",
            json!({"name": "e", "mem": -1}),
            "mem",
        ),
        (
            "upsert_load_balancer",
            json!({"name": "e", "instances": "two"}),
            "instances",
        ),
        (
            "delete_load_balancer",
            json!({"name": "e", "extra": true}),
            "extra",
        ),
    ] {
        let doc = h.run(operation, body.clone()).await;
        assert_eq!(doc.status, TaskStatus::Rejected, "{body}: {doc:#?}");
        let error = doc.error.unwrap();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(error.details.unwrap()["field"], field, "{body}");
    }
    let doc = h
        .run("upsert_load_balancer", json!({"name": "../other/lb"}))
        .await;
    assert_eq!(
        doc.status,
        TaskStatus::Rejected,
        "`/` is refused before the path check"
    );
}
