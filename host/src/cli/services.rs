//! The owner's service commands: install, upgrade, list, status, start,
//! stop, uninstall.

use std::path::Path;

use anyhow::Result;

use super::Target;
use super::access::{Access, access, offline_status};
use crate::api::ConfigEntry;
use crate::package::Package;
use crate::store::Catalog;

pub(super) async fn install(root: &Target, path: &Path, manifest: Option<&Path>) -> Result<()> {
    let package = tokio::task::block_in_place(|| Package::read(path, manifest))?;
    let access = access(root)?;
    let status = match &access {
        Access::Host(client) => client.install(&package).await?,
        Access::Offline { catalog, .. } => offline_status(catalog.install(&package)?),
    };
    println!(
        "installed {} {} ({}, {})",
        status.name, status.version, status.kind, status.digest
    );
    print_access(
        &package.manifest,
        &unset_required(&access, &status.name).await?,
    );
    Ok(())
}

/// The settings the service cannot run without that have no value yet.
async fn unset_required(access: &Access, name: &str) -> Result<Vec<ConfigEntry>> {
    Ok(super::config::config_of(access, name)
        .await?
        .into_iter()
        .filter(|entry| entry.active && entry.required && !entry.set && entry.default.is_none())
        .collect())
}

/// What the owner just let the service do beyond its own folder: whom it
/// may call out to (an internal address or network named by IP stands out:
/// it opens the machine's own network), and which routes need no login.
fn print_access(manifest: &crate::package::Manifest, unset: &[ConfigEntry]) {
    let name = &manifest.name;
    for entry in &manifest.network.allow_hosts {
        if let Ok(Some(template)) = crate::package::host_template::HostTemplate::parse(entry) {
            let key = template.key();
            println!(
                "  may reach the host you set as `{key}` (`locker config set {name} {key} HOST`), \
                 and only that"
            );
            continue;
        }
        let by_address = entry.parse::<ipnet::IpNet>().is_ok()
            || entry.parse::<std::net::IpAddr>().is_ok()
            || entry.parse::<std::net::SocketAddr>().is_ok();
        if by_address {
            println!(
                "  may reach {entry} (named by address: internal addresses there are open to it)"
            );
        } else {
            println!("  may reach {entry}");
        }
    }
    for callee in &manifest.calls {
        match callee.strip_prefix("type:") {
            Some(pattern) => println!("  may call every service that provides {pattern}"),
            None => println!("  may call {callee}"),
        }
    }
    for route in &manifest.public {
        println!("  public, with no login: {route}");
    }
    for entry in unset {
        let value = if entry.secret { "" } else { " VALUE" };
        println!(
            "  needs `{}` ({}) before it runs: `locker config set {name} {}{value}`",
            entry.key,
            entry.description.as_deref().unwrap_or_default(),
            entry.key
        );
    }
}

pub(super) async fn upgrade(root: &Target, path: &Path, manifest: Option<&Path>) -> Result<()> {
    let package = tokio::task::block_in_place(|| Package::read(path, manifest))?;
    let access = access(root)?;
    let status = match &access {
        Access::Host(client) => client.upgrade(&package).await?,
        // The jobs of its new manifest are registered when a host next starts.
        Access::Offline { catalog, .. } => {
            let trust = crate::store::TrustStore::open(catalog.root())?;
            crate::distribution::check_folder_upgrade(&trust, &package.manifest.name)?;
            offline_status(catalog.upgrade(&package)?.1)
        }
    };
    println!(
        "upgraded {} to {} ({})",
        status.name, status.version, status.digest
    );
    print_access(
        &package.manifest,
        &unset_required(&access, &status.name).await?,
    );
    Ok(())
}

pub(super) async fn list(root: &Target, json: bool) -> Result<()> {
    let statuses = match access(root)? {
        Access::Host(client) => client.services().await?,
        Access::Offline { catalog, .. } => {
            catalog.list()?.into_iter().map(offline_status).collect()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<11} {:<5} {:<10} {:>6} {:>9} {:>9}  {:<9} LAST ERROR",
        "NAME", "VERSION", "KIND", "WASI", "STATE", "LOADS", "REQUESTS", "INSTANCES", "FROM"
    );
    for s in statuses {
        let state = serde_json::to_value(s.state)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "{:<20} {:<10} {:<11} {:<5} {:<10} {:>6} {:>9} {:>9}  {:<9} {}",
            s.name,
            s.version,
            s.kind,
            s.wasi.as_deref().unwrap_or("-"),
            state,
            s.loads,
            s.requests,
            s.instances,
            match &s.origin {
                None => "folder",
                Some(origin) if origin.publisher.is_some() => "signed",
                Some(_) => "UNSIGNED",
            },
            match &s.needs_setting {
                // What stops it comes first.
                Some(key) => format!(
                    "needs its setting {key}: `locker config set {} {key}`",
                    s.name
                ),
                None => s.last_error.unwrap_or_default(),
            }
        );
    }
    Ok(())
}

pub(super) async fn status(root: &Target, name: &str, json: bool) -> Result<()> {
    let status = match access(root)? {
        Access::Host(client) => client.service(name).await?,
        Access::Offline { catalog, .. } => offline_status(catalog.require(name)?),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", toml::to_string(&status)?);
    }
    Ok(())
}

pub(super) enum Lifecycle {
    Start,
    Stop,
    Uninstall { keep_data: bool },
}

pub(super) async fn lifecycle(root: &Target, name: &str, action: Lifecycle) -> Result<()> {
    let status = match (access(root)?, &action) {
        (Access::Host(client), Lifecycle::Start) => client.start(name).await?,
        (Access::Host(client), Lifecycle::Stop) => client.stop(name).await?,
        (Access::Host(client), Lifecycle::Uninstall { keep_data }) => {
            client.uninstall(name, *keep_data).await?
        }
        (Access::Offline { catalog, .. }, Lifecycle::Start) => {
            offline_status(catalog.set_stopped(name, false)?)
        }
        (Access::Offline { catalog, .. }, Lifecycle::Stop) => {
            offline_status(catalog.set_stopped(name, true)?)
        }
        (Access::Offline { catalog, .. }, Lifecycle::Uninstall { keep_data }) => {
            offline_status(catalog.uninstall(name, *keep_data)?)
        }
    };
    let done = match action {
        Lifecycle::Start => "started",
        Lifecycle::Stop => "stopped",
        Lifecycle::Uninstall { keep_data: true } => "uninstalled (data kept)",
        Lifecycle::Uninstall { keep_data: false } => "uninstalled",
    };
    println!("{done} {}", status.name);
    Ok(())
}

pub(super) async fn rollback(root: &Target, name: &str, data: bool) -> Result<()> {
    let status = match access(root)? {
        Access::Host(client) => client.rollback(name, data).await?,
        Access::Offline { catalog, .. } => {
            let package = catalog.previous(name)?.ok_or_else(|| {
                anyhow::anyhow!("{name} has no earlier version kept (one is kept at each upgrade)")
            })?;
            let saved = match data {
                true => Some(
                    catalog
                        .take_previous_data(name)?
                        .ok_or_else(|| anyhow::anyhow!("{name} has no copy of its folder kept"))?,
                ),
                false => None,
            };
            let (_, new) = catalog.upgrade(&package)?;
            if let Some(saved) = saved {
                catalog.restore_data(name, &saved)?;
            }
            offline_status(new)
        }
    };
    println!(
        "rolled {} back to {} ({}){}",
        status.name,
        status.version,
        status.digest,
        if data {
            ", its folder as that upgrade found it"
        } else {
            ""
        }
    );
    Ok(())
}
