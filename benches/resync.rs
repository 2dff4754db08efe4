//! Benchmark of the discovery resync: 10,000 apps × 5 tasks (a ~48 MB snapshot) from the simulator,
//! run as its own process so this process's memory is the driver side only.
//!
//! Run: `cargo bench --bench resync` (`BENCH_APPS`, `BENCH_TASKS` change the size).
//! Prints, for the first resync (everything new) and for three with no change, the wall time and the
//! RSS high-water mark (VmHWM, reset before each resync through `/proc/self/clear_refs`).

#[path = "../tests/discovery_support/mod.rs"]
#[allow(dead_code)]
mod discovery_support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcos_driver::discovery::{DiscoveryOptions, SnapshotSource};
use dcos_driver::testkit::free_port;
use discovery_support::*;

struct SimProcess(Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    // "5" resets the peak RSS (VmHWM) to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(resync_10000_apps_by_5_tasks());
}

async fn resync_10000_apps_by_5_tasks() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let apps: usize = std::env::var("BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let port = free_port();
    let _sim = SimProcess(
        Command::new(env!("CARGO_BIN_EXE_dcos-driver"))
            .args([
                "sim",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--time-scale",
                "0",
            ])
            .args([
                "--preload-apps",
                &apps.to_string(),
                "--preload-tasks",
                &tasks.to_string(),
            ])
            .args(["--preload-group", "/preload"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while http.get(format!("{base}/ping")).send().await.is_err() {
        assert!(Instant::now() < deadline, "simulator did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bus = Bus::start().await;
    // The production path: the driver's DC/OS client.
    let source = Arc::new(
        dcos_driver::dcos::DcosClient::new(
            &account("preload", &base),
            dcos_driver::dcos::ClientOptions::default(),
        )
        .unwrap(),
    );
    let options = DiscoveryOptions {
        resync_interval: None,
        ..DiscoveryOptions::default()
    };
    let (d, cluster, shutdown) = start(&bus, options, account("preload", &base), source).await;
    println!("baseline RSS {} MB", status_kb("VmRSS:") / 1024);
    let mut unchanged = Vec::new();
    for run in 0..4 {
        reset_peak();
        let started = Instant::now();
        let report = d.resync(&cluster).await.unwrap();
        let elapsed = started.elapsed();
        let peak = status_kb("VmHWM:") / 1024;
        println!(
            "resync {run}: {} apps, {} tasks, {} changes, {:.1} MB body: total {:.3} s (fetch {:.3}, parse+diff {:.3}, publish {:.3}); peak RSS {} MB",
            report.stats.apps,
            report.stats.tasks,
            report.stats.changes,
            report.bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            report.fetch.as_secs_f64(),
            report.apply.as_secs_f64(),
            report.publish.as_secs_f64(),
            peak
        );
        if run == 0 {
            assert_eq!(report.stats.tasks, apps * tasks);
            assert_eq!(report.stats.changes, apps * tasks);
        } else {
            assert_eq!(report.stats.changes, 0);
            unchanged.push((elapsed, peak));
        }
    }
    println!("RSS after the resyncs {} MB", status_kb("VmRSS:") / 1024);
    // The floor: serde_json only walking the body.
    let body = HttpSource {
        http: reqwest::Client::new(),
        base: base.clone(),
    }
    .snapshot()
    .await
    .unwrap();
    let started = Instant::now();
    serde_json::from_slice::<serde::de::IgnoredAny>(&body).unwrap();
    println!(
        "serde_json walk of the body alone: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    drop(body);
    unchanged.sort();
    println!(
        "unchanged resync median: {:.3} s; peak RSS {} MB",
        unchanged[1].0.as_secs_f64(),
        unchanged.iter().map(|u| u.1).max().unwrap()
    );
    assert_eq!(d.counts()["preload"].up, (apps * tasks) as u64);
    shutdown.cancel();
}
