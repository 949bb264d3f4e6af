//! The Docker engine going away while `gantry serve --runtime docker` runs: the server
//! talks to the real engine through a unix-socket relay (`DOCKER_HOST`) that the test
//! stops mid-run, or that drops the engine's answers to container creations. A call
//! then fails at once with a clear SPAWN_ERROR instead of hanging, and works again once
//! the engine is back; no container is left behind: neither one whose removal fell in
//! the outage nor one created as the connection broke.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::docker::{busybox_image, require_engine, Image};
use support::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

const ENGINE: &str = "/var/run/docker.sock";

/// Relays connections on a unix socket to the engine's socket, until stopped.
struct Relay {
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// While set, a connection that asks for a container creation is cut when the
    /// engine answers: the container exists, the client never learns its id.
    cut_creations: Arc<AtomicBool>,
}

impl Relay {
    fn start(path: &Path) -> Relay {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the relay socket");
        let connections = Arc::new(Mutex::new(Vec::new()));
        let cut_creations = Arc::new(AtomicBool::new(false));
        let (open, cut) = (connections.clone(), cut_creations.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = cut.clone();
                open.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(engine) = UnixStream::connect(ENGINE).await {
                        pump(client, engine, cut).await;
                    }
                }));
            }
        });
        Relay {
            accept,
            connections,
            cut_creations,
        }
    }

    /// Whether to cut connections when the engine answers a container creation.
    fn cut_creations(&self, cut: bool) {
        self.cut_creations.store(cut, Ordering::SeqCst);
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

/// Copies bytes both ways between `client` and `engine` until either side closes; when
/// `cut_creations` is set as a creation request goes up, the engine's answer to it ends
/// the connection instead of reaching the client. (The Engine API's client sends one
/// request at a time on a connection, so the next bytes down are that answer.)
async fn pump(client: UnixStream, engine: UnixStream, cut_creations: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut engine_read, mut engine_write) = engine.into_split();
    let cutting = Arc::new(AtomicBool::new(false));
    let cut = cutting.clone();
    let up = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
            let chunk = &buffer[..n];
            if cut_creations.load(Ordering::SeqCst)
                && chunk.windows(18).any(|w| w == b"/containers/create")
            {
                cut.store(true, Ordering::SeqCst);
            }
            if engine_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = engine_read.read(&mut buffer).await {
            if cutting.load(Ordering::SeqCst) {
                return;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_engine_is_a_clear_spawn_error_and_calls_recover_with_it() {
    let (image, sockets, relay, server) = echo_behind_relay("engine-loss", 0, false).await;
    let socket = sockets.path().join("engine.sock");
    server
        .deploy(json!({
            "name": "slow", "mode": "STDIO", "image": image.0,
            "command": "/bin/busybox sh -c '/bin/busybox sleep 3; /bin/busybox cat'"
        }))
        .await;
    let (status, body) = server.invoke("echo", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let running = server.enqueue("slow", json!({"n": 0})).await;
    wait_until_running(&running).await;

    // The engine goes away, with a container running.
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
    server
        .wait_terminal(&running, Duration::from_secs(20))
        .await;
    support::docker::assert_no_containers(&server, "the engine's return").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_created_as_the_connection_broke_is_removed() {
    let (_image, _sockets, relay, server) = echo_behind_relay("engine-cut", 0, false).await;

    relay.cut_creations(true);
    let (status, body) = server.invoke("echo", json!({"n": 1})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "SPAWN_ERROR", "{body}");
    support::docker::assert_no_containers(&server, "a creation whose answer was lost").await;

    relay.cut_creations(false);
    let (status, body) = server.invoke("echo", json!({"n": 2})).await;
    assert_eq!(status, 200, "{body}");
    support::docker::assert_no_containers(&server, "a call").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_created_as_the_connection_broke_is_removed() {
    support::docker::make("watchdog-image");
    let (_image, _sockets, relay, mut server) =
        echo_behind_relay("engine-cut-sandbox", 1, true).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.stderr().contains("cannot start a network sandbox") {
        assert!(
            Instant::now() < deadline,
            "no sandbox start was tried: {}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sandboxes = [
        format!("gantry.owner={}", server.owner_id()),
        "gantry.role=sandbox".to_owned(),
    ];
    let sandboxes = [sandboxes[0].as_str(), sandboxes[1].as_str()];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = support::docker::containers(&sandboxes);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "sandboxes left: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    relay.cut_creations(false);
    let (status, body) = server.invoke("echo", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let owner = format!("gantry.owner={}", server.owner_id());
    assert_eq!(server.stop().await, Some(0), "{}", server.stderr());
    let left = support::docker::containers(&[&owner]);
    assert!(
        left.is_empty(),
        "containers of the stopped server: {left:?}"
    );
}

/// A docker-runtime server keeping `sandboxes` network sandboxes ready, that reaches
/// the engine through a relay on `engine.sock` in the returned directory (cutting
/// creations from the start when `cut_creations`), with the function `echo` deployed
/// from a busybox image tagged after `name`.
async fn echo_behind_relay(
    name: &str,
    sandboxes: u32,
    cut_creations: bool,
) -> (Image, tempfile::TempDir, Relay, Server) {
    require_engine();
    let image = busybox_image(name);
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("engine.sock");
    let relay = Relay::start(&socket);
    relay.cut_creations(cut_creations);
    let server = Server::start_with(ServerOptions {
        token: Some(format!("{name}-token")),
        args: vec![
            "--runtime".into(),
            "docker".into(),
            "--docker-sandboxes".into(),
            sandboxes.to_string(),
        ],
        env: vec![("DOCKER_HOST".into(), format!("unix://{}", socket.display()))],
    })
    .await;
    let manifest = json!({
        "name": "echo", "mode": "STDIO", "image": image.0, "command": "/bin/busybox cat"
    });
    server.deploy(manifest).await;
    (image, sockets, relay, server)
}

/// Waits (up to 20 s) until the container of the execution `id` runs.
async fn wait_until_running(id: &str) {
    let label = format!("label=gantry.execution={id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, listed) = support::docker::docker(&[
            "ps",
            "-q",
            "--filter",
            &label,
            "--filter",
            "status=running",
        ]);
        if ok && !listed.trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "no running container for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
