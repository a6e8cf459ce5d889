//! The longest strings a client may store outside events, checked where
//! each is accepted. Events have the spec's own limits (checked by the core
//! when they are built); path parameters, and the depth, numbers and NUL
//! characters of every JSON body, are checked at the edge (`tessera-web`'s
//! `input`). Without these a 1 MB device name or status message would be
//! stored and then copied into other users' syncs.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#size-limits>
//! (identifiers: 255 bytes); the rest follow Synapse's limits where it has
//! them.

use crate::{Error, Result};

/// Device IDs are identifiers: 255 bytes.
pub const MAX_DEVICE_ID_BYTES: usize = 255;
/// Other identifiers a client names in a body, like a key backup's
/// algorithm and session IDs (path parameters have the same limit).
pub const MAX_IDENTIFIER_BYTES: usize = 255;
/// A device's display name (Synapse: 100 characters).
pub const MAX_DEVICE_NAME_CHARS: usize = 100;
/// A presence status message.
pub const MAX_STATUS_MSG_CHARS: usize = 1_024;
/// A display name, in bytes (Synapse's limit, in characters, is 256).
pub const MAX_DISPLAYNAME_BYTES: usize = 256;
/// An avatar's `mxc://` URI (Synapse: 1,000).
pub const MAX_AVATAR_URL_BYTES: usize = 1_000;
/// A password (Synapse: 512); longer ones are never hashed.
pub const MAX_PASSWORD_BYTES: usize = 512;

/// 400 `M_INVALID_PARAM` naming `field` if `value` has more than `max`
/// characters.
pub fn check_chars(field: &str, value: &str, max: usize) -> Result<()> {
    // Bytes bound characters from above: most values need no count.
    if value.len() > max && value.chars().count() > max {
        return Err(Error::invalid_param(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

/// 400 `M_INVALID_PARAM` naming `field` if `value` has more than `max` bytes.
pub fn check_bytes(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid_param(format!("{field} is longer than {max} bytes")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_characters_or_bytes() {
        assert!(check_chars("name", &"é".repeat(100), 100).is_ok(), "100 two-byte characters");
        assert!(check_chars("name", &"é".repeat(101), 100).is_err());
        assert!(check_bytes("id", &"é".repeat(100), 199).is_err());
        assert!(check_bytes("id", "ABCDEF", 255).is_ok());
    }
}
