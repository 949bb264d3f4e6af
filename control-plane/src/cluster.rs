//! What the other nodes sharing the store hold of each function: every node publishes
//! its own load (executions waiting and running, warm instances and their free
//! capacity) a few times a second and reads the others', so queue and warm-pool bounds
//! hold across the cluster and a warm call finds a free instance on another node.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{FunctionLoad, NodeLoad, MAX_LOAD_FUNCTIONS};
use crate::store::Store;

/// Time between two exchanges of loads: how stale another node's figures may be.
pub const EXCHANGE_EVERY: Duration = Duration::from_millis(250);
/// An unchanged load is published again this often, so the others keep counting it.
const REPUBLISH_EVERY: Duration = Duration::from_secs(1);
/// A load not published again within this is not counted (its node stopped or is cut
/// off from the store).
const FRESH_FOR: Duration = Duration::from_secs(3);

/// One other node's load of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its id.
    pub node_id: String,
    /// The URL its API answers on.
    pub address: String,
    /// What it holds of the function.
    pub load: FunctionLoad,
}

/// The other nodes' loads, by function, as of the latest exchange. Empty on a node
/// that shares its store with no one.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// This node's id.
    node_id: String,
    by_function: RwLock<HashMap<String, Vec<Peer>>>,
    /// Other nodes that published a load lately (idle ones too).
    peers: AtomicUsize,
}

impl ClusterView {
    /// The view of node `node_id`, empty until the first exchange.
    pub fn new(node_id: String) -> ClusterView {
        ClusterView {
            node_id,
            by_function: RwLock::default(),
            peers: AtomicUsize::new(0),
        }
    }

    /// Whether a node with a smaller id than this one runs instances of `function`:
    /// when the cluster runs more than `max_instances`, such a node keeps its own and
    /// this one gives up its idle ones, so both never give up theirs at once.
    pub fn outranked(&self, function: &str) -> bool {
        let view = self.by_function.read().unwrap_or_else(|p| p.into_inner());
        view.get(function)
            .into_iter()
            .flatten()
            .any(|peer| peer.load.instances > 0 && peer.node_id.as_str() < self.node_id.as_str())
    }

    /// Replaces the view with `loads`, the others' latest.
    pub fn replace(&self, loads: Vec<NodeLoad>) {
        self.peers.store(loads.len(), Ordering::Relaxed);
        let mut by_function: HashMap<String, Vec<Peer>> = HashMap::new();
        for node in loads {
            for (function, load) in node.functions {
                by_function.entry(function).or_default().push(Peer {
                    node_id: node.node_id.clone(),
                    address: node.address.clone(),
                    load,
                });
            }
        }
        *self.by_function.write().unwrap_or_else(|p| p.into_inner()) = by_function;
    }

    /// The nodes sharing the store that are alive, this one included: the others
    /// publish their load (an idle node too) every second or faster.
    pub fn live_nodes(&self) -> usize {
        self.peers.load(Ordering::Relaxed) + 1
    }

    /// This node's part of `function`'s rate limit, from 0 to 1, when it sees a demand of
    /// `own` executions per second: the demands of the live nodes (at least one each, so
    /// an idle node keeps a part to start from) shared out in proportion. Alone, the
    /// whole limit. The parts add up to the limit as far as the nodes' figures agree
    /// (they are exchanged every [`EXCHANGE_EVERY`]).
    pub fn rate_fraction(&self, function: &str, own: f64) -> f64 {
        let own = own.max(1.0);
        let view = self.by_function.read().unwrap_or_else(|p| p.into_inner());
        let peers = view.get(function).map_or(&[][..], Vec::as_slice);
        let busy: f64 = peers
            .iter()
            .map(|peer| f64::from(peer.load.demand).max(1.0))
            .sum();
        let silent = self.live_nodes().saturating_sub(1 + peers.len());
        own / (own + busy + silent as f64)
    }

    /// What every other node holds of `function`, summed.
    pub fn elsewhere(&self, function: &str) -> FunctionLoad {
        let view = self.by_function.read().unwrap_or_else(|p| p.into_inner());
        view.get(function)
            .into_iter()
            .flatten()
            .fold(FunctionLoad::default(), |sum, peer| sum.plus(peer.load))
    }

    /// The other node best placed to serve a warm call of `function`: the one with the
    /// most free capacity, else (every instance busy) the one with the most instances,
    /// where the call waits for one; `None` when no other node runs an instance.
    pub fn warm_peer(&self, function: &str) -> Option<Peer> {
        let view = self.by_function.read().unwrap_or_else(|p| p.into_inner());
        view.get(function)?
            .iter()
            .filter(|peer| peer.load.instances > 0)
            .max_by_key(|peer| (peer.load.free, peer.load.instances))
            .cloned()
    }
}

/// Keeps only the busiest [`MAX_LOAD_FUNCTIONS`] functions of a node's load, so one
/// record stays small whatever the number of functions.
pub fn bounded(mut functions: BTreeMap<String, FunctionLoad>) -> BTreeMap<String, FunctionLoad> {
    functions.retain(|_, load| !load.is_idle());
    if functions.len() <= MAX_LOAD_FUNCTIONS {
        return functions;
    }
    let mut busiest: Vec<(String, FunctionLoad)> = functions.into_iter().collect();
    busiest.sort_by_key(|(_, load)| {
        std::cmp::Reverse(
            u64::from(load.queued) + u64::from(load.running) + u64::from(load.instances),
        )
    });
    busiest.truncate(MAX_LOAD_FUNCTIONS);
    busiest.into_iter().collect()
}

/// Where a node's exchange reads its own load and keeps the others'.
pub trait LoadSource: Send + Sync + 'static {
    /// What this node holds now, by function.
    fn local_load(&self) -> BTreeMap<String, FunctionLoad>;
    /// Where the others' loads go.
    fn view(&self) -> &ClusterView;
}

/// Publishes this node's load and reads the others' every [`EXCHANGE_EVERY`] until
/// `stop`, then publishes an empty load so the others stop counting this node at once.
/// A store that fails leaves the view as it was, and loads older than a few seconds
/// drop out of it.
pub fn keep_exchanging(
    store: Arc<dyn Store>,
    source: Arc<dyn LoadSource>,
    node_id: String,
    address: String,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut published: Option<(BTreeMap<String, FunctionLoad>, Instant)> = None;
        let record = |functions| NodeLoad {
            node_id: node_id.clone(),
            address: address.clone(),
            published_at: crate::domain::now(),
            functions,
        };
        loop {
            let load = bounded(source.local_load());
            let due = published
                .as_ref()
                .is_none_or(|(last, at)| *last != load || at.elapsed() >= REPUBLISH_EVERY);
            if due {
                match store.publish_load(&record(load.clone())).await {
                    Ok(()) => published = Some((load, Instant::now())),
                    Err(err) => tracing::warn!("cannot publish this node's load: {err}"),
                }
            }
            let since =
                crate::domain::now() - chrono::TimeDelta::from_std(FRESH_FOR).unwrap_or_default();
            match store.peer_loads(&node_id, since).await {
                Ok(loads) => source.view().replace(loads),
                Err(err) => tracing::warn!("cannot read the other nodes' loads: {err}"),
            }
            tokio::select! {
                () = tokio::time::sleep(EXCHANGE_EVERY) => {}
                () = stop.cancelled() => break,
            }
        }
        if let Err(err) = store.publish_load(&record(BTreeMap::new())).await {
            tracing::warn!("cannot clear this node's load: {err}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, functions: &[(&str, FunctionLoad)]) -> NodeLoad {
        NodeLoad {
            node_id: id.into(),
            address: format!("http://{id}:8080"),
            published_at: crate::domain::now(),
            functions: functions
                .iter()
                .map(|(name, load)| ((*name).to_owned(), *load))
                .collect(),
        }
    }

    fn load(queued: u32, instances: u32, free: u32) -> FunctionLoad {
        FunctionLoad {
            queued,
            running: 1,
            instances,
            free,
            demand: 0,
        }
    }

    #[test]
    fn rate_limit_parts_follow_the_demand_each_node_sees() {
        let view = ClusterView::new("me".into());
        assert_eq!(view.rate_fraction("f", 50.0), 1.0, "alone: the whole limit");
        let asked = |demand| FunctionLoad {
            demand,
            ..FunctionLoad::default()
        };
        view.replace(vec![
            node("a", &[("f", asked(30))]),
            node("b", &[("g", asked(5))]),
        ]);
        // me 10, a 30, b idle for f (counted as 1).
        assert_eq!(view.rate_fraction("f", 10.0), 10.0 / 41.0);
        // Idle everywhere: equal parts.
        assert_eq!(view.rate_fraction("h", 0.0), 1.0 / 3.0);
        // Only this node asks: nearly all of it.
        assert_eq!(view.rate_fraction("g", 99.0), 99.0 / 105.0);
    }

    #[test]
    fn the_view_sums_the_others_and_picks_where_a_warm_call_goes() {
        let view = ClusterView::default();
        assert_eq!(view.elsewhere("f"), FunctionLoad::default());
        assert_eq!(view.warm_peer("f"), None);
        view.replace(vec![
            node("a", &[("f", load(2, 1, 0)), ("g", load(0, 1, 1))]),
            node("b", &[("f", load(3, 2, 4))]),
            node("c", &[("f", load(0, 1, 1))]),
        ]);
        let summed = FunctionLoad {
            queued: 5,
            running: 3,
            instances: 4,
            free: 5,
            demand: 0,
        };
        assert_eq!(view.elsewhere("f"), summed);
        assert_eq!(view.warm_peer("f").unwrap().node_id, "b", "the most free");
        assert_eq!(view.warm_peer("g").unwrap().address, "http://a:8080");
        view.replace(vec![
            node("a", &[("f", load(0, 1, 0))]),
            node("b", &[("f", load(0, 2, 0))]),
            node("c", &[("f", load(4, 0, 0))]),
        ]);
        let busy = view.warm_peer("f").unwrap();
        assert_eq!(busy.node_id, "b", "all busy: the most instances");
        view.replace(vec![node("c", &[("f", load(4, 0, 0))])]);
        assert_eq!(view.warm_peer("f"), None, "no instance elsewhere");
        assert_eq!(
            view.elsewhere("g"),
            FunctionLoad::default(),
            "replaced, not merged"
        );
    }

    #[test]
    fn a_node_gives_way_only_to_smaller_ids_that_run_instances() {
        let view = ClusterView::new("m".into());
        view.replace(vec![
            node("a", &[("f", load(0, 0, 0))]),
            node("z", &[("f", load(0, 3, 0))]),
            node("b", &[("g", load(0, 1, 0))]),
        ]);
        assert!(!view.outranked("f"), "a runs none, z is larger");
        assert!(view.outranked("g"));
        assert!(!view.outranked("h"));
        assert_eq!(view.live_nodes(), 4, "three others and this one");
    }

    #[test]
    fn a_load_names_busy_functions_only_and_at_most_the_busiest_few() {
        let mut functions = BTreeMap::new();
        functions.insert("idle".to_owned(), FunctionLoad::default());
        for n in 0..(MAX_LOAD_FUNCTIONS as u32 + 10) {
            functions.insert(format!("f{n}"), load(n, 0, 0));
        }
        let kept = bounded(functions);
        assert_eq!(kept.len(), MAX_LOAD_FUNCTIONS);
        assert!(!kept.contains_key("idle"));
        assert!(!kept.contains_key("f0"), "the least busy are left out");
        assert!(kept.contains_key(&format!("f{}", MAX_LOAD_FUNCTIONS + 9)));
    }
}
