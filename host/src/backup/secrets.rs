//! The root's secrets key in an archive: sealed under the owner's passphrase
//! with age (scrypt), so that a backup that leaves the machine opens its
//! services' secrets only for whoever knows the passphrase.

use std::io::Read;
use std::path::Path;

use age::secrecy::SecretString;
use anyhow::{Context, Result, bail};

/// The most an archive's sealed key may be: a key is 32 bytes, plus age's
/// header.
const MAX_SEALED: usize = 16 * 1024;

/// Why a sealed key did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the passphrase is wrong: it does not open the secrets in this backup")]
    WrongPassphrase,
    #[error("the sealed secrets key in the archive is damaged: {0}")]
    Damaged(String),
}

/// A passphrase kept in a file: its first line, without the line's end.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
    let passphrase = text.lines().next().unwrap_or_default();
    if passphrase.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    Ok(passphrase.to_string().into())
}

/// Seals `key` under `passphrase`.
pub fn seal(key: &[u8], passphrase: &SecretString) -> Result<Vec<u8>> {
    let recipient = age::scrypt::Recipient::new(passphrase.clone());
    Ok(age::encrypt(&recipient, key)?)
}

/// Opens a sealed key with `passphrase`.
pub fn open(sealed: &[u8], passphrase: &SecretString) -> Result<Vec<u8>, OpenError> {
    if sealed.len() > MAX_SEALED {
        return Err(OpenError::Damaged("it is too large".into()));
    }
    let identity = age::scrypt::Identity::new(passphrase.clone());
    let decryptor = age::Decryptor::new(sealed).map_err(|e| OpenError::Damaged(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|error| match error {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => OpenError::WrongPassphrase,
            other => OpenError::Damaged(other.to_string()),
        })?;
    let mut key = Vec::new();
    reader
        .read_to_end(&mut key)
        .map_err(|e| OpenError::Damaged(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_with_its_passphrase_only() {
        let key = [7u8; 32];
        let sealed = seal(&key, &SecretString::from("correct horse".to_string())).unwrap();
        assert!(!sealed.windows(32).any(|w| w == key));
        assert_eq!(
            open(&sealed, &SecretString::from("correct horse".to_string())).unwrap(),
            key
        );
        assert!(matches!(
            open(&sealed, &SecretString::from("wrong".to_string())),
            Err(OpenError::WrongPassphrase)
        ));
    }
}
