//! The function as an attacker: it runs as RUN_AS without the watchdog's groups, cannot
//! read the watchdog's memory or environment (not even under the same uid), finds no
//! credential in its own environment, and reads secrets only from its SECRET_FILES.
//! The watchdog needs no capability beyond CAP_KILL, CAP_SETUID, CAP_SETGID and
//! CAP_CHOWN for all of it.
//!
//! Needs root (as CI has): the tests switch users; they fail, not skip, without it.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::json;
use support::callback::CallbackServer;
use support::{assert_failed, require_root, watchdog, watchdog_via, Finished, Scratch, Watchdog};

const NOBODY: u32 = 65534;

/// Starts the watchdog with only the four capabilities the control plane leaves a
/// function container (as root, but without CAP_DAC_OVERRIDE, CAP_FOWNER and the rest).
const FUNCTION_CAPS: [&str; 3] = [
    "setpriv",
    "--bounding-set=-all,+kill,+setuid,+setgid,+chown",
    "--",
];

fn unique(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Starts the watchdog itself as uid and gid 65534, in `/`.
fn as_nobody(mut run: Watchdog) -> Watchdog {
    run.command.uid(NOBODY).gid(NOBODY).current_dir("/");
    run
}

/// Everything the watchdog and the function printed.
fn all_output(finished: &Finished) -> String {
    format!("{}\n{}", finished.stdout, finished.stderr)
}

/// A STDIO function that prints its uid, gid and groups as JSON.
const PRINT_IDS: &str = r#"sh -c 'cat >/dev/null; printf "{\"uid\":\"%s\",\"gid\":\"%s\",\"groups\":\"%s\"}\n" "$(id -u)" "$(id -g)" "$(id -G)"'"#;

#[tokio::test]
async fn run_as_switches_user_and_group_and_drops_supplementary_groups() {
    require_root();
    for run_as in ["65534", "nobody", "65534:65534", "nobody:nogroup"] {
        // The watchdog itself has supplementary groups; none may reach the function.
        let finished = watchdog_via(&["setpriv", "--groups=4,27", "--"], "STDIO", PRINT_IDS)
            .env("RUN_AS", run_as)
            .run()
            .await;
        assert_eq!(finished.code, 0, "{run_as}: {finished:?}");
        assert_eq!(
            finished.report()["output"],
            json!({"uid": "65534", "gid": "65534", "groups": "65534"}),
            "{run_as}"
        );
    }
    // A bare uid without a passwd entry gets gid = uid.
    let finished = watchdog("STDIO", PRINT_IDS)
        .env("RUN_AS", "4242")
        .run()
        .await;
    assert_eq!(
        finished.report()["output"],
        json!({"uid": "4242", "gid": "4242", "groups": "4242"}),
        "{finished:?}"
    );
}

#[tokio::test]
async fn the_function_cannot_read_the_watchdog_nor_find_credentials_in_its_environment() {
    require_root();
    let callback = CallbackServer::start().await;
    let secrets = Scratch::new(0o755);
    let callback_token = unique("callback-token");
    let warm_token = unique("warm-token");
    let payload_secret = unique("payload");
    let file_secret = unique("file-secret");
    let payload_url = callback.serve_payload(
        "p1",
        &callback_token,
        format!(r#"{{"secret": "{payload_secret}"}}"#),
    );
    let function = r#"sh -c '
        cat >/dev/null
        cat /proc/$PPID/environ >&2; environ=$?
        cat /proc/$PPID/mem >/dev/null 2>&1; mem=$?
        env | sed "s/^/ENV: /" >&2
        printf "{\"environ\":%d,\"mem\":%d}\n" $environ $mem'"#;
    let finished = watchdog("STDIO", function)
        .env("RUN_AS", "nobody")
        .env("CALLBACK_TOKEN", &callback_token)
        .env("WARM_TOKEN", &warm_token)
        .env("PAYLOAD_URL", &payload_url)
        .env("SECRET_FILES", json!({"API_KEY": file_secret}).to_string())
        .env("SECRETS_DIR", secrets.join("s"))
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let output = &finished.report()["output"];
    assert_ne!(output["environ"], 0, "{finished:?}");
    assert_ne!(output["mem"], 0, "{finished:?}");
    let printed = all_output(&finished);
    assert!(printed.contains("Permission denied"), "{printed}");
    for value in [&callback_token, &warm_token, &payload_secret, &file_secret] {
        assert!(
            !printed.contains(value.as_str()),
            "{value} leaked: {printed}"
        );
    }
    let env: Vec<&str> = printed
        .lines()
        .filter_map(|line| line.split("ENV: ").nth(1))
        .collect();
    assert!(
        env.iter().any(|var| var.starts_with("PATH=")),
        "the function's env was printed: {printed}"
    );
    for name in [
        "CALLBACK_TOKEN",
        "WARM_TOKEN",
        "INVOCATION_PAYLOAD",
        "PAYLOAD_URL",
        "RUN_AS",
        "SECRET_FILES",
        "SECRETS_DIR",
    ] {
        let prefix = format!("{name}=");
        assert!(
            !env.iter().any(|var| var.starts_with(&prefix)),
            "{name} is in the function's environment: {env:?}"
        );
    }
    // What the function is meant to have is still there.
    let api_key = format!("API_KEY={}", secrets.join("s/API_KEY").display());
    assert!(env.contains(&api_key.as_str()), "{env:?}");
    assert!(env.contains(&"EXECUTION_ID=local"), "{env:?}");
}

#[tokio::test]
async fn the_watchdog_is_not_dumpable_even_for_a_function_of_its_own_uid() {
    require_root();
    let token = unique("callback-token");
    let function = r#"sh -c '
        cat /proc/$$/environ >/dev/null; own=$?
        cat /proc/$PPID/environ; parent=$?
        printf "{\"own\":%d,\"parent\":%d,\"uid\":\"%s\"}\n" $own $parent "$(id -u)"'"#;
    let finished = as_nobody(watchdog("STDIO", function))
        .env("CALLBACK_TOKEN", &token)
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    let output = &finished.report()["output"];
    assert_eq!(output["uid"], "65534", "{finished:?}");
    assert_eq!(output["own"], 0, "/proc is readable at all: {finished:?}");
    assert_ne!(output["parent"], 0, "{finished:?}");
    let printed = all_output(&finished);
    assert!(printed.contains("Permission denied"), "{printed}");
    assert!(!printed.contains(&token), "{printed}");
}

#[tokio::test]
async fn run_as_another_uid_without_root_exits_64_naming_both_uids() {
    require_root();
    let dir = Scratch::new(0o1777);
    let ran = dir.join("ran");
    let finished = as_nobody(watchdog("STDIO", &format!("touch {}", ran.display())))
        .env("RUN_AS", "1000")
        .run()
        .await;
    assert_eq!(finished.code, 64, "{finished:?}");
    assert!(
        finished.stderr.contains("invalid configuration: RUN_AS:"),
        "{finished:?}"
    );
    assert!(
        finished.stderr.contains("1000") && finished.stderr.contains("65534"),
        "{finished:?}"
    );
    assert!(!ran.exists(), "the function ran");
    // Its own uid is no switch and needs no root.
    for run_as in ["65534", "nobody"] {
        let finished = as_nobody(watchdog("STDIO", PRINT_IDS))
            .env("RUN_AS", run_as)
            .run()
            .await;
        assert_eq!(finished.code, 0, "{run_as}: {finished:?}");
        assert_eq!(finished.report()["output"]["uid"], "65534");
    }
}

#[tokio::test]
async fn unknown_users_and_groups_exit_64_naming_them() {
    for (run_as, name) in [
        ("no-such-user-gantry", "no-such-user-gantry"),
        ("nobody:no-such-group-gantry", "no-such-group-gantry"),
        ("65534:", "RUN_AS"),
    ] {
        let finished = watchdog("STDIO", "true").env("RUN_AS", run_as).run().await;
        assert_eq!(finished.code, 64, "{run_as}: {finished:?}");
        assert!(
            finished.stderr.contains("invalid configuration: RUN_AS:"),
            "{finished:?}"
        );
        assert!(finished.stderr.contains(name), "{finished:?}");
    }
}

#[tokio::test]
async fn a_watchdog_that_cannot_switch_safely_exits_64() {
    require_root();
    // Without CAP_SETGID the supplementary groups could silently stay.
    let finished = watchdog_via(
        &["setpriv", "--bounding-set=-all,+kill,+setuid,+chown", "--"],
        "STDIO",
        PRINT_IDS,
    )
    .env("RUN_AS", "65534")
    .run()
    .await;
    assert_eq!(finished.code, 64, "{finished:?}");
    assert!(finished.stderr.contains("CAP_SETGID"), "{finished:?}");
}

#[tokio::test]
async fn the_four_function_capabilities_are_enough() {
    require_root();
    let dir = Scratch::new(0o1777);
    let key = unique("key");
    let files = |run: Watchdog| {
        run.env("RUN_AS", "65534")
            .env("INPUT_FILE", dir.join("in.json"))
            .env("OUTPUT_FILE", dir.join("out.json"))
            .env("SECRET_FILES", json!({"API_KEY": key}).to_string())
            .env("SECRETS_DIR", dir.join("secrets"))
    };
    // The function reads its input and its secret and writes a readable output.
    let function = r#"sh -c 'umask 022; printf "{\"input\":%s,\"key\":\"%s\",\"uid\":\"%s\"}" "$(cat "$INPUT_FILE")" "$(cat "$API_KEY")" "$(id -u)" > "$OUTPUT_FILE"'"#;
    let finished = files(watchdog_via(&FUNCTION_CAPS, "FILE", function))
        .env("INVOCATION_PAYLOAD", r#"{"n": 1}"#)
        .run()
        .await;
    assert_eq!(finished.code, 0, "{finished:?}");
    assert_eq!(
        finished.report()["output"],
        json!({"input": {"n": 1}, "key": key, "uid": "65534"})
    );
    // The function's files are gone, the watchdog could remove them.
    assert!(!dir.join("out.json").exists() && !dir.join("in.json").exists());
    // An output only its owner may read is refused with a reason, not a crash.
    let function = r#"sh -c 'umask 077; echo "{}" > "$OUTPUT_FILE"'"#;
    let finished = files(watchdog_via(&FUNCTION_CAPS, "FILE", function))
        .run()
        .await;
    assert_failed(
        &finished.report(),
        "INVALID_OUTPUT",
        &["OUTPUT_FILE", "readable by others"],
    );
    // The timeout still stops the whole group of the other user.
    let finished = files(watchdog_via(
        &FUNCTION_CAPS,
        "FILE",
        "sh -c 'sleep 300 & sleep 300'",
    ))
    .env("TIMEOUT_MS", "300")
    .env("KILL_GRACE_MS", "300")
    .run()
    .await;
    assert_eq!(
        finished.error_code().as_deref(),
        Some("TIMEOUT"),
        "{finished:?}"
    );
    assert!(finished.elapsed.as_secs() < 10, "{finished:?}");
}

#[tokio::test]
async fn secret_files_belong_to_the_function_user_and_only_their_path_is_in_its_env() {
    require_root();
    let dir = Scratch::new(0o755);
    let secrets_dir = dir.join("secrets");
    let password = format!("{}\nsecond line, \"quoted\"\n", unique("pw"));
    let key = unique("key");
    let warm = watchdog(
        "WARM",
        r#"sh -c 'cat >/dev/null; printf "{\"db\":\"%s\",\"key\":\"%s\",\"set\":\"%s\",\"lines\":%d}\n" "$DB_PASSWORD" "$(cat "$API_KEY")" "${SECRET_FILES:+yes}" "$(wc -l < "$DB_PASSWORD")"'"#,
    )
    .env("WARM_RUNTIME", "STDIO")
    .env("WARM_TOKEN", "t")
    .env("RUN_AS", "65534")
    .env(
        "SECRET_FILES",
        json!({"DB_PASSWORD": password, "API_KEY": key}).to_string(),
    )
    .env("SECRETS_DIR", &secrets_dir)
    .start_warm()
    .await;
    // Written before any call, as the watchdog starts.
    let dir_meta = std::fs::metadata(&secrets_dir).unwrap();
    assert_eq!(dir_meta.permissions().mode() & 0o7777, 0o711);
    for (name, content) in [("DB_PASSWORD", &password), ("API_KEY", &key)] {
        let path = secrets_dir.join(name);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{name}");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o400, "{name}");
        assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{name}");
        assert_eq!(&std::fs::read_to_string(&path).unwrap(), content, "{name}");
    }
    let report: serde_json::Value = warm
        .client
        .post(format!("{}/invoke", warm.base))
        .bearer_auth("t")
        .json(&json!({"execution_id": "s1", "payload": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["output"],
        json!({"db": secrets_dir.join("DB_PASSWORD"), "key": key, "set": "", "lines": 2}),
        "{report}"
    );
    let printed = warm.stderr();
    assert!(
        !printed.contains(&key) && !printed.contains(&password),
        "{printed}"
    );
    warm.stop().await;
    // Gone with the watchdog.
    assert_eq!(std::fs::read_dir(&secrets_dir).unwrap().count(), 0);
}

#[tokio::test]
async fn a_link_planted_where_a_secret_goes_is_replaced_not_followed() {
    let dir = Scratch::new(0o755);
    let secrets_dir = dir.join("secrets");
    std::fs::create_dir(&secrets_dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "victim-original").unwrap();
    std::os::unix::fs::symlink(&victim, secrets_dir.join("API_KEY")).unwrap();
    let finished = watchdog(
        "STDIO",
        r#"sh -c 'cat >/dev/null; printf "\"%s\"" "$(cat "$API_KEY")"'"#,
    )
    .env("SECRET_FILES", r#"{"API_KEY": "fresh-value"}"#)
    .env("SECRETS_DIR", &secrets_dir)
    .run()
    .await;
    assert_eq!(finished.report()["output"], "fresh-value", "{finished:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim-original");
}

#[tokio::test]
async fn bad_secret_files_exit_64_without_echoing_a_value() {
    let value = unique("hunter2");
    let dir = Scratch::new(0o755);
    for secret_files in [
        format!(r#"{{"API_KEY": "{value}""#),
        format!(r#"{{"API_KEY": ["{value}"]}}"#),
        format!(r#"["{value}"]"#),
        format!(r#"{{"9LIVES": "{value}"}}"#),
        format!(r#"{{"BAD-NAME": "{value}"}}"#),
        format!(r#"{{"CALLBACK_TOKEN": "{value}"}}"#),
    ] {
        let finished = watchdog("STDIO", "true")
            .env("SECRET_FILES", &secret_files)
            .env("SECRETS_DIR", dir.join("s"))
            .run()
            .await;
        assert_eq!(finished.code, 64, "{secret_files}: {finished:?}");
        assert!(
            finished
                .stderr
                .contains("invalid configuration: SECRET_FILES:"),
            "{finished:?}"
        );
        assert!(!all_output(&finished).contains(&value), "{finished:?}");
        assert!(!dir.join("s").exists(), "nothing is written");
    }
}
