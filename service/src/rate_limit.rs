//! Rate limits: token buckets per (class, key), answered with
//! `429 M_LIMIT_EXCEEDED` and `retry_after_ms`.
//!
//! Keys are the user ID for authenticated requests and the client IP
//! otherwise. Buckets live in memory: a limit is a courtesy to the server,
//! not a security boundary that must survive restarts.

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
    /// Login attempts per client IP.
    pub login: Limit,
    /// Registrations per client IP.
    pub registration: Limit,
    /// Every rate-limited endpoint, per user (or per IP when anonymous).
    pub general: Limit,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self { login: Limit::new(0.2, 5), registration: Limit::new(0.2, 5), general: Limit::new(10.0, 50) }
    }
}

/// Which limit a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Login,
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
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second;
            Err(Error::limit_exceeded(Duration::from_secs_f64(wait).max(Duration::from_millis(1))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::error::ErrorKind;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        let limit = Limit::new(per_second, burst);
        RateLimiter::new(RateLimitSettings { login: limit, registration: limit, general: limit })
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
    fn zero_rate_disables() {
        let limiter = limiter(0.0, 0);
        for _ in 0..1000 {
            limiter.check(Class::General, "x").expect("disabled");
        }
    }
}
