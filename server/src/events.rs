//! In-process fan-out of committed domain events to live subscribers (GraphQL subscriptions).
//! Publishers call [`EventBus::publish`] only after their transaction committed.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::{ledger::outbox::WalletEvent, store::api_keys::ApiKeyRow};

#[derive(Debug, Clone)]
pub enum DomainEvent {
    ApiKeyCreated(ApiKeyRow),
    ApiKeyRevoked(ApiKeyRow),
    /// An API key was revoked on some server (published by the outbox tailer on every server):
    /// open websockets of the key close.
    KeyRevoked {
        project_id: String,
        key_id: String,
    },
    /// A wallet's balance changed (published by the outbox tailer, after commit, on every server).
    BalanceChanged(WalletEvent),
    /// A wallet's balance fell below its low-balance threshold (once per crossing).
    ThresholdCrossed(WalletEvent),
}

impl DomainEvent {
    pub fn project_id(&self) -> &str {
        match self {
            DomainEvent::ApiKeyCreated(k) | DomainEvent::ApiKeyRevoked(k) => &k.project_id,
            DomainEvent::KeyRevoked { project_id, .. } => project_id,
            DomainEvent::BalanceChanged(w) | DomainEvent::ThresholdCrossed(w) => &w.project_id,
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<DomainEvent>>,
}

/// Events a subscriber may fall behind by before it is told so (`NERUBA_EVENT_BUS_CAPACITY`).
pub const DEFAULT_CAPACITY: usize = 1024;

impl Default for EventBus {
    fn default() -> Self {
        EventBus::with_capacity(DEFAULT_CAPACITY)
    }
}

impl EventBus {
    pub fn with_capacity(capacity: usize) -> EventBus {
        EventBus {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    pub fn publish(&self, event: DomainEvent) {
        // No receivers is fine: nobody is listening.
        let _ = self.tx.send(Arc::new(event));
    }

    /// Events not yet seen by every receiver (at most the capacity: beyond it, the slowest
    /// receiver lags).
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DomainEvent>> {
        self.tx.subscribe()
    }
}
