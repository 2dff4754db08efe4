//! The discovery state machine, the event mapping and the snapshot diff, without I/O.

use std::time::{Duration, Instant};

use dcos_driver::discovery::event::parse_events;
use dcos_driver::discovery::resync::{self, AccountRoot};
use dcos_driver::discovery::state::split_task_id;
use dcos_driver::discovery::table::Tables;
use dcos_driver::discovery::{DiscoveryDocument, DiscoveryState, Policy, Reason};
use serde_json::{json, Value};

const ACCOUNT: &str = "prod";
const APP: &str = "/prod/web/api-v001";
const INSTANCE: &str = "prod_web_api-v001.instance-0001";
const TASK: &str = "prod_web_api-v001.instance-0001._app.1";

use DiscoveryState::*;

/// A feed of events with increasing receipt numbers and timestamps.
struct Feed {
    tables: Tables,
    seq: u64,
    second: u32,
}

impl Feed {
    fn new() -> Feed {
        Feed::with(Policy::default())
    }

    fn with(policy: Policy) -> Feed {
        Feed {
            tables: Tables::new(policy),
            seq: 0,
            second: 0,
        }
    }

    fn next_ts(&mut self) -> String {
        self.second += 1;
        ts(self.second)
    }

    /// Sends an event with the next timestamp.
    fn send(&mut self, event_type: &str, fields: Value) {
        let t = self.next_ts();
        self.send_at(event_type, fields, &t);
    }

    fn send_at(&mut self, event_type: &str, mut fields: Value, timestamp: &str) {
        fields["eventType"] = json!(event_type);
        fields["timestamp"] = json!(timestamp);
        self.seq += 1;
        let data = fields.to_string();
        for (app, parsed) in parse_events(data.as_bytes()) {
            assert_eq!(app.as_deref(), fields_app(&fields).as_deref());
            parsed
                .unwrap()
                .apply(&mut self.tables, ACCOUNT, event_type, self.seq);
        }
    }

    fn status(&mut self, task: &str, status: &str) {
        self.send("status_update_event", status_event(task, status));
    }

    fn health(&mut self, instance: &str, healthy: Value) {
        self.send(
            "instance_health_changed_event",
            json!({"instanceId": instance, "runSpecId": APP, "healthy": healthy, "runSpecVersion": "v1"}),
        );
    }

    fn state(&self, instance: &str) -> Option<DiscoveryState> {
        self.tables.get(ACCOUNT, instance).map(|i| i.state)
    }

    /// The changes since the last call: `(instance, previous, state, reason)`.
    fn drain(&mut self) -> Vec<(String, Option<DiscoveryState>, DiscoveryState, Reason)> {
        self.tables
            .changes
            .drain(..)
            .map(|c| {
                (
                    c.document.instance_id,
                    c.document.previous_state,
                    c.document.state,
                    c.document.reason,
                )
            })
            .collect()
    }

    fn states(&mut self) -> Vec<DiscoveryState> {
        self.drain().into_iter().map(|c| c.2).collect()
    }

    fn resync(&mut self, body: &Value, marker: u64, number: u64) -> resync::ResyncStats {
        let bytes = serde_json::to_vec(body).unwrap();
        let roots = [AccountRoot {
            name: ACCOUNT.into(),
            root: "/prod".into(),
        }];
        resync::apply(
            &mut self.tables,
            &bytes,
            &roots,
            marker,
            number,
            "2026-01-01T01:00:00.000Z",
        )
        .unwrap()
    }
}

fn ts(second: u32) -> String {
    format!("2026-01-01T00:{:02}:{:02}.000Z", second / 60, second % 60)
}

fn fields_app(fields: &Value) -> Option<String> {
    fields["appId"]
        .as_str()
        .or(fields["runSpecId"].as_str())
        .or(fields["appDefinition"]["id"].as_str())
        .map(str::to_string)
}

fn status_event(task: &str, status: &str) -> Value {
    json!({
        "slaveId": "S1", "taskId": task, "taskStatus": status, "message": "", "appId": APP,
        "host": "10.0.1.11", "ipAddresses": [{"ipAddress": "10.0.1.11", "protocol": "IPv4"}],
        "ports": [20001], "version": "2026-01-01T00:00:00.000Z"
    })
}

fn app_with_checks(feed: &mut Feed, checks: bool) {
    let hc = if checks {
        json!([{"protocol": "MESOS_HTTP"}])
    } else {
        json!([])
    };
    feed.send(
        "api_post_event",
        json!({"clientIp": "1.2.3.4", "uri": "/v2/apps", "appDefinition": {"id": APP, "healthChecks": hc}}),
    );
}

fn snapshot_task(task: &str, state: &str, health: Option<bool>) -> Value {
    let mut t = json!({
        "id": task, "appId": APP, "host": "10.0.1.11", "slaveId": "S1", "state": state,
        "stagedAt": "2026-01-01T00:00:00.000Z", "startedAt": "2026-01-01T00:00:01.000Z",
        "version": "2026-01-01T00:00:00.000Z", "ports": [20001], "servicePorts": [10000],
        "ipAddresses": [{"ipAddress": "10.0.1.11", "protocol": "IPv4"}]
    });
    if let Some(alive) = health {
        t["healthCheckResults"] = json!([{"alive": alive, "consecutiveFailures": 0, "firstSuccess": null,
            "lastSuccess": "2026-01-01T00:00:02.000Z", "lastFailure": null, "lastFailureCause": null,
            "instanceId": split_task_id(task).0}]);
    }
    t
}

fn snapshot(apps: Vec<(&str, bool, Vec<Value>)>) -> Value {
    json!({"apps": apps.into_iter().map(|(id, checks, tasks)| json!({
        "id": id, "instances": tasks.len(), "cmd": "sleep 1", "labels": {"a": "b\"c"},
        "healthChecks": if checks { json!([{"protocol": "HTTP"}]) } else { json!([]) },
        "tasks": tasks, "deployments": [{"id": "d1"}]
    })).collect::<Vec<_>>()})
}

#[test]
fn task_ids_split_into_instance_and_incarnation() {
    assert_eq!(split_task_id(TASK), (INSTANCE, 1));
    assert_eq!(
        split_task_id("a_b.instance-x._app.12"),
        ("a_b.instance-x", 12)
    );
    assert_eq!(
        split_task_id("web_api-v001.5e3c4a1b-0000-11e9-8c9b-0242ac110002"),
        ("web_api-v001.5e3c4a1b-0000-11e9-8c9b-0242ac110002", 0)
    );
}

#[test]
fn a_task_without_health_checks_goes_starting_up_down() {
    let mut f = Feed::new();
    app_with_checks(&mut f, false);
    f.status(TASK, "TASK_STAGING");
    f.status(TASK, "TASK_STARTING");
    f.status(TASK, "TASK_RUNNING");
    f.status(TASK, "TASK_KILLING");
    f.status(TASK, "TASK_KILLED");
    let changes = f.drain();
    assert_eq!(
        changes,
        vec![
            (INSTANCE.into(), None, Starting, Reason::TaskState),
            (INSTANCE.into(), Some(Starting), Up, Reason::TaskState),
            (INSTANCE.into(), Some(Up), Down, Reason::TaskState),
        ]
    );
    let i = f.tables.get(ACCOUNT, INSTANCE).unwrap();
    assert_eq!(i.host, "10.0.1.11");
    assert_eq!(i.ports, vec![20001]);
    assert_eq!(i.ip_addresses, vec!["10.0.1.11".to_string()]);
    let doc = DiscoveryDocument::of(ACCOUNT, i);
    assert_eq!(doc.server_group, "api-v001");
    assert_eq!(doc.task_id, TASK);
    assert_eq!(doc.kv_key(), format!("prod.{INSTANCE}"));
    assert_eq!(doc.subject(), "dcos.discovery.prod.prod.web.api-v001");
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(json["state"], "DOWN");
    assert_eq!(json["previousState"], "UP");
    assert_eq!(json["reason"], "task_state");
}

#[test]
fn health_checks_decide_between_starting_up_and_down() {
    let mut f = Feed::new();
    app_with_checks(&mut f, true);
    f.status(TASK, "TASK_RUNNING");
    assert_eq!(f.state(INSTANCE), Some(Starting));
    f.health(INSTANCE, Value::Null);
    assert_eq!(f.state(INSTANCE), Some(Starting));
    f.health(INSTANCE, json!(true));
    assert_eq!(f.state(INSTANCE), Some(Up));
    f.health(INSTANCE, json!(false));
    assert_eq!(f.state(INSTANCE), Some(Down));
    f.send(
        "health_status_changed_event",
        json!({"appId": APP, "instanceId": INSTANCE, "version": "v1", "alive": true}),
    );
    assert_eq!(f.state(INSTANCE), Some(Up));
    let changes = f.drain();
    assert_eq!(changes[1].3, Reason::Health);
    assert_eq!(changes.last().unwrap().3, Reason::Health);
    assert_eq!(
        changes.iter().map(|c| c.2).collect::<Vec<_>>(),
        vec![Starting, Up, Down, Up]
    );
}

#[test]
fn health_events_teach_that_an_app_has_checks() {
    let mut f = Feed::new();
    // No api_post_event seen: RUNNING alone counts as UP, a later null result means "checks, no result".
    f.status(TASK, "TASK_RUNNING");
    assert_eq!(f.state(INSTANCE), Some(Up));
    f.health(INSTANCE, Value::Null);
    assert_eq!(f.state(INSTANCE), Some(Starting));
    // A new task of the same app starts STARTING until healthy.
    let other = "prod_web_api-v001.instance-0002._app.1";
    f.status(other, "TASK_RUNNING");
    assert_eq!(f.state("prod_web_api-v001.instance-0002"), Some(Starting));
}

#[test]
fn an_unhealthy_kill_is_down_for_health() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_RUNNING");
    f.send(
        "unhealthy_instance_kill_event",
        json!({"appId": APP, "taskId": TASK, "instanceId": INSTANCE, "version": "v1",
               "reason": "HealthCheck failed", "host": "h", "slaveId": "S1"}),
    );
    let last = f.drain().pop().unwrap();
    assert_eq!((last.2, last.3), (Down, Reason::Health));
    // The killing task does not come back with a late health result.
    f.health(INSTANCE, json!(true));
    assert_eq!(f.state(INSTANCE), Some(Down));
}

#[test]
fn terminal_states_are_sticky() {
    for terminal in [
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    ] {
        let mut f = Feed::new();
        f.status(TASK, "TASK_RUNNING");
        f.status(TASK, terminal);
        assert_eq!(f.state(INSTANCE), Some(Down), "{terminal}");
        // Later (not older) events about the same task do not revive it.
        f.status(TASK, "TASK_RUNNING");
        f.send(
            "instance_changed_event",
            json!({"instanceId": INSTANCE, "condition": "Running", "runSpecId": APP, "agentId": "S1",
                   "host": "h", "runSpecVersion": "v1"}),
        );
        f.health(INSTANCE, json!(true));
        assert_eq!(f.state(INSTANCE), Some(Down), "{terminal}");
        assert_eq!(f.states(), vec![Up, Down], "{terminal}");
    }
}

#[test]
fn a_terminal_event_for_an_unseen_task_is_remembered() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_KILLED");
    assert_eq!(f.state(INSTANCE), Some(Down));
    f.status(TASK, "TASK_RUNNING");
    assert_eq!(f.state(INSTANCE), Some(Down));
}

#[test]
fn stale_events_are_ignored() {
    let mut f = Feed::new();
    app_with_checks(&mut f, true);
    f.status(TASK, "TASK_RUNNING");
    f.health(INSTANCE, json!(true));
    // An older health result arriving late.
    let t = ts(1);
    f.send_at(
        "instance_health_changed_event",
        json!({"instanceId": INSTANCE, "runSpecId": APP, "healthy": false}),
        &t,
    );
    assert_eq!(f.state(INSTANCE), Some(Up));
    // A launch state after running (out of order) moves nothing back.
    f.status(TASK, "TASK_STARTING");
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert_eq!(f.states(), vec![Starting, Up]);
}

#[test]
fn a_new_incarnation_starts_a_new_life_and_an_old_one_is_stale() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_RUNNING");
    f.status(TASK, "TASK_FAILED");
    let second = format!("{INSTANCE}._app.2");
    f.status(&second, "TASK_STAGING");
    assert_eq!(f.state(INSTANCE), Some(Starting));
    f.status(&second, "TASK_RUNNING");
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert_eq!(f.tables.get(ACCOUNT, INSTANCE).unwrap().task_id, second);
    f.status(TASK, "TASK_RUNNING");
    f.status(TASK, "TASK_KILLED");
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert_eq!(f.states(), vec![Up, Down, Starting, Up]);
}

#[test]
fn unreachable_is_unknown_or_down_by_policy_and_may_come_back() {
    for (policy, expected) in [(false, Unknown), (true, Down)] {
        let mut f = Feed::with(Policy {
            unknown_is_down: policy,
        });
        f.status(TASK, "TASK_RUNNING");
        f.status(TASK, "TASK_UNREACHABLE");
        assert_eq!(f.state(INSTANCE), Some(expected));
        f.status(TASK, "TASK_RUNNING");
        assert_eq!(f.state(INSTANCE), Some(Up));
        f.status(TASK, "TASK_UNKNOWN");
        assert_eq!(f.state(INSTANCE), Some(expected));
        f.status(TASK, "TASK_LOST");
        assert_eq!(f.state(INSTANCE), Some(expected));
        f.send(
            "instance_changed_event",
            json!({"instanceId": INSTANCE, "condition": "UnreachableInactive", "runSpecId": APP}),
        );
        assert_eq!(f.state(INSTANCE), Some(expected));
    }
}

#[test]
fn app_terminated_takes_every_instance_down() {
    let mut f = Feed::new();
    let other = "prod_web_api-v001.instance-0002._app.1";
    f.status(TASK, "TASK_RUNNING");
    f.status(other, "TASK_STARTING");
    f.send("app_terminated_event", json!({"appId": APP}));
    assert_eq!(f.state(INSTANCE), Some(Down));
    assert_eq!(f.state("prod_web_api-v001.instance-0002"), Some(Down));
    let counts = f.tables.counts()[ACCOUNT];
    assert_eq!((counts.down, counts.total()), (2, 2));
}

#[test]
fn several_events_on_one_data_line_and_unknown_ones_pass() {
    let mut f = Feed::new();
    let a = json!({"eventType": "status_update_event", "timestamp": ts(1), "taskId": TASK,
                   "taskStatus": "TASK_RUNNING", "appId": APP});
    let b = json!({"eventType": "something_new", "timestamp": ts(2), "appId": APP, "x": [1]});
    let data = format!("{a}{b}");
    let parsed = parse_events(data.as_bytes());
    assert_eq!(parsed.len(), 2);
    for (_, p) in parsed {
        p.unwrap()
            .apply(&mut f.tables, ACCOUNT, "status_update_event", 1);
    }
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert!(parse_events(b"{not json")[0].1.is_err());
}

#[test]
fn overlays_take_instances_out_of_service_and_back() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_RUNNING");
    f.drain();
    f.tables
        .set_group_disabled(ACCOUNT, "prod.web.api-v001", true, &ts(50), "rev1");
    assert_eq!(f.state(INSTANCE), Some(OutOfService));
    // A new task of the disabled server group: STARTING, then OUT_OF_SERVICE instead of UP.
    let other = "prod_web_api-v001.instance-0002._app.1";
    f.status(other, "TASK_STARTING");
    assert_eq!(f.state("prod_web_api-v001.instance-0002"), Some(Starting));
    f.status(other, "TASK_RUNNING");
    assert_eq!(
        f.state("prod_web_api-v001.instance-0002"),
        Some(OutOfService)
    );
    f.tables
        .set_group_disabled(ACCOUNT, "prod.web.api-v001", false, &ts(60), "rev2");
    assert_eq!(f.state(INSTANCE), Some(Up));
    let changes = f.drain();
    assert_eq!(
        changes[0],
        (INSTANCE.into(), Some(Up), OutOfService, Reason::Admin)
    );
    assert_eq!(changes.last().unwrap().3, Reason::Admin);
    // Instance overlay.
    f.tables
        .set_instance_disabled(ACCOUNT, INSTANCE, true, &ts(70), "rev3");
    assert_eq!(f.state(INSTANCE), Some(OutOfService));
    assert_eq!(f.state("prod_web_api-v001.instance-0002"), Some(Up));
    // A DOWN instance stays DOWN when enabled.
    f.status(TASK, "TASK_KILLED");
    f.tables
        .set_instance_disabled(ACCOUNT, INSTANCE, false, &ts(80), "rev4");
    assert_eq!(f.state(INSTANCE), Some(Down));
}

#[test]
fn resync_adds_changes_and_marks_the_gone_down() {
    let mut f = Feed::new();
    let gone = "prod_web_api-v001.instance-0009._app.1";
    f.status(gone, "TASK_RUNNING");
    f.drain();
    let body = snapshot(vec![
        (
            APP,
            true,
            vec![
                snapshot_task(TASK, "TASK_RUNNING", Some(true)),
                snapshot_task(
                    "prod_web_api-v001.instance-0002._app.1",
                    "TASK_RUNNING",
                    None,
                ),
                snapshot_task(
                    "prod_web_api-v001.instance-0003._app.1",
                    "TASK_RUNNING",
                    Some(false),
                ),
                snapshot_task(
                    "prod_web_api-v001.instance-0004._app.1",
                    "TASK_STAGING",
                    None,
                ),
            ],
        ),
        (
            "/other/x",
            false,
            vec![snapshot_task(
                "other_x.instance-1._app.1",
                "TASK_RUNNING",
                None,
            )],
        ),
    ]);
    let stats = f.resync(&body, f.seq + 1, 1);
    assert_eq!((stats.apps, stats.tasks, stats.changes), (1, 4, 5));
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert_eq!(f.state("prod_web_api-v001.instance-0002"), Some(Starting));
    assert_eq!(f.state("prod_web_api-v001.instance-0003"), Some(Down));
    assert_eq!(f.state("prod_web_api-v001.instance-0004"), Some(Starting));
    assert_eq!(f.state("prod_web_api-v001.instance-0009"), Some(Down));
    assert!(f.tables.get(ACCOUNT, "other_x.instance-1").is_none());
    assert!(f.drain().iter().all(|c| c.3 == Reason::Resync));
    // The same snapshot again changes nothing.
    let stats = f.resync(&body, f.seq + 1, 2);
    assert_eq!(stats.changes, 0);
    let counts = f.tables.counts()[ACCOUNT];
    assert_eq!(
        (counts.up, counts.starting, counts.down),
        (1, 2, 2),
        "{counts:?}"
    );
}

#[test]
fn a_resync_never_undoes_a_newer_event() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_RUNNING");
    // The snapshot is requested now...
    let marker = f.seq + 1;
    // ...then the task dies and a new one appears, both seen by events before the snapshot is applied.
    f.status(TASK, "TASK_KILLED");
    let newer = "prod_web_api-v001.instance-0005._app.1";
    f.status(newer, "TASK_RUNNING");
    f.drain();
    // The snapshot (read before those events) still shows the old task running and not the new one.
    let body = snapshot(vec![(
        APP,
        false,
        vec![snapshot_task(TASK, "TASK_RUNNING", None)],
    )]);
    let stats = f.resync(&body, marker, 1);
    assert_eq!(stats.changes, 0);
    assert_eq!(f.state(INSTANCE), Some(Down));
    assert_eq!(f.state("prod_web_api-v001.instance-0005"), Some(Up));
    // A snapshot requested after the events wins: the new task is gone by then.
    let body = snapshot(vec![(APP, false, vec![])]);
    f.resync(&body, f.seq + 1, 2);
    assert_eq!(f.state("prod_web_api-v001.instance-0005"), Some(Down));
    assert_eq!(f.drain()[0].3, Reason::Resync);
}

#[test]
fn a_resync_corrects_state_from_events_older_than_the_snapshot() {
    let mut f = Feed::new();
    app_with_checks(&mut f, true);
    f.status(TASK, "TASK_RUNNING");
    assert_eq!(f.state(INSTANCE), Some(Starting));
    // The healthy event was lost; the snapshot knows.
    let body = snapshot(vec![(
        APP,
        true,
        vec![snapshot_task(TASK, "TASK_RUNNING", Some(true))],
    )]);
    f.resync(&body, f.seq + 1, 1);
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert_eq!(f.drain().pop().unwrap().3, Reason::Resync);
}

#[test]
fn restored_documents_are_not_republished_unless_changed() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_RUNNING");
    f.status("prod_web_api-v001.instance-0002._app.1", "TASK_RUNNING");
    f.status("prod_web_api-v001.instance-0003._app.1", "TASK_KILLED");
    let docs: Vec<DiscoveryDocument> = ["0001", "0002", "0003"]
        .iter()
        .map(|n| {
            let id = format!("prod_web_api-v001.instance-{n}");
            DiscoveryDocument::of(ACCOUNT, f.tables.get(ACCOUNT, &id).unwrap())
        })
        .collect();
    let mut g = Feed::new();
    for doc in &docs {
        g.tables.restore(doc);
    }
    assert_eq!(g.tables.counts()[ACCOUNT].total(), 3);
    let body = snapshot(vec![(
        APP,
        false,
        vec![snapshot_task(TASK, "TASK_RUNNING", None)],
    )]);
    g.resync(&body, 1, 1);
    // Only instance 2 changed: it is gone. Instance 3 was DOWN already.
    assert_eq!(
        g.drain(),
        vec![(
            "prod_web_api-v001.instance-0002".into(),
            Some(Up),
            Down,
            Reason::Resync
        )]
    );
    // Ended instances are dropped after the retention, their KV keys listed for removal.
    g.tables.drop_ended(
        Instant::now() + Duration::from_secs(3600),
        Duration::from_secs(600),
    );
    let mut removed = g.tables.removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            "prod.prod_web_api-v001.instance-0002".to_string(),
            "prod.prod_web_api-v001.instance-0003".to_string()
        ]
    );
    assert_eq!(g.tables.counts()[ACCOUNT].total(), 1);
}

#[test]
fn message_ids_are_deterministic_per_change() {
    let mut a = Feed::new();
    let mut b = Feed::new();
    for f in [&mut a, &mut b] {
        f.status(TASK, "TASK_RUNNING");
        f.status(TASK, "TASK_KILLED");
    }
    let ids = |f: &mut Feed| {
        f.tables
            .changes
            .drain(..)
            .map(|c| c.msg_id)
            .collect::<Vec<_>>()
    };
    let (ia, ib) = (ids(&mut a), ids(&mut b));
    assert_eq!(ia, ib);
    assert_eq!(ia.len(), 2);
    assert_ne!(ia[0], ia[1]);
    assert!(ia[0].starts_with(&format!("prod.{INSTANCE}.NEW-UP.")));
}

#[test]
fn a_snapshot_that_does_not_parse_marks_nothing_gone() {
    let mut f = Feed::new();
    f.status(TASK, "TASK_RUNNING");
    f.drain();
    let roots = [AccountRoot {
        name: ACCOUNT.into(),
        root: "/prod".into(),
    }];
    for body in [
        &b"{\"apps\": [{\"id\": 1}]}"[..],
        b"{\"message\": \"x\"}",
        b"{\"apps\": []} x",
    ] {
        assert!(resync::apply(&mut f.tables, body, &roots, 99, 1, "now").is_err());
    }
    assert_eq!(f.state(INSTANCE), Some(Up));
    assert!(f.drain().is_empty());
}

#[test]
fn a_document_that_learns_its_task_is_stored_again() {
    let mut f = Feed::new();
    // The status event was lost: the instance is known from its condition only.
    f.send(
        "instance_changed_event",
        json!({"instanceId": INSTANCE, "condition": "Running", "runSpecId": APP, "host": "10.0.1.11"}),
    );
    assert_eq!(f.tables.get(ACCOUNT, INSTANCE).unwrap().task_id, "");
    let body = snapshot(vec![(
        APP,
        false,
        vec![snapshot_task(TASK, "TASK_RUNNING", None)],
    )]);
    f.resync(&body, f.seq + 1, 1);
    let changes = f.tables.changes.clone();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].document.task_id, TASK);
    assert_eq!(changes[1].document.state, Up);
    assert_eq!(changes[1].document.ports, vec![20001]);
    // Nothing new: nothing stored.
    f.tables.changes.clear();
    f.resync(&body, f.seq + 1, 2);
    assert!(f.tables.changes.is_empty());
}

#[test]
fn escaped_strings_in_a_snapshot_are_read_too() {
    let mut f = Feed::new();
    let body = br#"{"apps":[{"id":"/prod/web/api-v001","tasks":[{"id":"prod_web_api-v001.instance-0001._app.1","host":"10.0.1.\u0031\u0031","state":"TASK_\u0052UNNING","ports":[1]}]}]}"#;
    let roots = [AccountRoot {
        name: ACCOUNT.into(),
        root: "/prod".into(),
    }];
    resync::apply(&mut f.tables, body, &roots, 1, 1, "now").unwrap();
    let i = f.tables.get(ACCOUNT, INSTANCE).unwrap();
    assert_eq!((i.state, i.host.as_str()), (Up, "10.0.1.11"));
}

#[test]
fn nested_root_groups_each_get_the_instance() {
    let mut tables = Tables::new(Policy::default());
    let roots = [
        AccountRoot {
            name: "prod".into(),
            root: "/prod".into(),
        },
        AccountRoot {
            name: "web".into(),
            root: "/prod/web".into(),
        },
        AccountRoot {
            name: "production".into(),
            root: "/production".into(),
        },
    ];
    let body = serde_json::to_vec(&snapshot(vec![(
        APP,
        false,
        vec![snapshot_task(TASK, "TASK_RUNNING", None)],
    )]))
    .unwrap();
    let stats = resync::apply(&mut tables, &body, &roots, 1, 1, "now").unwrap();
    assert_eq!(stats.changes, 2);
    assert_eq!(tables.get("prod", INSTANCE).unwrap().state, Up);
    assert_eq!(tables.get("web", INSTANCE).unwrap().state, Up);
    assert!(tables.get("production", INSTANCE).is_none());
    let accounts: Vec<String> = tables
        .changes
        .iter()
        .map(|c| c.document.account.clone())
        .collect();
    assert_eq!(accounts, vec!["prod", "web"]);
}
