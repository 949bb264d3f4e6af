//! `gantry fn ...`: deploy, list, get, delete, versions, invoke, enqueue and scale.

use std::fmt;

use anyhow::{anyhow, Result};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::client::{decode, header, ApiError};
use super::table::{json_block, key_values, time, truncate, Table};
use super::{
    input, out, out_json, pool_view, Ctx, EnqueueArgs, FnCommand, InvokeArgs, ScaleArgs, UsageError,
};
use crate::domain::ExecutionStatus;
use crate::wire::{
    Accepted, FunctionAnswer, FunctionList, InvokeAnswer, ScaleRequest, SpecSummary, VersionList,
};

/// A function version as the CLI reads it: the spec kept as the server sent it.
pub type Function = FunctionAnswer<Value>;

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
        FnCommand::Deploy {
            file,
            build,
            build_arg,
        } => {
            if build {
                let dir = super::build::manifest_dir(&file);
                let built = super::build::build(&dir, &file, &build_arg).await?;
                eprintln!("built {} (id {})", built.image, built.id);
            }
            deploy(ctx, &file).await
        }
        FnCommand::Build {
            dir,
            file,
            build_arg,
        } => super::build::build_cmd(dir.as_deref(), file.as_deref(), &build_arg, ctx.json()).await,
        FnCommand::Init(args) => super::init_cmd::init(&args),
        FnCommand::Run(args) => super::run_cmd::run(&args).await,
        FnCommand::List => list(ctx).await,
        FnCommand::Get { name } => get(ctx, &name).await,
        FnCommand::DestinationKey { name } => {
            super::deliveries_view::destination_key(ctx, &name).await
        }
        FnCommand::Delete { name } => delete(ctx, &name).await,
        FnCommand::Versions { name } => versions(ctx, &name).await,
        FnCommand::Invoke(args) => invoke(ctx, args).await,
        FnCommand::Enqueue(args) => enqueue(ctx, args).await,
        FnCommand::Scale(args) => scale(ctx, args).await,
        FnCommand::Logs(args) => super::fn_logs::run(ctx, args).await,
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
    let body = if response.status() == StatusCode::CONFLICT {
        let url = client.url(&["v1", "functions", &manifest.name], &[]);
        let (_, body) = client
            .call(client.request(Method::PUT, url).json(&manifest.json))
            .await?;
        body
    } else {
        client.read(response).await?.1
    };
    if ctx.json() {
        return out_json(&body);
    }
    let function: Function = decode(body)?;
    print_warnings(&function);
    out(&format!("{}\n", deploy_message(&function)))
}

/// Prints the `warnings` of a function answer on stderr.
fn print_warnings(function: &Function) {
    for warning in &function.warnings {
        eprintln!("warning: {warning}");
    }
}

/// The line `fn deploy` prints. A create answers no `changed`: it always makes a
/// version.
pub fn deploy_message(function: &Function) -> String {
    let (name, number) = (&function.name, function.version);
    if function.changed.unwrap_or(true) {
        format!(
            "deployed {name} version {number} ({})",
            function.content_hash
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
    let listed: FunctionList<Value> = decode(body)?;
    let table = functions_table(&listed.functions);
    if table.is_empty() {
        eprintln!("no functions deployed (gantry fn deploy -f FILE)");
        return Ok(());
    }
    out(&table.render())
}

/// The `fn list` table of FunctionVersion records.
pub fn functions_table(functions: &[Function]) -> Table {
    let mut table = Table::new(&["NAME", "VERSION", "MODE", "COMMAND/IMAGE", "UPDATED"]);
    for function in functions {
        let spec = SpecSummary::of(&function.spec);
        let mode = match spec.mode {
            Some(mode) if !mode.is_empty() => mode.to_ascii_uppercase(),
            _ => "HTTP".to_string(),
        };
        let runs = match (&spec.command, spec.image) {
            (Some(command), _) => command.to_line(),
            (None, image) => image.unwrap_or_default(),
        };
        let mut name = function.name.clone();
        if spec.enabled == Some(false) {
            name.push_str(" (disabled)");
        }
        table.row(vec![
            name,
            function.version.to_string(),
            mode,
            truncate(&runs, 60),
            time(Some(function.created_at)),
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
    out(&function_details(&decode(body)?))
}

/// The `fn get` text of a function version, with its pool when it has one.
pub fn function_details(function: &Function) -> String {
    let mut text = key_values(&[
        ("name", function.name.clone()),
        ("version", function.version.to_string()),
        ("contentHash", function.content_hash.clone()),
        ("createdAt", time(Some(function.created_at))),
    ]);
    text.push_str(&super::pacing_view::pacing_details(&function.spec));
    text.push_str(&super::deliveries_view::destinations_block(
        &function.spec,
        &function.name,
    ));
    text.push_str(&json_block("spec", &function.spec));
    text.push_str(&pool_view::pool_details(function.pool.as_ref()));
    text.push_str(&super::schedule_view::schedule_details(&function.schedules));
    text
}

/// `fn scale NAME --min N --max M`.
async fn scale(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    let limits = ScaleRequest {
        min_instances: args.min,
        max_instances: args.max,
    };
    let action = format!("{}:scale", args.name);
    let body = ctx
        .client
        .post_json(&["v1", "functions", &action], &limits)
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    let function: Function = decode(body)?;
    print_warnings(&function);
    out(&format!("{}\n", pool_view::scale_message(&function)))
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
    let listed: VersionList<Value> = decode(body)?;
    let mut table = Table::new(&["VERSION", "HASH", "CREATED"]);
    for version in listed.versions {
        table.row(vec![
            version.version.to_string(),
            version.content_hash,
            time(Some(version.created_at)),
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
    let bytes = client.body(response).await?;
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let (body, result) = match parsed {
        Some(body) => match invocation_result(&body) {
            Some(result) => (body, result),
            None if status.is_success() => return out_json(&body),
            None => return Err(ApiError::from_parts(status, retry_after, &bytes).into()),
        },
        None if status.is_success() => {
            return Err(anyhow!(
                "the server answered the call with something that is not JSON"
            ))
        }
        None => return Err(ApiError::from_parts(status, retry_after, &bytes).into()),
    };
    if ctx.json() {
        out_json(&body)?;
    }
    match invocation_failure(&result) {
        Some(failure) => Err(failure.into()),
        None if ctx.json() => Ok(()),
        None => out_json(result.output.as_ref().unwrap_or(&Value::Null)),
    }
}

/// `body` as an invocation result (`{executionId, status, output, error}`), or `None`
/// for anything else (an API error).
fn invocation_result(body: &Value) -> Option<InvokeAnswer> {
    InvokeAnswer::deserialize(body).ok()
}

/// The failure an invocation result reports, if its status is not `success`.
pub fn invocation_failure(result: &InvokeAnswer) -> Option<FunctionFailed> {
    if result.status == ExecutionStatus::Success {
        return None;
    }
    let (code, message) = match &result.error {
        Some(error) => (error.code.to_string(), error.message.clone()),
        None => (result.status.as_str().to_ascii_uppercase(), String::new()),
    };
    Some(FunctionFailed {
        code,
        message,
        execution_id: result.execution_id.to_string(),
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
    if let Some(url) = &args.callback_url {
        request = request.header("X-Callback-Url", header_value("--callback-url", url)?);
    }
    let (_, body) = client.call(request).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let accepted: Accepted = decode(body)?;
    out(&format!("{}\n", accepted.execution_id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(name: &str, spec: Value) -> Function {
        decode(
            json!({"name": name, "version": 2, "contentHash": "sha256:ab12",
               "spec": spec, "createdAt": "2025-03-04T05:06:07.890Z"}),
        )
        .unwrap()
    }

    #[test]
    fn deploy_messages() {
        let mut v = version("echo", json!({}));
        assert_eq!(deploy_message(&v), "deployed echo version 2 (sha256:ab12)");
        v.changed = Some(true);
        assert_eq!(deploy_message(&v), "deployed echo version 2 (sha256:ab12)");
        v.changed = Some(false);
        assert_eq!(deploy_message(&v), "echo unchanged (version 2)");
    }

    #[test]
    fn functions_table_shows_command_or_image() {
        let table = functions_table(&[
            version("echo", json!({"mode": "STDIO", "command": ["cat"]})),
            version("web", json!({"image": "ghcr.io/x/web:1", "enabled": false})),
            version(
                "new",
                json!({"command": "python3 'my handler.py'", "from_the_future": 1}),
            ),
        ]);
        assert_eq!(
            table.render(),
            "NAME            VERSION  MODE   COMMAND/IMAGE            UPDATED\n\
             echo            2        STDIO  cat                      2025-03-04T05:06:07Z\n\
             web (disabled)  2        HTTP   ghcr.io/x/web:1          2025-03-04T05:06:07Z\n\
             new             2        HTTP   python3 'my handler.py'  2025-03-04T05:06:07Z\n"
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
    fn function_details_show_the_pacing_when_set() {
        let spec = json!({"command": "cat", "rate_limit": {"per_second": 2, "burst": 3}, "max_queue_age_ms": 500});
        let text = function_details(&version("echo", spec));
        assert!(
            text.contains("rate limit:    2/s, burst 3\nmax queue age: 500 ms\nspec:\n"),
            "{text}"
        );
    }

    #[test]
    fn invocation_failures() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let ok = json!({"executionId": id, "status": "success", "output": 1, "error": null});
        let ok = invocation_result(&ok).unwrap();
        assert_eq!(ok.output, Some(json!(1)));
        assert_eq!(invocation_failure(&ok), None);

        let failed = json!({"executionId": id, "status": "timeout", "output": null,
                            "error": {"code": "TIMEOUT", "message": "took longer than 1000ms"}});
        assert_eq!(
            invocation_failure(&invocation_result(&failed).unwrap())
                .unwrap()
                .to_string(),
            format!("TIMEOUT: took longer than 1000ms (execution {id})")
        );
        let bare = json!({"executionId": id, "status": "error", "output": null, "error": null,
                          "fromTheFuture": true});
        assert_eq!(
            invocation_failure(&invocation_result(&bare).unwrap())
                .unwrap()
                .to_string(),
            format!("ERROR (execution {id})")
        );
        let api_error = json!({"error": {"code": "NOT_FOUND", "message": "nope"}});
        assert!(invocation_result(&api_error).is_none());
    }

    #[test]
    fn header_values_must_be_ascii() {
        assert!(header_value("--trace-id", "abc-123").is_ok());
        let err = header_value("--trace-id", "a\nb").unwrap_err();
        assert!(err.is::<UsageError>());
    }
}
