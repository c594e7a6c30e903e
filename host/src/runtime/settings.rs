//! A service's limits: what its manifest says, the host's defaults for what
//! it leaves out.

use std::time::Duration;

use bytesize::ByteSize;

pub use crate::api::Settings;
use crate::package::Manifest;

/// Host-wide defaults for what a manifest leaves out.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub timeout: Duration,
    pub memory: ByteSize,
    pub max_instances: u32,
    pub max_body: ByteSize,
    pub idle_unload: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: Duration::from_secs(30),
            memory: ByteSize::mib(128),
            max_instances: 32,
            max_body: ByteSize::mib(16),
            idle_unload: Duration::from_secs(300),
        }
    }
}

/// How long a reused instance may wait for its next request by default.
const REUSE_IDLE: Duration = Duration::from_secs(30);
/// Requests one instance of a WASI 0.3 service serves at once by default
/// (what `wasmtime serve` takes too).
const CONCURRENCY: u32 = 16;

impl Settings {
    /// The manifest's limits with `defaults` filled in; memory is capped at
    /// what the instance pool allows (`max_memory`).
    pub fn resolve(manifest: &Manifest, defaults: &Defaults, max_memory: u64) -> Settings {
        let limits = &manifest.limits;
        Settings {
            timeout: limits.timeout.unwrap_or(defaults.timeout),
            memory: limits
                .memory
                .unwrap_or(defaults.memory)
                .as_u64()
                .min(max_memory),
            max_instances: limits.max_instances.unwrap_or(defaults.max_instances),
            max_body: limits.max_body.unwrap_or(defaults.max_body).as_u64(),
            idle_unload: limits.idle_unload.unwrap_or(defaults.idle_unload),
            reuse: manifest.reuse.as_ref().map_or(1, |r| r.max_requests),
            reuse_idle: manifest
                .reuse
                .as_ref()
                .and_then(|r| r.idle)
                .unwrap_or(REUSE_IDLE),
            concurrency: limits.concurrency.unwrap_or(CONCURRENCY),
        }
    }

    /// Settings with the defaults filled in, for a service no host runs.
    pub fn offline(manifest: &Manifest) -> Settings {
        Settings::resolve(
            manifest,
            &Defaults::default(),
            super::PoolSettings::default().max_memory,
        )
    }
}
