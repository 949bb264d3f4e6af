//! `/v1/deliveries`, the `deliveries` of an execution and a function's destination key:
//! what the API answers of result deliveries (never their body or signing key).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::destinations::Delivery;
use crate::domain::Execution;

/// One delivery as the API shows it: without its body (the execution has the result)
/// and never with its signing key.
pub type DeliveryInfo = Delivery;

/// `GET /v1/executions/{id}`: the record and the deliveries of its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionDetail {
    /// The record.
    #[serde(flatten)]
    pub execution: Execution,
    /// Where its result goes or went.
    #[serde(default)]
    pub deliveries: Vec<DeliveryInfo>,
}

/// The query of `GET /v1/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    /// This page's deliveries.
    pub deliveries: Vec<DeliveryInfo>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<Uuid>,
}

/// `GET /v1/functions/{name}/destination-key` (admins only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
