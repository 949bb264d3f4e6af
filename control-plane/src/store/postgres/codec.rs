//! What the PostgreSQL store's SQL shares: driver and pool errors mapped onto
//! [`StoreError`] with their [`Fault`], and the encoding of values into columns and back
//! (timestamps as milliseconds since the epoch, unsigned counts as `bigint`, JSON as
//! text).

use chrono::{DateTime, Utc};
use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::store::{Fault, StoreError};

/// Maps a driver error to [`StoreError::Database`] for `operation`.
pub(super) fn db(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| database(operation, source)
}

/// `source` as a [`StoreError::Database`] of `operation`, classified into the [`Fault`]
/// callers act on.
pub(super) fn database(operation: &'static str, source: tokio_postgres::Error) -> StoreError {
    StoreError::database(operation, classify(&source), Driver(source))
}

/// A driver error whose message tells the whole story: the driver's own names only its
/// kind ("error connecting to server") and leaves why to its causes.
#[derive(Debug)]
struct Driver(tokio_postgres::Error);

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// The causes are in the message already.
impl std::error::Error for Driver {}

/// Maps a pool error (no connection to be had) to a [`StoreError`] for `operation`.
pub(super) fn pool(operation: &'static str) -> impl FnOnce(PoolError) -> StoreError {
    move |source| match source {
        PoolError::Closed => StoreError::Closed,
        PoolError::Backend(err) => {
            // A connection the pool could not open or reuse: the server is away, or
            // refuses us for now. Either may pass.
            let fault = match classify(&err) {
                Fault::Other => Fault::Unavailable,
                fault => fault,
            };
            StoreError::database(operation, fault, Driver(err))
        }
        PoolError::Timeout(_) => StoreError::database(operation, Fault::Unavailable, source),
        other => StoreError::database(operation, Fault::Other, other),
    }
}

/// The kind of failure a driver error is: by its SQLSTATE when the server raised it,
/// unavailable when the connection broke.
pub(super) fn classify(error: &tokio_postgres::Error) -> Fault {
    if let Some(state) = error.code() {
        return classify_state(state);
    }
    if error.is_closed() || io_cause(error) {
        return Fault::Unavailable;
    }
    Fault::Other
}

/// The kind of failure a SQLSTATE names.
fn classify_state(state: &SqlState) -> Fault {
    if *state == SqlState::DISK_FULL {
        return Fault::Full;
    }
    let unavailable = [
        SqlState::INSUFFICIENT_RESOURCES,
        SqlState::OUT_OF_MEMORY,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::QUERY_CANCELED,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::IO_ERROR,
    ];
    if unavailable.contains(state) {
        return Fault::Unavailable;
    }
    let code = state.code();
    if code.starts_with("08") {
        // Connection exceptions.
        return Fault::Unavailable;
    }
    if code.starts_with("23") {
        // Integrity constraint violations.
        return Fault::Conflict;
    }
    if *state == SqlState::DATA_CORRUPTED || *state == SqlState::INDEX_CORRUPTED {
        return Fault::Corrupt;
    }
    Fault::Other
}

/// Whether an I/O error lies under `error` (a broken socket, a refused connection).
fn io_cause(error: &tokio_postgres::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(err) = cause {
        if err.is::<std::io::Error>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// A failure of the store's own making (not the driver's) during `operation`.
pub(super) fn failure(operation: &'static str, fault: Fault, message: String) -> StoreError {
    StoreError::database(operation, fault, message)
}

/// Milliseconds since the epoch.
pub(super) fn to_ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// An unsigned count as a `bigint`; one beyond its range cannot be stored.
pub(super) fn to_int(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        failure(
            "encode a value",
            Fault::Other,
            format!("{what} {value} is too large to store"),
        )
    })
}

/// JSON text of `value`.
pub(super) fn to_json<T: serde::Serialize>(
    value: &T,
    what: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt {
        what,
        detail: err.to_string(),
    })
}

/// Column `index` of `row`; a value of the wrong type is [`StoreError::Corrupt`].
pub(super) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &'static str,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|err| StoreError::Corrupt {
        what,
        detail: err.to_string(),
    })
}

/// A `bigint` column holding a `u32`.
pub(super) fn get_u32(row: &Row, index: usize, what: &'static str) -> Result<u32, StoreError> {
    let value: i64 = get(row, index, what)?;
    u32::try_from(value).map_err(|_| out_of_range(what, value))
}

/// A `bigint` column holding a `u64`.
pub(super) fn get_u64(row: &Row, index: usize, what: &'static str) -> Result<u64, StoreError> {
    let value: i64 = get(row, index, what)?;
    u64::try_from(value).map_err(|_| out_of_range(what, value))
}

/// A nullable `bigint` column holding a `u64`.
pub(super) fn get_opt_u64(
    row: &Row,
    index: usize,
    what: &'static str,
) -> Result<Option<u64>, StoreError> {
    get::<Option<i64>>(row, index, what)?
        .map(|value| u64::try_from(value).map_err(|_| out_of_range(what, value)))
        .transpose()
}

fn out_of_range(what: &'static str, value: i64) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: format!("{value} is out of range"),
    }
}

/// A time from its milliseconds since the epoch.
pub(super) fn from_ms(ms: i64, what: &'static str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
        what,
        detail: format!("{ms} ms is out of range"),
    })
}

/// A `bigint` column of milliseconds since the epoch.
pub(super) fn get_time(
    row: &Row,
    index: usize,
    what: &'static str,
) -> Result<DateTime<Utc>, StoreError> {
    from_ms(get(row, index, what)?, what)
}

/// A nullable `bigint` column of milliseconds since the epoch.
pub(super) fn get_opt_time(
    row: &Row,
    index: usize,
    what: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<i64>>(row, index, what)?
        .map(|ms| from_ms(ms, what))
        .transpose()
}

/// A nullable text column of JSON.
pub(super) fn get_json<T: serde::de::DeserializeOwned>(
    row: &Row,
    index: usize,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    let Some(text) = get::<Option<&str>>(row, index, what)? else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|err| StoreError::Corrupt {
            what,
            detail: err.to_string(),
        })
}

/// A stored name that this build does not know.
pub(super) fn unknown(what: &'static str, text: &str) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: format!("unknown value {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_onto_the_faults_callers_act_on() {
        assert_eq!(classify_state(&SqlState::DISK_FULL), Fault::Full);
        assert_eq!(
            classify_state(&SqlState::ADMIN_SHUTDOWN),
            Fault::Unavailable
        );
        assert_eq!(
            classify_state(&SqlState::CONNECTION_FAILURE),
            Fault::Unavailable
        );
        assert_eq!(
            classify_state(&SqlState::T_R_SERIALIZATION_FAILURE),
            Fault::Unavailable
        );
        assert_eq!(classify_state(&SqlState::UNIQUE_VIOLATION), Fault::Conflict);
        assert_eq!(classify_state(&SqlState::DATA_CORRUPTED), Fault::Corrupt);
        assert_eq!(classify_state(&SqlState::SYNTAX_ERROR), Fault::Other);
    }

    #[tokio::test]
    async fn a_driver_error_says_why() {
        let config: tokio_postgres::Config = "host=127.0.0.1 port=1 user=u connect_timeout=5"
            .parse()
            .unwrap();
        let Err(err) = config.connect(tokio_postgres::NoTls).await else {
            panic!("nothing listens on port 1");
        };
        let err = database("connect", err);
        assert_eq!(err.fault(), Some(Fault::Unavailable));
        let message = err.to_string();
        assert!(
            message.contains("error connecting to server: "),
            "{message}"
        );
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }

    #[test]
    fn counts_beyond_a_bigint_are_refused_not_wrapped() {
        assert_eq!(to_int(5, "n").unwrap(), 5);
        assert!(to_int(u64::MAX, "n").is_err());
    }
}
