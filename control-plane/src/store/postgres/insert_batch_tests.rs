//! Tests of the batched inserts (`insert_batch.rs`) against the tests' PostgreSQL: many
//! concurrent inserts all land; a taken idempotency key, within one batch or across
//! batches, answers the execution holding it to that row's caller only; a row that
//! fails the statement fails alone; a closed store still answers every caller.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::exec_sql::ExecutionRow;
use super::insert_batch::insert_rows;
use super::test_server::TestPostgres;
use super::PostgresStore;
use crate::domain::Execution;
use crate::registry::FunctionVersion;
use crate::store::contract::{create, queued};
use crate::store::{Fault, Store, StoreError};

async fn open() -> Arc<PostgresStore> {
    let url = TestPostgres::shared().create_database().await;
    Arc::new(PostgresStore::open(&url).await.expect("open the store"))
}

/// A queued execution of `function` with idempotency key `key`.
fn keyed(function: &FunctionVersion, key: &str) -> Execution {
    let mut execution = queued(function);
    execution.idempotency_key = Some(key.into());
    execution
}

fn rows(executions: &[&Execution]) -> Vec<ExecutionRow> {
    executions
        .iter()
        .map(|execution| ExecutionRow::new(execution).expect("encode"))
        .collect()
}

/// Inserts every execution through the store at once; answers the outcomes in order.
async fn insert_all(
    store: &Arc<PostgresStore>,
    executions: &[Execution],
) -> Vec<Result<(), StoreError>> {
    let inserts = executions.iter().cloned().map(|execution| {
        let store = store.clone();
        tokio::spawn(async move { store.insert_execution(&execution).await })
    });
    join_all(inserts)
        .await
        .into_iter()
        .map(|joined| joined.expect("the insert task ends"))
        .collect()
}

fn assert_duplicate_of(outcome: &Result<(), StoreError>, holder: &Execution) {
    match outcome {
        Err(StoreError::DuplicateIdempotencyKey(id)) => assert_eq!(*id, holder.id),
        other => panic!("expected the key taken by {}, got {other:?}", holder.id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_inserts_all_land_and_read_back() {
    let store = open().await;
    let function = create(&*store, "many").await;
    // Some with keys, so that both kinds of row share batches.
    let executions: Vec<Execution> = (0..1200)
        .map(|n| match n % 3 {
            0 => keyed(&function, &format!("key-{n}")),
            _ => queued(&function),
        })
        .collect();
    for outcome in insert_all(&store, &executions).await {
        outcome.expect("every insert succeeds");
    }
    for execution in &executions {
        let stored = store.get_execution(execution.id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(execution));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_within_one_batch_answers_its_first_row() {
    let store = open().await;
    let function = create(&*store, "keys").await;
    let other = create(&*store, "other").await;
    let (first, second, plain) = (
        keyed(&function, "k"),
        keyed(&function, "k"),
        queued(&function),
    );
    let (third, elsewhere) = (keyed(&function, "k"), keyed(&other, "k"));
    let client = store.client().await.unwrap();
    let outcomes = insert_rows(
        &client,
        &rows(&[&first, &second, &plain, &third, &elsewhere]),
    )
    .await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert_duplicate_of(&outcomes[1], &first);
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert_duplicate_of(&outcomes[3], &first);
    // The same key of another function is another key.
    assert!(outcomes[4].is_ok(), "{:?}", outcomes[4]);
    for (execution, stored) in [(&first, true), (&second, false), (&third, false)] {
        let found = store.get_execution(execution.id).await.unwrap();
        assert_eq!(found.is_some(), stored, "{}", execution.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_by_an_earlier_batch_answers_its_holder() {
    let store = open().await;
    let function = create(&*store, "keys").await;
    let (a, b) = (keyed(&function, "a"), keyed(&function, "b"));
    let client = store.client().await.unwrap();
    for outcome in insert_rows(&client, &rows(&[&a, &b])).await {
        outcome.expect("fresh keys");
    }
    let (again_b, fresh, again_a) = (
        keyed(&function, "b"),
        keyed(&function, "c"),
        keyed(&function, "a"),
    );
    let outcomes = insert_rows(&client, &rows(&[&again_b, &fresh, &again_a])).await;
    assert_duplicate_of(&outcomes[0], &b);
    assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]);
    assert_duplicate_of(&outcomes[2], &a);
    // A batch of one row takes the single-row statement: the same answer.
    let alone = insert_rows(&client, &rows(&[&keyed(&function, "a")])).await;
    assert_duplicate_of(&alone[0], &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_inserts_of_one_key_one_wins_and_the_rest_name_it() {
    let store = open().await;
    let function = create(&*store, "race").await;
    let executions: Vec<Execution> = (0..200).map(|_| keyed(&function, "same")).collect();
    let outcomes = insert_all(&store, &executions).await;
    let winners: Vec<&Execution> = executions
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(execution, _)| execution)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one insert wins the key");
    for outcome in outcomes.iter().filter(|outcome| outcome.is_err()) {
        assert_duplicate_of(outcome, winners[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_failing_the_batch_fails_alone() {
    let store = open().await;
    let function = create(&*store, "bad-row").await;
    let existing = queued(&function);
    store.insert_execution(&existing).await.unwrap();
    let taken = keyed(&function, "taken");
    store.insert_execution(&taken).await.unwrap();
    // Same id as a stored execution: breaks the primary key, which no ON CONFLICT covers,
    // so the statement as a whole fails.
    let mut same_id = queued(&function);
    same_id.id = existing.id;
    let (before, after, duplicate) = (
        queued(&function),
        keyed(&function, "k"),
        keyed(&function, "taken"),
    );
    let client = store.client().await.unwrap();
    let outcomes = insert_rows(&client, &rows(&[&before, &same_id, &after, &duplicate])).await;
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let err = outcomes[1].as_ref().expect_err("the bad row fails");
    assert_eq!(err.fault(), Some(Fault::Conflict), "{err:?}");
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert_duplicate_of(&outcomes[3], &taken);
    for execution in [&before, &after] {
        let stored = store.get_execution(execution.id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(execution));
    }
    assert_eq!(
        store.get_execution(existing.id).await.unwrap().as_ref(),
        Some(&existing),
        "the stored execution is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_answers_every_insert_and_refuses_later_ones() {
    let store = open().await;
    let function = create(&*store, "closing").await;
    let executions: Vec<Execution> = (0..400).map(|_| queued(&function)).collect();
    let inserts = {
        let (store, executions) = (store.clone(), executions.clone());
        tokio::spawn(async move { insert_all(&store, &executions).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.close();
    let outcomes = tokio::time::timeout(Duration::from_secs(30), inserts)
        .await
        .expect("every caller is answered")
        .expect("the inserts end");
    for outcome in outcomes {
        if let Err(err) = outcome {
            assert!(err.is_unavailable(), "{err:?}");
        }
    }
    let late = store.insert_execution(&queued(&function)).await;
    assert!(matches!(late, Err(StoreError::Closed)), "{late:?}");
}
