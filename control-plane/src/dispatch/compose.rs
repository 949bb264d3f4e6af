//! Executions started by other executions or by the outside world: events fanned out to
//! the functions whose triggers match, failed executions re-driven from the dead-letter
//! list, and the chain tree of an execution.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{DispatchError, Dispatcher, InvokeRequest};
use crate::store::{Execution, ExecutionError, ExecutionStatus, Trigger};

/// A function an event started, or why it did not.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    pub children: Vec<ChainNode>,
}

impl Dispatcher {
    /// `POST /v1/events`: enqueues every function with a trigger matching `event_type`
    /// (and its rule over `{type, data}`), each with `data` as input.
    pub async fn publish(
        self: &Arc<Self>,
        event_type: &str,
        data: &Value,
    ) -> Result<Vec<EventTarget>, DispatchError> {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(DispatchError::ShuttingDown);
        }
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
                trace_id: None,
                idempotency_key: None,
                timeout_ms: None,
                trigger: Trigger::Event,
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
    /// the dead-letter list.
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
        let function = self.catalog.current(&failed.function).await?;
        let mut retry = Execution::queued(&function.version, failed.input.clone(), Trigger::Retry);
        retry.parent_id = Some(failed.id);
        retry.root_id = Some(failed.root_id.unwrap_or(failed.id));
        retry.depth = failed.depth;
        retry.trace_id = failed.trace_id.clone();
        if !self.store.redrive(id, &retry).await? {
            return Err(DispatchError::NotFailed(id, failed.status.as_str()));
        }
        self.enqueue_stored(&retry.function, retry.id).await;
        Ok(retry)
    }

    /// The tree of executions `id` started through its chains (and re-drives).
    pub async fn chain_tree(&self, id: Uuid) -> Result<ChainNode, DispatchError> {
        let execution = self
            .store
            .get_execution(id)
            .await?
            .ok_or(DispatchError::ExecutionNotFound(id))?;
        let root = execution.root_id.unwrap_or(execution.id);
        let mut by_parent: HashMap<Uuid, Vec<Execution>> = HashMap::new();
        for member in self.store.chain_tree(root).await? {
            if let Some(parent) = member.parent_id {
                by_parent.entry(parent).or_default().push(member);
            }
        }
        Ok(node(execution, &mut by_parent))
    }
}

fn node(execution: Execution, by_parent: &mut HashMap<Uuid, Vec<Execution>>) -> ChainNode {
    let children = by_parent.remove(&execution.id).unwrap_or_default();
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
        children: children
            .into_iter()
            .map(|child| node(child, by_parent))
            .collect(),
    }
}
