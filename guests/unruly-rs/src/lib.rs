//! A deliberately badly behaved service, for testing the host's limits.
//!
//! - `/loop`: spins forever;
//! - `/grow`: allocates memory until it runs out;
//! - `/panic`: panics (a trap);
//! - `/recurse`: recurses until the stack overflows;
//! - `/sleep?ms=N`: blocks on the clock for N milliseconds;
//! - `/shout`: prints 8 MiB to stdout, then answers;
//! - `/count`: how many requests this instance has served, this one
//!   included (always 1 unless the host reuses instances);
//! - anything else: answers normally.

use locker_sdk::wasip2::exports::http::incoming_handler::Guest;
use locker_sdk::wasip2::http::types::{IncomingRequest, ResponseOutparam};
use locker_sdk::{Request, respond};
use std::sync::atomic::{AtomicU32, Ordering};

struct Unruly;

static SERVED: AtomicU32 = AtomicU32::new(0);

impl Guest for Unruly {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let request = Request::new(request);
        match request.path.as_str() {
            "/loop" => spin_forever(),
            "/grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really used.
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/panic" => panic!("unruly panics on purpose"),
            "/recurse" => {
                std::hint::black_box(recurse(0));
            }
            "/shout" => {
                let line = "unruly shouts into its log, again and again and again\n".repeat(64);
                let mut printed = 0;
                while printed < 8 << 20 {
                    print!("{line}");
                    printed += line.len();
                }
                respond(out, 200, format!("printed {printed} bytes\n"));
            }
            "/sleep" => {
                let ms = request
                    .query_param("ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(1000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                respond(out, 200, format!("slept {ms} ms\n"));
            }
            "/count" => respond(out, 200, served.to_string()),
            _ => respond(out, 200, "unruly, but fine here\n"),
        }
    }
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

locker_sdk::wasip2::http::proxy::export!(Unruly with_types_in locker_sdk::wasip2);
