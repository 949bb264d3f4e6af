#!/usr/bin/env bash
# Proves the runtime images end to end (needs a Docker engine; scripts/ensure-docker.sh):
#   1. `make runtime-images`: local bases (make base-images, cached), gantry/watchdog,
#      gantry/runtime-{python,node,shell,binary};
#   2. the handler servers' unit tests, run inside the python and node images;
#   3. every example under examples/runtime-* builds (FROM gantry/runtime-*) and runs with
#      plain `docker run --rm -e INVOCATION_PAYLOAD=...` (the watchdog prints its report
#      on stdout without CALLBACK_URL), under the docker runtime's restrictions
#      (--read-only, tmpfs /tmp, --cap-drop ALL, no-new-privileges, no network, non-root):
#      a result, a FUNCTION_ERROR; python and node also in HTTP mode (default command and
#      an explicit WATCHDOG_CMD) and in WARM mode (GET /health, two POST /invoke).
# Fails with a clear message on the first mismatch. Containers run with --rm and tracked
# names (force-removed on exit); example images are removed after a passing run
# (KEEP_TEST_IMAGES=1 keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "==> $*"; }
ok() { echo "    ok: $*"; }
fail() {
    echo "check-runtime-images: FAIL: $*" >&2
    exit 1
}

PREFIX="gantry-rtcheck-$$"
containers=()
cleanup() {
    local c
    for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

docker info >/dev/null 2>&1 || fail "no Docker engine answers \`docker info\` (run scripts/ensure-docker.sh)"

step "make runtime-images"
make --no-print-directory runtime-images || fail "make runtime-images failed"

# Restrictions the docker runtime applies.
LOCKED=(--network none --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges)

out="" err="" rc=0
run() { # run NAME ARGS... : docker run --rm; stdout/stderr/exit code in $out/$err/$rc
    local name="$PREFIX-$1" errfile
    shift
    containers+=("$name")
    errfile=$(mktemp)
    rc=0
    out=$(docker run --rm --name "$name" "$@" 2>"$errfile") || rc=$?
    err=$(<"$errfile")
    rm -f "$errfile"
}
expect() { # expect NAME WANT_RC REGEX ARGS... (ARGS end with the image)
    local name=$1 want_rc=$2 pattern=$3
    shift 3
    run "$name" "$@"
    if ((rc != want_rc)) || ! grep -qE -- "$pattern" <<<"$out"; then
        fail "$name: want exit $want_rc and stdout matching $pattern"$'\n'"    got exit $rc, stdout: $out"$'\n'"    stderr: $err"
    fi
    ok "$name: $out"
}

step "unit tests of the handler servers (inside the images)"
run py-unit --network none --entrypoint python3 -e PYTHONDONTWRITEBYTECODE=1 \
    -v "$PWD/runtimes/python:/t:ro" -w /t gantry/runtime-python -m unittest test_runtime
((rc == 0)) || fail "runtimes/python/test_runtime.py failed:"$'\n'"$err"
ok "python: $(tail -n 3 <<<"$err" | tr '\n' ' ')"
run node-unit --network none --entrypoint node -v "$PWD/runtimes/node:/t:ro" -w /t gantry/runtime-node test_runtime.js
((rc == 0)) || fail "runtimes/node/test_runtime.js failed:"$'\n'"$out"$'\n'"$err"
ok "node: $(tail -n 1 <<<"$out")"

step "images run as a non-root user"
for r in python node shell binary; do
    user=$(docker image inspect --format '{{.Config.User}}' "gantry/runtime-$r")
    [[ -n $user && $user != 0* && $user != root* ]] || fail "gantry/runtime-$r runs as '$user'"
done
ok "gantry/runtime-{python,node,shell,binary}: USER 10001:10001"

step "building the examples"
examples/runtime-binary/build.sh >/dev/null || fail "examples/runtime-binary/build.sh failed"
for r in python node shell binary; do
    docker build -q -t "gantry/example-$r" "examples/runtime-$r" >/dev/null 2>&1 ||
        fail "docker build examples/runtime-$r failed"
done
ok "gantry/example-{python,node,shell,binary}"

step "STDIO invocations (locked down: ${LOCKED[*]})"
P='{"name":"gantry"}'
expect python-stdio 0 '^\{"success":true,"output":\{"greeting":"hello, gantry","runtime":"python","execution_id":"e1","trace_id":"t1","timeout_ms":5000\}' \
    "${LOCKED[@]}" -e INVOCATION_PAYLOAD="$P" -e EXECUTION_ID=e1 -e TRACE_ID=t1 -e TIMEOUT_MS=5000 gantry/example-python
grep -q "greeting 'gantry'" <<<"$err" || fail "python-stdio: the handler's print was not forwarded as a log (stderr: $err)"
expect node-stdio 0 '^\{"success":true,"output":\{"greeting":"hello, gantry","runtime":"node","execution_id":"e1","trace_id":"t1","timeout_ms":5000\}' \
    "${LOCKED[@]}" -e INVOCATION_PAYLOAD="$P" -e EXECUTION_ID=e1 -e TRACE_ID=t1 -e TIMEOUT_MS=5000 gantry/example-node
grep -q "greeting gantry" <<<"$err" || fail "node-stdio: console.log was not forwarded as a log (stderr: $err)"
for r in shell binary; do
    expect "$r-stdio" 0 "^\\{\"success\":true,\"output\":\\{\"runtime\":\"$r\",\"execution_id\":\"e1\",\"bytes\":17,\"input\":\\{\"name\":\"gantry\"\\}\\}" \
        "${LOCKED[@]}" -e INVOCATION_PAYLOAD="$P" -e EXECUTION_ID=e1 "gantry/example-$r"
done
for r in python node shell binary; do
    expect "$r-error" 1 '^\{"success":false,"output":null,"error":\{"code":"FUNCTION_ERROR","message":"[^"]*fail' \
        "${LOCKED[@]}" -e INVOCATION_PAYLOAD='{"name":"fail"}' "gantry/example-$r"
done

step "HTTP mode (python, node)"
declare -A CMD=([python]="python3 /opt/gantry/runtime.py --http" [node]="node /opt/gantry/runtime.js --http")
for r in python node; do
    expect "$r-http" 0 "^\\{\"success\":true,\"output\":\\{\"greeting\":\"hello, http\",\"runtime\":\"$r\",\"execution_id\":\"h1\"" \
        "${LOCKED[@]}" -e EXECUTION_MODE=HTTP -e INVOCATION_PAYLOAD='{"name":"http"}' -e EXECUTION_ID=h1 "gantry/example-$r"
    expect "$r-http-cmd" 1 '^\{"success":false,"output":null,"error":\{"code":"FUNCTION_ERROR","message":"[^"]*asked to fail' \
        "${LOCKED[@]}" -e EXECUTION_MODE=HTTP -e WATCHDOG_CMD="${CMD[$r]}" -e INVOCATION_PAYLOAD='{"name":"fail"}' "gantry/example-$r"
done

step "WARM mode (python, node): /health, then two invocations on one container"
for r in python node; do
    name="$PREFIX-$r-warm"
    containers+=("$name")
    docker run -d --rm --name "$name" --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
        -e EXECUTION_MODE=WARM -e WARM_PORT=8080 "gantry/example-$r" >/dev/null
    ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
    [[ -n $ip ]] || fail "$r-warm: the container has no IP address"
    healthy=0
    for _ in $(seq 1 100); do
        if curl -fsS -m 1 "http://$ip:8080/health" >/dev/null 2>&1; then
            healthy=1
            break
        fi
        sleep 0.1
    done
    ((healthy)) || fail "$r-warm: /health never answered 200; logs: $(docker logs "$name" 2>&1 | tail -n 5)"
    for i in 1 2; do
        reply=$(curl -sS -m 10 -H 'Content-Type: application/json' -H "X-Execution-Id: w$i" -H 'X-Trace-Id: wt' \
            -d "{\"name\":\"warm$i\"}" "http://$ip:8080/invoke") || fail "$r-warm: POST /invoke failed"
        grep -qE "^\\{\"success\":true,\"output\":\\{\"greeting\":\"hello, warm$i\",\"runtime\":\"$r\",\"execution_id\":\"w$i\",\"trace_id\":\"wt\"" <<<"$reply" ||
            fail "$r-warm: invocation $i answered: $reply"
    done
    ok "$r-warm: $reply"
    docker rm -f "$name" >/dev/null 2>&1 || true
done

step "image sizes"
for r in python node shell binary; do
    docker image inspect --format "{{.Size}}" "gantry/runtime-$r" | awk -v n="gantry/runtime-$r" '{printf "    %-24s %6.1f MB\n", n, $1/1e6}'
done
if [[ ${KEEP_TEST_IMAGES:-0} != 1 ]]; then
    docker rmi gantry/example-{python,node,shell,binary} >/dev/null 2>&1 || true
fi
echo "check-runtime-images: all checks passed"
