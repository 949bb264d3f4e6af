//! The store fails under a running server (a full disk, as root on a small tmpfs): new
//! work is refused with 507, what was accepted is kept, reads keep working, a result
//! that cannot be recorded is kept and recorded once there is room again (the waiting
//! caller learns STORE_UNAVAILABLE), and a server starts on a full disk.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{error_code, stdio_function, Server, ServerOptions};

/// A small tmpfs mounted for the test's data directory; unmounted when dropped.
struct SmallDisk {
    _temp: tempfile::TempDir,
    path: PathBuf,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test mounts a tmpfs: it needs root (CI runs it as root)"
        );
        let temp = support::function_tempdir();
        let path = temp.path().join("data");
        std::fs::create_dir(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs");
        SmallDisk { _temp: temp, path }
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Fills every byte left.
    fn fill(&self) {
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.filler().display()))
            .output();
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_work_and_loses_nothing() {
    let disk = SmallDisk::mount(8);
    let mut server = Server::start_in(disk.path.clone(), ServerOptions::default()).await;
    let slow = r#"sh -c 'cat >/dev/null; sleep 2; echo "{\"done\": true}"'"#;
    server.deploy(stdio_function("slow", slow, json!({}))).await;
    server
        .deploy(stdio_function(
            "parked",
            "sleep 600",
            json!({"concurrency": {"max_in_flight": 1}}),
        ))
        .await;
    for _ in 0..3 {
        server.enqueue("parked", json!(null)).await;
    }
    let call = server
        .request(Method::POST, "/v1/functions/slow:invoke")
        .json(&json!({}));
    let waiting = tokio::spawn(async move {
        let response = call.send().await.unwrap();
        (
            response.status(),
            response.json::<serde_json::Value>().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    disk.fill();

    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/parked:enqueue")
                .json(&json!(1)),
        )
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(error_code(&body), "INSUFFICIENT_STORAGE");
    let (status, list) = server.list_executions(&[("function", "parked")]).await;
    assert_eq!(status, StatusCode::OK, "reads keep working: {list}");
    assert_eq!(list["executions"].as_array().unwrap().len(), 3);

    // The call's result could not be recorded: its caller is told so...
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "STORE_UNAVAILABLE");
    let (_, slow_list) = server.list_executions(&[("function", "slow")]).await;
    let slow_id = slow_list["executions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // ...and it is recorded once there is room again.
    disk.free();
    let done = server
        .wait_terminal(&slow_id, Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["output"], json!({"done": true}));
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("gantry_store_failures_total 1"),
        "{metrics}"
    );

    // A server stopped and started again on a full disk starts, and keeps what it had.
    disk.fill();
    assert_eq!(server.stop().await, Some(0), "{}", server.stderr());
    let restarted = Server::start_in(disk.path.clone(), ServerOptions::default()).await;
    let (status, list) = restarted.list_executions(&[("function", "parked")]).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["executions"].as_array().unwrap().len(), 3, "{list}");
    disk.free();
    let id = restarted.enqueue("slow", json!(null)).await;
    let done = restarted.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "success", "{done}");
}
