//! The private network of the docker runtime and the firewall that makes it private.
//! The network is a labelled bridge created with `enable_icc=false`, so its containers
//! cannot reach each other (nor each other's warm instances); the host, and so the
//! control plane, still reaches them. Docker enforces that option with a firewall rule,
//! which an engine started with `--iptables=false` never installs: on the engine's host
//! (a local engine, a server running as root) the rule is verified at start, and rules
//! are added that keep the containers from the link-local range, where cloud metadata
//! services answer with the host's credentials. Elsewhere a loud warning says what could
//! not be checked.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{Network, NetworkCreateRequest};
use bollard::query_parameters::InspectNetworkOptions;
use bollard::Docker;

use super::{engine_address, is_not_found, unreachable, NETWORK_LABEL, SOCKET};

/// Bridge option that stops containers on the network from reaching each other.
const ISOLATE: (&str, &str) = ("com.docker.network.bridge.enable_icc", "false");
/// Bridge option naming the host interface of the network.
const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// The IPv4 link-local range (cloud metadata services live at 169.254.169.254).
pub const LINK_LOCAL: &str = "169.254.0.0/16";

/// Creates `name` (a labelled bridge whose containers cannot reach each other) unless it
/// exists; an idle one made before that isolation is re-created. Answers it inspected.
pub(super) async fn ensure_network(docker: &Docker, name: &str) -> Result<Network, String> {
    match docker
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) if isolated(&network) => Ok(network),
        Ok(network) if network.containers.as_ref().is_none_or(HashMap::is_empty) => {
            if let Err(err) = docker.remove_network(name).await {
                tracing::debug!("removing the unisolated network {name}: {err}");
            }
            create_network(docker, name).await
        }
        Ok(network) => Ok(network),
        Err(err) if is_not_found(&err) => create_network(docker, name).await,
        Err(err) => Err(unreachable(&err)),
    }
}

/// The network's IPv4 gateway: the host address containers reach the control plane on.
pub(super) fn gateway(network: &Network) -> Result<IpAddr, String> {
    ipv4_configs(network)
        .filter_map(|config| config.gateway.as_deref())
        .find_map(|gateway| gateway.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))
        .ok_or_else(|| {
            format!(
                "the Docker network {} has no IPv4 gateway",
                network.name.as_deref().unwrap_or("?")
            )
        })
}

fn ipv4_configs(network: &Network) -> impl Iterator<Item = &bollard::models::IpamConfig> {
    network
        .ipam
        .as_ref()
        .and_then(|ipam| ipam.config.as_ref())
        .into_iter()
        .flatten()
        .filter(|config| {
            config
                .subnet
                .as_deref()
                .is_some_and(|subnet| !subnet.contains(':'))
        })
}

fn isolated(network: &Network) -> bool {
    network
        .options
        .as_ref()
        .and_then(|options| options.get(ISOLATE.0))
        .is_some_and(|value| value == ISOLATE.1)
}

async fn create_network(docker: &Docker, name: &str) -> Result<Network, String> {
    let request = NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("bridge".to_owned()),
        labels: Some(HashMap::from([(NETWORK_LABEL.to_owned(), "1".to_owned())])),
        options: Some(HashMap::from([(
            ISOLATE.0.to_owned(),
            ISOLATE.1.to_owned(),
        )])),
        ..Default::default()
    };
    if let Err(err) = docker.create_network(request).await {
        // Another server may have created it meanwhile.
        tracing::debug!("creating the network {name}: {err}");
    }
    docker
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await
        .map_err(|err| format!("cannot create the Docker network {name}: {err}"))
}

/// Verifies that the engine enforces the network's isolation and blocks the link-local
/// range for its containers. An error stops the server; what cannot be checked from
/// here (a remote engine, a server that is not root) is a loud warning.
pub(super) async fn guard(network: &Network) -> Result<(), String> {
    let name = network.name.as_deref().unwrap_or("?");
    let local = engine_address() == SOCKET || engine_address().starts_with("unix://");
    if !local || !nix::unistd::Uid::effective().is_root() {
        tracing::warn!(
            "cannot check the firewall of the Docker network {name} (it needs a local engine and a server running as root): containers on it may reach each other if the engine does not enforce enable_icc, and may reach the link-local range {LINK_LOCAL} (cloud metadata); block it on the engine's host with `iptables -I DOCKER-USER -d {LINK_LOCAL} -j DROP`"
        );
        return Ok(());
    }
    let bridge = bridge_name(network)?;
    let rules = iptables(&["-S"]).await?;
    let icc_rule = format!("-i {bridge} -o {bridge} -j DROP");
    if !rules.lines().any(|line| line.ends_with(&icc_rule)) {
        return Err(format!(
            "the Docker network {name} does not isolate its containers: the engine installed no firewall rule for enable_icc=false on {bridge} (is dockerd running with --iptables=false?); functions could reach each other's warm instances. Fix the engine's setup, or remove the network {name} if it was created without isolation"
        ));
    }
    let subnets: Vec<String> = ipv4_configs(network)
        .filter_map(|config| config.subnet.clone())
        .collect();
    if subnets.is_empty() {
        return Err(format!("the Docker network {name} has no IPv4 subnet"));
    }
    for subnet in &subnets {
        for chain in ["DOCKER-USER", "INPUT"] {
            let rule = [chain, "-s", subnet, "-d", LINK_LOCAL, "-j", "DROP"];
            if iptables(&[&["-C"][..], &rule].concat()).await.is_err() {
                iptables(&[&["-I"][..], &rule].concat())
                    .await
                    .map_err(|err| format!("cannot block {LINK_LOCAL} for {name}: {err}"))?;
            }
        }
    }
    Ok(())
}

/// The host interface of the bridge network.
fn bridge_name(network: &Network) -> Result<String, String> {
    if let Some(bridge) = network
        .options
        .as_ref()
        .and_then(|options| options.get(BRIDGE_NAME))
    {
        return Ok(bridge.clone());
    }
    let id = network.id.as_deref().unwrap_or_default();
    match id.get(..12) {
        Some(short) => Ok(format!("br-{short}")),
        None => Err(format!("the Docker network id {id:?} is too short")),
    }
}

/// Runs `iptables args` (the filter table); answers its stdout, or why it failed.
async fn iptables(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .await
        .map_err(|err| format!("cannot run iptables: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
