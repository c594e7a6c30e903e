//! The owner's registry logins kept in step across hosts in
//! `locker-logins`: a login saved through one host lets every host pull
//! from that registry. The password travels as it rests, sealed with the
//! `secrets.key` the hosts share (see `settings`).

use std::sync::Arc;

use anyhow::Result;

use super::mirror::{Mirrored, decoded, encoded};
use crate::store::registry_logins::SealedLogin;
use crate::supervisor::Supervisor;

pub struct Logins(pub Arc<Supervisor>);

impl Mirrored for Logins {
    /// A registry (`host:port`).
    type Item = String;

    /// Hex: a registry's name holds `:`, which a key may not.
    fn key(registry: &String) -> String {
        hex::encode(registry)
    }

    fn item(key: &str) -> Option<String> {
        String::from_utf8(hex::decode(key).ok()?).ok()
    }

    fn local(&self, registry: &String) -> Result<Option<Vec<u8>>> {
        encoded(self.0.logins.sealed(registry)?)
    }

    async fn follow(&self, registry: &String, record: Option<&[u8]>) -> Result<()> {
        let login = decoded::<SealedLogin>(record)?;
        self.0.logins.follow(registry, login.as_ref())
    }

    fn items(&self) -> Result<Vec<String>> {
        Ok(self
            .0
            .logins
            .list()?
            .into_iter()
            .map(|login| login.registry)
            .collect())
    }
}
