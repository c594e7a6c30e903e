//! The HTTP warm pool of a service that opts into reuse: instances that
//! answered a request well wait here for the next one, most recently used
//! first. One serves one request at a time, and only its own service.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::sandbox::InstanceState;
use super::settings::Settings;

/// An HTTP instance kept for the service's next request.
pub struct WarmProxy {
    pub store: Store<InstanceState>,
    pub proxy: Proxy,
    pub memory_hit: Arc<AtomicBool>,
    /// Requests it has served so far.
    pub served: u32,
    pub idle_since: Instant,
}

#[derive(Default)]
pub struct WarmPool {
    instances: Mutex<Vec<WarmProxy>>,
    /// Set when a reused instance failed to answer at all: some runtimes
    /// (StarlingMonkey's `fetch` listener) serve one request per instance.
    off: AtomicBool,
}

impl WarmPool {
    /// Whether instances may be reused (the manifest opted in, and no reused
    /// instance has failed to answer since the service was loaded).
    pub fn reuses(&self, settings: &Settings) -> bool {
        settings.reuse > 1 && !self.off.load(Ordering::Relaxed)
    }

    /// Stops reusing instances until the service is loaded again; `true`
    /// the first time.
    pub fn turn_off(&self) -> bool {
        self.instances.lock().unwrap().clear();
        !self.off.swap(true, Ordering::Relaxed)
    }

    /// The most recently used instance, if one is waiting.
    pub fn take(&self) -> Option<WarmProxy> {
        self.instances.lock().unwrap().pop()
    }

    /// Keeps an instance that served a request well for the next one,
    /// unless it has served its share or touched its memory limit.
    pub fn keep(&self, warm: WarmProxy, settings: &Settings) {
        if warm.served >= settings.reuse
            || warm.memory_hit.load(Ordering::Relaxed)
            || self.off.load(Ordering::Relaxed)
        {
            return;
        }
        let mut pool = self.instances.lock().unwrap();
        if pool.len() < settings.max_instances as usize {
            pool.push(warm);
        }
    }

    /// Drops instances unused for `idle`; returns how many.
    pub fn drop_idle(&self, idle: Duration) -> usize {
        let mut pool = self.instances.lock().unwrap();
        let before = pool.len();
        pool.retain(|warm| warm.idle_since.elapsed() < idle);
        before - pool.len()
    }
}
