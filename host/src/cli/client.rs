//! The CLI's side of the admin API.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

use crate::api::{
    ADMIN_PREFIX, AcceptedOffer, ClusterView, ConfigEntry, DeadLetter, EventRecord, EventSummary,
    Found, JobView, LoginRequest, NewToken, Offer, OfferRequest, RegistryLogin, Rollback, RunView,
    ServiceStatus, SessionView, TokenRequest, TokenView, TrustRequest, TrustedPublisher, TypeView,
    UpgradeOffer, UpgradeOfferRequest,
};
use crate::package::Package;
use crate::store::root::HostRecord;

#[derive(Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the host at `host_url` that sends `token` with every request.
    pub fn new(host_url: &str, token: &str) -> Result<AdminClient> {
        AdminClient::build(host_url, token, reqwest::Client::builder())
    }

    /// A client of the host serving a root on this machine: it connects to
    /// the address the host listens on and trusts the certificate it serves.
    pub fn local(record: &HostRecord, token: &str) -> Result<AdminClient> {
        let mut builder = reqwest::Client::builder();
        if let Some(listen) = record.listen
            && let Ok(url) = reqwest::Url::parse(&record.url)
            && let Some(host) = url.host_str()
        {
            let to = if listen.ip().is_unspecified() {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
            } else {
                listen
            };
            builder = builder.resolve(host, to);
        }
        if let Some(cert) = &record.tls_cert {
            let pem = std::fs::read(cert).with_context(|| {
                format!("cannot read the host's certificate {}", cert.display())
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        AdminClient::build(&record.url, token, builder)
    }

    fn build(host_url: &str, token: &str, builder: reqwest::ClientBuilder) -> Result<AdminClient> {
        let mut authorization = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the API token is not a valid header value")?;
        authorization.set_sensitive(true);
        let headers = reqwest::header::HeaderMap::from_iter([(
            reqwest::header::AUTHORIZATION,
            authorization,
        )]);
        let http = builder
            .default_headers(headers)
            .dns_resolver(std::sync::Arc::new(LocalhostNames))
            .build()
            .context("cannot make an HTTP client")?;
        Ok(AdminClient {
            base: format!("{}{ADMIN_PREFIX}", host_url.trim_end_matches('/')),
            http,
        })
    }

    pub async fn services(&self) -> Result<Vec<ServiceStatus>> {
        self.send(self.http.get(format!("{}/services", self.base)))
            .await
    }

    pub async fn service(&self, name: &str) -> Result<ServiceStatus> {
        self.send(self.http.get(format!("{}/services/{name}", self.base)))
            .await
    }

    pub async fn install(&self, package: &Package) -> Result<ServiceStatus> {
        let url = format!("{}/services", self.base);
        self.send(self.http.post(url).multipart(package_form(package)))
            .await
    }

    pub async fn upgrade(&self, package: &Package) -> Result<ServiceStatus> {
        let url = format!("{}/services/{}", self.base, package.manifest.name);
        self.send(self.http.put(url).multipart(package_form(package)))
            .await
    }

    pub async fn uninstall(&self, name: &str, keep_data: bool) -> Result<ServiceStatus> {
        let url = format!("{}/services/{name}?keep_data={keep_data}", self.base);
        self.send(self.http.delete(url)).await
    }

    pub async fn start(&self, name: &str) -> Result<ServiceStatus> {
        self.send(
            self.http
                .post(format!("{}/services/{name}/start", self.base)),
        )
        .await
    }

    pub async fn rollback(&self, name: &str, data: bool) -> Result<ServiceStatus> {
        let url = format!("{}/services/{name}/rollback", self.base);
        self.send(self.http.post(url).json(&Rollback { data }))
            .await
    }

    pub async fn stop(&self, name: &str) -> Result<ServiceStatus> {
        self.send(
            self.http
                .post(format!("{}/services/{name}/stop", self.base)),
        )
        .await
    }

    pub async fn config(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let url = format!("{}/services/{name}/config", self.base);
        self.send(self.http.get(url)).await
    }

    /// Sets (`Some`) or unsets one setting; the entry as it is now.
    pub async fn set_config(
        &self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<ConfigEntry>> {
        let url = format!("{}/services/{name}/config/{key}", self.base);
        match value {
            Some(value) => {
                let body = crate::api::ConfigValue {
                    value: value.to_string(),
                };
                self.send(self.http.put(url).json(&body)).await
            }
            None => self.send(self.http.delete(url)).await,
        }
    }

    pub async fn events(&self, topic: Option<&str>, limit: usize) -> Result<Vec<EventSummary>> {
        let mut url = format!("{}/events?limit={limit}", self.base);
        if let Some(topic) = topic {
            url.push_str(&format!("&topic={topic}"));
        }
        self.send(self.http.get(url)).await
    }

    /// Publishes `payload` on `topic` as the owner.
    pub async fn publish(&self, topic: &str, payload: &str) -> Result<EventRecord> {
        let url = format!("{}/publish/{topic}", self.base);
        let request = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload.to_string());
        self.send(request).await
    }

    pub async fn types(&self) -> Result<Vec<TypeView>> {
        self.send(self.http.get(format!("{}/types", self.base)))
            .await
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.send(self.http.get(format!("{}/dead-letters", self.base)))
            .await
    }

    pub async fn replay(&self, service: Option<&str>, event: Option<&str>) -> Result<Vec<String>> {
        let body = serde_json::json!({ "service": service, "event": event });
        self.send(
            self.http
                .post(format!("{}/dead-letters/replay", self.base))
                .json(&body),
        )
        .await
    }

    pub async fn jobs(&self, service: Option<&str>) -> Result<Vec<JobView>> {
        let mut url = format!("{}/jobs", self.base);
        if let Some(service) = service {
            url.push_str(&format!("?service={service}"));
        }
        self.send(self.http.get(url)).await
    }

    pub async fn run_job(&self, service: &str, job: &str) -> Result<RunView> {
        let url = format!("{}/jobs/{service}/{job}/run", self.base);
        self.send(self.http.post(url)).await
    }

    /// A service's log from byte `from`, and where the next read starts.
    pub async fn log(&self, name: &str, from: u64) -> Result<(Vec<u8>, u64)> {
        let url = format!("{}/services/{name}/log?from={from}", self.base);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach the locker host at {}", self.base))?;
        if !response.status().is_success() {
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            bail!("{}", answer["error"].as_str().unwrap_or("the host refused"));
        }
        let next = response
            .headers()
            .get("x-log-next")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .context("the host's answer has no x-log-next")?;
        Ok((response.bytes().await?.to_vec(), next))
    }

    pub async fn cluster(&self) -> Result<ClusterView> {
        self.send(self.http.get(format!("{}/cluster", self.base)))
            .await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>> {
        self.send(self.http.get(format!("{}/tokens", self.base)))
            .await
    }

    pub async fn create_token(&self, request: &TokenRequest) -> Result<NewToken> {
        let url = format!("{}/tokens", self.base);
        self.send(self.http.post(url).json(request)).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<serde_json::Value> {
        let url = format!("{}/tokens/{id}", self.base);
        self.send(self.http.delete(url)).await
    }

    pub async fn sessions(&self) -> Result<Vec<SessionView>> {
        self.send(self.http.get(format!("{}/sessions", self.base)))
            .await
    }

    pub async fn end_session(&self, id: &str) -> Result<serde_json::Value> {
        let url = format!("{}/sessions/{id}", self.base);
        self.send(self.http.delete(url)).await
    }

    /// A new one-time link to choose the owner's password.
    pub async fn setup_link(&self) -> Result<String> {
        self.owner_link("setup-link").await
    }

    async fn owner_link(&self, which: &str) -> Result<String> {
        let url = format!("{}/owner/{which}", self.base);
        let answer: serde_json::Value = self.send(self.http.post(url)).await?;
        answer["link"]
            .as_str()
            .map(str::to_string)
            .context("the host's answer has no link")
    }

    /// The publisher keys pinned for packages.
    pub async fn trusted(&self) -> Result<Vec<TrustedPublisher>> {
        self.send(self.http.get(format!("{}/trust", self.base)))
            .await
    }

    /// Pins a publisher key for a package.
    pub async fn trust(&self, package: &str, request: &TrustRequest) -> Result<TrustedPublisher> {
        let url = format!("{}/trust/{package}", self.base);
        self.send(self.http.put(url).json(request)).await
    }

    /// Forgets the key pinned for a package.
    pub async fn distrust(&self, package: &str) -> Result<serde_json::Value> {
        let url = format!("{}/trust/{package}", self.base);
        self.send(self.http.delete(url)).await
    }

    /// What installing a package from a registry would mean.
    pub async fn offer(&self, request: &OfferRequest) -> Result<Offer> {
        let url = format!("{}/registry/offer", self.base);
        self.send(self.http.post(url).json(request)).await
    }

    /// Installs an accepted offer; the host pulls it.
    pub async fn install_offer(&self, accepted: &AcceptedOffer) -> Result<ServiceStatus> {
        let url = format!("{}/registry/install", self.base);
        self.send(self.http.post(url).json(accepted)).await
    }

    /// The offer of a newer version of `name` from where it came.
    pub async fn upgrade_offer(
        &self,
        name: &str,
        request: &UpgradeOfferRequest,
    ) -> Result<UpgradeOffer> {
        let url = format!("{}/registry/upgrade-offer/{name}", self.base);
        self.send(self.http.post(url).json(request)).await
    }

    /// Upgrades `name` to an accepted offer.
    pub async fn upgrade_to_offer(
        &self,
        name: &str,
        accepted: &AcceptedOffer,
    ) -> Result<ServiceStatus> {
        let url = format!("{}/registry/upgrade/{name}", self.base);
        self.send(self.http.post(url).json(accepted)).await
    }

    /// Signed packages in a registry (or one namespace's index there).
    pub async fn search(
        &self,
        registry: &str,
        service_type: Option<&str>,
        insecure: bool,
    ) -> Result<(Vec<Found>, Vec<String>)> {
        let url = format!("{}/registry/search", self.base);
        let answer: serde_json::Value = self
            .send(self.http.post(url).json(&serde_json::json!({
                "registry": registry, "type": service_type, "insecure": insecure,
            })))
            .await?;
        Ok((
            serde_json::from_value(answer["found"].clone())?,
            serde_json::from_value(answer["refused"].clone())?,
        ))
    }

    /// The registries the host logs in to.
    pub async fn registry_logins(&self) -> Result<Vec<RegistryLogin>> {
        self.send(self.http.get(format!("{}/registry/logins", self.base)))
            .await
    }

    /// Keeps a registry login in the root, for the host's pulls.
    pub async fn save_registry_login(&self, registry: &str, login: &LoginRequest) -> Result<()> {
        let url = format!("{}/registry/logins/{registry}", self.base);
        self.send::<serde_json::Value>(self.http.put(url).json(login))
            .await
            .map(drop)
    }

    /// Forgets a registry login.
    pub async fn remove_registry_login(&self, registry: &str) -> Result<()> {
        let url = format!("{}/registry/logins/{registry}", self.base);
        self.send::<serde_json::Value>(self.http.delete(url))
            .await
            .map(drop)
    }

    /// A one-time link that logs a browser in as the owner.
    pub async fn login_link(&self) -> Result<String> {
        self.owner_link("login-link").await
    }

    /// Calls `on_event` for each event published from now on (Server-Sent Events).
    pub async fn follow_events(
        &self,
        topic: Option<&str>,
        mut on_event: impl FnMut(&EventRecord),
    ) -> Result<()> {
        let mut url = format!("{}/events/stream", self.base);
        if let Some(topic) = topic {
            url.push_str(&format!("?topic={topic}"));
        }
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .context("cannot reach the locker host")?;
        if !response.status().is_success() {
            bail!("the host refused the event stream: {}", response.status());
        }
        let mut buffer = String::new();
        while let Some(chunk) = response.chunk().await? {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                for line in message.lines() {
                    if let Some(data) = line.strip_prefix("data: ")
                        && let Ok(event) = serde_json::from_str::<EventRecord>(data)
                    {
                        on_event(&event);
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn backups(&self) -> Result<crate::api::BackupsView> {
        self.send(self.http.get(format!("{}/backups", self.base)))
            .await
    }

    /// A POST to `path` under the admin API, to finish and send.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    /// Sends `request` and writes the body it answers with into `to`.
    pub async fn download(
        &self,
        request: reqwest::RequestBuilder,
        to: &std::path::Path,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the locker host at {}", self.base))?;
        if !response.status().is_success() {
            let body = response.bytes().await.unwrap_or_default();
            bail!("{}", error_message(&body));
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .with_context(|| format!("cannot create {}", to.display()))?;
        while let Some(chunk) = response
            .chunk()
            .await
            .context("the host broke the transfer off")?
        {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(())
    }

    /// Uploads an export into service `name` (stopped).
    pub async fn import(
        &self,
        name: &str,
        archive: &std::path::Path,
    ) -> Result<crate::api::ImportView> {
        let file = tokio::fs::File::open(archive)
            .await
            .with_context(|| format!("cannot open {}", archive.display()))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let url = format!("{}/services/{name}/import", self.base);
        self.send(
            self.http
                .put(url)
                .header("x-locker-request", "import")
                .body(body),
        )
        .await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the locker host at {}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("the host's answer was cut off")?;
        if !status.is_success() {
            bail!("{}", error_message(&body));
        }
        serde_json::from_slice(&body).context("the host's answer is not what this CLI expects")
    }
}

/// What a refused request's body says: its `{"error": ...}`, or the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// Resolves `*.localhost` to loopback, as browsers do (RFC 6761) and glibc
/// does not, so `--url http://locker.localhost:8042` works; any other name
/// is resolved by the system.
struct LocalhostNames;

impl reqwest::dns::Resolve for LocalhostNames {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = if host == "localhost" || host.ends_with(".localhost")
            {
                vec![(Ipv4Addr::LOCALHOST, 0).into()]
            } else {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            };
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A package as the admin API takes it: `manifest` and `component` parts.
fn package_form(package: &Package) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("manifest", package.manifest.to_toml())
        .part(
            "component",
            reqwest::multipart::Part::bytes(package.component.clone()).file_name("component.wasm"),
        )
}
