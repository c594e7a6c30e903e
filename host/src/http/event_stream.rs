//! The live event stream of the admin API, as Server-Sent Events: each
//! published event is one `data:` message holding its JSON.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::broadcast::error::RecvError;

use super::body::BoxBody;
use crate::bus::Bus;

pub fn response(bus: &Bus, pattern: Option<String>) -> Response<BoxBody> {
    let receiver = bus.live();
    // A comment first, so a client knows at once that it is connected.
    let hello = futures::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": connected\n\n")))
    });
    let events =
        futures::stream::unfold((receiver, pattern), |(mut receiver, pattern)| async move {
            loop {
                let text = match receiver.recv().await {
                    Ok(event) => {
                        if pattern
                            .as_deref()
                            .is_some_and(|p| !crate::package::topics::matches(p, &event.topic))
                        {
                            continue;
                        }
                        format!(
                            "id: {}\ndata: {}\n\n",
                            event.id,
                            serde_json::to_string(&event).unwrap_or_default()
                        )
                    }
                    // A slow reader skips what it missed; `locker events` has the history.
                    Err(RecvError::Lagged(missed)) => format!(": skipped {missed} events\n\n"),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(Frame::data(Bytes::from(text))), (receiver, pattern)));
            }
        });
    let body = StreamBody::new(futures::StreamExt::chain(hello, events));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(body.map_err(|never| match never {}).boxed_unsync())
        .expect("a valid response")
}
