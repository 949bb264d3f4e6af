//! Wake-ups from the database: a connection of its own `LISTEN`s on the channel a
//! trigger notifies when an execution ends (on any node, at its commit), and hands each
//! id to the node's subscribers. When the connection drops it is opened again; callers
//! waiting for a result poll meanwhile, so a lost wake-up only costs time.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use super::codec::db;
use super::connect::{tls, Target};
use crate::store::StoreError;

/// The channel the `executions` trigger notifies with an ended execution's id.
pub(super) const CHANNEL: &str = "gantry_finished";
/// Ids kept for a subscriber that falls behind (it then misses some and polls).
const BACKLOG: usize = 1_024;
/// Pause before listening again after the connection failed.
const RETRY: Duration = Duration::from_secs(1);

/// Starts listening; answers the sender subscribers subscribe to and the task, which
/// the store aborts when it is dropped.
pub(super) fn spawn(target: Target) -> (broadcast::Sender<Uuid>, JoinHandle<()>) {
    let (sender, _) = broadcast::channel(BACKLOG);
    let feed = sender.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Err(err) = listen(&target, &feed).await {
                tracing::debug!("listening for ended executions: {err}; again in {RETRY:?}");
            }
            tokio::time::sleep(RETRY).await;
        }
    });
    (sender, task)
}

/// One connection's life: `LISTEN`, then every notification passed on until it drops.
async fn listen(target: &Target, feed: &broadcast::Sender<Uuid>) -> Result<(), StoreError> {
    let connector = tls(target.config.get_ssl_mode(), target.root_cert.as_deref())?;
    let (client, mut connection) = target
        .config
        .connect(connector)
        .await
        .map_err(db("connect to listen for ended executions"))?;
    let listen = format!("LISTEN {CHANNEL}");
    let mut listening = std::pin::pin!(client.batch_execute(&listen));
    let mut listened = false;
    loop {
        tokio::select! {
            done = &mut listening, if !listened => {
                done.map_err(db("listen for ended executions"))?;
                listened = true;
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if let Ok(id) = note.payload().parse() {
                        // No subscriber now is no error.
                        let _ = feed.send(id);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(db("listen for ended executions")(err)),
                None => return Ok(()),
            }
        }
    }
}
