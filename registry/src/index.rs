//! A namespace's index: the packages published there, kept by `locker
//! publish` as one small JSON document at `NAMESPACE/locker-index:latest`,
//! so that `locker search` finds packages in registries that offer no
//! catalog (`/v2/_catalog`, which hosted registries often close).
//!
//! The index is a hint, not a source of trust: nothing in it is signed,
//! and search checks each package it names (its newest release's
//! signature and manifest) as if it had found it any other way. Two
//! publishers updating one namespace's index at the same moment may lose
//! one entry; publishing again puts it back.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use oci_client::client::{Config, ImageLayer};
use serde::{Deserialize, Serialize};

use crate::client::{Reference, Registry, parse_reference};

/// The repository, in each namespace, that holds its index.
pub const INDEX_REPOSITORY: &str = "locker-index";
const INDEX_TAG: &str = "latest";
const INDEX_MEDIA_TYPE: &str = "application/vnd.dev.locker.index.v1+json";
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// An index larger than this is refused (some thousands of packages fit).
const MAX_INDEX: u64 = 4 << 20;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// By package name.
    pub packages: BTreeMap<String, Entry>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub versions: Vec<String>,
    pub provides: Vec<String>,
    /// The fingerprint that signed the newest version published.
    pub publisher: String,
}

/// Whether a repository (`namespace/name`) is an index, not a package.
pub fn is_index(repository: &str) -> bool {
    repository.rsplit('/').next() == Some(INDEX_REPOSITORY)
}

fn reference(registry_name: &str, namespace: &str) -> Result<Reference> {
    parse_reference(&format!(
        "{registry_name}/{namespace}/{INDEX_REPOSITORY}:{INDEX_TAG}"
    ))
}

/// The namespace's index; an error naming it when there is none.
pub async fn read(registry: &Registry, registry_name: &str, namespace: &str) -> Result<Index> {
    let at = reference(registry_name, namespace)?;
    let bytes = registry
        .pull_document(&at, MAX_INDEX)
        .await?
        .with_context(|| {
            format!("{registry_name}/{namespace} has no index ({at}): nothing was published there with `locker publish`")
        })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{at} is not an index"))
}

/// Records one published version in the namespace's index.
pub async fn record(
    registry: &Registry,
    registry_name: &str,
    namespace: &str,
    name: &str,
    version: &str,
    provides: &[String],
    publisher: &str,
) -> Result<()> {
    let at = reference(registry_name, namespace)?;
    let mut index: Index = match registry.pull_document(&at, MAX_INDEX).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => Index::default(),
    };
    let entry = index.packages.entry(name.to_string()).or_default();
    if !entry.versions.iter().any(|v| v == version) {
        entry.versions.push(version.to_string());
    }
    entry.provides = provides.to_vec();
    entry.publisher = publisher.to_string();
    let body = serde_json::to_vec_pretty(&index)?;
    registry
        .put(
            &at,
            ImageLayer::new(body, INDEX_MEDIA_TYPE.to_string(), None),
            Config::new(b"{}".to_vec(), EMPTY_CONFIG_MEDIA_TYPE.to_string(), None),
            None,
        )
        .await
        .with_context(|| format!("cannot update the index {at}"))?;
    Ok(())
}
