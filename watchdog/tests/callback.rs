//! Callback delivery: retried with backoff on 5xx and connection errors, never on 4xx;
//! an undeliverable result exits 75 and is printed on stdout instead.

mod support;

use support::callback::{refusing_url, CallbackServer};
use support::watchdog;

#[tokio::test]
async fn server_errors_are_retried_until_the_callback_is_accepted() {
    let callback = CallbackServer::start().await;
    callback.answer_next(&[503, 502]);
    let finished = watchdog("STDIO", "echo 42")
        .env("EXECUTION_ID", "retry-1")
        .env("CALLBACK_URL", &callback.url)
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let received = callback.received();
    assert_eq!(received.len(), 3, "two failures then success");
    assert!(received.iter().all(|call| call.body["output"] == 42));
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_the_result_goes_to_stdout() {
    let callback = CallbackServer::start().await;
    callback.answer_next(&[403]);
    let finished = watchdog("STDIO", "echo 42")
        .env("EXECUTION_ID", "denied")
        .env("CALLBACK_URL", &callback.url)
        .run()
        .await;
    assert_eq!(finished.code, 75, "{finished:?}");
    assert_eq!(callback.received().len(), 1);
    assert!(finished.stderr.contains("403"), "{}", finished.stderr);
    assert_eq!(finished.report()["output"], 42);
}

#[tokio::test]
async fn an_unreachable_control_plane_is_retried_a_bounded_number_of_times() {
    let finished = watchdog("STDIO", "echo 42")
        .env("EXECUTION_ID", "lost")
        .env("CALLBACK_URL", refusing_url())
        .run()
        .await;
    assert_eq!(finished.code, 75, "{finished:?}");
    assert!(
        finished.stderr.contains("failed 6 times"),
        "{}",
        finished.stderr
    );
    assert_eq!(finished.report()["output"], 42);
}

#[tokio::test]
async fn a_watchdog_asked_to_stop_makes_one_attempt_to_report() {
    // As after a crash of the control plane: the next server SIGTERMs what the last one
    // left, and nobody listens on the old callback address any more.
    let support::Watchdog {
        mut command,
        marker,
    } = watchdog("STDIO", r#"sh -c "echo ready >&2; exec sleep 300""#)
        .env("EXECUTION_ID", "stopped")
        .env("CALLBACK_URL", refusing_url());
    let _cleanup = support::MarkerGuard(marker.clone());
    let mut child = command.spawn().unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut rest)
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(75), "{rest}");
    assert!(rest.contains("failed 1 times"), "{rest}");
    support::assert_no_leftovers(&marker).await;
}
