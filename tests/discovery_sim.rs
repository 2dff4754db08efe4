//! The discovery feed against the simulator and a real nats-server: the sim's events are handed to the
//! feed as the SSE reader does (some deliberately not), snapshots are read over HTTP, and the discovery
//! KV must end equal to the simulator's truth.

mod discovery_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dcos_driver::discovery::{Discovery, DiscoveryState, SnapshotSource};
use dcos_driver::events::{ClusterId, EventConsumer, MarathonEvent};
use dcos_driver::sim::marathon::TaskTruth;
use dcos_driver::sim::{self, SimConfig, SimHandle};
use discovery_support::*;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

struct Harness {
    bus: Bus,
    sim: SimHandle,
    http: reqwest::Client,
    d: Arc<Discovery>,
    cluster: ClusterId,
    seen: Collector,
    /// Share of events not handed to the feed, in per mille.
    drop_per_mille: Arc<AtomicU32>,
    /// Apps created with health checks.
    checks: HashMap<String, bool>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A harness whose snapshots come through the driver's own DC/OS client.
async fn harness(seed: u64) -> Harness {
    harness_with(seed, |_, base| {
        let client = dcos_driver::dcos::DcosClient::new(
            &account("prod", &base),
            dcos_driver::dcos::ClientOptions::default(),
        )
        .unwrap();
        Arc::new(client)
    })
    .await
}

async fn harness_with(
    seed: u64,
    source: impl FnOnce(reqwest::Client, String) -> Arc<dyn SnapshotSource>,
) -> Harness {
    let sim = sim::spawn(SimConfig::instant()).await.unwrap();
    let events = sim.sim.bus.subscribe();
    let bus = Bus::start().await;
    let seen = bus.collector().await;
    let http = reqwest::Client::new();
    let source = source(http.clone(), sim.url());
    let (d, cluster, shutdown) = start(&bus, options(), account("prod", &sim.url()), source).await;
    let drop_per_mille = Arc::new(AtomicU32::new(0));
    tokio::spawn(forward(
        events,
        d.clone(),
        cluster.clone(),
        drop_per_mille.clone(),
        seed,
    ));
    d.attached(&cluster);
    Harness {
        bus,
        sim,
        http,
        d,
        cluster,
        seen,
        drop_per_mille,
        checks: HashMap::new(),
        shutdown,
    }
}

/// Hands the sim's events to the feed as the reader does, dropping some on purpose.
async fn forward(
    mut events: broadcast::Receiver<Arc<sim::bus::SimEvent>>,
    d: Arc<Discovery>,
    cluster: ClusterId,
    drop_per_mille: Arc<AtomicU32>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        match events.recv().await {
            Ok(event) => {
                if rng.random_range(0..1000) < drop_per_mille.load(Ordering::Relaxed) {
                    continue;
                }
                d.event(
                    &cluster,
                    &Arc::new(MarathonEvent {
                        event_type: event.event_type.clone(),
                        data: Bytes::from(event.data.clone()),
                    }),
                );
            }
            Err(broadcast::error::RecvError::Lagged(_)) => d.lost(&cluster),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.url())
    }

    async fn create(&mut self, id: &str, instances: u32, checks: bool) {
        let mut app =
            json!({"id": id, "cmd": "sleep 1000", "instances": instances, "cpus": 0.1, "mem": 32});
        if checks {
            app["healthChecks"] =
                json!([{"protocol": "MESOS_HTTP", "path": "/health", "gracePeriodSeconds": 1}]);
        }
        let r = self
            .http
            .post(self.url("/v2/apps"))
            .json(&app)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create {id}: {}",
            r.text().await.unwrap()
        );
        self.checks.insert(id.to_string(), checks);
    }

    async fn scale(&self, id: &str, instances: u32) {
        let r = self
            .http
            .put(self.url(&format!("/v2/apps{id}?force=true")))
            .json(&json!({"instances": instances}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "scale {id}: {}",
            r.text().await.unwrap()
        );
    }

    async fn restart(&self, id: &str) {
        let r = self
            .http
            .post(self.url(&format!("/v2/apps{id}/restart?force=true")))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "restart {id}: {}",
            r.text().await.unwrap()
        );
    }

    async fn destroy(&mut self, id: &str) {
        let r = self
            .http
            .delete(self.url(&format!("/v2/apps{id}?force=true")))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "destroy {id}: {}",
            r.text().await.unwrap()
        );
    }

    fn truth(&self) -> Vec<TaskTruth> {
        self.sim
            .sim
            .marathon
            .tasks()
            .into_iter()
            .filter(|t| t.app_id.starts_with("/prod/"))
            .collect()
    }

    /// Waits until the simulator's deployments end (or 5 s pass) and its tasks stop changing.
    async fn quiet(&self) {
        // A deployment may wait forever for a task the test made unhealthy: then only the tasks
        // settling matters.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sim.sim.marathon.settled()).await;
        let mut last = self.truth();
        loop {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let now = self.truth();
            if now == last {
                break;
            }
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.d.caught_up().await;
    }

    fn expected(&self, t: &TaskTruth) -> DiscoveryState {
        let checks = self.checks.get(&t.app_id).copied().unwrap_or(false);
        match t.state {
            "TASK_STAGING" | "TASK_STARTING" => DiscoveryState::Starting,
            "TASK_RUNNING" => match t.healthy {
                Some(false) => DiscoveryState::Down,
                None if checks => DiscoveryState::Starting,
                _ => DiscoveryState::Up,
            },
            "TASK_UNREACHABLE" | "TASK_UNKNOWN" => DiscoveryState::Unknown,
            _ => DiscoveryState::Down,
        }
    }

    /// The discovery KV equals the simulator's truth: every task with its expected state, every other
    /// instance DOWN; the last published change of every instance equals its KV document.
    async fn assert_matches_truth(&self) {
        let truth = self.truth();
        let kv = self.bus.kv_documents().await;
        let mut live = BTreeMap::new();
        for t in &truth {
            let doc = kv
                .get(&t.instance_id)
                .unwrap_or_else(|| panic!("no discovery document for {t:?}"));
            assert_eq!(doc.state, self.expected(t), "{t:?}\n{doc:?}");
            assert_eq!(doc.task_id, t.task_id);
            assert_eq!(doc.app_id, t.app_id);
            assert_eq!(doc.host, t.host);
            assert_eq!(doc.ports, t.ports);
            live.insert(t.instance_id.clone(), ());
        }
        for (id, doc) in &kv {
            if !live.contains_key(id) {
                assert_eq!(doc.state, DiscoveryState::Down, "gone instance {doc:?}");
            }
        }
        assert!(
            self.seen
                .wait(5, |seen| {
                    let mut last = BTreeMap::new();
                    for (_, doc) in seen {
                        last.insert(doc.instance_id.clone(), doc.state);
                    }
                    kv.iter().all(|(id, doc)| last.get(id) == Some(&doc.state))
                })
                .await,
            "the last published change of every instance equals KV"
        );
    }
}

#[tokio::test]
async fn a_deploy_publishes_starting_then_up_from_events_alone() {
    let mut h = harness(1).await;
    h.create("/prod/web/api-v001", 2, true).await;
    h.create("/prod/web/plain-v001", 1, false).await;
    h.quiet().await;
    let truth = h.truth();
    assert_eq!(truth.len(), 3);
    for t in &truth {
        let states = h.seen.states_of(&t.instance_id);
        assert_eq!(
            states.first().map(String::as_str),
            Some("STARTING"),
            "{t:?}"
        );
        assert_eq!(
            states.last().map(String::as_str),
            Some("UP"),
            "{t:?}: {states:?}"
        );
    }
    h.assert_matches_truth().await;
    let subjects: Vec<String> = h.seen.seen.lock().iter().map(|(s, _)| s.clone()).collect();
    assert!(subjects.contains(&"dcos.discovery.prod.prod.web.api-v001".to_string()));
    assert_eq!(h.d.counts()["prod"].up, 3);

    // A failed task goes DOWN; its replacement comes UP.
    let victim = truth[0].task_id.clone();
    assert!(h.sim.sim.marathon.fail_task(&h.sim.sim, &victim));
    h.quiet().await;
    assert_eq!(
        h.seen.states_of(&truth[0].instance_id).last().unwrap(),
        "DOWN"
    );
    h.assert_matches_truth().await;

    // A lost agent: UNKNOWN, then DOWN when gone.
    let lost = h.truth()[1].clone();
    assert!(h.sim.sim.marathon.lose_task(&h.sim.sim, &lost.task_id));
    h.quiet().await;
    let states = h.seen.states_of(&lost.instance_id);
    assert_eq!(&states[states.len() - 2..], ["UNKNOWN", "DOWN"]);
    h.assert_matches_truth().await;

    // Destroyed: every instance DOWN.
    h.destroy("/prod/web/api-v001").await;
    h.quiet().await;
    h.assert_matches_truth().await;
    assert!(h.truth().iter().all(|t| t.app_id != "/prod/web/api-v001"));
}

fn last_state<'a>(
    seen: &'a [(String, dcos_driver::discovery::DiscoveryDocument)],
    instance: &str,
) -> Option<&'a str> {
    seen.iter()
        .rev()
        .find(|(_, d)| d.instance_id == instance)
        .map(|(_, d)| d.state.as_str())
}

#[tokio::test]
async fn a_disabled_server_group_is_out_of_service_including_new_tasks() {
    let mut h = harness(2).await;
    h.create("/prod/api-v001", 1, false).await;
    h.quiet().await;
    let overlay = dcos_driver::overlays::Overlay {
        account: "prod".into(),
        app_id: "/prod/api-v001".into(),
        instance_id: None,
        disabled: true,
        suspended_instances: None,
        task_id: None,
        updated_at: "2026-01-01T00:00:00Z".into(),
    };
    h.bus.overlays.put(&overlay).await.unwrap();
    let first = h.truth()[0].instance_id.clone();
    assert!(
        h.seen
            .wait(5, |seen| last_state(seen, &first) == Some("OUT_OF_SERVICE"))
            .await
    );
    h.scale("/prod/api-v001", 2).await;
    h.quiet().await;
    let second = h
        .truth()
        .into_iter()
        .find(|t| t.instance_id != first)
        .unwrap()
        .instance_id;
    assert_eq!(
        h.seen.states_of(&second),
        vec!["STARTING", "OUT_OF_SERVICE"]
    );
    h.bus
        .overlays
        .remove(&dcos_driver::overlays::server_group_key(
            "prod",
            "/prod/api-v001",
        ))
        .await
        .unwrap();
    assert!(
        h.seen
            .wait(5, |seen| {
                last_state(seen, &first) == Some("UP") && last_state(seen, &second) == Some("UP")
            })
            .await
    );
    h.assert_matches_truth().await;
}

#[tokio::test]
async fn a_resync_after_missed_events_converges_to_the_truth() {
    let mut h = harness(3).await;
    h.drop_per_mille.store(1000, Ordering::Relaxed);
    h.create("/prod/a-v001", 3, true).await;
    h.create("/prod/b-v001", 2, false).await;
    h.quiet().await;
    assert!(
        h.bus.kv_documents().await.is_empty(),
        "every event was dropped"
    );
    h.drop_per_mille.store(0, Ordering::Relaxed);
    let report = h.d.resync(&h.cluster).await.unwrap();
    assert_eq!(report.stats.changes, 5);
    h.assert_matches_truth().await;
    let docs = h.bus.kv_documents().await;
    assert!(docs
        .values()
        .all(|d| d.reason == dcos_driver::discovery::Reason::Resync));
}

/// Reads the snapshot, then holds it until released (to construct the race with events).
struct GatedSource {
    inner: HttpSource,
    read: Notify,
    release: Notify,
    gated: AtomicU32,
}

impl SnapshotSource for GatedSource {
    fn snapshot(&self) -> BoxFuture<'_, Result<Bytes, String>> {
        Box::pin(async move {
            let body = self.inner.snapshot().await;
            if self.gated.load(Ordering::SeqCst) == 1 {
                self.read.notify_one();
                self.release.notified().await;
            }
            body
        })
    }
}

#[tokio::test]
async fn a_resync_never_undoes_a_newer_event() {
    let mut gate = None;
    let h = harness_with(4, |http, base| {
        let g = Arc::new(GatedSource {
            inner: HttpSource { http, base },
            read: Notify::new(),
            release: Notify::new(),
            gated: AtomicU32::new(0),
        });
        gate = Some(g.clone());
        g
    })
    .await;
    let gate = gate.unwrap();
    let mut h = h;
    h.create("/prod/race-v001", 1, false).await;
    h.quiet().await;
    let old = h.truth()[0].clone();
    assert_eq!(
        h.bus.kv_documents().await[&old.instance_id].state,
        DiscoveryState::Up
    );

    // The snapshot is read while the task still runs...
    gate.gated.store(1, Ordering::SeqCst);
    let d = h.d.clone();
    let cluster = h.cluster.clone();
    let resync = tokio::spawn(async move { d.resync(&cluster).await });
    gate.read.notified().await;
    gate.gated.store(0, Ordering::SeqCst);
    // ...then it fails and is replaced, and the feed hears it...
    assert!(h.sim.sim.marathon.fail_task(&h.sim.sim, &old.task_id));
    h.quiet().await;
    let new = h.truth()[0].clone();
    assert_ne!(new.instance_id, old.instance_id);
    assert_eq!(
        h.bus.kv_documents().await[&new.instance_id].state,
        DiscoveryState::Up
    );
    // ...and only then does the (older) snapshot arrive: it shows the old task running, not the new one.
    gate.release.notify_one();
    let report = resync.await.unwrap().unwrap();
    assert_eq!(
        report.stats.changes, 0,
        "the stale snapshot changed nothing"
    );
    let kv = h.bus.kv_documents().await;
    assert_eq!(kv[&old.instance_id].state, DiscoveryState::Down);
    assert_eq!(kv[&new.instance_id].state, DiscoveryState::Up);
    assert_eq!(
        h.seen.states_of(&old.instance_id),
        vec!["STARTING", "UP", "DOWN"]
    );
    h.assert_matches_truth().await;
    // A fresh snapshot agrees.
    assert_eq!(h.d.resync(&h.cluster).await.unwrap().stats.changes, 0);
    h.checks.clear();
}

#[tokio::test]
async fn randomised_operations_with_dropped_events_converge_after_a_resync() {
    let seed: u64 = std::env::var("DISCOVERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("DISCOVERY_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut h = harness(seed).await;
    let mut apps: Vec<String> = Vec::new();
    let mut next = 1;
    for step in 0..40 {
        h.drop_per_mille.store(
            if rng.random_bool(0.5) {
                rng.random_range(0..600)
            } else {
                0
            },
            Ordering::Relaxed,
        );
        match rng.random_range(0..10) {
            0 | 1 if apps.len() < 6 => {
                let id = format!("/prod/g{}/app-v{next:03}", next % 2);
                next += 1;
                h.create(&id, rng.random_range(0..4), rng.random_bool(0.5))
                    .await;
                apps.push(id);
            }
            2 | 3 if !apps.is_empty() => {
                let id = &apps[rng.random_range(0..apps.len())];
                h.scale(id, rng.random_range(0..5)).await;
            }
            4 if !apps.is_empty() => {
                let id = &apps[rng.random_range(0..apps.len())];
                h.restart(id).await;
            }
            5 if !apps.is_empty() => {
                let id = apps.remove(rng.random_range(0..apps.len()));
                h.destroy(&id).await;
            }
            6 | 7 => {
                let truth = h.truth();
                if !truth.is_empty() {
                    let t = &truth[rng.random_range(0..truth.len())];
                    if rng.random_bool(0.7) {
                        h.sim.sim.marathon.fail_task(&h.sim.sim, &t.task_id);
                    } else {
                        h.sim.sim.marathon.lose_task(&h.sim.sim, &t.task_id);
                    }
                }
            }
            8 => {
                // A resync in the middle of the traffic.
                h.d.request_resync(&h.cluster);
            }
            _ => {
                let truth = h.truth();
                if let Some(t) = truth
                    .iter()
                    .find(|t| t.state == "TASK_RUNNING" && t.healthy.is_some())
                {
                    h.sim.sim.marathon.set_task_health(
                        &h.sim.sim,
                        &t.task_id,
                        rng.random_bool(0.5),
                    );
                }
            }
        }
        if rng.random_bool(0.3) {
            h.quiet().await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
        }
        let _ = step;
    }
    h.drop_per_mille.store(0, Ordering::Relaxed);
    h.quiet().await;
    h.d.resync(&h.cluster).await.unwrap();
    h.d.caught_up().await;
    h.assert_matches_truth().await;
    println!("stats: {:?}, counts: {:?}", h.d.stats(), h.d.counts());
}
