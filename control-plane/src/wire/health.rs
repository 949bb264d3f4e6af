//! `/healthz` and `/readyz` answers.

use serde::{Deserialize, Serialize};

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// How the server is.
    pub status: HealthStatus,
}

/// What `/healthz` and `/readyz` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum HealthStatus {
    /// The process answers (`/healthz`).
    #[serde(rename = "ok")]
    Ok,
    /// Start-up recovery is still running.
    #[serde(rename = "starting")]
    Starting,
    /// Recovery is done and the store answers.
    #[serde(rename = "ready")]
    Ready,
    /// The store does not answer.
    #[serde(rename = "store unavailable")]
    StoreUnavailable,
}

impl Health {
    /// A body saying `status`.
    pub fn of(status: HealthStatus) -> Health {
        Health { status }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_before() {
        for (status, text) in [
            (HealthStatus::Ok, r#"{"status":"ok"}"#),
            (HealthStatus::Starting, r#"{"status":"starting"}"#),
            (HealthStatus::Ready, r#"{"status":"ready"}"#),
            (
                HealthStatus::StoreUnavailable,
                r#"{"status":"store unavailable"}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&Health::of(status)).unwrap(), text);
            assert_eq!(serde_json::from_str::<Health>(text).unwrap().status, status);
        }
    }
}
