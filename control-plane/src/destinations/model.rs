//! The records of result deliveries as the store keeps them: where a final result goes,
//! how each attempt went, and whether it is still to be sent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::StoreError;

/// Most attempts kept on one delivery's record (re-drives add more; the oldest go).
pub const MAX_RECORDED_ATTEMPTS: usize = 32;

/// Why a result goes to a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// The caller's `X-Callback-Url` of `:enqueue`.
    Callback,
    /// The function's `destinations.on_success`.
    OnSuccess,
    /// The function's `destinations.on_failure`.
    OnFailure,
}

impl DeliveryKind {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Callback => "callback",
            DeliveryKind::OnSuccess => "on_success",
            DeliveryKind::OnFailure => "on_failure",
        }
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// A callback registered at enqueue whose execution has not ended yet.
    Waiting,
    /// To be sent (again) at `next_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: a final 4xx, or every attempt failed. Listed as undeliverable.
    Failed,
}

impl DeliveryState {
    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Waiting => "waiting",
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Waiting,
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One try to send a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it did not get an answer (refused address, connection, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One result on its way to one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// UUID v7: ordered by creation.
    pub id: Uuid,
    /// The execution whose result it carries.
    pub execution_id: Uuid,
    /// That execution's function (its key signs the body).
    pub function: String,
    /// Where it goes.
    pub url: String,
    /// Why it goes there.
    pub kind: DeliveryKind,
    /// Where it is.
    pub state: DeliveryState,
    /// The named secret that signs it; `None`: the function's generated key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Every attempt so far, oldest first (at most [`MAX_RECORDED_ATTEMPTS`]).
    pub attempts: Vec<DeliveryAttempt>,
    /// Attempts of the current round (since it was stored or re-driven).
    #[serde(default, skip_serializing)]
    pub round_attempts: u32,
    /// When it is due, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// The exact body sent: the result JSON (`None` while waiting). Never answered by
    /// the API (a result may be large; the execution shows it).
    #[serde(default, skip_serializing)]
    pub body: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    /// Appends `attempt`, keeping at most [`MAX_RECORDED_ATTEMPTS`].
    pub fn push_attempt(&mut self, attempt: DeliveryAttempt) {
        self.attempts.push(attempt);
        if self.attempts.len() > MAX_RECORDED_ATTEMPTS {
            let extra = self.attempts.len() - MAX_RECORDED_ATTEMPTS;
            self.attempts.drain(..extra);
        }
        self.round_attempts = self.round_attempts.saturating_add(1);
    }
}

/// Which deliveries [`crate::store::Store::list_deliveries`] answers, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only this execution's.
    pub execution: Option<Uuid>,
    /// Only those in this state.
    pub state: Option<DeliveryState>,
    /// Only ids after this one (the last of the previous page).
    pub after: Option<Uuid>,
    /// Most answered.
    pub limit: u32,
}

/// A claim on due deliveries: whoever holds it sends them until `lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryClaim {
    /// The claiming node.
    pub owner: String,
    /// Due at or before this time.
    pub now: DateTime<Utc>,
    /// The lease ends then; another node may take them after.
    pub lease_until: DateTime<Utc>,
    /// Most claimed.
    pub limit: u32,
}

/// What the SQL stores keep of a delivery as one JSON text (the columns they query on
/// are kept beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryRecord {
    function: String,
    url: String,
    kind: DeliveryKind,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    attempts: Vec<DeliveryAttempt>,
    created_at: DateTime<Utc>,
}

/// A stored delivery as the SQL stores read it: its queried columns and its JSON text.
#[derive(Debug, Clone)]
pub(crate) struct StoredDelivery<'a> {
    pub id: &'a str,
    pub execution_id: &'a str,
    pub state: &'a str,
    pub next_at: Option<DateTime<Utc>>,
    pub round_attempts: u32,
    pub body: Option<String>,
    pub record: &'a str,
}

/// A stored value that does not decode.
fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

impl Delivery {
    /// The JSON text the SQL stores keep beside the columns.
    pub(crate) fn record_json(&self) -> String {
        let record = DeliveryRecord {
            function: self.function.clone(),
            url: self.url.clone(),
            kind: self.kind,
            secret: self.secret.clone(),
            attempts: self.attempts.clone(),
            created_at: self.created_at,
        };
        serde_json::to_string(&record).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Rebuilds a delivery from its columns and its JSON text.
    pub(crate) fn from_stored(stored: StoredDelivery<'_>) -> Result<Delivery, StoreError> {
        let record: DeliveryRecord =
            serde_json::from_str(stored.record).map_err(|err| corrupt("delivery record", err))?;
        let id = |text: &str| Uuid::parse_str(text).map_err(|err| corrupt("delivery id", err));
        Ok(Delivery {
            id: id(stored.id)?,
            execution_id: id(stored.execution_id)?,
            function: record.function,
            url: record.url,
            kind: record.kind,
            state: DeliveryState::parse(stored.state).ok_or_else(|| {
                corrupt(
                    "delivery state",
                    format!("unknown value {:?}", stored.state),
                )
            })?,
            secret: record.secret,
            attempts: record.attempts,
            round_attempts: stored.round_attempts,
            next_at: stored.next_at,
            body: stored.body,
            created_at: record.created_at,
        })
    }
}
