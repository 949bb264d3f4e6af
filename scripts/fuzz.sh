#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another.
#
#   scripts/fuzz.sh [--ci] [TARGET...]
#
# Each target first replays its corpus (fuzz/corpus/TARGET: the committed seeds and
# regression inputs, plus whatever earlier runs found), then fuzzes for FUZZ_SECONDS
# (60 by default, 15 with --ci, which also builds without AddressSanitizer). A crash, a panic, a hang (over FUZZ_TIMEOUT seconds on
# one input) or running out of memory (over FUZZ_RSS_MB) stops the run with a failure;
# the input that did it is kept in fuzz/artifacts/TARGET/. Commit it to the corpus as
# regress-<what>, next to the fix.
#
# cargo fuzz passes nightly-only flags (-Zsanitizer and friends) to rustc; the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(manifest chain_rules schema watchdog_config report callback invoke log_lines)

ci=false
chosen=()
for arg in "$@"; do
    case $arg in
        --ci) ci=true ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) chosen+=("$arg") ;;
    esac
done
((${#chosen[@]})) || chosen=("${TARGETS[@]}")
# CI builds without AddressSanitizer: the code under test is safe Rust, where a bug
# shows as a panic or a hang, and the instrumented build takes several times longer.
if $ci; then
    seconds=${FUZZ_SECONDS:-15}
    build=(--release --debug-assertions -s none)
else
    seconds=${FUZZ_SECONDS:-60}
    build=(--release --debug-assertions)
fi
timeout_s=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 1
fi
export RUSTC_BOOTSTRAP=1

started=$SECONDS
# Release code with debug assertions and overflow checks: a bug that would panic in a
# test panics here too.
(cd fuzz && cargo fuzz build "${build[@]}")
echo "fuzz: built in $((SECONDS - started)) s"

failed=()
for target in "${chosen[@]}"; do
    corpus=fuzz/corpus/$target
    artifacts=fuzz/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz: $target for $seconds s (corpus $corpus: $(find "$corpus" -type f | wc -l) inputs)"
    # -max_len: the targets whose inputs are recipes or lines still fit; the parsers
    # see inputs larger than the 4 KiB default, where size limits live.
    if ! (cd fuzz && cargo fuzz run "${build[@]}" "$target" \
        "../$corpus" -- \
        -max_total_time="$seconds" \
        -timeout="$timeout_s" \
        -rss_limit_mb="$rss_mb" \
        -max_len=65536 \
        -artifact_prefix="../$artifacts/" \
        -print_final_stats=1 2>&1 | grep -v '^#[0-9]' >"../$artifacts/last-run.log"); then
        tail -40 "$artifacts/last-run.log"
        failed+=("$target")
        continue
    fi
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )' \
        "$artifacts/last-run.log" | tr '\n' ' ' || true
    echo
done
echo "fuzz: ${#chosen[@]} targets in $((SECONDS - started)) s"
if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/artifacts/*/last-run.log)" >&2
    exit 1
fi
