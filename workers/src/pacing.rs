//! Sending pace: each number's budget at Meta (a token bucket with a burst) and each customer's
//! (a short burst, then about one message per 6 s), as one decision per send.
//!
//! In-process the buckets are `governor`'s. With Redis they live there, as GCRA cells updated by
//! one Lua script per decision (one round trip), so that every sender process shares one budget
//! per number. If Redis stops answering, the sender falls back to its in-process buckets (and
//! says so) rather than stop sending or send unpaced.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

/// A bucket: one send per `interval` on average, `burst` at once.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub interval: Duration,
    pub burst: u32,
}

impl Budget {
    pub fn per_second(rate: u32, burst: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.max(1),
            burst: burst.max(1),
        }
    }

    /// The same budget as a `governor` quota, for in-process buckets.
    pub fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }

    /// GCRA's tolerance: how far ahead of now the cell may run (burst - 1 intervals).
    fn tolerance(self) -> Duration {
        self.interval * (self.burst - 1)
    }
}

type Keyed =
    RateLimiter<String, governor::state::keyed::DefaultKeyedStateStore<String>, DefaultClock>;

/// The pacer of one sender process.
pub struct Pacer {
    number: Budget,
    customer: Budget,
    local_numbers: Keyed,
    local_customers: Keyed,
    shared: Option<SharedBuckets>,
}

/// GCRA buckets in Redis, shared by every process with the same Redis and key prefix.
#[derive(Clone)]
pub struct SharedBuckets {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl SharedBuckets {
    pub fn new(connection: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
            script: redis::Script::new(GCRA),
        }
    }

    /// The installation's key for `name` (`{prefix}{name}`).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Takes a slot in every bucket (`name`, budget) when all of them have one, in one round
    /// trip; otherwise takes none. Answers zero, or how long until all would allow it.
    pub async fn take(&self, buckets: &[(&str, Budget)]) -> redis::RedisResult<Duration> {
        let mut invocation = self.script.prepare_invoke();
        for (name, budget) in buckets {
            invocation
                .key(self.key(name))
                .arg(micros(budget.interval))
                .arg(micros(budget.tolerance()));
        }
        let mut connection = self.connection.clone();
        let wait: u64 = invocation.invoke_async(&mut connection).await?;
        Ok(Duration::from_micros(wait))
    }

    /// A connection to the same Redis, for the caller's own keys.
    pub fn connection(&self) -> redis::aio::ConnectionManager {
        self.connection.clone()
    }
}

/// Checks every cell it is given and takes a slot in all of them only when all allow it, so a
/// paced customer never spends the number's budget. Answers 0, or the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local next_tat = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local early = tat - (now + tolerance)
  if early > wait then wait = early end
  next_tat[i] = tat + interval
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%d', next_tat[i]), 'PX', math.ceil((next_tat[i] - now) / 1000) + 1000)
end
return 0
";

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Pacer {
    pub fn new(number: Budget, customer: Budget) -> Self {
        Self {
            number,
            customer,
            local_numbers: RateLimiter::keyed(number.quota()),
            local_customers: RateLimiter::keyed(customer.quota()),
            shared: None,
        }
    }

    /// Shares the buckets with every sender using this Redis and key prefix.
    pub fn with_redis(mut self, connection: redis::aio::ConnectionManager, prefix: &str) -> Self {
        self.shared = Some(SharedBuckets::new(connection, prefix));
        self
    }

    /// May one message go from `number` (to `customer`, when it is a message to a person) now?
    /// Answers how long to wait: zero means the slot is taken and the send may go.
    pub async fn acquire(&self, number: &str, customer: Option<&str>) -> Duration {
        if let Some(shared) = &self.shared {
            match self.acquire_shared(shared, number, customer).await {
                Ok(wait) => return wait,
                Err(error) => {
                    tracing::warn!(%error, "redis pacing unavailable; pacing in-process");
                }
            }
        }
        self.acquire_local(number, customer)
    }

    async fn acquire_shared(
        &self,
        shared: &SharedBuckets,
        number: &str,
        customer: Option<&str>,
    ) -> redis::RedisResult<Duration> {
        let number_key = format!("pace:number:{number}");
        let customer_key = customer.map(|customer| format!("pace:customer:{number}:{customer}"));
        let mut buckets = vec![(number_key.as_str(), self.number)];
        if let Some(key) = &customer_key {
            buckets.push((key.as_str(), self.customer));
        }
        shared.take(&buckets).await
    }

    /// The number first: a send the number's budget refuses must not spend the customer's slot
    /// (a customer with one reply would then wait their whole interval behind a busy number).
    /// `governor` cannot look without taking, so a customer refusal after the number allowed
    /// costs the number one slot: rare (a customer past their burst), and only throughput.
    fn acquire_local(&self, number: &str, customer: Option<&str>) -> Duration {
        let clock = DefaultClock::default();
        if let Err(not_until) = self.local_numbers.check_key(&number.to_owned()) {
            return not_until
                .wait_time_from(clock.now())
                .max(Duration::from_micros(1));
        }
        match customer.map(|c| self.local_customers.check_key(&format!("{number}:{c}"))) {
            Some(Err(not_until)) => not_until
                .wait_time_from(clock.now())
                .max(Duration::from_micros(1)),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_number_gets_its_burst_then_waits_and_customers_are_paced_apart() {
        let pacer = Pacer::new(
            Budget::per_second(10, 3),
            Budget {
                interval: Duration::from_secs(6),
                burst: 2,
            },
        );
        for _ in 0..3 {
            assert_eq!(pacer.acquire("n1", None).await, Duration::ZERO);
        }
        let wait = pacer.acquire("n1", None).await;
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another number has its own bucket.
        assert_eq!(pacer.acquire("n2", None).await, Duration::ZERO);
        // A customer past their burst waits their interval; another customer does not.
        let pacer = Pacer::new(
            Budget::per_second(10, 10),
            Budget {
                interval: Duration::from_secs(6),
                burst: 2,
            },
        );
        assert_eq!(pacer.acquire("n2", Some("c1")).await, Duration::ZERO);
        assert_eq!(pacer.acquire("n2", Some("c1")).await, Duration::ZERO);
        let wait = pacer.acquire("n2", Some("c1")).await;
        assert!(wait > Duration::from_secs(5), "{wait:?}");
        assert_eq!(pacer.acquire("n2", Some("c2")).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_busy_number_does_not_spend_a_customers_slot() {
        let pacer = Pacer::new(
            Budget::per_second(1, 1),
            Budget {
                interval: Duration::from_secs(60),
                burst: 1,
            },
        );
        assert_eq!(pacer.acquire("n", Some("first")).await, Duration::ZERO);
        // The number refuses: the second customer's one slot must still be there.
        let wait = pacer.acquire("n", Some("second")).await;
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        tokio::time::sleep(wait).await;
        assert_eq!(pacer.acquire("n", Some("second")).await, Duration::ZERO);
    }
}
