//! What one instance of a service may touch, and the per-instance state the
//! WASI implementations reach through their view traits.
//!
//! A guest sees:
//! - its working directory `<root>/services/<name>`, preopened read-write as
//!   `/`, which is also its current directory: relative and absolute paths
//!   both land inside it, and `..` or symlinks cannot leave it;
//! - no environment variables and no arguments;
//! - stdout and stderr appended to `<root>/logs/<name>.log`, up to 1 MiB per
//!   instance; empty stdin;
//! - clocks and random numbers;
//! - no sockets; outbound HTTP only to the hosts its manifest allows;
//! - linear memory up to its limit;
//! - Locker's own capabilities (`capabilities`), each prepared for it.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::call_context::Upstream;
use super::errors::ServiceError;
use super::guest_output::CappedOutput;
use super::limits::{MemoryLimiter, deadline_ticks};
use super::outbound::{OutboundPolicy, OutboundRules, ServiceCalls};
use crate::capabilities::{HasCapabilities, InstanceCapabilities, ServiceCapabilities};

/// How much one request may have its instance write to stdout and stderr
/// together.
pub const LOG_BUDGET_PER_REQUEST: u64 = 1024 * 1024;

/// The host state inside one instance's `Store`.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundPolicy,
    pub limiter: MemoryLimiter,
    /// Locker's own capabilities, one field each.
    capabilities: InstanceCapabilities,
    /// Its stdout and stderr, to refill their budget between requests.
    output: CappedOutput,
}

impl InstanceState {
    /// Gives a reused instance its full log budget for its next request.
    pub fn refill_log_budget(&self) {
        self.output.refill(LOG_BUDGET_PER_REQUEST);
    }

    /// The requests it holds, for the calls it makes to other services.
    pub fn upstream(&self) -> &Upstream {
        &self.outbound.upstream
    }
}

/// Everything fixed about a service's sandbox, prepared once per load.
#[derive(Clone)]
pub struct SandboxSpec {
    pub work_dir: std::path::PathBuf,
    pub log_file: Arc<File>,
    pub memory_limit: usize,
    pub outbound: Arc<OutboundRules>,
    /// Where its calls to other services go.
    pub calls: Arc<dyn ServiceCalls>,
    pub capabilities: ServiceCapabilities,
}

impl SandboxSpec {
    /// A fresh store for an instance of `service`: its sandbox, its memory
    /// limiter (and the flag that says it was hit), and an epoch deadline
    /// that traps once `timeout` has passed.
    pub fn new_store(
        &self,
        engine: &Engine,
        service: &str,
        timeout: Duration,
    ) -> Result<(Store<InstanceState>, Arc<AtomicBool>), ServiceError> {
        let state = self.instance_state().map_err(|e| ServiceError::Host {
            service: service.to_string(),
            reason: format!("{e:#}"),
        })?;
        let memory_hit = state.limiter.hit_flag();
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        arm_deadline(&mut store, timeout);
        Ok((store, memory_hit))
    }

    /// Builds the state for a fresh instance.
    pub fn instance_state(&self) -> Result<InstanceState> {
        let log = CappedOutput::new(self.log_file.clone(), LOG_BUDGET_PER_REQUEST);
        let mut wasi = WasiCtx::builder();
        // The working directory is on local disk: doing its (short) file
        // calls on the current thread beats a hop to the blocking pool each.
        wasi.allow_blocking_current_thread(true);
        wasi.stdout(log.clone())
            .stderr(log.clone())
            .preopened_dir(&self.work_dir, "/", FsPerms::ReadWrite)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "cannot open the working directory {}",
                    self.work_dir.display()
                )
            })?
            .initial_cwd("/");
        Ok(InstanceState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy {
                rules: self.outbound.clone(),
                calls: self.calls.clone(),
                upstream: Upstream::default(),
            },
            limiter: MemoryLimiter::new(self.memory_limit),
            capabilities: self.capabilities.prepare(),
            output: log,
        })
    }
}

/// Readies a kept instance for its next call: the whole deadline of guest
/// time again, and the whole log budget.
pub fn rearm(store: &mut Store<InstanceState>, timeout: Duration) {
    arm_deadline(store, timeout);
    store.data().refill_log_budget();
}

/// Makes the store's next run trap once `timeout` has passed.
pub fn arm_deadline(store: &mut Store<InstanceState>, timeout: Duration) {
    store.set_epoch_deadline(deadline_ticks(timeout));
    store.epoch_deadline_trap();
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl HasCapabilities for InstanceState {
    fn capabilities(&mut self) -> &mut InstanceCapabilities {
        &mut self.capabilities
    }
}
