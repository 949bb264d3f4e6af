//! Warm instances on the docker runtime: one container per instance, from the function's
//! image, hardened and limited like a one-shot container, running the watchdog in WARM
//! mode on port 8080 of its own address on the private network (never in a network
//! sandbox: it lives for many executions). The control plane, on the host, reaches it
//! at that bridge address. It carries `gantry.instance=<key>` instead of
//! `gantry.execution`; the owner label it shares with every container of the server
//! finds it as an orphan at the next start. It is removed once stopped (or dropped).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bollard::models::EndpointSettings;
use bollard::query_parameters::InspectContainerOptions;
use gantry_protocol::env::{self, defaults};

use super::{is_connection_error, unreachable, DockerRuntime};
use crate::runtime::{Instance, RuntimeError, WarmLaunch, WarmStarted};

/// Label naming the warm instance a container runs (the pool's key).
pub(super) const INSTANCE_LABEL: &str = "gantry.instance";

impl DockerRuntime {
    /// Starts the container of one warm instance and answers it with the endpoint of its
    /// WARM server. Launch variables come first; WARM_HOST and WARM_PORT are the
    /// runtime's (the endpoint depends on them), RUNTIME_URL the WARM default unless the
    /// manifest sets it.
    pub(super) async fn warm(&self, launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
        let listen = [
            (env::WARM_HOST.to_owned(), defaults::WARM_HOST.to_owned()),
            (env::WARM_PORT.to_owned(), defaults::WARM_PORT.to_string()),
        ];
        let vars = launch.env.iter().cloned().chain(listen);
        let container_env =
            Self::container_env(&launch.function.spec, defaults::WARM_RUNTIME_URL, vars);
        let mut instance = self
            .start_container(
                &format!("gantry-warm-{}", launch.key),
                &launch.function,
                (INSTANCE_LABEL, launch.key.to_string()),
                container_env,
                &launch.logs,
                None,
            )
            .await?;
        match self.address(&instance.container).await {
            Ok(address) => Ok(WarmStarted {
                endpoint: format!("http://{}", SocketAddr::new(address, defaults::WARM_PORT)),
                instance: Box::new(instance),
            }),
            Err(err) => {
                // Stopped and removed now rather than left to the pool.
                instance.kill(Duration::ZERO).await;
                Err(err)
            }
        }
    }

    /// The address of the started `container` on the runtime's network.
    async fn address(&self, container: &str) -> Result<IpAddr, RuntimeError> {
        let info = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|err| {
                RuntimeError::Spawn(if is_connection_error(&err) {
                    unreachable(&err)
                } else {
                    format!("cannot inspect the warm container {container}: {err}")
                })
            })?;
        let state = info
            .state
            .as_ref()
            .map(|state| {
                format!(
                    "{} (exit code {})",
                    state
                        .status
                        .map(|status| status.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    state.exit_code.unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "unknown".into());
        let networks: HashMap<String, EndpointSettings> = info
            .network_settings
            .and_then(|settings| settings.networks)
            .unwrap_or_default();
        let address = networks
            .get(self.network())
            .and_then(|endpoint| endpoint.ip_address.as_deref())
            .filter(|address| !address.is_empty())
            .ok_or_else(|| {
                RuntimeError::Spawn(format!(
                    "the warm container {container} has no address on the network {} (it is {state}); see its logs",
                    self.network()
                ))
            })?;
        address.parse::<IpAddr>().map_err(|err| {
            RuntimeError::Spawn(format!(
                "the warm container {container} has the address {address:?} on {}, which is not an IP address: {err}",
                self.network()
            ))
        })
    }
}
