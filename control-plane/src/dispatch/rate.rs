//! Token buckets of the functions with a `rate_limit`: one per such function, holding
//! this node's part of the limit, refilled by the clock the caller passes in (so the
//! arithmetic is testable without waiting), and measuring the demand on it, which
//! decides the parts of the nodes sharing a store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A function's whole `rate_limit`, as deployed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Executions per second.
    pub per_second: f64,
    /// Executions at once after a quiet spell.
    pub burst: f64,
}

impl Limit {
    /// `per_second` with a burst of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Limit {
        Limit {
            per_second,
            burst: f64::from(burst),
        }
    }

    /// This node's part of the limit: `fraction` (0 to 1) of it, never a burst below one
    /// execution.
    pub fn part(self, fraction: f64) -> Rate {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Rate {
            per_second: self.per_second * fraction,
            burst: (self.burst * fraction).max(1.0),
        }
    }
}

/// The rate a bucket enforces (this node's part of the function's limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held.
    pub burst: f64,
}

impl Rate {
    /// How long until `missing` more tokens have been added.
    fn time_for(self, missing: f64) -> Duration {
        Duration::try_from_secs_f64(missing.max(0.0) / self.per_second).unwrap_or(Duration::MAX)
    }
}

/// Over how long the demand on a bucket is averaged (an exponential decay with this time
/// constant, so it reads as executions asked for per second).
const DEMAND_WINDOW_SECS: f64 = 1.0;

/// A reservation past `backlog` owed tokens was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlogged {
    /// Executions already waiting for a token.
    pub owed: usize,
}

#[derive(Debug)]
struct Bucket {
    limit: Limit,
    rate: Rate,
    /// Below zero: tokens promised to delayed executions.
    tokens: f64,
    at: Instant,
    /// Executions asked for lately (taken, reserved or refused), decaying: about the
    /// number asked for per second.
    demand: f64,
}

impl Bucket {
    fn refill(&mut self, limit: Limit, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.demand *= (-elapsed / DEMAND_WINDOW_SECS).exp();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        if self.limit != limit {
            // A redeploy changed the limit: it holds from now on. A larger burst is room
            // at once; a smaller one caps what is left.
            let more_room = (rate.burst - self.rate.burst).max(0.0);
            self.tokens = (self.tokens + more_room).min(rate.burst);
        } else {
            // This node's part moved (the demand shifted between nodes, a node joined or
            // left): a larger part fills at its new rate, no token is made up at once, so
            // parts going back and forth never add up to more than the limit.
            self.tokens = self.tokens.min(rate.burst);
        }
        self.limit = limit;
        self.rate = rate;
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
        limit: Limit,
        fraction: f64,
        now: Instant,
        f: impl FnOnce(&mut Bucket, Rate) -> T,
    ) -> T {
        let rate = limit.part(fraction);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let kept = buckets.len();
        let bucket = buckets.entry(function.to_owned()).or_insert(Bucket {
            limit,
            rate,
            tokens: rate.burst,
            at: now,
            demand: 0.0,
        });
        bucket.refill(limit, rate, now);
        bucket.demand += 1.0;
        let answer = f(bucket, rate);
        if buckets.len() != kept {
            self.kept.store(buckets.len(), Ordering::Relaxed);
        }
        answer
    }

    /// Takes a token for an execution that must start now or not at all (an API call),
    /// from a bucket holding `fraction` of `limit`: `Err` with the wait until one is free.
    pub fn try_take(
        &self,
        function: &str,
        limit: Limit,
        fraction: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        self.with(function, limit, fraction, now, |bucket, rate| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                Ok(())
            } else {
                Err(rate.time_for(1.0 - bucket.tokens))
            }
        })
    }

    /// Takes a token for an execution that may wait for it, from a bucket holding
    /// `fraction` of `limit`: answers how long it waits (zero when a token is free now).
    /// Refused once `backlog` executions wait already, so the owed time stays bounded.
    pub fn reserve(
        &self,
        function: &str,
        limit: Limit,
        fraction: f64,
        backlog: usize,
        now: Instant,
    ) -> Result<Duration, Backlogged> {
        self.with(function, limit, fraction, now, |bucket, rate| {
            let owed = (-bucket.tokens).max(0.0).ceil() as usize;
            if bucket.tokens < 1.0 && owed >= backlog {
                return Err(Backlogged { owed });
            }
            bucket.tokens -= 1.0;
            Ok(rate.time_for(-bucket.tokens))
        })
    }

    /// The demand on `function`'s bucket at `now`: about how many executions were asked
    /// for per second lately (zero without a bucket).
    pub fn demand(&self, function: &str, now: Instant) -> f64 {
        if self.len() == 0 {
            return 0.0;
        }
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .get(function)
            .map_or(0.0, |bucket| decayed(bucket, now))
    }

    /// The demand on every bucket at `now`, by function.
    pub fn demands(&self, now: Instant) -> Vec<(String, f64)> {
        if self.len() == 0 {
            return Vec::new();
        }
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .iter()
            .map(|(function, bucket)| (function.clone(), decayed(bucket, now)))
            .collect()
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

/// The demand on `bucket` decayed to `now`.
fn decayed(bucket: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.demand * (-elapsed / DEMAND_WINDOW_SECS).exp()
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0).min(u64::MAX as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_BURST_THREE: Limit = Limit {
        per_second: 2.0,
        burst: 3.0,
    };

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_passes_its_burst_then_refills_at_its_rate() {
        let limits = RateLimits::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.try_take("f", TWO_BURST_THREE, 1.0, start), Ok(()));
        }
        let wait = limits
            .try_take("f", TWO_BURST_THREE, 1.0, start)
            .unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(limits
            .try_take("f", TWO_BURST_THREE, 1.0, Instant::now())
            .is_err());
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(
            limits.try_take("f", TWO_BURST_THREE, 1.0, Instant::now()),
            Ok(())
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(
                limits.try_take("f", TWO_BURST_THREE, 1.0, Instant::now()),
                Ok(())
            );
        }
        assert!(
            limits
                .try_take("f", TWO_BURST_THREE, 1.0, Instant::now())
                .is_err(),
            "refilled to the burst, no more"
        );
        assert!(
            limits
                .try_take("g", TWO_BURST_THREE, 1.0, Instant::now())
                .is_ok(),
            "one bucket per function"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_queue_up_behind_each_other_up_to_the_backlog() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..6)
            .map(|_| limits.reserve("f", TWO_BURST_THREE, 1.0, 3, now).unwrap())
            .collect();
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(delays, [ms(0), ms(0), ms(0), ms(500), ms(1000), ms(1500)]);
        assert_eq!(
            limits.reserve("f", TWO_BURST_THREE, 1.0, 3, now),
            Err(Backlogged { owed: 3 })
        );
        assert_eq!(
            limits.try_take("f", TWO_BURST_THREE, 1.0, now),
            Err(ms(2000)),
            "a call waits behind the delayed ones"
        );
        tokio::time::advance(ms(2000)).await;
        assert_eq!(
            limits.try_take("f", TWO_BURST_THREE, 1.0, Instant::now()),
            Ok(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_given_back_is_free_again_up_to_the_burst() {
        let limits = RateLimits::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.try_take("f", TWO_BURST_THREE, 1.0, now), Ok(()));
        }
        assert!(limits.try_take("f", TWO_BURST_THREE, 1.0, now).is_err());
        limits.give_back("f");
        assert_eq!(limits.try_take("f", TWO_BURST_THREE, 1.0, now), Ok(()));
        let waits = limits.reserve("f", TWO_BURST_THREE, 1.0, 3, now).unwrap();
        assert_eq!(waits, Duration::from_millis(500));
        limits.give_back("f");
        assert_eq!(
            limits.reserve("f", TWO_BURST_THREE, 1.0, 3, now),
            Ok(Duration::from_millis(500)),
            "the reservation given back is not owed any more"
        );
        for _ in 0..10 {
            limits.give_back("f");
        }
        let taken = (0..5)
            .take_while(|_| limits.try_take("f", TWO_BURST_THREE, 1.0, now).is_ok())
            .count();
        assert_eq!(taken, 3, "never more than the burst");
        limits.give_back("unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_limit_applies_at_once_and_forgotten_buckets_start_full() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let slow = Limit {
            per_second: 0.5,
            burst: 1.0,
        };
        assert!(limits.try_take("f", TWO_BURST_THREE, 1.0, now).is_ok());
        assert!(
            limits.try_take("f", slow, 1.0, now).is_ok(),
            "clamped to 1, one left"
        );
        assert_eq!(
            limits.try_take("f", slow, 1.0, now),
            Err(Duration::from_secs(2))
        );
        let wide = Limit {
            per_second: 0.5,
            burst: 3.0,
        };
        assert_eq!(
            limits.try_take("f", wide, 1.0, now),
            Ok(()),
            "two more at once"
        );
        assert_eq!(limits.try_take("f", wide, 1.0, now), Ok(()));
        assert!(limits.try_take("f", wide, 1.0, now).is_err());
        limits.forget("f");
        assert_eq!(limits.len(), 0);
        assert!(limits.try_take("f", slow, 1.0, now).is_ok());
        limits.retain(|function| function != "f");
        assert_eq!(limits.len(), 0);
    }

    #[test]
    fn a_part_of_the_limit_keeps_a_burst_of_at_least_one() {
        assert_eq!(
            Limit::new(10.0, 6).part(0.25),
            Rate {
                per_second: 2.5,
                burst: 1.5
            }
        );
        assert_eq!(Limit::new(1.0, 2).part(1.0 / 3.0).burst, 1.0);
        assert_eq!(Limit::new(1.0, 2).part(7.0), Limit::new(1.0, 2).part(1.0));
        assert_eq!(
            Limit::new(1.0, 2).part(f64::NAN),
            Limit::new(1.0, 2).part(1.0)
        );
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_part_fills_at_its_rate_and_makes_up_no_tokens() {
        let limits = RateLimits::default();
        let limit = Limit::new(4.0, 8);
        let now = Instant::now();
        let taken = (0..10)
            .take_while(|_| limits.try_take("f", limit, 0.5, now).is_ok())
            .count();
        assert_eq!(taken, 4, "half the burst");
        assert_eq!(
            limits.try_take("f", limit, 1.0, now),
            Err(Duration::from_millis(250)),
            "the whole limit now, but no token made up: one comes at its full rate"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let taken = (0..10)
            .take_while(|_| limits.try_take("f", limit, 1.0, Instant::now()).is_ok())
            .count();
        assert_eq!(taken, 4, "a second at four a second");
        tokio::time::advance(Duration::from_secs(10)).await;
        let _ = limits.try_take("f", limit, 0.25, Instant::now());
        let taken = (0..10)
            .take_while(|_| limits.try_take("f", limit, 0.25, Instant::now()).is_ok())
            .count();
        assert_eq!(taken, 1, "a shrunk part caps what is left at its burst (2)");
    }

    #[tokio::test(start_paused = true)]
    async fn demand_counts_what_is_asked_and_decays_over_a_second() {
        let limits = RateLimits::default();
        let limit = Limit::new(1.0, 1);
        let now = Instant::now();
        assert_eq!(limits.demand("f", now), 0.0);
        for _ in 0..20 {
            let _ = limits.try_take("f", limit, 1.0, now);
        }
        assert_eq!(
            limits.demand("f", now),
            20.0,
            "refused calls are demand too"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let later = limits.demand("f", Instant::now());
        assert!((later - 20.0 / std::f64::consts::E).abs() < 1e-9, "{later}");
        assert_eq!(
            limits.demands(Instant::now()),
            vec![("f".to_owned(), later)]
        );
    }
}
