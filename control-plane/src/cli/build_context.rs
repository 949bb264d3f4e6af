//! The build context of `gantry fn build`: a tar of the function's folder. `.dockerignore`
//! is honoured for the usual patterns (`*`, `?`, `**`, `!` exceptions, a folder
//! excludes its contents; not `[...]` classes or backslash escapes), while the Dockerfile and
//! `.dockerignore` are always sent, as docker does.

use std::io;
use std::path::Path;

/// `.dockerignore` rules: (exception, pattern split on `/`), last match wins.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| {
                let (except, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let parts: Vec<String> = pattern
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .map(str::to_owned)
                    .collect();
                (!parts.is_empty()).then_some((except, parts))
            })
            .collect();
        Ignore { rules }
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context: the last
    /// rule matching it or one of its parent folders decides.
    pub fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (except, pattern) in &self.rules {
            if (1..=parts.len()).any(|n| path_match(pattern, &parts[..n])) {
                excluded = !except;
            }
        }
        excluded
    }

    /// Whether any rule re-includes something (then excluded folders are still walked).
    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(except, _)| *except)
    }
}

/// Matches pattern segments against path segments (`**` spans any number of them).
fn path_match(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| path_match(rest, &path[skip..]))
        }
        Some((first, rest)) => path.split_first().is_some_and(|(head, tail)| {
            glob(first.as_bytes(), head.as_bytes()) && path_match(rest, tail)
        }),
    }
}

/// `*` and `?` within one path segment.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// The build context: a tar of `dir` without what `.dockerignore` excludes, plus the
/// `generated` Dockerfile (as `Dockerfile`) when there is one. Symbolic links are
/// stored as links; entries are sorted so the same folder gives the same tar.
pub fn context_tar(dir: &Path, generated: Option<&str>) -> io::Result<Vec<u8>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ignore::default(),
        Err(err) => return Err(err),
    };
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    add_dir(&mut tar, dir, "", &ignore)?;
    if let Some(text) = generated {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, "Dockerfile", text.as_bytes())?;
    }
    tar.into_inner()
}

fn add_dir(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    prefix: &str,
    ignore: &Ignore,
) -> io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let always = rel == "Dockerfile" || rel == ".dockerignore";
        let excluded = !always && ignore.excludes(&rel);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !excluded {
                tar.append_dir(&rel, entry.path())?;
            }
            if !excluded || ignore.has_exceptions() {
                add_dir(tar, &entry.path(), &format!("{rel}/"), ignore)?;
            }
        } else if !excluded {
            tar.append_path_with_name(entry.path(), &rel)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn dockerignore_patterns() {
        let ignore =
            Ignore::parse("# comment\n*.log\n/build/\nsecret?.txt\n**/cache\n!keep.log\n\n");
        for (path, excluded) in [
            ("app.log", true),
            ("keep.log", false),
            ("sub/app.log", false),
            ("build", true),
            ("build/out/x", true),
            ("secret1.txt", true),
            ("secret12.txt", false),
            ("a/b/cache/z", true),
            ("cache", true),
            ("handler.py", false),
        ] {
            assert_eq!(ignore.excludes(path), excluded, "{path}");
        }
    }

    #[test]
    fn context_tar_respects_dockerignore_and_adds_the_generated_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("handler.py"), "def handle(e, c): return e\n").unwrap();
        std::fs::write(
            root.join(".dockerignore"),
            "*.log\nnode_modules\n.dockerignore\n",
        )
        .unwrap();
        std::fs::write(root.join("debug.log"), "x").unwrap();
        std::fs::create_dir_all(root.join("node_modules/m")).unwrap();
        std::fs::write(root.join("node_modules/m/i.js"), "x").unwrap();
        std::fs::create_dir(root.join("lib")).unwrap();
        std::fs::write(root.join("lib/util.py"), "x").unwrap();
        std::os::unix::fs::symlink("handler.py", root.join("link.py")).unwrap();
        let bytes = context_tar(root, Some("FROM gantry/runtime-python\n")).unwrap();
        assert_eq!(
            names(&bytes),
            vec![
                ".dockerignore",
                "handler.py",
                "lib",
                "lib/util.py",
                "link.py",
                "Dockerfile"
            ]
        );
        let mut archive = tar::Archive::new(&bytes[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "link.py" {
                assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
            }
            if path == "Dockerfile" {
                let mut text = String::new();
                io::Read::read_to_string(&mut entry, &mut text).unwrap();
                assert_eq!(text, "FROM gantry/runtime-python\n");
            }
        }
    }
}
