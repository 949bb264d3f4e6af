//! Prometheus metrics of the control plane: invocations by function and status, the
//! execution duration histogram, queue depth and executions in flight.

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

fn duration_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the control plane exports on `/metrics`.
pub struct Metrics {
    registry: Registry,
    invocations: Family<FunctionStatus, Counter>,
    durations: Family<FunctionLabel, Histogram, fn() -> Histogram>,
    queue_depth: Family<FunctionLabel, Gauge>,
    in_flight: Family<FunctionLabel, Gauge>,
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
        let durations = Family::<FunctionLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let queue_depth = Family::<FunctionLabel, Gauge>::default();
        let in_flight = Family::<FunctionLabel, Gauge>::default();
        registry.register(
            "invocations",
            "Finished executions by function and terminal status",
            invocations.clone(),
        );
        registry.register(
            "execution_duration_seconds",
            "Run time of finished executions",
            durations.clone(),
        );
        registry.register(
            "queue_depth",
            "Executions waiting for a free slot",
            queue_depth.clone(),
        );
        registry.register("in_flight", "Executions running now", in_flight.clone());
        Metrics {
            registry,
            invocations,
            durations,
            queue_depth,
            in_flight,
        }
    }

    /// Counts a finished execution of `function` with `status`, which ran `seconds`.
    pub fn finished(&self, function: &str, status: &str, seconds: Option<f64>) {
        self.invocations
            .get_or_create(&FunctionStatus {
                function: function.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        if let Some(seconds) = seconds {
            self.durations
                .get_or_create(&FunctionLabel {
                    function: function.to_owned(),
                })
                .observe(seconds);
        }
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
        metrics.finished("echo", "success", Some(0.004));
        metrics.finished("echo", "error", None);
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
        assert!(
            text.contains(r#"gantry_execution_duration_seconds_count{function="echo"} 1"#),
            "{text}"
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
}
