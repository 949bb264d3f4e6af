//! Keeps a node's cache of current function versions fresh when other nodes share the
//! store: the store's catalog generation is read every [`LOOK_EVERY`], and when another
//! node deployed, scaled or deleted a function the cache is dropped and read again on
//! demand. Versions by number never change, so only the current ones are dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, RegistryError};
use super::FunctionVersion;

/// Time between two looks at the store's catalog generation: a change on another node
/// is seen within it.
pub const LOOK_EVERY: Duration = Duration::from_millis(500);

impl Catalog {
    /// Drops the cached current versions whenever the store's catalog generation
    /// changes, looking every [`LOOK_EVERY`] until `stop`.
    pub fn keep_fresh(self: &Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let mut seen = catalog.store().catalog_generation().await.ok();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(LOOK_EVERY) => {}
                    () = stop.cancelled() => return,
                }
                match catalog.store().catalog_generation().await {
                    Ok(now) if Some(now) != seen => {
                        catalog.forget_current();
                        seen = Some(now);
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!("cannot look for function changes: {err}"),
                }
            }
        })
    }
}

/// The deployed functions a periodic task works on, listed again only when the store's
/// catalog generation moved: a round costs one small read instead of every manifest.
pub struct CatalogView {
    /// The generation `functions` were listed at (`None`: not listed yet).
    generation: Option<i64>,
    functions: Vec<FunctionVersion>,
    /// Which functions are kept (for example, those with schedules).
    keep: fn(&FunctionVersion) -> bool,
}

impl CatalogView {
    /// A view keeping the functions `keep` accepts.
    pub fn new(keep: fn(&FunctionVersion) -> bool) -> CatalogView {
        CatalogView {
            generation: None,
            functions: Vec::new(),
            keep,
        }
    }

    /// Lists the functions again if the catalog changed since the last look.
    pub async fn refresh(&mut self, catalog: &Catalog) -> Result<(), RegistryError> {
        let generation = catalog.store().catalog_generation().await?;
        if self.generation != Some(generation) {
            let mut functions = catalog.list().await?;
            functions.retain(|version| (self.keep)(version));
            self.functions = functions;
            self.generation = Some(generation);
        }
        Ok(())
    }

    /// The functions as of the last [`CatalogView::refresh`].
    pub fn functions(&self) -> &[FunctionVersion] {
        &self.functions
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::LOOK_EVERY;
    use crate::registry::catalog::Catalog;
    use crate::registry::FunctionVersion;
    use crate::runtime::scripted::ScriptedRuntime;
    use crate::secrets::{SecretKey, Vault};
    use crate::store::{MemoryStore, Store};

    async fn catalog(store: &Arc<dyn Store>) -> Arc<Catalog> {
        let key = SecretKey::parse(&"ab".repeat(32), "test").expect("key");
        let vault = Arc::new(Vault::open(store.clone(), &key).await.expect("vault"));
        Arc::new(Catalog::new(store.clone(), ScriptedRuntime::new(), vault))
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_on_another_node_is_seen_within_a_look() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (here, there) = (catalog(&store).await, catalog(&store).await);
        here.create(json!({"name": "f", "command": "one"}))
            .await
            .expect("deploy");
        let _watch = here.keep_fresh(CancellationToken::new());
        tokio::task::yield_now().await;
        assert_eq!(here.current("f").await.unwrap().version.version, 1);
        there
            .replace("f", json!({"name": "f", "command": "two"}))
            .await
            .expect("replace");
        tokio::time::sleep(LOOK_EVERY * 2).await;
        assert_eq!(here.current("f").await.unwrap().version.version, 2);
        assert!(there.delete("f").await.is_ok());
        tokio::time::sleep(LOOK_EVERY * 2).await;
        assert!(here.current("f").await.is_err(), "the delete is seen");
    }

    /// The version `current` read from the store, before the change `there` makes.
    async fn read_before_a_change(
        store: &Arc<dyn Store>,
        here: &Catalog,
        there: &Catalog,
    ) -> (FunctionVersion, u64) {
        here.create(json!({"name": "f", "command": "one"}))
            .await
            .expect("deploy");
        let epoch = here.cache_epoch();
        let read = store.get_function("f").await.unwrap().expect("stored");
        there
            .replace("f", json!({"name": "f", "command": "two"}))
            .await
            .expect("replace");
        (read, epoch)
    }

    #[tokio::test]
    async fn a_version_read_before_a_change_is_not_put_back_after_the_forget() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (here, there) = (catalog(&store).await, catalog(&store).await);
        let (read, epoch) = read_before_a_change(&store, &here, &there).await;
        // The look sees the change while the read is still on its way back.
        here.forget_current();
        let answered = here.remember(read, epoch).expect("loads");
        assert_eq!(answered.version.version, 1, "the read itself is answered");
        assert_eq!(here.current("f").await.unwrap().version.version, 2);
    }

    #[tokio::test]
    async fn a_version_read_before_a_delete_is_not_put_back() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let here = catalog(&store).await;
        here.create(json!({"name": "f", "command": "one"}))
            .await
            .expect("deploy");
        let epoch = here.cache_epoch();
        let read = store.get_function("f").await.unwrap().expect("stored");
        here.delete("f").await.expect("delete");
        here.remember(read, epoch).expect("loads");
        assert!(here.current("f").await.is_err(), "the delete holds");
    }

    #[tokio::test]
    async fn an_older_version_answered_late_does_not_replace_a_newer_one() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let here = catalog(&store).await;
        let (read, _) = read_before_a_change(&store, &here, &here).await;
        // A deploy of version 1 whose answer comes after version 2's, with no look between.
        here.remember(read, here.cache_epoch()).expect("loads");
        assert_eq!(here.current("f").await.unwrap().version.version, 2);
    }
}
