//! The owner's dashboard on `/`: plain HTML, CSS and JavaScript embedded in
//! the binary from `host/dashboard/` (no build step, no CDN), which drives
//! the admin API with the owner's session.
//!
//! ```text
//! GET /                          the dashboard (owner only; else the login page)
//! GET /_locker/assets/{file}     its files (and the login page's script)
//! ```
//!
//! Its pages run only scripts of this origin, talk only to this origin,
//! and may not be framed: a service's page cannot load it, frame it or
//! script it.

use http::{Request, Response, StatusCode};
use include_dir::{Dir, include_dir};

use super::body::{BoxBody, error_response, full};

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/dashboard");

/// Where the dashboard's files are served.
pub const ASSETS_PREFIX: &str = "/_locker/assets/";

/// What the dashboard's pages may load, and who may frame them: nobody.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The dashboard's page (the caller has checked the owner's session).
pub fn index() -> Response<BoxBody> {
    asset_response("index.html").expect("the dashboard has its index.html")
}

/// `GET /_locker/assets/{file}`: public, as they hold nothing of the owner's.
pub fn asset<B>(request: &Request<B>) -> Response<BoxBody> {
    let name = request
        .uri()
        .path()
        .strip_prefix(ASSETS_PREFIX)
        .unwrap_or_default();
    // Only files at the top of the folder, by name: no path to climb.
    if name.contains('/') || name.starts_with('.') || name == "index.html" {
        return error_response(StatusCode::NOT_FOUND, "no such file of the dashboard");
    }
    asset_response(name)
        .unwrap_or_else(|| error_response(StatusCode::NOT_FOUND, "no such file of the dashboard"))
}

fn asset_response(name: &str) -> Option<Response<BoxBody>> {
    let file = ASSETS.get_file(name)?;
    let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    Some(
        Response::builder()
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CACHE_CONTROL, "no-cache")
            .header("content-security-policy", POLICY)
            .header("x-frame-options", "DENY")
            .header("x-content-type-options", "nosniff")
            .header("referrer-policy", "same-origin")
            .header("cross-origin-opener-policy", "same-origin")
            .header("cross-origin-resource-policy", "same-origin")
            .body(full(file.contents()))
            .expect("a valid response"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dashboards_own_files_are_served() {
        let get = |path: &str| asset(&Request::get(path).body(()).unwrap()).status();
        assert_eq!(get("/_locker/assets/dashboard.js"), StatusCode::OK);
        assert_eq!(get("/_locker/assets/dashboard.css"), StatusCode::OK);
        for bad in [
            "/_locker/assets/../Cargo.toml",
            "/_locker/assets/..%2fCargo.toml",
            "/_locker/assets/nope.js",
            "/_locker/assets/",
        ] {
            assert_eq!(get(bad), StatusCode::NOT_FOUND, "{bad}");
        }
        let page = index();
        assert_eq!(
            page.headers()["content-security-policy"],
            POLICY,
            "the page runs only this origin's scripts and is never framed"
        );
    }
}
