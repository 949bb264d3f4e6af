//! Head sampling (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`): whether a trace's
//! executions are recorded, decided when each execution's trace context is made and
//! carried in the `sampled` flag its function gets. A ratio decides from the trace id
//! alone, as OpenTelemetry's `TraceIdRatioBased` does, so every node, every chained
//! child and any other service using that rule agree on the same trace.

use std::sync::OnceLock;

use super::TelemetryError;

/// The sampler in force, set once at start-up; unset is [`Sampler::default`].
static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// The names `OTEL_TRACES_SAMPLER` takes.
pub const SAMPLER_NAMES: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// What decides a trace that has no sampled parent to follow.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    On,
    Off,
    /// Sampled when the trace id's low 63 bits are below this bound (ratio × 2⁶³).
    Below(u64),
}

/// A head sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    rule: Rule,
    /// Whether a caller's (or a parent execution's) decision is followed when there is
    /// one.
    parent_based: bool,
}

impl Default for Sampler {
    /// `parentbased_always_on`: every new trace is sampled, a caller's decision is kept.
    fn default() -> Sampler {
        Sampler {
            rule: Rule::On,
            parent_based: true,
        }
    }
}

impl Sampler {
    /// The sampler `name` (empty or `None`: the default) with `arg`, the ratio that
    /// `traceidratio` samples (0 to 1, default 1; ignored by the others).
    pub fn parse(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, TelemetryError> {
        let name = name.map(str::trim).filter(|name| !name.is_empty());
        let Some(name) = name else {
            return Ok(Sampler::default());
        };
        let (parent_based, rule) = match name.strip_prefix("parentbased_") {
            Some(rule) => (true, rule),
            None => (false, name),
        };
        let rule = match rule {
            "always_on" => Rule::On,
            "always_off" => Rule::Off,
            "traceidratio" => Rule::Below(ratio_bound(arg)?),
            _ => return Err(TelemetryError::BadSampler(name.to_owned())),
        };
        Ok(Sampler { rule, parent_based })
    }

    /// Whether trace `trace` is recorded; `parent` is the sampled flag of the context
    /// it continues, if any.
    pub fn sampled(&self, trace: &[u8; 16], parent: Option<bool>) -> bool {
        if let (true, Some(parent)) = (self.parent_based, parent) {
            return parent;
        }
        match self.rule {
            Rule::On => true,
            Rule::Off => false,
            Rule::Below(bound) => {
                let mut low = [0u8; 8];
                low.copy_from_slice(&trace[8..]);
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }
}

/// ratio × 2⁶³ for `OTEL_TRACES_SAMPLER_ARG` (1 when unset).
fn ratio_bound(arg: Option<&str>) -> Result<u64, TelemetryError> {
    let Some(text) = arg.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(1 << 63);
    };
    let ratio: f64 = text
        .parse()
        .ok()
        .filter(|ratio: &f64| (0.0..=1.0).contains(ratio))
        .ok_or_else(|| TelemetryError::BadRatio(text.to_owned()))?;
    // Exact at both ends: 1 samples every id, 0 none.
    Ok((ratio * (1u64 << 63) as f64) as u64)
}

/// Uses `sampler` for every trace context made from now on. Only the first call counts.
pub fn install_sampler(sampler: Sampler) {
    let _ = SAMPLER.set(sampler);
}

/// Whether trace `trace` is recorded, by the installed sampler; `parent` is the
/// sampled flag of the context it continues, if any.
pub fn sampled(trace: &[u8; 16], parent: Option<bool>) -> bool {
    SAMPLER
        .get()
        .copied()
        .unwrap_or_default()
        .sampled(trace, parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, arg: &str) -> Sampler {
        Sampler::parse(Some(name), Some(arg)).unwrap()
    }

    #[test]
    fn the_default_samples_new_traces_and_follows_a_parent() {
        for sampler in [
            Sampler::parse(None, None).unwrap(),
            Sampler::parse(Some(" "), Some("0.5")).unwrap(),
            parse("parentbased_always_on", ""),
        ] {
            assert_eq!(sampler, Sampler::default());
            assert!(sampler.sampled(&[1; 16], None));
            assert!(!sampler.sampled(&[1; 16], Some(false)));
            assert!(sampler.sampled(&[1; 16], Some(true)));
        }
    }

    #[test]
    fn samplers_that_are_not_parent_based_decide_alone() {
        let on = parse("always_on", "");
        assert!(on.sampled(&[1; 16], Some(false)));
        let off = parse("always_off", "");
        assert!(!off.sampled(&[1; 16], Some(true)));
        assert!(!off.sampled(&[1; 16], None));
        let parent_off = parse("parentbased_always_off", "");
        assert!(parent_off.sampled(&[1; 16], Some(true)));
        assert!(!parent_off.sampled(&[1; 16], None));
    }

    #[test]
    fn a_ratio_decides_from_the_trace_id_alone() {
        let trace = |low: u64| {
            let mut id = [0xab; 16];
            id[8..].copy_from_slice(&low.to_be_bytes());
            id
        };
        let none = parse("traceidratio", "0");
        let all = parse("traceidratio", "1");
        let half = parse("traceidratio", "0.5");
        for low in [0, 1, u64::MAX / 2, u64::MAX / 2 + 1, u64::MAX] {
            assert!(!none.sampled(&trace(low), None), "{low}");
            assert!(all.sampled(&trace(low), Some(false)), "{low}");
        }
        assert!(half.sampled(&trace(0), None));
        assert!(half.sampled(&trace(u64::MAX / 2), None));
        assert!(!half.sampled(&trace(u64::MAX / 2 + 2), None));
        assert!(!half.sampled(&trace(u64::MAX), None));
        // About half of many random ids.
        let count = (0..10_000)
            .filter(|_| half.sampled(&rand::random(), None))
            .count();
        assert!((4_000..6_000).contains(&count), "{count}");
        let parent_half = parse("parentbased_traceidratio", "0");
        assert!(parent_half.sampled(&trace(0), Some(true)));
        assert!(!parent_half.sampled(&trace(0), None));
        assert_eq!(
            Sampler::parse(Some("traceidratio"), None).unwrap(),
            all,
            "the ratio defaults to 1"
        );
    }

    #[test]
    fn bad_names_and_ratios_are_refused() {
        for name in ["sometimes", "parentbased_", "ALWAYS_ON", "jaeger_remote"] {
            let err = Sampler::parse(Some(name), None).unwrap_err();
            assert!(err.to_string().contains("OTEL_TRACES_SAMPLER"), "{err}");
        }
        for arg in ["-0.1", "1.01", "half", "NaN", "inf"] {
            let err = Sampler::parse(Some("traceidratio"), Some(arg)).unwrap_err();
            assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
        }
    }
}
