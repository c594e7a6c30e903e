//! Locker: a personal data locker whose services are WebAssembly components.
//!
//! The parts, one module each (see ARCHITECTURE.md for how they fit):
//! - [`root`]: the folder that holds a locker, and its lock;
//! - [`manifest`], [`package`]: what a service is, checked before install;
//! - [`catalog`]: installed services, in the root's SQLite store;
//! - [`engine`], [`code_cache`]: the wasmtime engine and compiled-code cache;
//! - [`sandbox`]: what one instance may touch;
//! - [`service`], [`supervisor`]: services at run time, cold start, idle unload;
//! - [`server`], [`proxy`], [`admin`]: HTTP in, to services and the admin API;
//! - [`topics`], [`event_store`], [`bus`], [`delivery`], [`event_stream`]:
//!   durable events between services;
//! - [`job_spec`], [`job_store`], [`scheduler`]: cron and one-shot jobs;
//! - [`guest_api`], [`guest_call`], [`discovery`]: Locker's own WIT
//!   interfaces for guests, and calling the handlers guests export;
//! - [`group_commit`]: batched durable writes to the root's store;
//! - [`cli`], [`client`]: the command line and its admin API client.

pub mod admin;
pub mod bus;
pub mod catalog;
pub mod cli;
mod cli_events;
mod cli_jobs;
pub mod client;
pub mod code_cache;
pub mod delivery;
pub mod discovery;
pub mod engine;
pub mod errors;
pub mod event_store;
pub mod event_stream;
pub mod group_commit;
pub mod guest_api;
pub mod guest_call;
pub mod guest_output;
pub mod job_spec;
pub mod job_store;
pub mod manifest;
pub mod package;
pub mod proxy;
pub mod root;
pub mod sandbox;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod service_log;
pub mod supervisor;
pub mod topics;
