//! The spans of an execution, recorded by the dispatcher and the API once each piece of
//! work is done. Each hook returns at once when no span is exported.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::otlp::Pipeline;
use super::record::{Kind, Outcome, Place, SpanRecord};
use super::{execution_span_id, request_span_id, trace_id, PIPELINE};
use crate::domain::{
    Execution, ExecutionError, ExecutionStatus, Finished, TraceContext, Trigger, SAMPLED,
};

/// Where an execution's spans hang.
struct Lineage {
    /// Its trace.
    trace: [u8; 16],
    /// Its `gantry.execution` span.
    own: [u8; 8],
}

/// The lineage of `execution` when its trace is recorded: the trace and span its stored
/// `traceparent` names (the span is the one derived from the execution's id, so the
/// function's own spans nest under it), else its `trace_id`'s trace and that derived
/// span. `None` when the `sampled` flag of that context, set by the head sampler (which
/// follows a caller's decision unless told otherwise), is off.
fn lineage(execution: &Execution) -> Option<Lineage> {
    // Without the `tracestate`, which no span needs: parsing it would allocate.
    let stored = (execution.traceparent.as_deref())
        .and_then(|traceparent| TraceContext::parse(traceparent, None).ok());
    match stored {
        Some(context) if context.flags & SAMPLED == 0 => None,
        Some(context) => Some(Lineage {
            trace: context.trace_id,
            own: context.parent_span_id,
        }),
        None => Some(Lineage {
            trace: match &execution.trace_id {
                Some(text) => trace_id(text),
                None => trace_id(&execution.id.simple().to_string()),
            },
            own: execution_span_id(execution.id),
        }),
    }
}

/// The parent of `execution`'s `gantry.execution` span (`own`): its parent execution's
/// span (a chained child, a re-drive), or the request that created it (`None`: a root).
fn execution_parent(execution: &Execution, own: [u8; 8]) -> Option<[u8; 8]> {
    match (execution.parent_id, execution.trigger) {
        (Some(parent), _) => Some(execution_span_id(parent)),
        (None, Trigger::Api) => Some(request_span_id(own)),
        (None, _) => None,
    }
}

/// The pipeline and `execution`'s lineage when its spans are recorded: spans are
/// exported and its trace is sampled.
fn recording(execution: &Execution) -> Option<(&'static Pipeline, Lineage)> {
    let pipeline = PIPELINE.get()?;
    Some((pipeline, lineage(execution)?))
}

/// Nanoseconds since the Unix epoch (0 before it).
fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn time(at: DateTime<Utc>) -> SystemTime {
    at.into()
}

/// A span of `execution`'s own work (of its `lineage`), under its `gantry.execution`
/// span, with a fresh random id.
fn piece<'a>(
    name: &'static str,
    execution: &'a Execution,
    lineage: &Lineage,
    start: SystemTime,
    end: SystemTime,
) -> SpanRecord<'a> {
    SpanRecord {
        trace: lineage.trace,
        id: random_span_id(),
        parent: Some(lineage.own),
        remote_parent: false,
        name,
        kind: Kind::Internal,
        start: nanos(start),
        end: nanos(end),
        function: &execution.function,
        version: execution.version,
        execution: execution.id,
        attempt: execution.attempt,
        place: None,
        trigger: None,
        parent_execution: None,
        outcome: None,
    }
}

/// How an execution (or attempt) that ended as `status` with `error` is marked: its
/// status, its error code, and an error status unless it succeeded.
fn outcome(status: ExecutionStatus, error: Option<&ExecutionError>) -> Option<Outcome<'_>> {
    Some(Outcome {
        status: status.as_str(),
        code: error.map(|error| &error.code),
        failed: status != ExecutionStatus::Success,
    })
}

thread_local! {
    /// Where this thread's span ids come from: seeded once from the thread's
    /// cryptographic generator. A span id must be unique within its trace, not secret,
    /// and the hooks take one per span.
    static SPAN_IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// A random span id, never all zeros (invalid on the wire).
fn random_span_id() -> [u8; 8] {
    loop {
        let id = (SPAN_IDS.try_with(|ids| ids.borrow_mut().next_u64()))
            .unwrap_or_else(|_| rand::random());
        if id != 0 {
            return id.to_le_bytes();
        }
    }
}

fn instance(id: &str, cold: bool) -> Option<Place<'_>> {
    Some(Place::Instance { id, cold })
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
        .filter(|context| context.trace_id == lineage.trace)
        .map(|context| context.parent_span_id);
    let mut span = SpanRecord {
        kind: Kind::Server,
        id: request_span_id(lineage.own),
        parent: caller,
        remote_parent: caller.is_some(),
        ..piece(name, execution, &lineage, start, SystemTime::now())
    };
    if execution.status.is_terminal() {
        span.outcome = outcome(execution.status, execution.error.as_ref());
    }
    pipeline.submit(|spans| spans.push(&span));
}

/// `execution` was admitted and stored, from `since`.
pub fn admitted(since: Option<SystemTime>, execution: &Execution) {
    let Some(start) = since else {
        return;
    };
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let span = piece(
        "gantry.admission",
        execution,
        &lineage,
        start,
        SystemTime::now(),
    );
    pipeline.submit(|spans| spans.push(&span));
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
    let owner = execution.owner.as_deref().unwrap_or_default();
    let now = SystemTime::now();
    pipeline.submit(|spans| {
        spans.push(&piece(
            "gantry.queue_wait",
            execution,
            &lineage,
            queued,
            claim,
        ));
        spans.push(&SpanRecord {
            place: Some(Place::Node(owner)),
            ..piece("gantry.claim", execution, &lineage, claim, now)
        });
    });
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
    let span = SpanRecord {
        place: instance(id, cold),
        ..piece(
            "gantry.instance.start",
            execution,
            &lineage,
            start,
            SystemTime::now(),
        )
    };
    pipeline.submit(|spans| spans.push(&span));
}

/// An attempt of `execution` ran (from its start) and ended as `finished`.
pub fn ran(execution: &Execution, finished: &Finished) {
    let Some((pipeline, lineage)) = recording(execution) else {
        return;
    };
    let end = time(finished.finished_at);
    let start = execution.started_at.map_or(end, time);
    let instance_id = execution.instance_id.as_deref().unwrap_or_default();
    let span = SpanRecord {
        place: instance(instance_id, execution.cold_start.unwrap_or(false)),
        outcome: outcome(finished.status, finished.error.as_ref()),
        ..piece("gantry.run", execution, &lineage, start, end)
    };
    pipeline.submit(|spans| spans.push(&span));
}

/// The final result of `execution` is recorded, with the chained `children` it starts:
/// the record, and the execution as a whole (and the children that failed before they
/// could run, which no other hook sees).
pub fn recorded(execution: &Execution, children: &[Execution]) {
    let Some((pipeline, own)) = recording(execution) else {
        return;
    };
    let now = SystemTime::now();
    let result_at = execution.finished_at.map_or(now, time);
    pipeline.submit(|spans| {
        spans.push(&SpanRecord {
            outcome: outcome(execution.status, execution.error.as_ref()),
            ..piece("gantry.record", execution, &own, result_at, now)
        });
        spans.push(&whole(execution, &own, now));
        for child in children.iter().filter(|child| child.status.is_terminal()) {
            if let Some(lineage) = lineage(child) {
                spans.push(&whole(child, &lineage, now));
            }
        }
    });
}

/// The `gantry.execution` span of a final `execution`, from its acceptance to `end`.
fn whole<'a>(execution: &'a Execution, lineage: &Lineage, end: SystemTime) -> SpanRecord<'a> {
    let cold = execution.cold_start.unwrap_or(false);
    let created = time(execution.created_at);
    SpanRecord {
        id: lineage.own,
        parent: execution_parent(execution, lineage.own),
        trigger: Some(execution.trigger.as_str()),
        parent_execution: execution.parent_id,
        place: (execution.instance_id.as_deref()).and_then(|id| instance(id, cold)),
        outcome: outcome(execution.status, execution.error.as_ref()),
        ..piece("gantry.execution", execution, lineage, created, end)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::random_span_id;

    #[test]
    fn span_ids_are_never_zero_and_differ_between_threads() {
        let here: HashSet<[u8; 8]> = (0..10_000).map(|_| random_span_id()).collect();
        assert_eq!(here.len(), 10_000);
        assert!(!here.contains(&[0; 8]));
        // Each thread's generator has a seed of its own.
        let there = std::thread::spawn(|| (0..100).map(|_| random_span_id()).collect());
        let there: HashSet<[u8; 8]> = there.join().unwrap();
        assert!(here.is_disjoint(&there));
    }
}
