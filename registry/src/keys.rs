//! A publisher's Ed25519 key: made by `locker keygen`, kept in a file only
//! its owner can read (never in a locker root), named by its fingerprint.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The first line of a key file, so that a wrong file is named as such.
const KEY_FILE_HEADER: &str = "locker publisher key (ed25519), keep it secret";

/// The key a publisher signs with.
pub struct PublisherKey {
    signing: SigningKey,
}

impl PublisherKey {
    /// A new random key.
    pub fn generate() -> Result<PublisherKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(PublisherKey {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key to a new file readable by its owner only; refuses to
    /// overwrite one.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the key file {}", path.display()))?;
        let seed = STANDARD.encode(self.signing.to_bytes());
        writeln!(file, "{KEY_FILE_HEADER}\n{seed}")?;
        file.sync_all()?;
        Ok(())
    }

    /// Reads a key file written by [`Self::save`]; refuses one that others
    /// can read.
    pub fn load(path: &Path) -> Result<PublisherKey> {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            bail!(
                "the key file {} can be read by others; `chmod 600` it first",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)?;
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            bail!("{} is not a locker publisher key", path.display());
        }
        let seed = lines
            .next()
            .and_then(|line| STANDARD.decode(line.trim()).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .with_context(|| format!("the key file {} is damaged", path.display()))?;
        Ok(PublisherKey {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.signing.sign(message).to_bytes())
    }
}

/// A publisher's public key, as packages carry it and the trust store pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// `SHA256:` and the base64 of the key's SHA-256, as `ssh-keygen -l`
    /// shows keys: what an owner compares.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
        )
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    pub fn from_base64(text: &str) -> Result<PublicKey> {
        let bytes = STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context("not an Ed25519 public key")?;
        Ok(PublicKey(
            VerifyingKey::from_bytes(&bytes).context("not an Ed25519 public key")?,
        ))
    }

    /// Whether `signature` (base64) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Some(bytes) = STANDARD
            .decode(signature.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        // Strict: no malleable signatures, no weak keys.
        self.0
            .verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_key_and_message() {
        let key = PublisherKey::generate().unwrap();
        let other = PublisherKey::generate().unwrap();
        let signature = key.sign(b"package 0.1.0");
        assert!(key.public().verifies(b"package 0.1.0", &signature));
        assert!(!key.public().verifies(b"package 0.1.1", &signature));
        assert!(!other.public().verifies(b"package 0.1.0", &signature));
        assert!(!key.public().verifies(b"package 0.1.0", "not base64"));
        let round = PublicKey::from_base64(&key.public().to_base64()).unwrap();
        assert_eq!(round.fingerprint(), key.public().fingerprint());
        assert!(key.public().fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn a_key_file_is_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        let key = PublisherKey::generate().unwrap();
        key.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(PublisherKey::generate().unwrap().save(&path).is_err());
        let loaded = PublisherKey::load(&path).unwrap();
        assert_eq!(loaded.public(), key.public());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = PublisherKey::load(&path).err().unwrap().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
    }
}
