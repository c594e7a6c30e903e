//! The wasmtime engines shared by every service, and the linkers that give
//! components their WASI imports: one for WASI 0.2 components, one for WASI
//! 0.3 ones.
//!
//! They differ in one setting: wasmtime's support for concurrent calls
//! (component-model async, which WASI 0.3 is built on) makes every call into
//! a component go through its concurrent event loop and every store carry
//! the state for it. A 0.2 component needs none of that, and its requests
//! are 13 – 22 % cheaper without (BENCHMARKS.md), so it runs on an engine
//! with that support off.
//!
//! Instances come from the pooling allocator (pre-reserved slots, copy-on-write
//! memory images: instantiation costs microseconds). Where the address space is
//! too small for the pool (a `ulimit -v`, a 32-bit host) the engine falls back
//! to on-demand allocation. An epoch ticker bounds every guest's run time.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::code_cache::CodeCache;
use super::outbound::OwnListener;
use super::sandbox::InstanceState;
use crate::capabilities::HostCapabilities;
use crate::package::WasiHttp;

pub use super::limits::EPOCH_TICK;

/// Sizes of the instance pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Instances alive at once across all services.
    pub total_instances: u32,
    /// Largest linear memory any one instance may grow to.
    pub max_memory: u64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            total_instances: 1000,
            max_memory: 1 << 30,
        }
    }
}

/// An engine, the linker built for it, and its compiled-code cache.
pub struct Flavor {
    pub engine: Engine,
    pub linker: Linker<InstanceState>,
    pub cache: CodeCache,
}

/// The two flavours, and which allocator is in use.
pub struct Runtime {
    /// For WASI 0.2 components (and those with no HTTP handler).
    pub sync: Flavor,
    /// For WASI 0.3 components: component-model async.
    pub concurrent: Flavor,
    pub pooling: bool,
    /// The locker's listener, which guests may never reach.
    pub own_listener: OwnListener,
    /// Compiles ahead of a first load (`Service::prepare`) take turns, so
    /// they never crowd out the requests being served.
    pub compiles: tokio::sync::Semaphore,
    /// Every request, event and job attempt passes it; a backup closes it
    /// for a quiet moment.
    pub quiesce: crate::quiesce::Quiesce,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Both engines and their linkers (WASI, wasi:http and every
    /// capability); compiled code is cached in `cache_dir`.
    pub fn new(pool: &PoolSettings, cache_dir: PathBuf) -> Result<Runtime> {
        let (sync, sync_pooled) = Flavor::new(pool, &cache_dir, false)?;
        let (concurrent, concurrent_pooled) = Flavor::new(pool, &cache_dir, true)?;
        let ticker = EpochTicker::start(vec![sync.engine.clone(), concurrent.engine.clone()]);
        Ok(Runtime {
            sync,
            concurrent,
            pooling: sync_pooled && concurrent_pooled,
            own_listener: OwnListener::default(),
            quiesce: crate::quiesce::Quiesce::default(),
            compiles: tokio::sync::Semaphore::new(1),
            _ticker: ticker,
        })
    }

    /// The flavour a component whose HTTP handler speaks `wasi` runs on.
    pub fn flavor(&self, wasi: Option<WasiHttp>) -> &Flavor {
        match wasi {
            Some(WasiHttp::P3) => &self.concurrent,
            Some(WasiHttp::P2) | None => &self.sync,
        }
    }
}

impl Flavor {
    /// An engine (from the instance pool if the address space allows),
    /// with WASI 0.3 and concurrency support if `concurrent`; and whether
    /// it pools.
    fn new(
        pool: &PoolSettings,
        cache_dir: &std::path::Path,
        concurrent: bool,
    ) -> Result<(Flavor, bool)> {
        let mut pooled = base_config(concurrent);
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(pool)));
        let (engine, pooling) = match Engine::new(&pooled) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!(
                    "the pooling allocator is unavailable ({e:#}); falling back to on-demand instances"
                );
                let mut config = base_config(concurrent);
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                (
                    Engine::new(&config)
                        .map_err(anyhow::Error::from)
                        .context("cannot create the wasm engine")?,
                    false,
                )
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link wasi:http")?;
        if concurrent {
            // WASI 0.3 beside 0.2: a component imports one or the other (or,
            // as Rust's std on wasm32-wasip2 does, 0.2's CLI with 0.3's HTTP).
            wasmtime_wasi::p3::add_to_linker(&mut linker)
                .map_err(anyhow::Error::from)
                .context("cannot link WASI 0.3")?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)
                .map_err(anyhow::Error::from)
                .context("cannot link wasi:http 0.3")?;
        }
        HostCapabilities::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link Locker's interfaces")?;
        let cache = CodeCache::new(cache_dir.to_path_buf(), compatibility_key(&engine))?;
        Ok((
            Flavor {
                engine,
                linker,
                cache,
            },
            pooling,
        ))
    }
}

/// A stable text naming everything about the engine that compiled code
/// depends on: code cached under another key is never loaded.
fn compatibility_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn base_config(concurrent: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3's async exports, streams and futures, and the concurrent
    // calls they need; off for 0.2 components (see the module's doc).
    config.wasm_component_model_async(concurrent);
    config.concurrency_support(concurrent);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Compiled code is cached by the host itself (see `code_cache`).
    config.parallel_compilation(true);
    config
}

fn pooling_config(pool: &PoolSettings) -> PoolingAllocationConfig {
    let mut config = PoolingAllocationConfig::new();
    let instances = pool.total_instances;
    config.total_component_instances(instances);
    // Interpreters (Python, JavaScript) bring many core instances, memories
    // and tables of their own; these bounds fit componentize-py and -js output.
    config.total_core_instances(instances * 8);
    config.total_memories(instances * 2);
    config.total_tables(instances * 8);
    config.total_stacks(instances);
    config.max_core_instances_per_component(64);
    config.max_memories_per_component(8);
    config.max_tables_per_component(32);
    config.max_tables_per_module(8);
    config.table_elements(100_000);
    config.max_component_instance_size(1 << 20);
    config.max_core_instance_size(1 << 20);
    config.max_memory_size(pool.max_memory as usize);
    // Every slot may stay warm, keeping the memory image of the module that
    // used it last: a service's next instance then finds its own image
    // mapped and only its dirtied pages reset. With fewer warm slots than
    // services in use, slots pass from one service to another and each
    // instance faults its image in afresh (64 warm slots, split between the
    // pool's per-thread shards, gave 0.8 page faults per request and half
    // the throughput spread over 50 services). A warm slot keeps only the
    // pages its last instance touched, up to `linear_memory_keep_resident`.
    config.max_unused_warm_slots(instances * 2);
    // Reset what an instance dirtied in place rather than returning it to
    // the kernel: every madvise is a TLB shootdown across cores. PAGEMAP_SCAN
    // (Linux 6.7+) finds the dirty pages, so only those are cleared; what
    // lies past the resident bounds goes back in batches.
    config.pagemap_scan(wasmtime::Enabled::Auto);
    config.decommit_batch_size(32);
    config.linear_memory_keep_resident(4 << 20);
    config.table_keep_resident(256 << 10);
    config
}

/// Advances the engines' epochs every [`EPOCH_TICK`] on its own thread.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("locker-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("cannot start the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
