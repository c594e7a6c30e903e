//! The HTTP front door: the listener and router (`server`), the owner's
//! admin API (`admin`) and its live event stream (`event_stream`), and
//! proxying a request to a service (`proxy`); `body` holds the response
//! helpers they share.

pub mod admin;
pub mod body;
pub mod event_stream;
pub mod proxy;
pub mod server;

pub use server::serve;
