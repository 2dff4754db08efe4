//! The event reader against the simulator's `GET /v2/events` (with its faults) and a real nats-server:
//! one test per failure mode of DESIGN.md ("Failure modes the event side is built for"), plus two
//! replicas publishing one copy.

mod events_common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dcos_driver::config::AccountConfig;
use dcos_driver::deployments::{DeploymentEnd, DeploymentHub};
use dcos_driver::events::hub::DeploymentEnds;
use dcos_driver::events::{
    spawn_reader, EventsEndpoint, PlainEndpoint, ReaderHandle, ReaderOptions,
};
use dcos_driver::events::{ClusterId, EventConsumer};
use dcos_driver::sim::bus::SimEvent;
use dcos_driver::sim::faults::Leader;
use dcos_driver::sim::{self, SimConfig, SimHandle};
use events_common::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

async fn sim_with(config: SimConfig) -> SimHandle {
    sim::spawn(config).await.expect("simulator starts")
}

/// Fast timings for tests: idle deadline 3 × the sim's keep-alive, short backoff.
fn options(keepalive: f64) -> ReaderOptions {
    let mut options = ReaderOptions {
        idle_timeout: Duration::from_secs_f64(keepalive * 3.0),
        ..ReaderOptions::default()
    };
    options.backoff.initial = Duration::from_millis(50);
    options.backoff.max = Duration::from_millis(500);
    options
}

struct Running {
    handle: ReaderHandle,
    shutdown: CancellationToken,
}

impl Running {
    async fn connects_at_least(&self, n: u64) {
        let mut status = self.handle.status.clone();
        let attached =
            tokio::time::timeout(WAIT, status.wait_for(|s| s.connects >= n && s.attached()))
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false);
        assert!(
            attached,
            "reader did not attach {n} time(s): {:?}",
            *self.handle.status.borrow()
        );
    }

    fn stat(
        &self,
        f: impl Fn(&dcos_driver::events::state::ReaderStats) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        f(&self.handle.stats).load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle.join())
            .await
            .expect("reader stops and flushes");
    }
}

fn start(
    accounts: Vec<AccountConfig>,
    endpoint: Arc<dyn EventsEndpoint>,
    js: &async_nats::jetstream::Context,
    consumers: Vec<Arc<dyn EventConsumer>>,
    options: ReaderOptions,
) -> Running {
    let shutdown = CancellationToken::new();
    let cluster = ClusterId::of(&accounts[0]);
    let handle = spawn_reader(
        cluster,
        accounts,
        endpoint,
        js.clone(),
        consumers,
        options,
        shutdown.clone(),
    );
    Running { handle, shutdown }
}

fn plain(urls: &[String]) -> Arc<dyn EventsEndpoint> {
    Arc::new(PlainEndpoint::new(urls.to_vec()))
}

/// The usual setup: NATS, one simulator, one reader for account `prod`, a recording consumer;
/// returned once the reader is attached.
struct Fixture {
    _nats: dcos_driver::testkit::NatsServer,
    js: async_nats::jetstream::Context,
    sim: SimHandle,
    recorder: Arc<Recorder>,
    reader: Running,
}

async fn fixture(config: SimConfig, options: ReaderOptions) -> Fixture {
    let (nats, js) = nats().await;
    let sim = sim_with(config).await;
    let accounts = accounts(&sim.url(), &[("prod", None)]);
    let recorder = Recorder::new();
    let reader = start(
        accounts,
        plain(&[sim.url()]),
        &js,
        vec![recorder.clone()],
        options,
    );
    reader.connects_at_least(1).await;
    Fixture {
        _nats: nats,
        js,
        sim,
        recorder,
        reader,
    }
}

fn status_event(sim: &SimHandle, app: &str, n: usize) {
    sim.sim.bus.publish(
        "status_update_event",
        json!({"appId": app, "taskId": format!("{}.t{n}", app.trim_start_matches('/').replace('/', "_")), "taskStatus": "TASK_RUNNING", "n": n}),
    );
}

fn count_type(recorder: &Recorder, event_type: &str) -> usize {
    recorder
        .events()
        .iter()
        .filter(|(t, _)| t == event_type)
        .count()
}

async fn wait_events(recorder: &Recorder, event_type: &str, n: usize) {
    eventually(WAIT, &format!("{n} {event_type} events"), || async {
        count_type(recorder, event_type) >= n
    })
    .await;
}

async fn stored_of(js: &async_nats::jetstream::Context, subject: &str) -> Vec<Stored> {
    stored(js)
        .await
        .into_iter()
        .filter(|m| m.subject == subject)
        .collect()
}

/// 1. A stream that stays open but goes silent: the idle deadline reconnects, and `attached` follows.
#[tokio::test]
async fn silent_stall_reconnects_after_the_idle_deadline() {
    let Fixture {
        _nats,
        js,
        sim,
        recorder,
        reader,
        ..
    } = fixture(
        SimConfig {
            keepalive_seconds: 0.1,
            ..SimConfig::instant()
        },
        options(0.1),
    )
    .await;
    // Keep-alives alone keep the connection: no reconnect over several idle deadlines.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reader.handle.status.borrow().connects, 1);

    let stalled_at = tokio::time::Instant::now();
    sim.sim
        .faults
        .stall_streams(Some(Duration::from_millis(700)));
    reader.connects_at_least(2).await;
    // The deadline (0.3 s) runs from the last keep-alive, at most one period (0.1 s) before the stall.
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(200),
        "reconnected before the idle deadline: {:?}",
        stalled_at.elapsed()
    );
    assert_eq!(recorder.attached(), 2);
    let last_error = reader
        .handle
        .status
        .borrow()
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(last_error.contains("keep-alive"), "{last_error}");

    // After the stall, events flow again on the new connection and reach NATS.
    tokio::time::sleep(Duration::from_millis(800)).await;
    status_event(&sim, "/prod/a", 1);
    wait_events(&recorder, "status_update_event", 1).await;
    eventually(WAIT, "the event on NATS", || async {
        !stored_of(&js, "dcos.event.prod.status_update_event")
            .await
            .is_empty()
    })
    .await;
    reader.stop().await;
}

/// 2. Events lost while disconnected: no replay, so the reader reconnects and tells consumers
/// `attached` (they resync); events after the reconnect flow again.
#[tokio::test]
async fn reconnects_and_reattaches_after_the_stream_closes() {
    let Fixture {
        _nats,
        sim,
        recorder,
        reader,
        ..
    } = fixture(SimConfig::instant(), options(10.0)).await;
    status_event(&sim, "/prod/a", 1);
    wait_events(&recorder, "status_update_event", 1).await;

    // Leaderless for a moment: streams close, reconnects get 502, events published meanwhile are lost.
    sim.sim.faults.set_leader(Leader::None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    status_event(&sim, "/prod/a", 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.sim.faults.set_leader(Leader::This);
    reader.connects_at_least(2).await;
    assert_eq!(recorder.attached(), 2);
    status_event(&sim, "/prod/a", 3);
    wait_events(&recorder, "status_update_event", 2).await;
    let seen: Vec<u64> = recorder
        .events()
        .iter()
        .filter(|(t, _)| t == "status_update_event")
        .map(|(_, d)| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seen,
        vec![1, 3],
        "event 2 was published while no stream was open"
    );
    // A plain close (leader still here) reconnects too.
    sim.sim.faults.close_streams();
    reader.connects_at_least(3).await;
    assert_eq!(recorder.attached(), 3);
    assert!(reader.stat(|s| &s.reconnects) >= 2);
    reader.stop().await;
}

/// 3. Ordering: events reach consumers and NATS in stream order; deployment ends reach the hub.
#[tokio::test]
async fn events_pass_in_stream_order_and_deployment_ends_reach_the_hub() {
    let (_nats, js) = nats().await;
    let sim = sim_with(SimConfig::instant()).await;
    let accounts = accounts(&sim.url(), &[("prod", None), ("dev", None)]);
    let cluster = ClusterId::of(&accounts[0]);
    let hub = Arc::new(DeploymentHub::new());
    let ends = Arc::new(DeploymentEnds::new(
        hub.clone(),
        [(cluster, vec!["prod".to_string(), "dev".to_string()])].into(),
    ));
    let recorder = Recorder::new();
    let reader = start(
        accounts,
        plain(&[sim.url()]),
        &js,
        vec![recorder.clone(), ends],
        options(10.0),
    );
    reader.connects_at_least(1).await;
    for n in 0..500 {
        status_event(&sim, "/prod/a", n);
    }
    sim.sim.bus.publish(
        "deployment_success",
        json!({"id": "dep-1", "plan": {"id": "dep-1", "steps": [{"actions": [{"action": "ScaleApplication", "app": "/prod/a"}]}]}}),
    );
    wait_events(&recorder, "deployment_success", 1).await;
    let order = |payloads: Vec<String>| -> Vec<u64> {
        payloads
            .iter()
            .map(|d| {
                serde_json::from_str::<serde_json::Value>(d).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let seen = order(
        recorder
            .events()
            .into_iter()
            .filter(|(t, _)| t == "status_update_event")
            .map(|(_, d)| d)
            .collect(),
    );
    assert_eq!(seen, (0..500).collect::<Vec<u64>>());
    eventually(WAIT, "500 events on NATS", || async {
        stored_of(&js, "dcos.event.prod.status_update_event")
            .await
            .len()
            == 500
    })
    .await;
    let on_nats = order(
        stored_of(&js, "dcos.event.prod.status_update_event")
            .await
            .into_iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
            .collect(),
    );
    assert_eq!(on_nats, (0..500).collect::<Vec<u64>>());
    // /prod/a is not dev's: dev got none of them.
    assert!(stored_of(&js, "dcos.event.dev.status_update_event")
        .await
        .is_empty());
    for account in ["prod", "dev"] {
        assert_eq!(
            *hub.wait(account, "dep-1").borrow(),
            Some(DeploymentEnd::Succeeded)
        );
    }
    reader.stop().await;
}

/// 4. Version drift: `taskId` vs `instanceId`, incarnation suffixes, unknown fields and unknown event
/// types reach NATS byte for byte.
#[tokio::test]
async fn version_drift_passes_through_unchanged() {
    let Fixture {
        _nats,
        js,
        sim,
        recorder,
        reader,
        ..
    } = fixture(SimConfig::instant(), options(10.0)).await;
    let raw = [
        (
            "status_update_event",
            r#"{"eventType":"status_update_event","timestamp":"2026-01-01T00:00:00.000Z","slaveId":"s1","taskId":"prod_a.5d3c6c1e-0000-11ee-8000-000000000000","taskStatus":"TASK_RUNNING","appId":"/prod/a","host":"h","ports":[1],"version":"v"}"#,
        ),
        (
            "instance_changed_event",
            r#"{"eventType":"instance_changed_event","timestamp":"2026-01-01T00:00:00.001Z","instanceId":"prod_a.instance-5d3c6c1e-0000-11ee-8000-000000000000._app.3","condition":"Running","runSpecId":"/prod/a","agentId":"s1","host":"h","runSpecVersion":"v","someNewField":{"x":[1,2]}}"#,
        ),
        (
            "some_future_event",
            r#"{"eventType":"some_future_event","timestamp":"2026-01-01T00:00:00.002Z","whatever":true}"#,
        ),
    ];
    for (event_type, data) in raw {
        sim.sim.bus.publish_raw(SimEvent {
            event_type: event_type.into(),
            data: data.into(),
        });
    }
    wait_events(&recorder, "some_future_event", 1).await;
    for (event_type, data) in raw {
        let subject = format!("dcos.event.prod.{event_type}");
        eventually(WAIT, &subject, || async {
            !stored_of(&js, &subject).await.is_empty()
        })
        .await;
        let stored = stored_of(&js, &subject).await;
        assert_eq!(stored[0].payload, bytes::Bytes::from(data), "{event_type}");
        assert_eq!(stored[0].header("Dcos-Event-Type"), Some(event_type));
    }
    let instance = &stored_of(&js, "dcos.event.prod.instance_changed_event").await[0];
    assert_eq!(instance.header("Dcos-App-Id"), Some("/prod/a"));
    reader.stop().await;
}

/// 5. A standby answers 302 to the leader; the first URL is a closed port: rotated past, redirect
/// followed.
#[tokio::test]
async fn closed_port_rotated_and_standby_redirect_followed() {
    let (_nats, js) = nats().await;
    let leader = sim_with(SimConfig::instant()).await;
    let standby = sim_with(SimConfig {
        standby_of: Some(leader.url()),
        ..SimConfig::instant()
    })
    .await;
    let closed = format!("http://127.0.0.1:{}", dcos_driver::testkit::free_port());
    let accounts = accounts(&standby.url(), &[("prod", None)]);
    let recorder = Recorder::new();
    let reader = start(
        accounts,
        plain(&[closed, standby.url()]),
        &js,
        vec![recorder.clone()],
        options(10.0),
    );
    reader.connects_at_least(1).await;
    assert_eq!(
        reader.handle.status.borrow().base.as_deref(),
        Some(standby.url().as_str())
    );
    assert_eq!(leader.sim.faults.open_streams(), 1);
    status_event(&leader, "/prod/a", 1);
    wait_events(&recorder, "status_update_event", 1).await;
    reader.stop().await;
}

/// 6. Framing: CRLF frames with bare CRLF keep-alives, an event of 1.5 MiB (consumers get it whole; NATS,
/// whose max payload is 1 MiB, gets a truncation marker), one of 900 KiB (published whole), and several
/// JSON objects on one `data:` line (split).
#[tokio::test]
async fn framing_big_events_and_several_objects_per_line() {
    let Fixture {
        _nats,
        js,
        sim,
        recorder,
        reader,
        ..
    } = fixture(
        SimConfig {
            keepalive_seconds: 0.02,
            ..SimConfig::instant()
        },
        options(1.0),
    )
    .await;
    let pad = |n: usize| "x".repeat(n);
    let big = format!(
        r#"{{"eventType":"deployment_info","appId":"/prod/a","pad":"{}"}}"#,
        pad(1536 * 1024)
    );
    let fits = format!(
        r#"{{"eventType":"api_post_event","appDefinition":{{"id":"/prod/a"}},"pad":"{}"}}"#,
        pad(900 * 1024)
    );
    let two = r#"{"eventType":"status_update_event","appId":"/prod/a","n":1} {"eventType":"instance_changed_event","runSpecId":"/prod/a","n":2}"#;
    tokio::time::sleep(Duration::from_millis(100)).await; // a few keep-alives first
    for (event_type, data) in [
        ("deployment_info", big.clone()),
        ("api_post_event", fits.clone()),
        ("status_update_event", two.to_string()),
    ] {
        sim.sim.bus.publish_raw(SimEvent {
            event_type: event_type.into(),
            data,
        });
    }
    wait_events(&recorder, "instance_changed_event", 1).await;
    let events = recorder.events();
    let payload_of = |t: &str| events.iter().find(|(ty, _)| ty == t).unwrap().1.clone();
    assert_eq!(payload_of("deployment_info"), big);
    assert_eq!(payload_of("api_post_event"), fits);
    assert_eq!(
        payload_of("status_update_event"),
        r#"{"eventType":"status_update_event","appId":"/prod/a","n":1}"#
    );
    assert_eq!(
        payload_of("instance_changed_event"),
        r#"{"eventType":"instance_changed_event","runSpecId":"/prod/a","n":2}"#
    );

    eventually(WAIT, "four events on NATS", || async {
        stored(&js)
            .await
            .iter()
            .filter(|m| !m.subject.ends_with("event_stream_attached"))
            .count()
            == 4
    })
    .await;
    let marker = &stored_of(&js, "dcos.event.prod.deployment_info").await[0];
    let body: serde_json::Value = serde_json::from_slice(&marker.payload).unwrap();
    assert_eq!(body["truncated"], true);
    assert_eq!(body["originalBytes"], big.len());
    assert_eq!(
        stored_of(&js, "dcos.event.prod.api_post_event").await[0]
            .payload
            .len(),
        fits.len()
    );
    assert_eq!(reader.stat(|s| &s.truncated), 1);
    assert_eq!(
        reader.handle.status.borrow().connects,
        1,
        "no reconnect on the way"
    );
    reader.stop().await;
}

/// 7. Slow consumer: NATS stops answering, the publisher stalls, the bounded buffer overflows: events are
/// dropped from publishing (counted), consumers are told `lost`, and reading goes on, so Marathon never
/// sees a reader 1024 events behind.
#[tokio::test]
async fn a_stalled_publisher_never_holds_up_reading() {
    let (mut server, _) = nats().await;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client);
    let sim = sim_with(SimConfig::instant()).await;
    let accounts = accounts(&sim.url(), &[("prod", None)]);
    let recorder = Recorder::new();
    let mut opts = options(10.0);
    opts.buffer = 16;
    opts.publisher.window = 4;
    let reader = start(
        accounts,
        plain(&[sim.url()]),
        &js,
        vec![recorder.clone()],
        opts,
    );
    reader.connects_at_least(1).await;

    server.stop();
    // Paced so the simulator's own buffer (1024) never overflows while the reader is healthy: had the
    // reader waited for NATS, the recorder would stop counting and this would time out.
    for n in 0..3000 {
        status_event(&sim, "/prod/a", n);
        if n % 200 == 199 {
            wait_events(&recorder, "status_update_event", n - 199).await;
        }
    }
    wait_events(&recorder, "status_update_event", 3000).await;
    assert_eq!(sim.sim.faults.slow_consumer_closes(), 0);
    assert_eq!(reader.handle.status.borrow().connects, 1);
    assert!(
        reader.stat(|s| &s.dropped) > 2000,
        "dropped {}",
        reader.stat(|s| &s.dropped)
    );
    assert_eq!(recorder.lost(), 1, "one overflow episode so far");

    server.restart();
    // Once NATS is back the buffer drains; the next event ends the episode with another `lost`.
    eventually(Duration::from_secs(20), "the publisher drains", || async {
        status_event(&sim, "/prod/a", 9999);
        tokio::time::sleep(Duration::from_millis(50)).await;
        recorder.lost() == 2
    })
    .await;
    reader.stop().await;
}

/// Two replicas read the same stream and publish to one stream: JetStream keeps one copy of each.
#[tokio::test]
async fn two_readers_publish_one_copy() {
    let (_nats, js) = nats().await;
    let sim = sim_with(SimConfig::instant()).await;
    let accounts = accounts(&sim.url(), &[("prod", None)]);
    let (a, b) = (Recorder::new(), Recorder::new());
    let one = start(
        accounts.clone(),
        plain(&[sim.url()]),
        &js,
        vec![a.clone()],
        options(10.0),
    );
    let two = start(
        accounts,
        plain(&[sim.url()]),
        &js,
        vec![b.clone()],
        options(10.0),
    );
    one.connects_at_least(1).await;
    two.connects_at_least(1).await;
    for n in 0..300 {
        status_event(&sim, "/prod/a", n);
    }
    wait_events(&a, "status_update_event", 300).await;
    wait_events(&b, "status_update_event", 300).await;
    eventually(WAIT, "both publishers acked", || async {
        one.stat(|s| &s.published) >= 300 && two.stat(|s| &s.published) >= 300
    })
    .await;
    assert_eq!(
        stored_of(&js, "dcos.event.prod.status_update_event")
            .await
            .len(),
        300
    );
    assert!(one.stat(|s| &s.duplicates) + two.stat(|s| &s.duplicates) >= 300);
    one.stop().await;
    two.stop().await;
}

/// 5 (with DC/OS login, through the `spawn_readers` entry point and the real DC/OS client): the first
/// URL is a closed port, the second a standby whose 302 leads to the leader, which wants a token: the
/// redirect is followed with the token. A token the leader stops accepting is renewed after the 401.
/// Readiness follows the stream; deployment ends reach the hub.
#[tokio::test]
async fn login_redirect_with_token_and_renewal_through_spawn_readers() {
    let (_nats, js) = nats().await;
    let leader = sim_with(SimConfig {
        auth_users: vec!["svc:secret".into()],
        ..SimConfig::instant()
    })
    .await;
    let standby = sim_with(SimConfig {
        standby_of: Some(leader.url()),
        ..SimConfig::instant()
    })
    .await;
    let closed = format!("http://127.0.0.1:{}", dcos_driver::testkit::free_port());
    let text = format!(
        "[[account]]\nname = \"prod\"\ndcos_url = \"{}\"\nmarathon_urls = [\"{closed}\", \"{}\"]\n\
         [account.credentials]\nuid = \"svc\"\npassword = \"secret\"\n\
         [[account]]\nname = \"dev\"\ndcos_url = \"{}\"\nmarathon_urls = [\"{closed}\", \"{}\"]\n\
         [account.credentials]\nuid = \"svc\"\npassword = \"secret\"\n",
        leader.url(),
        standby.url(),
        leader.url(),
        standby.url()
    );
    let config =
        dcos_driver::config::Config::from_toml(std::path::Path::new("t.toml"), &text, |_| None)
            .unwrap();
    let clients: std::collections::HashMap<_, _> = config
        .accounts
        .iter()
        .map(|a| {
            let client = dcos_driver::dcos::DcosClient::new(a, Default::default()).unwrap();
            (a.name.clone(), client)
        })
        .collect();
    let readiness = dcos_driver::health::Readiness::new();
    let recorder = Recorder::new();
    let hub = Arc::new(DeploymentHub::new());
    let shutdown = CancellationToken::new();
    let mut opts = options(10.0);
    opts.readiness = Some(readiness.clone());
    let mut handles = dcos_driver::events::spawn_readers(
        &config,
        &clients,
        js.clone(),
        vec![recorder.clone()],
        hub.clone(),
        opts,
        shutdown.clone(),
    );
    assert_eq!(handles.len(), 1, "both accounts share one cluster");
    let reader = Running {
        handle: handles.remove(0),
        shutdown,
    };
    reader.connects_at_least(1).await;
    assert_eq!(leader.sim.faults.open_streams(), 1);
    assert_eq!(leader.sim.auth.logins(), 1);
    for account in ["prod", "dev"] {
        let report = readiness.report();
        let check = &report.checks[&format!("events:{account}")];
        assert!(check.ready, "{check:?}");
    }
    leader.sim.bus.publish(
        "deployment_failed",
        json!({"id": "dep-9", "reason": "boom", "plan": {"id": "dep-9", "steps": []}}),
    );
    wait_events(&recorder, "deployment_failed", 1).await;
    assert!(hub.wait("dev", "dep-9").borrow().is_some());

    leader.sim.auth.expire_tokens();
    leader.sim.faults.close_streams();
    reader.connects_at_least(2).await;
    assert_eq!(leader.sim.auth.logins(), 2, "logged in again after the 401");
    status_event(&leader, "/prod/a", 1);
    wait_events(&recorder, "status_update_event", 1).await;
    reader.stop().await;
    assert!(!readiness.report().checks["events:prod"].ready);
}
