#!/usr/bin/env python3
"""Instructions `gantry serve` executes per warm call, with span export on and off.

Wall-clock comparisons of tracing on a shared VM move by a few percent from run to run;
instruction counts do not. This runs the release server under valgrind's callgrind
twice (without and with `--otlp-endpoint`, spans going to a sink in this script),
deploys the bench's warm no-op function, makes CALLS sequential `:invoke` calls after a
warm-up, and prints the instructions per call of each server (every thread, user space
only: the kernel's work is not counted) and the functions whose own instructions grew
most. The totals vary by about a thousand instructions per call from run to run (the
store's checkpoints and the runtime's timers fall differently); the functions' own
counts hardly move. Usage (`make bench-tracing-instructions` passes these):

    tracing_instructions.py GANTRY_BIN WATCHDOG_BIN NOOP_RUNTIME_BIN [CALLS]
"""

import collections
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOKEN = "instructions-bench"
FUNCTION = "noop-warm"
WARM_UP = 200
# The exporter's schedule delay: shorter than the default, so that little idle time,
# whose timer and housekeeping work varies from run to run, is counted after the calls.
EXPORT_DELAY_MS = 1000


class Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that takes every export and answers 200."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(port, method, path, body=None, timeout=60):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connection.request(method, path, body=body, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read()


def wait_until(what, check, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"gave up waiting for {what}")


def calls(port, count):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for _ in range(count):
        connection.request("POST", f"/v1/functions/{FUNCTION}:invoke", b"{}", headers)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            sys.exit(f"a call answered {answer.status}: {body[:200]!r}")


def control(arguments):
    """Tells the running callgrind what to do, quietly."""
    subprocess.run(["callgrind_control", *arguments], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def self_costs(path):
    """Each function's own instructions in a callgrind dump."""
    names, costs, function, inclusive_next = {}, collections.Counter(), None, False

    def name(text):
        match = re.match(r"\((\d+)\)(?: (.*))?", text)
        if match.group(2):
            names[match.group(1)] = match.group(2)
        return names.get(match.group(1), text)

    with open(path) as dump:
        for line in dump:
            if line.startswith("fn="):
                function = name(line[3:].rstrip("\n"))
            elif line.startswith("cfn="):
                name(line[4:].rstrip("\n"))
            elif line.startswith("calls="):
                inclusive_next = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if inclusive_next:
                    inclusive_next = False
                else:
                    parts = line.split()
                    if len(parts) >= 2:
                        costs[function] += int(parts[1])
    return costs


def measure(gantry, watchdog, runtime, count, sink_port, traced):
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gantry-instructions-") as scratch:
        dump = os.path.join(scratch, "callgrind.out")
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}",
            gantry, "serve", "--listen", f"127.0.0.1:{port}", "--shutdown-grace-ms", "0",
            "--data-dir", os.path.join(scratch, "data"),
        ]
        if traced:
            command += ["--otlp-endpoint", f"http://127.0.0.1:{sink_port}"]
        environment = {
            "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"),
            "GANTRY_WATCHDOG": watchdog, "GANTRY_TOKEN": TOKEN, "GANTRY_LOG": "warn",
            "OTEL_BSP_SCHEDULE_DELAY": str(EXPORT_DELAY_MS),
        }
        log = open(os.path.join(scratch, "server.log"), "w")
        server = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
        try:
            wait_until("the server", lambda: request(port, "GET", "/healthz")[0] == 200)
            manifest = {
                "name": FUNCTION, "mode": "HTTP", "command": [runtime, "--noop-runtime"],
                "warm": {"min_instances": 1, "max_instances": 1, "concurrency_per_instance": 64},
            }
            status, body = request(port, "POST", "/v1/functions", json.dumps(manifest))
            if status >= 300:
                sys.exit(f"deploying answered {status}: {body[:200]!r}")
            calls(port, WARM_UP)
            # Counting starts here: the start-up and the warm-up are left out.
            control(["--zero", str(server.pid)])
            calls(port, count)
            # What follows the answers (written-behind records, the exporter's last
            # part batch, due within its delay) is counted too.
            time.sleep(EXPORT_DELAY_MS / 1000 + 1)
            control(["--dump", str(server.pid)])
        finally:
            server.terminate()
            server.wait(60)
            log.close()
        parts = [name for name in os.listdir(scratch) if name.startswith("callgrind.out.")]
        if len(parts) != 1:
            sys.exit(f"expected one dump of the counted calls, found {parts}")
        return self_costs(os.path.join(scratch, parts[0]))


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    gantry, watchdog, runtime = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) == 5 else 5000
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_port = sink.server_address[1]
    off = measure(gantry, watchdog, runtime, count, sink_port, traced=False)
    on = measure(gantry, watchdog, runtime, count, sink_port, traced=True)
    per_call_off = sum(off.values()) / count
    per_call_on = sum(on.values()) / count
    print(f"{count} warm calls after {WARM_UP} to warm up; instructions of `gantry serve` per call:")
    print(f"  tracing off  {per_call_off:10,.0f}")
    print(f"  tracing on   {per_call_on:10,.0f}")
    added = per_call_on - per_call_off
    print(f"  added        {added:10,.0f}  ({added / per_call_off:+.1%})")
    print("functions whose own instructions grew most, per call:")
    grown = sorted(((on[name] - off[name]) / count, name) for name in set(on) | set(off))
    for per_call, name in reversed(grown[-15:]):
        print(f"  {per_call:8,.0f}  {name[:110]}")


if __name__ == "__main__":
    main()
