//! `/v1/deliveries` (the undeliverable results and their re-drive), the `deliveries` of
//! `GET /v1/executions/{id}`, and `GET /v1/functions/{name}/destination-key`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use super::error::{ApiError, ApiErrorCode};
use super::{parse_id, split_action, AppState};
use crate::destinations::{function_key, DeliveryFilter, DeliveryState, DestinationError};
use crate::wire::{DeliveryInfo, DeliveryPage, DeliveryQuery, DestinationKey, ExecutionDetail};

/// Default page of `GET /v1/deliveries`.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page of `GET /v1/deliveries`.
const MAX_LIMIT: u32 = 500;
/// Most deliveries shown with one execution.
const MAX_PER_EXECUTION: u32 = 100;

impl From<DestinationError> for ApiError {
    fn from(err: DestinationError) -> ApiError {
        match err {
            DestinationError::Store(err) => err.into(),
            DestinationError::Key(err) => err.into(),
        }
    }
}

/// `GET /v1/executions/{id}`: the record with the deliveries of its result.
#[utoipa::path(
    operation_id = "getExecution",get, path = "/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "The execution's id (a UUID).")),
    responses(
        (status = 200, description = "The execution with the deliveries of its result.", body = ExecutionDetail),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = crate::wire::ErrorBody),
        (status = 405, description = "`id:action` takes POST (`METHOD_NOT_ALLOWED`).", body = crate::wire::ErrorBody),
    ))]
pub async fn execution(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    let (id, action) = split_action(&id);
    if action.is_some() {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorCode::MethodNotAllowed,
            "actions take POST",
        ));
    }
    let id = parse_id(id)?;
    let execution = state
        .store
        .get_execution(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {id} not found")))?;
    let filter = DeliveryFilter {
        execution: Some(id),
        limit: MAX_PER_EXECUTION,
        ..DeliveryFilter::default()
    };
    let deliveries = state.store.list_deliveries(&filter).await?;
    Ok(Json(ExecutionDetail {
        execution,
        deliveries,
    }))
}

/// `GET /v1/deliveries?state=failed`: deliveries by id, oldest first.
#[utoipa::path(
    operation_id = "listDeliveries",get, path = "/deliveries", tag = "deliveries",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries, oldest first.", body = DeliveryPage),
        (status = 400, description = "A bad query parameter (`BAD_REQUEST`).", body = crate::wire::ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    // A query axum cannot read answers in the usual error shape, not as plain text.
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {text:?} is not one of waiting, pending, delivered, failed"
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}, got {limit}"
        )));
    }
    let filter = DeliveryFilter {
        execution: None,
        state: wanted,
        after: query.cursor,
        limit,
    };
    let deliveries = state.store.list_deliveries(&filter).await?;
    let next_cursor = (deliveries.len() == limit as usize)
        .then(|| deliveries.last().map(|delivery| delivery.id))
        .flatten();
    Ok(Json(DeliveryPage {
        deliveries,
        next_cursor,
    }))
}

/// `POST /v1/deliveries/{id}:redrive`: a failed delivery is sent again (a new round of
/// attempts). 409 when it is not failed.
pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(segment): Path<String>,
) -> Result<Json<DeliveryInfo>, ApiError> {
    let (id, action) = split_action(&segment);
    if action != Some("redrive") {
        return Err(ApiError::not_found(
            "unknown action; use POST /v1/deliveries/{id}:redrive",
        ));
    }
    let id = Uuid::parse_str(id)
        .map_err(|_| ApiError::not_found(format!("delivery {id:?} not found (ids are UUIDs)")))?;
    let redriven = state
        .store
        .redrive_delivery(id, crate::domain::now())
        .await?;
    let filter = DeliveryFilter {
        after: Some(Uuid::from_u128(id.as_u128().wrapping_sub(1))),
        limit: 1,
        ..DeliveryFilter::default()
    };
    let found = state.store.list_deliveries(&filter).await?;
    let delivery = found
        .into_iter()
        .find(|delivery| delivery.id == id)
        .ok_or_else(|| ApiError::not_found(format!("delivery {id} not found")))?;
    if !redriven {
        return Err(ApiError::conflict(format!(
            "delivery {id} is {}, not failed: only failed deliveries are re-driven",
            delivery.state.as_str()
        )));
    }
    Ok(Json(delivery))
}

/// `GET /v1/functions/{name}/destination-key`: the function's generated signing key
/// (made on first read), for admins.
#[utoipa::path(
    operation_id = "getDestinationKey",get, path = "/functions/{name}/destination-key", tag = "deliveries",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The key that signs the function's deliveries (admins only).", body = DestinationKey),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn key(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationKey>, ApiError> {
    let function = state
        .store
        .get_function(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("function {name:?} not found")))?;
    let key = function_key(&state.store, &state.vault, &name).await?;
    Ok(Json(DestinationKey {
        function: name,
        key: key.to_string(),
        secret: function.spec.destinations.and_then(|d| d.secret),
    }))
}
