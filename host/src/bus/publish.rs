//! Publishing: `publish` checks the event (declared topic, JSON payload,
//! size), stores it with one pending delivery per subscriber, and returns
//! once that is durable; then it rings the subscribers' bells and copies
//! the event to the live stream.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use super::policy::DeliveryPolicy;
use super::subscriptions::Subscriptions;
use super::types::Types;
use crate::api::EventRecord;
use crate::clock::now_rfc3339;
use crate::metrics::Metrics;
use crate::package::topics;
use crate::store::EventLog;
use crate::store::events::NewEvent;

/// The source of the host's own events.
pub const HOST_SOURCE: &str = "locker";
/// The source of events published from outside, by the owner or a token.
pub const OWNER_SOURCE: &str = "owner";

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
    #[error("the payload on {topic:?} is not a {data_type:?}: {problem}")]
    NotOfType {
        topic: String,
        data_type: String,
        problem: String,
    },
    #[error("{0}")]
    InvalidTopic(String),
    #[error("the event could not be stored: {0}")]
    Storage(String),
}

pub struct Bus {
    log: Arc<dyn EventLog>,
    /// Where events go instead, once the host joins a cluster.
    shared: OnceLock<Arc<dyn EventLog>>,
    max_payload: usize,
    pub policy: DeliveryPolicy,
    pub subscriptions: Subscriptions,
    /// The data types bound to topics.
    pub types: Types,
    live: broadcast::Sender<EventRecord>,
    /// Publishes and deliveries, counted.
    pub metrics: Metrics,
}

impl Bus {
    pub fn new(log: Arc<dyn EventLog>, max_payload: usize, policy: DeliveryPolicy) -> Bus {
        Bus {
            log,
            shared: OnceLock::new(),
            max_payload,
            policy,
            subscriptions: Subscriptions::default(),
            types: Types::default(),
            live: broadcast::channel(4096).0,
            metrics: Metrics::off(),
        }
    }

    /// The same bus, counting into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Bus {
        self.metrics = metrics;
        self
    }

    /// The largest payload an event may carry, in bytes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Where events and deliveries are kept.
    pub fn log(&self) -> &dyn EventLog {
        match self.shared.get() {
            Some(shared) => &**shared,
            None => &*self.log,
        }
    }

    /// Keeps events in `log` from now on (a cluster's), instead of the
    /// root's; before any dispatcher starts.
    pub fn share(&self, log: Arc<dyn EventLog>) {
        let _ = self.shared.set(log);
    }

    /// Forgets a service that was uninstalled, and what was still owed to it.
    pub fn remove_subscriber(&self, service: &str) {
        self.subscriptions.remove(service);
        self.log().forget(service);
    }

    pub fn ring(&self, service: &str) {
        self.subscriptions.ring(service);
    }

    /// Wakes a subscriber whose deliveries before its dispatcher's cursor
    /// became pending again (a replay).
    pub fn rewind(&self, service: &str) {
        self.subscriptions.rewind(service);
    }

    pub fn live(&self) -> broadcast::Receiver<EventRecord> {
        self.live.subscribe()
    }

    /// Shows an event on the live stream: in a cluster, the shared log
    /// tells every event published through any host here.
    pub fn tell_live(&self, event: EventRecord) {
        let _ = self.live.send(event);
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
        self.publish(service, topic, payload, None).await
    }

    /// Publishes for the owner (the admin API, a `publish:TOPIC` token, a
    /// webhook): any topic but the host's own, with the same checks as a
    /// service's publish.
    pub async fn publish_from_owner(
        &self,
        topic: &str,
        payload: String,
    ) -> Result<EventRecord, PublishError> {
        topics::validate_topic(topic).map_err(|e| PublishError::InvalidTopic(format!("{e:#}")))?;
        if topic.starts_with(topics::HOST_PREFIX) {
            return Err(PublishError::InvalidTopic(format!(
                "topic {topic:?} is the host's own (under `locker/`)"
            )));
        }
        self.publish(OWNER_SOURCE, topic, payload, None).await
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
        self.publish(HOST_SOURCE, topic, payload.to_string(), Some(about))
            .await
    }

    async fn publish(
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
        self.types
            .check(topic, &payload)
            .map_err(|violation| PublishError::NotOfType {
                topic: topic.into(),
                data_type: violation.data_type,
                problem: violation.problem,
            })?;
        let mut subscribers = self.subscriptions.subscribers_of(topic);
        subscribers.retain(|s| Some(s.as_str()) != excluded);
        let event = NewEvent {
            topic: topic.into(),
            source: source.into(),
            time: now_rfc3339(),
            payload,
        };
        let record = self
            .log()
            .publish(event, subscribers.clone())
            .await
            .map_err(|e| PublishError::Storage(format!("{e:#}")))?;
        self.metrics.published(source);
        for subscriber in &subscribers {
            self.ring(subscriber);
        }
        if self.shared.get().is_none() {
            self.tell_live(record.clone());
        }
        // Nobody took it: the host says so, on its own topic. A host event
        // never makes another, so this cannot loop.
        if subscribers.is_empty() && source != HOST_SOURCE {
            let about = serde_json::json!({ "id": record.id, "topic": topic, "source": source });
            let unhandled = self.publish(
                HOST_SOURCE,
                "locker/event.unhandled",
                about.to_string(),
                None,
            );
            if let Err(e) = Box::pin(unhandled).await {
                tracing::warn!("cannot publish locker/event.unhandled: {e}");
            }
        }
        Ok(record)
    }
}
