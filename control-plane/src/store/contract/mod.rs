//! The store contract: behaviour every [`Store`] must show, written once against
//! `Arc<dyn Store>` and run for each store (see the `store_contract!` invocations beside
//! each implementation).

pub(crate) mod claims;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::{Claim, Execution, Trigger};
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
    }
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
            claims::a_lapsed_lease_is_reclaimable_and_a_renewed_one_is_not,
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
