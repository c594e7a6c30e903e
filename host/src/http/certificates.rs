//! The certificate the front door serves, and where it comes from: the
//! owner's files (`--tls-cert/--tls-key`), or ACME (`--acme-directory`).
//!
//! With ACME the host keeps one certificate naming the locker's domain and
//! every installed service's `<service>.<domain>`, and orders a new one
//! when the set of services changes or the current one nears its end. It
//! answers the ACME server's `tls-alpn-01` challenges on its own port (RFC
//! 8737): a handshake offering only `acme-tls/1` gets the challenge
//! certificate for the name it asks for, and no HTTP. The account, the
//! certificate and its key live in `<root>/tls/` (the key files mode 0600),
//! so a restart serves at once and orders nothing new.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::store::root::write_atomically;

/// The ALPN protocol of `tls-alpn-01` challenges.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A new certificate is ordered this long before the current one ends.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the TLS handshake serves: the current certificate, and the
/// challenge certificates of an ACME order in progress.
#[derive(Debug, Default)]
pub struct Certificates {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Certificates {
    /// Serves `chain` and `key` (PEM) from now on.
    pub fn install(&self, chain: &[u8], key: &[u8]) -> Result<()> {
        let certified = certified_key(chain, key)?;
        *self.current.write().unwrap() = Some(Arc::new(certified));
        Ok(())
    }

    pub fn has_current(&self) -> bool {
        self.current.read().unwrap().is_some()
    }

    /// An acceptor that serves whatever is installed at each handshake.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS is not available")?
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.read().unwrap().get(&name).cloned();
        }
        self.current.read().unwrap().clone()
    }
}

/// A PEM chain and key as rustls serves them; names the mismatch if any.
pub fn certified_key(chain: &[u8], key: &[u8]) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .context("not a PEM certificate chain")?;
    if chain.is_empty() {
        bail!("no certificate in the chain");
    }
    let key = PrivateKeyDer::from_pem_slice(key).context("no PEM private key")?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .context("the key does not go with the certificate (or is of a kind TLS cannot use)")?;
    Ok(certified)
}

/// Where and how to order certificates.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The ACME server's directory URL (Let's Encrypt:
    /// `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// `mailto:` addresses the ACME server may write to.
    pub contact: Vec<String>,
    /// A CA certificate (PEM) to trust for the ACME server's own HTTPS,
    /// for test servers such as pebble.
    pub server_root: Option<PathBuf>,
    /// `<root>/tls`.
    pub dir: PathBuf,
}

/// Keeps a certificate for the locker and every service, ordering a new
/// one whenever `names()` changes or the current one nears its end.
pub async fn keep_certified(
    settings: AcmeSettings,
    certificates: Arc<Certificates>,
    names: impl Fn() -> Vec<String>,
) {
    let mut issued: Option<(Vec<String>, std::time::SystemTime)> =
        match load_issued(&settings.dir, &certificates) {
            Ok(issued) => issued,
            Err(error) => {
                tracing::warn!("cannot use the stored certificate: {error:#}");
                None
            }
        };
    let mut account = None;
    let mut wait = Duration::from_secs(1);
    loop {
        let wanted = names();
        let fresh = issued.as_ref().is_some_and(|(names, ends)| {
            *names == wanted
                && ends
                    .duration_since(std::time::SystemTime::now())
                    .is_ok_and(|left| left > RENEW_BEFORE)
        });
        if !fresh {
            match order(&settings, &certificates, &mut account, &wanted).await {
                Ok(ends) => {
                    tracing::info!(names = %wanted.join(", "), "installed a new certificate");
                    issued = Some((wanted, ends));
                    wait = Duration::from_secs(1);
                }
                Err(error) => {
                    tracing::warn!(
                        "cannot get a certificate for {}: {error:#}; trying again in {wait:?}",
                        wanted.join(", ")
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(3600));
                    continue;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The stored certificate, installed, with the names it was ordered for.
fn load_issued(
    dir: &Path,
    certificates: &Certificates,
) -> Result<Option<(Vec<String>, std::time::SystemTime)>> {
    let (chain, key, names) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("names.json"),
    );
    if !chain.exists() {
        return Ok(None);
    }
    let chain = std::fs::read(&chain)?;
    certificates.install(&chain, &std::fs::read(&key)?)?;
    let names: Vec<String> = serde_json::from_slice(&std::fs::read(&names)?)?;
    Ok(Some((names, not_after(&chain)?)))
}

/// Orders, proves and downloads one certificate for `names`; installs it,
/// stores it, and returns when it ends.
async fn order(
    settings: &AcmeSettings,
    certificates: &Certificates,
    account: &mut Option<Account>,
    names: &[String],
) -> Result<std::time::SystemTime> {
    let account = match account {
        Some(account) => account,
        None => account.insert(open_account(settings).await?),
    };
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .context("the ACME server refused the order")?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        if authorization.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authorization
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or_else(|| anyhow!("the ACME server offers no tls-alpn-01 challenge"))?;
        let name = challenge.identifier().to_string().to_ascii_lowercase();
        let proof = challenge_certificate(&name, challenge.key_authorization().digest().as_ref())?;
        certificates
            .challenges
            .write()
            .unwrap()
            .insert(name, Arc::new(proof));
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&RetryPolicy::default()).await;
    certificates.challenges.write().unwrap().clear();
    let status = status?;
    if status != OrderStatus::Ready {
        bail!("the order ended {status:?}: the ACME server could not check the names");
    }
    let key = order.finalize().await?;
    let chain = order.poll_certificate(&RetryPolicy::default()).await?;
    certificates.install(chain.as_bytes(), key.as_bytes())?;
    std::fs::create_dir_all(&settings.dir)?;
    write_atomically(&settings.dir.join("key.pem"), key.as_bytes(), &settings.dir)?;
    write_atomically(
        &settings.dir.join("cert.pem"),
        chain.as_bytes(),
        &settings.dir,
    )?;
    write_atomically(
        &settings.dir.join("names.json"),
        &serde_json::to_vec(names)?,
        &settings.dir,
    )?;
    not_after(chain.as_bytes())
}

/// The ACME account kept in `<root>/tls/account.json`, made on first use.
async fn open_account(settings: &AcmeSettings) -> Result<Account> {
    let builder = || match &settings.server_root {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    };
    let stored = settings.dir.join("account.json");
    if let Ok(bytes) = std::fs::read(&stored) {
        let credentials: AccountCredentials =
            serde_json::from_slice(&bytes).context("the stored ACME account is damaged")?;
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .with_context(|| format!("cannot open an ACME account at {}", settings.directory))?;
    std::fs::create_dir_all(&settings.dir)?;
    write_atomically(&stored, &serde_json::to_vec(&credentials)?, &settings.dir)?;
    Ok(account)
}

/// The self-signed certificate that proves control of `name` (RFC 8737).
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key)?;
    // Not `certified_key`: its check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension this one needs.
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(
            PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| anyhow!("cannot read the challenge key: {e}"))?,
        )?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// When the first certificate of a PEM chain ends.
fn not_after(chain: &[u8]) -> Result<std::time::SystemTime> {
    let first = CertificateDer::pem_slice_iter(chain)
        .next()
        .ok_or_else(|| anyhow!("no certificate in the chain"))??;
    let (_, parsed) = x509_parser::parse_x509_certificate(&first)
        .map_err(|e| anyhow!("cannot read the certificate: {e}"))?;
    let seconds = parsed.validity().not_after.timestamp();
    Ok(std::time::UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64))
}
