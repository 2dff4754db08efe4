//! Scaled time for the simulator: every lifecycle delay is multiplied by the time scale.

use std::time::Duration;

/// Scales simulated delays; a scale of 0 makes them instant (a yield, so other tasks still run).
#[derive(Debug, Clone)]
pub struct Clock {
    scale: f64,
}

impl Clock {
    pub fn new(scale: f64) -> Self {
        Clock {
            scale: scale.max(0.0),
        }
    }

    /// The time scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Sleeps for `real` scaled by the time scale.
    pub async fn sleep(&self, real: Duration) {
        let scaled = real.mul_f64(self.scale);
        if scaled.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(scaled).await;
        }
    }
}

/// Now as Marathon writes it: ISO-8601 with milliseconds and `Z`.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
