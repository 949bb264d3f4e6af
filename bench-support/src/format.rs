//! How the reports show numbers: digit groups, latencies in µs or ms, signed
//! differences, throughputs and verdicts against a ceiling.

/// `1234567` → `1,234,567`.
pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in µs, shown in µs below a millisecond and in ms above; `—` for NaN (not
/// measured).
pub fn time(us: f64) -> String {
    if us.is_nan() {
        "—".into()
    } else if us.abs() >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// A latency difference in µs with its sign: `+3.2 µs`, `−1.05 ms`.
pub fn added(us: f64) -> String {
    format!("{}{}", if us >= 0.0 { "+" } else { "−" }, time(us.abs()))
}

/// A throughput: `12,345/s`.
pub fn rps(value: f64) -> String {
    format!("{}/s", grouped(value.round() as u64))
}

/// "meets" or "misses by …" for a value that must stay at or under `target`; `show`
/// prints a difference in the value's unit.
pub fn at_most(value: f64, target: f64, show: impl Fn(f64) -> String) -> String {
    if value <= target {
        format!("**meets** ({} to spare)", show(target - value))
    } else {
        format!(
            "**misses** by {} ({:.1}× the target)",
            show(value - target),
            value / target
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{added, at_most, grouped, rps, time};

    #[test]
    fn digit_groups() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
        ];
        for (value, shown) in cases {
            assert_eq!(grouped(value), shown);
        }
    }

    #[test]
    fn times_in_microseconds_or_milliseconds() {
        let cases = [
            (0.0, "0.0 µs"),
            (38.25, "38.2 µs"),
            (999.9, "999.9 µs"),
            (1000.0, "1.00 ms"),
            (4321.0, "4.32 ms"),
            (-1500.0, "-1.50 ms"),
            (f64::NAN, "—"),
        ];
        for (us, shown) in cases {
            assert_eq!(time(us), shown, "{us}");
        }
    }

    #[test]
    fn signed_differences() {
        assert_eq!(added(12.34), "+12.3 µs");
        assert_eq!(added(0.0), "+0.0 µs");
        assert_eq!(added(-2500.0), "−2.50 ms");
    }

    #[test]
    fn throughputs() {
        assert_eq!(rps(20_000.4), "20,000/s");
        assert_eq!(rps(999.5), "1,000/s");
    }

    #[test]
    fn verdicts_against_a_ceiling() {
        assert_eq!(at_most(30.0, 40.0, time), "**meets** (10.0 µs to spare)");
        assert_eq!(at_most(40.0, 40.0, time), "**meets** (0.0 µs to spare)");
        assert_eq!(
            at_most(6000.0, 5000.0, time),
            "**misses** by 1.00 ms (1.2× the target)"
        );
        assert_eq!(
            at_most(2_000_000.0, 1_048_576.0, |b| format!(
                "{} B",
                grouped(b as u64)
            )),
            "**misses** by 951,424 B (1.9× the target)"
        );
    }
}
