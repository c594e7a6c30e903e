//! The event bus: who subscribes to what, the data types bound to topics,
//! publishing (checked, stored durably, then announced), and how deliveries are retried. Delivering is a
//! trigger (`triggers::delivery`); what a guest may publish is a capability
//! (`capabilities::events`).

mod policy;
mod publish;
mod subscriptions;
mod types;

pub use policy::DeliveryPolicy;
pub use publish::{Bus, HOST_SOURCE, OWNER_SOURCE, PublishError};
pub use subscriptions::Subscriptions;
pub use types::Types;
