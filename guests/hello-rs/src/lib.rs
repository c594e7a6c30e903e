//! A Locker app in Rust: greets on every path, streams `POST /echo` bodies
//! back chunk by chunk as they arrive, and shows the headers it was given
//! on `GET /headers`.

use locker_sdk::wasip2::exports::http::incoming_handler::Guest;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, ResponseWriter, respond};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        match (&request.method, request.path.as_str()) {
            (Method::Post, "/echo") => {
                let mut writer = ResponseWriter::start(out, 200, "application/octet-stream");
                request.for_each_body_chunk(|chunk| writer.write(chunk));
                writer.finish();
            }
            (Method::Get, "/headers") => {
                let lines: String = request
                    .headers()
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}\n"))
                    .collect();
                respond(out, 200, lines);
            }
            _ => {
                // The host says who is calling: `owner`, or `anonymous` on a public route.
                let caller = request.header("x-locker-caller").unwrap_or_default();
                respond(
                    out,
                    200,
                    format!("hello from rust at {}, to {caller}\n", request.path),
                );
            }
        }
    }
}

locker_sdk::wasip2::http::proxy::export!(Hello with_types_in locker_sdk::wasip2);
