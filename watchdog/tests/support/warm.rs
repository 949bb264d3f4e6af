//! A WARM watchdog under test: started on port 0 (the port is read from its startup
//! line), driven over HTTP, stopped with signals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;

use super::{assert_no_leftovers, MarkerGuard, Watchdog};

pub struct WarmWatchdog {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub marker: String,
    pub client: reqwest::Client,
    stderr: Arc<Mutex<String>>,
    /// The task copying stderr; it ends when the pipe closes.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    _cleanup: MarkerGuard,
}

impl Watchdog {
    /// Starts a WARM watchdog listening on 127.0.0.1 on a free port.
    pub async fn start_warm(mut self) -> WarmWatchdog {
        self.command
            .env("WARM_HOST", "127.0.0.1")
            .env("WARM_PORT", "0");
        let mut child = self.command.spawn().expect("start the watchdog");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = Arc::clone(&stderr);
        let stderr_reader = tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[watchdog] {line}");
                if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                    let port: u16 = rest.split_whitespace().next().unwrap().parse().unwrap();
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port);
                    }
                }
                collected.lock().unwrap().push_str(&line);
                collected.lock().unwrap().push('\n');
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(10), port_rx)
            .await
            .expect("the watchdog announces its port within 10 s")
            .expect("the watchdog announces its port");
        WarmWatchdog {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _cleanup: MarkerGuard(self.marker.clone()),
            marker: self.marker,
            client: reqwest::Client::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }
}

impl WarmWatchdog {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("still running") as i32
    }

    /// Everything the watchdog wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `GET /health`: status and body.
    pub async fn health(&self) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Polls `/health` until it answers 200 (at most 10 s).
    pub async fn wait_healthy(&self) {
        for _ in 0..200 {
            if self.health().await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never healthy; stderr:\n{}", self.stderr());
    }

    /// `POST /invoke` with a JSON body: status, headers and body.
    pub async fn invoke(&self, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .client
            .post(format!("{}/invoke", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.unwrap())
    }

    /// `POST /invoke` with `headers` and `body` as given (the raw form when the headers
    /// hold `X-Execution-Id`, else an envelope); answers the report.
    pub async fn invoke_raw(&self, headers: &[(&str, &str)], body: &'static str) -> Value {
        let mut request = self.client.post(format!("{}/invoke", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// The envelope form with just an id and a payload; expects 200 and returns the report.
    pub async fn call(&self, execution_id: &str, payload: Value) -> Value {
        let (status, _, report) = self
            .invoke(serde_json::json!({"execution_id": execution_id, "payload": payload}))
            .await;
        assert_eq!(status, 200, "{report}");
        report
    }

    /// Starts `POST /invoke` with `body` in the background; resolves to status and body.
    pub fn spawn_invoke(&self, body: Value) -> tokio::task::JoinHandle<(u16, Value)> {
        let (client, url) = (self.client.clone(), format!("{}/invoke", self.base));
        tokio::spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap())
        })
    }

    /// Waits (up to 5 s) until `/health` reports `count` invocations in flight.
    pub async fn wait_in_flight(&self, count: u64) {
        for _ in 0..250 {
            if self.health().await.1["in_flight"] == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "never {count} invocations in flight; stderr:\n{}",
            self.stderr()
        );
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits (up to `limit`) for the watchdog to exit; returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> i32 {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the watchdog did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                )
            })
            .unwrap();
        // Its last lines may still be in the pipe: read them before anyone looks.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status.code().unwrap_or(-1)
    }

    /// SIGTERM, expect a clean exit (0) and no process left behind.
    pub async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(code, 0, "stderr:\n{}", self.stderr());
        assert_no_leftovers(&self.marker).await;
    }
}
