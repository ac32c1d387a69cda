/*
** event.c — validation and repair of PagerDuty Events API v2 bodies (see
** event.h). The rules are those of ../shared/PAGERDUTY-EVENTS-V2.md; the error
** sentences follow PagerDuty's style ("'payload.summary' is missing or blank")
** so a client pointed at pdrelay sees what PagerDuty would have said.
*/
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void pdr_event_err_add(pdr_event_errors *errs, const char *fmt, ...)
{
    va_list ap;
    if (errs->n >= PDR_EVENT_MAX_ERRORS) return;
    va_start(ap, fmt);
    vsnprintf(errs->msgs[errs->n++], sizeof errs->msgs[0], fmt, ap);
    va_end(ap);
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
    char *out = malloc(cut_at + 4);
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
    free(cut);
    if (!repl || !cJSON_ReplaceItemInObjectCaseSensitive(payload, "summary", repl)) {
        cJSON_Delete(repl);
        return PDR_ERR_NOMEM;
    }
    rep->summary_chars = chars;
    return PDR_OK;
}

static void check_timestamp(const cJSON *payload, pdr_event_errors *errs)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(payload, "timestamp");
    struct tm tm;
    const char *rest;
    if (!it || cJSON_IsNull(it)) return;
    if (!cJSON_IsString(it)) {
        pdr_event_err_add(errs, "'payload.timestamp' must be a string");
        return;
    }
    memset(&tm, 0, sizeof tm);
    rest = strptime(it->valuestring, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest || (*rest && *rest != '.' && *rest != 'Z' && *rest != '+' && *rest != '-'))
        pdr_event_err_add(errs, "'payload.timestamp' is not a valid ISO 8601 timestamp");
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

static void check_links(const cJSON *ev, pdr_event_errors *errs)
{
    const cJSON *links = cJSON_GetObjectItemCaseSensitive(ev, "links");
    const cJSON *l;
    int i = 0;
    if (!links || cJSON_IsNull(links)) return;
    if (!cJSON_IsArray(links)) {
        pdr_event_err_add(errs, "'links' must be an array");
        return;
    }
    cJSON_ArrayForEach(l, links) {
        char path[32];
        snprintf(path, sizeof path, "links[%d].href", i);
        if (!cJSON_IsObject(l)) {
            pdr_event_err_add(errs, "'links[%d]' must be an object", i);
        } else {
            need_string(l, "href", path, errs);
            snprintf(path, sizeof path, "links[%d].text", i);
            opt_string(l, "text", path, errs);
        }
        i++;
    }
}

/* Images: an image whose src is not HTTPS is dropped (PagerDuty would reject
** the whole event for it); one without src is an error. */
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
        next = img->next;
        if (!cJSON_IsObject(img)) {
            pdr_event_err_add(errs, "'images[%d]' must be an object", i);
            continue;
        }
        char path[32];
        snprintf(path, sizeof path, "images[%d].src", i);
        const char *src = need_string(img, "src", path, errs);
        if (src && strncmp(src, "https://", 8) != 0) {
            cJSON_Delete(cJSON_DetachItemViaPointer(images, img));
            rep->images_dropped++;
        }
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
        if (strlen(dk->valuestring) > PDR_DEDUP_KEY_MAX) {
            pdr_event_err_add(errs, "'dedup_key' is too long (at most %d characters)", PDR_DEDUP_KEY_MAX);
            return PDR_OK;
        }
        if (dk->valuestring[0] != '\0') return PDR_OK;
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
    const char *rk = need_string(ev, "routing_key", "routing_key", errs);
    if (rk && strlen(rk) != PDR_ROUTING_KEY_LEN)
        pdr_event_err_add(errs, "'routing_key' is invalid: it must be %d characters long", PDR_ROUTING_KEY_LEN);

    if (kind == PDR_EVENT_ALERT) {
        const char *a = need_string(ev, "event_action", "event_action", errs);
        act = pdr_event_action(ev, kind);
        if (a && !act)
            pdr_event_err_add(errs, "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)");
        rc = check_dedup_key(ev, act, rep, errs);
        if (rc) return rc;
        opt_string(ev, "client", "client", errs);
        opt_string(ev, "client_url", "client_url", errs);
    }

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
            check_timestamp(payload, errs);
        }
        check_links(ev, errs);
        check_images(ev, rep, errs);
    }
    return errs->n ? PDR_ERR_INVALID : PDR_OK;
}

pdr_rc pdr_event_check_text(cJSON *ev, pdr_event_kind kind, pdr_repairs *rep, pdr_event_errors *errs,
                            char **text_out, size_t *len_out)
{
    char *text;
    size_t len;
    pdr_rc rc = event_validate(ev, kind, rep, errs);
    if (rc) return rc;
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
