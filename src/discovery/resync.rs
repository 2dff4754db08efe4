//! The REST snapshot (`GET /v2/apps?embed=apps.tasks&embed=apps.deployments`) parsed with only the fields
//! discovery needs, borrowing from the body, and diffed against the known instances.
//!
//! A full snapshot of a big cluster is tens of MB: nothing in it is copied unless an instance changed.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::state::{split_task_id, Observation, Origin, Phase, Reason, TaskFacts};
use super::table::Tables;

/// The path and query of the snapshot.
pub const SNAPSHOT_PATH: &str = "/v2/apps?embed=apps.tasks&embed=apps.deployments";

/// The snapshot body.
#[derive(Debug, Deserialize)]
pub struct Snapshot<'a> {
    #[serde(borrow)]
    pub apps: Vec<SnapshotApp<'a>>,
}

/// One app of the snapshot.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotApp<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub health_checks: Option<Vec<IgnoredAny>>,
    #[serde(default, borrow)]
    pub tasks: Option<Vec<SnapshotTask<'a>>>,
}

/// One task of the snapshot.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotTask<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub host: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub state: Option<Cow<'a, str>>,
    #[serde(default)]
    pub ports: Option<Vec<u32>>,
    #[serde(default, borrow)]
    pub ip_addresses: Option<Vec<SnapshotIp<'a>>>,
    #[serde(default, borrow)]
    pub version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub staged_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub started_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub health_check_results: Option<Vec<SnapshotHealth<'a>>>,
}

/// One IP address of a task.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotIp<'a> {
    #[serde(default, borrow)]
    pub ip_address: Option<Cow<'a, str>>,
}

/// One health-check result of a task.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHealth<'a> {
    #[serde(default)]
    pub alive: bool,
    #[serde(default, borrow)]
    pub last_success: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub last_failure: Option<Cow<'a, str>>,
}

impl SnapshotTask<'_> {
    /// `None` without results; `Some(all alive)` otherwise.
    pub fn healthy(&self) -> Option<bool> {
        match &self.health_check_results {
            Some(results) if !results.is_empty() => Some(results.iter().all(|r| r.alive)),
            _ => None,
        }
    }

    /// The task's newest own timestamp: identifies this observation in the message id.
    fn basis(&self) -> &str {
        let health = self
            .health_check_results
            .iter()
            .flatten()
            .flat_map(|h| [h.last_success.as_deref(), h.last_failure.as_deref()])
            .flatten()
            .max();
        health
            .or(self.started_at.as_deref())
            .or(self.staged_at.as_deref())
            .unwrap_or("")
    }
}

/// What one resync found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncStats {
    /// Apps in the snapshot under one of the accounts.
    pub apps: usize,
    /// Tasks of those apps.
    pub tasks: usize,
    /// Changes published.
    pub changes: usize,
}

/// One account of the cluster a snapshot comes from: its name and root group.
#[derive(Debug, Clone)]
pub struct AccountRoot {
    pub name: String,
    /// Absolute, without a trailing slash (`/prod`).
    pub root: String,
}

impl AccountRoot {
    /// Whether the root group holds the app.
    pub fn holds(&self, app_id: &str) -> bool {
        app_id
            .strip_prefix(self.root.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Parses a snapshot body.
pub fn parse(body: &[u8]) -> Result<Snapshot<'_>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Diffs a snapshot against the instances of `accounts`: new and changed instances, and instances gone
/// from it (DOWN), each as a change with reason `resync`. `marker` is the event receipt number when the
/// snapshot was requested (events from it on win over the snapshot); `resync` numbers this resync; `now`
/// is the time written on its changes.
pub fn apply(
    tables: &mut Tables,
    snapshot: &Snapshot<'_>,
    accounts: &[AccountRoot],
    marker: u64,
    resync: u64,
    now: &str,
) -> ResyncStats {
    let before = tables.changes.len();
    let mut stats = ResyncStats::default();
    let mut holders: Vec<&str> = Vec::with_capacity(accounts.len());
    for app in &snapshot.apps {
        holders.clear();
        holders.extend(
            accounts
                .iter()
                .filter(|a| a.holds(&app.id))
                .map(|a| a.name.as_str()),
        );
        if holders.is_empty() {
            continue;
        }
        stats.apps += 1;
        let has_checks = app.health_checks.as_ref().is_some_and(|h| !h.is_empty());
        if tables.app_checks.get(app.id.as_ref()) != Some(&has_checks) {
            tables.app_checks.insert(app.id.to_string(), has_checks);
        }
        for task in app.tasks.iter().flatten() {
            stats.tasks += 1;
            let Some(phase) = task.state.as_deref().and_then(Phase::from_task_status) else {
                continue;
            };
            let mut obs = Observation::new(Origin::Snapshot { marker }, Reason::Resync);
            obs.task_id = Some(&task.id);
            obs.phase = Some(phase);
            obs.healthy = Some(task.healthy());
            obs.has_health_checks = Some(has_checks);
            obs.facts = TaskFacts {
                app_id: Some(&app.id),
                host: task.host.as_deref(),
                ports: task.ports.as_deref(),
                ip_addresses: task
                    .ip_addresses
                    .as_ref()
                    .map(|ips| ips.iter().filter_map(|i| i.ip_address.as_deref()).collect()),
                version: task.version.as_deref(),
            };
            let (instance_id, _) = split_task_id(&task.id);
            for account in &holders {
                tables.observe(account, instance_id, &obs, true, now, task.basis());
                tables.mark_seen(account, instance_id, resync);
            }
        }
    }
    for account in accounts {
        tables.sweep_gone(&account.name, resync, marker, now);
    }
    stats.changes = tables.changes.len() - before;
    stats
}
