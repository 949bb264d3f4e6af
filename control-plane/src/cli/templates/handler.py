"""__NAME__: a Gantry function in Python.

The entry point is `handle(event, context)`: `event` is the input (JSON, checked against
`input_schema` in function.yaml before the call), the return value is the output.
Anything printed goes to the execution's logs. `context` has execution_id, trace_id,
timeout_ms and remaining_ms().
"""


def handle(event, context):
    name = (event or {}).get("name", "world")
    print(f"greeting {name}")  # a log line, not the output
    return {"greeting": f"hello, {name}"}
