//! Packages from OCI registries, as the serving host (or the CLI, when no
//! host serves the root) takes them: an **offer** says what installing a
//! reference would mean (who signed it, how that key stands with this
//! locker, what the package may reach, and what an upgrade adds to that),
//! pinned to the manifest's digest; a **fetch** takes exactly the offer
//! the owner accepted and checks it again in full (signature against the
//! key pinned for the package, the statement, each blob's size and digest,
//! then the package as any install checks it) before anything is written.
//! Nothing here writes to the root: the caller installs what a fetch
//! returns, then pins the key it names.
//!
//! - `credentials`: the owner's registry logins (the root's, then Docker's);
//! - `unpack`: a pulled package, checked as a package folder is.

pub mod credentials;
mod unpack;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use locker_registry::client::{
    DEFAULT_MAX_COMPONENT, Inspected, Reference, Registry, parse_reference,
};
use locker_registry::index;
use locker_registry::keys::PublicKey;

use crate::api::{
    AcceptedOffer, Found, Offer, OfferRequest, Origin, Reach, Standing, TrustRequest, UpgradeOffer,
    UpgradeOfferRequest,
};
use crate::package::reach::{narrowest_manifest, reach_of};
use crate::package::{Manifest, Package};
use crate::store::{InstalledService, RegistryLogins, TrustStore};

/// What pulls need of the root: the keys pinned for packages, the owner's
/// registry logins, and where verified downloads are kept.
pub struct Distribution<'a> {
    pub trust: &'a TrustStore,
    pub logins: &'a RegistryLogins,
    /// Verified components by digest (in the code cache's folder: a copy
    /// of what the registry holds, not the owner's data).
    pub downloads: PathBuf,
}

/// A fetched package, ready to install or upgrade to, and the publisher
/// key to pin once it is installed (a first install of a signed package).
pub struct Fetched {
    pub package: Package,
    pub pin: Option<TrustRequest>,
}

/// Whether an install argument names a registry package: `oci://…`, or a
/// reference whose first part is a registry host, and no local path.
pub fn registry_reference(argument: &str) -> Option<String> {
    if let Some(reference) = argument.strip_prefix("oci://") {
        return Some(reference.to_string());
    }
    if std::path::Path::new(argument).exists() {
        return None;
    }
    let (host, rest) = argument.split_once('/')?;
    let looks_like_host = host.contains('.') || host.contains(':') || host == "localhost";
    (looks_like_host && !rest.is_empty()).then(|| argument.to_string())
}

impl Fetched {
    /// Installs (or upgrades to) the package with `commit`, pinning the
    /// publisher's key first on a first install, so the service is never
    /// visible unpinned; a pin made for a commit that fails is taken back.
    pub async fn commit<T, F>(
        self,
        trust: &TrustStore,
        commit: impl FnOnce(Package) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let name = self.package.manifest.name.clone();
        if let Some(pin) = &self.pin {
            trust.pin(&name, &pin.public_key, &pin.fingerprint, &pin.source)?;
        }
        let committed = commit(self.package).await;
        if committed.is_err() && self.pin.is_some() {
            let _ = trust.remove(&name);
        }
        committed
    }
}

/// A package folder may replace a service only if no publisher key is
/// pinned for it: a service installed signed takes its versions from its
/// publisher, or the owner forgets the key first.
pub fn check_folder_upgrade(trust: &TrustStore, name: &str) -> Result<()> {
    if let Some(pinned) = trust.pinned(name)? {
        bail!(
            "{name} is trusted from {} (installed from {}): upgrade it from there with `locker upgrade {name}`, or forget the key with `locker trust remove {name}` to replace it with a package folder",
            pinned.fingerprint,
            pinned.source
        );
    }
    Ok(())
}

/// `registry/namespace/name`, without tag or digest.
fn source_of(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// What an offer is made of, before it is told to the owner.
struct Looked {
    digest: String,
    source: String,
    manifest: Manifest,
    /// The manifest's text, when the registry did not supply it (unsigned).
    made_manifest: Option<String>,
    /// The signer's key (`None`: unsigned).
    publisher: Option<PublicKey>,
    standing: Standing,
}

impl Distribution<'_> {
    /// A client of a registry, with the owner's login for it.
    pub fn registry(&self, registry: &str, insecure: bool) -> Result<Registry> {
        // A password goes only where TLS, or this machine, keeps it.
        let login = match insecure && !locker_registry::client::is_loopback(registry) {
            true => None,
            false => credentials::login_for(registry, Some(self.logins))?,
        };
        Ok(Registry::new(registry, insecure, login).with_downloads(self.downloads.clone()))
    }

    /// What installing `request.reference` would mean; `installed`, the
    /// manifest of the version installed now, for an upgrade.
    pub async fn offer(
        &self,
        request: &OfferRequest,
        installed: Option<&Manifest>,
    ) -> Result<Offer> {
        let reference = parse_reference(&request.reference)?;
        let (_, looked) = self
            .look(
                &reference,
                request.insecure,
                request.allow_unsigned,
                request.manifest.as_deref(),
            )
            .await?;
        let reach = reach_of(&looked.manifest);
        let widens = installed.map_or_else(Reach::default, |old| reach.beyond(&reach_of(old)));
        let manifest = &looked.manifest;
        Ok(Offer {
            name: manifest.name.clone(),
            version: manifest.version.to_string(),
            kind: manifest.kind.to_string(),
            description: manifest.description.clone(),
            reference: format!("{}@{}", looked.source, looked.digest),
            source: looked.source,
            publisher: looked.publisher.map(|key| key.fingerprint()),
            standing: looked.standing,
            reach,
            installed: installed.map(|m| m.version.to_string()),
            widens,
            manifest: looked.made_manifest,
        })
    }

    /// The manifest behind `reference` (and a client of its registry) and
    /// who signed it, checked against
    /// the key pinned for the package (a package signed by another key,
    /// or unsigned where a key is pinned, is refused here).
    async fn look(
        &self,
        reference: &Reference,
        insecure: bool,
        allow_unsigned: bool,
        owner_manifest: Option<&str>,
    ) -> Result<(Registry, Looked)> {
        let registry = self.registry(reference.registry(), insecure)?;
        let source = source_of(reference);
        let (digest, inspected) = registry.look(reference, None).await?;
        let (manifest, publisher, made_manifest) = match inspected {
            Inspected::Signed {
                files, publisher, ..
            } => {
                let manifest = Manifest::parse(&files.manifest, &format!("of {reference}"))?;
                if manifest.name != files.name {
                    bail!(
                        "{reference} is refused: it is signed as {:?} but its locker.toml names {:?}",
                        files.name,
                        manifest.name
                    );
                }
                (manifest, Some(publisher), None)
            }
            Inspected::Unsigned { .. } => {
                if !allow_unsigned {
                    bail!(
                        "{reference} is not signed by a Locker publisher; install it with --allow-unsigned only if you trust where it came from"
                    );
                }
                let text = match owner_manifest {
                    Some(text) => text.to_string(),
                    None => {
                        let name = reference
                            .repository()
                            .rsplit('/')
                            .next()
                            .unwrap_or_default();
                        let version = reference.tag().unwrap_or("0.0.0");
                        let version = semver::Version::parse(version)
                            .map(|v| v.to_string())
                            .with_context(|| format!("{reference}'s tag {version:?} is not a version: give its manifest with --manifest"))?;
                        narrowest_manifest(name, &version, &source)
                    }
                };
                (
                    Manifest::parse(&text, &format!("for {reference}"))?,
                    None,
                    Some(text),
                )
            }
        };
        let pinned = self.trust.pinned(&manifest.name)?;
        let standing = match (&pinned, &publisher) {
            (None, Some(_)) => Standing::FirstInstall,
            (None, None) => Standing::Unsigned,
            (Some(pinned), Some(key)) if pinned.public_key == key.to_base64() => Standing::Pinned,
            (Some(pinned), Some(key)) => bail!(
                "{reference} is refused: it is signed by {}, but {} is trusted from {} (pinned at its first install from {}); nothing was installed",
                key.fingerprint(),
                manifest.name,
                pinned.fingerprint,
                pinned.source
            ),
            (Some(pinned), None) => bail!(
                "{reference} is refused: it is not signed, but {} is trusted from {}; nothing was installed",
                manifest.name,
                pinned.fingerprint
            ),
        };
        let looked = Looked {
            digest,
            source,
            manifest,
            made_manifest,
            publisher,
            standing,
        };
        Ok((registry, looked))
    }

    /// Pulls what the owner accepted, checks all of it again, and makes
    /// the package to install; `installed`, the version installed now for
    /// an upgrade (the package must be newer, and reach nothing beyond it
    /// and what the owner accepted).
    pub async fn fetch(
        &self,
        accepted: &AcceptedOffer,
        installed: Option<&Manifest>,
    ) -> Result<Fetched> {
        let reference = parse_reference(&accepted.reference)?;
        if reference.digest().is_none() {
            bail!(
                "{reference} names no digest: accept an offer's reference (REGISTRY/NS/NAME@sha256:…), so that what was shown is what is installed"
            );
        }
        let (registry, looked) = self
            .look(
                &reference,
                accepted.insecure,
                accepted.allow_unsigned,
                accepted.manifest.as_deref(),
            )
            .await?;
        let fingerprint = looked.publisher.as_ref().map(PublicKey::fingerprint);
        if looked.standing == Standing::FirstInstall && accepted.publisher != fingerprint {
            bail!(
                "{reference} is signed by {}, not by {}, the publisher accepted; nothing was installed",
                fingerprint.unwrap_or_default(),
                accepted.publisher.as_deref().unwrap_or("(none)")
            );
        }
        // What the owner accepted, checked before anything is downloaded.
        if let Some(old) = installed {
            if looked.manifest.name != old.name {
                bail!("{reference} is {}, not {}", looked.manifest.name, old.name);
            }
            if looked.manifest.version <= old.version {
                bail!(
                    "{} {} is installed; {} is not newer (a downgrade is a rollback, never an upgrade)",
                    old.name,
                    old.version,
                    looked.manifest.version
                );
            }
        }
        let base = installed.map(reach_of).unwrap_or_default();
        let unaccepted = reach_of(&looked.manifest)
            .beyond(&base)
            .beyond(&accepted.reach);
        if !unaccepted.is_empty() {
            bail!(
                "{reference} reaches more than the owner accepted ({}); nothing was installed",
                unaccepted.lines().join("; ")
            );
        }
        let mut package = match &looked.publisher {
            Some(key) => {
                let pulled = registry
                    .pull(&reference, Some(key), DEFAULT_MAX_COMPONENT)
                    .await?;
                unpack::package_of(&pulled.files, &pulled.component)?
            }
            None => {
                let pulled = registry
                    .pull_unsigned(&reference, DEFAULT_MAX_COMPONENT)
                    .await?;
                Package::new(
                    looked.manifest.clone(),
                    pulled.component,
                    &reference.to_string(),
                )?
            }
        };
        package.origin = Some(Origin {
            source: looked.source.clone(),
            reference: format!("{}@{}", looked.source, looked.digest),
            publisher: fingerprint.clone(),
        });
        let pin = match (&looked.standing, &looked.publisher) {
            (Standing::FirstInstall, Some(key)) => Some(TrustRequest {
                public_key: key.to_base64(),
                fingerprint: key.fingerprint(),
                source: looked.source,
            }),
            _ => None,
        };
        Ok(Fetched { package, pin })
    }

    /// The offer of the newest release of an installed service in the
    /// repository it came from (or of `request.to`); none when it is the
    /// newest already.
    pub async fn upgrade_offer(
        &self,
        installed: &InstalledService,
        request: &UpgradeOfferRequest,
    ) -> Result<UpgradeOffer> {
        let name = &installed.manifest.name;
        let source = match (&installed.origin, self.trust.pinned(name)?) {
            (Some(origin), _) => origin.source.clone(),
            (None, Some(pinned)) => pinned.source,
            (None, None) => bail!(
                "{name} was not installed from a registry; upgrade it from a package folder: `locker upgrade PATH`"
            ),
        };
        let current = &installed.manifest.version;
        let version = match &request.to {
            Some(version) => {
                let wanted = semver::Version::parse(version)
                    .with_context(|| format!("{version:?} is not a version"))?;
                if wanted <= *current {
                    bail!(
                        "{name} {current} is installed; {wanted} is not newer (a downgrade is a rollback, never an upgrade)"
                    );
                }
                wanted
            }
            None => {
                let repository = parse_reference(&source)?;
                let registry = self.registry(repository.registry(), request.insecure)?;
                match newest_release(&registry.tags(&repository).await?) {
                    Some(newest) if newest > *current => newest,
                    newest => {
                        return Ok(UpgradeOffer {
                            offer: None,
                            newest: Some(newest.unwrap_or_else(|| current.clone()).to_string()),
                        });
                    }
                }
            }
        };
        // An unsigned service keeps the manifest the owner gave it.
        let manifest = match &installed.origin {
            Some(origin) if origin.publisher.is_none() => {
                let mut manifest = installed.manifest.clone();
                manifest.version = version.clone();
                Some(manifest.to_toml())
            }
            _ => None,
        };
        let offer = self
            .offer(
                &OfferRequest {
                    reference: format!("{source}:{version}"),
                    insecure: request.insecure,
                    allow_unsigned: request.allow_unsigned,
                    manifest,
                },
                Some(&installed.manifest),
            )
            .await?;
        if offer.name != *name || offer.version != version.to_string() {
            bail!(
                "{source}:{version} is refused: it is {} {}, not {name} {version}",
                offer.name,
                offer.version
            );
        }
        Ok(UpgradeOffer {
            offer: Some(offer),
            newest: None,
        })
    }

    /// Signed packages in a registry (see [`search`]), with the owner's logins.
    pub async fn search(
        &self,
        place: &str,
        service_type: Option<&str>,
        insecure: bool,
    ) -> Result<(Vec<Found>, Vec<String>)> {
        search(|host| self.registry(host, insecure), place, service_type).await
    }
}

/// Signed packages in a registry that provide a type matching
/// `service_type` (all, without one): from the namespace's index when
/// `place` names one (`registry/namespace`), else from the registry's
/// catalog. Each is the newest release, its signature checked; those
/// whose signature does not hold come back as refusals.
pub async fn search(
    registry_for: impl Fn(&str) -> Result<Registry>,
    place: &str,
    service_type: Option<&str>,
) -> Result<(Vec<Found>, Vec<String>)> {
    let (registry_name, namespace) = match place.trim_end_matches('/').split_once('/') {
        Some((registry, namespace)) => (registry, Some(namespace)),
        None => (place, None),
    };
    let registry = registry_for(registry_name)?;
    let repositories = match namespace {
        Some(namespace) => index::read(&registry, registry_name, namespace)
            .await?
            .packages
            .into_keys()
            .map(|name| format!("{namespace}/{name}"))
            .collect(),
        None => registry
            .catalog(&parse_reference(&format!("{registry_name}/catalog"))?)
            .await
            .with_context(|| {
                format!(
                    "name a namespace to search its index instead: --registry {registry_name}/NAMESPACE"
                )
            })?
            .into_iter()
            .filter(|repository| !index::is_index(repository))
            .collect::<Vec<_>>(),
    };
    let mut found = Vec::new();
    let mut refused = Vec::new();
    // A listing is the registry's word (or an unsigned index's): a name in
    // it that is not a reference is passed over, never the end of a search.
    for repository in repositories.into_iter().take(MAX_SEARCHED) {
        let Ok(listing) = parse_reference(&format!("{registry_name}/{repository}")) else {
            refused.push(format!("{repository:?} is not a repository name"));
            continue;
        };
        let Ok(tags) = registry.tags(&listing).await else {
            continue;
        };
        let Some(newest) = newest_release(&tags) else {
            continue;
        };
        let reference = parse_reference(&format!("{registry_name}/{repository}:{newest}"))?;
        match registry.inspect(&reference).await {
            Ok((files, _, key)) => {
                let Ok(manifest) = Manifest::parse(&files.manifest, "a locker.toml") else {
                    continue;
                };
                let wanted = service_type.is_none_or(|pattern| {
                    manifest
                        .provides
                        .iter()
                        .any(|provided| crate::package::topics::matches(pattern, provided))
                });
                if wanted {
                    found.push(Found {
                        reference: reference.to_string(),
                        name: manifest.name.clone(),
                        version: manifest.version.to_string(),
                        kind: manifest.kind.to_string(),
                        provides: manifest.provides.clone(),
                        description: manifest.description.clone(),
                        publisher: key.fingerprint(),
                        versions: tags,
                    });
                }
            }
            Err(error) => refused.push(format!("{reference}: {error:#}")),
        }
    }
    Ok((found, refused))
}

/// The most repositories one search looks into.
const MAX_SEARCHED: usize = 1000;

/// The highest version among a repository's tags, pre-releases aside.
pub fn newest_release(tags: &[String]) -> Option<semver::Version> {
    tags.iter()
        .filter_map(|tag| semver::Version::parse(tag).ok())
        .filter(|version| version.pre.is_empty())
        .max()
}
