//! Response bodies and the small responses every part of the front door
//! builds.

use std::pin::Pin;
use std::task::{Context, Poll};

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

/// A body that holds `guard` until it is done or dropped: a request counts
/// in flight while its response streams.
pub struct Guarded<B, G> {
    body: B,
    _guard: G,
}

impl<B, G> Guarded<B, G> {
    pub fn new(body: B, guard: G) -> Guarded<B, G> {
        Guarded {
            body,
            _guard: guard,
        }
    }
}

impl<B: hyper::body::Body + Unpin, G: Unpin> hyper::body::Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A body that ends with an error once `deadline` passes: a service's whole
/// answer, its body included, is bounded by its deadline.
pub struct Deadlined<B> {
    body: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Deadlined<B> {
    pub fn new(body: B, deadline: tokio::time::Instant) -> Deadlined<B> {
        Deadlined {
            body,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl<B> hyper::body::Body for Deadlined<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(
                "the service's deadline passed while its body streamed".into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
