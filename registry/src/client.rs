//! Pushing and pulling packages, over `oci-client`.
//!
//! A pull checks in this order, and hands over nothing unless all hold:
//! the manifest's signature and statement (against the key trusted for the
//! package, if one is), the sizes it declares against the cap, then each
//! blob as it arrives: no more bytes than declared, and the digest signed.
//! As Docker does, a registry on loopback is spoken to over plain HTTP;
//! any other only over HTTPS unless the caller says it is insecure.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::artifact::{self, Artifact, CONFIG_MEDIA_TYPE, PackageFiles, WASM_MEDIA_TYPE};
use crate::keys::PublicKey;
use crate::statement::{Blob, Statement};

const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The largest component a pull takes unless told otherwise.
pub const DEFAULT_MAX_COMPONENT: u64 = 256 * 1024 * 1024;

/// How to reach one registry.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
}

/// A pulled, verified package.
#[derive(Debug)]
pub struct Pulled {
    pub files: PackageFiles,
    pub component: Vec<u8>,
    pub statement: Statement,
    /// The key that signed it.
    pub publisher: PublicKey,
    /// The manifest's digest: what `NAME@sha256:…` names.
    pub manifest_digest: String,
}

/// Whether a registry (`host[:port]`) is on this machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A reference such as `registry.example/ns/name:0.1.0`.
pub fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>().with_context(|| {
        format!("{text:?} is not a registry reference (REGISTRY/NAMESPACE/NAME[:VERSION])")
    })
}

impl Registry {
    /// A client of `registry`: plain HTTP if it is on loopback or
    /// `insecure`, HTTPS otherwise; `login` is a user and password.
    pub fn new(registry: &str, insecure: bool, login: Option<(String, String)>) -> Registry {
        let protocol = if insecure || is_loopback(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_string()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..ClientConfig::default()
        });
        let auth = match login {
            Some((user, password)) => RegistryAuth::Basic(user, password),
            None => RegistryAuth::Anonymous,
        };
        Registry { client, auth }
    }

    /// Whether `reference` names a manifest there already.
    pub async fn exists(&self, reference: &Reference) -> Result<bool> {
        match self.client.pull_image_manifest(reference, &self.auth).await {
            Ok(_) => Ok(true),
            Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
                Ok(false)
            }
            Err(oci_client::errors::OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::ManifestUnknown
                            | oci_client::errors::OciErrorCode::NameUnknown
                    )
                }) =>
            {
                Ok(false)
            }
            Err(error) => Err(error).with_context(|| format!("cannot ask {reference}")),
        }
    }

    /// Pushes a signed artifact; refuses to replace a published version.
    pub async fn push(&self, reference: &Reference, artifact: &Artifact) -> Result<String> {
        if self.exists(reference).await? {
            bail!(
                "{reference} is published already; a published version is never replaced: raise the version"
            );
        }
        let layers = [ImageLayer::new(
            artifact.component.clone(),
            WASM_MEDIA_TYPE.to_string(),
            None,
        )];
        let config = Config::new(artifact.config.clone(), CONFIG_MEDIA_TYPE.to_string(), None);
        let mut manifest =
            OciImageManifest::build(&layers, &config, Some(artifact.annotations.clone()));
        // Registries pick the schema by this field (distribution 2.8 refuses
        // an OCI manifest without it).
        manifest.media_type = Some(OCI_MANIFEST_MEDIA_TYPE.to_string());
        let pushed = self
            .client
            .push(reference, &layers, config, &self.auth, Some(manifest))
            .await
            .with_context(|| format!("cannot push {reference}"))?;
        Ok(pushed.manifest_url)
    }

    /// A package's manifest, verified, without its blobs: what `search`
    /// shows (the package files, the statement, the key that signed it).
    pub async fn inspect(
        &self,
        reference: &Reference,
    ) -> Result<(PackageFiles, Statement, PublicKey)> {
        let (_, _, opened) = self.verified_manifest(reference, None).await?;
        Ok(opened)
    }

    /// The manifest of `reference` and its digest, with its signature and
    /// statement checked (against `pinned`, if given).
    async fn verified_manifest(
        &self,
        reference: &Reference,
        pinned: Option<&PublicKey>,
    ) -> Result<(
        OciImageManifest,
        String,
        (PackageFiles, Statement, PublicKey),
    )> {
        let (manifest, digest) = self
            .client
            .pull_image_manifest(reference, &self.auth)
            .await
            .with_context(|| format!("cannot fetch the manifest of {reference}"))?;
        let annotations = manifest.annotations.clone().unwrap_or_default();
        let config = blob_of(&manifest.config)?;
        let layers = manifest
            .layers
            .iter()
            .map(blob_of)
            .collect::<Result<Vec<_>>>()?;
        let opened = artifact::open(&annotations, &config, &layers, pinned)
            .with_context(|| format!("{reference} is refused"))?;
        Ok((manifest, digest, opened))
    }

    /// Pulls and verifies a package (see the module's order of checks).
    pub async fn pull(
        &self,
        reference: &Reference,
        pinned: Option<&PublicKey>,
        max_component: u64,
    ) -> Result<Pulled> {
        let (manifest, manifest_digest, (files, statement, publisher)) =
            self.verified_manifest(reference, pinned).await?;
        let layer = &manifest.layers[0];
        if layer.size as u64 > max_component {
            bail!(
                "{reference} is refused: its component is {} bytes, more than the {max_component} a pull takes",
                layer.size
            );
        }
        let component = self
            .fetch_blob(reference, layer, &statement.layers[0])
            .await?;
        Ok(Pulled {
            files,
            component,
            statement,
            publisher,
            manifest_digest,
        })
    }

    /// A blob, no longer than declared and hashing to the signed digest.
    async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        signed: &Blob,
    ) -> Result<Vec<u8>> {
        let mut stream = self
            .client
            .pull_blob_stream(reference, descriptor)
            .await
            .with_context(|| format!("cannot download {} of {reference}", signed.digest))?
            .stream;
        let mut bytes = Vec::with_capacity(signed.size.min(64 << 20) as usize);
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| {
                format!(
                    "the download of {} from {reference} broke off",
                    signed.digest
                )
            })?;
            if bytes.len() as u64 + chunk.len() as u64 > signed.size {
                bail!(
                    "{reference} is refused: blob {} is longer than the {} bytes signed",
                    signed.digest,
                    signed.size
                );
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if digest != signed.digest || bytes.len() as u64 != signed.size {
            bail!(
                "{reference} is refused: blob {} arrived as {digest} ({} bytes), not as signed",
                signed.digest,
                bytes.len()
            );
        }
        Ok(bytes)
    }

    /// The tags of a repository, e.g. its published versions.
    pub async fn tags(&self, reference: &Reference) -> Result<Vec<String>> {
        let tags = self
            .client
            .list_tags(reference, &self.auth, None, None)
            .await
            .with_context(|| format!("cannot list the versions of {reference}"))?;
        Ok(tags.tags)
    }

    /// The repositories the registry lists (`/v2/_catalog`), if it offers that.
    pub async fn catalog(&self, reference: &Reference) -> Result<Vec<String>> {
        let catalog = self
            .client
            .catalog(reference, &self.auth, None, None)
            .await
            .with_context(|| format!("{} offers no catalog", reference.registry()))?;
        Ok(catalog.repositories)
    }
}

fn blob_of(descriptor: &OciDescriptor) -> Result<Blob> {
    Ok(Blob {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: u64::try_from(descriptor.size).context("a blob of negative size")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_told_apart() {
        for local in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "reg.localhost",
            "localhost",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "ghcr.io",
            "registry.example:5000",
            "10.0.0.1:5000",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
