//! One browser origin per service. The locker's own origin (`--domain`,
//! `locker.localhost` by default) holds the dashboard, the login and the
//! admin API; each service lives on `<service>.<domain>`. A request is
//! routed by its `Host` (or HTTP/2 `:authority`); loopback names are
//! aliases of the locker's origin, and any other host is refused, which
//! keeps DNS rebinding out.

use anyhow::{Result, bail};
use http::Request;

use crate::package::manifest::validate_service_name;

/// Where a request's host sends it.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// The locker's own origin.
    Locker,
    /// A service's origin; the name is not checked against the catalog.
    Service(&'a str),
    /// A host this locker does not answer for.
    Foreign,
}

#[derive(Debug, Clone)]
pub struct Origins {
    domain: String,
    /// Served over TLS: `https` origins and `__Host-` cookies.
    pub secure: bool,
}

impl Origins {
    pub fn new(domain: &str, secure: bool) -> Result<Origins> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if domain.is_empty() || domain.len() > 200 || !domain.split('.').all(label_ok) {
            bail!("--domain {domain:?} is not a host name");
        }
        Ok(Origins { domain, secure })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }

    /// Where a request for `authority` (`host[:port]`) goes.
    pub fn destination<'a>(&self, authority: &'a str) -> Destination<'a> {
        // A port that is not a number (`locker.localhost:@evil.example`)
        // would end up in the redirects built from it.
        if !port_is_numeric(authority) {
            return Destination::Foreign;
        }
        let host = host_of(authority);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.eq_ignore_ascii_case(&self.domain) || is_loopback_name(host) {
            return Destination::Locker;
        }
        let Some((label, parent)) = host.split_once('.') else {
            return Destination::Foreign;
        };
        // Service names are lowercase; a browser lowercases the host too.
        if parent.eq_ignore_ascii_case(&self.domain) && validate_service_name(label).is_ok() {
            Destination::Service(label)
        } else {
            Destination::Foreign
        }
    }

    /// The locker's origin as a browser that sent `authority` sees it.
    pub fn locker_origin(&self, authority: &str) -> String {
        format!(
            "{}://{}{}",
            self.scheme(),
            self.domain,
            port_suffix(authority)
        )
    }

    /// A service's origin, on the port `authority` came in on.
    pub fn service_origin(&self, service: &str, authority: &str) -> String {
        format!(
            "{}://{service}.{}{}",
            self.scheme(),
            self.domain,
            port_suffix(authority)
        )
    }

    /// Whether a browser request came from the very origin it is sent to:
    /// its `Origin` names `authority`, or, with no `Origin`, its
    /// `Sec-Fetch-Site` is `same-origin` or `none` (typed by the user). A
    /// request with neither did not come from a page's script.
    pub fn same_origin<B>(&self, request: &Request<B>, authority: &str) -> bool {
        let headers = request.headers();
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            return origin
                .strip_prefix(self.scheme())
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|host| host.eq_ignore_ascii_case(authority));
        }
        match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            Some(b"same-origin" | b"none") | None => true,
            Some(_) => false,
        }
    }
}

/// The request's `host[:port]`: the URI's authority (HTTP/2, or an
/// absolute-form request), else the `Host` header.
pub fn host_header<B>(request: &Request<B>) -> Option<http::HeaderValue> {
    if let Some(authority) = request.uri().authority() {
        return http::HeaderValue::from_str(authority.as_str()).ok();
    }
    request.headers().get(http::header::HOST).cloned()
}

/// `host` of `host[:port]` (IPv6 literals keep their brackets).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// `:port` of `host[:port]`, or nothing.
fn port_suffix(authority: &str) -> &str {
    let host = host_of(authority);
    &authority[host.len()..]
}

/// Whether what follows the host is nothing, or `:` and a port number.
fn port_is_numeric(authority: &str) -> bool {
    match port_suffix(authority).strip_prefix(':') {
        None => port_suffix(authority).is_empty(),
        Some(port) => {
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_route_to_the_locker_a_service_or_nowhere() {
        let origins = Origins::new("Locker.localhost.", false).unwrap();
        for locker in [
            "locker.localhost",
            "LOCKER.localhost:8042",
            "127.0.0.1:8042",
            "[::1]:8042",
            "localhost:1",
            "locker.localhost.:80",
        ] {
            assert_eq!(origins.destination(locker), Destination::Locker, "{locker}");
        }
        assert_eq!(
            origins.destination("notes.locker.localhost:8042"),
            Destination::Service("notes")
        );
        for foreign in [
            "evil.example",
            "evil.example:8042",
            "a.notes.locker.localhost",
            "_x.locker.localhost",
            "locker.localhost.evil.example",
            "10.0.0.1:8042",
            "locker.localhost:@evil.example",
            "notes.locker.localhost:80@evil.example",
            "locker.localhost:",
            "[::1]x",
            "",
        ] {
            assert_eq!(
                origins.destination(foreign),
                Destination::Foreign,
                "{foreign}"
            );
        }
        assert_eq!(
            origins.service_origin("notes", "127.0.0.1:8042"),
            "http://notes.locker.localhost:8042"
        );
        assert_eq!(
            origins.locker_origin("[::1]:9"),
            "http://locker.localhost:9"
        );
        assert_eq!(
            origins.locker_origin("locker.localhost"),
            "http://locker.localhost"
        );
        assert!(Origins::new("bad domain", false).is_err());
    }

    #[test]
    fn same_origin_reads_origin_then_sec_fetch_site() {
        let origins = Origins::new("locker.localhost", false).unwrap();
        let with =
            |name: &str, value: &str| Request::builder().header(name, value).body(()).unwrap();
        let here = "notes.locker.localhost:8042";
        assert!(origins.same_origin(&with("origin", "http://notes.locker.localhost:8042"), here));
        assert!(!origins.same_origin(&with("origin", "http://photos.locker.localhost:8042"), here));
        assert!(!origins.same_origin(&with("origin", "https://notes.locker.localhost:8042"), here));
        assert!(!origins.same_origin(&with("origin", "null"), here));
        assert!(!origins.same_origin(&with("sec-fetch-site", "same-site"), here));
        assert!(origins.same_origin(&with("sec-fetch-site", "same-origin"), here));
        assert!(origins.same_origin(&Request::new(()), here));
    }
}
