//! Reconnect delays: jittered exponential backoff (`backon`'s) that starts over after a healthy
//! connection, so a stream that ran for an hour and then closed reconnects at once, while a cluster that
//! keeps refusing is not hammered.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// How the reader waits between connection attempts.
#[derive(Debug, Clone)]
pub struct BackoffPolicy {
    /// The first delay after a failure (jitter adds up to as much again).
    pub initial: Duration,
    /// The delay never grows past this (plus jitter).
    pub max: Duration,
    /// Growth per consecutive failure.
    pub factor: f32,
    /// A connection that streamed at least this long resets the backoff.
    pub healthy_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            factor: 2.0,
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// The backoff state of one reader.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    delays: ExponentialBackoff,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        let delays = Self::delays(&policy);
        Backoff {
            policy,
            delays,
            failures: 0,
        }
    }

    fn delays(policy: &BackoffPolicy) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(policy.initial)
            .with_max_delay(policy.max)
            .with_factor(policy.factor)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The delay before the next attempt, one more failure counted.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delays.next().unwrap_or(self.policy.max)
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over from the initial delay.
    pub fn reset(&mut self) {
        self.delays = Self::delays(&self.policy);
        self.failures = 0;
    }

    /// A connection ended after streaming for `lasted`: if that was healthy, start over.
    pub fn connection_ended(&mut self, lasted: Duration) {
        if lasted >= self.policy.healthy_after {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            factor: 2.0,
            healthy_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn grows_with_jitter_to_the_cap() {
        let mut backoff = Backoff::new(policy());
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(2));
            assert!(
                *d >= base && *d <= base * 2,
                "attempt {i}: {d:?} vs {base:?}"
            );
        }
        assert_eq!(backoff.failures(), 8);
    }

    #[test]
    fn resets_only_after_a_healthy_connection() {
        let mut backoff = Backoff::new(policy());
        for _ in 0..5 {
            backoff.next_delay();
        }
        backoff.connection_ended(Duration::from_secs(1));
        assert!(backoff.next_delay() >= Duration::from_millis(1600));
        backoff.connection_ended(Duration::from_secs(11));
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.next_delay() <= Duration::from_millis(200));
    }
}
