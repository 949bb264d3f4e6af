#!/usr/bin/env bash
# Build the runtime images gantry/runtime-{python,node,shell,binary} from runtimes/.
#
# By default on the local bases from `make base-images` (gantry-base/*:local), passed as
# `--build-arg BASE=...`; the Dockerfiles themselves default to the public images
# (python:3.12-slim, node:22-slim, busybox:stable), so with a registry
# `PUBLIC_BASES=1 scripts/runtime-images.sh` builds on those instead.
# Needs gantry/watchdog:latest (`make watchdog-image`).
#
# Environment: RUNTIMES (default "python node shell binary"), PUBLIC_BASES=1,
# RUNTIME_TAG (default latest).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIMES=${RUNTIMES:-python node shell binary}
RUNTIME_TAG=${RUNTIME_TAG:-latest}
SCRIPT_NAME="runtime-images"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

docker image inspect gantry/watchdog:latest >/dev/null 2>&1 ||
    die "gantry/watchdog:latest is missing (make watchdog-image)"

for r in $RUNTIMES; do
    [[ -f runtimes/$r/Dockerfile ]] || die "no runtimes/$r/Dockerfile"
    args=()
    if [[ ${PUBLIC_BASES:-0} != 1 ]]; then
        case $r in
        python) base=gantry-base/python:local ;;
        node) base=gantry-base/node:local ;;
        shell) base=gantry-base/busybox:local ;;
        *) base="" ;;
        esac
        if [[ -n $base ]]; then
            docker image inspect "$base" >/dev/null 2>&1 || die "$base is missing (make base-images)"
            args=(--build-arg "BASE=$base")
        fi
    fi
    tag="gantry/runtime-$r:$RUNTIME_TAG"
    old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    start=$(date +%s.%N)
    # -q: the id only; the legacy builder's deprecation notice goes to stderr.
    docker build -q "${args[@]}" -t "$tag" "runtimes/$r" >/dev/null 2>"/tmp/runtime-images-$r.log" ||
        { cat "/tmp/runtime-images-$r.log" >&2; die "docker build of runtimes/$r failed"; }
    rm -f "/tmp/runtime-images-$r.log"
    # Drop the image this build superseded, if nothing tags it any more.
    if [[ -n $old && $(docker image inspect --format '{{len .RepoTags}}' "$old" 2>/dev/null) == 0 ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
    size=$(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')
    log "$tag (${args[*]:-public base}) built in ${secs}s, $size"
done
