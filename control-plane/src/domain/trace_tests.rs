//! Parsing, writing and continuing W3C trace contexts.

use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_reads_back_as_written() {
    let context = TraceContext::parse(VALID, None).unwrap();
    assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(context.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(context.flags, SAMPLED);
    assert_eq!(context.state, None);
    assert_eq!(context.traceparent(), VALID);
    // Surrounding blanks are a header's optional whitespace.
    assert_eq!(
        TraceContext::parse(&format!(" {VALID}\t"), None).unwrap(),
        context
    );
    let unsampled = VALID.replace("-01", "-00");
    assert_eq!(TraceContext::parse(&unsampled, None).unwrap().flags, 0);
}

#[test]
fn malformed_traceparents_are_refused() {
    let cases = [
        ("", TraceError::Shape),
        ("00", TraceError::Shape),
        (&VALID[..54], TraceError::Shape),
        // Version 00 has exactly four fields.
        (&format!("{VALID}-extra"), TraceError::Shape),
        (&format!("{VALID}0"), TraceError::Shape),
        (&VALID.replace("00-4b", "00_4b"), TraceError::Shape),
        (&VALID.replace("-00f0", "_00f0"), TraceError::Shape),
        // Uppercase hex is not the wire format.
        (&VALID.replace("4bf9", "4BF9"), TraceError::Hex),
        (&VALID.replace("00f0", "00g0"), TraceError::Hex),
        (&VALID.replace("-01", "-0x"), TraceError::Hex),
        (&VALID.replacen("00", "0A", 1), TraceError::Version),
        (&VALID.replacen("00", "ff", 1), TraceError::Version),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            TraceError::Zero,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            TraceError::Zero,
        ),
        // Multi-byte text never reaches the field slicing.
        (&VALID.replace("4bf9", "4bé"), TraceError::Shape),
    ];
    for (text, expected) in cases {
        assert_eq!(TraceContext::parse(text, None), Err(expected), "{text:?}");
    }
}

#[test]
fn a_later_version_is_read_by_its_first_four_fields() {
    let later = VALID.replacen("00", "cc", 1);
    let context = TraceContext::parse(&later, None).unwrap();
    assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let with_more = format!("{later}-what-the-future-holds");
    assert_eq!(TraceContext::parse(&with_more, None).unwrap(), context);
    // It is passed on as version 00.
    assert_eq!(context.traceparent(), VALID);
    // Extra fields must still follow a dash.
    assert_eq!(
        TraceContext::parse(&format!("{later}x"), None),
        Err(TraceError::Shape)
    );
}

#[test]
fn a_child_keeps_the_trace_with_a_new_span() {
    let parent = TraceContext::parse(VALID, Some("vendor=one")).unwrap();
    let child = parent.child();
    assert_eq!(child.trace_id, parent.trace_id);
    assert_ne!(child.parent_span_id, parent.parent_span_id);
    assert_ne!(child.parent_span_id, [0; 8]);
    assert_eq!(child.state.as_deref(), Some("vendor=one"));
    // Flags this version does not know are not passed on.
    let odd = TraceContext::parse(&VALID.replace("-01", "-ff"), None).unwrap();
    assert_eq!(odd.child().flags, SAMPLED);
    let reparsed = TraceContext::parse(&child.traceparent(), None).unwrap();
    assert_eq!(reparsed.parent_span_id, child.parent_span_id);
}

#[test]
fn a_new_trace_takes_a_correlation_id_only_when_it_is_a_trace_id() {
    let parent = TraceContext::parse(VALID, None).unwrap();
    let under = TraceContext::for_execution(Some(&parent), Some("ignored"));
    assert_eq!(under.trace_id, parent.trace_id);
    let hex_id = "0af7651916cd43dd8448eb211c80319c";
    let adopted = TraceContext::for_execution(None, Some(hex_id));
    assert_eq!(adopted.trace_id_hex(), hex_id);
    assert_eq!(adopted.flags, SAMPLED);
    let fresh = TraceContext::for_execution(None, Some("order-42"));
    assert_ne!(fresh.trace_id, [0; 16]);
    let zero = TraceContext::for_execution(None, Some(&"0".repeat(32)));
    assert_ne!(zero.trace_id, [0; 16]);
    assert_ne!(
        TraceContext::root(None).trace_id,
        TraceContext::root(None).trace_id
    );
}

#[test]
fn tracestate_is_validated() {
    assert_eq!(
        bounded_state("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert_eq!(
        bounded_state("fw529a3039@dt=abc,,1tenant@sys=x y").as_deref(),
        Some("fw529a3039@dt=abc,1tenant@sys=x y")
    );
    for bad in [
        "",
        " , ",
        "novalue",
        "Upper=1",
        "1digit=1",
        "key=",
        "key=a=b",
        "dup=1,dup=2",
        "tenant@toolongsystemid=1",
        "key=\u{7f}",
    ] {
        assert_eq!(bounded_state(bad), None, "{bad:?}");
    }
}

#[test]
fn tracestate_is_bounded() {
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    assert_eq!(bounded_state(&members.join(",")), None);
    assert!(bounded_state(&members[..32].join(",")).is_some());

    // Past 512 characters, long members go first, then members from the end.
    let long = format!("long={}", "x".repeat(200));
    let short: Vec<String> = (0..20)
        .map(|i| format!("k{i:02}={}", "y".repeat(20)))
        .collect();
    let text = format!("{long},{}", short.join(","));
    let kept = bounded_state(&text).unwrap();
    assert!(!kept.contains("long="), "{kept}");
    assert!(kept.len() <= MAX_STATE_LEN);
    assert!(kept.starts_with("k00="));
    let many: Vec<String> = (0..30)
        .map(|i| format!("k{i:02}={}", "z".repeat(40)))
        .collect();
    let kept = bounded_state(&many.join(",")).unwrap();
    assert!(kept.len() <= MAX_STATE_LEN, "{}", kept.len());
    assert!(kept.starts_with("k00=") && !kept.contains("k29="));
}

#[test]
fn a_malformed_tracestate_is_dropped_not_the_traceparent() {
    let context = TraceContext::parse(VALID, Some("not a list")).unwrap();
    assert_eq!(context.state, None);
    assert_eq!(
        TraceContext::parse(VALID, Some("a=1"))
            .unwrap()
            .state
            .as_deref(),
        Some("a=1")
    );
}

#[test]
fn only_lowercase_hex_digits_have_a_value() {
    for byte in 0..=u8::MAX {
        let expected = char::from(byte)
            .to_digit(16)
            .filter(|_| !byte.is_ascii_uppercase())
            .map(|digit| digit as u8);
        assert_eq!(lower_hex_value(byte), expected, "{byte:#04x}");
    }
    assert_eq!(decode_hex::<2>("0aff"), Ok([0x0a, 0xff]));
    for bad in ["0aFf", "0a f", "0a\u{e9}", "0af"] {
        assert_eq!(decode_hex::<2>(bad), Err(TraceError::Hex), "{bad:?}");
    }
}

#[test]
fn a_context_is_written_as_it_is_read() {
    let context = TraceContext::parse(VALID, None).unwrap();
    assert_eq!(context.to_string(), VALID);
    assert_eq!(context.traceparent(), VALID);
    let zeros_and_nines = TraceContext {
        trace_id: [0x09; 16],
        parent_span_id: [0xa0; 8],
        flags: 0,
        state: None,
    };
    let text = zeros_and_nines.traceparent();
    assert_eq!(
        text,
        format!("00-{}-{}-00", "09".repeat(16), "a0".repeat(8))
    );
    assert_eq!(TraceContext::parse(&text, None), Ok(zeros_and_nines));
}

#[test]
fn eight_digits_at_a_time_decode_exactly_what_one_at_a_time_does() {
    let one_at_a_time = |digits: &[u8; 8]| -> Option<[u8; 4]> {
        let mut out = [0; 4];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = lower_hex_value(pair[0])? << 4 | lower_hex_value(pair[1])?;
        }
        Some(out)
    };
    // The lanes never carry into each other: every byte in every place of a few words.
    for base in [*b"00000000", *b"0123abcd", *b"ffffffff", *b"9a8b7c6d"] {
        for at in 0..8 {
            for byte in 0..=u8::MAX {
                let mut digits = base;
                digits[at] = byte;
                let word = u64::from_le_bytes(digits);
                assert_eq!(decode_word(word), one_at_a_time(&digits), "{digits:?}");
            }
        }
    }
    assert_eq!(decode_hex::<4>("0aFf0000"), Err(TraceError::Hex));
    assert_eq!(decode_hex::<4>("deadbeef"), Ok([0xde, 0xad, 0xbe, 0xef]));
}
