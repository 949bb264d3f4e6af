#!/usr/bin/env python3
"""WARM runtime: a long-lived HTTP server the watchdog keeps alive between invocations.

State survives across calls (here a word-count cache and a call counter), which is the
point of WARM mode: load models, open connections, fill caches once. It serves several
invocations at once when the watchdog's WARM_CONCURRENCY allows it.
"""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"invocations": 0, "cache": {}}


def handle(event, execution_id):
    text = event.get("text", "") if isinstance(event, dict) else ""
    with lock:
        state["invocations"] += 1
        calls = state["invocations"]
        cached = text in state["cache"]
        if not cached:
            state["cache"][text] = len(text.split())
        words = state["cache"][text]
    return {"words": words, "cached": cached, "invocation": calls, "pid": os.getpid(),
            "execution_id": execution_id}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(200 if self.path == "/health" else 404, {"status": "ok"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = json.loads(self.rfile.read(length) or b"null")
        except ValueError as err:
            return self.reply(400, {"error": f"payload is not JSON: {err}"})
        self.reply(200, handle(event, self.headers.get("X-Execution-Id")))


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8081"))
    print(f"python-warm runtime listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
