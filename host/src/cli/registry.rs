//! The owner's side of a registry: `locker install REGISTRY/NS/NAME[:VERSION]`,
//! `locker upgrade NAME`, `locker search`, `locker trust` and `locker
//! registry login`.
//!
//! An install from a registry is an offer, then an accepted offer. The
//! offer (made by the serving host, or here when none serves the root)
//! says who signed the package, how that key stands with this locker, and
//! what the package may reach; the owner accepts it at the terminal, with
//! `--yes`, or with `--trust FINGERPRINT` (the key they were told of). The
//! accepted offer names the manifest's digest, so what is installed is
//! exactly what was shown, and the host pulls and checks it all again
//! before anything is written (`crate::distribution`). An upgrade that
//! reaches more than the version installed asks again, naming what is new.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::Target;
use super::access::{Access, access, offline_status};
use crate::api::{
    AcceptedOffer, Found, LoginRequest, Offer, OfferRequest, ServiceStatus, Standing, UpgradeOffer,
    UpgradeOfferRequest,
};
use crate::distribution::{Distribution, credentials};
use crate::store::{Catalog, RegistryLogins, SqliteCatalog, TrustStore};

/// How the owner settles an offer.
pub(super) struct Consent {
    pub yes: bool,
    pub trust: Option<String>,
    pub insecure: bool,
    pub allow_unsigned: bool,
    /// The manifest for an unsigned component (`--manifest FILE`'s text).
    pub manifest: Option<String>,
}

/// `locker registry …`: the logins the host uses to pull.
#[derive(Subcommand)]
pub(super) enum RegistryAction {
    /// Keep a login to a registry in the root, for the host's pulls (the
    /// password from standard input or a prompt that does not echo).
    Login {
        /// `registry.example`, `localhost:5000`.
        registry: String,
        #[arg(long, short)]
        username: String,
        /// Write it to Docker's config file instead (~/.docker/config.json),
        /// where `locker publish`, docker, oras and wkg find it.
        #[arg(long)]
        docker: bool,
    },
    /// Forget the login kept for a registry.
    Logout { registry: String },
    /// The registries the host logs in to.
    Logins {
        #[arg(long)]
        json: bool,
    },
}

/// The root's stores a pull needs, when no host serves it.
struct OfflineStores {
    trust: TrustStore,
    logins: RegistryLogins,
    downloads: std::path::PathBuf,
}

impl OfflineStores {
    fn open(catalog: &SqliteCatalog) -> Result<OfflineStores> {
        let root = catalog.root();
        Ok(OfflineStores {
            trust: TrustStore::open(root)?,
            logins: RegistryLogins::open(root)?,
            downloads: root.default_cache_dir().join("downloads"),
        })
    }

    fn distribution(&self) -> Distribution<'_> {
        Distribution {
            trust: &self.trust,
            logins: &self.logins,
            downloads: self.downloads.clone(),
        }
    }
}

pub(super) async fn install(target: &Target, reference: &str, consent: &Consent) -> Result<()> {
    let access = access(target)?;
    let request = OfferRequest {
        reference: reference.to_string(),
        insecure: consent.insecure,
        allow_unsigned: consent.allow_unsigned,
        manifest: consent.manifest.clone(),
    };
    let status = match &access {
        Access::Host(client) => {
            let offer = client.offer(&request).await?;
            let accepted = accept_install(&offer, consent)?;
            client.install_offer(&accepted).await?
        }
        Access::Offline { catalog, .. } => {
            let stores = OfflineStores::open(catalog)?;
            let distribution = stores.distribution();
            let offer = distribution.offer(&request, None).await?;
            let accepted = accept_install(&offer, consent)?;
            let fetched = distribution.fetch(&accepted, None).await?;
            let installed = fetched
                .commit(&stores.trust, async |package| {
                    tokio::task::block_in_place(|| catalog.install(&package))
                })
                .await?;
            offline_status(installed)
        }
    };
    println!(
        "installed {} {} from {}, {}",
        status.name,
        status.version,
        origin_of(&status),
        signer_of(&status)
    );
    Ok(())
}

fn origin_of(status: &ServiceStatus) -> String {
    status
        .origin
        .as_ref()
        .map_or_else(|| "a package folder".into(), |o| o.reference.clone())
}

fn signer_of(status: &ServiceStatus) -> String {
    match status.origin.as_ref().and_then(|o| o.publisher.as_deref()) {
        Some(fingerprint) => format!("signed by {fingerprint}"),
        None => "UNSIGNED".into(),
    }
}

/// Shows an install offer and settles it with the owner.
fn accept_install(offer: &Offer, consent: &Consent) -> Result<AcceptedOffer> {
    println!(
        "{} {} ({}) from {}",
        offer.name, offer.version, offer.kind, offer.source
    );
    match (&offer.standing, &offer.publisher) {
        (Standing::FirstInstall, Some(fingerprint)) => {
            println!(
                "is signed by a publisher this locker does not know yet:\n  {fingerprint}\nCompare it with the one the publisher gave you; every later version must be signed by this key."
            );
        }
        (Standing::Pinned, Some(fingerprint)) => {
            println!("is signed by {fingerprint}, the key trusted for it");
        }
        _ => {
            println!("is NOT signed: nothing says who made it, and later versions are not checked")
        }
    }
    if let (Some(expected), Some(fingerprint)) = (&consent.trust, &offer.publisher)
        && expected != fingerprint
    {
        bail!(
            "{} is signed by {fingerprint}, not by {expected}; nothing was installed",
            offer.reference
        );
    }
    if consent.trust.is_some() && offer.publisher.is_none() {
        bail!(
            "{} is not signed: --trust names a key it does not have",
            offer.reference
        );
    }
    print_reach("It may reach", &offer.reach.lines());
    let asks = offer.standing == Standing::FirstInstall || !offer.reach.is_empty();
    if asks && consent.trust.is_none() {
        confirm(
            "Install it?",
            consent.yes,
            &match &offer.publisher {
                Some(fingerprint) if offer.standing == Standing::FirstInstall => format!(
                    "not installed: trust the publisher with --yes, or pin the key you were given with --trust {fingerprint}"
                ),
                _ => "not installed: accept what it may reach with --yes".into(),
            },
        )?;
    }
    Ok(accepted(offer, consent))
}

fn accepted(offer: &Offer, consent: &Consent) -> AcceptedOffer {
    AcceptedOffer {
        reference: offer.reference.clone(),
        publisher: offer.publisher.clone(),
        reach: offer.reach.clone(),
        insecure: consent.insecure,
        allow_unsigned: consent.allow_unsigned,
        manifest: offer.manifest.clone().or_else(|| consent.manifest.clone()),
    }
}

fn print_reach(heading: &str, lines: &[String]) {
    if lines.is_empty() {
        println!("{heading}: nothing beyond its own folder");
        return;
    }
    println!("{heading}:");
    for line in lines {
        println!("  {line}");
    }
}

/// The owner's yes: `--yes`, or an answer at the terminal; without either,
/// `refusal`.
fn confirm(question: &str, yes: bool, refusal: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{refusal}");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("{refusal}");
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
/// signed by the key pinned for it; never a downgrade. What it reaches
/// beyond the installed version is shown and must be accepted.
pub(super) async fn upgrade(
    target: &Target,
    name: &str,
    request: &UpgradeOfferRequest,
    yes: bool,
) -> Result<()> {
    let access = access(target)?;
    let consent = |upgrade: &UpgradeOffer| -> Result<Option<AcceptedOffer>> {
        let Some(offer) = &upgrade.offer else {
            return Ok(None);
        };
        if let (Standing::FirstInstall, Some(fingerprint)) = (&offer.standing, &offer.publisher) {
            println!(
                "{name} {} is signed by a publisher this locker does not know yet:\n  {fingerprint}\nEvery later version must be signed by this key.",
                offer.version
            );
            confirm(
                "Trust this publisher and upgrade?",
                yes,
                "not upgraded: trust the publisher with --yes",
            )?;
        }
        if !offer.widens.is_empty() {
            print_reach(
                &format!(
                    "{name} {} reaches more than {} does",
                    offer.version,
                    offer
                        .installed
                        .as_deref()
                        .unwrap_or("the installed version")
                ),
                &offer.widens.lines(),
            );
            confirm(
                "Upgrade?",
                yes,
                "not upgraded: it reaches more than the installed version; accept that with --yes",
            )?;
        }
        Ok(Some(accepted(
            offer,
            &Consent {
                yes,
                trust: None,
                insecure: request.insecure,
                allow_unsigned: request.allow_unsigned,
                manifest: None,
            },
        )))
    };
    let (upgrade, status) = match &access {
        Access::Host(client) => {
            let upgrade = client.upgrade_offer(name, request).await?;
            let status = match consent(&upgrade)? {
                Some(accepted) => Some(client.upgrade_to_offer(name, &accepted).await?),
                None => None,
            };
            (upgrade, status)
        }
        Access::Offline { catalog, .. } => {
            let stores = OfflineStores::open(catalog)?;
            let distribution = stores.distribution();
            let installed = catalog.require(name)?;
            let upgrade = distribution.upgrade_offer(&installed, request).await?;
            let status = match consent(&upgrade)? {
                Some(accepted) => {
                    let fetched = distribution
                        .fetch(&accepted, Some(&installed.manifest))
                        .await?;
                    let (_, new) = fetched
                        .commit(&stores.trust, async |package| {
                            tokio::task::block_in_place(|| catalog.upgrade(&package))
                        })
                        .await?;
                    Some(offline_status(new))
                }
                None => None,
            };
            (upgrade, status)
        }
    };
    match (status, upgrade.offer) {
        (Some(status), Some(offer)) => println!(
            "upgraded {name} {} to {} from {}, {}",
            offer.installed.unwrap_or_default(),
            status.version,
            origin_of(&status),
            signer_of(&status)
        ),
        _ => println!(
            "{name} is the newest there is ({})",
            upgrade.newest.unwrap_or_default()
        ),
    }
    Ok(())
}

/// `locker search [TYPE] --registry R`: the newest signed version of each
/// package in the registry's catalog (or, for `R/NAMESPACE`, the
/// namespace's index), with the types it provides and who signed it. A
/// package whose signature does not hold is named as refused, not shown.
pub(super) async fn search(
    target: &Target,
    service_type: Option<&str>,
    registry: &str,
    insecure: bool,
    json: bool,
) -> Result<()> {
    let served = target.url.is_some() || target.root.join("host.json").exists();
    let (found, refused) = match served.then(|| access(target)).transpose()? {
        Some(Access::Host(client)) => client.search(registry, service_type, insecure).await?,
        Some(Access::Offline { catalog, .. }) => {
            let stores = OfflineStores::open(&catalog)?;
            stores
                .distribution()
                .search(registry, service_type, insecure)
                .await?
        }
        // No locker here: the registry as Docker's login reaches it.
        None => {
            crate::distribution::search(
                |host| {
                    Ok(locker_registry::client::Registry::new(
                        host,
                        insecure,
                        credentials::login_for(host, None)?,
                    ))
                },
                registry,
                service_type,
            )
            .await?
        }
    };
    if !json {
        for refusal in &refused {
            eprintln!("{refusal}");
        }
    }
    print_found(&found, service_type, json)
}

fn print_found(found: &[Found], service_type: Option<&str>, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!(
            "no signed package there provides {}",
            service_type.unwrap_or("anything")
        );
    }
    for package in found {
        println!(
            "{}  {}  provides {}  signed by {}",
            package.reference,
            package.kind,
            package.provides.join(", "),
            package.publisher
        );
    }
    Ok(())
}

pub(super) async fn registry(target: &Target, action: RegistryAction) -> Result<()> {
    match action {
        RegistryAction::Login {
            registry,
            username,
            docker,
        } => {
            let password = super::config::read_value(&format!("password for {registry}: "), true)?;
            if docker {
                let path = credentials::save_docker_login(&registry, &username, &password)?;
                println!(
                    "logged in to {registry} as {username} (in {})",
                    path.display()
                );
                return Ok(());
            }
            match access(target)? {
                Access::Host(client) => {
                    client
                        .save_registry_login(
                            &registry,
                            &LoginRequest {
                                username: username.clone(),
                                password,
                            },
                        )
                        .await?
                }
                Access::Offline { catalog, .. } => {
                    RegistryLogins::open(catalog.root())?.save(&registry, &username, &password)?
                }
            }
            println!("logged in to {registry} as {username} (kept in the locker root, sealed)");
        }
        RegistryAction::Logout { registry } => {
            match access(target)? {
                Access::Host(client) => client.remove_registry_login(&registry).await?,
                Access::Offline { catalog, .. } => {
                    if !RegistryLogins::open(catalog.root())?.remove(&registry)? {
                        bail!("no login is kept for {registry}");
                    }
                }
            }
            println!("forgot the login to {registry}");
        }
        RegistryAction::Logins { json } => {
            let logins = match access(target)? {
                Access::Host(client) => client.registry_logins().await?,
                Access::Offline { catalog, .. } => RegistryLogins::open(catalog.root())?.list()?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&logins)?);
            } else if logins.is_empty() {
                println!("no registry login is kept (`locker registry login REGISTRY -u USER`)");
            }
            if !json {
                for login in logins {
                    println!(
                        "{:<32} {}  since {}",
                        login.registry, login.username, login.saved_at
                    );
                }
            }
        }
    }
    Ok(())
}

/// Reads `--manifest FILE` for an unsigned component.
pub(super) fn manifest_text(path: Option<&std::path::Path>) -> Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    })
    .transpose()
}
