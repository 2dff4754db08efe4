//! The operator's command-line client: publish an operation and follow its task, show a task, follow the
//! event and discovery feeds. It speaks only the public NATS contract (subjects, streams, KV), so it is also
//! a worked example for teams publishing operations from their own tools.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::names;
use crate::vocabulary::Operation;

/// How `dcos-driver op` ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded = 0,
    Failed = 1,
    Rejected = 2,
    Unsupported = 3,
    NoAnswer = 4,
}

/// Arguments of `dcos-driver op`.
#[derive(Debug, Clone, clap::Args)]
pub struct OpArgs {
    /// The operation: `resize_server_group`, `RESIZE_SERVER_GROUP` or `resizeServerGroup`.
    pub operation: String,
    /// The account (first token after `dcos.op.`).
    #[arg(long, short)]
    pub account: String,
    /// A JSON file with the description (`-` reads standard input).
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Set one description field: `key=value`, dotted keys nest (`capacity.desired=3`); the value is
    /// read as JSON when it parses, else as a string. Repeatable; applied after `--file`.
    #[arg(long = "set", short = 's')]
    pub set: Vec<String>,
    /// Follow the task to its terminal status, with live progress.
    #[arg(long, short)]
    pub wait: bool,
    /// Seconds to wait for the terminal status (with `--wait`).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// The idempotency key / task id (default: a new one). Re-sending with the same id never runs twice.
    #[arg(long)]
    pub id: Option<String>,
    /// Print task documents as JSON lines instead of a readable display.
    #[arg(long)]
    pub json: bool,
}

/// Builds the description from `--file` and `--set`.
pub fn build_description(file: Option<&PathBuf>, sets: &[String]) -> anyhow::Result<Value> {
    let mut description = match file {
        None => Value::Object(Map::new()),
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
            };
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?
        }
    };
    if !description.is_object() {
        bail!("the description must be a JSON object");
    }
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {set}: expected key=value"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        let mut node = &mut description;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                bail!("--set {set}: empty key segment");
            }
            let object = node.as_object_mut().ok_or_else(|| {
                anyhow!("--set {set}: `{part}` is inside a value that is not an object")
            })?;
            if i + 1 == parts.len() {
                object.insert(part.to_string(), value.clone());
                break;
            }
            node = object
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    Ok(description)
}

/// A fresh task id: `[A-Za-z0-9_-]`, unique.
pub fn new_task_id() -> String {
    format!("cli-{}", uuid::Uuid::new_v4().simple())
}

/// `dcos-driver op`: publishes the request and, with `--wait`, follows it to its end.
pub async fn op(client: async_nats::Client, args: OpArgs) -> anyhow::Result<Ending> {
    let operation: Operation = args.operation.parse().map_err(|e| {
        anyhow!("{e}: see `dcos-driver op --help` or README for the 34 operation names")
    })?;
    let description = build_description(args.file.as_ref(), &args.set)?;
    let task_id = args.id.clone().unwrap_or_else(new_task_id);
    if !crate::bus::request::is_client_task_id(&task_id) {
        bail!("--id `{task_id}` must match [A-Za-z0-9_-]{{1,128}} and not start with `auto-`");
    }
    let subject = names::op_subject(&args.account, &operation.subject_name());
    let task_subject = names::task_subject(&args.account, &task_id);

    // Subscribe before publishing so no update is missed.
    let mut updates = client.subscribe(task_subject.clone()).await?;
    let js = jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(names::MSG_ID_HEADER, task_id.as_str());
    let ack = js
        .publish_with_headers(
            subject.clone(),
            headers,
            serde_json::to_vec(&description)?.into(),
        )
        .await
        .with_context(|| format!("cannot publish on {subject}"))?;
    let ack = match ack.await {
        Ok(ack) => ack,
        Err(e) => bail!(
            "JetStream did not store the request on {subject} ({e}): no stream captures dcos.op.>; \
             is `dcos-driver serve` running (it creates the {} stream)?",
            names::OPS_STREAM
        ),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"taskId": task_id, "subject": subject, "stream": ack.stream, "sequence": ack.sequence, "duplicate": ack.duplicate})
        );
    } else {
        println!(
            "published {} on {subject} as task {task_id} ({} #{}{})",
            operation,
            ack.stream,
            ack.sequence,
            if ack.duplicate {
                ", duplicate: already received"
            } else {
                ""
            }
        );
    }
    if !args.wait {
        return Ok(Ending::Succeeded);
    }

    // A duplicate may already be finished: the KV document tells.
    if let Some(doc) = task_document(&js, &task_id).await? {
        if let Some(ending) = terminal(&doc) {
            show(&doc, args.json);
            return Ok(ending);
        }
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut accepted = false;
    loop {
        let wait = if accepted {
            Duration::from_secs(15)
        } else {
            Duration::from_secs(5)
        };
        match tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + wait),
            updates.next(),
        )
        .await
        {
            Ok(Some(message)) => {
                let Ok(doc) = serde_json::from_slice::<Value>(&message.payload) else {
                    continue;
                };
                accepted = true;
                show(&doc, args.json);
                if let Some(ending) = terminal(&doc) {
                    return Ok(ending);
                }
            }
            Ok(None) => bail!("the NATS connection closed while waiting"),
            Err(_) => {
                // Quiet for a while: look at the stored document (an update may have been missed).
                if let Some(doc) = task_document(&js, &task_id).await? {
                    accepted = true;
                    if let Some(ending) = terminal(&doc) {
                        show(&doc, args.json);
                        return Ok(ending);
                    }
                } else if !accepted {
                    eprintln!(
                        "no driver has accepted task {task_id} yet: no driver is consuming dcos.op.{}.>; \
                         is `dcos-driver serve` running and is account `{}` in its configuration?",
                        args.account, args.account
                    );
                }
                if tokio::time::Instant::now() >= deadline {
                    eprintln!("gave up waiting after {} s; the task goes on: `dcos-driver task {task_id}`", args.timeout);
                    return Ok(Ending::NoAnswer);
                }
            }
        }
    }
}

async fn task_document(js: &jetstream::Context, task_id: &str) -> anyhow::Result<Option<Value>> {
    let Ok(kv) = js.get_key_value(names::TASKS_BUCKET).await else {
        return Ok(None);
    };
    match kv.get(task_id).await {
        Ok(Some(bytes)) if !bytes.is_empty() => Ok(serde_json::from_slice(&bytes).ok()),
        Ok(_) => Ok(None),
        Err(e) => Err(anyhow!("cannot read task {task_id}: {e}")),
    }
}

fn terminal(doc: &Value) -> Option<Ending> {
    match doc.get("status").and_then(Value::as_str)? {
        "SUCCEEDED" => Some(Ending::Succeeded),
        "FAILED" => Some(Ending::Failed),
        "REJECTED" => Some(Ending::Rejected),
        "UNSUPPORTED" => Some(Ending::Unsupported),
        _ => None,
    }
}

/// One readable line (or a JSON line) for a task document.
pub fn render(doc: &Value) -> String {
    let status = doc.get("status").and_then(Value::as_str).unwrap_or("?");
    let at = doc
        .get("updatedAt")
        .or_else(|| doc.get("endedAt"))
        .and_then(Value::as_str)
        .map(|t| t.get(11..19).unwrap_or(t).to_string())
        .unwrap_or_default();
    let mut line = format!("[{at}] {status:<11}");
    let terminal = terminal(doc).is_some();
    if let Some(progress) = doc.get("progress").filter(|p| !p.is_null() && !terminal) {
        line.push(' ');
        line.push_str(&render_progress(progress));
    }
    if let Some(error) = doc.get("error").filter(|e| !e.is_null()) {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("");
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        line.push_str(&format!(" {code}: {message}"));
        if let Some(details) = error.get("details").filter(|d| !d.is_null()) {
            line.push_str(&format!(" {details}"));
        }
    } else if let Some(result) = doc.get("result").filter(|r| !r.is_null()) {
        line.push_str(&format!(" {}", summarise(result)));
    }
    line
}

/// Deployment progress as a person reads it: `step 1/2 ScaleApplication /demo/web · 2/3 running, 1 healthy`.
fn render_progress(progress: &Value) -> String {
    let mut parts = Vec::new();
    if let (Some(step), Some(total)) = (progress.get("step"), progress.get("totalSteps")) {
        let actions = progress
            .get("actions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| format!("{} {}", field(x, &["action"]), field(x, &["app"])))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        parts.push(
            format!("step {step}/{total} {actions}")
                .trim_end()
                .to_string(),
        );
    } else if let Some(deployment) = progress.get("deploymentId").and_then(Value::as_str) {
        parts.push(format!("deployment {deployment}"));
    }
    if let (Some(running), Some(target)) = (progress.get("tasksRunning"), progress.get("target")) {
        let healthy = progress
            .get("tasksHealthy")
            .map(|h| format!(", {h} healthy"))
            .unwrap_or_default();
        parts.push(format!("{running}/{target} running{healthy}"));
    }
    if parts.is_empty() {
        summarise(progress)
    } else {
        parts.join(" · ")
    }
}

fn summarise(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn show(doc: &Value, json: bool) {
    if json {
        println!("{doc}");
    } else {
        println!("{}", render(doc));
    }
    let _ = std::io::stdout().flush();
}

/// `dcos-driver task <id>`: prints the stored task document.
pub async fn task(client: async_nats::Client, task_id: &str, json: bool) -> anyhow::Result<Ending> {
    let js = jetstream::new(client);
    match task_document(&js, task_id).await? {
        None => bail!(
            "no task {task_id} in KV {} (is the id right, and has a driver seen it?)",
            names::TASKS_BUCKET
        ),
        Some(doc) => {
            if json {
                println!("{doc}");
            } else {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
            Ok(terminal(&doc).unwrap_or(Ending::NoAnswer))
        }
    }
}

/// Which feed `follow` reads.
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    Events,
    Discovery,
}

/// `dcos-driver events` / `dcos-driver discovery`: follows a feed from `DCOS_EVENTS`.
pub async fn follow(
    client: async_nats::Client,
    feed: Feed,
    account: &str,
    filter: Option<&str>,
    since_start: bool,
    json: bool,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let js = jetstream::new(client);
    let stream = js.get_stream(names::EVENTS_STREAM).await.map_err(|e| {
        anyhow!(
            "stream {} not found ({e}): is `dcos-driver serve` running against this NATS?",
            names::EVENTS_STREAM
        )
    })?;
    let subject = match (feed, filter) {
        (Feed::Events, Some(t)) => names::event_subject(account, t),
        (Feed::Events, None) => format!("dcos.event.{account}.>"),
        // Discovery documents of an app are published on exactly its subject (nested apps have their own).
        (Feed::Discovery, Some(app)) => names::discovery_subject(account, app),
        (Feed::Discovery, None) => format!("dcos.discovery.{account}.>"),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: if since_start {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    eprintln!("following {subject} (Ctrl-C to stop)");
    let mut seen = 0usize;
    while let Some(message) = messages.next().await {
        let message = message?;
        let Ok(body) = serde_json::from_slice::<Value>(&message.payload) else {
            continue;
        };
        if json {
            println!("{body}");
        } else {
            println!(
                "{}",
                match feed {
                    Feed::Events => render_event(&body),
                    Feed::Discovery => render_discovery(&body),
                }
            );
        }
        let _ = std::io::stdout().flush();
        seen += 1;
        if limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}

fn field<'a>(v: &'a Value, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("")
}

/// One readable line for a Marathon event.
pub fn render_event(event: &Value) -> String {
    let time = field(event, &["timestamp"]);
    let kind = field(event, &["eventType"]);
    let mut extras = BTreeMap::new();
    for key in [
        "appId",
        "runSpecId",
        "taskId",
        "instanceId",
        "taskStatus",
        "condition",
        "healthy",
        "alive",
        "id",
        "reason",
    ] {
        if let Some(v) = event.get(key).filter(|v| !v.is_null()) {
            extras.insert(
                key,
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
    }
    let extras: Vec<String> = extras
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{} {kind:<32} {}",
        time.get(11..23).unwrap_or(time),
        extras.join(" ")
    )
}

/// One readable line for a discovery change.
pub fn render_discovery(doc: &Value) -> String {
    let time = field(doc, &["timestamp"]);
    let state = field(doc, &["state"]);
    let previous = field(doc, &["previousState"]);
    let instance = field(doc, &["instanceId", "taskId"]);
    let host = field(doc, &["host"]);
    let ports = doc
        .get("ports")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let reason = field(doc, &["reason"]);
    format!(
        "{} {:<15} ← {:<15} {} {}:{} ({reason})",
        time.get(11..23).unwrap_or(time),
        state,
        if previous.is_empty() { "-" } else { previous },
        instance,
        host,
        ports
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nest_and_parse_json() {
        let d = build_description(
            None,
            &[
                "serverGroupName=api-v001".into(),
                "capacity.desired=3".into(),
                "labels.team=\"web\"".into(),
                "enabled=true".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            d,
            serde_json::json!({"serverGroupName":"api-v001","capacity":{"desired":3},"labels":{"team":"web"},"enabled":true})
        );
        assert!(build_description(None, &["novalue".into()]).is_err());
        assert!(build_description(None, &["a=1".into(), "a.b=2".into()]).is_err());
    }

    #[test]
    fn renders_task_lines() {
        let doc = serde_json::json!({"status":"FAILED","updatedAt":"2026-11-26T10:00:01.000Z","error":{"code":"NOT_FOUND","message":"App '/x' does not exist"}});
        assert_eq!(
            render(&doc),
            "[10:00:01] FAILED      NOT_FOUND: App '/x' does not exist"
        );
        assert_eq!(terminal(&doc), Some(Ending::Failed));
        assert_eq!(terminal(&serde_json::json!({"status":"RUNNING"})), None);
    }
}
