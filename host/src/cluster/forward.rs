//! Requests carried from the host that received them to the host that
//! owns the service, over NATS request-reply on `locker.host.<id>.http`.
//!
//! The receiving host's gate has already decided who is calling (and set
//! `x-locker-caller`), so the owner serves what arrives as it is: the
//! NATS account is as trusted as the hosts themselves. Request and
//! response travel whole (postcard), so each is limited by the server's
//! `max_payload`; a larger one is refused with a message that says so.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::WasiBody;

/// The subject a host answers forwarded requests on.
pub fn subject(host: &str) -> String {
    format!("locker.host.{host}.http")
}

type Headers = Vec<(String, Vec<u8>)>;

#[derive(Serialize, Deserialize)]
pub struct Forwarded {
    pub service: String,
    method: String,
    uri: String,
    headers: Headers,
    body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub enum Answer {
    Served {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    },
    /// The host does not hold the service's lease (any more).
    NotHere,
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the request is larger than the {limit} bytes one message between hosts may carry")]
    TooLarge { limit: usize },
    #[error("the request's body broke off: {0}")]
    Body(String),
    #[error("{service} is served by host {host}, which did not answer within {waited:?}")]
    OwnerGone {
        service: String,
        host: String,
        waited: Duration,
    },
    #[error("cannot reach the cluster: {0:#}")]
    Cluster(anyhow::Error),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::Body(_) => StatusCode::BAD_REQUEST,
            ForwardError::OwnerGone { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Cluster(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

fn headers_of(map: &http::HeaderMap) -> Headers {
    map.iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

fn fill(map: &mut http::HeaderMap, headers: Headers) -> Result<()> {
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_bytes(&value)?,
        );
    }
    Ok(())
}

impl Forwarded {
    /// Reads the whole request, up to `limit` bytes of body.
    pub async fn read(
        service: &str,
        request: Request<WasiBody>,
        limit: usize,
    ) -> Result<Forwarded, ForwardError> {
        let (parts, body) = request.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    ForwardError::TooLarge { limit }
                } else {
                    ForwardError::Body(error.to_string())
                }
            })?
            .to_bytes();
        Ok(Forwarded {
            service: service.to_string(),
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: headers_of(&parts.headers),
            body: body.to_vec(),
        })
    }

    /// The request again, with its body whole.
    pub fn request(&self) -> Result<Request<WasiBody>> {
        let mut request = Request::builder()
            .method(self.method.as_str())
            .uri(self.uri.as_str())
            .body(full(Bytes::copy_from_slice(&self.body)))?;
        fill(request.headers_mut(), self.headers.clone())?;
        Ok(request)
    }
}

pub fn full(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl Answer {
    pub fn served(response: Response<Bytes>) -> Answer {
        let (parts, body) = response.into_parts();
        Answer::Served {
            status: parts.status.as_u16(),
            headers: headers_of(&parts.headers),
            body: body.to_vec(),
        }
    }

    /// The response it carries; `None` for `NotHere`.
    pub fn response(self) -> Result<Option<Response<Bytes>>> {
        let Answer::Served {
            status,
            headers,
            body,
        } = self
        else {
            return Ok(None);
        };
        let mut response = Response::builder().status(status).body(Bytes::from(body))?;
        fill(response.headers_mut(), headers)?;
        Ok(Some(response))
    }
}
