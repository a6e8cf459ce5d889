//! Global profiles: display name and avatar URL.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#profiles>. Only
//! local users have profiles until federation queries exist.
//! TODO(#4): propagate changes into each joined room's `m.room.member` event.

use ruma::{MxcUri, UserId};
use tessera_storage::{Profile, Store};

use crate::{Error, Result, auth::Identity};

/// The profiles service.
#[derive(Clone)]
pub struct Profiles {
    store: Store,
}

impl Profiles {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The profile of `user_id`; 404 if there is no such (active) user.
    pub async fn get(&self, user_id: &UserId) -> Result<Profile> {
        self.store.get_profile(user_id).await?.ok_or_else(|| Error::not_found("Profile not found"))
    }

    pub async fn set_displayname(
        &self,
        identity: &Identity,
        user_id: &UserId,
        name: Option<&str>,
    ) -> Result<()> {
        Self::check_owner(identity, user_id)?;
        let name = name.filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.len() > crate::limits::MAX_DISPLAYNAME_BYTES) {
            return Err(Error::bad_json("Display name is too long"));
        }
        self.store.set_displayname(user_id, name).await?;
        Ok(())
    }

    pub async fn set_avatar_url(
        &self,
        identity: &Identity,
        user_id: &UserId,
        url: Option<&MxcUri>,
    ) -> Result<()> {
        Self::check_owner(identity, user_id)?;
        // Element Web unsets the avatar with an empty string.
        let url = url.filter(|u| !u.as_str().is_empty());
        if let Some(url) = url {
            crate::limits::check_bytes("avatar_url", url.as_str(), crate::limits::MAX_AVATAR_URL_BYTES)?;
        }
        if url.is_some_and(|u| u.validate().is_err()) {
            return Err(Error::bad_json("avatar_url must be an mxc:// URI"));
        }
        self.store.set_avatar_url(user_id, url.map(MxcUri::as_str)).await?;
        Ok(())
    }

    fn check_owner(identity: &Identity, user_id: &UserId) -> Result<()> {
        if identity.user_id != user_id {
            return Err(Error::forbidden("You cannot change another user's profile"));
        }
        Ok(())
    }
}
