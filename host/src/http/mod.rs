//! The HTTP front door: the listener and router (`server`), the owner's
//! admin API (`admin`) and its live event stream (`event_stream`), and
//! proxying a request to a service (`proxy`); `connections` bounds what
//! clients may hold open, and `body` holds the response helpers they share.

pub mod admin;
pub mod body;
pub mod connections;
pub mod event_stream;
pub mod proxy;
pub mod server;

pub use connections::ConnectionLimits;
pub use server::serve;
