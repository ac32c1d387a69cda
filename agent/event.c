/*
** event.c — validation and repair of PagerDuty Events API v2 bodies (see
** event.h for the rules). The error sentences follow PagerDuty's style
** ("'payload.summary' is missing or blank") so a client pointed at pdrelay
** sees what PagerDuty would have said.
**
** It also owns pdrelay's use of cJSON below the fields: the allocator hooks
** (an allocation failure is told from a syntax error), the parse of a
** received body (NUL detected on the raw bytes, as cJSON cuts a string at
** it), and the sanitizing walk over the tree (UTF-8 repair, duplicate
** members). Duplicates are found by sorting an object's member names
** (qsort, then neighbours compared): O(n log n) for an object of n members.
*/
#include "event.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

/* ---- cJSON's allocator and the parse ------------------------------------ */

static _Thread_local int json_nomem;    /* an allocation failed on this thread */
static void *(*json_inner_malloc)(size_t) = pdr_malloc;
static void (*json_inner_free)(void *) = pdr_free;

static void *json_malloc(size_t n)
{
    void *p = json_inner_malloc(n);
    if (!p) json_nomem = 1;
    return p;
}

static void json_free(void *p)
{
    json_inner_free(p);
}

void pdr_json_hooks_set(const cJSON_Hooks *inner)
{
    cJSON_Hooks h = {json_malloc, json_free};
    json_inner_malloc = inner && inner->malloc_fn ? inner->malloc_fn : pdr_malloc;
    json_inner_free = inner && inner->free_fn ? inner->free_fn : pdr_free;
    cJSON_InitHooks(&h);
}

/* Before main(), so before any thread uses cJSON. */
__attribute__((constructor)) static void json_hooks_init(void)
{
    pdr_json_hooks_set(NULL);
}

/* Where the NUL character is in body: a raw 0x00 byte, or the escape \u0000
** (a backslash that is itself not escaped: an odd run of backslashes before
** "u0000"; backslashes occur only inside strings in valid JSON). Returns
** the offset of the byte or of the backslash, or len when there is none. */
static size_t json_nul_find(const char *body, size_t len)
{
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (body[i] == '\0') return i;
        if (body[i] == '\\') {
            run++;
            continue;
        }
        if (run % 2 == 1 && len - i >= 5 && !memcmp(body + i, "u0000", 5)) return i - 1;
        run = 0;
    }
    return len;
}

/* body with each NUL (raw or escaped) replaced by U+FFFF (raw or escaped):
** a string cJSON keeps whole and pdr_json_sanitize() recognises. */
static char *json_nul_mark(const char *body, size_t len, size_t first, size_t *len_out)
{
    char *out = cJSON_malloc(len * 3 + 1), *o;
    size_t i = first;
    if (!out) return NULL;
    memcpy(out, body, first);
    o = out + first;
    while (i < len) {
        size_t at = json_nul_find(body + i, len - i) + i;
        memcpy(o, body + i, at - i);
        o += at - i;
        if (at == len) break;
        if (body[at] == '\0') {
            memcpy(o, "\xef\xbf\xbf", 3);
            o += 3;
            i = at + 1;
        } else {
            memcpy(o, "\\uFFFF", 6);
            o += 6;
            i = at + 6;
        }
    }
    *len_out = (size_t)(o - out);
    return out;
}

pdr_rc pdr_json_parse(const char *body, size_t len, cJSON **root, int *nul)
{
    const char *end = NULL, *text = body;
    char *marked = NULL;
    size_t first;

    *root = NULL;
    *nul = 0;
    if (!body) return PDR_ERR_INVALID;
    first = json_nul_find(body, len);
    if (first < len) {
        marked = json_nul_mark(body, len, first, &len);
        if (!marked) return PDR_ERR_NOMEM;
        text = marked;
        *nul = 1;
    }
    json_nomem = 0;
    *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*root) {
        cJSON_free(marked);
        if (json_nomem) return PDR_ERR_NOMEM;
        return PDR_ERR_INVALID;
    }
    /* cJSON stops after the first value; PagerDuty refuses trailing bytes. */
    for (; end && end < text + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            cJSON_Delete(*root);
            *root = NULL;
            cJSON_free(marked);
            return PDR_ERR_INVALID;
        }
    }
    cJSON_free(marked);
    return PDR_OK;
}

/* ---- the sanitizing walk: UTF-8, NUL, duplicate members ------------------ */

/* One character of s (n bytes left): its length, *bad set when it is a
** maximal invalid subsequence (pdr_utf8_next). */
static size_t utf8_step(const unsigned char *s, size_t n, int *bad)
{
    uint32_t cp;
    size_t k = pdr_utf8_next((const char *)s, n, &cp);
    *bad = cp == PDR_UTF8_INVALID;
    return k;
}

/* s with every maximal invalid subsequence replaced by U+FFFD, allocated
** with cJSON's allocator; NULL with *count 0 when s is valid UTF-8 (or NULL
** on allocation failure, *count > 0). */
static char *utf8_repair(const char *s, size_t *count)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, o = 0;
    char *out;
    *count = 0;
    int bad;
    while (i < n) {
        i += utf8_step(p + i, n - i, &bad);
        *count += (size_t)bad;
    }
    if (!*count) return NULL;
    out = cJSON_malloc(n * 3 + 1);
    if (!out) return NULL;
    for (i = 0; i < n;) {
        size_t k = utf8_step(p + i, n - i, &bad);
        if (bad) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
        }
        i += k;
    }
    out[o] = '\0';
    return out;
}

/* Repairs the string *sp (a cJSON name or value) in place. */
static pdr_rc utf8_fix(char **sp, size_t *repaired)
{
    size_t count;
    char *fixed;
    if (!*sp) return PDR_OK;
    fixed = utf8_repair(*sp, &count);
    if (!count) return PDR_OK;
    if (!fixed) return PDR_ERR_NOMEM;
    cJSON_free(*sp);
    *sp = fixed;
    *repaired += count;
    return PDR_OK;
}

typedef struct walk_ctx {
    const char *what;
    int nul;
    size_t *repaired;
    pdr_event_errors *errs;
    char path[256];             /* where the walk is, for messages: "payload.links[0].href" */
    size_t plen;                /* strlen(path) */
} walk_ctx;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends ".name" or "[i]" to ctx->path (cut at its size); returns the old
** length to restore. */
static size_t path_push(walk_ctx *ctx, const cJSON *parent, const cJSON *it, size_t i)
{
    size_t len = ctx->plen, room = sizeof ctx->path - len;
    if (room < 2) return len;   /* full: deeper names are left out */
    if (cJSON_IsArray(parent)) {
        int w = snprintf(ctx->path + len, room, "[%zu]", i);
        ctx->plen = w > 0 && (size_t)w < room ? len + (size_t)w : len;
    } else {
        /* Every node of every body passes here: no printf. */
        const char *name = it->string ? it->string : "";
        size_t dot = len ? 1 : 0, n = strlen(name);
        if (dot + n >= room) {
            n = room - dot - 1;
            while (n && ((unsigned char)name[n] & 0xC0) == 0x80) n--;   /* a whole character */
        }
        if (dot) ctx->path[len] = '.';
        memcpy(ctx->path + len + dot, name, n);
        ctx->plen = len + dot + n;
    }
    ctx->path[ctx->plen] = '\0';
    return len;
}

static void path_pop(walk_ctx *ctx, size_t len)
{
    ctx->plen = len;
    ctx->path[len] = '\0';
}

/* Refuses a second member of the same name in obj (its names repaired). */
static pdr_rc walk_dups(walk_ctx *ctx, const cJSON *obj)
{
    const char *small[16], **names = small;
    const cJSON *it;
    size_t n = 0, k;
    cJSON_ArrayForEach(it, obj) n++;
    if (n < 2) return PDR_OK;
    if (n > sizeof small / sizeof *small) {
        names = cJSON_malloc(n * sizeof *names);   /* cJSON's allocator: tests fail it */
        if (!names) return PDR_ERR_NOMEM;
    }
    k = 0;
    cJSON_ArrayForEach(it, obj) names[k++] = it->string ? it->string : "";
    qsort(names, n, sizeof *names, name_cmp);
    for (k = 1; k < n; k++) {
        if (strcmp(names[k - 1], names[k]) != 0) continue;
        size_t len = strlen(ctx->path);
        pdr_event_err_add(ctx->errs, "duplicate member \"%s%s%.64s\" in the %s", ctx->path, len ? "." : "",
                          names[k], ctx->what);
        while (k + 1 < n && !strcmp(names[k], names[k + 1])) k++;
    }
    if (names != small) cJSON_free(names);
    return PDR_OK;
}

static pdr_rc walk(walk_ctx *ctx, cJSON *node)
{
    cJSON *it;
    size_t i = 0;
    pdr_rc rc;
    if (cJSON_IsString(node)) {
        rc = utf8_fix(&node->valuestring, ctx->repaired);
        if (rc) return rc;
        if (ctx->nul && strstr(node->valuestring, "\xef\xbf\xbf"))
            pdr_event_err_add(ctx->errs, "'%s' holds the NUL character (\\u0000), which PagerDuty refuses",
                              ctx->path[0] ? ctx->path : ctx->what);
        return PDR_OK;
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return PDR_OK;
    if (cJSON_IsObject(node)) {
        cJSON_ArrayForEach(it, node) {
            if (!it->string || (it->type & cJSON_StringIsConst)) continue;
            rc = utf8_fix(&it->string, ctx->repaired);
            if (rc) return rc;
            if (ctx->nul && strstr(it->string, "\xef\xbf\xbf")) {
                size_t len = path_push(ctx, node, it, 0);
                pdr_event_err_add(ctx->errs, "the member name '%s' holds the NUL character (\\u0000), which PagerDuty refuses",
                                  ctx->path);
                path_pop(ctx, len);
            }
        }
        rc = walk_dups(ctx, node);
        if (rc) return rc;
    }
    cJSON_ArrayForEach(it, node) {
        size_t len = path_push(ctx, node, it, i++);
        rc = walk(ctx, it);
        path_pop(ctx, len);
        if (rc) return rc;
    }
    return PDR_OK;
}

pdr_rc pdr_json_sanitize(cJSON *root, const char *what, int nul, size_t *utf8_repaired,
                         pdr_event_errors *errs)
{
    walk_ctx ctx;
    size_t before = errs->n;
    pdr_rc rc;
    ctx.what = what;
    ctx.nul = nul;
    ctx.repaired = utf8_repaired;
    ctx.errs = errs;
    ctx.path[0] = '\0';
    ctx.plen = 0;
    rc = walk(&ctx, root);
    if (rc) return rc;
    if (nul && errs->n == before)
        pdr_event_err_add(errs, "a string holds the NUL character (\\u0000), which PagerDuty refuses");
    return errs->n > before ? PDR_ERR_INVALID : PDR_OK;
}

/* ---- formats ------------------------------------------------------------ */

/* n digits at *p as a number (advancing *p), or -1. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        char c = (*p)[k];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

int pdr_timestamp_valid(const char *s)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h, mi, sec, dim;
    if (!s) return 0;
    if ((y = digits(&p, 4)) < 0 || *p++ != '-') return 0;
    if ((mo = digits(&p, 2)) < 1 || mo > 12 || *p++ != '-') return 0;
    dim = mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    if ((d = digits(&p, 2)) < 1 || d > dim || *p++ != 'T') return 0;
    if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':') return 0;
    if ((mi = digits(&p, 2)) < 0 || mi > 59 || *p++ != ':') return 0;
    if ((sec = digits(&p, 2)) < 0 || sec > 60) return 0;
    if (*p == '.') {
        if (*++p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'Z') return p[1] == '\0';
    if (*p == '+' || *p == '-') {
        p++;
        if ((h = digits(&p, 2)) < 0 || h > 23) return 0;
        if (*p == ':') p++;
        if ((mi = digits(&p, 2)) < 0 || mi > 59) return 0;
    }
    return *p == '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
** days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

pdr_rc pdr_timestamp_parse_ms(const char *s, int64_t *ms_out)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, frac = 0, scale = 100, off = 0;
    if (!ms_out || !pdr_timestamp_valid(s)) return PDR_ERR_INVALID;
    /* Valid: the fields are where pdr_timestamp_valid() found them. */
    y = digits(&p, 4);
    p++;
    mo = digits(&p, 2);
    p++;
    d = digits(&p, 2);
    p++;
    h = digits(&p, 2);
    p++;
    mi = digits(&p, 2);
    p++;
    sec = digits(&p, 2);
    if (y < 1) return PDR_ERR_INVALID;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh = digits(&p, 2), om;
        if (*p == ':') p++;
        om = digits(&p, 2);
        off = sign * (oh * 60 + om);
    }
    *ms_out = ((days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec -
                (int64_t)off * 60) * 1000) + frac;
    return PDR_OK;
}

char *pdr_timestamp_format(int64_t ms, char *out)
{
    static const int64_t lo = -62167219200000;      /* 0000-01-01T00:00:00.000Z */
    static const int64_t hi = 253402300799999;      /* 9999-12-31T23:59:59.999Z */
    int64_t days, rem, y;
    int m, d;
    if (ms < lo) ms = lo;
    if (ms > hi) ms = hi;
    days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    rem = ms - days * 86400000;
    civil_from_days(days, &y, &m, &d);
    char buf[64];   /* roomy: the compiler cannot see that every field fits */
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, m, d, (int)(rem / 3600000),
             (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000));
    memcpy(out, buf, PDR_TIMESTAMP_SIZE - 1);
    out[PDR_TIMESTAMP_SIZE - 1] = '\0';
    return out;
}

int pdr_url_http(const char *s)
{
    size_t n;
    if (!s) return 0;
    if (!strncasecmp(s, "https://", 8)) n = 8;
    else if (!strncasecmp(s, "http://", 7)) n = 7;
    else return 0;
    s += n;
    /* A host: something before the path, query or fragment, after any userinfo. */
    const char *end = s + strcspn(s, "/?#");
    const char *at = memchr(s, '@', (size_t)(end - s));
    if (at) s = at + 1;
    return end > s && *s != ':' && !strchr(" \t\r\n", *s);
}

int pdr_repairs_any(const pdr_repairs *rep)
{
    return rep->summary_chars || rep->images_dropped || rep->details_shrunk || rep->utf8_repaired ||
           rep->timestamp_dropped || rep->urls_dropped || rep->numbers_changed;
}

void pdr_event_err_add(pdr_event_errors *errs, const char *fmt, ...)
{
    va_list ap;
    char *m;
    size_t len, i = 0;
    if (errs->n >= PDR_EVENT_MAX_ERRORS) return;
    m = errs->msgs[errs->n++];
    va_start(ap, fmt);
    vsnprintf(m, sizeof errs->msgs[0], fmt, ap);
    va_end(ap);
    /* A message cut to fit must not end inside a character: it goes into a
    ** JSON reply and the log. */
    len = strlen(m);
    while (i < len) {
        uint32_t cp;
        size_t k = pdr_utf8_next(m + i, len - i, &cp);
        if (cp == PDR_UTF8_INVALID) {
            m[i] = '\0';
            break;
        }
        i += k;
    }
}

static int is_blank(const char *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
    return 1;
}

/* A required string field: present, a string, not blank. */
static const char *need_string(const cJSON *obj, const char *name, const char *path,
                               pdr_event_errors *errs)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it) || (cJSON_IsString(it) && is_blank(it->valuestring))) {
        pdr_event_err_add(errs, "'%s' is missing or blank", path);
        return NULL;
    }
    if (!cJSON_IsString(it)) {
        pdr_event_err_add(errs, "'%s' must be a string", path);
        return NULL;
    }
    return it->valuestring;
}

/* An optional string field: absent, null or a string. */
static void opt_string(const cJSON *obj, const char *name, const char *path, pdr_event_errors *errs)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (it && !cJSON_IsNull(it) && !cJSON_IsString(it))
        pdr_event_err_add(errs, "'%s' must be a string", path);
}

char *pdr_utf8_cut(const char *s, size_t max_chars, size_t *chars_out, int *nomem)
{
    size_t chars = 0, cut_at = 0;
    const char *p;
    *nomem = 0;
    for (p = s; *p; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80) {
            if (chars == max_chars - 1) cut_at = (size_t)(p - s);
            chars++;
        }
    }
    if (chars_out) *chars_out = chars;
    if (chars <= max_chars) return NULL;
    char *out = cJSON_malloc(cut_at + 4);
    if (!out) {
        *nomem = 1;
        return NULL;
    }
    memcpy(out, s, cut_at);
    memcpy(out + cut_at, "\xe2\x80\xa6", 4);
    return out;
}

static pdr_rc check_summary(cJSON *payload, pdr_repairs *rep, pdr_event_errors *errs)
{
    if (!need_string(payload, "summary", "payload.summary", errs)) return PDR_OK;
    cJSON *it = cJSON_GetObjectItemCaseSensitive(payload, "summary");
    size_t chars;
    int nomem;
    char *cut = pdr_utf8_cut(it->valuestring, PDR_SUMMARY_MAX_CHARS, &chars, &nomem);
    if (nomem) return PDR_ERR_NOMEM;
    if (!cut) return PDR_OK;
    cJSON *repl = cJSON_CreateString(cut);
    cJSON_free(cut);
    if (!repl || !cJSON_ReplaceItemInObjectCaseSensitive(payload, "summary", repl)) {
        cJSON_Delete(repl);
        return PDR_ERR_NOMEM;
    }
    rep->summary_chars = chars;
    return PDR_OK;
}

/* An invalid timestamp costs the timestamp, not the page: dropped (a
** counted repair). One that is not a string is refused like any wrong type. */
static void check_timestamp(cJSON *payload, pdr_repairs *rep, pdr_event_errors *errs)
{
    cJSON *it = cJSON_GetObjectItemCaseSensitive(payload, "timestamp");
    if (!it || cJSON_IsNull(it)) return;
    if (!cJSON_IsString(it)) {
        pdr_event_err_add(errs, "'payload.timestamp' must be a string");
        return;
    }
    if (pdr_timestamp_valid(it->valuestring)) return;
    cJSON_Delete(cJSON_DetachItemViaPointer(payload, it));
    rep->timestamp_dropped = 1;
}

/* An optional URL member of obj (client_url, an image's href): a string, and
** dropped (counted) when it is not an http(s) URL. */
static void check_url(cJSON *obj, const char *name, const char *path, pdr_repairs *rep,
                      pdr_event_errors *errs)
{
    cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it)) return;
    if (!cJSON_IsString(it)) {
        pdr_event_err_add(errs, "'%s' must be a string", path);
        return;
    }
    if (pdr_url_http(it->valuestring)) return;
    cJSON_Delete(cJSON_DetachItemViaPointer(obj, it));
    rep->urls_dropped++;
}

static void check_severity(const cJSON *payload, pdr_event_errors *errs)
{
    static const char *const allowed[] = {"critical", "error", "warning", "info"};
    const char *sev = need_string(payload, "severity", "payload.severity", errs);
    if (!sev) return;
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (!strcmp(sev, allowed[i])) return;
    pdr_event_err_add(errs, "'payload.severity' is invalid (must be one of: critical, error, warning, info)");
}

/* Links: href is required, so a link whose href is not an http(s) URL is
** dropped (counted); a missing href or a wrong type is an error. */
static void check_links(cJSON *ev, pdr_repairs *rep, pdr_event_errors *errs)
{
    cJSON *links = cJSON_GetObjectItemCaseSensitive(ev, "links");
    cJSON *l, *next;
    int i = 0;
    if (!links || cJSON_IsNull(links)) return;
    if (!cJSON_IsArray(links)) {
        pdr_event_err_add(errs, "'links' must be an array");
        return;
    }
    for (l = links->child; l; l = next, i++) {
        char path[32];
        next = l->next;
        if (!cJSON_IsObject(l)) {
            pdr_event_err_add(errs, "'links[%d]' must be an object", i);
            continue;
        }
        snprintf(path, sizeof path, "links[%d].text", i);
        opt_string(l, "text", path, errs);
        snprintf(path, sizeof path, "links[%d].href", i);
        const char *href = need_string(l, "href", path, errs);
        if (href && !pdr_url_http(href)) {
            cJSON_Delete(cJSON_DetachItemViaPointer(links, l));
            rep->urls_dropped++;
            /* Emptied by the repair: gone, as if it had never been sent. */
            if (!links->child) cJSON_Delete(cJSON_DetachItemViaPointer(ev, links));
        }
    }
}

/* Images: an image whose src is not HTTPS is dropped (PagerDuty would reject
** the whole event for it); one without src is an error; an href that is not
** http(s) is dropped. */
static void check_images(cJSON *ev, pdr_repairs *rep, pdr_event_errors *errs)
{
    cJSON *images = cJSON_GetObjectItemCaseSensitive(ev, "images");
    cJSON *img, *next;
    int i = 0;
    if (!images || cJSON_IsNull(images)) return;
    if (!cJSON_IsArray(images)) {
        pdr_event_err_add(errs, "'images' must be an array");
        return;
    }
    for (img = images->child; img; img = next, i++) {
        char path[32];
        next = img->next;
        if (!cJSON_IsObject(img)) {
            pdr_event_err_add(errs, "'images[%d]' must be an object", i);
            continue;
        }
        snprintf(path, sizeof path, "images[%d].alt", i);
        opt_string(img, "alt", path, errs);
        snprintf(path, sizeof path, "images[%d].src", i);
        const char *src = need_string(img, "src", path, errs);
        if (src && (strncasecmp(src, "https://", 8) != 0 || !pdr_url_http(src))) {
            cJSON_Delete(cJSON_DetachItemViaPointer(images, img));
            rep->images_dropped++;
            if (!images->child) cJSON_Delete(cJSON_DetachItemViaPointer(ev, images));
            continue;
        }
        snprintf(path, sizeof path, "images[%d].href", i);
        check_url(img, "href", path, rep, errs);
    }
}

/* The serialized size of an item, or SIZE_MAX on allocation failure. */
static size_t json_size(const cJSON *it)
{
    char *s = cJSON_PrintUnformatted(it);
    size_t n;
    if (!s) return (size_t)-1;
    n = strlen(s);
    cJSON_free(s);
    return n;
}

/* Replaces the largest members of custom_details by a short note until the
** whole event (total bytes as printed now) fits PDR_EVENT_MAX_BYTES. */
static pdr_rc shrink_details(cJSON *ev, size_t total, pdr_repairs *rep, pdr_event_errors *errs)
{
    cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
    cJSON *details = payload ? cJSON_GetObjectItemCaseSensitive(payload, "custom_details") : NULL;

    while (total > PDR_EVENT_MAX_BYTES && details) {
        cJSON *victim = NULL, *it;
        size_t victim_size = 0;
        char note[128];
        if (!cJSON_IsObject(details)) {
            victim = details;
            victim_size = json_size(details);
        } else {
            cJSON_ArrayForEach(it, details) {
                size_t n = json_size(it);
                if (n == (size_t)-1) return PDR_ERR_NOMEM;
                if (n > victim_size) {
                    victim = it;
                    victim_size = n;
                }
            }
        }
        if (!victim || victim_size < sizeof note) break;
        snprintf(note, sizeof note,
                 "[pdrelay: %zu bytes removed to fit PagerDuty's 512 KB event limit]", victim_size);
        cJSON *repl = cJSON_CreateString(note);
        if (!repl) return PDR_ERR_NOMEM;
        /* By name: cJSON_ReplaceItemViaPointer would leave the new item nameless. */
        if (victim == details) {
            cJSON_ReplaceItemInObjectCaseSensitive(payload, "custom_details", repl);
            details = repl;
        } else {
            cJSON_ReplaceItemInObjectCaseSensitive(details, victim->string, repl);
        }
        rep->details_shrunk++;
        total = total - victim_size + json_size(repl);
    }
    if (total > PDR_EVENT_MAX_BYTES)
        pdr_event_err_add(errs, "Event object is larger than 512 KB");
    return PDR_OK;
}

pdr_rc pdr_event_random_key(char out[37])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n <= 0) return PDR_ERR_IO;
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
    return PDR_OK;
}

pdr_action pdr_event_action(const cJSON *ev, pdr_event_kind kind)
{
    if (kind == PDR_EVENT_CHANGE) return PDR_ACTION_CHANGE;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(ev, "event_action");
    pdr_action act = cJSON_IsString(a) ? pdr_action_parse(a->valuestring) : (pdr_action)0;
    return act == PDR_ACTION_CHANGE ? (pdr_action)0 : act;
}

static pdr_rc check_dedup_key(cJSON *ev, pdr_action act, pdr_repairs *rep, pdr_event_errors *errs)
{
    cJSON *dk = cJSON_GetObjectItemCaseSensitive(ev, "dedup_key");
    if (dk && !cJSON_IsNull(dk)) {
        if (!cJSON_IsString(dk)) {
            pdr_event_err_add(errs, "'dedup_key' must be a string");
            return PDR_OK;
        }
        if (pdr_utf8_chars(dk->valuestring) > PDR_DEDUP_KEY_MAX) {
            pdr_event_err_add(errs, "'dedup_key' is too long (at most %d characters)", PDR_DEDUP_KEY_MAX);
            return PDR_OK;
        }
        /* Blank is absent to PagerDuty (it would generate a key). */
        if (!is_blank(dk->valuestring)) return PDR_OK;
    }
    if (act != PDR_ACTION_TRIGGER) {
        if (act) pdr_event_err_add(errs, "'dedup_key' is missing or blank (required for %s)", pdr_action_name(act));
        return PDR_OK;
    }
    char key[37];
    pdr_rc rc = pdr_event_random_key(key);
    if (rc) return rc;
    cJSON *s = cJSON_CreateString(key);
    if (!s) return PDR_ERR_NOMEM;
    if (dk) cJSON_DeleteItemFromObjectCaseSensitive(ev, "dedup_key");
    if (!cJSON_AddItemToObject(ev, "dedup_key", s)) {
        cJSON_Delete(s);   /* not attached: ours to free */
        return PDR_ERR_NOMEM;
    }
    rep->dedup_key_generated = 1;
    return PDR_OK;
}

/* Every rule but the size: errs filled, repairs made in place. */
static pdr_rc event_validate(cJSON *ev, pdr_event_kind kind, pdr_repairs *rep, pdr_event_errors *errs)
{
    pdr_rc rc = PDR_OK;
    pdr_action act = PDR_ACTION_CHANGE;
    memset(rep, 0, sizeof *rep);
    errs->n = 0;

    if (!cJSON_IsObject(ev)) {
        pdr_event_err_add(errs, "Event object must be a JSON object");
        return PDR_ERR_INVALID;
    }
    /* First, so every rule below reads repaired text and the one value of
    ** each member. */
    rc = pdr_json_sanitize(ev, "event", 0, &rep->utf8_repaired, errs);
    if (rc) return rc;
    const char *rk = need_string(ev, "routing_key", "routing_key", errs);
    const char *why;
    if (rk && pdr_routing_key_check(rk, strlen(rk), &why) != PDR_OK) {
        if (strcmp(why, "length") == 0)
            pdr_event_err_add(errs, "'routing_key' is invalid: it must be %d characters long", PDR_ROUTING_KEY_LEN);
        else
            pdr_event_err_add(errs, "'routing_key' is invalid: it must be letters and digits only (an integration key)");
    }

    if (kind == PDR_EVENT_ALERT) {
        const char *a = need_string(ev, "event_action", "event_action", errs);
        act = pdr_event_action(ev, kind);
        if (a && !act)
            pdr_event_err_add(errs, "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)");
        rc = check_dedup_key(ev, act, rep, errs);
        if (rc) return rc;
    }
    opt_string(ev, "client", "client", errs);
    check_url(ev, "client_url", "client_url", rep, errs);

    cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
    if (act == PDR_ACTION_TRIGGER || act == PDR_ACTION_CHANGE) {
        if (!payload || cJSON_IsNull(payload)) {
            pdr_event_err_add(errs, "'payload' is missing or blank");
        } else if (!cJSON_IsObject(payload)) {
            pdr_event_err_add(errs, "'payload' must be an object");
        } else {
            rc = check_summary(payload, rep, errs);
            if (rc) return rc;
            if (act == PDR_ACTION_TRIGGER) {
                need_string(payload, "source", "payload.source", errs);
                check_severity(payload, errs);
                opt_string(payload, "component", "payload.component", errs);
                opt_string(payload, "group", "payload.group", errs);
                opt_string(payload, "class", "payload.class", errs);
            } else {
                opt_string(payload, "source", "payload.source", errs);
            }
            check_timestamp(payload, rep, errs);
        }
        check_links(ev, rep, errs);
        check_images(ev, rep, errs);
    }
    return errs->n ? PDR_ERR_INVALID : PDR_OK;
}

/* Numbers the body carries that cJSON (a double) cannot send as written:
** out of range (printed null) or integers of 2^53 and more (rounded). They
** are sent changed, so they are counted as a repair. */
static int numbers_changed(const cJSON *node)
{
    int n = 0;
    const cJSON *it;
    if (cJSON_IsNumber(node)) {
        double v = node->valuedouble;
        return !isfinite(v) || fabs(v) >= 9007199254740992.0;
    }
    cJSON_ArrayForEach(it, node) n += numbers_changed(it);
    return n;
}

pdr_rc pdr_event_check_text(cJSON *ev, pdr_event_kind kind, pdr_repairs *rep, pdr_event_errors *errs,
                            char **text_out, size_t *len_out)
{
    char *text;
    size_t len;
    pdr_rc rc = event_validate(ev, kind, rep, errs);
    if (rc) return rc;
    rep->numbers_changed = numbers_changed(ev);
    /* The text to send is also the measure of the size: printed once, and
    ** again only when custom_details had to shrink. */
    text = cJSON_PrintUnformatted(ev);
    if (!text) return PDR_ERR_NOMEM;
    len = strlen(text);
    if (len > PDR_EVENT_MAX_BYTES) {
        cJSON_free(text);
        rc = shrink_details(ev, len, rep, errs);
        if (rc) return rc;
        if (errs->n) return PDR_ERR_INVALID;
        text = cJSON_PrintUnformatted(ev);
        if (!text) return PDR_ERR_NOMEM;
        len = strlen(text);
    }
    if (text_out) {
        *text_out = text;
        *len_out = len;
    } else {
        cJSON_free(text);
    }
    return PDR_OK;
}

pdr_rc pdr_event_check(cJSON *ev, pdr_event_kind kind, pdr_repairs *rep, pdr_event_errors *errs)
{
    return pdr_event_check_text(ev, kind, rep, errs, NULL, NULL);
}
