//! The DC/OS client against the project's simulator: both logins, one re-login after a 401, token expiry with
//! many callers, 5xx faults absorbed by retries, URL rotation, and Metronome jobs, runs and schedules.

use std::time::Duration;

use dcos_driver::config::{AccountConfig, Credentials};
use dcos_driver::dcos::{ClientOptions, DcosClient, Job, RetryPolicy, Schedule};
use dcos_driver::sim::{self, SimConfig, SimHandle};
use dcos_driver::vocabulary::ErrorCode;
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

#[tokio::test]
async fn a_share_of_5xx_is_absorbed_by_retries() {
    let (sim, client) = cluster(SimConfig::instant()).await;
    sim.sim.faults.set_error_rate(0.3, 503, Vec::new());
    let client = client.with_retry(RetryPolicy {
        max_attempts: 12,
        ..RetryPolicy::fast()
    });
    for _ in 0..20 {
        client.marathon().ping().await.unwrap();
        client.metronome().list_jobs().await.unwrap();
    }
    sim.sim.faults.set_error_rate(1.0, 502, Vec::new());
    let err = client.marathon().ping().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosUnavailable);
}

#[tokio::test]
async fn password_login_then_one_relogin_after_a_401() {
    let config = SimConfig {
        auth_users: vec!["driver:s3cret".into()],
        ..SimConfig::instant()
    };
    let sim = sim::spawn(config).await.unwrap();
    let credentials = Credentials {
        uid: "driver".into(),
        password: Some("s3cret".into()),
        private_key_file: None,
        private_key: None,
    };
    let client = DcosClient::new(&account(&sim, Some(credentials.clone())), options()).unwrap();
    client.marathon().ping().await.unwrap();
    client.metronome().list_jobs().await.unwrap();
    assert_eq!(sim.sim.auth.logins(), 1);
    sim.sim.auth.expire_tokens();
    client.marathon().ping().await.unwrap();
    assert_eq!(sim.sim.auth.logins(), 2);

    let wrong = Credentials {
        password: Some("nope".into()),
        ..credentials
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
        auth_users: vec!["driver:s3cret".into()],
        token_ttl_seconds: 2,
        ..SimConfig::instant()
    };
    let sim = sim::spawn(config).await.unwrap();
    let credentials = Credentials {
        uid: "driver".into(),
        password: Some("s3cret".into()),
        private_key_file: None,
        private_key: None,
    };
    let client = DcosClient::new(&account(&sim, Some(credentials)), options()).unwrap();
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
