//! The discovery engine against a real nats-server: events in, changes on `dcos.discovery.>` and in KV,
//! overlays applied at once, resyncs, overflow, restarts and two replicas.

mod discovery_support;

use std::sync::Arc;
use std::time::Duration;

use dcos_driver::discovery::{Discovery, DiscoveryOptions, DiscoveryState};
use dcos_driver::events::{ClusterId, EventConsumer};
use dcos_driver::overlays::{server_group_key, Overlay};
use discovery_support::*;
use serde_json::{json, Value};

const APP: &str = "/prod/web/api-v001";

fn task(n: u32) -> (String, String) {
    let instance = format!("prod_web_api-v001.instance-{n:04}");
    (instance.clone(), format!("{instance}._app.1"))
}

fn status(task_id: &str, state: &str, second: u32) -> Value {
    json!({"eventType": "status_update_event", "timestamp": format!("2026-01-01T00:00:{second:02}.000Z"),
           "slaveId": "S1", "taskId": task_id, "taskStatus": state, "message": "", "appId": APP,
           "host": "10.0.1.11", "ipAddresses": [{"ipAddress": "10.0.1.11", "protocol": "IPv4"}],
           "ports": [20001], "version": "2026-01-01T00:00:00.000Z"})
}

fn snapshot_of(tasks: &[(String, &str)]) -> Value {
    json!({"apps": [{"id": APP, "healthChecks": [], "deployments": [],
        "tasks": tasks.iter().map(|(id, state)| json!({
            "id": id, "appId": APP, "host": "10.0.1.12", "state": state, "ports": [20002],
            "ipAddresses": [{"ipAddress": "10.0.1.12", "protocol": "IPv4"}],
            "stagedAt": "2026-01-01T00:00:00.000Z", "startedAt": "2026-01-01T00:00:01.000Z",
            "version": "2026-01-01T00:00:00.000Z"})).collect::<Vec<_>>()}]})
}

/// Hands a `status_update_event` to the feed.
fn update(d: &Discovery, cluster: &ClusterId, task_id: &str, state: &str, second: u32) {
    send(
        d,
        cluster,
        "status_update_event",
        status(task_id, state, second),
    );
}

#[tokio::test]
async fn events_become_published_changes_and_kv_documents() {
    let bus = Bus::start().await;
    let seen = bus.collector().await;
    let source = Arc::new(FixedSource::default());
    let (d, cluster, shutdown) =
        start(&bus, options(), account("prod", "http://m:8080"), source).await;
    let (instance, task_id) = task(1);
    update(&d, &cluster, &task_id, "TASK_STAGING", 1);
    update(&d, &cluster, &task_id, "TASK_RUNNING", 2);
    // An app of another root group is no business of this account.
    send(
        &*d,
        &cluster,
        "status_update_event",
        json!({"timestamp": "2026-01-01T00:00:03.000Z", "taskId": "dev_x.instance-1._app.1",
               "taskStatus": "TASK_RUNNING", "appId": "/dev/x"}),
    );
    d.caught_up().await;
    assert!(seen.wait(5, |s| s.len() >= 2).await);
    assert_eq!(seen.states_of(&instance), vec!["STARTING", "UP"]);
    let (subject, doc) = seen.seen.lock()[1].clone();
    assert_eq!(subject, "dcos.discovery.prod.prod.web.api-v001");
    assert_eq!(doc.previous_state, Some(DiscoveryState::Starting));
    assert_eq!(doc.timestamp, "2026-01-01T00:00:02.000Z");
    let kv = bus.kv_documents().await;
    assert_eq!(kv.len(), 1);
    assert_eq!(kv[&instance].state, DiscoveryState::Up);
    assert_eq!(kv[&instance].task_id, task_id);
    assert_eq!(bus.discovery_messages().await, 2);
    assert_eq!(d.counts()["prod"].up, 1);
    shutdown.cancel();
    d.stopped().await;
}

#[tokio::test]
async fn overlays_apply_at_once_and_reach_new_tasks() {
    let bus = Bus::start().await;
    let seen = bus.collector().await;
    let source = Arc::new(FixedSource::default());
    let (d, cluster, shutdown) =
        start(&bus, options(), account("prod", "http://m:8080"), source).await;
    let (one, t1) = task(1);
    update(&d, &cluster, &t1, "TASK_RUNNING", 1);
    d.caught_up().await;
    assert!(seen.wait(5, |s| s.len() == 1).await);

    let overlay = Overlay {
        account: "prod".into(),
        app_id: APP.into(),
        instance_id: None,
        disabled: true,
        suspended_instances: None,
        task_id: Some("t-1".into()),
        updated_at: "2026-01-01T00:01:00Z".into(),
    };
    bus.overlays.put(&overlay).await.unwrap();
    assert!(
        seen.wait(5, |s| s.len() == 2).await,
        "OUT_OF_SERVICE published"
    );
    assert_eq!(seen.states_of(&one), vec!["UP", "OUT_OF_SERVICE"]);
    assert_eq!(
        seen.seen.lock()[1].1.reason,
        dcos_driver::discovery::Reason::Admin
    );

    // A new task of the disabled server group.
    let (two, t2) = task(2);
    update(&d, &cluster, &t2, "TASK_RUNNING", 2);
    assert!(seen.wait(5, |s| s.len() == 3).await);
    assert_eq!(seen.states_of(&two), vec!["OUT_OF_SERVICE"]);

    bus.overlays
        .remove(&server_group_key("prod", APP))
        .await
        .unwrap();
    assert!(seen.wait(5, |s| s.len() == 5).await, "both back UP");
    assert_eq!(seen.states_of(&one).last().unwrap(), "UP");
    assert_eq!(seen.states_of(&two).last().unwrap(), "UP");

    // An instance overlay.
    let mut only_one = overlay.clone();
    only_one.instance_id = Some(one.clone());
    bus.overlays.put(&only_one).await.unwrap();
    assert!(seen.wait(5, |s| s.len() == 6).await);
    assert_eq!(seen.states_of(&one).last().unwrap(), "OUT_OF_SERVICE");
    let kv = bus.kv_documents().await;
    assert_eq!(kv[&one].state, DiscoveryState::OutOfService);
    assert_eq!(kv[&two].state, DiscoveryState::Up);
    shutdown.cancel();
    d.stopped().await;
}

#[tokio::test]
async fn an_overlay_stored_before_start_applies_to_the_first_resync() {
    let bus = Bus::start().await;
    bus.overlays
        .put(&Overlay {
            account: "prod".into(),
            app_id: APP.into(),
            instance_id: None,
            disabled: true,
            suspended_instances: None,
            task_id: None,
            updated_at: "2026-01-01T00:01:00Z".into(),
        })
        .await
        .unwrap();
    let seen = bus.collector().await;
    let source = Arc::new(FixedSource::default());
    source.set(&snapshot_of(&[(task(1).1, "TASK_RUNNING")]));
    let (d, cluster, shutdown) =
        start(&bus, options(), account("prod", "http://m:8080"), source).await;
    d.resync(&cluster).await.unwrap();
    assert!(seen.wait(5, |s| !s.is_empty()).await);
    assert_eq!(seen.states_of(&task(1).0), vec!["OUT_OF_SERVICE"]);
    shutdown.cancel();
}

#[tokio::test]
async fn resync_fills_in_missed_events_and_marks_the_gone_down() {
    let bus = Bus::start().await;
    let seen = bus.collector().await;
    let source = Arc::new(FixedSource::default());
    let (d, cluster, shutdown) = start(
        &bus,
        options(),
        account("prod", "http://m:8080"),
        source.clone(),
    )
    .await;
    let (one, t1) = task(1);
    let (two, t2) = task(2);
    update(&d, &cluster, &t1, "TASK_RUNNING", 1);
    d.caught_up().await;
    // Task 1 died and task 2 started while events were lost.
    source.set(&snapshot_of(&[(t2.clone(), "TASK_RUNNING")]));
    d.lost(&cluster);
    let report = d.resync(&cluster).await.unwrap();
    assert_eq!(report.stats.changes, 2);
    assert!(seen.wait(5, |s| s.len() == 3).await);
    assert_eq!(seen.states_of(&one), vec!["UP", "DOWN"]);
    assert_eq!(seen.states_of(&two), vec!["UP"]);
    let kv = bus.kv_documents().await;
    assert_eq!(kv[&one].state, DiscoveryState::Down);
    assert_eq!(kv[&one].reason, dcos_driver::discovery::Reason::Resync);
    assert_eq!(kv[&two].host, "10.0.1.12");
    // Nothing changed: nothing published.
    let report = d.resync(&cluster).await.unwrap();
    assert_eq!(report.stats.changes, 0);
    shutdown.cancel();
}

#[tokio::test]
async fn ended_instances_leave_kv_after_the_retention() {
    let bus = Bus::start().await;
    let source = Arc::new(FixedSource::default());
    let opts = DiscoveryOptions {
        ended_retention: Duration::from_millis(200),
        ..options()
    };
    let (d, cluster, shutdown) = start(&bus, opts, account("prod", "http://m:8080"), source).await;
    let (one, t1) = task(1);
    update(&d, &cluster, &t1, "TASK_RUNNING", 1);
    update(&d, &cluster, &t1, "TASK_KILLED", 2);
    d.caught_up().await;
    assert_eq!(bus.kv_documents().await[&one].state, DiscoveryState::Down);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(bus.kv_documents().await.is_empty());
    assert_eq!(d.counts()["prod"].total(), 0);
    shutdown.cancel();
}

#[tokio::test]
async fn a_full_queue_resyncs_instead_of_dropping_silently() {
    let bus = Bus::start().await;
    let source = Arc::new(FixedSource::default());
    let opts = DiscoveryOptions {
        queue_capacity: 2,
        ..options()
    };
    let (d, cluster, shutdown) =
        start(&bus, opts, account("prod", "http://m:8080"), source.clone()).await;
    let truth: Vec<(String, &str)> = (1..=50).map(|n| (task(n).1, "TASK_RUNNING")).collect();
    source.set(&snapshot_of(&truth));
    for n in 1..=50 {
        update(&d, &cluster, &task(n).1, "TASK_RUNNING", 1);
    }
    assert!(d.stats().overflows > 0);
    d.caught_up().await;
    // The overflow asked for a resync; wait for one that covers it.
    let report = d.resync(&cluster).await.unwrap();
    assert_eq!(report.stats.tasks, 50);
    let kv = bus.kv_documents().await;
    assert_eq!(kv.len(), 50);
    assert!(kv.values().all(|doc| doc.state == DiscoveryState::Up));
    shutdown.cancel();
}

#[tokio::test]
async fn a_restart_republishes_only_what_changed_and_replicas_leave_one_copy() {
    let bus = Bus::start().await;
    let source = Arc::new(FixedSource::default());
    let tasks: Vec<(String, &str)> = (1..=5).map(|n| (task(n).1, "TASK_RUNNING")).collect();
    source.set(&snapshot_of(&tasks));
    let (a, cluster, stop_a) = start(
        &bus,
        options(),
        account("prod", "http://m:8080"),
        source.clone(),
    )
    .await;
    a.resync(&cluster).await.unwrap();
    assert_eq!(bus.discovery_messages().await, 5);

    // A second replica started on the same KV: the same snapshot changes nothing.
    let (b, _, stop_b) = start(
        &bus,
        options(),
        account("prod", "http://m:8080"),
        source.clone(),
    )
    .await;
    assert_eq!(b.counts()["prod"].up, 5, "read back from KV");
    let report = b.resync(&cluster).await.unwrap();
    assert_eq!(report.stats.changes, 0);
    assert_eq!(bus.discovery_messages().await, 5);

    // Both replicas see the same events: one copy of each change.
    for d in [&a, &b] {
        update(d, &cluster, &task(1).1, "TASK_KILLED", 9);
        update(d, &cluster, &task(6).1, "TASK_RUNNING", 9);
        d.caught_up().await;
    }
    assert_eq!(bus.discovery_messages().await, 7);
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test]
async fn the_periodic_resync_runs_without_any_attach() {
    let bus = Bus::start().await;
    let source = Arc::new(FixedSource::default());
    source.set(&snapshot_of(&[(task(1).1, "TASK_RUNNING")]));
    let opts = DiscoveryOptions {
        resync_interval: Some(Duration::from_millis(200)),
        ..options()
    };
    let (d, _, shutdown) =
        start(&bus, opts, account("prod", "http://m:8080"), source.clone()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fetches = *source.fetches.lock();
    assert!((2..=7).contains(&fetches), "{fetches} fetches in 1 s");
    assert_eq!(d.counts()["prod"].up, 1);
    assert!(d.stats().resyncs >= 2);
    shutdown.cancel();
}
