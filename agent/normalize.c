/*
** normalize.c — turns a received HTTP body into the PagerDuty events pdrelay
** queues (see normalize.h). It owns the three body models and the mapping
** from an alert (labels, annotations, status) to a PagerDuty event; the rules
** of PagerDuty itself (and the repairs) stay in event.c: every event made here
** goes through pdr_event_check_text(), which also prints it, so what is queued is
** exactly what PagerDuty accepts.
**
** A body is refused as a whole (PDR_ERR_INVALID, PagerDuty-style sentences)
** or taken as a whole: a model is validated completely before the first
** event is built, so a bad alert never leaves half of a body queued.
**
** Alert → event, for both alert models (Alertmanager webhook | /v1/alerts):
**
**   event field          from
**   -------------------  ------------------------------------------------------
**   routing_key          each [target] whose matchers hold for the labels
**                        (/v1/alerts: label alertname defaults to alert_name)
**   event_action         firing → trigger; resolved → resolve;
**                        acknowledged | silenced → acknowledge (/v1/alerts)
**   dedup_key            pdr_dedup_key_derive(routing_key, fingerprint); the
**                        fingerprint is the alert's, else the hex SHA-256 of
**                        its labels sorted by name as "name=value\n" lines
**   payload.severity     classification.severity (/v1/alerts), else
**                        labels.severity, lowercased: critical error warning
**                        info as is, noise → info, else [agent]
**                        default_severity
**   payload.summary      "[SEV] NAME: annotations.summary | description",
**                        "[SEV] NAME - AI: reasoning" (/v1/alerts with a
**                        classification reasoning), or "[SEV] NAME"; NAME is
**                        labels.alertname ("alert" if none) | alert_name
**   payload.source       labels.instance, else [agent] source
**   payload.component    labels.job
**   payload.group        labels.cluster, else labels.namespace
**   payload.class        labels.alertname | alert_name
**   payload.timestamp    startsAt | starts_at, unless absent, Go's zero time or
**                        not ISO 8601 (then it stays only in custom_details)
**   payload.custom_details  labels, annotations and the alert's other fields
**   links[]              generatorURL "Source", annotations runbook_url
**                        "Runbook", dashboard_url and grafana_url "Dashboard"
**   images[]             annotation snapshot_url (alt "snapshot")
**   client, client_url   "Alertmanager", externalURL (webhook only)
**
** acknowledge and resolve carry only routing_key, event_action and dedup_key;
** when a resolve happened (endsAt | ends_at, unless absent, Go's zero time or
** not ISO 8601) is kept in normalize_event.event_ms only.
** Label change_event="true" makes a firing alert a change event (summary,
** source, timestamp, custom_details, links); such an alert that is no longer
** firing makes nothing. An alert that matches no target is counted and logged,
** never an error.
**
** Webhook targets (webhook_url; agent/webhook.h has what their rows are)
** take the alert as received, not the event above: /v1/alerts the alert
** object, one event each; Alertmanager the payload, one event per target
** and body, holding the alerts routed there. An alert that matches no
** PagerDuty target goes to [agent] fallback_target too (PagerDuty or
** webhook), unless its matchers already sent it there; only with no
** fallback_target and no target at all is it unrouted.
*/
#include "normalize.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define GO_ZERO_TIME "0001-01-01T00:00:00Z"

/* ---- errors and the result ---------------------------------------------- */

/* Every allocation here goes through cJSON's allocator (pdr_json_hooks_set
** in event.h), as the parse and the check do: a test that fails it at each
** point in turn reaches every one. */
static char *normalize_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = cJSON_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void event_free(normalize_event *e)
{
    cJSON_free(e->dedup_key);
    cJSON_free(e->fingerprint);
    cJSON_free(e->target);
    cJSON_free(e->body);
    memset(e, 0, sizeof *e);
}

/* Frees the events but keeps the counters and errs (a refused body). */
static void events_free(normalize_result *r)
{
    for (size_t i = 0; i < r->n; i++) event_free(&r->evs[i]);
    cJSON_free(r->evs);
    r->evs = NULL;
    r->n = 0;
}

void normalize_result_cleanup(normalize_result *r)
{
    if (!r) return;
    events_free(r);
    memset(r, 0, sizeof *r);
}

/* Ends a parser: on a refusal only the events go (errs stay for the 400
** body); on any other failure the result is emptied entirely. */
static pdr_rc finish(normalize_result *out, cJSON *root, pdr_rc rc)
{
    cJSON_Delete(root);
    if (!rc && out->unrouted) {
        char n[24], of[24];
        snprintf(n, sizeof n, "%zu", out->unrouted);
        snprintf(of, sizeof of, "%zu", out->alerts);
        pdr_log(PDR_LOG_INFO, "alerts unrouted", "count", n, "alerts", of, "first", out->unrouted_first, NULL);
    }
    if (rc == PDR_ERR_INVALID) {
        events_free(out);
        out->repaired = 0;
        out->unrouted = 0;
    } else if (rc) {
        normalize_result_cleanup(out);
    }
    return rc;
}

/* ---- small JSON helpers ------------------------------------------------- */

static int is_blank(const char *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
    return 1;
}

/* Parses exactly len bytes and sanitizes the tree (pdr_json_parse,
** pdr_json_sanitize): invalid UTF-8 repaired (counted in out->utf8_repaired),
** NUL and duplicate members refused, before any field is read. */
static pdr_rc parse_body(const char *body, size_t len, const char *what, normalize_result *out, cJSON **root)
{
    int nul;
    pdr_rc rc = pdr_json_parse(body, len, root, &nul);
    if (rc == PDR_ERR_INVALID) {
        out->parse_error = 1;
        pdr_event_err_add(&out->errs, "JSON parse error");
    }
    if (rc) return rc;
    return pdr_json_sanitize(*root, what, nul, &out->utf8_repaired, &out->errs);
}

/* The value of a string member, or NULL when absent, null, not a string or
** empty ("absent" for every optional field of the alert models). */
static const char *get_str(const cJSON *obj, const char *name)
{
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (!cJSON_IsString(it) || !it->valuestring[0]) return NULL;
    return it->valuestring;
}

/* A member that is present and not null. */
static const cJSON *get_present(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return it && !cJSON_IsNull(it) ? it : NULL;
}

static pdr_rc add_item(cJSON *obj, const char *name, cJSON *item)
{
    if (!item) return PDR_ERR_NOMEM;
    if (!cJSON_AddItemToObject(obj, name, item)) {
        cJSON_Delete(item);
        return PDR_ERR_NOMEM;
    }
    return PDR_OK;
}

/* Adds name: value when value is non-NULL. */
static pdr_rc add_str(cJSON *obj, const char *name, const char *value)
{
    if (!value) return PDR_OK;
    return cJSON_AddStringToObject(obj, name, value) ? PDR_OK : PDR_ERR_NOMEM;
}

/* Adds a deep copy of item as name when item is non-NULL. */
static pdr_rc add_copy(cJSON *obj, const char *name, const cJSON *item)
{
    if (!item) return PDR_OK;
    return add_item(obj, name, cJSON_Duplicate(item, 1));
}

/* ---- emitting an event -------------------------------------------------- */

/* Would pdr_event_check() keep ts as payload.timestamp? Asked first so a
** malformed start time is left out quietly (it is still in custom_details)
** rather than counted as a repair. */
static int timestamp_usable(const char *ts)
{
    return ts && strcmp(ts, GO_ZERO_TIME) != 0 && pdr_timestamp_valid(ts);
}

/* Appends e (taken on success) to out, growing the array. */
static pdr_rc event_append(normalize_result *out, size_t *cap, normalize_event *e)
{
    if (out->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        if (ncap > NORMALIZE_MAX_EVENTS) ncap = NORMALIZE_MAX_EVENTS;
        normalize_event *evs = cJSON_malloc(ncap * sizeof *evs);
        if (!evs) return PDR_ERR_NOMEM;
        if (out->n) memcpy(evs, out->evs, out->n * sizeof *evs);
        cJSON_free(out->evs);
        out->evs = evs;
        *cap = ncap;
    }
    /* Repairs are logged by the ingest after the commit that stores the
    ** event (a refused or coalesced event is not news). */
    if (e->repaired) out->repaired++;
    out->evs[out->n++] = *e;
    return PDR_OK;
}

/* Checks ev for kind (repairing it), prints it and appends it to out.
** target, fingerprint (copied) and ends_at (when a resolve happened, as
** received) may be NULL. ev stays the caller's. */
static pdr_rc emit(normalize_result *out, size_t *cap, cJSON *ev, pdr_event_kind kind,
                   const char *target, const char *fingerprint, const char *ends_at)
{
    normalize_event e;
    pdr_event_errors errs;
    pdr_rc rc;

    memset(&e, 0, sizeof e);
    if (out->n >= NORMALIZE_MAX_EVENTS) {
        pdr_event_err_add(&out->errs, "Body would make more than %d events (alerts x matching targets); send fewer alerts per request",
                NORMALIZE_MAX_EVENTS);
        return PDR_ERR_INVALID;
    }
    errs.n = 0;
    rc = pdr_event_check_text(ev, kind, &e.rep, &errs, &e.body, &e.body_len);
    if (rc == PDR_ERR_INVALID) {
        out->errs = errs;
        goto out;
    }
    if (rc) goto out;

    snprintf(e.routing_key, sizeof e.routing_key, "%s",
             cJSON_GetObjectItemCaseSensitive(ev, "routing_key")->valuestring);
    e.action = pdr_event_action(ev, kind);
    /* event_ms: the time the source gave, 0 when none. After the check, so
    ** an invalid payload.timestamp (dropped) gives none. */
    if (e.action == PDR_ACTION_TRIGGER || e.action == PDR_ACTION_CHANGE) {
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "payload"),
                                                           "timestamp");
        if (cJSON_IsString(ts) && pdr_timestamp_parse_ms(ts->valuestring, &e.event_ms)) e.event_ms = 0;
    } else if (e.action == PDR_ACTION_RESOLVE && timestamp_usable(ends_at)) {
        if (pdr_timestamp_parse_ms(ends_at, &e.event_ms)) e.event_ms = 0;
    }
    if (kind == PDR_EVENT_ALERT) {
        const cJSON *dk = cJSON_GetObjectItemCaseSensitive(ev, "dedup_key");
        /* A checked alert event always has one; none means the check could
        ** not add the generated key (it does not report that failure). */
        rc = PDR_ERR_NOMEM;
        if (!cJSON_IsString(dk)) goto out;
        e.dedup_key = normalize_strdup(dk->valuestring);
        if (!e.dedup_key) goto out;
        if (e.action == PDR_ACTION_TRIGGER) {
            const cJSON *sev = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "payload"), "severity");
            snprintf(e.severity, sizeof e.severity, "%s", sev->valuestring);   /* checked: one of four */
        }
    }
    /* The body's UTF-8 repairs (made before the event was built from it)
    ** are every one of its events' repairs. */
    e.rep.utf8_repaired += out->utf8_repaired;
    e.repaired = pdr_repairs_any(&e.rep);

    rc = PDR_ERR_NOMEM;
    if (!e.dedup_key) {
        e.dedup_key = normalize_strdup("");   /* a change event: none, never NULL */
        if (!e.dedup_key) goto out;
    }
    if (fingerprint) {
        e.fingerprint = normalize_strdup(fingerprint);
        if (!e.fingerprint) goto out;
    }
    if (target) {
        e.target = normalize_strdup(target);
        if (!e.target) goto out;
    }
    rc = event_append(out, cap, &e);
    if (rc) goto out;
    return PDR_OK;

out:
    event_free(&e);
    return rc;
}

/* The event of a webhook target: body (taken: freed here, whatever
** happens) as it goes to the URL. group is what orders its rows: the
** fingerprint of a /v1/alerts alert, the groupKey of an Alertmanager
** payload ("" when it has none: then one order for all of them). */
static pdr_rc emit_webhook(normalize_result *out, size_t *cap, const pdr_target *t, pdr_action act,
                           const char *group, const char *severity, char *body, int64_t event_ms)
{
    char dk[PDR_SHA256_HEX_LEN];
    normalize_event e;
    pdr_rc rc;

    memset(&e, 0, sizeof e);
    e.body = body;
    rc = PDR_ERR_NOMEM;
    if (!body) goto out;
    if (out->n >= NORMALIZE_MAX_EVENTS) {
        pdr_event_err_add(&out->errs, "Body would make more than %d events (alerts x matching targets); send fewer alerts per request",
                NORMALIZE_MAX_EVENTS);
        rc = PDR_ERR_INVALID;
        goto out;
    }
    e.body_len = strlen(body);
    snprintf(e.routing_key, sizeof e.routing_key, "%s", t->webhook_key);
    e.action = act;
    e.event_ms = event_ms;
    if (act == PDR_ACTION_TRIGGER) snprintf(e.severity, sizeof e.severity, "%s", severity);
    rc = pdr_dedup_key_derive(t->webhook_key, group, dk);
    if (rc) goto out;
    rc = PDR_ERR_NOMEM;
    e.dedup_key = normalize_strdup(dk);
    e.target = normalize_strdup(t->name);
    if (!e.dedup_key || !e.target) goto out;
    e.rep.utf8_repaired = out->utf8_repaired;
    e.repaired = pdr_repairs_any(&e.rep);
    rc = event_append(out, cap, &e);
    if (rc) goto out;
    return PDR_OK;
out:
    event_free(&e);
    return rc;
}

/* ---- PagerDuty-native --------------------------------------------------- */

pdr_rc normalize_pagerduty(const char *body, size_t len, pdr_event_kind kind, normalize_result *out)
{
    cJSON *root = NULL;
    size_t cap = 0;
    pdr_rc rc;

    memset(out, 0, sizeof *out);
    rc = parse_body(body, len, "event", out, &root);
    if (rc) goto out;
    out->alerts = 1;
    rc = emit(out, &cap, root, kind, NULL, NULL, NULL);
out:
    return finish(out, root, rc);
}

/* ---- alerts: the model-independent part --------------------------------- */

/* One alert of either model, as the event builder sees it. Strings point
** into the parsed body (or are static). */
typedef struct alert_view {
    pdr_action act;              /* TRIGGER, RESOLVE or ACKNOWLEDGE */
    int change;                  /* label change_event="true" */
    const cJSON *labels;         /* object or NULL */
    const cJSON *annotations;    /* object or NULL */
    const char *alertname_fallback; /* /v1/alerts: alert_name when labels has no alertname */
    const char *name;            /* for the summary and logs */
    const char *class_name;      /* payload.class or NULL */
    const char *severity_in;     /* as received, or NULL */
    const char *reasoning;       /* non-NULL: the AI summary form */
    const char *fingerprint_in;  /* as received, or NULL */
    const char *starts_at;
    const char *ends_at;         /* when a resolve happened, as received */
    const char *generator_url;
    const char *client;
    const char *client_url;
    cJSON *details;              /* custom_details template (owned by the caller) */
    const cJSON *obj;            /* the alert object as received */
    cJSON **am_alerts;           /* Alertmanager: per target (index in cfg), the
                                 ** array of the alerts routed to it if a webhook
                                 ** target; NULL for /v1/alerts */
} alert_view;

typedef struct label_ctx {
    const cJSON *labels;
    const char *alertname_fallback;
} label_ctx;

/* The label getter for pdr_target_matches(): NULL when absent. */
static const char *label_get(void *ctx, const char *name)
{
    const label_ctx *l = ctx;
    const cJSON *it = l->labels ? cJSON_GetObjectItemCaseSensitive(l->labels, name) : NULL;
    if (cJSON_IsString(it)) return it->valuestring;
    if (l->alertname_fallback && !strcmp(name, "alertname")) return l->alertname_fallback;
    return NULL;
}

typedef struct label_pair {
    const char *name, *value;
} label_pair;

static int label_pair_cmp(const void *a, const void *b)
{
    const label_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    /* By value too, so duplicate names still hash the same every time. */
    return c ? c : strcmp(x->value, y->value);
}

/* The fingerprint of an alert that brings none: hex SHA-256 of its labels
** (alertname defaulting to alertname_fallback) sorted by name, one
** "name=value\n" line each. */
static pdr_rc labels_fingerprint(const cJSON *labels, const char *alertname_fallback,
                                 char out[PDR_SHA256_HEX_LEN])
{
    label_pair *pairs = NULL;
    char *text = NULL, *p;
    size_t n = 0, max = 1, size = 1;
    const cJSON *it;
    pdr_rc rc = PDR_ERR_NOMEM;

    if (labels) max += (size_t)cJSON_GetArraySize(labels);
    pairs = cJSON_malloc(max * sizeof *pairs);
    if (!pairs) goto out;
    if (labels) {
        cJSON_ArrayForEach(it, labels) {
            if (!cJSON_IsString(it) || !it->string) continue;
            pairs[n].name = it->string;
            pairs[n++].value = it->valuestring;
        }
    }
    if (alertname_fallback && !get_present(labels, "alertname") && n < max) {
        pairs[n].name = "alertname";
        pairs[n++].value = alertname_fallback;
    }
    qsort(pairs, n, sizeof *pairs, label_pair_cmp);
    for (size_t i = 0; i < n; i++) size += strlen(pairs[i].name) + strlen(pairs[i].value) + 2;
    text = cJSON_malloc(size);
    if (!text) goto out;
    p = text;
    for (size_t i = 0; i < n; i++) {
        size_t ln = strlen(pairs[i].name), lv = strlen(pairs[i].value);
        memcpy(p, pairs[i].name, ln);
        p += ln;
        *p++ = '=';
        memcpy(p, pairs[i].value, lv);
        p += lv;
        *p++ = '\n';
    }
    *p = '\0';
    rc = pdr_sha256_hex(text, (size_t)(p - text), out);
out:
    cJSON_free(pairs);
    cJSON_free(text);
    return rc;
}

/* PagerDuty severity for a received one (see the table in the header). */
static const char *severity_map(const char *in, const pdr_config *cfg)
{
    static const char *const names[] = {"critical", "error", "warning", "info"};
    char low[16];
    size_t i;

    if (!in) return pdr_severity_name(cfg->default_severity);
    for (i = 0; in[i] && i < sizeof low - 1; i++)
        low[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] - 'A' + 'a' : in[i]);
    if (in[i]) return pdr_severity_name(cfg->default_severity);   /* too long to be one */
    low[i] = '\0';
    for (i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(low, names[i])) return names[i];
    if (!strcmp(low, "noise")) return "info";
    return pdr_severity_name(cfg->default_severity);
}

/* "[SEVERITY] NAME: text", "[SEVERITY] NAME - AI: reasoning" or "[SEVERITY] NAME". */
static char *summary_make(const alert_view *v, const char *severity)
{
    char sev[16];
    const char *text = v->reasoning, *sep = " - AI: ";
    size_t i, size;
    char *s;

    for (i = 0; severity[i] && i < sizeof sev - 1; i++)
        sev[i] = (char)(severity[i] >= 'a' && severity[i] <= 'z' ? severity[i] - 'a' + 'A' : severity[i]);
    sev[i] = '\0';
    if (!text) {
        sep = ": ";
        text = get_str(v->annotations, "summary");
        if (!text) text = get_str(v->annotations, "description");
    }
    if (!text) sep = text = "";
    size = strlen(sev) + strlen(v->name) + strlen(sep) + strlen(text) + 4;
    s = cJSON_malloc(size);
    if (s) snprintf(s, size, "[%s] %s%s%s", sev, v->name, sep, text);
    return s;
}

static pdr_rc add_link(cJSON *links, const char *href, const char *text)
{
    cJSON *l;
    /* PagerDuty refuses a blank href: skip it rather than lose the page. */
    if (is_blank(href)) return PDR_OK;
    l = cJSON_CreateObject();
    if (!l) return PDR_ERR_NOMEM;
    if (!cJSON_AddItemToArray(links, l)) {
        cJSON_Delete(l);
        return PDR_ERR_NOMEM;
    }
    if (add_str(l, "href", href) || add_str(l, "text", text)) return PDR_ERR_NOMEM;
    return PDR_OK;
}

/* links[] of an alert: NULL in *out when it has none. */
static pdr_rc links_make(const alert_view *v, cJSON **out)
{
    cJSON *links = cJSON_CreateArray();
    pdr_rc rc = PDR_ERR_NOMEM;

    *out = NULL;
    if (!links) goto out;
    rc = add_link(links, v->generator_url, "Source");
    if (rc) goto out;
    rc = add_link(links, get_str(v->annotations, "runbook_url"), "Runbook");
    if (rc) goto out;
    rc = add_link(links, get_str(v->annotations, "dashboard_url"), "Dashboard");
    if (rc) goto out;
    rc = add_link(links, get_str(v->annotations, "grafana_url"), "Dashboard");
    if (rc) goto out;
    if (links->child) {
        *out = links;
        links = NULL;
    }
out:
    cJSON_Delete(links);
    return rc;
}

/* ---- building an event: collect one status, check it once ----------------
** The bind-then-check idiom of db/dbInt.h (db_bind_text and friends): each
** put_* takes the status *rc and does nothing once it holds an error, so a
** builder makes all its additions in a row and checks *rc once at the end. An
** item handed to put_item is owned by it: added, or deleted on failure or
** when *rc was already set. */

/* Sets *rc to PDR_ERR_NOMEM when p is NULL (and *rc was still PDR_OK). */
static void put_check(const void *p, pdr_rc *rc)
{
    if (!*rc && !p) *rc = PDR_ERR_NOMEM;
}

static void put_str(cJSON *obj, const char *name, const char *value, pdr_rc *rc)
{
    if (!*rc) *rc = add_str(obj, name, value);
}

static void put_copy(cJSON *obj, const char *name, const cJSON *item, pdr_rc *rc)
{
    if (!*rc) *rc = add_copy(obj, name, item);
}

static void put_item(cJSON *obj, const char *name, cJSON *item, pdr_rc *rc)
{
    if (*rc) {
        cJSON_Delete(item);
        return;
    }
    *rc = add_item(obj, name, item);
}

/* A new object or array added as name (NULL name: appended to the array obj);
** NULL once *rc holds an error. */
static cJSON *put_new(cJSON *obj, const char *name, int array, pdr_rc *rc)
{
    cJSON *it;
    if (*rc) return NULL;
    it = array ? cJSON_CreateArray() : cJSON_CreateObject();
    put_check(it, rc);
    if (*rc) return NULL;
    if (!(name ? cJSON_AddItemToObject(obj, name, it) : cJSON_AddItemToArray(obj, it))) {
        cJSON_Delete(it);
        *rc = PDR_ERR_NOMEM;
        return NULL;
    }
    return it;
}

/* The event for one alert and one target. */
static pdr_rc event_make(const alert_view *v, const pdr_config *cfg, const pdr_target *t,
                         const char *dedup_key, cJSON **out)
{
    cJSON *ev = cJSON_CreateObject(), *payload, *links = NULL, *images, *img;
    const char *severity = severity_map(v->severity_in, cfg);
    const char *source, *group, *snapshot = get_str(v->annotations, "snapshot_url");
    /* PagerDuty: acknowledge and resolve carry nothing else than the key. */
    int full = v->change || v->act == PDR_ACTION_TRIGGER;
    char *summary = NULL;
    pdr_rc rc = PDR_OK;

    *out = NULL;
    put_check(ev, &rc);
    put_str(ev, "routing_key", t->routing_key, &rc);
    if (!v->change) {
        put_str(ev, "event_action", pdr_action_name(v->act), &rc);
        put_str(ev, "dedup_key", dedup_key, &rc);
    }
    if (full) {
        payload = put_new(ev, "payload", 0, &rc);
        if (!rc) summary = summary_make(v, severity);
        put_check(summary, &rc);
        put_str(payload, "summary", summary, &rc);
        source = get_str(v->labels, "instance");
        if (is_blank(source)) source = is_blank(cfg->source) ? "localhost" : cfg->source;
        put_str(payload, "source", source, &rc);
        if (!v->change) put_str(payload, "severity", severity, &rc);
        put_str(payload, "timestamp", timestamp_usable(v->starts_at) ? v->starts_at : NULL, &rc);
        if (!v->change) {
            group = get_str(v->labels, "cluster");
            if (!group) group = get_str(v->labels, "namespace");
            put_str(payload, "component", get_str(v->labels, "job"), &rc);
            put_str(payload, "group", group, &rc);
            put_str(payload, "class", v->class_name, &rc);
        }
        put_copy(payload, "custom_details", v->details, &rc);
        if (!rc) rc = links_make(v, &links);
        if (links) put_item(ev, "links", links, &rc);
    }
    if (full && !v->change) {
        /* A blank src would be refused (an http one is dropped by the check). */
        if (!is_blank(snapshot)) {
            images = put_new(ev, "images", 1, &rc);
            img = put_new(images, NULL, 0, &rc);
            put_str(img, "src", snapshot, &rc);
            put_str(img, "alt", "snapshot", &rc);
        }
        put_str(ev, "client", v->client, &rc);
        put_str(ev, "client_url", v->client_url, &rc);
    }

    cJSON_free(summary);
    if (rc) {
        cJSON_Delete(ev);
        return rc;
    }
    *out = ev;
    return PDR_OK;
}

/* A webhook target's share of one alert: for Alertmanager, the alert joins
** the target's array (one event per body, made by am_webhooks); for
** /v1/alerts, the alert object is one event. */
static pdr_rc route_webhook(const alert_view *v, const pdr_config *cfg, const pdr_target *t, const char *fp,
                            normalize_result *out, size_t *cap)
{
    cJSON **arr;
    int64_t ms = 0;
    const char *when = v->act == PDR_ACTION_RESOLVE ? v->ends_at : v->starts_at;

    if (v->am_alerts) {
        arr = &v->am_alerts[t - cfg->targets];
        cJSON *copy;
        if (!*arr && !(*arr = cJSON_CreateArray())) return PDR_ERR_NOMEM;
        copy = cJSON_Duplicate(v->obj, 1);
        if (!copy || !cJSON_AddItemToArray(*arr, copy)) {
            cJSON_Delete(copy);
            return PDR_ERR_NOMEM;
        }
        return PDR_OK;
    }
    if (!timestamp_usable(when) || pdr_timestamp_parse_ms(when, &ms)) ms = 0;
    return emit_webhook(out, cap, t, v->act, fp, severity_map(v->severity_in, cfg),
                        cJSON_PrintUnformatted(v->obj), ms);
}

/* One alert to one target: its PagerDuty event, or its webhook share. */
static pdr_rc route_to(const alert_view *v, const pdr_config *cfg, const pdr_target *t, const char *fp,
                       normalize_result *out, size_t *cap)
{
    char dk[PDR_SHA256_HEX_LEN];
    cJSON *ev = NULL;
    pdr_rc rc;

    if (t->webhook_url) return route_webhook(v, cfg, t, fp, out, cap);
    /* A change event has no incident to resolve or acknowledge. */
    if (v->change && v->act != PDR_ACTION_TRIGGER) {
        pdr_log(PDR_LOG_DEBUG, "change alert not firing: nothing to send", "alertname", v->name,
                "fingerprint", fp, NULL);
        return PDR_OK;
    }
    rc = pdr_dedup_key_derive(t->routing_key, fp, dk);
    if (!rc) rc = event_make(v, cfg, t, dk, &ev);
    if (!rc) rc = emit(out, cap, ev, v->change ? PDR_EVENT_CHANGE : PDR_EVENT_ALERT, t->name, fp, v->ends_at);
    cJSON_Delete(ev);
    return rc;
}

/* Routes one alert: to every matching target, then to fallback_target when
** no PagerDuty target matched, or one unrouted count. */
static pdr_rc alert_route(const alert_view *v, const pdr_config *cfg, normalize_result *out, size_t *cap)
{
    label_ctx lc = {v->labels, v->alertname_fallback};
    char fp_hash[PDR_SHA256_HEX_LEN];
    const char *fp = v->fingerprint_in;
    const pdr_target *fb = cfg->fallback_target ? pdr_config_target(cfg, cfg->fallback_target) : NULL;
    size_t matched = 0, pd_matched = 0;
    int fb_matched = 0;
    pdr_rc rc = PDR_OK;

    if (!fp) {
        rc = labels_fingerprint(v->labels, v->alertname_fallback, fp_hash);
        if (rc) return rc;
        fp = fp_hash;
    }
    /* The details go into every event of this alert: fingerprint included. */
    if (v->details && !get_present(v->details, "fingerprint")) {
        rc = add_str(v->details, "fingerprint", fp);
        if (rc) return rc;
    }
    for (size_t i = 0; i < cfg->n_targets; i++) {
        const pdr_target *t = &cfg->targets[i];
        if (!pdr_target_matches(t, label_get, &lc)) continue;
        matched++;
        if (!t->webhook_url) pd_matched++;
        if (t == fb) fb_matched = 1;
        rc = route_to(v, cfg, t, fp, out, cap);
        if (rc) return rc;
    }
    if (!pd_matched && fb && !fb_matched) {
        matched++;
        rc = route_to(v, cfg, fb, fp, out, cap);
        if (rc) return rc;
    }
    if (!matched) {
        /* Logged once per body (finish()), the first one by name. */
        if (!out->unrouted++) {
            snprintf(out->unrouted_first, sizeof out->unrouted_first, "%s", v->name);
        }
    }
    return PDR_OK;
}

/* Validates a labels object: every value a string. path names it in errors. */
static void check_labels(const cJSON *labels, const char *path, pdr_event_errors *errs)
{
    const cJSON *it;
    if (!cJSON_IsObject(labels)) {
        pdr_event_err_add(errs, "'%s' must be an object", path);
        return;
    }
    cJSON_ArrayForEach(it, labels) {
        if (!cJSON_IsString(it)) pdr_event_err_add(errs, "'%s.%s' must be a string", path, it->string ? it->string : "");
    }
}

/* An optional string field: absent, null or a string. */
static void check_opt_string(const cJSON *obj, const char *name, const char *prefix,
                             pdr_event_errors *errs)
{
    const cJSON *it = get_present(obj, name);
    if (it && !cJSON_IsString(it)) pdr_event_err_add(errs, "'%s%s' must be a string", prefix, name);
}

static int is_change(const cJSON *labels)
{
    const char *c = get_str(labels, "change_event");
    return c && !strcmp(c, "true");
}

/* ---- Alertmanager webhook ----------------------------------------------- */

static void am_check_alert(const cJSON *a, size_t i, pdr_event_errors *errs)
{
    static const char *const strings[] = {"startsAt", "endsAt", "generatorURL", "fingerprint"};
    char prefix[40], path[64];
    const char *status;

    if (!cJSON_IsObject(a)) {
        pdr_event_err_add(errs, "'alerts[%zu]' must be an object", i);
        return;
    }
    snprintf(prefix, sizeof prefix, "alerts[%zu].", i);
    status = get_str(a, "status");
    if (!status || (strcmp(status, "firing") && strcmp(status, "resolved")))
        pdr_event_err_add(errs, "'alerts[%zu].status' must be \"firing\" or \"resolved\"", i);
    snprintf(path, sizeof path, "%slabels", prefix);
    check_labels(cJSON_GetObjectItemCaseSensitive(a, "labels"), path, errs);
    if (get_present(a, "annotations") && !cJSON_IsObject(get_present(a, "annotations")))
        pdr_event_err_add(errs, "'%sannotations' must be an object", prefix);
    for (size_t k = 0; k < sizeof strings / sizeof *strings; k++)
        check_opt_string(a, strings[k], prefix, errs);
}

static void am_check(const cJSON *root, pdr_event_errors *errs)
{
    static const char *const strings[] = {"groupKey", "status", "receiver", "externalURL"};
    const cJSON *version, *alerts, *a;
    size_t i = 0;

    if (!cJSON_IsObject(root)) {
        pdr_event_err_add(errs, "Webhook body must be a JSON object");
        return;
    }
    version = get_present(root, "version");
    if (version && !(cJSON_IsString(version) && !strcmp(version->valuestring, "4")))
        pdr_event_err_add(errs, "'version' must be \"4\"");
    for (size_t k = 0; k < sizeof strings / sizeof *strings; k++)
        check_opt_string(root, strings[k], "", errs);
    alerts = cJSON_GetObjectItemCaseSensitive(root, "alerts");
    if (!cJSON_IsArray(alerts)) {
        pdr_event_err_add(errs, "'alerts' is missing or not an array");
        return;
    }
    cJSON_ArrayForEach(a, alerts) am_check_alert(a, i++, errs);
}

/* custom_details with what both alert models share: copies of the labels and
** annotations; the caller adds its own members (fingerprint is added by
** alert_route). */
static pdr_rc details_new(const cJSON *a, cJSON **out)
{
    cJSON *d = cJSON_CreateObject();
    pdr_rc rc = d ? add_copy(d, "labels", get_present(a, "labels")) : PDR_ERR_NOMEM;
    if (!rc) rc = add_copy(d, "annotations", get_present(a, "annotations"));
    if (rc) {
        cJSON_Delete(d);
        d = NULL;
    }
    *out = d;
    return rc;
}

/* Routes v with its details (taken: freed here, whatever happens). */
static pdr_rc alert_emit(alert_view *v, cJSON *details, const pdr_config *cfg, normalize_result *out, size_t *cap)
{
    pdr_rc rc;
    v->details = details;
    rc = alert_route(v, cfg, out, cap);
    cJSON_Delete(details);
    return rc;
}

/* custom_details of a webhook alert. */
static pdr_rc am_details(const cJSON *a, const cJSON *root, cJSON **out)
{
    static const char *const from_alert[] = {"startsAt", "fingerprint", "generatorURL"};
    static const char *const from_root[] = {"receiver", "externalURL"};
    pdr_rc rc = details_new(a, out);
    for (size_t k = 0; !rc && k < sizeof from_alert / sizeof *from_alert; k++)
        rc = add_str(*out, from_alert[k], get_str(a, from_alert[k]));
    for (size_t k = 0; !rc && k < sizeof from_root / sizeof *from_root; k++)
        rc = add_str(*out, from_root[k], get_str(root, from_root[k]));
    if (rc) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

/* The payload for one webhook target: root's members in their order, with
** "alerts" replaced by those routed there (taken) and "status" recomputed
** for them. */
static pdr_rc am_webhook_payload(const cJSON *root, cJSON *alerts, int firing, char **text_out)
{
    cJSON *p = cJSON_CreateObject();
    const cJSON *m;
    pdr_rc rc = p ? PDR_OK : PDR_ERR_NOMEM;

    *text_out = NULL;
    cJSON_ArrayForEach(m, root) {
        if (rc) break;
        if (!strcmp(m->string, "alerts")) {
            rc = add_item(p, "alerts", alerts);
            alerts = NULL;
        } else if (!strcmp(m->string, "status") && cJSON_IsString(m)) {
            rc = add_str(p, "status", firing ? "firing" : "resolved");
        } else {
            rc = add_copy(p, m->string, m);
        }
    }
    cJSON_Delete(alerts);
    if (!rc && !(*text_out = cJSON_PrintUnformatted(p))) rc = PDR_ERR_NOMEM;
    cJSON_Delete(p);
    return rc;
}

/* One event per webhook target that alerts were routed to, in target order
** (after the body's PagerDuty events): trigger when any of its alerts fires
** (the severity of the most severe firing one), else resolve. */
static pdr_rc am_webhooks(const cJSON *root, const pdr_config *cfg, cJSON **am_alerts, normalize_result *out,
                          size_t *cap)
{
    const char *group = get_str(root, "groupKey");
    for (size_t i = 0; i < cfg->n_targets; i++) {
        cJSON *alerts = am_alerts[i];
        const cJSON *a;
        int firing = 0, urg = PDR_URGENCY_INFO + 1;
        char *text = NULL;
        pdr_rc rc;
        if (!alerts) continue;
        am_alerts[i] = NULL;
        cJSON_ArrayForEach(a, alerts) {
            if (strcmp(get_str(a, "status"), "firing")) continue;
            firing = 1;
            int u = pdr_urgency_of_severity(severity_map(get_str(get_present(a, "labels"), "severity"), cfg));
            if (u < urg) urg = u;
        }
        rc = am_webhook_payload(root, alerts, firing, &text);
        if (!rc)
            rc = emit_webhook(out, cap, &cfg->targets[i], firing ? PDR_ACTION_TRIGGER : PDR_ACTION_RESOLVE,
                              group ? group : "", firing ? pdr_urgency_name(urg) : "", text, 0);
        else
            cJSON_free(text);
        if (rc) return rc;
    }
    return PDR_OK;
}

pdr_rc normalize_alertmanager(const char *body, size_t len, const pdr_config *cfg, normalize_result *out)
{
    cJSON *root = NULL, *details = NULL;
    cJSON *am_alerts[PDR_CONFIG_MAX_TARGETS] = {NULL};
    const cJSON *a;
    size_t cap = 0;
    pdr_rc rc;

    memset(out, 0, sizeof *out);
    rc = parse_body(body, len, "body", out, &root);
    if (rc) goto out;
    am_check(root, &out->errs);
    rc = PDR_ERR_INVALID;
    if (out->errs.n) goto out;

    rc = PDR_OK;
    out->alerts = (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "alerts"));
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(root, "alerts")) {
        alert_view v;
        memset(&v, 0, sizeof v);
        v.act = !strcmp(get_str(a, "status"), "firing") ? PDR_ACTION_TRIGGER : PDR_ACTION_RESOLVE;
        v.labels = get_present(a, "labels");
        v.annotations = get_present(a, "annotations");
        v.change = is_change(v.labels);
        v.class_name = get_str(v.labels, "alertname");
        v.name = v.class_name ? v.class_name : "alert";
        v.severity_in = get_str(v.labels, "severity");
        v.fingerprint_in = get_str(a, "fingerprint");
        v.starts_at = get_str(a, "startsAt");
        v.ends_at = get_str(a, "endsAt");
        v.generator_url = get_str(a, "generatorURL");
        v.client = "Alertmanager";
        v.client_url = get_str(root, "externalURL");
        v.obj = a;
        v.am_alerts = am_alerts;
        rc = am_details(a, root, &details);
        if (!rc) rc = alert_emit(&v, details, cfg, out, &cap);
        if (rc) goto out;
    }
    rc = am_webhooks(root, cfg, am_alerts, out, &cap);
out:
    for (size_t i = 0; i < PDR_CONFIG_MAX_TARGETS; i++) cJSON_Delete(am_alerts[i]);
    return finish(out, root, rc);
}

/* ---- /v1/alerts: the original service's model --------------------------- */

static pdr_action alerts_status(const char *s)
{
    if (!s) return (pdr_action)0;
    if (!strcmp(s, "firing")) return PDR_ACTION_TRIGGER;
    if (!strcmp(s, "resolved")) return PDR_ACTION_RESOLVE;
    if (!strcmp(s, "acknowledged") || !strcmp(s, "silenced")) return PDR_ACTION_ACKNOWLEDGE;
    return (pdr_action)0;
}

/* prefix: "" for a single object, "[i]." for an element of an array. */
static void alerts_check_one(const cJSON *a, const char *prefix, pdr_event_errors *errs)
{
    static const char *const strings[] = {"fingerprint", "starts_at", "ends_at", "generator_url"};
    const cJSON *it, *cls;
    char path[64];

    if (!cJSON_IsObject(a)) {
        /* prefix is "[i]."; the element itself is "[i]" */
        pdr_event_err_add(errs, "'%.*s' must be an object", (int)(strlen(prefix) ? strlen(prefix) - 1 : 0), prefix);
        return;
    }
    it = get_present(a, "alert_name");
    if (!it || (cJSON_IsString(it) && is_blank(it->valuestring)))
        pdr_event_err_add(errs, "'%salert_name' is missing or blank", prefix);
    else if (!cJSON_IsString(it))
        pdr_event_err_add(errs, "'%salert_name' must be a string", prefix);
    if (!alerts_status(get_str(a, "status")))
        pdr_event_err_add(errs, "'%sstatus' must be one of firing, resolved, acknowledged, silenced", prefix);
    if (get_present(a, "labels")) {
        snprintf(path, sizeof path, "%slabels", prefix);
        check_labels(get_present(a, "labels"), path, errs);
    }
    if (get_present(a, "annotations") && !cJSON_IsObject(get_present(a, "annotations")))
        pdr_event_err_add(errs, "'%sannotations' must be an object", prefix);
    for (size_t k = 0; k < sizeof strings / sizeof *strings; k++)
        check_opt_string(a, strings[k], prefix, errs);
    cls = get_present(a, "classification");
    if (cls && !cJSON_IsObject(cls)) {
        pdr_event_err_add(errs, "'%sclassification' must be an object", prefix);
    } else if (cls) {
        snprintf(path, sizeof path, "%sclassification.", prefix);
        check_opt_string(cls, "severity", path, errs);
        check_opt_string(cls, "reasoning", path, errs);
    }
}

static pdr_rc alerts_details(const cJSON *a, cJSON **out)
{
    static const char *const strings[] = {"starts_at", "ends_at", "fingerprint", "generator_url"};
    pdr_rc rc = details_new(a, out);
    for (size_t k = 0; !rc && k < sizeof strings / sizeof *strings; k++)
        rc = add_str(*out, strings[k], get_str(a, strings[k]));
    if (!rc) rc = add_copy(*out, "classification", get_present(a, "classification"));
    if (rc) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

pdr_rc normalize_alerts(const char *body, size_t len, const pdr_config *cfg, normalize_result *out)
{
    cJSON *root = NULL, *details = NULL;
    const cJSON *a;
    size_t cap = 0, i = 0;
    pdr_rc rc;

    memset(out, 0, sizeof *out);
    rc = parse_body(body, len, "body", out, &root);
    if (rc) goto out;
    if (cJSON_IsObject(root)) {
        alerts_check_one(root, "", &out->errs);
    } else if (cJSON_IsArray(root)) {
        cJSON_ArrayForEach(a, root) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "[%zu].", i++);
            alerts_check_one(a, prefix, &out->errs);
        }
    } else {
        pdr_event_err_add(&out->errs, "Body must be an alert object or an array of alert objects");
    }
    rc = PDR_ERR_INVALID;
    if (out->errs.n) goto out;

    rc = PDR_OK;
    /* One object is handled as the only element of an array. */
    a = cJSON_IsObject(root) ? root : root->child;
    out->alerts = cJSON_IsObject(root) ? 1 : (size_t)cJSON_GetArraySize(root);
    for (; a; a = cJSON_IsObject(root) ? NULL : a->next) {
        const cJSON *cls = get_present(a, "classification");
        alert_view v;
        memset(&v, 0, sizeof v);
        v.act = alerts_status(get_str(a, "status"));
        v.labels = get_present(a, "labels");
        v.annotations = get_present(a, "annotations");
        v.change = is_change(v.labels);
        v.alertname_fallback = get_str(a, "alert_name");
        v.name = v.class_name = v.alertname_fallback;
        v.severity_in = get_str(cls, "severity");
        if (!v.severity_in) v.severity_in = get_str(v.labels, "severity");
        v.reasoning = get_str(cls, "reasoning");
        if (is_blank(v.reasoning)) v.reasoning = NULL;
        v.fingerprint_in = get_str(a, "fingerprint");
        v.starts_at = get_str(a, "starts_at");
        v.ends_at = get_str(a, "ends_at");
        v.generator_url = get_str(a, "generator_url");
        v.obj = a;
        rc = alerts_details(a, &details);
        if (!rc) rc = alert_emit(&v, details, cfg, out, &cap);
        if (rc) goto out;
    }
out:
    return finish(out, root, rc);
}
