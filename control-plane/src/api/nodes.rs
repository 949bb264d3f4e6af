//! `/v1/nodes`: the control-plane nodes sharing this store, with their state.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::AppState;
use crate::wire::{NodeInfo, NodeList};

/// `GET /v1/nodes`: every node, by id; one without a heartbeat for longer than a lease
/// is `lost`.
#[utoipa::path(
    operation_id = "listNodes",get, path = "/nodes", tag = "cluster",
    responses((status = 200, description = "Every node sharing the store.", body = NodeList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<NodeList>, ApiError> {
    let now = crate::domain::now();
    let grace = crate::nodes::lost_after();
    let nodes = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .map(|record| NodeInfo::new(record, now, grace))
        .collect();
    Ok(Json(NodeList {
        this_node: state.dispatcher.node_id().to_owned(),
        nodes,
    }))
}
