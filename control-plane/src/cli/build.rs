//! `gantry fn build DIR` and `gantry fn deploy --build`: builds a function's image from
//! its folder on the local Docker engine (Engine API through bollard, legacy builder),
//! tagged with the manifest's `image`. Without a Dockerfile one is generated from the
//! handler found (handler.py, handler.js, handler.sh or an executable `handler`), with
//! the dependency layer of [`super::build_deps`] when the folder has a dependency file.
//! The build context (a tar of the folder, `.dockerignore` applied) is made by
//! [`super::build_context`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use bollard::errors::Error as DockerError;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::json;

use super::build_context::context_tar;
use super::build_deps::{dependency_layer, parse_build_args, Installer};
use super::input::load_manifest;
use super::UsageError;

/// Where the engine listens unless `DOCKER_HOST` says otherwise.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Manifest names looked for in DIR when `-f` is not given.
const MANIFEST_NAMES: [&str; 3] = ["function.yaml", "function.yml", "function.json"];
/// The hint for a missing `gantry/runtime-*` base image.
const BASE_HINT: &str = "run `make runtime-images` first; there is no registry to pull from";

/// What a finished build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The tag (the manifest's `image`).
    pub image: String,
    /// The image ID (`sha256:...`).
    pub id: String,
}

/// `gantry fn build [DIR] [-f FILE] [--build-arg KEY=VALUE]...`: prints
/// `built IMAGE (id sha256:...)` on stdout.
pub async fn build_cmd(
    dir: Option<&Path>,
    file: Option<&Path>,
    build_args: &[String],
    json: bool,
) -> Result<()> {
    let (dir, manifest) = locate(dir, file)?;
    let built = build(&dir, &manifest, build_args).await?;
    if json {
        super::out_json(&json!({"image": built.image, "id": built.id}))
    } else {
        super::out(&format!("built {} (id {})\n", built.image, built.id))
    }
}

/// The build folder and the manifest: `-f FILE` (folder: DIR, else FILE's folder) or
/// DIR/function.yaml (DIR defaults to `.`).
pub fn locate(dir: Option<&Path>, file: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let dir = match (dir, file) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(file)) => manifest_dir(file),
        (None, None) => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(UsageError(format!("{} is not a directory", dir.display())).into());
    }
    let manifest = match file {
        Some(file) => file.to_path_buf(),
        None => MANIFEST_NAMES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                UsageError(format!(
                    "{} has no function.yaml (pass the manifest with -f FILE)",
                    dir.display()
                ))
            })?,
    };
    Ok((dir, manifest))
}

/// The folder a manifest is in (`.` for a bare file name).
pub fn manifest_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A generated Dockerfile: its text, the handler it copies and the installer it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The Dockerfile.
    pub text: String,
    /// The handler's file name.
    pub handler: &'static str,
    /// The installer of its dependency layer, if it has one.
    pub installer: Option<Installer>,
}

/// Builds `dir` into the image named by `manifest`'s `image` field with the
/// `--build-arg` values given, streaming the engine's progress to stderr.
pub async fn build(dir: &Path, manifest: &Path, build_args: &[String]) -> Result<Built> {
    let image = image_of(manifest)?;
    let build_args = parse_build_args(build_args).map_err(UsageError)?;
    let mut arg_names: Vec<&str> = build_args.keys().map(String::as_str).collect();
    arg_names.sort_unstable();
    let generated = if dir.join("Dockerfile").is_file() {
        None
    } else {
        Some(generated_dockerfile(dir, &arg_names).map_err(UsageError)?)
    };
    let dockerfile = match &generated {
        Some(generated) => generated.text.clone(),
        None => std::fs::read_to_string(dir.join("Dockerfile"))
            .map_err(|err| anyhow!("cannot read {}/Dockerfile: {err}", dir.display()))?,
    };
    let context = context_tar(dir, generated.as_ref().map(|g| g.text.as_str()))
        .map_err(|err| anyhow!("cannot pack {} for the build: {err}", dir.display()))?;
    let docker = connect().await?;
    if let Some(generated) = &generated {
        let deps = match generated.installer {
            Some(installer) => format!(", dependencies through {}", installer.name()),
            None => String::new(),
        };
        eprintln!(
            "no Dockerfile in {}: using a generated one ({} + {}{deps})",
            dir.display(),
            base_images(&generated.text).join(", "),
            generated.handler
        );
    }
    let installer = generated.as_ref().and_then(|g| g.installer);
    for base in base_images(&dockerfile) {
        if base.starts_with("gantry/") {
            match docker.inspect_image(&base).await {
                Ok(_) => {}
                Err(err) if is_not_found(&err) => {
                    return Err(anyhow!(
                        "base image {base} is not on the Docker engine: {BASE_HINT}"
                    ))
                }
                Err(err) => return Err(anyhow!("cannot inspect base image {base}: {err}")),
            }
        }
    }
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&image)
        .rm(true)
        .forcerm(true)
        .buildargs(&build_args)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut pending = String::new();
    let mut id = None;
    while let Some(item) = stream.next().await {
        let info = item.map_err(|err| step_failed(&image, installer, &engine_message(&err)))?;
        if let Some(text) = &info.stream {
            pending.push_str(text);
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                print_progress(&line);
            }
        }
        if let Some(status) = &info.status {
            print_progress(status);
        }
        let error = info
            .error_detail
            .as_ref()
            .and_then(|detail| detail.message.clone())
            .or(info.error.clone());
        if let Some(error) = error {
            print_progress(&pending);
            return Err(step_failed(&image, installer, &error));
        }
        if let Some(found) = info.aux.as_ref().and_then(|aux| aux.id.clone()) {
            id = Some(found);
        }
    }
    print_progress(&pending);
    let id = match id {
        Some(id) => id,
        None => docker
            .inspect_image(&image)
            .await
            .ok()
            .and_then(|inspect| inspect.id)
            .ok_or_else(|| anyhow!("the build of {image} finished but the image is missing"))?,
    };
    Ok(Built { image, id })
}

/// The error of a failed build; when the dependency install failed, it says so and
/// points at the installer's messages streamed above it.
fn step_failed(image: &str, installer: Option<Installer>, error: &str) -> anyhow::Error {
    match installer.filter(|i| error.contains(install_word(*i))) {
        Some(installer) => build_failed(
            image,
            &format!(
                "installing the dependencies failed ({}'s messages are above): {error}",
                installer.name()
            ),
        ),
        None => build_failed(image, error),
    }
}

/// A word of the install command that the engine's error for a failed RUN repeats.
fn install_word(installer: Installer) -> &'static str {
    match installer {
        Installer::Pip => "pip install",
        Installer::Npm => "npm ",
    }
}

/// Prints one progress line (trimmed; blank lines are dropped) on stderr.
fn print_progress(line: &str) {
    let line = strip_ansi(line);
    let line = line.trim_end();
    if !line.trim().is_empty() {
        eprintln!("{line}");
    }
}

/// `text` without ANSI escape sequences (the engine colours RUN's stderr red).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.clone().next() == Some('[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The one-line error of a failed build, with the base-image hint when the engine
/// tried to pull.
fn build_failed(image: &str, message: &str) -> anyhow::Error {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let pulling = [
        "pull access denied",
        "repository does not exist",
        "failed to resolve",
        "no such host",
        "dial tcp",
    ]
    .iter()
    .any(|needle| message.contains(needle));
    if pulling {
        anyhow!("build of {image} failed: {message} (a FROM image is missing: {BASE_HINT})")
    } else {
        anyhow!("build of {image} failed: {message}")
    }
}

/// The engine's own message for an error answer, else the error.
fn engine_message(err: &DockerError) -> String {
    match err {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connects to the local engine (`DOCKER_HOST`, else the default socket) and checks it
/// answers.
async fn connect() -> Result<Docker> {
    let address = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
    let unreachable = |err: DockerError| {
        anyhow!(
            "the Docker engine at {address} does not answer (start dockerd, or set DOCKER_HOST to its socket): {err}"
        )
    };
    let docker = Docker::connect_with_local_defaults()
        .map_err(unreachable)?
        .with_timeout(Duration::from_secs(3600));
    docker.ping().await.map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// The manifest's `image` (required: it is the tag the build produces).
pub fn image_of(manifest: &Path) -> Result<String> {
    let loaded = load_manifest(manifest)?;
    match loaded.json.get("image") {
        Some(serde_json::Value::String(image)) if !image.trim().is_empty() => {
            Ok(image.trim().to_owned())
        }
        _ => Err(UsageError(format!(
            "{} has no `image`: set `image: NAME:TAG`, the tag to build the function's image as",
            manifest.display()
        ))
        .into()),
    }
}

/// A Dockerfile for the handler found in `dir`, installing its dependencies first (see
/// [`dependency_layer`]; `arg_names` are the build arguments given); the error says what
/// was looked for.
pub fn generated_dockerfile(dir: &Path, arg_names: &[&str]) -> Result<Generated, String> {
    const HANDLERS: [(&str, &str); 4] = [
        ("handler.py", "python"),
        ("handler.js", "node"),
        ("handler.sh", "shell"),
        ("handler", "binary"),
    ];
    for (file, runtime) in HANDLERS {
        let path = dir.join(file);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if runtime == "binary" && meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "{} is not executable (chmod +x it) and there is no Dockerfile",
                path.display()
            ));
        }
        let mut text = format!("FROM gantry/runtime-{runtime}\n");
        let deps = dependency_layer(dir, runtime, arg_names);
        if let Some((layer, _)) = &deps {
            text.push_str(layer);
        }
        text.push_str(&format!("COPY {file} /app/{file}\n"));
        return Ok(Generated {
            text,
            handler: file,
            installer: deps.map(|(_, installer)| installer),
        });
    }
    Err(format!(
        "{} has no Dockerfile and no handler to generate one from \
         (handler.py, handler.js, handler.sh or an executable `handler`)",
        dir.display()
    ))
}

/// The images the Dockerfile's stages start from, without `scratch`, earlier stages
/// and `$ARG` references.
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let mut rest = words[1..].iter().filter(|w| !w.starts_with("--"));
        let Some(image) = rest.next() else { continue };
        let lower = image.to_ascii_lowercase();
        let known = stages.contains(&lower);
        if let (Some(as_word), Some(stage)) = (rest.next(), rest.next()) {
            if as_word.eq_ignore_ascii_case("AS") {
                stages.push(stage.to_ascii_lowercase());
            }
        }
        let image = (*image).to_owned();
        if lower != "scratch" && !image.contains('$') && !known && !images.contains(&image) {
            images.push(image);
        }
    }
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_generated_from_the_handler_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = generated_dockerfile(dir.path(), &[]).unwrap_err();
        assert!(err.contains("no Dockerfile and no handler"), "{err}");
        std::fs::write(dir.path().join("handler"), "x").unwrap();
        let err = generated_dockerfile(dir.path(), &[]).unwrap_err();
        assert!(err.contains("not executable"), "{err}");
        std::fs::set_permissions(dir.path().join("handler"), PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(
            generated_dockerfile(dir.path(), &[]).unwrap(),
            Generated {
                text: "FROM gantry/runtime-binary\nCOPY handler /app/handler\n".into(),
                handler: "handler",
                installer: None,
            }
        );
        for (file, runtime) in [
            ("handler.sh", "shell"),
            ("handler.js", "node"),
            ("handler.py", "python"),
        ] {
            std::fs::write(dir.path().join(file), "x").unwrap();
            let generated = generated_dockerfile(dir.path(), &[]).unwrap();
            assert_eq!(generated.handler, file);
            assert_eq!(
                generated.text,
                format!("FROM gantry/runtime-{runtime}\nCOPY {file} /app/{file}\n")
            );
        }
        // With a dependency file the install comes first, then the handler.
        std::fs::write(dir.path().join("requirements.txt"), "six\n").unwrap();
        let generated = generated_dockerfile(dir.path(), &[]).unwrap();
        assert_eq!(generated.installer, Some(Installer::Pip));
        assert!(generated
            .text
            .starts_with("FROM gantry/runtime-python\nUSER root\n"));
        assert!(generated
            .text
            .ends_with("USER 10001:10001\nCOPY handler.py /app/handler.py\n"));
    }

    #[test]
    fn base_images_skip_scratch_stages_and_args() {
        let text = "# c\nFROM --platform=linux/amd64 gantry/runtime-python AS build\nRUN x\n\
                    from build\nFROM scratch\nFROM $BASE\nFROM busybox:stable as b\nFROM gantry/runtime-python\n";
        assert_eq!(
            base_images(text),
            vec!["gantry/runtime-python", "busybox:stable"]
        );
    }

    #[test]
    fn locate_finds_the_manifest_and_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(Some(dir.path()), None).unwrap_err();
        assert!(err.is::<UsageError>(), "{err}");
        std::fs::write(dir.path().join("function.yaml"), "name: f\n").unwrap();
        let (found, manifest) = locate(Some(dir.path()), None).unwrap();
        assert_eq!(
            (found.as_path(), manifest),
            (dir.path(), dir.path().join("function.yaml"))
        );
        let (found, _) = locate(None, Some(&dir.path().join("function.yaml"))).unwrap();
        assert_eq!(found, dir.path());
        let err = image_of(&dir.path().join("function.yaml")).unwrap_err();
        assert!(
            err.is::<UsageError>() && err.to_string().contains("no `image`"),
            "{err}"
        );
        let err = build_failed(
            "t",
            "pull access denied for gantry/x,\n repository does not exist",
        );
        assert_eq!(
            err.to_string(),
            format!(
                "build of t failed: pull access denied for gantry/x, repository does not exist \
                     (a FROM image is missing: {BASE_HINT})"
            )
        );
    }
}
