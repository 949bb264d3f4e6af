//! Tracing on against off: two `gantry serve` with the same warm no-op function, one of
//! them exporting its spans over OTLP to a sink in this program, called the same way in
//! the same rounds. Target: throughput within 5 % and p50 within 10 µs of each other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gantry_bench_support::format::{rps, time};
use gantry_bench_support::stats::{interleave, Progress, Summary, Variant};
use hyper::{Method, StatusCode};
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::gantry::{self, FUNCTION};
use crate::measure::{ANSWER, PAYLOAD};
use crate::server::Server;
use crate::{BenchResult, Settings};

/// Labels of the variants.
const OFF_C1: &str = "tracing off, c=1";
const ON_C1: &str = "tracing on, c=1";
const OFF_C32: &str = "tracing off, c=32";
const ON_C32: &str = "tracing on, c=32";

/// Export requests the sink took.
static EXPORTS: AtomicU64 = AtomicU64::new(0);

/// An OTLP/HTTP sink on its own thread: every `POST /v1/traces` answered 200 with an
/// empty export response, and counted.
fn start_sink() -> BenchResult<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("otlp-sink".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the sink");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                crate::noop::serve(listener, |method: &Method, path: &str, _body: Bytes| {
                    if method == Method::POST && path == "/v1/traces" {
                        EXPORTS.fetch_add(1, Ordering::Relaxed);
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

/// What the comparison measured.
pub struct Compared {
    /// One per variant.
    pub summaries: Vec<Summary>,
    /// Export requests the sink took.
    pub exports: u64,
}

/// Runs the comparison on two fresh servers.
pub fn compare(rt: &Runtime, settings: &Settings) -> BenchResult<Compared> {
    let sink = start_sink()?;
    let (off_data, on_data) = (tempdir("off")?, tempdir("on")?);
    let mut off = Server::start("warm-tracing-off", off_data.path())?;
    let endpoint = ["--otlp-endpoint".to_owned(), format!("http://{sink}")];
    let mut on = Server::start_with("warm-tracing-on", on_data.path(), &endpoint, &[])?;
    for server in [&off, &on] {
        rt.block_on(gantry::deploy_and_wait(server, Duration::from_secs(60)))?
            .ok_or("the server has no warm pool")?;
    }
    println!(
        "  two servers, one exporting spans to an OTLP sink on {sink}; c=1: {} calls, c={}: {:?} per load",
        settings.sequential, settings.concurrency, settings.duration
    );
    let call = Call::post(format!("/v1/functions/{FUNCTION}:invoke"), PAYLOAD);
    let expect = Expect {
        status: StatusCode::OK,
        body: Some(ANSWER),
    };
    let sequential = |server: &Server, warm: bool| {
        let calls = if warm {
            settings.sequential_warm_up
        } else {
            settings.sequential
        };
        rt.block_on(client::sequential(server.addr, &call, calls, expect))
    };
    let loaded = |server: &Server, warm: bool| {
        let length = settings.length(warm);
        let load = client::load_for(server.addr, &call, settings.concurrency, length, expect);
        rt.block_on(load).map(|(sample, _)| sample)
    };
    let mut variants = vec![
        Variant::new(OFF_C1, |warm| sequential(&off, warm)),
        Variant::new(ON_C1, |warm| sequential(&on, warm)),
        Variant::new(OFF_C32, |warm| loaded(&off, warm)),
        Variant::new(ON_C32, |warm| loaded(&on, warm)),
    ];
    let summaries = interleave(settings.rounds, &mut variants, Progress::Variant)?;
    drop(variants);
    for server in [&mut off, &mut on] {
        server.stop_and_sweep()?;
    }
    let exports = EXPORTS.load(Ordering::Relaxed);
    if exports == 0 {
        return Err("the traced server exported no spans".into());
    }
    Ok(Compared { summaries, exports })
}

fn tempdir(what: &str) -> BenchResult<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("gantry-bench-warm-tracing-{what}-"))
        .tempdir()?)
}

fn find<'a>(compared: &'a Compared, name: &str) -> BenchResult<&'a Summary> {
    Summary::find(&compared.summaries, name)
        .ok_or_else(|| format!("{name} was not measured").into())
}

/// The report's subsection.
pub fn markdown(compared: &Compared, settings: &Settings) -> BenchResult<String> {
    let (off1, on1) = (find(compared, OFF_C1)?, find(compared, ON_C1)?);
    let (off32, on32) = (find(compared, OFF_C32)?, find(compared, ON_C32)?);
    let added_p50 = on1.p50_us() - off1.p50_us();
    let ratio = on32.rps() / off32.rps();
    let p50_verdict = if added_p50 <= 10.0 { "meets" } else { "misses" };
    let rps_verdict = if ratio >= 0.95 { "meets" } else { "misses" };
    let mut out = format!(
        "\n### Tracing on and off\n\nThe same warm no-op function on two servers, one exporting every span over OTLP/HTTP to a sink in the bench \
         ({} export requests taken), interleaved round by round: {} sequential calls at c=1, {:?} loads at c={}. \
         Targets: p50 within 10 µs (added {added_p50:.1} µs: **{p50_verdict}**), throughput within 5 % ({:.3}×: **{rps_verdict}**).\n\n",
        compared.exports, settings.sequential, settings.duration, settings.concurrency, ratio
    );
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
