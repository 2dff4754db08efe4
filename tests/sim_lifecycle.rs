//! The simulated Marathon's timed lifecycle, checked from the event bus: event order and fields,
//! task states, upgrade strategy batches, kill selection, health checks, simulator failure labels.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dcos_driver::sim::bus::SimEvent;
use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::broadcast::Receiver;

async fn start(time_scale: f64) -> (SimHandle, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = spawn(SimConfig {
        time_scale,
        event_buffer: 100_000,
        ..SimConfig::instant()
    })
    .await
    .expect("sim");
    (sim, Client::new())
}

async fn call(sim: &SimHandle, client: &Client, method: Method, path: &str, body: Value) -> Value {
    let response = client
        .request(method, format!("{}{path}", sim.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Makes a change and answers its events up to the end of the deployment it started.
async fn deploy(
    sim: &SimHandle,
    client: &Client,
    events: &mut Receiver<Arc<SimEvent>>,
    method: Method,
    path: &str,
    body: Value,
) -> Vec<(String, Value)> {
    let body = call(sim, client, method, path, body).await;
    until_end(events, &deployment_id(&body)).await
}

/// Events up to and including the `deployment_success` / `deployment_failed` of `deployment`.
async fn until_end(events: &mut Receiver<Arc<SimEvent>>, deployment: &str) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("deployment ends")
            .expect("no lag");
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["eventType"], event.event_type.as_str());
        assert!(data["timestamp"].as_str().unwrap().ends_with('Z'));
        let end = matches!(
            event.event_type.as_str(),
            "deployment_success" | "deployment_failed"
        ) && data["id"] == deployment;
        seen.push((event.event_type.clone(), data));
        if end {
            return seen;
        }
    }
}

fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

/// Task states per task id, in order.
fn task_states(events: &[(String, Value)]) -> HashMap<String, Vec<String>> {
    let mut states: HashMap<String, Vec<String>> = HashMap::new();
    for (t, data) in events {
        if t == "status_update_event" {
            states
                .entry(data["taskId"].as_str().unwrap().into())
                .or_default()
                .push(data["taskStatus"].as_str().unwrap().into());
        }
    }
    states
}

fn deployment_id(body: &Value) -> String {
    body["deploymentId"]
        .as_str()
        .or(body["deployments"][0]["id"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn create_scale_restart_destroy_event_sequence() {
    let (sim, client) = start(0.0).await;
    let mut events = sim.sim.bus.subscribe();
    let created = deploy(
        &sim,
        &client,
        &mut events,
        Method::POST,
        "/v2/apps",
        json!({ "id": "/prod/web/api-v001", "cmd": "run", "instances": 2 }),
    )
    .await;
    let kinds = types(&created);
    assert_eq!(
        kinds[..3],
        ["api_post_event", "group_change_success", "deployment_info"]
    );
    assert_eq!(created[0].1["appDefinition"]["id"], "/prod/web/api-v001");
    assert!(created[0].1["uri"].as_str().unwrap().ends_with("/v2/apps"));
    let info = &created[2].1;
    assert_eq!(
        info["plan"]["steps"][0]["actions"][0]["action"],
        "StartApplication"
    );
    assert_eq!(
        info["currentStep"]["actions"][0]["app"],
        "/prod/web/api-v001"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "deployment_info").count(), 2);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "deployment_step_success")
            .count(),
        2
    );
    assert_eq!(*kinds.last().unwrap(), "deployment_success");
    let states = task_states(&created);
    assert_eq!(states.len(), 2);
    for s in states.values() {
        assert_eq!(s, &["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"]);
    }
    let (_, status) = created
        .iter()
        .find(|(t, _)| t == "status_update_event")
        .unwrap();
    for field in ["slaveId", "taskId", "message", "appId", "host", "version"] {
        assert!(status[field].is_string(), "{field}");
    }
    assert_eq!(status["ipAddresses"][0]["protocol"], "IPv4");
    assert!(status["ports"].is_array());
    let (_, changed) = created
        .iter()
        .find(|(t, _)| t == "instance_changed_event")
        .unwrap();
    assert_eq!(changed["condition"], "Staging");
    assert_eq!(changed["runSpecId"], "/prod/web/api-v001");
    for field in ["instanceId", "agentId", "host", "runSpecVersion"] {
        assert!(changed[field].is_string(), "{field}");
    }

    let scaled = deploy(
        &sim,
        &client,
        &mut events,
        Method::PUT,
        "/v2/apps/prod/web/api-v001",
        json!({ "instances": 3 }),
    )
    .await;
    assert_eq!(
        scaled[2].1["plan"]["steps"][0]["actions"][0]["action"],
        "ScaleApplication"
    );
    let states = task_states(&scaled);
    assert_eq!(states.len(), 1);

    let restarted = deploy(
        &sim,
        &client,
        &mut events,
        Method::POST,
        "/v2/apps/prod/web/api-v001/restart",
        json!({}),
    )
    .await;
    assert_eq!(
        restarted[2].1["plan"]["steps"][0]["actions"][0]["action"],
        "RestartApplication"
    );
    let states = task_states(&restarted);
    let started = states.values().filter(|s| s[0] == "TASK_STAGING").count();
    let killed: Vec<_> = states.values().filter(|s| s[0] == "TASK_KILLING").collect();
    assert_eq!(started, 3);
    assert_eq!(killed.len(), 3);
    assert!(killed
        .iter()
        .all(|s| *s == &["TASK_KILLING", "TASK_KILLED"]));
    assert_running_at_least(&restarted, 3, 3);

    let destroyed = deploy(
        &sim,
        &client,
        &mut events,
        Method::DELETE,
        "/v2/apps/prod/web/api-v001",
        json!({}),
    )
    .await;
    let kinds = types(&destroyed);
    let terminated = kinds
        .iter()
        .position(|k| *k == "app_terminated_event")
        .unwrap();
    assert_eq!(destroyed[terminated].1["appId"], "/prod/web/api-v001");
    let states = task_states(&destroyed);
    assert_eq!(states.len(), 3);
    assert!(states
        .values()
        .all(|s| s == &["TASK_KILLING", "TASK_KILLED"]));
    let last_killed = kinds
        .iter()
        .rposition(|k| *k == "status_update_event")
        .unwrap();
    assert!(last_killed < terminated);
    assert!(sim.sim.marathon.app_ids().is_empty());
}

/// Replays running-task counts; asserts the count never drops below `min` once it reached
/// `initial` and that live (not killing) tasks never exceed `max_alive`.
fn assert_running_at_least(events: &[(String, Value)], initial: usize, min: usize) {
    let mut running = initial as i64;
    for (t, data) in events {
        if t != "status_update_event" {
            continue;
        }
        match data["taskStatus"].as_str().unwrap() {
            "TASK_RUNNING" => running += 1,
            "TASK_KILLING" => running -= 1,
            _ => {}
        }
        assert!(running >= min as i64, "running {running} < {min}");
    }
}

fn max_alive(events: &[(String, Value)], initial: usize) -> usize {
    let mut alive = initial as i64;
    let mut max = alive;
    for (t, data) in events {
        if t != "status_update_event" {
            continue;
        }
        match data["taskStatus"].as_str().unwrap() {
            "TASK_STAGING" => alive += 1,
            "TASK_KILLING" => alive -= 1,
            _ => {}
        }
        max = max.max(alive);
    }
    max as usize
}

#[tokio::test]
async fn restart_respects_upgrade_strategy() {
    let (sim, client) = start(0.001).await;
    for (id, min, over, floor, ceiling) in [
        ("/half", 0.5, 0.0, 2, 4),
        ("/full", 1.0, 0.0, 4, 5),
        ("/wide", 1.0, 0.5, 4, 6),
    ] {
        let mut events = sim.sim.bus.subscribe();
        deploy(
            &sim,
            &client,
            &mut events,
            Method::POST,
            "/v2/apps",
            json!({ "id": id, "cmd": "run", "instances": 4,
                "upgradeStrategy": { "minimumHealthCapacity": min, "maximumOverCapacity": over } }),
        )
        .await;
        let restart = deploy(
            &sim,
            &client,
            &mut events,
            Method::PUT,
            &format!("/v2/apps{id}"),
            json!({ "cmd": "run --new" }),
        )
        .await;
        assert_eq!(*types(&restart).last().unwrap(), "deployment_success");
        assert_running_at_least(&restart, 4, floor);
        let max = max_alive(&restart, 4);
        assert!(max <= ceiling, "{id}: {max} alive > {ceiling}");
        let tasks = sim.sim.marathon.app_tasks(id);
        assert_eq!(tasks.len(), 4);
        let version = tasks[0].version.clone();
        assert!(tasks
            .iter()
            .all(|t| t.version == version && t.state == "TASK_RUNNING"));
    }
}

#[tokio::test]
async fn scale_down_follows_kill_selection() {
    let (sim, client) = start(0.0).await;
    for (id, selection) in [("/young", "YOUNGEST_FIRST"), ("/old", "OLDEST_FIRST")] {
        let mut events = sim.sim.bus.subscribe();
        deploy(
            &sim,
            &client,
            &mut events,
            Method::POST,
            "/v2/apps",
            json!({ "id": id, "cmd": "run", "instances": 3, "killSelection": selection }),
        )
        .await;
        let before = sim.sim.marathon.app_tasks(id);
        deploy(
            &sim,
            &client,
            &mut events,
            Method::PATCH,
            &format!("/v2/apps{id}"),
            json!({ "instances": 1 }),
        )
        .await;
        let after = sim.sim.marathon.app_tasks(id);
        assert_eq!(after.len(), 1);
        let kept = if selection == "YOUNGEST_FIRST" {
            &before[0]
        } else {
            &before[2]
        };
        assert_eq!(after[0].task_id, kept.task_id, "{selection}");
    }
}

#[tokio::test]
async fn health_checks_turn_healthy() {
    let (sim, client) = start(0.0).await;
    let mut events = sim.sim.bus.subscribe();
    let seen = deploy(
        &sim,
        &client,
        &mut events,
        Method::POST,
        "/v2/apps",
        json!({ "id": "/h", "cmd": "run", "instances": 2,
            "healthChecks": [{ "protocol": "MESOS_HTTP", "path": "/", "gracePeriodSeconds": 5 }] }),
    )
    .await;
    let healthy: Vec<_> = seen
        .iter()
        .filter(|(t, _)| t == "instance_health_changed_event")
        .collect();
    assert_eq!(healthy.len(), 2);
    assert_eq!(healthy[0].1["healthy"], true);
    assert_eq!(healthy[0].1["runSpecId"], "/h");
    let alive = seen
        .iter()
        .filter(|(t, d)| t == "health_status_changed_event" && d["alive"] == true)
        .count();
    assert_eq!(alive, 2);
    let app: Value = client
        .get(format!("{}/v2/apps/h", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(app["app"]["tasksHealthy"], 2);
    let result = &app["app"]["tasks"][0]["healthCheckResults"][0];
    assert_eq!(result["alive"], true);
    assert!(result["instanceId"].is_string());
    assert!(sim
        .sim
        .marathon
        .tasks()
        .iter()
        .all(|t| t.healthy == Some(true)));
}

#[tokio::test]
async fn failing_health_checks_kill_and_never_finish() {
    let (sim, client) = start(0.0).await;
    let mut events = sim.sim.bus.subscribe();
    call(
        &sim,
        &client,
        Method::POST,
        "/v2/apps",
        json!({ "id": "/sick", "cmd": "run", "labels": { "SIM_HEALTH": "fail" },
            "healthChecks": [{ "protocol": "HTTP", "gracePeriodSeconds": 1 }] }),
    )
    .await;
    let mut kinds = Vec::new();
    while !kinds.contains(&"unhealthy_instance_kill_event".to_string())
        || kinds
            .iter()
            .filter(|k| *k == "failed_health_check_event")
            .count()
            < 2
    {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(event.event_type, "deployment_success");
        kinds.push(event.event_type.clone());
    }
    assert_eq!(sim.sim.marathon.deployment_ids().len(), 1);
    let response = client
        .delete(format!("{}/v2/apps/sick", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), sim.sim.marathon.settled())
        .await
        .unwrap();
}

#[tokio::test]
async fn sim_deployment_fail_label() {
    let (sim, client) = start(0.0).await;
    let mut events = sim.sim.bus.subscribe();
    let seen = deploy(
        &sim,
        &client,
        &mut events,
        Method::POST,
        "/v2/apps",
        json!({ "id": "/doomed", "cmd": "run", "labels": { "SIM_DEPLOYMENT": "fail" } }),
    )
    .await;
    let kinds = types(&seen);
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["deployment_step_failure", "deployment_failed"]
    );
    assert!(seen.last().unwrap().1["reason"].is_string());
}

#[tokio::test]
async fn hooks_lose_task_and_set_health() {
    let (sim, client) = start(0.0).await;
    let mut events = sim.sim.bus.subscribe();
    deploy(
        &sim,
        &client,
        &mut events,
        Method::POST,
        "/v2/apps",
        json!({ "id": "/hooks", "cmd": "run", "instances": 2,
            "healthChecks": [{ "protocol": "HTTP", "gracePeriodSeconds": 1 }] }),
    )
    .await;
    let tasks = sim.sim.marathon.app_tasks("/hooks");
    assert!(tasks.iter().all(|t| t.healthy == Some(true)));

    assert!(sim
        .sim
        .marathon
        .set_task_health(&sim.sim, &tasks[0].task_id, false));
    let kinds: Vec<String> = (0..3)
        .map(|_| events.try_recv().unwrap().event_type.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "failed_health_check_event",
            "instance_health_changed_event",
            "health_status_changed_event"
        ]
    );
    assert_eq!(sim.sim.marathon.app_tasks("/hooks")[0].healthy, Some(false));
    assert!(sim
        .sim
        .marathon
        .set_task_health(&sim.sim, &tasks[0].task_id, true));

    assert!(sim.sim.marathon.lose_task(&sim.sim, &tasks[1].task_id));
    let mut lost = Vec::new();
    while lost.len() < 2 {
        let event = events.recv().await.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        if event.event_type == "status_update_event" && data["taskId"] == tasks[1].task_id.as_str()
        {
            lost.push(data["taskStatus"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(lost, ["TASK_UNREACHABLE", "TASK_GONE"]);
    for _ in 0..500 {
        let now = sim.sim.marathon.app_tasks("/hooks");
        if now.len() == 2 && now.iter().all(|t| t.healthy == Some(true)) {
            assert!(now.iter().all(|t| t.task_id != tasks[1].task_id));
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no replacement");
}
