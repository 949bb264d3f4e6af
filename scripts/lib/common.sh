# shellcheck shell=bash
# Shared helpers of the scripts in scripts/: source it after setting SCRIPT_NAME.
#   log MESSAGE      "SCRIPT_NAME: MESSAGE" on stdout
#   die MESSAGE      "SCRIPT_NAME: ERROR: MESSAGE" on stderr, exit 1
#   have COMMAND     whether COMMAND is on PATH
#   as_root CMD...   run as root, or through passwordless sudo, or die
#   apt_install PKG  install Debian packages (apt-get update only when needed)

log() { echo "${SCRIPT_NAME}: $*"; }
die() {
    echo "${SCRIPT_NAME}: ERROR: $*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

apt_install() {
    have apt-get || die "apt-get is unavailable; install $* by hand"
    log "installing $* (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } ||
        die "could not install $*"
}
