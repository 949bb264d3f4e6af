//! The watchdog's side of a run: its report through the callback route, authenticated
//! by the instance's one-time token, and the fetch of a large input.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{CallbackReport, DispatchError, Dispatcher, Recorded};
use crate::store::Store;

/// SHA-256 of a callback token, hex.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Dispatcher {
    /// Takes the watchdog's report for execution `id`, authenticated by `token`. Answers
    /// whether it was applied (`false`: the execution was already final).
    pub async fn complete(
        &self,
        id: Uuid,
        token: Option<&str>,
        report: CallbackReport,
    ) -> Result<bool, DispatchError> {
        let token = token.ok_or(DispatchError::MissingToken)?;
        let hash = hash_token(token);
        let delivery = self.active.get(&id).map(|run| {
            (
                constant_time_eq(run.token_hash.as_bytes(), hash.as_bytes()),
                run.reports.clone(),
            )
        });
        match delivery {
            Some((false, _)) => Err(DispatchError::WrongToken(id)),
            Some((true, reports)) => {
                let (ack, recorded) = oneshot::channel();
                if reports.send((report, ack)).await.is_err() {
                    return Ok(false);
                }
                match recorded.await {
                    Ok(Recorded::Applied) => Ok(true),
                    Ok(Recorded::AlreadyFinal) | Err(_) => Ok(false),
                    Ok(Recorded::Unavailable) => Err(DispatchError::StoreUnavailable(id)),
                }
            }
            None => {
                let execution = self
                    .store
                    .get_execution(id)
                    .await?
                    .ok_or(DispatchError::ExecutionNotFound(id))?;
                match &execution.callback_token_hash {
                    Some(stored) if constant_time_eq(stored.as_bytes(), hash.as_bytes()) => {
                        Ok(false)
                    }
                    _ => Err(DispatchError::WrongToken(id)),
                }
            }
        }
    }

    /// The input of a running execution, for its watchdog's PAYLOAD_URL fetch.
    pub fn payload(&self, id: Uuid, token: Option<&str>) -> Result<Arc<String>, DispatchError> {
        let token = token.ok_or(DispatchError::MissingToken)?;
        let run = self
            .active
            .get(&id)
            .ok_or(DispatchError::ExecutionNotFound(id))?;
        if !constant_time_eq(run.token_hash.as_bytes(), hash_token(token).as_bytes()) {
            return Err(DispatchError::WrongToken(id));
        }
        run.large_payload
            .clone()
            .ok_or(DispatchError::ExecutionNotFound(id))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
