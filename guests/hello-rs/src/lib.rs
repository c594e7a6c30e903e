//! A Locker app in Rust: greets on every path and streams `POST /echo`
//! bodies back chunk by chunk as they arrive.

use locker_guest::wasip2::exports::http::incoming_handler::Guest;
use locker_guest::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_guest::{Request, ResponseWriter, respond};

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
            _ => {
                let prefix = request.header("x-forwarded-prefix").unwrap_or_default();
                respond(
                    out,
                    200,
                    format!("hello from rust at {prefix}{}\n", request.path),
                );
            }
        }
    }
}

locker_guest::wasip2::http::proxy::export!(Hello with_types_in locker_guest::wasip2);
