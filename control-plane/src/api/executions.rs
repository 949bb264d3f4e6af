//! `/v1/executions`: list with filters and cursor paging, read one, its chain tree,
//! cancel, re-drive.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};

use super::error::{ApiError, ApiErrorCode};
use super::{parse_id, split_action, AppState};
use crate::domain::{ExecutionStatus, Trigger};
use crate::store::{Deletion, ExecutionFilter};
use crate::wire::{
    ChainPage, ChainQuery, ExecutionPage, ExecutionQuery, ListedExecution, RetryAnswer,
};

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: u32 = 50;
/// Largest page.
const MAX_LIMIT: u32 = 1_000;

/// Largest answer of a listing with payloads: a page stops early past it (its
/// `nextCursor` continues where it stopped).
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Which payloads a listing answers.
#[derive(Debug, Clone, Copy, Default)]
struct Include {
    input: bool,
    output: bool,
}

impl Include {
    fn parse(text: Option<&str>) -> Result<Include, ApiError> {
        let mut include = Include::default();
        for part in text.iter().flat_map(|t| t.split(',')).map(str::trim) {
            match part {
                "" => {}
                "input" => include.input = true,
                "output" => include.output = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "include {other:?} is unknown; use input, output or both"
                    )))
                }
            }
        }
        Ok(include)
    }
}

/// `GET /v1/executions`: newest first; `nextCursor` fetches the next page. Inputs and
/// outputs only with `include=input,output`.
#[utoipa::path(
    operation_id = "listExecutions",get, path = "/executions", tag = "executions",
    params(ExecutionQuery),
    responses(
        (status = 200, description = "A page of executions, newest first.", body = ExecutionPage),
        (status = 400, description = "A bad query parameter (`BAD_REQUEST`).", body = crate::wire::ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ExecutionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let include = Include::parse(query.include.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let statuses = names(query.status.as_deref(), |name| {
        ExecutionStatus::parse(name).ok_or_else(|| {
            let known = ExecutionStatus::ALL.map(ExecutionStatus::as_str);
            format!("unknown status {name:?}; use {}", one_of(&known))
        })
    })?;
    let triggers = names(query.trigger.as_deref(), |name| {
        Trigger::parse(name).ok_or_else(|| {
            let known = Trigger::ALL.map(Trigger::as_str);
            format!("unknown trigger {name:?}; use {}", one_of(&known))
        })
    })?;
    let before_id = match &query.cursor {
        Some(cursor) => Some(uuid::Uuid::parse_str(cursor).map_err(|_| {
            ApiError::bad_request(format!("cursor {cursor:?} is not one this server gave"))
        })?),
        None => None,
    };
    let filter = ExecutionFilter {
        function: query.function.filter(|name| !name.is_empty()),
        statuses,
        triggers,
        since: query
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        dead_letter: query.dead_letter,
        before_id,
        // One more than asked: a next page exists only if it came back.
        limit: limit + 1,
        with_payloads: include.input || include.output,
    };
    let mut executions = state.store.list_executions(&filter).await?;
    let mut more = executions.len() > limit as usize;
    executions.truncate(limit as usize);
    let mut listed: Vec<ListedExecution> = Vec::with_capacity(executions.len());
    let mut size = 0usize;
    for record in executions {
        let execution = ListedExecution {
            record,
            with_input: include.input,
            with_output: include.output,
        };
        size += serde_json::to_vec(&execution)
            .map_err(|err| ApiError::internal(&err))?
            .len();
        if size > MAX_LIST_BYTES && !listed.is_empty() {
            more = true;
            break;
        }
        listed.push(execution);
    }
    let next_cursor = more
        .then(|| listed.last().map(|execution| execution.record.id))
        .flatten();
    Ok(Json(ExecutionPage {
        executions: listed,
        next_cursor,
    }))
}

/// The comma-separated names of `list` (blanks skipped), each parsed by `parse`, whose
/// error is the 400's reason; each once, so a long list of repeats makes no long query.
fn names<T: PartialEq>(
    list: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ApiError> {
    let mut parsed = Vec::new();
    for name in (list.into_iter().flat_map(|list| list.split(',')))
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let value = parse(name).map_err(ApiError::bad_request)?;
        if !parsed.contains(&value) {
            parsed.push(value);
        }
    }
    Ok(parsed)
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// RFC 3339 (`2026-11-23T10:00:00Z`) or milliseconds since the epoch.
fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        if let Some(time) = Utc.timestamp_millis_opt(ms).single() {
            return Ok(time);
        }
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{field} must be an RFC 3339 time (2026-11-23T10:00:00Z) or milliseconds since the epoch, got {text:?}"
            ))
        })
}

/// `DELETE /v1/executions/{id}`: 204; the record and its logs are gone. 409 while it
/// has not finished (cancel it first).
#[utoipa::path(
    operation_id = "deleteExecution",delete, path = "/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "The execution's id (a UUID).")),
    responses(
        (status = 204, description = "The record and its logs are gone."),
        (status = 405, description = "`id:action` takes POST (`METHOD_NOT_ALLOWED`).", body = crate::wire::ErrorBody),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = crate::wire::ErrorBody),
        (status = 409, description = "It has not finished; cancel it first (`CONFLICT`).", body = crate::wire::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if split_action(&id).1.is_some() {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorCode::MethodNotAllowed,
            "actions take POST",
        ));
    }
    let id = parse_id(&id)?;
    match state.store.delete_execution(id).await? {
        Deletion::Deleted => Ok(StatusCode::NO_CONTENT),
        Deletion::NotFound => Err(ApiError::not_found(format!("execution {id} not found"))),
        Deletion::Unfinished => Err(ApiError::conflict(format!(
            "execution {id} has not finished; cancel it first"
        ))),
    }
}

/// `POST /v1/executions/{id}:cancel`: the final record; 409 if it had already finished.
/// `POST /v1/executions/{id}:retry`: 202 with the new execution re-driving a failed one;
/// 409 if it did not fail.
pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(segment): Path<String>,
) -> Result<Response, ApiError> {
    match split_action(&segment) {
        (id, Some("retry")) => {
            let id = parse_id(id)?;
            let retry = state.dispatcher.redrive(id).await?;
            let body = RetryAnswer {
                execution_id: retry.id,
                status: retry.status,
                retry_of: id,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        (id, Some("cancel")) => {
            let id = parse_id(id)?;
            Ok(Json(state.dispatcher.cancel(id).await?).into_response())
        }
        (_, Some(other)) => Err(ApiError::not_found(format!(
            "unknown action :{other}; use :cancel or :retry"
        ))),
        (_, None) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorCode::MethodNotAllowed,
            "POST needs an action, e.g. /v1/executions/{id}:cancel",
        )),
    }
}

/// Page size of a chain tree when `limit` is absent.
const DEFAULT_CHAIN_LIMIT: u32 = 1_000;
/// Largest page of a chain tree.
const MAX_CHAIN_LIMIT: u32 = 10_000;

/// `GET /v1/executions/{id}/chain`: the tree of executions it started, a page of
/// members at a time (`limit`, `cursor` from `nextCursor`).
#[utoipa::path(
    operation_id = "getExecutionChain",get, path = "/executions/{id}/chain", tag = "executions",
    params(("id" = String, Path, description = "The execution's id (a UUID)."), ChainQuery),
    responses(
        (status = 200, description = "A page of the tree of executions it started.", body = ChainPage),
        (status = 400, description = "A bad query parameter (`BAD_REQUEST`).", body = crate::wire::ErrorBody),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn chain(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ChainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChainPage>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let id = parse_id(&id)?;
    let limit = query.limit.unwrap_or(DEFAULT_CHAIN_LIMIT);
    if !(1..=MAX_CHAIN_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_CHAIN_LIMIT}"
        )));
    }
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| {
            uuid::Uuid::parse_str(cursor).map_err(|_| {
                ApiError::bad_request(format!("cursor {cursor:?} is not a nextCursor"))
            })
        })
        .transpose()?;
    Ok(Json(state.dispatcher.chain_tree(id, after, limit).await?))
}

#[cfg(test)]
mod tests {
    use super::names;
    use crate::domain::Trigger;

    fn triggers(list: &str) -> Result<Vec<Trigger>, String> {
        names(Some(list), |name| {
            Trigger::parse(name).ok_or_else(|| format!("unknown trigger {name:?}"))
        })
        .map_err(|err| format!("{err:?}"))
    }

    #[test]
    fn names_are_trimmed_kept_once_and_refused_with_a_reason() {
        assert_eq!(
            triggers(" chain,,api , chain,api"),
            Ok(vec![Trigger::Chain, Trigger::Api])
        );
        assert_eq!(
            triggers(&vec!["retry"; 5_000].join(",")),
            Ok(vec![Trigger::Retry])
        );
        assert_eq!(triggers(" , "), Ok(Vec::new()));
        assert!(triggers("api,cron")
            .unwrap_err()
            .contains("unknown trigger \\\"cron\\\""));
        assert_eq!(super::one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(super::one_of(&["a"]), "a");
    }
}
