//! The DC/OS client against a scripted HTTP server: retries, error codes, login, token refresh, URL rotation,
//! the concurrency bound and the call hook. (Tests against the project's simulator live in `dcos_sim.rs`.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dcos_driver::config::{AccountConfig, Credentials};
use dcos_driver::dcos::{
    App, AppsQuery, CallRecord, ClientOptions, DcosClient, DcosError, Job, RetryPolicy,
};
use dcos_driver::vocabulary::ErrorCode;
use parking_lot::Mutex;
use serde_json::{json, Value};

const PUBLIC_KEY: &str = include_str!("fixtures/service-account.pub.pem");
const PRIVATE_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/service-account.key.pem"
);
const LOCKED: &str = r#"{"message":"App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/d-1'.","deployments":[{"id":"d-1"}]}"#;

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

fn deployment_body() -> String {
    json!({"deploymentId": "d-42", "version": "2026-11-26T12:00:00.000Z"}).to_string()
}

/// A request the mock saw: method, URI, `Authorization`, body.
type Seen = (Method, String, Option<String>, String);

/// A scripted DC/OS: a login, a token check, and answers popped from a queue (else the default).
struct Mock {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Seen>>,
    auth: bool,
    token_ttl: u64,
    valid_token: Mutex<Option<String>>,
    reject_all_tokens: Mutex<bool>,
    logins: AtomicU32,
    latency: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Mock {
    fn new(auth: bool) -> Mock {
        Mock {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(reply(200, "{}")),
            requests: Mutex::new(Vec::new()),
            auth,
            token_ttl: 3600,
            valid_token: Mutex::new(None),
            reject_all_tokens: Mutex::new(false),
            logins: AtomicU32::new(0),
            latency: Duration::ZERO,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().extend(replies);
    }

    fn hits(&self) -> usize {
        self.requests.lock().len()
    }

    fn issue_token(&self) -> String {
        let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let exp = chrono::Utc::now().timestamp() + self.token_ttl as i64;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"uid": "driver", "exp": exp, "n": n}),
            &jsonwebtoken::EncodingKey::from_secret(b"mock-dcos"),
        )
        .unwrap();
        *self.valid_token.lock() = Some(token.clone());
        token
    }
}

async fn login(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let ok = match (
        body["uid"].as_str(),
        body.get("password"),
        body.get("token"),
    ) {
        (Some("driver"), Some(p), _) => p == "s3cret",
        (Some("svc"), _, Some(Value::String(jwt))) => {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
            let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            jsonwebtoken::decode::<Value>(jwt, &key, &validation)
                .map(|d| d.claims["uid"] == "svc")
                .unwrap_or(false)
        }
        _ => false,
    };
    if !ok {
        let refusal = json!({"code": "ERR_INVALID_CREDENTIALS", "title": "Bad credentials",
                             "description": "The credentials are wrong."});
        return (StatusCode::UNAUTHORIZED, refusal.to_string()).into_response();
    }
    axum::Json(json!({ "token": mock.issue_token() })).into_response()
}

async fn api(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    mock.requests.lock().push((
        method,
        uri.to_string(),
        authorization.clone(),
        String::from_utf8_lossy(&body).into_owned(),
    ));
    if mock.auth {
        let valid = mock.valid_token.lock().clone();
        let accepted = !*mock.reject_all_tokens.lock()
            && valid.is_some()
            && authorization == valid.map(|t| format!("token={t}"));
        if !accepted {
            let mut response =
                (StatusCode::UNAUTHORIZED, "<html><body>401</body></html>").into_response();
            response
                .headers_mut()
                .insert("www-authenticate", "acsjwt".parse().unwrap());
            return response;
        }
    }
    let now = mock.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    mock.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !mock.latency.is_zero() {
        tokio::time::sleep(mock.latency).await;
    }
    mock.in_flight.fetch_sub(1, Ordering::SeqCst);
    let next = mock.script.lock().pop_front();
    let r = next.unwrap_or_else(|| mock.default.lock().clone());
    let mut response = (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (k, v) in r.headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

async fn serve(mock: Mock) -> (Arc<Mock>, String) {
    let mock = Arc::new(mock);
    let app = Router::new()
        .route("/acs/api/v1/auth/login", post(login))
        .fallback(api)
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (mock, url)
}

fn account(marathon_urls: Vec<String>, dcos_url: Option<String>) -> AccountConfig {
    AccountConfig {
        name: "test".into(),
        dcos_url,
        marathon_urls,
        metronome_url: None,
        root_group: None,
        credentials: None,
        ca_file: None,
        insecure_tls: false,
        request_timeout_seconds: 5,
    }
}

fn password() -> Credentials {
    Credentials {
        uid: "driver".into(),
        password: Some("s3cret".into()),
        private_key_file: None,
        private_key: None,
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy::fast(),
        ..ClientOptions::default()
    }
}

async fn plain() -> (Arc<Mock>, DcosClient) {
    let (mock, url) = serve(Mock::new(false)).await;
    let client = DcosClient::new(&account(vec![url], None), options()).unwrap();
    (mock, client)
}

async fn with_login(mock: Mock, credentials: Credentials) -> (Arc<Mock>, DcosClient) {
    let (mock, url) = serve(mock).await;
    let mut account = account(Vec::new(), Some(url));
    account.credentials = Some(credentials);
    let client = DcosClient::new(&account, options()).unwrap();
    (mock, client)
}

fn app(id: &str) -> App {
    App::from_value(json!({"id": id, "cmd": "sleep 1000", "instances": 2})).unwrap()
}

#[tokio::test]
async fn not_found_and_validation_map_to_codes_with_details() {
    let (mock, client) = plain().await;
    mock.push([reply(404, r#"{"message":"App '/test/x' does not exist"}"#)]);
    let err = client.marathon().get_app("/test/x").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(
        err.message().contains("GET /v2/apps/test/x"),
        "{}",
        err.message()
    );

    let invalid = json!({"message": "Object is not valid", "details": [
        {"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]}]});
    mock.push([reply(422, invalid.to_string())]);
    let err = client
        .marathon()
        .update_app("/test/x", &app("/test/x"), false, true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosValidation);
    assert_eq!(
        err.details()["details"][0]["path"],
        "/upgradeStrategy/minimumHealthCapacity"
    );
    mock.push([reply(
        400,
        r#"{"message":"Invalid JSON","details":"unexpected end"}"#,
    )]);
    let err = client
        .marathon()
        .create_app(&app("/test/y"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosValidation);
    assert_eq!(err.details()["details"], "unexpected end");
    assert_eq!(mock.hits(), 3, "4xx answers are never retried");
}

#[tokio::test]
async fn five_hundreds_are_retried_until_an_answer() {
    let records = Arc::new(Mutex::new(Vec::new()));
    let seen = records.clone();
    let (mock, url) = serve(Mock::new(false)).await;
    let options = ClientOptions {
        on_call: Some(Arc::new(move |r: &CallRecord<'_>| {
            seen.lock().push((r.endpoint, r.status, r.attempt))
        })),
        ..options()
    };
    let client = DcosClient::new(&account(vec![url], None), options).unwrap();
    let mut unavailable = reply(503, "");
    unavailable.headers.push(("retry-after", "0".into()));
    mock.push([
        unavailable,
        reply(502, "<html>bad gateway</html>"),
        reply(200, deployment_body()),
    ]);
    let deployment = client
        .marathon()
        .update_app("/test/a", &app("/test/a"), false, true)
        .await
        .unwrap();
    assert_eq!(deployment.deployment_id, "d-42");
    assert_eq!(mock.hits(), 3);
    assert_eq!(
        *records.lock(),
        vec![
            ("apps.update", Some(503), 1),
            ("apps.update", Some(502), 2),
            ("apps.update", Some(200), 3)
        ]
    );
    let (method, uri, _, body) = mock.requests.lock()[2].clone();
    assert_eq!(method, Method::PUT);
    assert_eq!(uri, "/v2/apps/test/a?force=false&partialUpdate=true");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["instances"],
        2
    );
}

#[tokio::test]
async fn persistent_5xx_ends_unavailable_after_the_budget() {
    let (mock, client) = plain().await;
    *mock.default.lock() = reply(500, "boom");
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::fast()
    };
    let err = client
        .with_retry(policy)
        .marathon()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosUnavailable);
    assert!(matches!(
        err,
        DcosError::Unavailable {
            status: 500,
            attempts: 3,
            ..
        }
    ));
    assert_eq!(mock.hits(), 3);
}

#[tokio::test]
async fn locked_is_retried_then_succeeds_or_ends_in_conflict() {
    let (mock, client) = plain().await;
    mock.push([
        reply(409, LOCKED),
        reply(409, LOCKED),
        reply(200, deployment_body()),
    ]);
    let deployment = client
        .marathon()
        .restart_app("/test/a", false)
        .await
        .unwrap();
    assert_eq!(deployment.version, "2026-11-26T12:00:00.000Z");
    assert_eq!(mock.hits(), 3);

    *mock.default.lock() = reply(409, LOCKED);
    let impatient = client
        .retry_policy()
        .clone()
        .on_locked(2, Duration::from_millis(1));
    let err = client
        .with_retry(impatient)
        .marathon()
        .restart_app("/test/a", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(err.details()["deployments"], json!(["d-1"]));
    assert_eq!(mock.hits(), 5);

    *mock.default.lock() = reply(
        409,
        r#"{"message":"An app with id [/test/a] already exists."}"#,
    );
    let err = client
        .marathon()
        .create_app(&app("/test/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, DcosError::Conflict { .. }), "{err:?}");
    assert_eq!(mock.hits(), 6, "an existing id is not retried");
}

#[tokio::test]
async fn a_closed_first_url_rotates_to_the_next_and_is_remembered() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (mock, url) = serve(Mock::new(false)).await;
    mock.push([reply(200, r#"{"leader":"m1:8080"}"#)]);
    let client = DcosClient::new(&account(vec![closed, url.clone()], None), options()).unwrap();
    assert_eq!(client.marathon().leader().await.unwrap(), "m1:8080");
    assert_eq!(client.marathon_base(), url);
    client.marathon().ping().await.unwrap();
    assert_eq!(mock.hits(), 2);
    let events = client.events_request().await.unwrap();
    assert_eq!(events.url, format!("{url}/v2/events"));
    assert!(events.authorization.is_none());
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let client = DcosClient::new(&account(vec![closed], None), options()).unwrap();
    let err = client.marathon().ping().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DcosUnavailable);
    assert!(
        matches!(err, DcosError::Network { attempts: 5, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn password_login_sends_the_token() {
    let (mock, client) = with_login(Mock::new(true), password()).await;
    mock.push([reply(
        200,
        json!({"apps": [{"id": "/test/a", "instances": 1}]}).to_string(),
    )]);
    let apps = client
        .marathon()
        .list_apps(&AppsQuery::full().under("/test/"))
        .await
        .unwrap();
    assert_eq!(apps[0].id(), "/test/a");
    assert_eq!(client.logins(), 1);
    let (_, uri, authorization, _) = mock.requests.lock()[0].clone();
    assert_eq!(
        uri,
        "/service/marathon/v2/apps?embed=apps.tasks&embed=apps.deployments&embed=apps.counts&id=%2Ftest%2F"
    );
    assert!(authorization.unwrap().starts_with("token=ey"));
    let events = client.events_request().await.unwrap();
    assert!(events.authorization.is_some());
    assert!(!format!("{events:?}").contains("token="));
}

#[tokio::test]
async fn service_account_login_signs_a_jwt() {
    let credentials = Credentials {
        uid: "svc".into(),
        password: None,
        private_key_file: Some(PRIVATE_KEY_FILE.into()),
        private_key: None,
    };
    let (mock, client) = with_login(Mock::new(true), credentials).await;
    client.marathon().ping().await.unwrap();
    assert_eq!(mock.logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_login_is_auth_failed_without_secrets() {
    let mut wrong = password();
    wrong.password = Some("wrong-password".into());
    let (mock, client) = with_login(Mock::new(true), wrong).await;
    let err = client.marathon().ping().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
    assert!(
        !err.message().contains("wrong-password"),
        "{}",
        err.message()
    );
    assert!(!format!("{err:?}").contains("wrong-password"));
    assert_eq!(mock.hits(), 0, "no API call without a token");
}

#[tokio::test]
async fn a_401_causes_exactly_one_fresh_login() {
    let (mock, client) = with_login(Mock::new(true), password()).await;
    client.marathon().ping().await.unwrap();
    // DC/OS forgets the token (e.g. the IAM restarted): the next call logs in once more.
    *mock.valid_token.lock() = Some("revoked".into());
    client.marathon().ping().await.unwrap();
    assert_eq!(client.logins(), 2);
    // A token refused even right after a fresh login is AUTH_FAILED, not a login loop.
    *mock.reject_all_tokens.lock() = true;
    let err = client.marathon().ping().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
    assert_eq!(client.logins(), 3);
}

#[tokio::test]
async fn concurrent_callers_share_one_login_and_renew_once_before_expiry() {
    let mock = Mock {
        token_ttl: 2,
        ..Mock::new(true)
    };
    let (mock, client) = with_login(mock, password()).await;
    let burst = |client: DcosClient| async move {
        let calls = (0..20).map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.marathon().ping().await })
        });
        for result in futures::future::join_all(calls).await {
            result.unwrap().unwrap();
        }
    };
    burst(client.clone()).await;
    assert_eq!(mock.logins.load(Ordering::SeqCst), 1);
    // The token lives 1–2 s (whole-second exp); it is renewed at 80 % of that, before DC/OS refuses it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    *mock.valid_token.lock() = None; // the old token is now expired on the server as well
    mock.logins.store(0, Ordering::SeqCst);
    let before = mock.hits();
    burst(client.clone()).await;
    assert_eq!(mock.logins.load(Ordering::SeqCst), 1);
    assert_eq!(mock.hits() - before, 20, "no call was refused and repeated");
}

#[tokio::test]
async fn concurrent_calls_are_bounded() {
    let mock = Mock {
        latency: Duration::from_millis(30),
        ..Mock::new(false)
    };
    let (mock, url) = serve(mock).await;
    let options = ClientOptions {
        max_concurrent_calls: 3,
        ..options()
    };
    let client = DcosClient::new(&account(vec![url], None), options).unwrap();
    let calls = (0..12).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { c.marathon().ping().await })
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap().unwrap();
    }
    assert_eq!(mock.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn raw_reads_keep_the_query_and_are_bounded() {
    let (mock, url) = serve(Mock::new(false)).await;
    let options = ClientOptions {
        max_response_bytes: 1000,
        ..options()
    };
    let client = DcosClient::new(&account(vec![url], None), options).unwrap();
    mock.push([reply(200, r#"{"apps":[]}"#), reply(200, "x".repeat(5000))]);
    let bytes = client
        .marathon()
        .get_bytes("/v2/apps?embed=apps.tasks&label=HAPROXY_GROUP%3D%3Dx")
        .await
        .unwrap();
    assert_eq!(&bytes[..], br#"{"apps":[]}"#);
    assert_eq!(
        mock.requests.lock()[0].1,
        "/v2/apps?embed=apps.tasks&label=HAPROXY_GROUP%3D%3Dx"
    );
    let err = client.marathon().get_bytes("/v2/apps").await.unwrap_err();
    assert!(
        matches!(err, DcosError::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn kill_answers_tasks_or_a_deployment() {
    let (mock, client) = plain().await;
    let task = json!({"id": "a.instance-1._app.1", "appId": "/test/a", "host": "h", "state": "TASK_KILLING"});
    mock.push([
        reply(200, json!({"tasks": [task]}).to_string()),
        reply(200, deployment_body()),
    ]);
    let ids = vec!["a.instance-1._app.1".to_string()];
    let killed = client
        .marathon()
        .kill_tasks(&ids, Default::default())
        .await
        .unwrap();
    assert!(
        matches!(killed, dcos_driver::dcos::marathon::Killed::Tasks(ref t) if t[0].app_id == "/test/a")
    );
    let scaled = dcos_driver::dcos::marathon::KillOptions {
        scale: true,
        ..Default::default()
    };
    let killed = client.marathon().kill_tasks(&ids, scaled).await.unwrap();
    assert!(
        matches!(killed, dcos_driver::dcos::marathon::Killed::Deployment(ref d) if d.deployment_id == "d-42")
    );
    let requests = mock.requests.lock();
    assert_eq!(requests[1].1, "/v2/tasks/delete?scale=true");
    assert_eq!(
        serde_json::from_str::<Value>(&requests[1].3).unwrap(),
        json!({"ids": ids})
    );
}

#[tokio::test]
async fn metronome_calls_need_a_metronome_url() {
    let (_mock, client) = plain().await;
    let err = client.metronome().list_jobs().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnsupportedOperation);

    let (mock, url) = serve(Mock::new(false)).await;
    let mut account = account(vec![url.clone()], None);
    account.metronome_url = Some(format!("{url}/metronome"));
    let client = DcosClient::new(&account, options()).unwrap();
    let job = Job::from_value(
        json!({"id": "test.nightly", "run": {"cpus": 0.1, "mem": 32, "disk": 0, "cmd": "true"}}),
    )
    .unwrap();
    mock.push([
        reply(201, job.clone().into_value().to_string()),
        reply(
            201,
            json!({"id": "20261126", "jobId": "test.nightly", "status": "INITIAL", "tasks": []})
                .to_string(),
        ),
        reply(
            409,
            r#"{"message":"There are active job runs. Override with stopCurrentJobRuns=true"}"#,
        ),
    ]);
    assert_eq!(
        client.metronome().create_job(&job).await.unwrap().id(),
        "test.nightly"
    );
    let run = client.metronome().start_run("test.nightly").await.unwrap();
    assert_eq!(
        (run.job_id.as_str(), run.status.as_str()),
        ("test.nightly", "INITIAL")
    );
    let err = client
        .metronome()
        .delete_job("test.nightly", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    let uris: Vec<String> = mock.requests.lock().iter().map(|r| r.1.clone()).collect();
    assert_eq!(
        uris,
        vec![
            "/metronome/v1/jobs",
            "/metronome/v1/jobs/test.nightly/runs",
            "/metronome/v1/jobs/test.nightly?stopCurrentJobRuns=false"
        ]
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (mock, client) = plain().await;
    let mut busy = reply(429, r#"{"message":"slow down"}"#);
    busy.headers.push(("retry-after", "1".into()));
    mock.push([busy, reply(200, "pong")]);
    let policy = RetryPolicy {
        cap: Duration::from_secs(2),
        ..RetryPolicy::fast()
    };
    let started = std::time::Instant::now();
    client.with_retry(policy).marathon().ping().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.hits(), 2);
}

#[tokio::test]
async fn setup_mistakes_show_when_the_client_is_built() {
    let mut tls = account(vec!["https://127.0.0.1:1".into()], None);
    tls.insecure_tls = true;
    DcosClient::new(&tls, options()).unwrap();
    tls.ca_file = Some("/nonexistent/ca.pem".into());
    let err = DcosClient::new(&tls, options()).unwrap_err();
    assert!(matches!(err, DcosError::Setup { .. }), "{err:?}");
    assert!(err.to_string().contains("ca_file"), "{err}");

    let mut keyless = account(Vec::new(), Some("http://127.0.0.1:1".into()));
    keyless.credentials = Some(Credentials {
        uid: "svc".into(),
        password: None,
        private_key_file: Some("/nonexistent/key.pem".into()),
        private_key: None,
    });
    let err = DcosClient::new(&keyless, options()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
}
