//! The publisher keys pinned for each package, kept in step across hosts
//! in `locker-trust`: a key pinned by an install through one host guards
//! upgrades through every host, and `locker trust remove` through any
//! forgets it on all.

use std::sync::Arc;

use anyhow::Result;

use super::mirror::{Mirrored, decoded, encoded};
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
        encoded(self.store().pinned(package)?)
    }

    async fn follow(&self, package: &String, record: Option<&[u8]>) -> Result<()> {
        let pinned = decoded::<TrustedPublisher>(record)?;
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
