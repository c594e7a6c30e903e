//! Requests to other services of the same locker. A service reaches
//! `http://NAME.locker/PATH` when its manifest's `calls` names NAME (or a
//! type NAME provides, `type:contact/*`); the host refuses any other.

/// `GET path` of the service `service`: its status and body, or why it
/// could not be asked (an undeclared call, a service that failed).
pub fn call(service: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    call_with(service, path, &[])
}

/// `call`, with these request headers.
pub fn call_with(
    service: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    crate::fetch_with(&format!("http://{service}.locker{path}"), headers)
}
