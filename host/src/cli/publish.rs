//! The publisher's commands: `locker keygen` and `locker publish`.
//!
//! A package is signed with the publisher's Ed25519 key and pushed to an
//! OCI registry as `REGISTRY/NAMESPACE/NAME:VERSION` (see `locker-registry`
//! for the layout and what is signed). The key file lives with the
//! publisher (`~/.config/locker/publisher.key` by default), never in a
//! locker root, where a backup or another service's owner could find it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use locker_registry::artifact::{PackageFiles, pack};
use locker_registry::client::{Registry, parse_reference};
use locker_registry::keys::PublisherKey;

use crate::package::Package;
use crate::package::manifest::Manifest;

#[derive(Args)]
pub(super) struct KeygenArgs {
    /// Where to write the key (default: ~/.config/locker/publisher.key).
    #[arg(long, env = "LOCKER_KEY")]
    key: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct PublishArgs {
    /// A service folder (built first), or a package folder (locker.toml and
    /// its component), published as it is. Default: here.
    dir: Option<PathBuf>,
    /// The registry and namespace: `registry.example/alice`; the package
    /// goes to `…/NAME:VERSION`, from its manifest.
    #[arg(long)]
    to: String,
    /// The publisher's key (default: ~/.config/locker/publisher.key).
    #[arg(long, env = "LOCKER_KEY")]
    key: Option<PathBuf>,
    /// Speak plain HTTP to a registry that is not on this machine.
    #[arg(long)]
    insecure: bool,
}

/// `$XDG_CONFIG_HOME/locker/publisher.key`, or under `~/.config`.
fn default_key() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".config")
        });
    config.join("locker/publisher.key")
}

/// The locker root `path` would be inside, if any: a folder above it that
/// holds a root's marks.
fn root_around(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("secrets.key").exists() || dir.join("cli.token").exists())
        .map(Path::to_path_buf)
}

pub(super) fn keygen(args: KeygenArgs) -> Result<()> {
    let path = args.key.unwrap_or_else(default_key);
    if let Some(root) = root_around(&path) {
        bail!(
            "{} is inside the locker root {}; keep a publisher key out of any root",
            path.display(),
            root.display()
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let key = PublisherKey::generate()?;
    key.save(&path)?;
    println!("wrote {} (only you can read it)", path.display());
    println!("publisher fingerprint: {}", key.public().fingerprint());
    Ok(())
}

pub(super) async fn publish(args: PublishArgs) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let package_dir = tokio::task::block_in_place(|| package_folder(&dir))?;
    let package = tokio::task::block_in_place(|| Package::read(&package_dir, None))?;
    let manifest = &package.manifest;
    if manifest.name == locker_registry::index::INDEX_REPOSITORY {
        bail!(
            "a package cannot be named {:?}: each namespace's index is kept under that name",
            manifest.name
        );
    }
    if !args.to.contains('/') {
        bail!(
            "--to {} names no namespace: publish to REGISTRY/NAMESPACE",
            args.to
        );
    }
    let key_path = args.key.clone().unwrap_or_else(default_key);
    let key = PublisherKey::load(&key_path).with_context(|| {
        format!(
            "no publisher key at {} (make one with `locker keygen`)",
            key_path.display()
        )
    })?;
    let reference = parse_reference(&format!(
        "{}/{}:{}",
        args.to.trim_end_matches('/'),
        manifest.name,
        manifest.version
    ))?;
    let files = package_files(&package_dir, manifest)?;
    let artifact = pack(
        &files,
        package.component.clone(),
        &crate::clock::now_rfc3339(),
        &key,
    )?;
    let login = crate::distribution::credentials::login_for(reference.registry(), None)?;
    let registry = Registry::new(reference.registry(), args.insecure, login);
    registry.push(&reference, &artifact).await?;
    let fingerprint = key.public().fingerprint();
    println!(
        "published {reference} ({}), signed by {fingerprint}",
        package.digest
    );
    // The namespace's index, for registries that offer no catalog.
    let namespace = reference
        .repository()
        .rsplit_once('/')
        .map_or("", |(namespace, _)| namespace);
    if let Err(error) = locker_registry::index::record(
        &registry,
        reference.registry(),
        namespace,
        &manifest.name,
        &manifest.version.to_string(),
        &manifest.provides,
        &fingerprint,
    )
    .await
    {
        eprintln!("published, but the namespace's index is not updated: {error:#}");
    }
    Ok(())
}

/// A folder holding `locker.toml` and the component it names is a package
/// already; any other service folder is built first.
fn package_folder(dir: &Path) -> Result<PathBuf> {
    if let Ok(manifest) = Manifest::read(&dir.join("locker.toml"))
        && dir.join(&manifest.component).is_file()
    {
        return Ok(dir.to_path_buf());
    }
    let built = super::develop::build_once(dir, false)?;
    Ok(built.dir)
}

/// What travels with the component: `locker.toml` as written, and the
/// schema files it names.
fn package_files(dir: &Path, manifest: &Manifest) -> Result<PackageFiles> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut schemas = std::collections::BTreeMap::new();
    for definition in manifest.types.values() {
        if let Some(schema) = &definition.schema {
            schemas.insert(schema.clone(), read(schema)?);
        }
    }
    Ok(PackageFiles {
        name: manifest.name.clone(),
        version: manifest.version.to_string(),
        manifest: read("locker.toml")?,
        schemas,
    })
}
