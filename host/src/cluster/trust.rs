//! The publisher keys pinned for each package, kept in step across hosts
//! in `locker-trust`: a key pinned by an install through one host guards
//! upgrades through every host, and `locker trust remove` through any
//! forgets it on all.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::mirror::Mirrored;
use crate::store::TrustStore;
use crate::store::TrustedPublisher;
use crate::supervisor::Supervisor;

pub struct Trusted(pub Arc<Supervisor>);

impl Trusted {
    fn store(&self) -> &TrustStore {
        &self.0.trust
    }
}

impl Mirrored for Trusted {
    /// A package's name.
    type Item = String;

    fn key(package: &String) -> String {
        package.clone()
    }

    fn item(key: &str) -> Option<String> {
        Some(key.to_string())
    }

    fn local(&self, package: &String) -> Result<Option<Vec<u8>>> {
        Ok(self
            .store()
            .pinned(package)?
            .map(|pinned| serde_json::to_vec(&pinned))
            .transpose()?)
    }

    async fn follow(&self, package: &String, record: Option<&[u8]>) -> Result<()> {
        let pinned: Option<TrustedPublisher> = record
            .map(serde_json::from_slice)
            .transpose()
            .context("an unreadable pin from the cluster")?;
        self.store().follow(package, pinned.as_ref())
    }

    fn items(&self) -> Result<Vec<String>> {
        Ok(self
            .store()
            .list()?
            .into_iter()
            .map(|pinned| pinned.package)
            .collect())
    }
}
