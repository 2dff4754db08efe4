//! Contract tests of the simulated Marathon REST API (real HTTP against an in-process simulator).

use std::time::Duration;

use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

struct Api {
    sim: SimHandle,
    client: Client,
}

impl Api {
    async fn start() -> Api {
        Api::with(SimConfig::instant()).await
    }

    async fn with(config: SimConfig) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = spawn(config).await.expect("sim");
        Api {
            sim,
            client: Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call_raw(method, path, body.map(|b| b.to_string()))
            .await;
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, value)
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.sim.url()));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("body"))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn settled(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.sim.sim.marathon.settled())
            .await
            .expect("deployments settle");
    }

    async fn create(&self, app: Value) -> Value {
        let (status, body) = self.call(Method::POST, "/v2/apps", Some(app)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

fn app(id: &str, instances: u32) -> Value {
    json!({ "id": id, "cmd": "sleep 1000", "instances": instances, "cpus": 0.1, "mem": 32 })
}

#[tokio::test]
async fn create_answers_201_with_location_and_deployment() {
    let api = Api::start().await;
    let (status, headers, body) = api
        .call_raw(
            Method::POST,
            "/v2/apps",
            Some(app("prod/web/api-v001", 2).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["location"], "/v2/apps/prod/web/api-v001");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["id"], "/prod/web/api-v001");
    assert_eq!(body["deployments"].as_array().unwrap().len(), 1);
    assert!(body["deployments"][0]["id"].is_string());
    for (field, value) in [
        ("instances", json!(2)),
        ("disk", json!(0)),
        ("gpus", json!(0)),
        ("backoffSeconds", json!(1)),
        ("backoffFactor", json!(1.15)),
        ("maxLaunchDelaySeconds", json!(300)),
        ("killSelection", json!("YOUNGEST_FIRST")),
        ("requirePorts", json!(false)),
        ("labels", json!({})),
        ("env", json!({})),
        ("constraints", json!([])),
    ] {
        assert_eq!(body[field], value, "{field}");
    }
    assert_eq!(
        body["upgradeStrategy"],
        json!({ "minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0 })
    );
    assert_eq!(body["portDefinitions"][0]["port"], 10000);
    assert_eq!(body["portDefinitions"][0]["protocol"], "tcp");
    assert!(body["versionInfo"]["lastConfigChangeAt"].is_string());

    api.settled().await;
    let (status, body) = api.get("/v2/apps/prod/web/api-v001").await;
    assert_eq!(status, StatusCode::OK);
    let app = &body["app"];
    assert_eq!(app["tasksRunning"], 2);
    assert_eq!(app["deployments"], json!([]));
    let tasks = app["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let task = &tasks[0];
    assert_eq!(task["state"], "TASK_RUNNING");
    assert_eq!(task["appId"], "/prod/web/api-v001");
    let id = task["id"].as_str().unwrap();
    assert!(
        id.starts_with("prod_web_api-v001.instance-") && id.ends_with("._app.1"),
        "{id}"
    );
    for field in ["host", "slaveId", "stagedAt", "startedAt", "version"] {
        assert!(task[field].is_string(), "{field}");
    }
    assert_eq!(task["servicePorts"], json!([10000]));
    assert_eq!(task["ports"].as_array().unwrap().len(), 1);
    assert_eq!(task["ipAddresses"][0]["protocol"], "IPv4");

    let (status, body) = api.get("/service/marathon/v2/apps/prod/*").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["*"].as_array().unwrap().len(), 1);
    let (_, body) = api.get("/v2/apps/prod/web/api-v001/tasks").await;
    assert_eq!(body["tasks"].as_array().unwrap().len(), 2);
    let (_, body) = api.get("/v2/tasks").await;
    assert_eq!(body["tasks"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn errors_match_marathon() {
    let api = Api::with(SimConfig {
        time_scale: 0.05,
        ..SimConfig::instant()
    })
    .await;
    api.create(app("/x", 1)).await;
    let (status, body) = api.call(Method::POST, "/v2/apps", Some(app("/x", 1))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "message": "An app with id [/x] already exists." })
    );

    // Still deploying: locked.
    let (status, body) = api
        .call(Method::PUT, "/v2/apps/x", Some(json!({ "instances": 3 })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let deployment = body["deployments"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.sim.sim.marathon.deployment_ids(),
        vec![deployment.clone()]
    );
    assert_eq!(
        body["message"],
        "App is locked by one or more deployments. Override with the option '?force=true'. \
         View details at '/v2/deployments/<DEPLOYMENT_ID>'."
    );
    let mut events = api.sim.sim.bus.subscribe();
    let (status, headers, body) = api
        .call_raw(
            Method::PUT,
            "/v2/apps/x?force=True",
            Some(json!({ "instances": 3 }).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        headers["marathon-deployment-id"],
        body["deploymentId"].as_str().unwrap()
    );
    assert!(body["version"].is_string());
    let failed = loop {
        let event = events.recv().await.unwrap();
        if event.event_type == "deployment_failed" {
            break serde_json::from_str::<Value>(&event.data).unwrap();
        }
    };
    assert_eq!(failed["id"], deployment.as_str());

    let (status, body) = api
        .call(
            Method::POST,
            "/v2/apps",
            Some(json!({ "id": "/Bad_Id", "cmd": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["message"], "Object is not valid");
    assert_eq!(body["details"][0]["path"], "/id");
    let (status, body) = api
        .call(
            Method::POST,
            "/v2/apps",
            Some(json!({ "id": "/y", "cmd": "x", "args": ["a"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"][0]["path"], "/");
    let (status, body) = api
        .call(
            Method::POST,
            "/v2/apps",
            Some(
                json!({ "id": "/y", "cmd": "x", "portDefinitions": [{ "port": 70000 }],
                "upgradeStrategy": { "minimumHealthCapacity": 2 } }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/portDefinitions(0)/port"), "{paths:?}");
    assert!(
        paths.contains(&"/upgradeStrategy/minimumHealthCapacity"),
        "{paths:?}"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/v2/apps",
            Some(json!({ "id": "/a/tasks", "cmd": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, _, body) = api
        .call_raw(Method::POST, "/v2/apps", Some("{not json".into()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "Invalid JSON");
    assert!(body["details"].is_string());

    let (status, body) = api.get("/v2/apps/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({ "message": "App '/nope' does not exist" }));
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v2/apps/nope",
            Some(json!({ "instances": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api.call(Method::DELETE, "/v2/apps/x/tasks/zzz", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({ "message": "Task 'zzz' does not exist" }));
    let (status, _) = api
        .call(
            Method::DELETE,
            "/v2/apps/x/tasks/zzz?scale=true&wipe=true",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = api
        .call(
            Method::POST,
            "/v2/tasks/delete",
            Some(json!({ "ids": ["zzz"] })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn put_creates_and_patch_updates() {
    let api = Api::start().await;
    let (status, _, _) = api
        .call_raw(
            Method::PUT,
            "/v2/apps/new",
            Some(app("/new", 1).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.settled().await;
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v2/apps/new",
            Some(json!({ "instances": 3 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.settled().await;
    let (_, body) = api.get("/v2/apps/new").await;
    assert_eq!(body["app"]["instances"], 3);
    assert_eq!(body["app"]["cmd"], "sleep 1000");
    assert_eq!(body["app"]["tasksRunning"], 3);
    // A partial update switching cmd to args drops cmd.
    let (status, body) = api
        .call(
            Method::PUT,
            "/v2/apps/new",
            Some(json!({ "args": ["run"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.settled().await;
    let (_, body) = api.get("/v2/apps/new").await;
    assert!(body["app"].get("cmd").is_none());
    assert_eq!(body["app"]["tasksRunning"], 3);
    let (_, list) = api.get("/v2/apps?embed=apps.tasks&id=NE").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 1);
    assert_eq!(list["apps"][0]["tasks"].as_array().unwrap().len(), 3);
    let (_, list) = api.get("/v2/apps?id=zzz").await;
    assert_eq!(list["apps"], json!([]));
    let (status, _) = api
        .call(
            Method::PATCH,
            "/v2/apps/new",
            Some(json!({ "labels": { "team": "a" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = api.get("/v2/apps?label=team==a").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 1);
    let (_, list) = api.get("/v2/apps?label=team==b").await;
    assert_eq!(list["apps"], json!([]));
}

#[tokio::test]
async fn kills_scale_and_replace() {
    let api = Api::start().await;
    api.create(app("/k", 3)).await;
    api.settled().await;
    let tasks = api.sim.sim.marathon.app_tasks("/k");
    assert_eq!(tasks.len(), 3);
    // Without scale: replaced.
    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/v2/apps/k/tasks/{}", tasks[0].task_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["task"]["id"], tasks[0].task_id.as_str());
    wait_for(|| {
        let t = api.sim.sim.marathon.app_tasks("/k");
        t.len() == 3
            && t.iter().all(|t| t.state == "TASK_RUNNING")
            && !t.iter().any(|x| x.task_id == tasks[0].task_id)
    })
    .await;
    // With scale: instances drop.
    let (status, body) = api
        .call(
            Method::POST,
            "/v2/tasks/delete?scale=true",
            Some(json!({ "ids": [tasks[1].task_id] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["deploymentId"].is_string());
    api.settled().await;
    wait_for(|| api.sim.sim.marathon.app_tasks("/k").len() == 2).await;
    let (_, body) = api.get("/v2/apps/k").await;
    assert_eq!(body["app"]["instances"], 2);
    // All tasks of the app, with scale.
    let (status, _) = api
        .call(Method::DELETE, "/v2/apps/k/tasks?scale=true", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    api.settled().await;
    wait_for(|| api.sim.sim.marathon.app_tasks("/k").is_empty()).await;
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn fail_task_is_replaced() {
    let api = Api::start().await;
    api.create(app("/f", 1)).await;
    api.settled().await;
    let task = api.sim.sim.marathon.app_tasks("/f").remove(0);
    let mut events = api.sim.sim.bus.subscribe();
    // The hook without the `Arc<Sim>` (it calls `fail_task`).
    assert!(api.sim.sim.marathon.fail(&task.task_id));
    wait_for(|| {
        let t = api.sim.sim.marathon.app_tasks("/f");
        t.len() == 1 && t[0].task_id != task.task_id && t[0].state == "TASK_RUNNING"
    })
    .await;
    let first: Value = serde_json::from_str(&events.recv().await.unwrap().data).unwrap();
    assert_eq!(first["taskStatus"], "TASK_FAILED");
    let (_, body) = api.get("/v2/apps/f").await;
    assert_eq!(
        body["app"]["lastTaskFailure"]["taskId"],
        task.task_id.as_str()
    );
}

#[tokio::test]
async fn deployments_list_and_rollback() {
    let api = Api::with(SimConfig {
        time_scale: 0.05,
        ..SimConfig::instant()
    })
    .await;
    api.create(app("/r", 2)).await;
    let (status, list) = api.get("/v2/deployments").await;
    assert_eq!(status, StatusCode::OK);
    let d = &list[0];
    assert_eq!(d["affectedApps"], json!(["/r"]));
    assert_eq!(d["totalSteps"], 2);
    assert_eq!(d["steps"][0]["actions"][0]["action"], "StartApplication");
    assert_eq!(
        d["steps"][1]["actions"][0],
        json!({ "action": "ScaleApplication", "app": "/r" })
    );
    assert!(d["currentStep"].is_u64());
    let id = d["id"].as_str().unwrap().to_string();
    let mut events = api.sim.sim.bus.subscribe();
    let (status, body) = api
        .call(Method::DELETE, &format!("/v2/deployments/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rollback = body["deploymentId"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    loop {
        let event = events.recv().await.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        seen.push(event.event_type.clone());
        if event.event_type == "deployment_success" {
            assert_eq!(data["id"], rollback.as_str());
            break;
        }
    }
    assert_eq!(seen[0], "deployment_failed");
    assert!(
        seen.contains(&"app_terminated_event".to_string()),
        "{seen:?}"
    );
    let (status, _) = api.get("/v2/apps/r").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // force: 202, no rollback.
    api.create(app("/s", 1)).await;
    let (_, list) = api.get("/v2/deployments").await;
    let id = list[0]["id"].as_str().unwrap();
    let (status, _, body) = api
        .call_raw(
            Method::DELETE,
            &format!("/v2/deployments/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.is_empty());
    let (_, list) = api.get("/v2/deployments").await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn groups_tree_dry_run_and_update() {
    let api = Api::start().await;
    api.create(app("/g/a/one", 1)).await;
    api.create(app("/g/two", 1)).await;
    api.settled().await;
    let (status, group) = api.get("/v2/groups/g").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["id"], "/g");
    assert_eq!(group["apps"][0]["id"], "/g/two");
    assert_eq!(group["groups"][0]["id"], "/g/a");
    assert_eq!(group["groups"][0]["apps"][0]["id"], "/g/a/one");
    let (_, root) = api.get("/v2/groups").await;
    assert_eq!(root["groups"][0]["id"], "/g");

    let target = json!({ "id": "/g", "apps": [
        { "id": "two", "cmd": "sleep 1000", "instances": 2, "cpus": 0.1, "mem": 32 },
        { "id": "three", "cmd": "sleep 1", "instances": 1 },
    ]});
    let (status, plan) = api
        .call(
            Method::PUT,
            "/v2/groups/g?dryRun=true",
            Some(target.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<(String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap().clone())
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["app"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("StopApplication".into(), "/g/a/one".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("StartApplication".into(), "/g/three".into())),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("ScaleApplication".into(), "/g/two".into())),
        "{actions:?}"
    );
    assert!(api.sim.sim.marathon.deployment_ids().is_empty());
    assert_eq!(api.sim.sim.marathon.app_ids(), vec!["/g/a/one", "/g/two"]);

    let (status, body) = api.call(Method::PUT, "/v2/groups/g", Some(target)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["deploymentId"].is_string());
    api.settled().await;
    assert_eq!(api.sim.sim.marathon.app_ids(), vec!["/g/three", "/g/two"]);
    wait_for(|| api.sim.sim.marathon.app_tasks("/g/two").len() == 2).await;

    let (status, body) = api
        .call(
            Method::PUT,
            "/v2/groups/g",
            Some(json!({ "apps": [{ "id": "Bad", "cmd": "x" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"][0]["path"], "/apps(0)/id");

    let (status, _) = api.call(Method::DELETE, "/v2/groups/g", None).await;
    assert_eq!(status, StatusCode::OK);
    api.settled().await;
    assert!(api.sim.sim.marathon.app_ids().is_empty());
    let (status, _) = api.get("/v2/groups/g").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn info_leader_ping_queue() {
    let api = Api::start().await;
    let (status, info) = api.get("/v2/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["name"], "marathon");
    assert_eq!(info["elected"], true);
    for key in ["marathon_config", "zookeeper_config", "http_config"] {
        assert!(info[key].is_object(), "{key}");
    }
    assert!(info["zookeeper_config"]["zk"].is_string());
    let (_, leader) = api.get("/v2/leader").await;
    assert_eq!(leader["leader"], api.sim.addr.to_string());
    let (_, _, pong) = api.call_raw(Method::GET, "/ping", None).await;
    assert_eq!(pong, "pong");
    let (status, queue) = api.get("/v2/queue").await;
    assert_eq!(status, StatusCode::OK);
    assert!(queue["queue"].is_array());
}

#[tokio::test]
async fn leader_and_info_follow_the_leadership() {
    use dcos_driver::sim::faults::Leader;
    let api = Api::start().await;
    let (_, headers, _) = api.call_raw(Method::GET, "/v2/leader", None).await;
    assert_eq!(headers["x-marathon-leader"], api.sim.url().as_str());

    // A standby proxies to the leader: the leader's answers.
    api.sim
        .sim
        .faults
        .set_leader(Leader::Other("http://10.0.4.2:8080/".into()));
    let (status, headers, body) = api.call_raw(Method::GET, "/v2/leader", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-marathon-leader"], "http://10.0.4.2:8080");
    let leader: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(leader, json!({ "leader": "10.0.4.2:8080" }));
    let (_, info) = api.get("/v2/info").await;
    assert_eq!(info["leader"], "10.0.4.2:8080");
    assert_eq!(info["elected"], true);
    assert_eq!(info["http_config"]["http_port"], 8080);

    // No leader: Marathon's proxy filter answers 503.
    api.sim.sim.faults.set_leader(Leader::None);
    for path in ["/v2/leader", "/v2/info"] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["message"], "Could not determine the current leader");
    }

    api.sim.sim.faults.set_leader(Leader::This);
    let (_, leader) = api.get("/v2/leader").await;
    assert_eq!(leader["leader"], api.sim.addr.to_string());
}

#[tokio::test]
async fn api_post_event_client_ip_is_the_peer() {
    let api = Api::start().await;
    let mut events = api.sim.sim.bus.subscribe();
    // Any 127.x address is loopback on Linux: connect from one that is not the default.
    let client = Client::builder()
        .local_address(Some([127, 0, 0, 2].into()))
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/v2/apps", api.sim.url()))
        .json(&app("/peer", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let posted = loop {
        let event = events.recv().await.unwrap();
        if event.event_type == "api_post_event" {
            break event;
        }
    };
    let posted: Value = serde_json::from_str(&posted.data).unwrap();
    assert_eq!(posted["clientIp"], "127.0.0.2");
    assert_eq!(posted["uri"], "/v2/apps");
}

#[tokio::test]
async fn preload_2000_apps() {
    let started = std::time::Instant::now();
    let api = Api::with(SimConfig {
        preload_apps: 2000,
        preload_tasks: 5,
        preload_group: "/load".into(),
        ..SimConfig::instant()
    })
    .await;
    let (status, _, body) = api
        .call_raw(Method::GET, "/v2/apps?embed=apps.tasks", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    let apps = body["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 2000);
    assert!(apps
        .iter()
        .all(|a| a["tasks"].as_array().unwrap().len() == 5
            && a["tasksRunning"] == 5
            && a["tasksHealthy"] == 5
            && a["id"].as_str().unwrap().starts_with("/load/")));
    assert_eq!(api.sim.sim.marathon.tasks().len(), 10_000);
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// The scale the project's benchmarks use: 10,000 apps × 5 tasks, read in full.
#[tokio::test]
async fn preload_10000_apps_is_fast() {
    let started = std::time::Instant::now();
    let api = Api::with(SimConfig {
        preload_apps: 10_000,
        preload_tasks: 5,
        ..SimConfig::instant()
    })
    .await;
    let loaded = started.elapsed();
    let started = std::time::Instant::now();
    let response = api
        .client
        .get(format!("{}/v2/apps?embed=apps.tasks", api.sim.url()))
        .send()
        .await
        .unwrap();
    let body = response.bytes().await.unwrap();
    let read = started.elapsed();
    eprintln!("preload {loaded:?}, read {} bytes in {read:?}", body.len());
    assert!(body.len() > 10_000_000);
    // Generous bounds (debug build, shared machine); typical: ~2 s and ~0.2 s.
    assert!(loaded < Duration::from_secs(20), "{loaded:?}");
    assert!(read < Duration::from_secs(10), "{read:?}");

    // Single-app reads stay cheap with 10,000 apps loaded.
    let started = std::time::Instant::now();
    let reads = futures::future::join_all((0..2000).map(|i| {
        let url = format!("{}/v2/apps/preload/app-{:05}", api.sim.url(), i * 5);
        let client = api.client.clone();
        async move { client.get(url).send().await.unwrap().status() }
    }))
    .await;
    let elapsed = started.elapsed();
    eprintln!("2000 app reads in {elapsed:?}");
    assert!(reads.iter().all(|s| *s == StatusCode::OK));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}
