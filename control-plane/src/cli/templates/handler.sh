#!/bin/sh
# __NAME__: a Gantry function in POSIX sh (busybox in the image).
#
# The input JSON arrives on stdin (checked against `input_schema` in function.yaml before
# the call); the last line printed on stdout is the output and must be JSON. Earlier
# lines and stderr go to the execution's logs; a non-zero exit is a FUNCTION_ERROR.
set -eu
input=$(cat)
echo "got ${#input} bytes" >&2
# input_schema allows only letters, digits, spaces, '.', '_' and '-' in "name", so it
# can go into the JSON below without escaping.
name=$(printf '%s' "$input" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
printf '{"greeting":"hello, %s"}\n' "${name:-world}"
