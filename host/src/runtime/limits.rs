//! The memory limit of one instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Caps linear memory, and remembers whether the cap was hit so that a trap
/// that follows can be reported as what it is.
pub struct MemoryLimiter {
    limit: usize,
    hit: Arc<AtomicBool>,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            hit: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that turns true once a growth past the limit was refused.
    pub fn hit_flag(&self) -> Arc<AtomicBool> {
        self.hit.clone()
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
