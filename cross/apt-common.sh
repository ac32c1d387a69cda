# cross/apt-common.sh — sourced by cross/setup-host.sh and cross/setup-cross.sh
# (POSIX sh): how they get root, which of their packages are missing, and
# Debian's source packages (deb-src), which both fetch sources from.
#
#   . "$(dirname "$0")/apt-common.sh"
#   apt_root NAME            sets SUDO ("" as root, "sudo" otherwise) or exits 1
#   apt_missing PACKAGES...  prints the ones not installed, space-separated
#   apt_enable_deb_src NAME  enables deb-src if none is; returns 0 if it did

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

# Is any deb-src enabled? One-line format ("deb-src URI SUITE ...") or deb822
# ("Types: ... deb-src ..."), not commented out.
apt_has_deb_src() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && grep -Eq '^[[:space:]]*deb-src[[:space:]]' "$f" && return 0
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && grep -Eiq '^[[:space:]]*Types:.*deb-src' "$f" && return 0
    done
    return 1
}

# apt_enable_deb_src NAME: when no deb-src is enabled, enables Debian's source
# packages for the suites already configured, in a file of its own
# (/etc/apt/sources.list.d/pdrelay-deb-src.*), and returns 0: the index must
# be refreshed. Returns 1 when deb-src was enabled already. Needs SUDO
# (apt_root); exits 1 when /etc/apt has no "deb" source to derive it from.
apt_enable_deb_src() {
    apt_has_deb_src && return 1
    tmp=$(mktemp)
    # deb822 files: every enabled stanza whose Types has "deb" again, as deb-src.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (isdeb && !disabled && st != "") { printf "%s", st; print "" }
                st = ""; isdeb = 0; disabled = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "types:" {
                for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1
                st = st "Types: deb-src\n"; next
            }
            tolower($1) == "enabled:" && tolower($2) == "no" { disabled = 1 }
            { st = st $0 "\n" }
            END { flush() }
        ' "$f" >>"$tmp"
    done
    if [ -s "$tmp" ]; then
        dest=/etc/apt/sources.list.d/pdrelay-deb-src.sources
    else
        # One-line format: each "deb [opts] URI SUITE COMPONENTS" again as deb-src.
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' >"$tmp" || true
        dest=/etc/apt/sources.list.d/pdrelay-deb-src.list
    fi
    if [ ! -s "$tmp" ]; then
        rm -f "$tmp"
        echo "$1: found no 'deb' source in /etc/apt to derive deb-src from" >&2
        exit 1
    fi
    $SUDO install -m 0644 "$tmp" "$dest"
    rm -f "$tmp"
    echo "$1: enabled deb-src in $dest"
    return 0
}
