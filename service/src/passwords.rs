//! Password hashing with argon2id (the argon2 crate's defaults: 19 MiB,
//! 2 passes, which OWASP recommends). Hashing is CPU- and memory-heavy on
//! purpose, so it runs on the blocking pool behind a semaphore: however many
//! logins arrive at once, at most `permits` hashes (19 MiB each) run.

use std::sync::Arc;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use tokio::sync::Semaphore;

use crate::{Error, Result};

/// The password hasher. Cheap to clone; clones share the permits.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    /// At most `permits` hashes run concurrently.
    pub fn new(permits: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(permits.max(1))) }
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String> {
        crate::limits::check_bytes("password", &password, crate::limits::MAX_PASSWORD_BYTES)?;
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(Error::internal)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Whether `password` matches `hash`. A malformed stored hash never matches.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        // No stored password is longer, so a longer guess never matches.
        let too_long = password.len() > crate::limits::MAX_PASSWORD_BYTES;
        tokio::task::spawn_blocking(move || {
            // Without a hash we still do the work, so that "no such user" and
            // "wrong password" take the same time.
            let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let Ok(parsed) = PasswordHash::new(&hash) else { return false };
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
                && hash != DUMMY_HASH
                && !too_long
        })
        .await
        .map_err(Error::internal)
    }
}

/// The hash of a random string nobody knows, with our default parameters.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1kW8K0f5tvJQ7D2uV9m1R0Q8lq7sCq0Jb0w0bYlDkqI";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let passwords = Passwords::new(2);
        let hash = passwords.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.verify("correct horse".into(), Some(hash.clone())).await.expect("verify"));
        assert!(!passwords.verify("wrong".into(), Some(hash)).await.expect("verify"));
        assert!(!passwords.verify("anything".into(), None).await.expect("verify"));
        assert!(!passwords.verify("x".into(), Some("not a hash".into())).await.expect("verify"));
    }
}
