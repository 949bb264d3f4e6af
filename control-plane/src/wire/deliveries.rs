//! `/v1/deliveries`, the `deliveries` of an execution and a function's destination key:
//! what the API answers of result deliveries (never their body or signing key).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::destinations::{Delivery, DeliveryAttempt, DeliveryKind, DeliveryState};
use crate::domain::Execution;

/// One delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryInfo {
    /// Its id (`X-Gantry-Delivery` on every attempt).
    pub id: Uuid,
    /// The execution whose result it carries.
    pub execution_id: Uuid,
    /// That execution's function.
    pub function: String,
    /// Where it goes.
    pub url: String,
    /// `callback`, `on_success` or `on_failure`.
    pub kind: DeliveryKind,
    /// `waiting`, `pending`, `delivered` or `failed`.
    pub state: DeliveryState,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryInfo {
    fn from(delivery: Delivery) -> DeliveryInfo {
        DeliveryInfo {
            id: delivery.id,
            execution_id: delivery.execution_id,
            function: delivery.function,
            url: delivery.url,
            kind: delivery.kind,
            state: delivery.state,
            attempts: delivery.attempts,
            next_at: delivery.next_at,
        }
    }
}

/// `GET /v1/executions/{id}`: the record and the deliveries of its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDetail {
    /// The record.
    #[serde(flatten)]
    pub execution: Execution,
    /// Where its result goes or went.
    #[serde(default)]
    pub deliveries: Vec<DeliveryInfo>,
}

/// The query of `GET /v1/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryQuery {
    /// Only deliveries in this state (`failed`: the undeliverable ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Page size (at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// A `nextCursor` of an earlier page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Uuid>,
}

/// The answer of `GET /v1/deliveries`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    /// This page's deliveries.
    pub deliveries: Vec<DeliveryInfo>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<Uuid>,
}

/// `GET /v1/functions/{name}/destination-key` (admins only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationKey {
    /// The function.
    pub function: String,
    /// Its generated key: the HMAC-SHA256 key is this text's bytes.
    pub key: String,
    /// The named secret that signs its deliveries instead, when its manifest names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}
