//! The Docker engine going away while `gantry serve --runtime docker` runs: the server
//! talks to the real engine through a unix-socket relay (`DOCKER_HOST`) that the test
//! stops mid-run. A call then fails at once with a clear SPAWN_ERROR instead of hanging,
//! and works again once the engine is back.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::docker::{busybox_image, require_engine};
use support::{Server, ServerOptions};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

const ENGINE: &str = "/var/run/docker.sock";

/// Relays connections on a unix socket to the engine's socket, until stopped.
struct Relay {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    fn start(path: &Path) -> Relay {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the relay socket");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let open = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                open.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect(ENGINE).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                }));
            }
        });
        Relay {
            accept,
            connections,
        }
    }

    /// The engine is gone: no new connection, and the open ones (kept alive by the
    /// server's client) are cut.
    async fn stop(self, path: &Path) {
        self.accept.abort();
        let _ = self.accept.await;
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_engine_is_a_clear_spawn_error_and_calls_recover_with_it() {
    require_engine();
    let image = busybox_image("engine-loss");
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("engine.sock");
    let relay = Relay::start(&socket);
    let server = Server::start_with(ServerOptions {
        token: Some("engine-loss-token".into()),
        args: vec![
            "--runtime".into(),
            "docker".into(),
            "--docker-sandboxes".into(),
            "0".into(),
        ],
        env: vec![("DOCKER_HOST".into(), format!("unix://{}", socket.display()))],
    })
    .await;
    let manifest = json!({
        "name": "echo", "mode": "STDIO", "image": image.0, "command": "/bin/busybox cat"
    });
    server.deploy(manifest).await;
    let (status, body) = server.invoke("echo", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");

    // The engine goes away.
    relay.stop(&socket).await;
    let started = Instant::now();
    let (status, body) = server.invoke("echo", json!({"n": 2})).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "SPAWN_ERROR", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Docker engine") && message.contains("unreachable"),
        "{message}"
    );

    // It comes back: so do calls.
    let _relay = Relay::start(&socket);
    let (status, body) = server.invoke("echo", json!({"n": 3})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({"n": 3}), "{body}");
    support::docker::assert_no_containers(&server, "the engine's return").await;
}
