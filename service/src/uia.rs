//! User-Interactive Authentication: the 401 dance that guards registration,
//! password changes, deactivation, device deletion and login-token minting.
//!
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#user-interactive-authentication-api>.
//! A session remembers which stages the client completed. It is bound to the
//! purpose (and user) it was created for, so a session opened to delete a
//! device cannot be replayed to deactivate the account. Sessions live in
//! memory for [`SESSION_TTL`]; a restart only makes a client start over.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{
    OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier},
    api::error::{ErrorKind, StandardErrorBody},
};
use tessera_storage::Store;

use crate::{
    Error, Result, now_ms,
    passwords::Passwords,
    rate_limit::{Class, RateLimiter},
    secrets,
};

/// How long an unfinished session stays usable.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);

/// A bound on all unfinished sessions (a few hundred bytes each). A live
/// session is never pushed out to make room for another: many people
/// share one address (a company, a campus), so evicting by requester would
/// break their sign-ups. Past the bound, new sessions wait (429) until old
/// ones finish or expire; each requester's rate of opening sessions is
/// limited (the general limit, in its own bucket), so one client cannot
/// fill the table quickly.
const MAX_SESSIONS: usize = 100_000;

/// What the completed authentication proved, for the caller to act on.
#[derive(Debug, Default)]
pub struct Completed {
    /// The registration token the client presented (to consume on success).
    pub registration_token: Option<String>,
}

struct Session {
    created: Instant,
    purpose: &'static str,
    user: Option<OwnedUserId>,
    completed: Vec<AuthType>,
    registration_token: Option<String>,
}

/// The UIA session table.
#[derive(Clone)]
pub struct Uia {
    store: Store,
    passwords: Passwords,
    rate_limiter: RateLimiter,
    server_name: ruma::OwnedServerName,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

impl Uia {
    pub fn new(
        store: Store,
        passwords: Passwords,
        rate_limiter: RateLimiter,
        server_name: ruma::OwnedServerName,
    ) -> Self {
        Self { store, passwords, rate_limiter, server_name, sessions: Arc::default() }
    }

    /// Drives one step of UIA for `purpose`. `user` is the account the
    /// password stage must prove (the requester); `client` identifies an
    /// anonymous requester (its IP); `flows` are the acceptable stage
    /// sequences. Returns once a whole flow is complete, and otherwise
    /// [`Error::Uia`] with what the client must do next.
    pub async fn authenticate(
        &self,
        purpose: &'static str,
        user: Option<&UserId>,
        client: &str,
        flows: &[Vec<AuthType>],
        auth: Option<&AuthData>,
    ) -> Result<Completed> {
        let requester = user.map_or_else(|| client.to_owned(), |u| u.to_string());
        let Some(auth) = auth else {
            let session = self.open(purpose, user, requester)?;
            return Err(self.challenge(flows, &session, None));
        };
        let session_id = match auth.session() {
            Some(id) => self.resume(id, purpose, user)?,
            None => self.open(purpose, user, requester)?,
        };
        let Some(stage) = auth.auth_type() else {
            // A fallback acknowledgement: report where the session stands.
            return self.finish_or_challenge(flows, &session_id);
        };
        if !flows.iter().flatten().any(|s| *s == stage) {
            let error = StandardErrorBody::new(ErrorKind::Unrecognized, "Unsupported stage".into());
            return Err(self.challenge(flows, &session_id, Some(error)));
        }
        match self.verify(&stage, auth, user).await? {
            Ok(token) => {
                let mut sessions = self.lock();
                if let Some(session) = sessions.get_mut(&session_id) {
                    if !session.completed.contains(&stage) {
                        session.completed.push(stage);
                    }
                    if token.is_some() {
                        session.registration_token = token;
                    }
                }
            }
            Err(error) => return Err(self.challenge(flows, &session_id, Some(error))),
        }
        self.finish_or_challenge(flows, &session_id)
    }

    /// Checks one stage. The outer `Result` is an internal failure; the inner
    /// one is the client's failure, reported inside the 401 challenge.
    async fn verify(
        &self,
        stage: &AuthType,
        auth: &AuthData,
        user: Option<&UserId>,
    ) -> Result<Result<Option<String>, StandardErrorBody>> {
        let forbidden = |message: &str| Ok(Err(StandardErrorBody::new(ErrorKind::Forbidden, message.into())));
        match (stage, auth) {
            (AuthType::Dummy, _) => Ok(Ok(None)),
            (AuthType::Password, AuthData::Password(p)) => {
                let Some(user) = user else { return forbidden("No account to authenticate") };
                let named = match &p.identifier {
                    UserIdentifier::Matrix(id) => {
                        tessera_core::user_ids::user_id_for_login(&id.user, &self.server_name)
                    }
                    _ => None,
                };
                if named.as_deref() != Some(user) {
                    // Someone else's credentials: refused outright (403),
                    // not a stage to retry, as Synapse answers.
                    return Err(Error::forbidden("The identifier does not match the authenticated user"));
                }
                // Password guesses through UIA count like login attempts.
                self.rate_limiter.check(Class::Login, user.as_str())?;
                let hash = self.store.get_user(user).await?.and_then(|u| u.password_hash);
                if self.passwords.verify(p.password.clone(), hash).await? {
                    Ok(Ok(None))
                } else {
                    forbidden("Invalid password")
                }
            }
            (AuthType::RegistrationToken, AuthData::RegistrationToken(t)) => {
                let valid = self
                    .store
                    .get_registration_token(&t.token)
                    .await?
                    .is_some_and(|token| token.is_valid_at(now_ms()));
                if valid { Ok(Ok(Some(t.token.clone()))) } else { forbidden("Invalid registration token") }
            }
            _ => Ok(Err(StandardErrorBody::new(ErrorKind::BadJson, "Malformed auth data".into()))),
        }
    }

    fn finish_or_challenge(&self, flows: &[Vec<AuthType>], session_id: &str) -> Result<Completed> {
        let mut sessions = self.lock();
        let done = sessions.get(session_id).is_some_and(|session| {
            flows.iter().any(|flow| flow.iter().all(|stage| session.completed.contains(stage)))
        });
        if done {
            let session = sessions.remove(session_id);
            return Ok(Completed { registration_token: session.and_then(|s| s.registration_token) });
        }
        drop(sessions);
        Err(self.challenge(flows, session_id, None))
    }

    fn challenge(
        &self,
        flows: &[Vec<AuthType>],
        session_id: &str,
        error: Option<StandardErrorBody>,
    ) -> Error {
        let mut info = UiaaInfo::new(flows.iter().map(|f| AuthFlow::new(f.clone())).collect());
        info.session = Some(session_id.to_owned());
        info.completed = self.lock().get(session_id).map(|s| s.completed.clone()).unwrap_or_default();
        info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
        info.auth_error = error.map(Box::new);
        Error::Uia(Box::new(info))
    }

    /// Opens a session for `requester` (the user ID, or the client IP for
    /// registration).
    fn open(&self, purpose: &'static str, user: Option<&UserId>, requester: String) -> Result<String> {
        self.rate_limiter.check(Class::General, &format!("uia-session {requester}"))?;
        let id = secrets::new_token("uia");
        let mut sessions = self.lock();
        let now = Instant::now();
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        }
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.values().map(|s| s.created).min().unwrap_or(now);
            let frees_in = SESSION_TTL.saturating_sub(now.duration_since(oldest));
            return Err(Error::limit_exceeded(frees_in.max(Duration::from_secs(1))));
        }
        sessions.insert(
            id.clone(),
            Session {
                created: now,
                purpose,
                user: user.map(ToOwned::to_owned),
                completed: Vec::new(),
                registration_token: None,
            },
        );
        Ok(id)
    }

    fn resume(&self, id: &str, purpose: &'static str, user: Option<&UserId>) -> Result<String> {
        let sessions = self.lock();
        match sessions.get(id) {
            Some(s) if s.created.elapsed() < SESSION_TTL => {
                if s.purpose != purpose || s.user.as_deref() != user {
                    return Err(Error::forbidden("This session belongs to another request"));
                }
                Ok(id.to_owned())
            }
            // Synapse answers an unknown session the same way; clients restart the flow.
            _ => Err(Error::unknown("Unknown or expired UIA session")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
