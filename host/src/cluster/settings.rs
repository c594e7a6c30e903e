//! The owner's settings of each service (`locker config`) kept in step
//! across hosts: `locker-config` holds one entry per (service, key), an
//! unset value's entry is deleted.
//!
//! A secret travels sealed, as it rests: with the root's `secrets.key`,
//! bound to its service and key. So every host of a locker has the same
//! key (the owner copies it, as they would for a restore), and neither the
//! NATS servers nor anyone who reads the bucket sees a secret. The first
//! host writes a check sealed with its key; a host whose key does not open
//! it is refused at the join, before it could write anything.

use std::sync::Arc;

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::mirror::Mirrored;
use crate::store::ConfigStore;
use crate::store::config::StoredValue;
use crate::supervisor::Supervisor;

/// The entry that shows which key seals the cluster's secrets.
const KEY_CHECK: &str = "_sealed-with";
/// What the check holds, sealed.
const CHECK_TEXT: &str = "the secrets of this locker";

/// A setting as the bucket holds it.
#[derive(Serialize, Deserialize)]
struct Setting {
    /// The value; a secret's sealed, in base64.
    value: String,
    secret: bool,
    set_at: String,
}

pub struct Settings(pub Arc<Supervisor>);

impl Settings {
    fn store(&self) -> &ConfigStore {
        self.0.config_store()
    }

    /// Whether this host's `secrets.key` is the cluster's (the outer
    /// error: the bucket cannot be read yet; the inner: it is not).
    pub async fn check_key(&self, kv: &kv::Store) -> Result<Result<()>> {
        let sealed = self.store().seal("", KEY_CHECK, CHECK_TEXT)?;
        match kv.create(KEY_CHECK, sealed.into()).await {
            Ok(_) => return Ok(Ok(())),
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).context("cannot write the secrets key's check"),
        }
        let check = kv
            .get(KEY_CHECK)
            .await
            .context("cannot read the secrets key's check")?
            .context("the secrets key's check vanished")?;
        if self
            .store()
            .open_sealed("", KEY_CHECK, check.to_vec())
            .is_err()
        {
            return Ok(Err(anyhow::anyhow!(
                "this host's secrets.key is not the one the other hosts of the cluster seal \
                 the owner's secrets with: copy secrets.key from the root of a host of the \
                 cluster into this host's root (while it is stopped), then start it again"
            )));
        }
        Ok(Ok(()))
    }

    /// A setting from the bucket, its secret opened.
    fn opened(&self, service: &str, key: &str, bytes: &[u8]) -> Result<StoredValue> {
        let setting: Setting = serde_json::from_slice(bytes).context("unreadable")?;
        let value = if setting.secret {
            let sealed = BASE64
                .decode(&setting.value)
                .context("a sealed secret that is not base64")?;
            self.store().open_sealed(service, key, sealed)?
        } else {
            setting.value
        };
        Ok(StoredValue {
            value,
            secret: setting.secret,
            set_at: setting.set_at,
        })
    }
}

impl Mirrored for Settings {
    /// (service, key)
    type Item = (String, String);

    fn key((service, key): &(String, String)) -> String {
        format!("{service}.{key}")
    }

    fn item(key: &str) -> Option<(String, String)> {
        let (service, key) = key.split_once('.')?;
        Some((service.to_string(), key.to_string()))
    }

    fn local(&self, (service, key): &(String, String)) -> Result<Option<Vec<u8>>> {
        let Some(stored) = self.store().values(service)?.remove(key) else {
            return Ok(None);
        };
        let value = if stored.secret {
            BASE64.encode(self.store().seal(service, key, &stored.value)?)
        } else {
            stored.value
        };
        let setting = Setting {
            value,
            secret: stored.secret,
            set_at: stored.set_at,
        };
        Ok(Some(serde_json::to_vec(&setting)?))
    }

    async fn follow(&self, (service, key): &(String, String), record: Option<&[u8]>) -> Result<()> {
        match record {
            Some(record) => {
                let value = self.opened(service, key, record)?;
                self.0.follow_config(service, key, Some(&value))
            }
            None => self.0.follow_config(service, key, None),
        }
    }

    /// A secret is sealed with a fresh nonce each time: its value counts.
    fn same(&self, (service, key): &(String, String), theirs: &[u8], mine: &[u8]) -> bool {
        let opened = |record| self.opened(service, key, record).ok();
        matches!((opened(theirs), opened(mine)), (Some(a), Some(b)) if a == b)
    }

    fn items(&self) -> Result<Vec<(String, String)>> {
        let mut items = Vec::new();
        for service in self.0.catalog.list()? {
            let name = service.manifest.name;
            for key in self.store().values(&name)?.into_keys() {
                items.push((name.clone(), key));
            }
        }
        Ok(items)
    }
}
