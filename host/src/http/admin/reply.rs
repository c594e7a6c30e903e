//! What every admin route answers with: JSON, or `{"error": "..."}` with a
//! status that says whose fault it is; and the small readers they share.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::body::{BoxBody, json_response};
use crate::store::CatalogError;

pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// Maps catalog errors to their statuses; anything else gets `fallback`.
    pub fn from_anyhow(error: anyhow::Error, fallback: StatusCode) -> Self {
        let status = match error.downcast_ref::<CatalogError>() {
            Some(CatalogError::AlreadyInstalled { .. }) => StatusCode::CONFLICT,
            Some(CatalogError::NotInstalled(_)) => StatusCode::NOT_FOUND,
            None => fallback,
        };
        ApiError::new(status, format!("{error:#}"))
    }
}

pub type ApiResult = Result<Response<BoxBody>, ApiError>;

/// A small JSON body (`None` if empty), or a 400 naming `what` was wrong.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
    what: &str,
) -> Result<Option<T>, ApiError> {
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("bad {what}: {e}"))
    };
    let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
        request.into_body(),
        64 * 1024,
    ))
    .await
    .map_err(|e| bad(&e))?
    .to_bytes();
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| bad(&e))
}

/// A body of at most `limit` bytes, or a 413.
pub async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Vec<u8>, ApiError> {
    http_body_util::BodyExt::collect(http_body_util::Limited::new(request.into_body(), limit))
        .await
        .map(|body| body.to_bytes().to_vec())
        .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body: {e}")))
}

pub fn internal(error: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
}

/// The query string's parameters, percent-decoded (a browser's
/// `encodeURIComponent` sends `contact/*` as `contact%2F*`).
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn of<B>(request: &Request<B>) -> Query {
        let query = request.uri().query().unwrap_or_default();
        Query(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `topic` parameter, checked as a topic pattern.
    pub fn pattern(&self) -> Result<Option<String>, ApiError> {
        let Some(pattern) = self.get("topic") else {
            return Ok(None);
        };
        crate::package::topics::validate_pattern(pattern)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
        Ok(Some(pattern.to_string()))
    }
}

pub fn ok(value: &impl serde::Serialize) -> ApiResult {
    Ok(json_response(StatusCode::OK, value))
}

/// A request's method and its path under the admin prefix, without a
/// trailing slash: what each dispatcher matches on (split into segments).
pub fn route_of<B>(request: &Request<B>) -> (http::Method, String) {
    let path = request.uri().path()[crate::api::ADMIN_PREFIX.len()..]
        .trim_end_matches('/')
        .to_string();
    (request.method().clone(), path)
}
