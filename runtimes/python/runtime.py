#!/usr/bin/env python3
"""Gantry Python runtime: runs a user's `handle(event, context)` under the watchdog.

Standard library only. The user's file (HANDLER_PATH, default /app/handler.py) defines

    def handle(event, context):        # or: async def handle(event, context)
        return {"any": "JSON value"}

and this module serves it in the mode the watchdog runs (EXECUTION_MODE):

  STDIO (default)  one invocation: the payload (JSON) on stdin, the result as the last
                   line on stdout. Whatever the handler prints goes to stderr (logs).
  FILE             one invocation: INPUT_FILE -> OUTPUT_FILE.
  HTTP, WARM       a small HTTP server on 127.0.0.1:$PORT (HOST overrides the address):
                   GET /health -> 200 once the handler is imported;
                   POST /invoke with the payload as the body -> 200 and the result as
                   JSON, or 500 {"error": {"type", "message"}} when the handler raises.
                   In WARM mode with WARM_RUNTIME=STDIO/FILE the one-shot forms are used.

In WARM mode one runtime serves many calls at once, so every line a handler writes on
stdout or stderr during a call is marked with its execution (RS, the execution id, US,
then the line), which the watchdog and Gantry use to file the line under that execution.

`--stdio`, `--file` or `--http` force a mode. A handler that raises (or an import error)
exits with code 1 in the one-shot modes: the watchdog reports FUNCTION_ERROR with the
last stderr line (the exception) as the message.

`context` has execution_id, trace_id (X-Execution-Id / X-Trace-Id headers in HTTP mode,
EXECUTION_ID / TRACE_ID in the environment otherwise), timeout_ms (X-Timeout-Ms, the time
left when the request was sent, or TIMEOUT_MS, default 30000), deadline (epoch seconds),
remaining_ms(), traceparent and tracestate (the W3C trace context the invocation runs
under: headers in HTTP mode, TRACEPARENT / TRACESTATE otherwise), trace_headers() (those
two as a dict of headers, to pass the trace on to services the handler calls) and
function_name (FUNCTION_NAME, if set).
"""

import asyncio
import contextlib
import importlib.util
import inspect
import json
import os
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_HANDLER_PATH = "/app/handler.py"
DEFAULT_TIMEOUT_MS = 30000


class Context:
    """What a handler learns about its invocation."""

    def __init__(self, execution_id=None, trace_id=None, timeout_ms=None, function_name=None,
                 traceparent=None, tracestate=None):
        self.execution_id = execution_id
        self.trace_id = trace_id
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.timeout_ms = timeout_ms if timeout_ms is not None else DEFAULT_TIMEOUT_MS
        self.deadline = time.time() + self.timeout_ms / 1000.0
        self.function_name = function_name

    def remaining_ms(self):
        return max(0, int((self.deadline - time.time()) * 1000))

    def trace_headers(self):
        """The headers that continue this invocation's trace in a call it makes."""
        headers = {"traceparent": self.traceparent, "tracestate": self.tracestate}
        return {name: value for name, value in headers.items() if value}

    def to_dict(self):
        return {
            "execution_id": self.execution_id,
            "trace_id": self.trace_id,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "timeout_ms": self.timeout_ms,
            "deadline": self.deadline,
            "function_name": self.function_name,
        }

    def __repr__(self):
        return f"Context({self.to_dict()!r})"


def _int_or_none(text):
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def context_from(env, headers=None):
    """Builds the context from the environment, with request headers taking precedence."""
    headers = headers or {}

    def pick(header, var):
        value = headers.get(header)
        return value if value else env.get(var) or None

    return Context(
        execution_id=pick("X-Execution-Id", "EXECUTION_ID"),
        trace_id=pick("X-Trace-Id", "TRACE_ID"),
        timeout_ms=_int_or_none(pick("X-Timeout-Ms", "TIMEOUT_MS")),
        function_name=env.get("FUNCTION_NAME") or None,
        traceparent=pick("traceparent", "TRACEPARENT"),
        tracestate=pick("tracestate", "TRACESTATE"),
    )


def load_handler(path=None, name=None):
    """Imports the user's file and returns its handler function."""
    path = path or os.environ.get("HANDLER_PATH") or DEFAULT_HANDLER_PATH
    name = name or os.environ.get("HANDLER_FUNCTION") or "handle"
    if not os.path.isfile(path):
        raise RuntimeError(f"no handler file at {path} (COPY your handler.py to /app/handler.py)")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the handler may import its neighbours
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
    handler = getattr(module, name, None)
    if not callable(handler):
        raise RuntimeError(f"{path} does not define a function {name}(event, context)")
    return handler


def call(handler, event, context):
    """Runs the handler (sync or async) and returns its result."""
    result = handler(event, context)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable):
    return await awaitable


def encode(result):
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"), default=str)


def parse_payload(raw):
    text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    return json.loads(text) if text.strip() else None


# --- one-shot modes -------------------------------------------------------------------


def run_once(raw, env, write):
    """One invocation: raw payload in, `write(json_text)` out. Returns the exit code."""
    try:
        handler = load_handler()
        event = parse_payload(raw)
        context = context_from(env)
        # The handler's prints are logs: keep them off the result channel.
        with contextlib.redirect_stdout(sys.stderr):
            result = call(handler, event, context)
        text = encode(result)
    except Exception as err:  # noqa: BLE001 - every failure is the function's error
        traceback.print_exc(file=sys.stderr)
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1
    write(text)
    return 0


def run_stdio(env=os.environ):
    raw = sys.stdin.buffer.read()
    out = sys.stdout

    def write(text):
        out.write(text + "\n")
        out.flush()

    return run_once(raw, env, write)


def run_file(env=os.environ):
    input_file = env.get("INPUT_FILE") or "/tmp/input.json"
    output_file = env.get("OUTPUT_FILE") or "/tmp/output.json"
    with open(input_file, "rb") as f:
        raw = f.read()

    def write(text):
        with open(output_file, "w", encoding="utf-8") as f:
            f.write(text)

    return run_once(raw, env, write)


# --- HTTP mode ------------------------------------------------------------------------

MARK_START, MARK_END = "\x1e", "\x1f"
_call = threading.local()


class MarkedStream:
    """A text stream that marks each line a call writes with the call's execution."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, text):
        execution = getattr(_call, "execution_id", None)
        if not execution:
            return self._stream.write(text)
        pending = _call.pending.get(id(self), "") + text
        *lines, rest = pending.split("\n")
        _call.pending[id(self)] = rest
        with self._lock:
            for line in lines:
                self._stream.write(f"{MARK_START}{execution}{MARK_END}{line}\n")
        return len(text)

    def end_call(self):
        """Writes out the call's unfinished last line."""
        rest = _call.pending.pop(id(self), "")
        if rest:
            with self._lock:
                self._stream.write(f"{MARK_START}{_call.execution_id}{MARK_END}{rest}\n")
        self._stream.flush()

    def flush(self):
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def marked_lines(execution_id):
    """While a call runs on this thread, the lines it writes carry its execution."""
    streams = [s for s in (sys.stdout, sys.stderr) if isinstance(s, MarkedStream)]
    if not execution_id or not streams:
        yield
        return
    _call.execution_id, _call.pending = execution_id, {}
    try:
        yield
    finally:
        for stream in streams:
            stream.end_call()
        _call.execution_id = None


def make_server(handler, host="127.0.0.1", port=8080, env=os.environ):
    """An HTTP server (not yet serving) for the handler; port 0 picks a free one."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "gantry-python-runtime"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass  # no access log: stderr is the function's log

        def _send(self, status, body):
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.split("?", 1)[0] in ("/health", "/healthz"):
                self._send(200, '{"status":"ok"}')
            else:
                self._send(404, '{"error":{"type":"NotFound","message":"GET /health or POST /invoke"}}')

        def do_POST(self):
            if self.path.split("?", 1)[0] not in ("/invoke", "/"):
                self._send(404, '{"error":{"type":"NotFound","message":"POST /invoke"}}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                event = parse_payload(raw)
            except ValueError as err:
                self._send(400, encode({"error": {"type": "InvalidInput", "message": f"the body is not JSON: {err}"}}))
                return
            context = context_from(env, self.headers)
            with marked_lines(context.execution_id):
                try:
                    text = encode(call(handler, event, context))
                except Exception as err:  # noqa: BLE001
                    traceback.print_exc(file=sys.stderr)
                    sys.stderr.flush()
                    text, failed = encode({"error": {"type": type(err).__name__, "message": str(err)}}), True
                else:
                    failed = False
            self._send(500 if failed else 200, text)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False

    return Server((host, port), Handler)


def run_http(env=os.environ):
    try:
        handler = load_handler()
    except Exception as err:  # noqa: BLE001 - startup fails: the watchdog reports it
        traceback.print_exc(file=sys.stderr)
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1
    host = env.get("HOST") or "127.0.0.1"
    port = int(env.get("PORT") or 8080)
    if (env.get("EXECUTION_MODE") or "").upper() == "WARM":
        sys.stdout, sys.stderr = MarkedStream(sys.stdout), MarkedStream(sys.stderr)
    server = make_server(handler, host, port, env)

    def stop(signum, frame):
        # Stop accepting; shutdown() must not run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"gantry python runtime listening on {host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()
    return 0


def choose_mode(argv, env):
    for flag, mode in (("--stdio", "STDIO"), ("--file", "FILE"), ("--http", "HTTP")):
        if flag in argv:
            return mode
    mode = (env.get("EXECUTION_MODE") or "STDIO").upper()
    if mode == "WARM":
        mode = (env.get("WARM_RUNTIME") or "HTTP").upper()
    return mode if mode in ("STDIO", "FILE", "HTTP") else "STDIO"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    mode = choose_mode(argv, os.environ)
    if mode == "HTTP":
        return run_http()
    if mode == "FILE":
        return run_file()
    return run_stdio()


if __name__ == "__main__":
    sys.exit(main())
