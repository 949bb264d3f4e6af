#!/bin/sh
# FILE function: the payload is in $INPUT_FILE, the result goes to $OUTPUT_FILE.
# Plain POSIX sh, no jq: it reports the input's size and echoes the input back.
set -eu
bytes=$(wc -c < "$INPUT_FILE" | tr -d ' ')
echo "read $bytes bytes from $INPUT_FILE"          # stdout lines are logs in FILE mode
printf '{"bytes": %s, "received": %s}\n' "$bytes" "$(cat "$INPUT_FILE")" > "$OUTPUT_FILE"
