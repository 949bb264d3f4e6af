//! `gantry fn init NAME --runtime R [--mode M] [DIR]`: writes a new function's folder
//! (handler, function.yaml with an input_schema, a dependency file where the language
//! has one, a test in the language's own runner, a README) from the templates in
//! `templates/`, without ever overwriting a file, and prints the commands that test,
//! build, deploy and call it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::{Args, ValueEnum};

use super::{out, UsageError};
use crate::registry::manifest::is_valid_name;

/// Longest image tag `--image` takes.
const MAX_IMAGE_LEN: usize = 255;

/// `gantry fn init`
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The function's name (lowercase letters, digits and dashes, at most 63).
    pub name: String,
    /// The language of the handler (the gantry/runtime-* image it runs on).
    #[arg(long, value_enum)]
    pub runtime: InitRuntime,
    /// How the watchdog talks to the handler: one process per call (STDIO), an HTTP
    /// server per call (HTTP), or a pool of long-lived HTTP servers (WARM). HTTP and
    /// WARM are for python and node.
    #[arg(long, value_enum, default_value = "STDIO")]
    pub mode: InitMode,
    /// The image tag in function.yaml. Default: functions/NAME:latest.
    #[arg(long, value_name = "TAG")]
    pub image: Option<String>,
    /// The folder to write (created if missing). Default: ./NAME.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The languages `fn init` writes handlers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitRuntime {
    /// handler.py, `def handle(event, context)` (gantry/runtime-python).
    Python,
    /// handler.js, `module.exports = async (event, context) => ...` (gantry/runtime-node).
    Node,
    /// handler.sh: input on stdin, output on stdout (gantry/runtime-shell).
    Shell,
    /// handler.rs built into a static executable (gantry/runtime-binary).
    Binary,
}

/// The modes `fn init` writes manifests for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitMode {
    /// One process per call: input on stdin, output on stdout.
    #[value(name = "STDIO", alias = "stdio")]
    Stdio,
    /// The runtime serves the handler over HTTP for one call.
    #[value(name = "HTTP", alias = "http")]
    Http,
    /// A warm pool: long-lived HTTP runtimes serve many calls.
    #[value(name = "WARM", alias = "warm")]
    Warm,
}

impl InitMode {
    fn label(self) -> &'static str {
        match self {
            InitMode::Stdio => "STDIO",
            InitMode::Http => "HTTP",
            InitMode::Warm => "WARM",
        }
    }
}

/// The template files of each runtime: the runtime, the file's name, its text (with
/// `__NAME__` for the function's name) and whether it is executable.
const TEMPLATES: [(InitRuntime, &str, &str, bool); 12] = [
    (
        InitRuntime::Python,
        "handler.py",
        include_str!("templates/handler.py"),
        false,
    ),
    (
        InitRuntime::Python,
        "test_handler.py",
        include_str!("templates/test_handler.py"),
        false,
    ),
    (
        InitRuntime::Python,
        "requirements.txt",
        include_str!("templates/requirements.txt"),
        false,
    ),
    (
        InitRuntime::Node,
        "handler.js",
        include_str!("templates/handler.js"),
        false,
    ),
    (
        InitRuntime::Node,
        "handler.test.js",
        include_str!("templates/handler.test.js"),
        false,
    ),
    (
        InitRuntime::Node,
        "package.json",
        include_str!("templates/package.json"),
        false,
    ),
    (
        InitRuntime::Node,
        "package-lock.json",
        include_str!("templates/package-lock.json"),
        false,
    ),
    (
        InitRuntime::Shell,
        "handler.sh",
        include_str!("templates/handler.sh"),
        true,
    ),
    (
        InitRuntime::Shell,
        "test_handler.sh",
        include_str!("templates/test_handler.sh"),
        true,
    ),
    (
        InitRuntime::Binary,
        "handler.rs",
        include_str!("templates/handler.rs"),
        false,
    ),
    (
        InitRuntime::Binary,
        "build.sh",
        include_str!("templates/build.sh"),
        true,
    ),
    (
        InitRuntime::Binary,
        "test.sh",
        include_str!("templates/test.sh"),
        true,
    ),
];

/// One file to write: its name, its text and whether it is executable.
type File = (&'static str, String, bool);

/// Writes the folder and prints what was made and the next commands.
pub fn init(args: &InitArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let files = files(args).map_err(UsageError)?;
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _, _)| dir.join(name))
        .filter(|path| path.symlink_metadata().is_ok())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(UsageError(format!(
            "not overwriting {} (pick another DIR, or move them away)",
            existing.join(", ")
        ))
        .into());
    }
    if dir.exists() && !dir.is_dir() {
        return Err(UsageError(format!("{} is not a directory", dir.display())).into());
    }
    std::fs::create_dir_all(&dir)
        .map_err(|err| anyhow!("cannot create {}: {err}", dir.display()))?;
    for (name, text, executable) in &files {
        write_new(&dir.join(name), text, *executable)?;
    }
    let names: Vec<&str> = files.iter().map(|(name, _, _)| *name).collect();
    out(&next_steps(args, &dir, &names))
}

/// Creates `path` with `text`, failing if anything is there (no overwrite, even racing).
fn write_new(path: &Path, text: &str, executable: bool) -> Result<()> {
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|err| anyhow!("cannot create {}: {err}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|err| anyhow!("cannot write {}: {err}", path.display()))
}

/// The files of a new function, or why the arguments cannot make one.
pub fn files(args: &InitArgs) -> Result<Vec<File>, String> {
    if !is_valid_name(&args.name) {
        return Err(format!(
            "{:?} is not a function name: lowercase letters, digits and dashes, at most 63, \
             not starting or ending with a dash",
            args.name
        ));
    }
    let image = match &args.image {
        Some(image) => {
            let image = image.trim();
            if image.is_empty()
                || image.len() > MAX_IMAGE_LEN
                || image.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "--image {image:?}: expected a tag like NAME:TAG (no spaces, at most {MAX_IMAGE_LEN} characters)"
                ));
            }
            image.to_owned()
        }
        None => format!("functions/{}:latest", args.name),
    };
    let one_shot = matches!(args.runtime, InitRuntime::Shell | InitRuntime::Binary);
    if one_shot && args.mode != InitMode::Stdio {
        return Err(format!(
            "--runtime {} runs its handler once per call (STDIO); HTTP and WARM need a \
             handler server: use --runtime python or node for them",
            runtime_label(args.runtime)
        ));
    }
    let fill = |text: &str| text.replace("__NAME__", &args.name);
    let mut files: Vec<File> = TEMPLATES
        .iter()
        .filter(|(runtime, ..)| *runtime == args.runtime)
        .map(|(_, name, text, executable)| (*name, fill(text), *executable))
        .collect();
    files.push(("function.yaml", manifest(args, &image), false));
    let names: Vec<&str> = files.iter().map(|(name, _, _)| *name).collect();
    let readme = readme(args, &names);
    files.push((".dockerignore", dockerignore(args.runtime), false));
    files.push(("README.md", readme, false));
    Ok(files)
}

fn runtime_label(runtime: InitRuntime) -> &'static str {
    match runtime {
        InitRuntime::Python => "python",
        InitRuntime::Node => "node",
        InitRuntime::Shell => "shell",
        InitRuntime::Binary => "binary",
    }
}

/// function.yaml: the image, the mode (WARM is HTTP with a `warm` pool) and the schemas.
fn manifest(args: &InitArgs, image: &str) -> String {
    let (mode, warm) = match args.mode {
        InitMode::Stdio => ("STDIO", ""),
        InitMode::Http => ("HTTP", ""),
        InitMode::Warm => (
            "HTTP",
            "warm:                   # long-lived runtimes serve many calls\n  \
             min_instances: 0\n  max_instances: 2\n  concurrency_per_instance: 4\n  \
             idle_timeout_ms: 60000\n",
        ),
    };
    include_str!("templates/function.yaml")
        .replace("__NAME__", &args.name)
        .replace("__RUNTIME__", runtime_label(args.runtime))
        .replace("__MODE_VALUE__", mode)
        .replace("__MODE__", args.mode.label())
        .replace("__IMAGE__", image)
        .replace("__WARM__", warm)
}

/// The command that runs the handler's tests, from its folder.
fn test_command(runtime: InitRuntime) -> &'static str {
    match runtime {
        InitRuntime::Python => "python3 -m unittest",
        InitRuntime::Node => "npm test",
        InitRuntime::Shell => "sh test_handler.sh",
        InitRuntime::Binary => "sh test.sh",
    }
}

/// What the build leaves out of the context: tests, caches and local installs.
fn dockerignore(runtime: InitRuntime) -> String {
    let extra = match runtime {
        InitRuntime::Python => "__pycache__\n*.pyc\n",
        InitRuntime::Node => "node_modules\n",
        InitRuntime::Shell => "",
        InitRuntime::Binary => "handler-tests\n",
    };
    format!("README.md\n{extra}")
}

fn readme(args: &InitArgs, names: &[&str]) -> String {
    let describe = |name: &str| match name {
        "handler.py" | "handler.js" | "handler.sh" | "handler.rs" => {
            "the handler (its entry point is at the top)"
        }
        "test_handler.py" | "handler.test.js" | "test_handler.sh" => "the handler's tests",
        "test.sh" => "runs the tests in handler.rs with Rust's test harness",
        "build.sh" => "builds ./handler, the static executable the image runs",
        "requirements.txt" => "Python dependencies (pip), installed by the build",
        "package.json" | "package-lock.json" => {
            "Node.js dependencies (npm ci), installed by the build"
        }
        "function.yaml" => "the manifest: name, image, mode, input and output schemas",
        _ => "",
    };
    let files: Vec<String> = names
        .iter()
        .map(|name| format!("| `{name}` | {} |", describe(name)))
        .collect();
    let build_step = match args.runtime {
        InitRuntime::Binary => "    sh build.sh\n",
        _ => "",
    };
    let deps = match args.runtime {
        InitRuntime::Python => {
            "Dependencies: add them to requirements.txt. `gantry fn build` installs them with pip \
             in a layer of their own, reused while requirements.txt and vendor/ do not change. \
             Wheels kept in vendor/ install without an index (`--find-links vendor`); pip \
             settings go in as `--build-arg PIP_INDEX_URL=...`."
        }
        InitRuntime::Node => {
            "Dependencies: `npm install PACKAGE` here updates package.json and package-lock.json; \
             `gantry fn build` runs `npm ci` in a layer of its own, reused while they and vendor/ \
             do not change. npm settings go in as `--build-arg NPM_CONFIG_REGISTRY=...`."
        }
        InitRuntime::Shell => "The image has busybox: its applets are what the handler can use.",
        InitRuntime::Binary => {
            "The image has nothing but the watchdog: the handler must be static (build.sh \
             makes a musl executable)."
        }
    };
    include_str!("templates/README.md")
        .replace("__NAME__", &args.name)
        .replace("__RUNTIME__", runtime_label(args.runtime))
        .replace("__MODE__", args.mode.label())
        .replace("__FILES__", &files.join("\n"))
        .replace("__TEST__", test_command(args.runtime))
        .replace("__BUILD_STEP__", build_step)
        .replace("__DEPS__", deps)
}

/// What `fn init` prints: the folder, its files and the commands to go on with.
fn next_steps(args: &InitArgs, dir: &Path, names: &[&str]) -> String {
    let dir_text = dir.display().to_string();
    let manifest = dir.join("function.yaml").display().to_string();
    let input = r#"'{"name":"Ada"}'"#;
    let mut text = format!(
        "created {dir_text} ({} runtime, {} mode): {}\nnext:\n  (cd {dir_text} && {})\n",
        runtime_label(args.runtime),
        args.mode.label(),
        names.join(", "),
        test_command(args.runtime),
    );
    if args.runtime == InitRuntime::Binary {
        text.push_str(&format!("  sh {dir_text}/build.sh\n"));
    }
    text.push_str(&format!(
        "  gantry fn run -f {manifest} --build -d {input}\n  \
         gantry fn deploy --build -f {manifest}\n  gantry fn invoke {} -d {input}\n",
        args.name
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(runtime: InitRuntime, mode: InitMode) -> InitArgs {
        InitArgs {
            name: "hello".into(),
            runtime,
            mode,
            image: None,
            dir: None,
        }
    }

    fn manifest_of(files: &[File]) -> crate::registry::FunctionSpec {
        let (_, text, _) = files
            .iter()
            .find(|(n, _, _)| *n == "function.yaml")
            .unwrap();
        crate::registry::parse_manifest(text).unwrap()
    }

    #[test]
    fn every_runtime_gets_a_handler_a_test_a_manifest_and_a_readme() {
        for runtime in [
            InitRuntime::Python,
            InitRuntime::Node,
            InitRuntime::Shell,
            InitRuntime::Binary,
        ] {
            let files = files(&args(runtime, InitMode::Stdio)).unwrap();
            let names: Vec<&str> = files.iter().map(|(n, _, _)| *n).collect();
            assert!(names.iter().any(|n| n.starts_with("handler.")), "{names:?}");
            assert!(names.iter().any(|n| n.contains("test")), "{names:?}");
            assert!(names.contains(&"function.yaml") && names.contains(&"README.md"));
            for (name, text, _) in &files {
                for mark in ["__NAME__", "__MODE", "__RUNTIME__", "__IMAGE__", "__WARM__"] {
                    assert!(!text.contains(mark), "{name} still has {mark}: {text}");
                }
                for mark in ["__FILES__", "__TEST__", "__DEPS__", "__BUILD_STEP__"] {
                    assert!(!text.contains(mark), "{name} still has {mark}: {text}");
                }
            }
            let spec = manifest_of(&files);
            assert_eq!(spec.name, "hello");
            assert_eq!(spec.image.as_deref(), Some("functions/hello:latest"));
            assert!(spec.input_schema.is_some());
        }
    }

    #[test]
    fn modes_and_bad_arguments() {
        let files = files(&args(InitRuntime::Node, InitMode::Warm)).unwrap();
        let spec = manifest_of(&files);
        assert_eq!(spec.mode, crate::registry::Mode::Http);
        assert!(spec.warm.is_some());
        let err = super::files(&args(InitRuntime::Shell, InitMode::Http)).unwrap_err();
        assert!(err.contains("use --runtime python or node"), "{err}");
        let mut bad = args(InitRuntime::Python, InitMode::Stdio);
        bad.name = "Bad_Name".into();
        assert!(super::files(&bad)
            .unwrap_err()
            .contains("not a function name"));
        bad.name = "ok".into();
        bad.image = Some("has space:1".into());
        assert!(super::files(&bad).unwrap_err().contains("--image"));
    }
}
