//! The tracing comparison's part of the warm-pool report: the verdicts on both
//! targets, the servers' CPU per call by thread, and the variants' latencies.

use std::collections::BTreeMap;

use gantry_bench_support::format::{rps, time};

use crate::tracing::{
    find, pair_rounds, tracing_rounds, Compared, Judged, PerCall, OFF_C1, OFF_C32, ON_C1, ON_C32,
    PAIRS,
};
use crate::{BenchResult, Settings};

/// Each thread name's use per call on both servers, off → on, busiest first: CPU,
/// switches onto a CPU and waits for one; threads with under 0.05 µs on both are left
/// out.
fn by_thread(threads: &[BTreeMap<String, PerCall>; 2]) -> String {
    let mut names: Vec<&String> = threads[0].keys().chain(threads[1].keys()).collect();
    names.sort_unstable();
    names.dedup();
    let of = |index: usize, name: &str| threads[index].get(name).copied().unwrap_or_default();
    let cpu = |index: usize, name: &str| of(index, name).cpu_us;
    names.retain(|name| cpu(0, name) >= 0.05 || cpu(1, name) >= 0.05);
    names.sort_by(|a, b| cpu(1, b).total_cmp(&cpu(1, a)));
    let list: Vec<String> = names
        .iter()
        .map(|name| {
            let (off, on) = (of(0, name), of(1, name));
            format!(
                "`{name}` {:.1} → {:.1} µs ({:.2} → {:.2} switches, {:.1} → {:.1} µs waiting)",
                off.cpu_us, on.cpu_us, off.runs, on.runs, off.waited_us, on.waited_us
            )
        })
        .collect();
    list.join(", ")
}

/// The report's subsection.
pub fn markdown(compared: &Compared, settings: &Settings) -> BenchResult<String> {
    let summaries = &compared.summaries;
    let (off1, on1) = (find(summaries, OFF_C1)?, find(summaries, ON_C1)?);
    let (off32, on32) = (find(summaries, OFF_C32)?, find(summaries, ON_C32)?);
    let Judged {
        added_p50_us: added_p50,
        rps_ratio: ratio,
    } = Judged::of(summaries)?;
    let ratio_of_medians = on32.rps() / off32.rps();
    let p50_verdict = if added_p50 <= 10.0 { "meets" } else { "misses" };
    let rps_verdict = if ratio >= 0.95 { "meets" } else { "misses" };
    let mut out = format!(
        "\n### Tracing on and off\n\nThe same warm no-op function on {PAIRS} pairs of servers started one pair after another (so that what makes one process slower for its whole life is drawn anew for each pair; the traced server started first in every other pair), one server of each pair exporting every span over OTLP/HTTP to a sink in the bench \
         ({} export requests taken), {} rounds in all ({} with each pair), the variants in alternating order, each measurement started once both servers are idle: at c=1, {} sequential calls to each server, alternating between the two call by call; at c={5}, {4:?} of load on each server, in slices that alternate between the two, each started once both servers are idle. \
         Targets, on the medians of the per-round differences and ratios: p50 within 10 µs (added {added_p50:.1} µs: **{p50_verdict}**), \
         throughput within 5 % ({ratio:.3}×: **{rps_verdict}**; the ratio of the median throughputs below is {ratio_of_medians:.3}×).\n\n",
        compared.exports, tracing_rounds(settings), pair_rounds(settings), settings.sequential, settings.duration, settings.concurrency
    );
    let [cpu_off, cpu_on] = compared.cpu_per_call_us;
    out.push_str(&format!(
        "CPU of `gantry serve` per call over the whole comparison (its threads only, the span exporter's included): \
         {cpu_off:.1} µs with tracing off, {cpu_on:.1} µs on (+{:.1} µs, {:+.1} %); by thread, off → on, with the times a thread was put on a CPU and its waits for one while ready, per call: {}.\n\n",
        cpu_on - cpu_off,
        (cpu_on / cpu_off - 1.0) * 100.0,
        by_thread(&compared.threads_per_call)
    ));
    out.push_str(&format!(
        "The bench's sink, on the same cores, read {:.0} bytes of spans and used {:.1} µs of CPU per traced call.\n\n",
        compared.exported_bytes_per_call, compared.sink_cpu_per_call_us
    ));
    out.push_str("| variant | p50 | p99 | calls/s |\n|---|---:|---:|---:|\n");
    for summary in [off1, on1, off32, on32] {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            summary.name,
            time(summary.p50_us()),
            time(summary.p99_us()),
            rps(summary.rps())
        ));
    }
    Ok(out)
}
