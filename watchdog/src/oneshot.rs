//! One-shot modes (HTTP, STDIO, FILE): read the input, run the function once, report
//! the result to `{CALLBACK_URL}/{EXECUTION_ID}:complete`, or print it when there is
//! no callback (local testing), and exit with a code that tells what happened.

use bytes::Bytes;
use gantry_protocol::env;
use tokio::time::Instant;

use crate::callback::{self, Callback};
use crate::config::{Config, Mode, PayloadSource, Secret};
use crate::http_client::HttpClient;
use crate::logs::{self, Target};
use crate::modes::file::FilePaths;
use crate::modes::{file, http, stdio, Invocation, RunContext};
use crate::outcome::{self, Outcome};
use crate::supervise::ForwardedSignals;
use crate::{diag, exit_code};

/// Runs the configured one-shot execution and returns the process exit code.
pub async fn run(config: &Config) -> i32 {
    let client = HttpClient::new();
    let mut signals = match ForwardedSignals::install() {
        Ok(signals) => Some(signals),
        Err(err) => {
            diag!("cannot listen for SIGTERM/SIGINT, they will not be forwarded: {err}");
            None
        }
    };
    let ctx = RunContext {
        mark_lines: false,
        kill_grace: config.kill_grace,
        max_output: config.max_output_bytes,
        // Without a callback our stdout carries the result, so function logs go to stderr.
        child_stdout: if config.callback_url.is_some() {
            Target::Stdout
        } else {
            Target::Stderr
        },
    };
    let started = Instant::now();
    let payload = match &config.payload {
        PayloadSource::Inline(text) => {
            callback::check_payload(Bytes::from(text.clone()), "INVOCATION_PAYLOAD")
        }
        PayloadSource::Url(url) => {
            callback::fetch_payload(
                &client,
                url,
                config.callback_token.as_ref().map(Secret::expose),
                callback::RETRY,
            )
            .await
        }
    };
    let (outcome, runtime) = match payload {
        Err(error) => (Outcome::failed(error, started.elapsed()), None),
        Ok(payload) => {
            let invocation = Invocation {
                execution_id: config.execution_id.clone(),
                trace_id: config.trace_id.clone(),
                // Read as given (the control plane checked them): a value that cannot
                // be a header fails only the request to an HTTP runtime.
                traceparent: std::env::var(env::TRACEPARENT).ok(),
                tracestate: std::env::var(env::TRACESTATE).ok(),
                payload,
                timeout: config.timeout,
            };
            let signals = signals.as_mut();
            match config.mode {
                Mode::Stdio => (
                    stdio::run(&config.command, &invocation, &ctx, signals).await,
                    None,
                ),
                Mode::File => {
                    let paths = FilePaths {
                        input: config.input_file.clone(),
                        output: config.output_file.clone(),
                    };
                    let outcome =
                        file::run(&config.command, &paths, &invocation, &ctx, signals).await;
                    (outcome, None)
                }
                Mode::Http => {
                    http::run_once(
                        &config.command,
                        &config.http,
                        &invocation,
                        &ctx,
                        &client,
                        signals,
                    )
                    .await
                }
                Mode::Warm => unreachable!("WARM mode is served by warm::serve"),
            }
        }
    };
    let succeeded = outcome.is_success();
    let report = outcome.into_report();
    let stop_runtime = async {
        if let Some((mut process, forwarders)) = runtime {
            process.terminate(config.kill_grace).await;
            forwarders.finish().await;
        }
    };
    let deliver = async {
        let Some(url) = &config.callback_url else {
            return Ok(());
        };
        let base_url = url.to_string();
        let target = Callback {
            base_url: &base_url,
            execution_id: &config.execution_id,
            token: config.callback_token.as_ref().map(Secret::expose),
            trace_id: config.trace_id.as_deref(),
        };
        callback::deliver(&client, target, &report, callback::RETRY).await
    };
    let (delivered, ()) = tokio::join!(deliver, stop_runtime);
    let report_json = outcome::report_line(&report);
    let code = match delivered {
        Ok(()) if config.callback_url.is_some() => exit_code::for_result(succeeded),
        Ok(()) => {
            logs::write_line(Target::Stdout, report_json).await;
            exit_code::for_result(succeeded)
        }
        Err(err) => {
            diag!("could not deliver the result: {err}; the result follows on stdout");
            logs::write_line(Target::Stdout, report_json).await;
            exit_code::CALLBACK_FAILED
        }
    };
    logs::flush().await;
    code
}
