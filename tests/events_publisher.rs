//! The publisher against a real nats-server: subjects, headers, unchanged payloads, deterministic ids
//! (two replicas → one copy), pipelined acks, and events larger than the server's max payload.

mod events_common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use dcos_driver::events::publisher::{message_id, Publisher, PublisherOptions, TRUNCATED_HEADER};
use dcos_driver::events::state::ReaderStats;
use dcos_driver::events::MarathonEvent;
use events_common::*;
use tokio::sync::mpsc;

fn event(event_type: &str, data: String) -> Arc<MarathonEvent> {
    Arc::new(MarathonEvent {
        event_type: event_type.into(),
        data: Bytes::from(data),
    })
}

/// Runs one publisher over `events` to the end; returns its counters.
async fn publish_all(
    js: &async_nats::jetstream::Context,
    accounts: Vec<dcos_driver::config::AccountConfig>,
    events: Vec<Arc<MarathonEvent>>,
) -> Arc<ReaderStats> {
    let stats = Arc::new(ReaderStats::default());
    let (tx, rx) = mpsc::channel(16);
    let publisher = Publisher::new(
        js.clone(),
        accounts,
        PublisherOptions::default(),
        stats.clone(),
    );
    let run = tokio::spawn(publisher.run(rx));
    for e in events {
        tx.send(e).await.unwrap();
    }
    drop(tx);
    run.await.unwrap();
    stats
}

#[tokio::test]
async fn subjects_headers_payload_and_ids() {
    let (_server, js) = nats().await;
    let accounts = accounts(
        "http://m",
        &[("prod", None), ("web", Some("/prod/web")), ("dev", None)],
    );
    let status = r#"{"eventType":"status_update_event","appId":"/prod/web/api","taskId":"t1","taskStatus":"TASK_RUNNING"}"#;
    let attached = r#"{"eventType":"event_stream_attached","remoteAddress":"127.0.0.1","timestamp":"2026-01-01T00:00:00.000Z"}"#;
    let stats = publish_all(
        &js,
        accounts,
        vec![
            event("status_update_event", status.into()),
            event("event_stream_attached", attached.into()),
        ],
    )
    .await;
    let stored = stored(&js).await;
    let got: Vec<(&str, Option<&str>, Option<&str>)> = stored
        .iter()
        .map(|m| {
            (
                m.subject.as_str(),
                m.header("Dcos-Account"),
                m.header("Dcos-App-Id"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "dcos.event.prod.status_update_event",
                Some("prod"),
                Some("/prod/web/api")
            ),
            (
                "dcos.event.web.status_update_event",
                Some("web"),
                Some("/prod/web/api")
            ),
            ("dcos.event.prod.event_stream_attached", Some("prod"), None),
            ("dcos.event.web.event_stream_attached", Some("web"), None),
            ("dcos.event.dev.event_stream_attached", Some("dev"), None),
        ]
    );
    assert_eq!(stored[0].payload, Bytes::from(status));
    assert_eq!(
        stored[0].header("Dcos-Event-Type"),
        Some("status_update_event")
    );
    assert_eq!(
        stored[0].header("Nats-Msg-Id"),
        Some(message_id("prod", "status_update_event", status.as_bytes()).as_str())
    );
    assert_eq!(stats.published.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn two_replicas_store_one_copy() {
    let (_server, js) = nats().await;
    let accounts = accounts("http://m", &[("prod", None)]);
    let events: Vec<_> = (0..200)
        .map(|i| {
            event(
                "status_update_event",
                format!(
                    r#"{{"eventType":"status_update_event","appId":"/prod/a","taskId":"t{i}"}}"#
                ),
            )
        })
        .collect();
    let (a, b) = tokio::join!(
        publish_all(&js, accounts.clone(), events.clone()),
        publish_all(&js, accounts.clone(), events.clone())
    );
    assert_eq!(count(&js).await, 200);
    let published = a.published.load(Ordering::Relaxed) + b.published.load(Ordering::Relaxed);
    let duplicates = a.duplicates.load(Ordering::Relaxed) + b.duplicates.load(Ordering::Relaxed);
    assert_eq!((published, duplicates), (400, 200));
}

#[tokio::test]
async fn many_events_keep_their_order() {
    let (_server, js) = nats().await;
    let accounts = accounts("http://m", &[("prod", None)]);
    let events: Vec<_> = (0..3000)
        .map(|i| event("x", format!(r#"{{"eventType":"x","n":{i}}}"#)))
        .collect();
    let stats = publish_all(&js, accounts, events).await;
    assert_eq!(stats.published.load(Ordering::Relaxed), 3000);
    let stored = stored(&js).await;
    for (i, m) in stored.iter().enumerate() {
        assert_eq!(
            m.payload,
            Bytes::from(format!(r#"{{"eventType":"x","n":{i}}}"#))
        );
    }
}

#[tokio::test]
async fn events_beyond_max_payload_become_markers() {
    let (_server, js) = nats().await;
    let accounts = accounts("http://m", &[("prod", None)]);
    // The server's default max_payload is 1 MiB (headers count too).
    let fits = format!(
        r#"{{"eventType":"deployment_info","appId":"/prod/a","pad":"{}"}}"#,
        "x".repeat(900 * 1024)
    );
    let too_big = format!(
        r#"{{"eventType":"deployment_success","id":"d-1","timestamp":"2026-01-01T00:00:00.000Z","plan":{{"steps":[{{"actions":[{{"app":"/prod/a"}}]}}]}},"pad":"{}"}}"#,
        "x".repeat(1536 * 1024)
    );
    let stats = publish_all(
        &js,
        accounts,
        vec![
            event("deployment_info", fits.clone()),
            event("deployment_success", too_big.clone()),
        ],
    )
    .await;
    let stored = stored(&js).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].payload.len(), fits.len());
    let marker: serde_json::Value = serde_json::from_slice(&stored[1].payload).unwrap();
    assert_eq!(stored[1].subject, "dcos.event.prod.deployment_success");
    assert_eq!(marker["truncated"], true);
    assert_eq!(marker["id"], "d-1");
    assert_eq!(marker["appId"], "/prod/a");
    assert_eq!(marker["originalBytes"], too_big.len());
    let expected_size = too_big.len().to_string();
    assert_eq!(
        stored[1].header(TRUNCATED_HEADER),
        Some(expected_size.as_str())
    );
    assert_eq!(stats.truncated.load(Ordering::Relaxed), 1);
    assert_eq!(stats.published.load(Ordering::Relaxed), 2);
}
