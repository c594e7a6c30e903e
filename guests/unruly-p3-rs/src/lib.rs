//! A WASI 0.3 service built with the Spin SDK, for testing how the host
//! runs 0.3 components:
//!
//! - `/echo`: streams the request body back as it arrives (trailers too);
//! - `/trailers`: reads the whole request, answers its trailers as text;
//! - `/fetch?url=U`: an outbound GET, answered with its status or error;
//! - `/headers`: the request's URI and headers, one per line;
//! - `/instance?ms=N`: waits N ms (asynchronously: the instance may take
//!   other requests meanwhile), then names this instance and how many
//!   requests it has taken;
//! - `/loop`: spins forever; `/grow`: allocates until it runs out;
//!   `/panic`: panics (a trap);
//! - anything else: answers normally.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use spin_sdk::http::{BoxBody, EmptyBody, FullBody, IntoResponse, Request, Response, box_body};
use spin_sdk::http_service;

static TAKEN: AtomicU32 = AtomicU32::new(0);

/// A random name for this instance, made on its first request.
fn instance_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    })
}

fn text(body: String) -> Response<BoxBody> {
    Response::new(box_body(FullBody::new(bytes::Bytes::from(body))))
}

fn query<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let taken = TAKEN.fetch_add(1, Ordering::Relaxed) + 1;
    let path = request.uri().path().to_owned();
    Ok(match path.as_str() {
        "/echo" => Response::new(box_body(request.into_body())),
        "/trailers" => {
            let mut body = request.into_body();
            let mut seen = String::new();
            let mut bytes = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                if let Some(data) = frame.data_ref() {
                    bytes += data.len();
                }
                if let Some(trailers) = frame.trailers_ref() {
                    for (name, value) in trailers {
                        seen.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                    }
                }
            }
            text(format!("{bytes} bytes\n{seen}"))
        }
        "/fetch" => {
            let url = query(&request, "url").unwrap_or_default().to_owned();
            let outbound = Request::get(url.as_str()).body(EmptyBody::new())?;
            text(match spin_sdk::http::send(outbound).await {
                Ok(response) => format!("status {}\n", response.status().as_u16()),
                Err(error) => format!("error: {error:?}\n"),
            })
        }
        "/headers" => {
            let mut seen = format!("uri: {}\n", request.uri());
            for (name, value) in request.headers() {
                seen.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
            }
            text(seen)
        }
        "/instance" => {
            let ms = query(&request, "ms")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            spin_sdk::time::sleep(Duration::from_millis(ms)).await;
            text(format!("{:016x} {taken}\n", instance_id()))
        }
        "/loop" => {
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "/grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "/panic" => panic!("unruly-p3 panics on purpose"),
        _ => text("unruly-p3, but fine here\n".into()),
    })
}
