//! How a host reaches the NATS servers. Whoever may publish on them can
//! reach every service of the locker, so a real cluster has them ask for
//! a login and speak TLS:
//! - a user and password (`nats://user:password@host:4222`) or a token
//!   (`nats://token@host:4222`) in the URLs, which `LOCKER_CLUSTER` can
//!   carry instead of the command line; they are never logged or shown;
//! - or a credentials file (`--cluster-credentials`, a user's JWT and
//!   nkey seed as `nsc` writes them);
//! - `tls://` URLs, or `--cluster-ca` to trust a private certificate
//!   authority (TLS is then required).
//!
//! A login or a certificate the servers refuse is said at once, not tried
//! again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};

/// What a host needs to reach the servers.
#[derive(Debug, Clone, Default)]
pub struct NatsAccess {
    pub urls: Vec<String>,
    pub credentials: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// A URL without the login it may carry.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl NatsAccess {
    /// The URLs as they may be shown.
    pub fn shown(&self) -> String {
        self.urls
            .iter()
            .map(|url| redacted(url))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Connects as `name`. The outer error may pass (a server not up
    /// yet); the inner one will not (a refused login or certificate).
    pub async fn connect(&self, name: &str) -> Result<Result<async_nats::Client>> {
        let servers = self
            .urls
            .iter()
            .map(|url| url.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow!("--cluster takes NATS URLs such as nats://127.0.0.1:4222"));
        let servers = match servers {
            Ok(servers) => servers,
            Err(error) => return Ok(Err(error)),
        };
        let mut options = ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5));
        // The client takes no login from the URLs itself.
        if let Some(server) = servers.iter().find(|server| server.username().is_some()) {
            let user = server.username().unwrap_or_default().to_string();
            options = match server.password() {
                Some(password) => options.user_and_password(user, password.to_string()),
                None => options.token(user),
            };
        }
        if let Some(path) = &self.credentials {
            options = match options.credentials_file(path).await {
                Ok(options) => options,
                Err(error) => {
                    return Ok(Err(error).with_context(|| {
                        format!("cannot read the NATS credentials {}", path.display())
                    }));
                }
            };
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match options.connect(servers).await {
            Ok(client) => Ok(Ok(client)),
            Err(error) => {
                let what = format!("cannot connect to NATS at {}", self.shown());
                let refused = match error.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        Some(LOGIN_REFUSED)
                    }
                    ConnectErrorKind::Tls => Some(TLS_FAILED),
                    _ if refused_by_tls(&error) => Some(TLS_FAILED),
                    _ => None,
                };
                match refused {
                    Some(why) => Ok(Err(anyhow!("{what}: {why}: {error}"))),
                    None => Err(anyhow!(error).context(what)),
                }
            }
        }
    }
}

const LOGIN_REFUSED: &str = "the servers refused this host's login (the user and password \
                             or token in the URLs, or --cluster-credentials)";
const TLS_FAILED: &str = "TLS failed (a server's certificate this host does not trust: \
                          --cluster-ca names the authority to trust)";

/// Whether TLS refused the server (its certificate): the client reports
/// that as an I/O error, with rustls's own inside.
fn refused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        let rustls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()?
                .get_ref()?
                .downcast_ref::<rustls::Error>()
        });
        if rustls.is_some() {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_in_a_url_is_never_shown() {
        assert_eq!(
            redacted("nats://locker:hunter2@n1:4222"),
            "nats://***@n1:4222"
        );
        assert_eq!(redacted("tls://s3cret@n1:4222"), "tls://***@n1:4222");
        assert_eq!(redacted("nats://n1:4222"), "nats://n1:4222");
    }
}
