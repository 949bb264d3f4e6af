//! The text of `gantry exec tree`: a chain tree (`GET /v1/executions/{id}/chain`)
//! drawn one execution per line, children indented under their parent with box-drawing
//! branches.

use super::table::{time, truncate};
use crate::domain::ExecutionStatus;
use crate::wire::ChainNode;

/// Longest error message shown on a tree line (the full one is in `gantry exec get`).
const MESSAGE_WIDTH: usize = 100;

/// The whole tree under `root`, one line per execution, each ending with `\n`:
///
/// ```text
/// 0190…f3 shout success (api)
/// ├─ 0190…a1 enrich success (chain)
/// │  └─ 0190…b7 store error CHAIN_DEPTH_EXCEEDED (chain): depth 17 is over the cap
/// └─ 0190…c9 notify queued, runs at 2026-11-23T09:10:00Z (chain)
/// ```
pub fn render_tree(root: &ChainNode) -> String {
    let mut text = node_line(root);
    text.push('\n');
    render_children(root, "", &mut text);
    text
}

/// Appends the children of `node`, each line starting with `prefix` (the rails of the
/// ancestors that have more children below).
fn render_children(node: &ChainNode, prefix: &str, text: &mut String) {
    let children = &node.children;
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        text.push_str(prefix);
        text.push_str(if last { "└─ " } else { "├─ " });
        text.push_str(&node_line(child));
        text.push('\n');
        let rail = if last { "   " } else { "│  " };
        render_children(child, &format!("{prefix}{rail}"), text);
    }
}

/// One execution as a tree line (without branches):
/// `ID FUNCTION STATUS[ CODE][, attempt N][, dead letter][, runs at TIME] (TRIGGER)[: MESSAGE]`.
///
/// The attempt is shown past the first only; `runs at` only while the execution is
/// still queued (a delayed chain or a scheduled retry).
pub fn node_line(node: &ChainNode) -> String {
    let mut line = format!("{} {} {}", node.id, node.function, node.status.as_str());
    if let Some(error) = &node.error {
        let code = error.code.as_str();
        if !code.is_empty() {
            line.push(' ');
            line.push_str(code);
        }
    }
    if node.attempt > 1 {
        line.push_str(&format!(", attempt {}", node.attempt));
    }
    if node.dead_letter {
        line.push_str(", dead letter");
    }
    if node.status == ExecutionStatus::Queued {
        if let Some(run_at) = node.run_at {
            line.push_str(&format!(", runs at {}", time(Some(run_at))));
        }
    }
    line.push_str(&format!(" ({})", node.trigger.as_str()));
    let message = node
        .error
        .as_ref()
        .map_or("", |error| error.message.as_str());
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if !message.is_empty() {
        line.push_str(": ");
        line.push_str(&truncate(&message, MESSAGE_WIDTH));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The short names the tests give executions.
    const LABELS: [&str; 9] = ["e1", "e2", "e3", "e4", "e5", "a", "d", "g", "r"];

    /// The execution id a test calls `label`.
    fn id(label: &str) -> String {
        let n = label.bytes().fold(0u128, |n, b| (n << 8) | u128::from(b));
        uuid::Uuid::from_u128(n).to_string()
    }

    /// `text` with the tests' ids shown as their short names.
    fn short(text: String) -> String {
        LABELS
            .iter()
            .fold(text, |text, label| text.replace(&id(label), label))
    }

    fn tree(root: &Value) -> String {
        short(render_tree(&serde_json::from_value(root.clone()).unwrap()))
    }

    fn line(node: &Value) -> String {
        short(node_line(&serde_json::from_value(node.clone()).unwrap()))
    }

    fn node(label: &str, function: &str, status: &str, trigger: &str, children: Value) -> Value {
        json!({"id": id(label), "function": function, "status": status, "depth": 0,
               "trigger": trigger, "attempt": 1, "deadLetter": false, "children": children})
    }

    #[test]
    fn a_lone_execution_is_one_line() {
        let root = node("e1", "shout", "success", "api", json!([]));
        assert_eq!(tree(&root), "e1 shout success (api)\n");
        // A newer server's fields are ignored.
        let mut newer = node("e1", "shout", "running", "api", json!([]));
        newer["fromTheFuture"] = json!({"x": 1});
        assert_eq!(tree(&newer), "e1 shout running (api)\n");
    }

    #[test]
    fn children_nest_with_branches_and_rails() {
        let mut store = node("e3", "store", "error", "chain", json!([]));
        store["error"] =
            json!({"code": "CHAIN_DEPTH_EXCEEDED", "message": "depth 17 is over the cap of 16"});
        let deep = node("e5", "audit", "success", "chain", json!([]));
        let enrich = node("e2", "enrich", "success", "chain", json!([store]));
        let mut notify = node("e4", "notify", "queued", "chain", json!([deep]));
        notify["runAt"] = json!("2026-11-23T10:10:00.250+01:00");
        let root = node("e1", "shout", "success", "api", json!([enrich, notify]));
        let text = tree(&root);
        assert!(text.ends_with('\n'), "{text:?}");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "e1 shout success (api)",
                "├─ e2 enrich success (chain)",
                "│  └─ e3 store error CHAIN_DEPTH_EXCEEDED (chain): depth 17 is over the cap of 16",
                "└─ e4 notify queued, runs at 2026-11-23T09:10:00Z (chain)",
                "   └─ e5 audit success (chain)",
            ]
        );
    }

    #[test]
    fn middle_children_keep_the_rail_for_their_own_children() {
        let grandchild = node("g", "c", "success", "chain", json!([]));
        let first = node("a", "b", "success", "chain", json!([grandchild.clone()]));
        let second = node("d", "b", "success", "chain", json!([grandchild]));
        let root = node("r", "f", "success", "event", json!([first, second]));
        let text = tree(&root);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "r f success (event)",
                "├─ a b success (chain)",
                "│  └─ g c success (chain)",
                "└─ d b success (chain)",
                "   └─ g c success (chain)",
            ]
        );
    }

    #[test]
    fn attempts_dead_letters_and_messages() {
        let mut failed = node("e1", "charge", "error", "api", json!([]));
        failed["attempt"] = json!(3);
        failed["deadLetter"] = json!(true);
        failed["error"] = json!({"code": "EXIT_CODE", "message": "exited\nwith  code 3"});
        assert_eq!(
            line(&failed),
            "e1 charge error EXIT_CODE, attempt 3, dead letter (api): exited with code 3"
        );
        let mut long = node("e2", "f", "timeout", "retry", json!([]));
        long["error"] = json!({"code": "TIMEOUT", "message": "x".repeat(300)});
        let line = line(&long);
        assert!(
            line.starts_with("e2 f timeout TIMEOUT (retry): xxx"),
            "{line}"
        );
        assert!(line.ends_with('…') && line.chars().count() < 140, "{line}");
    }

    #[test]
    fn run_at_shows_only_while_queued() {
        let mut waiting = node("e1", "f", "queued", "retry", json!([]));
        waiting["attempt"] = json!(2);
        waiting["runAt"] = json!("2026-11-23T09:10:00Z");
        assert_eq!(
            line(&waiting),
            "e1 f queued, attempt 2, runs at 2026-11-23T09:10:00Z (retry)"
        );
        waiting["status"] = json!("running");
        assert_eq!(line(&waiting), "e1 f running, attempt 2 (retry)");
    }
}
