//! In-process fan-out of committed domain events to live subscribers (GraphQL subscriptions).
//! Publishers call [`EventBus::publish`] only after their transaction committed.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::api_keys::ApiKeyRow;

#[derive(Debug, Clone)]
pub enum DomainEvent {
    ApiKeyCreated(ApiKeyRow),
    ApiKeyRevoked(ApiKeyRow),
}

impl DomainEvent {
    pub fn project_id(&self) -> &str {
        match self {
            DomainEvent::ApiKeyCreated(k) | DomainEvent::ApiKeyRevoked(k) => &k.project_id,
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<DomainEvent>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: DomainEvent) {
        // No receivers is fine: nobody is listening.
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DomainEvent>> {
        self.tx.subscribe()
    }
}
