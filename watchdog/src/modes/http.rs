//! HTTP runtimes: a process that serves `POST RUNTIME_URL` and `GET HEALTH_URL` on the
//! port the watchdog gives it in `PORT`. One-shot HTTP mode starts it, waits until it is
//! healthy, posts the payload once and stops it; WARM mode keeps it (see `warm::runtime`).

use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::{env, headers, ErrorCode, FunctionError};
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Uri};
use serde_json::value::RawValue;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::{Invocation, LogForwarders, RunContext};
use crate::config::{CommandLine, HttpRuntimeConfig};
use crate::http_client::{ClientError, HttpClient};
use crate::logs::Attribution;
use crate::outcome::{self, preview, Outcome};
use crate::process::{Pipes, Process};
use crate::supervise::{supervise, ForwardedSignals, Supervised};

/// Starts the runtime with `PORT` set from RUNTIME_URL and its output forwarded, lines
/// marked as `attribution` says.
pub fn spawn_runtime(
    command: &CommandLine,
    http: &HttpRuntimeConfig,
    ctx: &RunContext,
    attribution: Attribution,
) -> Result<(Process, LogForwarders), FunctionError> {
    let port = http.port.to_string();
    let mut process = Process::spawn(command, &[(env::PORT, &port)], Pipes::OUTPUT)
        .map_err(|err| FunctionError::new(ErrorCode::SpawnError, err.to_string()))?;
    let forwarders = LogForwarders::start(&mut process, ctx.child_stdout, attribution);
    Ok((process, forwarders))
}

/// Polls HEALTH_URL until it answers 2xx. STARTUP_ERROR if the runtime exits first or
/// `limit` passes.
pub async fn wait_ready(
    client: &HttpClient,
    process: &mut Process,
    health_url: &Uri,
    limit: Duration,
) -> Result<(), FunctionError> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    let exited = |status| {
        FunctionError::new(
            ErrorCode::StartupError,
            format!("runtime exited with {status} before it became healthy at {health_url}"),
        )
    };
    loop {
        tokio::select! {
            status = process.wait() => return Err(exited(status)),
            healthy = probe(client, health_url, deadline) => if healthy { return Ok(()) },
        }
        if Instant::now() >= deadline {
            return Err(FunctionError::new(
                ErrorCode::StartupError,
                format!(
                    "runtime did not answer 2xx on {health_url} within READY_TIMEOUT_MS ({} ms)",
                    outcome::millis(limit)
                ),
            ));
        }
        tokio::select! {
            status = process.wait() => return Err(exited(status)),
            () = sleep(pause.min(deadline - Instant::now())) => {}
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One health check: true on a 2xx answer before `deadline` (and at most a second).
pub async fn probe(client: &HttpClient, url: &Uri, deadline: Instant) -> bool {
    let request = Request::get(url.clone())
        .body(Full::default())
        .expect("request parts are valid");
    let attempt_deadline = deadline.min(Instant::now() + Duration::from_secs(1));
    matches!(
        timeout_at(attempt_deadline, client.request(request, 64 * 1024)).await,
        Ok(Ok(reply)) if reply.status.is_success()
    )
}

/// Posts the payload to RUNTIME_URL and turns the answer into a result. The caller
/// applies the timeout, which ends at `deadline`: the runtime is told the time left
/// (`X-Timeout-Ms`) so the code can stop in time.
pub async fn invoke(
    client: &HttpClient,
    url: &Uri,
    invocation: &Invocation,
    deadline: Instant,
    max_output: usize,
) -> Result<Box<RawValue>, FunctionError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let left_ms = outcome::millis(left).max(1).to_string();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(headers::EXECUTION_ID, invocation.execution_id.as_str())
        .header(headers::TIMEOUT_MS, left_ms.as_str());
    for (_, header, value) in invocation.trace() {
        if let Some(value) = value {
            request = request.header(header, value);
        }
    }
    let request = request
        .body(Full::new(invocation.payload.clone()))
        .map_err(|err| {
            FunctionError::new(
                ErrorCode::InvalidInput,
                format!("cannot build the request: {err}"),
            )
        })?;
    let crashed = |detail: String| {
        FunctionError::new(
            ErrorCode::RuntimeCrashed,
            format!("runtime failed during the request: {detail}"),
        )
    };
    let (status, body) = match client.request(request, max_output).await {
        Ok(reply) => (reply.status, reply.body),
        Err(ClientError::TooLarge(_)) => return Err(outcome::output_too_large(max_output)),
        Err(err) => return Err(crashed(err.to_string())),
    };
    if !status.is_success() {
        return Err(FunctionError::new(
            ErrorCode::FunctionError,
            format!("runtime answered {status}: {}", error_text(&body)),
        ));
    }
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(FunctionError::new(
            ErrorCode::InvalidOutput,
            format!("runtime answered {status} with an empty body; it must return JSON (null for no result)"),
        ));
    }
    serde_json::from_slice(trimmed).map_err(|err| {
        FunctionError::new(
            ErrorCode::InvalidOutput,
            format!(
                "runtime's response is not JSON ({err}): {}",
                preview(trimmed)
            ),
        )
    })
}

/// The message of an error answer: its `error` (text or `{message}`) or `message`
/// field when it is JSON, else the start of the body.
fn error_text(body: &Bytes) -> String {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Object { message: String },
    }
    #[derive(serde::Deserialize)]
    struct ErrorAnswer {
        error: Option<ErrorField>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<ErrorAnswer>(body).ok();
    let message = parsed.and_then(|answer| match answer.error {
        Some(ErrorField::Text(text) | ErrorField::Object { message: text }) => Some(text),
        None => answer.message,
    });
    match message {
        Some(message) => message.chars().take(1000).collect(),
        None if body.trim_ascii().is_empty() => "(empty body)".into(),
        None => preview(body),
    }
}

/// One-shot HTTP mode. Returns the outcome and the still-running runtime, which the
/// caller stops while it reports.
pub async fn run_once(
    command: &CommandLine,
    http: &HttpRuntimeConfig,
    invocation: &Invocation,
    ctx: &RunContext,
    client: &HttpClient,
    signals: Option<&mut ForwardedSignals>,
) -> (Outcome, Option<(Process, LogForwarders)>) {
    let started = Instant::now();
    let (mut process, forwarders) =
        match spawn_runtime(command, http, ctx, invocation.attribution(ctx)) {
            Ok(runtime) => runtime,
            Err(error) => return (Outcome::failed(error, started.elapsed()), None),
        };
    let pgid = process.pid();
    let work = async {
        wait_ready(client, &mut process, &http.health_url, http.ready_timeout).await?;
        let deadline = Instant::now() + invocation.timeout;
        let call = invoke(
            client,
            &http.invoke_url,
            invocation,
            deadline,
            ctx.max_output,
        );
        match timeout_at(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(outcome::timeout(invocation.timeout)),
        }
    };
    let result = match supervise(pgid, work, None, ctx.kill_grace, signals).await {
        Supervised::Finished(result) => result,
        Supervised::TimedOut => unreachable!("supervised without a timeout"),
    };
    let result = match result {
        Err(mut error) if error.code == ErrorCode::RuntimeCrashed => {
            // Say how it died, when it did.
            if let Ok(status) = timeout(Duration::from_millis(200), process.wait()).await {
                error
                    .message
                    .push_str(&format!(" (runtime exited with {status})"));
            }
            Err(error)
        }
        other => other,
    };
    let outcome = Outcome {
        result,
        exit_code: None,
        duration: started.elapsed(),
    };
    (outcome, Some((process, forwarders)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_prefers_the_message_fields() {
        let text = |body: &'static str| error_text(&Bytes::from_static(body.as_bytes()));
        assert_eq!(text(r#"{"error":"boom"}"#), "boom");
        assert_eq!(text(r#"{"error":{"message":"deep","code":7}}"#), "deep");
        assert_eq!(text(r#"{"message":"plain"}"#), "plain");
        assert_eq!(text("Internal Server Error"), "\"Internal Server Error\"");
        assert_eq!(text(""), "(empty body)");
    }
}
