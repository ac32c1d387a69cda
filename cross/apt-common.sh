# cross/apt-common.sh — sourced by cross/setup-host.sh and cross/setup-cross.sh
# (POSIX sh): how they get root and which of their packages are missing.
#
#   . "$(dirname "$0")/apt-common.sh"
#   apt_root NAME            sets SUDO ("" as root, "sudo" otherwise) or exits 1
#   apt_missing PACKAGES...  prints the ones not installed, space-separated

apt_root() {
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "$1: must run as root (or have sudo) to install packages" >&2
            exit 1
        fi
    fi
}

apt_missing() {
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            printf ' %s' "$p"
        fi
    done
}
