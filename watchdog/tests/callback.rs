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
