//! Latency histograms by function and outcome: how long executions ran, how long they
//! waited between being accepted and starting, and how long instances took to start.
//! Each bucket keeps the trace id of its latest observation as an exemplar, so a slow
//! bucket leads to one trace. Labels are bounded: function names and a handful of
//! outcomes, never execution ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

/// Labels of every latency series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionOutcome {
    function: String,
    outcome: String,
}

/// The exemplar of a bucket: the trace of an execution that landed in it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceExemplar {
    trace_id: String,
}

type Timed = HistogramWithExemplars<TraceExemplar>;
type TimedFamily = Family<FunctionOutcome, Timed, fn() -> Timed>;

fn seconds_histogram() -> Timed {
    // 100 µs .. ~100 s
    HistogramWithExemplars::new(exponential_buckets(0.000_1, 2.0, 21))
}

/// Longest trace id kept as an exemplar (OpenMetrics caps an exemplar's labels at 128
/// characters; a W3C trace id has 32).
const MAX_TRACE_ID: usize = 64;

/// One finished execution as the histograms see it.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    /// Its function.
    pub function: &'a str,
    /// Its terminal status (`success`, `error`, `timeout`, `cancelled`).
    pub outcome: &'a str,
    /// How long it ran, if it started.
    pub ran: Option<f64>,
    /// How long it waited from being accepted to starting, if it started.
    pub waited: Option<f64>,
    /// Its trace id.
    pub trace_id: Option<&'a str>,
    /// Whether it waited for a warm instance to start.
    pub cold_start: bool,
}

/// The latency histograms, registered once.
pub(super) struct Latencies {
    durations: TimedFamily,
    queue_waits: TimedFamily,
    instance_starts: TimedFamily,
}

impl Latencies {
    /// Registers the histograms in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Latencies {
        let family = || TimedFamily::new_with_constructor(seconds_histogram);
        let latencies = Latencies {
            durations: family(),
            queue_waits: family(),
            instance_starts: family(),
        };
        registry.register(
            "execution_duration_seconds",
            "Run time of finished executions, by function and outcome",
            latencies.durations.clone(),
        );
        registry.register(
            "execution_queue_wait_seconds",
            "Time from acceptance to start of finished executions, by function and outcome",
            latencies.queue_waits.clone(),
        );
        registry.register(
            "instance_start_seconds",
            "Time instances took to start (one-shot and warm), by function and outcome (ready, failed)",
            latencies.instance_starts.clone(),
        );
        latencies
    }

    /// Records a finished execution.
    pub(super) fn execution(&self, timing: Timing<'_>) {
        let labels = FunctionOutcome {
            function: timing.function.to_owned(),
            outcome: timing.outcome.to_owned(),
        };
        let exemplar = || {
            timing
                .trace_id
                .filter(|id| id.len() <= MAX_TRACE_ID)
                .map(|id| TraceExemplar {
                    trace_id: id.to_owned(),
                })
        };
        if let Some(ran) = timing.ran {
            self.durations
                .get_or_create(&labels)
                .observe(ran, exemplar());
        }
        if let Some(waited) = timing.waited {
            self.queue_waits
                .get_or_create(&labels)
                .observe(waited.max(0.0), exemplar());
        }
    }

    /// Records an instance start of `function` that took `seconds` and ended `outcome`.
    pub(super) fn instance_start(&self, function: &str, outcome: &'static str, seconds: f64) {
        let labels = FunctionOutcome {
            function: function.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.instance_starts
            .get_or_create(&labels)
            .observe(seconds, None);
    }
}
