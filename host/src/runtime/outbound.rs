//! Outbound HTTP from a guest. A request to `http://NAME.locker/` is a call
//! to another service of the locker, handed to `ServiceCalls` (in process).
//! Any other goes out to the network, in two checks.
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
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use ipnet::IpNet;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::call_context::{CallContext, Upstream};

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
        let (own_ip, target_ip) = (canonical(own.ip()), canonical(target.ip()));
        // `0.0.0.0` and `::` as a destination are this machine too.
        own.port() == target.port()
            && (own_ip.is_unspecified()
                || own_ip == target_ip
                || target_ip.is_loopback()
                || target_ip.is_unspecified())
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

/// Networks inside the machine, its network or its provider's, not the
/// internet: loopback, "this network" (`0.0.0.0/8`, which Linux takes for
/// this machine), private (RFC 1918, `fc00::/7`), carrier-grade NAT
/// (`100.64.0.0/10`: Alibaba's metadata service, Tailscale peers),
/// link-local (`169.254.0.0/16`, the cloud metadata service; `fe80::/10`,
/// and the old site-local `fec0::/10`), IETF protocol assignments
/// (`192.0.0.0/24`), benchmarking (`198.18.0.0/15`), reserved
/// (`240.0.0.0/4`, broadcast), multicast, and NAT64's local-use prefix.
const INTERNAL_NETWORKS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

fn internal_networks() -> &'static [IpNet] {
    static NETWORKS: OnceLock<Vec<IpNet>> = OnceLock::new();
    NETWORKS.get_or_init(|| {
        INTERNAL_NETWORKS
            .iter()
            .map(|net| net.parse().expect("a valid network"))
            .collect()
    })
}

/// Whether `ip` (already canonical) is inside the machine or its network.
/// An IPv6 address that carries an IPv4 one (NAT64's `64:ff9b::/96`, 6to4's
/// `2002::/16`, the old IPv4-compatible `::a.b.c.d`) is internal when that
/// IPv4 address is: a gateway would deliver it there.
fn is_internal(ip: IpAddr) -> bool {
    if internal_networks().iter().any(|net| net.contains(&ip)) {
        return true;
    }
    match ip {
        IpAddr::V6(v6) => embedded_ipv4(v6).is_some_and(|v4| is_internal(IpAddr::V4(v4))),
        IpAddr::V4(_) => false,
    }
}

/// The IPv4 address a NAT64, 6to4 or IPv4-compatible IPv6 address carries.
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let octets = v6.octets();
    let segments = v6.segments();
    let last_four = |o: &[u8; 16]| std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0; 6] {
        return Some(last_four(&octets));
    }
    if segments[0] == 0x2002 {
        return Some(std::net::Ipv4Addr::new(
            octets[2], octets[3], octets[4], octets[5],
        ));
    }
    None
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

/// Where a call to another service of the locker goes (`runtime::calls`,
/// given by the supervisor): in process, never over the network.
pub trait ServiceCalls: Send + Sync {
    /// Sends `request`, made by an instance whose requests came through
    /// `upstream`, to the service its URI names (`http://NAME.locker/`).
    fn call(
        self: Arc<Self>,
        upstream: CallContext,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, Error>> + Send>>;
}

/// The suffix that names a service of this locker: `http://NAME.locker/`.
pub const CALL_DOMAIN: &str = ".locker";

/// The service a request to `http://NAME.locker/` calls, if that is its form.
pub fn callee(uri: &http::Uri) -> Option<&str> {
    let host = uri.host()?;
    let name = host.len().checked_sub(CALL_DOMAIN.len()).and_then(|at| {
        host[at..]
            .eq_ignore_ascii_case(CALL_DOMAIN)
            .then(|| &host[..at])
    })?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

/// The `wasi:http` hooks of one instance.
pub struct OutboundPolicy {
    pub rules: Arc<OutboundRules>,
    pub calls: Arc<dyn ServiceCalls>,
    /// The requests the instance holds, for the calls it makes.
    pub upstream: Upstream,
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
        if callee(request.uri()).is_some() {
            let call = self.calls.clone().call(self.upstream.merged(), request);
            return Box::new(async move {
                let response = call.await?;
                let done: Worker = Box::new(async { Ok(()) });
                Ok((response, done))
            });
        }
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

    #[test]
    fn a_service_of_the_locker_is_named_under_dot_locker() {
        let of = |uri: &str| callee(&uri.parse().unwrap()).map(str::to_string);
        assert_eq!(of("http://contacts.locker/all"), Some("contacts".into()));
        assert_eq!(of("https://Contacts.LOCKER:8080/"), Some("Contacts".into()));
        for other in [
            "http://locker/",
            "http://.locker/",
            "http://a.b.locker/",
            "http://contacts.locker.example/",
            "http://contactslocker/",
        ] {
            assert_eq!(of(other), None, "{other}");
        }
    }

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
            "100.100.100.200:80",
            "192.0.0.8:80",
            "198.18.0.1:80",
            "240.0.0.1:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[64:ff9b::7f00:1]:80",
            "[64:ff9b:1::1]:80",
            "[2002:7f00:1::1]:80",
            "[2002:a9fe:a9fe::]:80",
            "[::127.0.0.1]:80",
            "[::]:80",
            "[fec0::1]:80",
            "[ff02::1]:80",
        ] {
            assert!(!by_name.permits(internal.parse().unwrap()), "{internal}");
        }
        assert!(by_name.permits("93.184.216.34:443".parse().unwrap()));
        assert!(by_name.permits("[2606:2800:220:1::1]:443".parse().unwrap()));
        // Public IPv4 addresses behind NAT64 or 6to4 are public.
        assert!(by_name.permits("[64:ff9b::5db8:d822]:443".parse().unwrap()));
        assert!(by_name.permits("[2002:5db8:d822::1]:443".parse().unwrap()));

        let by_address = rules(&["127.0.0.1", "192.168.0.0/16"]);
        assert!(by_address.permits("127.0.0.1:9000".parse().unwrap()));
        assert!(by_address.permits("192.168.7.7:80".parse().unwrap()));
        assert!(!by_address.permits("127.0.0.2:9000".parse().unwrap()));
        // Never the locker's own listener.
        assert!(!by_address.permits("127.0.0.1:8042".parse().unwrap()));
        assert!(!rules(&["127.0.0.0/8"]).permits("127.0.0.5:8042".parse().unwrap()));
        // However the address is written.
        let loopback_named = rules(&["127.0.0.1", "::ffff:127.0.0.1"]);
        assert!(!loopback_named.permits("[::ffff:127.0.0.1]:8042".parse().unwrap()));
        // `0.0.0.0` and `::` reach this machine, so they are it.
        let unspecified_named = rules(&["0.0.0.0", "::"]);
        assert!(!unspecified_named.permits("0.0.0.0:8042".parse().unwrap()));
        assert!(!unspecified_named.permits("[::]:8042".parse().unwrap()));
        assert!(unspecified_named.permits("0.0.0.0:9000".parse().unwrap()));
        let public = OwnListener::default();
        public.set("203.0.113.9:443".parse().unwrap());
        let rules = OutboundRules::new(&["example.com".to_string()], public);
        assert!(!rules.permits("[::ffff:203.0.113.9]:443".parse().unwrap()));
        assert!(!rules.permits("203.0.113.9:443".parse().unwrap()));
    }
}
