//! The discovery state machine of one instance, pure: observations in, a state change (or not) out.
//!
//! A task moves forward through [`Phase`]s (launching → running/unreachable → killing → terminal) and never
//! back: an observation that would move it back is stale and ignored, which is what makes terminal states
//! sticky. Health and the administrative flag only matter while the task runs. A new incarnation of the
//! instance (`._app.2` after `._app.1`) starts a new life; an older one is stale.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The discovery state published for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscoveryState {
    /// Running, every health check alive (or none defined), in service.
    Up,
    /// Staging or starting, or running with health checks and no result yet.
    Starting,
    /// Would be UP, but the instance or its server group is administratively disabled.
    OutOfService,
    /// Unhealthy, being killed, terminal, or gone.
    Down,
    /// Unreachable or unknown to Mesos (DOWN when `unknown_is_down`).
    Unknown,
}

impl DiscoveryState {
    /// Every state, in the order counts are reported.
    pub const ALL: [DiscoveryState; 5] = [
        DiscoveryState::Up,
        DiscoveryState::Starting,
        DiscoveryState::OutOfService,
        DiscoveryState::Down,
        DiscoveryState::Unknown,
    ];

    /// The published name (`UP`, `OUT_OF_SERVICE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryState::Up => "UP",
            DiscoveryState::Starting => "STARTING",
            DiscoveryState::OutOfService => "OUT_OF_SERVICE",
            DiscoveryState::Down => "DOWN",
            DiscoveryState::Unknown => "UNKNOWN",
        }
    }
}

/// What caused a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A task status or instance condition event.
    TaskState,
    /// A health event.
    Health,
    /// An administrative overlay was set or removed.
    Admin,
    /// The REST snapshot disagreed with what the events had said (or the instance is gone from it).
    Resync,
}

/// Where a task is in its life. Ranked: a task never moves to a lower rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, staging or starting.
    Launching,
    /// `TASK_RUNNING`.
    Running,
    /// `TASK_UNREACHABLE`, `TASK_UNKNOWN`, `TASK_LOST` (Marathon infers unreachable for most losses); may
    /// come back to running.
    Unreachable,
    /// `TASK_KILLING`.
    Killing,
    /// Finished, failed, killed, error, dropped, gone: never comes back.
    Terminal,
}

impl Phase {
    fn rank(self) -> u8 {
        match self {
            Phase::Launching => 0,
            Phase::Running | Phase::Unreachable => 1,
            Phase::Killing => 2,
            Phase::Terminal => 3,
        }
    }

    /// From a Mesos task state (`status_update_event.taskStatus`, task `state`).
    pub fn from_task_status(status: &str) -> Option<Phase> {
        Some(match status {
            "TASK_STAGING" | "TASK_STARTING" => Phase::Launching,
            "TASK_RUNNING" => Phase::Running,
            "TASK_KILLING" => Phase::Killing,
            "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR" => Phase::Terminal,
            "TASK_UNREACHABLE" | "TASK_UNKNOWN" | "TASK_LOST" => Phase::Unreachable,
            _ => return None,
        })
    }

    /// From a Marathon instance condition (`instance_changed_event.condition`).
    pub fn from_condition(condition: &str) -> Option<Phase> {
        Some(match condition {
            "Created" | "Provisioned" | "Reserved" | "Staging" | "Starting" => Phase::Launching,
            "Running" => Phase::Running,
            "Killing" => Phase::Killing,
            "Finished" | "Failed" | "Killed" | "Error" | "Dropped" | "Gone" => Phase::Terminal,
            "Unreachable" | "UnreachableInactive" | "Unknown" => Phase::Unreachable,
            _ => return None,
        })
    }
}

/// Settings that change how a phase maps to a state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Count unreachable/unknown tasks as DOWN.
    pub unknown_is_down: bool,
}

/// Splits a task id into its instance id and incarnation: `a.instance-x._app.3` → (`a.instance-x`, 3).
/// A legacy id (`a.uuid`) is its own instance, incarnation 0.
pub fn split_task_id(task_id: &str) -> (&str, u64) {
    if let Some(pos) = task_id.rfind("._app.") {
        if let Ok(n) = task_id[pos + 6..].parse() {
            return (&task_id[..pos], n);
        }
    }
    (task_id, 0)
}

/// Where an observation comes from, which decides whether it may override what is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A Marathon event: `seq` is its receipt number, `timestamp` Marathon's (ISO-8601, millis, `Z`).
    Event { seq: u64, timestamp: &'a str },
    /// The REST snapshot requested when the receipt counter stood at `marker`: every event numbered below
    /// `marker` is older than it, every other one may be newer.
    Snapshot { marker: u64 },
    /// An administrative overlay change.
    Admin,
}

/// Facts about the task an observation may carry (only the given ones are updated).
#[derive(Debug, Clone, Default)]
pub struct TaskFacts<'a> {
    pub app_id: Option<&'a str>,
    pub host: Option<&'a str>,
    pub ports: Option<&'a [u32]>,
    pub ip_addresses: Option<Vec<&'a str>>,
    pub version: Option<&'a str>,
}

/// One thing seen about an instance.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub origin: Origin<'a>,
    /// The reason a resulting change is published with.
    pub reason: Reason,
    /// The task it is about, when the source names it (instance-level events do not).
    pub task_id: Option<&'a str>,
    pub phase: Option<Phase>,
    /// `Some(None)`: health checks exist and have no result yet.
    pub healthy: Option<Option<bool>>,
    /// Whether the app defines health checks, when the source knows.
    pub has_health_checks: Option<bool>,
    pub facts: TaskFacts<'a>,
}

impl<'a> Observation<'a> {
    /// An observation with only an origin and a reason.
    pub fn new(origin: Origin<'a>, reason: Reason) -> Self {
        Observation {
            origin,
            reason,
            task_id: None,
            phase: None,
            healthy: None,
            has_health_checks: None,
            facts: TaskFacts::default(),
        }
    }
}

/// What applying an observation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The discovery state changed (or the instance moved to a new task): publish.
    Changed,
    /// Accepted; the published state stays the same.
    Unchanged,
    /// Stale or superseded; nothing was touched.
    Ignored(&'static str),
}

/// Everything known about one instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub instance_id: String,
    pub app_id: String,
    /// Empty until an observation names the task.
    pub task_id: String,
    pub incarnation: u64,
    pub host: String,
    pub ports: Vec<u32>,
    pub ip_addresses: Vec<String>,
    pub version: Option<String>,
    pub phase: Phase,
    pub healthy: Option<bool>,
    pub has_health_checks: bool,
    /// Administratively disabled (its own overlay or its server group's).
    pub disabled: bool,
    pub state: DiscoveryState,
    pub previous_state: Option<DiscoveryState>,
    pub reason: Reason,
    /// When the state last changed (the event's time, or the time of the resync or overlay change).
    pub timestamp: String,
    /// Marathon time of the newest event applied: older events about the same task are stale.
    pub last_event_time: String,
    /// Receipt number of the newest event applied (0: none): a snapshot requested before it is older.
    pub last_event_seq: u64,
    /// Read back from KV at start: the first real observation replaces it whatever its phase.
    pub restored: bool,
    /// Number of the last resync that saw it (to find the ones gone from a snapshot).
    pub seen_in_resync: u64,
}

impl Instance {
    /// A new, empty instance (launching, STARTING, not yet published).
    pub fn new(instance_id: &str, app_id: &str) -> Instance {
        Instance {
            instance_id: instance_id.to_string(),
            app_id: app_id.to_string(),
            task_id: String::new(),
            incarnation: 0,
            host: String::new(),
            ports: Vec::new(),
            ip_addresses: Vec::new(),
            version: None,
            phase: Phase::Launching,
            healthy: None,
            has_health_checks: false,
            disabled: false,
            state: DiscoveryState::Starting,
            previous_state: None,
            reason: Reason::TaskState,
            timestamp: String::new(),
            last_event_time: String::new(),
            last_event_seq: 0,
            restored: false,
            seen_in_resync: 0,
        }
    }

    /// The state the current facts call for.
    pub fn evaluate(&self, policy: Policy) -> DiscoveryState {
        match self.phase {
            Phase::Launching => DiscoveryState::Starting,
            Phase::Running => match self.healthy {
                Some(false) => DiscoveryState::Down,
                None if self.has_health_checks => DiscoveryState::Starting,
                _ if self.disabled => DiscoveryState::OutOfService,
                _ => DiscoveryState::Up,
            },
            Phase::Unreachable if policy.unknown_is_down => DiscoveryState::Down,
            Phase::Unreachable => DiscoveryState::Unknown,
            Phase::Killing | Phase::Terminal => DiscoveryState::Down,
        }
    }

    /// Whether the task has ended for good.
    pub fn is_terminal(&self) -> bool {
        self.phase == Phase::Terminal
    }

    /// Applies one observation; `now` is the time written on a change not caused by an event.
    pub fn apply(&mut self, obs: &Observation<'_>, policy: Policy, now: &str) -> Outcome {
        let restored = self.restored;
        let mut new_task = false;
        let mut named = false;
        if let Some(task_id) = obs.task_id.filter(|t| *t != self.task_id) {
            let (_, incarnation) = split_task_id(task_id);
            if restored || self.task_id.is_empty() {
                // Naming the task for the first time is no new life: the rules below still apply.
                new_task = restored && !self.task_id.is_empty();
                named = true;
                self.task_id = task_id.to_string();
                self.incarnation = incarnation;
            } else if incarnation > self.incarnation {
                // A new incarnation of the instance starts a new life: nothing of the old task applies.
                self.task_id = task_id.to_string();
                self.incarnation = incarnation;
                self.phase = Phase::Launching;
                self.healthy = None;
                self.last_event_time.clear();
                new_task = true;
            } else {
                return Outcome::Ignored("older incarnation");
            }
        }
        if !new_task && !restored {
            match obs.origin {
                Origin::Event { timestamp, .. } => {
                    if !timestamp.is_empty() && timestamp < self.last_event_time.as_str() {
                        return Outcome::Ignored("older than the last event");
                    }
                }
                Origin::Snapshot { marker } => {
                    if self.last_event_seq >= marker {
                        return Outcome::Ignored("an event newer than the snapshot");
                    }
                }
                Origin::Admin => {}
            }
            if self.phase == Phase::Terminal {
                return Outcome::Ignored("terminal");
            }
            if let Some(phase) = obs.phase {
                if phase.rank() < self.phase.rank() {
                    return Outcome::Ignored("phase goes backwards");
                }
            }
        }
        if let Some(phase) = obs.phase {
            self.phase = phase;
        }
        if let Some(has) = obs.has_health_checks {
            self.has_health_checks = has;
        }
        if let Some(healthy) = obs.healthy {
            self.healthy = healthy;
            self.has_health_checks |= healthy.is_some() || obs.has_health_checks.is_none();
        }
        let refined = self.absorb(&obs.facts) || named;
        if let Origin::Event { seq, timestamp } = obs.origin {
            self.last_event_seq = self.last_event_seq.max(seq);
            if timestamp > self.last_event_time.as_str() {
                self.last_event_time = timestamp.to_string();
            }
        }
        self.restored = false;
        let state = self.evaluate(policy);
        let first = self.timestamp.is_empty();
        if state == self.state && !new_task && !first {
            if refined {
                // Same state, but the document learnt its task, host or ports: store it again.
                return Outcome::Changed;
            }
            return Outcome::Unchanged;
        }
        if state != self.state || first {
            self.previous_state = (!first).then_some(self.state);
        }
        self.state = state;
        self.reason = obs.reason;
        self.timestamp = match obs.origin {
            Origin::Event { timestamp, .. } if !timestamp.is_empty() => timestamp.to_string(),
            _ => now.to_string(),
        };
        Outcome::Changed
    }

    /// Re-evaluates after the administrative flag changed.
    pub fn set_disabled(&mut self, disabled: bool, policy: Policy, now: &str) -> Outcome {
        if self.disabled == disabled {
            return Outcome::Unchanged;
        }
        self.disabled = disabled;
        let state = self.evaluate(policy);
        if state == self.state {
            return Outcome::Unchanged;
        }
        self.previous_state = Some(self.state);
        self.state = state;
        self.reason = Reason::Admin;
        self.timestamp = now.to_string();
        Outcome::Changed
    }

    /// Takes the facts an observation carries; answers whether the document changed.
    fn absorb(&mut self, facts: &TaskFacts<'_>) -> bool {
        let mut changed = false;
        if let Some(app_id) = facts.app_id {
            if app_id != self.app_id {
                self.app_id = app_id.to_string();
                changed = true;
            }
        }
        if let Some(host) = facts.host {
            if host != self.host {
                self.host = host.to_string();
                changed = true;
            }
        }
        if let Some(ports) = facts.ports {
            if ports != self.ports.as_slice() {
                self.ports = ports.to_vec();
                changed = true;
            }
        }
        if let Some(ips) = &facts.ip_addresses {
            if ips.len() != self.ip_addresses.len()
                || ips.iter().zip(&self.ip_addresses).any(|(a, b)| a != b)
            {
                self.ip_addresses = ips.iter().map(|s| s.to_string()).collect();
                changed = true;
            }
        }
        if let Some(version) = facts.version {
            if self.version.as_deref() != Some(version) {
                self.version = Some(version.to_string());
                changed = true;
            }
        }
        changed
    }
}
