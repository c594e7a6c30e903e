//! The owner's password: argon2id with the `argon2` crate's defaults, and
//! the one-time set-up codes through which it is chosen (at first run, and
//! by `locker owner reset`).

use anyhow::{Result, anyhow};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::secret;
use crate::clock::now_millis;
use crate::store::owner::OwnerStore;

/// A set-up link works for this long.
pub const SETUP_CODE_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// The shortest password the owner may choose.
pub const MIN_LENGTH: usize = 10;

/// Makes a new set-up code (earlier ones stop working) and returns it.
pub fn new_setup_code(store: &OwnerStore) -> Result<String> {
    let code = secret::new_secret();
    store.replace_setup_code(&secret::hash(&code), now_millis() + SETUP_CODE_LIFETIME_MS)?;
    Ok(code)
}

/// Why a password was not set.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "this set-up link has expired or was used already; run `locker owner reset` for a new one"
    )]
    BadCode,
    #[error("the password must be at least {MIN_LENGTH} characters long")]
    TooShort,
    #[error("the current password is not right")]
    WrongPassword,
}

/// Sets the password if `code` is a live set-up code. Slow (argon2): call
/// it off the async threads.
pub fn choose(store: &OwnerStore, code: &str, password: &str) -> Result<Result<(), SetupError>> {
    if password.chars().count() < MIN_LENGTH {
        return Ok(Err(SetupError::TooShort));
    }
    let hashed = hash(password)?;
    if store.set_password(&secret::hash(code), &hashed, now_millis())? {
        Ok(Ok(()))
    } else {
        Ok(Err(SetupError::BadCode))
    }
}

/// Sets a new password; every session but `keep` ends. Slow (argon2).
pub fn change(store: &OwnerStore, password: &str, keep: &str) -> Result<Result<(), SetupError>> {
    if password.chars().count() < MIN_LENGTH {
        return Ok(Err(SetupError::TooShort));
    }
    store.change_password(&hash(password)?, keep, now_millis())?;
    Ok(Ok(()))
}

fn hash(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&secret::random_bytes::<16>())
        .map_err(|e| anyhow!("cannot make a salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("cannot hash the password: {e}"))?
        .to_string())
}

/// Whether `password` is the owner's. Slow (argon2) on purpose.
pub fn verify(store: &OwnerStore, password: &str) -> Result<bool> {
    let Some(stored) = store.password()? else {
        return Ok(false);
    };
    let hash = PasswordHash::new(&stored)
        .map_err(|e| anyhow!("the stored password hash is damaged: {e}"))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok())
}
