//! The smallest Rust app: the same greeting for every request, without
//! reading any of it. It does what the benchmarks' native hyper hello does,
//! so the two compare like for like (`hello-rs` also echoes its path and
//! prefix, which costs five more calls into the host per request).

use locker_sdk::respond;
use locker_sdk::wasip2::exports::http::incoming_handler::Guest;
use locker_sdk::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct HelloFixed;

impl Guest for HelloFixed {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        respond(out, 200, "hello from rust\n");
    }
}

locker_sdk::wasip2::http::proxy::export!(HelloFixed with_types_in locker_sdk::wasip2);
