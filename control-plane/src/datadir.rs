//! The data directory's permissions: the directory and everything in it belong to the
//! server's user alone (directories 0700, files 0600) whatever the umask, and the small
//! private files kept there (owner id, admin token, secret key) are written whole.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data directory and of every directory in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the data directory.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) if missing, then makes it and everything below it
/// private: directories 0700, files 0600. Symbolic links are left alone, not followed.
pub fn prepare(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir)
}

/// Sets the private modes on `path` and, for a directory, on what it holds.
fn tighten(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let wanted = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    if meta.permissions().mode() & 0o7777 != wanted {
        std::fs::set_permissions(path, Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            match tighten(&entry?.path()) {
                // A file removed meanwhile (a finishing execution's scratch) is fine.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist, and sets 0600 if it does
/// (so a database created by a library inherits private modes for its side files).
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
}

/// Replaces `path` with `contents`, mode 0600, atomically: a reader sees the old file or
/// the whole new one, never a part.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// The file in the data directory whose lock says a server uses it.
pub const LOCK_FILE: &str = "gantry.lock";

/// Held while a server uses a data directory: a second server on the same directory
/// would run the same stored work twice and mix their processes up. The kernel releases
/// it when the process ends, however it ends; it is not inherited by the processes the
/// server starts (the file is opened close-on-exec).
#[derive(Debug)]
pub struct DataDirLock {
    _held: nix::fcntl::Flock<std::fs::File>,
}

/// How long [`lock_patiently`] tries: a server killed while it was starting a process
/// leaves the lock with that child for the moment between its fork and its exec.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the lock of data directory `dir`, trying again for up to `patience` while
/// another process holds it: `Err` with [`io::ErrorKind::WouldBlock`] if it still does.
pub fn lock_patiently(dir: &Path, patience: std::time::Duration) -> io::Result<DataDirLock> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match lock(dir) {
            Err(err)
                if err.kind() == io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            taken => return taken,
        }
    }
}

/// Takes the lock of data directory `dir`, without waiting: `Err` with
/// [`io::ErrorKind::WouldBlock`] when another process holds it.
pub fn lock(dir: &Path) -> io::Result<DataDirLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(dir.join(LOCK_FILE))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(DataDirLock { _held: held }),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

/// The trimmed text of `path`, `None` when it does not exist or is blank.
pub fn read_trimmed(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|text| !text.is_empty())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_of_the_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        // A second open file description conflicts, as another process's would.
        let err = lock(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        drop(held);
        lock(dir.path()).expect("free once dropped");
    }

    #[test]
    fn a_patient_lock_waits_for_a_holder_that_lets_go_and_not_for_one_that_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let short = std::time::Duration::from_millis(100);
        let err = lock_patiently(dir.path(), short).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(held);
        });
        lock_patiently(dir.path(), LOCK_PATIENCE).expect("taken once let go");
        letting_go.join().unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn prepare_makes_the_tree_private_and_leaves_links_alone() {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("data");
        std::fs::create_dir_all(data.join("run/exec")).unwrap();
        std::fs::write(data.join("gantry.db"), "x").unwrap();
        std::fs::write(data.join("run/exec/input.json"), "{}").unwrap();
        for path in [&data, &data.join("run"), &data.join("run/exec")] {
            std::fs::set_permissions(path, Permissions::from_mode(0o755)).unwrap();
        }
        for file in ["gantry.db", "run/exec/input.json"] {
            std::fs::set_permissions(data.join(file), Permissions::from_mode(0o644)).unwrap();
        }
        let outside = temp.path().join("outside");
        std::fs::write(&outside, "y").unwrap();
        std::fs::set_permissions(&outside, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        prepare(&data).unwrap();

        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("run")), 0o700);
        assert_eq!(mode(&data.join("run/exec")), 0o700);
        assert_eq!(mode(&data.join("gantry.db")), 0o600);
        assert_eq!(mode(&data.join("run/exec/input.json")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a link's target is not touched");
    }

    #[test]
    fn prepare_creates_missing_directories_private() {
        let temp = tempfile::tempdir().unwrap();
        let data = temp.path().join("a/b");
        prepare(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("admin-token");
        write_private(&path, b"first\n").unwrap();
        assert_eq!(mode(&path), 0o600);
        write_private(&path, b"second").unwrap();
        assert_eq!(read_trimmed(&path).unwrap().as_deref(), Some("second"));
        assert_eq!(read_trimmed(&temp.path().join("none")).unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

        let db = temp.path().join("gantry.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        ensure_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
