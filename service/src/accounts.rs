//! Accounts: registration, login, refresh, logout, password changes,
//! deactivation and login tokens.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#account-registration-and-management>
//! and <https://spec.matrix.org/v1.16/client-server-api/#login>. Nothing here
//! is acknowledged before it is committed: a returned access token works on
//! the very next request.

use std::time::Duration;

use rand::{RngExt, distr::Alphanumeric};
use ruma::{
    OwnedDeviceId, OwnedServerName, OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthType},
    api::error::ErrorKind,
};
use serde::Deserialize;
use tessera_core::user_ids::{self, LocalpartError};
use tessera_storage::{NewAccessToken, NewUser, StorageError, Store};

use crate::{
    Error, Result,
    auth::Identity,
    keys::DeviceLists,
    limits, now_ms,
    passwords::Passwords,
    rate_limit::{Attempt, Class, RateLimiter},
    secrets,
    uia::Uia,
};

/// Who may register, and how long tokens live.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountSettings {
    /// Open registration with the `m.login.dummy` stage.
    pub allow_registration: bool,
    /// Registration only with an admin-created token
    /// (`m.login.registration_token`); opens registration to token holders.
    pub registration_requires_token: bool,
    /// `kind=guest` registration.
    pub allow_guests: bool,
    /// Lifetime of access tokens issued with a refresh token, in ms.
    pub refreshable_token_lifetime_ms: u64,
    /// Lifetime of `m.login.token` tokens, in ms.
    pub login_token_lifetime_ms: u64,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            allow_registration: false,
            registration_requires_token: false,
            allow_guests: false,
            refreshable_token_lifetime_ms: 5 * 60 * 1000,
            login_token_lifetime_ms: 2 * 60 * 1000,
        }
    }
}

/// A new registration as the client asked for it.
#[derive(Default)]
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub auth: Option<AuthData>,
    pub guest: bool,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    /// The client's address, recorded on the new device.
    pub ip: Option<String>,
}

/// How a client logs in.
pub enum Credentials {
    /// `m.login.password`: what the person typed as their user, and password.
    Password { user: String, password: String },
    /// `m.login.token`.
    Token(String),
}

/// A login request.
pub struct Login {
    pub credentials: Credentials,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub refresh_token: bool,
    /// The client's address, recorded on the device.
    pub ip: Option<String>,
}

/// The tokens a login (or registration) hands out.
#[derive(Debug)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

/// The outcome of a registration.
pub struct Registered {
    pub user_id: OwnedUserId,
    /// `None` when the client inhibited login.
    pub session: Option<Session>,
}

/// The accounts service.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    uia: Uia,
    passwords: Passwords,
    rate_limiter: RateLimiter,
    server_name: OwnedServerName,
    settings: AccountSettings,
    /// Where logins and logouts are recorded as device-list changes; none
    /// for the admin CLI, which serves no syncs.
    device_lists: Option<DeviceLists>,
}

impl Accounts {
    pub fn new(
        store: Store,
        uia: Uia,
        passwords: Passwords,
        rate_limiter: RateLimiter,
        server_name: OwnedServerName,
        settings: AccountSettings,
    ) -> Self {
        Self { store, uia, passwords, rate_limiter, server_name, settings, device_lists: None }
    }

    /// Records logins and device deletions in `device_lists`.
    pub fn with_device_lists(mut self, device_lists: DeviceLists) -> Self {
        self.device_lists = Some(device_lists);
        self
    }

    /// Runs `write`, which adds or removes devices of `user`, as a
    /// device-list change (see [`DeviceLists::begin_device_change`]).
    pub(crate) async fn changing_devices<T>(
        &self,
        user: &UserId,
        write: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let pending = match &self.device_lists {
            Some(device_lists) => Some(device_lists.begin_device_change(user).await?),
            None => None,
        };
        let result = write.await;
        if let Some(pending) = pending {
            pending.finish().await;
        }
        result
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    pub fn settings(&self) -> &AccountSettings {
        &self.settings
    }

    /// The UIA flows of `POST /register`, or `None` when registration is closed.
    pub fn registration_flows(&self) -> Option<Vec<Vec<AuthType>>> {
        if self.settings.registration_requires_token {
            Some(vec![vec![AuthType::RegistrationToken]])
        } else if self.settings.allow_registration {
            Some(vec![vec![AuthType::Dummy]])
        } else {
            None
        }
    }

    /// `GET /register/available`.
    pub async fn username_available(&self, username: &str) -> Result<()> {
        let user_id = self.registration_user_id(username)?;
        if self.store.get_user(&user_id).await?.is_some() {
            return Err(Error::user_in_use());
        }
        Ok(())
    }

    /// `GET /register/m.login.registration_token/validity`.
    pub async fn registration_token_valid(&self, token: &str) -> Result<bool> {
        if !self.settings.registration_requires_token {
            return Err(Error::forbidden("Registration tokens are not in use on this server"));
        }
        Ok(self.store.get_registration_token(token).await?.is_some_and(|t| t.is_valid_at(now_ms())))
    }

    /// `POST /register`: guest or user, through UIA for users.
    pub async fn register(&self, request: Registration) -> Result<Registered> {
        if request.guest {
            return self.register_guest(request).await;
        }
        let flows = self.registration_flows().ok_or_else(|| Error::forbidden("Registration is disabled"))?;
        // Check the name before the UIA dance so the client learns early.
        let user_id = match &request.username {
            Some(name) => self.registration_user_id(name)?,
            None => self.generated_user_id("")?,
        };
        if self.store.get_user(&user_id).await?.is_some() {
            return Err(Error::user_in_use());
        }
        LoginOptions {
            device_id: request.device_id.clone(),
            display_name: request.initial_device_display_name.clone(),
            refresh_token: false,
            ip: None,
        }
        .check()?;
        let client = request.ip.clone().unwrap_or_default();
        let completed =
            self.uia.authenticate("register", None, &client, &flows, request.auth.as_ref()).await?;
        // Counted once per account actually created, not per UIA round trip
        // (a sign-up in Element takes several), as Synapse does.
        self.rate_limiter.check(Class::Registration, &client)?;
        let password_hash = match request.password {
            Some(password) => Some(self.passwords.hash(password).await?),
            None => None,
        };
        self.create(NewAccount {
            user_id,
            password_hash,
            is_admin: false,
            is_guest: false,
            registration_token: completed.registration_token,
            login: (!request.inhibit_login).then_some(LoginOptions {
                device_id: request.device_id,
                display_name: request.initial_device_display_name,
                refresh_token: request.refresh_token,
                ip: request.ip,
            }),
        })
        .await
    }

    async fn register_guest(&self, request: Registration) -> Result<Registered> {
        if !self.settings.allow_guests {
            return Err(Error::guest_access_forbidden());
        }
        self.rate_limiter.check(Class::Registration, request.ip.as_deref().unwrap_or_default())?;
        // Guests get numeric IDs, as in Synapse; they have no password and
        // are always logged in. The spec: every parameter but
        // initial_device_display_name is ignored, the server picks the device.
        let digits: String = (0..12).map(|_| char::from(b'0' + rand::rng().random_range(0..10u8))).collect();
        self.create(NewAccount {
            user_id: self.registration_user_id(&digits)?,
            password_hash: None,
            is_admin: false,
            is_guest: true,
            registration_token: None,
            login: Some(LoginOptions {
                device_id: None,
                display_name: request.initial_device_display_name,
                refresh_token: false,
                ip: request.ip,
            }),
        })
        .await
    }

    /// Creates an account directly (the admin CLI and shared-secret
    /// registration), bypassing registration policy.
    pub async fn create_user(
        &self,
        username: &str,
        password: Option<String>,
        is_admin: bool,
        login: bool,
    ) -> Result<Registered> {
        let user_id = self.registration_user_id(username)?;
        let password_hash = match password {
            Some(password) => Some(self.passwords.hash(password).await?),
            None => None,
        };
        let login = login.then_some(LoginOptions {
            device_id: None,
            display_name: None,
            refresh_token: false,
            ip: None,
        });
        self.create(NewAccount {
            user_id,
            password_hash,
            is_admin,
            is_guest: false,
            registration_token: None,
            login,
        })
        .await
    }

    async fn create(&self, account: NewAccount) -> Result<Registered> {
        let tokens = account.login.as_ref().map(|login| self.mint(login));
        let displayname = account.user_id.localpart().to_owned();
        let create = self.store.create_user(NewUser {
            user_id: &account.user_id,
            password_hash: account.password_hash.as_deref(),
            is_admin: account.is_admin,
            is_guest: account.is_guest,
            // Synapse's default, which clients display until the user picks one.
            displayname: Some(&displayname),
            registration_token: account.registration_token.as_deref(),
            login: tokens.as_ref().map(|t| t.as_new(&account.user_id)),
        });
        let result = match tokens {
            Some(_) => self.changing_devices(&account.user_id, async { Ok(create.await) }).await?,
            None => create.await,
        };
        match result {
            Ok(()) => {}
            Err(StorageError::Conflict("user ID taken")) => return Err(Error::user_in_use()),
            Err(StorageError::Conflict(_)) => {
                return Err(Error::forbidden("The registration token is no longer valid"));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user_id = %account.user_id, guest = account.is_guest, "registered");
        Ok(Registered {
            session: tokens.map(|t| t.into_session(account.user_id.clone())),
            user_id: account.user_id,
        })
    }

    /// `POST /login`. Failed attempts count against the client's address
    /// and, with a password, against the account (see
    /// [`crate::rate_limit`]); either used up answers 429 before anything
    /// is checked, so that a limited guesser learns nothing, not even from
    /// the right password.
    pub async fn login(&self, login: Login) -> Result<Session> {
        let options = LoginOptions {
            device_id: login.device_id,
            display_name: login.initial_device_display_name,
            refresh_token: login.refresh_token,
            ip: login.ip,
        };
        // A malformed request is not an attempt: checked before counting.
        options.check()?;
        let address = self.rate_limiter.attempt(Class::Login, options.ip.as_deref().unwrap_or("unknown"))?;
        let verdict = match login.credentials {
            Credentials::Password { user, password } => self.check_password(&user, password).await,
            Credentials::Token(token) => self.take_login_token(&token).await.map(|user_id| (user_id, None)),
        };
        count_if_failed(address, &verdict);
        let (user_id, verified_hash) = verdict?;
        let tokens = self.mint(&options);
        // Committed only if the password checked above is still the account's
        // and the account is still active: a password change or deactivation
        // racing this login wins.
        let create = self.store.create_access_token(tokens.as_new(&user_id), verified_hash.as_deref());
        match self.changing_devices(&user_id, async { Ok(create.await) }).await? {
            Err(StorageError::Conflict(_)) => return Err(Error::forbidden("Invalid username or password")),
            other => other?,
        }
        tracing::info!(%user_id, device_id = %tokens.device_id, "logged in");
        Ok(tokens.into_session(user_id))
    }

    /// The account a password login names and its password hash, if the
    /// password is right. Counted against the account unless it is.
    async fn check_password(&self, user: &str, password: String) -> Result<(OwnedUserId, Option<String>)> {
        let user_id = user_ids::user_id_for_login(user, &self.server_name);
        // Any well-formed ID counts, existing or not: a 429 only for real
        // accounts would tell a guesser which exist.
        let attempt = match &user_id {
            Some(id) => Some(self.rate_limiter.attempt(Class::FailedLogin, id.as_str())?),
            None => None,
        };
        let verdict = async {
            let account = match &user_id {
                Some(id) => self.store.get_user(id).await?,
                None => None,
            };
            let hash = account.as_ref().and_then(|a| a.password_hash.clone());
            let matches = self.passwords.verify(password, hash.clone()).await?;
            // Deactivation removes the password, so a deactivated account
            // answers like a wrong password, as on Synapse.
            match account {
                Some(account) if matches && !account.deactivated => Ok((account.user_id, hash)),
                _ => Err(Error::forbidden("Invalid username or password")),
            }
        }
        .await;
        if let Some(attempt) = attempt {
            count_if_failed(attempt, &verdict);
        }
        verdict
    }

    /// The account an `m.login.token` token was minted for; it is used up.
    async fn take_login_token(&self, token: &str) -> Result<OwnedUserId> {
        self.store
            .take_login_token(&secrets::hash_token(token))
            .await?
            .ok_or_else(|| Error::forbidden("Invalid or expired login token"))
    }

    /// `POST /refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session> {
        let access_token = secrets::new_token("tsa");
        let new_refresh = secrets::new_token("tsr");
        let lifetime = Duration::from_millis(self.settings.refreshable_token_lifetime_ms);
        let owner = self
            .store
            .refresh_access_token(
                &secrets::hash_token(refresh_token),
                &secrets::hash_token(&access_token),
                &secrets::hash_token(&new_refresh),
                Some(now_ms().saturating_add(duration_ms(lifetime))),
            )
            .await?;
        let Some((user_id, device_id)) = owner else {
            return Err(Error::unknown_token(false));
        };
        Ok(Session {
            user_id,
            device_id,
            access_token,
            refresh_token: Some(new_refresh),
            expires_in: Some(lifetime),
        })
    }

    /// `POST /logout`: revokes the token and deletes its device.
    pub async fn logout(&self, identity: &Identity) -> Result<()> {
        let delete = self.store.delete_devices(&identity.user_id, std::slice::from_ref(&identity.device_id));
        self.changing_devices(&identity.user_id, async { Ok(delete.await?) }).await
    }

    /// `POST /logout/all`: every token and device of the user.
    pub async fn logout_all(&self, identity: &Identity) -> Result<()> {
        let delete = self.store.delete_other_devices(&identity.user_id, None);
        self.changing_devices(&identity.user_id, async { Ok(delete.await?) }).await
    }

    /// `POST /account/password`.
    pub async fn change_password(
        &self,
        identity: &Identity,
        new_password: String,
        logout_devices: bool,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        self.require_password_uia("change_password", identity, auth).await?;
        let hash = self.passwords.hash(new_password).await?;
        let keep = logout_devices.then_some(&*identity.device_id);
        let change = self.store.change_password(&identity.user_id, &hash, logout_devices, keep);
        if logout_devices {
            self.changing_devices(&identity.user_id, async { Ok(change.await?) }).await
        } else {
            Ok(change.await?)
        }
    }

    /// `POST /account/deactivate`.
    pub async fn deactivate(&self, identity: &Identity, erase: bool, auth: Option<&AuthData>) -> Result<()> {
        self.require_password_uia("deactivate", identity, auth).await?;
        let deactivate = self.store.deactivate_user(&identity.user_id, erase);
        self.changing_devices(&identity.user_id, async { Ok(deactivate.await?) }).await?;
        tracing::info!(user_id = %identity.user_id, "deactivated");
        Ok(())
    }

    /// `POST /v1/login/get_token`: a short-lived single-use `m.login.token`.
    pub async fn create_login_token(
        &self,
        identity: &Identity,
        auth: Option<&AuthData>,
    ) -> Result<(String, Duration)> {
        self.require_password_uia("get_login_token", identity, auth).await?;
        let token = secrets::new_token("tsl");
        let lifetime = Duration::from_millis(self.settings.login_token_lifetime_ms);
        let expires = now_ms().saturating_add(duration_ms(lifetime));
        self.store.create_login_token(&identity.user_id, &secrets::hash_token(&token), expires).await?;
        Ok((token, lifetime))
    }

    /// Runs the password UIA flow for a sensitive action by `identity`.
    pub async fn require_password_uia(
        &self,
        purpose: &'static str,
        identity: &Identity,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        if identity.is_guest {
            return Err(Error::guest_access_forbidden());
        }
        self.uia
            .authenticate(purpose, Some(&identity.user_id), "", &[vec![AuthType::Password]], auth)
            .await?;
        Ok(())
    }

    fn registration_user_id(&self, username: &str) -> Result<OwnedUserId> {
        user_ids::user_id_for_registration(username, &self.server_name)
            .map_err(|e: LocalpartError| Error::new(400, ErrorKind::InvalidUsername, e.to_string()))
    }

    fn generated_user_id(&self, prefix: &str) -> Result<OwnedUserId> {
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(12)
            .map(|c| char::from(c.to_ascii_lowercase()))
            .collect();
        self.registration_user_id(&format!("{prefix}u{random}"))
    }

    fn mint(&self, options: &LoginOptions) -> Minted {
        let refresh_token = options.refresh_token.then(|| secrets::new_token("tsr"));
        let lifetime =
            options.refresh_token.then(|| Duration::from_millis(self.settings.refreshable_token_lifetime_ms));
        let access_token = secrets::new_token("tsa");
        Minted {
            ip: options.ip.clone(),
            device_id: options.device_id.clone().unwrap_or_else(|| secrets::new_device_id().into()),
            display_name: options.display_name.clone(),
            token_hash: secrets::hash_token(&access_token),
            access_token,
            refresh_token_hash: refresh_token.as_deref().map(secrets::hash_token),
            refresh_token,
            expires_in: lifetime,
            expires_ts: lifetime.map(|l| now_ms().saturating_add(duration_ms(l))),
        }
    }
}

struct NewAccount {
    user_id: OwnedUserId,
    password_hash: Option<String>,
    is_admin: bool,
    is_guest: bool,
    registration_token: Option<String>,
    login: Option<LoginOptions>,
}

struct LoginOptions {
    device_id: Option<OwnedDeviceId>,
    display_name: Option<String>,
    refresh_token: bool,
    ip: Option<String>,
}

impl LoginOptions {
    /// The client-chosen device ID and name within their limits.
    fn check(&self) -> Result<()> {
        if let Some(device_id) = &self.device_id {
            limits::check_bytes("device_id", device_id.as_str(), limits::MAX_DEVICE_ID_BYTES)?;
        }
        if let Some(name) = &self.display_name {
            limits::check_chars("initial_device_display_name", name, limits::MAX_DEVICE_NAME_CHARS)?;
        }
        Ok(())
    }
}

/// Keeps a login attempt counted if it failed (403); gives its token back
/// if it succeeded, or if it was never judged (refused by another limit,
/// the database unavailable): only wrong credentials count.
fn count_if_failed<T>(attempt: Attempt, verdict: &Result<T>) {
    if !matches!(verdict, Err(Error::Matrix { status: 403, .. })) {
        attempt.refund();
    }
}

/// Tokens generated for a login, before they are stored.
struct Minted {
    ip: Option<String>,
    device_id: OwnedDeviceId,
    display_name: Option<String>,
    access_token: String,
    token_hash: [u8; 32],
    refresh_token: Option<String>,
    refresh_token_hash: Option<[u8; 32]>,
    expires_in: Option<Duration>,
    expires_ts: Option<i64>,
}

impl Minted {
    fn as_new<'a>(&'a self, user_id: &'a UserId) -> NewAccessToken<'a> {
        NewAccessToken {
            user_id,
            device_id: &self.device_id,
            device_display_name: self.display_name.as_deref(),
            token_hash: &self.token_hash,
            refresh_token_hash: self.refresh_token_hash.as_ref().map(|h| h.as_slice()),
            expires_ts: self.expires_ts,
            ip: self.ip.as_deref(),
        }
    }

    fn into_session(self, user_id: OwnedUserId) -> Session {
        Session {
            user_id,
            device_id: self.device_id,
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_in: self.expires_in,
        }
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
