//! `GET /v1/functions/{name}/logs`: with `?instance=ID`, the lines of its own a warm
//! instance wrote (lines marked with none of its executions); with `?follow=true`, a
//! server-sent event stream of every line the function's executions write from now on
//! (`log` events naming their execution).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::AppState;
use crate::logs::FunctionLine;
use crate::wire::{FunctionLogsQuery, InstanceLogPage};

/// `GET /v1/functions/{name}/logs`.
#[utoipa::path(
    operation_id = "getFunctionLogs",get, path = "/functions/{name}/logs", tag = "functions",
    params(("name" = String, Path, description = "The function's name."), FunctionLogsQuery),
    responses(
        (status = 200, description = "With `instance`: that warm instance's own lines. With `follow=true`: a server-sent event stream of `log` events (a `FunctionLine` each) from now on, and `lagged` events when lines were skipped.",
            content((InstanceLogPage = "application/json"), (super::openapi::StreamEvent = "text/event-stream"))),
        (status = 400, description = "Neither or both of `instance` and `follow` (`BAD_REQUEST`).", body = crate::wire::ErrorBody),
        (status = 404, description = "No such function, or no such warm instance on this node (`NOT_FOUND`).", body = crate::wire::ErrorBody),
    ))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: Result<Query<FunctionLogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    // A function that does not exist has no logs to follow (and a typo gets a 404).
    state.catalog.current(&name).await?;
    match (query.instance, query.follow) {
        (Some(instance), false) => {
            let lines = state
                .dispatcher
                .pools()
                .instance_lines(&name, &instance)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "no warm instance {instance:?} of {name:?} runs on this node"
                    ))
                })?;
            Ok(Json(InstanceLogPage {
                instance_id: instance,
                lines,
            })
            .into_response())
        }
        (None, true) => {
            let live = state.logs.subscribe_function(&name);
            let (sender, receiver) = mpsc::channel(256);
            tokio::spawn(follow(live, sender));
            let stream = ReceiverStream::new(receiver).map(Ok::<Event, Infallible>);
            Ok(Sse::new(stream)
                .keep_alive(KeepAlive::default())
                .into_response())
        }
        _ => Err(ApiError::bad_request(
            "ask for ?instance=ID (a warm instance's own lines) or ?follow=true (every execution's lines from now on); an execution's log is at /v1/executions/{id}/logs",
        )),
    }
}

/// Passes the function's lines on until the client goes away.
async fn follow(mut live: broadcast::Receiver<FunctionLine>, events: mpsc::Sender<Event>) {
    loop {
        let event = match live.recv().await {
            Ok(line) => Event::default()
                .event("log")
                .json_data(&line)
                .unwrap_or_else(|_| Event::default().event("log")),
            Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                .event("lagged")
                .data(format!("{missed} lines went by too fast and were skipped")),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        tokio::select! {
            sent = events.send(event) => if sent.is_err() { return },
            () = events.closed() => return,
        }
    }
}
