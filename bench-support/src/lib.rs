//! What the Gantry benchmark programs (`make bench-watchdog`, `make bench-control-plane`)
//! share: the interleaved-rounds statistics and their formatting, the rewriting of their
//! own section of BENCHMARKS.md, the description of the machine (and commit) a run was
//! taken on, the options read from the environment, a keep-alive HTTP/1.1 client
//! connection and helpers for the processes a bench starts, which stop with it.
//!
//! Each bench keeps its own measurements and tables; this crate is a dev-dependency
//! only, never linked into a shipped binary.

use std::path::Path;

pub mod children;
pub mod format;
pub mod http;
pub mod machine;
pub mod options;
pub mod process;
pub mod section;
pub mod stats;

pub use machine::Machine;
pub use options::Options;
pub use section::Section;

/// Errors end a run with a message; every child is stopped on the way out.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The workspace root, where BENCHMARKS.md lives.
pub fn repository_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_root_holds_the_workspace_manifest() {
        let manifest = super::repository_root().join("Cargo.toml");
        let text = std::fs::read_to_string(manifest).expect("the workspace manifest");
        assert!(text.contains("[workspace]"), "{text}");
    }
}
