//! Filters: `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`,
//! and resolving `/sync`'s `filter` parameter (inline JSON or an ID).
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#filtering>.

use ruma::{UserId, api::client::filter::FilterDefinition};
use sha2::{Digest, Sha256};

use super::SyncService;
use crate::{Error, Result};

impl SyncService {
    /// Stores a filter for `user`; its ID derives from its content, so the
    /// same filter uploaded twice gets the same ID.
    pub async fn create_filter(&self, user: &UserId, filter: &FilterDefinition) -> Result<String> {
        let json = serde_json::to_string(filter).map_err(Error::internal)?;
        let id = hex::encode(&Sha256::digest(json.as_bytes())[..8]);
        self.store.put_filter(user, &id, &json).await?;
        Ok(id)
    }

    /// A stored filter; 404 if the user has none with this ID.
    pub async fn get_filter(&self, user: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let json = self
            .store
            .get_filter(user, filter_id)
            .await?
            .ok_or_else(|| Error::not_found("Unknown filter"))?;
        serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))
    }
}
