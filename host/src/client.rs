//! The CLI's side of the admin API.

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

use crate::package::Package;
use crate::server::ADMIN_PREFIX;
use crate::service::ServiceStatus;

pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(host_url: &str) -> AdminClient {
        AdminClient {
            base: format!("{}{ADMIN_PREFIX}", host_url.trim_end_matches('/')),
            http: reqwest::Client::new(),
        }
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
        let form = reqwest::multipart::Form::new()
            .text("manifest", package.manifest.to_toml())
            .part(
                "component",
                reqwest::multipart::Part::bytes(package.component.clone())
                    .file_name("component.wasm"),
            );
        self.send(
            self.http
                .post(format!("{}/services", self.base))
                .multipart(form),
        )
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

    pub async fn stop(&self, name: &str) -> Result<ServiceStatus> {
        self.send(
            self.http
                .post(format!("{}/services/{name}/stop", self.base)),
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
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{message}");
        }
        serde_json::from_slice(&body).context("the host's answer is not what this CLI expects")
    }
}
