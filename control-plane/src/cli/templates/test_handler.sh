#!/bin/sh
# Tests of handler.sh. Run them with `sh test_handler.sh` (exit status 0 = all passed).
set -eu
cd "$(dirname "$0")"
failed=0
check() {
    out=$(printf '%s' "$1" | sh handler.sh 2>/dev/null | tail -n 1)
    if [ "$out" = "$2" ]; then
        echo "ok: $1"
    else
        echo "FAILED: $1 gave $out, expected $2"
        failed=1
    fi
}
check '{"name":"Ada"}' '{"greeting":"hello, Ada"}'
check '{}' '{"greeting":"hello, world"}'
exit "$failed"
