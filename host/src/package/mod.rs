//! What a service is before it runs: its manifest (`locker.toml`), the
//! component it names (checked and inspected before anything is written),
//! and the small languages a manifest speaks: topic patterns and job
//! schedules.

pub mod component;
pub mod config_key;
pub mod host_template;
pub mod job_spec;
pub mod manifest;
pub mod reach;
pub mod topics;
pub mod types;

pub use component::{Exports, Origin, Package, WasiHttp};
pub use manifest::Manifest;
