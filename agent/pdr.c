/*
** pdr.c — the shared helpers declared in pdr.h: result strings, action names,
** redaction of secrets, SHA-256 through mbedTLS.
*/
#include "pdr.h"

#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

const char *pdr_strerror(pdr_rc rc)
{
    switch (rc) {
    case PDR_OK: return "success";
    case PDR_COALESCED: return "identical event already pending";
    case PDR_ERR_NOMEM: return "out of memory";
    case PDR_ERR_FULL: return "outbox is full";
    case PDR_ERR_IO: return "I/O error";
    case PDR_ERR_CORRUPT: return "database is corrupt or not a pdrelay database";
    case PDR_ERR_TOO_NEW: return "database was written by a newer pdrelay";
    case PDR_ERR_BUSY: return "database is locked by another process";
    case PDR_ERR_NOT_FOUND: return "not found";
    case PDR_ERR_INVALID: return "invalid input";
    case PDR_ERR_CONFIG: return "invalid configuration";
    case PDR_ERR_DISK_FULL: return "no space left on device";
    case PDR_ERR_READONLY: return "read-only file system or database";
    case PDR_ERR_PERM: return "permission denied";
    case PDR_ERR_INTERNAL: return "internal error";
    case PDR_ERR_SHUTDOWN: return "pdrelay is shutting down";
    }
    return "unknown error";
}

const char *pdr_action_name(pdr_action a)
{
    switch (a) {
    case PDR_ACTION_TRIGGER: return "trigger";
    case PDR_ACTION_ACKNOWLEDGE: return "acknowledge";
    case PDR_ACTION_RESOLVE: return "resolve";
    case PDR_ACTION_CHANGE: return "change";
    }
    return NULL;
}

pdr_action pdr_action_parse(const char *s)
{
    if (!s) return (pdr_action)0;
    if (!strcmp(s, "trigger")) return PDR_ACTION_TRIGGER;
    if (!strcmp(s, "acknowledge")) return PDR_ACTION_ACKNOWLEDGE;
    if (!strcmp(s, "resolve")) return PDR_ACTION_RESOLVE;
    if (!strcmp(s, "change")) return PDR_ACTION_CHANGE;
    return (pdr_action)0;
}

char *pdr_redact(const char *secret, char *out, size_t outsz)
{
    size_t n = secret ? strlen(secret) : 0;
    if (!outsz) return out;
    if (n >= 8)
        snprintf(out, outsz, "%.2s\xe2\x80\xa6%s", secret, secret + n - 4);
    else
        snprintf(out, outsz, "\xe2\x80\xa6");
    return out;
}

static void sha256_to_hex(const unsigned char md[32], char out[PDR_SHA256_HEX_LEN])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

pdr_rc pdr_sha256_raw(const void *data, size_t len, unsigned char out[32])
{
    int rc;
#if MBEDTLS_VERSION_MAJOR >= 3
    rc = mbedtls_sha256((const unsigned char *)data, len, out, 0);
#else
    rc = mbedtls_sha256_ret((const unsigned char *)data, len, out, 0);
#endif
    return rc != 0 ? PDR_ERR_INTERNAL : PDR_OK;
}

pdr_rc pdr_sha256_hex(const void *data, size_t len, char out[PDR_SHA256_HEX_LEN])
{
    unsigned char md[32];
    pdr_rc rc = pdr_sha256_raw(data, len, md);
    if (rc) return rc;
    sha256_to_hex(md, out);
    return PDR_OK;
}

pdr_rc pdr_dedup_key_derive(const char *routing_key, const char *fingerprint,
                            char out[PDR_SHA256_HEX_LEN])
{
    mbedtls_sha256_context ctx;
    unsigned char md[32];
    int rc;

    mbedtls_sha256_init(&ctx);
#if MBEDTLS_VERSION_MAJOR >= 3
    rc = mbedtls_sha256_starts(&ctx, 0);
    if (!rc) rc = mbedtls_sha256_update(&ctx, (const unsigned char *)routing_key, strlen(routing_key));
    if (!rc) rc = mbedtls_sha256_update(&ctx, (const unsigned char *)":", 1);
    if (!rc) rc = mbedtls_sha256_update(&ctx, (const unsigned char *)fingerprint, strlen(fingerprint));
    if (!rc) rc = mbedtls_sha256_finish(&ctx, md);
#else
    rc = mbedtls_sha256_starts_ret(&ctx, 0);
    if (!rc) rc = mbedtls_sha256_update_ret(&ctx, (const unsigned char *)routing_key, strlen(routing_key));
    if (!rc) rc = mbedtls_sha256_update_ret(&ctx, (const unsigned char *)":", 1);
    if (!rc) rc = mbedtls_sha256_update_ret(&ctx, (const unsigned char *)fingerprint, strlen(fingerprint));
    if (!rc) rc = mbedtls_sha256_finish_ret(&ctx, md);
#endif
    mbedtls_sha256_free(&ctx);
    if (rc != 0) return PDR_ERR_INTERNAL;
    sha256_to_hex(md, out);
    return PDR_OK;
}
