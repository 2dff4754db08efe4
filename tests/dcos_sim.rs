//! The DC/OS client against the project's simulator: the app life cycle, error codes, a locked app retried
//! until its deployment ends, both logins, one re-login after a 401, token expiry with many callers, 5xx
//! faults absorbed by retries, URL rotation, and Metronome jobs, runs and schedules.

use std::sync::Arc;
use std::time::Duration;

use dcos_driver::config::{AccountConfig, Credentials};
use dcos_driver::dcos::{
    App, AppsQuery, CallRecord, ClientOptions, DcosClient, Job, RetryPolicy, Schedule,
};
use dcos_driver::sim::{self, SimConfig, SimHandle};
use dcos_driver::vocabulary::ErrorCode;
use parking_lot::Mutex;
use serde_json::json;

const PUBLIC_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/service-account.pub.pem"
);
const PRIVATE_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/service-account.key.pem"
);

fn account(sim: &SimHandle, credentials: Option<Credentials>) -> AccountConfig {
    AccountConfig {
        name: "test".into(),
        dcos_url: Some(sim.url()),
        marathon_urls: Vec::new(),
        metronome_url: None,
        root_group: None,
        credentials,
        ca_file: None,
        insecure_tls: false,
        request_timeout_seconds: 10,
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy::fast(),
        ..ClientOptions::default()
    }
}

async fn cluster(config: SimConfig) -> (SimHandle, DcosClient) {
    let sim = sim::spawn(config).await.unwrap();
    let client = DcosClient::new(&account(&sim, None), options()).unwrap();
    (sim, client)
}

fn password() -> Credentials {
    Credentials {
        uid: "driver".into(),
        password: Some("s3cret".into()),
        private_key_file: None,
        private_key: None,
    }
}

/// A simulator with the password user `driver` and a client that logs in as it.
async fn password_cluster(config: SimConfig) -> (SimHandle, DcosClient) {
    let config = SimConfig {
        auth_users: vec!["driver:s3cret".into()],
        ..config
    };
    let sim = sim::spawn(config).await.unwrap();
    let client = DcosClient::new(&account(&sim, Some(password())), options()).unwrap();
    (sim, client)
}

fn app(id: &str, instances: u64) -> App {
    App::from_value(
        json!({"id": id, "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": instances}),
    )
    .unwrap()
}

#[tokio::test]
async fn app_create_get_update_delete() {
    let (sim, client) = cluster(SimConfig::instant()).await;
    let marathon = client.marathon();
    let created = marathon
        .create_app(&app("/test/web/api-v001", 2))
        .await
        .unwrap();
    assert_eq!(created.app.id(), "/test/web/api-v001");
    assert!(!created.deployment.deployment_id.is_empty());
    sim.sim.marathon.settled().await;

    let read = marathon.get_app("/test/web/api-v001").await.unwrap();
    assert_eq!(read.instances(), Some(2));
    assert_eq!(read.tasks().len(), 2);
    assert!(read
        .tasks()
        .iter()
        .all(|t| t.state.as_deref() == Some("TASK_RUNNING")));

    let patch = App::from_value(json!({"instances": 3})).unwrap();
    let deployment = marathon
        .update_app("/test/web/api-v001", &patch, false, true)
        .await
        .unwrap();
    assert!(!deployment.deployment_id.is_empty() && !deployment.version.is_empty());
    sim.sim.marathon.settled().await;
    assert_eq!(
        marathon
            .app_tasks("/test/web/api-v001")
            .await
            .unwrap()
            .len(),
        3
    );
    let listed = marathon
        .list_apps(&AppsQuery::full().under("/test/"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tasks().len(), 3);

    marathon
        .delete_app("/test/web/api-v001", false)
        .await
        .unwrap();
    sim.sim.marathon.settled().await;
    let err = marathon.get_app("/test/web/api-v001").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(marathon.deployments().await.unwrap().is_empty());
    assert_eq!(marathon.info().await.unwrap()["name"], "marathon");
    marathon.ping().await.unwrap();
}

#[tokio::test]
async fn refusals_map_to_codes() {
    let (_sim, client) = cluster(SimConfig::instant()).await;
    let marathon = client.marathon();
    let err = marathon.get_app("/test/missing").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    let mut invalid = app("/test/bad", 1);
    invalid.set("upgradeStrategy", json!({"minimumHealthCapacity": 2}));
    let err = marathon.create_app(&invalid).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosValidation);
    let details = err.details();
    let paths: Vec<&str> = details["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/upgradeStrategy/minimumHealthCapacity"),
        "{details}"
    );

    marathon.create_app(&app("/test/dup", 0)).await.unwrap();
    let err = marathon.create_app(&app("/test/dup", 0)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
}

#[tokio::test]
async fn a_locked_app_is_retried_until_its_deployment_ends() {
    let config = SimConfig {
        time_scale: 0.05,
        ..SimConfig::instant()
    };
    let sim = sim::spawn(config).await.unwrap();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let options = ClientOptions {
        on_call: Some(Arc::new(move |r: &CallRecord<'_>| {
            if r.endpoint == "apps.update" {
                seen.lock().push(r.status);
            }
        })),
        ..options()
    };
    let client = DcosClient::new(&account(&sim, None), options).unwrap();
    let marathon = client.marathon();
    marathon.create_app(&app("/test/locked", 2)).await.unwrap();
    // Still deploying: the first PUT is refused as locked; later ones go through once it ends.
    let patient = RetryPolicy::fast().on_locked(200, Duration::from_millis(20));
    let patch = App::from_value(json!({"instances": 1})).unwrap();
    client
        .with_retry(patient)
        .marathon()
        .update_app("/test/locked", &patch, false, true)
        .await
        .unwrap();
    let statuses = statuses.lock().clone();
    assert_eq!(statuses.first(), Some(&Some(409)), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&Some(200)), "{statuses:?}");

    // A budget of one attempt turns the lock into CONFLICT with the deployment named.
    let impatient = RetryPolicy::fast().on_locked(1, Duration::from_millis(1));
    let err = client
        .with_retry(impatient)
        .marathon()
        .update_app("/test/locked", &app("/test/locked", 3), false, true)
        .await;
    let err = err.expect_err("the previous deployment is still running");
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert!(!err.details()["deployments"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_share_of_5xx_is_absorbed_by_retries() {
    let (sim, client) = cluster(SimConfig::instant()).await;
    sim.sim.faults.set_error_rate(0.3, 503, Vec::new());
    let client = client.with_retry(RetryPolicy {
        max_attempts: 12,
        ..RetryPolicy::fast()
    });
    for _ in 0..20 {
        client
            .marathon()
            .list_apps(&AppsQuery::default())
            .await
            .unwrap();
        client.metronome().list_jobs().await.unwrap();
    }
    sim.sim.faults.set_error_rate(1.0, 502, Vec::new());
    let err = client.marathon().ping().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosUnavailable);
}

#[tokio::test]
async fn password_login_then_one_relogin_after_a_401() {
    let (sim, client) = password_cluster(SimConfig::instant()).await;
    client.marathon().ping().await.unwrap();
    client.metronome().list_jobs().await.unwrap();
    assert_eq!(sim.sim.auth.logins(), 1);
    sim.sim.auth.expire_tokens();
    client.marathon().ping().await.unwrap();
    assert_eq!(sim.sim.auth.logins(), 2);

    let wrong = Credentials {
        password: Some("nope".into()),
        ..password()
    };
    let client = DcosClient::new(&account(&sim, Some(wrong)), options()).unwrap();
    let err = client.marathon().ping().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
}

#[tokio::test]
async fn service_account_login() {
    let config = SimConfig {
        auth_service_accounts: vec![format!("svc={PUBLIC_KEY_FILE}")],
        ..SimConfig::instant()
    };
    let sim = sim::spawn(config).await.unwrap();
    let credentials = Credentials {
        uid: "svc".into(),
        password: None,
        private_key_file: Some(PRIVATE_KEY_FILE.into()),
        private_key: None,
    };
    let client = DcosClient::new(&account(&sim, Some(credentials)), options()).unwrap();
    client.marathon().ping().await.unwrap();
    client.metronome().list_jobs().await.unwrap();
    assert_eq!(sim.sim.auth.logins(), 1);
}

#[tokio::test]
async fn expiring_tokens_cause_one_login_for_many_callers() {
    let config = SimConfig {
        token_ttl_seconds: 2,
        ..SimConfig::instant()
    };
    let (sim, client) = password_cluster(config).await;
    let burst = |client: DcosClient| async move {
        let calls = (0..25).map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.marathon().ping().await })
        });
        for result in futures::future::join_all(calls).await {
            result.unwrap().unwrap();
        }
    };
    burst(client.clone()).await;
    assert_eq!(sim.sim.auth.logins(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    burst(client.clone()).await;
    assert_eq!(sim.sim.auth.logins(), 2);
}

#[tokio::test]
async fn a_closed_first_marathon_url_rotates_to_the_simulator() {
    let sim = sim::spawn(SimConfig::instant()).await.unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut account = account(&sim, None);
    account.marathon_urls = vec![closed];
    let client = DcosClient::new(&account, options()).unwrap();
    client.marathon().ping().await.unwrap();
    assert_eq!(
        client.marathon_base(),
        format!("{}/service/marathon", sim.url())
    );
    assert!(!client.marathon().leader().await.unwrap().is_empty());
}

#[tokio::test]
async fn metronome_jobs_runs_and_schedules() {
    let (_sim, client) = cluster(SimConfig::instant()).await;
    let metronome = client.metronome();
    let job = Job::from_value(json!({
        "id": "test.nightly",
        "run": {"cpus": 0.1, "mem": 32, "disk": 0, "cmd": "sleep 1"}
    }))
    .unwrap();
    metronome.create_job(&job).await.unwrap();
    let err = metronome.create_job(&job).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(
        metronome.get_job("test.nightly").await.unwrap().id(),
        "test.nightly"
    );
    let run = metronome.start_run("test.nightly").await.unwrap();
    let read = metronome.get_run("test.nightly", &run.id).await.unwrap();
    assert_eq!(read.id, run.id);
    let schedule = Schedule {
        id: "every-night".into(),
        cron: "0 3 * * *".into(),
        timezone: Some("UTC".into()),
        concurrency_policy: Some("ALLOW".into()),
        enabled: Some(true),
        ..Schedule::default()
    };
    metronome
        .create_schedule("test.nightly", &schedule)
        .await
        .unwrap();
    assert_eq!(
        metronome
            .list_schedules("test.nightly")
            .await
            .unwrap()
            .len(),
        1
    );
    metronome
        .delete_schedule("test.nightly", "every-night")
        .await
        .unwrap();
    metronome.delete_job("test.nightly", true).await.unwrap();
    let err = metronome.get_job("test.nightly").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let invalid =
        Job::from_value(json!({"id": "test.bad", "run": {"cpus": 0.001, "mem": 1, "disk": 0}}))
            .unwrap();
    let err = metronome.create_job(&invalid).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosValidation);
}

#[tokio::test]
async fn restart_kill_and_groups() {
    use dcos_driver::dcos::marathon::{GroupChange, KillOptions, Killed};
    let (sim, client) = cluster(SimConfig::instant()).await;
    let marathon = client.marathon();
    marathon
        .create_app(&app("/test/g/api-v001", 2))
        .await
        .unwrap();
    sim.sim.marathon.settled().await;
    let restart = marathon
        .restart_app("/test/g/api-v001", false)
        .await
        .unwrap();
    assert!(!restart.deployment_id.is_empty());
    sim.sim.marathon.settled().await;

    let tasks = marathon.app_tasks("/test/g/api-v001").await.unwrap();
    assert_eq!(tasks.len(), 2);
    let scale = KillOptions {
        scale: true,
        ..KillOptions::default()
    };
    let killed = marathon
        .kill_tasks(&[tasks[0].id.clone()], scale)
        .await
        .unwrap();
    assert!(matches!(killed, Killed::Deployment(_)), "{killed:?}");
    sim.sim.marathon.settled().await;
    assert_eq!(
        marathon
            .get_app("/test/g/api-v001")
            .await
            .unwrap()
            .instances(),
        Some(1)
    );
    let err = marathon
        .kill_app_task(
            "/test/g/api-v001",
            "nope.instance-x._app.1",
            KillOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    let group = marathon.get_group("/test").await.unwrap();
    assert_eq!(group["id"], "/test");
    let plan = marathon
        .put_group("/test", &group, true, false)
        .await
        .unwrap();
    assert!(matches!(plan, GroupChange::Plan(_)), "{plan:?}");
    marathon.delete_group("/test/g", true).await.unwrap();
    sim.sim.marathon.settled().await;
    let err = marathon.get_app("/test/g/api-v001").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn running_deployments_are_listed_and_cancelled() {
    let config = SimConfig {
        time_scale: 0.2,
        ..SimConfig::instant()
    };
    let (sim, client) = cluster(config).await;
    let marathon = client.marathon();
    let created = marathon.create_app(&app("/test/slow", 3)).await.unwrap();
    let running = marathon.deployments().await.unwrap();
    let deployment = running
        .iter()
        .find(|d| d.id == created.deployment.deployment_id)
        .expect("the create's deployment is running");
    assert_eq!(deployment.affected_apps, vec!["/test/slow"]);
    assert!(deployment.total_steps >= 1);
    let stopped = marathon
        .cancel_deployment(&deployment.id, true)
        .await
        .unwrap();
    assert_eq!(stopped, None, "a forced cancel answers 202 without a body");
    sim.sim.marathon.settled().await;
    let err = marathon
        .cancel_deployment(&deployment.id, true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}
