//! Prometheus metrics of the control plane: invocations by function and status, the
//! execution duration histogram, queue depth and executions in flight, and the warm
//! pools' instances by state, cold starts, queue wait and calls in flight, and the
//! executions schedules started.

mod latency;
mod series;

pub use latency::Timing;
pub use series::{FunctionStats, LastOutcome, MinuteStats};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionStatus {
    function: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionState {
    function: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionOutcome {
    function: String,
    outcome: &'static str,
}

fn queue_wait_histogram() -> Histogram {
    // 10 µs .. ~20 s
    Histogram::new(exponential_buckets(0.000_01, 4.0, 12))
}

/// Instances of one warm pool by state, and the calls on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolGauges {
    /// Starting.
    pub starting: usize,
    /// Ready, no call.
    pub idle: usize,
    /// Ready, with calls.
    pub busy: usize,
    /// Draining.
    pub draining: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// Calls waiting for capacity.
    pub queued: usize,
}

/// One warm pool's metrics (handles into the registry's families).
#[derive(Clone, Debug)]
pub struct PoolMetrics {
    starting: Gauge,
    idle: Gauge,
    busy: Gauge,
    draining: Gauge,
    in_flight: Gauge,
    queued: Gauge,
    cold_starts: Counter,
    instance_starts: Counter,
    queue_wait: Histogram,
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl PoolMetrics {
    /// Sets the instance counts and calls.
    pub fn set(&self, gauges: PoolGauges) {
        self.starting.set(gauge_value(gauges.starting));
        self.idle.set(gauge_value(gauges.idle));
        self.busy.set(gauge_value(gauges.busy));
        self.draining.set(gauge_value(gauges.draining));
        self.in_flight.set(gauge_value(gauges.in_flight));
        self.queued.set(gauge_value(gauges.queued));
    }

    /// Counts a call that waited for an instance to start.
    pub fn cold_start(&self) {
        self.cold_starts.inc();
    }

    /// Counts an instance started.
    pub fn instance_started(&self) {
        self.instance_starts.inc();
    }

    /// Records how long a call waited for an instance.
    pub fn queue_wait(&self, seconds: f64) {
        self.queue_wait.observe(seconds);
    }
}

/// Every metric the control plane exports on `/metrics`.
pub struct Metrics {
    registry: Registry,
    invocations: Family<FunctionStatus, Counter>,
    latencies: latency::Latencies,
    queue_depth: Family<FunctionLabel, Gauge>,
    in_flight: Family<FunctionLabel, Gauge>,
    pool_instances: Family<FunctionState, Gauge>,
    pool_in_flight: Family<FunctionLabel, Gauge>,
    pool_queued: Family<FunctionLabel, Gauge>,
    cold_starts: Family<FunctionLabel, Counter>,
    instance_starts: Family<FunctionLabel, Counter>,
    queue_wait: Family<FunctionLabel, Histogram, fn() -> Histogram>,
    warm_forwarded: Family<FunctionLabel, Counter>,
    rate_limited: Family<FunctionOutcome, Counter>,
    store_failures: Counter,
    log_lines_lost: Counter,
    recovery_requeued: Counter,
    recovery_active: Gauge,
    spans_dropped: Counter,
    schedule_fires: Family<FunctionLabel, Counter>,
    series: series::Series,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gantry");
        let invocations = Family::<FunctionStatus, Counter>::default();
        let queue_depth = Family::<FunctionLabel, Gauge>::default();
        let in_flight = Family::<FunctionLabel, Gauge>::default();
        registry.register(
            "invocations",
            "Finished executions by function and terminal status",
            invocations.clone(),
        );
        let latencies = latency::Latencies::register(&mut registry);
        registry.register(
            "queue_depth",
            "Executions waiting for a free slot",
            queue_depth.clone(),
        );
        registry.register("in_flight", "Executions running now", in_flight.clone());
        let pool_instances = Family::<FunctionState, Gauge>::default();
        let pool_in_flight = Family::<FunctionLabel, Gauge>::default();
        let pool_queued = Family::<FunctionLabel, Gauge>::default();
        let cold_starts = Family::<FunctionLabel, Counter>::default();
        let instance_starts = Family::<FunctionLabel, Counter>::default();
        let queue_wait =
            Family::<FunctionLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                queue_wait_histogram,
            );
        registry.register(
            "pool_instances",
            "Warm instances by state (starting, idle, busy, draining)",
            pool_instances.clone(),
        );
        registry.register(
            "pool_in_flight",
            "Calls running on warm instances",
            pool_in_flight.clone(),
        );
        registry.register(
            "pool_queued",
            "Calls waiting for a warm instance",
            pool_queued.clone(),
        );
        registry.register(
            "cold_starts",
            "Calls that waited for a warm instance to start",
            cold_starts.clone(),
        );
        registry.register(
            "instance_starts",
            "Warm instances started",
            instance_starts.clone(),
        );
        registry.register(
            "pool_queue_wait_seconds",
            "Time calls waited for a warm instance",
            queue_wait.clone(),
        );
        let warm_forwarded = Family::<FunctionLabel, Counter>::default();
        registry.register(
            "warm_forwarded",
            "Sync warm calls passed on to another node with a free instance",
            warm_forwarded.clone(),
        );
        let schedule_fires = Family::<FunctionLabel, Counter>::default();
        registry.register(
            "schedule_fires",
            "Executions started by a tick of a function's schedules",
            schedule_fires.clone(),
        );
        let rate_limited = Family::<FunctionOutcome, Counter>::default();
        registry.register(
            "rate_limited",
            "New executions past their function's rate_limit: refused (API calls, 429) or delayed (events, chains, schedule ticks)",
            rate_limited.clone(),
        );
        let store_failures = Counter::default();
        let log_lines_lost = Counter::default();
        registry.register(
            "store_failures",
            "Results the store could not take at once (kept and written again)",
            store_failures.clone(),
        );
        registry.register(
            "log_lines_lost",
            "Captured log lines the store could not take",
            log_lines_lost.clone(),
        );
        let recovery_requeued = Counter::default();
        let recovery_active = Gauge::default();
        registry.register(
            "recovery_requeued",
            "Queued executions of an earlier run that start-up recovery has queued again",
            recovery_requeued.clone(),
        );
        registry.register(
            "recovery_active",
            "1 while start-up recovery is still queueing an earlier run's executions again",
            recovery_active.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "spans_dropped",
            "Spans never exported over OTLP (the export queue was full, or the export failed)",
            spans_dropped.clone(),
        );
        Metrics {
            spans_dropped,
            registry,
            store_failures,
            log_lines_lost,
            recovery_requeued,
            recovery_active,
            invocations,
            latencies,
            queue_depth,
            in_flight,
            pool_instances,
            pool_in_flight,
            pool_queued,
            cold_starts,
            instance_starts,
            queue_wait,
            warm_forwarded,
            schedule_fires,
            rate_limited,
            series: series::Series::default(),
        }
    }

    /// Counts an execution of `function` started by a schedule's tick.
    pub fn schedule_fired(&self, function: &str) {
        self.schedule_fires
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .inc();
    }

    /// Counts a new execution of `function` past its rate limit; `outcome` is
    /// `refused` or `delayed` (one series each per function).
    pub fn rate_limited(&self, function: &str, outcome: &'static str) {
        self.rate_limited
            .get_or_create(&FunctionOutcome {
                function: function.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts a sync call of `function` passed on to another node.
    pub fn warm_forwarded(&self, function: &str) {
        self.warm_forwarded
            .get_or_create(&FunctionLabel {
                function: function.to_owned(),
            })
            .inc();
    }

    /// The counter of spans never exported (see `telemetry`), for the span pipeline.
    pub fn spans_dropped(&self) -> Counter {
        self.spans_dropped.clone()
    }

    /// Counts a result the store could not take at once.
    pub fn store_failure(&self) {
        self.store_failures.inc();
    }

    /// Counts `lines` captured log lines the store could not take.
    pub fn log_lines_lost(&self, lines: usize) {
        self.log_lines_lost.inc_by(lines as u64);
    }

    /// Marks start-up recovery as queueing (`true`) or done (`false`).
    pub fn recovery_active(&self, active: bool) {
        self.recovery_active.set(i64::from(active));
    }

    /// Counts `executions` an earlier run left queued that recovery queued again.
    pub fn recovery_requeued(&self, executions: usize) {
        self.recovery_requeued.inc_by(executions as u64);
    }

    /// Counts a finished execution and records its run time and queue wait.
    pub fn finished(&self, timing: Timing<'_>) {
        self.invocations
            .get_or_create(&FunctionStatus {
                function: timing.function.to_owned(),
                status: timing.outcome.to_owned(),
            })
            .inc();
        self.latencies.execution(timing);
        self.series.record(series::Sample {
            function: timing.function,
            outcome: timing.outcome,
            ran: timing.ran,
            cold_start: timing.cold_start,
        });
    }

    /// The last hour of `function`'s finished executions on this node, by minute.
    pub fn stats(&self, function: &str) -> FunctionStats {
        self.series.stats(function)
    }

    /// Records an instance start of `function` that took `seconds`: `ready`, or
    /// `failed`.
    pub fn instance_start(&self, function: &str, outcome: &'static str, seconds: f64) {
        self.latencies.instance_start(function, outcome, seconds);
    }

    /// Sets the queue depth and in-flight count of `function`.
    pub fn set_load(&self, function: &str, queued: usize, in_flight: usize) {
        let label = FunctionLabel {
            function: function.to_owned(),
        };
        self.queue_depth
            .get_or_create(&label)
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.in_flight
            .get_or_create(&label)
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// The metrics of `function`'s warm pool, resolved once so that updating them on
    /// every call is a few atomic stores.
    pub fn pool(&self, function: &str) -> PoolMetrics {
        let label = FunctionLabel {
            function: function.to_owned(),
        };
        let state = |state: &'static str| {
            self.pool_instances
                .get_or_create(&FunctionState {
                    function: function.to_owned(),
                    state,
                })
                .clone()
        };
        PoolMetrics {
            starting: state("starting"),
            idle: state("idle"),
            busy: state("busy"),
            draining: state("draining"),
            in_flight: self.pool_in_flight.get_or_create(&label).clone(),
            queued: self.pool_queued.get_or_create(&label).clone(),
            cold_starts: self.cold_starts.get_or_create(&label).clone(),
            instance_starts: self.instance_starts.get_or_create(&label).clone(),
            queue_wait: self.queue_wait.get_or_create(&label).clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::new();
        let timing = |outcome, ran| Timing {
            function: "echo",
            outcome,
            ran,
            waited: ran.map(|_| 0.002),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            cold_start: false,
        };
        metrics.finished(timing("success", Some(0.004)));
        metrics.finished(timing("error", None));
        metrics.instance_start("echo", "ready", 0.01);
        metrics.set_load("echo", 3, 2);
        let text = metrics.render();
        assert!(
            text.contains(r#"gantry_invocations_total{function="echo",status="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gantry_invocations_total{function="echo",status="error"} 1"#),
            "{text}"
        );
        for expected in [
            r#"gantry_execution_duration_seconds_count{function="echo",outcome="success"} 1"#,
            r#"gantry_execution_queue_wait_seconds_count{function="echo",outcome="success"} 1"#,
            r#"gantry_instance_start_seconds_count{function="echo",outcome="ready"} 1"#,
            r#" # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.004"#,
        ] {
            assert!(text.contains(expected), "{expected} missing in {text}");
        }
        assert!(
            !text.contains(
                r#"gantry_execution_duration_seconds_count{function="echo",outcome="error"}"#
            ),
            "an execution that never ran has no run time: {text}"
        );
        assert!(
            text.contains(r#"gantry_queue_depth{function="echo"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gantry_in_flight{function="echo"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn renders_pool_metrics() {
        let metrics = Metrics::new();
        let gauges = PoolGauges {
            idle: 2,
            busy: 1,
            in_flight: 3,
            ..PoolGauges::default()
        };
        let pool = metrics.pool("echo");
        pool.set(gauges);
        pool.cold_start();
        pool.instance_started();
        pool.queue_wait(0.002);
        let text = metrics.render();
        for expected in [
            r#"gantry_pool_instances{function="echo",state="idle"} 2"#,
            r#"gantry_pool_instances{function="echo",state="busy"} 1"#,
            r#"gantry_pool_instances{function="echo",state="starting"} 0"#,
            r#"gantry_pool_in_flight{function="echo"} 3"#,
            r#"gantry_cold_starts_total{function="echo"} 1"#,
            r#"gantry_instance_starts_total{function="echo"} 1"#,
            r#"gantry_pool_queue_wait_seconds_count{function="echo"} 1"#,
        ] {
            assert!(text.contains(expected), "{expected} missing in {text}");
        }
    }
}
