#!/bin/sh
# Tests of handler.rs with Rust's own test harness: `sh test.sh`.
set -eu
cd "$(dirname "$0")"
rustc --edition 2021 --test handler.rs -o handler-tests
./handler-tests
