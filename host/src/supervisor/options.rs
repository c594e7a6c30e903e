//! How a host is set up; every field has a default.

use std::path::PathBuf;
use std::time::Duration;

use crate::bus::DeliveryPolicy;
use crate::jobs::JobPolicy;
use crate::runtime::{Defaults, PoolSettings};

#[derive(Debug, Clone)]
pub struct HostOptions {
    pub defaults: Defaults,
    pub pool: PoolSettings,
    /// Where compiled code is cached; `<root>/cache` when `None`.
    pub cache_dir: Option<PathBuf>,
    /// Compile services into the code cache ahead of their first request.
    pub compile_ahead: bool,
    pub delivery: DeliveryPolicy,
    /// The largest event payload, in bytes.
    pub max_event_payload: usize,
    pub jobs: JobPolicy,
    /// How long delivered events stay in the history.
    pub event_retention: Duration,
    /// Keep metrics for `/_locker/metrics`.
    pub metrics: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            defaults: Defaults::default(),
            pool: PoolSettings::default(),
            cache_dir: None,
            compile_ahead: true,
            delivery: DeliveryPolicy::default(),
            max_event_payload: 64 * 1024,
            jobs: JobPolicy::default(),
            event_retention: Duration::from_secs(7 * 24 * 3600),
            metrics: true,
        }
    }
}
