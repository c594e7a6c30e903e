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
//! - Locker's events (publishing only the topics its manifest declares) and
//!   discovery.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::guest_api::ServiceLinks;
use crate::guest_output::CappedOutput;

/// How much one request may have its instance write to stdout and stderr
/// together.
pub const LOG_BUDGET_PER_REQUEST: u64 = 1024 * 1024;
use crate::service_log::ServiceLog;

/// The host state inside one instance's `Store`.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundPolicy,
    pub limiter: MemoryLimiter,
    /// Who this instance is, for Locker's own interfaces (`guest_api`).
    pub links: ServiceLinks,
    log: ServiceLog,
    /// Its stdout and stderr, to refill their budget between requests.
    output: CappedOutput,
}

impl InstanceState {
    /// Appends a note from the host to the service's log.
    pub fn note(&self, message: &str) {
        self.log.note(message);
    }

    /// Gives a reused instance its full log budget for its next request.
    pub fn refill_log_budget(&self) {
        self.output.refill(LOG_BUDGET_PER_REQUEST);
    }
}

/// Everything fixed about a service's sandbox, prepared once per load.
#[derive(Clone)]
pub struct SandboxSpec {
    pub work_dir: std::path::PathBuf,
    pub log: ServiceLog,
    pub log_file: Arc<File>,
    pub memory_limit: usize,
    pub allow_hosts: Arc<Vec<String>>,
    pub links: ServiceLinks,
}

impl SandboxSpec {
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
                allow_hosts: self.allow_hosts.clone(),
            },
            limiter: MemoryLimiter::new(self.memory_limit),
            links: self.links.clone(),
            log: self.log.clone(),
            output: log,
        })
    }
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

/// Outbound HTTP is refused unless the manifest names the destination host.
struct OutboundPolicy {
    allow_hosts: Arc<Vec<String>>,
}

impl OutboundPolicy {
    fn allows(&self, authority: &str) -> bool {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        self.allow_hosts.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(authority) || allowed.eq_ignore_ascii_case(host)
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    /// The default check, without the `Arc` filter the default builds on
    /// every call (one allocation per header a guest sets or receives).
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if !self.allows(&authority) {
            tracing::info!(%authority, "refused an outbound request the manifest does not allow");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default: &mut dyn WasiHttpHooks = wasmtime_wasi_http::default_hooks();
        default.send_request(request, options, fut)
    }
}

/// Caps linear memory, and remembers whether the cap was hit so that a trap
/// that follows can be reported as what it is.
pub struct MemoryLimiter {
    limit: usize,
    hit: Arc<AtomicBool>,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
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
