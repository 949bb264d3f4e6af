//! The sender: claims due deliveries (a lease each, so nodes sharing the store never
//! send one attempt twice), POSTs each signed result to an address that passed the
//! policy, and records the attempt. Waiting callbacks whose execution ended elsewhere
//! (another node, before a restart) are found by a slower sweep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::sign::{signature, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::{now_ms, signing_key, Delivery, DeliveryAttempt, DeliveryClaim, DeliveryFilter};
use super::{DeliveryState, Destinations, ResultBody};
use crate::store::StoreError;

/// Waiting callbacks checked per sweep.
const SWEEP_BATCH: u32 = 100;
/// Pages of waiting callbacks checked per sweep.
const SWEEP_PAGES: u32 = 10;
/// Age past which a waiting callback without its execution is dropped.
const ORPHAN_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Polls between two sweeps of waiting callbacks.
const SWEEP_EVERY: u32 = 5;
/// What a lease adds to an attempt's time limit.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How one attempt went.
enum Sent {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer.
    Error(String),
}

/// Runs the sender until `stop`.
pub fn start(
    destinations: Arc<Destinations>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut polls = 0u32;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = destinations.wake.notified() => {}
                () = tokio::time::sleep(destinations.settings.poll) => {}
            }
            if let Err(err) = destinations.send_due(&stop).await {
                tracing::warn!("cannot claim due deliveries: {err}");
            }
            polls = polls.wrapping_add(1);
            if polls % SWEEP_EVERY == 0 {
                if let Err(err) = destinations.sweep_waiting().await {
                    tracing::warn!("cannot sweep waiting callbacks: {err}");
                }
            }
        }
    })
}

impl Destinations {
    /// Sends due deliveries, a claim of at most `concurrency` at a time, until none is due.
    async fn send_due(&self, stop: &CancellationToken) -> Result<(), StoreError> {
        while !stop.is_cancelled() {
            let now = now_ms();
            let lease = chrono::Duration::from_std(self.settings.timeout + LEASE_MARGIN)
                .unwrap_or(chrono::TimeDelta::minutes(1));
            let claim = DeliveryClaim {
                owner: self.settings.owner.clone(),
                now,
                lease_until: now + lease,
                limit: self.settings.concurrency,
            };
            let claimed = self.store.claim_deliveries(&claim).await?;
            if claimed.is_empty() {
                return Ok(());
            }
            join_all(claimed.into_iter().map(|delivery| self.attempt(delivery))).await;
        }
        Ok(())
    }

    /// One attempt of `delivery`, recorded.
    async fn attempt(&self, mut delivery: Delivery) {
        let sent = self.send(&delivery).await;
        let at = crate::domain::now();
        let (attempt, retry) = match sent {
            Sent::Status(code) => (
                DeliveryAttempt {
                    at,
                    status_code: Some(code),
                    error: None,
                },
                match code {
                    200..=299 => None,
                    408 | 429 | 500..=599 => Some(true),
                    _ => Some(false),
                },
            ),
            Sent::Error(error) => (
                DeliveryAttempt {
                    at,
                    status_code: None,
                    error: Some(error),
                },
                Some(true),
            ),
        };
        delivery.push_attempt(attempt);
        match retry {
            None => {
                delivery.state = DeliveryState::Delivered;
                delivery.next_at = None;
            }
            Some(true) if delivery.round_attempts < self.settings.max_attempts => {
                let wait =
                    chrono::Duration::from_std(self.settings.backoff(delivery.round_attempts))
                        .unwrap_or(chrono::TimeDelta::minutes(10));
                delivery.next_at = Some(now_ms() + wait);
            }
            Some(_) => {
                delivery.state = DeliveryState::Failed;
                delivery.next_at = None;
            }
        }
        match self
            .store
            .update_delivery(&delivery, &self.settings.owner)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery = %delivery.id, "lost the lease of a delivery before recording its attempt")
            }
            Err(err) => {
                tracing::warn!(delivery = %delivery.id, "cannot record a delivery attempt: {err}")
            }
        }
    }

    /// POSTs the signed body of `delivery`.
    async fn send(&self, delivery: &Delivery) -> Sent {
        let Some(body) = delivery.body.as_deref() else {
            return Sent::Error("no result to send".to_owned());
        };
        let key = match signing_key(
            &self.store,
            &self.vault,
            &delivery.function,
            delivery.secret.as_deref(),
        )
        .await
        {
            Ok(key) => key,
            Err(err) => return Sent::Error(err.to_string()),
        };
        let client = match self.client_for(&delivery.url).await {
            Ok(client) => client,
            Err(err) => return Sent::Error(err),
        };
        let timestamp = crate::domain::now().timestamp();
        let request = client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(key.as_bytes(), timestamp, body.as_bytes()),
            )
            .header(DELIVERY_HEADER, delivery.id.to_string())
            .body(body.to_owned());
        // The answer's body is never read: only its status counts.
        match request.send().await {
            Ok(response) => Sent::Status(response.status().as_u16()),
            Err(err) => Sent::Error(describe(&err)),
        }
    }

    /// A client that connects to `url`'s host only at an address the policy allows
    /// (resolved here and pinned, so a second lookup cannot answer another), follows
    /// no redirect and gives up after the attempt's time limit.
    async fn client_for(&self, url: &str) -> Result<reqwest::Client, String> {
        let url = self
            .settings
            .policy
            .check_url(url)
            .map_err(|err| format!("the URL {err}"))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout)
            .no_proxy();
        let builder = if super::policy::literal_address(&host).is_some() {
            builder
        } else {
            let address = self.resolve(&host, port).await?;
            builder.resolve(&host, address)
        };
        builder
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))
    }

    /// The first address of `host` the policy allows.
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let lookup =
            tokio::time::timeout(self.settings.timeout, tokio::net::lookup_host((host, port)));
        let addresses: Vec<SocketAddr> = match lookup.await {
            Ok(Ok(addresses)) => addresses.collect(),
            Ok(Err(err)) => return Err(format!("cannot resolve {host}: {err}")),
            Err(_) => return Err(format!("resolving {host} timed out")),
        };
        let mut refusal = None;
        for address in addresses {
            match self.settings.policy.check(address.ip()) {
                Ok(()) => return Ok(address),
                Err(err) => refusal = Some(err),
            }
        }
        Err(match refusal {
            Some(err) => format!("{host} {err}"),
            None => format!("{host} has no address"),
        })
    }

    /// Arms the waiting callbacks whose execution has ended (on another node, or
    /// before this server restarted).
    async fn sweep_waiting(&self) -> Result<(), StoreError> {
        let mut filter = DeliveryFilter {
            state: Some(DeliveryState::Waiting),
            limit: SWEEP_BATCH,
            ..DeliveryFilter::default()
        };
        let orphaned = now_ms() - ORPHAN_AFTER;
        for _ in 0..SWEEP_PAGES {
            let page = self.store.list_deliveries(&filter).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            filter.after = Some(last.id);
            for waiting in page {
                if self.callbacks.contains(&waiting.execution_id) {
                    continue;
                }
                match self.store.get_execution(waiting.execution_id).await? {
                    Some(execution) if execution.status.is_terminal() => {
                        let body =
                            serde_json::to_string(&ResultBody::of(&execution)).unwrap_or_default();
                        self.store
                            .arm_deliveries(execution.id, &body, now_ms())
                            .await?;
                        self.wake.notify_one();
                    }
                    // Its enqueue never stored the execution (the server stopped between).
                    None if waiting.created_at < orphaned => {
                        self.store
                            .drop_waiting_deliveries(waiting.execution_id)
                            .await?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A send error with its causes (reqwest's own message is terse).
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}
