//! The live discovery feed: the discovery state of every instance (UP / STARTING / OUT_OF_SERVICE / DOWN /
//! UNKNOWN) kept in KV `dcos_instances` and every change published on
//! `dcos.discovery.<account>.<app tokens>` (stream `DCOS_EVENTS`).
//!
//! Inputs: Marathon events (through [`EventConsumer`]), a resync of the REST snapshot after every
//! attach, after lost events and every `resync_interval_seconds`, and the administrative overlays in KV
//! `dcos_overlays` (watched, applied at once).
//!
//! Decisions:
//! - One engine task applies events, snapshots and overlay changes in receipt order (per-instance order
//!   follows). `EventConsumer::event` only numbers the event and `try_send`s it into a bounded queue; a
//!   full queue drops it, counts an overflow and asks for a resync.
//! - A snapshot is requested at receipt number `marker`; it never overrides an instance an event numbered
//!   `marker` or later touched, and never marks such an instance gone. Resyncs are coalesced per cluster:
//!   one in flight, one pending. A failed fetch is retried with backoff (2 s doubling to 60 s).
//! - Terminal tasks are sticky (see [`state`]); an ended instance is published DOWN, kept in memory and KV
//!   for [`DiscoveryOptions::ended_retention`] (10 min) so late events cannot revive it, then deleted from
//!   both.
//! - Changes are published in order with a deterministic `Nats-Msg-Id` (account, instance, previous and new
//!   state, the event time / overlay revision / task timestamp), acks awaited in windows; the newest
//!   document per instance is then written to KV. A failed write is retried on the next tick.
//! - At start the feed reads `dcos_instances` back (a restart republishes only what changed) and the
//!   overlays (so the first resync already publishes OUT_OF_SERVICE). With a resync interval the first
//!   periodic resync runs at the first tick.
//!
//! Layout:
//! - [`state`]: the state machine of one instance (pure).
//! - [`table`]: all instances per account, overlays, counts, pending changes (pure).
//! - [`event`]: Marathon events → observations.
//! - [`resync`]: the snapshot, parsed borrowing from the body, and its diff.
//! - [`document`]: the published document, its KV key and message id.
//! - `engine`: the one task that applies everything in order and publishes.
//! - `kv_side`: reading `dcos_instances` back at start and watching `dcos_overlays`.

pub mod document;
mod engine;
pub mod event;
mod kv_side;
pub mod resync;
pub mod state;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AccountConfig, DriverConfig};
use crate::dcos::DcosClient;
use crate::events::{ClusterId, EventConsumer, MarathonEvent};
use crate::metrics::Metrics;
use crate::names;
use crate::overlays::{OverlayError, OverlayStore};

pub use document::DiscoveryDocument;
pub use resync::{ResyncStats, SNAPSHOT_PATH};
pub use state::{DiscoveryState, Policy, Reason};
pub use table::StateCounts;

use engine::Engine;
use kv_side::{restore, watch_overlays};
use resync::AccountRoot;
use table::Tables;

/// Where a cluster's REST snapshot comes from: the body of `GET` [`SNAPSHOT_PATH`].
pub trait SnapshotSource: Send + Sync + 'static {
    /// Reads the snapshot; the error says what failed.
    fn snapshot(&self) -> BoxFuture<'_, Result<Bytes, String>>;
}

/// The production source: the account's DC/OS client (retries, login, URL rotation, body bound).
impl SnapshotSource for DcosClient {
    fn snapshot(&self) -> BoxFuture<'_, Result<Bytes, String>> {
        Box::pin(async move {
            self.marathon()
                .get_bytes(SNAPSHOT_PATH)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Limits and behaviour of the feed.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// How unreachable/unknown tasks count.
    pub policy: Policy,
    /// Period of the anti-entropy resync (`None`: only after attaches and lost events).
    pub resync_interval: Option<Duration>,
    /// Events queued between the reader and the engine; on overflow the feed resyncs.
    pub queue_capacity: usize,
    /// How long an ended instance (published DOWN) is kept, in memory (so late events cannot revive it)
    /// and in KV, before it is dropped.
    pub ended_retention: Duration,
    /// Publishes in flight before their acks are awaited.
    pub publish_window: usize,
    /// KV writes in flight.
    pub kv_concurrency: usize,
    /// Period of the housekeeping tick (periodic resyncs, dropping ended instances, retries).
    pub tick: Duration,
    /// Where published changes, instance counts and publish errors are recorded.
    pub metrics: Option<Metrics>,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            policy: Policy::default(),
            resync_interval: Some(Duration::from_secs(300)),
            queue_capacity: 8192,
            ended_retention: Duration::from_secs(600),
            publish_window: 1024,
            kv_concurrency: 128,
            tick: Duration::from_secs(1),
            metrics: None,
        }
    }
}

impl DiscoveryOptions {
    /// The defaults with the driver's settings (`unknown_is_down`, `resync_interval_seconds`).
    pub fn from_driver(driver: &DriverConfig) -> Self {
        DiscoveryOptions {
            policy: Policy {
                unknown_is_down: driver.unknown_is_down,
            },
            resync_interval: (driver.resync_interval_seconds > 0)
                .then(|| Duration::from_secs(driver.resync_interval_seconds)),
            ..DiscoveryOptions::default()
        }
    }
}

/// One account and where its cluster's snapshot comes from (accounts of one cluster share one fetch).
#[derive(Clone)]
pub struct AccountFeed {
    pub account: AccountConfig,
    pub source: Arc<dyn SnapshotSource>,
}

/// What one resync did and how long each part took.
#[derive(Debug, Clone)]
pub struct ResyncReport {
    pub cluster: ClusterId,
    pub stats: ResyncStats,
    /// Size of the snapshot body.
    pub bytes: usize,
    /// Request to body in hand.
    pub fetch: Duration,
    /// Parse and diff.
    pub apply: Duration,
    /// Publishing the changes and writing KV.
    pub publish: Duration,
    /// Request to the last KV write.
    pub total: Duration,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    pub resyncs: u64,
    pub failed_resyncs: u64,
    /// Events dropped because the queue was full (each one caused a resync).
    pub overflows: u64,
    pub publish_failures: u64,
}

/// Failure to start the feed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("KV bucket {bucket}: {message}")]
    Bucket { bucket: String, message: String },
    #[error("reading the overlays: {0}")]
    Overlays(#[from] OverlayError),
}

pub(crate) struct Queued {
    pub seq: u64,
    pub cluster: usize,
    pub event: Arc<MarathonEvent>,
}

pub(crate) struct ClusterEntry {
    pub id: ClusterId,
    pub roots: Vec<AccountRoot>,
    pub source: Arc<dyn SnapshotSource>,
}

struct QueueSide {
    tx: mpsc::Sender<Queued>,
    /// Receipt number of the next event (events are numbered from 1).
    next_seq: u64,
    /// Highest receipt number dropped on overflow.
    dropped_upto: u64,
    /// Resync requests per cluster, numbered.
    requested: Vec<u64>,
}

#[derive(Debug, Clone, Default)]
struct Progress {
    /// Highest receipt number applied and flushed.
    processed: u64,
    /// Per cluster: the highest request number a completed resync covers.
    completed: Vec<u64>,
    reports: Vec<Option<ResyncReport>>,
    counts: BTreeMap<String, StateCounts>,
    stats: DiscoveryStats,
}

/// The discovery feed. It is the [`EventConsumer`] of every cluster of its accounts.
pub struct Discovery {
    options: DiscoveryOptions,
    pub(crate) clusters: Vec<ClusterEntry>,
    queue: Mutex<QueueSide>,
    pub(crate) pending: Mutex<Vec<bool>>,
    pub(crate) wake: Notify,
    progress: watch::Sender<Progress>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Discovery {
    /// Starts the feed: reads back `dcos_instances` (so a restart republishes nothing that did not change)
    /// and the overlays, then runs the engine and the overlay watcher until `shutdown`. The buckets and
    /// `DCOS_EVENTS` must exist (the NATS setup creates them). Resyncs run when a stream attaches
    /// ([`EventConsumer::attached`]), when one is requested, and periodically (the first at once).
    pub async fn start(
        options: DiscoveryOptions,
        feeds: Vec<AccountFeed>,
        js: jetstream::Context,
        overlays: OverlayStore,
        shutdown: CancellationToken,
    ) -> Result<Arc<Discovery>, DiscoveryError> {
        let mut clusters: Vec<ClusterEntry> = Vec::new();
        for feed in &feeds {
            let id = ClusterId::of(&feed.account);
            let root = AccountRoot {
                name: feed.account.name.clone(),
                root: feed.account.root(),
            };
            match clusters.iter_mut().find(|c| c.id == id) {
                Some(c) => c.roots.push(root),
                None => clusters.push(ClusterEntry {
                    id,
                    roots: vec![root],
                    source: feed.source.clone(),
                }),
            }
        }
        let kv = js
            .get_key_value(names::INSTANCES_BUCKET)
            .await
            .map_err(|e| DiscoveryError::Bucket {
                bucket: names::INSTANCES_BUCKET.into(),
                message: e.to_string(),
            })?;
        let mut tables = Tables::new(options.policy);
        let accounts: Vec<String> = feeds.iter().map(|f| f.account.name.clone()).collect();
        restore(&kv, &accounts, &mut tables).await?;

        // Watch first, then read: a change in between is seen twice, which is harmless.
        let watch = overlays
            .bucket()
            .watch_all()
            .await
            .map_err(|e| DiscoveryError::Bucket {
                bucket: names::OVERLAYS_BUCKET.into(),
                message: e.to_string(),
            })?;
        let now = document::now_timestamp();
        for overlay in overlays.all().await? {
            let basis = "initial";
            match &overlay.instance_id {
                Some(instance) => tables.set_instance_disabled(
                    &overlay.account,
                    instance,
                    overlay.disabled,
                    &now,
                    basis,
                ),
                None => tables.set_group_disabled(
                    &overlay.account,
                    &names::app_tokens(&overlay.app_id),
                    overlay.disabled,
                    &now,
                    basis,
                ),
            }
        }
        // Restored instances may change with the overlays read now; those changes are published first.

        let (events_tx, events_rx) = mpsc::channel(options.queue_capacity.max(1));
        let internal = mpsc::channel(64);
        let n = clusters.len();
        let progress = Progress {
            completed: vec![0; n],
            reports: vec![None; n],
            counts: tables.counts(),
            ..Progress::default()
        };
        let discovery = Arc::new(Discovery {
            options,
            clusters,
            queue: Mutex::new(QueueSide {
                tx: events_tx,
                next_seq: 1,
                dropped_upto: 0,
                requested: vec![0; n],
            }),
            pending: Mutex::new(vec![false; n]),
            wake: Notify::new(),
            progress: watch::channel(progress).0,
            tasks: Mutex::new(Vec::new()),
        });
        let watcher = tokio::spawn(watch_overlays(
            watch,
            overlays.bucket().clone(),
            internal.0.clone(),
            shutdown.clone(),
        ));
        let engine = Engine::new(
            discovery.clone(),
            tables,
            events_rx,
            internal,
            js,
            kv,
            shutdown,
        );
        let engine = tokio::spawn(engine.run());
        discovery.tasks.lock().extend([watcher, engine]);
        Ok(discovery)
    }

    /// The options in force.
    pub fn options(&self) -> &DiscoveryOptions {
        &self.options
    }

    /// The clusters the feed reads.
    pub fn clusters(&self) -> Vec<ClusterId> {
        self.clusters.iter().map(|c| c.id.clone()).collect()
    }

    /// Instances per state, per account (for the metrics gauge).
    pub fn counts(&self) -> BTreeMap<String, StateCounts> {
        self.progress.borrow().counts.clone()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> DiscoveryStats {
        self.progress.borrow().stats.clone()
    }

    /// The last completed resync of a cluster.
    pub fn last_resync(&self, cluster: &ClusterId) -> Option<ResyncReport> {
        let index = self.index(cluster)?;
        self.progress.borrow().reports[index].clone()
    }

    /// Asks for a resync of a cluster (coalesced: one runs at a time, one more may be pending); returns
    /// the request number, `None` for a cluster the feed does not read.
    pub fn request_resync(&self, cluster: &ClusterId) -> Option<u64> {
        let index = self.index(cluster)?;
        Some(self.request_index(index))
    }

    /// Requests a resync and waits until one that started after the request has been applied and
    /// published. `None` for an unknown cluster or when the feed stopped.
    pub async fn resync(&self, cluster: &ClusterId) -> Option<ResyncReport> {
        let index = self.index(cluster)?;
        let number = self.request_index(index);
        let mut rx = self.progress.subscribe();
        let progress = rx.wait_for(|p| p.completed[index] >= number).await.ok()?;
        progress.reports[index].clone()
    }

    /// Waits until every event received so far has been applied and its changes published.
    pub async fn caught_up(&self) {
        let (target, dropped) = {
            let queue = self.queue.lock();
            (queue.next_seq - 1, queue.dropped_upto)
        };
        if dropped >= target {
            return;
        }
        let mut rx = self.progress.subscribe();
        let _ = rx.wait_for(|p| p.processed >= target).await;
    }

    /// Waits for the engine and the overlay watcher to end (after `shutdown`).
    pub async fn stopped(&self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }

    fn index(&self, cluster: &ClusterId) -> Option<usize> {
        self.clusters.iter().position(|c| &c.id == cluster)
    }

    fn request_index(&self, index: usize) -> u64 {
        let number = {
            let mut queue = self.queue.lock();
            queue.requested[index] += 1;
            queue.requested[index]
        };
        self.pending.lock()[index] = true;
        self.wake.notify_one();
        number
    }

    /// The receipt number a snapshot requested now is newer than, and the resync request it answers.
    pub(crate) fn fetch_marker(&self, index: usize) -> (u64, u64) {
        let queue = self.queue.lock();
        (queue.next_seq, queue.requested[index])
    }

    pub(crate) fn resync_done(&self, index: usize, covers: u64, report: ResyncReport) {
        self.progress.send_modify(|p| {
            p.completed[index] = p.completed[index].max(covers);
            p.reports[index] = Some(report);
            p.stats.resyncs += 1;
        });
    }

    pub(crate) fn resync_failed(&self) {
        self.progress.send_modify(|p| p.stats.failed_resyncs += 1);
    }

    pub(crate) fn publish_failed(&self) {
        self.progress.send_modify(|p| p.stats.publish_failures += 1);
    }

    pub(crate) fn flushed(&self, processed: u64, tables: &Tables) {
        let counts = tables.counts();
        self.progress.send_if_modified(|p| {
            let counts_changed = p.counts != counts;
            if counts_changed {
                if let Some(metrics) = &self.options.metrics {
                    for (account, c) in &counts {
                        for state in DiscoveryState::ALL {
                            metrics.set_instances(account, state.as_str(), c.get(state));
                        }
                    }
                }
            }
            let changed = p.processed != processed || counts_changed;
            p.processed = processed;
            p.counts = counts;
            changed
        });
    }
}

impl EventConsumer for Discovery {
    fn attached(&self, cluster: &ClusterId) {
        self.request_resync(cluster);
    }

    fn event(&self, cluster: &ClusterId, event: &Arc<MarathonEvent>) {
        let Some(index) = self.index(cluster) else {
            return;
        };
        let overflow = {
            let mut queue = self.queue.lock();
            let seq = queue.next_seq;
            queue.next_seq += 1;
            let queued = Queued {
                seq,
                cluster: index,
                event: event.clone(),
            };
            match queue.tx.try_send(queued) {
                Ok(()) => false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    queue.dropped_upto = seq;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        };
        if overflow {
            self.progress.send_modify(|p| p.stats.overflows += 1);
            tracing::debug!(cluster = %cluster.0, "discovery queue full: resyncing instead");
            self.request_index(index);
        }
    }

    fn lost(&self, cluster: &ClusterId) {
        self.request_resync(cluster);
    }
}
