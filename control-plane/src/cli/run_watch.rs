//! `gantry fn run --watch`: runs the function, then again whenever a file in the
//! manifest's folder changes. Changes are found by polling modification times and
//! sizes (no platform watcher needed), a burst of changes is debounced into one run,
//! and the walk is bounded in files and depth so a huge folder cannot stall it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Result;

use super::run_cmd::{run_once, RunArgs};

/// How often the folder is looked at.
const POLL: Duration = Duration::from_millis(400);
/// How long the folder must stay unchanged before a run starts.
const SETTLE: Duration = Duration::from_millis(300);
/// Most files looked at; past it the rest are not watched (and it is said once).
const MAX_FILES: usize = 5_000;
/// Deepest folder looked into.
const MAX_DEPTH: usize = 8;
/// Folders never looked into: installs, caches and version control.
const SKIPPED: [&str; 5] = ["node_modules", ".git", "__pycache__", "target", ".venv"];

/// What a folder looked like: each file's modification time and size.
type Snapshot = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// Runs, then re-runs on every change until Ctrl-C. A failed run is reported and the
/// watch goes on.
pub async fn watch(args: &RunArgs) -> Result<()> {
    let dir = super::build::manifest_dir(&args.file);
    let mut seen = snapshot(&dir);
    loop {
        if let Err(err) = run_once(args).await {
            eprintln!("error: {err:#}");
        }
        eprintln!("watching {} for changes (Ctrl-C stops)", dir.display());
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(POLL) => {}
            }
            let now = snapshot(&dir);
            if now != seen {
                seen = settle(&dir, now).await;
                break;
            }
        }
        eprintln!("a file changed: running again");
    }
}

/// Waits until the folder stops changing; answers its last snapshot.
async fn settle(dir: &Path, mut last: Snapshot) -> Snapshot {
    loop {
        tokio::time::sleep(SETTLE).await;
        let now = snapshot(dir);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The files under `dir` (bounded by [`MAX_FILES`] and [`MAX_DEPTH`]).
fn snapshot(dir: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    walk(dir, 0, &mut files);
    files
}

fn walk(dir: &Path, depth: usize, files: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if files.len() >= MAX_FILES {
            return;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            let skipped = SKIPPED.iter().any(|name| entry.file_name() == *name);
            if !skipped && depth < MAX_DEPTH {
                walk(&path, depth + 1, files);
            }
        } else if let Ok(meta) = entry.metadata() {
            files.insert(path, (meta.modified().ok(), meta.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_see_changes_and_skip_installs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("handler.py"), "a").unwrap();
        std::fs::create_dir(dir.path().join("node_modules")).unwrap();
        std::fs::write(dir.path().join("node_modules/x.js"), "x").unwrap();
        let first = snapshot(dir.path());
        assert_eq!(first.len(), 1, "{first:?}");
        std::fs::write(dir.path().join("node_modules/x.js"), "changed").unwrap();
        assert_eq!(snapshot(dir.path()), first);
        std::fs::write(dir.path().join("handler.py"), "ab").unwrap();
        assert_ne!(snapshot(dir.path()), first);
    }
}
