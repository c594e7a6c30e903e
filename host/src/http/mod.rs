//! The HTTP front door: the listener and router (`server`), which routes by
//! host (`origins`: the locker's origin, one per service); who may pass
//! each door (`gate`); the host's pages (`pages`: login, set-up, tickets),
//! signing in with a passkey (`passkey_login`), the owner's dashboard
//! (`dashboard`, files embedded from `host/dashboard/`); the owner's admin API (`admin`) and its live event stream
//! (`event_stream`); and proxying a request to a service (`proxy`).
//! `connections` bounds what clients may hold open, `certificates` is what
//! TLS serves (the owner's files, or ACME), and `body` holds the response
//! helpers they share.

pub mod admin;
pub mod body;
pub mod certificates;
pub mod connections;
pub mod dashboard;
pub mod event_stream;
pub mod front;
pub mod gate;
pub mod origins;
pub mod pages;
pub mod passkey_login;
pub mod proxy;
pub mod server;

pub use connections::ConnectionLimits;
pub use front::Front;
pub use origins::Origins;
pub use server::serve;
