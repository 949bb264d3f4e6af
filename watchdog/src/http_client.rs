//! The watchdog's one HTTP/1 client, shared by the whole process: keep-alive
//! connections to the runtime and the control plane, pooled per host.
//!
//! Built on hyper's connection-level client rather than a general-purpose pooled client:
//! the watchdog talks plain HTTP/1 to one or two hosts, and every byte of the static
//! binary counts. Every request reads its whole (bounded) body, after
//! which its connection goes back to the pool.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{HeaderMap, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::offload::off_thread;

/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 64;
/// Idle connections are closed after this long: a burst of concurrent calls must not
/// hold its sockets and buffers (nor pin the allocator's pages) once traffic stops. A
/// call after a quiet spell pays one loopback connect.
const IDLE_EXPIRY: Duration = Duration::from_secs(5);
/// Limit on establishing a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections per `host:port`, most recently used last.
struct Pool {
    idle: HashMap<String, Vec<(Sender, Instant)>>,
    /// How long an idle connection is kept.
    expiry: Duration,
    /// Whether a task is closing expired connections.
    pruning: bool,
}

impl Pool {
    /// Closes connections idle past the expiry. Returns whether any idle one remains.
    fn prune(&mut self, now: Instant) -> bool {
        let mut remaining = false;
        let expiry = self.expiry;
        self.idle.retain(|_, senders| {
            senders.retain(|(sender, since)| !sender.is_closed() && now - *since < expiry);
            remaining |= !senders.is_empty();
            !senders.is_empty()
        });
        remaining
    }
}

/// A cheaply cloneable handle to the process-wide connection pool.
#[derive(Clone)]
pub struct HttpClient {
    pool: Arc<Mutex<Pool>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::with_idle_expiry(IDLE_EXPIRY)
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// A complete answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most the caller's limit.
    pub body: Bytes,
}

/// Why a request got no complete answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL has no host.
    #[error("{0} has no host")]
    NoHost(Uri),
    /// No TCP connection could be made.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
    /// The connection failed before or while the answer arrived.
    #[error("connection to {address} failed: {reason}")]
    Exchange {
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
    /// The body is longer than the caller allows.
    #[error("the response body exceeds {0} bytes")]
    TooLarge(usize),
}

impl HttpClient {
    /// A client with an empty pool.
    pub fn new() -> HttpClient {
        HttpClient::default()
    }

    /// A client whose idle connections close after `expiry`.
    pub fn with_idle_expiry(expiry: Duration) -> HttpClient {
        let pool = Pool {
            idle: HashMap::new(),
            expiry,
            pruning: false,
        };
        HttpClient {
            pool: Arc::new(Mutex::new(pool)),
        }
    }

    /// Sends `request` (an absolute `http://` URL) and reads the whole answer, failing
    /// with [`ClientError::TooLarge`] past `body_limit` bytes.
    pub async fn request(
        &self,
        request: Request<Full<Bytes>>,
        body_limit: usize,
    ) -> Result<Reply, ClientError> {
        let (mut parts, body) = request.into_parts();
        let host = parts
            .uri
            .host()
            .ok_or_else(|| ClientError::NoHost(parts.uri.clone()))?;
        let port = parts.uri.port_u16().unwrap_or(80);
        let address = format!("{host}:{port}");
        if !parts.headers.contains_key(HOST) {
            let value = parts
                .uri
                .authority()
                .map_or(address.as_str(), |a| a.as_str());
            if let Ok(value) = HeaderValue::from_str(value) {
                parts.headers.insert(HOST, value);
            }
        }
        // HTTP/1 servers expect the origin form (`/invoke`), not the absolute URL.
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
        let mut request = Request::from_parts(parts, body);
        let exchange_failed = |err: hyper::Error| ClientError::Exchange {
            address: address.clone(),
            reason: describe(&err),
        };
        let (mut sender, response) = loop {
            let (mut sender, reused) = match self.checkout(&address) {
                Some(sender) => (sender, true),
                None => (self.connect(&address).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => break (sender, response),
                // A pooled connection the server had already closed: try a fresh one.
                Err(mut failed) if reused && failed.message().is_some() => {
                    request = failed.take_message().expect("checked above");
                }
                Err(failed) => return Err(exchange_failed(failed.into_error())),
            }
        };
        let (parts, body) = response.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > body_limit) {
            return Err(ClientError::TooLarge(body_limit));
        }
        let body = match Limited::new(body, body_limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(ClientError::TooLarge(body_limit))
            }
            Err(err) => {
                return Err(ClientError::Exchange {
                    address,
                    reason: describe(&*err),
                })
            }
        };
        if sender.ready().await.is_ok() {
            self.checkin(address, sender);
        }
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkout(&self, address: &str) -> Option<Sender> {
        let mut pool = self.lock();
        let senders = pool.idle.get_mut(address)?;
        while let Some((sender, _)) = senders.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, address: String, sender: Sender) {
        let mut pool = self.lock();
        let senders = pool.idle.entry(address).or_default();
        senders.retain(|(sender, _)| !sender.is_closed());
        if senders.len() >= MAX_IDLE_PER_HOST {
            return;
        }
        senders.push((sender, Instant::now()));
        if !pool.pruning {
            pool.pruning = true;
            let interval = pool.expiry / 5;
            let pool = Arc::downgrade(&self.pool);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    let Some(pool) = pool.upgrade() else { return };
                    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
                    if !pool.prune(Instant::now()) {
                        pool.pruning = false;
                        return;
                    }
                }
            });
        }
    }

    async fn connect(&self, address: &str) -> Result<Sender, ClientError> {
        let failed = |reason: String| ClientError::Connect {
            address: address.to_owned(),
            reason,
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect_tcp(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(failed(err.to_string())),
            Err(_) => {
                return Err(failed(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        // A fixed 4 KiB read buffer: each answer's body keeps its buffer alive, so hyper
        // allocates a fresh one per response. Its adaptive default starts at 8 KiB, a size
        // musl's allocator maps and unmaps on every call; one page stays in a reused slab.
        let (sender, connection) = http1::Builder::new()
            .read_buf_exact_size(Some(4096))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| failed(describe(&err)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Reads a whole request body, failing once it exceeds `limit` bytes.
pub async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(err) => Err(BodyError::Read(err.to_string())),
    }
}

/// A request body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the limit.
    #[error("body exceeds {0} bytes")]
    TooLarge(usize),
    /// The connection failed mid-body.
    #[error("connection failed while reading the body: {0}")]
    Read(String),
}

/// An error as one readable clause, with its cause chain.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Connects to `host:port`. A name is resolved on a helper thread ([`off_thread`]):
/// tokio would use its blocking pool, which panics when no thread can be started.
async fn connect_tcp(address: &str) -> std::io::Result<TcpStream> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return TcpStream::connect(socket).await;
    }
    let name = address.to_owned();
    let resolved = off_thread(move || name.to_socket_addrs().map(Vec::from_iter))
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("name resolution failed")))?;
    TcpStream::connect(&resolved[..]).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::server::conn::http1 as server;
    use hyper::service::service_fn;
    use hyper::Response;
    use tokio::net::TcpListener;
    use tokio::sync::Barrier;

    use super::*;

    /// A server that answers once `hold` requests are in flight together, and counts
    /// its open connections.
    async fn server(hold: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(hold));
        let counter = Arc::clone(&open);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (open, barrier) = (Arc::clone(&counter), Arc::clone(&barrier));
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let barrier = Arc::clone(&barrier);
                        async move {
                            barrier.wait().await;
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"{}"),
                            )))
                        }
                    });
                    let _ = server::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (address, open)
    }

    fn get(address: &str) -> Request<Full<Bytes>> {
        Request::get(format!("http://{address}/"))
            .body(Full::default())
            .unwrap()
    }

    #[tokio::test]
    async fn concurrent_calls_open_connections_that_close_once_idle() {
        let (address, open) = server(3).await;
        let client = HttpClient::with_idle_expiry(Duration::from_millis(200));
        // Three calls at once need three connections.
        let replies = tokio::join!(
            client.request(get(&address), 1024),
            client.request(get(&address), 1024),
            client.request(get(&address), 1024),
        );
        for reply in [replies.0, replies.1, replies.2] {
            assert_eq!(reply.unwrap().body, "{}");
        }
        assert_eq!(open.load(Ordering::SeqCst), 3);
        // Once idle past the expiry, every one of them is closed.
        for _ in 0..100 {
            if open.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(open.load(Ordering::SeqCst), 0);
        // The client still works afterwards, on a new connection.
        let _ = tokio::join!(
            client.request(get(&address), 1024),
            client.request(get(&address), 1024),
            client.request(get(&address), 1024),
        );
    }

    #[tokio::test]
    async fn sequential_calls_share_one_connection() {
        let (address, open) = server(1).await;
        let client = HttpClient::new();
        for _ in 0..5 {
            client.request(get(&address), 1024).await.unwrap();
        }
        assert_eq!(open.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large() {
        let (address, _) = server(1).await;
        let err = HttpClient::new()
            .request(get(&address), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(1)), "{err}");
    }
}
