//! What a publisher signs: the package, its version, the digest and size
//! of every blob of the artifact, and the digest of each of Locker's own
//! annotations (`locker.toml` and its schemas travel as annotations, so the
//! artifact stays the standard Wasm layout: a config and one `application/
//! wasm` layer, which `wkg oci pull` takes). The statement itself is the
//! annotation `dev.locker.statement`, signed as those exact bytes: registries
//! without the referrers API carry it like any annotation, and the verifier
//! needs no canonical form. It checks the signature over the text, then that
//! the text describes exactly the manifest it came in.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{PublicKey, PublisherKey};

pub const STATEMENT_ANNOTATION: &str = "dev.locker.statement";
pub const SIGNATURE_ANNOTATION: &str = "dev.locker.signature";
pub const PUBLISHER_ANNOTATION: &str = "dev.locker.publisher";
/// Locker's own annotations all start so; each must be signed.
pub const LOCKER_ANNOTATIONS: &str = "dev.locker.";
const STATEMENT_KIND: &str = "locker-package-statement/v1";

/// One blob of the artifact, as the OCI manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub kind: String,
    pub package: String,
    pub version: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// `sha256:` digests of the values of Locker's annotations, by name.
    pub annotations: BTreeMap<String, String>,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Why a package's signature does not hold. Each names what failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error(
        "the package is not signed (it has no `{STATEMENT_ANNOTATION}`); install it with --allow-unsigned only if you trust where it came from"
    )]
    Unsigned,
    #[error("the publisher key in the package is not an Ed25519 key")]
    BadKey,
    #[error("the signature does not verify with the key the package names ({0})")]
    BadSignature(String),
    #[error("the signed statement is not readable: {0}")]
    BadStatement(String),
    #[error("the manifest does not match what was signed: {0}")]
    Tampered(String),
    #[error("the package is signed by {found}, not by {pinned}, the key trusted for it")]
    WrongKey { pinned: String, found: String },
}

impl Statement {
    /// The statement of an artifact whose Locker annotations are `annotations`.
    pub fn new(
        package: &str,
        version: &str,
        config: Blob,
        layers: Vec<Blob>,
        annotations: &BTreeMap<String, String>,
    ) -> Statement {
        Statement {
            kind: STATEMENT_KIND.into(),
            package: package.into(),
            version: version.into(),
            config,
            layers,
            annotations: annotations
                .iter()
                .map(|(name, value)| (name.clone(), sha256(value.as_bytes())))
                .collect(),
        }
    }

    /// The three annotations that carry it: the statement, its signature,
    /// the publisher's public key.
    pub fn sign(&self, key: &PublisherKey) -> Result<Vec<(String, String)>> {
        let text = serde_json::to_string(self)?;
        Ok(vec![
            (SIGNATURE_ANNOTATION.into(), key.sign(text.as_bytes())),
            (PUBLISHER_ANNOTATION.into(), key.public().to_base64()),
            (STATEMENT_ANNOTATION.into(), text),
        ])
    }
}

/// Checks a manifest with these annotations, config and layers: the
/// signature over the statement, the statement against all of them, and
/// the key against `pinned` (the key trusted for this package, if any).
/// Returns the statement and the key that signed it.
pub fn verify(
    annotations: &BTreeMap<String, String>,
    config: &Blob,
    layers: &[Blob],
    pinned: Option<&PublicKey>,
) -> Result<(Statement, PublicKey), SignatureError> {
    let parts = (
        annotations.get(STATEMENT_ANNOTATION),
        annotations.get(SIGNATURE_ANNOTATION),
        annotations.get(PUBLISHER_ANNOTATION),
    );
    let (Some(text), Some(signature), Some(publisher)) = parts else {
        // Unsigned means no signature at all; part of one is a broken one.
        return Err(match parts {
            (None, None, None) => SignatureError::Unsigned,
            _ => SignatureError::BadStatement("its signature is incomplete".into()),
        });
    };
    let key = PublicKey::from_base64(publisher).map_err(|_| SignatureError::BadKey)?;
    if !key.verifies(text.as_bytes(), signature) {
        return Err(SignatureError::BadSignature(key.fingerprint()));
    }
    let statement: Statement =
        serde_json::from_str(text).map_err(|e| SignatureError::BadStatement(e.to_string()))?;
    if statement.kind != STATEMENT_KIND {
        return Err(SignatureError::BadStatement(format!(
            "kind {:?}, not {STATEMENT_KIND:?}",
            statement.kind
        )));
    }
    if &statement.config != config {
        return Err(SignatureError::Tampered(format!(
            "its config is {}, the signed one {}",
            config.digest, statement.config.digest
        )));
    }
    if statement.layers.len() != layers.len() {
        return Err(SignatureError::Tampered(format!(
            "it has {} layers, {} were signed",
            layers.len(),
            statement.layers.len()
        )));
    }
    for (found, signed) in layers.iter().zip(&statement.layers) {
        if found != signed {
            return Err(SignatureError::Tampered(format!(
                "layer {} ({}) was not signed; the signed one is {}",
                found.digest, found.media_type, signed.digest
            )));
        }
    }
    let carried: BTreeMap<&String, String> = annotations
        .iter()
        .filter(|(name, _)| {
            name.starts_with(LOCKER_ANNOTATIONS)
                && ![
                    STATEMENT_ANNOTATION,
                    SIGNATURE_ANNOTATION,
                    PUBLISHER_ANNOTATION,
                ]
                .contains(&name.as_str())
        })
        .map(|(name, value)| (name, sha256(value.as_bytes())))
        .collect();
    for (name, digest) in &statement.annotations {
        if carried.get(name) != Some(digest) {
            return Err(SignatureError::Tampered(format!(
                "its annotation {name} is not the one signed"
            )));
        }
    }
    if let Some(extra) = carried
        .keys()
        .find(|name| !statement.annotations.contains_key(**name))
    {
        return Err(SignatureError::Tampered(format!(
            "its annotation {extra} was not signed"
        )));
    }
    if let Some(pinned) = pinned
        && *pinned != key
    {
        return Err(SignatureError::WrongKey {
            pinned: pinned.fingerprint(),
            found: key.fingerprint(),
        });
    }
    Ok((statement, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Annotations = BTreeMap<String, String>;

    fn blob(digest: &str) -> Blob {
        Blob {
            media_type: "application/wasm".into(),
            digest: digest.into(),
            size: 3,
        }
    }

    fn signed(key: &PublisherKey) -> (Annotations, Blob, Vec<Blob>) {
        let config = blob("sha256:c");
        let layers = vec![blob("sha256:a"), blob("sha256:b")];
        let mut annotations = Annotations::new();
        annotations.insert("dev.locker.manifest".into(), "name = \"notes\"".into());
        let statement = Statement::new(
            "notes",
            "0.1.0",
            config.clone(),
            layers.clone(),
            &annotations,
        );
        annotations.extend(statement.sign(key).unwrap());
        annotations.insert("org.opencontainers.image.version".into(), "0.1.0".into());
        (annotations, config, layers)
    }

    #[test]
    fn a_signed_manifest_verifies_and_names_its_key() {
        let key = PublisherKey::generate().unwrap();
        let (notes, config, layers) = signed(&key);
        let (statement, by) = verify(&notes, &config, &layers, None).unwrap();
        assert_eq!((statement.package.as_str(), by), ("notes", key.public()));
        let pinned = key.public();
        assert!(verify(&notes, &config, &layers, Some(&pinned)).is_ok());
    }

    #[test]
    fn every_way_of_tampering_is_refused_by_name() {
        let key = PublisherKey::generate().unwrap();
        let (notes, config, layers) = signed(&key);
        let check = |notes: &Annotations, layers: &[Blob], pinned: Option<&PublicKey>| {
            verify(notes, &config, layers, pinned).unwrap_err()
        };
        let tampered = |error: SignatureError, naming: &str| matches!(&error, SignatureError::Tampered(why) if why.contains(naming));
        // A swapped layer, or one added.
        let mut swapped = layers.clone();
        swapped[1].digest = "sha256:evil".into();
        assert!(tampered(check(&notes, &swapped, None), "sha256:evil"));
        let mut added = layers.clone();
        added.push(blob("sha256:extra"));
        assert!(tampered(check(&notes, &added, None), "layers"));
        // The statement edited to match the tampered manifest.
        let mut edited = notes.clone();
        let text = edited[STATEMENT_ANNOTATION].replace("sha256:b", "sha256:evil");
        edited.insert(STATEMENT_ANNOTATION.into(), text);
        assert!(matches!(
            check(&edited, &swapped, None),
            SignatureError::BadSignature(_)
        ));
        // The package's own manifest, which travels as an annotation,
        // widened; or a schema slipped in.
        let mut widened = notes.clone();
        widened.insert(
            "dev.locker.manifest".into(),
            "name = \"notes\"\ncalls = [\"bank\"]".into(),
        );
        assert!(tampered(
            check(&widened, &layers, None),
            "dev.locker.manifest"
        ));
        let mut slipped = notes.clone();
        slipped.insert("dev.locker.schema/evil.json".into(), "{}".into());
        assert!(tampered(check(&slipped, &layers, None), "evil.json"));
        // Re-signed by another key: it verifies, but not against the pinned one.
        let other = PublisherKey::generate().unwrap();
        let (resigned, _, _) = signed(&other);
        let pinned = key.public();
        assert!(matches!(
            check(&resigned, &layers, Some(&pinned)),
            SignatureError::WrongKey { .. }
        ));
        // No signature at all.
        assert_eq!(
            check(&Annotations::new(), &layers, None),
            SignatureError::Unsigned
        );
    }
}
