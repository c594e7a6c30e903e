//! Locker's own interfaces as the host implements them for guests
//! (`wit/`): `events.publish`, `discovery`, and calling `event-handler`.

use std::sync::Arc;

use crate::bus::{Bus, PublishError};
use crate::discovery::Directory;
use crate::sandbox::InstanceState;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "locker:service/host",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use generated::exports::locker::service::event_handler::{
    Guest as EventHandler, GuestIndices as EventHandlerIndices,
};
pub use generated::locker::service::events::Event;
use generated::locker::service::{discovery, events};

/// What a guest's calls into Locker act on, and as whom.
#[derive(Clone)]
pub struct ServiceLinks {
    pub name: String,
    pub publishes: Arc<Vec<String>>,
    pub bus: Arc<Bus>,
    pub directory: Arc<Directory>,
}

/// Adds `locker:service/events` and `discovery` to a linker.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<InstanceState>,
) -> wasmtime::Result<()> {
    events::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)?;
    discovery::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
}

impl events::Host for InstanceState {
    async fn publish(
        &mut self,
        topic: String,
        payload: String,
    ) -> wasmtime::Result<Result<String, events::PublishError>> {
        let links = self.links.clone();
        match links
            .bus
            .publish_as(&links.name, &links.publishes, &topic, payload)
            .await
        {
            Ok(record) => Ok(Ok(record.id)),
            Err(error) => {
                tracing::warn!(service = %links.name, "publish refused: {error}");
                self.note(&format!("publish refused: {error}"));
                Ok(Err(match error {
                    PublishError::UndeclaredTopic { topic, .. } => {
                        events::PublishError::UndeclaredTopic(topic)
                    }
                    PublishError::PayloadTooLarge { limit, .. } => {
                        events::PublishError::PayloadTooLarge(limit as u64)
                    }
                    PublishError::InvalidJson(message) => {
                        events::PublishError::InvalidJson(message)
                    }
                    PublishError::InvalidTopic(message) => {
                        events::PublishError::InvalidTopic(message)
                    }
                    PublishError::Storage(message) => events::PublishError::Storage(message),
                }))
            }
        }
    }
}

impl discovery::Host for InstanceState {
    async fn self_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.links.name.clone())
    }

    async fn find(&mut self, pattern: String) -> wasmtime::Result<Vec<discovery::ServiceInfo>> {
        Ok(self
            .links
            .directory
            .find(&pattern)
            .into_iter()
            .map(|info| discovery::ServiceInfo {
                name: info.name,
                kind: info.kind,
                version: info.version,
                provides: info.provides,
            })
            .collect())
    }
}

impl From<&crate::event_store::EventRecord> for Event {
    fn from(record: &crate::event_store::EventRecord) -> Event {
        Event {
            id: record.id.clone(),
            topic: record.topic.clone(),
            source: record.source.clone(),
            time: record.time.clone(),
            payload: record.payload.clone(),
        }
    }
}
