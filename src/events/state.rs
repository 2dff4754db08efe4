//! What a reader shows the rest of the service: its phase (for readiness) and its counters (for
//! metrics). The phase is a watch channel, changed only on transitions; counters are atomics, bumped on
//! the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a reader's connection state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asking for a token and opening `GET /v2/events`.
    Connecting,
    /// Attached: the consumers were told to resync and events are flowing.
    Streaming,
    /// Waiting before the next attempt.
    Backoff,
    /// Shut down.
    Stopped,
}

impl Phase {
    /// `connecting`, `streaming`, `backoff`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Streaming => "streaming",
            Phase::Backoff => "backoff",
            Phase::Stopped => "stopped",
        }
    }
}

/// The latest transition of a reader.
#[derive(Debug, Clone)]
pub struct ReaderStatus {
    pub phase: Phase,
    /// Successful connects so far (the first one included).
    pub connects: u64,
    /// The Marathon base URL of the current or last attempt.
    pub base: Option<String>,
    /// Why the last connection or attempt ended.
    pub last_error: Option<String>,
}

impl ReaderStatus {
    pub(crate) fn new() -> Self {
        ReaderStatus {
            phase: Phase::Connecting,
            connects: 0,
            base: None,
            last_error: None,
        }
    }

    /// Ready means attached to the stream.
    pub fn attached(&self) -> bool {
        self.phase == Phase::Streaming
    }
}

/// Counters of one reader and its publisher.
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Events read from the stream.
    pub events: AtomicU64,
    /// Connection attempts that failed or connections that ended (each one followed by a reconnect).
    pub reconnects: AtomicU64,
    /// Events dropped because the buffer to the publisher was full (consumers were told `lost`).
    pub dropped: AtomicU64,
    /// Messages JetStream acknowledged (one per event and account).
    pub published: AtomicU64,
    /// Of those, how many JetStream recognised as duplicates (another replica published them first).
    pub duplicates: AtomicU64,
    /// Messages published as a truncation marker because the event exceeded NATS' max payload.
    pub truncated: AtomicU64,
    /// Events whose app lies under no account's root group (published nowhere).
    pub unrouted: AtomicU64,
    /// Messages given up after repeated publish failures (logged at error level).
    pub publish_failures: AtomicU64,
    last_event_unix_ms: AtomicU64,
}

impl ReaderStats {
    pub(crate) fn event_read(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.last_event_unix_ms.store(now, Ordering::Relaxed);
    }

    /// When the last event arrived (wall clock), if any did.
    pub fn last_event_at(&self) -> Option<SystemTime> {
        match self.last_event_unix_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
