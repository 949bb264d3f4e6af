//! Nodes of a test cluster: `gantry serve` processes sharing one PostgreSQL database,
//! one admin token and one secret key.

use super::ServerOptions;

/// The admin token of every node.
pub const CLUSTER_TOKEN: &str = "cluster-test-token";
/// Every node seals secrets with the same key.
pub const CLUSTER_SECRET_KEY: &str =
    "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";

/// The options of node `id` on the database at `url`.
pub fn cluster_node(url: &str, id: &str) -> ServerOptions {
    ServerOptions {
        token: Some(CLUSTER_TOKEN.into()),
        env: vec![
            ("GANTRY_DATABASE_URL".into(), url.into()),
            ("GANTRY_SECRET_KEY".into(), CLUSTER_SECRET_KEY.into()),
        ],
        args: vec!["--node-id".into(), id.into()],
    }
}
