//! Result deliveries as the CLI shows them: a function's `destinations` in `gantry fn
//! get`, an execution's deliveries in `gantry exec get`, `gantry fn destination-key`,
//! `gantry exec deliveries` (the undeliverable list) and `gantry exec redeliver`.

use anyhow::Result;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::client::decode;
use super::table::{time, truncate, Table};
use super::{out, out_json, Ctx};
use crate::destinations::{DeliveryAttempt, DestinationsSpec};
use crate::wire::{DeliveryInfo, DeliveryPage, DestinationKey};

/// Longest error text of an attempt.
const ERROR_WIDTH: usize = 60;

/// The part of a spec `fn get` reads here.
#[derive(Deserialize)]
struct WithDestinations {
    #[serde(default)]
    destinations: Option<DestinationsSpec>,
}

/// The `fn get` lines of the destinations of function `name` with `spec` (empty
/// without any).
pub fn destinations_block(spec: &Value, name: &str) -> String {
    let destinations = serde_json::from_value::<WithDestinations>(spec.clone())
        .ok()
        .and_then(|spec| spec.destinations);
    let Some(destinations) = destinations else {
        return String::new();
    };
    let mut text = String::from("destinations:\n");
    for (field, url) in destinations.urls() {
        let kind = field
            .trim_start_matches("destinations.")
            .trim_end_matches(".url");
        text.push_str(&format!("  {kind}: {url}\n"));
    }
    match &destinations.secret {
        Some(secret) => text.push_str(&format!("  signed with: secret {secret}\n")),
        None => text.push_str(&format!(
            "  signed with: the function's key (gantry fn destination-key {name})\n"
        )),
    }
    text
}

/// The `exec get` block of an execution's deliveries (empty without any).
pub fn deliveries_block(deliveries: &[DeliveryInfo]) -> String {
    if deliveries.is_empty() {
        return String::new();
    }
    let mut text = String::from("deliveries:\n");
    for delivery in deliveries {
        text.push_str(&format!(
            "  {} {} {} ({} attempts{})\n",
            delivery.kind.as_str(),
            delivery.url,
            delivery.state.as_str(),
            delivery.attempts.len(),
            delivery
                .next_at
                .map(|at| format!(", next at {}", time(Some(at))))
                .unwrap_or_default(),
        ));
        for attempt in &delivery.attempts {
            text.push_str(&format!(
                "    {}  {}\n",
                time(Some(attempt.at)),
                outcome(attempt)
            ));
        }
    }
    text
}

fn outcome(attempt: &DeliveryAttempt) -> String {
    match (attempt.status_code, &attempt.error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(error)) => truncate(error, ERROR_WIDTH),
        (None, None) => String::new(),
    }
}

/// `fn destination-key NAME`: the function's generated signing key (admins only).
pub async fn destination_key(ctx: &Ctx, name: &str) -> Result<()> {
    let body = ctx
        .client
        .get(&["v1", "functions", name, "destination-key"], &[])
        .await?;
    if ctx.json() {
        return out_json(&body);
    }
    let key: DestinationKey = decode(body)?;
    if let Some(secret) = &key.secret {
        eprintln!("note: {name}'s deliveries are signed with secret {secret}, not this key");
    }
    out(&format!("{}\n", key.key))
}

/// `exec deliveries [--state STATE]`: deliveries, oldest first (default: the failed
/// ones).
pub async fn list(ctx: &Ctx, state: &str, cursor: Option<&str>) -> Result<()> {
    let mut query = vec![("state", state.to_owned())];
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
    let body = ctx.client.get(&["v1", "deliveries"], &query).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let page: DeliveryPage = decode(body)?;
    let mut table = Table::new(&[
        "ID",
        "EXECUTION",
        "FUNCTION",
        "KIND",
        "URL",
        "ATTEMPTS",
        "LAST",
    ]);
    for delivery in &page.deliveries {
        table.row(vec![
            delivery.id.to_string(),
            delivery.execution_id.to_string(),
            delivery.function.clone(),
            delivery.kind.as_str().to_owned(),
            delivery.url.clone(),
            delivery.attempts.len().to_string(),
            delivery.attempts.last().map(outcome).unwrap_or_default(),
        ]);
    }
    if page.deliveries.is_empty() {
        eprintln!("no {state} deliveries");
    } else {
        out(&table.render())?;
    }
    if let Some(cursor) = page.next_cursor {
        eprintln!("more deliveries: repeat with --cursor {cursor}");
    }
    Ok(())
}

/// `exec redeliver ID`: sends a failed delivery again.
pub async fn redeliver(ctx: &Ctx, id: &str) -> Result<()> {
    let client = &ctx.client;
    let url = client.url(&["v1", "deliveries", &format!("{id}:redrive")], &[]);
    let (_, body) = client.call(client.request(Method::POST, url)).await?;
    if ctx.json() {
        return out_json(&body);
    }
    let delivery: DeliveryInfo = decode(body)?;
    out(&format!("delivery {id}: {}\n", delivery.state.as_str()))
}
