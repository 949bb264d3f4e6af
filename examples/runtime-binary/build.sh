#!/usr/bin/env bash
# Builds examples/runtime-binary/handler: a static (musl) executable from handler.rs.
set -euo pipefail
cd "$(dirname "$0")"
target=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
rustc --edition 2021 --target "$target" -C opt-level=s -C strip=symbols -C panic=abort \
    -C target-feature=+crt-static handler.rs -o handler
file handler 2>/dev/null || true
