//! wrk, when installed, as a second load generator beside the bench's own hyper client:
//! written in C with one event-loop thread (`-t1`), it shows how much of a throughput
//! figure is the client's own cost on this 2-core machine.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use gantry_bench_support::stats::Sample;

use crate::BenchResult;

/// The wrk binary, if `wrk` is on PATH and runs.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let wrk = std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())?;
    // `wrk -v` prints its version and usage, and exits 1.
    let output = Command::new(&wrk).arg("-v").output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .starts_with("wrk ")
        .then_some(wrk)
}

/// wrk's version line.
pub fn version(wrk: &PathBuf) -> String {
    Command::new(wrk)
        .arg("-v")
        .output()
        .ok()
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.lines().next().map(|line| {
                line.split(" Copyright")
                    .next()
                    .unwrap_or(line)
                    .trim()
                    .to_owned()
            })
        })
        .unwrap_or_else(|| "wrk".into())
}

/// Runs `wrk -t1 -c<concurrency> -d<duration> --latency` against `url`, POSTing `body`
/// as JSON when given. Every answer must be 2xx. The sample carries wrk's count, wall
/// time and p50/p99.
pub fn run(
    wrk: &PathBuf,
    url: &str,
    post: Option<&str>,
    concurrency: usize,
    duration: Duration,
) -> BenchResult<Sample> {
    let mut command = Command::new(wrk);
    command.args([
        "-t1".to_owned(),
        format!("-c{concurrency}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".to_owned(),
        "--timeout".to_owned(),
        "10s".to_owned(),
    ]);
    if let Some(body) = post {
        let script = crate::server::log_dir().join("wrk-post.lua");
        std::fs::create_dir_all(crate::server::log_dir())?;
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
                crate::client::TOKEN
            ),
        )?;
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("wrk {url} exited with {}: {text}", output.status).into());
    }
    parse(&text).map_err(|err| format!("wrk {url}: {err}; its output:\n{text}").into())
}

fn parse(text: &str) -> Result<Sample, String> {
    let mut sample = Sample::default();
    let (mut p50, mut p99) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("50%") {
            p50 = Some(duration(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = Some(duration(rest.trim())?);
        } else if let Some((count, rest)) = line.split_once(" requests in ") {
            sample.count = count.trim().parse().map_err(|_| "bad request count")?;
            let wall = rest.split(',').next().unwrap_or_default();
            sample.wall = duration(wall.trim())?;
        } else if line.starts_with("Non-2xx or 3xx responses:") {
            return Err(format!("not every answer was 2xx ({line})"));
        } else if line.starts_with("Socket errors:") && !only_read_errors(line) {
            return Err(format!("socket errors ({line})"));
        }
    }
    match (p50, p99, sample.count) {
        (Some(p50), Some(p99), 1..) => {
            sample.reported = Some((p50, p99));
            Ok(sample)
        }
        _ => Err("no latency distribution or request count".into()),
    }
}

/// `Socket errors: connect 0, read N, write 0, timeout 0`: read errors are connections
/// wrk itself cut when its time was up.
fn only_read_errors(line: &str) -> bool {
    ["connect 0", "write 0", "timeout 0"]
        .iter()
        .all(|ok| line.contains(ok))
}

/// `617.00us`, `1.05ms`, `5.00s`, `1.00m`.
fn duration(text: &str) -> Result<Duration, String> {
    let units = [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)];
    for (unit, seconds) in units {
        if let Some(number) = text.strip_suffix(unit) {
            if let Ok(value) = number.parse::<f64>() {
                return Ok(Duration::from_secs_f64(value * seconds));
            }
        }
    }
    Err(format!("cannot read the duration {text:?}"))
}
