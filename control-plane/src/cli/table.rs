//! Human output: aligned tables, `key: value` blocks and the small formatters they use
//! (times, durations, commands).

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A table with a header row; columns are padded to their widest cell and separated by
/// two spaces, with no trailing whitespace.
#[derive(Debug, Clone)]
pub struct Table {
    /// Header cells.
    headers: Vec<String>,
    /// Data rows, each as long as the header.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether the table has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending with `\n`.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - width(cell)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Display width of a cell (characters; good enough for the text Gantry prints).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `key: value` lines with the values aligned; pairs whose value is empty are skipped.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let keep: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
    let key_width = keep.iter().map(|(k, _)| width(k) + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in keep {
        let label = format!("{key}:");
        out.push_str(&format!("{label:<key_width$} {value}\n"));
    }
    out
}

/// A titled block of pretty JSON (`input:` and the value indented by two spaces).
pub fn json_block(title: &str, value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut out = format!("{title}:\n");
    for line in pretty.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// An optional value as a cell: empty when absent.
pub fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// A time as `2025-01-02T03:04:05Z` (UTC, whole seconds); empty when absent.
pub fn time(value: Option<DateTime<Utc>>) -> String {
    value
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Milliseconds as `850ms`, `1.25s`, `2m03s` or `1h02m`; empty when absent.
pub fn duration_ms(value: Option<u64>) -> String {
    let Some(ms) = value else {
        return String::new();
    };
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let text = format!("{:.2}", ms as f64 / 1000.0);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// `text` cut to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "VERSION", "MODE"]);
        assert!(table.is_empty());
        table.row(vec!["hello-world".into(), "3".into(), "STDIO".into()]);
        table.row(vec!["ä".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "NAME         VERSION  MODE\n\
             hello-world  3        STDIO\n\
             ä            12\n"
        );
    }

    #[test]
    fn key_values_align_and_skip_empty() {
        let text = key_values(&[
            ("id", "abc".into()),
            ("traceId", String::new()),
            ("function", "echo".into()),
        ]);
        assert_eq!(text, "id:       abc\nfunction: echo\n");
    }

    #[test]
    fn json_block_indents() {
        assert_eq!(
            json_block("output", &json!({"a": 1})),
            "output:\n  {\n    \"a\": 1\n  }\n"
        );
        assert_eq!(json_block("input", &Value::Null), "input:\n  null\n");
    }

    #[test]
    fn formatters() {
        assert_eq!(opt(Some("x")), "x");
        assert_eq!(opt(Some(3)), "3");
        assert_eq!(opt(None::<u32>), "");
        let t = DateTime::parse_from_rfc3339("2025-01-02T04:04:05.123+01:00").unwrap();
        assert_eq!(time(Some(t.with_timezone(&Utc))), "2025-01-02T03:04:05Z");
        assert_eq!(time(None), "");
        assert_eq!(duration_ms(Some(850)), "850ms");
        assert_eq!(duration_ms(Some(1250)), "1.25s");
        assert_eq!(duration_ms(Some(2000)), "2s");
        assert_eq!(duration_ms(Some(123_456)), "2m03s");
        assert_eq!(duration_ms(Some(3_720_000)), "1h02m");
        assert_eq!(duration_ms(None), "");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
