//! The owner's passkeys (WebAuthn, with `webauthn-rs`): register one from
//! a logged-in browser, sign in with one instead of the password, remove
//! one. The relying party is the locker's own origin, so a passkey made for
//! it is never offered to a service's page.
//!
//! A ceremony (a registration or a sign-in) is two requests: the host
//! hands out a challenge and keeps its state here, for minutes, under a
//! random id; the browser comes back with the authenticator's answer. The
//! root keeps only public keys and counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::{Credential, secret};
use crate::api::PasskeyView;
use crate::changes::Changes;
use crate::clock::{from_millis, now_millis, rfc3339};
use crate::store::owner::{OwnerStore, StoredPasskey};

/// How long a browser has to answer a challenge.
const CEREMONY_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Challenges outstanding at once; more are refused (nobody logged in may
/// start a sign-in, so this bounds what strangers can make the host keep).
const MAX_CEREMONIES: usize = 256;
/// The longest name the owner may give a passkey.
const MAX_NAME_CHARS: usize = 64;

enum Ceremony {
    Register {
        state: PasskeyRegistration,
        name: String,
    },
    SignIn(PasskeyAuthentication),
}

/// The relying party for the locker's origin: `domain` is its host name
/// (the RP id), `origin` its full origin (`http://locker.localhost:8042`).
pub fn relying_party(domain: &str, origin: &str) -> Result<Webauthn> {
    let origin = Url::parse(origin).with_context(|| format!("{origin:?} is not an origin"))?;
    WebauthnBuilder::new(domain, &origin)
        .context("cannot use the locker's origin for passkeys")?
        .rp_name("Locker")
        .build()
        .context("cannot use the locker's origin for passkeys")
}

#[derive(Default)]
pub struct Passkeys {
    ceremonies: Mutex<HashMap<String, (Instant, Ceremony)>>,
    /// Where passkeys added or used here are told.
    pub(super) announced: Arc<Changes<Credential>>,
}

impl Passkeys {
    /// No ceremony under way; passkeys added or used are told to `announced`.
    pub fn announcing_to(announced: Arc<Changes<Credential>>) -> Passkeys {
        Passkeys {
            ceremonies: Mutex::default(),
            announced,
        }
    }

    fn keep(&self, ceremony: Ceremony) -> Result<String> {
        let mut ceremonies = self.ceremonies.lock().unwrap();
        ceremonies.retain(|_, (at, _)| at.elapsed() < CEREMONY_LIFETIME);
        if ceremonies.len() >= MAX_CEREMONIES {
            bail!("too many passkey ceremonies at once; try again in a few minutes");
        }
        let id = secret::new_secret();
        ceremonies.insert(secret::hash(&id), (Instant::now(), ceremony));
        Ok(id)
    }

    fn take(&self, id: &str) -> Option<Ceremony> {
        let (at, ceremony) = self.ceremonies.lock().unwrap().remove(&secret::hash(id))?;
        (at.elapsed() < CEREMONY_LIFETIME).then_some(ceremony)
    }

    /// Starts registering a passkey named `name`: the options for
    /// `navigator.credentials.create`, and the ceremony's id.
    pub fn start_registration(
        &self,
        party: &Webauthn,
        store: &OwnerStore,
        name: &str,
    ) -> Result<(String, CreationChallengeResponse)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            bail!("a passkey needs a name of 1 to {MAX_NAME_CHARS} characters");
        }
        let user = store.passkey_user(|| Uuid::new_v4().to_string())?;
        self.announced.announce(Credential::PasskeyUser);
        let user = Uuid::parse_str(&user).context("the stored passkey user handle is damaged")?;
        let existing = stored(store)?
            .into_iter()
            .map(|(_, passkey)| passkey.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = party
            .start_passkey_registration(user, "owner", "Locker owner", Some(existing))
            .context("cannot start registering a passkey")?;
        let id = self.keep(Ceremony::Register {
            state,
            name: name.to_string(),
        })?;
        Ok((id, options))
    }

    /// Checks the authenticator's answer and keeps the new passkey.
    pub fn finish_registration(
        &self,
        party: &Webauthn,
        store: &OwnerStore,
        ceremony: &str,
        answer: &RegisterPublicKeyCredential,
    ) -> Result<PasskeyView> {
        let Some(Ceremony::Register { state, name }) = self.take(ceremony) else {
            bail!("this passkey registration has expired; start again");
        };
        let passkey = party
            .finish_passkey_registration(answer, &state)
            .context("the authenticator's answer does not check out")?;
        let stored = StoredPasskey {
            id: secret::new_id(),
            name,
            credential: serde_json::to_string(&passkey)?,
            created_at: now_millis(),
            last_used: None,
        };
        store.add_passkey(&stored)?;
        self.announced
            .announce(Credential::Passkey(stored.id.clone()));
        Ok(view(&stored))
    }

    /// Starts a sign-in: the options for `navigator.credentials.get` and
    /// the ceremony's id, or `None` when the owner has no passkey.
    pub fn start_sign_in(
        &self,
        party: &Webauthn,
        store: &OwnerStore,
    ) -> Result<Option<(String, RequestChallengeResponse)>> {
        let passkeys: Vec<Passkey> = stored(store)?.into_iter().map(|(_, p)| p).collect();
        if passkeys.is_empty() {
            return Ok(None);
        }
        let (options, state) = party
            .start_passkey_authentication(&passkeys)
            .context("cannot start a passkey sign-in")?;
        let id = self.keep(Ceremony::SignIn(state))?;
        Ok(Some((id, options)))
    }

    /// Whether the answer proves one of the owner's passkeys; its counter
    /// and last use are recorded.
    pub fn finish_sign_in(
        &self,
        party: &Webauthn,
        store: &OwnerStore,
        ceremony: &str,
        answer: &PublicKeyCredential,
    ) -> Result<bool> {
        let Some(Ceremony::SignIn(state)) = self.take(ceremony) else {
            return Ok(false);
        };
        let Ok(result) = party.finish_passkey_authentication(answer, &state) else {
            return Ok(false);
        };
        for (stored, mut passkey) in stored(store)? {
            if passkey.cred_id() == result.cred_id() {
                passkey.update_credential(&result);
                store.use_passkey(&stored.id, &serde_json::to_string(&passkey)?, now_millis())?;
                self.announced.announce(Credential::Passkey(stored.id));
                return Ok(true);
            }
        }
        // Removed while the sign-in was under way.
        Ok(false)
    }
}

fn stored(store: &OwnerStore) -> Result<Vec<(StoredPasskey, Passkey)>> {
    store
        .passkeys()?
        .into_iter()
        .map(|stored| {
            let passkey = serde_json::from_str(&stored.credential)
                .with_context(|| format!("passkey {} is damaged", stored.id))?;
            Ok((stored, passkey))
        })
        .collect()
}

pub fn view(stored: &StoredPasskey) -> PasskeyView {
    PasskeyView {
        id: stored.id.clone(),
        name: stored.name.clone(),
        created_at: rfc3339(from_millis(stored.created_at)),
        last_used: stored.last_used.map(|at| rfc3339(from_millis(at))),
    }
}

pub fn views(store: &OwnerStore) -> Result<Vec<PasskeyView>> {
    Ok(store.passkeys()?.iter().map(view).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_party_is_the_lockers_origin() {
        let party = relying_party("locker.localhost", "http://locker.localhost:8042").unwrap();
        let origins = party.get_allowed_origins();
        assert_eq!(origins.len(), 1);
        assert_eq!(origins[0].as_str(), "http://locker.localhost:8042/");
        assert!(relying_party("locker.localhost", "not an origin").is_err());
        // A party for another name than the origin's is refused.
        assert!(relying_party("evil.example", "http://locker.localhost:8042").is_err());
    }

    #[test]
    fn an_unknown_or_expired_ceremony_signs_nobody_in() {
        let passkeys = Passkeys::default();
        assert!(passkeys.take("nope").is_none());
        let party = relying_party("locker.localhost", "http://locker.localhost:1").unwrap();
        let (_, state) = party
            .start_passkey_registration(Uuid::nil(), "owner", "owner", None)
            .unwrap();
        let id = passkeys
            .keep(Ceremony::Register {
                state,
                name: "laptop".into(),
            })
            .unwrap();
        assert!(passkeys.take(&id).is_some());
        assert!(passkeys.take(&id).is_none(), "a ceremony is used once");
    }
}
