//! `gantry fn ...`: deploy, list, get, delete, versions, invoke, enqueue and scale.

use std::fmt;

use anyhow::{anyhow, Result};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{header, ApiError};
use super::table::{cell, command_line, json_block, key_values, time, truncate, Table};
use super::{
    input, out, out_json, pool_view, Ctx, EnqueueArgs, FnCommand, InvokeArgs, ScaleArgs, UsageError,
};

/// A function call that ran and failed (or timed out): exit code 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFailed {
    /// The error code (`TIMEOUT`, `FUNCTION_ERROR`, ...), or the status without one.
    pub code: String,
    /// The error message.
    pub message: String,
    /// The execution.
    pub execution_id: String,
}

impl fmt::Display for FunctionFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        write!(f, " (execution {})", self.execution_id)
    }
}

impl std::error::Error for FunctionFailed {}

/// Carries out one `gantry fn` subcommand.
pub async fn run(ctx: &Ctx, command: FnCommand) -> Result<()> {
    match command {
        FnCommand::Deploy { file, build } => {
            if build {
                let dir = super::build::manifest_dir(&file);
                let built = super::build::build(&dir, &file).await?;
                eprintln!("built {} (id {})", built.image, built.id);
            }
            deploy(ctx, &file).await
        }
        FnCommand::Build { dir, file } => {
            super::build::build_cmd(dir.as_deref(), file.as_deref(), ctx.json()).await
        }
        FnCommand::List => list(ctx).await,
        FnCommand::Get { name } => get(ctx, &name).await,
        FnCommand::Delete { name } => delete(ctx, &name).await,
        FnCommand::Versions { name } => versions(ctx, &name).await,
        FnCommand::Invoke(args) => invoke(ctx, args).await,
        FnCommand::Enqueue(args) => enqueue(ctx, args).await,
        FnCommand::Scale(args) => scale(ctx, args).await,
    }
}

/// `fn deploy -f FILE`: POST, and PUT when the function exists.
async fn deploy(ctx: &Ctx, file: &std::path::Path) -> Result<()> {
    let manifest = input::load_manifest(file)?;
    let client = &ctx.client;
    let url = client.url(&["v1", "functions"], &[]);
    let response = client
        .send(client.request(Method::POST, url).json(&manifest.json))
        .await?;
    let (body, changed) = if response.status() == StatusCode::CONFLICT {
        let url = client.url(&["v1", "functions", &manifest.name], &[]);
        let (_, body) = client
            .call(client.request(Method::PUT, url).json(&manifest.json))
            .await?;
        let changed = body.get("changed").and_then(Value::as_bool).unwrap_or(true);
        (body, changed)
    } else {
        (client.read(response).await?.1, true)
    };
    if ctx.json() {
        return out_json(&body);
    }
    print_warnings(&body);
    out(&format!(
        "{}\n",
        deploy_message(&body, &manifest.name, changed)
    ))
}

/// Prints the `warnings` of a FunctionVersion answer on stderr.
fn print_warnings(body: &Value) {
    for warning in body
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("warning: {warning}");
    }
}

/// The line `fn deploy` prints.
pub fn deploy_message(version: &Value, fallback_name: &str, changed: bool) -> String {
    let name = version
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(fallback_name);
    let number = cell(version.get("version"));
    if changed {
        format!(
            "deployed {name} version {number} ({})",
            cell(version.get("contentHash"))
        )
    } else {
        format!("{name} unchanged (version {number})")
    }
}

/// `fn list`.
async fn list(ctx: &Ctx) -> Result<()> {
    let body = ctx.client.get(&["v1", "functions"], &[]).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let table = functions_table(list_of(&body, "functions"));
    if table.is_empty() {
        eprintln!("no functions deployed (gantry fn deploy -f FILE)");
        return Ok(());
    }
    out(&table.render())
}

/// The `fn list` table of FunctionVersion records.
pub fn functions_table(functions: &[Value]) -> Table {
    let mut table = Table::new(&["NAME", "VERSION", "MODE", "COMMAND/IMAGE", "UPDATED"]);
    for function in functions {
        let spec = function.get("spec").unwrap_or(&Value::Null);
        let mode = match cell(spec.get("mode")) {
            m if m.is_empty() => "HTTP".to_string(),
            m => m.to_ascii_uppercase(),
        };
        let runs = match spec.get("command").filter(|c| !c.is_null()) {
            Some(command) => command_line(Some(command)),
            None => cell(spec.get("image")),
        };
        let mut name = cell(function.get("name"));
        if spec.get("enabled") == Some(&Value::Bool(false)) {
            name.push_str(" (disabled)");
        }
        table.row(vec![
            name,
            cell(function.get("version")),
            mode,
            truncate(&runs, 60),
            time(function.get("createdAt")),
        ]);
    }
    table
}

/// `fn get NAME`.
async fn get(ctx: &Ctx, name: &str) -> Result<()> {
    let body = ctx.client.get(&["v1", "functions", name], &[]).await?;
    if ctx.json() {
        return out_json(&body);
    }
    out(&function_details(&body))
}

/// The `fn get` text of a FunctionVersion, with its pool when it has one.
pub fn function_details(function: &Value) -> String {
    let mut text = key_values(&[
        ("name", cell(function.get("name"))),
        ("version", cell(function.get("version"))),
        ("contentHash", cell(function.get("contentHash"))),
        ("createdAt", time(function.get("createdAt"))),
    ]);
    text.push_str(&json_block(
        "spec",
        function.get("spec").unwrap_or(&Value::Null),
    ));
    text.push_str(&pool_view::pool_details(function));
    text
}

/// `fn scale NAME --min N --max M`.
async fn scale(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    let mut limits = serde_json::Map::new();
    if let Some(min) = args.min {
        limits.insert("min_instances".into(), min.into());
    }
    if let Some(max) = args.max {
        limits.insert("max_instances".into(), max.into());
    }
    let action = format!("{}:scale", args.name);
    let body = ctx
        .client
        .post_json(&["v1", "functions", &action], &Value::Object(limits))
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    print_warnings(&body);
    out(&format!(
        "{}\n",
        pool_view::scale_message(&body, &args.name)
    ))
}

/// `fn delete NAME`.
async fn delete(ctx: &Ctx, name: &str) -> Result<()> {
    let client = &ctx.client;
    let url = client.url(&["v1", "functions", name], &[]);
    client.call(client.request(Method::DELETE, url)).await?;
    if ctx.json() {
        return Ok(());
    }
    out(&format!("deleted function {name}\n"))
}

/// `fn versions NAME`.
async fn versions(ctx: &Ctx, name: &str) -> Result<()> {
    let body = ctx
        .client
        .get(&["v1", "functions", name, "versions"], &[])
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    let mut table = Table::new(&["VERSION", "HASH", "CREATED"]);
    for version in list_of(&body, "versions") {
        table.row(vec![
            cell(version.get("version")),
            cell(version.get("contentHash")),
            time(version.get("createdAt")),
        ]);
    }
    out(&table.render())
}

/// `fn invoke NAME`.
async fn invoke(ctx: &Ctx, args: InvokeArgs) -> Result<()> {
    let data = read_data(args.data.as_deref())?;
    let client = &ctx.client;
    let url = client.url(&["v1", "functions", &format!("{}:invoke", args.name)], &[]);
    let mut request = client
        .request(Method::POST, url)
        .header(CONTENT_TYPE, "application/json")
        .body(data);
    if let Some(ms) = args.timeout_ms {
        request = request.header("X-Timeout-Ms", ms.to_string());
    }
    if let Some(trace) = &args.trace_id {
        request = request.header("X-Trace-Id", header_value("--trace-id", trace)?);
    }
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", header_value("--idempotency-key", key)?);
    }
    let response = client.send(request).await?;
    let status = response.status();
    let retry_after = header(&response, "retry-after");
    let execution_header = header(&response, "x-execution-id");
    let bytes = client.body(response).await?;
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let result = match parsed {
        Some(body) if is_invocation_result(&body) => body,
        Some(body) if status.is_success() => return out_json(&body),
        _ if status.is_success() => {
            return Err(anyhow!(
                "the server answered the call with something that is not JSON"
            ))
        }
        _ => return Err(ApiError::from_parts(status, retry_after, &bytes).into()),
    };
    if ctx.json() {
        out_json(&result)?;
    }
    match invocation_failure(&result, execution_header.as_deref()) {
        Some(failure) => Err(failure.into()),
        None if ctx.json() => Ok(()),
        None => out_json(result.get("output").unwrap_or(&Value::Null)),
    }
}

/// Whether `body` is an invocation result (`{executionId, status, ...}`) rather than
/// an API error.
fn is_invocation_result(body: &Value) -> bool {
    body.get("executionId").is_some() && body.get("status").is_some_and(Value::is_string)
}

/// The failure an invocation result reports, if its status is not `success`.
pub fn invocation_failure(
    result: &Value,
    execution_header: Option<&str>,
) -> Option<FunctionFailed> {
    let status = result
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    if status == "success" {
        return None;
    }
    let error = result.get("error").filter(|e| e.is_object());
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .map_or_else(|| status.to_ascii_uppercase(), str::to_string);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let execution_id = match result.get("executionId") {
        Some(Value::String(id)) => id.clone(),
        _ => execution_header.unwrap_or("?").to_string(),
    };
    Some(FunctionFailed {
        code,
        message,
        execution_id,
    })
}

/// `fn enqueue NAME`.
async fn enqueue(ctx: &Ctx, args: EnqueueArgs) -> Result<()> {
    let data = read_data(args.data.as_deref())?;
    let client = &ctx.client;
    let url = client.url(&["v1", "functions", &format!("{}:enqueue", args.name)], &[]);
    let mut request = client
        .request(Method::POST, url)
        .header(CONTENT_TYPE, "application/json")
        .body(data);
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", header_value("--idempotency-key", key)?);
    }
    let (_, body) = client.call(request).await?;
    if ctx.json() {
        return out_json(&body);
    }
    out(&format!("{}\n", cell(body.get("executionId"))))
}

/// `-d`, reading stdin only for `@-` (also used by `event publish`).
pub(super) fn read_data(arg: Option<&str>) -> Result<String> {
    if arg == Some("@-") {
        input::read_data(arg, std::io::stdin().lock())
    } else {
        input::read_data(arg, std::io::empty())
    }
}

/// A flag's value as an HTTP header value.
fn header_value(flag: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|_| {
        UsageError(format!(
            "{flag} must be printable ASCII text, got {value:?}"
        ))
        .into()
    })
}

/// The array under `key` of a list answer (empty when missing).
pub fn list_of<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(name: &str, spec: Value) -> Value {
        json!({"name": name, "version": 2, "contentHash": "sha256:ab12",
               "spec": spec, "createdAt": "2025-03-04T05:06:07.890Z"})
    }

    #[test]
    fn deploy_messages() {
        let v = version("echo", json!({}));
        assert_eq!(
            deploy_message(&v, "x", true),
            "deployed echo version 2 (sha256:ab12)"
        );
        assert_eq!(deploy_message(&v, "x", false), "echo unchanged (version 2)");
    }

    #[test]
    fn functions_table_shows_command_or_image() {
        let table = functions_table(&[
            version("echo", json!({"mode": "STDIO", "command": ["cat"]})),
            version("web", json!({"image": "ghcr.io/x/web:1", "enabled": false})),
        ]);
        assert_eq!(
            table.render(),
            "NAME            VERSION  MODE   COMMAND/IMAGE    UPDATED\n\
             echo            2        STDIO  cat              2025-03-04T05:06:07Z\n\
             web (disabled)  2        HTTP   ghcr.io/x/web:1  2025-03-04T05:06:07Z\n"
        );
    }

    #[test]
    fn function_details_has_keys_and_spec() {
        let text = function_details(&version("echo", json!({"command": "cat"})));
        assert!(
            text.starts_with("name:        echo\nversion:     2\n"),
            "{text}"
        );
        assert!(
            text.ends_with("spec:\n  {\n    \"command\": \"cat\"\n  }\n"),
            "{text}"
        );
    }

    #[test]
    fn invocation_failures() {
        let ok = json!({"executionId": "e1", "status": "success", "output": 1, "error": null});
        assert!(is_invocation_result(&ok));
        assert_eq!(invocation_failure(&ok, None), None);

        let failed = json!({"executionId": "e2", "status": "timeout", "output": null,
                            "error": {"code": "TIMEOUT", "message": "took longer than 1000ms"}});
        assert_eq!(
            invocation_failure(&failed, None).unwrap().to_string(),
            "TIMEOUT: took longer than 1000ms (execution e2)"
        );
        let bare = json!({"executionId": null, "status": "error", "error": null});
        assert_eq!(
            invocation_failure(&bare, Some("e3")).unwrap().to_string(),
            "ERROR (execution e3)"
        );
        let api_error = json!({"error": {"code": "NOT_FOUND", "message": "nope"}});
        assert!(!is_invocation_result(&api_error));
    }

    #[test]
    fn header_values_must_be_ascii() {
        assert!(header_value("--trace-id", "abc-123").is_ok());
        let err = header_value("--trace-id", "a\nb").unwrap_err();
        assert!(err.is::<UsageError>());
    }
}
