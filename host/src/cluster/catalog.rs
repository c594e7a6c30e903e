//! The catalog kept in step across hosts: `locker-catalog` holds, per
//! service, what the owner last made of it through any host (installed as
//! this component with this manifest, stopped or not; or uninstalled), and
//! `locker-packages` holds the components by digest.
//!
//! A change the owner makes through a host is made there first (checked as
//! always), then written to the bucket; every host watches the bucket and
//! follows what it did not do itself. At join, a host first follows the
//! bucket, then writes the services only it has (a first host fills the
//! bucket; a host that was down while a service was uninstalled removes
//! it, because the bucket remembers the uninstall).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{kv, object_store};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::buckets;
use super::watch::Follow;
use crate::package::{Origin, Package};
use crate::store::InstalledService;
use crate::supervisor::{Followed, Supervisor};

/// How often what failed is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// What the owner last made of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    Installed {
        digest: String,
        /// The manifest as installed (its schemas inside).
        manifest: String,
        origin: Option<Origin>,
        stopped: bool,
    },
    Uninstalled {
        keep_data: bool,
    },
}

impl Entry {
    fn of(service: &InstalledService) -> Entry {
        Entry::Installed {
            digest: service.digest.clone(),
            manifest: service.manifest.to_toml(),
            origin: service.origin.clone(),
            stopped: service.stopped,
        }
    }
}

pub struct CatalogSync {
    pub supervisor: Arc<Supervisor>,
    pub kv: kv::Store,
    pub packages: object_store::ObjectStore,
    /// The last entry seen in the bucket, per service.
    seen: HashMap<String, Entry>,
    /// Services whose entry could not be followed yet, or whose change
    /// here could not be written yet: tried again each second.
    to_follow: BTreeSet<String>,
    to_publish: BTreeSet<String>,
}

impl CatalogSync {
    pub fn new(
        supervisor: Arc<Supervisor>,
        kv: kv::Store,
        packages: object_store::ObjectStore,
    ) -> CatalogSync {
        CatalogSync {
            supervisor,
            kv,
            packages,
            seen: HashMap::new(),
            to_follow: BTreeSet::new(),
            to_publish: BTreeSet::new(),
        }
    }

    /// Follows the bucket as it is, then adds what only this host has.
    /// Returns the revision to watch from.
    pub async fn join(&mut self) -> Result<u64> {
        let (names, from) = buckets::snapshot(&self.kv).await?;
        for name in &names {
            if let Some(value) = self.kv.get(name).await.context("cannot read the catalog")? {
                self.follow(name, &value).await;
            }
        }
        for service in self.supervisor.statuses() {
            if !names.contains(&service.name) {
                self.publish(&service.name).await;
            }
        }
        Ok(from)
    }

    /// Follows the bucket and writes the owner's changes made here, in one
    /// order; runs until the connection ends.
    pub async fn run(mut self, from: u64, mut announced: UnboundedReceiver<String>) -> Result<()> {
        let mut changes = Follow::from(self.kv.clone(), from);
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                change = changes.next() => {
                    if change.operation == kv::Operation::Put {
                        self.follow(&change.key, &change.value).await;
                    }
                }
                Some(name) = announced.recv() => self.publish(&name).await,
                _ = retry.tick() => self.retry().await,
            }
        }
    }

    async fn retry(&mut self) {
        for name in std::mem::take(&mut self.to_publish) {
            self.publish(&name).await;
        }
        for name in std::mem::take(&mut self.to_follow) {
            match self.kv.get(&name).await {
                Ok(Some(value)) => self.follow(&name, &value).await,
                Ok(None) => {}
                Err(_) => {
                    self.to_follow.insert(name);
                }
            }
        }
    }

    /// Makes this host's service `name` what `value` says.
    async fn follow(&mut self, name: &str, value: &[u8]) {
        let entry: Entry = match serde_json::from_slice(value) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(
                    service = name,
                    "the cluster's catalog entry is unreadable: {error}"
                );
                return;
            }
        };
        self.seen.insert(name.to_string(), entry.clone());
        if let Err(error) = self.make(name, entry).await {
            tracing::error!(
                service = name,
                "cannot follow the cluster's catalog yet: {error:#}"
            );
            self.to_follow.insert(name.to_string());
        }
    }

    async fn make(&self, name: &str, entry: Entry) -> Result<()> {
        let here = self.supervisor.service(name).map(|s| s.installed().clone());
        match (entry, here) {
            (Entry::Uninstalled { keep_data }, Some(_)) => {
                let name = name.to_string();
                self.supervisor
                    .follow(Followed::Uninstall { name, keep_data })
                    .await
            }
            (Entry::Uninstalled { .. }, None) => Ok(()),
            (wanted @ Entry::Installed { .. }, here) => {
                let Entry::Installed {
                    digest,
                    manifest,
                    origin,
                    stopped,
                } = &wanted
                else {
                    unreachable!()
                };
                match &here {
                    Some(here) if here.digest == *digest => {}
                    _ => {
                        let component = self.component(digest).await?;
                        let package = Package::installed(
                            manifest,
                            component,
                            origin.clone(),
                            "the cluster's catalog",
                        )?;
                        let change = match here {
                            Some(_) => Followed::Upgrade(package),
                            None => Followed::Install(package),
                        };
                        self.supervisor.follow(change).await?;
                    }
                }
                let now = self.supervisor.service(name).map(|s| s.installed().stopped);
                if now != Some(*stopped) {
                    let (name, stopped) = (name.to_string(), *stopped);
                    self.supervisor
                        .follow(Followed::Stopped { name, stopped })
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// Writes this host's state of `name` to the bucket (until it could).
    async fn publish(&mut self, name: &str) {
        if let Err(error) = self.try_publish(name).await {
            tracing::warn!(
                service = name,
                "the other hosts do not know of this change yet: {error:#}"
            );
            self.to_publish.insert(name.to_string());
        }
    }

    /// Writes this host's state of `name` to the bucket, unless it is
    /// there already.
    async fn try_publish(&mut self, name: &str) -> Result<()> {
        let entry = match self.supervisor.service(name) {
            Some(service) => {
                let installed = service.installed().clone();
                self.upload(&installed).await?;
                Entry::of(&installed)
            }
            None => Entry::Uninstalled {
                keep_data: self.supervisor.root.work_dir(name).exists(),
            },
        };
        if self.seen.get(name) == Some(&entry) {
            return Ok(());
        }
        let value = serde_json::to_vec(&entry)?;
        self.kv
            .put(name, value.into())
            .await
            .with_context(|| format!("cannot write {name} to the cluster's catalog"))?;
        self.seen.insert(name.to_string(), entry);
        Ok(())
    }

    /// Puts the service's component in the packages bucket, if not there.
    async fn upload(&self, service: &InstalledService) -> Result<()> {
        if self.packages.info(&service.digest).await.is_ok() {
            return Ok(());
        }
        let path = self.supervisor.catalog.component_path(service);
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        self.packages
            .put(service.digest.as_str(), &mut file)
            .await
            .with_context(|| format!("cannot upload the component of {}", service.manifest.name))?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Vec<u8>> {
        let mut object = self
            .packages
            .get(digest)
            .await
            .with_context(|| format!("the cluster has no component {digest}"))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .with_context(|| format!("cannot download the component {digest}"))?;
        // Checked again by the install: a component that is not what the
        // catalog says is refused.
        let got = crate::package::component::digest_of(&bytes);
        anyhow::ensure!(
            got == digest,
            "the cluster's component {digest} arrived as {got}"
        );
        Ok(bytes)
    }
}
