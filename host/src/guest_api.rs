//! Locker's own interfaces as the host implements them for guests
//! (`wit/`): `events.publish`, `discovery`, `scheduler`, and calling
//! `event-handler` and `job-handler`.

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
pub use generated::exports::locker::service::job_handler::{
    Guest as JobHandler, GuestIndices as JobHandlerIndices, Job,
};
pub use generated::locker::service::events::Event;
use generated::locker::service::{discovery, events, scheduler};

use crate::job_spec::When;
use crate::scheduler::{ScheduleError, Scheduler};

/// What a guest's calls into Locker act on, and as whom.
#[derive(Clone)]
pub struct ServiceLinks {
    pub name: String,
    pub publishes: Arc<Vec<String>>,
    pub bus: Arc<Bus>,
    pub directory: Arc<Directory>,
    pub scheduler: Arc<Scheduler>,
}

/// Adds `locker:service/events`, `discovery` and `scheduler` to a linker.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<InstanceState>,
) -> wasmtime::Result<()> {
    events::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)?;
    discovery::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)?;
    scheduler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |state| state)
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

impl scheduler::Host for InstanceState {
    async fn create(
        &mut self,
        name: String,
        when: scheduler::Schedule,
        payload: String,
    ) -> wasmtime::Result<Result<(), scheduler::ScheduleError>> {
        let when = match when {
            scheduler::Schedule::Cron(expression) => When::Cron(expression),
            scheduler::Schedule::At(time) => When::At(time),
        };
        let links = self.links.clone();
        let result = links
            .scheduler
            .create(&links.name, &name, when, &payload)
            .await;
        Ok(result.map_err(|error| self.refused("job not created", error)))
    }

    async fn cancel(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<(), scheduler::ScheduleError>> {
        let links = self.links.clone();
        let result = links.scheduler.cancel(&links.name, &name).await;
        Ok(result.map_err(|error| self.refused("job not cancelled", error)))
    }

    async fn jobs(&mut self) -> wasmtime::Result<Vec<scheduler::JobInfo>> {
        Ok(self
            .links
            .scheduler
            .jobs_of(&self.links.name)
            .into_iter()
            .map(|job| scheduler::JobInfo {
                schedule: match job.kind.as_str() {
                    "cron" => scheduler::Schedule::Cron(job.schedule),
                    _ => scheduler::Schedule::At(job.schedule),
                },
                name: job.name,
                payload: job.payload,
                next_run: job.next_run,
                from_manifest: job.from_manifest,
            })
            .collect())
    }
}

impl InstanceState {
    /// Notes a refused scheduler call in the service's log, and converts it.
    fn refused(&self, what: &str, error: ScheduleError) -> scheduler::ScheduleError {
        tracing::warn!(service = %self.links.name, "{what}: {error}");
        self.note(&format!("{what}: {error}"));
        match error {
            ScheduleError::InvalidName(m) => scheduler::ScheduleError::InvalidName(m),
            ScheduleError::InvalidCron(m) => scheduler::ScheduleError::InvalidCron(m),
            ScheduleError::InvalidTime(m) => scheduler::ScheduleError::InvalidTime(m),
            ScheduleError::InvalidJson(m) => scheduler::ScheduleError::InvalidJson(m),
            ScheduleError::NameTaken(m) => scheduler::ScheduleError::NameTaken(m),
            ScheduleError::NotFound(m) => scheduler::ScheduleError::NotFound(m),
            ScheduleError::DeclaredInManifest(m) => scheduler::ScheduleError::DeclaredInManifest(m),
            ScheduleError::TooManyJobs(n) => scheduler::ScheduleError::TooManyJobs(n),
            ScheduleError::Storage(m) => scheduler::ScheduleError::Storage(m),
        }
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
