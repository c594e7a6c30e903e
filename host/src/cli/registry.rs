//! The owner's side of a registry: `locker install REGISTRY/NS/NAME[:VERSION]`,
//! `locker upgrade NAME`, `locker search` and `locker trust`.
//!
//! An install from a registry pulls the package and checks it (signature,
//! statement, sizes, digests: `locker_registry::client`), then settles who
//! signed it: a key pinned for the package must be the one; a first
//! install pins the key once the owner accepts it, by answering at the
//! terminal, with `--yes`, or with `--trust FINGERPRINT` (the key they were
//! told of). Only then is the package checked as any install is and
//! installed; the key is pinned after the install succeeds.
//!
//! For now the CLI does the pulling (the host serving the root installs
//! what it hands over); the host will pull itself, for `--url`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use locker_registry::client::{DEFAULT_MAX_COMPONENT, Pulled, Registry, parse_reference};
use locker_registry::keys::PublicKey;

use super::Target;
use super::access::{Access, access, offline_status};
use crate::api::{TrustRequest, TrustedPublisher};
use crate::package::Package;
use crate::store::{Catalog, TrustStore};

/// How the owner settles trust in a new publisher.
pub(super) struct Consent {
    pub yes: bool,
    pub trust: Option<String>,
    pub insecure: bool,
}

/// Whether an install argument names a registry package: `oci://…`, or a
/// reference whose first part is a registry host, and no local path.
pub(super) fn registry_reference(argument: &str) -> Option<String> {
    if let Some(reference) = argument.strip_prefix("oci://") {
        return Some(reference.to_string());
    }
    if Path::new(argument).exists() {
        return None;
    }
    let (host, rest) = argument.split_once('/')?;
    let looks_like_host = host.contains('.') || host.contains(':') || host == "localhost";
    (looks_like_host && !rest.is_empty()).then(|| argument.to_string())
}

pub(super) async fn install(target: &Target, reference: &str, consent: &Consent) -> Result<()> {
    let reference = parse_reference(reference)?;
    let access = access(target)?;
    let registry = Registry::new(reference.registry(), consent.insecure, None);
    // First, with no key pinned: the signature, the statement, the blobs.
    let pulled = registry
        .pull(&reference, None, DEFAULT_MAX_COMPONENT)
        .await?;
    let name = pulled.files.name.clone();
    let source = format!("{}/{}", reference.registry(), reference.repository());
    let pinned = trusted(&access, &name).await?;
    let first = match &pinned {
        Some(pinned) if pinned.public_key == pulled.publisher.to_base64() => false,
        Some(pinned) => bail!(
            "{reference} is refused: it is signed by {}, but {name} is trusted from {} (pinned at its first install from {}); nothing was installed",
            pulled.publisher.fingerprint(),
            pinned.fingerprint,
            pinned.source
        ),
        None => true,
    };
    let package = package_of(&pulled)?;
    if first {
        accept(&reference.to_string(), &pulled.publisher, &package, consent)?;
    }
    let status = match &access {
        Access::Host(client) => client.install(&package).await?,
        Access::Offline { catalog, .. } => offline_status(catalog.install(&package)?),
    };
    if first {
        let request = TrustRequest {
            public_key: pulled.publisher.to_base64(),
            fingerprint: pulled.publisher.fingerprint(),
            source,
        };
        pin(&access, &name, &request).await?;
    }
    println!(
        "installed {} {} from {reference} ({}), signed by {}",
        status.name,
        status.version,
        pulled.manifest_digest,
        pulled.publisher.fingerprint()
    );
    Ok(())
}

/// The package as `locker install` checks any: written to a scratch
/// folder as the publisher's folder was, and read back.
fn package_of(pulled: &Pulled) -> Result<Package> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    std::fs::write(dir.join("locker.toml"), &pulled.files.manifest)?;
    let manifest =
        crate::package::Manifest::parse(&pulled.files.manifest, "the pulled locker.toml")?;
    if manifest.name != pulled.files.name {
        bail!(
            "the pulled package is signed as {:?} but its locker.toml names {:?}",
            pulled.files.name,
            manifest.name
        );
    }
    for (path, schema) in &pulled.files.schemas {
        let relative = Path::new(path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("the pulled package names a schema outside its folder: {path:?}");
        }
        let target = dir.join(relative);
        std::fs::create_dir_all(target.parent().expect("a file has a parent"))?;
        std::fs::write(target, schema)?;
    }
    let component = dir.join(&manifest.component);
    if component.parent() != Some(dir) {
        bail!("the pulled locker.toml names its component outside its folder");
    }
    std::fs::write(&component, &pulled.component)?;
    Package::read(dir, None).context("the pulled package is not one a locker installs")
}

/// A first install: the owner accepts the publisher's key.
fn accept(reference: &str, key: &PublicKey, package: &Package, consent: &Consent) -> Result<()> {
    let fingerprint = key.fingerprint();
    if let Some(expected) = &consent.trust {
        if *expected != fingerprint {
            bail!(
                "{reference} is signed by {fingerprint}, not by {expected}; nothing was installed"
            );
        }
        return Ok(());
    }
    println!(
        "{} {} from {reference} is signed by a publisher this locker does not know yet:\n  {fingerprint}",
        package.manifest.name, package.manifest.version
    );
    println!(
        "Compare it with the one the publisher gave you; every later version must be signed by this key."
    );
    if consent.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "not installed: trust the publisher with --yes, or pin the key you were given with --trust {fingerprint}"
        );
    }
    print!("Trust this publisher and install? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not installed");
    }
    Ok(())
}

async fn trusted(access: &Access, package: &str) -> Result<Option<TrustedPublisher>> {
    Ok(match access {
        Access::Host(client) => client
            .trusted()
            .await?
            .into_iter()
            .find(|t| t.package == package),
        Access::Offline { catalog, .. } => TrustStore::open(catalog.root())?.pinned(package)?,
    })
}

async fn pin(access: &Access, package: &str, request: &TrustRequest) -> Result<()> {
    match access {
        Access::Host(client) => {
            client.trust(package, request).await?;
        }
        Access::Offline { catalog, .. } => TrustStore::open(catalog.root())?.pin(
            package,
            &request.public_key,
            &request.fingerprint,
            &request.source,
        )?,
    }
    Ok(())
}

pub(super) async fn list(target: &Target, json: bool) -> Result<()> {
    let trusted = match access(target)? {
        Access::Host(client) => client.trusted().await?,
        Access::Offline { catalog, .. } => TrustStore::open(catalog.root())?.list()?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&trusted)?);
        return Ok(());
    }
    if trusted.is_empty() {
        println!("no publisher is trusted yet (a first install from a registry pins one)");
    }
    for entry in trusted {
        println!(
            "{:<24} {}  from {} since {}",
            entry.package, entry.fingerprint, entry.source, entry.trusted_at
        );
    }
    Ok(())
}

pub(super) async fn remove(target: &Target, package: &str) -> Result<()> {
    match access(target)? {
        Access::Host(client) => {
            client.distrust(package).await?;
        }
        Access::Offline { catalog, .. } => {
            if !TrustStore::open(catalog.root())?.remove(package)? {
                bail!("no publisher is trusted for {package:?}");
            }
        }
    }
    println!("{package}: no publisher is trusted now; its next install from a registry asks again");
    Ok(())
}

/// `locker upgrade NAME [--to VERSION]`: the newest version of a package
/// installed from a registry (or the one asked for), from where it came,
/// signed by the key pinned for it. Never a downgrade.
pub(super) async fn upgrade(
    target: &Target,
    name: &str,
    to: Option<&str>,
    insecure: bool,
) -> Result<()> {
    let access = access(target)?;
    let Some(pinned) = trusted(&access, name).await? else {
        bail!(
            "{name} was not installed from a registry (no publisher is trusted for it); upgrade it from a package folder: `locker upgrade PATH`"
        );
    };
    let installed = match &access {
        Access::Host(client) => client.service(name).await?.version,
        Access::Offline { catalog, .. } => catalog.require(name)?.manifest.version.to_string(),
    };
    let installed = semver::Version::parse(&installed)
        .with_context(|| format!("{name}'s installed version {installed:?} is not semver"))?;
    let repository = parse_reference(&pinned.source)?;
    let registry = Registry::new(repository.registry(), insecure, None);
    let version = match to {
        Some(version) => {
            let wanted = semver::Version::parse(version)
                .with_context(|| format!("{version:?} is not a version"))?;
            if wanted <= installed {
                bail!(
                    "{name} {installed} is installed; {wanted} is not newer (a downgrade is a rollback, never an upgrade)"
                );
            }
            wanted
        }
        None => match newest_release(&registry.tags(&repository).await?) {
            Some(newest) if newest > installed => newest,
            _ => {
                println!("{name} {installed} is the newest in {}", pinned.source);
                return Ok(());
            }
        },
    };
    let reference = parse_reference(&format!("{}:{version}", pinned.source))?;
    let key = PublicKey::from_base64(&pinned.public_key)?;
    let pulled = registry
        .pull(&reference, Some(&key), DEFAULT_MAX_COMPONENT)
        .await?;
    if pulled.files.name != name || pulled.files.version != version.to_string() {
        bail!(
            "{reference} is refused: it is signed as {} {}, not {name} {version}",
            pulled.files.name,
            pulled.files.version
        );
    }
    let package = package_of(&pulled)?;
    let status = match &access {
        Access::Host(client) => client.upgrade(&package).await?,
        Access::Offline { catalog, .. } => offline_status(catalog.upgrade(&package)?.1),
    };
    println!(
        "upgraded {name} {installed} to {} from {reference} ({}), signed by {}",
        status.version,
        pulled.manifest_digest,
        key.fingerprint()
    );
    Ok(())
}

/// The highest version among a repository's tags, pre-releases aside.
fn newest_release(tags: &[String]) -> Option<semver::Version> {
    tags.iter()
        .filter_map(|tag| semver::Version::parse(tag).ok())
        .filter(|version| version.pre.is_empty())
        .max()
}

/// `locker search [TYPE] --registry R`: the newest signed version of each
/// package the registry lists (`/v2/_catalog`), with the types it
/// provides and who signed it; only those providing a type matching TYPE
/// (`contact/*`) when given. A package whose signature does not hold is
/// named as refused, not shown as one.
pub(super) async fn search(
    service_type: Option<&str>,
    registry_name: &str,
    insecure: bool,
    json: bool,
) -> Result<()> {
    let registry = Registry::new(registry_name, insecure, None);
    let base = parse_reference(&format!("{registry_name}/catalog"))?;
    let mut found = Vec::new();
    for repository in registry.catalog(&base).await? {
        let listing = parse_reference(&format!("{registry_name}/{repository}"))?;
        let Ok(tags) = registry.tags(&listing).await else {
            continue;
        };
        let Some(newest) = newest_release(&tags) else {
            continue;
        };
        let reference = parse_reference(&format!("{registry_name}/{repository}:{newest}"))?;
        match registry.inspect(&reference).await {
            Ok((files, _, key)) => {
                let Ok(manifest) =
                    crate::package::Manifest::parse(&files.manifest, "a locker.toml")
                else {
                    continue;
                };
                let wanted = service_type.is_none_or(|pattern| {
                    manifest
                        .provides
                        .iter()
                        .any(|provided| crate::package::topics::matches(pattern, provided))
                });
                if wanted {
                    found.push(serde_json::json!({
                        "reference": reference.to_string(),
                        "name": manifest.name,
                        "version": manifest.version.to_string(),
                        "kind": manifest.kind.to_string(),
                        "provides": manifest.provides,
                        "description": manifest.description,
                        "publisher": key.fingerprint(),
                        "versions": tags,
                    }));
                }
            }
            Err(error) if !json => eprintln!("{reference}: {error:#}"),
            Err(_) => {}
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!(
            "no signed package there provides {}",
            service_type.unwrap_or("anything")
        );
    }
    for package in &found {
        println!(
            "{}  {}  provides {}  signed by {}",
            package["reference"].as_str().unwrap_or_default(),
            package["kind"].as_str().unwrap_or_default(),
            package["provides"]
                .as_array()
                .map(|p| p
                    .iter()
                    .filter_map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            package["publisher"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use locker_registry::artifact::PackageFiles;
    use locker_registry::keys::PublisherKey;
    use locker_registry::statement::{Blob, Statement};

    fn pulled(manifest: &str, schemas: &[(&str, &str)]) -> Pulled {
        let blob = Blob {
            media_type: "application/wasm".into(),
            digest: "sha256:0".into(),
            size: 0,
        };
        Pulled {
            files: PackageFiles {
                name: "notes".into(),
                version: "0.1.0".into(),
                manifest: manifest.into(),
                schemas: schemas
                    .iter()
                    .map(|(p, s)| (p.to_string(), s.to_string()))
                    .collect(),
            },
            component: b"not wasm".to_vec(),
            statement: Statement::new(
                "notes",
                "0.1.0",
                blob.clone(),
                vec![blob],
                &Default::default(),
            ),
            publisher: PublisherKey::generate().unwrap().public(),
            manifest_digest: "sha256:1".into(),
        }
    }

    const MANIFEST: &str =
        "name = \"notes\"\nversion = \"0.1.0\"\nkind = \"app\"\ndescription = \"d\"\n";

    #[test]
    fn a_pulled_package_cannot_write_outside_its_scratch_folder() {
        let escape = pulled(
            &format!("{MANIFEST}component = \"notes.wasm\"\n"),
            &[("../../evil.json", "{}")],
        );
        let refused = package_of(&escape).err().unwrap().to_string();
        assert!(refused.contains("outside its folder"), "{refused}");
        let absolute = pulled(
            &format!("{MANIFEST}component = \"notes.wasm\"\n"),
            &[("/tmp/evil.json", "{}")],
        );
        assert!(package_of(&absolute).is_err());
        let component = pulled(&format!("{MANIFEST}component = \"../notes.wasm\"\n"), &[]);
        assert!(package_of(&component).is_err());
        let renamed = pulled(
            &format!("{MANIFEST}component = \"notes.wasm\"\n")
                .replace("name = \"notes\"", "name = \"bank\""),
            &[],
        );
        let refused = package_of(&renamed).err().unwrap().to_string();
        assert!(refused.contains("signed as \"notes\""), "{refused}");
    }
}
