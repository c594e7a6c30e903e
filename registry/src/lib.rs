//! Locker's packages over OCI registries.
//!
//! - [`keys`]: the publisher's Ed25519 key and its fingerprint;
//! - [`statement`]: what a publisher signs (package, version, the digest of
//!   every blob), carried in the manifest's annotations, and its checks;
//! - [`artifact`]: a package as an OCI artifact in the standard Wasm layout;
//! - [`client`]: push, and pull with every check before anything is kept;
//! - [`index`]: the list of packages a namespace holds, for registries
//!   that offer no catalog;
//! - [`local`]: a registry on this machine, for tests and benchmarks.

pub mod artifact;
pub mod client;
pub mod index;
pub mod keys;
pub mod local;
pub mod statement;
