//! The simulated DC/OS login and token check over real HTTP.

use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/service-account.key.pem"
);
const PUB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/service-account.pub.pem"
);

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn sim() -> SimHandle {
    spawn(SimConfig {
        auth_users: vec!["alice:secret".into()],
        auth_service_accounts: vec![format!("driver={PUB}")],
        ..SimConfig::instant()
    })
    .await
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn login_token(uid: &str, exp: i64, key_pem: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"uid": uid, "exp": exp}),
        &EncodingKey::from_rsa_pem(key_pem).unwrap(),
    )
    .unwrap()
}

async fn login(sim: &SimHandle, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}/acs/api/v1/auth/login", sim.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn ping(sim: &SimHandle, authorization: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("{}/service/marathon/ping", sim.url()));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn password_login_issues_a_token_that_opens_the_api() {
    let sim = sim().await;
    let (status, body) = login(&sim, json!({"uid": "alice", "password": "secret"})).await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .unwrap()
        .claims;
    assert_eq!(claims["uid"], "alice");
    let exp = claims["exp"].as_i64().unwrap();
    assert!((exp - now() - 432_000).abs() < 5, "exp is now + ttl");
    let response = ping(&sim, Some(&format!("token={token}"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.sim.auth.logins(), 1);
}

#[tokio::test]
async fn bad_logins_are_401_invalid_credentials() {
    let sim = sim().await;
    let private = std::fs::read(KEY).unwrap();
    let cases = [
        json!({"uid": "alice", "password": "wrong"}),
        json!({"uid": "mallory", "password": "secret"}),
        json!({"uid": "driver", "token": "not.a.jwt"}),
        json!({"uid": "driver", "token": login_token("driver", now() - 120, &private)}),
        json!({"uid": "driver", "token": login_token("driver", now() + 3600, &private)}),
        json!({"uid": "driver", "token": login_token("other", now() + 60, &private)}),
        json!({"uid": "nobody", "token": login_token("nobody", now() + 60, &private)}),
    ];
    for case in cases {
        let (status, body) = login(&sim, case.clone()).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(body["code"], "ERR_INVALID_CREDENTIALS");
        assert!(body["title"].is_string() && body["description"].is_string());
    }
    assert_eq!(sim.sim.auth.logins(), 0);
}

#[tokio::test]
async fn service_account_login_with_a_signed_jwt() {
    let sim = sim().await;
    let private = std::fs::read(KEY).unwrap();
    let good = login_token("driver", now() + 300, &private);
    let (status, body) = login(&sim, json!({"uid": "driver", "token": good})).await;
    assert_eq!(status, 200);
    assert!(body["token"].is_string());

    // A tampered signature.
    let token = login_token("driver", now() + 300, &private);
    let sig_start = token.rfind('.').unwrap() + 1;
    let mut bytes = token.into_bytes();
    bytes[sig_start] = if bytes[sig_start] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    let (status, _) = login(&sim, json!({"uid": "driver", "token": forged})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn api_without_or_with_bad_token_is_401_acsjwt() {
    let sim = sim().await;
    for authorization in [
        None,
        Some("token=garbage"),
        Some("Bearer x"),
        Some("token=eyJhbGciOiJIUzI1NiJ9.eyJ1aWQiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5LCJnZW4iOjB9.AAAA"),
    ] {
        let response = ping(&sim, authorization).await;
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], "acsjwt");
        let body = response.text().await.unwrap();
        assert!(body.contains("<html>"), "{body}");
    }
    // The login and the admin API are outside the check.
    let stats = client()
        .get(format!("{}/sim/stats", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
}

#[tokio::test]
async fn admin_expiry_revokes_issued_tokens() {
    let sim = sim().await;
    let (_, body) = login(&sim, json!({"uid": "alice", "password": "secret"})).await;
    let header = format!("token={}", body["token"].as_str().unwrap());
    assert_eq!(ping(&sim, Some(&header)).await.status(), 200);
    let status = client()
        .post(format!("{}/sim/auth/expire-tokens", sim.url()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert_eq!(ping(&sim, Some(&header)).await.status(), 401);
    let (_, body) = login(&sim, json!({"uid": "alice", "password": "secret"})).await;
    let header = format!("token={}", body["token"].as_str().unwrap());
    assert_eq!(ping(&sim, Some(&header)).await.status(), 200);
    assert_eq!(sim.sim.auth.logins(), 2);
}

#[tokio::test]
async fn short_ttl_tokens_expire() {
    let sim = sim().await;
    sim.sim.auth.set_token_ttl_seconds(1);
    let (_, body) = login(&sim, json!({"uid": "alice", "password": "secret"})).await;
    let header = format!("token={}", body["token"].as_str().unwrap());
    assert_eq!(ping(&sim, Some(&header)).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(ping(&sim, Some(&header)).await.status(), 401);
}

#[tokio::test]
async fn without_configured_accounts_auth_is_off() {
    let sim = spawn(SimConfig::instant()).await.unwrap();
    assert_eq!(ping(&sim, None).await.status(), 200);
}
