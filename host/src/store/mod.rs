//! Durable state: the locker root (its folders, lock and versioned SQLite
//! schema), the catalog of installed services, the event log, the job
//! store, the owner's credentials, the owner's settings for each service,
//! the publisher keys trusted and the logins to registries,
//! the group-commit writer they share, and the services' logs.
//!
//! The catalog, the event log and the job store are traits, each with a
//! SQLite implementation: a second backend is a new implementation.

pub mod catalog;
pub mod config;
pub mod events;
pub mod group_commit;
pub mod jobs;
pub mod owner;
pub mod registry_logins;
pub mod root;
pub mod schema;
pub mod service_log;
pub mod trust;

pub use catalog::{Catalog, CatalogError, InstalledService, SqliteCatalog};
pub use config::ConfigStore;
pub use events::{EventLog, SqliteEventLog};
pub use jobs::{JobStore, SqliteJobStore};
pub use registry_logins::RegistryLogins;
pub use root::LockerRoot;
pub use service_log::ServiceLog;
pub use trust::{TrustStore, TrustedPublisher};
