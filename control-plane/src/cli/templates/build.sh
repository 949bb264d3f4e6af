#!/bin/sh
# Builds ./handler, the static (musl) executable `gantry fn build` packages, from
# handler.rs. Needs rustc; the musl target is added with rustup when missing.
set -eu
cd "$(dirname "$0")"
target=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
rustc --edition 2021 --target "$target" -C opt-level=s -C strip=symbols -C panic=abort \
    -C target-feature=+crt-static handler.rs -o handler
