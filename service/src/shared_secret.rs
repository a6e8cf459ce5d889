//! Shared-secret registration, Synapse's admin API
//! `/_synapse/admin/v1/register`, which `register_new_matrix_user`, the
//! Complement suite and our benchmark use to provision accounts.
//!
//! A client fetches a nonce, then posts the account with
//! `mac = hex(HMAC-SHA1(secret, nonce NUL username NUL password NUL
//! "admin"|"notadmin" [NUL user_type]))`. Nonces are single-use and expire.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::{
    Error, Result,
    accounts::{Accounts, Registered},
    secrets,
};

const NONCE_TTL: Duration = Duration::from_secs(60);

/// An account request as the admin API sends it.
pub struct SharedSecretRequest {
    pub nonce: String,
    pub username: String,
    pub password: String,
    pub displayname: Option<String>,
    pub admin: bool,
    pub user_type: Option<String>,
    pub mac: String,
}

/// The shared-secret registration service; disabled without a secret.
#[derive(Clone)]
pub struct SharedSecretRegistration {
    secret: Option<String>,
    accounts: Accounts,
    profiles: crate::profiles::Profiles,
    nonces: Arc<Mutex<HashMap<String, Instant>>>,
}

impl SharedSecretRegistration {
    pub fn new(secret: Option<String>, accounts: Accounts, profiles: crate::profiles::Profiles) -> Self {
        Self { secret, accounts, profiles, nonces: Arc::default() }
    }

    fn enabled(&self) -> Result<&str> {
        self.secret.as_deref().ok_or_else(|| Error::unknown("Shared secret registration is not enabled"))
    }

    /// Hands out a fresh nonce.
    pub fn nonce(&self) -> Result<String> {
        self.enabled()?;
        let nonce = secrets::new_token("n");
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        nonces.retain(|_, issued| issued.elapsed() < NONCE_TTL);
        nonces.insert(nonce.clone(), Instant::now());
        Ok(nonce)
    }

    /// Checks the MAC and creates the account, logged in on a new device.
    pub async fn register(&self, request: SharedSecretRequest) -> Result<Registered> {
        let secret = self.enabled()?;
        let issued = self.nonces.lock().unwrap_or_else(|p| p.into_inner()).remove(&request.nonce);
        if issued.is_none_or(|at| at.elapsed() >= NONCE_TTL) {
            return Err(Error::unknown("Unrecognised nonce"));
        }
        let expected = mac(secret, &request);
        let given = hex::decode(request.mac.trim()).unwrap_or_default();
        if !secrets::constant_time_eq(&expected, &given) {
            return Err(Error::forbidden("HMAC incorrect"));
        }
        let registered =
            self.accounts.create_user(&request.username, Some(request.password), request.admin, true).await?;
        if let Some(name) = request.displayname.as_deref().filter(|n| !n.is_empty())
            && let Some(session) = &registered.session
        {
            let identity = crate::auth::Identity {
                user_id: registered.user_id.clone(),
                device_id: session.device_id.clone(),
                is_guest: false,
                is_admin: request.admin,
                token_id: 0,
            };
            self.profiles.set_displayname(&identity, &registered.user_id, Some(name)).await?;
        }
        Ok(registered)
    }
}

/// The MAC a correct request carries.
pub fn mac(secret: &str, request: &SharedSecretRequest) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(request.nonce.as_bytes());
    mac.update(b"\x00");
    mac.update(request.username.as_bytes());
    mac.update(b"\x00");
    mac.update(request.password.as_bytes());
    mac.update(b"\x00");
    mac.update(if request.admin { b"admin" } else { b"notadmin" });
    if let Some(user_type) = &request.user_type {
        mac.update(b"\x00");
        mac.update(user_type.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_synapse_reference() {
        // Computed with Synapse's documented recipe (Python hmac/sha1) for
        // secret "complement", nonce "abc", user "alice", password "pw".
        let request = SharedSecretRequest {
            nonce: "abc".into(),
            username: "alice".into(),
            password: "pw".into(),
            displayname: None,
            admin: false,
            user_type: None,
            mac: String::new(),
        };
        assert_eq!(hex::encode(mac("complement", &request)), REFERENCE_NOTADMIN);
        let admin = SharedSecretRequest { admin: true, ..request };
        assert_ne!(hex::encode(mac("complement", &admin)), REFERENCE_NOTADMIN);
    }

    const REFERENCE_NOTADMIN: &str = "5baae5aee0ebf001010fc90eebae4472681e1d70";
}
