//! The connection state machine of one cluster's event stream:
//!
//! ```text
//!   ┌────────────┐  200   ┌───────────────────────────┐  EOF / idle / read error
//!   │ Connecting ├───────►│ Streaming (attached sent) ├──────────────┐
//!   └─────▲──────┘        └───────────────────────────┘              │
//!         │  delay (reset after a healthy connection)                 │
//!   ┌─────┴──────┐◄──────────────────────────────────────────────────┘
//!   │  Backoff   │◄── refused, 401 twice, 5xx (next URL), network error (next URL)
//!   └────────────┘
//! ```
//!
//! Every connect asks the endpoint for a fresh target (URL in rotation, current token). Marathon has no
//! replay, so after every connect each consumer is told `attached` and resyncs. Events go to every
//! consumer and, through a bounded buffer, to the publisher; the reader never waits for either
//! (Marathon closes a connection that falls 1024 events behind). A full buffer drops the event, counts
//! it, logs it and tells the consumers `lost`.
//!
//! A standby master answers 302 to the leader. The redirect is followed with the `Authorization` header
//! kept (an HTTP client drops it on a redirect to another host, and the leader would answer 401).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::{header, StatusCode};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, BackoffPolicy};
use super::endpoint::EventsEndpoint;
use super::publisher::{Publisher, PublisherOptions};
use super::sse::{self, FrameError};
use super::state::{Phase, ReaderStats, ReaderStatus};
use super::{ClusterId, EventConsumer, MarathonEvent};
use crate::config::AccountConfig;
use crate::dcos::DcosError;
use crate::health::{events_component, Readiness};

/// Settings of a reader and its publisher.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Reconnect when nothing (not even a keep-alive) arrived for this long: about three of Marathon's
    /// 10 s keep-alive periods.
    pub idle_timeout: Duration,
    /// Delays between attempts.
    pub backoff: BackoffPolicy,
    /// Events buffered between the reader and the publisher; more are dropped (and `lost` is called).
    pub buffer: usize,
    /// Largest event accepted; a larger one ends the connection (and a reconnect follows).
    pub max_event_bytes: usize,
    /// The publisher's settings (its `metrics` also count this reader's reconnects).
    pub publisher: PublisherOptions,
    /// Where `events:<account>` readiness is reported for each account of the cluster; `None`: nowhere.
    pub readiness: Option<Readiness>,
    /// At shutdown, how long the publisher may still drain its buffer and await acks (NATS may be down).
    pub flush_grace: Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            idle_timeout: Duration::from_secs(30),
            backoff: BackoffPolicy::default(),
            buffer: 8192,
            max_event_bytes: 64 * 1024 * 1024,
            publisher: PublisherOptions::default(),
            readiness: None,
            flush_grace: Duration::from_secs(10),
        }
    }
}

/// Why a connection attempt failed or a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot prepare the connection: {0}")]
    Target(#[source] DcosError),
    #[error("cannot reach {base}: {source}")]
    Connect {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("invalid event stream URL {url}")]
    InvalidUrl { url: String },
    #[error("{base} sent no answer within {after:?}")]
    NoAnswer { base: String, after: Duration },
    #[error("{base} answered {status}")]
    Status { base: String, status: StatusCode },
    #[error("{base} answered 200 with content type {content_type:?}, not an event stream")]
    NotAStream { base: String, content_type: String },
    #[error("{base} refused the token (401)")]
    Unauthorized {
        base: String,
        generation: Option<u64>,
    },
    #[error("{base} redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects { base: String },
    #[error("{base} closed the stream")]
    Closed { base: String },
    #[error("{base}: {source}")]
    Frame {
        base: String,
        #[source]
        source: FrameError,
    },
}

const MAX_REDIRECTS: usize = 5;

/// What to do after an error: the retry decision in one place.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Try the next URL, after the backoff delay.
    Rotate,
    /// Log in again and retry at once (the first 401 in a row).
    Relogin(Option<u64>),
    /// Same URL, after the backoff delay.
    Wait,
}

fn next_step(error: &StreamError, unauthorized_in_a_row: u32) -> Next {
    match error {
        StreamError::Connect { .. }
        | StreamError::NoAnswer { .. }
        | StreamError::NotAStream { .. } => Next::Rotate,
        StreamError::Status { status, .. } if status.is_server_error() => Next::Rotate,
        StreamError::Frame {
            source: FrameError::Idle(_),
            ..
        } => Next::Rotate,
        StreamError::Unauthorized { generation, .. } if unauthorized_in_a_row <= 1 => {
            Next::Relogin(*generation)
        }
        _ => Next::Wait,
    }
}

/// A running reader: its status, counters and task.
pub struct ReaderHandle {
    pub cluster: ClusterId,
    /// Phase transitions (readiness: `status.borrow().attached()`).
    pub status: watch::Receiver<ReaderStatus>,
    /// Counters for metrics.
    pub stats: Arc<ReaderStats>,
    task: tokio::task::JoinHandle<()>,
}

impl ReaderHandle {
    /// Waits until the reader has stopped and its publisher has flushed (after `shutdown`).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Starts the reader of one cluster (for `accounts`, which share it) and its publisher.
pub fn spawn_reader(
    cluster: ClusterId,
    accounts: Vec<AccountConfig>,
    endpoint: Arc<dyn EventsEndpoint>,
    js: async_nats::jetstream::Context,
    consumers: Vec<Arc<dyn EventConsumer>>,
    options: ReaderOptions,
    shutdown: CancellationToken,
) -> ReaderHandle {
    let (status_tx, status) = watch::channel(ReaderStatus::new());
    let stats = Arc::new(ReaderStats::default());
    let (to_publisher, buffer) = mpsc::channel(options.buffer.max(1));
    let account_names = accounts.iter().map(|a| a.name.clone()).collect();
    let publisher = Publisher::new(js, accounts, options.publisher.clone(), stats.clone());
    let reader = Reader {
        cluster: cluster.clone(),
        accounts: account_names,
        endpoint,
        consumers,
        options,
        status: status_tx,
        stats: stats.clone(),
        to_publisher,
        overflow: None,
    };
    let span = tracing::info_span!("events", cluster = %cluster.0);
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let mut publishing = tokio::spawn(publisher.run(buffer));
            let grace = reader.options.flush_grace;
            reader.run(shutdown).await;
            // The reader dropped its side of the buffer: the publisher drains it and awaits its acks.
            if tokio::time::timeout(grace, &mut publishing).await.is_err() {
                publishing.abort();
                tracing::error!(
                    grace_ms = grace.as_millis() as u64,
                    "the publisher did not flush in time at shutdown; events still buffered are not on NATS"
                );
            }
        },
        span,
    ));
    ReaderHandle {
        cluster,
        status,
        stats,
        task,
    }
}

struct Reader {
    cluster: ClusterId,
    /// Names of the accounts sharing the cluster (for readiness and metrics).
    accounts: Vec<String>,
    endpoint: Arc<dyn EventsEndpoint>,
    consumers: Vec<Arc<dyn EventConsumer>>,
    options: ReaderOptions,
    status: watch::Sender<ReaderStatus>,
    stats: Arc<ReaderStats>,
    to_publisher: mpsc::Sender<Arc<MarathonEvent>>,
    /// Events dropped in the current overflow episode.
    overflow: Option<u64>,
}

impl Reader {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.options.backoff.clone());
        let mut unauthorized_in_a_row = 0u32;
        loop {
            self.set_phase(Phase::Connecting, None);
            let connected = tokio::select! {
                _ = shutdown.cancelled() => break,
                connected = self.connect() => connected,
            };
            let error = match connected {
                Ok((base, response)) => {
                    unauthorized_in_a_row = 0;
                    self.status.send_modify(|s| {
                        s.phase = Phase::Streaming;
                        s.connects += 1;
                        s.base = Some(base.clone());
                    });
                    tracing::info!(%base, "attached to the event stream");
                    self.report();
                    let connects = self.status.borrow().connects;
                    if let (Some(metrics), true) = (&self.options.publisher.metrics, connects > 1) {
                        for account in &self.accounts {
                            metrics.reconnect(account);
                        }
                    }
                    for consumer in &self.consumers {
                        consumer.attached(&self.cluster);
                    }
                    let started = Instant::now();
                    let ended = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        ended = self.stream(&base, response) => ended,
                    };
                    backoff.connection_ended(started.elapsed());
                    ended
                }
                Err(error) => error,
            };
            if matches!(error, StreamError::Unauthorized { .. }) {
                unauthorized_in_a_row += 1;
            } else {
                unauthorized_in_a_row = 0;
            }
            let delay = match next_step(&error, unauthorized_in_a_row) {
                Next::Rotate => {
                    if let Some(base) = self.status.borrow().base.clone() {
                        self.endpoint.unreachable(&base);
                    }
                    backoff.next_delay()
                }
                Next::Relogin(generation) => {
                    if let Some(generation) = generation {
                        self.endpoint.token_rejected(generation);
                    }
                    Duration::ZERO
                }
                Next::Wait => backoff.next_delay(),
            };
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, delay_ms = delay.as_millis() as u64, failures = backoff.failures(), "event stream down; reconnecting");
            self.set_phase(Phase::Backoff, Some(error.to_string()));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.set_phase(Phase::Stopped, None);
        tracing::info!("event reader stopped");
    }

    fn set_phase(&self, phase: Phase, error: Option<String>) {
        self.status.send_modify(|s| {
            s.phase = phase;
            if error.is_some() {
                s.last_error = error;
            }
        });
        self.report();
    }

    /// Readiness of every account of the cluster: ready while attached.
    fn report(&self) {
        let Some(readiness) = &self.options.readiness else {
            return;
        };
        let status = self.status.borrow();
        let detail = match (status.phase, &status.last_error) {
            (Phase::Streaming, _) => {
                format!("attached to {}", status.base.as_deref().unwrap_or("?"))
            }
            (Phase::Stopped, _) => "stopped".to_string(),
            (phase, Some(error)) => format!("{}: {error}", phase.as_str()),
            (phase, None) => phase.as_str().to_string(),
        };
        for account in &self.accounts {
            readiness.set(
                &events_component(account),
                status.attached(),
                detail.clone(),
            );
        }
    }

    /// Opens `GET /v2/events` at the endpoint's current target, following redirects with the token.
    async fn connect(&self) -> Result<(String, reqwest::Response), StreamError> {
        let target = self.endpoint.target().await.map_err(StreamError::Target)?;
        let base = target.base.clone();
        self.status.send_modify(|s| s.base = Some(base.clone()));
        let idle = self.options.idle_timeout;
        let send = |url: reqwest::Url| {
            let mut request = target
                .http
                .get(url)
                .header(header::ACCEPT, "text/event-stream");
            if let Some(auth) = &target.authorization {
                request = request.header(header::AUTHORIZATION, auth.clone());
            }
            let answer = request.send();
            let base = base.clone();
            async move {
                // Headers must come as soon as a keep-alive would: a hung master is rotated past.
                match tokio::time::timeout(idle, answer).await {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(source)) => Err(StreamError::Connect { base, source }),
                    Err(_) => Err(StreamError::NoAnswer { base, after: idle }),
                }
            }
        };
        let url = reqwest::Url::parse(&target.url).map_err(|_| StreamError::InvalidUrl {
            url: target.url.clone(),
        })?;
        let mut response = send(url.clone()).await?;
        let mut hops = 0;
        loop {
            let status = response.status();
            if status.is_redirection() {
                // The HTTP client does not follow (or stopped following): follow with the token.
                let next = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| response.url().join(l).ok());
                match next {
                    Some(next) if hops < MAX_REDIRECTS => {
                        hops += 1;
                        tracing::debug!(%next, "following the redirect to the leader");
                        response = send(next).await?;
                        continue;
                    }
                    _ => return Err(StreamError::TooManyRedirects { base }),
                }
            }
            if status == StatusCode::UNAUTHORIZED
                && target.authorization.is_some()
                && *response.url() != url
                && hops < MAX_REDIRECTS
            {
                // The HTTP client followed a redirect to another host and dropped the token on the way.
                hops += 1;
                let leader = response.url().clone();
                tracing::debug!(%leader, "redirected without the token; asking the leader with it");
                response = send(leader).await?;
                continue;
            }
            break;
        }
        match response.status() {
            StatusCode::OK => {
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if !content_type.starts_with("text/event-stream") {
                    return Err(StreamError::NotAStream { base, content_type });
                }
                Ok((base, response))
            }
            StatusCode::UNAUTHORIZED => Err(StreamError::Unauthorized {
                base,
                generation: target.token_generation,
            }),
            status => Err(StreamError::Status { base, status }),
        }
    }

    /// Reads events until the connection ends; hands each to the consumers and the publisher.
    async fn stream(&mut self, base: &str, response: reqwest::Response) -> StreamError {
        let events = sse::decode(
            response.bytes_stream(),
            self.options.idle_timeout,
            self.options.max_event_bytes,
        );
        let mut events = std::pin::pin!(events);
        while let Some(next) = events.next().await {
            match next {
                Ok(event) => self.dispatch(event),
                Err(source) => {
                    return StreamError::Frame {
                        base: base.to_string(),
                        source,
                    }
                }
            }
        }
        StreamError::Closed {
            base: base.to_string(),
        }
    }

    /// One event: to every consumer, then into the publisher's buffer without waiting.
    fn dispatch(&mut self, event: MarathonEvent) {
        self.stats.event_read();
        let event = Arc::new(event);
        for consumer in &self.consumers {
            consumer.event(&self.cluster, &event);
        }
        match self.to_publisher.try_send(event) {
            Ok(()) => {
                if let Some(dropped) = self.overflow.take() {
                    tracing::warn!(
                        dropped,
                        "publisher caught up; events dropped meanwhile are not on NATS"
                    );
                    // The gap is closed now: resync once more so nothing dropped late is missed.
                    for consumer in &self.consumers {
                        consumer.lost(&self.cluster);
                    }
                }
            }
            Err(mpsc::error::TrySendError::Full(event)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                match self.overflow.as_mut() {
                    Some(dropped) => *dropped += 1,
                    None => {
                        self.overflow = Some(1);
                        tracing::warn!(
                            event_type = %event.event_type,
                            buffer = self.options.buffer,
                            "publisher buffer full: dropping events from NATS publishing, consumers resync"
                        );
                        for consumer in &self.consumers {
                            consumer.lost(&self.cluster);
                        }
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("the publisher has stopped; event not published");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StreamError {
        StreamError::Status {
            base: "b".into(),
            status: StatusCode::from_u16(code).unwrap(),
        }
    }

    #[test]
    fn retry_decision() {
        assert_eq!(next_step(&status(502), 0), Next::Rotate);
        assert_eq!(next_step(&status(503), 0), Next::Rotate);
        assert_eq!(next_step(&status(405), 0), Next::Wait);
        let unauthorized = StreamError::Unauthorized {
            base: "b".into(),
            generation: Some(3),
        };
        assert_eq!(next_step(&unauthorized, 1), Next::Relogin(Some(3)));
        assert_eq!(next_step(&unauthorized, 2), Next::Wait);
        let idle = StreamError::Frame {
            base: "b".into(),
            source: FrameError::Idle(Duration::from_secs(30)),
        };
        assert_eq!(next_step(&idle, 0), Next::Rotate);
        assert_eq!(
            next_step(&StreamError::Closed { base: "b".into() }, 0),
            Next::Wait
        );
    }
}
