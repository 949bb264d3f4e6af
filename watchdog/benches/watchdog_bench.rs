//! Watchdog benchmarks (placeholder until the benchmark program lands).

fn main() {}
