//! Where the command line finds its API token: `--token` (GANTRY_TOKEN), else
//! `--token-file` (GANTRY_TOKEN_FILE), else, for a server on this machine, the
//! `admin-token` file `gantry serve` keeps in its data directory (GANTRY_DATA_DIR, else
//! `./gantry-data`). That last step is what keeps the quick start at two commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::UsageError;
use crate::datadir;

/// The admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// `gantry serve`'s default data directory.
pub const DEFAULT_DATA_DIR: &str = "./gantry-data";

/// The token given explicitly: `token` (flag or environment), else the content of
/// `token_file`. An unreadable or empty file is a usage error naming it.
pub fn explicit_token(token: Option<&str>, token_file: Option<&Path>) -> Result<Option<String>> {
    if let Some(token) = token.map(str::trim).filter(|token| !token.is_empty()) {
        return Ok(Some(token.to_owned()));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    let text = datadir::read_trimmed(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))
        .map_err(|err| UsageError(format!("{err:#} (--token-file, GANTRY_TOKEN_FILE)")))?;
    match text {
        Some(token) => Ok(Some(token)),
        None => Err(UsageError(format!(
            "the token file {} is empty or missing (--token-file, GANTRY_TOKEN_FILE)",
            path.display()
        ))
        .into()),
    }
}

/// The admin token file of the local data directory: GANTRY_DATA_DIR's, else
/// `./gantry-data`'s.
pub fn local_admin_token_file() -> PathBuf {
    let dir = std::env::var_os("GANTRY_DATA_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from);
    dir.join(ADMIN_TOKEN_FILE)
}

/// The token a client command sends: the explicit one, else, when the server is on
/// this machine (`local_server`), the local data directory's admin token if readable.
/// A token found on disk is never sent to another machine.
pub fn client_token(
    token: Option<&str>,
    token_file: Option<&Path>,
    local_server: bool,
) -> Result<Option<String>> {
    if let Some(token) = explicit_token(token, token_file)? {
        return Ok(Some(token));
    }
    if !local_server {
        return Ok(None);
    }
    Ok(datadir::read_trimmed(&local_admin_token_file())
        .ok()
        .flatten())
}

/// Whether `--token` was typed on the command line (rather than taken from
/// GANTRY_TOKEN): other local users can read a command line in `ps`.
pub fn token_on_command_line(token: Option<&str>) -> bool {
    token.is_some_and(|token| std::env::var("GANTRY_TOKEN").ok().as_deref() != Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_tokens_win_and_files_are_read() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("token");
        std::fs::write(&file, "gty_from_file\n").unwrap();
        assert_eq!(
            explicit_token(Some("gty_flag"), Some(&file))
                .unwrap()
                .as_deref(),
            Some("gty_flag")
        );
        assert_eq!(
            explicit_token(None, Some(&file)).unwrap().as_deref(),
            Some("gty_from_file")
        );
        assert_eq!(explicit_token(None, None).unwrap(), None);
        let missing = explicit_token(None, Some(&temp.path().join("none"))).unwrap_err();
        assert!(missing.is::<UsageError>(), "{missing}");
        std::fs::write(&file, "  \n").unwrap();
        assert!(explicit_token(None, Some(&file)).is_err());
    }

    #[test]
    fn a_remote_server_never_gets_the_local_admin_token() {
        assert_eq!(client_token(None, None, false).unwrap(), None);
    }
}
