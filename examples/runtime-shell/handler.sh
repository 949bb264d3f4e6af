#!/bin/sh
# Example shell function for gantry/runtime-shell (busybox sh): the JSON payload arrives
# on stdin; the result is the last line printed on stdout. Earlier lines and stderr are logs.
payload=$(cat)
[ -n "$payload" ] || payload=null
echo "got ${#payload} bytes" >&2
case $payload in
*'"fail"'*) echo "asked to fail" >&2; exit 1 ;;
esac
printf '{"runtime":"shell","execution_id":"%s","bytes":%d,"input":%s}\n' \
    "${EXECUTION_ID:-}" "${#payload}" "$payload"
