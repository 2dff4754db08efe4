//! Where deployment ends meet the operations waiting for them.
//!
//! The event reader calls [`DeploymentHub::finished`] when it sees `deployment_success` /
//! `deployment_failed`; an operation calls [`DeploymentHub::wait`] for the deployment it created and
//! polls `/v2/deployments` as a fallback. An end that arrives before anyone waits is kept for a while,
//! so the race between "Marathon answered with the deployment id" and "the event arrived" is harmless.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

/// How a deployment ended, as the event stream reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentEnd {
    /// `deployment_success`.
    Succeeded,
    /// `deployment_failed`, with Marathon's reason when it gave one.
    Failed { reason: Option<String> },
}

type Key = (String, String);

struct Slot {
    tx: watch::Sender<Option<DeploymentEnd>>,
    touched: Instant,
}

/// Shared between the event reader(s) and the operations of one `serve` process.
#[derive(Default)]
pub struct DeploymentHub {
    slots: Mutex<HashMap<Key, Slot>>,
}

/// Ends are kept this long for late waiters; waiters' slots are dropped after it too.
const KEEP: Duration = Duration::from_secs(600);

impl DeploymentHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records how a deployment of `account` ended and wakes everyone waiting for it.
    pub fn finished(&self, account: &str, deployment_id: &str, end: DeploymentEnd) {
        self.with_slot(account, deployment_id, |slot| {
            slot.tx.send_replace(Some(end));
        });
    }

    /// A receiver that holds `Some(end)` once the deployment has ended (maybe already).
    pub fn wait(
        &self,
        account: &str,
        deployment_id: &str,
    ) -> watch::Receiver<Option<DeploymentEnd>> {
        self.with_slot(account, deployment_id, |slot| slot.tx.subscribe())
    }

    /// Whether any event reader feeds this hub (operations then rely less on polling).
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether no deployment is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the (possibly new) slot of a deployment, marking it as recently used.
    fn with_slot<T>(
        &self,
        account: &str,
        deployment_id: &str,
        f: impl FnOnce(&mut Slot) -> T,
    ) -> T {
        let mut slots = self.slots.lock();
        Self::prune(&mut slots);
        let slot = slots
            .entry((account.to_string(), deployment_id.to_string()))
            .or_insert_with(|| Slot {
                tx: watch::channel(None).0,
                touched: Instant::now(),
            });
        slot.touched = Instant::now();
        f(slot)
    }

    fn prune(slots: &mut HashMap<Key, Slot>) {
        if slots.len() < 1024 {
            return;
        }
        slots.retain(|_, slot| slot.touched.elapsed() < KEEP || slot.tx.receiver_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn end_before_wait_is_kept() {
        let hub = DeploymentHub::new();
        hub.finished("prod", "d1", DeploymentEnd::Succeeded);
        let rx = hub.wait("prod", "d1");
        assert_eq!(*rx.borrow(), Some(DeploymentEnd::Succeeded));
    }

    #[tokio::test]
    async fn waiter_is_woken() {
        let hub = std::sync::Arc::new(DeploymentHub::new());
        let mut rx = hub.wait("prod", "d2");
        let h = hub.clone();
        tokio::spawn(async move {
            h.finished(
                "prod",
                "d2",
                DeploymentEnd::Failed {
                    reason: Some("x".into()),
                },
            )
        });
        let end = rx.wait_for(|e| e.is_some()).await.unwrap().clone();
        assert!(matches!(end, Some(DeploymentEnd::Failed { .. })));
        // other accounts are separate
        assert_eq!(*hub.wait("other", "d2").borrow(), None);
    }
}
