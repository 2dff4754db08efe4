//! The KV side of the feed: the documents of `dcos_instances` read back at start, and the watch of
//! `dcos_overlays` that hands every overlay change to the engine.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::Internal;
use super::table::Tables;
use super::{DiscoveryDocument, DiscoveryError};
use crate::names;
use crate::overlays;

/// Reads back the documents of `accounts` from `dcos_instances`.
pub(super) async fn restore(
    kv: &kv::Store,
    accounts: &[String],
    tables: &mut Tables,
) -> Result<(), DiscoveryError> {
    let bucket_error = |message: String| DiscoveryError::Bucket {
        bucket: names::INSTANCES_BUCKET.into(),
        message,
    };
    let status = kv.status().await.map_err(|e| bucket_error(e.to_string()))?;
    if status.values() == 0 {
        return Ok(());
    }
    let mut entries = kv
        .watch_all_from_revision(1)
        .await
        .map_err(|e| bucket_error(e.to_string()))?;
    let read = async {
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| bucket_error(e.to_string()))?;
            if entry.operation == kv::Operation::Put {
                match serde_json::from_slice::<DiscoveryDocument>(&entry.value) {
                    Ok(doc) if accounts.contains(&doc.account) => tables.restore(&doc),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(key = %entry.key, %error, "skipping a discovery document that does not parse")
                    }
                }
            }
            if entry.delta == 0 {
                break;
            }
        }
        Ok::<(), DiscoveryError>(())
    };
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(result) => result,
        Err(_) => Err(bucket_error(
            "reading the stored documents timed out".into(),
        )),
    }
}

/// Forwards overlay changes to the engine until `shutdown`; watches again if the watch ends.
pub(super) async fn watch_overlays(
    mut watch: kv::Watch,
    bucket: kv::Store,
    tx: mpsc::Sender<Internal>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = watch.next() => next,
        };
        let entry = match next {
            Some(Ok(entry)) => entry,
            Some(Err(error)) => {
                tracing::warn!(%error, "overlay watch error");
                continue;
            }
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                match bucket.watch_all().await {
                    Ok(w) => watch = w,
                    Err(error) => tracing::warn!(%error, "cannot watch the overlays again"),
                }
                continue;
            }
        };
        let Some(key) = overlays::parse_key(&entry.key) else {
            continue;
        };
        let disabled = match entry.operation {
            kv::Operation::Put => serde_json::from_slice::<overlays::Overlay>(&entry.value)
                .map(|o| o.disabled)
                .unwrap_or_else(|error| {
                    tracing::warn!(key = %entry.key, %error, "overlay does not parse; treated as enabled");
                    false
                }),
            _ => false,
        };
        let at =
            chrono::DateTime::from_timestamp_nanos(entry.created.unix_timestamp_nanos() as i64)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
        let message = Internal::Overlay {
            key,
            disabled,
            revision: entry.revision,
            at,
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}
