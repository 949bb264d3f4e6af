//! Statistics and the interleaved-rounds driver: every variant of a comparison runs once
//! per round, in turn, after a discarded warm-up round, and each figure is the median
//! across rounds, so drift of the shared machine hits every variant alike.

use std::time::Duration;

use crate::format::{grouped, time};
use crate::BenchResult;

/// What one variant measured in one round.
#[derive(Debug, Default)]
pub struct Sample {
    /// One latency per request or run, when the client records them.
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

impl Sample {
    /// A round of `latencies`, one per request, that took `wall`.
    pub fn timed(latencies: Vec<Duration>, wall: Duration) -> Sample {
        Sample {
            count: latencies.len() as u64,
            latencies,
            wall,
            ..Sample::default()
        }
    }

    /// The round's figures; sorts the latencies.
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

/// The figures of one round.
#[derive(Debug, Clone, Copy)]
pub struct RoundStats {
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests (or runs) completed per second of wall time.
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

/// Median of `values` (the mean of the middle two for an even count); NaNs are ignored,
/// and nothing left is NaN.
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
    /// Every latency of every round (warm-up excluded), sorted.
    pub pooled: Vec<Duration>,
    /// Requests completed in the measured rounds.
    pub total: u64,
    /// Requests completed in the warm-up round.
    pub warm_up: u64,
}

impl Summary {
    fn new(name: &'static str, rounds: usize) -> Summary {
        Summary {
            name,
            rounds: Vec::with_capacity(rounds),
            pooled: Vec::new(),
            total: 0,
            warm_up: 0,
        }
    }

    /// The summary of the variant called `name`, if it was measured.
    pub fn find<'a>(summaries: &'a [Summary], name: &str) -> Option<&'a Summary> {
        summaries.iter().find(|summary| summary.name == name)
    }

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

    /// Percentile `q` of all latencies of all rounds together, in µs.
    pub fn pooled_us(&self, q: f64) -> f64 {
        micros(percentile(&self.pooled, q))
    }

    /// Median across rounds of `pick(this round, baseline's round)`: the rounds are
    /// paired, so drift of the shared machine between rounds cancels out.
    fn paired_median(
        &self,
        baseline: &Summary,
        pick: impl Fn(&RoundStats, &RoundStats) -> f64,
    ) -> f64 {
        median(
            &mut self
                .rounds
                .iter()
                .zip(&baseline.rounds)
                .map(|(mine, base)| pick(mine, base))
                .collect(),
        )
    }

    /// Median across rounds of (this p50 − `baseline` p50), in µs, paired by round.
    pub fn p50_overhead_us(&self, baseline: &Summary) -> f64 {
        self.paired_median(baseline, |mine, base| micros(mine.p50) - micros(base.p50))
    }

    /// Median across rounds of (this throughput ÷ `baseline` throughput), paired by
    /// round.
    pub fn rps_ratio(&self, baseline: &Summary) -> f64 {
        self.paired_median(baseline, |mine, base| mine.rps / base.rps)
    }

    /// Adds the rounds and calls of `other`, the same variant measured again (on other
    /// processes, say), after this summary's: rounds stay paired by index with another
    /// variant's summary that absorbed its own in the same order.
    pub fn absorb(&mut self, other: Summary) {
        self.rounds.extend(other.rounds);
        self.pooled.extend(other.pooled);
        self.pooled.sort_unstable();
        self.total += other.total;
        self.warm_up += other.warm_up;
    }

    /// Counts a round's sample: the warm-up only in [`Summary::warm_up`].
    fn add(&mut self, warm_up: bool, stats: RoundStats, sample: Sample) {
        if warm_up {
            self.warm_up += sample.count;
        } else {
            self.rounds.push(stats);
            self.total += sample.count;
            self.pooled.extend(sample.latencies);
        }
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

/// How [`interleave`] prints its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// One line per round, every variant's p50, p99 and throughput side by side.
    Round,
    /// One aligned line per variant and round.
    Variant,
    /// As [`Progress::Variant`], and every other round runs the variants in reverse
    /// order, so that none always runs right after another (whose leftover work, or
    /// the machine's drift within a round, would otherwise weigh on it alone).
    Alternating,
}

impl Progress {
    fn label(self, round: usize, rounds: usize) -> String {
        match (self, round) {
            (Progress::Round, 0) => "    warm-up   ".to_owned(),
            (Progress::Round, _) => format!("    round {round:>2}/{rounds}"),
            (Progress::Variant | Progress::Alternating, 0) => "warm-up ".to_owned(),
            (Progress::Variant | Progress::Alternating, _) => format!("round {round}/{rounds}"),
        }
    }
}

/// Runs one warm-up round, then `rounds` rounds in which every variant runs once, in
/// turn; prints its progress as `progress` says. The summaries come in the variants'
/// order.
pub fn interleave(
    rounds: usize,
    variants: &mut [Variant<'_>],
    progress: Progress,
) -> BenchResult<Vec<Summary>> {
    let mut summaries: Vec<Summary> = variants
        .iter()
        .map(|variant| Summary::new(variant.name, rounds))
        .collect();
    for round in 0..=rounds {
        let label = progress.label(round, rounds);
        let mut line = label.clone();
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if progress == Progress::Alternating && round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (variant, summary) = (&mut variants[index], &mut summaries[index]);
            let mut sample = (variant.run)(round == 0)?;
            let stats = sample.stats();
            match progress {
                Progress::Round => line.push_str(&format!(
                    " | {} p50 {:.1} µs p99 {:.1} µs {:.0}/s",
                    variant.name,
                    micros(stats.p50),
                    micros(stats.p99),
                    stats.rps
                )),
                Progress::Variant | Progress::Alternating => println!(
                    "    {label} {:<34} p50 {:>9} p99 {:>9} {:>8}/s",
                    variant.name,
                    time(micros(stats.p50)),
                    time(micros(stats.p99)),
                    grouped(stats.rps.round() as u64),
                ),
            }
            summary.add(round == 0, stats, sample);
        }
        if progress == Progress::Round {
            println!("{line}");
        }
    }
    for summary in &mut summaries {
        summary.pooled.sort_unstable();
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{interleave, median, percentile, Progress, Sample, Summary, Variant};

    fn us(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_micros(v)).collect()
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted = us(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(5));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(10));
        assert_eq!(percentile(&sorted, 0.0), Duration::from_micros(1));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_micros(10));
        assert_eq!(percentile(&us(&[7]), 0.5), Duration::from_micros(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut vec![f64::NAN, 5.0, 1.0, f64::NAN, 3.0]), 3.0);
        assert!(median(&mut vec![]).is_nan());
        assert!(median(&mut vec![f64::NAN]).is_nan());
    }

    #[test]
    fn a_sample_gives_its_round_figures() {
        let mut sample = Sample::timed(us(&[30, 10, 20, 40]), Duration::from_millis(2));
        sample.server_cpu = Some(Duration::from_micros(100));
        sample.server_switches = Some(8);
        let stats = sample.stats();
        assert_eq!(sample.latencies, us(&[10, 20, 30, 40]));
        assert_eq!(stats.p50, Duration::from_micros(20));
        assert_eq!(stats.p99, Duration::from_micros(40));
        assert_eq!(stats.rps, 2000.0);
        assert_eq!(stats.server_cpu_us, 25.0);
        assert_eq!(stats.server_switches, 2.0);
        assert!(stats.client_cpu_us.is_nan());
    }

    #[test]
    fn reported_percentiles_win_over_latencies() {
        let mut sample = Sample {
            count: 500,
            wall: Duration::from_secs(1),
            reported: Some((Duration::from_micros(600), Duration::from_micros(900))),
            ..Sample::default()
        };
        let stats = sample.stats();
        assert_eq!(stats.p50, Duration::from_micros(600));
        assert_eq!(stats.p99, Duration::from_micros(900));
        assert_eq!(stats.rps, 500.0);
    }

    /// A variant whose round `r` (0 is the warm-up) takes `base + r` µs per request.
    fn stepping<'a>(name: &'static str, base: u64, warm_ups: &'a mut Vec<bool>) -> Variant<'a> {
        let mut round = 0;
        Variant::new(name, move |warm_up| {
            warm_ups.push(warm_up);
            let latency = base + round;
            round += 1;
            Ok(Sample::timed(us(&[latency; 4]), Duration::from_millis(1)))
        })
    }

    #[test]
    fn interleave_runs_a_warm_up_then_paired_rounds() {
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        let summaries = interleave(
            3,
            &mut [
                stepping("a", 10, &mut seen_a),
                stepping("b", 25, &mut seen_b),
            ],
            Progress::Variant,
        )
        .expect("no variant fails");
        assert_eq!(seen_a, [true, false, false, false]);
        assert_eq!(seen_b, seen_a);
        let a = Summary::find(&summaries, "a").expect("a");
        let b = Summary::find(&summaries, "b").expect("b");
        assert!(Summary::find(&summaries, "c").is_none());
        // Rounds 1..=3: a at 11, 12, 13 µs; b at 26, 27, 28 µs.
        assert_eq!((a.warm_up, a.total, a.rounds.len()), (4, 12, 3));
        assert_eq!(a.p50_us(), 12.0);
        assert_eq!(b.p99_us(), 27.0);
        assert_eq!(b.p50_overhead_us(a), 15.0);
        assert_eq!(a.rps(), 4000.0);
        assert_eq!(a.rps_range(), (4000.0, 4000.0));
        assert_eq!(a.pooled.len(), 12);
        assert!(a.pooled.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(a.pooled_us(0.0), 11.0);
        assert_eq!(a.pooled_us(1.0), 13.0);
        assert!(a.server_cpu_us().is_nan());
    }

    #[test]
    fn summaries_of_two_runs_absorbed_stay_paired_round_by_round() {
        let run = |a_base, b_base| {
            let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
            let mut variants = [
                stepping("a", a_base, &mut seen_a),
                stepping("b", b_base, &mut seen_b),
            ];
            let summaries = interleave(2, &mut variants, Progress::Alternating);
            summaries.expect("no variant fails")
        };
        let mut first = run(10, 25);
        for (mine, more) in first.iter_mut().zip(run(100, 130)) {
            mine.absorb(more);
        }
        let a = Summary::find(&first, "a").expect("a");
        let b = Summary::find(&first, "b").expect("b");
        // a: 11, 12 then 101, 102 µs; b: 26, 27 then 131, 132 µs.
        assert_eq!((a.warm_up, a.total, a.rounds.len()), (8, 16, 4));
        assert_eq!(a.pooled.len(), 16);
        assert!(a.pooled.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(a.pooled_us(0.0), 11.0);
        assert_eq!(a.pooled_us(1.0), 102.0);
        // Differences 15, 15, 30, 30: paired within each run, never across them.
        assert_eq!(b.p50_overhead_us(a), 22.5);
    }

    #[test]
    fn interleave_stops_at_the_first_failure() {
        let mut failing = [Variant::new("broken", |_| Err("no server".into()))];
        let err = interleave(2, &mut failing, Progress::Round).expect_err("fails");
        assert_eq!(err.to_string(), "no server");
    }
}
