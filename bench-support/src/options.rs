//! What the environment asks of a run: `GANTRY_BENCH_QUICK` (a short smoke run, too
//! short to record) and `GANTRY_BENCH_NO_WRITE` (print the report, leave BENCHMARKS.md
//! alone).

/// The run's options, from the environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// A smoke run (`GANTRY_BENCH_QUICK` set): few iterations, nothing recorded.
    pub quick: bool,
    /// `GANTRY_BENCH_NO_WRITE` set: the report is only printed.
    pub no_write: bool,
}

impl Options {
    /// Reads `GANTRY_BENCH_QUICK` and `GANTRY_BENCH_NO_WRITE` (set to anything counts).
    pub fn from_env() -> Options {
        Options {
            quick: std::env::var_os("GANTRY_BENCH_QUICK").is_some(),
            no_write: std::env::var_os("GANTRY_BENCH_NO_WRITE").is_some(),
        }
    }

    /// Whether the report goes into BENCHMARKS.md: neither a quick nor a no-write run.
    pub fn records(&self) -> bool {
        !self.quick && !self.no_write
    }

    /// `full` for a real run; for a quick one, what `shorten` makes of it.
    pub fn scale<T>(&self, full: T, shorten: impl FnOnce(T) -> T) -> T {
        if self.quick {
            shorten(full)
        } else {
            full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    #[test]
    fn only_a_full_run_with_writing_records() {
        let full = Options::default();
        assert!(full.records());
        for options in [
            Options {
                quick: true,
                ..full
            },
            Options {
                no_write: true,
                ..full
            },
        ] {
            assert!(!options.records(), "{options:?}");
        }
    }

    #[test]
    fn a_quick_run_is_shortened() {
        let quick = Options {
            quick: true,
            no_write: false,
        };
        assert_eq!(quick.scale(300, |n| n / 10), 30);
        assert_eq!(Options::default().scale(300, |n| n / 10), 300);
    }
}
