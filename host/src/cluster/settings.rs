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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use super::buckets;
use super::watch::Follow;
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

pub struct SettingSync {
    pub supervisor: Arc<Supervisor>,
    pub kv: kv::Store,
}

fn key_of(service: &str, key: &str) -> String {
    format!("{service}.{key}")
}

fn parts(entry_key: &str) -> Option<(&str, &str)> {
    entry_key.split_once('.')
}

impl SettingSync {
    fn store(&self) -> &ConfigStore {
        self.supervisor.config_store()
    }

    /// Checks that this host seals secrets with the cluster's key (the
    /// first host's), follows the bucket as it is, then adds what only
    /// this host has (and drops what the bucket says was unset). Returns
    /// the revision to watch from.
    pub async fn join(&self) -> Result<u64> {
        let (keys, from) = buckets::snapshot(&self.kv).await?;
        for key in keys.iter().filter(|key| *key != KEY_CHECK) {
            if let Some(entry) = self.kv.entry(key).await.context("cannot read a setting")? {
                self.follow(&entry);
            }
        }
        for service in self.supervisor.catalog.list()? {
            let name = &service.manifest.name;
            for key in self.store().values(name)?.into_keys() {
                let entry_key = key_of(name, &key);
                if keys.contains(&entry_key) {
                    continue;
                }
                match self
                    .kv
                    .entry(&entry_key)
                    .await
                    .context("cannot read a setting")?
                {
                    Some(unset) => self.follow(&unset),
                    None => self.try_publish(name, &key).await?,
                }
            }
        }
        Ok(from)
    }

    /// Whether this host's `secrets.key` is the cluster's (the outer
    /// error: the bucket cannot be read yet; the inner: it is not).
    pub async fn check_key(&self) -> Result<Result<()>> {
        let sealed = self.store().seal("", KEY_CHECK, CHECK_TEXT)?;
        match self.kv.create(KEY_CHECK, sealed.into()).await {
            Ok(_) => return Ok(Ok(())),
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).context("cannot write the secrets key's check"),
        }
        let check = self
            .kv
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

    pub async fn run(
        self,
        from: u64,
        mut announced: UnboundedReceiver<(String, String)>,
    ) -> Result<()> {
        let mut changes = Follow::from(self.kv.clone(), from);
        // Changes not yet written: tried again each second.
        let mut to_publish = BTreeSet::new();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                change = changes.next() => self.follow(&change),
                Some(changed) = announced.recv() => {
                    to_publish.insert(changed);
                }
                _ = retry.tick() => {}
            }
            for (service, key) in std::mem::take(&mut to_publish) {
                if let Err(error) = self.try_publish(&service, &key).await {
                    tracing::warn!(
                        service,
                        key,
                        "the other hosts do not know of this setting's change yet: {error:#}"
                    );
                    to_publish.insert((service, key));
                }
            }
        }
    }

    fn follow(&self, entry: &kv::Entry) {
        let Some((service, key)) = parts(&entry.key) else {
            return;
        };
        let followed = match entry.operation {
            Operation::Put => self
                .opened(service, key, &entry.value)
                .and_then(|value| self.supervisor.follow_config(service, key, Some(&value))),
            Operation::Delete | Operation::Purge => {
                self.supervisor.follow_config(service, key, None)
            }
        };
        if let Err(error) = followed {
            tracing::error!(
                service,
                key,
                "cannot follow the cluster's setting: {error:#}"
            );
        }
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

    /// Writes this host's state of `service`'s `key`: its value, or none.
    async fn try_publish(&self, service: &str, key: &str) -> Result<()> {
        let entry_key = key_of(service, key);
        match self.store().values(service)?.remove(key) {
            Some(stored) => {
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
                self.kv
                    .put(&entry_key, serde_json::to_vec(&setting)?.into())
                    .await
                    .context("cannot write the setting to the cluster")?;
            }
            None => {
                self.kv
                    .delete(&entry_key)
                    .await
                    .context("cannot write the unset to the cluster")?;
            }
        }
        Ok(())
    }
}
