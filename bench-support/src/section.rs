//! The section of BENCHMARKS.md a bench owns: the text between its begin and end markers
//! is replaced on every recorded run; without the markers the section is appended, and
//! without the file it is created.

use std::path::Path;

use crate::{repository_root, BenchResult, Options};

/// The start of BENCHMARKS.md when the file does not exist yet.
const NEW_FILE: &str =
    "# Benchmarks\n\nRun with `make bench`; figures are medians on a shared machine.\n";

/// A bench's section of BENCHMARKS.md, known by its markers.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// The line that starts the section (an HTML comment, invisible when rendered).
    pub begin: &'static str,
    /// The line that ends it.
    pub end: &'static str,
}

impl Section {
    /// `text`, the section's content, between the markers: what [`Section::rewrite`]
    /// puts in the file.
    pub fn wrap(&self, text: &str) -> String {
        format!("{}\n{text}\n{}\n", self.begin, self.end)
    }

    /// `current` with the section replaced by `section` (markers included, as made by
    /// [`Section::wrap`]); without both markers in order, `section` is appended after a
    /// blank line. Blank lines right after the old end marker are dropped.
    pub fn rewrite(&self, current: &str, section: &str) -> String {
        match (current.find(self.begin), current.find(self.end)) {
            (Some(begin), Some(end)) if begin < end => {
                let after = current[end + self.end.len()..].trim_start_matches('\n');
                format!("{}{section}{after}", &current[..begin])
            }
            _ => format!("{}\n\n{section}", current.trim_end()),
        }
    }

    /// Rewrites the section in the file at `path` (see [`Section::rewrite`]), creating
    /// the file when it does not exist.
    pub fn write(&self, path: &Path, section: &str) -> BenchResult<()> {
        let current = std::fs::read_to_string(path).unwrap_or_else(|_| NEW_FILE.into());
        std::fs::write(path, self.rewrite(&current, section))?;
        Ok(())
    }

    /// Prints `section`, then writes it into the repository's BENCHMARKS.md unless
    /// `options` say the run is not recorded.
    pub fn publish(&self, section: &str, options: Options) -> BenchResult<()> {
        println!("\n{section}");
        let path = repository_root().join("BENCHMARKS.md");
        if options.records() {
            self.write(&path, section)?;
            println!("updated {}", path.display());
        } else {
            println!("BENCHMARKS.md left alone (quick or GANTRY_BENCH_NO_WRITE run)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Section, NEW_FILE};

    const SECTION: Section = Section {
        begin: "<!-- test-bench:begin -->",
        end: "<!-- test-bench:end -->",
    };

    #[test]
    fn wrap_puts_the_text_between_the_markers() {
        assert_eq!(
            SECTION.wrap("## Numbers\n"),
            "<!-- test-bench:begin -->\n## Numbers\n\n<!-- test-bench:end -->\n"
        );
    }

    #[test]
    fn an_existing_section_is_replaced_and_the_rest_kept() {
        let current = "# Benchmarks\n\nintro\n\n<!-- test-bench:begin -->\nold\n<!-- test-bench:end -->\n\n## Notes\nkept\n";
        let section = SECTION.wrap("new");
        assert_eq!(
            SECTION.rewrite(current, &section),
            "# Benchmarks\n\nintro\n\n<!-- test-bench:begin -->\nnew\n<!-- test-bench:end -->\n## Notes\nkept\n"
        );
    }

    #[test]
    fn other_sections_are_left_alone() {
        let other = "<!-- other-bench:begin -->\nother\n<!-- other-bench:end -->\n";
        let current = format!("# B\n\n{other}\n{}", SECTION.wrap("old"));
        let updated = SECTION.rewrite(&current, &SECTION.wrap("new"));
        assert_eq!(updated, format!("# B\n\n{other}\n{}", SECTION.wrap("new")));
    }

    #[test]
    fn a_missing_section_is_appended_after_a_blank_line() {
        let section = SECTION.wrap("new");
        // Markers out of order count as missing.
        let misordered = "<!-- test-bench:end -->\n<!-- test-bench:begin -->";
        for (current, kept) in [
            ("# Benchmarks\n\nintro\n\n\n", "# Benchmarks\n\nintro"),
            (&format!("{misordered}\n"), misordered),
        ] {
            let expected = format!("{kept}\n\n{section}");
            assert_eq!(SECTION.rewrite(current, &section), expected);
        }
    }

    #[test]
    fn write_creates_then_rewrites_the_file() {
        let dir = std::env::temp_dir().join(format!(
            "gantry-bench-support-section-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("BENCHMARKS.md");
        let _ = std::fs::remove_file(&path);
        // The first write creates the file, the second finds its section and replaces it.
        for text in ["first", "second"] {
            SECTION.write(&path, &SECTION.wrap(text)).expect("write");
            let written = std::fs::read_to_string(&path).expect("read");
            let expected = format!("{}\n\n{}", NEW_FILE.trim_end(), SECTION.wrap(text));
            assert_eq!(written, expected);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
