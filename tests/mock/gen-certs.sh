#!/bin/sh
# gen-certs.sh — test certificates for mock_pd's HTTPS mode.
#
# Usage: gen-certs.sh DIR
#
# Writes into DIR (created if missing):
#   ca.pem, ca.key         a test CA (RSA 2048, 10 years)
#   server.pem, server.key a server certificate signed by that CA, with
#                          subjectAltName DNS:localhost, IP:127.0.0.1
#   other-ca.pem           an unrelated CA (its key is discarded), for
#                          "verification against the wrong CA" tests
#
# Idempotent: when every file is present and server.pem verifies against
# ca.pem, nothing is done. Otherwise the whole set is made afresh in a scratch
# directory and moved into place, under a lock (flock(1) when installed), so
# concurrent callers never see a CA from one run and a server certificate from
# another. Quiet on success; on failure prints openssl's output to stderr and
# exits non-zero.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"

complete() {
    for f in ca.pem ca.key server.pem server.key other-ca.pem; do
        [ -s "$dir/$f" ] || return 1
    done
    openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1
}

generate() {
    tmp=$(mktemp -d "$dir/.gen.XXXXXX")
    log="$tmp/openssl.log"
    trap 'rm -rf "$tmp"' EXIT
    if ! (
        set -e
        cd "$tmp"
        cat >ca.ext <<'EOF'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
        cat >server.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
        # Test CA.
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key
        openssl req -new -key ca.key -subj "/O=pdrelay tests/CN=pdrelay test CA" -out ca.csr
        openssl x509 -req -in ca.csr -signkey ca.key -days 3650 -sha256 \
            -extfile ca.ext -out ca.pem
        # Server certificate signed by the test CA.
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server.key
        openssl req -new -key server.key -subj "/O=pdrelay tests/CN=localhost" -out server.csr
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -sha256 -extfile server.ext -out server.pem
        # An unrelated CA with the same subject shape.
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other-ca.key
        openssl req -new -key other-ca.key -subj "/O=pdrelay tests/CN=pdrelay other CA" -out other-ca.csr
        openssl x509 -req -in other-ca.csr -signkey other-ca.key -days 3650 -sha256 \
            -extfile ca.ext -out other-ca.pem
        openssl verify -CAfile ca.pem server.pem
    ) >"$log" 2>&1; then
        echo "gen-certs.sh: openssl failed:" >&2
        cat "$log" >&2
        exit 1
    fi
    chmod 600 "$tmp/ca.key" "$tmp/server.key"
    chmod 644 "$tmp/ca.pem" "$tmp/server.pem" "$tmp/other-ca.pem"
    # Keys first, then certificates: complete() needs all five, so a reader
    # without the lock sees either the old set or the new one once done.
    for f in ca.key server.key ca.pem other-ca.pem server.pem; do
        mv -f "$tmp/$f" "$dir/$f"
    done
    rm -rf "$tmp"
    trap - EXIT
}

complete && exit 0

if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.gen-certs.lock"
    flock 9
fi
complete || generate
complete || { echo "gen-certs.sh: certificates in $dir do not verify" >&2; exit 1; }
exit 0
