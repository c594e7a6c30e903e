//! Outbound HTTP from a guest: refused unless its manifest's
//! `network.allow_hosts` names the destination host.

use std::sync::Arc;

use wasmtime_wasi_http::WasiHttpHooks;

/// Outbound HTTP is refused unless the manifest names the destination host.
pub struct OutboundPolicy {
    pub allow_hosts: Arc<Vec<String>>,
}

impl OutboundPolicy {
    fn allows(&self, authority: &str) -> bool {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        self.allow_hosts.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(authority) || allowed.eq_ignore_ascii_case(host)
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    /// The default check, without the `Arc` filter the default builds on
    /// every call (one allocation per header a guest sets or receives).
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if !self.allows(&authority) {
            tracing::info!(%authority, "refused an outbound request the manifest does not allow");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default: &mut dyn WasiHttpHooks = wasmtime_wasi_http::default_hooks();
        default.send_request(request, options, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_are_allowed_with_or_without_a_port() {
        let policy = OutboundPolicy {
            allow_hosts: Arc::new(vec!["api.example.com".into(), "localhost:9000".into()]),
        };
        assert!(policy.allows("api.example.com"));
        assert!(policy.allows("API.example.com:443"));
        assert!(policy.allows("localhost:9000"));
        assert!(!policy.allows("localhost:9001"));
        assert!(!policy.allows("example.com"));
        assert!(!policy.allows("api.example.com.evil.net"));
    }
}
