//! The event bus: publish, who subscribes to what, and the live stream.
//!
//! Subscriptions come from the manifests, so the bus knows every subscriber
//! even while it is not loaded. `publish` checks the event (declared topic,
//! JSON payload, size), stores it with one pending delivery per subscriber,
//! and returns once that is durable; then it wakes the subscribers'
//! dispatchers (see `delivery`) and copies the event to the live stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::event_store::{EventRecord, EventStore};
use crate::topics;

/// The source of the host's own events.
pub const HOST_SOURCE: &str = "locker";

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts before a delivery becomes a dead letter.
    pub attempts: u32,
    /// Wait after the first failure; doubles each time, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl DeliveryPolicy {
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        (self.backoff * factor).min(self.max_backoff)
    }
}

/// Why a publish was refused; mirrors `locker:service/events.publish-error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error(
        "service {service:?} may not publish {topic:?}: its manifest does not list it in `publishes`"
    )]
    UndeclaredTopic { service: String, topic: String },
    #[error("the payload is {size} bytes; events are limited to {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("the payload is not JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("the event could not be stored: {0}")]
    Storage(String),
}

pub struct Bus {
    store: EventStore,
    max_payload: usize,
    pub policy: DeliveryPolicy,
    /// Service name → the topic patterns it subscribes to.
    subscriptions: RwLock<BTreeMap<String, Vec<String>>>,
    /// Service name → the bell that wakes its dispatcher.
    bells: Mutex<HashMap<String, Arc<Notify>>>,
    live: broadcast::Sender<EventRecord>,
}

impl Bus {
    pub fn new(store: EventStore, max_payload: usize, policy: DeliveryPolicy) -> Bus {
        Bus {
            store,
            max_payload,
            policy,
            subscriptions: RwLock::new(BTreeMap::new()),
            bells: Mutex::new(HashMap::new()),
            live: broadcast::channel(4096).0,
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn set_subscriptions(&self, service: &str, patterns: Vec<String>) {
        let mut subscriptions = self.subscriptions.write().unwrap();
        if patterns.is_empty() {
            subscriptions.remove(service);
        } else {
            subscriptions.insert(service.to_string(), patterns);
        }
    }

    pub fn remove_subscriber(&self, service: &str) {
        self.subscriptions.write().unwrap().remove(service);
        self.store.forget(service);
        if let Some(bell) = self.bells.lock().unwrap().remove(service) {
            // A dispatcher that wakes and finds its service gone stops.
            bell.notify_one();
        }
    }

    /// The services whose patterns match `topic`.
    pub fn subscribers_of(&self, topic: &str) -> Vec<String> {
        self.subscriptions
            .read()
            .unwrap()
            .iter()
            .filter(|(_, patterns)| patterns.iter().any(|p| topics::matches(p, topic)))
            .map(|(service, _)| service.clone())
            .collect()
    }

    /// The bell a subscriber's dispatcher waits on.
    pub fn bell(&self, service: &str) -> Arc<Notify> {
        self.bells
            .lock()
            .unwrap()
            .entry(service.to_string())
            .or_default()
            .clone()
    }

    pub fn ring(&self, service: &str) {
        self.bell(service).notify_one();
    }

    pub fn live(&self) -> broadcast::Receiver<EventRecord> {
        self.live.subscribe()
    }

    /// Publishes for a service, enforcing its manifest's `publishes`.
    pub async fn publish_as(
        &self,
        service: &str,
        declared: &[String],
        topic: &str,
        payload: String,
    ) -> Result<EventRecord, PublishError> {
        topics::validate_topic(topic).map_err(|e| PublishError::InvalidTopic(format!("{e:#}")))?;
        if !declared
            .iter()
            .any(|pattern| topics::matches(pattern, topic))
        {
            return Err(PublishError::UndeclaredTopic {
                service: service.into(),
                topic: topic.into(),
            });
        }
        self.publish(service, topic, payload).await
    }

    /// Publishes an event of the host's own (`locker/...`) about a service.
    /// The service itself is not told about itself: a subscriber to
    /// `locker/*` would otherwise be woken by its own unload, forever.
    pub async fn publish_host(
        &self,
        topic: &str,
        about: &str,
        payload: serde_json::Value,
    ) -> Result<EventRecord, PublishError> {
        self.publish_excluding(HOST_SOURCE, topic, payload.to_string(), Some(about))
            .await
    }

    async fn publish(
        &self,
        source: &str,
        topic: &str,
        payload: String,
    ) -> Result<EventRecord, PublishError> {
        self.publish_excluding(source, topic, payload, None).await
    }

    async fn publish_excluding(
        &self,
        source: &str,
        topic: &str,
        payload: String,
        excluded: Option<&str>,
    ) -> Result<EventRecord, PublishError> {
        if payload.len() > self.max_payload {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                limit: self.max_payload,
            });
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&payload)
            .map_err(|e| PublishError::InvalidJson(e.to_string()))?;
        let mut subscribers = self.subscribers_of(topic);
        subscribers.retain(|s| Some(s.as_str()) != excluded);
        let record = self
            .store
            .publish(
                topic.into(),
                source.into(),
                crate::catalog::now_rfc3339(),
                payload,
                subscribers.clone(),
            )
            .await
            .map_err(|e| PublishError::Storage(format!("{e:#}")))?;
        for subscriber in &subscribers {
            self.ring(subscriber);
        }
        let _ = self.live.send(record.clone());
        Ok(record)
    }
}
