//! Locker's SDK for services written in Rust.
//!
//! A service is a `wasm32-wasip2` component (`crate-type = ["cdylib"]`).
//! What it can do, and where this crate helps:
//!
//! - **HTTP**: export `wasi:http/incoming-handler` with
//!   `locker_sdk::wasip2::http::proxy::export!(MyService with_types_in locker_sdk::wasip2)`;
//!   [`Request`] reads a request, [`respond`], [`respond_with`] and
//!   [`ResponseWriter`] answer.
//! - **Events**: [`events::publish`] (the topic must be in the manifest's
//!   `publishes`), and [`event_handler::Guest`] exported with
//!   `locker_sdk::export_event_handler!(MyService)` to receive the topics
//!   the manifest `subscribes` to. A handler's `Err` is retried, then kept
//!   as a dead letter.
//! - **Jobs**: [`scheduler`] creates and cancels jobs at run time;
//!   [`job_handler::Guest`] with `locker_sdk::export_job_handler!(MyService)`
//!   runs them, and the manifest's `[[schedule]]` ones.
//! - **Settings and secrets**: [`config::get`] reads the manifest's
//!   `[config.KEY]` values the owner set (`locker config set`), through the
//!   standard `wasi:config/store`.
//! - **Other services**: [`call`] makes a request to a service the
//!   manifest's `calls` names; [`discovery::find`] finds services by type.
//! - **Outbound HTTP**: [`fetch`] and [`send`] (any method, with a body)
//!   reach the hosts the manifest's `network.allow_hosts` names.
//! - **Files**: the service's folder is its current directory; use
//!   `std::fs` (and [`append_line`] for logs that never interleave).
//!
//! `locker new NAME --lang rust` starts a service that uses all of these.

use std::io::{Read, Write};

pub mod bindings;
mod calls;
pub mod config;
pub use bindings::event_handling::export_event_handler;
pub use bindings::event_handling::exports::locker::service::event_handler;
pub use bindings::imports::locker::service::{discovery, events, scheduler};
pub use bindings::job_handling::export_job_handler;
pub use bindings::job_handling::exports::locker::service::job_handler;
pub use calls::{call, call_with};

pub use wasip2;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The parts of an incoming request a service usually needs.
pub struct Request {
    pub method: Method,
    /// The path on the service's own origin, e.g. `/notes` for
    /// `http://myservice.locker.localhost:8042/notes?x=1`.
    pub path: String,
    /// The query string without `?`, empty when there is none.
    pub query: String,
    inner: IncomingRequest,
}

impl Request {
    pub fn new(inner: IncomingRequest) -> Self {
        let path_with_query = inner.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (path_with_query, String::new()),
        };
        Request {
            method: inner.method(),
            path,
            query,
            inner,
        }
    }

    /// The first value of a header, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.inner.headers().get(name);
        values
            .first()
            .and_then(|v| String::from_utf8(v.clone()).ok())
    }

    /// Every header, in order, as `(name, value)` (values that are not
    /// UTF-8 are shown lossily).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.inner
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect()
    }

    /// The value of a query parameter (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// Reads the whole request body.
    pub fn body(self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.for_each_body_chunk(|chunk| bytes.extend_from_slice(chunk));
        bytes
    }

    /// Calls `f` with each chunk of the request body as it arrives.
    pub fn for_each_body_chunk(self, mut f: impl FnMut(&[u8])) {
        let body = self.inner.consume().expect("request body already consumed");
        let mut stream = body.stream().expect("request body stream already taken");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match Read::read(&mut stream, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => f(&buf[..n]),
            }
        }
    }
}

/// A response whose body is written while it streams to the client.
pub struct ResponseWriter {
    body: Option<OutgoingBody>,
    stream: Option<wasip2::io::streams::OutputStream>,
}

impl ResponseWriter {
    /// Sends the status line and headers; the body follows with [`Self::write`].
    pub fn start(out: ResponseOutparam, status: u16, content_type: &str) -> Self {
        let headers = [("content-type".to_string(), content_type.as_bytes().to_vec())];
        let (body, stream) = send_head(out, status, &headers);
        ResponseWriter {
            body: Some(body),
            stream: Some(stream),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let stream = self.stream.as_mut().expect("stream open until finish");
        // A client that went away closes the stream: nothing more to do then.
        let _ = stream.write_all(bytes).and_then(|()| stream.flush());
    }

    pub fn finish(mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

/// Sends a response head; returns its body and the body's stream.
fn send_head(
    out: ResponseOutparam,
    status: u16,
    headers: &[(String, Vec<u8>)],
) -> (OutgoingBody, wasip2::io::streams::OutputStream) {
    let headers = Fields::from_list(headers).expect("valid headers");
    let response = OutgoingResponse::new(headers);
    if status != 200 {
        // 200 is what a new response has already.
        response.set_status_code(status).expect("valid status code");
    }
    let body = response.body().expect("response body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("body stream taken once");
    (body, stream)
}

/// Answers with a complete body. Its length is known, so it is sent with a
/// `content-length` header in as few host calls as the API allows.
pub fn respond(out: ResponseOutparam, status: u16, body: impl AsRef<[u8]>) {
    respond_with(out, status, "text/plain; charset=utf-8", body);
}

/// [`respond`], with this content type (`application/json`, `text/html; charset=utf-8`).
pub fn respond_with(
    out: ResponseOutparam,
    status: u16,
    content_type: &str,
    body: impl AsRef<[u8]>,
) {
    let body = body.as_ref();
    let mut headers = vec![("content-type".to_string(), content_type.as_bytes().to_vec())];
    // A 204 or 304 has no body, and HTTP forbids it a length.
    if !matches!(status, 204 | 304) {
        headers.push((
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ));
    }
    let (outgoing, stream) = send_head(out, status, &headers);
    // `blocking-write-and-flush` takes at most 4096 bytes at a time.
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            break; // the client went away
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Appends one line to a file of the service's working directory. The line
/// goes out in one write, so lines that several instances append at once
/// never interleave.
pub fn append_line(file: &str, line: &str) -> Result<(), String> {
    let text = format!("{line}\n");
    if let Some(appended) = append_in_one_call(file, text.as_bytes()) {
        return appended;
    }
    let mut handle = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("cannot open {file}: {e}"))?;
    handle
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to {file}: {e}"))
}

/// The most `blocking-write-and-flush` takes in one call.
const ONE_CALL: usize = 4096;

/// Appends `bytes` with one `blocking-write-and-flush`, which the host does
/// at once; `std`'s write goes through a stream `write` that the host hands
/// to a thread of its own, a thread switch per line. `None` (use `std`)
/// for more than [`ONE_CALL`] bytes, or when the working directory is not
/// the preopen `/`.
fn append_in_one_call(file: &str, bytes: &[u8]) -> Option<Result<(), String>> {
    use wasip2::filesystem::preopens::get_directories;
    use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
    thread_local! {
        static FOLDER: Option<Descriptor> = get_directories()
            .into_iter()
            .find_map(|(folder, path)| (path == "/").then_some(folder));
    }
    if bytes.len() > ONE_CALL || file.starts_with('/') {
        return None;
    }
    FOLDER.with(|folder| {
        let folder = folder.as_ref()?;
        let opened = folder.open_at(
            PathFlags::SYMLINK_FOLLOW,
            file,
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        );
        Some((|| {
            let handle = opened.map_err(|e| format!("cannot open {file}: {e}"))?;
            let stream = handle
                .append_via_stream()
                .map_err(|e| format!("cannot open {file}: {e}"))?;
            stream
                .blocking_write_and_flush(bytes)
                .map_err(|e| format!("cannot write to {file}: {e:?}"))
        })())
    })
}

/// `GET url` through the host's `wasi:http/outgoing-handler`: the status and
/// the whole body, or the error the host answered with (for example
/// `HttpRequestDenied` for a host the manifest does not name, or
/// `DestinationIpProhibited` for an internal address).
pub fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    fetch_with(url, &[])
}

/// `fetch`, with these request headers.
pub fn fetch_with(url: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
    send("GET", url, headers, &[])
}

/// A request of any method (`PROPFIND`, `REPORT`, ...) with a body, through
/// the host's `wasi:http/outgoing-handler`: the status and the whole
/// response body, or the error the host answered with.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{OutgoingRequest, Scheme};

    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("{url} is not an http or https URL"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    if !body.is_empty() {
        // A known length rather than chunks: not every server reads chunked bodies.
        fields
            .set("content-length", &[body.len().to_string().into_bytes()])
            .map_err(|e| format!("content-length: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&method_of(method))
        .map_err(|()| format!("bad method {method:?}"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority:?}"))?;
    let path = if path.is_empty() { "/" } else { path };
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path:?}"))?;
    let outgoing = request.body().map_err(|()| "request body taken")?;
    // Sent first, so that a body larger than the host's buffer streams out
    // while it is written.
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    if !body.is_empty() {
        let stream = outgoing.write().map_err(|()| "request stream taken")?;
        // `blocking-write-and-flush` takes at most 4096 bytes at a time.
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("cannot send the request body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match pending.get() {
            Some(result) => break result,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "response taken twice".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "response body taken")?;
    let stream = body.stream().map_err(|()| "response stream taken")?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

fn method_of(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}
