//! Unit tests for environment parsing.

use std::collections::HashMap;

use super::*;

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|var| Ok(map.get(var).cloned()))
}

#[test]
fn defaults_match_the_contract() {
    let config = parse(&[]).unwrap();
    assert_eq!(config.mode, Mode::Http);
    assert_eq!(config.command.program, "java");
    assert_eq!(config.command.args, ["-jar", "/app/app.jar"]);
    assert_eq!(config.payload, PayloadSource::Inline("null".into()));
    assert_eq!(config.timeout, Duration::from_secs(30));
    assert_eq!(config.kill_grace, Duration::from_secs(2));
    assert_eq!(config.http.invoke_url, "http://127.0.0.1:8080/invoke");
    assert_eq!(config.http.health_url, "http://127.0.0.1:8080/health");
    assert_eq!(config.http.port, 8080);
    assert_eq!(config.http.ready_timeout, Duration::from_secs(10));
    assert_eq!(config.input_file, PathBuf::from("/tmp/input.json"));
    assert_eq!(config.output_file, PathBuf::from("/tmp/output.json"));
    assert_eq!(config.warm.port, 8080);
    assert_eq!(config.warm.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(config.warm.max_invocations, None);
    assert_eq!(config.warm.runtime, WarmRuntime::Http);
    assert_eq!(config.warm.concurrency, 1);
    assert_eq!(config.max_output_bytes, 6 * 1024 * 1024);
    assert_eq!(config.execution_id, "local");
    assert_eq!(config.run_as, None);
    assert_eq!(config.warm_token, None);
    assert!(config.secret_files.is_empty());
    assert_eq!(config.secrets_dir, PathBuf::from("/run/secrets"));
}

#[test]
fn warm_mode_moves_the_runtime_to_8081() {
    let config = parse(&[("EXECUTION_MODE", "warm")]).unwrap();
    assert_eq!(config.mode, Mode::Warm);
    assert_eq!(config.http.invoke_url, "http://127.0.0.1:8081/invoke");
    assert_eq!(config.http.port, 8081);
}

#[test]
fn command_keeps_quoted_arguments_together() {
    let config = parse(&[("WATCHDOG_CMD", r#"sh -c 'echo "a b"; exit 3'"#)]).unwrap();
    assert_eq!(config.command.program, "sh");
    assert_eq!(config.command.args, ["-c", r#"echo "a b"; exit 3"#]);
}

#[test]
fn each_bad_value_names_its_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("EXECUTION_MODE", "BATCH")], "EXECUTION_MODE"),
        (&[("TIMEOUT_MS", "abc")], "TIMEOUT_MS"),
        (&[("TIMEOUT_MS", "0")], "TIMEOUT_MS"),
        (&[("KILL_GRACE_MS", "-1")], "KILL_GRACE_MS"),
        (&[("READY_TIMEOUT_MS", "1.5")], "READY_TIMEOUT_MS"),
        (&[("WATCHDOG_CMD", "sh -c 'oops")], "WATCHDOG_CMD"),
        (&[("WATCHDOG_CMD", "''")], "WATCHDOG_CMD"),
        (&[("WARM_PORT", "70000")], "WARM_PORT"),
        (&[("WARM_CONCURRENCY", "0")], "WARM_CONCURRENCY"),
        (&[("WARM_RUNTIME", "GRPC")], "WARM_RUNTIME"),
        (&[("WARM_MAX_INVOCATIONS", "many")], "WARM_MAX_INVOCATIONS"),
        (&[("MAX_OUTPUT_BYTES", "6MiB")], "MAX_OUTPUT_BYTES"),
        (&[("CALLBACK_URL", "not a url")], "CALLBACK_URL"),
        (
            &[("CALLBACK_URL", "https://cp/x"), ("EXECUTION_ID", "e")],
            "CALLBACK_URL",
        ),
        (&[("RUNTIME_URL", "/invoke")], "RUNTIME_URL"),
        (&[("CALLBACK_URL", "http://cp/v1")], "EXECUTION_ID"),
        (&[("WARM_HOST", "everywhere")], "WARM_HOST"),
        (&[("RUN_AS", "1000:")], "RUN_AS"),
        (&[("RUN_AS", "no-such-user-gantry")], "RUN_AS"),
        (&[("SECRET_FILES", "[1]")], "SECRET_FILES"),
        (&[("SECRET_FILES", r#"{"A-B": "x"}"#)], "SECRET_FILES"),
        (
            &[("SECRET_FILES", r#"{"WARM_TOKEN": "x"}"#)],
            "SECRET_FILES",
        ),
        (&[("SECRETS_DIR", "run/secrets")], "SECRETS_DIR"),
    ];
    for (vars, expected) in cases {
        match parse(vars) {
            Ok(config) => panic!("{vars:?} parsed: {config:?}"),
            Err(err) => {
                assert_eq!(err.variable(), *expected, "{vars:?}: {err}");
                assert!(err.to_string().starts_with(expected), "{err}");
            }
        }
    }
}

#[test]
fn warm_port_equal_to_runtime_port_is_a_conflict() {
    let err = parse(&[
        ("EXECUTION_MODE", "WARM"),
        ("WARM_PORT", "9000"),
        ("RUNTIME_URL", "http://127.0.0.1:9000/invoke"),
    ])
    .unwrap_err();
    assert_eq!(err.variable(), "WARM_PORT");
    // A STDIO warm runtime has no port to collide with.
    parse(&[
        ("EXECUTION_MODE", "WARM"),
        ("WARM_RUNTIME", "STDIO"),
        ("WARM_PORT", "8081"),
    ])
    .unwrap();
}

#[test]
fn zero_disables_idle_timeout_and_invocation_cap() {
    let config = parse(&[("WARM_IDLE_TIMEOUT_MS", "0"), ("WARM_MAX_INVOCATIONS", "0")]).unwrap();
    assert_eq!(config.warm.idle_timeout, None);
    assert_eq!(config.warm.max_invocations, None);
    let config = parse(&[("WARM_MAX_INVOCATIONS", "3")]).unwrap();
    assert_eq!(config.warm.max_invocations, Some(3));
}

#[test]
fn payload_url_wins_over_inline_payload() {
    let config = parse(&[
        ("INVOCATION_PAYLOAD", "{}"),
        (
            "PAYLOAD_URL",
            "http://cp:8080/v1/internal/executions/e/payload",
        ),
    ])
    .unwrap();
    assert!(matches!(config.payload, PayloadSource::Url(_)));
}

#[test]
fn explicit_health_url_is_kept() {
    let config = parse(&[
        ("RUNTIME_URL", "http://localhost:9000/run"),
        ("HEALTH_URL", "http://localhost:9000/ready"),
    ])
    .unwrap();
    assert_eq!(config.http.health_url, "http://localhost:9000/ready");
    assert_eq!(config.http.port, 9000);
}

#[test]
fn programs_are_resolved_on_path_once() {
    let sh = parse_command("sh -c 'exit 0'").unwrap().resolved();
    assert!(
        sh.program.starts_with('/') && sh.program.ends_with("/sh"),
        "{}",
        sh.program
    );
    assert_eq!(sh.args, ["-c", "exit 0"]);
    let missing = parse_command("no-such-program-xyz").unwrap().resolved();
    assert_eq!(missing.program, "no-such-program-xyz");
    let relative = parse_command("./run.sh").unwrap().resolved();
    assert_eq!(relative.program, "./run.sh");
}

#[test]
fn run_as_tokens_and_secret_files_are_read() {
    let config = parse(&[
        ("RUN_AS", "65534:65533"),
        ("WARM_TOKEN", " tok "),
        ("SECRET_FILES", r#"{"DB_PASSWORD": "pw", "_KEY2": "k"}"#),
        ("SECRETS_DIR", "/var/run/fn-secrets"),
    ])
    .unwrap();
    let run_as = config.run_as.unwrap();
    assert_eq!((run_as.uid, run_as.gid), (65534, 65533));
    assert_eq!(config.warm_token, Some(Secret::new("tok")));
    assert_eq!(
        config.secret_files,
        [
            ("DB_PASSWORD".to_owned(), Secret::new("pw")),
            ("_KEY2".to_owned(), Secret::new("k")),
        ]
    );
    assert_eq!(config.secrets_dir, PathBuf::from("/var/run/fn-secrets"));
}

#[test]
fn tokens_and_secret_values_never_show() {
    let config = parse(&[
        ("CALLBACK_TOKEN", "callback-s3cret"),
        ("WARM_TOKEN", "warm-s3cret"),
        ("SECRET_FILES", r#"{"API_KEY": "file-s3cret"}"#),
    ])
    .unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("API_KEY"), "{printed}");
    // Nor in the error of a value that does not parse.
    for bad in [
        r#"{"API_KEY": "s3cret""#,
        r#"{"API_KEY": ["s3cret"]}"#,
        r#"{"9": "s3cret"}"#,
    ] {
        let err = parse(&[("SECRET_FILES", bad)]).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    }
}

#[test]
fn header_values_with_control_characters_are_refused() {
    // Sent as `Authorization` and `X-Trace-Id`: a control character would make building
    // the callback request fail after the function ran.
    for var in [env::CALLBACK_TOKEN, env::TRACE_ID] {
        for bad in ["to\nken", "a\u{1}b", "x\u{7f}"] {
            let err = parse(&[(var, bad)]).unwrap_err();
            assert_eq!(err.variable(), var, "{bad:?}");
            assert!(!err.to_string().contains(bad), "{err}");
        }
    }
    // A trailing newline (a value read from a file) is trimmed, tabs and UTF-8 are fine.
    let config = parse(&[
        (env::CALLBACK_TOKEN, "tok\n"),
        (env::TRACE_ID, "t\tr\u{e9}"),
    ])
    .unwrap();
    assert_eq!(config.callback_token, Some(Secret::new("tok")));
    assert_eq!(config.trace_id.as_deref(), Some("t\tr\u{e9}"));
}
