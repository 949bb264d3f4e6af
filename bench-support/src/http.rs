//! The client side of the load generators: a keep-alive HTTP/1.1 connection (hyper) with
//! Nagle's algorithm off, driven by the caller's tokio runtime.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchResult;

/// One keep-alive client connection.
pub type Connection = SendRequest<Full<Bytes>>;

/// Opens a keep-alive HTTP/1.1 connection to `addr`; its driver runs as a task of the
/// current tokio runtime until the connection closes.
pub async fn connect(addr: SocketAddr) -> BenchResult<Connection> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
