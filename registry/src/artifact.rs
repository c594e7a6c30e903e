//! A Locker package as an OCI artifact in the standard Wasm layout (the
//! CNCF "Wasm OCI artifact": config `application/vnd.wasm.config.v0+json`,
//! one `application/wasm` layer), so `wkg oci pull` gets a runnable
//! component. What only Locker reads travels in the manifest's annotations:
//! `locker.toml` as `dev.locker.manifest`, each schema file it names as
//! `dev.locker.schema/<path>` (both base64: `oci-client` writes manifests as
//! OLPC canonical JSON, which leaves newlines in strings raw, and registries
//! refuse those), and the publisher's signed statement over all of it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::keys::{PublicKey, PublisherKey};
use crate::statement::{Blob, SignatureError, Statement, sha256, verify};

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_MEDIA_TYPE: &str = "application/wasm";
pub const MANIFEST_ANNOTATION: &str = "dev.locker.manifest";
pub const SCHEMA_ANNOTATION_PREFIX: &str = "dev.locker.schema/";
const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// What is pushed: the config blob, the component layer, the annotations.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub config: Vec<u8>,
    pub component: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// What a package's folder holds, as the registry carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageFiles {
    pub name: String,
    pub version: String,
    /// `locker.toml`, as written.
    pub manifest: String,
    /// Schema files by their path in the package folder.
    pub schemas: BTreeMap<String, String>,
}

/// The config of the Wasm OCI artifact layout.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
}

impl Artifact {
    pub fn config_blob(&self) -> Blob {
        Blob {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: sha256(&self.config),
            size: self.config.len() as u64,
        }
    }

    pub fn component_blob(&self) -> Blob {
        Blob {
            media_type: WASM_MEDIA_TYPE.into(),
            digest: sha256(&self.component),
            size: self.component.len() as u64,
        }
    }
}

/// Packs and signs a package.
pub fn pack(
    files: &PackageFiles,
    component: Vec<u8>,
    created: &str,
    key: &PublisherKey,
) -> Result<Artifact> {
    let config = serde_json::to_vec(&WasmConfig {
        created,
        architecture: "wasm",
        os: "wasip2",
        layer_digests: vec![sha256(&component)],
    })?;
    let mut locker = BTreeMap::new();
    locker.insert(
        MANIFEST_ANNOTATION.to_string(),
        STANDARD.encode(&files.manifest),
    );
    for (path, schema) in &files.schemas {
        locker.insert(
            format!("{SCHEMA_ANNOTATION_PREFIX}{path}"),
            STANDARD.encode(schema),
        );
    }
    let mut artifact = Artifact {
        config,
        component,
        annotations: BTreeMap::new(),
    };
    let statement = Statement::new(
        &files.name,
        &files.version,
        artifact.config_blob(),
        vec![artifact.component_blob()],
        &locker,
    );
    artifact.annotations = locker;
    artifact.annotations.extend(statement.sign(key)?);
    artifact
        .annotations
        .insert(VERSION_ANNOTATION.into(), files.version.clone());
    artifact
        .annotations
        .insert(TITLE_ANNOTATION.into(), files.name.clone());
    Ok(artifact)
}

/// A pulled manifest's parts, checked: the signature (against `pinned`, the
/// key trusted for the package, when there is one), then what it describes.
/// The blobs themselves are checked against the returned digests as they
/// are downloaded.
pub fn open(
    annotations: &BTreeMap<String, String>,
    config: &Blob,
    layers: &[Blob],
    pinned: Option<&PublicKey>,
) -> Result<(PackageFiles, Statement, PublicKey), SignatureError> {
    let (statement, key) = verify(annotations, config, layers, pinned)?;
    let files = files_of(annotations, &statement)
        .map_err(|e| SignatureError::BadStatement(e.to_string()))?;
    Ok((files, statement, key))
}

/// The package files of verified annotations.
fn files_of(annotations: &BTreeMap<String, String>, statement: &Statement) -> Result<PackageFiles> {
    let Some(manifest) = annotations.get(MANIFEST_ANNOTATION) else {
        bail!("it carries no locker.toml (`{MANIFEST_ANNOTATION}`)");
    };
    if statement.layers.len() != 1 || statement.layers[0].media_type != WASM_MEDIA_TYPE {
        bail!("it is not one `{WASM_MEDIA_TYPE}` layer");
    }
    let text = |name: &str, value: &str| {
        STANDARD
            .decode(value)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .with_context(|| format!("its annotation {name} is not base64 of UTF-8 text"))
    };
    let mut schemas = BTreeMap::new();
    for (name, value) in annotations {
        if let Some(path) = name.strip_prefix(SCHEMA_ANNOTATION_PREFIX) {
            schemas.insert(path.to_string(), text(name, value)?);
        }
    }
    Ok(PackageFiles {
        name: statement.package.clone(),
        version: statement.version.clone(),
        manifest: text(MANIFEST_ANNOTATION, manifest)?,
        schemas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_package_opens_as_it_was() {
        let key = PublisherKey::generate().unwrap();
        let files = PackageFiles {
            name: "notes".into(),
            version: "0.2.0".into(),
            manifest: "name = \"notes\"\n".into(),
            schemas: [("schemas/note.json".to_string(), "{}".to_string())].into(),
        };
        let artifact = pack(&files, b"\0asm".to_vec(), "2026-12-01T00:00:00Z", &key).unwrap();
        assert_eq!(artifact.annotations[VERSION_ANNOTATION], "0.2.0");
        let config: serde_json::Value = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!(config["layerDigests"][0], sha256(b"\0asm"));
        let (opened, statement, by) = open(
            &artifact.annotations,
            &artifact.config_blob(),
            &[artifact.component_blob()],
            Some(&key.public()),
        )
        .unwrap();
        assert_eq!(opened, files);
        assert_eq!(statement.layers[0].digest, sha256(b"\0asm"));
        assert_eq!(by, key.public());
    }
}
