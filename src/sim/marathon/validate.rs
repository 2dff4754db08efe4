//! App ids and app definitions: canonical ids, Marathon's defaults, and the 422 checks.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Map, Value};

static SEGMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$",
    )
    .expect("id regex")
});

const SEGMENT_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

/// Fields Marathon computes: accepted in a request and ignored.
const READ_ONLY: [&str; 10] = [
    "tasks",
    "deployments",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "lastTaskFailure",
    "readinessCheckResults",
    "version",
    "versionInfo",
];

/// Resolves `id` against `base` (both may be relative; `.` and `..` resolve) to an absolute id.
pub fn canonical(base: &str, id: &str) -> String {
    let mut parts: Vec<&str> = if id.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
    for segment in id.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Checks every segment of an absolute app id; `path` is the JSON path of the id.
pub fn check_id(id: &str, path: &str, out: &mut Vec<(String, String)>) {
    let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        out.push((
            path.into(),
            "Path must contain at least one path element".into(),
        ));
        return;
    }
    if segments.iter().any(|s| !SEGMENT.is_match(s)) {
        out.push((
            path.into(),
            format!("must fully match regular expression '{SEGMENT_PATTERN}'"),
        ));
    }
    if let Some(last) = segments.last() {
        if ["restart", "tasks", "versions"].contains(last) {
            out.push((
                path.into(),
                "must not end with any of the following reserved keywords: restart, tasks, versions"
                    .into(),
            ));
        }
    }
}

fn number(def: &Map<String, Value>, key: &str, min: f64, out: &mut Vec<(String, String)>) {
    match def.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(0.0);
            if v < min {
                out.push((
                    format!("/{key}"),
                    format!("got {v}, expected {min} or more"),
                ));
            }
        }
        Some(_) => out.push((format!("/{key}"), "error.expected.jsnumber".into())),
    }
}

/// Marathon's checks of a complete (merged) app definition; empty when valid.
pub fn check_app(def: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match def.get("id").and_then(Value::as_str) {
        Some(id) => check_id(id, "/id", &mut out),
        None => out.push(("/id".into(), "error.path.missing".into())),
    }
    let present = |k: &str| def.get(k).is_some_and(|v| !v.is_null());
    if present("cmd") && present("args") {
        out.push((
            "/".into(),
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
                .into(),
        ));
    }
    if !present("cmd") && !present("args") && !present("container") {
        out.push((
            "/".into(),
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
                .into(),
        ));
    }
    match def.get("instances") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_i64() {
            Some(n) if n < 0 => {
                out.push(("/instances".into(), format!("got {n}, expected 0 or more")))
            }
            Some(_) => {}
            None => out.push(("/instances".into(), "error.expected.jsnumber".into())),
        },
    }
    for key in ["cpus", "mem", "disk", "gpus"] {
        number(def, key, 0.0, &mut out);
    }
    if let Some(strategy) = def.get("upgradeStrategy").and_then(Value::as_object) {
        for key in ["minimumHealthCapacity", "maximumOverCapacity"] {
            if let Some(v) = strategy.get(key) {
                let path = format!("/upgradeStrategy/{key}");
                match v.as_f64() {
                    Some(n) if n < 0.0 => out.push((path, "is less than 0".into())),
                    Some(n) if n > 1.0 => out.push((path, "is greater than 1".into())),
                    Some(_) => {}
                    None => out.push((path, "error.expected.jsnumber".into())),
                }
            }
        }
    }
    if let Some(ports) = def.get("portDefinitions") {
        match ports.as_array() {
            Some(ports) => {
                for (i, p) in ports.iter().enumerate() {
                    match p.get("port").map(Value::as_i64) {
                        Some(Some(port)) if !(0..=65535).contains(&port) => out.push((
                            format!("/portDefinitions({i})/port"),
                            format!("got {port}, expected between 0 and 65535"),
                        )),
                        Some(None) => out.push((
                            format!("/portDefinitions({i})/port"),
                            "error.expected.jsnumber".into(),
                        )),
                        _ => {}
                    }
                }
            }
            None => out.push(("/portDefinitions".into(), "error.expected.jsarray".into())),
        }
    }
    for (key, expected) in [("labels", "jsobject"), ("env", "jsobject")] {
        if def.get(key).is_some_and(|v| !v.is_object()) {
            out.push((format!("/{key}"), format!("error.expected.{expected}")));
        }
    }
    for key in ["constraints", "healthChecks"] {
        if def.get(key).is_some_and(|v| !v.is_array()) {
            out.push((format!("/{key}"), "error.expected.jsarray".into()));
        }
    }
    out
}

/// Drops the fields Marathon computes from a request body.
pub fn strip_read_only(def: &mut Map<String, Value>) {
    for key in READ_ONLY {
        def.remove(key);
    }
}

/// Fills Marathon's defaults into a valid definition and assigns service ports
/// (`port: 0` takes the next free one from `next_port`).
pub fn with_defaults(mut def: Map<String, Value>, next_port: &mut u32) -> Map<String, Value> {
    let defaults = [
        ("backoffFactor", json!(1.15)),
        ("backoffSeconds", json!(1)),
        ("constraints", json!([])),
        ("cpus", json!(1.0)),
        ("dependencies", json!([])),
        ("disk", json!(0)),
        ("env", json!({})),
        ("executor", json!("")),
        ("fetch", json!([])),
        ("gpus", json!(0)),
        ("healthChecks", json!([])),
        ("instances", json!(1)),
        ("killSelection", json!("YOUNGEST_FIRST")),
        ("labels", json!({})),
        ("maxLaunchDelaySeconds", json!(300)),
        ("mem", json!(128.0)),
        ("networks", json!([{ "mode": "host" }])),
        ("readinessChecks", json!([])),
        ("requirePorts", json!(false)),
        (
            "unreachableStrategy",
            json!({ "inactiveAfterSeconds": 0, "expungeAfterSeconds": 0 }),
        ),
    ];
    for (key, value) in defaults {
        if def.get(key).is_none_or(Value::is_null) {
            def.insert(key.to_string(), value);
        }
    }
    if let Some(Value::Array(checks)) = def.get_mut("healthChecks") {
        for check in checks.iter_mut().filter_map(Value::as_object_mut) {
            health_check_defaults(check);
        }
    }
    let mut strategy = json!({ "minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0 });
    if let Some(given) = def.get("upgradeStrategy").and_then(Value::as_object) {
        for (k, v) in given {
            strategy[k] = v.clone();
        }
    }
    def.insert("upgradeStrategy".into(), strategy);
    let ports = match def.get("portDefinitions") {
        Some(Value::Array(ports)) => ports.clone(),
        _ if def.contains_key("container") && def.get("portDefinitions").is_none() => Vec::new(),
        _ => vec![json!({ "port": 0 })],
    };
    let ports: Vec<Value> = ports
        .into_iter()
        .map(|mut p| {
            if p["port"].as_u64().unwrap_or(0) == 0 {
                p["port"] = json!(*next_port);
                *next_port += 1;
            }
            if p.get("protocol").is_none() {
                p["protocol"] = json!("tcp");
            }
            if p.get("labels").is_none() {
                p["labels"] = json!({});
            }
            p
        })
        .collect();
    let ports: Vec<Value> = ports
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            if p.get("name").is_none() && i == 0 {
                p["name"] = json!("default");
            }
            p
        })
        .collect();
    def.insert("portDefinitions".into(), Value::Array(ports));
    def
}

/// Marathon's health check defaults (HTTP on the first port unless told otherwise).
fn health_check_defaults(check: &mut Map<String, Value>) {
    let protocol = check
        .entry("protocol")
        .or_insert_with(|| json!("HTTP"))
        .as_str()
        .unwrap_or("HTTP")
        .to_string();
    for (key, value) in [
        ("gracePeriodSeconds", json!(300)),
        ("intervalSeconds", json!(60)),
        ("timeoutSeconds", json!(20)),
        ("maxConsecutiveFailures", json!(3)),
        ("delaySeconds", json!(15)),
    ] {
        check.entry(key).or_insert(value);
    }
    if protocol != "COMMAND" && protocol != "MESOS_COMMAND" && !check.contains_key("port") {
        check.entry("portIndex").or_insert(json!(0));
    }
    if protocol.contains("HTTP") {
        check.entry("path").or_insert(json!("/"));
        check.entry("ipProtocol").or_insert(json!("IPv4"));
    }
}

/// True when two definitions differ in more than `instances` (the change needs new tasks).
pub fn config_changed(old: &Map<String, Value>, new: &Map<String, Value>) -> bool {
    let strip = |m: &Map<String, Value>| {
        let mut m = m.clone();
        for key in ["instances", "version", "versionInfo"] {
            m.remove(key);
        }
        m
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resolve_to_absolute_paths() {
        assert_eq!(canonical("/", "x"), "/x");
        assert_eq!(canonical("/", "/a/b/../c"), "/a/c");
        assert_eq!(canonical("/g", "./x"), "/g/x");
        assert_eq!(canonical("/g/h", "../x"), "/g/x");
        assert_eq!(canonical("/", "/a//b/"), "/a/b");
    }

    #[test]
    fn id_segments_follow_marathon() {
        let errors = |id: &str| {
            let mut out = Vec::new();
            check_id(id, "/id", &mut out);
            out
        };
        assert!(errors("/prod/web/api-v001").is_empty());
        assert!(errors("/a.b/c-d").is_empty());
        assert_eq!(errors("/Upper").len(), 1);
        assert_eq!(errors("/a-").len(), 1);
        assert_eq!(errors("/a_b").len(), 1);
        assert!(errors("/x/restart")[0].1.contains("reserved keywords"));
        assert_eq!(
            errors("/")[0].1,
            "Path must contain at least one path element"
        );
    }
}
