//! Response bodies and the small responses every part of the front door
//! builds.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(
            serde_json::to_vec_pretty(value).expect("serializable"),
        ))
        .expect("a valid response")
}

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response<BoxBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("a valid error response")
}

/// How much of a refused request's body is read before answering, and for
/// how long.
const DISCARD_LIMIT: usize = 1024 * 1024;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Answers a refused request after reading (and dropping) a bounded part
/// of its body, so a client still sending it gets the answer, not a reset.
pub async fn after_discarding(
    request: http::Request<hyper::body::Incoming>,
    response: Response<BoxBody>,
) -> Response<BoxBody> {
    let body = http_body_util::Limited::new(request.into_body(), DISCARD_LIMIT);
    let _ = tokio::time::timeout(DISCARD_TIME, body.collect()).await;
    response
}
