//! The dependency layer of a generated Dockerfile: `requirements.txt` (pip) for Python
//! handlers, `package.json` / `package-lock.json` (npm) for Node ones, and the build
//! arguments (`--build-arg KEY=VALUE`) that carry the installers' own settings.
//!
//! The dependency files (and a `vendor/` folder of local wheels, package tarballs or an
//! npm cache) are copied and installed before the handler, in layers of their own, so a
//! rebuild after a handler-only change reuses the installed dependencies from the
//! engine's cache.

use std::collections::HashMap;
use std::path::Path;

/// Where pip installs a Python function's dependencies (on `PYTHONPATH`).
pub const PYTHON_PACKAGES: &str = "/opt/gantry/packages";
/// The folder copied along with the dependency files: local wheels, npm tarballs, caches.
pub const VENDOR_DIR: &str = "vendor";
/// The user the runtime images run functions as (restored after installing as root).
const RUNTIME_USER: &str = "10001:10001";
/// Most `--build-arg`s one build takes.
const MAX_BUILD_ARGS: usize = 64;
/// Longest `--build-arg` value, in bytes.
const MAX_BUILD_ARG_VALUE: usize = 8 * 1024;

/// The installer a generated Dockerfile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    /// `pip install -r requirements.txt`.
    Pip,
    /// `npm ci` (with a lock file) or `npm install`.
    Npm,
}

impl Installer {
    /// The installer's name as users know it.
    pub fn name(self) -> &'static str {
        match self {
            Installer::Pip => "pip",
            Installer::Npm => "npm",
        }
    }
}

/// The dependency instructions for `runtime`'s handler in `dir` (empty when it has no
/// dependency file) and the installer they run. `arg_names` are the build arguments
/// given, declared as `ARG`s so the installer sees them in its environment (pip reads
/// `PIP_*`, npm `NPM_CONFIG_*`).
pub fn dependency_layer(
    dir: &Path,
    runtime: &str,
    arg_names: &[&str],
) -> Option<(String, Installer)> {
    let (files, install, installer): (Vec<&str>, String, Installer) = match runtime {
        "python" if has_requirements(&dir.join("requirements.txt")) => (
            vec!["requirements.txt"],
            format!(
                "python3 -m pip install --no-cache-dir --disable-pip-version-check \
                 --no-warn-script-location --root-user-action=ignore \
                 --target {PYTHON_PACKAGES} -r requirements.txt"
            ),
            Installer::Pip,
        ),
        "node" if dir.join("package.json").is_file() => {
            if dir.join("package-lock.json").is_file() {
                (
                    vec!["package.json", "package-lock.json"],
                    "npm ci --omit=dev --no-audit --no-fund".to_owned(),
                    Installer::Npm,
                )
            } else {
                (
                    vec!["package.json"],
                    "npm install --omit=dev --no-audit --no-fund".to_owned(),
                    Installer::Npm,
                )
            }
        }
        _ => return None,
    };
    let mut text = String::from("USER root\n");
    text.push_str(&format!("COPY {} /app/\n", files.join(" ")));
    if dir.join(VENDOR_DIR).is_dir() {
        text.push_str(&format!("COPY {VENDOR_DIR} /app/{VENDOR_DIR}\n"));
    }
    for name in arg_names {
        text.push_str(&format!("ARG {name}\n"));
    }
    text.push_str(&format!("RUN {install}\n"));
    if installer == Installer::Pip {
        text.push_str(&format!("ENV PYTHONPATH={PYTHON_PACKAGES}\n"));
    }
    text.push_str(&format!("USER {RUNTIME_USER}\n"));
    Some((text, installer))
}

/// Whether `path` is a requirements file with something in it besides comments (pip
/// refuses to run without a requirement).
fn has_requirements(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|line| !line.is_empty() && !line.starts_with('#'))
    })
}

/// Parses `--build-arg` values: `KEY=VALUE`, or `KEY` alone to take the value from this
/// environment (as `docker build` does). Keys are shell-style names.
pub fn parse_build_args(args: &[String]) -> Result<HashMap<String, String>, String> {
    if args.len() > MAX_BUILD_ARGS {
        return Err(format!(
            "at most {MAX_BUILD_ARGS} --build-arg values, got {}",
            args.len()
        ));
    }
    let mut parsed = HashMap::new();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((key, value)) => (key, value.to_owned()),
            None => match std::env::var(arg) {
                Ok(value) => (arg.as_str(), value),
                Err(_) => {
                    return Err(format!(
                        "--build-arg {arg:?}: expected KEY=VALUE (or KEY set in the environment)"
                    ))
                }
            },
        };
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "--build-arg {key:?}: the name must be letters, digits and _ (not starting with a digit)"
            ));
        }
        if value.len() > MAX_BUILD_ARG_VALUE || value.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "--build-arg {key}: the value must be one line of at most {MAX_BUILD_ARG_VALUE} bytes"
            ));
        }
        if parsed.insert(key.to_owned(), value).is_some() {
            return Err(format!("--build-arg {key} is given twice"));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dependencies_get_their_own_layer() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dependency_layer(dir.path(), "python", &[]), None);
        std::fs::write(dir.path().join("requirements.txt"), "# none yet\n\n").unwrap();
        assert_eq!(dependency_layer(dir.path(), "python", &[]), None);
        std::fs::write(dir.path().join("requirements.txt"), "six\n").unwrap();
        assert_eq!(dependency_layer(dir.path(), "node", &[]), None);
        let (text, installer) = dependency_layer(dir.path(), "python", &["PIP_INDEX_URL"]).unwrap();
        assert_eq!(installer, Installer::Pip);
        assert!(text.starts_with("USER root\nCOPY requirements.txt /app/\nARG PIP_INDEX_URL\nRUN python3 -m pip install "), "{text}");
        assert!(
            text.contains("--target /opt/gantry/packages -r requirements.txt\n"),
            "{text}"
        );
        assert!(
            text.ends_with("ENV PYTHONPATH=/opt/gantry/packages\nUSER 10001:10001\n"),
            "{text}"
        );
        std::fs::create_dir(dir.path().join("vendor")).unwrap();
        let (text, _) = dependency_layer(dir.path(), "python", &[]).unwrap();
        assert!(
            text.contains("COPY requirements.txt /app/\nCOPY vendor /app/vendor\nRUN "),
            "{text}"
        );
    }

    #[test]
    fn node_dependencies_use_npm_ci_with_a_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        let (text, installer) = dependency_layer(dir.path(), "node", &[]).unwrap();
        assert_eq!(installer, Installer::Npm);
        assert!(
            text.contains("COPY package.json /app/\nRUN npm install --omit=dev"),
            "{text}"
        );
        std::fs::write(dir.path().join("package-lock.json"), "{}").unwrap();
        let (text, _) = dependency_layer(dir.path(), "node", &["NPM_CONFIG_OFFLINE"]).unwrap();
        assert_eq!(
            text,
            "USER root\nCOPY package.json package-lock.json /app/\nARG NPM_CONFIG_OFFLINE\n\
             RUN npm ci --omit=dev --no-audit --no-fund\nUSER 10001:10001\n"
        );
    }

    #[test]
    fn build_args_are_checked() {
        let args = |list: &[&str]| {
            parse_build_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let parsed = args(&["PIP_NO_INDEX=1", "PIP_FIND_LINKS=/app/vendor", "EMPTY="]).unwrap();
        assert_eq!(parsed["PIP_NO_INDEX"], "1");
        assert_eq!(parsed["EMPTY"], "");
        for (bad, says) in [
            (&["1X=2"][..], "the name must be"),
            (&["A-B=2"], "the name must be"),
            (&["=2"], "the name must be"),
            (&["A=1", "A=2"], "given twice"),
            (&["A=x\ny"], "one line"),
            (&["GANTRY_TEST_SURELY_UNSET_VARIABLE"], "expected KEY=VALUE"),
        ] {
            let err = args(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let many: Vec<String> = (0..=MAX_BUILD_ARGS).map(|i| format!("A{i}=1")).collect();
        assert!(parse_build_args(&many).unwrap_err().contains("at most"));
    }
}
