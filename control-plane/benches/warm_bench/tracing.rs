//! Tracing on against off: pairs of `gantry serve` with the same warm no-op function,
//! one of each pair exporting its spans over OTLP to a sink in this program, called the
//! same way in the same rounds, in turn (call by call at c=1, in slices of load at
//! c=32); [`PAIRS`] fresh pairs one after another, the traced server started first in
//! every other pair, their rounds judged together.
//! Target: throughput within 5 % and p50 within 10 µs of each other.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_bench_support::http::connect;
use gantry_bench_support::process::{self, Usage};
use gantry_bench_support::stats::{interleave, Progress, Sample, Summary, Variant};
use hyper::{Method, StatusCode};
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::gantry::{self, FUNCTION};
use crate::measure::{ANSWER, PAYLOAD};
use crate::server::Server;
use crate::{BenchResult, Settings};

/// Labels of the variants.
pub const OFF_C1: &str = "tracing off, c=1";
pub const ON_C1: &str = "tracing on, c=1";
pub const OFF_C32: &str = "tracing off, c=32";
pub const ON_C32: &str = "tracing on, c=32";

/// Export requests the sink took.
static EXPORTS: AtomicU64 = AtomicU64::new(0);
/// The bytes of their bodies.
static EXPORTED_BYTES: AtomicU64 = AtomicU64::new(0);
/// The sink's thread.
const SINK_THREAD: &str = "otlp-sink";

/// An OTLP/HTTP sink on its own thread: every `POST /v1/traces` answered 200 with an
/// empty export response, and counted.
fn start_sink() -> BenchResult<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(SINK_THREAD.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the sink");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                crate::noop::serve(listener, |method: &Method, path: &str, body: Bytes| {
                    if method == Method::POST && path == "/v1/traces" {
                        EXPORTS.fetch_add(1, Ordering::Relaxed);
                        EXPORTED_BYTES.fetch_add(body.len() as u64, Ordering::Relaxed);
                        (StatusCode::OK, Bytes::new())
                    } else {
                        (StatusCode::NOT_FOUND, Bytes::new())
                    }
                })
                .await;
            });
        })?;
    Ok(addr)
}

/// `count` requests to each of two servers, one after another on one keep-alive
/// connection each, alternating call by call (in A B B A order, so neither always goes
/// first), so both see the same moments of a shared machine; each must match `expect`.
/// One sample per server, its wall time the sum of its own latencies.
async fn alternating(
    addrs: [SocketAddr; 2],
    call: &Call,
    count: usize,
    expect: Expect,
) -> BenchResult<[Sample; 2]> {
    let mut connections = [connect(addrs[0]).await?, connect(addrs[1]).await?];
    let mut latencies = [Vec::with_capacity(count), Vec::with_capacity(count)];
    for pair in 0..count {
        for server in abba(pair as u64) {
            let sent = Instant::now();
            let answer = call.send(&mut connections[server]).await?;
            latencies[server].push(sent.elapsed());
            client::check(call, &answer, expect)?;
        }
    }
    Ok(latencies.map(|latencies| {
        let wall = latencies.iter().sum();
        Sample::timed(latencies, wall)
    }))
}

/// The two servers' order in turn `turn`: A B, then B A, so neither always goes first.
fn abba(turn: u64) -> [usize; 2] {
    if turn % 2 == 0 {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// Slices of each server's load in a round at c=32: an even number, for A B B A order.
const LOAD_SLICES: u32 = 6;

/// [`LOAD_SLICES`] loads of `slice` at `concurrency` on each of two servers, in turn (in
/// A B B A order), each after `settle`; each answer must match `expect`. One sample per
/// server: the calls and latencies of its slices, over their summed time.
async fn in_slices(
    addrs: [SocketAddr; 2],
    call: &Call,
    concurrency: usize,
    slice: Duration,
    expect: Expect,
    settle: &dyn Fn() -> BenchResult<()>,
) -> BenchResult<[Sample; 2]> {
    let mut latencies = [Vec::new(), Vec::new()];
    let mut walls = [Duration::ZERO; 2];
    for turn in 0..LOAD_SLICES {
        for server in abba(u64::from(turn)) {
            settle()?;
            let (sample, _) =
                client::load_for(addrs[server], call, concurrency, slice, expect).await?;
            latencies[server].extend(sample.latencies);
            walls[server] += sample.wall;
        }
    }
    let [off, on] = latencies;
    Ok([Sample::timed(off, walls[0]), Sample::timed(on, walls[1])])
}

/// What the comparison measured.
pub struct Compared {
    /// One per variant.
    pub summaries: Vec<Summary>,
    /// Export requests the sink took.
    pub exports: u64,
    /// CPU time of each `gantry serve` per call it served over the whole comparison
    /// (its own threads, exporter included; not the warm instance's), off then on, µs.
    pub cpu_per_call_us: [f64; 2],
    /// The same by thread name (`tokio-rt-worker`, `gantry-spans`, …), off then on,
    /// with the threads' switches onto a CPU and their waits for one, per call.
    pub threads_per_call: [BTreeMap<String, PerCall>; 2],
    /// CPU time of the bench's sink per call the traced server served, µs: it shares
    /// the machine with both servers.
    pub sink_cpu_per_call_us: f64,
    /// Bytes exported per call the traced server served.
    pub exported_bytes_per_call: f64,
}

/// Pairs of fresh servers a comparison starts, one pair after another, each for its
/// share of the rounds. Whatever makes one process of a pair slower for as long as it
/// runs (where its memory lands, how its threads share the CPUs with the others) is
/// drawn again for every pair instead of weighing on every round of the comparison:
/// with three pairs, the medians of the pairs of one run had spread from 0.926x to
/// 0.997x. Even, so that each server starts first in half of them.
pub const PAIRS: usize = 6;

/// What one pair of servers measured.
struct PairMeasured {
    summaries: Vec<Summary>,
    /// Each server's use by thread name, untraced then traced.
    used: [BTreeMap<String, Usage>; 2],
}

/// Runs the comparison on [`PAIRS`] pairs of fresh servers in turn.
pub fn compare(rt: &Runtime, settings: &Settings) -> BenchResult<Compared> {
    let sink = start_sink()?;
    println!(
        "  {PAIRS} pairs of servers, one of each exporting spans to an OTLP sink on {sink}; c=1: {} calls, c={}: {:?} per load",
        settings.sequential, settings.concurrency, settings.duration
    );
    let bench_before = process::threads(std::process::id())?;
    let bytes_before = EXPORTED_BYTES.load(Ordering::Relaxed);
    let mut summaries: Vec<Summary> = Vec::new();
    let mut used: [BTreeMap<String, Usage>; 2] = Default::default();
    for pair in 1..=PAIRS {
        let order = StartOrder::of_pair(pair);
        println!("  pair {pair}/{PAIRS}: two fresh servers, {order}");
        let measured = compare_pair(rt, settings, sink, order)?;
        let judged = Judged::of(&measured.summaries)?;
        println!(
            "  pair {pair}/{PAIRS}: added p50 {:.1} µs, throughput {:.3}x",
            judged.added_p50_us, judged.rps_ratio
        );
        if summaries.is_empty() {
            summaries = measured.summaries;
        } else {
            for (summary, more) in summaries.iter_mut().zip(measured.summaries) {
                summary.absorb(more);
            }
        }
        for (total, more) in used.iter_mut().zip(measured.used) {
            for (name, usage) in more {
                total.entry(name).or_default().add(usage);
            }
        }
    }
    compared(summaries, used, bench_before, bytes_before)
}

/// What the pairs measured, per call: `used` is each server's use by thread name over
/// all its pairs, `bench_before` the bench's threads and `bytes_before` the bytes the
/// sink had read before the first pair.
fn compared(
    summaries: Vec<Summary>,
    used: [BTreeMap<String, Usage>; 2],
    bench_before: BTreeMap<u32, process::Thread>,
    bytes_before: u64,
) -> BenchResult<Compared> {
    let sink_used = process::used_by_name(&bench_before, &process::threads(std::process::id())?)
        .get(SINK_THREAD)
        .map_or(Duration::ZERO, |usage| usage.cpu);
    let exported_bytes = EXPORTED_BYTES.load(Ordering::Relaxed) - bytes_before;
    // Calls each server served (at least one), untraced then traced.
    let calls = [[OFF_C1, OFF_C32], [ON_C1, ON_C32]].map(|variants| {
        let calls: u64 = variants
            .iter()
            .filter_map(|name| Summary::find(&summaries, name))
            .map(|summary| summary.total + summary.warm_up)
            .sum();
        calls.max(1) as f64
    });
    let traced_calls = calls[1];
    let mut cpu_per_call_us = [0.0; 2];
    let mut threads_per_call = [BTreeMap::new(), BTreeMap::new()];
    for (index, (calls, used)) in calls.into_iter().zip(used).enumerate() {
        let per_call = |used: Duration| used.as_secs_f64() * 1e6 / calls;
        cpu_per_call_us[index] = per_call(used.values().map(|usage| usage.cpu).sum());
        threads_per_call[index] = used
            .into_iter()
            .map(|(name, usage)| {
                let per_call = PerCall {
                    cpu_us: per_call(usage.cpu),
                    waited_us: per_call(usage.waited),
                    runs: usage.runs as f64 / calls,
                };
                (name, per_call)
            })
            .collect();
    }
    let exports = EXPORTS.load(Ordering::Relaxed);
    if exports == 0 {
        return Err("the traced server exported no spans".into());
    }
    Ok(Compared {
        summaries,
        exports,
        cpu_per_call_us,
        threads_per_call,
        sink_cpu_per_call_us: sink_used.as_secs_f64() * 1e6 / traced_calls,
        exported_bytes_per_call: exported_bytes as f64 / traced_calls,
    })
}

/// Which server of a pair starts (and gets its warm instance) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartOrder {
    UntracedFirst,
    TracedFirst,
}

impl StartOrder {
    /// Pair `pair` (from 1): the untraced server first in odd pairs, the traced one in
    /// even pairs, so that neither is always started first.
    fn of_pair(pair: usize) -> StartOrder {
        if pair % 2 == 1 {
            StartOrder::UntracedFirst
        } else {
            StartOrder::TracedFirst
        }
    }
}

impl std::fmt::Display for StartOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StartOrder::UntracedFirst => "the untraced one started first",
            StartOrder::TracedFirst => "the traced one started first",
        })
    }
}

/// The untraced and the traced server of a pair, started in `order`, the traced one
/// exporting to `sink`.
fn start_pair(
    sink: SocketAddr,
    order: StartOrder,
    data: [&std::path::Path; 2],
) -> BenchResult<(Server, Server)> {
    let endpoint = ["--otlp-endpoint".to_owned(), format!("http://{sink}")];
    let untraced = || Server::start("warm-tracing-off", data[0]);
    let traced = || Server::start_with("warm-tracing-on", data[1], &endpoint, &[]);
    Ok(match order {
        StartOrder::UntracedFirst => {
            let off = untraced()?;
            (off, traced()?)
        }
        StartOrder::TracedFirst => {
            let on = traced()?;
            (untraced()?, on)
        }
    })
}

/// What the targets are judged on, each the median of per-round figures paired by round
/// (the shared machine's drift between rounds cancels out).
pub struct Judged {
    /// Added p50 at c=1, µs.
    pub added_p50_us: f64,
    /// Throughput at c=32, traced ÷ untraced.
    pub rps_ratio: f64,
}

impl Judged {
    /// The figures of `summaries` (one pair's, or all pairs' absorbed).
    pub fn of(summaries: &[Summary]) -> BenchResult<Judged> {
        let (off1, on1) = (find(summaries, OFF_C1)?, find(summaries, ON_C1)?);
        let (off32, on32) = (find(summaries, OFF_C32)?, find(summaries, ON_C32)?);
        Ok(Judged {
            added_p50_us: on1.p50_overhead_us(off1),
            rps_ratio: on32.rps_ratio(off32),
        })
    }
}

/// One pair of fresh servers started in `order`, one of them exporting to `sink`,
/// through its share of the rounds; both stopped after.
fn compare_pair(
    rt: &Runtime,
    settings: &Settings,
    sink: SocketAddr,
    order: StartOrder,
) -> BenchResult<PairMeasured> {
    let (off_data, on_data) = (tempdir("off")?, tempdir("on")?);
    let (mut off, mut on) = start_pair(sink, order, [off_data.path(), on_data.path()])?;
    let servers = match order {
        StartOrder::UntracedFirst => [&off, &on],
        StartOrder::TracedFirst => [&on, &off],
    };
    for server in servers {
        rt.block_on(gantry::deploy_and_wait(server, Duration::from_secs(60)))?
            .ok_or("the server has no warm pool")?;
    }
    let call = Call::post(format!("/v1/functions/{FUNCTION}:invoke"), PAYLOAD);
    let expect = Expect {
        status: StatusCode::OK,
        body: Some(ANSWER),
    };
    // Neither server may still be busy with the last variant's work (its records are
    // written behind) while the next one is measured.
    let pids = [off.pid(), on.pid()];
    let settle = || process::settle(&pids, Duration::from_secs(10));
    // At c=1 both servers are called in one run, call by call in turn: the machine's
    // drift, which at a few µs is larger than what is compared, weighs on both alike.
    // Whichever c=1 variant comes first in a round measures both.
    let sequential_pair = PairedRound::default();
    let sequential = |index: usize, warm: bool| {
        sequential_pair.take(index, || {
            settle()?;
            let calls = if warm {
                settings.sequential_warm_up
            } else {
                settings.sequential
            };
            let addrs = [off.addr, on.addr];
            rt.block_on(alternating(addrs, &call, calls, expect))
        })
    };
    // At c=32 a round's load is cut into slices that go to the two servers in turn,
    // for the same reason. Each slice starts once both servers are idle: work a slice
    // leaves behind (records written after their answers) would otherwise fall on the
    // next one, and in A B B A order the second server gets one more of those.
    let loaded_pair = PairedRound::default();
    let loaded = |index: usize, warm: bool| {
        loaded_pair.take(index, || {
            let slice = settings.length(warm) / LOAD_SLICES;
            let addrs = [off.addr, on.addr];
            let load = in_slices(addrs, &call, settings.concurrency, slice, expect, &settle);
            rt.block_on(load)
        })
    };
    let mut variants = vec![
        Variant::new(OFF_C1, |warm| sequential(0, warm)),
        Variant::new(ON_C1, |warm| sequential(1, warm)),
        Variant::new(OFF_C32, |warm| loaded(0, warm)),
        Variant::new(ON_C32, |warm| loaded(1, warm)),
    ];
    let threads_before = [process::threads(pids[0])?, process::threads(pids[1])?];
    let summaries = interleave(pair_rounds(settings), &mut variants, Progress::Alternating)?;
    drop(variants);
    settle()?;
    let mut used: [BTreeMap<String, Usage>; 2] = Default::default();
    for (index, used) in used.iter_mut().enumerate() {
        *used = process::used_by_name(&threads_before[index], &process::threads(pids[index])?);
    }
    // A dropped span is work the traced server did not do: the comparison would flatter it.
    let dropped = rt.block_on(gantry::metric(&on, "gantry_spans_dropped_total"))?;
    for server in [&mut off, &mut on] {
        server.stop_and_sweep()?;
    }
    if dropped > 0 {
        return Err(format!("the traced server dropped {dropped} spans").into());
    }
    Ok(PairMeasured { summaries, used })
}

/// What a server's threads of one name used per call it served.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerCall {
    /// CPU time, µs.
    pub cpu_us: f64,
    /// Waits for a CPU while ready to run, µs.
    pub waited_us: f64,
    /// Times put on a CPU.
    pub runs: f64,
}

/// The two samples of a measurement that covers both servers at once: the first
/// variant of a round to ask runs it and leaves the other's sample for the other.
#[derive(Default)]
struct PairedRound {
    left: RefCell<Option<(usize, Sample)>>,
}

impl PairedRound {
    /// Server `index`'s sample: the one left for it, else from a fresh `measure`.
    fn take(
        &self,
        index: usize,
        measure: impl FnOnce() -> BenchResult<[Sample; 2]>,
    ) -> BenchResult<Sample> {
        if let Some((left_for, sample)) = self.left.borrow_mut().take() {
            if left_for == index {
                return Ok(sample);
            }
        }
        let [first, second] = measure()?;
        let (mine, other) = if index == 0 {
            (first, (1, second))
        } else {
            (second, (0, first))
        };
        *self.left.borrow_mut() = Some(other);
        Ok(mine)
    }
}

/// Rounds of the comparison: [`pair_rounds`] for each of the [`PAIRS`] (36 in a recorded
/// run, against the bench's five). Two untraced servers compared this way differ by a
/// few percent from round to round on a shared VM, as much as the target allows (the
/// throughput ratios of one pair's rounds spread from 0.91x to 1.06x): the median of
/// many rounds is needed to tell the cost apart.
pub fn tracing_rounds(settings: &Settings) -> usize {
    pair_rounds(settings) * PAIRS
}

/// Rounds of each pair of servers: the bench's, and one more.
pub fn pair_rounds(settings: &Settings) -> usize {
    settings.rounds + 1
}

fn tempdir(what: &str) -> BenchResult<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("gantry-bench-warm-tracing-{what}-"))
        .tempdir()?)
}

pub fn find<'a>(summaries: &'a [Summary], name: &str) -> BenchResult<&'a Summary> {
    Summary::find(summaries, name).ok_or_else(|| format!("{name} was not measured").into())
}
