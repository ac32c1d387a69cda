/*
** pdr.c — the shared helpers declared in pdr.h: result strings, action names,
** redaction of secrets, SHA-256 through mbedTLS.
*/
#include "pdr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

const char *pdr_urgency_name(int u)
{
    static const char *const names[] = {"critical", "error", "warning", "info", "change"};
    return u >= PDR_URGENCY_CRITICAL && u <= PDR_URGENCY_CHANGE ? names[u] : NULL;
}

int pdr_urgency_of_severity(const char *severity)
{
    int u;
    if (!severity) return PDR_URGENCY_WARNING;
    for (u = PDR_URGENCY_CRITICAL; u <= PDR_URGENCY_INFO; u++)
        if (!strcmp(severity, pdr_urgency_name(u))) return u;
    return PDR_URGENCY_WARNING;
}

int pdr_urgency_of(pdr_action action, const char *severity)
{
    if (action == PDR_ACTION_TRIGGER) return pdr_urgency_of_severity(severity);
    return action == PDR_ACTION_CHANGE ? PDR_URGENCY_CHANGE : PDR_URGENCY_INHERIT;
}

/* The well-formed sequences of Unicode (Table 3-7): for a lead byte c, the
** continuation bytes it needs and the range of the first of them (which
** excludes overlong forms, UTF-16 surrogates and code points over
** U+10FFFF). 0 when c leads no sequence of two bytes or more. */
static size_t utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c == 0xE0) *lo = 0xA0;
    else if (c == 0xED) *hi = 0x9F;
    else if (c == 0xF0) *lo = 0x90;
    else if (c == 0xF4) *hi = 0x8F;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c >= 0xE0 && c <= 0xEF) return 2;
    if (c >= 0xF0 && c <= 0xF4) return 3;
    return 0;
}

size_t pdr_utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char lo, hi;
    size_t need = utf8_lead(u[0], &lo, &hi), k;
    uint32_t v;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    *cp = PDR_UTF8_INVALID;
    if (!need || n < 2 || u[1] < lo || u[1] > hi) return 1;
    v = u[0] & (0x7Fu >> (need + 1));
    for (k = 1; k <= need && k < n; k++) {
        if (k > 1 && (u[k] & 0xC0) != 0x80) return k;   /* a prefix of a sequence, cut short */
        v = (v << 6) | (u[k] & 0x3Fu);
    }
    if (k <= need) return k;   /* the text ends inside the sequence */
    *cp = v;
    return k;
}

size_t pdr_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    size_t len;
    if (!n) return 0;
    len = pdr_utf8_next(s, n, cp);
    return *cp == PDR_UTF8_INVALID ? 0 : len;
}

/* The character at s (n bytes left) as redaction shows it: its length in
** the secret (*step) and in the output (returned; *show points at it). */
static size_t redact_char(const char *s, size_t n, size_t *step, const char **show)
{
    uint32_t cp = 0;
    size_t len = pdr_utf8_decode(s, n, &cp);
    if (!len || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
        *step = len ? len : 1;
        *show = "?";
        return 1;
    }
    *step = len;
    *show = s;
    return len;
}

/* Appends the characters of s[0..n) as shown to out at *o; with max, stops
** before the first that would take the output past max bytes. Returns the
** bytes appended (or that would be, when out is NULL). */
static size_t redact_copy(const char *s, size_t n, size_t max, char *out, size_t *o)
{
    size_t used = 0, step;
    const char *show;
    for (size_t i = 0; i < n; i += step) {
        size_t w = redact_char(s + i, n - i, &step, &show);
        if (used + w > max) break;
        if (out) {
            memcpy(out + *o, show, w);
            *o += w;
        }
        used += w;
    }
    return used;
}

char *pdr_redact(const char *secret, char *out, size_t outsz)
{
    /* head_end: where the third character starts; tail: where the last 4 do */
    size_t n = secret ? strlen(secret) : 0, chars = 0, step, head_end = 0, tail[4] = {0};
    const char *show;
    char buf[PDR_REDACT_SIZE];
    size_t o = 0;

    if (!outsz) return out;
    for (size_t i = 0; i < n; i += step) {
        redact_char(secret + i, n - i, &step, &show);
        chars++;
        if (chars == 2) head_end = i + step;
        /* tail[k]: where the k-th last character (so far) starts */
        memmove(tail, tail + 1, sizeof tail - sizeof tail[0]);
        tail[3] = i;
    }
    if (chars >= 8) {
        /* at most 4 + 3 + 8 bytes: one to spare for the NUL */
        redact_copy(secret, head_end, 4, buf, &o);
        memcpy(buf + o, "\xe2\x80\xa6", 3);
        o += 3;
        /* the tail drops its first characters until it fits 8 bytes */
        size_t k = 0;
        while (k < 3 && redact_copy(secret + tail[k], n - tail[k], SIZE_MAX, NULL, NULL) > 8) k++;
        redact_copy(secret + tail[k], n - tail[k], 8, buf, &o);
    } else {
        memcpy(buf, "\xe2\x80\xa6", 3);
        o = 3;
    }
    buf[o] = '\0';
    /* a short out gets whole characters only */
    if (o >= outsz) {
        size_t cut = outsz - 1;
        while (cut > 0 && ((unsigned char)buf[cut] & 0xC0) == 0x80) cut--;
        o = cut;
        buf[o] = '\0';
    }
    memcpy(out, buf, o + 1);
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

struct pdr_sha256 {
    mbedtls_sha256_context ctx;
    int failed;     /* an mbedTLS call failed: final reports it */
};

pdr_sha256 *pdr_sha256_new(void)
{
    pdr_sha256 *h = pdr_malloc(sizeof *h);
    if (!h) return NULL;
    h->failed = 0;
    mbedtls_sha256_init(&h->ctx);
#if MBEDTLS_VERSION_MAJOR >= 3
    h->failed = mbedtls_sha256_starts(&h->ctx, 0) != 0;
#else
    h->failed = mbedtls_sha256_starts_ret(&h->ctx, 0) != 0;
#endif
    return h;
}

pdr_rc pdr_sha256_update(pdr_sha256 *h, const void *data, size_t len)
{
    if (!h) return PDR_ERR_INVALID;
    if (h->failed) return PDR_ERR_INTERNAL;
    if (!len) return PDR_OK;
#if MBEDTLS_VERSION_MAJOR >= 3
    h->failed = mbedtls_sha256_update(&h->ctx, (const unsigned char *)data, len) != 0;
#else
    h->failed = mbedtls_sha256_update_ret(&h->ctx, (const unsigned char *)data, len) != 0;
#endif
    return h->failed ? PDR_ERR_INTERNAL : PDR_OK;
}

pdr_rc pdr_sha256_final_hex(pdr_sha256 *h, char out[PDR_SHA256_HEX_LEN])
{
    unsigned char md[32];
    int failed;
    if (!h) return PDR_ERR_INVALID;
    failed = h->failed;
#if MBEDTLS_VERSION_MAJOR >= 3
    if (!failed) failed = mbedtls_sha256_finish(&h->ctx, md) != 0;
#else
    if (!failed) failed = mbedtls_sha256_finish_ret(&h->ctx, md) != 0;
#endif
    pdr_sha256_free(h);
    if (failed) return PDR_ERR_INTERNAL;
    sha256_to_hex(md, out);
    return PDR_OK;
}

void pdr_sha256_free(pdr_sha256 *h)
{
    if (!h) return;
    mbedtls_sha256_free(&h->ctx);
    free(h);
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

pdr_rc pdr_routing_key_check(const char *key, size_t len, const char **why)
{
    if (len != PDR_ROUTING_KEY_LEN) {
        *why = "length";
        return PDR_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'))) {
            *why = "characters";
            return PDR_ERR_INVALID;
        }
    }
    *why = NULL;
    return PDR_OK;
}

size_t pdr_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

size_t pdr_redact_in(char *text, const char *secret)
{
    char red[PDR_REDACT_SIZE];
    size_t n = 0, slen = secret ? strlen(secret) : 0, rlen;
    char *p = text;
    if (slen < 8) return 0;   /* shorter secrets are not redacted in part */
    pdr_redact(secret, red, sizeof red);
    rlen = strlen(red);
    if (rlen > slen) return 0;
    while ((p = strstr(p, secret)) != NULL) {
        memcpy(p, red, rlen);
        memmove(p + rlen, p + slen, strlen(p + slen) + 1);
        p += rlen;
        n++;
    }
    return n;
}

char *pdr_url_redact(const char *url, char *out, size_t outsz)
{
    const char *scheme = url ? strstr(url, "://") : NULL, *auth, *at, *colon;
    if (!outsz) return out;
    if (!url) {
        out[0] = '\0';
        return out;
    }
    auth = scheme ? scheme + 3 : url;
    at = strchr(auth, '@');
    colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!at || memchr(auth, '/', (size_t)(at - auth)) || !colon) {
        snprintf(out, outsz, "%s", url);
        return out;
    }
    snprintf(out, outsz, "%.*s:\xe2\x80\xa6%s", (int)(colon - url), url, at);
    return out;
}

char *pdr_url_list_redact(const char *list, char *out, size_t outsz)
{
    size_t n = 0;
    if (!outsz) return out;
    out[0] = '\0';
    if (!list) return out;
    for (const char *p = list; n + 1 < outsz;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char entry[1024], red[1024];
        snprintf(entry, sizeof entry, "%.*s", (int)(len < sizeof entry ? len : sizeof entry - 1), p);
        pdr_url_redact(entry, red, sizeof red);
        n += (size_t)snprintf(out + n, outsz - n, "%s%s", p == list ? "" : ",", red);
        if (!comma) break;
        p = comma + 1;
    }
    return out;
}

char *pdr_fmt_age(long long ms, char *out, size_t outsz)
{
    long long s;
    if (ms < 0) ms = 0;
    s = ms / 1000;
    if (ms < 1000)
        snprintf(out, outsz, "%lldms", ms);
    else if (s < 60)
        snprintf(out, outsz, "%llds", s);
    else if (s < 3600)
        snprintf(out, outsz, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, outsz, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
    else
        snprintf(out, outsz, "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
    return out;
}
