//! What the user hands the CLI: `-d` input data (JSON, `@file`, `@-`) and manifests
//! (YAML or JSON, with `working_dir` made absolute for the process runtime).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use super::UsageError;
use crate::registry::manifest::manifest_to_json;

/// The `-d` argument as JSON text ready to send: a literal, `@PATH` (a file) or `@-`
/// (standard input, read from `stdin`); `null` when absent. The text is checked to be
/// JSON and sent as written (so large numbers keep their digits).
pub fn read_data(arg: Option<&str>, stdin: impl Read) -> Result<String> {
    let Some(arg) = arg else {
        return Ok("null".to_string());
    };
    let (text, source) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            let mut stdin = stdin;
            stdin
                .read_to_string(&mut text)
                .map_err(|err| UsageError(format!("cannot read -d @- (standard input): {err}")))?;
            (text, "standard input (-d @-)".to_string())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|err| UsageError(format!("cannot read -d @{path}: {err}")))?;
            (text, format!("the file {path} (-d @{path})"))
        }
        None => (arg.to_string(), "-d".to_string()),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(UsageError(format!(
            "{source} is empty; expected JSON (use null for none)"
        ))
        .into());
    }
    if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let hint = if arg.starts_with('@') {
            ""
        } else {
            " (strings need quotes: -d '\"text\"'; to read a file use -d @PATH)"
        };
        return Err(UsageError(format!("{source} is not valid JSON: {err}{hint}")).into());
    }
    Ok(text.to_string())
}

/// A manifest file loaded for `fn deploy`: its JSON and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The `name` field.
    pub name: String,
    /// The manifest as JSON, `working_dir` resolved.
    pub json: Value,
}

/// Reads the manifest at `path` (YAML or JSON).
pub fn load_manifest(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| UsageError(format!("cannot read {}: {err}", path.display())))?;
    let json =
        manifest_to_json(&text).map_err(|err| UsageError(format!("{}: {err}", path.display())))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    prepare_manifest(json, &dir)
        .map_err(|msg| UsageError(format!("{}: {msg}", path.display())).into())
}

/// Checks a manifest's shape and name, and resolves `working_dir` against `dir` (the
/// manifest's directory) when the function has a `command`: absent means `dir` itself,
/// relative means under `dir`; the result is absolute (canonical when it exists).
pub fn prepare_manifest(mut json: Value, dir: &Path) -> Result<Manifest, String> {
    let Some(object) = json.as_object_mut() else {
        return Err("a manifest must be a mapping of fields (name, command, ...)".to_string());
    };
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err("the manifest has no `name`; every function needs one".to_string())
        }
        Some(other) => return Err(format!("`name` must be a string, got {other}")),
    };
    let has_command = object.get("command").is_some_and(|c| !c.is_null());
    if has_command {
        let resolved = match object.get("working_dir") {
            None | Some(Value::Null) => Some(absolute(dir)),
            Some(Value::String(wd)) if Path::new(wd).is_relative() => Some(absolute(&dir.join(wd))),
            _ => None,
        };
        if let Some(resolved) = resolved {
            object.insert(
                "working_dir".to_string(),
                Value::String(resolved.to_string_lossy().into_owned()),
            );
        }
    }
    Ok(Manifest { name, json })
}

/// `path` made absolute: canonical when it exists, else joined to the current directory
/// with `.` and `..` removed.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return canonical;
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_defaults_to_null_and_accepts_literals() {
        assert_eq!(read_data(None, std::io::empty()).unwrap(), "null");
        assert_eq!(
            read_data(Some(" {\"n\": 12345678901234567890} "), std::io::empty()).unwrap(),
            "{\"n\": 12345678901234567890}"
        );
        assert_eq!(
            read_data(Some("\"hi\""), std::io::empty()).unwrap(),
            "\"hi\""
        );
    }

    #[test]
    fn data_from_stdin_and_files() {
        assert_eq!(read_data(Some("@-"), &b"[1, 2]\n"[..]).unwrap(), "[1, 2]");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.json");
        std::fs::write(&file, "{\"a\": true}\n").unwrap();
        let arg = format!("@{}", file.display());
        assert_eq!(
            read_data(Some(&arg), std::io::empty()).unwrap(),
            "{\"a\": true}"
        );
    }

    #[test]
    fn bad_data_is_a_clear_usage_error() {
        let err = read_data(Some("hello"), std::io::empty()).unwrap_err();
        assert!(err.is::<UsageError>());
        let text = err.to_string();
        assert!(text.starts_with("-d is not valid JSON"), "{text}");
        assert!(text.contains("strings need quotes"), "{text}");

        let err = read_data(Some("@-"), &b"{oops"[..]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("standard input (-d @-) is not valid JSON"));
        let err = read_data(Some("@-"), &b"  \n"[..]).unwrap_err();
        assert!(err.to_string().contains("is empty"));
        let err = read_data(Some("@/no/such/file"), std::io::empty()).unwrap_err();
        assert!(err.to_string().starts_with("cannot read -d @/no/such/file"));
    }

    #[test]
    fn working_dir_defaults_to_the_manifest_directory() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        let m = prepare_manifest(json!({"name": "f", "command": "run"}), dir.path()).unwrap();
        assert_eq!(m.name, "f");
        assert_eq!(m.json["working_dir"], json!(canonical.to_str().unwrap()));
    }

    #[test]
    fn relative_working_dir_is_under_the_manifest_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        let m = prepare_manifest(
            json!({"name": "f", "command": ["run"], "working_dir": "./src"}),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            m.json["working_dir"],
            json!(canonical.join("src").to_str().unwrap())
        );
        // A directory that does not exist (yet) still becomes absolute and clean.
        let m = prepare_manifest(
            json!({"name": "f", "command": "run", "working_dir": "a/../b"}),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            m.json["working_dir"],
            json!(canonical.join("b").to_str().unwrap())
        );
    }

    #[test]
    fn absolute_working_dir_and_image_functions_are_left_alone() {
        let dir = Path::new("/somewhere");
        let m = prepare_manifest(
            json!({"name": "f", "command": "run", "working_dir": "/srv/app"}),
            dir,
        )
        .unwrap();
        assert_eq!(m.json["working_dir"], json!("/srv/app"));
        let m = prepare_manifest(json!({"name": "f", "image": "img"}), dir).unwrap();
        assert_eq!(m.json.get("working_dir"), None);
    }

    #[test]
    fn name_is_required() {
        let dir = Path::new(".");
        let err = prepare_manifest(json!({"command": "run"}), dir).unwrap_err();
        assert!(err.contains("no `name`"), "{err}");
        let err = prepare_manifest(json!({"name": 3}), dir).unwrap_err();
        assert!(err.contains("must be a string"), "{err}");
        let err = prepare_manifest(json!(["x"]), dir).unwrap_err();
        assert!(err.contains("mapping"), "{err}");
    }

    #[test]
    fn load_manifest_reads_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gantry.yaml");
        std::fs::write(&file, "name: echo\ncommand: cat\nmode: STDIO\n").unwrap();
        let m = load_manifest(&file).unwrap();
        assert_eq!(m.name, "echo");
        assert_eq!(m.json["mode"], json!("STDIO"));
        assert!(Path::new(m.json["working_dir"].as_str().unwrap()).is_absolute());
        std::fs::write(&file, "command: cat\n").unwrap();
        let err = load_manifest(&file).unwrap_err();
        assert!(err.is::<UsageError>());
        assert!(err.to_string().contains("no `name`"), "{err}");
    }
}
