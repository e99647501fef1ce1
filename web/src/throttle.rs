//! Sign-in throttling. Every account and every client address may fail `security.login_burst`
//! times, then once per `security.login_refill_ms`; past that, every attempt on it (the right
//! password too) is refused until the budget has a slot again.
//!
//! A failure spends a slot of each key's bucket (`governor` in-process; GCRA cells in Redis
//! when it is configured, so that every node shares one budget); the failure that finds no slot
//! locks the key until the bucket would have one. Attempts on the same keys take turns within a
//! process, so that a hundred guesses sent at once are judged one after another and not all
//! before the first failure is counted. Keys are hashed: no email or address reaches Redis.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{RateLimiter, state::keyed::DefaultKeyedStateStore};
use redis::AsyncCommands;
use waos_engine::crypto::token_hash;
use waos_workers::pacing::{Budget, SharedBuckets};

/// Above this many keys, expired locks and idle buckets are dropped from memory.
const TIDY_ABOVE: usize = 10_000;
/// Turn-taking locks; two keys share one only when their hashes collide (a harmless wait).
const STRIPES: usize = 64;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// What an attempt is counted against.
pub enum ThrottleKey<'a> {
    Account(&'a str),
    Address(IpAddr),
}

impl ThrottleKey<'_> {
    fn hashed(&self) -> String {
        let plain = match self {
            ThrottleKey::Account(email) => format!("account:{}", email.trim().to_lowercase()),
            ThrottleKey::Address(address) => format!("address:{address}"),
        };
        token_hash(&plain)[..32].to_owned()
    }
}

pub struct LoginThrottle {
    budget: Budget,
    local: Keyed,
    locked: Mutex<HashMap<String, Instant>>,
    shared: Option<SharedBuckets>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Held while an attempt is judged; the next attempt on the same keys waits for it.
pub struct Turn<'a> {
    _held: Vec<tokio::sync::MutexGuard<'a, ()>>,
    keys: Vec<String>,
}

impl LoginThrottle {
    pub fn new(budget: Budget, shared: Option<SharedBuckets>) -> Self {
        Self {
            budget,
            local: RateLimiter::keyed(budget.quota()),
            locked: Mutex::new(HashMap::new()),
            shared,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// Waits for this attempt's turn on its keys.
    pub async fn turn(&self, keys: &[ThrottleKey<'_>]) -> Turn<'_> {
        let keys: Vec<String> = keys.iter().map(ThrottleKey::hashed).collect();
        let mut stripes: Vec<usize> = keys.iter().map(|key| stripe(key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held = Vec::with_capacity(stripes.len());
        for index in stripes {
            held.push(self.stripes[index].lock().await);
        }
        Turn { _held: held, keys }
    }

    /// How long until an attempt on these keys may be judged, if one of them is locked.
    pub async fn locked_for(&self, turn: &Turn<'_>) -> Option<Duration> {
        if let Some(shared) = &self.shared {
            match shared_lock(shared, &turn.keys).await {
                Ok(wait) => return wait,
                Err(error) => {
                    tracing::warn!(%error, "redis sign-in throttle unavailable; in-process")
                }
            }
        }
        let now = Instant::now();
        let locked = self.locked.lock().ok()?;
        turn.keys
            .iter()
            .filter_map(|key| locked.get(key))
            .filter(|until| **until > now)
            .map(|until| *until - now)
            .max()
    }

    /// Counts a failed attempt. Answers how long the keys are now locked for, when this
    /// failure found a budget with no slot left.
    pub async fn failed(&self, turn: &Turn<'_>) -> Option<Duration> {
        if let Some(shared) = &self.shared {
            match self.failed_shared(shared, &turn.keys).await {
                Ok(wait) => return wait,
                Err(error) => {
                    tracing::warn!(%error, "redis sign-in throttle unavailable; in-process")
                }
            }
        }
        let clock = DefaultClock::default();
        let now = Instant::now();
        let mut longest = None;
        let mut locked = self.locked.lock().ok()?;
        for key in &turn.keys {
            if let Err(not_until) = self.local.check_key(key) {
                let wait = not_until
                    .wait_time_from(clock.now())
                    .max(Duration::from_millis(1));
                locked.insert(key.clone(), now + wait);
                longest = longest.max(Some(wait));
            }
        }
        if locked.len() > TIDY_ABOVE {
            locked.retain(|_, until| *until > now);
        }
        if self.local.len() > TIDY_ABOVE {
            self.local.retain_recent();
        }
        longest
    }

    async fn failed_shared(
        &self,
        shared: &SharedBuckets,
        keys: &[String],
    ) -> redis::RedisResult<Option<Duration>> {
        let mut longest = None;
        for key in keys {
            let wait = shared
                .take(&[(format!("login:bucket:{key}").as_str(), self.budget)])
                .await?;
            if wait > Duration::ZERO {
                let mut connection = shared.connection();
                let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                let _: () = connection
                    .pset_ex(shared.key(&format!("login:lock:{key}")), 1, millis)
                    .await?;
                longest = longest.max(Some(wait));
            }
        }
        Ok(longest)
    }
}

async fn shared_lock(
    shared: &SharedBuckets,
    keys: &[String],
) -> redis::RedisResult<Option<Duration>> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.pttl(shared.key(&format!("login:lock:{key}")));
    }
    let mut connection = shared.connection();
    let remaining: Vec<i64> = pipe.query_async(&mut connection).await?;
    // PTTL is -2 for no key and -1 for no expiry (never written so).
    Ok(remaining
        .into_iter()
        .filter(|ms| *ms > 0)
        .max()
        .map(|ms| Duration::from_millis(ms.unsigned_abs())))
}

fn stripe(key: &str) -> usize {
    let byte = |i: usize| usize::from(key.as_bytes().get(i).copied().unwrap_or(0));
    (byte(0) * 31 + byte(1)) % STRIPES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(burst: u32, refill: Duration) -> LoginThrottle {
        LoginThrottle::new(
            Budget {
                interval: refill,
                burst,
            },
            None,
        )
    }

    #[tokio::test]
    async fn a_key_fails_its_burst_then_is_locked_until_its_bucket_refills() {
        let throttle = throttle(3, Duration::from_secs(60));
        let key = [ThrottleKey::Account("Ann@Example.com")];
        for _ in 0..3 {
            let turn = throttle.turn(&key).await;
            assert_eq!(throttle.locked_for(&turn).await, None);
            assert_eq!(throttle.failed(&turn).await, None);
        }
        let turn = throttle.turn(&key).await;
        let locked = throttle.failed(&turn).await.unwrap();
        assert!(locked > Duration::from_secs(50) && locked <= Duration::from_secs(60));
        assert!(throttle.locked_for(&turn).await.is_some());
        drop(turn);
        // The same account however it is spelt; another account and an address are free.
        let same = throttle
            .turn(&[ThrottleKey::Account(" ann@example.com")])
            .await;
        assert!(throttle.locked_for(&same).await.is_some());
        drop(same);
        let other = throttle
            .turn(&[
                ThrottleKey::Account("bob@example.com"),
                ThrottleKey::Address("192.0.2.1".parse().unwrap()),
            ])
            .await;
        assert_eq!(throttle.locked_for(&other).await, None);
    }

    #[tokio::test]
    async fn a_lock_lapses_when_the_bucket_has_a_slot_again() {
        let throttle = throttle(1, Duration::from_millis(40));
        let key = [ThrottleKey::Address("2001:db8::1".parse().unwrap())];
        let turn = throttle.turn(&key).await;
        assert_eq!(throttle.failed(&turn).await, None);
        assert!(throttle.failed(&turn).await.is_some());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(throttle.locked_for(&turn).await, None);
        assert_eq!(throttle.failed(&turn).await, None);
    }
}
