//! `gantry node ...`: the control-plane nodes sharing the server's store.

use anyhow::Result;
use clap::Subcommand;

use super::client::decode;
use super::table::{time, Table};
use super::{out, out_json, Ctx};
use crate::wire::NodeList;

/// `gantry node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes sharing the server's store: id, state, API address, runtime,
    /// executions running, last heartbeat.
    ///
    /// A node is `up` while it sends heartbeats (every 5 s), `stopped` after a clean
    /// stop, and `lost` once it has been silent for longer than a lease (30 s): the
    /// other nodes then take over the executions it held. The node that answered is
    /// marked with `*`.
    List,
}

/// Carries out one `gantry node` subcommand.
pub async fn run_node(ctx: &Ctx, command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::List => {
            let listed = ctx.client.get(&["v1", "nodes"], &[]).await?;
            if ctx.json() {
                return out_json(&listed);
            }
            let listed: NodeList = decode(listed)?;
            let mut table = Table::new(&[
                "ID",
                "STATE",
                "ADDRESS",
                "RUNTIME",
                "RUNNING",
                "HEARTBEAT",
                "VERSION",
            ]);
            for node in listed.nodes {
                let mark = if node.id == listed.this_node {
                    " *"
                } else {
                    ""
                };
                table.row(vec![
                    format!("{}{mark}", node.id),
                    node.state,
                    node.address,
                    node.runtime,
                    node.running.to_string(),
                    time(Some(node.heartbeat_at)),
                    node.version,
                ]);
            }
            out(&table.render())
        }
    }
}
