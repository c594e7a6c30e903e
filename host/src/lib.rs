//! Locker: a personal data locker whose services are WebAssembly components.
//!
//! The layers, from the command line down (ARCHITECTURE.md draws them and
//! walks a request, an event and a job through them):
//! - [`cli`]: the `locker` command and its admin API client;
//! - [`cluster`]: several hosts serving one locker over NATS JetStream:
//!   the catalog and tokens kept in step, services owned under leases,
//!   requests forwarded to their owner;
//! - [`http`]: the front door: routing, the admin API, the live event
//!   stream, proxying a request to a service;
//! - [`supervisor`]: the host's services kept in step with the catalog, and
//!   the background work;
//! - [`triggers`]: what calls into guests besides HTTP: event delivery and
//!   the job timer;
//! - [`runtime`]: the engine, the code cache, the sandbox, services at run
//!   time, and the one path for calling a guest;
//! - [`capabilities`]: what guests import, one unit each;
//! - [`distribution`]: packages from OCI registries: offers, and fetches
//!   checked in full before anything is installed;
//! - [`bus`], [`jobs`], [`owner`]: events between services, the job table,
//!   and the owner's password, sessions and API tokens;
//! - [`store`]: durable state: the root, its versioned schema, the catalog,
//!   the event log, the job store, the owner's credentials;
//! - [`develop`]: writing services: the SDKs and templates the binary
//!   carries, the guest toolchains, `locker build`;
//! - [`package`]: the manifest and the component, checked before install;
//! - [`api`], [`bindings`], [`clock`], [`metrics`], [`changes`]: the admin
//!   API's wire types, the WIT bindings, the time format, the host's
//!   counters, changes announced to the cluster;
//! - [`allocator`]: the binary's global allocator (mimalloc).

pub mod allocator;
pub mod api;
pub mod backup;
pub mod bindings;
pub mod bus;
pub mod capabilities;
pub mod changes;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod develop;
pub mod distribution;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod owner;
pub mod package;
pub mod quiesce;
pub mod runtime;
pub mod store;
pub mod supervisor;
pub mod triggers;
