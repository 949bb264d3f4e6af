//! The HTTP client of the command line: builds API URLs, sends the token, and turns
//! transport failures and error bodies into one readable line each.

use std::fmt;

use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::UsageError;
use crate::wire::ErrorBody;

/// An error answer of the API (`{"error": {"code", "message", "details"?}}`), or any
/// other non-success answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The error code (`NOT_FOUND`), or the status' reason in that style when the body
    /// was not an API error.
    pub code: String,
    /// Human message; may be empty.
    pub message: String,
    /// Extra information (for schema violations, the validator's messages).
    pub details: Option<Value>,
    /// The `Retry-After` header (429).
    pub retry_after: Option<String>,
}

impl ApiError {
    /// Reads an error out of a status, a `Retry-After` header and a body.
    pub fn from_parts(status: StatusCode, retry_after: Option<String>, body: &[u8]) -> Self {
        let fallback_code = status
            .canonical_reason()
            .map(|r| r.to_ascii_uppercase().replace([' ', '-'], "_"))
            .unwrap_or_else(|| "HTTP_ERROR".to_string());
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody { error }) => Self {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                details: error.details.filter(|d| !d.is_null()),
                retry_after,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let first = text.lines().map(str::trim).find(|l| !l.is_empty());
                Self {
                    status: status.as_u16(),
                    code: fallback_code,
                    message: super::table::truncate(first.unwrap_or_default(), 200),
                    details: None,
                    retry_after,
                }
            }
        }
    }
}

impl ApiError {
    /// The items of `details` as text, leaving out those the message already says (the
    /// server's messages often list the same violations as their details).
    fn new_details(&self, details: &Value) -> Vec<String> {
        let items: Vec<String> = match details {
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Value::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        };
        items
            .into_iter()
            .map(|item| item.trim().to_string())
            .filter(|item| !item.is_empty() && !self.message.contains(item.as_str()))
            .collect()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(details) = &self.details {
            let text = self.new_details(details).join("; ");
            if !text.is_empty() {
                write!(f, ": {text}")?;
            }
        }
        if let Some(after) = &self.retry_after {
            write!(f, " (retry after {after}s)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A connection to one Gantry server.
#[derive(Debug, Clone)]
pub struct Client {
    /// `--server`, as given (for messages).
    server: String,
    /// The parsed base URL.
    base: Url,
    /// `--token`.
    token: Option<String>,
    /// The HTTP client.
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `server` (an `http://` URL, possibly with a path prefix),
    /// sending `token` as a bearer token when set.
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let bad = |why: String| -> anyhow::Error {
            UsageError(format!(
                "--server {server:?} is not usable: {why} (expected http://HOST:PORT)"
            ))
            .into()
        };
        let base = Url::parse(server).map_err(|err| bad(err.to_string()))?;
        match base.scheme() {
            "http" => {}
            "https" => return Err(bad("this client speaks plain http only".into())),
            other => return Err(bad(format!("unsupported scheme {other:?}"))),
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("no host".into()));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("gantry-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10));
        if is_loopback(&base) {
            // A local server never sits behind the proxy of HTTP_PROXY.
            builder = builder.no_proxy();
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// The URL of `segments` under the base URL (each segment percent-encoded), with
    /// `query` pairs appended.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// A request with the token attached.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends `request`; transport failures become readable errors. Any status is `Ok`.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        request
            .send()
            .await
            .map_err(|err| self.transport_error(&err))
    }

    /// Sends `request` and returns the JSON body of a success answer (`Null` when empty),
    /// or the [`ApiError`] of any other answer.
    pub async fn call(&self, request: RequestBuilder) -> Result<(StatusCode, Value)> {
        let response = self.send(request).await?;
        self.read(response).await
    }

    /// The JSON body of a success answer (`Null` when empty), or the [`ApiError`] of
    /// any other answer.
    pub async fn read(&self, response: Response) -> Result<(StatusCode, Value)> {
        let status = response.status();
        let retry_after = header(&response, "retry-after");
        let body = self.body(response).await?;
        if !status.is_success() {
            return Err(ApiError::from_parts(status, retry_after, &body).into());
        }
        Ok((status, parse_json(&body)?))
    }

    /// `GET` of `segments` with `query`, expecting JSON.
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value> {
        let url = self.url(segments, query);
        Ok(self.call(self.request(Method::GET, url)).await?.1)
    }

    /// `GET` of `segments` with a typed query (one of [`crate::wire`]'s), expecting JSON.
    pub async fn get_query<Q: serde::Serialize + ?Sized>(
        &self,
        segments: &[&str],
        query: &Q,
    ) -> Result<Value> {
        let url = self.url(segments, &[]);
        Ok(self
            .call(self.request(Method::GET, url).query(query))
            .await?
            .1)
    }

    /// `POST` of `body` as JSON to `segments`, expecting JSON.
    pub async fn post_json<B: serde::Serialize + ?Sized>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<Value> {
        let url = self.url(segments, &[]);
        Ok(self
            .call(self.request(Method::POST, url).json(body))
            .await?
            .1)
    }

    /// Reads the whole body of `response`.
    pub async fn body(&self, response: Response) -> Result<Vec<u8>> {
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(&err))?;
        Ok(bytes.to_vec())
    }

    /// A transport failure as one line naming the server.
    pub fn transport_error(&self, err: &reqwest::Error) -> anyhow::Error {
        if err.is_connect() {
            anyhow::anyhow!(
                "cannot reach the Gantry server at {} (is \"gantry serve\" running?)",
                self.server
            )
        } else if err.is_timeout() {
            anyhow::anyhow!(
                "the Gantry server at {} did not answer in time",
                self.server
            )
        } else {
            let mut text = String::new();
            let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
            while let Some(cause) = source {
                text = cause.to_string();
                source = cause.source();
            }
            if text.is_empty() {
                text = err.to_string();
            }
            anyhow::anyhow!(
                "talking to the Gantry server at {} failed: {text}",
                self.server
            )
        }
    }
}

/// A response header as text.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A success answer read as its typed shape `T` (one of [`crate::wire`]'s); fields a
/// newer server added are ignored.
pub fn decode<T: DeserializeOwned>(body: Value) -> Result<T> {
    serde_json::from_value(body).context("the server's answer does not have the expected shape")
}

/// A success body as JSON; empty is `Null`.
pub fn parse_json(body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).context("the server answered with something that is not JSON")
}

/// Whether the URL's host is this machine.
/// Whether `server` (a `--server` URL) is on this machine (a loopback address or
/// `localhost`); a malformed URL is not.
pub fn is_local_server(server: &str) -> bool {
    Url::parse(server).is_ok_and(|url| is_loopback(&url))
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_error_lines() {
        let body = json!({"error": {"code": "NOT_FOUND", "message": "function \"foo\" not found"}});
        let err = ApiError::from_parts(StatusCode::NOT_FOUND, None, body.to_string().as_bytes());
        assert_eq!(err.to_string(), "404 NOT_FOUND: function \"foo\" not found");
        // Fields a newer server adds are ignored.
        let body = json!({"error": {"code": "NOT_FOUND", "message": "gone", "hint": "h"},
            "requestId": 7});
        let err = ApiError::from_parts(StatusCode::NOT_FOUND, None, body.to_string().as_bytes());
        assert_eq!(err.to_string(), "404 NOT_FOUND: gone");

        let body = json!({"error": {"code": "SCHEMA_VIOLATION", "message": "bad input",
            "details": ["/a: expected integer", {"path": "/b"}]}});
        let err = ApiError::from_parts(StatusCode::BAD_REQUEST, None, body.to_string().as_bytes());
        assert_eq!(
            err.to_string(),
            "400 SCHEMA_VIOLATION: bad input: /a: expected integer; {\"path\":\"/b\"}"
        );

        // Details the message already lists are not repeated; new ones still are.
        let body = json!({"error": {"code": "INVALID_INPUT",
            "message": "the input does not match the input_schema of \"shout\": /input: 1 is not of type \"string\"",
            "details": ["/input: 1 is not of type \"string\""]}});
        let err = ApiError::from_parts(StatusCode::BAD_REQUEST, None, body.to_string().as_bytes());
        assert_eq!(
            err.to_string(),
            "400 INVALID_INPUT: the input does not match the input_schema of \"shout\": /input: 1 is not of type \"string\""
        );
        let body = json!({"error": {"code": "INVALID_FUNCTION",
            "message": "invalid function definition: name is empty",
            "details": ["name is empty", "mode is unknown"]}});
        let err = ApiError::from_parts(StatusCode::BAD_REQUEST, None, body.to_string().as_bytes());
        assert_eq!(
            err.to_string(),
            "400 INVALID_FUNCTION: invalid function definition: name is empty: mode is unknown"
        );

        let body = json!({"error": {"code": "QUEUE_FULL", "message": "queue is full"}});
        let err = ApiError::from_parts(
            StatusCode::TOO_MANY_REQUESTS,
            Some("2".into()),
            body.to_string().as_bytes(),
        );
        assert_eq!(
            err.to_string(),
            "429 QUEUE_FULL: queue is full (retry after 2s)"
        );
    }

    #[test]
    fn non_api_error_bodies() {
        let err = ApiError::from_parts(StatusCode::METHOD_NOT_ALLOWED, None, b"");
        assert_eq!(err.to_string(), "405 METHOD_NOT_ALLOWED");
        let err = ApiError::from_parts(StatusCode::BAD_GATEWAY, None, b"\n<html>oops\n</html>");
        assert_eq!(err.to_string(), "502 BAD_GATEWAY: <html>oops");
    }

    #[test]
    fn urls_encode_segments_and_keep_prefixes() {
        let client = Client::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(
            client.url(&["v1", "functions", "a b:invoke"], &[]).as_str(),
            "http://127.0.0.1:8080/v1/functions/a%20b:invoke"
        );
        let client = Client::new("http://gantry.local/api/", Some("t".into())).unwrap();
        assert_eq!(
            client
                .url(
                    &["v1", "executions"],
                    &[("since", "2025-01-01T00:00:00+01:00".into())]
                )
                .as_str(),
            "http://gantry.local/api/v1/executions?since=2025-01-01T00%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn bad_server_urls_are_usage_errors() {
        for server in ["localhost:8080", "https://x", "not a url", "ftp://x"] {
            let err = Client::new(server, None).unwrap_err();
            assert!(err.is::<UsageError>(), "{server}: {err}");
        }
    }
}
