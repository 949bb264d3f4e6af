//! Result destinations: an execution's final result POSTed, signed, to the caller's
//! `X-Callback-Url` and the function's `destinations`. Deliveries are stored with the
//! result they send (one transaction), claimed
//! with leases (any node sharing the store sends a due one, once per attempt) and
//! retried with exponential backoff; undeliverable ones are listed and can be re-driven.

mod key;
mod model;
pub mod policy;
pub mod sign;
pub mod spec;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashSet;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub use key::{function_key, signing_key};
pub(crate) use model::StoredDelivery;
pub use model::{
    Delivery, DeliveryAttempt, DeliveryClaim, DeliveryFilter, DeliveryKind, DeliveryState,
    MAX_RECORDED_ATTEMPTS,
};
pub use policy::{AddressPolicy, UrlError};
pub use spec::{DestinationSpec, DestinationsSpec};
pub(crate) use worker::describe;
pub use worker::start;

use crate::domain::{Execution, ExecutionError, ExecutionStatus};
use crate::secrets::{Vault, VaultError};
use crate::store::{FollowUps, Store, StoreError};

/// Callbacks registered on this node whose execution has not ended, at most this many
/// remembered (beyond, the sweep of waiting callbacks finds them).
const MAX_CALLBACK_HINTS: usize = 100_000;

/// What delivering fails with.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key could not be read.
    #[error("cannot read the signing key: {0}")]
    Key(#[from] VaultError),
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Which addresses may be connected to.
    pub policy: AddressPolicy,
    /// Attempts of one round before a delivery fails.
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubled after each.
    pub first_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// One attempt's time limit (connect, send, answer).
    pub timeout: Duration,
    /// Deliveries sent at once by this node.
    pub concurrency: u32,
    /// How often due deliveries are looked for when nothing wakes the worker.
    pub poll: Duration,
    /// This node's id: the owner of the deliveries it claims.
    pub owner: String,
}

impl DeliverySettings {
    /// The defaults for node `owner`: 8 attempts, 5 s doubling up to 10 min, 10 s per
    /// attempt, 16 at once.
    pub fn new(owner: String, policy: AddressPolicy) -> DeliverySettings {
        DeliverySettings {
            policy,
            max_attempts: 8,
            first_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            concurrency: 16,
            poll: Duration::from_secs(1),
            owner,
        }
    }

    /// The pause after the `attempts`-th failed attempt of a round.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// The JSON body of a delivered result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultBody<'a> {
    /// The execution.
    pub execution_id: Uuid,
    /// Its function.
    pub function: &'a str,
    /// The function version it ran on.
    pub version: u32,
    /// `success`, `error`, `timeout` or `cancelled`.
    pub status: ExecutionStatus,
    /// The output of a success.
    pub output: Option<&'a Value>,
    /// Why it failed.
    pub error: Option<&'a ExecutionError>,
    /// The attempt that ended it.
    pub attempt: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl<'a> ResultBody<'a> {
    /// The body of `execution`'s final result.
    pub fn of(execution: &'a Execution) -> ResultBody<'a> {
        ResultBody {
            execution_id: execution.id,
            function: &execution.function,
            version: execution.version,
            status: execution.status,
            output: execution.output.as_ref(),
            error: execution.error.as_ref(),
            attempt: execution.attempt,
            created_at: execution.created_at,
            started_at: execution.started_at,
            finished_at: execution.finished_at,
        }
    }
}

/// Result destinations of one node: records what is to be sent when an execution ends;
/// [`start`] sends it.
pub struct Destinations {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    settings: DeliverySettings,
    wake: tokio::sync::Notify,
    /// Executions with a callback registered through this node.
    callbacks: DashSet<Uuid>,
}

impl Destinations {
    /// Destinations over `store`, signing with keys from `vault`.
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        settings: DeliverySettings,
    ) -> Arc<Destinations> {
        Arc::new(Destinations {
            store,
            vault,
            settings,
            wake: tokio::sync::Notify::new(),
            callbacks: DashSet::new(),
        })
    }

    /// The address policy.
    pub fn policy(&self) -> AddressPolicy {
        self.settings.policy
    }

    /// Stores the caller's callback `url` for `execution`, before the execution itself,
    /// so its end cannot pass unseen.
    /// It is signed like the function's destinations (`secret`, else its generated key).
    pub async fn register_callback(
        &self,
        execution: &Execution,
        url: &str,
        secret: Option<String>,
    ) -> Result<(), StoreError> {
        let mut delivery = new_delivery(execution, DeliveryKind::Callback, url, secret);
        delivery.state = DeliveryState::Waiting;
        delivery.next_at = None;
        self.store.insert_deliveries(&[delivery]).await?;
        if self.callbacks.len() < MAX_CALLBACK_HINTS {
            self.callbacks.insert(execution.id);
        }
        Ok(())
    }

    /// Forgets the callback of an execution that was not stored after all.
    pub async fn drop_callback(&self, execution: Uuid) {
        self.callbacks.remove(&execution);
        if let Err(err) = self.store.drop_waiting_deliveries(execution).await {
            tracing::warn!(%execution, "cannot drop the callback of a refused execution: {err}");
        }
    }

    /// What the end of `execution` sends, to be stored with its result (see
    /// [`FollowUps`]): a pending delivery to the function's `destinations` for its
    /// outcome, and, when a callback registered through this node waits for it, the
    /// result body that makes the callback pending. (A callback registered elsewhere is
    /// made pending by the sweep of waiting callbacks.)
    pub fn follow_ups(
        &self,
        execution: &Execution,
        destinations: Option<&DestinationsSpec>,
    ) -> FollowUps {
        let callback = self.callbacks.remove(&execution.id).is_some();
        let (kind, target) = match execution.status {
            ExecutionStatus::Success => (
                DeliveryKind::OnSuccess,
                destinations.and_then(|d| d.on_success.as_ref()),
            ),
            _ => (
                DeliveryKind::OnFailure,
                destinations.and_then(|d| d.on_failure.as_ref()),
            ),
        };
        if !callback && target.is_none() {
            return FollowUps::default();
        }
        let body = serde_json::to_string(&ResultBody::of(execution)).unwrap_or_default();
        let secret = destinations.and_then(|d| d.secret.clone());
        let deliveries = target
            .map(|target| {
                let mut delivery = new_delivery(execution, kind, &target.url, secret);
                delivery.body = Some(body.clone());
                delivery
            })
            .into_iter()
            .collect();
        FollowUps {
            children: Vec::new(),
            deliveries,
            callback_body: callback.then_some(body),
        }
    }

    /// After a result was stored with deliveries to send: wakes the sender.
    pub fn stored(&self) {
        self.wake.notify_one();
    }
}

/// A pending delivery of `execution`'s result of `kind` to `url`, due now.
fn new_delivery(
    execution: &Execution,
    kind: DeliveryKind,
    url: &str,
    secret: Option<String>,
) -> Delivery {
    let now = now_ms();
    Delivery {
        id: Uuid::now_v7(),
        execution_id: execution.id,
        function: execution.function.clone(),
        url: url.to_owned(),
        kind,
        state: DeliveryState::Pending,
        secret,
        attempts: Vec::new(),
        round_attempts: 0,
        next_at: Some(now),
        body: None,
        created_at: now,
    }
}

/// Now, to the millisecond (what the stores keep).
fn now_ms() -> DateTime<Utc> {
    let now = crate::domain::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let settings = DeliverySettings::new("node".into(), AddressPolicy::default());
        let waits: Vec<u64> = (1..=9)
            .map(|attempt| settings.backoff(attempt).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(settings.backoff(u32::MAX), settings.max_backoff);
    }
}
