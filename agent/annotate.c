/*
** annotate.c — the send-time annotations of a body (see annotate.h).
** The body is parsed, edited as a cJSON tree and printed compact; every
** rule that could make PagerDuty refuse it (summary length, body size) is
** checked here, so the sender never needs to run the event check again.
*/
#include "annotate.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "event.h"

/* Replaces (or adds) obj.name with item; item is taken either way. */
static pdr_rc set_item(cJSON *obj, const char *name, cJSON *item)
{
    if (!item) return PDR_ERR_NOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, name)) {
        if (cJSON_ReplaceItemInObjectCaseSensitive(obj, name, item)) return PDR_OK;
    } else if (cJSON_AddItemToObject(obj, name, item)) {
        return PDR_OK;
    }
    cJSON_Delete(item);
    return PDR_ERR_NOMEM;
}

/* Severity info, summary prefixed (the original cut so the whole fits). */
static pdr_rc mark_resolved(cJSON *payload)
{
    const cJSON *summary = cJSON_GetObjectItemCaseSensitive(payload, "summary");
    const size_t prefix_chars = sizeof ANNOTATE_RESOLVED_PREFIX - 1;   /* ASCII */
    pdr_rc rc = set_item(payload, "severity", cJSON_CreateString("info"));
    if (rc) return rc;
    if (cJSON_IsString(summary)) {
        int nomem = 0;
        const char *orig = summary->valuestring;
        char *cut = pdr_utf8_cut(orig, PDR_SUMMARY_MAX_CHARS - prefix_chars, NULL, &nomem);
        size_t n;
        char *s;
        if (nomem) return PDR_ERR_NOMEM;
        if (cut) orig = cut;
        n = strlen(orig);
        s = pdr_malloc(prefix_chars + n + 1);
        if (!s) {
            cJSON_free(cut);
            return PDR_ERR_NOMEM;
        }
        memcpy(s, ANNOTATE_RESOLVED_PREFIX, prefix_chars);
        memcpy(s + prefix_chars, orig, n + 1);
        cJSON_free(cut);
        rc = set_item(payload, "summary", cJSON_CreateString(s));
        free(s);
        if (rc) return rc;
    }
    return PDR_OK;
}

/* The custom_details.pdrelay object for o; NULL on allocation failure. */
static cJSON *note_make(const annotate_opts *o)
{
    char ts[PDR_TIMESTAMP_SIZE];
    cJSON *n = cJSON_CreateObject();
    if (!n) return NULL;
    if (o->delay_note) {
        if (!cJSON_AddStringToObject(n, "queued_at", pdr_timestamp_format(o->queued_ms, ts)) ||
            !cJSON_AddNumberToObject(n, "attempts", (double)o->attempts) ||
            !cJSON_AddNumberToObject(n, "delayed_s", (double)((o->now_ms - o->queued_ms) / 1000)))
            goto fail;
    }
    if (o->resolved_while_offline && o->resolved_ms > 0 &&
        !cJSON_AddStringToObject(n, "resolved_at", pdr_timestamp_format(o->resolved_ms, ts)))
        goto fail;
    return n;
fail:
    cJSON_Delete(n);
    return NULL;
}

/* Prints root compact into a malloc'd copy. */
static pdr_rc print(const cJSON *root, char **text, size_t *len)
{
    char *p = cJSON_PrintUnformatted(root);
    if (!p) return PDR_ERR_NOMEM;
    *len = strlen(p);
    *text = pdr_malloc(*len + 1);
    if (*text) memcpy(*text, p, *len + 1);
    cJSON_free(p);
    return *text ? PDR_OK : PDR_ERR_NOMEM;
}

pdr_rc annotate_body(const char *body, size_t len, const annotate_opts *o, char **out, size_t *outlen)
{
    cJSON *root, *payload, *details, *note = NULL;
    const cJSON *action;
    int trigger, changed = 0, noted = 0, created = 0, stamped = 0, nul;
    char *text = NULL;
    size_t tlen = 0;
    pdr_rc rc;

    *out = NULL;
    *outlen = 0;
    if (!body || !o) return PDR_ERR_INVALID;
    /* pdr_json_parse tells running out of memory (NOMEM: the sender tries
    ** again) from a body that is not JSON (INVALID: sent as it is). A
    ** stored body never holds NUL (ingest refuses it). */
    rc = pdr_json_parse(body, len, &root, &nul);
    if (rc) return rc;
    rc = PDR_ERR_INVALID;
    if (nul || !cJSON_IsObject(root)) goto out;
    rc = PDR_ERR_NOT_FOUND;
    action = cJSON_GetObjectItemCaseSensitive(root, "event_action");
    trigger = cJSON_IsString(action) && !strcmp(action->valuestring, "trigger");
    if (action && !trigger) goto out;           /* acknowledge, resolve */
    payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
    if (!cJSON_IsObject(payload)) goto out;

    if (o->stamp_ms > 0) {
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(payload, "timestamp");
        if (!ts || cJSON_IsNull(ts)) {
            char buf[PDR_TIMESTAMP_SIZE];
            rc = set_item(payload, "timestamp", cJSON_CreateString(pdr_timestamp_format(o->stamp_ms, buf)));
            if (rc) goto out;
            stamped = 1;
        }
    }
    if (o->resolved_while_offline && trigger) {
        rc = mark_resolved(payload);
        if (rc) goto out;
        changed = 1;
    }
    if (o->delay_note || (o->resolved_while_offline && trigger && o->resolved_ms > 0)) {
        details = cJSON_GetObjectItemCaseSensitive(payload, "custom_details");
        if ((!details || cJSON_IsNull(details) || cJSON_IsObject(details)) &&
            !cJSON_GetObjectItemCaseSensitive(details, "pdrelay")) {
            rc = PDR_ERR_NOMEM;
            if (!cJSON_IsObject(details)) {
                details = cJSON_CreateObject();
                if (set_item(payload, "custom_details", details)) goto out;
                created = 1;
            }
            note = note_make(o);
            if (!note) goto out;
            if (!cJSON_AddItemToObject(details, "pdrelay", note)) {
                cJSON_Delete(note);
                goto out;
            }
            noted = 1;
        }
    }
    rc = PDR_ERR_NOT_FOUND;
    if (!changed && !noted && !stamped) goto out;
    rc = print(root, &text, &tlen);
    if (rc) goto out;
    if (tlen > PDR_EVENT_MAX_BYTES && noted) {
        /* The note does not fit: the event goes without it (and without
        ** the custom_details made for it). */
        free(text);
        text = NULL;
        if (created)
            cJSON_DeleteItemFromObjectCaseSensitive(payload, "custom_details");
        else
            cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(payload, "custom_details"),
                                                    "pdrelay");
        rc = PDR_ERR_NOT_FOUND;
        if (!changed && !stamped) goto out;
        rc = print(root, &text, &tlen);
        if (rc) goto out;
    }
    if (tlen > PDR_EVENT_MAX_BYTES && stamped) {
        /* Nor does the stamp: PagerDuty then takes its own receipt time. */
        free(text);
        text = NULL;
        cJSON_DeleteItemFromObjectCaseSensitive(payload, "timestamp");
        rc = PDR_ERR_NOT_FOUND;
        if (!changed) goto out;
        rc = print(root, &text, &tlen);
        if (rc) goto out;
    }
    rc = PDR_ERR_NOT_FOUND;
    if (tlen > PDR_EVENT_MAX_BYTES) goto out;   /* even the prefix does not fit: as it is */
    *out = text;
    *outlen = tlen;
    text = NULL;
    rc = PDR_OK;
out:
    free(text);
    cJSON_Delete(root);
    return rc;
}
