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

/// The most words of a user directory search that count.
const MAX_SEARCH_WORDS: usize = 8;
/// The longest word of a search that can match (user IDs are at most 255
/// bytes, display names are bounded like other profile fields).
const MAX_SEARCH_WORD_BYTES: usize = 1024;
/// The most users one search answers with.
const MAX_SEARCH_RESULTS: usize = 100;

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
    /// `POST /user_directory/search`: this server's other users who share a
    /// room with `searcher` or are in a room of the room directory, whose
    /// user ID or global display name contains every word of `term` (a
    /// room's own name for a member is not searched: it was said only to
    /// that room). At most `limit` (10 by default, 100 at most); whether
    /// there were more.
    pub async fn search(
        &self,
        searcher: &UserId,
        term: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Profile)>, bool)> {
        let words: Vec<String> = term
            .split_whitespace()
            .map(|w| w.trim_start_matches('@').to_lowercase())
            .filter(|w| !w.is_empty())
            .take(MAX_SEARCH_WORDS)
            .collect();
        // A word longer than any user ID or name matches nobody.
        if words.is_empty() || words.iter().any(|w| w.len() > MAX_SEARCH_WORD_BYTES) {
            return Ok((Vec::new(), false));
        }
        let limit = limit.clamp(1, MAX_SEARCH_RESULTS);
        let mut found =
            self.store.search_users(searcher, &words, i64::try_from(limit).unwrap_or(10) + 1).await?;
        let limited = found.len() > limit;
        found.truncate(limit);
        Ok((found, limited))
    }

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
