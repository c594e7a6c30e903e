//! `locker config`: a service's settings, through the serving host or
//! directly in the root. A secret is read from standard input (or typed at
//! a prompt that does not echo), never taken from the command line, and
//! never printed: only whether it is set.

use std::io::{IsTerminal, Read};

use anyhow::{Context, Result, bail};

use super::Target;
use super::access::{Access, access};
use crate::api::ConfigEntry;
use crate::capabilities::config::entries;
use crate::store::{Catalog, ConfigStore};
use crate::supervisor::config::change;

pub(super) async fn show(root: &Target, name: &str, json: bool) -> Result<()> {
    let entries = config_of(&access(root)?, name).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("service {name:?} has no settings");
        return Ok(());
    }
    println!("{:<20} {:<30} ABOUT", "KEY", "VALUE");
    for entry in &entries {
        println!("{:<20} {:<30} {}", entry.key, shown(entry), about(entry));
    }
    Ok(())
}

pub(super) async fn set(root: &Target, name: &str, key: &str, value: Option<String>) -> Result<()> {
    let access = access(root)?;
    let declared = config_of(&access, name).await?;
    let secret = declared
        .iter()
        .any(|entry| entry.key == key && entry.secret);
    let value = match value {
        Some(_) if secret => bail!(
            "{key:?} is a secret: it is never taken from the command line (the shell's history \
             and the process list would keep it); pipe it in, or type it at the prompt: \
             `locker config set {name} {key}`"
        ),
        Some(value) => value,
        None => read_value(&format!("{key} of {name}: "), secret)?,
    };
    let entry = write(&access, name, key, Some(&value)).await?;
    println!("set {key} of {name}");
    if let Some(entry) = entry {
        for host in &entry.opens {
            println!("  {name} may reach {host} now");
        }
    }
    Ok(())
}

pub(super) async fn unset(root: &Target, name: &str, key: &str) -> Result<()> {
    let entry = write(&access(root)?, name, key, None).await?;
    match entry.and_then(|entry| entry.value.or(entry.default)) {
        Some(default) => println!("unset {key} of {name} (it reads its default, {default:?})"),
        None => println!("unset {key} of {name}"),
    }
    Ok(())
}

pub(super) async fn config_of(access: &Access, name: &str) -> Result<Vec<ConfigEntry>> {
    match access {
        Access::Host(client) => client.config(name).await,
        Access::Offline { catalog, .. } => {
            let installed = catalog.require(name)?;
            let stored = ConfigStore::open(catalog.root())?.values(name)?;
            Ok(entries(&installed.manifest, &stored))
        }
    }
}

async fn write(
    access: &Access,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<Option<ConfigEntry>> {
    match access {
        Access::Host(client) => client.set_config(name, key, value).await,
        Access::Offline { catalog, .. } => {
            let installed = catalog.require(name)?;
            let store = ConfigStore::open(catalog.root())?;
            change(&store, &installed.manifest, key, value)
        }
    }
}

/// The value from standard input: typed at a prompt (without echo for a
/// secret), or piped in (one trailing newline dropped).
pub(super) fn read_value(prompt: &str, secret: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return if secret {
            rpassword::prompt_password(prompt).context("cannot read the value")
        } else {
            eprint!("{prompt}");
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("cannot read the value")?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        };
    }
    let mut value = String::new();
    stdin
        .lock()
        .read_to_string(&mut value)
        .context("cannot read the value from standard input")?;
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value);
    Ok(value.to_string())
}

fn shown(entry: &ConfigEntry) -> String {
    match (&entry.value, entry.secret, entry.set) {
        (_, true, true) => "(secret, set)".into(),
        (_, true, false) => "(secret, not set)".into(),
        (Some(value), false, true) => value.clone(),
        (Some(value), false, false) => format!("{value} (default)"),
        (None, false, _) => "(not set)".into(),
    }
}

fn about(entry: &ConfigEntry) -> String {
    let mut about = Vec::new();
    if !entry.active {
        about.push("inactive: kept from an earlier version, until uninstall".to_string());
    }
    if entry.required && !entry.set {
        about.push("REQUIRED: the service runs once it is set".to_string());
    } else if entry.required {
        about.push("required".to_string());
    }
    if let Some(description) = &entry.description {
        about.push(description.clone());
    }
    for host in &entry.opens {
        about.push(format!("opens {host}"));
    }
    about.join(" · ")
}
