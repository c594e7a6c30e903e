//! Running services: the wasmtime engine and its linker, the compiled-code
//! cache, the sandbox of one instance, each service's single-flight cold
//! start and idle unload, the HTTP warm pool (WASI 0.2) and concurrent
//! instances (WASI 0.3), one HTTP request to a service (`serve`), and the
//! one path by which a guest export is called (load → admit → instantiate
//! → deadline → settle).

pub mod bodies;
pub mod call;
pub mod call_context;
pub mod calls;
pub mod code_cache;
pub mod concurrent;
pub mod engine;
pub mod errors;
pub mod guest_output;
pub mod limits;
pub mod loaded;
pub mod outbound;
pub mod registry;
pub mod sandbox;
pub mod serve;
pub mod service;
pub mod settings;
pub mod warm_pool;

pub use engine::{PoolSettings, Runtime};
pub use errors::ServiceError;
pub use registry::Services;
pub use service::Service;
pub use settings::Defaults;
