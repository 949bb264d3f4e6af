//! SECRET_FILES: secret values written, before the function starts, to files in
//! SECRETS_DIR that only the function's user can read. The function gets the path of
//! each in its environment, never the value itself.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::libc;

use crate::config::Secret;
use crate::identity::RunAs;

/// Mode of SECRETS_DIR when the watchdog creates it: others may open a file whose name
/// they know, not list the directory.
const DIR_MODE: u32 = 0o711;
/// Mode of each secret file: readable by its owner only (no umask takes owner bits).
const FILE_MODE: u32 = 0o400;

/// A secret file (or SECRETS_DIR) that could not be written. It names the path, never
/// the value.
#[derive(Debug, thiserror::Error)]
#[error("SECRETS_DIR: cannot write {path}: {source}")]
pub struct SecretFileError {
    /// The directory or file.
    pub path: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Writes each secret to `dir/NAME` (mode 0400, owned by `owner` when given) and
/// returns the `NAME=path` variables for the function. `dir` is created with mode 0711
/// when missing (its parent must exist); an existing one is used as it is. An existing
/// entry is unlinked first and the file created afresh (`O_CREAT|O_EXCL|O_NOFOLLOW`),
/// so a planted link never redirects the write.
pub fn write(
    dir: &Path,
    secrets: &[(String, Secret)],
    owner: Option<RunAs>,
) -> Result<Vec<(String, String)>, SecretFileError> {
    let dir = dir.to_string_lossy();
    let mut vars = Vec::with_capacity(secrets.len());
    for (name, secret) in secrets {
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        let written = match vars.is_empty() {
            true => create_dir(&dir),
            false => Ok(()),
        }
        .and_then(|()| write_one(&path, secret, owner));
        if let Err(source) = written {
            return Err(SecretFileError { path, source });
        }
        vars.push((name.clone(), path));
    }
    Ok(vars)
}

/// Creates SECRETS_DIR with mode 0711 (whatever the umask) unless it exists.
fn create_dir(dir: &str) -> std::io::Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

fn write_one(path: &str, secret: &Secret, owner: Option<RunAs>) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
    }
    file.write_all(secret.expose().as_bytes())
}

/// Removes the secret files written by [`write`] (when the watchdog stops).
pub fn remove(vars: &[(String, String)]) {
    for (_, path) in vars {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn secrets_replace_whatever_was_there_and_are_owner_only() {
        let dir = std::env::temp_dir().join(format!("gantry-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nested = dir.join("secrets");
        let victim = dir.join("victim");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&victim, "untouched").unwrap();
        let secrets = [
            ("API_KEY".to_owned(), Secret::new("k-123")),
            ("DB_PASSWORD".to_owned(), Secret::new("p\nw")),
        ];
        let vars = write(&nested, &secrets, None).unwrap();
        assert_eq!(
            std::fs::metadata(&nested).unwrap().mode() & 0o7777,
            DIR_MODE
        );
        // A second start finds a symlink where a secret goes: it is replaced, not followed.
        std::fs::remove_file(nested.join("API_KEY")).unwrap();
        std::os::unix::fs::symlink(&victim, nested.join("API_KEY")).unwrap();
        let again = write(&nested, &secrets, None).unwrap();
        assert_eq!(vars, again);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        for ((name, path), (_, secret)) in vars.iter().zip(&secrets) {
            assert_eq!(Path::new(path), nested.join(name));
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.mode() & 0o7777, FILE_MODE);
            assert_eq!(std::fs::read_to_string(path).unwrap(), secret.expose());
        }
        remove(&vars);
        assert_eq!(std::fs::read_dir(&nested).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_path_not_the_value() {
        let file = std::env::temp_dir().join(format!("gantry-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let err = write(&file, &[("K".to_owned(), Secret::new("hunter2"))], None).unwrap_err();
        assert!(err.to_string().contains("gantry-not-a-dir"), "{err}");
        let message = err.to_string();
        assert!(message.starts_with("SECRETS_DIR:"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        std::fs::remove_file(&file).unwrap();
    }
}
