//! FILE: the payload is written to INPUT_FILE, the process runs with INPUT_FILE and
//! OUTPUT_FILE in its environment, and the result is read from OUTPUT_FILE.
//!
//! The function may be hostile and the watchdog root, so neither file is trusted: the
//! input is always created afresh (an existing entry is removed, never followed), and
//! the output is read only when it is a regular file, opened without following a link
//! or blocking on a FIFO.

use std::fs::{OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gantry_protocol::{env, ErrorCode, FunctionError};
use nix::libc;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{Invocation, LogForwarders, RunContext};
use crate::config::CommandLine;
use crate::offload::off_thread;
use crate::outcome::{self, parse_output, process_failure, Outcome};
use crate::process::{self, Pipes, Process};
use crate::supervise::{supervise, ForwardedSignals, Supervised};

/// Where one invocation's input and output live.
#[derive(Debug, Clone)]
pub struct FilePaths {
    /// Written before the process starts.
    pub input: PathBuf,
    /// Read after it exits.
    pub output: PathBuf,
}

impl FilePaths {
    /// Paths unique to invocation `sequence`, for WARM watchdogs running several at
    /// once: `/tmp/input.json` becomes `/tmp/input.7.json`.
    pub fn numbered(&self, sequence: u64) -> FilePaths {
        let number = |path: &Path| {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let name = match path.extension() {
                Some(ext) => format!("{stem}.{sequence}.{}", ext.to_string_lossy()),
                None => format!("{stem}.{sequence}"),
            };
            path.with_file_name(name)
        };
        FilePaths {
            input: number(&self.input),
            output: number(&self.output),
        }
    }
}

/// Runs `command` once for `invocation` with its input and output in `paths`.
pub async fn run(
    command: &CommandLine,
    paths: &FilePaths,
    invocation: &Invocation,
    ctx: &RunContext,
    signals: Option<&mut ForwardedSignals>,
) -> Outcome {
    let started = Instant::now();
    let outcome = run_in_files(command, paths, invocation, ctx, signals, started).await;
    let files = paths.clone();
    let _ = off_thread(move || {
        let _ = std::fs::remove_file(&files.input);
        let _ = std::fs::remove_file(&files.output);
    })
    .await;
    outcome
}

async fn run_in_files(
    command: &CommandLine,
    paths: &FilePaths,
    invocation: &Invocation,
    ctx: &RunContext,
    signals: Option<&mut ForwardedSignals>,
    started: Instant,
) -> Outcome {
    let setup_failed = |what: String| {
        Outcome::failed(
            FunctionError::new(ErrorCode::SpawnError, what),
            started.elapsed(),
        )
    };
    let (files, payload) = (paths.clone(), invocation.payload.clone());
    let prepared = off_thread(move || prepare_files(&files, &payload)).await;
    match prepared {
        Some(Ok(())) => {}
        Some(Err(problem)) => return setup_failed(problem),
        None => return setup_failed("the file preparation task failed".into()),
    }
    let input = paths.input.to_string_lossy();
    let output = paths.output.to_string_lossy();
    let mut vars = invocation.env();
    vars.extend([(env::INPUT_FILE, &*input), (env::OUTPUT_FILE, &*output)]);
    let mut process = match Process::spawn(command, &vars, Pipes::OUTPUT) {
        Ok(process) => process,
        Err(err) => return setup_failed(err.to_string()),
    };
    let attribution = invocation.attribution(ctx);
    let forwarders = LogForwarders::start(&mut process, ctx.child_stdout, attribution);
    let pgid = process.pid();
    let work = async {
        let status = process.wait().await;
        process.terminate(ctx.kill_grace).await;
        status
    };
    let supervised = supervise(
        pgid,
        work,
        Some(invocation.timeout),
        ctx.kill_grace,
        signals,
    )
    .await;
    let status = match supervised {
        Supervised::Finished(status) => status,
        Supervised::TimedOut => {
            process.terminate(ctx.kill_grace).await;
            forwarders.finish().await;
            return Outcome::failed(outcome::timeout(invocation.timeout), started.elapsed());
        }
    };
    let last_stderr = forwarders.finish().await;
    let result = if status.success() {
        let (output, limit) = (paths.output.clone(), ctx.max_output);
        let owner = process::launch().run_as.map(|run_as| run_as.uid);
        off_thread(move || read_output(&output, limit, owner))
            .await
            .unwrap_or_else(|| {
                Err(FunctionError::new(
                    ErrorCode::InvalidOutput,
                    "reading OUTPUT_FILE failed",
                ))
            })
    } else {
        Err(process_failure(status, last_stderr.as_deref()))
    };
    Outcome {
        result,
        exit_code: status.code(),
        duration: started.elapsed(),
    }
}

/// Removes whatever is at `path`, if anything.
fn remove_entry(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Clears the way and writes the input. A result left by an earlier run must never
/// pass for this one's, and whatever sits at INPUT_FILE (a link or FIFO the function
/// left, say) is removed and the file created afresh, never followed or reused.
fn prepare_files(files: &FilePaths, payload: &[u8]) -> Result<(), String> {
    remove_entry(&files.output).map_err(|err| {
        format!(
            "cannot remove the old OUTPUT_FILE {}: {err}",
            files.output.display()
        )
    })?;
    let write = || {
        remove_entry(&files.input)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(INPUT_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&files.input)?;
        // Whatever the umask: the function's user must be able to read it.
        file.set_permissions(Permissions::from_mode(INPUT_MODE))?;
        file.write_all(payload)
    };
    write().map_err(|err| format!("cannot write INPUT_FILE {}: {err}", files.input.display()))
}

/// Mode of INPUT_FILE: readable by the function whatever user it runs as.
const INPUT_MODE: u32 = 0o644;

/// Reads OUTPUT_FILE, which must be a regular file (owned by `owner` when the function
/// runs as another user): a link is not followed and a FIFO not waited on.
fn read_output(
    path: &Path,
    limit: usize,
    owner: Option<u32>,
) -> Result<Box<RawValue>, FunctionError> {
    let invalid = |message: String| FunctionError::new(ErrorCode::InvalidOutput, message);
    let shown = path.display();
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Err(invalid(format!(
                "function exited successfully but did not write OUTPUT_FILE {shown}"
            )))
        }
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return Err(invalid(format!(
                "OUTPUT_FILE {shown} is a symbolic link, not a regular file"
            )))
        }
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            return Err(invalid(format!(
                "cannot read OUTPUT_FILE {shown} ({err}); it must be readable by others (mode 0644)"
            )))
        }
        Err(err) => return Err(invalid(format!("cannot read OUTPUT_FILE {shown} ({err})"))),
    };
    let meta = file
        .metadata()
        .map_err(|err| invalid(format!("cannot inspect OUTPUT_FILE {shown} ({err})")))?;
    if !meta.is_file() {
        return Err(invalid(format!(
            "OUTPUT_FILE {shown} is not a regular file (a FIFO, socket, device or directory)"
        )));
    }
    if let Some(owner) = owner.filter(|owner| *owner != meta.uid()) {
        return Err(invalid(format!(
            "OUTPUT_FILE {shown} belongs to uid {}, not to the RUN_AS uid {owner}",
            meta.uid()
        )));
    }
    let mut bytes = Vec::new();
    if let Err(err) = file.take(limit as u64 + 1).read_to_end(&mut bytes) {
        return Err(invalid(format!("cannot read OUTPUT_FILE {shown} ({err})")));
    }
    if bytes.len() > limit {
        return Err(outcome::output_too_large(limit));
    }
    parse_output(&bytes, "OUTPUT_FILE").map(|parsed| parsed.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_paths_keep_directory_and_extension() {
        let paths = FilePaths {
            input: "/tmp/input.json".into(),
            output: "/work/out".into(),
        }
        .numbered(7);
        assert_eq!(paths.input, PathBuf::from("/tmp/input.7.json"));
        assert_eq!(paths.output, PathBuf::from("/work/out.7"));
    }
}
