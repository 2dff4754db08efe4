//! The simulator's event bus: lifecycle steps publish Marathon events, SSE connections subscribe.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// One Marathon event, ready to frame: its type and its one-line JSON payload.
#[derive(Debug, Clone)]
pub struct SimEvent {
    pub event_type: String,
    pub data: String,
}

/// Broadcast of events. A subscriber that falls more than the buffer behind sees `Lagged`
/// (Marathon closes such a connection as a slow consumer).
pub struct EventBus {
    tx: broadcast::Sender<Arc<SimEvent>>,
    gate: parking_lot::RwLock<Option<Gate>>,
}

/// Decides whether a published event reaches subscribers (the drop faults install one).
pub type Gate = Arc<dyn Fn(&SimEvent) -> bool + Send + Sync>;

impl EventBus {
    pub fn new(buffer: usize) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        EventBus {
            tx,
            gate: parking_lot::RwLock::new(None),
        }
    }

    /// Publishes an event; `fields` is a JSON object to which `eventType` and `timestamp` are added
    /// (unless already present).
    pub fn publish(&self, event_type: &str, fields: Value) {
        let mut object = match fields {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        object
            .entry("eventType")
            .or_insert_with(|| Value::String(event_type.to_string()));
        object
            .entry("timestamp")
            .or_insert_with(|| Value::String(super::clock::timestamp()));
        let data = Value::Object(object).to_string();
        self.publish_raw(SimEvent {
            event_type: event_type.to_string(),
            data,
        });
    }

    /// Publishes an already framed-ready event (tests use this for odd payloads).
    pub fn publish_raw(&self, event: SimEvent) {
        if let Some(gate) = self.gate.read().as_ref() {
            if !gate(&event) {
                return;
            }
        }
        // No subscriber is fine: Marathon drops events nobody listens to.
        let _ = self.tx.send(Arc::new(event));
    }

    /// Installs the gate every published event must pass (replacing any earlier one).
    pub fn set_gate(&self, gate: Gate) {
        *self.gate.write() = Some(gate);
    }

    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SimEvent>> {
        self.tx.subscribe()
    }

    /// Number of live subscriptions.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
