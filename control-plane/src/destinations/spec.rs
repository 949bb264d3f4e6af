//! The `destinations` of a function's manifest: where its final results are sent, and
//! the named secret that signs them.

use serde::{Deserialize, Serialize};

use super::policy::AddressPolicy;

/// `destinations` in a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationsSpec {
    /// Where results of successful executions go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<DestinationSpec>,
    /// Where results of failed executions go (error, timeout, cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<DestinationSpec>,
    /// The stored secret whose value signs deliveries; absent: the function's generated
    /// destination key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    /// An http or https URL.
    pub url: String,
}

impl DestinationsSpec {
    /// The configured destinations with their field names.
    pub fn urls(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("destinations.on_success.url", &self.on_success),
            ("destinations.on_failure.url", &self.on_failure),
        ]
        .into_iter()
        .filter_map(|(field, spec)| spec.as_ref().map(|spec| (field, spec.url.as_str())))
    }

    /// The URLs whose host is a literal address `policy` refuses, each naming its field.
    pub fn address_problems(&self, policy: AddressPolicy) -> Vec<String> {
        self.urls()
            .filter_map(|(field, url)| {
                let host = reqwest::Url::parse(url).ok()?.host_str()?.to_owned();
                let address = super::policy::literal_address(&host)?;
                let err = policy.check(address).err()?;
                Some(format!("{field} {err}"))
            })
            .collect()
    }

    /// Problems with the URLs under `policy`, each naming its field.
    pub fn problems(&self, policy: AddressPolicy) -> Vec<String> {
        let mut problems: Vec<String> = self
            .urls()
            .filter_map(|(field, url)| {
                policy
                    .check_url(url)
                    .err()
                    .map(|err| format!("{field} {err}"))
            })
            .collect();
        if let Some(secret) = &self.secret {
            if let Err(problem) = crate::secrets::check_name(secret) {
                problems.push(format!("destinations.secret: {problem}"));
            }
        }
        problems
    }
}
