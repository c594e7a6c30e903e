//! The wasmtime engine shared by every service, and the linker that gives
//! components their WASI imports.
//!
//! Instances come from the pooling allocator (pre-reserved slots, copy-on-write
//! memory images: instantiation costs microseconds). Where the address space is
//! too small for the pool (a `ulimit -v`, a 32-bit host) the engine falls back
//! to on-demand allocation. An epoch ticker bounds every guest's run time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::code_cache::CodeCache;
use super::outbound::OwnListener;
use super::sandbox::InstanceState;
use crate::capabilities::HostCapabilities;

/// How often the epoch advances: the granularity of request deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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

/// The engine, the linker built for it, the compiled-code cache, and which
/// allocator is in use.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<InstanceState>,
    pub cache: CodeCache,
    pub pooling: bool,
    /// The locker's listener, which guests may never reach.
    pub own_listener: OwnListener,
    _ticker: EpochTicker,
}

impl Runtime {
    /// The engine and a linker with WASI, wasi:http and every capability;
    /// compiled code is cached in `cache_dir`.
    pub fn new(pool: &PoolSettings, cache_dir: PathBuf) -> Result<Runtime> {
        let mut pooled = base_config();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(pool)));
        let (engine, pooling) = match Engine::new(&pooled) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!(
                    "the pooling allocator is unavailable ({e:#}); falling back to on-demand instances"
                );
                let mut config = base_config();
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
        // WASI 0.3 beside 0.2: a component imports one or the other (or, as
        // Rust's std on wasm32-wasip2 does, 0.2's CLI with 0.3's HTTP).
        wasmtime_wasi::p3::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link WASI 0.3")?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link wasi:http 0.3")?;
        HostCapabilities::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("cannot link Locker's interfaces")?;
        let cache = CodeCache::new(cache_dir, compatibility_key(&engine))?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            pooling,
            own_listener: OwnListener::default(),
            _ticker: ticker,
        })
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

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3's async exports, streams and futures.
    config.wasm_component_model_async(true);
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
    // Keep some decommitted slots warm for the services that ran last.
    config.max_unused_warm_slots(64);
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

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("locker-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
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
