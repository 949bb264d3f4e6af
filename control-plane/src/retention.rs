//! Retention: finished executions (with their logs) are deleted once older than their
//! function's `retention`, else the server's `--retention`; old function versions beyond
//! `--keep-versions` go too; and the freed pages go back to the file system. It runs in
//! the background in small batches, so writes are never held up for long, and so the
//! database does not grow without bound under a steady load.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::registry::catalog::Catalog;
use crate::store::{PruneScope, Store};

/// Executions deleted per transaction.
const BATCH: u32 = 1_000;

/// How retention runs.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// How long finished executions are kept when their function says nothing.
    pub keep: Duration,
    /// Time between rounds.
    pub interval: Duration,
    /// Versions kept per function (the current one and those still in use aside).
    pub keep_versions: u32,
}

/// Parses a duration such as `7d`, `12h`, `30m`, `45s` or `1500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 7d, 12h, 30m or 45s"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} needs a unit: ms, s, m, h or d (7d, 12h, 30m)"
            ))
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Runs retention every `settings.interval` until `stop` is cancelled.
pub fn start(
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    settings: RetentionSettings,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(settings.interval) => {}
            }
            if let Err(err) = round(store.as_ref(), &catalog, settings, &stop).await {
                tracing::warn!("retention: {err}");
            }
        }
    })
}

/// One round: every function's old executions, old versions, free pages.
async fn round(
    store: &dyn Store,
    catalog: &Catalog,
    settings: RetentionSettings,
    stop: &CancellationToken,
) -> Result<(), crate::registry::catalog::RegistryError> {
    let now = chrono::Utc::now();
    let mut own = Vec::new();
    for function in catalog.list().await? {
        let Some(keep) = function.spec.retention_duration() else {
            continue;
        };
        own.push(function.name.clone());
        let before = now - chrono::Duration::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
        prune(store, &PruneScope::Function(function.name), before, stop).await?;
    }
    let before = now - chrono::Duration::from_std(settings.keep).unwrap_or(chrono::TimeDelta::MAX);
    let pruned = prune(store, &PruneScope::AllBut(own), before, stop).await?;
    let versions = store.prune_versions(settings.keep_versions).await?;
    if pruned + versions > 0 {
        tracing::info!(
            executions = pruned,
            versions,
            "retention deleted old records"
        );
        store.compact().await?;
    }
    Ok(())
}

/// Deletes what `scope` holds from before `before`, a batch at a time.
async fn prune(
    store: &dyn Store,
    scope: &PruneScope,
    before: chrono::DateTime<chrono::Utc>,
    stop: &CancellationToken,
) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    while !stop.is_cancelled() {
        let deleted = store.prune_executions(scope, before, BATCH).await?;
        total += deleted;
        if deleted < BATCH as usize {
            break;
        }
        // Let other writes in between batches.
        tokio::task::yield_now().await;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration(" 30m "), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1_500)));
        for bad in ["", "7", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
