//! HTTP helpers of the simulated Marathon: JSON answers, Marathon's error bodies, query parsing.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Who made an API change and where, as `api_post_event` reports it: the request path (as the
/// client sent it, prefix included) and the peer's IP address.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub uri: String,
    pub client_ip: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ApiCall {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path(), |OriginalUri(uri)| uri.path())
            .to_string();
        // Served without connection info (a router called directly): loopback, as before.
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(
                || "127.0.0.1".to_string(),
                |ConnectInfo(a)| a.ip().to_string(),
            );
        Ok(ApiCall { uri, client_ip })
    }
}

/// A JSON answer from an already serialized body.
pub fn raw(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &Value) -> Response {
    raw(status, body.to_string())
}

/// Marathon's `{"message": …}` error.
pub fn message(status: StatusCode, text: impl Into<String>) -> Response {
    json(status, &json!({ "message": text.into() }))
}

/// 404 for an app id.
pub fn app_not_found(id: &str) -> Response {
    message(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"))
}

/// 404 for a task id.
pub fn task_not_found(id: &str) -> Response {
    message(StatusCode::NOT_FOUND, format!("Task '{id}' does not exist"))
}

/// 400 for a body that is not JSON.
pub fn invalid_json(details: impl Into<String>) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        &json!({ "message": "Invalid JSON", "details": details.into() }),
    )
}

/// 422 with Marathon's violation list: `(path, error)` pairs grouped by path.
pub fn invalid(violations: &[(String, String)]) -> Response {
    let mut details: Vec<(String, Vec<String>)> = Vec::new();
    for (path, error) in violations {
        match details.iter_mut().find(|(p, _)| p == path) {
            Some((_, errors)) => errors.push(error.clone()),
            None => details.push((path.clone(), vec![error.clone()])),
        }
    }
    let details: Vec<Value> = details
        .into_iter()
        .map(|(path, errors)| json!({ "path": path, "errors": errors }))
        .collect();
    json(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({ "message": "Object is not valid", "details": details }),
    )
}

/// 409 for an app that a running deployment holds. Marathon's message carries the literal
/// placeholder `<DEPLOYMENT_ID>`; the ids are only in `deployments`.
pub fn locked(deployment_ids: &[String]) -> Response {
    let deployments: Vec<Value> = deployment_ids
        .iter()
        .map(|id| json!({ "id": id }))
        .collect();
    json(
        StatusCode::CONFLICT,
        &json!({
            "message": "App is locked by one or more deployments. Override with the option \
                        '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
            "deployments": deployments,
        }),
    )
}

/// The deployment answer `{"deploymentId","version"}` with the `Marathon-Deployment-Id` header.
pub fn deployment_result(status: StatusCode, id: &str, version: &str) -> Response {
    let mut response = json(status, &json!({ "deploymentId": id, "version": version }));
    if let Ok(value) = HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert("Marathon-Deployment-Id", value);
    }
    response
}

/// Parses a request body as JSON, answering Marathon's 400 when it is not.
pub fn parse_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| invalid_json(e.to_string()))
}

/// The query string, with repeated keys kept.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter, case-insensitive (`true`, `True`); absent or unparsable → `default`.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => default,
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
