//! The load generator: hyper HTTP/1.1 keep-alive connections (one per worker, opened
//! before the clock starts) driven by a tokio current-thread runtime, so the client uses
//! at most one of the machine's cores and as little of it as a Rust client can.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_bench_support::http::{connect, Connection};
use gantry_bench_support::stats::Sample;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use tokio::task::JoinSet;

use crate::BenchResult;

macro_rules! bench_token {
    () => {
        "gty_benchmark-token"
    };
}

/// The admin token every benchmarked server is started with (GANTRY_TOKEN): the API
/// needs one.
pub const TOKEN: &str = bench_token!();
/// `Authorization` of every call.
const AUTHORIZATION_VALUE: &str = concat!("Bearer ", bench_token!());

/// An answer: status, `X-Execution-Id` (if any) and the whole body.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// `X-Execution-Id`.
    pub execution_id: Option<HeaderValue>,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> BenchResult<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|err| format!("not JSON ({err}): {}", self.text()).into())
    }
}

/// A request sent over and over: method, path and body.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET` or `POST`.
    pub method: Method,
    /// The path and query, e.g. `/healthz`.
    pub path: String,
    /// The body (JSON), empty for a `GET`.
    pub body: Bytes,
}

impl Call {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Call {
        Call {
            method: Method::GET,
            path: path.into(),
            body: Bytes::new(),
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(path: impl Into<String>, body: impl Into<Bytes>) -> Call {
        Call {
            method: Method::POST,
            path: path.into(),
            body: body.into(),
        }
    }

    /// Sends the call on `connection` and reads the whole answer.
    pub async fn send(&self, connection: &mut Connection) -> BenchResult<Answer> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(HOST, "127.0.0.1")
            .header(AUTHORIZATION, AUTHORIZATION_VALUE);
        if self.method == Method::POST {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        connection.ready().await?;
        let response = connection
            .send_request(request.body(Full::new(self.body.clone()))?)
            .await?;
        let status = response.status();
        let execution_id = response.headers().get("x-execution-id").cloned();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            execution_id,
            body,
        })
    }

    /// Sends the call once on a fresh connection.
    pub async fn once(&self, addr: SocketAddr) -> BenchResult<Answer> {
        self.send(&mut connect(addr).await?).await
    }
}

/// What every answer of a load round must be: this status, and (when set) a body
/// containing this text.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The status.
    pub status: StatusCode,
    /// A substring of the body, checked on every answer.
    pub body: Option<&'static str>,
}

/// `concurrency` workers, each on its own keep-alive connection (opened before the clock
/// starts), send `call` back to back until `duration` has passed; each finishes its
/// last request. Every answer must match `expect`. Returns the latencies and the last
/// `X-Execution-Id` each worker received.
pub async fn load_for(
    addr: SocketAddr,
    call: &Call,
    concurrency: usize,
    duration: Duration,
    expect: Expect,
) -> BenchResult<(Sample, Vec<HeaderValue>)> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(connect(addr).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for mut connection in connections {
        let call = call.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut last_id = None;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let answer = call
                    .send(&mut connection)
                    .await
                    .map_err(|err| format!("{} {}: {err}", call.method, call.path))?;
                latencies.push(sent.elapsed());
                check(&call, &answer, expect)?;
                if answer.execution_id.is_some() {
                    last_id = answer.execution_id;
                }
            }
            Ok::<_, String>((latencies, last_id))
        });
    }
    let mut latencies = Vec::new();
    let mut last_ids = Vec::new();
    while let Some(worker) = workers.join_next().await {
        let (mine, last_id) = worker??;
        latencies.extend(mine);
        last_ids.extend(last_id);
    }
    Ok((Sample::timed(latencies, started.elapsed()), last_ids))
}

/// `count` requests one after another on one keep-alive connection; each must match
/// `expect`.
pub async fn sequential(
    addr: SocketAddr,
    call: &Call,
    count: usize,
    expect: Expect,
) -> BenchResult<Sample> {
    let started = Instant::now();
    let latencies = one_by_one(addr, call, count, expect, None).await?;
    Ok(Sample::timed(latencies, started.elapsed()))
}

/// [`sequential`], with the connection left idle for `idle` before each request: what
/// a function called now and then sees. The sample's time is the requests' alone.
pub async fn after_idle(
    addr: SocketAddr,
    call: &Call,
    count: usize,
    expect: Expect,
    idle: Duration,
) -> BenchResult<Sample> {
    let latencies = one_by_one(addr, call, count, expect, Some(idle)).await?;
    let busy = latencies.iter().sum();
    Ok(Sample::timed(latencies, busy))
}

/// The latencies of `count` requests on one keep-alive connection, each after `idle`.
async fn one_by_one(
    addr: SocketAddr,
    call: &Call,
    count: usize,
    expect: Expect,
    idle: Option<Duration>,
) -> BenchResult<Vec<Duration>> {
    let mut connection = connect(addr).await?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        if let Some(idle) = idle {
            tokio::time::sleep(idle).await;
        }
        let sent = Instant::now();
        let answer = call.send(&mut connection).await?;
        latencies.push(sent.elapsed());
        check(call, &answer, expect)?;
    }
    Ok(latencies)
}

/// Whether `answer` is what `expect` asks of `call`; else what it was instead.
pub fn check(call: &Call, answer: &Answer, expect: Expect) -> Result<(), String> {
    let body_ok = expect.body.is_none_or(|text| {
        answer
            .body
            .windows(text.len())
            .any(|window| window == text.as_bytes())
    });
    if answer.status == expect.status && body_ok {
        Ok(())
    } else {
        Err(format!(
            "{} {} answered {} (expected {}{}): {}",
            call.method,
            call.path,
            answer.status,
            expect.status,
            expect
                .body
                .map_or(String::new(), |text| format!(" with {text:?}")),
            answer.text()
        ))
    }
}
