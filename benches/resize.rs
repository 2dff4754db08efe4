//! RESIZE_SERVER_GROUP throughput and latency through real NATS, the real worker and the operations
//! executor, against the simulator with 1,000 preloaded apps at time scale 0.
//!
//! `cargo bench --bench resize` (release). Environment: `BENCH_REQUESTS` (default 3000),
//! `BENCH_INFLIGHT` (requests kept outstanding by the closed-loop client, default 128),
//! `BENCH_CONCURRENCY` (the worker's `max_concurrent_operations`, default 64), `BENCH_HUB=none` to
//! wait by polling alone (default: the deployment hub is fed from the simulator's events, as the
//! event reader would). Prints operations/s and p50/p99 publish → terminal latency.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Harness, HubFeed, Options};
use dcos_driver::bus::{TaskDocument, TaskStatus};
use dcos_driver::ops::WaitSettings;
use dcos_driver::sim::SimConfig;
use futures::StreamExt;
use serde_json::json;

const APPS: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let requests = env("BENCH_REQUESTS", 3000);
    let concurrency = env("BENCH_CONCURRENCY", 64);
    let inflight = env("BENCH_INFLIGHT", 128);
    let hub = match std::env::var("BENCH_HUB").as_deref() {
        Ok("none") => HubFeed::None,
        _ => HubFeed::FromSimulator,
    };
    let h = Harness::start_with(Options {
        sim: SimConfig {
            preload_apps: APPS,
            preload_group: "/test/preload".into(),
            ..SimConfig::instant()
        },
        hub,
        max_concurrent_operations: concurrency,
        wait: WaitSettings {
            first_poll: Duration::from_millis(20),
            poll_interval: Duration::from_millis(250),
            event_grace: Duration::from_millis(100),
        },
        ..Options::default()
    })
    .await;

    let mut updates = h.client.subscribe("dcos.task.test.>").await.unwrap();
    let publish = |i: usize| {
        let js = h.js.clone();
        async move {
            let width = APPS.to_string().len().max(4);
            // Each app alternates between 2 and 1 instances.
            let size = if (i / APPS) % 2 == 0 { 2 } else { 1 };
            let body = json!({
                "region": "preload",
                "serverGroupName": format!("app-{:0width$}", i % APPS),
                "targetSize": size,
            });
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("bench-{i}").as_str());
            js.publish_with_headers(
                "dcos.op.test.resize_server_group",
                headers,
                serde_json::to_vec(&body).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    // A closed loop: `inflight` requests outstanding, a new one published as each ends.
    let mut published: HashMap<String, Instant> = HashMap::with_capacity(requests);
    let start = Instant::now();
    let mut next = 0;
    while next < inflight.min(requests) {
        published.insert(format!("bench-{next}"), Instant::now());
        publish(next).await;
        next += 1;
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut failed = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while latencies.len() + failed < requests {
        let message = tokio::time::timeout_at(deadline, updates.next())
            .await
            .expect("all tasks end within 10 minutes")
            .expect("subscription stays open");
        let doc: TaskDocument = serde_json::from_slice(&message.payload).unwrap();
        if !doc.status.is_terminal() {
            continue;
        }
        let Some(at) = published.remove(&doc.task_id) else {
            continue;
        };
        if doc.status == TaskStatus::Succeeded {
            latencies.push(at.elapsed());
        } else {
            failed += 1;
            if failed <= 3 {
                eprintln!(
                    "task {} ended {:?}: {:?}",
                    doc.task_id, doc.status, doc.error
                );
            }
        }
        if next < requests {
            published.insert(format!("bench-{next}"), Instant::now());
            publish(next).await;
            next += 1;
        }
    }
    let total = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "resize bench: {requests} RESIZE_SERVER_GROUP over {APPS} apps, {inflight} in flight, \
         worker concurrency {concurrency}, hub {hub:?}"
    );
    println!(
        "  all terminal in {:.2} s; {failed} failed",
        total.as_secs_f64()
    );
    println!(
        "  throughput {:.0} ops/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        requests as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );
}
