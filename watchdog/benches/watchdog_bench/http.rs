//! HTTP for the benchmarks: a minimal HTTP/1.1 keep-alive server (the runtime the
//! watchdog proxies to, and the callback receiver) and the keep-alive load generator.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gantry_bench_support::stats::Sample;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use gantry_bench_support::http::{connect, Connection};

use crate::BenchResult;

/// The body the runtime answers `POST /invoke` with.
pub const RUNTIME_ANSWER: &[u8] = br#"{"ok":true,"greeting":"hello"}"#;

/// Serves every connection accepted on `listener` with `handler(method, path, body)`
/// until the task is dropped.
pub async fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&Method, &str, Bytes) -> (StatusCode, Bytes) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let handler = Arc::clone(&handler);
            async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let (status, answer) = handler(&parts.method, parts.uri.path(), body);
                let mut response = Response::new(Full::new(answer));
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, "application/json".parse().expect("valid"));
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The runtime's routes: `GET /health` and `POST /invoke`.
pub fn runtime_handler(method: &Method, path: &str, _body: Bytes) -> (StatusCode, Bytes) {
    match (method, path) {
        (&Method::GET, "/health") => (StatusCode::OK, Bytes::from_static(b"{}")),
        (&Method::POST, "/invoke") => (StatusCode::OK, Bytes::from_static(RUNTIME_ANSWER)),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"{}")),
    }
}

/// The `GANTRY_BENCH_ROLE=runtime` process: serves [`runtime_handler`] on 127.0.0.1:`PORT`
/// on one thread, and dies with its parent.
pub fn run_runtime() -> BenchResult<()> {
    // A runtime orphaned by a killed watchdog or bench must not outlive it.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
    let port: u16 = std::env::var("PORT")?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        serve(listener, runtime_handler).await;
        Ok(())
    })
}

/// The request every worker sends, over and over.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET` or `POST`.
    pub method: Method,
    /// The path, e.g. `/invoke`.
    pub path: &'static str,
    /// `X-Execution-Id` value, when the raw-payload form is used.
    pub execution_id: Option<&'static str>,
    /// The body.
    pub body: Bytes,
}

impl Call {
    /// `POST /invoke` with the raw payload and an `X-Execution-Id` header.
    pub fn raw(payload: &'static [u8]) -> Call {
        Call {
            method: Method::POST,
            path: "/invoke",
            execution_id: Some("bench-exec"),
            body: Bytes::from_static(payload),
        }
    }

    /// `POST /invoke` with the `{execution_id, payload}` envelope.
    pub fn envelope(envelope: &'static [u8]) -> Call {
        Call {
            execution_id: None,
            ..Call::raw(envelope)
        }
    }

    /// `GET /health`.
    pub fn health() -> Call {
        Call {
            method: Method::GET,
            path: "/health",
            execution_id: None,
            body: Bytes::new(),
        }
    }

    /// Sends the call on `connection` and returns the status and the whole body.
    pub async fn send(&self, connection: &mut Connection) -> BenchResult<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.path)
            .header(HOST, "127.0.0.1")
            .header(CONTENT_TYPE, "application/json");
        if let Some(id) = self.execution_id {
            request = request.header("x-execution-id", id);
        }
        connection.ready().await?;
        let response = connection
            .send_request(request.body(Full::new(self.body.clone()))?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Polls `GET /health` on `addr` until it answers 200 or `limit` passes; `alive` is
/// asked between attempts and fails fast when the process behind `addr` has died.
pub async fn wait_healthy(
    addr: SocketAddr,
    limit: Duration,
    mut alive: impl FnMut() -> BenchResult<()>,
) -> BenchResult<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut connection) = connect(addr).await {
            if let Ok((StatusCode::OK, _)) = Call::health().send(&mut connection).await {
                return Ok(());
            }
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(format!("{addr} did not answer 200 on /health within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One round of load: `concurrency` workers, each on its own keep-alive connection
/// (opened before the clock starts), sending `call` `per_worker` times back to back.
/// Every answer must be 200 and the first one must contain `expect`.
pub async fn load(
    addr: SocketAddr,
    call: &Call,
    concurrency: usize,
    per_worker: usize,
    expect: &'static str,
) -> BenchResult<Sample> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(connect(addr).await?);
    }
    let (status, body) = call.send(&mut connections[0]).await?;
    if status != StatusCode::OK || !String::from_utf8_lossy(&body).contains(expect) {
        return Err(format!(
            "{addr}{}: expected 200 with {expect:?}, got {status}: {}",
            call.path,
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for mut connection in connections {
        let call = call.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let sent = Instant::now();
                let (status, body) = call
                    .send(&mut connection)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(sent.elapsed());
                if status != StatusCode::OK {
                    let body = String::from_utf8_lossy(&body);
                    return Err(format!("{} answered {status}: {body}", call.path));
                }
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(concurrency * per_worker);
    while let Some(worker) = workers.join_next().await {
        latencies.extend(worker??);
    }
    Ok(Sample::timed(latencies, started.elapsed()))
}
