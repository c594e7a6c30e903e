//! Outbound HTTP from a guest, in two checks.
//!
//! 1. **By name**: the destination must be one the manifest's
//!    `network.allow_hosts` names: a host (`api.example.com`, optionally
//!    with `:port`), an IP address, or a network in CIDR form
//!    (`10.0.0.0/8`).
//! 2. **By address**, after resolving the name: loopback, private (RFC 1918,
//!    `fc00::/7`), link-local (`169.254.0.0/16`, the cloud metadata service;
//!    `fe80::/10`) and unspecified addresses are refused unless the manifest
//!    names that address or a network holding it itself (a name that merely
//!    resolves there is not enough), and the locker's own listener is
//!    refused always.
//!
//! The host connects to the very address it checked (no second lookup a
//! rebinding DNS server could answer differently), then speaks TLS to the
//! name for `https`. A refusal is `destination-IP-prohibited` in the guest
//! and a log line naming the address.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use ipnet::IpNet;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Where the locker itself listens, once it does: no guest may reach it.
#[derive(Clone, Default)]
pub struct OwnListener(Arc<OnceLock<SocketAddr>>);

impl OwnListener {
    pub fn set(&self, address: SocketAddr) {
        let _ = self.0.set(address);
    }

    fn is(&self, target: SocketAddr) -> bool {
        let Some(own) = self.0.get() else {
            return false;
        };
        own.port() == target.port()
            && (own.ip().is_unspecified() || own.ip() == target.ip() || target.ip().is_loopback())
    }
}

/// One `allow_hosts` entry.
#[derive(Debug, Clone, PartialEq)]
enum Allowed {
    Name { host: String, port: Option<u16> },
    Network { net: IpNet, port: Option<u16> },
}

impl Allowed {
    fn parse(entry: &str) -> Allowed {
        if let Ok(net) = entry.parse::<IpNet>() {
            return Allowed::Network { net, port: None };
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Allowed::Network {
                net: IpNet::from(ip),
                port: None,
            };
        }
        if let Ok(address) = entry.parse::<SocketAddr>() {
            return Allowed::Network {
                net: IpNet::from(address.ip()),
                port: Some(address.port()),
            };
        }
        let (host, port) = split_port(entry);
        Allowed::Name {
            host: host.to_ascii_lowercase(),
            port,
        }
    }
}

/// What a service may reach, from its manifest.
pub struct OutboundRules {
    allowed: Vec<Allowed>,
    own: OwnListener,
}

impl OutboundRules {
    pub fn new(allow_hosts: &[String], own: OwnListener) -> OutboundRules {
        OutboundRules {
            allowed: allow_hosts.iter().map(|e| Allowed::parse(e)).collect(),
            own,
        }
    }

    /// Check 1: the manifest names `host` (on `port`).
    fn names(&self, host: &str, port: u16) -> bool {
        let ip = host.parse::<IpAddr>().ok();
        self.allowed.iter().any(|allowed| match allowed {
            Allowed::Name {
                host: name,
                port: p,
            } => name.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port),
            Allowed::Network { net, port: p } => {
                ip.is_some_and(|ip| net.contains(&ip)) && p.is_none_or(|p| p == port)
            }
        })
    }

    /// Check 2: `address` may be connected to.
    fn permits(&self, address: SocketAddr) -> bool {
        if self.own.is(address) {
            return false;
        }
        let ip = canonical(address.ip());
        !is_internal(ip)
            || self
                .allowed
                .iter()
                .any(|allowed| matches!(allowed, Allowed::Network { net, .. } if net.contains(&ip)))
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, link-local, unspecified ("this network", `0.0.0.0/8`,
/// which Linux takes for this machine), broadcast or multicast: inside the
/// machine or its network, not the internet.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.octets()[0] == 0
                || v4.is_broadcast()
                || v4.is_multicast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.is_multicast()
        }
    }
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

/// The `wasi:http` hooks of one instance.
pub struct OutboundPolicy {
    pub rules: Arc<OutboundRules>,
}

type SendResult = Result<(http::Response<WasiBody>, Worker), Error>;
type Worker = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    /// The default check, without the `Arc` filter the default builds on
    /// every call (one allocation per header a guest sets or receives).
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Worker,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        Box::new(send(self.rules.clone(), request, options))
    }
}

async fn send(
    rules: Arc<OutboundRules>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let uri = request.uri();
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if !rules.names(&host, port) {
        tracing::info!(%host, port, "refused an outbound request the manifest does not allow");
        return Err(Error::HttpRequestDenied);
    }
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(Duration::from_secs(30));
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));

    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(
            connect_timeout,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| Error::DnsTimeout)?
        .map_err(|e| Error::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?
        .collect(),
    };
    let (permitted, refused): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|address| rules.permits(*address));
    if permitted.is_empty() {
        let refused: Vec<String> = refused.iter().map(ToString::to_string).collect();
        tracing::warn!(
            %host,
            addresses = %refused.join(", "),
            "refused an outbound request to an internal address the manifest does not name"
        );
        return Err(Error::DestinationIpProhibited);
    }
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&permitted[..]))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(e),
        })?;

    // The request line carries only the path (not the scheme and host).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

    let (response, connection) = if tls {
        let name = rustls::pki_types::ServerName::try_from(host)?;
        let stream = tls_connector()
            .connect(name, stream)
            .await
            .map_err(Error::Tls)?;
        exchange(stream, request, connect_timeout, first_byte_timeout).await?
    } else {
        exchange(stream, request, connect_timeout, first_byte_timeout).await?
    };
    Ok((response, connection))
}

/// Sends `request` over `stream` (HTTP/1.1); the worker drives the
/// connection until the response body is read.
async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> SendResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let connection = tokio::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let worker: Worker = Box::new(async move {
        match connection.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Error::from(error)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        worker,
    ))
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str]) -> OutboundRules {
        let own = OwnListener::default();
        own.set("127.0.0.1:8042".parse().unwrap());
        OutboundRules::new(
            &allow.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            own,
        )
    }

    #[test]
    fn only_listed_hosts_are_named_with_or_without_a_port() {
        let rules = rules(&[
            "api.example.com",
            "localhost:9000",
            "10.1.0.0/16",
            "[::1]:7",
        ]);
        assert!(rules.names("api.example.com", 443));
        assert!(rules.names("API.example.com", 80));
        assert!(rules.names("localhost", 9000));
        assert!(!rules.names("localhost", 9001));
        assert!(!rules.names("example.com", 443));
        assert!(!rules.names("api.example.com.evil.net", 443));
        assert!(rules.names("10.1.2.3", 80));
        assert!(!rules.names("10.2.0.1", 80));
        assert!(rules.names("::1", 7));
        assert!(!rules.names("::1", 8));
    }

    #[test]
    fn internal_addresses_need_the_manifest_to_name_them() {
        let by_name = rules(&["localhost", "metadata.example"]);
        for internal in [
            "127.0.0.1:9000",
            "10.0.0.5:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "0.0.0.0:80",
            "0.1.2.3:80",
            "255.255.255.255:80",
            "224.0.0.1:80",
            "[::1]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
        ] {
            assert!(!by_name.permits(internal.parse().unwrap()), "{internal}");
        }
        assert!(by_name.permits("93.184.216.34:443".parse().unwrap()));
        assert!(by_name.permits("[2606:2800:220:1::1]:443".parse().unwrap()));

        let by_address = rules(&["127.0.0.1", "192.168.0.0/16"]);
        assert!(by_address.permits("127.0.0.1:9000".parse().unwrap()));
        assert!(by_address.permits("192.168.7.7:80".parse().unwrap()));
        assert!(!by_address.permits("127.0.0.2:9000".parse().unwrap()));
        // Never the locker's own listener.
        assert!(!by_address.permits("127.0.0.1:8042".parse().unwrap()));
        assert!(!rules(&["127.0.0.0/8"]).permits("127.0.0.5:8042".parse().unwrap()));
    }
}
