//! The user functions of the process runtime run as. A server running as root hands
//! its watchdogs `RUN_AS`, so the user's code runs as an unprivileged user (`nobody`
//! unless `--function-user` says otherwise) and can read neither the watchdog's
//! credentials nor the server's data directory. Their scratch directories then live
//! outside the (0700) data directory, each owned by that user.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

/// The user `--function-user` means when the server runs as root and the flag is not
/// given.
pub const DEFAULT_FUNCTION_USER: &str = "nobody";

/// A user and group functions run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl FunctionUser {
    /// The watchdog's RUN_AS value.
    pub fn run_as(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }

    /// Resolves `NAME`, `UID` or `UID:GID` on this host.
    pub fn parse(text: &str) -> Result<FunctionUser, String> {
        let text = text.trim();
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        let group = group
            .map(|group| {
                group
                    .parse::<u32>()
                    .map_err(|_| format!("the group of {text:?} must be a number (UID:GID)"))
            })
            .transpose()?;
        if let Ok(uid) = user.parse::<u32>() {
            let primary = User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|user| user.gid.as_raw());
            return Ok(FunctionUser {
                uid,
                gid: group.or(primary).unwrap_or(uid),
            });
        }
        match User::from_name(user) {
            Ok(Some(found)) => Ok(FunctionUser {
                uid: found.uid.as_raw(),
                gid: group.unwrap_or(found.gid.as_raw()),
            }),
            Ok(None) => Err(format!("there is no user {user:?} on this host")),
            Err(err) => Err(format!("cannot look up the user {user:?}: {err}")),
        }
    }

    /// Whether this is the user the server runs as (no switch needed).
    pub fn is_current(&self) -> bool {
        self.uid == Uid::effective().as_raw() && self.gid == Gid::effective().as_raw()
    }
}

/// The user functions run as: `configured` (`--function-user`), else `nobody` when the
/// server runs as root; `None` when they run as the server's own user. A configured
/// user other than the server's own needs root.
pub fn resolve(configured: Option<&str>) -> Result<Option<FunctionUser>, String> {
    let root = Uid::effective().is_root();
    let wanted = match (configured, root) {
        (Some(text), _) => FunctionUser::parse(text)?,
        (None, true) => FunctionUser::parse(DEFAULT_FUNCTION_USER)?,
        (None, false) => return Ok(None),
    };
    if wanted.is_current() {
        return Ok(None);
    }
    if !root {
        return Err(format!(
            "uid {} was asked for, but only a server running as root can run functions as another user (this one runs as uid {})",
            wanted.uid,
            Uid::effective()
        ));
    }
    Ok(Some(wanted))
}

/// Creates the root of the scratch directories of functions that run as another user:
/// `base/gantry-<owner>`, owned by the server, 0711 (the function users may pass
/// through it to their own directories but not list it). An existing entry that is not
/// such a directory of the server's is refused: another user may have planted it.
pub fn shared_scratch_root(base: &Path, owner: &str) -> io::Result<PathBuf> {
    let root = base.join(format!("gantry-{owner}"));
    match DirBuilder::new().mode(0o711).create(&root) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let meta = std::fs::symlink_metadata(&root)?;
    if !meta.is_dir() || meta.uid() != Uid::effective().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} exists but is not a directory of this server's user; remove it",
                root.display()
            ),
        ));
    }
    std::fs::set_permissions(&root, Permissions::from_mode(0o711))?;
    Ok(root)
}

/// Makes `dir` the private directory of `user`: owned by it, 0700.
pub fn hand_over(dir: &Path, user: FunctionUser) -> io::Result<()> {
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_number_or_pair() {
        let nobody = FunctionUser::parse("nobody").unwrap();
        assert_eq!(nobody.uid, 65534);
        assert_eq!(FunctionUser::parse("65534").unwrap(), nobody);
        assert_eq!(
            FunctionUser::parse("4242:4243").unwrap(),
            FunctionUser {
                uid: 4242,
                gid: 4243
            }
        );
        assert_eq!(FunctionUser::parse("4242").unwrap().gid, 4242);
        assert_eq!(FunctionUser::parse("4242").unwrap().run_as(), "4242:4242");
        assert!(FunctionUser::parse("no-such-user-xyz").is_err());
        assert!(FunctionUser::parse("1:x").is_err());
    }

    #[test]
    fn the_shared_root_refuses_what_it_did_not_make() {
        let temp = tempfile::tempdir().unwrap();
        let root = shared_scratch_root(temp.path(), "o1").unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o711);
        assert_eq!(shared_scratch_root(temp.path(), "o1").unwrap(), root);
        std::os::unix::fs::symlink(temp.path(), temp.path().join("gantry-o2")).unwrap();
        assert!(shared_scratch_root(temp.path(), "o2").is_err());
    }
}
