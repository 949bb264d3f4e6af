//! HTTP/1.1 to one warm instance's WARM server (`POST /invoke`, `GET /health`) over a
//! few keep-alive connections that are reused from call to call.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use uuid::Uuid;

use gantry_protocol::headers;

/// Why a call to an instance did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens at the instance's address (it died or is not up); the request was
    /// not delivered.
    #[error("cannot connect to the instance at {address}: {source}")]
    Connect {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke before the answer was complete (the instance died mid-call).
    #[error("the connection to the instance broke before it answered: {0}")]
    Broken(#[from] hyper::Error),
    /// The instance took no new call (draining, or at its WARM_CONCURRENCY).
    #[error("the instance refused the call ({status}): {body}")]
    Refused {
        /// 429 or 503.
        status: u16,
        /// Its error body.
        body: String,
    },
    /// The answer was longer than the largest output allows.
    #[error("the instance answered more than {0} bytes")]
    TooLarge(usize),
    /// Another answer than 200.
    #[error("the instance answered {status}: {body}")]
    Unexpected {
        /// The status.
        status: u16,
        /// The body.
        body: String,
    },
}

/// The keep-alive connections to one instance.
pub struct Connections {
    address: SocketAddr,
    authority: String,
    /// `Bearer <the instance's credential>`.
    authorization: HeaderValue,
    /// Longest answer read.
    answer_limit: usize,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("address", &self.address)
            .finish()
    }
}

/// What one `POST /invoke` carries besides the input.
pub struct InvokeCall<'a> {
    /// The execution.
    pub execution_id: Uuid,
    /// Its trace id.
    pub trace_id: Option<&'a str>,
    /// Its W3C `traceparent`.
    pub traceparent: Option<&'a str>,
    /// Its W3C `tracestate`.
    pub tracestate: Option<&'a str>,
    /// Its timeout, which the watchdog enforces.
    pub timeout_ms: u64,
}

impl Connections {
    /// Connections to the WARM server at `endpoint` (`http://IP:PORT`), whose calls
    /// carry `credential`.
    pub fn new(
        endpoint: &str,
        credential: &str,
        answer_limit: usize,
    ) -> Result<Connections, String> {
        let authority = endpoint
            .strip_prefix("http://")
            .unwrap_or(endpoint)
            .trim_end_matches('/');
        let address = authority.parse::<SocketAddr>().map_err(|err| {
            format!("the instance endpoint {endpoint:?} is not http://IP:PORT ({err})")
        })?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {credential}"))
            .map_err(|_| "the instance credential is not a valid header value".to_owned())?;
        authorization.set_sensitive(true);
        Ok(Connections {
            address,
            authority: authority.to_owned(),
            authorization,
            answer_limit,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `POST /invoke` with the raw input: the body of the answer is the watchdog's report.
    pub async fn invoke(&self, call: &InvokeCall<'_>, input: Bytes) -> Result<Bytes, CallError> {
        let build = || {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri("/invoke")
                .header(HOST, self.authority.as_str())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(headers::EXECUTION_ID, call.execution_id.to_string())
                .header(headers::TIMEOUT_MS, call.timeout_ms.to_string());
            let trace = [
                (headers::TRACE_ID, call.trace_id),
                (headers::TRACEPARENT, call.traceparent),
                (headers::TRACESTATE, call.tracestate),
            ];
            for (name, value) in trace {
                if let Some(value) = value {
                    request = request.header(name, value);
                }
            }
            request
                .body(Full::new(input.clone()))
                .expect("the request parts are valid")
        };
        let (status, body) = self.send(build).await?;
        match status {
            StatusCode::OK => Ok(body),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Err(CallError::Refused {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                })
            }
            other => Err(CallError::Unexpected {
                status: other.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    /// `GET /health` within `limit`: `true` when the instance is ready.
    pub async fn healthy(&self, limit: Duration) -> bool {
        let build = || {
            Request::builder()
                .method(Method::GET)
                .uri("/health")
                .header(HOST, self.authority.as_str())
                .body(Full::new(Bytes::new()))
                .expect("the request parts are valid")
        };
        matches!(
            tokio::time::timeout(limit, self.send(build)).await,
            Ok(Ok((StatusCode::OK, _)))
        )
    }

    /// Sends a request on an idle connection (or a new one) and reads the whole answer.
    /// A reused connection the instance closed while idle fails before the request is
    /// read; the request is then sent once more on a new connection.
    async fn send(
        &self,
        build: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let mut reused_failed = None;
        if let Some(mut sender) = self.take_idle().await {
            match self.exchange(&mut sender, build()).await {
                Ok(Some(answer)) => {
                    self.put_idle(sender);
                    return Ok(answer);
                }
                Ok(None) => return Err(CallError::TooLarge(self.answer_limit)),
                Err(err) if err.is_canceled() || err.is_incomplete_message() => {
                    reused_failed = Some(err);
                }
                Err(err) => return Err(err.into()),
            }
        }
        let mut sender = match (self.connect().await, reused_failed) {
            (Ok(sender), _) => sender,
            // The request may have reached the instance on the reused connection before
            // it died: that is not a call that was never delivered.
            (Err(_), Some(err)) => return Err(CallError::Broken(err)),
            (Err(err), None) => return Err(err),
        };
        match self.exchange(&mut sender, build()).await? {
            Some(answer) => {
                self.put_idle(sender);
                Ok(answer)
            }
            None => Err(CallError::TooLarge(self.answer_limit)),
        }
    }

    /// One request and its whole answer; `None` when the answer is longer than the
    /// limit (the connection is then not reused).
    async fn exchange(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        request: Request<Full<Bytes>>,
    ) -> Result<Option<(StatusCode, Bytes)>, hyper::Error> {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut read = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if read.len() + data.len() > self.answer_limit {
                    return Ok(None);
                }
                read.extend_from_slice(&data);
            }
        }
        Ok(Some((status, read.freeze())))
    }

    async fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let candidate = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop()?;
            let mut sender = candidate;
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let connect_error = |source| CallError::Connect {
            address: self.address,
            source,
        };
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(connect_error)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Closes the idle connections (the instance is going away).
    pub fn close(&self) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}
