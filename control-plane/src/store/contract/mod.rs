//! The store contract: behaviour every [`Store`] must show, written once against
//! `Arc<dyn Store>` and run for each store (see the `store_contract!` invocations beside
//! each implementation).

pub(crate) mod catalog;
pub(crate) mod claims;
pub(crate) mod deliveries;
pub(crate) mod nodes;
pub(crate) mod overdue;
pub(crate) mod records;
pub(crate) mod schedules;
pub(crate) mod transitions;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::{
    Claim, Execution, ExecutionError, ExecutionStatus, Finished, Started, Trigger,
};
use crate::registry::{content_hash, parse_manifest, FunctionVersion};
use crate::store::Store;

/// A store under test with what keeps it alive (a temporary directory, a server).
pub(crate) type Subject = (Box<dyn std::any::Any + Send>, Arc<dyn Store>);

/// `time` truncated to the millisecond, as stores keep it.
pub(crate) fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).expect("in range")
}

/// Creates function `name` and answers its first version.
pub(crate) async fn create(store: &dyn Store, name: &str) -> FunctionVersion {
    let spec = parse_manifest(&json!({ "name": name, "command": "true" }).to_string())
        .expect("valid spec");
    store
        .create_function(&spec, &content_hash(&spec))
        .await
        .expect("create function")
}

/// A queued execution of `function`, its timestamps kept to the millisecond.
pub(crate) fn queued(function: &FunctionVersion) -> Execution {
    let mut execution = Execution::queued(function, json!({ "n": 1 }), Trigger::Api);
    execution.created_at = ms(execution.created_at);
    execution
}

/// A claim for `owner` lapsing `seconds` from now (in the past when negative).
pub(crate) fn claim_for(owner: &str, seconds: i64) -> Claim {
    Claim {
        owner: owner.into(),
        lease_until: ms(Utc::now() + chrono::TimeDelta::seconds(seconds)),
        max_in_flight: None,
    }
}

/// A terminal update to `status`.
pub(crate) fn finished(status: ExecutionStatus) -> Finished {
    let success = status == ExecutionStatus::Success;
    Finished {
        status,
        output: success.then(|| json!({ "ok": true })),
        error: (!success).then(|| ExecutionError::new("FUNCTION_ERROR", "exit 1")),
        exit_code: Some(i32::from(!success)),
        duration_ms: Some(12),
        finished_at: ms(Utc::now()),
        dead_letter: false,
    }
}

/// The start of an attempt on instance `instance`.
pub(crate) fn started(instance: &str) -> Started {
    Started {
        instance_id: instance.into(),
        cold_start: true,
        callback_token_hash: format!("hash-of-{instance}"),
        started_at: ms(Utc::now()),
    }
}

/// Inserts a queued execution of `function` and claims it for `owner`.
pub(crate) async fn claimed(
    store: &dyn Store,
    function: &FunctionVersion,
    owner: &str,
) -> Execution {
    let execution = queued(function);
    store.insert_execution(&execution).await.unwrap();
    assert!(store
        .claim(execution.id, &claim_for(owner, 30))
        .await
        .unwrap());
    store.get_execution(execution.id).await.unwrap().unwrap()
}

/// Declares one `#[tokio::test]` per contract test, each on a fresh store from `$make`
/// (an expression answering a [`Subject`]).
#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        $crate::store_contract!(@tests $make;
            claims::a_queued_execution_is_claimed_by_one_runner,
            claims::many_runners_claim_each_execution_once,
            claims::due_work_is_taken_once_when_its_time_comes,
            claims::due_work_is_taken_in_time_order_a_page_at_a_time,
            claims::a_lapsed_lease_is_reclaimable_and_a_renewed_one_is_not,
            claims::renewal_extends_only_what_the_owner_holds,
            claims::stale_queued_work_is_made_due_oldest_first,
            claims::a_cancel_request_reaches_only_the_holder,
            claims::a_bounded_claim_holds_the_limit_across_owners,
            transitions::only_the_claiming_owner_marks_a_start,
            transitions::one_result_wins_a_race_of_reports,
            transitions::a_node_never_moves_what_another_holds,
            transitions::a_runner_never_ends_what_went_back_to_the_queue,
            transitions::a_requeue_clears_the_claim_and_the_start,
            transitions::a_scheduled_retry_keeps_each_failure_and_waits,
            transitions::a_record_without_owner_is_movable_by_any_node,
            records::a_record_reads_back_as_written,
            records::an_idempotency_key_is_used_once_per_function,
            records::a_finish_writes_its_children_once_under_contention,
            records::children_are_written_all_or_none,
            records::listings_filter_and_page_newest_first,
            records::unfinished_work_pages_oldest_first_without_payloads,
            records::a_failure_is_redriven_once_under_contention,
            records::a_chain_tree_pages_by_id,
            catalog::functions_are_versioned_by_content,
            catalog::a_deleted_function_keeps_its_versions_for_its_executions,
            catalog::logs_append_once_per_sequence_and_page,
            catalog::tokens_are_unique_by_name,
            catalog::secrets_count_their_versions,
            catalog::settings_are_kept_and_replaced,
            catalog::retention_prunes_only_old_finished_executions,
            catalog::a_delete_takes_only_finished_executions_and_their_logs,
            catalog::version_pruning_keeps_current_and_used_versions,
            nodes::a_heartbeat_replaces_the_record_and_nodes_list_by_id,
            nodes::nodes_read_each_others_fresh_loads,
            catalog::the_catalog_generation_moves_with_every_function_change,
            catalog::a_healthy_store_answers_ping_and_compacts,
            schedules::a_schedule_cursor_moves_once_per_tick,
            schedules::a_failed_fire_leaves_the_cursor_and_racers_store_one,
            overdue::overdue_work_is_listed_from_when_it_became_due,
            deliveries::a_callback_waits_then_is_armed_with_the_result,
            deliveries::a_results_deliveries_are_written_with_it_once,
            deliveries::a_due_delivery_is_claimed_once_and_recorded_by_its_holder,
            deliveries::failed_deliveries_are_listed_and_redriven_once,
            deliveries::deliveries_leave_with_their_execution,
        );
    };
    (@tests $make:expr; $($module:ident :: $test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let (_guard, store) = $make;
                $crate::store::contract::$module::$test(store).await;
            }
        )+
    };
}
