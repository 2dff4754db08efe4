//! The REST snapshot (`GET /v2/apps?embed=apps.tasks&embed=apps.deployments`) parsed with only the fields
//! discovery needs, borrowing from the body, and diffed against the known instances.
//!
//! A full snapshot of a big cluster is tens of MB: nothing in it is copied unless an instance changed.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::state::{split_task_id, Observation, Origin, Phase, Reason, TaskFacts};
use super::table::Tables;

/// The path and query of the snapshot.
pub const SNAPSHOT_PATH: &str = "/v2/apps?embed=apps.tasks&embed=apps.deployments";

/// A string borrowed from the body when it has no escapes (serde borrows a bare `Cow<str>` field, but
/// not one inside an `Option`).
#[derive(Debug)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
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
    pub host: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub state: Option<Text<'a>>,
    #[serde(default)]
    pub ports: Option<Vec<u32>>,
    #[serde(default, borrow)]
    pub ip_addresses: Option<Vec<SnapshotIp<'a>>>,
    #[serde(default, borrow)]
    pub version: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub staged_at: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub started_at: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub health_check_results: Option<Vec<SnapshotHealth<'a>>>,
}

/// One IP address of a task.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotIp<'a> {
    #[serde(default, borrow)]
    pub ip_address: Option<Text<'a>>,
}

/// One health-check result of a task.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHealth<'a> {
    #[serde(default)]
    pub alive: bool,
    #[serde(default, borrow)]
    pub last_success: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub last_failure: Option<Text<'a>>,
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

/// Diffs a snapshot body against the instances of `accounts`: new and changed instances, and instances
/// gone from it (DOWN), each as a change with reason `resync`. `marker` is the event receipt number when
/// the snapshot was requested (events from it on win over the snapshot); `resync` numbers this resync;
/// `now` is the time written on its changes.
///
/// Apps are applied one by one as they are parsed, so only one app's tasks are ever held besides the body.
/// A body that does not parse changes nothing it had not reached and marks nothing gone.
pub fn apply(
    tables: &mut Tables,
    body: &[u8],
    accounts: &[AccountRoot],
    marker: u64,
    resync: u64,
    now: &str,
) -> Result<ResyncStats, serde_json::Error> {
    let before = tables.changes.len();
    let mut diff = Diff {
        tables,
        accounts,
        marker,
        resync,
        now,
        stats: ResyncStats::default(),
        holders: Vec::with_capacity(accounts.len()),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let seen_apps = SnapshotSeed(&mut diff).deserialize(&mut de)?;
    de.end()?;
    if !seen_apps {
        return Err(serde::de::Error::missing_field("apps"));
    }
    let Diff {
        tables, mut stats, ..
    } = diff;
    for account in accounts {
        tables.sweep_gone(&account.name, resync, marker, now);
    }
    stats.changes = tables.changes.len() - before;
    Ok(stats)
}

struct Diff<'a, 'h> {
    tables: &'a mut Tables,
    accounts: &'a [AccountRoot],
    marker: u64,
    resync: u64,
    now: &'a str,
    stats: ResyncStats,
    holders: Vec<&'h str>,
}

impl<'a: 'h, 'h> Diff<'a, 'h> {
    fn app(&mut self, app: &SnapshotApp<'_>) {
        self.holders.clear();
        let accounts: &'a [AccountRoot] = self.accounts;
        self.holders.extend(
            accounts
                .iter()
                .filter(|a| a.holds(&app.id))
                .map(|a| a.name.as_str()),
        );
        if self.holders.is_empty() {
            return;
        }
        self.stats.apps += 1;
        let has_checks = app.health_checks.as_ref().is_some_and(|h| !h.is_empty());
        if self.tables.app_checks.get(app.id.as_ref()) != Some(&has_checks) {
            self.tables
                .app_checks
                .insert(app.id.to_string(), has_checks);
        }
        for task in app.tasks.iter().flatten() {
            self.stats.tasks += 1;
            let Some(phase) = task.state.as_deref().and_then(Phase::from_task_status) else {
                continue;
            };
            let mut obs = Observation::new(
                Origin::Snapshot {
                    marker: self.marker,
                },
                Reason::Resync,
            );
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
            for account in &self.holders {
                self.tables
                    .observe(account, instance_id, &obs, true, self.now, task.basis());
                self.tables.mark_seen(account, instance_id, self.resync);
            }
        }
    }
}

/// The top-level object: `apps` is walked app by app, everything else skipped. Answers whether `apps`
/// was there.
struct SnapshotSeed<'d, 'a, 'h>(&'d mut Diff<'a, 'h>);

impl<'de, 'a: 'h, 'h> DeserializeSeed<'de> for SnapshotSeed<'_, 'a, 'h> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'a: 'h, 'h> Visitor<'de> for SnapshotSeed<'_, 'a, 'h> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with `apps`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "apps" {
                map.next_value_seed(AppsSeed(&mut *self.0))?;
                seen = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(seen)
    }
}

struct AppsSeed<'d, 'a, 'h>(&'d mut Diff<'a, 'h>);

impl<'de, 'a: 'h, 'h> DeserializeSeed<'de> for AppsSeed<'_, 'a, 'h> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, 'a: 'h, 'h> Visitor<'de> for AppsSeed<'_, 'a, 'h> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of apps")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(app) = seq.next_element::<SnapshotApp<'de>>()? {
            self.0.app(&app);
        }
        Ok(())
    }
}
