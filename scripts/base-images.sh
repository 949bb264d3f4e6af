#!/usr/bin/env bash
# Build local stand-ins for the public base images the runtime Dockerfiles default to,
# on a machine with no container registry (`docker pull` cannot work):
#
#   gantry-base/python:local   Debian bookworm minbase + python3, pip   (stands in for python:3.12-slim)
#   gantry-base/node:local     Debian bookworm minbase + nodejs, npm    (stands in for node:22-slim)
#   gantry-base/busybox:local  FROM scratch + static busybox      (stands in for busybox:stable)
#
# `make runtime-images` passes these as `--build-arg BASE=...`; the Dockerfiles under
# runtimes/ keep the public defaults so real users get normal Dockerfiles. We tag under
# our own names on purpose: re-tagging `python:3.12-slim` locally would silently shadow
# the real image (with a different Python: Debian bookworm ships 3.11 and Node 18).
#
# How: `debootstrap --variant=minbase bookworm DIR MIRROR` with --include=python3 or
# nodejs, trimmed (docs, man pages, locales, apt caches), then
# `tar -C DIR -c . | docker import`. The busybox base is Debian's busybox-static with
# its applet links. The installers are included because the public images have them and
# `gantry fn build` runs them for requirements.txt / package.json. Cached: an image that
# exists and has its installer is skipped (FORCE=1 rebuilds).
# Needs root (debootstrap chroots) and apt for debootstrap / busybox-static.
#
# Environment:
#   DEBIAN_MIRROR   default: the first deb.debian.org-style URI in /etc/apt/sources.list*
#                   (falls back to http://deb.debian.org/debian)
#   DEBIAN_SUITE    default: bookworm
#   BASES           which bases to build (default: "python node busybox")
#   FORCE=1         rebuild even if the image exists
#   DEBOOTSTRAP_CACHE  .deb cache shared between runs (default: /var/cache/gantry-debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
BASES=${BASES:-python node busybox}
FORCE=${FORCE:-0}
DEBOOTSTRAP_CACHE=${DEBOOTSTRAP_CACHE:-/var/cache/gantry-debootstrap}

SCRIPT_NAME="base-images"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

# The Debian mirror apt is configured with (deb822 .sources or one-line .list files).
detect_mirror() {
    local m
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' | grep -v -- '-security' | head -n1 || true)
    if [[ -z $m ]]; then
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' |
            grep -v -- '-security' | head -n1 || true)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

have docker || die "the docker CLI is not installed (run scripts/ensure-docker.sh)"
docker info >/dev/null 2>&1 || die "no Docker engine answers \`docker info\` (run scripts/ensure-docker.sh)"

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Whether an existing base is current: it has the installer `gantry fn build` runs (bases
# made before pip/npm were included are rebuilt).
current() {
    local tag=$1 check
    case $tag in
    *python*) check="python3 -m pip --version" ;;
    *node*) check="npm --version" ;;
    *) return 0 ;;
    esac
    # shellcheck disable=SC2086
    docker run --rm --network none "$tag" $check >/dev/null 2>&1
}

work=$(mktemp -d /tmp/gantry-base.XXXXXX)
cleanup() { as_root rm -rf "$work" 2>/dev/null || true; }
trap cleanup EXIT

# Trim a root filesystem: what a *-slim image also leaves out.
trim_rootfs() {
    local root=$1
    as_root rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* \
        "$root"/var/cache/debconf/*-old "$root"/usr/share/common-licenses
    # Fresh machine-id per container, like the official images.
    as_root rm -f "$root"/etc/machine-id
    as_root touch "$root"/etc/machine-id
    # apt in the image should use the same mirror (users may `apt-get install` more).
    echo "deb $MIRROR $DEBIAN_SUITE main" | as_root tee "$root"/etc/apt/sources.list >/dev/null
}

# debootstrap_image TAG PACKAGES APT_PACKAGES CHANGE...: minbase + PACKAGES, then
# APT_PACKAGES installed by apt inside it (apt resolves the virtual packages that
# debootstrap's --include cannot: npm depends on several), trimmed, imported.
debootstrap_image() {
    local tag=$1 pkgs=$2 apt_pkgs=$3
    shift 3
    local root="$work/${tag//[\/:]/_}" start=$SECONDS
    have debootstrap || apt_install debootstrap
    as_root mkdir -p "$DEBOOTSTRAP_CACHE"
    log "$tag: debootstrap --variant=minbase --include=$pkgs $DEBIAN_SUITE $MIRROR"
    as_root debootstrap --variant=minbase --include="$pkgs" --cache-dir="$DEBOOTSTRAP_CACHE" \
        "$DEBIAN_SUITE" "$root" "$MIRROR" 2>&1 |
        grep --line-buffered -E '^(I: (Retrieving Release|Resolving dependencies of base|Checking component|Installing core|Configuring the base|Base system)|E: |W: )' |
        sed -u "s|^|    |" || true
    [[ -x $root/usr/bin/env ]] || die "$tag: debootstrap failed (see the lines above; mirror $MIRROR)"
    if [[ -n $apt_pkgs ]]; then
        log "$tag: apt-get install $apt_pkgs"
        # shellcheck disable=SC2086
        as_root chroot "$root" env DEBIAN_FRONTEND=noninteractive sh -c \
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends $apt_pkgs >/dev/null && apt-get clean" ||
            die "$tag: apt-get install $apt_pkgs failed in the new root"
    fi
    log "$tag: debootstrap done in $((SECONDS - start))s; trimming and importing"
    trim_rootfs "$root"
    as_root tar --numeric-owner -C "$root" -c . | docker import "$@" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --message "gantry local base: debootstrap $DEBIAN_SUITE minbase + $pkgs" - "$tag" >/dev/null
    as_root rm -rf "$root"
    log "$tag: built in $((SECONDS - start))s, $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')"
}

busybox_image() {
    local tag=$1 start=$SECONDS bb=/bin/busybox
    if ! { [[ -x $bb ]] && file -L "$bb" 2>/dev/null | grep -q 'statically linked'; }; then
        apt_install busybox-static
    fi
    have file && { file -L "$bb" | grep -q 'statically linked' || die "$bb is not statically linked"; }
    local root="$work/busybox"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/home"
    chmod 1777 "$root/tmp"
    cp -L "$bb" "$root/bin/busybox"
    # Applet links (sh, cat, ...) as symlinks to /bin/busybox.
    local applet
    for applet in $("$bb" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar --numeric-owner --owner=0 --group=0 -C "$root" -c . | docker import \
        --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
        --message "gantry local base: static busybox $("$bb" | head -n1 | awk '{print $2}')" - "$tag" >/dev/null
    log "$tag: built in $((SECONDS - start))s, $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')"
}

MIRROR=${DEBIAN_MIRROR:-$(detect_mirror)}
total=$SECONDS
for base in $BASES; do
    tag="gantry-base/$base:local"
    if [[ $FORCE != 1 ]] && exists "$tag" && current "$tag"; then
        log "$tag exists; skipping (FORCE=1 rebuilds)"
        continue
    fi
    old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    case $base in
    python) debootstrap_image "$tag" python3,python3-pip "" --change 'CMD ["python3"]' ;;
    node) debootstrap_image "$tag" nodejs npm --change 'CMD ["node"]' ;;
    busybox) busybox_image "$tag" ;;
    *) die "unknown base '$base' (known: python node busybox)" ;;
    esac
    # A rebuilt base supersedes the old one; remove it unless something still uses it.
    if [[ -n $old && $(docker image inspect --format '{{len .RepoTags}}' "$old" 2>/dev/null) == 0 ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
done
log "done in $((SECONDS - total))s:"
for base in $BASES; do
    docker image inspect --format "    gantry-base/$base:local {{.Id}} {{.Size}}" "gantry-base/$base:local" |
        awk '{printf "    %-26s %s  %6.1f MB\n", $1, substr($2, 8, 12), $3/1e6}'
done
