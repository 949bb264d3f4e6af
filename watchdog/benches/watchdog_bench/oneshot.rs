//! One-shot STDIO: from exec of the watchdog (running `cat`) until its callback
//! `POST /{id}:complete` reaches a server inside the bench, and the watchdog is reaped.

use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_bench_support::stats::{interleave, Progress, Sample, Summary, Variant};
use hyper::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::http::serve;
use crate::procs::{self, log_dir};
use crate::{BenchResult, Settings, PAYLOAD};

/// The label of the watchdog variant.
pub const WATCHDOG: &str = "watchdog one-shot";

/// Where callbacks arrive: `(path, body)` of every `POST …:complete`.
struct CallbackServer {
    base_url: String,
    received: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl CallbackServer {
    async fn start() -> BenchResult<CallbackServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v1/executions", listener.local_addr()?);
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(serve(listener, move |method: &Method, path: &str, body| {
            if method == Method::POST && path.ends_with(":complete") {
                let _ = tx.send((path.to_owned(), body));
                (StatusCode::OK, Bytes::from_static(b"{}"))
            } else {
                (StatusCode::NOT_FOUND, Bytes::from_static(b"{}"))
            }
        }));
        Ok(CallbackServer { base_url, received })
    }

    /// One execution: exec → callback received; then the watchdog must exit 0.
    async fn run_once(&mut self, id: &str, log: &File) -> BenchResult<Duration> {
        let vars = [
            ("EXECUTION_MODE", "STDIO".to_owned()),
            ("WATCHDOG_CMD", "cat".into()),
            ("EXECUTION_ID", id.into()),
            (
                "INVOCATION_PAYLOAD",
                String::from_utf8_lossy(PAYLOAD).into_owned(),
            ),
            ("CALLBACK_URL", self.base_url.clone()),
        ];
        let mut command = tokio::process::Command::from(procs::watchdog_command(&vars));
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut watchdog = command.spawn()?;
        let wait = Duration::from_secs(10);
        let (path, body) = tokio::time::timeout(wait, self.received.recv())
            .await
            .map_err(|_| format!("no callback for {id} within {wait:?}"))?
            .ok_or("the callback server stopped")?;
        let took = started.elapsed();
        let expected = format!("/v1/executions/{id}:complete");
        let body = String::from_utf8_lossy(&body);
        if path != expected || !body.contains(r#""success":true"#) {
            return Err(format!("callback {path} (expected {expected}): {body}").into());
        }
        let status = tokio::time::timeout(wait, watchdog.wait())
            .await
            .map_err(|_| format!("the one-shot watchdog for {id} did not exit"))??;
        if !status.success() {
            return Err(format!("the one-shot watchdog for {id} exited with {status}").into());
        }
        Ok(took)
    }
}

/// One-shot STDIO executions against spawning `cat` directly, interleaved.
pub fn stdio_callback(rt: &Runtime, settings: &Settings) -> BenchResult<Vec<Summary>> {
    let mut server = rt.block_on(CallbackServer::start())?;
    std::fs::create_dir_all(log_dir())?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_dir().join("watchdog-oneshot.log"))?;
    println!(
        "  callbacks to {}; {} runs per round",
        server.base_url, settings.oneshot_runs
    );
    let runs = settings.oneshot_runs;
    let mut sequence = 0u64;
    let watchdog = Variant::new(WATCHDOG, move |_warm_up| {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(runs);
        for _ in 0..runs {
            sequence += 1;
            let id = format!("oneshot-{sequence}");
            latencies.push(rt.block_on(server.run_once(&id, &log))?);
        }
        Ok(Sample::timed(latencies, started.elapsed()))
    });
    interleave(
        settings.oneshot_rounds,
        &mut [procs::cat_variant(runs), watchdog],
        Progress::Round,
    )
}
