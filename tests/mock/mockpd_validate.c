/*
** mockpd_validate.c — the mock PagerDuty's validator (see mockpd_validate.h):
** parse, the whole-body rules (UTF-8, NUL, duplicate members, size), then
** the field rules of alert and change events. No shared state, no lock.
**
** Deliberately not pdrelay's algorithms: NUL is found by a scan that tracks
** whether it is inside a string, UTF-8 by decoding each code point and
** checking its range, duplicates with a hash set of the member names.
*/
#include "mockpd_validate.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MOCK_KEY_LEN 32              /* routing_key characters */
#define MOCK_DEDUP_MAX 255           /* dedup_key characters */
#define MOCK_SUMMARY_MAX 1024        /* payload.summary characters */

static void err_add(cJSON *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void err_add(cJSON *errs, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cJSON_AddItemToArray(errs, cJSON_CreateString(buf));
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

/* ---- whole-body rules ---------------------------------------------------- */

/* Decodes one code point at s; returns its length, or 0 when s does not
** start a well-formed UTF-8 sequence. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    size_t n;
    uint32_t min;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        min = 0x80;
        *cp = s[0] & 0x1Fu;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        min = 0x800;
        *cp = s[0] & 0x0Fu;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        min = 0x10000;
        *cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;   /* also stops at the NUL */
        *cp = (*cp << 6) | (s[i] & 0x3Fu);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
    return n;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    while (*p) {
        size_t n = utf8_decode(p, &cp);
        if (!n) return false;
        p += n;
    }
    return true;
}

/* Characters (code points) in s, which is valid UTF-8. */
static size_t utf8_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    size_t n = 0;
    while (*p) {
        size_t k = utf8_decode(p, &cp);
        p += k ? k : 1;
        n++;
    }
    return n;
}

/* Does the body hold the NUL character: a 0x00 byte anywhere, or the escape
** \u0000 inside a string? A scan that knows when it is inside a string and
** steps over each escape whole. */
static bool body_has_nul(const char *b, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (b[i] == '\0') return true;
        if (!in_string) {
            if (b[i] == '"') in_string = true;
            continue;
        }
        if (b[i] == '"') {
            in_string = false;
        } else if (b[i] == '\\' && i + 1 < len) {
            i++;
            if (b[i] == 'u' && i + 4 < len && !strncmp(b + i + 1, "0000", 4)) return true;
        }
    }
    return false;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603u;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The first name of obj that another member has too, or NULL. */
static const char *dup_member(const cJSON *obj)
{
    const cJSON *it;
    size_t n = 0, cap = 1;
    const char *dup = NULL;
    cJSON_ArrayForEach(it, obj) n++;
    while (cap < 2 * n) cap *= 2;
    const char **slots = calloc(cap, sizeof *slots);
    if (!slots) abort();
    cJSON_ArrayForEach(it, obj) {
        const char *name = it->string ? it->string : "";
        size_t i = (size_t)(name_hash(name) & (cap - 1));
        while (slots[i] && strcmp(slots[i], name) != 0) i = (i + 1) & (cap - 1);
        if (slots[i]) {
            dup = name;
            break;
        }
        slots[i] = name;
    }
    free(slots);
    return dup;
}

/* Every string and name valid UTF-8, no duplicate member: the first
** problem found is reported. */
static bool body_walk(const cJSON *node, cJSON *errs)
{
    const cJSON *it;
    if (node->string && !utf8_valid(node->string)) {
        err_add(errs, "a member name is not valid UTF-8");
        return false;
    }
    if (cJSON_IsString(node) && !utf8_valid(node->valuestring)) {
        err_add(errs, "a string is not valid UTF-8");
        return false;
    }
    if (cJSON_IsObject(node)) {
        const char *dup = dup_member(node);
        if (dup) {
            err_add(errs, "duplicate member \"%s\"", dup);
            return false;
        }
    }
    cJSON_ArrayForEach(it, node) {
        if (!body_walk(it, errs)) return false;
    }
    return true;
}

/* ---- field rules --------------------------------------------------------- */

/* A string member's value, or NULL when absent, null or not a string. */
static const char *str_of(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* A required non-blank string; reports and returns NULL otherwise. */
static const char *need_str(const cJSON *obj, const char *name, const char *path, cJSON *errs)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!it || cJSON_IsNull(it) || (cJSON_IsString(it) && blank(it->valuestring))) {
        err_add(errs, "'%s' is missing or blank", path);
        return NULL;
    }
    if (!cJSON_IsString(it)) {
        err_add(errs, "'%s' must be a string", path);
        return NULL;
    }
    return it->valuestring;
}

/* An optional string: absent, null, or a string (returned, else NULL). */
static const char *opt_str(const cJSON *obj, const char *name, const char *path, cJSON *errs)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (it && !cJSON_IsNull(it) && !cJSON_IsString(it)) err_add(errs, "'%s' must be a string", path);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* An http(s) URL (https only with https_only) with a non-empty host. */
static bool url_ok(const char *u, bool https_only)
{
    const char *host;
    if (!strncasecmp(u, "https://", 8)) host = u + 8;
    else if (!https_only && !strncasecmp(u, "http://", 7)) host = u + 7;
    else return false;
    size_t auth = strcspn(host, "/?#");
    for (size_t i = auth; i > 0; i--) {
        if (host[i - 1] == '@') {
            auth -= i;
            host += i;
            break;
        }
    }
    return auth > 0 && host[0] != ':' && host[0] != ' ';
}

static void opt_url(const cJSON *obj, const char *name, const char *path, cJSON *errs)
{
    const char *u = opt_str(obj, name, path, errs);
    if (u && !url_ok(u, false)) err_add(errs, "'%s' must be an http or https URL", path);
}

static int two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* ISO 8601: YYYY-MM-DDTHH:MM:SS[.f+][Z|(+|-)HH[:]MM], each field in range. */
static bool iso8601_ok(const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t i;
    for (i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !(t[i] >= '0' && t[i] <= '9') : t[i] != shape[i]) return false;
    }
    int year = two(t) * 100 + two(t + 2), mon = two(t + 5), day = two(t + 8);
    int hour = two(t + 11), min = two(t + 14), sec = two(t + 17);
    bool leap = year % 400 == 0 || (year % 4 == 0 && year % 100 != 0);
    int mdays = mon == 2 ? (leap ? 29 : 28) : (mon == 4 || mon == 6 || mon == 9 || mon == 11) ? 30 : 31;
    if (mon < 1 || mon > 12 || day < 1 || day > mdays || hour > 23 || min > 59 || sec > 60) return false;
    const char *p = t + i;
    if (*p == '.') {
        size_t n = strspn(p + 1, "0123456789");
        if (!n) return false;
        p += 1 + n;
    }
    if (!strcmp(p, "Z") || !*p) return true;
    if (*p != '+' && *p != '-') return false;
    p++;
    size_t n = strlen(p);
    if (n == 5 && p[2] == ':') {
        if (strspn(p, "0123456789") != 2 || strspn(p + 3, "0123456789") != 2) return false;
        return two(p) <= 23 && two(p + 3) <= 59;
    }
    if (n == 4 && strspn(p, "0123456789") == 4) return two(p) <= 23 && two(p + 2) <= 59;
    return false;
}

static void check_routing_key(const cJSON *ev, cJSON *errs)
{
    const char *rk = need_str(ev, "routing_key", "routing_key", errs);
    if (!rk) return;
    bool alnum = true;
    for (const char *p = rk; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) alnum = false;
    if (strlen(rk) != MOCK_KEY_LEN)
        err_add(errs, "Length of 'routing_key' is incorrect (should be %d characters)", MOCK_KEY_LEN);
    else if (!alnum)
        err_add(errs, "'routing_key' is invalid (letters and digits only)");
}

static void check_summary(const cJSON *payload, cJSON *errs)
{
    const char *s = need_str(payload, "summary", "payload.summary", errs);
    if (s && utf8_chars(s) > MOCK_SUMMARY_MAX)
        err_add(errs, "'payload.summary' is too long (must be at most %d characters)", MOCK_SUMMARY_MAX);
}

static void check_timestamp(const cJSON *payload, cJSON *errs)
{
    const char *t = opt_str(payload, "timestamp", "payload.timestamp", errs);
    if (t && !iso8601_ok(t)) err_add(errs, "'payload.timestamp' is not an ISO 8601 date-time");
}

/* images[] (src required, HTTPS) and links[] (href required). */
static void check_images_links(const cJSON *ev, cJSON *errs)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(ev, "images");
    const cJSON *it;
    char path[48];
    int i = 0;
    if (arr && !cJSON_IsNull(arr)) {
        if (!cJSON_IsArray(arr)) {
            err_add(errs, "'images' must be an array");
        } else {
            cJSON_ArrayForEach(it, arr) {
                if (!cJSON_IsObject(it)) {
                    err_add(errs, "'images[%d]' must be an object", i);
                } else {
                    snprintf(path, sizeof path, "images[%d].src", i);
                    const char *src = need_str(it, "src", path, errs);
                    if (src && !url_ok(src, true)) err_add(errs, "'%s' must be an HTTPS URL", path);
                    snprintf(path, sizeof path, "images[%d].href", i);
                    opt_url(it, "href", path, errs);
                    snprintf(path, sizeof path, "images[%d].alt", i);
                    opt_str(it, "alt", path, errs);
                }
                i++;
            }
        }
    }
    arr = cJSON_GetObjectItemCaseSensitive(ev, "links");
    i = 0;
    if (arr && !cJSON_IsNull(arr)) {
        if (!cJSON_IsArray(arr)) {
            err_add(errs, "'links' must be an array");
        } else {
            cJSON_ArrayForEach(it, arr) {
                if (!cJSON_IsObject(it)) {
                    err_add(errs, "'links[%d]' must be an object", i);
                } else {
                    snprintf(path, sizeof path, "links[%d].href", i);
                    const char *href = need_str(it, "href", path, errs);
                    if (href && !url_ok(href, false)) err_add(errs, "'%s' must be an http or https URL", path);
                    snprintf(path, sizeof path, "links[%d].text", i);
                    opt_str(it, "text", path, errs);
                }
                i++;
            }
        }
    }
}

/* The payload object, or NULL after reporting why not. */
static const cJSON *need_payload(const cJSON *ev, cJSON *errs)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "payload");
    if (!p || cJSON_IsNull(p)) {
        err_add(errs, "'payload' is missing or blank");
        return NULL;
    }
    if (!cJSON_IsObject(p)) {
        err_add(errs, "'payload' must be an object");
        return NULL;
    }
    return p;
}

static void check_alert(const cJSON *ev, cJSON *errs)
{
    static const char *const severities[] = {"critical", "error", "warning", "info"};
    check_routing_key(ev, errs);

    const char *act = need_str(ev, "event_action", "event_action", errs);
    bool trigger = act && !strcmp(act, "trigger");
    bool ack_res = act && (!strcmp(act, "acknowledge") || !strcmp(act, "resolve"));
    if (act && !trigger && !ack_res)
        err_add(errs, "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)");

    /* dedup_key: absent or blank is fine for a trigger, not for the others;
    ** a bad one is reported once, as what it is. */
    const cJSON *dk = cJSON_GetObjectItemCaseSensitive(ev, "dedup_key");
    bool dk_reported = false, dk_present = false;
    if (dk && !cJSON_IsNull(dk)) {
        if (!cJSON_IsString(dk)) {
            err_add(errs, "'dedup_key' must be a string");
            dk_reported = true;
        } else if (utf8_chars(dk->valuestring) > MOCK_DEDUP_MAX) {
            err_add(errs, "'dedup_key' is too long (must be at most %d characters)", MOCK_DEDUP_MAX);
            dk_reported = true;
        } else {
            dk_present = !blank(dk->valuestring);
        }
    }
    if (ack_res && !dk_present && !dk_reported)
        err_add(errs, "'dedup_key' is missing or blank (required for %s)", act);

    opt_str(ev, "client", "client", errs);
    opt_url(ev, "client_url", "client_url", errs);
    if (!trigger) return; /* acknowledge and resolve carry nothing else */
    const cJSON *p = need_payload(ev, errs);
    if (p) {
        check_summary(p, errs);
        need_str(p, "source", "payload.source", errs);
        const char *sev = need_str(p, "severity", "payload.severity", errs);
        if (sev) {
            size_t i;
            for (i = 0; i < sizeof severities / sizeof severities[0]; i++)
                if (!strcmp(sev, severities[i])) break;
            if (i == sizeof severities / sizeof severities[0])
                err_add(errs, "'payload.severity' is invalid (must be one of: critical, error, warning, info)");
        }
        check_timestamp(p, errs);
        opt_str(p, "component", "payload.component", errs);
        opt_str(p, "group", "payload.group", errs);
        opt_str(p, "class", "payload.class", errs);
        /* custom_details: any JSON */
    }
    check_images_links(ev, errs);
}

static void check_change(const cJSON *ev, cJSON *errs)
{
    check_routing_key(ev, errs);
    opt_str(ev, "client", "client", errs);
    opt_url(ev, "client_url", "client_url", errs);
    const cJSON *p = need_payload(ev, errs);
    if (p) {
        check_summary(p, errs);
        opt_str(p, "source", "payload.source", errs);
        check_timestamp(p, errs);
    }
    check_images_links(ev, errs);
}

/* ---- the verdict --------------------------------------------------------- */

/* Parses exactly len bytes: trailing bytes other than whitespace are not JSON. */
static cJSON *parse_exact(const char *body, size_t len)
{
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!doc) return NULL;
    for (; end < body + len; end++) {
        if (!strchr(" \t\r\n", *end) || *end == '\0') {
            cJSON_Delete(doc);
            return NULL;
        }
    }
    return doc;
}

void mockpd_validate(const char *body, size_t len, bool too_big, bool is_change, mockpd_check *cr)
{
    memset(cr, 0, sizeof *cr);
    cr->is_change = is_change;
    if (too_big) {
        cr->v = MOCKPD_TOO_BIG;
        return;
    }
    cr->doc = body ? parse_exact(body, len) : NULL;
    if (!cr->doc) {
        cr->v = MOCKPD_NOT_JSON;
        return;
    }
    cr->errors = cJSON_CreateArray();
    if (!cr->errors) abort();
    if (body_has_nul(body, len)) {
        err_add(cr->errors, "a string holds the NUL character");
    } else if (!cJSON_IsObject(cr->doc)) {
        err_add(cr->errors, "Event object must be a JSON object");
    } else if (body_walk(cr->doc, cr->errors)) {
        if (len > MOCKPD_EVENT_MAX) err_add(cr->errors, "Event object is larger than 512 KB");
        if (is_change) check_change(cr->doc, cr->errors);
        else check_alert(cr->doc, cr->errors);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(cr->doc, "payload");
        cr->routing_key = str_of(cr->doc, "routing_key");
        cr->event_action = is_change ? "change" : str_of(cr->doc, "event_action");
        cr->is_trigger = !is_change && cr->event_action && !strcmp(cr->event_action, "trigger");
        /* PagerDuty reads no dedup_key in a change event, and a severity
        ** only in a trigger's payload. */
        cr->dedup_key = is_change ? NULL : str_of(cr->doc, "dedup_key");
        cr->summary = str_of(p, "summary");
        cr->severity = cr->is_trigger ? str_of(p, "severity") : NULL;
    }
    cr->v = cJSON_GetArraySize(cr->errors) ? MOCKPD_INVALID : MOCKPD_VALID;
}

bool mockpd_check_has_error(const mockpd_check *cr, const char *msg)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cr->errors) {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, msg)) return true;
    }
    return false;
}

void mockpd_check_free(mockpd_check *cr)
{
    cJSON_Delete(cr->doc);
    cJSON_Delete(cr->errors);
    memset(cr, 0, sizeof *cr);
}
