#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`, the way a fresh CI machine needs it:
#   1. if `docker info` already works, do nothing;
#   2. if dockerd (or the docker CLI) is missing, install Debian's docker.io with apt;
#   3. if no dockerd is running, start one in the background (detached, so it outlives
#      this script) with its log in $DOCKERD_LOG, and wait up to $DOCKER_WAIT_SECS;
#   4. if that daemon dies during startup and no flags were forced, retry once with the
#      sandbox-safe fallback flags (vfs storage, no iptables).
# Exits non-zero with a clear message if no engine answers in time.
#
# Environment:
#   DOCKERD_FLAGS     extra dockerd flags; when set, used as-is and no fallback is tried
#   DOCKERD_FALLBACK  flags for the retry (default: --storage-driver=vfs --iptables=false)
#   DOCKERD_LOG       dockerd's log file (default: /tmp/dockerd.log)
#   DOCKER_WAIT_SECS  how long to wait for the engine (default: 60)
#   DOCKERD_PIDFILE   where dockerd writes its pid (default: /var/run/docker.pid; change
#                     it together with --pidfile in DOCKERD_FLAGS)
#
# On the Gantry dev VM (Debian 12, cgroup v1, kernel 6.x) plain `dockerd` with no flags
# works: overlay2 storage, iptables, bridge network; it answers within ~2 s.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKER_WAIT_SECS=${DOCKER_WAIT_SECS:-60}
DOCKERD_FALLBACK=${DOCKERD_FALLBACK:---storage-driver=vfs --iptables=false}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}

SCRIPT_NAME="ensure-docker"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "$0")/lib/common.sh"

engine_up() { docker info >/dev/null 2>&1; }

# The pid of a dockerd that is already running (per its pidfile), if any.
running_dockerd() {
    local pid
    [[ -r $DOCKERD_PIDFILE ]] || return 1
    pid=$(<"$DOCKERD_PIDFILE")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Wait until `docker info` answers. $1: pid of the dockerd to watch (empty: don't watch).
# Returns 1 on timeout, 2 if that dockerd exited.
wait_for_engine() {
    local pid=$1 waited=0
    while ((waited < DOCKER_WAIT_SECS)); do
        if engine_up; then
            log "engine is up after ${waited}s"
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 1
        waited=$((waited + 1))
        ((waited % 10 == 0)) && log "still waiting for the engine (${waited}s)"
    done
    return 1
}

# Start dockerd detached with the given flags; prints its pid.
start_dockerd() {
    log "starting: dockerd $* (log: $DOCKERD_LOG)" >&2
    # setsid + nohup: the daemon must survive this script and its caller's process group.
    # shellcheck disable=SC2068 # flags are meant to be word-split
    as_root setsid nohup dockerd $@ >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local launcher=$!
    # With sudo the launcher pid is sudo's; the daemon's own pid is in its pidfile.
    local _
    for _ in $(seq 1 50); do
        if pid=$(running_dockerd); then
            echo "$pid"
            return 0
        fi
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.1
    done
    echo "$launcher"
}

if have docker && engine_up; then
    log "Docker engine already answers: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}' 2>/dev/null || echo ok)"
    exit 0
fi

if ! have dockerd || ! have docker; then
    have apt-get || die "dockerd is not installed and apt-get is unavailable; install Docker Engine by hand"
    log "installing docker.io with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    have dockerd || die "apt-get installed docker.io but dockerd is still not on PATH"
fi

if pid=$(running_dockerd); then
    log "dockerd is already running (pid $pid); waiting for it to answer"
    wait_for_engine "$pid" && exit 0
    die "dockerd (pid $pid) did not answer within ${DOCKER_WAIT_SECS}s; see $DOCKERD_LOG"
fi

flags=${DOCKERD_FLAGS:-}
pid=$(start_dockerd "$flags")
rc=0
wait_for_engine "$pid" || rc=$?
if ((rc == 0)); then
    exit 0
fi
if ((rc == 2)) && [[ -z ${DOCKERD_FLAGS:-} ]]; then
    log "dockerd exited during startup; last log lines:"
    tail -n 5 "$DOCKERD_LOG" | sed 's/^/    /'
    log "retrying with fallback flags: $DOCKERD_FALLBACK"
    pid=$(start_dockerd "$DOCKERD_FALLBACK")
    rc=0
    wait_for_engine "$pid" || rc=$?
    ((rc == 0)) && exit 0
fi
echo "--- last lines of $DOCKERD_LOG ---" >&2
tail -n 20 "$DOCKERD_LOG" >&2 || true
if ((rc == 2)); then
    die "dockerd exited during startup; set DOCKERD_FLAGS (e.g. '--storage-driver=vfs --iptables=false') and see $DOCKERD_LOG"
fi
die "the Docker engine did not answer within ${DOCKER_WAIT_SECS}s (dockerd pid $pid still running); see $DOCKERD_LOG"
