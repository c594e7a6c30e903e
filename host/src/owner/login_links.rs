//! One-time login links: a link the CLI (holding an admin token already)
//! asks for, which logs a browser in as the owner once, within minutes.
//! `locker dev` prints one so that a developer is one click from their
//! service. The codes live in memory only (a restart ends them) and are
//! kept as hashes, like every other secret of the owner's.

use std::collections::HashMap;
use std::sync::Mutex;

use super::secret;
use crate::clock::now_millis;

/// A login link works for this long, and once.
pub const LOGIN_LINK_LIFETIME_MS: i64 = 10 * 60 * 1000;

#[derive(Default)]
pub struct LoginLinks {
    /// The hash of each live code, with when it stops working.
    codes: Mutex<HashMap<String, i64>>,
}

impl LoginLinks {
    /// A new code.
    pub fn issue(&self) -> String {
        let code = secret::new_secret();
        let now = now_millis();
        let mut codes = self.codes.lock().expect("login links lock");
        codes.retain(|_, expires| *expires > now);
        codes.insert(secret::hash(&code), now + LOGIN_LINK_LIFETIME_MS);
        code
    }

    /// Whether `code` is a live code; it stops working either way.
    pub fn redeem(&self, code: &str) -> bool {
        let expires = self
            .codes
            .lock()
            .expect("login links lock")
            .remove(&secret::hash(code));
        expires.is_some_and(|expires| expires > now_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let links = LoginLinks::default();
        let code = links.issue();
        assert!(!links.redeem("not-a-code"));
        assert!(links.redeem(&code));
        assert!(!links.redeem(&code), "a second use is refused");
    }
}
