//! Statistics and the interleaved-rounds driver: every variant of a comparison runs once
//! per round, in turn, after a discarded warm-up round, and each figure is the median
//! across rounds, so drift of the shared machine hits every variant alike.

use std::time::Duration;

use crate::BenchResult;

/// What one variant measured in one round.
#[derive(Debug, Default)]
pub struct Sample {
    /// One latency per request, when the client records them.
    pub latencies: Vec<Duration>,
    /// Requests completed (the latencies' count, or what an external client reported).
    pub count: u64,
    /// Wall time of the whole round, for the throughput.
    pub wall: Duration,
    /// p50 and p99 reported by an external client (wrk), instead of `latencies`.
    pub reported: Option<(Duration, Duration)>,
    /// CPU time the server used during the round (every thread), when measured.
    pub server_cpu: Option<Duration>,
    /// CPU time the bench's own process used during the round (the load generator).
    pub client_cpu: Option<Duration>,
    /// Context switches of the server's threads during the round, when measured.
    pub server_switches: Option<u64>,
}

/// The figures of one round.
#[derive(Debug, Clone, Copy)]
pub struct RoundStats {
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests completed per second of wall time.
    pub rps: f64,
    /// Server CPU per request, µs (NaN when not measured).
    pub server_cpu_us: f64,
    /// Client CPU per request, µs (NaN when not measured).
    pub client_cpu_us: f64,
    /// Server context switches per request (NaN when not measured).
    pub server_switches: f64,
}

/// Percentile `q` (0..=1) of sorted latencies, nearest rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Microseconds of a duration, as a float.
pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

impl Sample {
    fn stats(&mut self) -> RoundStats {
        self.latencies.sort_unstable();
        let (p50, p99) = self.reported.unwrap_or_else(|| {
            (
                percentile(&self.latencies, 0.50),
                percentile(&self.latencies, 0.99),
            )
        });
        let count = self.count.max(1) as f64;
        let per_request = |cpu: Option<Duration>| cpu.map_or(f64::NAN, |cpu| micros(cpu) / count);
        RoundStats {
            p50,
            p99,
            rps: self.count as f64 / self.wall.as_secs_f64().max(1e-9),
            server_cpu_us: per_request(self.server_cpu),
            client_cpu_us: per_request(self.client_cpu),
            server_switches: self
                .server_switches
                .map_or(f64::NAN, |switches| switches as f64 / count),
        }
    }
}

/// Median of `values` (the mean of the middle two for an even count); NaNs are ignored.
pub fn median(values: &mut Vec<f64>) -> f64 {
    values.retain(|value| !value.is_nan());
    values.sort_unstable_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Every measured round of one variant.
#[derive(Debug)]
pub struct Summary {
    /// The variant's label.
    pub name: &'static str,
    /// Per-round figures, warm-up excluded.
    pub rounds: Vec<RoundStats>,
    /// Requests completed in the measured rounds.
    pub total: u64,
    /// Requests completed in the warm-up round.
    pub warm_up: u64,
}

impl Summary {
    fn median_of(&self, pick: impl Fn(&RoundStats) -> f64) -> f64 {
        median(&mut self.rounds.iter().map(pick).collect())
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

    /// Lowest and highest per-round throughput.
    pub fn rps_range(&self) -> (f64, f64) {
        self.rounds
            .iter()
            .map(|round| round.rps)
            .fold((f64::INFINITY, 0.0), |(lo, hi), rps| {
                (lo.min(rps), hi.max(rps))
            })
    }

    /// Median across rounds of the server's CPU per request, in µs.
    pub fn server_cpu_us(&self) -> f64 {
        self.median_of(|round| round.server_cpu_us)
    }

    /// Median across rounds of the server's context switches per request.
    pub fn server_switches(&self) -> f64 {
        self.median_of(|round| round.server_switches)
    }

    /// Median across rounds of the client's CPU per request, in µs.
    pub fn client_cpu_us(&self) -> f64 {
        self.median_of(|round| round.client_cpu_us)
    }

    /// Median across rounds of (this p50 − `baseline` p50), in µs: the rounds are
    /// paired, so drift of the shared machine between rounds cancels out.
    pub fn p50_overhead_us(&self, baseline: &Summary) -> f64 {
        median(
            &mut self
                .rounds
                .iter()
                .zip(&baseline.rounds)
                .map(|(mine, base)| micros(mine.p50) - micros(base.p50))
                .collect(),
        )
    }
}

/// One variant of a comparison: a label and a closure that measures one round; the
/// closure is told whether the round is the warm-up.
pub struct Variant<'a> {
    /// The label printed and reported.
    pub name: &'static str,
    /// Measures one round.
    pub run: Box<dyn FnMut(bool) -> BenchResult<Sample> + 'a>,
}

impl<'a> Variant<'a> {
    /// A variant from a closure taking `warm_up`.
    pub fn new(name: &'static str, run: impl FnMut(bool) -> BenchResult<Sample> + 'a) -> Self {
        Variant {
            name,
            run: Box::new(run),
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in µs, shown in µs below a millisecond and in ms above.
pub fn time(us: f64) -> String {
    if us.is_nan() {
        "—".into()
    } else if us.abs() >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Runs one warm-up round, then `rounds` rounds in which every variant runs once, in
/// turn; prints a progress line per variant and round.
pub fn interleave(rounds: usize, variants: &mut [Variant<'_>]) -> BenchResult<Vec<Summary>> {
    let mut summaries: Vec<Summary> = variants
        .iter()
        .map(|variant| Summary {
            name: variant.name,
            rounds: Vec::with_capacity(rounds),
            total: 0,
            warm_up: 0,
        })
        .collect();
    for round in 0..=rounds {
        let label = if round == 0 {
            "warm-up ".to_owned()
        } else {
            format!("round {round}/{rounds}")
        };
        for (variant, summary) in variants.iter_mut().zip(&mut summaries) {
            let mut sample = (variant.run)(round == 0)?;
            let stats = sample.stats();
            println!(
                "    {label} {:<34} p50 {:>9} p99 {:>9} {:>8}/s",
                variant.name,
                time(micros(stats.p50)),
                time(micros(stats.p99)),
                grouped(stats.rps.round() as u64),
            );
            if round == 0 {
                summary.warm_up += sample.count;
            } else {
                summary.rounds.push(stats);
                summary.total += sample.count;
            }
        }
    }
    Ok(summaries)
}
