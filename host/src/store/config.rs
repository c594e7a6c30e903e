//! The owner's settings for each service (`locker config`), as the root
//! keeps them.
//!
//! A secret's value is sealed (ChaCha20-Poly1305, the service and key as
//! associated data) with the root's `secrets.key`, so the database, its
//! journal and any dump or copy of it never hold a secret in plain text, and
//! a sealed value moved to another service or key does not open. The key
//! file sits in the root (mode 0600) because the host must read secrets
//! unattended after a restart; whoever holds both the database and the key
//! can read them, so a backup keeps the key apart (see README). Values are
//! never logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rusqlite::{Connection, params};

use super::root::LockerRoot;
use crate::clock::now_rfc3339;

/// A value as the owner set it.
#[derive(Clone, PartialEq)]
pub struct StoredValue {
    pub value: String,
    /// It was set as a secret (and is sealed at rest).
    pub secret: bool,
    pub set_at: String,
}

/// Never prints a secret's value, whatever prints it.
impl std::fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret { "(secret)" } else { &self.value };
        f.debug_struct("StoredValue")
            .field("value", &value)
            .field("set_at", &self.set_at)
            .finish()
    }
}

pub struct ConfigStore {
    db: Mutex<Connection>,
    sealer: Sealer,
}

impl ConfigStore {
    pub fn open(root: &LockerRoot) -> Result<ConfigStore> {
        Ok(ConfigStore {
            db: Mutex::new(root.open_database()?),
            sealer: Sealer::load(&root.secrets_key_path(), &root.tmp_dir())?,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every value set for `service`, by key (keys its manifest no longer
    /// declares included).
    pub fn values(&self, service: &str) -> Result<BTreeMap<String, StoredValue>> {
        let db = self.db();
        let mut statement =
            db.prepare("SELECT key, value, sealed, set_at FROM config_values WHERE service = ?1")?;
        let rows = statement.query_map([service], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut values = BTreeMap::new();
        for row in rows {
            let (key, bytes, sealed, set_at) = row?;
            let value = if sealed {
                self.sealer.unseal(service, &key, bytes)?
            } else {
                String::from_utf8(bytes).context("a config value is not UTF-8")?
            };
            values.insert(
                key,
                StoredValue {
                    value,
                    secret: sealed,
                    set_at,
                },
            );
        }
        Ok(values)
    }

    /// Sets a value; a secret is sealed before it is written.
    pub fn set(&self, service: &str, key: &str, value: &str, secret: bool) -> Result<()> {
        self.put(service, key, value, secret, &now_rfc3339())
    }

    /// Sets a value as it was set at `set_at` (on another host of the cluster).
    pub fn put(
        &self,
        service: &str,
        key: &str,
        value: &str,
        secret: bool,
        set_at: &str,
    ) -> Result<()> {
        let bytes = if secret {
            self.sealer.seal(service, key, value)?
        } else {
            value.as_bytes().to_vec()
        };
        self.db().execute(
            "INSERT INTO config_values (service, key, value, sealed, set_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (service, key) DO UPDATE
             SET value = excluded.value, sealed = excluded.sealed, set_at = excluded.set_at",
            params![service, key, bytes, secret, set_at],
        )?;
        Ok(())
    }

    /// `value` sealed for `service`'s `key` with this root's key, to travel
    /// (to the other hosts of a cluster, which share the key).
    pub fn seal(&self, service: &str, key: &str, value: &str) -> Result<Vec<u8>> {
        self.sealer.seal(service, key, value)
    }

    /// A value sealed by [`ConfigStore::seal`], here or on a host with the same key.
    pub fn open_sealed(&self, service: &str, key: &str, sealed: Vec<u8>) -> Result<String> {
        self.sealer.unseal(service, key, sealed)
    }

    /// Removes a value; `false` if none was set.
    pub fn unset(&self, service: &str, key: &str) -> Result<bool> {
        let removed = self.db().execute(
            "DELETE FROM config_values WHERE service = ?1 AND key = ?2",
            params![service, key],
        )?;
        Ok(removed > 0)
    }
}

/// Seals and opens secret values with the root's key.
pub(super) struct Sealer {
    key: LessSafeKey,
}

const KEY_LEN: usize = 32;

impl Sealer {
    /// The root's key, made (at random, mode 0600) the first time.
    pub(super) fn load(path: &Path, tmp_dir: &Path) -> Result<Sealer> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_key(path, tmp_dir)?,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if bytes.len() != KEY_LEN {
            bail!(
                "{} is not a secrets key ({} bytes, not {KEY_LEN}); restore it from the \
                 backup kept with the root",
                path.display(),
                bytes.len()
            );
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("a 32-byte key");
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// `nonce || ciphertext || tag`.
    pub(super) fn seal(&self, service: &str, key: &str, value: &str) -> Result<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(service, key)),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("cannot seal a secret"))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub(super) fn unseal(&self, service: &str, key: &str, mut bytes: Vec<u8>) -> Result<String> {
        let opened = (bytes.len() >= NONCE_LEN)
            .then(|| {
                let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                self.key
                    .open_in_place(nonce, Aad::from(associated(service, key)), sealed)
                    .ok()
                    .map(|plain| plain.to_vec())
            })
            .flatten();
        let Some(plain) = opened else {
            bail!(
                "the secret {key:?} of service {service:?} does not open with this root's \
                 secrets.key (a key from another root, or a changed value); set it again"
            );
        };
        String::from_utf8(plain).context("a secret is not UTF-8")
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(bytes)
}

/// Binds a sealed value to its place.
fn associated(service: &str, key: &str) -> Vec<u8> {
    [service.as_bytes(), b"\0", key.as_bytes()].concat()
}

/// Writes a new random key; if another process wrote one first, reads that.
fn make_key(path: &Path, tmp_dir: &Path) -> Result<Vec<u8>> {
    use std::io::Write;
    let key: [u8; KEY_LEN] = random_bytes()?;
    std::fs::create_dir_all(tmp_dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir)
        .with_context(|| format!("cannot create a temporary file in {}", tmp_dir.display()))?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(key.to_vec()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(e) => Err(e.error).with_context(|| format!("cannot write {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_sealed_at_rest_and_bound_to_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let root = LockerRoot::open(dir.path()).unwrap();
        let store = ConfigStore::open(&root).unwrap();
        store
            .set("dav", "password", "hunter2-secret", true)
            .unwrap();
        store
            .set("dav", "server", "dav.example.com", false)
            .unwrap();

        let values = store.values("dav").unwrap();
        assert_eq!(values["password"].value, "hunter2-secret");
        assert!(values["password"].secret);
        assert_eq!(values["server"].value, "dav.example.com");
        assert!(!format!("{values:?}").contains("hunter2"));
        assert!(store.values("other").unwrap().is_empty());

        // Not in the database's files in plain text.
        drop(store);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains("hunter2"),
                    "{} holds the secret",
                    path.display()
                );
            }
        }

        // A sealed value moved to another service does not open.
        let db = root.open_database().unwrap();
        db.execute(
            "INSERT INTO config_values SELECT 'thief', key, value, sealed, set_at
             FROM config_values WHERE service = 'dav' AND key = 'password'",
            [],
        )
        .unwrap();
        let store = ConfigStore::open(&root).unwrap();
        let error = format!("{:#}", store.values("thief").unwrap_err());
        assert!(error.contains("does not open"), "{error}");
        assert!(store.unset("dav", "server").unwrap());
        assert!(!store.unset("dav", "server").unwrap());
    }
}
