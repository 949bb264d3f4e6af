//! `GET /v1/executions/{id}/logs`: the captured lines as JSON, or with `?follow=true` a
//! server-sent event stream (`log` events, then one `end` event with the final status).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::error::ApiError;
use super::{parse_id, AppState};
use crate::domain::LogLine;
use crate::wire::{LogEnd, LogPage, LogsQuery};

/// Lines answered per page when not following.
const PAGE: u32 = 10_000;
/// How often a follower checks whether a queued execution has started.
const START_POLL: Duration = Duration::from_millis(100);

/// `GET /v1/executions/{id}/logs`.
#[utoipa::path(
    operation_id = "getExecutionLogs",get, path = "/executions/{id}/logs", tag = "executions",
    params(("id" = String, Path, description = "The execution's id (a UUID)."), LogsQuery),
    responses(
        (status = 200, description = "The captured lines; with `follow=true` a server-sent event stream instead: `log` events (a `LogLine` each, the id its `seq`), then one `end` event (`LogEnd`).",
            content((LogPage = "application/json"), (super::openapi::StreamEvent = "text/event-stream"))),
        (status = 400, description = "A bad query parameter (`BAD_REQUEST`).", body = crate::wire::ErrorBody),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let id = parse_id(&id)?;
    if state.store.get_execution(id).await?.is_none() {
        return Err(ApiError::not_found(format!("execution {id} not found")));
    }
    if !query.follow {
        let lines = state.store.read_logs(id, query.after, PAGE).await?;
        return Ok(Json(LogPage {
            execution_id: id,
            lines,
        })
        .into_response());
    }
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(follow(state, id, query.after, sender));
    let stream = ReceiverStream::new(receiver).map(Ok::<Event, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn log_event(line: &LogLine) -> Event {
    Event::default()
        .event("log")
        .id(line.seq.to_string())
        .json_data(line)
        .unwrap_or_else(|_| Event::default().event("log"))
}

/// Streams stored lines, then live ones, until the execution is final and its log is
/// complete. Ends early when the client goes away (the channel closes).
async fn follow(state: Arc<AppState>, id: Uuid, mut last: u64, events: mpsc::Sender<Event>) {
    loop {
        // Subscribe before reading the store so no line falls between the two.
        let live = state.logs.subscribe(id);
        if send_stored(&state, id, &mut last, &events).await.is_err() {
            return;
        }
        match live {
            Some(mut live) => loop {
                match live.recv().await {
                    Ok(line) if line.seq <= last => {}
                    Ok(line) => {
                        last = line.seq;
                        if events.send(log_event(&line)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if send_stored(&state, id, &mut last, &events).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            },
            None => {
                let status = match state.store.get_execution(id).await {
                    Ok(Some(execution)) => execution.status,
                    _ => return,
                };
                if status.is_terminal() {
                    if send_stored(&state, id, &mut last, &events).await.is_err() {
                        return;
                    }
                    let end = Event::default()
                        .event("end")
                        .json_data(LogEnd { status })
                        .unwrap_or_else(|_| Event::default().event("end"));
                    let _ = events.send(end).await;
                    return;
                }
                // Queued, or between its start and its first line: look again shortly.
                tokio::select! {
                    _ = tokio::time::sleep(START_POLL) => {}
                    _ = events.closed() => return,
                }
            }
        }
    }
}

/// Sends every stored line after `last`; `Err` when the client is gone or the store fails.
async fn send_stored(
    state: &AppState,
    id: Uuid,
    last: &mut u64,
    events: &mpsc::Sender<Event>,
) -> Result<(), ()> {
    loop {
        let lines = state
            .store
            .read_logs(id, *last, 1_000)
            .await
            .map_err(|_| ())?;
        if lines.is_empty() {
            return Ok(());
        }
        for line in &lines {
            *last = line.seq;
            events.send(log_event(line)).await.map_err(|_| ())?;
        }
    }
}
