//! Sync tokens, opaque to clients: `s{position}_{typing}_{to_device}`.
//! Every persisted stream (room events, account data, receipts, to-device,
//! presence, deliveries) shares the server-wide position, which is never
//! handed out twice (see [`crate::streams`]), so a token stays valid across
//! restarts; typing, which lives in memory, has its own serial, which
//! starts again with the server.

use std::{fmt, str::FromStr};

use crate::{Error, Result};

/// Where a client's sync stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncToken {
    /// The server-wide position of the persisted streams.
    pub events: i64,
    /// The in-memory typing serial.
    pub typing: u64,
    /// The to-device messages this device has received (acknowledged by
    /// presenting this token).
    pub to_device: i64,
}

impl SyncToken {
    /// Refuses a token from the future: a client cannot have seen what the
    /// server has not yet persisted (a token from another server, or a
    /// database restored from an older backup).
    /// The typing serial of a token issued before this run of the server
    /// started (its position is below `started_at`) counts from another
    /// run's serial: it is read as "nothing seen", not refused, whether it
    /// is ahead of this run's serial or not (compared, it would hide this
    /// run's changes up to it).
    pub fn validate(self, persisted_upto: i64, started_at: i64, typing_serial: u64) -> Result<Self> {
        if self.events > persisted_upto || self.to_device > persisted_upto {
            return Err(Error::invalid_param("The sync token is ahead of this server"));
        }
        let earlier_run = self.events < started_at || self.typing > typing_serial;
        let typing = if earlier_run { 0 } else { self.typing };
        Ok(Self { typing, ..self })
    }
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}_{}_{}", self.events, self.typing, self.to_device)
    }
}

impl FromStr for SyncToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let malformed = || Error::invalid_param("Malformed sync token");
        let mut fields = s.strip_prefix('s').ok_or_else(malformed)?.split('_');
        let events =
            fields.next().and_then(|n| n.parse::<i64>().ok()).filter(|n| *n >= 0).ok_or_else(malformed)?;
        let typing = match fields.next() {
            Some(n) => n.parse::<u64>().map_err(|_| malformed())?,
            None => 0,
        };
        let to_device = match fields.next() {
            Some(n) => n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(malformed)?,
            None => 0,
        };
        Ok(Self { events, typing, to_device })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token: SyncToken = "s42_7_40".parse().expect("valid");
        assert_eq!(token, SyncToken { events: 42, typing: 7, to_device: 40 });
        assert_eq!(token.to_string(), "s42_7_40");
        assert_eq!("s42".parse::<SyncToken>().expect("typing defaults").typing, 0);
        assert_eq!("s42_7_9_1".parse::<SyncToken>().expect("later fields are ignored").to_device, 9);
        for bad in ["", "s", "42", "sx", "s-1", "t1_2", "s1_x"] {
            assert!(bad.parse::<SyncToken>().is_err(), "{bad:?} accepted");
        }
        assert!(token.validate(41, 1, 7).is_err(), "a position from the future");
        assert!("s42_7_43".parse::<SyncToken>().expect("valid").validate(42, 1, 7).is_err());
        assert_eq!(token.validate(42, 1, 7).expect("valid").typing, 7);
        assert_eq!(token.validate(42, 42, 7).expect("issued by this run").typing, 7);
        assert_eq!(token.validate(50, 1, 3).expect("ahead of the serial").typing, 0);
        let restarted = token.validate(1050, 43, 9).expect("a token from before a restart is valid");
        assert_eq!(
            restarted,
            SyncToken { events: 42, typing: 0, to_device: 40 },
            "its typing serial is another run's"
        );
    }
}
