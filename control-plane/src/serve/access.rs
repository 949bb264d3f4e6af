//! Start-up of what guards the server: the secret key and vault, the API tokens, and
//! the admin token file the command line finds in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Failure;
use crate::access::{Credentials, Role};
use crate::cli::credentials::ADMIN_TOKEN_FILE;
use crate::config::ServeArgs;
use crate::datadir;
use crate::secrets::key::KEY_VAR;
use crate::secrets::{SecretKey, Vault};
use crate::store::Store;

/// The vault, with the key from GANTRY_SECRET_KEY or the data directory's key file.
pub(super) async fn open_vault(
    store: &Arc<dyn Store>,
    data_dir: &Path,
    shared: bool,
) -> Result<Arc<Vault>, Failure> {
    let configured = std::env::var(KEY_VAR).ok();
    let key = SecretKey::load(configured.as_deref(), data_dir)
        .map_err(|err| Failure::config(err.to_string()))?;
    let opened = if shared {
        Vault::open_shared(store.clone(), &key).await
    } else {
        Vault::open(store.clone(), &key).await
    };
    opened
        .map(Arc::new)
        .map_err(|err| Failure::fatal(err.to_string()))
}

/// The accepted tokens. Unless the operator gave a token or asked for no
/// authentication, the data directory's `admin-token` file holds a valid admin token
/// afterwards: the one it held, or a new one.
pub(super) async fn open_credentials(
    store: &Arc<dyn Store>,
    operator_token: Option<&str>,
    args: &ServeArgs,
) -> Result<Arc<Credentials>, Failure> {
    let credentials = Credentials::load(store.clone(), operator_token, args.insecure_no_auth)
        .await
        .map_err(|err| Failure::fatal(err.to_string()))?;
    if operator_token.is_none() && !args.insecure_no_auth {
        ensure_admin_file(&credentials, &admin_file(args)).await?;
    }
    Ok(Arc::new(credentials))
}

fn admin_file(args: &ServeArgs) -> PathBuf {
    args.data_dir.join(ADMIN_TOKEN_FILE)
}

/// Keeps a valid admin token in `path`: when the file is missing or its token is no
/// longer an admin token, a new admin token is created (named `admin`, or `admin-N`
/// when that name is taken) and written there, mode 0600.
async fn ensure_admin_file(credentials: &Credentials, path: &Path) -> Result<(), Failure> {
    let file_error = |err: std::io::Error| {
        Failure::config(format!(
            "the admin token file {} cannot be used: {err}",
            path.display()
        ))
    };
    if let Some(token) = datadir::read_trimmed(path).map_err(file_error)? {
        if credentials
            .find(&token)
            .is_some_and(|record| record.role == Role::Admin)
        {
            return Ok(());
        }
    }
    let taken: Vec<String> = credentials.list().into_iter().map(|r| r.name).collect();
    let name = std::iter::once("admin".to_owned())
        .chain((2..).map(|n| format!("admin-{n}")))
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| "admin".to_owned());
    let (_, token) = credentials
        .create(&name, Role::Admin)
        .await
        .map_err(|err| Failure::fatal(format!("cannot create the admin token: {err}")))?;
    datadir::write_private(path, format!("{token}\n").as_bytes()).map_err(file_error)?;
    tracing::debug!(token = %name, "created an admin token in {}", path.display());
    Ok(())
}

/// Says at start how clients get in.
pub(super) fn announce(credentials: &Credentials, args: &ServeArgs, operator_token: bool) {
    if credentials.is_open() {
        super::say(
            "WARNING: --insecure-no-auth: every request is served without a token; any local user and any web page's scripts on this machine can reach this API",
        );
    } else if operator_token {
        super::say("API token: the admin token given in GANTRY_TOKEN or --token-file");
    } else {
        super::say(&format!(
            "admin token: {} (the gantry CLI on this machine reads it from there; other clients send it as `Authorization: Bearer TOKEN`)",
            admin_file(args).display()
        ));
    }
}

/// Says at start where the browser console is, and how to open it signed in without
/// writing the token into this output (which often ends up in a log).
pub(super) fn announce_console(
    credentials: &Credentials,
    args: &ServeArgs,
    operator_token: bool,
    local: std::net::SocketAddr,
) {
    let mut address = local;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let console = format!("http://{address}/ui/");
    let how = if credentials.is_open() {
        String::new()
    } else if operator_token {
        format!(" (sign in with your token, or open {console}#token=TOKEN)")
    } else {
        format!(
            " (signed in at once: open \"{console}#token=$(cat {})\")",
            admin_file(args).display()
        )
    };
    super::say(&format!("console: {console}{how}"));
}
