//! Access-token authentication: who is making this request.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#client-authentication>.
//! Tokens are looked up by their SHA-256; an expired token answers
//! `M_UNKNOWN_TOKEN` with `soft_logout: true` so the client re-authenticates
//! on the same device instead of throwing its session away.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{OwnedDeviceId, OwnedUserId};
use tessera_storage::Store;

use crate::{Error, Result, now_ms, secrets};

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_guest: bool,
    pub is_admin: bool,
    /// The access token's row, so logout can revoke exactly this token.
    pub token_id: i64,
}

/// How often a device's "last seen" is written at most.
const LAST_SEEN_INTERVAL_MS: i64 = 60_000;

/// Resolves access tokens to identities.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    /// Per device, when this process last recorded it seen (the token's
    /// row may come from a cache and carry an older time).
    seen: Arc<Mutex<HashMap<(OwnedUserId, OwnedDeviceId), i64>>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self { store, seen: Arc::default() }
    }

    /// Resolves `token`; `ip` is recorded as the device's last-seen address.
    /// `allow_expired` accepts an expired token (for logging out, which a
    /// client whose refresh failed must still be able to do).
    pub async fn authenticate(&self, token: &str, ip: Option<&str>, allow_expired: bool) -> Result<Identity> {
        let hash = secrets::hash_token(token);
        let owner = self.store.find_access_token(&hash).await?.ok_or(Error::unknown_token(false))?;
        if !secrets::constant_time_eq(&owner.token_hash, &hash) || owner.deactivated {
            return Err(Error::unknown_token(false));
        }
        let now = now_ms();
        if !allow_expired && owner.expires_ts.is_some_and(|expires| expires <= now) {
            return Err(Error::unknown_token(true));
        }
        if let Some(replaced) = owner.replaces_id {
            // First use of a refreshed token: the old one may go now.
            self.store.finish_refresh(owner.token_id, replaced).await?;
        }
        let due = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let device = (owner.user_id.clone(), owner.device_id.clone());
            let last = seen.get(&device).copied().max(owner.last_seen_ts);
            let due = last.is_none_or(|last| now - last >= LAST_SEEN_INTERVAL_MS);
            if due {
                crate::remember(&mut seen, device, now);
            }
            due
        };
        if due && let Err(e) = self.store.touch_device(&owner.user_id, &owner.device_id, now, ip).await {
            // Last-seen is informational; a failed write must not fail the request.
            tracing::warn!(error = %e, "could not record device last-seen");
        }
        Ok(Identity {
            user_id: owner.user_id,
            device_id: owner.device_id,
            is_guest: owner.is_guest,
            is_admin: owner.is_admin,
            token_id: owner.token_id,
        })
    }
}
