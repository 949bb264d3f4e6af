//! Latency statistics and the interleaved-rounds driver: every variant of a comparison
//! runs once per round, in turn, and each figure is the median across rounds.

use std::time::Duration;

use crate::BenchResult;

/// What one variant measured in one round.
#[derive(Debug, Default)]
pub struct Sample {
    /// One latency per request or run.
    pub latencies: Vec<Duration>,
    /// Wall time of the whole round, for the throughput.
    pub wall: Duration,
}

/// The figures of one round.
#[derive(Debug, Clone, Copy)]
pub struct RoundStats {
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests (or runs) completed per second of wall time.
    pub rps: f64,
}

/// Percentile `q` (0..=1) of sorted latencies, nearest rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Sample {
    fn stats(&mut self) -> RoundStats {
        self.latencies.sort_unstable();
        RoundStats {
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            rps: self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9),
        }
    }
}

/// Median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Every round of one variant.
#[derive(Debug)]
pub struct Summary {
    /// The variant's label.
    pub name: &'static str,
    /// Per-round figures, warm-up excluded.
    pub rounds: Vec<RoundStats>,
    /// Every latency of every round (warm-up excluded), sorted.
    pub pooled: Vec<Duration>,
}

/// Microseconds of a duration, as a float.
pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

impl Summary {
    fn median_of(&self, pick: impl Fn(&RoundStats) -> f64) -> f64 {
        median(&mut self.rounds.iter().map(pick).collect::<Vec<_>>())
    }

    /// Median across rounds of the p50, in µs.
    pub fn p50_us(&self) -> f64 {
        self.median_of(|round| micros(round.p50))
    }

    /// Median across rounds of the p99, in µs.
    pub fn p99_us(&self) -> f64 {
        self.median_of(|round| micros(round.p99))
    }

    /// Median across rounds of the throughput.
    pub fn rps(&self) -> f64 {
        self.median_of(|round| round.rps)
    }

    /// Percentile `q` of all latencies of all rounds together, in µs.
    pub fn pooled_us(&self, q: f64) -> f64 {
        micros(percentile(&self.pooled, q))
    }

    /// Median across rounds of (this p50 − `baseline` p50), in µs: the rounds are
    /// paired, so drift of the shared machine between rounds cancels out.
    pub fn p50_overhead_us(&self, baseline: &Summary) -> f64 {
        let mut diffs: Vec<f64> = self
            .rounds
            .iter()
            .zip(&baseline.rounds)
            .map(|(mine, base)| micros(mine.p50) - micros(base.p50))
            .collect();
        median(&mut diffs)
    }
}

/// One variant of a comparison: a label and a closure that measures one round.
pub struct Variant<'a> {
    /// The label printed and reported.
    pub name: &'static str,
    /// Measures one round.
    pub run: Box<dyn FnMut() -> BenchResult<Sample> + 'a>,
}

impl<'a> Variant<'a> {
    /// A variant from a closure.
    pub fn new(name: &'static str, run: impl FnMut() -> BenchResult<Sample> + 'a) -> Self {
        Variant {
            name,
            run: Box::new(run),
        }
    }
}

/// Runs one discarded warm-up round, then `rounds` rounds in which every variant runs
/// once, in turn; prints a progress line per round.
pub fn interleave(rounds: usize, variants: &mut [Variant<'_>]) -> BenchResult<Vec<Summary>> {
    let mut summaries: Vec<Summary> = variants
        .iter()
        .map(|variant| Summary {
            name: variant.name,
            rounds: Vec::with_capacity(rounds),
            pooled: Vec::new(),
        })
        .collect();
    for round in 0..=rounds {
        let mut line = if round == 0 {
            "    warm-up   ".to_owned()
        } else {
            format!("    round {round:>2}/{rounds}")
        };
        for (variant, summary) in variants.iter_mut().zip(&mut summaries) {
            let mut sample = (variant.run)()?;
            let stats = sample.stats();
            line.push_str(&format!(
                " | {} p50 {:.1} µs p99 {:.1} µs {:.0}/s",
                variant.name,
                micros(stats.p50),
                micros(stats.p99),
                stats.rps
            ));
            if round > 0 {
                summary.rounds.push(stats);
                summary.pooled.extend(sample.latencies);
            }
        }
        println!("{line}");
    }
    for summary in &mut summaries {
        summary.pooled.sort_unstable();
    }
    Ok(summaries)
}
