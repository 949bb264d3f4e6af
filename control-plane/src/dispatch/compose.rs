//! Executions started by other executions or by the outside world: events fanned out to
//! the functions whose triggers match, failed executions re-driven from the dead-letter
//! list, and the chain tree of an execution.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::accept::Storing;
use super::{DispatchError, Dispatcher, InvokeRequest};
use crate::domain::{Execution, ExecutionError, ExecutionStatus, TraceContext, Trigger};
use crate::store::Store;

/// A function an event started, or why it did not.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTarget {
    /// The function.
    pub function: String,
    /// The execution it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<Uuid>,
    /// Why none was started (its input schema rejected the data, it is disabled or full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One node of a chain tree.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainNode {
    /// The execution.
    pub id: Uuid,
    /// Its function.
    pub function: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// Chain depth (0 at the root).
    pub depth: u32,
    /// What started it.
    pub trigger: Trigger,
    /// Its attempt.
    pub attempt: u32,
    /// Whether it is dead-lettered.
    pub dead_letter: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ExecutionError>,
    /// When a delayed one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The executions it started, oldest first.
    #[schema(no_recursion)]
    pub children: Vec<ChainNode>,
}

impl Dispatcher {
    /// `POST /v1/events`: enqueues every function with a trigger matching `event_type`
    /// (and its rule over `{type, data}`), each with `data` as input. They all join one
    /// trace: the caller's (`trace`, `trace_id` as for a call), else a new one.
    pub async fn publish(
        self: &Arc<Self>,
        event_type: &str,
        data: &Value,
        trace_id: Option<String>,
        trace: Option<TraceContext>,
    ) -> Result<Vec<EventTarget>, DispatchError> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(DispatchError::ShuttingDown);
        }
        let trace = trace.unwrap_or_else(|| TraceContext::for_execution(None, trace_id.as_deref()));
        let mut targets = Vec::new();
        for version in self.catalog.list().await? {
            let matches = version
                .spec
                .triggers
                .iter()
                .any(|trigger| trigger.matches(event_type, data));
            if !matches || !version.spec.enabled {
                continue;
            }
            let request = InvokeRequest {
                function: version.name.clone(),
                input: data.clone(),
                trace_id: trace_id.clone(),
                trace: Some(trace.clone()),
                idempotency_key: None,
                timeout_ms: None,
                trigger: Trigger::Event,
                callback_url: None,
            };
            let target = match self.submit(request).await {
                Ok(accepted) => EventTarget {
                    function: version.name,
                    execution_id: Some(accepted.execution.id),
                    error: None,
                },
                Err(err @ (DispatchError::Store(_) | DispatchError::ShuttingDown)) => {
                    return Err(err)
                }
                Err(err) => EventTarget {
                    function: version.name,
                    execution_id: None,
                    error: Some(err.to_string()),
                },
            };
            targets.push(target);
        }
        Ok(targets)
    }

    /// `POST /v1/executions/{id}:retry`: runs a failed execution again as a new
    /// execution (trigger `retry`, child of the failed one), taking the failed one off
    /// the dead-letter list. Once: a second re-drive of the same failure is refused with
    /// the first one's id. The function must be enabled, accept the input and have room
    /// in its queue, as for any call.
    pub async fn redrive(self: &Arc<Self>, id: Uuid) -> Result<Execution, DispatchError> {
        let failed = self
            .store
            .get_execution(id)
            .await?
            .ok_or(DispatchError::ExecutionNotFound(id))?;
        if !matches!(
            failed.status,
            ExecutionStatus::Error | ExecutionStatus::Timeout | ExecutionStatus::Cancelled
        ) {
            return Err(DispatchError::NotFailed(id, failed.status.as_str()));
        }
        if let Some(by) = failed.redriven_by {
            return Err(DispatchError::AlreadyRedriven { failed: id, by });
        }
        let function = self.catalog.current(&failed.function).await?;
        let request = InvokeRequest {
            function: failed.function.clone(),
            input: failed.input.clone(),
            trace_id: failed.trace_id.clone(),
            trace: None,
            idempotency_key: None,
            timeout_ms: None,
            trigger: Trigger::Retry,
            callback_url: None,
        };
        super::check_input(&function, &request).await?;
        let mut retry = Execution::queued(&function.version, request.input, Trigger::Retry);
        retry.parent_id = Some(failed.id);
        retry.root_id = Some(failed.root_id.unwrap_or(failed.id));
        retry.depth = failed.depth;
        retry.follow_trace(&failed);
        self.admit(function.spec(), &mut retry, Storing::Redrive(id))
            .await?;
        Ok(retry)
    }

    /// The tree of executions `id` started through its chains (and re-drives), a page
    /// at a time: the members of its chain tree after `after` (by id), at most `limit`.
    /// On the first page each member hangs below its parent; on later pages a member
    /// whose parent was on an earlier page hangs directly below `id` (its `parentId`
    /// says where it belongs). Built without recursion, so a deep chain costs no stack.
    pub async fn chain_tree(
        &self,
        id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<ChainPage, DispatchError> {
        let execution = self
            .store
            .get_execution(id)
            .await?
            .ok_or(DispatchError::ExecutionNotFound(id))?;
        let root = execution.root_id.unwrap_or(execution.id);
        let members = self.store.chain_tree(root, after, limit).await?;
        let next_cursor = (members.len() == limit as usize)
            .then(|| members.last().map(|member| member.id))
            .flatten();
        Ok(ChainPage {
            tree: build_tree(execution, members, after.is_none()),
            next_cursor,
        })
    }
}

/// A page of a chain tree.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainPage {
    /// The execution asked for, with this page's members below it.
    #[serde(flatten)]
    pub tree: ChainNode,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Uuid>,
}

/// Hangs the descendants of `top` among `members` (ordered by id, so a parent comes
/// before its children) below their parents. On a later page (`first_page` false), a
/// member whose parent is not among `members` hangs below `top`.
fn build_tree(top: Execution, members: Vec<Execution>, first_page: bool) -> ChainNode {
    let top_id = top.id;
    let mut kept: Vec<(Uuid, Uuid, ChainNode)> = Vec::new();
    let mut inside: HashMap<Uuid, usize> = HashMap::from([(top_id, usize::MAX)]);
    let on_page: std::collections::HashSet<Uuid> = members.iter().map(|m| m.id).collect();
    for member in members {
        if member.id == top_id {
            continue;
        }
        let parent = match member.parent_id {
            Some(parent) if inside.contains_key(&parent) => parent,
            Some(parent) if !first_page && !on_page.contains(&parent) => top_id,
            _ => continue,
        };
        inside.insert(member.id, kept.len());
        kept.push((member.id, parent, leaf(member)));
    }
    let mut root = leaf(top);
    // Children come after their parents: attach from the last one up, then put each
    // level back in id order.
    let mut nodes: HashMap<Uuid, ChainNode> = HashMap::new();
    for (id, parent, mut node) in kept.into_iter().rev() {
        if let Some(children) = nodes.remove(&id).map(|n| n.children) {
            node.children = children;
        }
        node.children.reverse();
        if parent == top_id {
            root.children.push(node);
        } else {
            nodes
                .entry(parent)
                .or_insert_with(|| placeholder(parent))
                .children
                .push(node);
        }
    }
    root.children.reverse();
    root
}

/// A node that only collects children until its own turn comes.
fn placeholder(id: Uuid) -> ChainNode {
    ChainNode {
        id,
        function: String::new(),
        status: ExecutionStatus::Queued,
        depth: 0,
        trigger: Trigger::Chain,
        attempt: 0,
        dead_letter: false,
        error: None,
        run_at: None,
        children: Vec::new(),
    }
}

fn leaf(execution: Execution) -> ChainNode {
    ChainNode {
        id: execution.id,
        function: execution.function,
        status: execution.status,
        depth: execution.depth,
        trigger: execution.trigger,
        attempt: execution.attempt,
        dead_letter: execution.dead_letter,
        error: execution.error,
        run_at: execution.run_at,
        children: Vec::new(),
    }
}
