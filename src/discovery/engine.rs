//! The engine: one task owns the [`Tables`], takes events from a bounded queue, snapshots from the fetch
//! tasks and overlay changes from the watcher, and publishes every change (JetStream, then KV).
//!
//! One task means one order: events about an instance are applied in the order they were received. A
//! snapshot is applied only after every event received before it was requested, and wins only over
//! instances no later event touched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::document::now_timestamp;
use super::event::parse_events;
use super::resync::{self, ResyncStats};
use super::table::{Change, Tables};
use super::{Discovery, Queued, ResyncReport};
use crate::names;
use crate::overlays::OverlayKey;

/// What the engine hears from its helper tasks.
pub(crate) enum Internal {
    /// A snapshot fetch ended.
    Fetched {
        cluster: usize,
        marker: u64,
        covers: u64,
        started: Instant,
        read_at: String,
        result: Result<Bytes, String>,
    },
    /// An overlay was set or removed.
    Overlay {
        key: OverlayKey,
        disabled: bool,
        revision: u64,
        at: String,
    },
}

/// Per cluster: the fetch in flight and the last resync.
struct ClusterRun {
    fetching: bool,
    last_started: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

pub(crate) struct Engine {
    pub shared: Arc<Discovery>,
    pub tables: Tables,
    pub events: mpsc::Receiver<Queued>,
    pub internal: mpsc::Receiver<Internal>,
    pub internal_tx: mpsc::Sender<Internal>,
    pub js: jetstream::Context,
    pub kv: kv::Store,
    pub shutdown: CancellationToken,
    runs: Vec<ClusterRun>,
    resyncs: u64,
    /// `(account, instance id)` whose last publish or KV write failed: written again on the next tick.
    dirty: HashMap<(String, String), ()>,
    processed: u64,
}

impl Engine {
    pub fn new(
        shared: Arc<Discovery>,
        tables: Tables,
        events: mpsc::Receiver<Queued>,
        internal: (mpsc::Sender<Internal>, mpsc::Receiver<Internal>),
        js: jetstream::Context,
        kv: kv::Store,
        shutdown: CancellationToken,
    ) -> Engine {
        let runs = (0..shared.clusters.len())
            .map(|_| ClusterRun {
                fetching: false,
                last_started: None,
                failures: 0,
                retry_at: None,
            })
            .collect();
        Engine {
            shared,
            tables,
            events,
            internal: internal.1,
            internal_tx: internal.0,
            js,
            kv,
            shutdown,
            runs,
            resyncs: 0,
            dirty: HashMap::new(),
            processed: 0,
        }
    }

    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.shared.options().tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(1024);
        loop {
            self.start_fetches();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(message) = self.internal.recv() => self.handle(message).await,
                n = self.events.recv_many(&mut batch, 1024) => {
                    if n == 0 {
                        break;
                    }
                    for queued in batch.drain(..) {
                        self.apply_event(queued);
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = tick.tick() => self.on_tick(),
            }
            self.flush().await;
        }
        // Publish what was already applied before stopping.
        while let Ok(queued) = self.events.try_recv() {
            self.apply_event(queued);
        }
        self.flush().await;
    }

    fn apply_event(&mut self, queued: Queued) {
        let Queued {
            seq,
            cluster,
            event,
        } = queued;
        let accounts = &self.shared.clusters[cluster].roots;
        for (app, parsed) in parse_events(&event.data) {
            let parsed = match parsed {
                Ok(p) => p,
                Err(error) => {
                    tracing::debug!(event_type = %event.event_type, %error, "discovery skips an event it cannot parse");
                    continue;
                }
            };
            let Some(app) = app else { continue };
            for account in accounts.iter().filter(|a| a.holds(&app)) {
                parsed.apply(&mut self.tables, &account.name, &event.event_type, seq);
            }
        }
        self.processed = self.processed.max(seq);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(interval) = self.shared.options().resync_interval {
            for (i, run) in self.runs.iter().enumerate() {
                let due = run
                    .last_started
                    .is_none_or(|at| now.duration_since(at) >= interval);
                if due && !run.fetching {
                    self.shared.pending.lock()[i] = true;
                }
            }
        }
        for (i, run) in self.runs.iter_mut().enumerate() {
            if run.retry_at.is_some_and(|at| now >= at) {
                run.retry_at = None;
                self.shared.pending.lock()[i] = true;
            }
        }
        self.tables
            .drop_ended(now, self.shared.options().ended_retention);
        let dirty: Vec<(String, String)> = self.dirty.drain().map(|(k, _)| k).collect();
        for (account, instance_id) in dirty {
            let basis = self
                .tables
                .get(&account, &instance_id)
                .map(|i| i.timestamp.clone())
                .unwrap_or_default();
            if let Some(change) = self.tables.current_change(&account, &instance_id, &basis) {
                self.tables.changes.push(change);
            }
        }
    }

    /// Starts a fetch for every cluster with a pending request and none in flight.
    fn start_fetches(&mut self) {
        let requested: Vec<usize> = {
            let mut pending = self.shared.pending.lock();
            pending
                .iter_mut()
                .enumerate()
                .filter(|(i, p)| **p && !self.runs[*i].fetching && self.runs[*i].retry_at.is_none())
                .map(|(i, p)| {
                    *p = false;
                    i
                })
                .collect()
        };
        for cluster in requested {
            let run = &mut self.runs[cluster];
            run.fetching = true;
            run.last_started = Some(Instant::now());
            let (marker, covers) = self.shared.fetch_marker(cluster);
            let source = self.shared.clusters[cluster].source.clone();
            let tx = self.internal_tx.clone();
            let read_at = now_timestamp();
            let started = Instant::now();
            tokio::spawn(async move {
                let result = source.snapshot().await;
                let _ = tx
                    .send(Internal::Fetched {
                        cluster,
                        marker,
                        covers,
                        started,
                        read_at,
                        result,
                    })
                    .await;
            });
        }
    }

    async fn handle(&mut self, message: Internal) {
        match message {
            Internal::Fetched {
                cluster,
                marker,
                covers,
                started,
                read_at,
                result,
            } => {
                self.runs[cluster].fetching = false;
                let fetched = started.elapsed();
                let body = match result {
                    Ok(body) => body,
                    Err(error) => {
                        self.fetch_failed(cluster, &error);
                        return;
                    }
                };
                // Every event received before the snapshot was requested goes first (they are all queued
                // already, or were dropped).
                while self.processed + 1 < marker {
                    match self.events.try_recv() {
                        Ok(queued) => self.apply_event(queued),
                        Err(_) => break,
                    }
                }
                let applied_at = Instant::now();
                self.resyncs += 1;
                let resync_no = self.resyncs;
                let roots = &self.shared.clusters[cluster].roots;
                let tables = &mut self.tables;
                let outcome =
                    blocking(|| resync::apply(tables, &body, roots, marker, resync_no, &read_at));
                let body_len = body.len();
                drop(body);
                let stats: ResyncStats = match outcome {
                    Ok(stats) => stats,
                    Err(error) => {
                        self.fetch_failed(cluster, &format!("snapshot is not valid JSON: {error}"));
                        return;
                    }
                };
                let applied = applied_at.elapsed();
                let published_at = Instant::now();
                self.flush().await;
                release_free_memory();
                self.runs[cluster].failures = 0;
                let report = ResyncReport {
                    cluster: self.shared.clusters[cluster].id.clone(),
                    stats,
                    bytes: body_len,
                    fetch: fetched,
                    apply: applied,
                    publish: published_at.elapsed(),
                    total: started.elapsed(),
                };
                tracing::info!(
                    cluster = %report.cluster.0,
                    apps = report.stats.apps,
                    tasks = report.stats.tasks,
                    changes = report.stats.changes,
                    ms = report.total.as_millis() as u64,
                    "discovery resync done"
                );
                if let Some(metrics) = &self.shared.options().metrics {
                    for root in &self.shared.clusters[cluster].roots {
                        metrics.resync(&root.name);
                    }
                }
                self.shared.resync_done(cluster, covers, report);
            }
            Internal::Overlay {
                key,
                disabled,
                revision,
                at,
            } => {
                let basis = format!("rev{revision}");
                match key {
                    OverlayKey::ServerGroup {
                        account,
                        app_tokens,
                    } => {
                        self.tables
                            .set_group_disabled(&account, &app_tokens, disabled, &at, &basis)
                    }
                    OverlayKey::Instance {
                        account,
                        instance_id,
                    } => self.tables.set_instance_disabled(
                        &account,
                        &instance_id,
                        disabled,
                        &at,
                        &basis,
                    ),
                }
            }
        }
    }

    fn fetch_failed(&mut self, cluster: usize, error: &str) {
        let run = &mut self.runs[cluster];
        run.failures += 1;
        let delay = Duration::from_secs(1 << run.failures.min(6)).min(Duration::from_secs(60));
        run.retry_at = Some(Instant::now() + delay);
        tracing::warn!(cluster = %self.shared.clusters[cluster].id.0, %error, retry_in = ?delay, "discovery resync failed");
        self.shared.resync_failed();
    }

    /// Publishes the pending changes in order (acks awaited in windows), then writes the newest document
    /// of each instance to KV and removes the keys of dropped instances.
    async fn flush(&mut self) {
        let changes = std::mem::take(&mut self.tables.changes);
        let removed = std::mem::take(&mut self.tables.removed);
        if !changes.is_empty() || !removed.is_empty() {
            let window = self.shared.options().publish_window.max(1);
            for chunk in changes.chunks(window) {
                self.publish(chunk).await;
            }
            self.store(&changes).await;
            for key in removed {
                if let Err(error) = self.kv.delete(&key).await {
                    tracing::warn!(%key, %error, "cannot remove an ended instance from KV");
                }
            }
        }
        self.shared.flushed(self.processed, &self.tables);
    }

    async fn publish(&mut self, chunk: &[Change]) {
        let mut acks = Vec::with_capacity(chunk.len());
        for change in chunk {
            let doc = &change.document;
            let payload = serde_json::to_vec(doc).expect("documents serialise");
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(&change.msg_id)
                .header(names::ACCOUNT_HEADER, doc.account.as_str())
                .header(names::APP_ID_HEADER, doc.app_id.as_str());
            match self.js.send_publish(doc.subject(), message).await {
                Ok(ack) => acks.push((change, ack)),
                Err(error) => self.failed(change, "publish", &error.to_string()),
            }
        }
        for (change, ack) in acks {
            match ack.await {
                Ok(_) => {
                    if let Some(metrics) = &self.shared.options().metrics {
                        metrics.discovery_out(
                            &change.document.account,
                            change.document.state.as_str(),
                        );
                    }
                }
                Err(error) => self.failed(change, "publish ack", &error.to_string()),
            }
        }
    }

    async fn store(&mut self, changes: &[Change]) {
        let mut latest: HashMap<String, usize> = HashMap::with_capacity(changes.len());
        for (i, change) in changes.iter().enumerate() {
            latest.insert(change.document.kv_key(), i);
        }
        let writes: Vec<(String, usize, Bytes)> = latest
            .into_iter()
            .map(|(key, i)| {
                let bytes = serde_json::to_vec(&changes[i].document).expect("documents serialise");
                (key, i, Bytes::from(bytes))
            })
            .collect();
        let kv = self.kv.clone();
        let failures: Vec<(usize, String)> = futures::stream::iter(writes)
            .map(move |(key, i, bytes)| {
                let kv = kv.clone();
                async move { (i, kv.put(key, bytes).await.err().map(|e| e.to_string())) }
            })
            .buffer_unordered(self.shared.options().kv_concurrency.max(1))
            .filter_map(|(i, error)| async move { error.map(|e| (i, e)) })
            .collect()
            .await;
        for (i, error) in failures {
            self.failed(&changes[i], "KV put", &error);
        }
    }

    fn failed(&mut self, change: &Change, what: &str, error: &str) {
        let doc = &change.document;
        if let Some(metrics) = &self.shared.options().metrics {
            metrics.nats_publish_error(&doc.subject());
        }
        tracing::warn!(account = %doc.account, instance = %doc.instance_id, what, %error, "discovery change not written; trying again on the next tick");
        self.dirty
            .insert((doc.account.clone(), doc.instance_id.clone()), ());
        self.shared.publish_failed();
    }
}

/// Runs CPU-heavy work without stalling the runtime's other tasks where the runtime allows it.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Hands memory freed after a big resync (its documents, the HTTP chunks) back to the OS. glibc keeps
/// freed blocks of its arenas mapped, so without this a process that once published 50,000 changes keeps
/// that high-water mark as resident memory.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free memory of the allocator to the OS; it has no
        // preconditions and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}
