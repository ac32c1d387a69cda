/*
** ingest.c — the HTTP ingest server (see ingest.h for the endpoints and the
** contract).
**
** libmicrohttpd runs an event loop (epoll) on a small pool of threads
** ([listen] threads); no thread ever blocks on a client or on the disk, so
** thousands of open connections cost a little memory each and nothing else.
** A request goes through the access handler:
**   1st call  (headers read)   route, method, auth, framing headers checked;
**                              a refusal is queued at once (MHD then skips
**                              the body and closes the connection)
**   next calls (body chunks)   appended to a buffer capped at INGEST_BODY_MAX;
**                              a chunked body over the cap is read and dropped
**   last call (body complete)  parsed by normalize.c and handed to the writer
**                              (writer_submit_async); the connection is
**                              suspended until the commit's callback resumes
**                              it, and the next call answers
** GET /readyz and /metrics suspend the same way for the writer's probe.
**
** Slow clients: each connection has a deadline kept here (not by MHD, whose
** timeout is about silence): its request must arrive whole within
** [listen] request_timeout of the connection's opening, or within
** idle_timeout + request_timeout of the previous reply on a kept-alive
** connection. A reaper thread sleeps until the earliest deadline and cuts
** off a connection that missed it (a 408 in PagerDuty's error shape when
** nothing of the request was answered yet). Deadlines of one kind share one
** offset, so each kind's list is in deadline order by construction.
**
** Nothing is stored unless the whole body was valid: a 400 leaves the outbox
** exactly as it was.
*/
#include "ingest.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <strings.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* Stack of each event-loop thread: a request needs a few KB of its own,
** and cJSON recursion is capped at CJSON_NESTING_LIMIT levels. */
#define INGEST_THREAD_STACK (512 * 1024)

/* The most memory the bodies of requests in progress may hold at once: a
** crowd of clients each sending 511 KB and stalling must not take the
** gateway's memory (a body that would pass it is answered 503). */
#define INGEST_BODY_BUDGET (64 * 1024 * 1024)

/* File descriptors kept for everything but client connections (the
** database, libcurl's sockets, epoll and wake-up descriptors, logs). */
#define INGEST_FD_RESERVE 256

/* MHD's messages (refused connections, protocol errors) are logged at most
** this many times per window; the rest are counted and the count logged. */
#define MHD_LOG_BURST 5
#define MHD_LOG_WINDOW_MS 10000

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

/* A connection's deadline state (MHD's socket context). Under ingest.cmu. */
typedef struct conn {
    struct conn *prev, *next;   /* in ingest.deadlines[list] */
    int list;                   /* DL_NONE, DL_FIRST or DL_KEEPALIVE */
    int64_t since_ms;           /* start of the current wait (monotonic) */
    int fd;
    int expect;                 /* ... with Expect: MHD may write "100 Continue" */
    int replying;               /* a reply is queued: MHD writes it */
    int killed;                 /* the reaper cut it off */
} conn;

/* The waits a deadline bounds: for the first request (from the opening),
** for the next one (from the previous reply), and for a reply to be taken
** by a client that reads it slowly. Waiting for the writer has none. */
enum { DL_NONE = -1, DL_FIRST = 0, DL_KEEPALIVE = 1, DL_REPLY = 2, DL_N = 3 };

struct ingest {
    writer *w;
    pthread_mutex_t mu;
    cfg_ref *cur;
    /* Connection deadlines (see the file header); cmu guards every conn. */
    pthread_mutex_t cmu;
    pthread_cond_t ccv;         /* signalled when a list gains a head, or at stop */
    struct { conn *head, *tail; } deadlines[DL_N];
    int64_t offset_ms[DL_N];    /* deadline = since_ms + offset_ms[list] */
    pthread_t reaper;
    int reaper_started, reaper_stop;
    int64_t reaper_wake_ms;     /* when the reaper wakes next; INT64_MAX: not before a signal */
    atomic_llong body_bytes;    /* buffers of bodies in progress, against INGEST_BODY_BUDGET */
    char reply408[320];
    size_t reply408_len;
    /* The rate limit on MHD's log lines. */
    pthread_mutex_t lmu;
    int64_t log_window_start;
    int log_in_window;
    int64_t log_suppressed;
    struct MHD_Daemon *tcp;
    struct MHD_Daemon *unix_d;
    char *unix_path;        /* to unlink on stop */
    atomic_int stopping;
    int active;             /* requests begun and not yet completed (under mu) */
    int jobs_out;           /* jobs handed to the writer, callback not yet done (under mu) */
    pthread_cond_t idle_cv; /* broadcast when active or jobs_out drops to 0 */
};

/* Per-request state (MHD's con_cls). */
typedef struct req {
    route r;
    cfg_ref *ref;           /* the config this request runs with, held until it completes */
    char *buf;
    size_t len, cap;
    int too_big;
    /* A job handed to the writer: the connection is suspended until done. */
    ingest *in;
    struct MHD_Connection *c;
    writer_job job;
    int submitted;          /* the job went to the writer */
    atomic_int done;        /* the writer called back */
    normalize_result nr;         /* the parsed body, kept for the reply */
    db_event *evs;
    pdr_rc *res;
} req;

/* ---- config references -------------------------------------------------- */

/* Reads the token (pdr_token_file_read: the first line, trailing whitespace
** removed) and keeps only its SHA-256, so comparisons take the same time
** whatever the guess. */
static pdr_rc token_load(const char *path, cfg_ref *ref, char *errbuf, size_t errsz)
{
    char line[PDR_TOKEN_MAX + 1], why[256];

    ref->has_token = 0;
    if (!path) return PDR_OK;
    if (pdr_token_file_read(path, line, sizeof line, why, sizeof why)) {
        snprintf(errbuf, errsz, "%s: %s", path, why);
        return PDR_ERR_CONFIG;
    }
    pdr_rc rc = pdr_sha256_raw(line, strlen(line), ref->token_sha);
    memset(line, 0, sizeof line);
    if (rc) return rc;
    ref->has_token = 1;
    return PDR_OK;
}

pdr_rc ingest_token_check(const char *path, char *errbuf, size_t errsz)
{
    cfg_ref scratch;
    pdr_rc rc;
    memset(&scratch, 0, sizeof scratch);
    rc = token_load(path, &scratch, errbuf, errsz);
    memset(&scratch, 0, sizeof scratch);
    return rc;
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

/* Every reply is valid UTF-8 JSON whatever a request held (a path or a
** method of stray bytes is quoted in errors): what cJSON printed goes
** through the JSON escaping of log.h. */
static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, cJSON *body,
                                  const char *retry_after, const char *allow)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL, *safe;
    const unsigned char *p;
    cJSON_Delete(body);
    if (!text) return reply_text(c, status, NULL, retry_after, allow);
    /* cJSON escaped C0, '"' and '\\': ASCII text is safe as it is (the
    ** common case, one pass and no copy). */
    for (p = (const unsigned char *)text; *p && *p < 0x7F; p++) {}
    if (!*p) return reply_text(c, status, text, retry_after, allow);   /* the daemon's cJSON allocates with malloc */
    safe = pdr_log_escape_dup(text, PDR_ESC_JSON);
    cJSON_free(text);
    return reply_text(c, status, safe, retry_after, allow);
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

static int conn_claim(ingest *in, struct MHD_Connection *c, int replying);
static void body_drop(req *rq, int why);

static void req_free(req *rq)
{
    if (rq->cap) atomic_fetch_sub(&rq->in->body_bytes, (long long)rq->cap);
    free(rq->buf);
    free(rq->evs);
    free(rq->res);
    normalize_result_cleanup(&rq->nr);
    free(rq);
}

/* The writer's callback (on its thread): the commit or probe ran. The
** connection is resumed, and MHD calls the handler again to answer; nothing
** of rq is touched after the resume. A suspended connection is left alone
** by MHD, and ingest_stop() stops the daemons only once no job is out, so
** the connection still exists when it is resumed. */
static void on_job_done(writer_job *job)
{
    req *rq = job->ctx;
    ingest *in = rq->in;
    atomic_store(&rq->done, 1);
    MHD_resume_connection(rq->c);
    pthread_mutex_lock(&in->mu);
    if (--in->jobs_out == 0) pthread_cond_broadcast(&in->idle_cv);
    pthread_mutex_unlock(&in->mu);
}

/* Suspends the connection, then hands rq->job to the writer (in that order:
** a resume that came before the suspend would be lost). */
static enum MHD_Result job_submit(ingest *in, struct MHD_Connection *c, req *rq)
{
    pdr_rc rc;
    rq->in = in;
    rq->c = c;
    rq->submitted = 1;
    conn_claim(in, c, 0);   /* waiting for the writer: no deadline */
    pthread_mutex_lock(&in->mu);
    in->jobs_out++;
    pthread_mutex_unlock(&in->mu);
    MHD_suspend_connection(c);
    rc = writer_submit_async(in->w, &rq->job);
    if (rc) {
        pthread_mutex_lock(&in->mu);
        in->jobs_out--;   /* not taken: no callback will come */
        pthread_mutex_unlock(&in->mu);
        /* Not taken (stopping): answer on the next call, as after a failed commit. */
        rq->job.rc = rc;
        atomic_store(&rq->done, 1);
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

/* 503 for a commit that did not happen. */
static enum MHD_Result reply_unavailable(struct MHD_Connection *c, pdr_rc rc)
{
    if (rc == PDR_ERR_SHUTDOWN)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Shutting down",
                           RETRY_AFTER_SOON, NULL, "pdrelay is shutting down; retry shortly");
    if (rc == PDR_ERR_NOMEM)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Out of memory", RETRY_AFTER_SOON,
                           NULL, "pdrelay ran out of memory handling the request; nothing was queued, retry shortly");
    return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Outbox not writable",
                       RETRY_AFTER_SOON, NULL, "the event was not stored: %s; nothing queued was harmed",
                       pdr_strerror(rc));
}

/* 503 for an outbox that reached a bound (db.c, invariant 4): which, and
** its value. cfg: the request's (a reload keeps the running bounds). */
static enum MHD_Result reply_full(struct MHD_Connection *c, const pdr_config *cfg, db_bound b)
{
    /* each bound's sentence, around its value */
    static const char *const what[DB_BOUND_COUNT][2] = {
        [DB_BOUND_MAX_EVENTS] = {"the outbox holds [outbox] max_events (", ") pending events; retry when it drains"},
        [DB_BOUND_MAX_BYTES] = {"the pending events reached [outbox] max_bytes (", "); retry when it drains"},
        [DB_BOUND_MIN_FREE] = {"the filesystem of data_dir has less free space than [outbox] min_free (",
                               "); retry when space is freed or the outbox drains"},
    };
    char v[32];
    if (b <= DB_BOUND_NONE || b >= DB_BOUND_COUNT) b = DB_BOUND_MAX_EVENTS;
    return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Outbox full", RETRY_AFTER_FULL, NULL,
                       "%s%s%s", what[b][0], writer_bound_limit(cfg, b, v, sizeof v), what[b][1]);
}

static enum MHD_Result reply_invalid(struct MHD_Connection *c, route r, const normalize_result *nr)
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

static void log_repairs(const normalize_event *ev)
{
    char red[PDR_REDACT_SIZE], chars[24], imgs[16], det[16], utf8[24], ts[16], urls[16], nums[16];
    /* A generated dedup_key is not a repair: it is what PagerDuty does too. */
    if (!pdr_repairs_any(&ev->rep)) return;
    snprintf(chars, sizeof chars, "%zu", ev->rep.summary_chars);
    snprintf(imgs, sizeof imgs, "%d", ev->rep.images_dropped);
    snprintf(det, sizeof det, "%d", ev->rep.details_shrunk);
    snprintf(utf8, sizeof utf8, "%zu", ev->rep.utf8_repaired);
    snprintf(ts, sizeof ts, "%d", ev->rep.timestamp_dropped);
    snprintf(urls, sizeof urls, "%d", ev->rep.urls_dropped);
    snprintf(nums, sizeof nums, "%d", ev->rep.numbers_changed);
    pdr_log(PDR_LOG_INFO, "event repaired", "key", pdr_redact(ev->routing_key, red, sizeof red),
            "dedup_key", ev->dedup_key[0] ? ev->dedup_key : NULL,
            "summary_cut_from", ev->rep.summary_chars ? chars : NULL,
            "images_dropped", ev->rep.images_dropped ? imgs : NULL,
            "details_shrunk", ev->rep.details_shrunk ? det : NULL,
            "invalid_utf8_replaced", ev->rep.utf8_repaired ? utf8 : NULL,
            "timestamp_dropped", ev->rep.timestamp_dropped ? ts : NULL,
            "urls_dropped", ev->rep.urls_dropped ? urls : NULL,
            "numbers_changed", ev->rep.numbers_changed ? nums : NULL, NULL);
}

/* A POST's body is whole: parse → submit → reply. post_parse turns the body
** into events (rq->nr); post_submit hands them to the writer and suspends the
** connection for the commit; post_reply, called when the writer has run the
** job (or at once when nothing was routed), answers from the job's results. */

/* Step 1: parses the body by route into rq->nr and drops its text. PDR_OK, or
** the error with its reply queued in *ret (400 for a body that is not valid,
** 503 when stopping or out of memory). */
static pdr_rc post_parse(ingest *in, struct MHD_Connection *c, req *rq, enum MHD_Result *ret)
{
    normalize_result *nr = &rq->nr;
    pdr_rc rc;

    if (atomic_load(&in->stopping)) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        *ret = reply_unavailable(c, PDR_ERR_SHUTDOWN);
        return PDR_ERR_SHUTDOWN;
    }
    switch (rq->r) {
    case ROUTE_ENQUEUE: rc = normalize_pagerduty(rq->buf, rq->len, PDR_EVENT_ALERT, nr); break;
    case ROUTE_CHANGE: rc = normalize_pagerduty(rq->buf, rq->len, PDR_EVENT_CHANGE, nr); break;
    case ROUTE_ALERTMANAGER: rc = normalize_alertmanager(rq->buf, rq->len, rq->ref->cfg, nr); break;
    default: rc = normalize_alerts(rq->buf, rq->len, rq->ref->cfg, nr); break;
    }
    /* The body is parsed: its text is no longer needed. */
    body_drop(rq, 0);
    if (rc == PDR_ERR_INVALID) {
        *ret = reply_invalid(c, rq->r, nr);
    } else if (rc) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        *ret = reply_unavailable(c, rc);
    }
    return rc;
}

/* Step 2: hands the parsed events (at least one) to the writer. Returns
** MHD_YES with rq->submitted set when the connection was suspended for the
** commit; otherwise the reply is queued. */
static enum MHD_Result post_submit(ingest *in, struct MHD_Connection *c, req *rq)
{
    const normalize_result *nr = &rq->nr;

    rq->evs = pdr_calloc(nr->n, sizeof *rq->evs);
    rq->res = pdr_calloc(nr->n, sizeof *rq->res);
    if (!rq->evs || !rq->res) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        return reply_unavailable(c, PDR_ERR_NOMEM);
    }
    for (size_t i = 0; i < nr->n; i++) {
        const normalize_event *e = &nr->evs[i];
        rq->evs[i].routing_key = e->routing_key;
        rq->evs[i].action = e->action;
        rq->evs[i].dedup_key = e->dedup_key[0] ? e->dedup_key : NULL;
        rq->evs[i].fingerprint = e->fingerprint;
        rq->evs[i].body = e->body;
        rq->evs[i].body_len = e->body_len;
        rq->evs[i].urgency = pdr_urgency_of(e->action, e->severity);
        rq->evs[i].target = e->target;
        rq->evs[i].event_ms = e->event_ms;   /* the source's time; 0: none given */
    }
    writer_job_push(&rq->job, rq->evs, nr->n, rq->res, NULL, on_job_done, rq);
    return job_submit(in, c, rq);
}

/* Step 3, the call after the commit: the reply from the job's results. */
static enum MHD_Result post_reply(struct MHD_Connection *c, req *rq)
{
    const normalize_result *nr = &rq->nr;
    size_t queued = 0, coalesced = 0, full = 0, repaired = 0;
    cJSON *o;

    if (rq->submitted && rq->job.rc) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        return reply_unavailable(c, rq->job.rc);
    }
    for (size_t i = 0; rq->submitted && i < nr->n; i++) {
        char red[PDR_REDACT_SIZE];
        if (rq->res[i] == PDR_OK) {
            queued++;
            if (nr->evs[i].repaired) repaired++;
            log_repairs(&nr->evs[i]);
        } else if (rq->res[i] == PDR_COALESCED) {
            coalesced++;
        } else {
            full++;
        }
        if (pdr_log_enabled(PDR_LOG_DEBUG))
            pdr_log(PDR_LOG_DEBUG, rq->res[i] == PDR_OK ? "queued" : rq->res[i] == PDR_COALESCED ? "coalesced" : "refused",
                    "endpoint", route_name(rq->r), "key", pdr_redact(nr->evs[i].routing_key, red, sizeof red),
                    "target", nr->evs[i].target, "action", pdr_action_name(nr->evs[i].action),
                    "dedup_key", nr->evs[i].dedup_key[0] ? nr->evs[i].dedup_key : NULL, NULL);
    }
    if (full) {
        pdr_log(PDR_LOG_WARN, "outbox full: request refused with 503", "endpoint", route_name(rq->r), "bound",
                db_bound_key(rq->job.bound), NULL);
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        return reply_full(c, rq->ref->cfg, rq->job.bound);
    }
    {
        static const char *const results[] = {"queued", "coalesced", "repaired", "unrouted"};
        const double counts[] = {(double)queued, (double)coalesced, (double)repaired, (double)nr->unrouted};
        metrics_add_each(MC_INGEST, route_name(rq->r), results, counts, 4);   /* one lock */
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    if (rq->r == ROUTE_ENQUEUE || rq->r == ROUTE_CHANGE) {
        cJSON_AddStringToObject(o, "message", "Event processed");
        if (nr->n && nr->evs[0].dedup_key[0]) cJSON_AddStringToObject(o, "dedup_key", nr->evs[0].dedup_key);
        return reply_json(c, MHD_HTTP_ACCEPTED, o, NULL, NULL);
    }
    cJSON_AddStringToObject(o, "message", "Alerts processed");
    cJSON_AddNumberToObject(o, "alerts", (double)nr->alerts);
    cJSON_AddNumberToObject(o, "events", (double)nr->n);
    cJSON_AddNumberToObject(o, "queued", (double)queued);
    cJSON_AddNumberToObject(o, "coalesced", (double)coalesced);
    cJSON_AddNumberToObject(o, "repaired", (double)nr->repaired);
    cJSON_AddNumberToObject(o, "unrouted", (double)nr->unrouted);
    return reply_json(c, MHD_HTTP_OK, o, NULL, NULL);
}

/* The last call of a POST, its body whole: parse, then submit (the reply
** follows the commit), or reply at once when no event was routed. */
static enum MHD_Result post_handle(ingest *in, struct MHD_Connection *c, req *rq)
{
    enum MHD_Result ret = MHD_NO;
    if (post_parse(in, c, rq, &ret)) return ret;
    if (rq->nr.n == 0) return post_reply(c, rq);   /* every alert unrouted: nothing to commit */
    return post_submit(in, c, rq);
}

/* GET /metrics: the registry, with the outbox gauges the probe just read
** (the last known ones if the database cannot be read now). */
static enum MHD_Result reply_metrics(ingest *in, struct MHD_Connection *c, const writer_stats *st)
{
    metrics_gauges g;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char *text;
    g.pending = st->pending;
    g.dead = st->dead;
    g.pending_bytes = st->pending_bytes;
    g.dead_bytes = st->dead_bytes;
    g.full_bound = st->bound;
    g.dedup_entries = st->dedup_entries;
    g.body_bytes = atomic_load(&in->body_bytes);
    g.body_budget = INGEST_BODY_BUDGET;
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

/* GET /healthz answers at once; /readyz and /metrics need the writer's
** probe: the connection is suspended until it ran (rq->submitted). */
static enum MHD_Result get_submit(ingest *in, struct MHD_Connection *c, req *rq)
{
    cJSON *o;
    if (rq->r == ROUTE_HEALTHZ) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddStringToObject(o, "version", PDR_VERSION);
        return reply_json(c, MHD_HTTP_OK, o, NULL, NULL);
    }
    if (atomic_load(&in->stopping)) return reply_unavailable(c, PDR_ERR_SHUTDOWN);
    writer_job_probe(&rq->job, on_job_done, rq);
    return job_submit(in, c, rq);
}

static enum MHD_Result get_reply(ingest *in, struct MHD_Connection *c, req *rq)
{
    writer_stats st;
    const pdr_config *cfg = rq->ref->cfg;
    cJSON *o;

    writer_stats_get(in->w, &st);
    if (rq->r == ROUTE_METRICS) return reply_metrics(in, c, &st);
    if (rq->job.rc) return reply_unavailable(c, rq->job.rc);
    if (st.bound != DB_BOUND_NONE) return reply_full(c, cfg, st.bound);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ready");
    cJSON_AddNumberToObject(o, "pending", (double)st.pending);
    cJSON_AddNumberToObject(o, "dead", (double)st.dead);
    cJSON_AddNumberToObject(o, "pending_bytes", (double)st.pending_bytes);
    cJSON_AddNumberToObject(o, "max_events", (double)cfg->max_events);
    cJSON_AddNumberToObject(o, "max_bytes", (double)cfg->max_bytes);
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

/* Counts the headers named like *cls's name (MHD keeps every one). */
typedef struct hdr_count {
    const char *name;
    int n;
    const char *value;      /* the first one */
} hdr_count;

static enum MHD_Result hdr_count_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    hdr_count *hc = cls;
    (void)kind;
    if (key && strcasecmp(key, hc->name) == 0 && hc->n++ == 0) hc->value = value;
    return MHD_YES;
}

/* How the body is delimited must be unambiguous (RFC 9112 6.3): one
** Content-Length, or Transfer-Encoding: chunked alone. A request smuggling
** two readings of its length is refused, never guessed at. Returns 0 when
** the framing is fine, else 1 with why filled. */
static int framing_check(struct MHD_Connection *c, char *why, size_t whysz)
{
    hdr_count cl = {MHD_HTTP_HEADER_CONTENT_LENGTH, 0, NULL};
    hdr_count te = {MHD_HTTP_HEADER_TRANSFER_ENCODING, 0, NULL};
    MHD_get_connection_values(c, MHD_HEADER_KIND, hdr_count_one, &cl);
    MHD_get_connection_values(c, MHD_HEADER_KIND, hdr_count_one, &te);
    if (cl.n > 1) {
        snprintf(why, whysz, "the request has %d Content-Length headers; send exactly one", cl.n);
        return 1;
    }
    if (te.n && cl.n) {
        snprintf(why, whysz, "the request has both Content-Length and Transfer-Encoding; send one of them");
        return 1;
    }
    if (te.n > 1 || (te.n && strcasecmp(te.value, "chunked") != 0)) {
        snprintf(why, whysz, "Transfer-Encoding '%.40s' is not supported; send 'chunked' or a Content-Length",
                 te.n > 1 ? "(several headers)" : te.value);
        return 1;
    }
    return 0;
}

/* The first call of a request: everything that can be refused before the
** body is read. Returns MHD_YES with *done = 0 to go on reading. */
static enum MHD_Result request_begin(ingest *in, struct MHD_Connection *c, req *rq, const char *url,
                                     const char *method, int *done)
{
    const char *cl;
    char why[160];

    *done = 1;
    rq->r = route_find(url);
    /* Before anything else, on every route: a body whose length can be read
    ** two ways could smuggle a second request past a proxy. */
    if (framing_check(c, why, sizeof why)) {
        if (is_post_route(rq->r)) metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        pdr_log(PDR_LOG_INFO, "request refused", "endpoint", route_name(rq->r), "status", "400", "error", why, NULL);
        return reply_error(c, MHD_HTTP_BAD_REQUEST, "invalid request", "Bad request framing", NULL, NULL, "%s", why);
    }
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

/* Drops the body read so far; too_big says why (1 over 512 KB, 2 out of
** memory, 3 over the budget of all bodies). */
static void body_drop(req *rq, int why)
{
    rq->too_big = why;
    if (rq->cap) atomic_fetch_sub(&rq->in->body_bytes, (long long)rq->cap);
    free(rq->buf);
    rq->buf = NULL;
    rq->len = rq->cap = 0;
}

static void body_append(req *rq, const char *data, size_t n)
{
    if (rq->too_big) return;
    if (rq->len + n > INGEST_BODY_MAX) {
        body_drop(rq, 1);
        return;
    }
    if (rq->len + n > rq->cap) {
        size_t cap = rq->cap ? rq->cap : 4096;
        char *p;
        while (cap < rq->len + n) cap *= 2;
        if (cap > INGEST_BODY_MAX) cap = INGEST_BODY_MAX;
        if (atomic_fetch_add(&rq->in->body_bytes, (long long)(cap - rq->cap)) + (long long)(cap - rq->cap) >
            INGEST_BODY_BUDGET) {
            atomic_fetch_sub(&rq->in->body_bytes, (long long)(cap - rq->cap));
            body_drop(rq, 3);
            return;
        }
        p = pdr_realloc(rq->buf, cap);
        if (!p) {
            atomic_fetch_sub(&rq->in->body_bytes, (long long)(cap - rq->cap));
            body_drop(rq, 2);   /* out of memory: answered 503 */
            return;
        }
        rq->buf = p;
        rq->cap = cap;
    }
    memcpy(rq->buf + rq->len, data, n);
    rq->len += n;
}

/* ---- connection deadlines -------------------------------------------- */

static void dl_detach(ingest *in, conn *cn)
{
    if (cn->list == DL_NONE) return;
    if (cn->prev) {
        cn->prev->next = cn->next;
    } else {
        in->deadlines[cn->list].head = cn->next;
    }
    if (cn->next) {
        cn->next->prev = cn->prev;
    } else {
        in->deadlines[cn->list].tail = cn->prev;
    }
    cn->prev = cn->next = NULL;
    cn->list = DL_NONE;
}

/* Starts a wait of kind list now; it joins the tail, which keeps the list in
** deadline order (same offset, later start). */
static void dl_append(ingest *in, conn *cn, int list)
{
    dl_detach(in, cn);
    cn->since_ms = pdr_clock_mono_ms();
    cn->list = list;
    cn->prev = in->deadlines[list].tail;
    if (cn->prev) {
        cn->prev->next = cn;
    } else {
        in->deadlines[list].head = cn;
        /* Wake the reaper only when it sleeps past this new deadline: under
        ** load heads come and go with every request. */
        if (cn->since_ms + in->offset_ms[list] < in->reaper_wake_ms) pthread_cond_signal(&in->ccv);
    }
    in->deadlines[list].tail = cn;
}

static conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The request arrived whole (or was refused early): replying, its reply
** must be taken within request_timeout (a client that reads it a byte at a
** time is cut off); else (waiting for the writer) it has no deadline until
** the reply. Returns 0 when the reaper cut the connection off first. */
static int conn_claim(ingest *in, struct MHD_Connection *c, int replying)
{
    conn *cn = conn_of(c);
    int alive = 1;
    if (!cn) return 1;
    pthread_mutex_lock(&in->cmu);
    if (cn->killed) {
        alive = 0;
    } else if (replying) {
        cn->replying = 1;
        dl_append(in, cn, DL_REPLY);
    } else {
        dl_detach(in, cn);
    }
    pthread_mutex_unlock(&in->cmu);
    return alive;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    ingest *in = cls;
    conn *cn = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        cn = pdr_calloc(1, sizeof *cn);
        if (!cn) return;   /* no deadline for it: MHD's idle timeout still applies */
        cn->list = DL_NONE;
        cn->fd = ci ? ci->connect_fd : -1;
        *socket_context = cn;
        pthread_mutex_lock(&in->cmu);
        dl_append(in, cn, DL_FIRST);
        pthread_mutex_unlock(&in->cmu);
        return;
    }
    if (!cn) return;
    /* MHD closes the socket after this call: the reaper, which shuts
    ** sockets down under cmu, can never touch a descriptor reused since. */
    pthread_mutex_lock(&in->cmu);
    dl_detach(in, cn);
    pthread_mutex_unlock(&in->cmu);
    free(cn);
    *socket_context = NULL;
}

/* What a client that was too slow is told, when nothing of its request was
** answered yet: written whole by the reaper (ingest.reply408, made once by
** ingest_create), then the socket is shut down. */
#define BODY_408 "{\"status\":\"invalid request\",\"message\":\"Request timeout\",\"errors\":" \
                 "[\"the request did not arrive whole within [listen] request_timeout\"]}"

static void *reaper_main(void *arg)
{
    ingest *in = arg;
    int64_t cut = 0;
    pthread_mutex_lock(&in->cmu);
    while (!in->reaper_stop) {
        int64_t now = pdr_clock_mono_ms(), next = INT64_MAX;
        int which = DL_NONE;
        for (int l = 0; l < DL_N; l++) {
            conn *h = in->deadlines[l].head;
            if (h && h->since_ms + in->offset_ms[l] < next) {
                next = h->since_ms + in->offset_ms[l];
                which = l;
            }
        }
        if (which == DL_NONE) {
            if (cut) {
                char n[24];
                snprintf(n, sizeof n, "%lld", (long long)cut);
                pdr_log(PDR_LOG_INFO, "slow connections cut off", "count", n, "reason", "request_timeout", NULL);
                cut = 0;
            }
            in->reaper_wake_ms = INT64_MAX;
            pthread_cond_wait(&in->ccv, &in->cmu);
            continue;
        }
        if (next > now) {
            struct timespec ts;
            int64_t wait = next - now;
            if (cut && wait > 1000) {   /* a quiet moment: say how many went */
                char n[24];
                snprintf(n, sizeof n, "%lld", (long long)cut);
                pdr_log(PDR_LOG_INFO, "slow connections cut off", "count", n, "reason", "request_timeout", NULL);
                cut = 0;
            }
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (time_t)(wait / 1000);
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            in->reaper_wake_ms = next;
            pthread_cond_timedwait(&in->ccv, &in->cmu, &ts);
            continue;
        }
        {
            conn *cn = in->deadlines[which].head;
            dl_detach(in, cn);
            cn->killed = 1;
            if (cn->fd >= 0) {
                /* Only while MHD writes nothing: no reply queued, no
                ** "100 Continue" it may be sending. */
                if (!cn->replying && !cn->expect) {
                    ssize_t wr = send(cn->fd, in->reply408, in->reply408_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                    (void)wr;   /* best effort: the client may be gone */
                }
                shutdown(cn->fd, SHUT_RDWR);   /* MHD sees the end and closes it */
            }
            cut++;
        }
    }
    pthread_mutex_unlock(&in->cmu);
    return NULL;
}

/* ---- the handler ------------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    ingest *in = cls;
    req *rq = *con_cls;
    (void)version;

    if (!rq) {
        int done;
        conn *cn = conn_of(c);
        enum MHD_Result ret;
        if (cn) {
            int killed;
            pthread_mutex_lock(&in->cmu);
            cn->expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT) != NULL;
            killed = cn->killed;
            pthread_mutex_unlock(&in->cmu);
            if (killed) return MHD_NO;
        }
        rq = pdr_calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->in = in;
        *con_cls = rq;
        /* One lock per request start: count it and take the config. */
        pthread_mutex_lock(&in->mu);
        in->active++;
        rq->ref = in->cur;
        rq->ref->refs++;
        pthread_mutex_unlock(&in->mu);
        ret = request_begin(in, c, rq, url, method, &done);
        if (done && !conn_claim(in, c, 1)) return MHD_NO;
        return ret;   /* done or not: MHD_YES reads on, a queued reply ends it */
    }
    if (*upload_data_size) {
        body_append(rq, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->submitted) {
        /* Resumed: the writer ran the job. */
        if (!atomic_load(&rq->done)) return MHD_YES;
        if (!conn_claim(in, c, 1)) return MHD_NO;
        return is_post_route(rq->r) ? post_reply(c, rq) : get_reply(in, c, rq);
    }
    if (!conn_claim(in, c, 1)) return MHD_NO;   /* the body is whole: its deadline is met */
    if (rq->too_big == 3) {
        pdr_log(PDR_LOG_WARN, "request refused: request bodies in progress hold the memory budget",
                "endpoint", route_name(rq->r), "status", "503", NULL);
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "Busy", RETRY_AFTER_SOON, NULL,
                           "other requests' bodies hold the %d MiB pdrelay buffers at once; retry shortly",
                           INGEST_BODY_BUDGET >> 20);
    }
    if (rq->too_big == 1) {
        metrics_inc(MC_INGEST, route_name(rq->r), "rejected");
        pdr_log(PDR_LOG_INFO, "request refused", "endpoint", route_name(rq->r), "status", "413", NULL);
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "invalid event", "Request too large", NULL, NULL,
                           "the request body is larger than %d bytes (512 KB)", INGEST_BODY_MAX);
    }
    if (rq->too_big == 2) return reply_unavailable(c, PDR_ERR_NOMEM);
    if (is_post_route(rq->r)) return post_handle(in, c, rq);
    return get_submit(in, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ingest *in = cls;
    req *rq = *con_cls;
    conn *cn = conn_of(c);
    cfg_ref *ref;
    int last;
    (void)toe;
    if (cn) {
        /* The next request on this connection: within idle_timeout +
        ** request_timeout of now. */
        pthread_mutex_lock(&in->cmu);
        cn->expect = cn->replying = 0;
        if (!cn->killed) dl_append(in, cn, DL_KEEPALIVE);
        pthread_mutex_unlock(&in->cmu);
    }
    if (!rq) return;
    ref = rq->ref;
    *con_cls = NULL;
    /* One lock per request end: uncount it and drop its config. */
    pthread_mutex_lock(&in->mu);
    if (--in->active == 0) pthread_cond_broadcast(&in->idle_cv);
    last = --ref->refs == 0;
    pthread_mutex_unlock(&in->mu);
    req_free(rq);
    if (last) cfg_unref(ref);
}

/* libmicrohttpd's own messages: refused connections at a limit, protocol
** errors it answered itself. A protocol error it answered is logged like
** the handler's refusals ("request refused", status, the error of the JSON
** body it sent), its other lines as they come. A flood of them (one hostile
** client) must not flood the log: MHD_LOG_BURST lines per window, then a
** count. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static const char refusal[] = "Error processing request (HTTP response code is %u ('%s'))";
    static const char at_limit[] = "Server reached connection limit";
    static const char *const client_errors[] = {"Failed to parse `Content-Length'", "Too large value of 'Content-Length'",
                                                "Received HTTP/1.1 request without `Host'",
                                                "Connection was closed by remote side"};
    ingest *in = cls;
    char msg[512];
    size_t n;
    int64_t now = pdr_clock_mono_ms(), suppressed = 0;
    int emit;
    pthread_mutex_lock(&in->lmu);
    if (now - in->log_window_start >= MHD_LOG_WINDOW_MS) {
        suppressed = in->log_suppressed;
        in->log_suppressed = 0;
        in->log_window_start = now;
        in->log_in_window = 0;
    }
    emit = in->log_in_window < MHD_LOG_BURST;
    if (emit) {
        in->log_in_window++;
    } else {
        in->log_suppressed++;
    }
    pthread_mutex_unlock(&in->lmu);
    if (suppressed) {
        char k[24];
        snprintf(k, sizeof k, "%lld", (long long)suppressed);
        pdr_log(PDR_LOG_WARN, "http server messages suppressed", "count", k, NULL);
    }
    if (!emit) return;
    if (strncmp(fmt, refusal, sizeof refusal - 1) == 0) {
        unsigned status = va_arg(ap, unsigned);
        const char *body = va_arg(ap, const char *);
        cJSON *j = body ? cJSON_Parse(body) : NULL;
        const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "errors"), 0);
        char st[16];
        snprintf(st, sizeof st, "%u", status);
        pdr_log(PDR_LOG_INFO, "request refused", "endpoint", "http", "status", st, "error",
                cJSON_IsString(e) ? e->valuestring : "malformed request", NULL);
        cJSON_Delete(j);
        return;
    }
    if (strncmp(fmt, at_limit, sizeof at_limit - 1) == 0) {
        pdr_log(PDR_LOG_WARN, "connection refused: a connection limit is reached", "limits",
                "[listen] max_connections, max_connections_per_client", NULL);
        return;
    }
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
    /* What MHD says of a client's error or departure: detail for debug. */
    for (size_t i = 0; i < sizeof client_errors / sizeof client_errors[0]; i++)
        if (strncmp(fmt, client_errors[i], strlen(client_errors[i])) == 0) {
            pdr_log(PDR_LOG_DEBUG, "http server", "detail", msg, NULL);
            return;
        }
    pdr_log(PDR_LOG_WARN, "http server", "detail", msg, NULL);
}

/* ---- life cycle --------------------------------------------------------- */

pdr_rc ingest_create(const pdr_config *cfg, writer *w, ingest **out, char *errbuf, size_t errsz)
{
    ingest *in;
    cfg_ref *ref;
    pdr_rc rc;

    *out = NULL;
    in = pdr_calloc(1, sizeof *in);
    ref = pdr_calloc(1, sizeof *ref);
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
    pthread_mutex_init(&in->cmu, NULL);
    pthread_mutex_init(&in->lmu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&in->ccv, &ca);
        pthread_condattr_destroy(&ca);
    }
    in->reply408_len = (size_t)snprintf(in->reply408, sizeof in->reply408,
                                        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                                        "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                                        sizeof BODY_408 - 1, BODY_408);
    assert(in->reply408_len < sizeof in->reply408);
    /* Listen settings need a restart: they are fixed here. */
    in->reaper_wake_ms = INT64_MAX;
    in->offset_ms[DL_FIRST] = cfg->request_timeout_ms;
    in->offset_ms[DL_KEEPALIVE] = cfg->idle_timeout_ms + cfg->request_timeout_ms;
    in->offset_ms[DL_REPLY] = cfg->request_timeout_ms;
    *out = in;
    return PDR_OK;
}

/* Options every daemon shares; cfg gives the limits. */
static struct MHD_Daemon *daemon_start(ingest *in, const pdr_config *cfg, unsigned flags, int listen_fd,
                                       const struct sockaddr *sa)
{
    unsigned timeout_s = (unsigned)((cfg->idle_timeout_ms + 999) / 1000);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    /* Automatic: the writer and the sender take the other half. Measured on
    ** 2 CPUs (tests/bench/bench_ingest): one loop costs less CPU per event. */
    unsigned threads = cfg->listen_threads ? (unsigned)cfg->listen_threads : cpus >= 2 ? (unsigned)(cpus / 2) : 1u;
    flags |= MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME |
             MHD_USE_ITC;   /* for MHD_quiesce_daemon and resuming */
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, in},   /* first, as MHD asks */
        {listen_fd >= 0 ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_SOCK_ADDR, listen_fd, (void *)sa},
        {MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_client, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, NULL},
        {MHD_OPTION_THREAD_STACK_SIZE, INGEST_THREAD_STACK, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, in},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, in},
        /* One thread is MHD's own polling thread: a pool of 1 is refused with a warning. */
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, in, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
}

/* Every connection is a descriptor: raise the soft limit towards what
** max_connections needs (up to the hard limit), and say so when it cannot. */
static void fd_limit_raise(const pdr_config *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + INGEST_FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want) {
        char have[24], need[24];
        snprintf(have, sizeof have, "%llu", (unsigned long long)rl.rlim_cur);
        snprintf(need, sizeof need, "%llu", (unsigned long long)want);
        pdr_log(PDR_LOG_WARN, "the open-files limit is below what [listen] max_connections needs; "
                "connections past it are refused (raise LimitNOFILE or ulimit -n, or lower max_connections)",
                "limit", have, "needed", need, NULL);
    }
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
        snprintf(errbuf, errsz, "[listen] unix_socket %.4096s: path too long", path);   /* %.4096s: a bounded result, which 32-bit gcc wants */
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
    in->unix_path = pdr_strdup(path);
    pdr_log(PDR_LOG_INFO, "listening", "unix_socket", path, NULL);
    return PDR_OK;
}

pdr_rc ingest_start(ingest *in, char *errbuf, size_t errsz)
{
    const pdr_config *cfg = in->cur->cfg;
    pdr_rc rc = PDR_OK;
    fd_limit_raise(cfg);
#ifdef M_MMAP_THRESHOLD
    /* Bodies of 128 KB or more get memory of their own, given back when
    ** freed (glibc would otherwise raise the threshold after the first
    ** free and keep a burst of large bodies in its heap for good). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    if (pthread_create(&in->reaper, NULL, reaper_main, in) != 0) {
        snprintf(errbuf, errsz, "cannot start the request-timeout thread");
        return PDR_ERR_NOMEM;
    }
    in->reaper_started = 1;
    if (cfg->listen_port > 0) rc = start_tcp(in, cfg, errbuf, errsz);
    if (!rc && cfg->unix_socket) rc = start_unix(in, cfg, errbuf, errsz);
    if (!rc && !in->tcp && !in->unix_d)
        pdr_log(PDR_LOG_WARN, "no HTTP ingest: [listen] port is 0 and no unix_socket is set", NULL);
    if (rc) ingest_stop(in);
    return rc;
}

pdr_rc ingest_reload(ingest *in, pdr_config *cfg, char *errbuf, size_t errsz)
{
    cfg_ref *ref = pdr_calloc(1, sizeof *ref), *old;
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
    /* A job out holds a suspended connection that its callback will
    ** resume: the daemons must outlive it (the writer runs until after
    ** ingest_stop, so every job ends). */
    while (in->jobs_out > 0) pthread_cond_wait(&in->idle_cv, &in->mu);
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
    if (in->reaper_started) {
        pthread_mutex_lock(&in->cmu);
        in->reaper_stop = 1;
        pthread_cond_signal(&in->ccv);
        pthread_mutex_unlock(&in->cmu);
        pthread_join(in->reaper, NULL);
        in->reaper_started = 0;
    }
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
    pthread_cond_destroy(&in->ccv);
    pthread_mutex_destroy(&in->cmu);
    pthread_mutex_destroy(&in->lmu);
    free(in);
}
