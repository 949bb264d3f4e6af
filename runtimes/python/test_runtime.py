"""Unit tests for runtime.py (stdlib unittest; run in the image by scripts/check-runtime-images.sh,
or on the host: python3 -m unittest discover -s runtimes/python)."""
import io
import json
import os
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.request
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime  # noqa: E402

HANDLER = '''
import asyncio
def handle(event, context):
    print("a log line")
    if event == "boom":
        raise ValueError("boom")
    return {"event": event, "id": context.execution_id, "trace": context.trace_id,
            "timeout_ms": context.timeout_ms, "remaining_ok": context.remaining_ms() > 0}
def handle_trace(event, context):
    return {"traceparent": context.traceparent, "headers": context.trace_headers(),
            "timeout_ms": context.timeout_ms, "remaining_ms": context.remaining_ms()}
async def handle_async(event, context):
    await asyncio.sleep(0)
    return {"async": event}
'''


class RuntimeTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "handler.py")
        with open(self.path, "w") as f:
            f.write(HANDLER)
        patcher = mock.patch.dict(os.environ, {"HANDLER_PATH": self.path}, clear=False)
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop("HANDLER_FUNCTION", None)

    def once(self, raw, env):
        out = []
        with mock.patch("sys.stderr", new=io.StringIO()) as err:
            code = runtime.run_once(raw, env, out.append)
        return code, (json.loads(out[0]) if out else None), err.getvalue()

    def test_stdio_result_and_context_from_env(self):
        code, result, err = self.once(b'{"a": 1}', {"EXECUTION_ID": "e1", "TRACE_ID": "t1", "TIMEOUT_MS": "1500"})
        self.assertEqual(code, 0)
        self.assertEqual(result, {"event": {"a": 1}, "id": "e1", "trace": "t1", "timeout_ms": 1500, "remaining_ok": True})
        self.assertIn("a log line", err)  # prints go to stderr, not the result

    def test_empty_payload_is_none_and_defaults(self):
        code, result, _ = self.once(b"", {})
        self.assertEqual(code, 0)
        self.assertEqual(result["event"], None)
        self.assertEqual(result["timeout_ms"], 30000)

    def test_handler_error_exits_1_with_the_exception_last(self):
        code, result, err = self.once(b'"boom"', {})
        self.assertEqual((code, result), (1, None))
        self.assertEqual(err.strip().splitlines()[-1], "ValueError: boom")

    def test_invalid_json_and_missing_handler(self):
        self.assertEqual(self.once(b"{nope", {})[0], 1)
        with mock.patch.dict(os.environ, {"HANDLER_PATH": "/nonexistent/handler.py"}):
            code, _, err = self.once(b"1", {})
        self.assertEqual(code, 1)
        self.assertIn("no handler file", err)

    def test_async_handler(self):
        with mock.patch.dict(os.environ, {"HANDLER_FUNCTION": "handle_async"}):
            self.assertEqual(self.once(b"7", {})[1], {"async": 7})

    def test_mode_selection(self):
        self.assertEqual(runtime.choose_mode([], {}), "STDIO")
        self.assertEqual(runtime.choose_mode([], {"EXECUTION_MODE": "http"}), "HTTP")
        self.assertEqual(runtime.choose_mode([], {"EXECUTION_MODE": "WARM"}), "HTTP")
        self.assertEqual(runtime.choose_mode([], {"EXECUTION_MODE": "WARM", "WARM_RUNTIME": "STDIO"}), "STDIO")
        self.assertEqual(runtime.choose_mode(["--stdio"], {"EXECUTION_MODE": "HTTP"}), "STDIO")
        self.assertEqual(runtime.choose_mode([], {"EXECUTION_MODE": "FILE"}), "FILE")

    def test_http_server(self):
        server = runtime.make_server(runtime.load_handler(), "127.0.0.1", 0, {"TIMEOUT_MS": "900"})
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        base = f"http://127.0.0.1:{server.server_address[1]}"

        def post(body, headers=None):
            req = urllib.request.Request(base + "/invoke", data=body, headers=headers or {}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            self.assertEqual((r.status, json.loads(r.read())), (200, {"status": "ok"}))
        with mock.patch("sys.stderr", new=io.StringIO()):
            status, body = post(b'{"x": 2}', {"X-Execution-Id": "h1", "X-Trace-Id": "tr"})
            self.assertEqual(status, 200)
            self.assertEqual(body, {"event": {"x": 2}, "id": "h1", "trace": "tr", "timeout_ms": 900, "remaining_ok": True})
            status, body = post(b'"boom"')
            self.assertEqual((status, body["error"]), (500, {"type": "ValueError", "message": "boom"}))
            status, body = post(b"{bad")
            self.assertEqual((status, body["error"]["type"]), (400, "InvalidInput"))

    def test_trace_context_and_time_left(self):
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        context = runtime.context_from({"TRACEPARENT": parent, "TRACESTATE": "a=1", "TIMEOUT_MS": "800"})
        self.assertEqual((context.traceparent, context.tracestate), (parent, "a=1"))
        self.assertEqual(context.trace_headers(), {"traceparent": parent, "tracestate": "a=1"})
        self.assertTrue(0 < context.remaining_ms() <= 800)
        self.assertEqual(runtime.context_from({}).trace_headers(), {})
        # Over HTTP the request's headers win: the time left when the watchdog forwarded it.
        server = runtime.make_server(runtime.load_handler(name="handle_trace"), "127.0.0.1", 0,
                                     {"TIMEOUT_MS": "30000", "TRACEPARENT": "stale"})
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        req = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}/invoke", data=b"{}",
                                     headers={"traceparent": parent, "X-Timeout-Ms": "250"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            body = json.loads(r.read())
        self.assertEqual(body["traceparent"], parent)
        self.assertEqual(body["headers"], {"traceparent": parent})
        self.assertEqual(body["timeout_ms"], 250)
        self.assertTrue(0 < body["remaining_ms"] <= 250, body)

    def test_warm_calls_mark_their_lines_with_their_execution(self):
        sink = io.StringIO()
        stream = runtime.MarkedStream(sink)
        with mock.patch("sys.stdout", new=stream):
            print("before any call")
            done = threading.Event()

            def other_call():
                with runtime.marked_lines("exec-b"):
                    print("from b")
                    sys.stdout.write("unfinished b")
                done.set()

            with runtime.marked_lines("exec-a"):
                print("from a, part", end=" ")
                threading.Thread(target=other_call).start()
                done.wait(5)
                print("one")
            print("after the calls")
        lines = sink.getvalue().split("\n")
        self.assertEqual(lines[0], "before any call")
        self.assertIn("\x1eexec-b\x1ffrom b", lines)
        self.assertIn("\x1eexec-b\x1funfinished b", lines)
        self.assertIn("\x1eexec-a\x1ffrom a, part one", lines)
        self.assertEqual(lines[-2:], ["after the calls", ""])


if __name__ == "__main__":
    unittest.main()
