//! The DC/OS login and the shared token: one login at a time, refreshed before it expires and once after a 401.
//!
//! A password account posts `{"uid","password"}`; a service account posts `{"uid","token"}` where the token is
//! an RS256 JWT `{uid, exp}` signed with its private key. DC/OS answers `{"token"}`, sent as
//! `Authorization: token=<token>`. Neither the secret nor the token ever reaches a log or an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tokio::time::Instant;

use super::error::{Call, DcosError};
use super::retry::RetryPolicy;
use super::transport::{CallSpec, Service, Transport};
use crate::config::Credentials;

/// The DC/OS login path, below the login base URL.
pub const LOGIN_PATH: &str = "/acs/api/v1/auth/login";
/// How far ahead a service-account login JWT expires (DC/OS accepts at most 10 minutes).
const LOGIN_JWT_LIFETIME: Duration = Duration::from_secs(300);
/// Assumed lifetime of a token that is not a JWT (DC/OS tokens last about 5 days).
const OPAQUE_TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 24 * 3600);
/// Share of a token's life after which it is renewed.
const REFRESH_AT: f64 = 0.8;

/// What proves who we are.
enum Secret {
    Password(String),
    ServiceAccount(EncodingKey),
}

/// A token as handed to a call: its value and the login it came from.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Arc<str>,
    pub generation: u64,
    refresh_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("generation", &self.generation)
            .finish()
    }
}

/// The login of one account and its current token.
pub(crate) struct TokenSource {
    uid: String,
    secret: Secret,
    state: parking_lot::Mutex<Option<Token>>,
    /// Held while logging in, so N callers that find the token stale cause one login.
    login_lock: tokio::sync::Mutex<()>,
    logins: AtomicU64,
}

impl TokenSource {
    /// Reads the credentials (and the key file) once, at client construction.
    pub fn new(credentials: &Credentials) -> Result<TokenSource, DcosError> {
        let setup = |message: String| DcosError::Setup {
            what: format!("credentials of {}", credentials.uid),
            message,
        };
        let secret = if let Some(password) = &credentials.password {
            Secret::Password(password.clone())
        } else {
            let pem = match (&credentials.private_key, &credentials.private_key_file) {
                (Some(pem), _) => pem.clone().into_bytes(),
                (None, Some(path)) => std::fs::read(path)
                    .map_err(|e| setup(format!("cannot read {}: {e}", path.display())))?,
                (None, None) => return Err(setup("no password and no private key".into())),
            };
            let key = EncodingKey::from_rsa_pem(&pem)
                .map_err(|e| setup(format!("the private key is not a usable RSA PEM key: {e}")))?;
            Secret::ServiceAccount(key)
        };
        Ok(TokenSource {
            uid: credentials.uid.clone(),
            secret,
            state: parking_lot::Mutex::new(None),
            login_lock: tokio::sync::Mutex::new(()),
            logins: AtomicU64::new(0),
        })
    }

    /// Logins made so far (for metrics and tests).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// A token that is not due for renewal, logging in first when needed (single-flight).
    pub async fn current(
        &self,
        transport: &Transport,
        policy: &RetryPolicy,
    ) -> Result<Token, DcosError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _login = self.login_lock.lock().await;
        // Whoever held the lock before us may have logged in already.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        self.login(transport, policy).await
    }

    /// DC/OS refused the token of login `generation`: forget it, unless a newer login replaced it already.
    pub fn rejected(&self, generation: u64) {
        let mut state = self.state.lock();
        if state.as_ref().is_some_and(|t| t.generation == generation) {
            *state = None;
        }
    }

    fn fresh(&self) -> Option<Token> {
        self.state
            .lock()
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .cloned()
    }

    async fn login(&self, transport: &Transport, policy: &RetryPolicy) -> Result<Token, DcosError> {
        let body = match &self.secret {
            Secret::Password(password) => {
                serde_json::json!({ "uid": self.uid, "password": password })
            }
            Secret::ServiceAccount(key) => {
                let jwt =
                    login_jwt(&self.uid, key, chrono::Utc::now().timestamp()).map_err(|e| {
                        DcosError::Auth {
                            call: login_call(),
                            reason: format!("cannot sign the login token: {e}"),
                        }
                    })?;
                serde_json::json!({ "uid": self.uid, "token": jwt })
            }
        };
        let spec =
            CallSpec::new(Service::Login, http::Method::POST, LOGIN_PATH, "login").json_body(&body);
        // Boxed: a login is itself a call, and a call may need a login.
        let answer = match Box::pin(transport.execute(spec, policy)).await {
            Ok(answer) => answer,
            // Whatever DC/OS said to a login (400, 401, 403, …), it means the credentials do not work.
            Err(DcosError::Validation { call, message, .. })
            | Err(DcosError::Refused { call, message, .. })
            | Err(DcosError::NotFound { call, message })
            | Err(DcosError::Conflict { call, message }) => {
                return Err(DcosError::Auth {
                    call,
                    reason: format!("login of {} refused: {message}", self.uid),
                })
            }
            Err(DcosError::Auth { call, reason }) => {
                return Err(DcosError::Auth {
                    call,
                    reason: format!("login of {} refused: {reason}", self.uid),
                })
            }
            Err(other) => return Err(other),
        };
        let token = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| DcosError::Auth {
                call: login_call(),
                reason: "the login answer has no token".into(),
            })?;
        // A floor, so a token that looks expired (clock skew) cannot turn every call into a login.
        let lifetime =
            token_lifetime(&token, chrono::Utc::now().timestamp()).max(Duration::from_secs(1));
        let generation = self.logins.fetch_add(1, Ordering::Relaxed) + 1;
        let fresh = Token {
            value: token.into(),
            generation,
            refresh_at: Instant::now() + lifetime.mul_f64(REFRESH_AT),
        };
        tracing::info!(uid = %self.uid, generation, lifetime_s = lifetime.as_secs(), "logged in to DC/OS");
        *self.state.lock() = Some(fresh.clone());
        Ok(fresh)
    }
}

fn login_call() -> Call {
    Call {
        method: http::Method::POST,
        path: LOGIN_PATH.into(),
    }
}

/// The service-account login JWT: `{uid, exp}` signed RS256, expiring [`LOGIN_JWT_LIFETIME`] after `now`.
pub(crate) fn login_jwt(
    uid: &str,
    key: &EncodingKey,
    now_unix: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = serde_json::json!({
        "uid": uid,
        "exp": now_unix + LOGIN_JWT_LIFETIME.as_secs() as i64,
    });
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
}

/// How long a token DC/OS issued stays valid: its `exp` if it is a JWT (read without verifying: DC/OS is the
/// judge of its own tokens), else DC/OS's usual 5 days.
pub(crate) fn token_lifetime(token: &str, now_unix: i64) -> Duration {
    let exp = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|claims| claims.get("exp").and_then(Value::as_i64));
    match exp {
        Some(exp) => Duration::from_secs(exp.saturating_sub(now_unix).max(0) as u64),
        None => OPAQUE_TOKEN_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const PRIVATE: &str = include_str!("../../tests/fixtures/service-account.key.pem");
    const PUBLIC: &str = include_str!("../../tests/fixtures/service-account.pub.pem");

    #[test]
    fn login_jwt_is_rs256_with_uid_and_exp() {
        let key = EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let jwt = login_jwt("svc-driver", &key, now).unwrap();
        let decoding = DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Value>(&jwt, &decoding, &validation).unwrap();
        assert_eq!(data.claims["uid"], "svc-driver");
        assert_eq!(data.claims["exp"], now + 300);
        assert_eq!(data.header.alg, Algorithm::RS256);
    }

    #[test]
    fn lifetime_from_exp_or_five_days() {
        let key = EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap();
        let jwt = login_jwt("u", &key, 1_000).unwrap(); // exp = 1300
        assert_eq!(token_lifetime(&jwt, 1_100), Duration::from_secs(200));
        assert_eq!(token_lifetime(&jwt, 2_000), Duration::ZERO);
        assert_eq!(
            token_lifetime("opaque-token", 0),
            Duration::from_secs(432_000)
        );
    }

    #[test]
    fn bad_keys_are_setup_errors_without_the_key() {
        let creds: Credentials = serde_json::from_value(serde_json::json!({
            "uid": "svc", "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
        }))
        .unwrap();
        let err = TokenSource::new(&creds).err().unwrap();
        assert!(matches!(err, DcosError::Setup { .. }));
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_is_due_at_eighty_percent_and_rejection_is_per_generation() {
        let creds: Credentials =
            serde_json::from_value(serde_json::json!({"uid": "u", "password": "p"})).unwrap();
        let source = TokenSource::new(&creds).unwrap();
        let lifetime = Duration::from_secs(100);
        *source.state.lock() = Some(Token {
            value: "t1".into(),
            generation: 1,
            refresh_at: Instant::now() + lifetime.mul_f64(REFRESH_AT),
        });
        tokio::time::advance(Duration::from_secs(79)).await;
        assert_eq!(source.fresh().unwrap().generation, 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            source.fresh().is_none(),
            "due for renewal after 80 s of 100"
        );
        *source.state.lock() = Some(Token {
            value: "t2".into(),
            generation: 2,
            refresh_at: Instant::now() + lifetime,
        });
        source.rejected(1); // a stale 401 does not throw away the newer token
        assert_eq!(source.fresh().unwrap().generation, 2);
        source.rejected(2);
        assert!(source.fresh().is_none());
    }
}
