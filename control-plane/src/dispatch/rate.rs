//! Token buckets of the functions with a `rate_limit`: one per such function, refilled
//! by the clock the caller passes in, so the arithmetic is testable without waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The rate a bucket enforces (this node's share of the function's limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held.
    pub burst: f64,
}

impl Rate {
    /// This node's share of `per_second` and `burst` when `nodes` nodes admit executions
    /// of the function: each an equal part, never a burst below one execution.
    pub fn share(per_second: f64, burst: u32, nodes: usize) -> Rate {
        let nodes = nodes.max(1) as f64;
        Rate {
            per_second: per_second / nodes,
            burst: (f64::from(burst) / nodes).max(1.0),
        }
    }

    /// How long until `missing` more tokens have been added.
    fn time_for(self, missing: f64) -> Duration {
        Duration::try_from_secs_f64(missing.max(0.0) / self.per_second).unwrap_or(Duration::MAX)
    }
}

/// A reservation past `backlog` owed tokens was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlogged {
    /// Executions already waiting for a token.
    pub owed: usize,
}

#[derive(Debug)]
struct Bucket {
    rate: Rate,
    /// Below zero: tokens promised to delayed executions.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        if self.rate != rate {
            // A redeploy (or a node joining or leaving) changed the limit: it holds from
            // now on. A larger burst is room at once; a smaller one caps what is left.
            let more_room = (rate.burst - self.rate.burst).max(0.0);
            self.rate = rate;
            self.tokens = (self.tokens + more_room).min(rate.burst);
        }
    }
}

/// The buckets, by function.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// How many buckets are kept, readable without the lock: the admission of a
    /// function without a limit costs no lock while no function has one.
    kept: AtomicUsize,
}

impl RateLimits {
    fn with<T>(
        &self,
        function: &str,
        rate: Rate,
        now: Instant,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let kept = buckets.len();
        let bucket = buckets.entry(function.to_owned()).or_insert(Bucket {
            rate,
            tokens: rate.burst,
            at: now,
        });
        bucket.refill(rate, now);
        let answer = f(bucket);
        if buckets.len() != kept {
            self.kept.store(buckets.len(), Ordering::Relaxed);
        }
        answer
    }

    /// Takes a token for an execution that must start now or not at all (an API call):
    /// `Err` with the wait until one is free.
    pub fn try_take(&self, function: &str, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.with(function, rate, now, |bucket| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                Ok(())
            } else {
                Err(rate.time_for(1.0 - bucket.tokens))
            }
        })
    }

    /// Takes a token for an execution that may wait for it: answers how long it waits
    /// (zero when a token is free now). Refused once `backlog` executions wait already,
    /// so the owed time stays bounded.
    pub fn reserve(
        &self,
        function: &str,
        rate: Rate,
        backlog: usize,
        now: Instant,
    ) -> Result<Duration, Backlogged> {
        self.with(function, rate, now, |bucket| {
            let owed = (-bucket.tokens).max(0.0).ceil() as usize;
            if bucket.tokens < 1.0 && owed >= backlog {
                return Err(Backlogged { owed });
            }
            bucket.tokens -= 1.0;
            Ok(rate.time_for(-bucket.tokens))
        })
    }

    /// Gives back the token an execution of `function` took but will not use (it was
    /// not stored after all: a full queue, a failing store, a tick another node fired).
    pub fn give_back(&self, function: &str) {
        if self.len() == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(function) {
            bucket.tokens = (bucket.tokens + 1.0).min(bucket.rate.burst);
        }
    }

    /// Forgets the bucket of `function` (deleted, or no longer limited).
    pub fn forget(&self, function: &str) {
        if self.len() == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.remove(function);
        self.kept.store(buckets.len(), Ordering::Relaxed);
    }

    /// Keeps only the buckets of the functions `keep` answers `true` for.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.retain(|function, _| keep(function));
        self.kept.store(buckets.len(), Ordering::Relaxed);
    }

    /// How many buckets are kept.
    pub fn len(&self) -> usize {
        self.kept.load(Ordering::Relaxed)
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0).min(u64::MAX as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_BURST_THREE: Rate = Rate {
        per_second: 2.0,
        burst: 3.0,
    };

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_passes_its_burst_then_refills_at_its_rate() {
        let limits = RateLimits::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.try_take("f", TWO_BURST_THREE, start), Ok(()));
        }
        let wait = limits.try_take("f", TWO_BURST_THREE, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(limits
            .try_take("f", TWO_BURST_THREE, Instant::now())
            .is_err());
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(
            limits.try_take("f", TWO_BURST_THREE, Instant::now()),
            Ok(())
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(
                limits.try_take("f", TWO_BURST_THREE, Instant::now()),
                Ok(())
            );
        }
        assert!(
            limits
                .try_take("f", TWO_BURST_THREE, Instant::now())
                .is_err(),
            "refilled to the burst, no more"
        );
        assert!(
            limits
                .try_take("g", TWO_BURST_THREE, Instant::now())
                .is_ok(),
            "one bucket per function"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_queue_up_behind_each_other_up_to_the_backlog() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..6)
            .map(|_| limits.reserve("f", TWO_BURST_THREE, 3, now).unwrap())
            .collect();
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(delays, [ms(0), ms(0), ms(0), ms(500), ms(1000), ms(1500)]);
        assert_eq!(
            limits.reserve("f", TWO_BURST_THREE, 3, now),
            Err(Backlogged { owed: 3 })
        );
        assert_eq!(
            limits.try_take("f", TWO_BURST_THREE, now),
            Err(ms(2000)),
            "a call waits behind the delayed ones"
        );
        tokio::time::advance(ms(2000)).await;
        assert_eq!(
            limits.try_take("f", TWO_BURST_THREE, Instant::now()),
            Ok(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_given_back_is_free_again_up_to_the_burst() {
        let limits = RateLimits::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.try_take("f", TWO_BURST_THREE, now), Ok(()));
        }
        assert!(limits.try_take("f", TWO_BURST_THREE, now).is_err());
        limits.give_back("f");
        assert_eq!(limits.try_take("f", TWO_BURST_THREE, now), Ok(()));
        let waits = limits.reserve("f", TWO_BURST_THREE, 3, now).unwrap();
        assert_eq!(waits, Duration::from_millis(500));
        limits.give_back("f");
        assert_eq!(
            limits.reserve("f", TWO_BURST_THREE, 3, now),
            Ok(Duration::from_millis(500)),
            "the reservation given back is not owed any more"
        );
        for _ in 0..10 {
            limits.give_back("f");
        }
        let taken = (0..5)
            .take_while(|_| limits.try_take("f", TWO_BURST_THREE, now).is_ok())
            .count();
        assert_eq!(taken, 3, "never more than the burst");
        limits.give_back("unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_limit_applies_at_once_and_forgotten_buckets_start_full() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let slow = Rate {
            per_second: 0.5,
            burst: 1.0,
        };
        assert!(limits.try_take("f", TWO_BURST_THREE, now).is_ok());
        assert!(
            limits.try_take("f", slow, now).is_ok(),
            "clamped to 1, one left"
        );
        assert_eq!(limits.try_take("f", slow, now), Err(Duration::from_secs(2)));
        let wide = Rate {
            per_second: 0.5,
            burst: 3.0,
        };
        assert_eq!(limits.try_take("f", wide, now), Ok(()), "two more at once");
        assert_eq!(limits.try_take("f", wide, now), Ok(()));
        assert!(limits.try_take("f", wide, now).is_err());
        limits.forget("f");
        assert_eq!(limits.len(), 0);
        assert!(limits.try_take("f", slow, now).is_ok());
        limits.retain(|function| function != "f");
        assert_eq!(limits.len(), 0);
    }

    #[test]
    fn each_node_enforces_its_share_with_a_burst_of_at_least_one() {
        assert_eq!(
            Rate::share(10.0, 6, 4),
            Rate {
                per_second: 2.5,
                burst: 1.5
            }
        );
        assert_eq!(Rate::share(1.0, 2, 3).burst, 1.0);
        assert_eq!(Rate::share(1.0, 2, 0), Rate::share(1.0, 2, 1));
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
