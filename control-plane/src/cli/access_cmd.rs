//! `gantry token ...` (API tokens, admin only) and `gantry secret ...` (secrets for
//! functions; their values go in and never come back out).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;

use super::client::decode;
use super::table::{time, Table};
use super::{out, out_json, Ctx, UsageError};
use crate::access::Role;
use crate::wire::{
    CreateTokenRequest, CreatedToken, PutSecretRequest, SecretList, SecretMeta, TokenList,
};

/// `gantry token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (once: it is never shown again).
    ///
    /// Roles: admin (everything, tokens included), deploy (functions and secrets, and
    /// reading), invoke (invoke, enqueue, cancel and retry executions, publish events,
    /// and reading), read (reading functions, executions, logs and metrics). Prints
    /// the token alone on stdout, so `TOKEN=$(gantry token create ci --role invoke)`
    /// works; clients send it as `Authorization: Bearer TOKEN` or GANTRY_TOKEN.
    Create(TokenCreateArgs),
    /// List the tokens: names, roles, creation and last use (never the tokens).
    List,
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// `gantry token create`
#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    /// A unique name: 1 to 64 of a-z, 0-9, '.', '_' and '-'.
    pub name: String,
    /// What the token may do.
    #[arg(long, value_parser = parse_role, value_name = "admin|deploy|invoke|read")]
    pub role: Role,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text.trim())
        .ok_or_else(|| format!("unknown role {text:?}: use admin, deploy, invoke or read"))
}

/// `gantry secret ...`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret's value (a new version); functions that map it get it in new
    /// executions, and their warm instances are replaced.
    ///
    /// The value is the VALUE argument, the content of --from-file, or stdin with
    /// --from-file -. Prefer --from-file: other users can read a command line. A
    /// function maps a secret in its manifest: `secrets: {DB_PASSWORD: NAME}`, or
    /// `{TLS_KEY: {secret: NAME, file: true}}` for a 0400 file (docker runtime).
    #[command(group(ArgGroup::new("source").args(["value", "from_file"]).required(true)))]
    Set {
        /// The secret's name.
        name: String,
        /// The value.
        value: Option<String>,
        /// Read the value from this file (`-`: stdin). One trailing newline is dropped.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List the secrets: names, versions and dates (never the values).
    List,
    /// Delete a secret (refused while a function maps it).
    Delete {
        /// The secret's name.
        name: String,
    },
}

/// Carries out one `gantry token` subcommand.
pub async fn run_token(ctx: &Ctx, command: TokenCommand) -> Result<()> {
    let client = &ctx.client;
    match command {
        TokenCommand::Create(args) => {
            let body = CreateTokenRequest {
                name: args.name.clone(),
                role: args.role,
            };
            let created = client.post_json(&["v1", "tokens"], &body).await?;
            if ctx.json() {
                return out_json(&created);
            }
            let created: CreatedToken = decode(created)?;
            eprintln!(
                "created token {} (role {}); it is shown once, store it now:",
                args.name, args.role
            );
            out(&format!("{}\n", created.token))
        }
        TokenCommand::List => {
            let listed = client.get(&["v1", "tokens"], &[]).await?;
            if ctx.json() {
                return out_json(&listed);
            }
            let listed: TokenList = decode(listed)?;
            let mut table = Table::new(&["NAME", "ROLE", "CREATED", "LAST USED"]);
            for token in listed.tokens {
                table.row(vec![
                    token.name,
                    token.role.to_string(),
                    time(Some(token.created_at)),
                    time(token.last_used_at),
                ]);
            }
            out(&table.render())
        }
        TokenCommand::Revoke { name } => {
            let url = client.url(&["v1", "tokens", &name], &[]);
            client.call(client.request(Method::DELETE, url)).await?;
            out(&format!("revoked token {name}\n"))
        }
    }
}

/// Carries out one `gantry secret` subcommand.
pub async fn run_secret(ctx: &Ctx, command: SecretCommand) -> Result<()> {
    let client = &ctx.client;
    match command {
        SecretCommand::Set {
            name,
            value,
            from_file,
        } => {
            let value = match (value, from_file) {
                (Some(value), _) => value,
                (None, Some(path)) => read_value(&path)?,
                (None, None) => return Err(UsageError("give VALUE or --from-file".into()).into()),
            };
            let url = client.url(&["v1", "secrets", &name], &[]);
            let request = client
                .request(Method::PUT, url)
                .json(&PutSecretRequest { value });
            let (_, meta) = client.call(request).await?;
            if ctx.json() {
                return out_json(&meta);
            }
            let meta: SecretMeta = decode(meta)?;
            out(&format!("set secret {name} (version {})\n", meta.version))
        }
        SecretCommand::List => {
            let listed = client.get(&["v1", "secrets"], &[]).await?;
            if ctx.json() {
                return out_json(&listed);
            }
            let listed: SecretList = decode(listed)?;
            let mut table = Table::new(&["NAME", "VERSION", "CREATED", "UPDATED"]);
            for secret in listed.secrets {
                table.row(vec![
                    secret.name,
                    secret.version.to_string(),
                    time(Some(secret.created_at)),
                    time(Some(secret.updated_at)),
                ]);
            }
            out(&table.render())
        }
        SecretCommand::Delete { name } => {
            let url = client.url(&["v1", "secrets", &name], &[]);
            client.call(client.request(Method::DELETE, url)).await?;
            out(&format!("deleted secret {name}\n"))
        }
    }
}

/// A secret value from `path` (`-`: stdin), without one trailing newline.
fn read_value(path: &std::path::Path) -> Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the value from stdin")
            .map_err(|err| UsageError(format!("{err:#}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(|err| UsageError(format!("{err:#}")))?;
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
