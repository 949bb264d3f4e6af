//! Unit tests of manifest parsing, defaults and validation.

use super::*;
use crate::registry::content_hash;

fn spec(yaml: &str) -> FunctionSpec {
    parse_manifest(yaml).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn yaml_and_json_give_the_same_definition_and_hash() {
    let yaml =
        spec("name: shout\nmode: stdio\ncommand: python3 handler.py\nenv: {B: '2', A: '1'}\n");
    let json = spec(
        r#"{"command": "python3 handler.py", "env": {"A": "1", "B": "2"}, "mode": "STDIO", "name": "shout"}"#,
    );
    assert_eq!(yaml, json);
    assert_eq!(content_hash(&yaml), content_hash(&json));
    assert!(content_hash(&yaml).starts_with("sha256:"));
    let mut changed = yaml.clone();
    changed.resources.timeout_ms = Some(1_000);
    assert_ne!(content_hash(&yaml), content_hash(&changed));
}

#[test]
fn defaults_apply_when_fields_are_absent() {
    let spec = spec("name: f\ncommand: ./run\n");
    assert_eq!(spec.mode, Mode::Http);
    assert!(spec.enabled);
    assert_eq!(spec.timeout_ms(), DEFAULT_TIMEOUT_MS);
    assert_eq!(spec.max_in_flight(), DEFAULT_MAX_IN_FLIGHT);
    assert_eq!(spec.max_queue(), DEFAULT_MAX_QUEUE);
    assert_eq!(spec.max_attempts(), 1);
    assert!(problems(&spec).is_empty(), "{:?}", problems(&spec));
}

#[test]
fn parse_errors_name_the_field() {
    let err = parse_manifest("name: f\ncommand: x\nmode: WARM\n").unwrap_err();
    assert!(
        err.contains("unknown variant `WARM`") && err.contains("STDIO"),
        "{err}"
    );
    let err = parse_manifest("name: f\ncommand: x\ntimeout_ms: 5\n").unwrap_err();
    assert!(err.contains("unknown field `timeout_ms`"), "{err}");
    let err = parse_manifest(r#"{"name": "f", "command": 3}"#).unwrap_err();
    assert!(err.starts_with("invalid manifest"), "{err}");
}

#[test]
fn command_lists_are_quoted_for_the_watchdog() {
    let spec = spec("name: f\ncommand: [sh, -c, 'echo \"a b\"']\n");
    let line = spec.command.unwrap().to_line();
    assert_eq!(shlex::split(&line).unwrap(), ["sh", "-c", "echo \"a b\""]);
}

#[test]
fn names_follow_dns_label_rules() {
    for good in ["a", "echo", "my-fn-2", &"x".repeat(63)] {
        assert!(is_valid_name(good), "{good}");
    }
    for bad in ["", "Echo", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
        assert!(!is_valid_name(bad), "{bad}");
    }
}

#[test]
fn every_problem_is_listed() {
    let spec = spec(
        r#"
name: Bad_Name
working_dir: relative/dir
env: {EXECUTION_ID: x, "1BAD": y}
resources: {timeout_ms: 0, memory_mb: 1, cpu: 0, pids: 0}
warm: {min_instances: 3, max_instances: 2, concurrency_per_instance: 0}
concurrency: {max_in_flight: 0}
retry: {max_attempts: 0, multiplier: 0.5, initial_backoff_ms: 10, max_backoff_ms: 1, retry_on: [1.5]}
"#,
    );
    let problems = problems(&spec);
    let expect = [
        "name \"Bad_Name\" is invalid",
        "either `command` or `image` is required",
        "`working_dir` must be an absolute path",
        "EXECUTION_ID is set by Gantry",
        "\"1BAD\" is not a valid variable name",
        "resources.timeout_ms must be at least 1",
        "resources.memory_mb",
        "resources.cpu",
        "resources.pids",
        "warm.min_instances (3) is above warm.max_instances (2)",
        "warm.concurrency_per_instance",
        "concurrency.max_in_flight",
        "retry.max_attempts",
        "retry.multiplier",
        "retry.initial_backoff_ms",
        "retry.retry_on: 1.5",
    ];
    for needle in expect {
        assert!(
            problems.iter().any(|problem| problem.contains(needle)),
            "no problem mentions {needle:?}: {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}

#[test]
fn timeouts_above_fifteen_minutes_and_bad_commands_are_rejected() {
    let mut too_long = spec("name: f\ncommand: ./x\n");
    too_long.resources.timeout_ms = Some(MAX_TIMEOUT_MS + 1);
    assert!(problems(&too_long)[0].contains("at most"));
    let unbalanced = spec("name: f\ncommand: \"echo 'oops\"\n");
    assert!(problems(&unbalanced)[0].contains("unbalanced quotes"));
    let empty = spec("name: f\ncommand: '  '\n");
    assert!(problems(&empty)[0].contains("`command` is empty"));
}

#[test]
fn json_type_errors_name_their_field() {
    let err = |manifest: Value| from_json(&manifest).unwrap_err();
    let base = |key: &str, value: Value| {
        let mut manifest = serde_json::json!({"name": "f", "command": "true"});
        manifest[key] = value;
        manifest
    };
    assert_eq!(
        err(base("resources", serde_json::json!({"timeout_ms": "fast"}))),
        "resources: invalid type: string \"fast\", expected u64"
    );
    assert!(
        err(base("env", serde_json::json!({"A": 1}))).starts_with("env: invalid type: integer `1`")
    );
    assert!(
        err(base("mode", serde_json::json!("WARM"))).starts_with("mode: unknown variant `WARM`")
    );
    assert!(err(base("resources", serde_json::json!({"timout_ms": 1})))
        .starts_with("resources: unknown field `timout_ms`"));
    assert!(err(base("comand", serde_json::json!("x"))).starts_with("unknown field `comand`"));
    assert!(
        err(serde_json::json!({"name": 7, "command": "true"})).starts_with("name: invalid type")
    );
    assert_eq!(
        err(serde_json::json!({"command": "true"})),
        "missing field `name`"
    );
    assert!(err(serde_json::json!([1])).ends_with("the body is an array"));
    assert!(err(Value::Null).ends_with("the body is empty"));
    assert!(from_json(&base("description", serde_json::json!("ok"))).is_ok());
}

#[test]
fn every_variable_meant_for_the_watchdog_alone_is_reserved() {
    // A manifest that set one could hand the watchdog a credential, an input or a
    // cgroup file of its choosing.
    for var in env::WATCHDOG_ONLY {
        assert!(RESERVED_ENV.contains(var), "{var} is not reserved");
    }
}
