"""Example Python function for gantry/runtime-python: greets and echoes its context."""


def handle(event, context):
    event = event or {}
    name = event.get("name", "world")
    print(f"greeting {name!r}")  # a log line (stderr), not the result
    if name == "fail":
        raise ValueError("asked to fail")
    return {
        "greeting": f"hello, {name}",
        "runtime": "python",
        "execution_id": context.execution_id,
        "trace_id": context.trace_id,
        "timeout_ms": context.timeout_ms,
    }
