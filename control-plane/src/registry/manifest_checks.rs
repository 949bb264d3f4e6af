//! The checks run on a parsed manifest at deploy: name, command, environment, secrets,
//! retention, resources, warm pool, concurrency and retry policy, each problem a
//! sentence naming its field. Chains, schedules, rate limits and destinations bring
//! their own checks, which [`problems`] gathers.

use super::{CommandSpec, FunctionSpec, Resources, MAX_QUEUE_LIMIT, MAX_TIMEOUT_MS, RESERVED_ENV};
use crate::registry::{chain, limits, secret_ref};

/// Whether `name` is a valid function name (a DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`,
/// at most 63 characters).
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `name` is a valid environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every problem with `spec` that parsing could not catch, as sentences naming the field.
/// Schemas are checked separately (see [`crate::schema`]).
pub fn problems(spec: &FunctionSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(destinations) = &spec.destinations {
        // The form only: which addresses are allowed is the server's to say at deploy.
        let form = crate::destinations::AddressPolicy {
            allow_private: true,
        };
        problems.extend(destinations.problems(form));
    }
    if !is_valid_name(&spec.name) {
        problems.push(format!(
            "name {:?} is invalid: use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
            spec.name
        ));
    }
    match (&spec.image, &spec.command) {
        (None, None) => problems.push("either `command` or `image` is required".into()),
        (_, Some(CommandSpec::Line(line))) if line.trim().is_empty() => {
            problems.push("`command` is empty".into())
        }
        (_, Some(CommandSpec::Line(line))) if shlex::split(line).is_none() => {
            problems.push(format!("`command` has unbalanced quotes: {line}"))
        }
        (_, Some(CommandSpec::Args(args))) if args.is_empty() || args[0].is_empty() => {
            problems.push("`command` is empty".into())
        }
        _ => {}
    }
    if matches!(&spec.image, Some(image) if image.trim().is_empty()) {
        problems.push("`image` is empty".into());
    }
    if let Some(dir) = &spec.working_dir {
        if !dir.starts_with('/') {
            problems.push(format!(
                "`working_dir` must be an absolute path, got {dir:?}"
            ));
        }
    }
    for (key, value) in &spec.env {
        if !is_valid_env_name(key) {
            problems.push(format!("env: {key:?} is not a valid variable name"));
        } else if RESERVED_ENV.contains(&key.as_str()) {
            problems.push(format!(
                "env: {key} is set by Gantry and cannot be overridden"
            ));
        }
        if value.contains('\0') || key.contains('=') {
            problems.push(format!("env: {key} contains a NUL byte or `=`"));
        }
    }
    problems.extend(secret_ref::problems(&spec.secrets, &spec.env));
    if let Some(retention) = &spec.retention {
        match crate::retention::parse_duration(retention) {
            Ok(keep) if keep.as_secs() >= 1 => {}
            Ok(_) => problems.push("retention must be at least 1s".into()),
            Err(problem) => problems.push(format!("retention: {problem}")),
        }
    }
    resource_problems(&spec.resources, &mut problems);
    if let Some(warm) = &spec.warm {
        if warm.max_instances == 0 {
            problems.push("warm.max_instances must be at least 1".into());
        }
        if warm.min_instances > warm.max_instances {
            problems.push(format!(
                "warm.min_instances ({}) is above warm.max_instances ({})",
                warm.min_instances, warm.max_instances
            ));
        }
        if warm.concurrency_per_instance == 0 {
            problems.push("warm.concurrency_per_instance must be at least 1".into());
        }
    }
    if spec.concurrency.max_in_flight == Some(0) {
        problems.push("concurrency.max_in_flight must be at least 1".into());
    }
    if matches!(spec.concurrency.max_queue, Some(queue) if queue > MAX_QUEUE_LIMIT) {
        problems.push(format!(
            "concurrency.max_queue must be at most {MAX_QUEUE_LIMIT}"
        ));
    }
    if let Some(retry) = &spec.retry {
        if retry.max_attempts == 0 || retry.max_attempts > 100 {
            problems.push("retry.max_attempts must be between 1 and 100".into());
        }
        if !(1.0..=10.0).contains(&retry.multiplier) {
            problems.push("retry.multiplier must be between 1 and 10".into());
        }
        if retry.initial_backoff_ms > retry.max_backoff_ms {
            problems.push("retry.initial_backoff_ms is above retry.max_backoff_ms".into());
        }
        for item in &retry.retry_on {
            if !(item.is_string() || item.is_i64()) {
                problems.push(format!(
                    "retry.retry_on: {item} is neither an error code (string) nor an exit code (integer)"
                ));
            }
        }
    }
    problems.extend(chain::problems(&spec.chains, &spec.triggers));
    problems.extend(crate::schedule::problems(&spec.schedules));
    problems.extend(limits::problems(
        spec.rate_limit.as_ref(),
        spec.max_queue_age_ms,
    ));
    problems
}

fn resource_problems(resources: &Resources, problems: &mut Vec<String>) {
    match resources.timeout_ms {
        Some(0) => problems.push("resources.timeout_ms must be at least 1".into()),
        Some(ms) if ms > MAX_TIMEOUT_MS => problems.push(format!(
            "resources.timeout_ms must be at most {MAX_TIMEOUT_MS} (15 minutes), got {ms}"
        )),
        _ => {}
    }
    if matches!(resources.memory_mb, Some(mb) if mb < 6) {
        problems.push("resources.memory_mb must be at least 6".into());
    }
    if matches!(resources.cpu, Some(cpu) if !(cpu > 0.0 && cpu <= 1024.0)) {
        problems.push("resources.cpu must be above 0 and at most 1024".into());
    }
    if resources.pids == Some(0) {
        problems.push("resources.pids must be at least 1".into());
    }
}
