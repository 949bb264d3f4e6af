//! Human output of warm pools: the `pool:` summary and instance table of `gantry fn get`,
//! and the line `gantry fn scale` prints.

use serde_json::Value;

use super::table::{cell, time, Table};

/// A count of the pool object (`?` when the server left it out).
fn count(pool: &Value, key: &str) -> String {
    match cell(pool.get(key)) {
        text if text.is_empty() => "?".to_string(),
        text => text,
    }
}

/// The one-line summary of a `pool` object: instances by state, the queue, cold starts
/// and the limits.
pub fn pool_summary(pool: &Value) -> String {
    let c = |key| count(pool, key);
    format!(
        "pool: {} idle, {} busy, {} starting, {} draining; {} queued, {} in flight; \
         {} cold starts; min {}, max {}, concurrency {} per instance",
        c("idle"),
        c("busy"),
        c("starting"),
        c("draining"),
        c("queued"),
        c("inFlight"),
        c("coldStarts"),
        c("minInstances"),
        c("maxInstances"),
        c("concurrencyPerInstance"),
    )
}

/// The table of a pool's `instances` (a never used instance shows `-` as LAST USED).
pub fn instances_table(pool: &Value) -> Table {
    let mut table = Table::new(&[
        "ID",
        "VERSION",
        "STATE",
        "IN FLIGHT",
        "INVOCATIONS",
        "STARTED",
        "LAST USED",
    ]);
    let instances = pool.get("instances").and_then(Value::as_array);
    for instance in instances.into_iter().flatten() {
        let last_used = match time(instance.get("lastUsedAt")) {
            text if text.is_empty() => "-".to_string(),
            text => text,
        };
        table.row(vec![
            cell(instance.get("id")),
            cell(instance.get("version")),
            cell(instance.get("state")),
            cell(instance.get("inFlight")),
            cell(instance.get("invocations")),
            time(instance.get("startedAt")),
            last_used,
        ]);
    }
    table
}

/// The pool section of `fn get`: the summary line, then the instance table when there
/// are instances. Empty when `function` has no `pool`.
pub fn pool_details(function: &Value) -> String {
    let Some(pool) = function.get("pool").filter(|p| p.is_object()) else {
        return String::new();
    };
    let mut text = pool_summary(pool);
    text.push('\n');
    let table = instances_table(pool);
    if !table.is_empty() {
        text.push_str(&table.render());
    }
    text
}

/// The line `fn scale` prints for the server's answer: `scaled NAME: min 1, max 4
/// (version 5)`, or `NAME already at min 1, max 4 (version 5)` when nothing changed.
/// The limits come from the new version's `spec.warm`, else from `pool`.
pub fn scale_message(version: &Value, fallback_name: &str) -> String {
    let name = version
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(fallback_name);
    let warm = version.pointer("/spec/warm");
    let pool = version.get("pool");
    let limit = |spec_key: &str, pool_key: &str| {
        let from_spec = warm.and_then(|w| w.get(spec_key)).filter(|v| !v.is_null());
        match cell(from_spec.or_else(|| pool.and_then(|p| p.get(pool_key)))) {
            text if text.is_empty() => "?".to_string(),
            text => text,
        }
    };
    let min = limit("min_instances", "minInstances");
    let max = limit("max_instances", "maxInstances");
    let number = cell(version.get("version"));
    if version.get("changed") == Some(&Value::Bool(false)) {
        format!("{name} already at min {min}, max {max} (version {number})")
    } else {
        format!("scaled {name}: min {min}, max {max} (version {number})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, FnCommand};
    use clap::Parser;
    use serde_json::json;

    fn pool() -> Value {
        json!({
            "minInstances": 1, "maxInstances": 4, "concurrencyPerInstance": 1,
            "idleTimeoutMs": 300000, "maxInvocations": 0,
            "starting": 0, "idle": 1, "busy": 1, "draining": 0,
            "queued": 0, "inFlight": 1, "coldStarts": 3,
            "instances": [
                {"id": "process-1234", "version": 3, "state": "idle", "inFlight": 0,
                 "invocations": 12, "startedAt": "2026-11-23T09:00:00.123Z",
                 "lastUsedAt": "2026-11-23T09:01:00.456Z"},
                {"id": "process-99", "version": 3, "state": "busy", "inFlight": 1,
                 "invocations": 0, "startedAt": "2026-11-23T10:00:00+01:00",
                 "lastUsedAt": null}
            ]
        })
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            pool_summary(&pool()),
            "pool: 1 idle, 1 busy, 0 starting, 0 draining; 0 queued, 1 in flight; \
             3 cold starts; min 1, max 4, concurrency 1 per instance"
        );
        assert_eq!(
            pool_summary(&json!({"idle": 2})),
            "pool: 2 idle, ? busy, ? starting, ? draining; ? queued, ? in flight; \
             ? cold starts; min ?, max ?, concurrency ? per instance"
        );
    }

    #[test]
    fn instance_table() {
        assert_eq!(
            instances_table(&pool()).render(),
            "ID            VERSION  STATE  IN FLIGHT  INVOCATIONS  STARTED               LAST USED\n\
             process-1234  3        idle   0          12           2026-11-23T09:00:00Z  2026-11-23T09:01:00Z\n\
             process-99    3        busy   1          0            2026-11-23T09:00:00Z  -\n"
        );
        assert!(instances_table(&json!({"idle": 0})).is_empty());
    }

    #[test]
    fn pool_details_only_with_a_pool() {
        assert_eq!(pool_details(&json!({"name": "f"})), "");
        assert_eq!(pool_details(&json!({"name": "f", "pool": null})), "");
        let text = pool_details(&json!({"pool": pool()}));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("pool: 1 idle, 1 busy"), "{text}");
        assert!(lines[1].starts_with("ID "), "{text}");
        let empty = json!({"pool": {"idle": 0, "instances": []}});
        assert_eq!(pool_details(&empty).lines().count(), 1);
    }

    #[test]
    fn scale_messages() {
        let body = json!({"name": "f", "version": 5, "changed": true,
            "spec": {"warm": {"min_instances": 1, "max_instances": 4}},
            "pool": {"minInstances": 0, "maxInstances": 9}});
        assert_eq!(
            scale_message(&body, "x"),
            "scaled f: min 1, max 4 (version 5)"
        );
        let body = json!({"version": 6, "changed": false, "spec": {},
            "pool": {"minInstances": 2, "maxInstances": 3}});
        assert_eq!(
            scale_message(&body, "g"),
            "g already at min 2, max 3 (version 6)"
        );
        assert_eq!(
            scale_message(&json!({"name": "h"}), "x"),
            "scaled h: min ?, max ? (version )"
        );
    }

    fn scale_args(args: &[&str]) -> Result<crate::cli::ScaleArgs, clap::Error> {
        let cli = Cli::try_parse_from(["gantry", "fn", "scale"].iter().chain(args))?;
        match cli.command {
            Command::Function(FnCommand::Scale(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn scale_flags() {
        let args = scale_args(&["f", "--min", "2", "--max", "3"]).unwrap();
        assert_eq!(
            (args.name.as_str(), args.min, args.max),
            ("f", Some(2), Some(3))
        );
        let args = scale_args(&["f", "--min=0"]).unwrap();
        assert_eq!((args.min, args.max), (Some(0), None));
        let args = scale_args(&["--max", "1", "f"]).unwrap();
        assert_eq!((args.min, args.max), (None, Some(1)));
    }

    #[test]
    fn bad_scale_flags_are_usage_errors() {
        for args in [
            &["f"][..],
            &[],
            &["--min", "1"],
            &["f", "--min", "-1"],
            &["f", "--min=-1"],
            &["f", "--max", "-2"],
            &["f", "--max", "0"],
            &["f", "--min", "two"],
            &["f", "--min", "1.5"],
            &["f", "--max", ""],
            &["f", "--min", "99999999999"],
        ] {
            let err = scale_args(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let err = scale_args(&["f", "--min", "-1"]).unwrap_err().to_string();
        assert!(err.contains("whole number"), "{err}");
    }
}
