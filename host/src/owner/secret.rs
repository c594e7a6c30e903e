//! Random secrets and how they are kept: only a secret's SHA-256 hash is
//! stored or used as a map key, so neither the root nor the host's memory
//! maps hold anything that logs in.

use sha2::{Digest, Sha256};

/// A fresh random secret: 32 bytes, as 64 hex digits.
pub fn new_secret() -> String {
    hex::encode(random_bytes::<32>())
}

/// A short random id, shown in lists and used to revoke (not secret).
pub fn new_id() -> String {
    hex::encode(random_bytes::<6>())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system has no random source");
    bytes
}

/// The hash a secret is stored and looked up by.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
