#!/usr/bin/env python3
"""STDIO function: the payload arrives on stdin, the result is the last JSON line on stdout.

Anything printed before the result, and everything on stderr, is forwarded as logs.
"""
import json
import sys

event = json.load(sys.stdin)
print(f"handling execution with input {event.get('input')!r}", file=sys.stderr)
if not isinstance(event.get("input"), str):
    sys.exit('expected {"input": "<text>"}')  # exit code 1: FUNCTION_ERROR
print(json.dumps({"output": event["input"].upper()}))
