//! FILE mode with a hostile function and a root watchdog: whatever the function leaves
//! at OUTPUT_FILE (a link, a FIFO, a hard link to another user's file) is refused as
//! INVALID_OUTPUT without being followed, read or waited on, and whatever sits at
//! INPUT_FILE is replaced, never written through.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{assert_failed, require_root, watchdog, Finished, Scratch, Watchdog};

/// A FILE-mode watchdog with its files in `dir` (world-writable, like /tmp) and a
/// victim file (`victim`, holding `content`, mode `mode`) the function knows of.
fn file_watchdog(dir: &Scratch, command: &str, content: &str, mode: u32) -> Watchdog {
    let victim = dir.join("victim");
    std::fs::write(&victim, content).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(mode)).unwrap();
    watchdog("FILE", command)
        .env("INPUT_FILE", dir.join("in.json"))
        .env("OUTPUT_FILE", dir.join("out.json"))
        .env("VICTIM", victim)
}

fn secret() -> String {
    format!("victim-content-{}", uuid::Uuid::new_v4().simple())
}

#[track_caller]
fn assert_refused(finished: &Finished, mentions: &[&str], content: &str) {
    assert_eq!(finished.code, 1, "{finished:?}");
    assert_failed(&finished.report(), "INVALID_OUTPUT", mentions);
    assert!(
        !finished.stdout.contains(content) && !finished.stderr.contains(content),
        "the victim's content leaked: {finished:?}"
    );
}

#[tokio::test]
async fn an_output_file_that_is_a_symlink_is_not_followed() {
    require_root();
    let dir = Scratch::new(0o1777);
    let content = secret();
    let link = r#"sh -c 'ln -s "$VICTIM" "$OUTPUT_FILE"'"#;
    // A file the function may read itself, and one only root may read.
    for (mode, run_as) in [(0o644, None), (0o600, Some("65534"))] {
        let mut run = file_watchdog(&dir, link, &format!("\"{content}\""), mode);
        if let Some(user) = run_as {
            run = run.env("RUN_AS", user);
        }
        let finished = run.run().await;
        assert_refused(&finished, &["OUTPUT_FILE", "symbolic link"], &content);
    }
    // The same with a system file.
    let finished = file_watchdog(
        &dir,
        r#"sh -c 'ln -s /etc/hostname "$OUTPUT_FILE"'"#,
        "",
        0o644,
    )
    .run()
    .await;
    assert_failed(&finished.report(), "INVALID_OUTPUT", &["symbolic link"]);
}

#[tokio::test]
async fn an_output_fifo_is_refused_without_waiting_for_a_writer() {
    require_root();
    let dir = Scratch::new(0o1777);
    let finished = file_watchdog(&dir, r#"sh -c 'mkfifo "$OUTPUT_FILE"'"#, "", 0o644)
        .env("RUN_AS", "65534")
        .run()
        .await;
    assert_eq!(finished.code, 1, "{finished:?}");
    assert_failed(
        &finished.report(),
        "INVALID_OUTPUT",
        &["OUTPUT_FILE", "not a regular file"],
    );
    assert!(finished.elapsed < Duration::from_secs(10), "{finished:?}");
    // The FIFO is cleaned up like any output.
    assert!(std::fs::symlink_metadata(dir.join("out.json")).is_err());
}

#[tokio::test]
async fn an_output_file_owned_by_another_user_is_refused() {
    require_root();
    let dir = Scratch::new(0o1777);
    let content = secret();
    // A hard link to a root file (allowed: it is writable by all) is not the function's
    // output, even though it is a regular file.
    let finished = file_watchdog(
        &dir,
        r#"sh -c 'ln "$VICTIM" "$OUTPUT_FILE"'"#,
        &format!("\"{content}\""),
        0o666,
    )
    .env("RUN_AS", "65534")
    .run()
    .await;
    assert_refused(&finished, &["OUTPUT_FILE", "uid 0", "65534"], &content);
    assert!(dir.join("victim").exists());
}

#[tokio::test]
async fn a_planted_input_file_is_replaced_and_the_victim_untouched() {
    require_root();
    let dir = Scratch::new(0o1777);
    let copy = r#"sh -c 'printf "{\"mode\":\"%s\",\"input\":%s}" "$(stat -c %a "$INPUT_FILE")" "$(cat "$INPUT_FILE")" > "$OUTPUT_FILE"'"#;
    // A symlink to a victim, and a FIFO that would block a writer.
    for plant in ["symlink", "fifo"] {
        let run = file_watchdog(&dir, copy, "victim-original", 0o644)
            .env("RUN_AS", "65534")
            .env("INVOCATION_PAYLOAD", r#"{"fresh": true}"#);
        let input = dir.join("in.json");
        match plant {
            "symlink" => std::os::unix::fs::symlink(dir.join("victim"), &input).unwrap(),
            _ => assert!(std::process::Command::new("mkfifo")
                .arg(&input)
                .status()
                .unwrap()
                .success()),
        }
        let finished = run.run().await;
        assert_eq!(finished.code, 0, "{plant}: {finished:?}");
        assert_eq!(
            finished.report()["output"],
            json!({"mode": "644", "input": {"fresh": true}}),
            "{plant}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("victim")).unwrap(),
            "victim-original"
        );
        assert!(std::fs::symlink_metadata(&input).is_err(), "cleaned up");
    }
}

#[tokio::test]
async fn links_planted_between_warm_calls_are_never_followed() {
    require_root();
    let dir = Scratch::new(0o1777);
    let victim = dir.join("victim");
    std::fs::write(&victim, "victim-original").unwrap();
    // The first call leaves a process outside its group (and off its output pipes) that,
    // once the call is over and cleaned up, plants a link at INPUT_FILE and a FIFO at
    // OUTPUT_FILE for the next one.
    let function = r#"sh -c '
        if grep -q plant "$INPUT_FILE"; then
            setsid sh -c "
                touch \"$OUTPUT_FILE.detached\"
                i=0
                while [ -e \"$INPUT_FILE\" ] || [ -e \"$OUTPUT_FILE\" ]; do
                    [ \$i -lt 200 ] || exit 1; i=\$((i + 1)); sleep 0.05
                done
                ln -s \"$VICTIM\" \"$INPUT_FILE\"; mkfifo \"$OUTPUT_FILE\"" >/dev/null 2>&1 &
            # Out of the group before the group is stopped.
            while [ ! -e "$OUTPUT_FILE.detached" ]; do sleep 0.01; done
        fi
        cp "$INPUT_FILE" "$OUTPUT_FILE"'"#;
    let warm = watchdog("WARM", function)
        .env("WARM_RUNTIME", "FILE")
        .env("RUN_AS", "65534")
        .env("INPUT_FILE", dir.join("in.json"))
        .env("OUTPUT_FILE", dir.join("out.json"))
        .env("VICTIM", &victim)
        .start_warm()
        .await;
    assert_eq!(warm.call("one", json!("plant")).await["output"], "plant");
    let planted = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
    for _ in 0..100 {
        if planted("in.json") && planted("out.json") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        planted("in.json") && planted("out.json"),
        "the plant happened"
    );
    let report = warm.call("two", json!({"second": 2})).await;
    assert_eq!(report["output"], json!({"second": 2}), "{report}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim-original");
    warm.stop().await;
    assert!(Path::new(&victim).exists());
}
