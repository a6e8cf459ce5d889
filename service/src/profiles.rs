//! Global profiles: display name and avatar URL.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#profiles>.
//! Other servers' users' profiles are asked of their server
//! (`/_matrix/federation/v1/query/profile`). A change is carried into the
//! user's `m.room.member` event in each joined room, except where that
//! event has a per-room value of its own.

use std::sync::Arc;

use ruma::{MxcUri, OwnedServerName, UserId};
pub use tessera_storage::Profile;
use tessera_storage::Store;

use crate::{
    Error, Result,
    auth::Identity,
    federation::{Remote, RemoteError},
    rooms::Rooms,
};

/// The profiles service.
#[derive(Clone)]
pub struct Profiles {
    store: Store,
    rooms: Rooms,
    remote: Arc<dyn Remote>,
    server_name: OwnedServerName,
}

impl Profiles {
    pub fn new(store: Store, rooms: Rooms, remote: Arc<dyn Remote>, server_name: OwnedServerName) -> Self {
        Self { store, rooms, remote, server_name }
    }

    /// The profile of `user_id`, local or asked of its server; 404 if
    /// there is no such (active) user.
    pub async fn get(&self, user_id: &UserId) -> Result<Profile> {
        if user_id.server_name() != self.server_name {
            return match self.remote.query_profile(user_id).await {
                Ok(profile) => Ok(profile),
                Err(RemoteError::Status { status: 404, .. }) => Err(Error::not_found("Profile not found")),
                Err(e) => {
                    tracing::info!(%user_id, error = %e, "remote profile not fetched");
                    Err(Error::new(
                        502,
                        ruma::api::error::ErrorKind::Unknown,
                        "The user's server could not be asked",
                    ))
                }
            };
        }
        self.local(user_id).await
    }

    /// The profile of a local user; 404 if there is no such (active) user.
    pub async fn local(&self, user_id: &UserId) -> Result<Profile> {
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
        let before = self.local(user_id).await?.displayname;
        self.store.set_displayname(user_id, name).await?;
        self.rooms.propagate_profile(user_id, "displayname", before.as_deref(), name).await
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
        // Any string is kept: the spec types it as a URI, and clients and
        // Complement set values that are not `mxc://`.
        let before = self.local(user_id).await?.avatar_url;
        self.store.set_avatar_url(user_id, url.map(MxcUri::as_str)).await?;
        self.rooms
            .propagate_profile(
                user_id,
                "avatar_url",
                before.as_deref().map(MxcUri::as_str),
                url.map(MxcUri::as_str),
            )
            .await
    }

    fn check_owner(identity: &Identity, user_id: &UserId) -> Result<()> {
        if identity.user_id != user_id {
            return Err(Error::forbidden("You cannot change another user's profile"));
        }
        Ok(())
    }
}
