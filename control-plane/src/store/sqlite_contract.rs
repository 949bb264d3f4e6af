//! The store contract suite (`contract/`) run against a [`SqliteStore`] in a fresh
//! temporary directory.

use std::sync::Arc;

use crate::store::contract::Subject;
use crate::store::SqliteStore;

/// A store in a new temporary directory, which the subject keeps until it is dropped.
fn sqlite() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).expect("open store");
    (Box::new(dir), Arc::new(store))
}

crate::store_contract!(sqlite());
