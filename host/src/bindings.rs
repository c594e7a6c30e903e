//! Locker's own WIT package (`wit/`), as Rust: the interfaces guests import
//! (`events`, `discovery`, `scheduler`, implemented in `capabilities`) and
//! the handlers they export (`event-handler`, `job-handler`, called by
//! `triggers`). Generated once here so both sides share the types.

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
pub use generated::locker::service::{discovery, events, scheduler};

impl From<&crate::api::EventRecord> for events::Event {
    fn from(record: &crate::api::EventRecord) -> events::Event {
        events::Event {
            id: record.id.clone(),
            topic: record.topic.clone(),
            source: record.source.clone(),
            time: record.time.clone(),
            payload: record.payload.clone(),
        }
    }
}
