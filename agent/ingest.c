/*
** ingest.c — the HTTP ingest server (see ingest.h for the endpoints and the
** contract).
**
** A request goes through libmicrohttpd's access handler three ways:
**   1st call  (headers read)   route, method, auth, Content-Length checked;
**                              a refusal is queued at once (MHD then skips
**                              the body and closes the connection)
**   next calls (body chunks)   appended to a buffer capped at INGEST_BODY_MAX;
**                              a chunked body over the cap is read and dropped
**   last call (body complete)  parsed by normalize.c, handed to the writer,
**                              answered after the commit
**
** Nothing is stored unless the whole body was valid: a 400 leaves the outbox
** exactly as it was.
*/
#include "ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "normalize.h"

/* Seconds a client is asked to wait: the outbox is full (the sender needs
** time to drain it); the disk failed or pdrelay is restarting. */
#define RETRY_AFTER_FULL "60"
#define RETRY_AFTER_SOON "5"

/* At shutdown, how long requests already begun may take to finish. */
#define INGEST_DRAIN_MS 5000

/* Stack of each connection's thread: a request needs a few KB of its own,
** and cJSON recursion is capped at CJSON_NESTING_LIMIT levels. */
#define INGEST_THREAD_STACK (512 * 1024)

typedef enum route {
    ROUTE_NONE = 0,
    ROUTE_ENQUEUE,          /* /v2/enqueue, /v2/events */
    ROUTE_CHANGE,           /* /v2/change/enqueue */
    ROUTE_ALERTMANAGER,     /* /v1/alertmanager */
    ROUTE_ALERTS,           /* /v1/alerts */
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS           /* Prometheus text; behind the token when one is set */
} route;

static const struct {
    const char *path;
    route r;
} routes[] = {
    {"/v2/enqueue", ROUTE_ENQUEUE},
    {"/v2/events", ROUTE_ENQUEUE},
    {"/v2/change/enqueue", ROUTE_CHANGE},
    {"/v1/alertmanager", ROUTE_ALERTMANAGER},
    {"/v1/alerts", ROUTE_ALERTS},
    {"/healthz", ROUTE_HEALTHZ},
    {"/readyz", ROUTE_READYZ},
    {"/metrics", ROUTE_METRICS},
};

#define ENDPOINT_LIST "POST /v2/enqueue, POST /v2/events, POST /v2/change/enqueue, " \
                      "POST /v1/alertmanager, POST /v1/alerts, GET /healthz, GET /readyz, GET /metrics"

/* A config in use, with the auth token read from its file. Requests hold a
** reference so a reload never frees what a request is reading. */
typedef struct cfg_ref {
    const pdr_config *cfg;
    pdr_config *owned;      /* non-NULL when the ingest must destroy it */
    int refs;
    int has_token;
    unsigned char token_sha[32];
} cfg_ref;

struct ingest {
    writer *w;
    pthread_mutex_t mu;
    cfg_ref *cur;
    struct MHD_Daemon *tcp;
    struct MHD_Daemon *unix_d;
    char *unix_path;        /* to unlink on stop */
    atomic_int stopping;
    int active;             /* requests begun and not yet completed (under mu) */
    pthread_cond_t idle_cv; /* broadcast when active drops to 0 */
};

/* Per-request state (MHD's con_cls). */
typedef struct req {
    route r;
    cfg_ref *ref;           /* the config this request runs with, held until it completes */
    char *buf;
    size_t len, cap;
    int too_big;
} req;

/* ---- config references -------------------------------------------------- */

/* Reads the token (first line, trailing whitespace removed) and keeps only
** its SHA-256, so comparisons take the same time whatever the guess. */
static pdr_rc token_load(const char *path, cfg_ref *ref, char *errbuf, size_t errsz)
{
    char line[4096];
    size_t n;
    FILE *f;

    ref->has_token = 0;
    if (!path) return PDR_OK;
    f = fopen(path, "re");
    if (!f) {
        snprintf(errbuf, errsz, "%s: cannot read the auth token file: %s", path, strerror(errno));
        return PDR_ERR_CONFIG;
    }
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    n = strcspn(line, "\r\n");
    while (n && (line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
    line[n] = '\0';
    if (n == 0) {
        snprintf(errbuf, errsz, "%s: the auth token file is empty; put the token on its first line", path);
        return PDR_ERR_CONFIG;
    }
    pdr_rc rc = pdr_sha256_raw(line, n, ref->token_sha);
    memset(line, 0, sizeof line);
    if (rc) return rc;
    ref->has_token = 1;
    return PDR_OK;
}

/* Drops a reference; the last one frees a config replaced by a reload. */
static void cfg_unref(cfg_ref *ref)
{
    pdr_config_destroy(ref->owned);
    free(ref);
}

static void cfg_release(ingest *in, cfg_ref *ref)
{
    int last;
    pthread_mutex_lock(&in->mu);
    last = --ref->refs == 0;
    pthread_mutex_unlock(&in->mu);
    if (last) cfg_unref(ref);
}

/* ---- replies ---------------------------------------------------------- */

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, char *text,
                                  const char *retry_after, const char *allow)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    if (!text) return MHD_NO;   /* out of memory: MHD closes the connection */
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, cJSON *body,
                                  const char *retry_after, const char *allow)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    return reply_text(c, status, text, retry_after, allow);
}

/* {"status":…,"message":…,"errors":[…]}: PagerDuty's error shape. */
static cJSON *error_body(const char *status, const char *message, const char *const *errs, size_t n)
{
    cJSON *o = cJSON_CreateObject(), *a;
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddStringToObject(o, "message", message);
    a = cJSON_AddArrayToObject(o, "errors");
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(errs[i]));
    return o;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *st,
                                   const char *message, const char *retry_after, const char *allow,
                                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *st,
                                   const char *message, const char *retry_after, const char *allow,
                                   const char *fmt, ...)
{
    char err[512];
    const char *errs[1] = {err};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, sizeof err, fmt, ap);
    va_end(ap);
    return reply_json(c, status, error_body(st, message, errs, 1), retry_after, allow);
}

static const char *route_name(route r)
{
    switch (r) {
    case ROUTE_ENQUEUE: return "enqueue";
    case ROUTE_CHANGE: return "change";
    case ROUTE_ALERTMANAGER: return "alertmanager";
    case ROUTE_ALERTS: return "alerts";
    case ROUTE_HEALTHZ: return "healthz";
    case ROUTE_READYZ: return "readyz";
    case ROUTE_METRICS: return "metrics";
    default: return "none";
    }
}

/* ---- ingest of a body ------------------------------------------------- */

/* 503 for a commit that did not happen. */
static enum MHD_Result reply_unavailable(struct MHD_Connection *c, pdr_rc rc)
{
    if (rc == PDR_ERR_SHUTDOWN)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Shutting down",
                           RETRY_AFTER_SOON, NULL, "pdrelay is shutting down; retry shortly");
    if (rc == PDR_ERR_FULL)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Outbox full",
                           RETRY_AFTER_FULL, NULL,
                           "the outbox holds [outbox] max_events events; retry when it drains");
    return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Outbox not writable",
                       RETRY_AFTER_SOON, NULL, "the event was not stored: %s; nothing queued was harmed",
                       pdr_strerror(rc));
}

static enum MHD_Result reply_invalid(struct MHD_Connection *c, route r, const norm_result *nr)
{
    const char *errs[PDR_EVENT_MAX_ERRORS];
    for (size_t i = 0; i < nr->errs.n; i++) errs[i] = nr->errs.msgs[i];
    metrics_inc(MC_INGEST, route_name(r), "rejected");
    pdr_log(PDR_LOG_INFO, "request refused", "endpoint", route_name(r), "status", "400", "error",
            nr->errs.n ? nr->errs.msgs[0] : "invalid", NULL);
    return reply_json(c, MHD_HTTP_BAD_REQUEST,
                      error_body("invalid event", nr->parse_error ? "Unrecognized object" : "Event object is invalid",
                                 errs, nr->errs.n),
                      NULL, NULL);
}

static void log_repairs(const norm_event *ev)
{
    char red[16], chars[24], imgs[16], det[16];
    /* A generated dedup_key is not a repair: it is what PagerDuty does too. */
    if (!ev->rep.summary_chars && !ev->rep.images_dropped && !ev->rep.details_shrunk) return;
    snprintf(chars, sizeof chars, "%zu", ev->rep.summary_chars);
    snprintf(imgs, sizeof imgs, "%d", ev->rep.images_dropped);
    snprintf(det, sizeof det, "%d", ev->rep.details_shrunk);
    pdr_log(PDR_LOG_INFO, "event repaired", "key", pdr_redact(ev->routing_key, red, sizeof red),
            "dedup_key", ev->dedup_key[0] ? ev->dedup_key : NULL,
            "summary_cut_from", ev->rep.summary_chars ? chars : NULL,
            "images_dropped", ev->rep.images_dropped ? imgs : NULL,
            "details_shrunk", ev->rep.details_shrunk ? det : NULL, NULL);
}

static enum MHD_Result handle_post(ingest *in, struct MHD_Connection *c, req *rq, cfg_ref *ref)
{
    norm_result nr;
    db_event *evs = NULL;
    pdr_rc *res = NULL;
    pdr_rc rc;
    size_t queued = 0, coalesced = 0, full = 0, repaired = 0;
    enum MHD_Result ret;
    cJSON *o;

    if (atomic_load(&in->stopping)) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        return reply_unavailable(c, PDR_ERR_SHUTDOWN);
    }
    switch (rq->r) {
    case ROUTE_ENQUEUE: rc = norm_pagerduty(rq->buf, rq->len, PDR_EVENT_ALERT, &nr); break;
    case ROUTE_CHANGE: rc = norm_pagerduty(rq->buf, rq->len, PDR_EVENT_CHANGE, &nr); break;
    case ROUTE_ALERTMANAGER: rc = norm_alertmanager(rq->buf, rq->len, ref->cfg, &nr); break;
    default: rc = norm_alerts(rq->buf, rq->len, ref->cfg, &nr); break;
    }
    if (rc == PDR_ERR_INVALID) {
        ret = reply_invalid(c, rq->r, &nr);
        norm_result_cleanup(&nr);
        return ret;
    }
    if (rc) {
        norm_result_cleanup(&nr);
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        return reply_unavailable(c, rc);
    }
    if (nr.n) {
        evs = calloc(nr.n, sizeof *evs);
        res = calloc(nr.n, sizeof *res);
        if (!evs || !res) {
            rc = PDR_ERR_NOMEM;
            goto out_unavailable;
        }
        for (size_t i = 0; i < nr.n; i++) {
            const norm_event *e = &nr.evs[i];
            evs[i].routing_key = e->routing_key;
            evs[i].action = e->action;
            evs[i].dedup_key = e->dedup_key[0] ? e->dedup_key : NULL;
            evs[i].fingerprint = e->fingerprint;
            evs[i].body = e->body;
            evs[i].body_len = e->body_len;
        }
        rc = writer_submit(in->w, evs, nr.n, res, NULL);
        if (rc) goto out_unavailable;
        for (size_t i = 0; i < nr.n; i++) {
            char red[16];
            if (res[i] == PDR_OK) {
                queued++;
                if (nr.evs[i].repaired) repaired++;
                log_repairs(&nr.evs[i]);
            } else if (res[i] == PDR_COALESCED) {
                coalesced++;
            } else {
                full++;
            }
            if (pdr_log_enabled(PDR_LOG_DEBUG))
                pdr_log(PDR_LOG_DEBUG, res[i] == PDR_OK ? "queued" : res[i] == PDR_COALESCED ? "coalesced" : "refused",
                        "endpoint", route_name(rq->r), "key", pdr_redact(nr.evs[i].routing_key, red, sizeof red),
                        "target", nr.evs[i].target, "action", pdr_action_name(nr.evs[i].action),
                        "dedup_key", nr.evs[i].dedup_key[0] ? nr.evs[i].dedup_key : NULL, NULL);
        }
        if (full) {
            pdr_log(PDR_LOG_WARN, "outbox full: request refused with 503", "endpoint", route_name(rq->r), NULL);
            rc = PDR_ERR_FULL;
            goto out_unavailable;
        }
    }

    {
        static const char *const results[] = {"queued", "coalesced", "repaired", "unrouted"};
        const double counts[] = {(double)queued, (double)coalesced, (double)repaired, (double)nr.unrouted};
        metrics_add_each(MC_INGEST, route_name(rq->r), results, counts, 4);   /* one lock */
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    if (rq->r == ROUTE_ENQUEUE || rq->r == ROUTE_CHANGE) {
        cJSON_AddStringToObject(o, "message", "Event processed");
        if (nr.n && nr.evs[0].dedup_key[0]) cJSON_AddStringToObject(o, "dedup_key", nr.evs[0].dedup_key);
        ret = reply_json(c, MHD_HTTP_ACCEPTED, o, NULL, NULL);
    } else {
        cJSON_AddStringToObject(o, "message", "Alerts processed");
        cJSON_AddNumberToObject(o, "alerts", (double)nr.alerts);
        cJSON_AddNumberToObject(o, "events", (double)nr.n);
        cJSON_AddNumberToObject(o, "queued", (double)queued);
        cJSON_AddNumberToObject(o, "coalesced", (double)coalesced);
        cJSON_AddNumberToObject(o, "repaired", (double)nr.repaired);
        cJSON_AddNumberToObject(o, "unrouted", (double)nr.unrouted);
        ret = reply_json(c, MHD_HTTP_OK, o, NULL, NULL);
    }
    free(evs);
    free(res);
    norm_result_cleanup(&nr);
    return ret;

out_unavailable:
    metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
    free(evs);
    free(res);
    norm_result_cleanup(&nr);
    return reply_unavailable(c, rc);
}

/* GET /metrics: the registry, with the outbox gauges the probe just read
** (the last known ones if the database cannot be read now). */
static enum MHD_Result reply_metrics(struct MHD_Connection *c, const writer_stats *st)
{
    metrics_gauges g;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char *text;
    g.pending = st->pending;
    g.dead = st->dead;
    g.dedup_entries = st->dedup_entries;
    g.oldest_age_s = st->oldest_ms ? (double)(pdr_clock_now_ms() - st->oldest_ms) / 1000.0 : 0;
    if (g.oldest_age_s < 0) g.oldest_age_s = 0;
    text = metrics_render(&g);
    if (!text) return reply_unavailable(c, PDR_ERR_NOMEM);
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle_get(ingest *in, struct MHD_Connection *c, route r, cfg_ref *ref)
{
    cJSON *o;
    writer_stats st;
    pdr_rc rc;

    if (r == ROUTE_HEALTHZ) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddStringToObject(o, "version", PDR_VERSION);
        return reply_json(c, MHD_HTTP_OK, o, NULL, NULL);
    }
    if (atomic_load(&in->stopping)) return reply_unavailable(c, PDR_ERR_SHUTDOWN);
    rc = writer_probe(in->w, &st);
    if (r == ROUTE_METRICS) return reply_metrics(c, &st);
    if (rc) return reply_unavailable(c, rc);
    if (st.pending + st.dead >= ref->cfg->max_events)
        return reply_unavailable(c, PDR_ERR_FULL);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ready");
    cJSON_AddNumberToObject(o, "pending", (double)st.pending);
    cJSON_AddNumberToObject(o, "dead", (double)st.dead);
    cJSON_AddNumberToObject(o, "max_events", (double)ref->cfg->max_events);
    return reply_json(c, MHD_HTTP_OK, o, NULL, NULL);
}

/* ---- the access handler ------------------------------------------------ */

static route route_find(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0) return routes[i].r;
    return ROUTE_NONE;
}

static int is_post_route(route r)
{
    return r == ROUTE_ENQUEUE || r == ROUTE_CHANGE || r == ROUTE_ALERTMANAGER || r == ROUTE_ALERTS;
}

/* Constant time: both sides are SHA-256 digests of the same length. */
static int auth_ok(struct MHD_Connection *c, const cfg_ref *ref)
{
    const char *h;
    unsigned char sha[32];
    unsigned diff = 0;
    if (!ref->has_token) return 1;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    if (pdr_sha256_raw(h, strlen(h), sha)) return 0;
    for (size_t i = 0; i < sizeof sha; i++) diff |= (unsigned)(sha[i] ^ ref->token_sha[i]);
    return diff == 0;
}

/* The first call of a request: everything that can be refused before the
** body is read. Returns MHD_YES with *done = 0 to go on reading. */
static enum MHD_Result request_begin(ingest *in, struct MHD_Connection *c, req *rq, const char *url,
                                     const char *method, int *done)
{
    const char *cl;

    *done = 1;
    rq->r = route_find(url);
    if (rq->r == ROUTE_NONE)
        return reply_error(c, MHD_HTTP_NOT_FOUND, "not found", "Not found", NULL, NULL,
                           "no endpoint at %.200s; endpoints: " ENDPOINT_LIST, url);
    if (is_post_route(rq->r) && strcmp(method, "POST") != 0)
        return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", "Method not allowed", NULL,
                           "POST", "%s takes POST, not %.20s", url, method);
    if (!is_post_route(rq->r) && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", "Method not allowed", NULL,
                           "GET, HEAD", "%s takes GET, not %.20s", url, method);
    if (is_post_route(rq->r) || rq->r == ROUTE_METRICS) {
        if (!auth_ok(c, rq->ref)) {
            if (is_post_route(rq->r)) metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
            pdr_log(PDR_LOG_INFO, "request refused", "endpoint", route_name(rq->r), "status", "401", NULL);
            return reply_error(c, MHD_HTTP_UNAUTHORIZED, "unauthorized", "Unauthorized", NULL, NULL,
                               "this pdrelay requires the header 'Authorization: Bearer <token>' "
                               "with the token of [listen] auth_token_file");
        }
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > INGEST_BODY_MAX) {
            metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
            pdr_log(PDR_LOG_INFO, "request refused", "endpoint", route_name(rq->r), "status", "413", NULL);
            return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid event", "Request too large", NULL, NULL,
                               "the request body is %.20s bytes; the limit is %d bytes (512 KB)", cl,
                               INGEST_BODY_MAX);
        }
    }
    *done = 0;
    return MHD_YES;
}

static void body_append(req *rq, const char *data, size_t n)
{
    if (rq->too_big) return;
    if (rq->len + n > INGEST_BODY_MAX) {
        rq->too_big = 1;
        free(rq->buf);
        rq->buf = NULL;
        rq->len = rq->cap = 0;
        return;
    }
    if (rq->len + n > rq->cap) {
        size_t cap = rq->cap ? rq->cap : 4096;
        char *p;
        while (cap < rq->len + n) cap *= 2;
        if (cap > INGEST_BODY_MAX) cap = INGEST_BODY_MAX;
        p = realloc(rq->buf, cap);
        if (!p) {
            rq->too_big = 2;   /* out of memory: answered 503 */
            return;
        }
        rq->buf = p;
        rq->cap = cap;
    }
    memcpy(rq->buf + rq->len, data, n);
    rq->len += n;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    ingest *in = cls;
    req *rq = *con_cls;
    enum MHD_Result ret;

    if (!rq) {
        int done;
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        /* One lock per request start: count it and take the config. */
        pthread_mutex_lock(&in->mu);
        in->active++;
        rq->ref = in->cur;
        rq->ref->refs++;
        pthread_mutex_unlock(&in->mu);
        ret = request_begin(in, c, rq, url, method, &done);
        return ret;   /* done or not: MHD_YES reads on, a queued reply ends it */
    }
    if (*upload_data_size) {
        body_append(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->too_big == 1) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        pdr_log(PDR_LOG_INFO, "request refused", "endpoint", route_name(rq->r), "status", "413", NULL);
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid event", "Request too large", NULL, NULL,
                           "the request body is larger than %d bytes (512 KB)", INGEST_BODY_MAX);
    }
    if (rq->too_big == 2) return reply_unavailable(c, PDR_ERR_NOMEM);
    if (is_post_route(rq->r)) return handle_post(in, c, rq, rq->ref);
    return handle_get(in, c, rq->r, rq->ref);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ingest *in = cls;
    req *rq = *con_cls;
    cfg_ref *ref;
    int last;
    if (!rq) return;
    ref = rq->ref;
    free(rq->buf);
    free(rq);
    *con_cls = NULL;
    /* One lock per request end: uncount it and drop its config. */
    pthread_mutex_lock(&in->mu);
    if (--in->active == 0) pthread_cond_broadcast(&in->idle_cv);
    last = --ref->refs == 0;
    pthread_mutex_unlock(&in->mu);
    if (last) cfg_unref(ref);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
    pdr_log(PDR_LOG_WARN, "http server", "detail", msg, NULL);
}

/* ---- life cycle --------------------------------------------------------- */

pdr_rc ingest_create(const pdr_config *cfg, writer *w, ingest **out, char *errbuf, size_t errsz)
{
    ingest *in;
    cfg_ref *ref;
    pdr_rc rc;

    *out = NULL;
    in = calloc(1, sizeof *in);
    ref = calloc(1, sizeof *ref);
    if (!in || !ref) {
        free(in);
        free(ref);
        return PDR_ERR_NOMEM;
    }
    ref->cfg = cfg;
    ref->refs = 1;
    rc = token_load(cfg->auth_token_file, ref, errbuf, errsz);
    if (rc) {
        free(in);
        free(ref);
        return rc;
    }
    in->w = w;
    in->cur = ref;
    metrics_set_targets(cfg);
    pthread_mutex_init(&in->mu, NULL);
    pthread_cond_init(&in->idle_cv, NULL);
    *out = in;
    return PDR_OK;
}

/* Options every daemon shares; cfg gives the limits. */
static struct MHD_Daemon *daemon_start(ingest *in, const pdr_config *cfg, unsigned flags, int listen_fd,
                                       const struct sockaddr *sa)
{
    unsigned timeout_s = (unsigned)((cfg->idle_timeout_ms + 999) / 1000);
    flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
             MHD_USE_ITC;   /* for MHD_quiesce_daemon */
    if (listen_fd >= 0)
        return MHD_start_daemon(flags, 0, NULL, NULL, on_request, in,
                                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, in,   /* first, as MHD asks */
                                MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                                MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
                                MHD_OPTION_THREAD_STACK_SIZE, (size_t)INGEST_THREAD_STACK,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, in,
                                MHD_OPTION_END);
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, in,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, in,
                            MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)INGEST_THREAD_STACK,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, in,
                            MHD_OPTION_END);
}

static pdr_rc start_tcp(ingest *in, const pdr_config *cfg, char *errbuf, size_t errsz)
{
    struct addrinfo hints, *ai = NULL;
    char port[16], where[300];
    int gai;
    unsigned flags = 0;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", cfg->listen_port);
    snprintf(where, sizeof where, "%s:%d", cfg->listen_address, cfg->listen_port);
    gai = getaddrinfo(cfg->listen_address, port, &hints, &ai);
    if (gai != 0) {
        snprintf(errbuf, errsz, "[listen] address %s: %s", cfg->listen_address, gai_strerror(gai));
        return PDR_ERR_CONFIG;
    }
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    /* MHD reports bind errors through its logger; errno tells the cause. */
    errno = 0;
    in->tcp = daemon_start(in, cfg, flags, -1, ai->ai_addr);
    freeaddrinfo(ai);
    if (!in->tcp) {
        snprintf(errbuf, errsz, "cannot listen on %s: %s", where,
                 errno ? strerror(errno) : "see the http server line above");
        return PDR_ERR_IO;
    }
    pdr_log(PDR_LOG_INFO, "listening", "address", where, NULL);
    return PDR_OK;
}

static pdr_rc start_unix(ingest *in, const pdr_config *cfg, char *errbuf, size_t errsz)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd;
    const char *path = cfg->unix_socket;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(errbuf, errsz, "[listen] unix_socket %s: path too long", path);
        return PDR_ERR_CONFIG;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* A socket left by a previous run is replaced; any other file is not. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(errbuf, errsz, "[listen] unix_socket %s exists and is not a socket; not replacing it", path);
            return PDR_ERR_CONFIG;
        }
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || chmod(path, 0660) != 0 ||
        listen(fd, 64) != 0) {
        snprintf(errbuf, errsz, "cannot listen on unix socket %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return PDR_ERR_IO;
    }
    in->unix_d = daemon_start(in, cfg, 0, fd, NULL);
    if (!in->unix_d) {
        snprintf(errbuf, errsz, "cannot serve unix socket %s", path);
        close(fd);
        unlink(path);
        return PDR_ERR_IO;
    }
    in->unix_path = strdup(path);
    pdr_log(PDR_LOG_INFO, "listening", "unix_socket", path, NULL);
    return PDR_OK;
}

pdr_rc ingest_start(ingest *in, char *errbuf, size_t errsz)
{
    const pdr_config *cfg = in->cur->cfg;
    pdr_rc rc = PDR_OK;
    if (cfg->listen_port > 0) rc = start_tcp(in, cfg, errbuf, errsz);
    if (!rc && cfg->unix_socket) rc = start_unix(in, cfg, errbuf, errsz);
    if (!rc && !in->tcp && !in->unix_d)
        pdr_log(PDR_LOG_WARN, "no HTTP ingest: [listen] port is 0 and no unix_socket is set", NULL);
    if (rc) ingest_stop(in);
    return rc;
}

pdr_rc ingest_reload(ingest *in, pdr_config *cfg, char *errbuf, size_t errsz)
{
    cfg_ref *ref = calloc(1, sizeof *ref), *old;
    pdr_rc rc;
    if (!ref) {
        pdr_config_destroy(cfg);
        return PDR_ERR_NOMEM;
    }
    rc = token_load(cfg->auth_token_file, ref, errbuf, errsz);
    if (rc) {
        pdr_config_destroy(cfg);
        free(ref);
        return rc;
    }
    ref->cfg = cfg;
    ref->owned = cfg;
    ref->refs = 1;
    pthread_mutex_lock(&in->mu);
    old = in->cur;
    in->cur = ref;
    pthread_mutex_unlock(&in->mu);
    metrics_set_targets(cfg);
    cfg_release(in, old);
    return PDR_OK;
}

/* Waits until no request is in progress, or until INGEST_DRAIN_MS passed. */
static void drain(ingest *in)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += INGEST_DRAIN_MS / 1000;
    pthread_mutex_lock(&in->mu);
    while (in->active > 0)
        if (pthread_cond_timedwait(&in->idle_cv, &in->mu, &until) != 0) break;
    pthread_mutex_unlock(&in->mu);
}

void ingest_stop(ingest *in)
{
    if (!in) return;
    atomic_store(&in->stopping, 1);
    /* No new connections; requests already begun (a body still arriving,
    ** a commit under way) finish and are answered, those reaching the
    ** handler from now on with 503 "shutting down". Idle keep-alive
    ** connections hold no request and do not delay the stop. */
    MHD_socket lt = in->tcp ? MHD_quiesce_daemon(in->tcp) : MHD_INVALID_SOCKET;
    MHD_socket lu = in->unix_d ? MHD_quiesce_daemon(in->unix_d) : MHD_INVALID_SOCKET;
    drain(in);
    if (in->tcp) MHD_stop_daemon(in->tcp);
    if (in->unix_d) MHD_stop_daemon(in->unix_d);
    /* A quiesced daemon leaves its listen socket to the caller. */
    if (lt != MHD_INVALID_SOCKET) close(lt);
    if (lu != MHD_INVALID_SOCKET) close(lu);
    in->tcp = in->unix_d = NULL;
    if (in->unix_path) {
        unlink(in->unix_path);
        free(in->unix_path);
        in->unix_path = NULL;
    }
}

void ingest_destroy(ingest *in)
{
    if (!in) return;
    ingest_stop(in);
    cfg_release(in, in->cur);
    pthread_cond_destroy(&in->idle_cv);
    pthread_mutex_destroy(&in->mu);
    free(in);
}
