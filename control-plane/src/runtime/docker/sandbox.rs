//! Network sandboxes: idle containers already started on the private network, each
//! handed to exactly one function container, which joins its network namespace
//! (`network_mode: container:<id>`). Setting up a container's network on a user-defined
//! bridge is most of a cold start (a plain `docker run` on it takes ~300 ms, joining a
//! ready namespace ~110 ms), so a few sandboxes are kept ready in the background.
//!
//! A sandbox is used once and removed with its execution: no state crosses executions.
//! It runs the watchdog of `gantry/watchdog:latest` idling in WARM mode on a loopback
//! port nothing else uses; without that image the runtime sets up each container's
//! network itself, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};
use bollard::Docker;

use super::removal::Removals;
use super::{DockerRuntime, OWNER_LABEL};

/// Image the sandboxes run: the FROM scratch watchdog image (`make watchdog-image`).
pub const SANDBOX_IMAGE: &str = "gantry/watchdog:latest";
/// Label that marks a sandbox (beside the owner label).
const ROLE_LABEL: &str = "gantry.role";
/// Loopback port the idle watchdog listens on, out of the way of functions' ports.
const IDLE_PORT: &str = "65001";

/// Ready sandboxes of one control plane.
pub(super) struct Sandboxes {
    docker: Docker,
    network: String,
    owner: String,
    keep_ready: usize,
    ready: Mutex<Vec<String>>,
    starting: AtomicUsize,
    /// The runtime's removals: sandboxes start on its tracker, so the drain waits for them.
    removals: Removals,
}

impl Sandboxes {
    /// Sandboxes on `network`, `keep_ready` of them started ahead; `None` when
    /// `keep_ready` is 0 or the sandbox image is not on the engine.
    pub(super) async fn new(
        docker: Docker,
        network: String,
        owner: String,
        keep_ready: usize,
        removals: Removals,
    ) -> Option<Arc<Sandboxes>> {
        if keep_ready == 0 {
            return None;
        }
        if docker.inspect_image(SANDBOX_IMAGE).await.is_err() {
            tracing::info!(
                "{SANDBOX_IMAGE} is not on the engine, so every container sets up its own network (slower cold starts); `make watchdog-image` builds it"
            );
            return None;
        }
        let sandboxes = Arc::new(Sandboxes {
            docker,
            network,
            owner,
            keep_ready,
            ready: Mutex::new(Vec::new()),
            starting: AtomicUsize::new(0),
            removals,
        });
        sandboxes.refill();
        Some(sandboxes)
    }

    /// A ready sandbox for one execution (the caller removes it afterwards), and starts
    /// a replacement. `None` when none is ready: the caller sets up its own network.
    pub(super) fn take(self: &Arc<Self>) -> Option<String> {
        let taken = self.ready.lock().expect("sandbox lock").pop();
        self.refill();
        taken
    }

    /// Starts sandboxes in the background until `keep_ready` are ready or starting.
    fn refill(self: &Arc<Self>) {
        loop {
            let ready = self.ready.lock().expect("sandbox lock").len();
            let starting = self.starting.load(Ordering::SeqCst);
            let tracker = self.removals.tracker();
            if ready + starting >= self.keep_ready || tracker.is_closed() {
                return;
            }
            self.starting.fetch_add(1, Ordering::SeqCst);
            let sandboxes = self.clone();
            tracker.spawn(async move {
                match sandboxes.start_one().await {
                    Ok(id) => sandboxes.ready.lock().expect("sandbox lock").push(id),
                    Err(err) => tracing::warn!("cannot start a network sandbox: {err}"),
                }
                sandboxes.starting.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }

    async fn start_one(&self) -> Result<String, bollard::errors::Error> {
        let env = [
            "EXECUTION_MODE=WARM",
            "WARM_RUNTIME=STDIO",
            "WATCHDOG_CMD=true",
            "WARM_HOST=127.0.0.1",
            "WARM_IDLE_TIMEOUT_MS=0",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([
            format!("WARM_PORT={IDLE_PORT}"),
            // The function that joins the sandbox shares its loopback: its idle watchdog
            // takes no call from anyone.
            format!("WARM_TOKEN={}", crate::access::generate_token()),
        ])
        .collect();
        let body = ContainerCreateBody {
            image: Some(SANDBOX_IMAGE.to_owned()),
            user: Some("65534:65534".to_owned()),
            env: Some(env),
            labels: Some(HashMap::from([
                (OWNER_LABEL.to_owned(), self.owner.clone()),
                (ROLE_LABEL.to_owned(), "sandbox".to_owned()),
            ])),
            host_config: Some(HostConfig {
                memory: Some(32 * 1024 * 1024),
                pids_limit: Some(16),
                readonly_rootfs: Some(true),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                cap_drop: Some(vec!["ALL".to_owned()]),
                network_mode: Some(self.network.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("gantry-sandbox-{}", uuid::Uuid::new_v4().simple());
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created.id,
            Err(err) => {
                if super::is_connection_error(&err) {
                    // Perhaps created before the connection broke: removed by its name.
                    self.removals.remove_later(vec![name]);
                }
                return Err(err);
            }
        };
        if let Err(err) = self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            self.removals.remove_later(vec![id]);
            return Err(err);
        }
        Ok(id)
    }

    /// Removes the ready sandboxes (the server is stopping).
    pub(super) async fn clear(&self) {
        let ready: Vec<String> = std::mem::take(&mut *self.ready.lock().expect("sandbox lock"));
        for id in ready {
            DockerRuntime::remove(&self.docker, &id).await;
        }
    }
}
