//! Human output of warm pools: the `pool:` summary and instance table of `gantry fn get`,
//! and the line `gantry fn scale` prints.

use super::fn_cmd::Function;
use super::table::{time, Table};
use crate::wire::{PoolStatus, SpecSummary};

/// The one-line summary of a pool: instances by state, the queue, cold starts and the
/// limits.
pub fn pool_summary(pool: &PoolStatus) -> String {
    format!(
        "pool: {} idle, {} busy, {} starting, {} draining; {} queued, {} in flight; \
         {} cold starts; min {}, max {}, concurrency {} per instance",
        pool.idle,
        pool.busy,
        pool.starting,
        pool.draining,
        pool.queued,
        pool.in_flight,
        pool.cold_starts,
        pool.min_instances,
        pool.max_instances,
        pool.concurrency_per_instance,
    )
}

/// The table of a pool's instances (a never used instance shows `-` as LAST USED).
pub fn instances_table(pool: &PoolStatus) -> Table {
    let mut table = Table::new(&[
        "ID",
        "VERSION",
        "STATE",
        "IN FLIGHT",
        "INVOCATIONS",
        "STARTED",
        "LAST USED",
    ]);
    for instance in &pool.instances {
        let last_used = match instance.last_used_at {
            Some(at) => time(Some(at)),
            None => "-".to_string(),
        };
        table.row(vec![
            instance.id.clone(),
            instance.version.to_string(),
            instance.state.as_str().to_string(),
            instance.in_flight.to_string(),
            instance.invocations.to_string(),
            time(Some(instance.started_at)),
            last_used,
        ]);
    }
    table
}

/// The pool section of `fn get`: the summary line, then the instance table when there
/// are instances. Empty for a function without a pool.
pub fn pool_details(pool: Option<&PoolStatus>) -> String {
    let Some(pool) = pool else {
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
pub fn scale_message(function: &Function) -> String {
    let warm = SpecSummary::of(&function.spec).warm.unwrap_or_default();
    let pool = function.pool.as_ref();
    let limit = |from_spec: Option<u32>, from_pool: Option<u32>| {
        from_spec
            .or(from_pool)
            .map_or_else(|| "?".to_string(), |n| n.to_string())
    };
    let min = limit(warm.min_instances, pool.map(|p| p.min_instances));
    let max = limit(warm.max_instances, pool.map(|p| p.max_instances));
    let (name, number) = (&function.name, function.version);
    if function.changed == Some(false) {
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

    fn pool() -> PoolStatus {
        serde_json::from_value(json!({
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
        }))
        .unwrap()
    }

    fn function(fields: serde_json::Value) -> Function {
        let mut body = json!({"name": "f", "version": 5, "contentHash": "sha256:ab",
            "spec": {}, "createdAt": "2026-11-23T09:00:00Z"});
        for (key, value) in fields.as_object().unwrap() {
            body[key] = value.clone();
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            pool_summary(&pool()),
            "pool: 1 idle, 1 busy, 0 starting, 0 draining; 0 queued, 1 in flight; \
             3 cold starts; min 1, max 4, concurrency 1 per instance"
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
        let mut empty = pool();
        empty.instances.clear();
        assert!(instances_table(&empty).is_empty());
    }

    #[test]
    fn pool_details_only_with_a_pool() {
        assert_eq!(pool_details(None), "");
        assert_eq!(
            pool_details(function(json!({"pool": null})).pool.as_ref()),
            ""
        );
        let text = pool_details(Some(&pool()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("pool: 1 idle, 1 busy"), "{text}");
        assert!(lines[1].starts_with("ID "), "{text}");
        let mut empty = pool();
        empty.instances.clear();
        assert_eq!(pool_details(Some(&empty)).lines().count(), 1);
    }

    #[test]
    fn scale_messages() {
        let mut pool = pool();
        pool.min_instances = 0;
        pool.max_instances = 9;
        let mut body = function(json!({"changed": true,
            "spec": {"warm": {"min_instances": 1, "max_instances": 4}}}));
        body.pool = Some(pool.clone());
        assert_eq!(scale_message(&body), "scaled f: min 1, max 4 (version 5)");
        (pool.min_instances, pool.max_instances) = (2, 3);
        let mut body = function(json!({"name": "g", "version": 6, "changed": false}));
        body.pool = Some(pool);
        assert_eq!(
            scale_message(&body),
            "g already at min 2, max 3 (version 6)"
        );
        assert_eq!(
            scale_message(&function(json!({"name": "h"}))),
            "scaled h: min ?, max ? (version 5)"
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
