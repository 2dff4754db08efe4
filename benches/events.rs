//! Event throughput, end to end: the simulator's `GET /v2/events` → the reader → the publisher →
//! JetStream `DCOS_EVENTS` → a NATS subscriber on `dcos.event.>`; and, in the same run, the same
//! payloads published by async-nats alone with the same window of in-flight acks. Prints both rates
//! and their ratio per run, then the medians.
//!
//! `cargo bench --bench events` (release profile). `BENCH_EVENTS` (default 50000) events per run,
//! `BENCH_RUNS` (default 3) runs, `BENCH_WINDOW` (default 256) acks in flight.
//!
//! The simulator runs at time scale 0 and the burst is published straight onto its bus. Its
//! `event_buffer` is raised to the burst size (Marathon would close a connection 1024 events behind:
//! a burst published in one go is far faster than any real Marathon), and so is the reader's buffer to
//! the publisher, so nothing is dropped and the rate is that of the whole path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use dcos_driver::events::publisher::{message_id, PublisherOptions};
use dcos_driver::events::{spawn_reader, PlainEndpoint, ReaderOptions};
use dcos_driver::events::{ClusterId, EventConsumer};
use dcos_driver::names;
use dcos_driver::sim::bus::SimEvent;
use dcos_driver::sim::{self, SimConfig};
use dcos_driver::testkit::NatsServer;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A status update of ~400 bytes, like Marathon's, numbered.
fn payload(n: usize) -> String {
    format!(
        r#"{{"slaveId":"4e5a3e0e-6b3f-4a3a-9d6e-2b7c9b0f1a2c-S{s}","taskId":"bench_app-{a}.instance-6f0c2c6e-{n:08}-11ee-8000-000000000000._app.1","taskStatus":"TASK_RUNNING","message":"","appId":"/bench/app-{a}","host":"10.0.{s}.{h}","ipAddresses":[{{"ipAddress":"10.0.{s}.{h}","protocol":"IPv4"}}],"ports":[31{p:03}],"version":"2026-11-26T14:00:00.000Z","eventType":"status_update_event","timestamp":"2026-11-26T14:00:00.{ms:03}Z"}}"#,
        s = n % 7,
        a = n % 100,
        h = n % 250,
        p = n % 1000,
        ms = n % 1000,
    )
}

struct Quiet;
impl EventConsumer for Quiet {
    fn attached(&self, _: &ClusterId) {}
    fn event(&self, _: &ClusterId, _: &Arc<dcos_driver::events::MarathonEvent>) {}
    fn lost(&self, _: &ClusterId) {}
}

/// Subscribes to the bench's subject and counts `n` messages in a task; it returns when the last came.
async fn expect(client: &async_nats::Client, n: usize) -> tokio::task::JoinHandle<Instant> {
    let sub = client
        .subscribe("dcos.event.bench.status_update_event")
        .await
        .unwrap();
    client.flush().await.unwrap();
    tokio::spawn(receive(sub, n))
}

/// Waits until `n` messages arrived on the subscription; returns when the last one did.
async fn receive(mut sub: async_nats::Subscriber, n: usize) -> Instant {
    let mut seen = 0;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(60), sub.next()).await {
            Ok(Some(_)) => seen += 1,
            _ => panic!("only {seen} of {n} messages arrived"),
        }
    }
    Instant::now()
}

async fn run_once(events: usize, window: usize) -> (f64, f64) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let events_stream =
        dcos_driver::bus::setup::stream_configs(&dcos_driver::bus::BusSettings::default())
            .into_iter()
            .find(|c| c.name == names::EVENTS_STREAM)
            .unwrap();
    js.create_stream(events_stream).await.unwrap();
    let sim = sim::spawn(SimConfig {
        event_buffer: events + 1024,
        ..SimConfig::instant()
    })
    .await
    .unwrap();
    let accounts = dcos_driver::config::Config::from_toml(
        std::path::Path::new("bench.toml"),
        &format!(
            "[[account]]\nname = \"bench\"\nmarathon_urls = [\"{}\"]\n",
            sim.url()
        ),
        |_| None,
    )
    .unwrap()
    .accounts;
    let payloads: Vec<String> = (0..events).map(payload).collect();

    // The driver's path.
    let shutdown = CancellationToken::new();
    let options = ReaderOptions {
        buffer: events + 16,
        publisher: PublisherOptions {
            window,
            ..PublisherOptions::default()
        },
        ..ReaderOptions::default()
    };
    let reader = spawn_reader(
        ClusterId::of(&accounts[0]),
        accounts,
        Arc::new(PlainEndpoint::new(vec![sim.url()])),
        js.clone(),
        vec![Arc::new(Quiet)],
        options,
        shutdown.clone(),
    );
    let mut status = reader.status.clone();
    status.wait_for(|s| s.attached()).await.unwrap();
    let arrived = expect(&client, events).await;
    let started = Instant::now();
    for (i, data) in payloads.iter().enumerate() {
        sim.sim.bus.publish_raw(SimEvent {
            event_type: "status_update_event".into(),
            data: data.clone(),
        });
        if i % 1024 == 1023 {
            tokio::task::yield_now().await;
        }
    }
    let finished = arrived.await.unwrap();
    let driver_rate = events as f64 / finished.duration_since(started).as_secs_f64();
    let dropped = reader
        .stats
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0, "the bench must not drop");
    shutdown.cancel();
    reader.join().await;

    // async-nats alone: the same payloads, subjects, headers and window of acks.
    let arrived = expect(&client, events).await;
    let started = Instant::now();
    let mut in_flight: FuturesUnordered<futures::future::BoxFuture<'static, ()>> =
        FuturesUnordered::new();
    for data in &payloads {
        if in_flight.len() >= window {
            in_flight.next().await;
        }
        let data = Bytes::from(data.clone());
        let mut headers = HeaderMap::new();
        headers.insert(names::ACCOUNT_HEADER, "bench");
        headers.insert(names::EVENT_TYPE_HEADER, "status_update_event");
        headers.insert(
            "Nats-Msg-Id",
            message_id("bench-baseline", "status_update_event", &data).as_str(),
        );
        let ack = js
            .publish_with_headers(
                names::event_subject("bench", "status_update_event"),
                headers,
                data,
            )
            .await
            .unwrap();
        in_flight.push(Box::pin(async move {
            ack.await.expect("baseline ack");
        }));
    }
    while in_flight.next().await.is_some() {}
    let finished = arrived.await.unwrap();
    let baseline_rate = events as f64 / finished.duration_since(started).as_secs_f64();
    sim.stop().await;
    drop(server);
    (driver_rate, baseline_rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let events = env("BENCH_EVENTS", 50_000);
    let runs = env("BENCH_RUNS", 3);
    let window = env("BENCH_WINDOW", 256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut driver = Vec::new();
    let mut baseline = Vec::new();
    println!("events bench: {events} events per run, {runs} runs, window {window}");
    for run in 1..=runs {
        let (d, b) = runtime.block_on(run_once(events, window));
        println!(
            "run {run}: sim→reader→JetStream→subscriber {d:>9.0} events/s | async-nats alone {b:>9.0} msgs/s | ratio {:.2}",
            d / b
        );
        driver.push(d);
        baseline.push(b);
    }
    let (d, b) = (median(driver), median(baseline));
    println!(
        "median: end to end {d:.0} events/s, async-nats alone {b:.0} msgs/s, ratio {:.2}",
        d / b
    );
}
