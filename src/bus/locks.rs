//! Per-app serialisation: two operations never act on the same app at once.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

type Entry = (Arc<tokio::sync::Mutex<()>>, usize);

/// A lock per key (an app id, a job id…). [`AppLocks::lock`] waits its turn: waiters get the lock in
/// the order they asked (tokio's mutex is fair). An entry lives only while someone holds or waits for
/// it, so the map never grows with the number of apps ever seen. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct AppLocks {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// Holds the lock of one key; dropping it lets the next waiter in.
pub struct AppLockGuard {
    // Field order matters: the mutex guard is released before the ticket tidies the map.
    _guard: OwnedMutexGuard<()>,
    _ticket: Ticket,
}

/// Counts one user (holder or waiter) of an entry; the last one out removes it. Dropped also when a
/// waiter gives up (its `lock` future is dropped), so cancelled waiters leak nothing.
struct Ticket {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    key: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut entries = self.entries.lock();
        if let Some((_, users)) = entries.get_mut(&self.key) {
            *users -= 1;
            if *users == 0 {
                entries.remove(&self.key);
            }
        }
    }
}

impl AppLocks {
    pub fn new() -> AppLocks {
        AppLocks::default()
    }

    /// Waits until no one else holds `key`, then holds it until the guard is dropped.
    pub async fn lock(&self, key: &str) -> AppLockGuard {
        let mutex = {
            let mut entries = self.entries.lock();
            let entry = entries
                .entry(key.to_string())
                .or_insert_with(|| (Arc::new(tokio::sync::Mutex::new(())), 0));
            entry.1 += 1;
            entry.0.clone()
        };
        let ticket = Ticket {
            entries: self.entries.clone(),
            key: key.to_string(),
        };
        let guard = mutex.lock_owned().await;
        AppLockGuard {
            _guard: guard,
            _ticket: ticket,
        }
    }

    /// Keys currently held or waited for.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no key is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_get_the_lock_in_order_and_entries_are_removed() {
        let locks = AppLocks::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = locks.lock("/prod/a").await;
        let mut waiters = Vec::new();
        for i in 0..5 {
            let locks = locks.clone();
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                let _g = locks.lock("/prod/a").await;
                order.lock().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Let each waiter queue before the next one asks.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Another app is not blocked.
        drop(locks.lock("/prod/b").await);
        assert_eq!(locks.len(), 1);
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
        assert!(locks.is_empty(), "no entry is kept once unused");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaks_nothing() {
        let locks = AppLocks::new();
        let held = locks.lock("x").await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), locks.lock("x")).await;
        assert!(waiting.is_err());
        assert_eq!(locks.len(), 1);
        drop(held);
        assert!(locks.is_empty());
    }
}
