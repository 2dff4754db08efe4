//! The DC/OS login (`POST /acs/api/v1/auth/login`) and the token check in front of Marathon and
//! Metronome.
//!
//! Auth is on when a password user (`--auth-user uid:password`) or a service account
//! (`--auth-service-account uid=/path/public.pem`) is configured, or added at run time. Logins:
//! - `{"uid","password"}`, checked against the users;
//! - `{"uid","token"}`, the token an RS256 JWT with claims `uid` (equal to the body's) and `exp` (in the
//!   future, at most 10 minutes ahead, as DC/OS IAM demands), signed by the service account's key.
//!
//! Success → 200 `{"token": "<jwt>"}`. Issued tokens are HS256 JWTs (DC/OS signs RS256; nobody but the
//! simulator verifies them) with claims `uid`, `exp` (now + `--token-ttl-seconds`) and `gen`; clients may
//! read `exp`. A failed login → 401 `{"title","description","code":"ERR_INVALID_CREDENTIALS"}`.
//! Without a valid unexpired `Authorization: token=<jwt>`, API requests get Admin Router's 401: an HTML
//! body and `WWW-Authenticate: acsjwt`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Sim, SimConfig};

/// DC/OS IAM refuses login tokens whose `exp` is further ahead than this (seconds), plus leeway.
const MAX_LOGIN_TOKEN_AHEAD: u64 = 600;
/// Clock skew tolerated on login tokens (seconds).
const LEEWAY: u64 = 30;

/// Users, service accounts and issued tokens.
pub struct Auth {
    users: Mutex<HashMap<String, String>>,
    service_accounts: Mutex<HashMap<String, DecodingKey>>,
    secret: Vec<u8>,
    token_ttl_seconds: AtomicU64,
    generation: AtomicU64,
    logins: AtomicU64,
    failed_logins: AtomicU64,
}

/// Claims of the tokens the simulator issues.
#[derive(Debug, Serialize, Deserialize)]
struct IssuedClaims {
    uid: String,
    exp: u64,
    gen: u64,
}

/// Claims of a service account's login token.
#[derive(Debug, Deserialize)]
struct LoginClaims {
    uid: String,
    exp: u64,
}

/// Why a login failed (logged; the client sees one 401 shape).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("unknown uid {0}")]
    UnknownUid(String),
    #[error("wrong password for {0}")]
    WrongPassword(String),
    #[error("login token rejected: {0}")]
    BadToken(#[source] jsonwebtoken::errors::Error),
    #[error("login token uid {claimed} does not match {uid}")]
    UidMismatch { uid: String, claimed: String },
    #[error("login token exp is more than {MAX_LOGIN_TOKEN_AHEAD}s ahead")]
    ExpTooFar,
    #[error("neither password nor token given")]
    NoCredentials,
}

impl Auth {
    pub fn new(config: &SimConfig) -> Self {
        let mut users = HashMap::new();
        for entry in &config.auth_users {
            match entry.split_once(':') {
                Some((uid, password)) => {
                    users.insert(uid.to_string(), password.to_string());
                }
                None => tracing::error!(%entry, "--auth-user wants uid:password"),
            }
        }
        let mut service_accounts = HashMap::new();
        for entry in &config.auth_service_accounts {
            let key = entry.split_once('=').and_then(|(uid, path)| {
                let pem = std::fs::read(path)
                    .map_err(|e| tracing::error!(%path, error = %e, "cannot read public key"))
                    .ok()?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| tracing::error!(%path, error = %e, "not an RSA public key"))
                    .ok()?;
                Some((uid.to_string(), key))
            });
            match key {
                Some((uid, key)) => {
                    service_accounts.insert(uid, key);
                }
                None => {
                    tracing::error!(%entry, "--auth-service-account wants uid=/path/public.pem")
                }
            }
        }
        let secret: [u8; 32] = rand::random();
        Auth {
            users: Mutex::new(users),
            service_accounts: Mutex::new(service_accounts),
            secret: secret.to_vec(),
            token_ttl_seconds: AtomicU64::new(config.token_ttl_seconds),
            generation: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            failed_logins: AtomicU64::new(0),
        }
    }

    /// Whether API requests need a token (some user or service account is configured).
    pub fn enabled(&self) -> bool {
        !self.users.lock().is_empty() || !self.service_accounts.lock().is_empty()
    }

    /// Adds a password user (turns auth on).
    pub fn add_user(&self, uid: &str, password: &str) {
        self.users
            .lock()
            .insert(uid.to_string(), password.to_string());
    }

    /// Adds a service account with its RSA public key in PEM (turns auth on).
    pub fn add_service_account(&self, uid: &str, public_pem: &[u8]) -> Result<(), String> {
        let key = DecodingKey::from_rsa_pem(public_pem).map_err(|e| e.to_string())?;
        self.service_accounts.lock().insert(uid.to_string(), key);
        Ok(())
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_ttl_seconds(&self, seconds: u64) {
        self.token_ttl_seconds.store(seconds, Ordering::SeqCst);
    }

    /// Makes every token issued so far invalid (clients then get 401 and must log in again).
    pub fn expire_tokens(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Successful logins so far (to assert that clients do not stampede the login).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::SeqCst)
    }

    /// Failed logins so far.
    pub fn failed_logins(&self) -> u64 {
        self.failed_logins.load(Ordering::SeqCst)
    }

    /// Checks credentials and issues a token.
    pub fn login(
        &self,
        uid: &str,
        password: Option<&str>,
        token: Option<&str>,
    ) -> Result<String, LoginError> {
        let result = self.check_credentials(uid, password, token);
        match result {
            Ok(()) => {
                self.logins.fetch_add(1, Ordering::SeqCst);
                Ok(self.issue(uid))
            }
            Err(e) => {
                self.failed_logins.fetch_add(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn check_credentials(
        &self,
        uid: &str,
        password: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), LoginError> {
        if !self.enabled() {
            return Ok(());
        }
        if let Some(password) = password {
            return match self.users.lock().get(uid) {
                None => Err(LoginError::UnknownUid(uid.to_string())),
                Some(expected) if expected == password => Ok(()),
                Some(_) => Err(LoginError::WrongPassword(uid.to_string())),
            };
        }
        let Some(token) = token else {
            return Err(LoginError::NoCredentials);
        };
        let key = self
            .service_accounts
            .lock()
            .get(uid)
            .cloned()
            .ok_or_else(|| LoginError::UnknownUid(uid.to_string()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY;
        validation.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<LoginClaims>(token, &key, &validation)
            .map_err(LoginError::BadToken)?
            .claims;
        if claims.uid != uid {
            return Err(LoginError::UidMismatch {
                uid: uid.to_string(),
                claimed: claims.uid,
            });
        }
        if claims.exp > now() + MAX_LOGIN_TOKEN_AHEAD + LEEWAY {
            return Err(LoginError::ExpTooFar);
        }
        Ok(())
    }

    fn issue(&self, uid: &str) -> String {
        let claims = IssuedClaims {
            uid: uid.to_string(),
            exp: now() + self.token_ttl_seconds.load(Ordering::SeqCst),
            gen: self.generation.load(Ordering::SeqCst),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .expect("HS256 signing with an in-memory secret cannot fail")
    }

    /// Whether `token` is one we issued, unexpired and not revoked.
    pub fn token_valid(&self, token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        match jsonwebtoken::decode::<IssuedClaims>(
            token,
            &DecodingKey::from_secret(&self.secret),
            &validation,
        ) {
            Ok(data) => data.claims.gen == self.generation.load(Ordering::SeqCst),
            Err(_) => false,
        }
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    uid: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

async fn login(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let request: LoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "title": "Bad Request",
                    "description": format!("Request has bad JSON: {e}"),
                    "code": "ERR_MALFORMED_JSON",
                })),
            )
                .into_response();
        }
    };
    let uid = request.uid.unwrap_or_default();
    match sim
        .auth
        .login(&uid, request.password.as_deref(), request.token.as_deref())
    {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => {
            tracing::info!(%uid, error = %e, "simulated DC/OS login refused");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "acsjwt")],
                Json(json!({
                    "title": "Unauthorized",
                    "description": "The account cannot be authenticated: invalid credentials.",
                    "code": "ERR_INVALID_CREDENTIALS",
                })),
            )
                .into_response()
        }
    }
}

/// `POST /acs/api/v1/auth/login`.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/acs/api/v1/auth/login", post(login))
}

/// Puts the token check in front of the Marathon and Metronome routes.
pub fn layer(api: Router<Arc<Sim>>, sim: Arc<Sim>) -> Router<Arc<Sim>> {
    api.layer(middleware::from_fn_with_state(sim, require_token))
}

async fn require_token(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    if !sim.auth.enabled() {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("token="));
    match token {
        Some(token) if sim.auth.token_valid(token) => next.run(request).await,
        _ => unauthorized(),
    }
}

/// Admin Router's 401.
fn unauthorized() -> Response {
    let body = "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n\
                <center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty</center>\r\n\
                </body>\r\n</html>\r\n";
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "acsjwt"),
            (header::CONTENT_TYPE, "text/html"),
        ],
        body,
    )
        .into_response()
}
