//! Rules for the user IDs this server hands out.
//!
//! Spec: <https://spec.matrix.org/v1.16/appendices/#user-identifiers>. New
//! registrations must use the strict grammar (lower-case `a-z0-9._=-/+`);
//! historical IDs may be looser, which ruma's parser accepts.

use ruma::{OwnedUserId, ServerName, UserId};

/// Why a requested localpart was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalpartError {
    #[error("the user ID must not be empty")]
    Empty,
    #[error("user IDs may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'")]
    InvalidCharacters,
    #[error("the user ID is too long")]
    TooLong,
    #[error("the user ID belongs to another server")]
    OtherServer,
}

/// Builds the ID a new account would get for `requested`, which may be a bare
/// localpart or a full `@local:server` ID naming this server. ASCII capitals
/// are lowered (`Alice` registers `@alice`), as Synapse does and clients
/// and Complement expect; every other character outside the grammar is
/// refused.
pub fn user_id_for_registration(
    requested: &str,
    server_name: &ServerName,
) -> Result<OwnedUserId, LocalpartError> {
    let localpart = match requested.strip_prefix('@') {
        Some(full) => {
            let (local, server) = full.split_once(':').ok_or(LocalpartError::InvalidCharacters)?;
            if server != server_name.as_str() {
                return Err(LocalpartError::OtherServer);
            }
            local
        }
        None => requested,
    };
    if localpart.is_empty() {
        return Err(LocalpartError::Empty);
    }
    let localpart = localpart.to_ascii_lowercase();
    let allowed = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
    if !localpart.chars().all(allowed) {
        return Err(LocalpartError::InvalidCharacters);
    }
    UserId::parse(format!("@{localpart}:{server_name}")).map_err(|_| LocalpartError::TooLong)
}

/// Resolves what a client typed at login (`alice`, `@alice:server`) to a
/// user ID on this server. Login is lenient about case, as Synapse is, because
/// clients pass through whatever the person typed.
pub fn user_id_for_login(typed: &str, server_name: &ServerName) -> Option<OwnedUserId> {
    let typed = typed.trim();
    let full = if typed.starts_with('@') {
        typed.to_lowercase()
    } else {
        format!("@{}:{server_name}", typed.to_lowercase())
    };
    let user_id = UserId::parse(full).ok()?;
    (user_id.server_name() == server_name).then_some(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::server_name;

    #[test]
    fn registration_accepts_the_strict_grammar() {
        let server = server_name!("example.org");
        let id = user_id_for_registration("alice.b_c=d-e/f+g", server).expect("valid");
        assert_eq!(id.as_str(), "@alice.b_c=d-e/f+g:example.org");
        assert_eq!(
            user_id_for_registration("@bob:example.org", server).expect("valid").as_str(),
            "@bob:example.org"
        );
        let lowered = user_id_for_registration("user-UPPER", server).expect("capitals are lowered");
        assert_eq!(lowered.as_str(), "@user-upper:example.org");
    }

    #[test]
    fn registration_rejects_bad_localparts() {
        let server = server_name!("example.org");
        assert_eq!(user_id_for_registration("", server), Err(LocalpartError::Empty));
        assert_eq!(user_id_for_registration("Élodie", server), Err(LocalpartError::InvalidCharacters));
        assert_eq!(user_id_for_registration("a b", server), Err(LocalpartError::InvalidCharacters));
        assert_eq!(user_id_for_registration("@a:other.org", server), Err(LocalpartError::OtherServer));
        assert_eq!(user_id_for_registration(&"a".repeat(300), server), Err(LocalpartError::TooLong));
    }

    #[test]
    fn login_resolves_localparts_and_full_ids() {
        let server = server_name!("example.org");
        assert_eq!(user_id_for_login("Alice", server).expect("ok").as_str(), "@alice:example.org");
        assert_eq!(
            user_id_for_login("@alice:example.org", server).expect("ok").as_str(),
            "@alice:example.org"
        );
        assert!(user_id_for_login("@alice:other.org", server).is_none());
        assert!(user_id_for_login("@", server).is_none());
    }
}
