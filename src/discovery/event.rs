//! Marathon events → observations of instances. Only the fields discovery needs are read; unknown event
//! types and fields are ignored.

use serde::{Deserialize, Deserializer};

use super::state::{split_task_id, Observation, Origin, Outcome, Phase, Reason, TaskFacts};
use super::table::Tables;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpAddress {
    #[serde(default)]
    ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppDefinition {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    health_checks: Option<Vec<serde::de::IgnoredAny>>,
}

/// The union of the fields of the events discovery reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawEvent {
    event_type: Option<String>,
    timestamp: String,
    task_id: Option<String>,
    task_status: Option<String>,
    app_id: Option<String>,
    host: Option<String>,
    ip_addresses: Option<Vec<IpAddress>>,
    ports: Option<Vec<u32>>,
    version: Option<String>,
    instance_id: Option<String>,
    condition: Option<String>,
    run_spec_id: Option<String>,
    run_spec_version: Option<String>,
    #[serde(deserialize_with = "present")]
    healthy: Option<Option<bool>>,
    alive: Option<bool>,
    app_definition: Option<AppDefinition>,
}

/// Distinguishes `"healthy": null` (present, no result) from a missing field.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<bool>>, D::Error> {
    Option::<bool>::deserialize(d).map(Some)
}

/// Every event in one `data:` payload (Marathon may put several objects on one line), each with the app
/// id it is about (for routing to accounts). Parsing stops at the first malformed object.
pub fn parse_events(data: &[u8]) -> Vec<(Option<String>, Result<ParsedEvent, String>)> {
    let mut out = Vec::new();
    for raw in serde_json::Deserializer::from_slice(data).into_iter::<RawEvent>() {
        match raw {
            Ok(raw) => {
                let app = raw
                    .app_id
                    .clone()
                    .or_else(|| raw.run_spec_id.clone())
                    .or_else(|| raw.app_definition.as_ref().and_then(|d| d.id.clone()));
                out.push((app, Ok(ParsedEvent(raw))));
            }
            Err(e) => {
                out.push((None, Err(e.to_string())));
                break;
            }
        }
    }
    out
}

/// One parsed event.
#[derive(Debug)]
pub struct ParsedEvent(RawEvent);

impl ParsedEvent {
    /// Applies the event to `account`'s instances. `event_type` is the SSE `event:` field; `seq` the
    /// receipt number.
    pub fn apply(&self, tables: &mut Tables, account: &str, event_type: &str, seq: u64) -> usize {
        let raw = &self.0;
        let kind = raw.event_type.as_deref().unwrap_or(event_type);
        let ts = raw.timestamp.as_str();
        let origin = Origin::Event { seq, timestamp: ts };
        let now = ts;
        let mut changed = 0;
        let mut count = |o: Outcome| {
            if o == Outcome::Changed {
                changed += 1;
            }
        };
        match kind {
            "status_update_event" => {
                let (Some(task_id), Some(status)) = (&raw.task_id, &raw.task_status) else {
                    return 0;
                };
                let Some(phase) = Phase::from_task_status(status) else {
                    return 0;
                };
                let (instance_id, _) = split_task_id(task_id);
                let mut obs = Observation::new(origin, Reason::TaskState);
                obs.task_id = Some(task_id);
                obs.phase = Some(phase);
                obs.facts = TaskFacts {
                    app_id: raw.app_id.as_deref(),
                    host: raw.host.as_deref(),
                    ports: raw.ports.as_deref(),
                    ip_addresses: raw
                        .ip_addresses
                        .as_ref()
                        .map(|ips| ips.iter().map(|i| i.ip_address.as_str()).collect()),
                    version: raw.version.as_deref(),
                };
                obs.has_health_checks = raw
                    .app_id
                    .as_ref()
                    .and_then(|a| tables.app_checks.get(a).copied());
                // A terminal status about an instance never seen is still recorded: a late RUNNING of it
                // must not bring it to life.
                count(tables.observe(account, instance_id, &obs, true, now, ts));
            }
            "instance_changed_event" => {
                let (Some(instance_id), Some(condition)) = (&raw.instance_id, &raw.condition)
                else {
                    return 0;
                };
                let Some(phase) = Phase::from_condition(condition) else {
                    return 0;
                };
                let mut obs = Observation::new(origin, Reason::TaskState);
                obs.phase = Some(phase);
                obs.facts = TaskFacts {
                    app_id: raw.run_spec_id.as_deref(),
                    host: raw.host.as_deref(),
                    version: raw.run_spec_version.as_deref(),
                    ..TaskFacts::default()
                };
                obs.has_health_checks = raw
                    .run_spec_id
                    .as_ref()
                    .and_then(|a| tables.app_checks.get(a).copied());
                count(tables.observe(account, instance_id, &obs, true, now, ts));
            }
            "instance_health_changed_event" | "health_status_changed_event" => {
                let Some(instance_id) = &raw.instance_id else {
                    return 0;
                };
                let healthy = match (raw.healthy, raw.alive) {
                    (Some(h), _) => h,
                    (None, Some(alive)) => Some(alive),
                    (None, None) => return 0,
                };
                if let Some(app) = raw.app_id.as_ref().or(raw.run_spec_id.as_ref()) {
                    tables.app_checks.insert(app.clone(), true);
                }
                let mut obs = Observation::new(origin, Reason::Health);
                obs.healthy = Some(healthy);
                count(tables.observe(account, instance_id, &obs, false, now, ts));
            }
            "unhealthy_instance_kill_event" => {
                let instance_id = match (&raw.instance_id, &raw.task_id) {
                    (Some(i), _) => i.as_str(),
                    (None, Some(t)) => split_task_id(t).0,
                    (None, None) => return 0,
                };
                let mut obs = Observation::new(origin, Reason::Health);
                obs.task_id = raw.task_id.as_deref();
                obs.phase = Some(Phase::Killing);
                obs.healthy = Some(Some(false));
                count(tables.observe(account, instance_id, &obs, false, now, ts));
            }
            "app_terminated_event" => {
                let Some(app_id) = &raw.app_id else {
                    return 0;
                };
                for instance_id in tables.instances_of_app(account, app_id) {
                    let mut obs = Observation::new(origin, Reason::TaskState);
                    obs.phase = Some(Phase::Terminal);
                    count(tables.observe(account, &instance_id, &obs, false, now, ts));
                }
            }
            "api_post_event" | "add_health_check_event" => {
                if let Some(def) = &raw.app_definition {
                    if let Some(id) = &def.id {
                        let has = def.health_checks.as_ref().is_some_and(|h| !h.is_empty());
                        tables.app_checks.insert(id.clone(), has);
                    }
                } else if let Some(app) = &raw.app_id {
                    tables.app_checks.insert(app.clone(), true);
                }
            }
            _ => {}
        }
        changed
    }
}
