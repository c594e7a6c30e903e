//! The hello of the Spin Rust SDK's README, as it is: Locker runs what
//! today's Spin SDK builds (a WASI 0.3 `wasi:http/handler`) unmodified.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

/// A simple Spin HTTP component.
#[http_service]
async fn hello_world(_req: Request) -> impl IntoResponse {
    "Hello, Spin"
}
