#!/usr/bin/env python3
"""HTTP runtime with only the standard library: GET /health, POST /invoke.

The watchdog starts it with PORT set, waits for /health, posts the payload to /invoke
and reports the JSON answer. Errors are answered with a 4xx/5xx and {"error": "..."}.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handle(event):
    if not isinstance(event, dict) or not isinstance(event.get("input"), str):
        raise ValueError('expected {"input": "<text>"}')
    return {"result": event["input"].upper()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the watchdog reuses connections
    disable_nagle_algorithm = True  # small answers go out at once

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
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/invoke":
            return self.reply(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = json.loads(self.rfile.read(length) or b"null")
            self.reply(200, handle(event))
        except ValueError as err:
            self.reply(400, {"error": str(err)})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
