//! The simulated Marathon's data: apps (definition + derived JSON), tasks and their typed JSON form.

use std::sync::Arc;

use serde_json::{Map, Value};

/// A fixed pool of agents tasks are placed on (host, Mesos agent id).
pub const AGENTS: [(&str, &str); 6] = [
    ("10.0.1.11", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-S1"),
    ("10.0.1.12", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-S2"),
    ("10.0.1.13", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-S3"),
    ("10.0.2.21", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-S4"),
    ("10.0.2.22", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-S5"),
    ("10.0.2.23", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-S6"),
];

/// Mesos task states the simulator moves tasks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Killing,
    Killed,
    Failed,
    Unreachable,
    Gone,
}

impl TaskState {
    /// Mesos name, as in `status_update_event.taskStatus`.
    pub fn mesos(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
        }
    }

    /// Marathon instance condition, as in `instance_changed_event.condition`.
    pub fn condition(self) -> &'static str {
        match self {
            TaskState::Staging => "Staging",
            TaskState::Starting => "Starting",
            TaskState::Running => "Running",
            TaskState::Killing => "Killing",
            TaskState::Killed => "Killed",
            TaskState::Failed => "Failed",
            TaskState::Unreachable => "Unreachable",
            TaskState::Gone => "Gone",
        }
    }
}

/// Result of the (simulated) health checks of one task.
#[derive(Debug, Clone)]
pub struct Health {
    pub alive: bool,
    pub consecutive_failures: u32,
    pub first_success: Option<String>,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub last_failure_cause: Option<String>,
}

/// One task (one instance with one task, as Marathon apps have).
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub instance_id: String,
    pub app_id: String,
    pub agent: usize,
    pub state: TaskState,
    pub staged_at: String,
    pub started_at: Option<String>,
    /// App version the task was launched with.
    pub version: String,
    /// `versionInfo.lastConfigChangeAt` it was launched with: tasks of another one get replaced.
    pub config_version: String,
    pub ports: Vec<u32>,
    pub health: Option<Health>,
    /// Launch order, for `killSelection`.
    pub seq: u64,
}

impl Task {
    pub fn host(&self) -> &'static str {
        AGENTS[self.agent].0
    }

    pub fn slave_id(&self) -> &'static str {
        AGENTS[self.agent].1
    }

    /// Not being killed and not terminal.
    pub fn alive(&self) -> bool {
        matches!(
            self.state,
            TaskState::Staging | TaskState::Starting | TaskState::Running
        )
    }

    /// Running and (if the app has health checks) healthy.
    pub fn ready(&self, has_health_checks: bool) -> bool {
        self.state == TaskState::Running
            && (!has_health_checks || self.health.as_ref().is_some_and(|h| h.alive))
    }

    pub fn healthy(&self) -> Option<bool> {
        self.health.as_ref().map(|h| h.alive)
    }
}

/// Appends `"key":"value"`; `value` must need no escaping (ids, hosts, timestamps: Marathon ids
/// only hold `[a-z0-9.-_]`).
fn field(out: &mut String, key: &str, value: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":\"");
    out.push_str(value);
    out.push('"');
}

fn numbers(out: &mut String, key: &str, values: &[u32]) {
    use std::fmt::Write;
    let _ = write!(out, "\"{key}\":[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v}");
    }
    out.push(']');
}

fn optional(out: &mut String, key: &str, value: Option<&str>) {
    match value {
        Some(v) => field(out, key, v),
        None => {
            out.push('"');
            out.push_str(key);
            out.push_str("\":null");
        }
    }
}

/// Appends the task's JSON to `out`. Written by hand rather than through serde: preloaded
/// listings hold 50,000 tasks and must be built in well under a second even in debug builds.
pub fn write_task(out: &mut String, task: &Task, service_ports: &[u32]) {
    out.push('{');
    field(out, "id", &task.id);
    out.push(',');
    field(out, "appId", &task.app_id);
    out.push(',');
    field(out, "host", task.host());
    out.push(',');
    field(out, "slaveId", task.slave_id());
    out.push(',');
    field(out, "state", task.state.mesos());
    out.push(',');
    field(out, "stagedAt", &task.staged_at);
    if let Some(started) = &task.started_at {
        out.push(',');
        field(out, "startedAt", started);
    }
    out.push(',');
    field(out, "version", &task.version);
    out.push(',');
    numbers(out, "ports", &task.ports);
    if !service_ports.is_empty() {
        out.push(',');
        numbers(out, "servicePorts", service_ports);
    }
    out.push_str(",\"ipAddresses\":[{");
    field(out, "ipAddress", task.host());
    out.push_str(",\"protocol\":\"IPv4\"}]");
    if let Some(h) = &task.health {
        use std::fmt::Write;
        let _ = write!(
            out,
            ",\"healthCheckResults\":[{{\"alive\":{},\"consecutiveFailures\":{},",
            h.alive, h.consecutive_failures
        );
        optional(out, "firstSuccess", h.first_success.as_deref());
        out.push(',');
        optional(out, "lastSuccess", h.last_success.as_deref());
        out.push(',');
        optional(out, "lastFailure", h.last_failure.as_deref());
        let cause = h
            .last_failure_cause
            .as_deref()
            .map(|c| Value::from(c).to_string());
        let _ = write!(
            out,
            ",\"lastFailureCause\":{},",
            cause.as_deref().unwrap_or("null")
        );
        field(out, "instanceId", &task.instance_id);
        out.push_str("}]");
    }
    out.push('}');
}

/// Task JSON as a value (events, small answers).
pub fn task_value(task: &Task, service_ports: &[u32]) -> Value {
    let mut out = String::new();
    write_task(&mut out, task, service_ports);
    serde_json::from_str(&out).expect("task JSON")
}

/// One app: its definition (all of Marathon's fields with defaults, including `version` and
/// `versionInfo`) plus derived settings and its tasks.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub def: Map<String, Value>,
    /// `def` serialized, reused by every read until the definition changes.
    pub def_json: Arc<str>,
    /// Tasks serialized, reused until a task changes.
    pub tasks_json: Option<Arc<str>>,
    pub version: String,
    pub config_version: String,
    pub instances: u32,
    pub tasks: Vec<Task>,
    pub service_ports: Vec<u32>,
    pub last_task_failure: Option<Value>,
    /// Removed by the API, its tasks still being killed by the stop deployment: invisible to reads.
    pub deleted: bool,
}

impl App {
    /// Builds an app from a normalized definition (see `validate::normalize`).
    pub fn from_def(def: Map<String, Value>) -> App {
        let mut app = App {
            id: String::new(),
            def_json: Arc::from(""),
            tasks_json: None,
            version: String::new(),
            config_version: String::new(),
            instances: 0,
            tasks: Vec::new(),
            service_ports: Vec::new(),
            last_task_failure: None,
            deleted: false,
            def: Map::new(),
        };
        app.set_def(def);
        app
    }

    /// Replaces the definition and everything derived from it.
    pub fn set_def(&mut self, def: Map<String, Value>) {
        self.id = def["id"].as_str().unwrap_or("/").to_string();
        self.version = def["version"].as_str().unwrap_or_default().to_string();
        self.config_version = def["versionInfo"]["lastConfigChangeAt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.instances = def["instances"].as_u64().unwrap_or(0) as u32;
        self.service_ports = def["portDefinitions"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| p["port"].as_u64().map(|p| p as u32))
                    .collect()
            })
            .unwrap_or_default();
        self.def_json = Arc::from(serde_json::to_string(&def).expect("app JSON"));
        self.tasks_json = None;
        self.def = def;
    }

    pub fn has_health_checks(&self) -> bool {
        self.def["healthChecks"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.def["labels"][key].as_str()
    }

    /// Seconds until health checks answer (the grace period, capped so tests stay short).
    pub fn health_delay(&self) -> f64 {
        let grace = self.def["healthChecks"][0]["gracePeriodSeconds"]
            .as_f64()
            .unwrap_or(300.0);
        grace.clamp(0.0, 3.0)
    }

    pub fn kill_oldest_first(&self) -> bool {
        self.def["killSelection"].as_str() == Some("OLDEST_FIRST")
    }

    pub fn upgrade_strategy(&self) -> (f64, f64) {
        let s = &self.def["upgradeStrategy"];
        (
            s["minimumHealthCapacity"].as_f64().unwrap_or(1.0),
            s["maximumOverCapacity"].as_f64().unwrap_or(1.0),
        )
    }

    /// The cached JSON array of the tasks.
    pub fn tasks_json(&mut self) -> Arc<str> {
        if let Some(json) = &self.tasks_json {
            return json.clone();
        }
        let mut out = String::with_capacity(self.tasks.len() * 700 + 2);
        out.push('[');
        for (i, task) in self.tasks.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_task(&mut out, task, &self.service_ports);
        }
        out.push(']');
        let json: Arc<str> = Arc::from(out);
        self.tasks_json = Some(json.clone());
        json
    }

    /// Counts `(staged, running, healthy, unhealthy)`.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for t in &self.tasks {
            match t.state {
                TaskState::Staging | TaskState::Starting => c.0 += 1,
                TaskState::Running => c.1 += 1,
                _ => {}
            }
            match t.healthy() {
                Some(true) => c.2 += 1,
                Some(false) => c.3 += 1,
                None => {}
            }
        }
        c
    }
}

/// Marathon's instance id of app `/prod/web/api` (`prod_web_api.instance-<uuid>`) and its task id.
pub fn new_task_ids(app_id: &str) -> (String, String) {
    let base = app_id.trim_start_matches('/').replace('/', "_");
    // A random v4 uuid from the thread RNG: cheaper than the OS RNG when preloading 50,000 tasks.
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let instance = format!("{base}.instance-{uuid}");
    let task = format!("{instance}._app.1");
    (instance, task)
}
