//! The last hour of each function's executions on this node, in one-minute buckets:
//! finished executions, failures, cold starts and a small latency histogram per
//! bucket, so the console can chart throughput, error rate and p50/p99 without a
//! Prometheus server. Memory is bounded: 60 buckets per function and at most
//! [`MAX_FUNCTIONS`] functions (the least recently active one is dropped past that).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Buckets kept per function: one a minute for an hour.
pub const MINUTES: usize = 60;
/// Functions with a series at most; the catalog bounds functions far lower in
/// practice, this only caps memory if names come and go.
pub const MAX_FUNCTIONS: usize = 1024;
/// Latency histogram bounds: bucket `i` holds run times up to `FIRST_BOUND_MS *
/// 2^(i/2)`, the last bucket everything longer (~30 min at 46 buckets).
const LATENCY_BUCKETS: usize = 46;
const FIRST_BOUND_MS: f64 = 0.1;

/// One minute of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// Minutes since the Unix epoch this bucket counts; buckets of other minutes are
    /// stale and read as empty.
    minute: u64,
    finished: u32,
    errors: u32,
    cold_starts: u32,
    latencies: [u32; LATENCY_BUCKETS],
}

impl Bucket {
    const fn empty(minute: u64) -> Bucket {
        Bucket {
            minute,
            finished: 0,
            errors: 0,
            cold_starts: 0,
            latencies: [0; LATENCY_BUCKETS],
        }
    }
}

/// The upper bound in milliseconds of latency bucket `index`.
fn bound_ms(index: usize) -> f64 {
    FIRST_BOUND_MS * 2f64.powf(index as f64 / 2.0)
}

/// The latency bucket of a run time.
fn latency_index(ms: f64) -> usize {
    if !ms.is_finite() || ms <= FIRST_BOUND_MS {
        return 0;
    }
    let index = (2.0 * (ms / FIRST_BOUND_MS).log2()).ceil();
    (index as usize).min(LATENCY_BUCKETS - 1)
}

/// The upper bound of the bucket that holds quantile `q` of `histogram`, if it holds
/// anything: an estimate within a factor of √2 above the true value.
fn quantile(histogram: &[u32; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (index, &count) in histogram.iter().enumerate() {
        seen += u64::from(count);
        if seen >= rank {
            return Some(bound_ms(index));
        }
    }
    Some(bound_ms(LATENCY_BUCKETS - 1))
}

/// A function's ring of buckets.
#[derive(Debug, Clone)]
struct Ring {
    buckets: Box<[Bucket; MINUTES]>,
    /// The last minute written, to pick what to drop when full.
    touched: u64,
    last: Option<LastOutcome>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            buckets: Box::new([Bucket::empty(u64::MAX); MINUTES]),
            touched: 0,
            last: None,
        }
    }

    fn bucket(&mut self, minute: u64) -> &mut Bucket {
        let slot = &mut self.buckets[(minute % MINUTES as u64) as usize];
        if slot.minute != minute {
            *slot = Bucket::empty(minute);
        }
        self.touched = self.touched.max(minute);
        slot
    }
}

/// One finished execution as the series counts it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Its function.
    pub function: &'a str,
    /// Its terminal status.
    pub outcome: &'a str,
    /// Its run time in seconds, if it ran.
    pub ran: Option<f64>,
    /// Whether it waited for a warm instance to start.
    pub cold_start: bool,
}

/// The last finished execution of a function seen on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastOutcome {
    /// Its terminal status.
    pub status: String,
    /// When it was counted, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// One minute of a function's stats as answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinuteStats {
    /// The minute's start, milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Executions that finished in it.
    pub finished: u32,
    /// Those that did not succeed (error, timeout, cancelled).
    pub errors: u32,
    /// Those that waited for a warm instance to start.
    pub cold_starts: u32,
    /// Median run time in milliseconds (histogram estimate), if any ran.
    pub p50_ms: Option<f64>,
    /// 99th percentile run time in milliseconds (histogram estimate), if any ran.
    pub p99_ms: Option<f64>,
}

/// A function's last hour on this node, oldest minute first (always [`MINUTES`]
/// entries, the last one the current minute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStats {
    /// The function.
    pub function: String,
    /// The length of each bucket in seconds (60).
    pub bucket_seconds: u32,
    /// Executions finished in the hour.
    pub finished: u64,
    /// Failures among them.
    pub errors: u64,
    /// Cold starts among them.
    pub cold_starts: u64,
    /// Median run time over the hour, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile run time over the hour, in milliseconds.
    pub p99_ms: Option<f64>,
    /// The last finished execution counted.
    pub last: Option<LastOutcome>,
    /// The minutes.
    pub minutes: Vec<MinuteStats>,
}

/// Every function's series on this node.
#[derive(Debug, Default)]
pub struct Series {
    rings: Mutex<HashMap<String, Ring>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Series {
    /// Counts a finished execution now.
    pub fn record(&self, sample: Sample<'_>) {
        self.record_at(sample, now_ms());
    }

    /// Counts a finished execution at `at_ms` (milliseconds since the epoch).
    pub fn record_at(&self, sample: Sample<'_>, at_ms: u64) {
        let minute = at_ms / 60_000;
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        if !rings.contains_key(sample.function) && rings.len() >= MAX_FUNCTIONS {
            let stalest = rings
                .iter()
                .min_by_key(|(_, ring)| ring.touched)
                .map(|(name, _)| name.clone());
            if let Some(name) = stalest {
                rings.remove(&name);
            }
        }
        // Looked up before inserting: finishing an execution allocates nothing once
        // its function has a series.
        if !rings.contains_key(sample.function) {
            rings.insert(sample.function.to_owned(), Ring::new());
        }
        let Some(ring) = rings.get_mut(sample.function) else {
            return;
        };
        let bucket = ring.bucket(minute);
        bucket.finished = bucket.finished.saturating_add(1);
        if sample.outcome != "success" {
            bucket.errors = bucket.errors.saturating_add(1);
        }
        if sample.cold_start {
            bucket.cold_starts = bucket.cold_starts.saturating_add(1);
        }
        if let Some(seconds) = sample.ran {
            let slot = &mut bucket.latencies[latency_index(seconds * 1000.0)];
            *slot = slot.saturating_add(1);
        }
        match &mut ring.last {
            Some(last) if last.status == sample.outcome => last.at_ms = at_ms,
            last => {
                *last = Some(LastOutcome {
                    status: sample.outcome.to_owned(),
                    at_ms,
                })
            }
        }
    }

    /// `function`'s last hour up to now.
    pub fn stats(&self, function: &str) -> FunctionStats {
        self.stats_at(function, now_ms())
    }

    /// `function`'s last hour up to `at_ms`: all zero for a function with no series.
    pub fn stats_at(&self, function: &str, at_ms: u64) -> FunctionStats {
        let current = at_ms / 60_000;
        let ring = self
            .rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(function)
            .cloned();
        let mut total = Bucket::empty(0);
        let mut minutes = Vec::with_capacity(MINUTES);
        for back in (0..MINUTES as u64).rev() {
            let minute = current.saturating_sub(back);
            let bucket = ring
                .as_ref()
                .map(|ring| ring.buckets[(minute % MINUTES as u64) as usize])
                .filter(|bucket| bucket.minute == minute)
                .unwrap_or(Bucket::empty(minute));
            total.finished = total.finished.saturating_add(bucket.finished);
            total.errors = total.errors.saturating_add(bucket.errors);
            total.cold_starts = total.cold_starts.saturating_add(bucket.cold_starts);
            for (sum, count) in total.latencies.iter_mut().zip(bucket.latencies) {
                *sum = sum.saturating_add(count);
            }
            minutes.push(MinuteStats {
                start_ms: minute * 60_000,
                finished: bucket.finished,
                errors: bucket.errors,
                cold_starts: bucket.cold_starts,
                p50_ms: quantile(&bucket.latencies, 0.5),
                p99_ms: quantile(&bucket.latencies, 0.99),
            });
        }
        FunctionStats {
            function: function.to_owned(),
            bucket_seconds: 60,
            finished: u64::from(total.finished),
            errors: u64::from(total.errors),
            cold_starts: u64::from(total.cold_starts),
            p50_ms: quantile(&total.latencies, 0.5),
            p99_ms: quantile(&total.latencies, 0.99),
            last: ring.and_then(|ring| ring.last),
            minutes,
        }
    }

    /// How many functions have a series.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.rings.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;

    fn sample<'a>(function: &'a str, outcome: &'a str, ms: f64) -> Sample<'a> {
        Sample {
            function,
            outcome,
            ran: Some(ms / 1000.0),
            cold_start: false,
        }
    }

    #[test]
    fn latency_buckets_bound_their_values() {
        for ms in [0.05, 0.1, 0.3, 1.0, 7.5, 100.0, 2_500.0, 60_000.0] {
            let index = latency_index(ms);
            assert!(
                bound_ms(index) >= ms,
                "{ms} in bucket bounded {}",
                bound_ms(index)
            );
            if index > 0 {
                assert!(bound_ms(index - 1) < ms, "{ms} belongs lower");
            }
        }
        assert_eq!(latency_index(f64::INFINITY), 0);
        assert_eq!(latency_index(1e12), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn minutes_count_and_estimate_quantiles() {
        let series = Series::default();
        for i in 0..99 {
            series.record_at(sample("f", "success", 10.0), T0 + i);
        }
        series.record_at(sample("f", "error", 1_000.0), T0 + 100);
        series.record_at(
            Sample {
                cold_start: true,
                ..sample("f", "success", 10.0)
            },
            T0 + 60_000,
        );
        let stats = series.stats_at("f", T0 + 61_000);
        assert_eq!(stats.minutes.len(), MINUTES);
        let last = &stats.minutes[MINUTES - 1];
        let before = &stats.minutes[MINUTES - 2];
        assert_eq!(last.start_ms, T0 + 60_000);
        assert_eq!((last.finished, last.errors, last.cold_starts), (1, 0, 1));
        assert_eq!((before.finished, before.errors), (100, 1));
        let p50 = before.p50_ms.unwrap();
        let p99 = before.p99_ms.unwrap();
        assert!((10.0..=10.0 * 1.5).contains(&p50), "p50 {p50}");
        assert!(
            (10.0..=15.0).contains(&p99),
            "99 of 100 are 10 ms: p99 {p99}"
        );
        assert_eq!(
            (stats.finished, stats.errors, stats.cold_starts),
            (101, 1, 1)
        );
        assert_eq!(
            stats.last,
            Some(LastOutcome {
                status: "success".into(),
                at_ms: T0 + 60_000
            })
        );
        assert!(stats.minutes[0].p50_ms.is_none());
    }

    #[test]
    fn an_hour_later_the_old_minutes_are_gone() {
        let series = Series::default();
        series.record_at(sample("f", "success", 5.0), T0);
        let within = series.stats_at("f", T0 + 59 * 60_000);
        assert_eq!(within.finished, 1);
        assert_eq!(within.minutes[0].finished, 1);
        let after = series.stats_at("f", T0 + 60 * 60_000);
        assert_eq!(after.finished, 0, "the minute left the window");
        // The slot is reused by the minute an hour later, which starts from zero.
        series.record_at(sample("f", "error", 5.0), T0 + 60 * 60_000);
        let reused = series.stats_at("f", T0 + 60 * 60_000);
        assert_eq!((reused.finished, reused.errors), (1, 1));
    }

    #[test]
    fn unknown_functions_read_as_empty() {
        let stats = Series::default().stats_at("nothing", T0);
        assert_eq!(stats.finished, 0);
        assert!(stats.p50_ms.is_none() && stats.last.is_none());
        assert!(stats.minutes.iter().all(|minute| minute.finished == 0));
    }

    #[test]
    fn the_number_of_functions_is_bounded() {
        let series = Series::default();
        for i in 0..MAX_FUNCTIONS as u64 {
            series.record_at(sample(&format!("f{i}"), "success", 1.0), T0 + i * 60_000);
        }
        assert_eq!(series.len(), MAX_FUNCTIONS);
        series.record_at(sample("new", "success", 1.0), T0 + 10_000 * 60_000);
        assert_eq!(series.len(), MAX_FUNCTIONS);
        assert_eq!(
            series.stats_at("f0", T0).finished,
            0,
            "the stalest function was dropped"
        );
        assert_eq!(series.stats_at("f1", T0 + 60_000).finished, 1);
    }
}
