//! Metronome's request bodies: JSON parsing, validation with Metronome's 422 shape, and defaults.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use regex::Regex;
use serde_json::{json, Map, Value};

/// 422 `{"message":"Object is not valid","details":[{"path","errors":[…]}]}`.
pub(super) fn invalid(details: Vec<(String, String)>) -> Response {
    let details: Vec<Value> = details
        .into_iter()
        .map(|(path, error)| json!({"path": path, "errors": [error]}))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Object is not valid", "details": details})),
    )
        .into_response()
}

/// A request body Metronome refuses: malformed JSON (400) or not an object (422).
pub(super) enum BodyError {
    Malformed(String),
    NotAnObject,
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        match self {
            BodyError::Malformed(details) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": "Invalid JSON", "details": details})),
            )
                .into_response(),
            BodyError::NotAnObject => invalid(vec![("/".into(), "expected an object".into())]),
        }
    }
}

pub(super) fn parse_body(body: &[u8]) -> Result<Value, BodyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(BodyError::NotAnObject),
        Err(e) => Err(BodyError::Malformed(e.to_string())),
    }
}

fn id_regex() -> &'static Regex {
    static ID: OnceLock<Regex> = OnceLock::new();
    ID.get_or_init(|| {
        Regex::new(r"^[a-z0-9]+(-+[a-z0-9]+)*(\.[a-z0-9]+(-+[a-z0-9]+)*)*$").expect("valid regex")
    })
}

/// Validates a job spec and fills Metronome's defaults; the violations as (path, error) otherwise.
pub(super) fn normalize_job(mut spec: Value) -> Result<Value, Vec<(String, String)>> {
    let mut errors = Vec::new();
    match spec["id"].as_str() {
        Some(id) if id_regex().is_match(id) => {}
        Some(_) => errors.push((
            "/id".into(),
            "must fully match regular expression '^([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])(\\.([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9]))*$'".into(),
        )),
        None => errors.push(("/id".into(), "error.path.missing".into())),
    }
    if !spec["run"].is_object() {
        errors.push(("/run".into(), "error.path.missing".into()));
        return Err(errors);
    }
    let run = &spec["run"];
    match run["cpus"].as_f64() {
        Some(c) if c >= 0.01 => {}
        Some(_) => errors.push(("/run/cpus".into(), "is less than 0.01".into())),
        None => errors.push(("/run/cpus".into(), "error.path.missing".into())),
    }
    match run["mem"].as_f64() {
        Some(m) if m >= 32.0 => {}
        Some(_) => errors.push(("/run/mem".into(), "is less than 32".into())),
        None => errors.push(("/run/mem".into(), "error.path.missing".into())),
    }
    match &run["disk"] {
        Value::Null => {}
        d if d.as_f64().is_some_and(|d| d >= 0.0) => {}
        _ => errors.push(("/run/disk".into(), "is less than 0".into())),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let object = spec.as_object_mut().expect("checked object");
    object
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    let run = object["run"].as_object_mut().expect("checked object");
    run.entry("disk").or_insert(json!(0));
    run.entry("env").or_insert_with(|| json!({}));
    run.entry("maxLaunchDelay").or_insert(json!(3600));
    run.entry("restart")
        .or_insert_with(|| json!({"policy": "NEVER"}));
    Ok(spec)
}

pub(super) fn normalize_schedule(mut spec: Value) -> Result<Value, Vec<(String, String)>> {
    let mut errors = Vec::new();
    match spec["id"].as_str() {
        Some(id) if id_regex().is_match(id) => {}
        Some(_) => errors.push(("/id".into(), "must fully match regular expression".into())),
        None => errors.push(("/id".into(), "error.path.missing".into())),
    }
    match spec["cron"].as_str() {
        Some(cron) if cron.split_whitespace().count() == 5 => {}
        Some(_) => errors.push(("/cron".into(), "Cron expression not valid".into())),
        None => errors.push(("/cron".into(), "error.path.missing".into())),
    }
    match spec["concurrencyPolicy"].as_str() {
        None | Some("ALLOW") | Some("FORBID") => {}
        Some(_) => errors.push((
            "/concurrencyPolicy".into(),
            "error.expected.jsstring".into(),
        )),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let object = spec.as_object_mut().expect("checked object");
    object.entry("timezone").or_insert(json!("UTC"));
    object
        .entry("startingDeadlineSeconds")
        .or_insert(json!(900));
    object.entry("concurrencyPolicy").or_insert(json!("ALLOW"));
    object.entry("enabled").or_insert(json!(true));
    Ok(spec)
}
