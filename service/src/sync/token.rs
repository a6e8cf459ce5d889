//! Sync tokens: one position per stream, opaque to clients. Today only
//! room events have a stream (`s{events}`); typing, receipts, presence,
//! account data and the rest will add fields after an underscore.

use std::{fmt, str::FromStr};

use crate::{Error, Result};

/// Where a client's sync stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncToken {
    /// The room-event stream position.
    pub events: i64,
}

impl SyncToken {
    /// Refuses a token from the future: a client cannot have seen what the
    /// server has not yet persisted (a token from another server, or a
    /// database restored from an older backup).
    pub fn validate(self, persisted_upto: i64) -> Result<Self> {
        if self.events > persisted_upto {
            return Err(Error::invalid_param("The sync token is ahead of this server"));
        }
        Ok(self)
    }
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.events)
    }
}

impl FromStr for SyncToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let events = s
            .strip_prefix('s')
            .and_then(|rest| rest.split('_').next())
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid_param("Malformed sync token"))?;
        Ok(Self { events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token: SyncToken = "s42".parse().expect("valid");
        assert_eq!(token, SyncToken { events: 42 });
        assert_eq!(token.to_string(), "s42");
        assert_eq!("s42_7_9".parse::<SyncToken>().expect("future fields are ignored").events, 42);
        for bad in ["", "s", "42", "sx", "s-1", "t1_2"] {
            assert!(bad.parse::<SyncToken>().is_err(), "{bad:?} accepted");
        }
        assert!(token.validate(41).is_err(), "a token from the future");
        assert!(token.validate(42).is_ok());
    }
}
