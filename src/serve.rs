//! `dcos-driver serve`: every part of the driver wired together under one shutdown signal.
//!
//! Order at start: the health endpoint (so `/healthz` answers while the rest starts), NATS, JetStream
//! setup, the DC/OS clients, the event readers and discovery, the NATS service API, then the operation
//! worker. On shutdown the worker stops pulling and hands back what it cannot finish; the other parts
//! stop with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{self, AppLocks, BusSettings};
use crate::config::Config;
use crate::dcos::{CallHook, ClientOptions, DcosClient};
use crate::deployments::DeploymentHub;
use crate::discovery::{AccountFeed, Discovery, DiscoveryOptions};
use crate::events::{self, EventConsumer, ReaderOptions};
use crate::health::{self, Readiness};
use crate::metrics::Metrics;
use crate::names;
use crate::ops::{Operations, OpsSettings};
use crate::overlays::OverlayStore;

/// Runs the driver until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    readiness.register(health::NATS_COMPONENT);
    for account in &config.accounts {
        readiness.register(&health::dcos_component(&account.name));
    }
    let listen: SocketAddr = config.driver.http_listen.parse().with_context(|| {
        format!(
            "driver.http_listen `{}` is not host:port",
            config.driver.http_listen
        )
    })?;
    let health_server =
        health::serve(listen, readiness.clone(), metrics.clone(), shutdown.clone()).await?;
    tracing::info!(addr = %health_server.local_addr(), "health and metrics endpoint listening");

    let client = bus::connect(&config.nats).await?;
    readiness.set(health::NATS_COMPONENT, true, "connected");
    let tracker = TaskTracker::new();
    tracker.spawn(watch_nats(
        client.clone(),
        readiness.clone(),
        shutdown.clone(),
    ));

    let js = async_nats::jetstream::new(client.clone());
    let settings = BusSettings::from_config(&config.driver).with_metrics(metrics.clone());
    bus::setup::setup(&js, &settings).await?;

    let client_options = ClientOptions {
        on_call: Some(call_hook(metrics.clone())),
        ..ClientOptions::from_driver(&config.driver)
    };
    // How often each cluster's reachability is checked for `/readyz`.
    let probe_interval = Duration::from_secs(config.driver.probe_interval_seconds.max(1));
    let mut clients = HashMap::new();
    for account in &config.accounts {
        let dcos = DcosClient::new(account, client_options.clone())
            .with_context(|| format!("account {}", account.name))?;
        tracker.spawn(probe_cluster(
            account.name.clone(),
            dcos.clone(),
            probe_interval,
            readiness.clone(),
            shutdown.clone(),
        ));
        clients.insert(account.name.clone(), dcos);
    }

    let hub = Arc::new(DeploymentHub::new());
    let mut consumers: Vec<Arc<dyn EventConsumer>> = Vec::new();
    if config.driver.events_enabled {
        let feeds = config
            .accounts
            .iter()
            .map(|account| AccountFeed {
                account: account.clone(),
                source: Arc::new(clients[&account.name].clone()),
            })
            .collect();
        let overlays = OverlayStore::new(
            js.get_key_value(names::OVERLAYS_BUCKET)
                .await
                .context("KV bucket dcos_overlays")?,
        );
        let options = DiscoveryOptions {
            metrics: Some(metrics.clone()),
            ..DiscoveryOptions::from_driver(&config.driver)
        };
        let discovery =
            Discovery::start(options, feeds, js.clone(), overlays, shutdown.clone()).await?;
        consumers.push(discovery.clone());
        tracker.spawn(async move { discovery.stopped().await });
        for account in &config.accounts {
            readiness.register(&health::events_component(&account.name));
        }
        let mut options = ReaderOptions {
            idle_timeout: Duration::from_secs(config.driver.events_idle_timeout_seconds.max(1)),
            readiness: Some(readiness.clone()),
            ..ReaderOptions::default()
        };
        options.publisher.metrics = Some(metrics.clone());
        for reader in events::spawn_readers(
            &config,
            &clients,
            js.clone(),
            consumers,
            hub.clone(),
            options,
            shutdown.clone(),
        ) {
            tracker.spawn(reader.join());
        }
    }
    let ops_settings = OpsSettings {
        client: client_options.clone(),
        ..OpsSettings::from_config(&config)
    };
    let operations =
        Operations::open(&js, &config, hub.clone(), AppLocks::new(), ops_settings).await?;

    let status_readiness = readiness.clone();
    let status: bus::service::StatusFn =
        Arc::new(move || serde_json::to_value(status_readiness.report()).unwrap_or_default());
    {
        let client = client.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = bus::service::start_service(client, status, shutdown).await {
                tracing::warn!(error = %e, "the NATS service API is not available");
            }
        });
    }

    tracing::info!(accounts = config.accounts.len(), "dcos-driver serving");
    let worker = bus::serve_with(
        client.clone(),
        &config,
        settings,
        Arc::new(operations),
        shutdown.clone(),
    )
    .await;
    // The worker returns at shutdown (or on a setup failure): stop everything else too.
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    let _ = client.flush().await;
    let _ = health_server.stopped().await;
    worker?;
    tracing::info!("dcos-driver stopped");
    Ok(())
}

/// Counts every DC/OS call attempt by account, endpoint and status.
fn call_hook(metrics: Metrics) -> CallHook {
    Arc::new(move |record| {
        metrics.record_dcos_call(
            record.account,
            record.endpoint,
            record.status,
            record.elapsed,
        );
    })
}

/// Keeps the `nats` readiness check in step with the connection.
async fn watch_nats(client: async_nats::Client, readiness: Readiness, shutdown: CancellationToken) {
    loop {
        let state = client.connection_state();
        let connected = matches!(state, async_nats::connection::State::Connected);
        readiness.set(
            health::NATS_COMPONENT,
            connected,
            format!("{state:?}").to_lowercase(),
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Pings Marathon periodically for the `dcos:<account>` readiness check.
async fn probe_cluster(
    account: String,
    client: DcosClient,
    interval: Duration,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let component = health::dcos_component(&account);
    let client = client.with_retry(crate::dcos::RetryPolicy::none());
    loop {
        match client.marathon().ping().await {
            Ok(()) => readiness.set(
                &component,
                true,
                format!("{} answers", client.marathon_base()),
            ),
            Err(e) => readiness.set(&component, false, e.to_string()),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
