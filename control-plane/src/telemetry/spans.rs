//! The spans of an execution, recorded by the dispatcher and the API once each piece of
//! work is done. Each hook returns at once when no span is exported.

use std::borrow::Cow;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::otlp::Pipeline;
use super::{execution_span_id, request_span_id, trace_id, PIPELINE};
use crate::domain::{
    Execution, ExecutionError, ExecutionStatus, Finished, TraceContext, Trigger, SAMPLED,
};

/// Where an execution's spans hang.
struct Lineage {
    /// Its trace.
    trace: TraceId,
    /// The parent of its `gantry.execution` span (`None`: it is a root).
    parent: Option<SpanId>,
    /// Whether its trace is recorded: a caller whose `traceparent` says "not sampled"
    /// gets no spans (the parent decides, as OpenTelemetry's default sampler does).
    sampled: bool,
}

/// The lineage of `execution`: the trace of its stored `traceparent` (else of its
/// `trace_id`), under its parent execution's span (a chained child, a re-drive), or
/// under the request that created it. The execution's own span id is derived from its
/// id, the same one its `traceparent` names, so the function's own spans nest under it.
fn lineage(execution: &Execution) -> Lineage {
    let stored = execution.trace_context();
    let trace = match (&stored, &execution.trace_id) {
        (Some(context), _) => TraceId::from_bytes(context.trace_id),
        (None, Some(text)) => trace_id(text),
        (None, None) => trace_id(&execution.id.simple().to_string()),
    };
    let parent = match (execution.parent_id, execution.trigger) {
        (Some(parent), _) => Some(execution_span_id(parent)),
        (None, Trigger::Api) => Some(request_span_id(execution.id)),
        (None, _) => None,
    };
    let sampled = stored.is_none_or(|context| context.flags & SAMPLED != 0);
    Lineage {
        trace,
        parent,
        sampled,
    }
}

/// The pipeline and `execution`'s lineage when its spans are recorded: spans are
/// exported and its trace is sampled.
fn recording(execution: &Execution) -> Option<(&'static Pipeline, Lineage)> {
    let pipeline = PIPELINE.get()?;
    let lineage = lineage(execution);
    lineage.sampled.then_some((pipeline, lineage))
}

/// One finished span, before it becomes the SDK's [`SpanData`].
struct Piece {
    name: &'static str,
    kind: SpanKind,
    trace: TraceId,
    /// `None`: a fresh random id.
    id: Option<SpanId>,
    parent: Option<SpanId>,
    /// Whether the parent is another service's span.
    remote_parent: bool,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

impl Piece {
    /// A span of `execution`'s own work (of trace `trace`), under its
    /// `gantry.execution` span.
    fn of(
        name: &'static str,
        execution: &Execution,
        trace: TraceId,
        start: SystemTime,
        end: SystemTime,
    ) -> Piece {
        Piece {
            name,
            kind: SpanKind::Internal,
            trace,
            id: None,
            parent: Some(execution_span_id(execution.id)),
            remote_parent: false,
            start,
            end,
            attributes: identity(execution),
            error: None,
        }
    }

    fn with(mut self, attributes: impl IntoIterator<Item = KeyValue>) -> Piece {
        self.attributes.extend(attributes);
        self
    }

    /// Marks the outcome: status and, on failure, the error code.
    fn outcome(mut self, status: ExecutionStatus, error: Option<&ExecutionError>) -> Piece {
        self.attributes
            .push(KeyValue::new("gantry.execution.status", status.as_str()));
        if let Some(error) = error {
            self.attributes.push(KeyValue::new(
                "gantry.error.code",
                error.code.as_str().to_owned(),
            ));
        }
        if status != ExecutionStatus::Success {
            let code = error.map_or(status.as_str(), |error| error.code.as_str());
            self.error = Some(code.to_owned());
        }
        self
    }

    fn send(self, pipeline: &Pipeline) {
        let id = self.id.unwrap_or_else(random_span_id);
        let status = match self.error {
            Some(code) => Status::error(code),
            None => Status::Ok,
        };
        pipeline.submit(SpanData {
            span_context: SpanContext::new(
                self.trace,
                id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: self.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: self.remote_parent,
            span_kind: self.kind,
            name: Cow::Borrowed(self.name),
            start_time: self.start,
            end_time: self.end.max(self.start),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: pipeline.scope.clone(),
        });
    }
}

fn random_span_id() -> SpanId {
    loop {
        let id = SpanId::from_bytes(rand::random());
        if id != SpanId::INVALID {
            return id;
        }
    }
}

/// What names an execution on each of its spans.
fn identity(execution: &Execution) -> Vec<KeyValue> {
    vec![
        KeyValue::new("gantry.function", execution.function.clone()),
        KeyValue::new("gantry.function.version", i64::from(execution.version)),
        KeyValue::new("gantry.execution.id", execution.id.to_string()),
        KeyValue::new("gantry.execution.attempt", i64::from(execution.attempt)),
    ]
}

fn instance(id: &str, cold: bool) -> [KeyValue; 2] {
    [
        KeyValue::new("gantry.instance.id", id.to_owned()),
        KeyValue::new("gantry.cold_start", cold),
    ]
}

fn time(at: DateTime<Utc>) -> SystemTime {
    at.into()
}

/// The `:invoke` or `:enqueue` request (`action`) begun at `since` that created (or
/// answered) `execution`: under the span of the caller's `traceparent` (`caller`) when
/// the execution is in that trace, else the root of its trace (an idempotent replay
/// answers an execution of an earlier request's trace).
pub fn request(
    since: Option<SystemTime>,
    action: &'static str,
    execution: &Execution,
    caller: Option<&TraceContext>,
) {
    let Some(start) = since else {
        return;
    };
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let name = if action == "invoke" {
        "gantry.invoke"
    } else {
        "gantry.enqueue"
    };
    let caller = caller
        .filter(|context| TraceId::from_bytes(context.trace_id) == lineage.trace)
        .map(|context| SpanId::from_bytes(context.parent_span_id));
    let mut piece = Piece {
        kind: SpanKind::Server,
        id: Some(request_span_id(execution.id)),
        parent: caller,
        remote_parent: caller.is_some(),
        ..Piece::of(name, execution, lineage.trace, start, SystemTime::now())
    };
    if execution.status.is_terminal() {
        piece = piece.outcome(execution.status, execution.error.as_ref());
    }
    piece.send(pipeline);
}

/// `execution` was admitted and stored, from `since`.
pub fn admitted(since: Option<SystemTime>, execution: &Execution) {
    let Some(start) = since else {
        return;
    };
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    Piece::of(
        "gantry.admission",
        execution,
        lineage.trace,
        start,
        SystemTime::now(),
    )
    .send(pipeline);
}

/// This node claimed `execution` (the claim began at `since`): its wait in the queue
/// and the claim itself.
pub fn claimed(since: Option<SystemTime>, execution: &Execution) {
    let Some(claim) = since else {
        return;
    };
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let queued = time(execution.run_at.unwrap_or(execution.created_at));
    Piece::of("gantry.queue_wait", execution, lineage.trace, queued, claim).send(pipeline);
    let owner = execution.owner.clone().unwrap_or_default();
    Piece::of(
        "gantry.claim",
        execution,
        lineage.trace,
        claim,
        SystemTime::now(),
    )
    .with([KeyValue::new("gantry.node", owner)])
    .send(pipeline);
}

/// `execution` got instance `id` (`cold`: started for it), asked for at `since` (`None`:
/// it came with one). An idle warm instance taken at once is no start of anything: its
/// id and `cold_start=false` are on the run's span instead.
pub fn instance_started(since: Option<SystemTime>, execution: &Execution, id: &str, cold: bool) {
    if since.is_none() && !cold {
        return;
    }
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let start = since.unwrap_or_else(|| time(execution.created_at));
    Piece::of(
        "gantry.instance.start",
        execution,
        lineage.trace,
        start,
        SystemTime::now(),
    )
    .with(instance(id, cold))
    .send(pipeline);
}

/// An attempt of `execution` ran (from its start) and ended as `finished`.
pub fn ran(execution: &Execution, finished: &Finished) {
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let end = time(finished.finished_at);
    let start = execution.started_at.map_or(end, time);
    let instance_id = execution.instance_id.as_deref().unwrap_or_default();
    Piece::of("gantry.run", execution, lineage.trace, start, end)
        .with(instance(instance_id, execution.cold_start.unwrap_or(false)))
        .outcome(finished.status, finished.error.as_ref())
        .send(pipeline);
}

/// The final result of `execution` is recorded, with the chained `children` it starts:
/// the record, and the execution as a whole (and the children that failed before they
/// could run, which no other hook sees).
pub fn recorded(execution: &Execution, children: &[Execution]) {
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let now = SystemTime::now();
    let result_at = execution.finished_at.map_or(now, time);
    Piece::of("gantry.record", execution, lineage.trace, result_at, now)
        .outcome(execution.status, execution.error.as_ref())
        .send(pipeline);
    whole(pipeline, execution, lineage, now);
    for child in children.iter().filter(|child| child.status.is_terminal()) {
        if let Some((_, lineage)) = recording(child) {
            whole(pipeline, child, lineage, now);
        }
    }
}

/// The `gantry.execution` span of a final `execution`, from its acceptance to `end`.
fn whole(pipeline: &Pipeline, execution: &Execution, lineage: Lineage, end: SystemTime) {
    let mut attributes = vec![KeyValue::new(
        "gantry.execution.trigger",
        execution.trigger.as_str(),
    )];
    if let Some(parent) = execution.parent_id {
        attributes.push(KeyValue::new("gantry.parent.id", parent.to_string()));
    }
    if let Some(id) = &execution.instance_id {
        attributes.extend(instance(id, execution.cold_start.unwrap_or(false)));
    }
    Piece {
        id: Some(execution_span_id(execution.id)),
        parent: lineage.parent,
        ..Piece::of(
            "gantry.execution",
            execution,
            lineage.trace,
            time(execution.created_at),
            end,
        )
    }
    .with(attributes)
    .outcome(execution.status, execution.error.as_ref())
    .send(pipeline);
}
