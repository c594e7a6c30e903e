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
use oci_client::Client;
pub use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};

use crate::artifact::{self, Artifact, CONFIG_MEDIA_TYPE, PackageFiles, WASM_MEDIA_TYPE};
use crate::keys::PublicKey;
use crate::statement::{Blob, SignatureError, Statement};

const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The largest component a pull takes unless told otherwise.
pub const DEFAULT_MAX_COMPONENT: u64 = 256 * 1024 * 1024;

/// How to reach one registry.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    /// Where verified components are kept by digest, so the same digest is
    /// never downloaded twice.
    downloads: Option<std::path::PathBuf>,
}

/// What a manifest says, once checked: a signed Locker package, or a
/// component no Locker publisher signed (pushed by another tool).
#[derive(Debug)]
pub enum Inspected {
    Signed {
        files: Box<PackageFiles>,
        statement: Box<Statement>,
        publisher: PublicKey,
    },
    Unsigned {
        component: Blob,
    },
}

/// A pulled component that no Locker publisher signed; its bytes match
/// the digest its manifest (itself fetched by digest) names.
#[derive(Debug)]
pub struct PulledUnsigned {
    pub component: Vec<u8>,
    pub manifest_digest: String,
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
            // A registry that stops answering is given up on, not waited for.
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        });
        let auth = match login {
            Some((user, password)) => RegistryAuth::Basic(user, password),
            None => RegistryAuth::Anonymous,
        };
        Registry {
            client,
            auth,
            downloads: None,
        }
    }

    /// Keeps verified components in `dir` by digest, and takes them from
    /// there (hashed again) instead of downloading them again.
    pub fn with_downloads(mut self, dir: std::path::PathBuf) -> Registry {
        self.downloads = Some(dir);
        self
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
        self.put(
            reference,
            ImageLayer::new(
                artifact.component.clone(),
                WASM_MEDIA_TYPE.to_string(),
                None,
            ),
            Config::new(artifact.config.clone(), CONFIG_MEDIA_TYPE.to_string(), None),
            Some(artifact.annotations.clone()),
        )
        .await
    }

    /// Pushes one layer and its config as `reference`, replacing what the
    /// tag named (callers that must not replace check first).
    pub(crate) async fn put(
        &self,
        reference: &Reference,
        layer: ImageLayer,
        config: Config,
        annotations: Option<std::collections::BTreeMap<String, String>>,
    ) -> Result<String> {
        let layers = [layer];
        let mut manifest = OciImageManifest::build(&layers, &config, annotations);
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

    /// What `reference` holds, and its manifest's digest, without its
    /// blobs: a signed package (checked against `pinned`, if given), or,
    /// when its manifest carries no signature at all, an unsigned
    /// component in the Wasm layout. A signature that is there but does
    /// not hold is an error, never "unsigned".
    pub async fn look(
        &self,
        reference: &Reference,
        pinned: Option<&PublicKey>,
    ) -> Result<(String, Inspected)> {
        match self.verified_manifest(reference, pinned).await {
            Ok((_, digest, (files, statement, publisher))) => Ok((
                digest,
                Inspected::Signed {
                    files: Box::new(files),
                    statement: Box::new(statement),
                    publisher,
                },
            )),
            Err(error)
                if matches!(
                    error.root_cause().downcast_ref::<SignatureError>(),
                    Some(SignatureError::Unsigned)
                ) =>
            {
                let (manifest, digest) = self.manifest(reference).await?;
                let component = unsigned_component(reference, &manifest)?;
                Ok((digest, Inspected::Unsigned { component }))
            }
            Err(error) => Err(error),
        }
    }

    /// Pulls a component that no Locker publisher signed: one
    /// `application/wasm` layer, no larger than `max_component`, matching
    /// the digest its manifest names.
    pub async fn pull_unsigned(
        &self,
        reference: &Reference,
        max_component: u64,
    ) -> Result<PulledUnsigned> {
        let (manifest, manifest_digest) = self.manifest(reference).await?;
        let component = unsigned_component(reference, &manifest)?;
        if component.size > max_component {
            bail!(
                "{reference} is refused: its component is {} bytes, more than the {max_component} a pull takes",
                component.size
            );
        }
        let component = self
            .fetch_blob(reference, &manifest.layers[0], &component)
            .await?;
        Ok(PulledUnsigned {
            component,
            manifest_digest,
        })
    }

    /// The one layer of a small document (no larger than `max`), checked
    /// against the digest its manifest names; `None` if there is no such
    /// manifest.
    pub(crate) async fn pull_document(
        &self,
        reference: &Reference,
        max: u64,
    ) -> Result<Option<Vec<u8>>> {
        if !self.exists(reference).await? {
            return Ok(None);
        }
        let (manifest, _) = self.manifest(reference).await?;
        let [layer] = manifest.layers.as_slice() else {
            bail!("{reference} is not one document");
        };
        let blob = blob_of(layer)?;
        if blob.size > max {
            bail!("{reference} is {} bytes, more than {max}", blob.size);
        }
        Ok(Some(self.download_blob(reference, layer, &blob).await?))
    }

    async fn manifest(&self, reference: &Reference) -> Result<(OciImageManifest, String)> {
        self.client
            .pull_image_manifest(reference, &self.auth)
            .await
            .with_context(|| format!("cannot fetch the manifest of {reference}"))
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
        let (manifest, digest) = self.manifest(reference).await?;
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

    /// A blob, no longer than declared and hashing to the signed digest:
    /// from the downloads folder if it holds it, else from the registry
    /// (and then kept there).
    async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        signed: &Blob,
    ) -> Result<Vec<u8>> {
        let kept = self.downloads.as_ref().map(|dir| {
            dir.join(format!(
                "{}.wasm",
                signed.digest.replace(':', "-").replace(['/', '.'], "")
            ))
        });
        if let Some(kept) = &kept
            && let Ok(bytes) = std::fs::read(kept)
        {
            if bytes.len() as u64 == signed.size
                && crate::statement::sha256(&bytes) == signed.digest
            {
                return Ok(bytes);
            }
            let _ = std::fs::remove_file(kept);
        }
        let bytes = self.download_blob(reference, descriptor, signed).await?;
        if let Some(kept) = &kept {
            // A download that cannot be kept only costs the next install time.
            if let Err(error) = keep_download(kept, &bytes) {
                tracing::warn!(path = %kept.display(), "cannot keep a download: {error:#}");
            }
        }
        Ok(bytes)
    }

    async fn download_blob(
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

/// Writes a verified download where only whole files are ever seen.
fn keep_download(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a download has a folder")?;
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.persist(path)?;
    Ok(())
}

/// The one component layer of an unsigned artifact.
fn unsigned_component(reference: &Reference, manifest: &OciImageManifest) -> Result<Blob> {
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_MEDIA_TYPE => blob_of(layer),
        _ => bail!(
            "{reference} is not a component: an unsigned package must be one `{WASM_MEDIA_TYPE}` layer"
        ),
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
