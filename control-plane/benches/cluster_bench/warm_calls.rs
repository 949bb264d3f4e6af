//! Part 4, warm calls across nodes: a warm function with a single instance in the
//! cluster (`max_instances: 1`), which runs on the near node, called one call at a time
//! on the near node (served there) and on the far node (which may start no instance
//! and passes each call on).

use std::time::{Duration, Instant};

use gantry_bench_support::stats::{interleave, Progress, Summary, Variant};
use hyper::StatusCode;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::server::Server;
use crate::{postgres, start_pg_node, temp_dir, BenchResult, Settings};

/// Labels of the variants.
pub const DIRECT: &str = "served where it lands";
pub const FORWARDED: &str = "passed on to another node";

/// The function: the tests' Python HTTP runtime, one instance for the whole cluster.
const FUNCTION: &str = "warm-single";

fn manifest() -> serde_json::Value {
    json!({
        "name": FUNCTION,
        "mode": "HTTP",
        "command": "python3 warm_http.py",
        "working_dir": format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR")),
        "warm": {"min_instances": 0, "max_instances": 1, "concurrency_per_instance": 1},
    })
}

/// `gantry_warm_forwarded_total` of the function on one node.
fn forwarded(metrics: &str) -> u64 {
    let prefix = format!("gantry_warm_forwarded_total{{function=\"{FUNCTION}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|count| count.trim().parse::<f64>().ok())
        .map_or(0, |count| count as u64)
}

/// Waits until the far node passes calls on: its view of the near node's instance
/// arrives with the next exchanges of loads.
async fn wait_forwarding(far: &Server, call: &Call) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = forwarded(&far.get("/metrics").await?.text());
        let answer = call.once(far.addr).await?;
        if answer.status != StatusCode::OK {
            return Err(
                format!("the far node answered {}: {}", answer.status, answer.text()).into(),
            );
        }
        if forwarded(&far.get("/metrics").await?.text()) > before {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the far node never passed a call on".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Measures both variants; checks that the far node passed every call on and started
/// no instance.
pub fn warm_calls(
    rt: &Runtime,
    settings: &Settings,
    pg: &postgres::TestPostgres,
) -> BenchResult<Vec<Summary>> {
    let database = rt.block_on(pg.create_database());
    let (near_data, far_data) = (temp_dir("warm-near")?, temp_dir("warm-far")?);
    let near = start_pg_node("warm-near", &database, &near_data, "warm-near")?;
    let far = start_pg_node("warm-far", &database, &far_data, "warm-far")?;
    rt.block_on(near.deploy(manifest()))?;
    let call = Call::post(format!("/v1/functions/{FUNCTION}:invoke"), r#"{"n":1}"#);
    let expect = Expect {
        status: StatusCode::OK,
        body: Some("\"success\""),
    };
    // The first call starts the one instance on the near node; the far node learns of
    // it within a few exchanges of loads (every 250 ms).
    let first = rt.block_on(call.once(near.addr))?;
    if first.status != StatusCode::OK {
        return Err(format!("the first call answered {}: {}", first.status, first.text()).into());
    }
    std::thread::sleep(Duration::from_secs(2));
    rt.block_on(wait_forwarding(&far, &call))?;
    let before = forwarded(&rt.block_on(far.get("/metrics"))?.text());
    println!(
        "  {} calls per round, one at a time on one keep-alive connection",
        settings.warm_calls
    );
    let measure = |node: &Server, warm: bool| {
        let count = if warm {
            settings.warm_calls_warm_up
        } else {
            settings.warm_calls
        };
        rt.block_on(client::sequential(node.addr, &call, count, expect))
    };
    let mut variants = vec![
        Variant::new(DIRECT, |warm| measure(&near, warm)),
        Variant::new(FORWARDED, |warm| measure(&far, warm)),
    ];
    let summaries = interleave(settings.rounds, &mut variants, Progress::Variant)?;
    drop(variants);
    let passed_on = forwarded(&rt.block_on(far.get("/metrics"))?.text()) - before;
    let far_calls = settings.warm_calls_warm_up + settings.rounds * settings.warm_calls;
    if passed_on != far_calls as u64 {
        return Err(format!("the far node passed on {passed_on} of its {far_calls} calls").into());
    }
    let pool = rt
        .block_on(far.get(&format!("/v1/functions/{FUNCTION}")))?
        .json()?;
    if pool["pool"]["instances"]
        .as_array()
        .is_some_and(|all| !all.is_empty())
    {
        return Err(format!("the far node started an instance: {}", pool["pool"]).into());
    }
    for mut node in [near, far] {
        node.stop_and_sweep()?;
    }
    Ok(summaries)
}
