//! Throughput of the DC/OS simulator at time scale 0 (`cargo bench --bench sim`).
//!
//! Not a test: it prints figures. Client and simulator share this process (and its cores), so the
//! figures are a floor for the simulator alone. Measured:
//! - app reads: `GET /v2/apps/{id}` over 1,000 preloaded apps from concurrent keep-alive clients;
//! - big listings: `GET /v2/apps?embed=apps.tasks` of 1,000 apps × 5 tasks;
//! - resizes: `PUT /v2/apps/{id}` `{"instances": n}`, each starting a deployment that runs at once;
//! - events: frames pushed to one `/v2/events` client while events are published on `sim.bus` in a
//!   tight loop. `event_buffer` is raised above the burst, so the slow-consumer close (which would
//!   end the stream of a reader more than `event_buffer` behind) cannot interfere; the burst is not
//!   paced, so the delivered rate is what one connection sustains.
//!
//! Settings by environment: `SIM_BENCH_SECS` (length of each timed phase, default 3),
//! `SIM_BENCH_CLIENTS` (concurrent HTTP clients, default 8), `SIM_BENCH_EVENTS` (burst, default 200000).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcos_driver::sim::{spawn, SimConfig, SimHandle};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    secs: f64,
    clients: usize,
    events: u64,
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings {
        secs: env_or("SIM_BENCH_SECS", 3.0),
        clients: env_or("SIM_BENCH_CLIENTS", 8),
        events: env_or("SIM_BENCH_EVENTS", 200_000),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "simulator benchmark: time scale 0, {} worker threads, {} clients, {} s per phase",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        settings.clients,
        settings.secs
    );
    runtime.block_on(async {
        app_reads(&settings).await;
        listings(&settings).await;
        resizes(&settings).await;
        events(&settings).await;
    });
}

/// Requests per second and latency percentiles of one timed phase.
struct Figures {
    requests: u64,
    failures: u64,
    bytes: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn print(&mut self, what: &str) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies
                .get(i)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{what:<44} {:>10.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>8.1} MB/s  ({} requests, {} non-2xx)",
            self.requests as f64 / secs,
            pct(0.5),
            pct(0.99),
            self.bytes as f64 / secs / 1e6,
            self.requests,
            self.failures,
        );
    }
}

/// Runs `clients` loops of `request(client_index, iteration)` for `secs`; each loop has its own
/// keep-alive connection.
async fn timed<F, Fut>(clients: usize, secs: f64, request: F) -> Figures
where
    F: Fn(reqwest::Client, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (bool, u64)> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut loops = Vec::new();
    for c in 0..clients {
        let stop = stop.clone();
        let request = request.clone();
        loops.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut figures = Figures {
                requests: 0,
                failures: 0,
                bytes: 0,
                elapsed: Duration::ZERO,
                latencies: Vec::new(),
            };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (ok, bytes) = request(client.clone(), c, i).await;
                figures.latencies.push(t.elapsed());
                figures.requests += 1;
                figures.failures += u64::from(!ok);
                figures.bytes += bytes;
                i += 1;
            }
            figures
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Figures {
        requests: 0,
        failures: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for l in loops {
        let f = l.await.expect("client loop");
        total.requests += f.requests;
        total.failures += f.failures;
        total.bytes += f.bytes;
        total.latencies.extend(f.latencies);
    }
    total.elapsed = start.elapsed();
    total
}

async fn get(client: &reqwest::Client, url: &str) -> (bool, u64) {
    match client.get(url).send().await {
        Ok(response) => {
            let ok = response.status().is_success();
            let body = response.bytes().await.map(|b| b.len()).unwrap_or(0);
            (ok, body as u64)
        }
        Err(_) => (false, 0),
    }
}

async fn preloaded(apps: usize, tasks: usize) -> SimHandle {
    let config = SimConfig {
        preload_apps: apps,
        preload_tasks: tasks,
        ..SimConfig::instant()
    };
    let started = Instant::now();
    let sim = spawn(config).await.expect("sim");
    println!(
        "  (preloaded {apps} apps × {tasks} tasks in {:.0} ms)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    sim
}

async fn app_reads(settings: &Settings) {
    let sim = preloaded(1000, 1).await;
    let base = Arc::new(sim.url());
    let read = move |client: reqwest::Client, c: usize, i: u64| {
        let base = base.clone();
        async move {
            let n = (c as u64 * 7919 + i * 31) % 1000;
            get(&client, &format!("{base}/v2/apps/preload/app-{n:04}")).await
        }
    };
    // Warm up connections and caches.
    timed(settings.clients, 0.5, read.clone()).await;
    timed(settings.clients, settings.secs, read)
        .await
        .print("GET /v2/apps/{id} (1,000 apps × 1 task)");
    sim.stop().await;
}

async fn listings(settings: &Settings) {
    let sim = preloaded(1000, 5).await;
    let url = Arc::new(format!("{}/v2/apps?embed=apps.tasks", sim.url()));
    let list = move |client: reqwest::Client, _: usize, _: u64| {
        let url = url.clone();
        async move { get(&client, &url).await }
    };
    timed(2, 0.5, list.clone()).await;
    let clients = settings.clients.min(2);
    timed(clients, settings.secs, list).await.print(&format!(
        "GET /v2/apps?embed=apps.tasks (1,000×5), {clients} cl."
    ));
    sim.stop().await;
}

async fn resizes(settings: &Settings) {
    let sim = preloaded(1000, 1).await;
    let base = Arc::new(sim.url());
    let clients = settings.clients;
    // Each client resizes its own apps in turn (1..=3 instances), so a deployment has a whole round
    // to finish before its app is touched again; a 409 (still deploying) counts as a failure.
    let resize = move |client: reqwest::Client, c: usize, i: u64| {
        let base = base.clone();
        async move {
            let per_client = 1000 / clients as u64;
            let n = c as u64 * per_client + i % per_client;
            let instances = 1 + (i / per_client) % 3;
            let response = client
                .put(format!("{base}/v2/apps/preload/app-{n:04}"))
                .header("content-type", "application/json")
                .body(json!({ "instances": instances }).to_string())
                .send()
                .await;
            match response {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let bytes = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                    (ok, bytes as u64)
                }
                Err(_) => (false, 0),
            }
        }
    };
    timed(clients, settings.secs, resize)
        .await
        .print("PUT /v2/apps/{id} {instances} (resize)");
    let settle = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), sim.sim.marathon.settled())
        .await
        .ok();
    println!(
        "  (deployments settled {:.0} ms after the last resize; {} tasks now)",
        settle.elapsed().as_secs_f64() * 1000.0,
        sim.sim.marathon.tasks().len()
    );
    sim.stop().await;
}

const FRAME: &[u8] = b"event: status_update_event\r\n";

/// Counts frames of `FRAME` in a byte stream cut at arbitrary places.
struct FrameCounter {
    tail: Vec<u8>,
    count: u64,
}

impl FrameCounter {
    fn feed(&mut self, bytes: &[u8]) {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(bytes);
        let mut i = 0;
        while let Some(at) = find(&window[i..], FRAME) {
            self.count += 1;
            i += at + FRAME.len();
        }
        let keep = window.len().saturating_sub(FRAME.len() - 1).max(i);
        self.tail = window[keep..].to_vec();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn events(settings: &Settings) {
    let burst = settings.events;
    let config = SimConfig {
        // Above the burst: the reader can never be closed as a slow consumer.
        event_buffer: (burst as usize + 1024).next_power_of_two(),
        ..SimConfig::instant()
    };
    let sim = spawn(config).await.expect("sim");
    let mut socket = tokio::net::TcpStream::connect(sim.addr)
        .await
        .expect("connect");
    socket
        .write_all(
            format!(
                "GET /v2/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                sim.addr
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let delivered = Arc::new(AtomicU64::new(0));
    let bytes_read = Arc::new(AtomicU64::new(0));
    let reader = {
        let delivered = delivered.clone();
        let bytes_read = bytes_read.clone();
        tokio::spawn(async move {
            let mut counter = FrameCounter {
                tail: Vec::new(),
                count: 0,
            };
            let mut buf = vec![0u8; 256 * 1024];
            while counter.count < burst {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                counter.feed(&buf[..n]);
                delivered.store(counter.count, Ordering::Relaxed);
            }
            Instant::now()
        })
    };
    while sim.sim.faults.open_streams() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A status update as Marathon sends it (about 500 bytes framed).
    let payload = json!({
        "slaveId": "4f3b2d1c-0a9e-4b8c-9d7e-6f5a4b3c2d1e-S1",
        "taskId": "preload_app-0001.instance-1b2c3d4e-5f60-11ee-8c99-0242ac120002._app.1",
        "taskStatus": "TASK_RUNNING",
        "message": "",
        "appId": "/preload/app-0001",
        "host": "10.0.1.17",
        "ipAddresses": [{"ipAddress": "10.0.1.17", "protocol": "IPv4"}],
        "ports": [20001],
        "version": "2026-11-26T14:00:00.000Z",
    });
    let bus_sim = sim.sim.clone();
    let start = Instant::now();
    let publisher = std::thread::spawn(move || {
        for _ in 0..burst {
            bus_sim.bus.publish("status_update_event", payload.clone());
        }
        Instant::now()
    });
    let published_at = tokio::task::spawn_blocking(move || publisher.join().expect("publisher"))
        .await
        .expect("join");
    let done = tokio::time::timeout(Duration::from_secs(120), reader).await;
    let count = delivered.load(Ordering::Relaxed);
    let bytes = bytes_read.load(Ordering::Relaxed);
    let publish_secs = (published_at - start).as_secs_f64();
    match done {
        Ok(Ok(finished)) if count >= burst => {
            let secs = (finished - start).as_secs_f64();
            println!(
                "{:<44} {:>10.0} ev/s  (published {:.0} ev/s; {burst} events, {:.1} MB/s, slow-consumer closes {})",
                "SSE events delivered to one raw-TCP reader",
                count as f64 / secs,
                burst as f64 / publish_secs,
                bytes as f64 / secs / 1e6,
                sim.sim.faults.slow_consumer_closes(),
            );
        }
        _ => println!(
            "SSE events: only {count} of {burst} delivered (slow-consumer closes {})",
            sim.sim.faults.slow_consumer_closes()
        ),
    }
    sim.stop().await;
}
