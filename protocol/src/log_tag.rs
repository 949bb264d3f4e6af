//! How a WARM watchdog marks the output lines that belong to one execution: the line
//! starts with RS (0x1E), the execution id, US (0x1F), then the text. The control plane
//! files a marked line under that execution while it runs on the instance, and keeps
//! unmarked lines as the instance's own. A language runtime's handler server may mark
//! its lines the same way.

/// Starts a mark (ASCII record separator).
pub const START: u8 = 0x1e;
/// Ends the execution id of a mark (ASCII unit separator).
pub const END: u8 = 0x1f;
/// Longest execution id a mark may carry.
pub const MAX_ID: usize = 64;

/// `line` marked as belonging to execution `id`.
pub fn mark(id: &str, line: &[u8]) -> Vec<u8> {
    let mut marked = Vec::with_capacity(id.len() + 2 + line.len());
    marked.push(START);
    marked.extend_from_slice(id.as_bytes());
    marked.push(END);
    marked.extend_from_slice(line);
    marked
}

/// Whether `line` carries a mark already.
pub fn is_marked(line: &[u8]) -> bool {
    split(line).is_some()
}

/// The execution id of a marked `line` and its text; `None` for an unmarked line.
pub fn split(line: &[u8]) -> Option<(&str, &[u8])> {
    let rest = line.strip_prefix(&[START])?;
    let end = rest.iter().take(MAX_ID + 1).position(|b| *b == END)?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    if id.is_empty() {
        return None;
    }
    Some((id, &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_line_splits_back_into_its_id_and_text() {
        let marked = mark("0193-abc", b"hello\n");
        assert!(is_marked(&marked));
        assert_eq!(split(&marked), Some(("0193-abc", &b"hello\n"[..])));
    }

    #[test]
    fn unmarked_and_malformed_lines_have_no_id() {
        assert_eq!(split(b"plain line"), None);
        assert_eq!(split(b"\x1eno end"), None);
        assert_eq!(split(b"\x1e\x1fempty id"), None);
        let long = mark(&"x".repeat(MAX_ID + 1), b"text");
        assert_eq!(split(&long), None, "an id past MAX_ID is not a mark");
        assert_eq!(
            split(&mark(&"x".repeat(MAX_ID), b"t")).map(|(id, _)| id.len()),
            Some(MAX_ID)
        );
    }
}
