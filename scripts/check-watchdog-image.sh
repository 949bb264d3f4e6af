#!/usr/bin/env bash
# Proves the watchdog image end to end (needs a running Docker engine; see
# scripts/ensure-docker.sh):
#   1. `make watchdog-image` builds gantry/watchdog:latest (FROM scratch, host-built
#      static watchdog, no registry needed);
#   2. the image runs: `--version` prints the same version as target/static/watchdog;
#   3. the image holds only /watchdog (byte-identical to target/static/watchdog), with
#      ENTRYPOINT ["/watchdog"];
#   4. a function image built FROM scratch from scripts/fixtures/busybox-stdio/Dockerfile
#      (COPY --from=gantry/watchdog:latest, plus a static busybox) runs STDIO invocations:
#      payload echo, logs before the result, function error, timeout.
# Fails with a clear message on the first mismatch. Idempotent: containers run with --rm
# (and are force-removed on exit), the test image is rebuilt under a fixed tag and
# removed after a successful run (KEEP_TEST_IMAGE=1 keeps it); superseded images it
# built are removed.
#
# Environment: BUSYBOX (a static busybox binary; default /bin/busybox, installed from
# Debian's busybox-static when missing and apt-get is usable).
set -euo pipefail
cd "$(dirname "$0")/.."

WATCHDOG_IMAGE=gantry/watchdog:latest # the fixture's COPY --from names this tag
TEST_IMAGE=gantry-test/busybox-stdio:latest
FIXTURE=scripts/fixtures/busybox-stdio
BUSYBOX=${BUSYBOX:-/bin/busybox}
STATIC_WATCHDOG=target/static/watchdog

step() { echo "==> $*"; }
ok() { echo "    ok: $*"; }
fail() {
    echo "check-watchdog-image: FAIL: $*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Cleanup: containers and the scratch folder ($work). Every container gets a name with
# this prefix, so an interrupted run leaves nothing behind.
PREFIX="gantry-check-$$"
containers=()
work=$(mktemp -d)
cleanup() {
    local c
    for c in "${containers[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# run NAME ARGS...: `docker run --rm` under a tracked name; stdout, stderr and exit code
# land in $out, $err and $rc.
out="" err="" rc=0
run() {
    local name="$PREFIX-$1"
    shift
    containers+=("$name")
    local errfile
    errfile=$(mktemp)
    rc=0
    out=$(docker run --rm --name "$name" --network none "$@" 2>"$errfile") || rc=$?
    err=$(<"$errfile")
    rm -f "$errfile"
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# Remove an image we superseded, but only if nothing tags it any more.
drop_if_dangling() {
    local id=$1
    [[ -n $id ]] || return 0
    if [[ $(docker image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null) == 0 ]]; then
        docker rmi "$id" >/dev/null 2>&1 || true
    fi
}

have docker || fail "the docker CLI is not installed (run scripts/ensure-docker.sh)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers \`docker info\` (run scripts/ensure-docker.sh)"

# --- 1. the watchdog image -------------------------------------------------------------
step "building $WATCHDOG_IMAGE (make watchdog-image)"
old_watchdog=$(image_id "$WATCHDOG_IMAGE")
make --no-print-directory watchdog-image WATCHDOG_IMAGE="$WATCHDOG_IMAGE" ||
    fail "make watchdog-image failed"
new_watchdog=$(image_id "$WATCHDOG_IMAGE")
[[ -n $new_watchdog ]] || fail "make watchdog-image did not produce $WATCHDOG_IMAGE"
[[ $old_watchdog != "$new_watchdog" ]] && drop_if_dangling "$old_watchdog"
ok "$WATCHDOG_IMAGE is ${new_watchdog:7:12}"

# --- 2. it runs ------------------------------------------------------------------------
step "docker run $WATCHDOG_IMAGE --version"
want_version=$("$STATIC_WATCHDOG" --version) || fail "$STATIC_WATCHDOG --version failed on the host"
run version "$WATCHDOG_IMAGE" --version
((rc == 0)) || fail "the image's --version exited $rc: $out $err"
[[ $out == "$want_version" ]] || fail "--version in the image printed '$out', want '$want_version'"
[[ $out =~ ^watchdog\ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "unexpected --version output '$out'"
ok "$out"

# --- 3. only /watchdog -----------------------------------------------------------------
step "image filesystem holds only /watchdog"
entrypoint=$(docker image inspect --format '{{json .Config.Entrypoint}}' "$WATCHDOG_IMAGE")
[[ $entrypoint == '["/watchdog"]' ]] || fail "ENTRYPOINT is $entrypoint, want [\"/watchdog\"]"
layers=$(docker image inspect --format '{{len .RootFS.Layers}}' "$WATCHDOG_IMAGE")
[[ $layers == 1 ]] || fail "the image has $layers layers, want 1 (FROM scratch + one COPY)"
cname="$PREFIX-export"
containers+=("$cname")
docker create --name "$cname" "$WATCHDOG_IMAGE" >/dev/null
docker export -o "$work/rootfs.tar" "$cname" || fail "docker export failed"
docker rm "$cname" >/dev/null
# `docker export` also lists the empty mount points and files the engine creates in
# every container (/.dockerenv, /dev, /proc, /sys, /etc/hosts, ...); drop those.
files=$(tar -tf "$work/rootfs.tar" |
    grep -vE '^(\.dockerenv|dev/.*|proc/|sys/|etc/|etc/(hostname|hosts|mtab|resolv\.conf))$' || true)
[[ $files == "watchdog" ]] || fail "the image should hold only /watchdog; it holds:"$'\n'"$files"
tar -xOf "$work/rootfs.tar" watchdog | cmp -s - "$STATIC_WATCHDOG" ||
    fail "/watchdog in the image differs from $STATIC_WATCHDOG"
ok "only /watchdog ($(stat -c %s "$STATIC_WATCHDOG") bytes, identical to $STATIC_WATCHDOG), ENTRYPOINT [\"/watchdog\"]"

# --- 4. a FROM scratch function image using it -----------------------------------------
step "building the test function $TEST_IMAGE from $FIXTURE"
if [[ ! -x $BUSYBOX && $BUSYBOX == /bin/busybox ]] && have apt-get && [[ $(id -u) -eq 0 ]]; then
    echo "    installing busybox-static (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; } ||
        fail "could not install busybox-static"
fi
[[ -x $BUSYBOX ]] || fail "no busybox at $BUSYBOX (install busybox-static or set BUSYBOX=/path/to/static/busybox)"
if have file; then
    file -L "$BUSYBOX" | grep -q 'statically linked' ||
        fail "$BUSYBOX is not statically linked (Debian: apt-get install busybox-static); a FROM scratch image cannot run it"
fi
ctx="$work/context"
mkdir -p "$ctx"
cp "$FIXTURE/Dockerfile" "$ctx/Dockerfile"
cp -L "$BUSYBOX" "$ctx/busybox"
old_test=$(image_id "$TEST_IMAGE")
docker build -q -t "$TEST_IMAGE" "$ctx" >/dev/null || fail "docker build of $FIXTURE failed"
new_test=$(image_id "$TEST_IMAGE")
[[ $old_test != "$new_test" ]] && drop_if_dangling "$old_test"
ok "$TEST_IMAGE is ${new_test:7:12}"

# expect NAME WANT_RC PATTERN [docker run args...]: run the function, check the exit code
# and that stdout matches the (extended regex) PATTERN.
expect() {
    local name=$1 want_rc=$2 pattern=$3
    shift 3
    run "$name" "$@" "$TEST_IMAGE"
    if ((rc != want_rc)) || ! grep -qE -- "$pattern" <<<"$out"; then
        fail "$name: want exit $want_rc and stdout matching $pattern"$'\n'"    got exit $rc, stdout: $out"$'\n'"    stderr: $err"
    fi
    ok "$name: $out"
}

step "running STDIO invocations in $TEST_IMAGE"
payload='{"a":1,"nested":{"list":[1,2,3],"s":"hi there"}}'
expect echo 0 '^\{"success":true,"output":\{"a":1,"nested":\{"list":\[1,2,3\],"s":"hi there"\}\},"error":null,' \
    -e INVOCATION_PAYLOAD="$payload"
expect logs 0 '^\{"success":true,"output":\{"a":1\},"error":null,' \
    -e INVOCATION_PAYLOAD='{"a":1}' \
    -e WATCHDOG_CMD="/bin/busybox sh -c 'echo a log line; echo on stderr >&2; /bin/busybox cat'"
grep -q 'a log line' <<<"$err" || fail "logs: the function's log line was not forwarded (stderr: $err)"
grep -q 'on stderr' <<<"$err" || fail "logs: the function's stderr was not forwarded (stderr: $err)"
expect function-error 1 '^\{"success":false,"output":null,"error":\{"code":"FUNCTION_ERROR"' \
    -e WATCHDOG_CMD="/bin/busybox false"
start=$SECONDS
expect timeout 1 '^\{"success":false,"output":null,"error":\{"code":"TIMEOUT"' \
    -e TIMEOUT_MS=500 -e WATCHDOG_CMD="/bin/busybox sleep 60"
((SECONDS - start < 20)) || fail "timeout: the container took $((SECONDS - start))s to stop a 500 ms timeout"

if [[ ${KEEP_TEST_IMAGE:-0} != 1 ]]; then
    docker rmi "$TEST_IMAGE" >/dev/null 2>&1 || true
fi
echo "check-watchdog-image: all checks passed"
