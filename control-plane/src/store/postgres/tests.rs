//! Tests of the PostgreSQL store against a real server the tests start themselves
//! (`test_server.rs`): the store contract, and what is PostgreSQL's own: migrations by
//! nodes starting together, TLS as the URL asks, connection failures, values `text`
//! could not hold.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::schema::SCHEMA_VERSION;
use super::test_server::TestPostgres;
use super::PostgresStore;
use crate::domain::{LogLine, LogStream};
use crate::store::contract::{create, ms, queued, Subject};
use crate::store::{Fault, Store};

/// A store on a fresh database of the test server: the contract's subject. Sync, as the
/// contract macro wants it, inside the test's multi-threaded runtime.
fn postgres() -> Subject {
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let url = TestPostgres::shared().create_database().await;
            PostgresStore::open(&url).await.expect("open the store")
        })
    });
    (Box::new(()), Arc::new(store))
}

crate::store_contract!(postgres());

/// A raw connection to `url`, for looking behind the store.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_the_schema_once() {
    let url = TestPostgres::shared().create_database().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("every node opens the store");
    }
    let client = connect(&url).await;
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Opening again finds nothing to do.
    PostgresStore::open(&url).await.expect("reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_build_is_refused() {
    let url = TestPostgres::shared().create_database().await;
    PostgresStore::open(&url).await.expect("first open");
    connect(&url)
        .await
        .execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PostgresStore::open(&url).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("newer than this build"), "{message}");
    assert!(!err.is_unavailable(), "not worth retrying: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_of_a_server_without_it_fails_at_once() {
    let url = TestPostgres::shared().create_database().await;
    let required = format!("{url}?sslmode=require");
    let opened = tokio::time::timeout(Duration::from_secs(20), PostgresStore::open(&required))
        .await
        .expect("an answer, not a hang");
    let message = opened.unwrap_err().to_string();
    assert!(message.contains("TLS"), "{message}");
    // `prefer` settles for a plain connection.
    let preferred = format!("{url}?sslmode=prefer");
    let store = PostgresStore::open(&preferred)
        .await
        .expect("plain fallback");
    store.ping().await.unwrap();
}

/// With TLS the certificate is checked: against the CA `sslrootcert` names it is
/// accepted and the session is encrypted; against the system's CAs it is refused, with
/// `require` and with `prefer` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_when_asked_and_the_certificate_checked() {
    let server = TestPostgres::shared_tls();
    let url = server.create_database().await;
    let ca = server.ca_file().expect("a CA").display().to_string();
    let required = format!("{url}?sslmode=require&sslrootcert={ca}");
    let store = PostgresStore::open(&required)
        .await
        .expect("TLS with our CA");
    store.ping().await.unwrap();
    let target = super::connect::parse(&required).unwrap();
    let tls =
        super::connect::tls(target.config.get_ssl_mode(), target.root_cert.as_deref()).unwrap();
    let (client, connection) = target.config.connect(tls).await.expect("connect with TLS");
    tokio::spawn(connection);
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the session is encrypted");
    for mode in ["require", "prefer"] {
        let unknown_ca = format!("{url}?sslmode={mode}");
        let err = PostgresStore::open(&unknown_ca).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{mode}: {err}");
    }
    // Asked for nothing, the connection is plain even though the server offers TLS.
    PostgresStore::open(&url)
        .await
        .expect("plain")
        .ping()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_its_password_unsaid() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://gantry:hunter2@127.0.0.1:{port}/gantry");
    let err = PostgresStore::open(&url).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(
        super::describe_url(&url).ok(),
        Some(format!("127.0.0.1:{port}, database gantry"))
    );
    let err = PostgresStore::open("postgres://h/db?sslmode=bogus")
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Some(Fault::Other), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_answers_closed() {
    let url = TestPostgres::shared().create_database().await;
    let store = PostgresStore::open(&url).await.unwrap();
    store.ping().await.unwrap();
    store.close();
    let err = store.ping().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

/// What PostgreSQL's `text` cannot hold (a NUL) still round-trips: payloads are JSON
/// text with the NUL escaped, log lines bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_round_trip() {
    let (_guard, store) = postgres();
    let function = create(&*store, "nul").await;
    let mut execution = queued(&function);
    execution.input = json!({ "text": "a\u{0}b" });
    store.insert_execution(&execution).await.unwrap();
    assert_eq!(
        store.get_execution(execution.id).await.unwrap(),
        Some(execution)
    );
    let line = LogLine {
        seq: 1,
        stream: LogStream::Stdout,
        time: ms(chrono::Utc::now()),
        line: "before\u{0}after".into(),
    };
    let id = Uuid::now_v7();
    store
        .append_logs(id, std::slice::from_ref(&line))
        .await
        .unwrap();
    assert_eq!(store.read_logs(id, 0, 10).await.unwrap(), vec![line]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_on_the_database_hears_an_execution_end() {
    let url = TestPostgres::shared().create_database().await;
    let (here, there) = (
        PostgresStore::open(&url).await.expect("open"),
        PostgresStore::open(&url).await.expect("open"),
    );
    let mut feed = there.finished_feed().expect("PostgreSQL has a feed");
    let function = create(&here, "heard").await;
    let running = crate::store::contract::claimed(&here, &function, "node-a").await;
    // Listening starts in the background: end another execution until the feed works.
    let mut heard = None;
    for _ in 0..50 {
        let warm_up = queued(&function);
        here.insert_execution(&warm_up).await.unwrap();
        let ended = crate::store::contract::finished(crate::domain::ExecutionStatus::Cancelled);
        here.finish_execution(warm_up.id, crate::domain::Holder::Queue, &ended)
            .await
            .unwrap();
        if let Ok(Ok(id)) = tokio::time::timeout(Duration::from_millis(100), feed.recv()).await {
            heard = Some(id);
            break;
        }
    }
    assert!(heard.is_some(), "the feed never spoke");
    while feed.try_recv().is_ok() {}
    let ended = crate::store::contract::finished(crate::domain::ExecutionStatus::Success);
    assert!(here
        .finish_execution(running.id, crate::domain::Holder::Owner("node-a"), &ended)
        .await
        .unwrap());
    let id = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("heard within seconds")
        .expect("an id");
    assert_eq!(id, running.id);
}
