//! Framing glue: a `GET /v2/events` body (byte chunks) becomes [`MarathonEvent`]s.
//!
//! # Why `sse-stream` (and not `eventsource-client`)
//! The line parser is the `sse-stream` crate's ([`sse_stream::SseByteStream`]): it takes any stream of
//! byte chunks, so it sits on the `reqwest` body of the DC/OS client (its rustls TLS with the account's CA
//! file or `insecure_tls`, its token, its URL rotation), handles CR, LF and CRLF line ends, also split
//! across chunks, appends a long `data:` line chunk by chunk (a 1 MiB event is not re-scanned per chunk),
//! and treats a bare CRLF outside an event as nothing. It owns no connection and no reconnect policy,
//! which is what we need: the reader's own state machine connects, resyncs after every connect, rotates
//! URLs and rebuilds the token.
//!
//! LaunchDarkly's `eventsource-client` 0.18 was weighed and left out: it brings its own HTTP transport
//! (so the account's TLS settings would have to be rebuilt for a second client), its headers are fixed
//! when the client is built (no fresh token per connection without rebuilding it), it follows 301/307
//! but not Marathon's 302, it reconnects by itself (we must see every connect to resync), and bare CRLF
//! keep-alives never reach the caller (only a transport read timeout would see them).
//! `eventsource-stream` is the other byte-stream parser; it re-parses a partial line on every chunk
//! (quadratic on the big deployment events) and is older.
//!
//! The idle deadline lives below the parser, on the byte chunks: every chunk, a keep-alive CRLF
//! included, resets it (the parser swallows keep-alives, so it could not be done above it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::MarathonEvent;

/// Why a stream of events ended.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Nothing arrived, not even a keep-alive, for this long.
    #[error("no bytes (not even a keep-alive) for {0:?}")]
    Idle(Duration),
    /// Reading the body failed (connection reset, TLS error, …).
    #[error("reading the event stream failed: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// One event grew past the bound without ending.
    #[error("an event grew past {limit} bytes without ending")]
    TooLarge { limit: usize },
    /// The bytes are not a valid event stream (invalid UTF-8 in a field).
    #[error("malformed event stream: {0}")]
    Decode(#[source] sse_stream::Error),
}

/// What went wrong below the parser; carried through it as the body error.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("event larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Decodes a body into events, in stream order. Ends with `None` when the server closes the stream,
/// or with one error (after which it ends).
///
/// `idle` is the deadline every chunk resets; `max_event_bytes` bounds the bytes buffered for one event.
pub fn decode<S, E>(
    body: S,
    idle: Duration,
    max_event_bytes: usize,
) -> impl Stream<Item = Result<MarathonEvent, FrameError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    // Bytes taken in since the last complete event (the decoder resets it).
    let pending = Arc::new(AtomicUsize::new(0));
    let chunks = guarded(body, idle, max_event_bytes, pending.clone());
    let blocks = sse_stream::SseByteStream::new(Box::pin(chunks));
    let state = (Box::pin(blocks), std::collections::VecDeque::new(), false);
    futures::stream::unfold(state, move |(mut blocks, mut ready, mut done)| {
        let pending = pending.clone();
        async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((Ok(event), (blocks, ready, done)));
                }
                if done {
                    return None;
                }
                match blocks.next().await {
                    Some(Ok(block)) => {
                        pending.store(0, Ordering::Relaxed);
                        if let Some(data) = block.data.filter(|d| !d.is_empty()) {
                            ready.extend(split(block.event.as_deref(), Bytes::from(data)));
                        }
                    }
                    Some(Err(error)) => {
                        done = true;
                        return Some((Err(frame_error(error)), (blocks, ready, done)));
                    }
                    None => return None,
                }
            }
        }
    })
}

fn frame_error(error: sse_stream::Error) -> FrameError {
    match error {
        sse_stream::Error::Body(source) => match source.downcast::<BodyError>() {
            Ok(body) => match *body {
                BodyError::Idle(d) => FrameError::Idle(d),
                BodyError::TooLarge(limit) => FrameError::TooLarge { limit },
                BodyError::Read(e) => FrameError::Read(e),
            },
            Err(other) => FrameError::Read(other),
        },
        other => FrameError::Decode(other),
    }
}

/// The body with the idle deadline and the size bound applied; ends after the first error.
fn guarded<S, E>(
    body: S,
    idle: Duration,
    max_event_bytes: usize,
    pending: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    futures::stream::unfold(Some(Box::pin(body)), move |body| {
        let pending = pending.clone();
        async move {
            let mut body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    let size = pending.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                    if size > max_event_bytes {
                        Some((Err(BodyError::TooLarge(max_event_bytes)), None))
                    } else {
                        Some((Ok(chunk), Some(body)))
                    }
                }
                Ok(Some(Err(e))) => Some((Err(BodyError::Read(Box::new(e))), None)),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::Idle(idle)), None)),
            }
        }
    })
}

/// Only the `eventType` of a payload.
#[derive(Deserialize)]
struct EventTypeOnly<'a> {
    #[serde(rename = "eventType", borrow, default)]
    event_type: Option<std::borrow::Cow<'a, str>>,
}

fn payload_event_type(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<EventTypeOnly<'_>>(data)
        .ok()
        .and_then(|t| t.event_type)
        .filter(|t| !t.is_empty())
        .map(|t| t.into_owned())
}

/// One `data:` payload as events: usually one JSON object (passed on byte for byte), sometimes several
/// objects on one line (split, each with its own `eventType`). A payload that is not JSON passes on as
/// one event.
pub fn split(sse_event: Option<&str>, data: Bytes) -> Vec<MarathonEvent> {
    let sse_event = sse_event.filter(|t| !t.is_empty());
    let mut ends = Vec::with_capacity(1);
    let mut objects =
        serde_json::Deserializer::from_slice(&data).into_iter::<serde::de::IgnoredAny>();
    let parsed = loop {
        match objects.next() {
            Some(Ok(_)) => ends.push(objects.byte_offset()),
            Some(Err(_)) => break false,
            None => break true,
        }
    };
    if !parsed || ends.len() <= 1 {
        let event_type = sse_event
            .map(str::to_string)
            .or_else(|| payload_event_type(&data))
            .unwrap_or_else(|| "message".to_string());
        return vec![MarathonEvent { event_type, data }];
    }
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            while data[start].is_ascii_whitespace() {
                start += 1;
            }
            let one = data.slice(start..end);
            start = end;
            let event_type = payload_event_type(&one)
                .or_else(|| sse_event.map(str::to_string))
                .unwrap_or_else(|| "message".to_string());
            MarathonEvent {
                event_type,
                data: one,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: Vec<&'static [u8]>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    async fn all(parts: Vec<&'static [u8]>) -> Vec<Result<MarathonEvent, FrameError>> {
        decode(chunks(parts), Duration::from_secs(5), 1 << 20)
            .collect()
            .await
    }

    fn ok(results: Vec<Result<MarathonEvent, FrameError>>) -> Vec<(String, String)> {
        results
            .into_iter()
            .map(|r| {
                let e = r.unwrap();
                (e.event_type, String::from_utf8(e.data.to_vec()).unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn crlf_frames_and_keepalives_split_anywhere() {
        let events = ok(all(vec![
            b"\r\n",
            b"event: status_update_event\r\nda",
            b"ta: {\"eventType\":\"status_update_event\",\"a\":1}\r",
            b"\n\r\n\r\n\r\n",
            b"event: x\r\ndata: {\"b\":2}\r\n\r\n",
        ])
        .await);
        assert_eq!(
            events,
            vec![
                (
                    "status_update_event".into(),
                    "{\"eventType\":\"status_update_event\",\"a\":1}".into()
                ),
                ("x".into(), "{\"b\":2}".into()),
            ]
        );
    }

    #[tokio::test]
    async fn several_objects_on_one_line_are_split() {
        let events = ok(all(vec![
            b"event: deployment_info\r\ndata: {\"eventType\":\"deployment_info\",\"n\":1} {\"eventType\":\"deployment_success\",\"n\":2}{\"n\":3}\r\n\r\n",
        ])
        .await);
        assert_eq!(
            events,
            vec![
                (
                    "deployment_info".into(),
                    "{\"eventType\":\"deployment_info\",\"n\":1}".into()
                ),
                (
                    "deployment_success".into(),
                    "{\"eventType\":\"deployment_success\",\"n\":2}".into()
                ),
                ("deployment_info".into(), "{\"n\":3}".into()),
            ]
        );
    }

    #[tokio::test]
    async fn type_falls_back_to_payload_and_non_json_passes() {
        let events = ok(all(vec![
            b"data: {\"eventType\":\"app_terminated_event\"}\r\n\r\n",
            b"event: odd\r\ndata: not json\r\n\r\n",
        ])
        .await);
        assert_eq!(events[0].0, "app_terminated_event");
        assert_eq!(events[1], ("odd".into(), "not json".into()));
    }

    #[tokio::test]
    async fn big_event_in_small_chunks() {
        let payload = format!(
            "{{\"eventType\":\"big\",\"x\":\"{}\"}}",
            "y".repeat(1 << 20)
        );
        let frame: &'static [u8] = Box::leak(
            format!("event: big\r\ndata: {payload}\r\n\r\n")
                .into_bytes()
                .into_boxed_slice(),
        );
        let parts: Vec<&'static [u8]> = frame.chunks(16 * 1024).collect();
        let events = decode(chunks(parts), Duration::from_secs(5), 2 << 20)
            .collect::<Vec<_>>()
            .await;
        let events = ok(events);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1, payload);
    }

    #[tokio::test]
    async fn oversized_event_is_an_error() {
        let frame: &'static [u8] = Box::leak(
            format!("event: big\r\ndata: \"{}\"\r\n\r\n", "y".repeat(4096))
                .into_bytes()
                .into_boxed_slice(),
        );
        let parts: Vec<&'static [u8]> = frame.chunks(512).collect();
        let results = decode(chunks(parts), Duration::from_secs(5), 1024)
            .collect::<Vec<_>>()
            .await;
        assert!(matches!(
            results.as_slice(),
            [Err(FrameError::TooLarge { limit: 1024 })]
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn keepalives_reset_the_idle_deadline_and_silence_ends_it() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        let body = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut events = Box::pin(decode(body, Duration::from_secs(30), 1 << 20));
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                tx.send(Ok(Bytes::from_static(b"\r\n"))).await.unwrap();
            }
            tx.send(Ok(Bytes::from_static(b"event: e\r\ndata: {}\r\n\r\n")))
                .await
                .unwrap();
            // then silence, with the sender kept open
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let started = tokio::time::Instant::now();
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first.event_type, "e");
        assert_eq!(started.elapsed(), Duration::from_secs(100));
        let end = events.next().await.unwrap();
        assert!(matches!(end, Err(FrameError::Idle(_))), "{end:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(130));
        assert!(events.next().await.is_none());
        feeder.abort();
    }
}
