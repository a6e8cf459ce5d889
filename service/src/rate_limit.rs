//! Rate limits: token buckets per (class, key), answered with
//! `429 M_LIMIT_EXCEEDED` and `retry_after_ms`.
//!
//! Keys are the user ID for authenticated requests and the client IP
//! otherwise; failed logins are counted per client IP and per account.
//! Buckets live in memory: a limit is a courtesy to the server, not a
//! security boundary that must survive restarts.
//!
//! Login limits count failures only, as Synapse's `rc_login.failed_attempts`
//! does: an [`Attempt`] takes its token before the password is checked (so
//! concurrent guesses cannot all slip past an almost empty bucket) and a
//! correct login gives it back.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One limit: a sustained rate and a burst allowance. A rate of 0 disables it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

impl Limit {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// The configurable limits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Failed logins per client IP: what keeps one address from trying a
    /// password on many accounts. Correct logins do not count, so the
    /// users of a shared address (behind a proxy or NAT) only share each
    /// other's failures.
    pub login: Limit,
    /// Failed password logins per account, from any address: what keeps
    /// many addresses from guessing one account's password. Only password
    /// logins are refused once it is used up; the account's access tokens
    /// keep working, so its owner can still use a signed-in client (and
    /// sign in a new device with a login token from it).
    pub failed_login: Limit,
    /// Registrations per client IP.
    pub registration: Limit,
    /// Every rate-limited endpoint, per user (or per IP when anonymous).
    pub general: Limit,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            login: Limit::new(0.2, 5),
            // Synapse's rc_login.failed_attempts defaults.
            failed_login: Limit::new(0.17, 3),
            registration: Limit::new(0.2, 5),
            general: Limit::new(10.0, 50),
        }
    }
}

/// Which limit a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Failed logins, per client IP (also UIA password attempts, per user).
    Login,
    /// Failed password logins, per account.
    FailedLogin,
    Registration,
    General,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

struct Buckets {
    map: HashMap<(Class, String), Bucket>,
    last_sweep: Instant,
}

/// Shared token buckets.
#[derive(Clone)]
pub struct RateLimiter {
    settings: RateLimitSettings,
    buckets: Arc<Mutex<Buckets>>,
}

/// Past this many buckets, refilled (idle) ones are dropped, at most once
/// per [`SWEEP_INTERVAL`].
const MAX_BUCKETS: usize = 100_000;
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        let buckets = Buckets { map: HashMap::new(), last_sweep: Instant::now() };
        Self { settings, buckets: Arc::new(Mutex::new(buckets)) }
    }

    fn limit(&self, class: Class) -> Limit {
        match class {
            Class::Login => self.settings.login,
            Class::FailedLogin => self.settings.failed_login,
            Class::Registration => self.settings.registration,
            Class::General => self.settings.general,
        }
    }

    /// Takes one token for `key` in `class`, or says how long to wait.
    pub fn check(&self, class: Class, key: &str) -> Result<()> {
        let limit = self.limit(class);
        if limit.per_second <= 0.0 {
            return Ok(());
        }
        let wait = self.with_bucket(class, key, |bucket| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                None
            } else {
                Some((1.0 - bucket.tokens) / limit.per_second)
            }
        });
        match wait {
            None => Ok(()),
            Some(wait) => {
                Err(Error::limit_exceeded(Duration::from_secs_f64(wait).max(Duration::from_millis(1))))
            }
        }
    }

    /// Takes one token for an attempt that counts only if it fails: see
    /// [`Attempt`].
    pub fn attempt(&self, class: Class, key: &str) -> Result<Attempt> {
        self.check(class, key)?;
        let taken = (self.limit(class).per_second > 0.0).then(|| (self.clone(), class, key.to_owned()));
        Ok(Attempt { taken })
    }

    /// Runs `f` on the bucket of `key` in `class`, refilled up to now.
    fn with_bucket<T>(&self, class: Class, key: &str, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let limit = self.limit(class);
        let burst = f64::from(limit.burst.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.map.len() > MAX_BUCKETS && now.duration_since(buckets.last_sweep) >= SWEEP_INTERVAL {
            // Each bucket is judged by its own class's limit: a bucket that
            // would be full again is indistinguishable from a new one.
            buckets.map.retain(|(class, _), b| {
                let limit = self.limit(*class);
                let full = f64::from(limit.burst.max(1));
                b.tokens + now.duration_since(b.updated).as_secs_f64() * limit.per_second < full
            });
            buckets.last_sweep = now;
        }
        let bucket =
            buckets.map.entry((class, key.to_owned())).or_insert(Bucket { tokens: burst, updated: now });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        f(bucket)
    }
}

/// A token taken for an attempt (a login) that counts only if it fails.
/// Dropped, it stays taken: the attempt counted. [`Attempt::refund`] gives
/// it back, for an attempt that succeeded or was never judged.
#[must_use = "dropping an attempt counts it as failed"]
pub struct Attempt {
    /// `None` when the limit is off.
    taken: Option<(RateLimiter, Class, String)>,
}

impl Attempt {
    pub fn refund(self) {
        if let Some((limiter, class, key)) = self.taken {
            let burst = f64::from(limiter.limit(class).burst.max(1));
            limiter.with_bucket(class, &key, |bucket| bucket.tokens = (bucket.tokens + 1.0).min(burst));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::error::ErrorKind;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        let limit = Limit::new(per_second, burst);
        RateLimiter::new(RateLimitSettings {
            login: limit,
            failed_login: limit,
            registration: limit,
            general: limit,
        })
    }

    #[test]
    fn burst_then_limited_with_retry_after() {
        let limiter = limiter(1.0, 3);
        for _ in 0..3 {
            limiter.check(Class::Login, "1.2.3.4").expect("within burst");
        }
        let Err(Error::Matrix { status, kind: ErrorKind::LimitExceeded(data), .. }) =
            limiter.check(Class::Login, "1.2.3.4")
        else {
            panic!("fourth request should be limited");
        };
        assert_eq!(status, 429);
        let Some(ruma::api::error::RetryAfter::Delay(wait)) = data.retry_after else {
            panic!("retry_after must be a delay");
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
    }

    #[test]
    fn keys_and_classes_are_independent() {
        let limiter = limiter(1.0, 1);
        limiter.check(Class::Login, "a").expect("first for a");
        limiter.check(Class::Login, "b").expect("first for b");
        limiter.check(Class::Registration, "a").expect("other class");
        assert!(limiter.check(Class::Login, "a").is_err());
    }

    #[test]
    fn attempts_count_only_when_they_fail() {
        let limiter = limiter(0.001, 2);
        // Correct logins give their token back: any number of them.
        for _ in 0..10 {
            limiter.attempt(Class::FailedLogin, "@alice:x").expect("within burst").refund();
        }
        // Failures keep theirs; while two are being judged, a third waits.
        let first = limiter.attempt(Class::FailedLogin, "@alice:x").expect("first");
        let _second = limiter.attempt(Class::FailedLogin, "@alice:x").expect("second");
        assert!(limiter.attempt(Class::FailedLogin, "@alice:x").is_err(), "both tokens are taken");
        first.refund();
        let _third = limiter.attempt(Class::FailedLogin, "@alice:x").expect("the refunded token");
        assert!(limiter.attempt(Class::FailedLogin, "@alice:x").is_err());
        limiter.attempt(Class::FailedLogin, "@bob:x").expect("another account").refund();
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = limiter(0.0, 0);
        for _ in 0..1000 {
            limiter.check(Class::General, "x").expect("disabled");
            drop(limiter.attempt(Class::FailedLogin, "x").expect("disabled"));
        }
    }
}
