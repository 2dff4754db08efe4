//! Every known instance per account, the administrative overlays in force, what is known about each
//! app's health checks, and the changes waiting to be published. Pure: no I/O, no clock of its own.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::document::{instance_kv_key, message_id, DiscoveryDocument};
use super::state::{DiscoveryState, Instance, Observation, Outcome, Phase, Policy};
use crate::names;

/// Number of instances in each state (one account).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateCounts {
    pub up: u64,
    pub starting: u64,
    pub out_of_service: u64,
    pub down: u64,
    pub unknown: u64,
}

impl StateCounts {
    fn slot(&mut self, state: DiscoveryState) -> &mut u64 {
        match state {
            DiscoveryState::Up => &mut self.up,
            DiscoveryState::Starting => &mut self.starting,
            DiscoveryState::OutOfService => &mut self.out_of_service,
            DiscoveryState::Down => &mut self.down,
            DiscoveryState::Unknown => &mut self.unknown,
        }
    }

    /// The count of one state.
    pub fn get(&self, state: DiscoveryState) -> u64 {
        let mut copy = *self;
        *copy.slot(state)
    }

    /// All instances.
    pub fn total(&self) -> u64 {
        self.up + self.starting + self.out_of_service + self.down + self.unknown
    }
}

/// One change to publish and store.
#[derive(Debug, Clone)]
pub struct Change {
    pub document: DiscoveryDocument,
    pub msg_id: String,
}

/// The instances of one account.
#[derive(Debug, Default)]
pub struct AccountTable {
    pub instances: HashMap<String, Instance>,
    pub counts: StateCounts,
}

/// All accounts' instances and what decides their state.
#[derive(Debug, Default)]
pub struct Tables {
    pub policy: Policy,
    pub accounts: HashMap<String, AccountTable>,
    /// `(account, app tokens)` of disabled server groups.
    disabled_groups: HashSet<(String, String)>,
    /// `(account, instance id)` of disabled instances.
    disabled_instances: HashSet<(String, String)>,
    /// App id → whether it defines health checks (from snapshots and `api_post_event`).
    pub app_checks: HashMap<String, bool>,
    /// Ended instances, oldest first, dropped after a while.
    ended: VecDeque<(Instant, String, String)>,
    /// Changes not yet published, in order.
    pub changes: Vec<Change>,
    /// KV keys to delete (instances dropped after they ended).
    pub removed: Vec<String>,
}

impl Tables {
    /// Empty tables with a policy.
    pub fn new(policy: Policy) -> Tables {
        Tables {
            policy,
            ..Tables::default()
        }
    }

    /// Applies an observation to `account`'s instance `instance_id`, creating it when `create` and it is
    /// unknown. `now` is the time written on a change that no event dates; `basis` feeds the message id.
    pub fn observe(
        &mut self,
        account: &str,
        instance_id: &str,
        obs: &Observation<'_>,
        create: bool,
        now: &str,
        basis: &str,
    ) -> Outcome {
        let table = match self.accounts.get_mut(account) {
            Some(t) => t,
            None if create => self.accounts.entry(account.to_string()).or_default(),
            None => return Outcome::Ignored("unknown instance"),
        };
        let instance = match table.instances.get_mut(instance_id) {
            Some(i) => i,
            None if create => {
                let app_id = obs.facts.app_id.unwrap_or_default();
                let mut fresh = Instance::new(instance_id, app_id);
                fresh.disabled = is_disabled(
                    &self.disabled_groups,
                    &self.disabled_instances,
                    account,
                    app_id,
                    instance_id,
                );
                fresh.has_health_checks = self.app_checks.get(app_id).copied().unwrap_or(false);
                table
                    .instances
                    .entry(instance_id.to_string())
                    .or_insert(fresh)
            }
            None => return Outcome::Ignored("unknown instance"),
        };
        let published = !instance.timestamp.is_empty();
        let before = instance.state;
        let outcome = instance.apply(obs, self.policy, now);
        match outcome {
            Outcome::Changed => {
                if published {
                    *table.counts.slot(before) -= 1;
                }
                *table.counts.slot(instance.state) += 1;
                if instance.phase == Phase::Terminal {
                    self.ended.push_back((
                        Instant::now(),
                        account.to_string(),
                        instance_id.to_string(),
                    ));
                }
                self.changes.push(change(account, instance, basis));
            }
            Outcome::Ignored(_) if !published => {
                table.instances.remove(instance_id);
            }
            _ => {}
        }
        outcome
    }

    /// Puts back an instance read from `dcos_instances` at start (it is published already).
    pub fn restore(&mut self, document: &DiscoveryDocument) {
        let table = self.accounts.entry(document.account.clone()).or_default();
        let mut instance = Instance::new(&document.instance_id, &document.app_id);
        instance.task_id = document.task_id.clone();
        instance.incarnation = super::state::split_task_id(&document.task_id).1;
        instance.host = document.host.clone();
        instance.ports = document.ports.clone();
        instance.ip_addresses = document.ip_addresses.clone();
        instance.version = document.version.clone();
        instance.healthy = document.healthy;
        instance.state = document.state;
        instance.previous_state = document.previous_state;
        instance.reason = document.reason;
        instance.timestamp = document.timestamp.clone();
        instance.phase = match document.state {
            DiscoveryState::Starting => Phase::Launching,
            DiscoveryState::Up | DiscoveryState::OutOfService => Phase::Running,
            DiscoveryState::Unknown => Phase::Unreachable,
            DiscoveryState::Down => Phase::Killing,
        };
        instance.restored = true;
        if let Some(old) = table
            .instances
            .insert(document.instance_id.clone(), instance)
        {
            *table.counts.slot(old.state) -= 1;
        }
        *table.counts.slot(document.state) += 1;
    }

    /// Marks every live instance of `account` that no resync numbered `resync` saw, and that no event
    /// newer than the snapshot touched, as gone (DOWN, reason `resync`).
    pub fn sweep_gone(&mut self, account: &str, resync: u64, marker: u64, now: &str) {
        let Some(table) = self.accounts.get(account) else {
            return;
        };
        let gone: Vec<(String, String)> = table
            .instances
            .values()
            .filter(|i| i.seen_in_resync != resync && i.last_event_seq < marker)
            .filter(|i| i.phase != Phase::Terminal || i.restored)
            .map(|i| (i.instance_id.clone(), format!("gone.{}", i.timestamp)))
            .collect();
        for (instance_id, basis) in gone {
            let mut obs = Observation::new(
                super::state::Origin::Snapshot { marker },
                super::state::Reason::Resync,
            );
            obs.phase = Some(Phase::Terminal);
            let outcome = self.observe(account, &instance_id, &obs, false, now, &basis);
            if outcome == Outcome::Unchanged {
                // Already DOWN (e.g. read back from KV): it still has to be dropped after a while.
                self.ended
                    .push_back((Instant::now(), account.to_string(), instance_id));
            }
        }
    }

    /// Sets or clears a server-group overlay; re-evaluates its instances (reason `admin`).
    pub fn set_group_disabled(
        &mut self,
        account: &str,
        app_tokens: &str,
        disabled: bool,
        now: &str,
        basis: &str,
    ) {
        let key = (account.to_string(), app_tokens.to_string());
        if disabled {
            self.disabled_groups.insert(key);
        } else {
            self.disabled_groups.remove(&key);
        }
        let Some(table) = self.accounts.get(account) else {
            return;
        };
        let affected: Vec<String> = table
            .instances
            .values()
            .filter(|i| names::app_tokens(&i.app_id) == app_tokens)
            .map(|i| i.instance_id.clone())
            .collect();
        for instance_id in affected {
            self.reevaluate(account, &instance_id, now, basis);
        }
    }

    /// Sets or clears an instance overlay; re-evaluates it (reason `admin`).
    pub fn set_instance_disabled(
        &mut self,
        account: &str,
        instance_id: &str,
        disabled: bool,
        now: &str,
        basis: &str,
    ) {
        let key = (account.to_string(), instance_id.to_string());
        if disabled {
            self.disabled_instances.insert(key);
        } else {
            self.disabled_instances.remove(&key);
        }
        self.reevaluate(account, instance_id, now, basis);
    }

    fn reevaluate(&mut self, account: &str, instance_id: &str, now: &str, basis: &str) {
        let Some(table) = self.accounts.get_mut(account) else {
            return;
        };
        let Some(instance) = table.instances.get_mut(instance_id) else {
            return;
        };
        let disabled = is_disabled(
            &self.disabled_groups,
            &self.disabled_instances,
            account,
            &instance.app_id,
            instance_id,
        );
        let before = instance.state;
        if instance.set_disabled(disabled, self.policy, now) == Outcome::Changed {
            *table.counts.slot(before) -= 1;
            *table.counts.slot(instance.state) += 1;
            self.changes.push(change(account, instance, basis));
        }
    }

    /// The instance ids of `account`'s instances of an app.
    pub fn instances_of_app(&self, account: &str, app_id: &str) -> Vec<String> {
        self.accounts
            .get(account)
            .map(|t| {
                t.instances
                    .values()
                    .filter(|i| i.app_id == app_id)
                    .map(|i| i.instance_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops instances that ended more than `ttl` ago (their KV keys go to `removed`).
    pub fn drop_ended(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _, _)) = self.ended.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            let (_, account, instance_id) = self.ended.pop_front().expect("front exists");
            let Some(table) = self.accounts.get_mut(&account) else {
                continue;
            };
            let still_ended = table
                .instances
                .get(&instance_id)
                .is_some_and(|i| i.phase == Phase::Terminal || i.restored);
            if still_ended {
                if let Some(old) = table.instances.remove(&instance_id) {
                    *table.counts.slot(old.state) -= 1;
                }
                self.removed.push(instance_kv_key(&account, &instance_id));
            }
        }
    }

    /// Counts per account.
    pub fn counts(&self) -> BTreeMap<String, StateCounts> {
        self.accounts
            .iter()
            .map(|(name, t)| (name.clone(), t.counts))
            .collect()
    }

    /// One instance.
    pub fn get(&self, account: &str, instance_id: &str) -> Option<&Instance> {
        self.accounts.get(account)?.instances.get(instance_id)
    }

    /// Marks an instance as seen by resync number `resync`.
    pub fn mark_seen(&mut self, account: &str, instance_id: &str, resync: u64) {
        if let Some(i) = self
            .accounts
            .get_mut(account)
            .and_then(|t| t.instances.get_mut(instance_id))
        {
            i.seen_in_resync = resync;
        }
    }

    /// The current document of an instance (to publish again after a failed publish).
    pub fn current_change(&self, account: &str, instance_id: &str, basis: &str) -> Option<Change> {
        self.get(account, instance_id)
            .map(|i| change(account, i, basis))
    }
}

fn change(account: &str, instance: &Instance, basis: &str) -> Change {
    Change {
        msg_id: message_id(
            account,
            &instance.instance_id,
            instance.previous_state,
            instance.state,
            basis,
        ),
        document: DiscoveryDocument::of(account, instance),
    }
}

fn is_disabled(
    groups: &HashSet<(String, String)>,
    instances: &HashSet<(String, String)>,
    account: &str,
    app_id: &str,
    instance_id: &str,
) -> bool {
    // Lookups with borrowed tuples are not possible on a HashSet<(String, String)>; the sets are tiny.
    (!instances.is_empty() && instances.contains(&(account.to_string(), instance_id.to_string())))
        || (!groups.is_empty()
            && groups.contains(&(account.to_string(), names::app_tokens(app_id))))
}
