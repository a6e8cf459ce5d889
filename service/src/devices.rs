//! Devices: listing, renaming and deleting a user's devices.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#device-management>.
//! Deleting a device revokes its access token and deletes its keys in the
//! same transaction, then records a device-list change.

use ruma::{DeviceId, OwnedDeviceId, UserId};
use tessera_storage::{Device, Store};

use crate::{Error, Result, accounts::Accounts, auth::Identity};
use ruma::api::client::uiaa::AuthData;

/// The devices service.
#[derive(Clone)]
pub struct Devices {
    store: Store,
    accounts: Accounts,
}

impl Devices {
    pub fn new(store: Store, accounts: Accounts) -> Self {
        Self { store, accounts }
    }

    pub async fn list(&self, user_id: &UserId) -> Result<Vec<Device>> {
        Ok(self.store.list_devices(user_id).await?)
    }

    pub async fn get(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Device> {
        self.store.get_device(user_id, device_id).await?.ok_or_else(|| Error::not_found("Unknown device"))
    }

    /// `PUT /devices/{deviceId}`: only the display name can change, and
    /// an absent name leaves it unchanged (the spec). A rename is a
    /// device-list change (the name is part of what `/keys/query` shows).
    pub async fn rename(&self, user_id: &UserId, device_id: &DeviceId, name: Option<&str>) -> Result<()> {
        if let Some(name) = name {
            crate::limits::check_chars("display_name", name, crate::limits::MAX_DEVICE_NAME_CHARS)?;
        }
        // A new name is a device-list change: `/keys/query` shows it.
        let found = match name {
            Some(name) => {
                let rename = self.store.set_device_display_name(user_id, device_id, Some(name));
                self.accounts.changing_devices(user_id, async { Ok(rename.await?) }).await?
            }
            None => self.store.get_device(user_id, device_id).await?.is_some(),
        };
        if found { Ok(()) } else { Err(Error::not_found("Unknown device")) }
    }

    /// `DELETE /devices/{deviceId}` and `POST /delete_devices`, behind UIA.
    pub async fn delete(
        &self,
        identity: &Identity,
        devices: &[OwnedDeviceId],
        auth: Option<&AuthData>,
    ) -> Result<()> {
        self.accounts.require_password_uia("delete_devices", identity, auth).await?;
        let delete = self.store.delete_devices(&identity.user_id, devices);
        self.accounts.changing_devices(&identity.user_id, async { Ok(delete.await?) }).await
    }
}
