//! Response bodies that carry a service's bounds: one that keeps its
//! request counted in flight until it is done, one that ends at the
//! service's deadline.

use std::pin::Pin;
use std::task::{Context, Poll};

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
    B: hyper::body::Body<Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = B::Data;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseTimeout)))
            }
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
