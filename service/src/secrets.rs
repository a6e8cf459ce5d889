//! Random secrets (access, refresh and login tokens, device IDs) and how they
//! are hashed for storage. Tokens carry 256 bits of randomness from the
//! thread-local CSPRNG; only their SHA-256 is ever written to the database.

use rand::{RngExt, distr::Alphanumeric};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new random token with a readable prefix (`syt_`-style prefixes make
/// leaked tokens easy to recognise in logs and secret scanners).
pub fn new_token(prefix: &str) -> String {
    let random: String = rand::rng().sample_iter(Alphanumeric).take(43).map(char::from).collect();
    format!("{prefix}_{random}")
}

/// A device ID for a device the client did not name: ten upper-case letters,
/// the shape Synapse uses and clients display.
pub fn new_device_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .filter(u8::is_ascii_alphabetic)
        .take(10)
        .map(|c| char::from(c.to_ascii_uppercase()))
        .collect()
}

/// The hash stored for a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two secrets without leaking, through timing, where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = new_token("tsa");
        let b = new_token("tsa");
        assert!(a.starts_with("tsa_"));
        assert_eq!(a.len(), 4 + 43, "43 alphanumerics carry > 256 bits");
        assert_ne!(a, b);
    }

    #[test]
    fn device_ids_are_ten_capitals() {
        let id = new_device_id();
        assert_eq!(id.len(), 10);
        assert!(id.chars().all(|c| c.is_ascii_uppercase()));
    }

    #[test]
    fn hashes_are_stable_and_compare() {
        assert_eq!(hash_token("x"), hash_token("x"));
        assert!(constant_time_eq(&hash_token("x"), &hash_token("x")));
        assert!(!constant_time_eq(&hash_token("x"), &hash_token("y")));
        assert!(!constant_time_eq(b"short", b"longer"));
    }
}
