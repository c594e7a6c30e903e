//! The owner's credentials kept in step across hosts (see
//! `owner::shared` for what travels and how): the password, passkeys, API
//! tokens and sessions in `locker-owner`; tickets and grants, which live
//! minutes or until their session ends, in `locker-passes` (entries vanish
//! a day after their last write). So the owner logs in through any host,
//! and a session, token, ticket or grant works on all of them, until it is
//! ended through any.
//!
//! A ticket is good once on each host; two hosts could each accept the
//! same ticket only within the moment it takes its use to reach them.

use std::sync::Arc;

use anyhow::Result;

use super::mirror::Mirrored;
use crate::owner::{Credential, Owner};

pub struct Credentials(pub Arc<Owner>);

impl Mirrored for Credentials {
    type Item = Credential;

    fn key(credential: &Credential) -> String {
        credential.key()
    }

    fn item(key: &str) -> Option<Credential> {
        Credential::from_key(key)
    }

    /// Lasting ones in the first bucket, tickets and grants in the second.
    fn bucket(credential: &Credential) -> usize {
        usize::from(credential.is_pass())
    }

    fn local(&self, credential: &Credential) -> Result<Option<Vec<u8>>> {
        self.0.shared(credential)
    }

    async fn follow(&self, credential: &Credential, record: Option<&[u8]>) -> Result<()> {
        self.0.follow(credential, record)
    }

    fn items(&self) -> Result<Vec<Credential>> {
        self.0.credentials()
    }
}
