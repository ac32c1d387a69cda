/*
** mock_pd.c — a mock PagerDuty Events API v2 server for pdrelay's tests.
**
** It answers POST /v2/enqueue (alias /v2/events) and /v2/change/enqueue the
** way PagerDuty does (validation, 202/400/429 bodies, a per-routing-key
** sliding-window rate limit), records every event request in memory, and can
** be told at run time to misbehave (fixed status, hang, connection reset,
** slow replies). Tests drive it over HTTP through /_mock/... endpoints (see
** mockpd_client.h). Its validator is mockpd_validate.c, as strict as
** PagerDuty; it never links pdrelay's own code, so the two validators check
** each other.
**
**   mock_pd [--port N] [--tls-cert FILE --tls-key FILE] [--limit N]
**           [--window-ms MS] [--latency-ms MS] [--port-file PATH]
**           [--watch-stdin] [--verbose]
**
** Once listening it prints the port and writes it to --port-file (tmp +
** rename). SIGTERM / SIGINT (or EOF on stdin with --watch-stdin, so a test
** process that dies takes its mock with it) stop it with exit status 0.
**
** DESIGN
**  1. One MHD daemon bound to 127.0.0.1 with a socket we make ourselves
**     (SO_REUSEADDR, so a restart rebinds the same port at once), one thread
**     per connection, so a handler may block (latency, "slow", "hang",
**     /_mock/wait) without holding up any other connection.
**  2. All shared state — records, counters, rate windows, fault mode — is the
**     one `mock` struct under one mutex. One condition variable (on
**     CLOCK_MONOTONIC) is broadcast whenever a counter moves and at shutdown,
**     so every wait is a condition wait: nothing polls.
**  3. An event request's fate is decided once, under the mutex, when its whole
**     body is in: it is recorded and counted then, and only the reply is
**     delayed afterwards. A rate window or /_mock/wait sees it at once, as
**     PagerDuty has the event even if the client times out on the reply.
**  4. Shutdown: the signal handler only writes to a pipe. main() then sets
**     `stopping` and broadcasts (wakes delays and waits), writes the stop pipe
**     (wakes "hang" handlers blocked in poll() on their client socket), and
**     only then calls MHD_stop_daemon(), which joins every connection thread.
**  5. Memory is bounded: bodies are capped at 1 MB (413 beyond), records at
**     MOCK_RECORDS_MAX, each rate window at --limit timestamps.
**
** A plain webhook endpoint stands in for a generic HTTP receiver (pdrelay's
** webhook targets): POST /webhook or /webhook/ANYTHING records the method,
** path, every request header and the body (GET /_mock/webhooks), answers
** 200 {"status":"ok"}, and has a fault mode of its own, set with
** {"target":"webhook", ...} on /_mock/mode (the same modes; the events'
** mode is left alone). /_mock/wait also takes webhooks=N (2xx answers) and
** webhook_requests=N.
**
** Life of one event request (the access handler is called several times):
**
**   first call ── route_find ──▶ unknown path 404 / wrong method 405 /
**        │                       Content-Length > 1 MB: 413 (event_decide)
**        ▼
**   upload calls ── body_append (over the cap: discarded, too_big set)
**        ▼
**   final call ── mockpd_validate (parse, validate; no lock)
**        ▼
**   event_decide (under the mutex: fault mode, rate window, record, counters)
**        ├── reset ──▶ return MHD_NO: the connection is closed, no reply
**        ├── hang ───▶ hang_until_gone (client closes or server stops) ▶ MHD_NO
**        └── else ───▶ delay_ms (latency [+ slow delay]) ▶ reply
*/
#define _GNU_SOURCE /* POLLRDHUP */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "mockpd_validate.h"

#define MOCK_BODY_MAX (1024 * 1024)  /* larger request bodies: 413 */
#define MOCK_RECORDS_MAX 100000      /* requests beyond are counted, not kept */
#define MOCK_WAIT_DEFAULT_MS 10000   /* /_mock/wait without timeout_ms */
#define MOCK_WAIT_MAX_MS 600000

/* ---- state --------------------------------------------------------------- */

typedef enum mock_fault {
    FAULT_OK = 0,
    FAULT_STATUS, /* answer every event request with a fixed HTTP status */
    FAULT_HANG,   /* never answer */
    FAULT_RESET,  /* close the connection without a reply */
    FAULT_SLOW    /* a normal reply after delay_ms */
} mock_fault;

static const char *const fault_names[] = {"ok", "status", "hang", "reset", "slow"};

/* One event request as /_mock/requests shows it. Strings are malloc'd or NULL. */
typedef struct mock_record {
    long seq;           /* 1, 2, ... in arrival order (restarts at reset) */
    int64_t arrival_ms; /* monotonic, since the mock started */
    const char *path;   /* a route's static path */
    char *proxied_host; /* host of an absolute-form request line (it came through a proxy), or NULL */
    int status;         /* HTTP status answered; 0: none (hang, reset) */
    mock_fault fault;   /* the fault applied, FAULT_OK if none */
    char *routing_key, *event_action, *dedup_key, *summary, *body;
} mock_record;

/* One webhook request as /_mock/webhooks shows it. */
typedef struct wh_record {
    long seq;
    int64_t arrival_ms;
    char *method, *path;
    char *headers;      /* a JSON object of the request's headers, as text */
    int status;         /* 0: none (hang, reset) */
    mock_fault fault;
    char *body;
} wh_record;

/* The accepted-request times of one routing key, oldest first, at most
** mock.limit of them. */
typedef struct rate_window {
    char *key;
    int64_t *stamps;
    size_t n;
    struct rate_window *next;
} rate_window;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast: counters moved, or stopping */
    struct timespec t0;

    /* Options, read-only once the daemon runs. */
    int limit;      /* 0: no rate limit */
    int window_ms;
    int latency_ms;
    bool verbose;

    /* Under mu. */
    bool stopping;
    mock_fault fault;
    int fault_status;
    int fault_delay_ms;
    long fault_left; /* event requests the fault still applies to; <0: all */
    char *retry_after; /* Retry-After header on FAULT_STATUS replies, or NULL */
    mock_record *recs;
    size_t nrecs, caprecs;
    long seq;
    long accepted, throttled, invalid, faulted, requests;
    rate_window *windows;
    uint64_t uuid_state;
    /* The webhook endpoint: its own fault mode, records and counters. */
    mock_fault wh_fault;
    int wh_status, wh_delay_ms;
    long wh_left;
    char *wh_retry_after;
    struct wh_record *whs;
    size_t nwhs, capwhs;
    long wh_accepted, wh_requests;

    int stop_rd, stop_wr; /* readable once the server is stopping */
} mock = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .limit = 120,
    .window_ms = 60000,
    .stop_rd = -1,
    .stop_wr = -1,
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)(ts.tv_sec - mock.t0.tv_sec) * 1000 + (ts.tv_nsec - mock.t0.tv_nsec) / 1000000;
}

/* An absolute CLOCK_MONOTONIC deadline ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("mock_pd: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* ---- validation: mockpd_validate.c (no lock, no shared state) ---------- */

typedef mockpd_check check_result;

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

/* ---- decisions (under mock.mu) ------------------------------------------ */

/* May this routing key have one more accepted request now? If so, counts it. */
static bool rate_take(const char *key, int64_t now)
{
    rate_window *w;
    if (mock.limit <= 0) return true;
    if (!key) key = "";
    for (w = mock.windows; w; w = w->next)
        if (!strcmp(w->key, key)) break;
    if (!w) {
        w = xmalloc(sizeof *w);
        w->key = xstrdup(key);
        w->stamps = xmalloc(sizeof(int64_t) * (size_t)mock.limit);
        w->n = 0;
        w->next = mock.windows;
        mock.windows = w;
    }
    size_t old = 0;
    while (old < w->n && now - w->stamps[old] >= mock.window_ms) old++;
    if (old) {
        memmove(w->stamps, w->stamps + old, (w->n - old) * sizeof(int64_t));
        w->n -= old;
    }
    if (w->n >= (size_t)mock.limit) return false;
    w->stamps[w->n++] = now;
    return true;
}

static void windows_free(void)
{
    while (mock.windows) {
        rate_window *w = mock.windows;
        mock.windows = w->next;
        free(w->key);
        free(w->stamps);
        free(w);
    }
}

static void records_free(void)
{
    for (size_t i = 0; i < mock.nrecs; i++) {
        mock_record *r = &mock.recs[i];
        free(r->routing_key);
        free(r->event_action);
        free(r->dedup_key);
        free(r->summary);
        free(r->body);
        free(r->proxied_host);
    }
    free(mock.recs);
    mock.recs = NULL;
    mock.nrecs = mock.caprecs = 0;
    for (size_t i = 0; i < mock.nwhs; i++) {
        wh_record *r = &mock.whs[i];
        free(r->method);
        free(r->path);
        free(r->headers);
        free(r->body);
    }
    free(mock.whs);
    mock.whs = NULL;
    mock.nwhs = mock.capwhs = 0;
}

/* A fresh UUID-shaped dedup key, as PagerDuty gives a trigger without one. */
static void uuid_make(char out[37])
{
    uint64_t x = mock.uuid_state, a, b;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17; a = x;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17; b = x;
    mock.uuid_state = x;
    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffffu,
             (unsigned)a & 0xfffu, (unsigned)((b >> 48) & 0x3fffu) | 0x8000u,
             (unsigned long long)(b & 0xffffffffffffULL));
}

/* What the handler does after event_decide. */
typedef struct decision {
    mock_fault fault;
    int status;         /* to answer (unless hang / reset) */
    int delay_ms;       /* before answering */
    char dedup_key[37]; /* a generated key for a trigger without one */
    char *retry_after;  /* malloc'd copy, or NULL */
} decision;

static void record_add(const char *path, const char *proxied_host, int64_t now, const check_result *cr,
                       const char *body, const decision *d)
{
    if (mock.nrecs == MOCK_RECORDS_MAX) return;
    if (mock.nrecs == mock.caprecs) {
        size_t cap = mock.caprecs ? mock.caprecs * 2 : 64;
        if (cap > MOCK_RECORDS_MAX) cap = MOCK_RECORDS_MAX;
        mock_record *n = realloc(mock.recs, cap * sizeof *n);
        if (!n) return;
        mock.recs = n;
        mock.caprecs = cap;
    }
    mock_record *r = &mock.recs[mock.nrecs++];
    r->seq = mock.seq;
    r->arrival_ms = now;
    r->path = path;
    r->proxied_host = xstrdup(proxied_host);
    r->status = d->status;
    r->fault = d->fault;
    r->routing_key = xstrdup(cr->routing_key);
    r->event_action = xstrdup(cr->event_action);
    r->dedup_key = xstrdup(d->dedup_key[0] ? d->dedup_key : cr->dedup_key);
    r->summary = xstrdup(cr->summary);
    r->body = xstrdup(body);
}

/* Decides an event request's fate, then records and counts it. */
static void event_decide(const char *path, const char *proxied_host, const check_result *cr, const char *body,
                         decision *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_lock(&mock.mu);
    int64_t now = mono_ms();
    mock.seq++;
    d->fault = mock.fault;
    d->delay_ms = mock.latency_ms;
    if (mock.fault != FAULT_OK && mock.fault_left > 0 && --mock.fault_left == 0) mock.fault = FAULT_OK;

    switch (d->fault) {
    case FAULT_HANG:
    case FAULT_RESET:
        d->status = 0;
        mock.faulted++;
        break;
    case FAULT_STATUS:
        d->status = mock.fault_status;
        d->retry_after = xstrdup(mock.retry_after);
        mock.faulted++;
        break;
    case FAULT_SLOW:
        d->delay_ms += mock.fault_delay_ms; /* and otherwise a normal reply */
        /* fall through */
    case FAULT_OK:
        if (cr->v == MOCKPD_TOO_BIG) {
            d->status = MHD_HTTP_CONTENT_TOO_LARGE;
            mock.invalid++;
        } else if (cr->v != MOCKPD_VALID) {
            d->status = MHD_HTTP_BAD_REQUEST;
            mock.invalid++;
        } else if (!rate_take(cr->routing_key, now)) {
            d->status = MHD_HTTP_TOO_MANY_REQUESTS;
            mock.throttled++;
        } else {
            d->status = MHD_HTTP_ACCEPTED;
            mock.accepted++;
            if (cr->is_trigger && (!cr->dedup_key || blank(cr->dedup_key))) uuid_make(d->dedup_key);
        }
        break;
    }
    mock.requests++;
    record_add(path, proxied_host, now, cr, body, d);
    pthread_cond_broadcast(&mock.cv);
    pthread_mutex_unlock(&mock.mu);
}

/* ---- replies -------------------------------------------------------------- */

/* Queues j (consumed) as a JSON reply. */
static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned status, cJSON *j,
                                  const char *hdr_name, const char *hdr_value)
{
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_COPY);
    cJSON_free(text);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (hdr_name && hdr_value) MHD_add_response_header(resp, hdr_name, hdr_value);
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static cJSON *msg_json(const char *status, const char *message)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", status);
    cJSON_AddStringToObject(j, "message", message);
    return j;
}

static enum MHD_Result reply_msg(struct MHD_Connection *conn, unsigned status, const char *st,
                                 const char *message)
{
    return reply_json(conn, status, msg_json(st, message), NULL, NULL);
}

static cJSON *throttle_json(void)
{
    return msg_json("throttle event",
                    "Requests for this service are arriving too quickly. Please retry later.");
}

/* The reply body for a decided event request. Consumes cr->errors. */
static cJSON *event_reply_body(check_result *cr, const decision *d)
{
    cJSON *j;
    char msg[64];
    if (d->fault == FAULT_STATUS) {
        if (d->status == MHD_HTTP_TOO_MANY_REQUESTS) return throttle_json();
        snprintf(msg, sizeof msg, "Injected HTTP %d", d->status);
        return msg_json("mock fault", msg);
    }
    switch (d->status) {
    case MHD_HTTP_ACCEPTED:
        if (cr->is_change) return msg_json("success", "Change event processed");
        j = msg_json("success", "Event processed");
        cJSON_AddStringToObject(j, "dedup_key", d->dedup_key[0] ? d->dedup_key : cr->dedup_key);
        return j;
    case MHD_HTTP_TOO_MANY_REQUESTS:
        return throttle_json();
    case MHD_HTTP_CONTENT_TOO_LARGE:
        return msg_json("Request too large", "Request body is larger than 1 MB");
    default:
        if (cr->v == MOCKPD_NOT_JSON) {
            j = msg_json("Unrecognized object", "Event object is invalid");
            cJSON *e = cJSON_AddArrayToObject(j, "errors");
            cJSON_AddItemToArray(e, cJSON_CreateString("JSON parse error"));
            return j;
        }
        j = msg_json("invalid event", "Event object is invalid");
        cJSON_AddItemToObject(j, "errors", cr->errors);
        cr->errors = NULL;
        return j;
    }
}

/* Waits ms (a condition wait, cut short by shutdown). False when stopping. */
static bool delay_ms(int ms)
{
    struct timespec until = deadline_in(ms);
    int rc = 0;
    pthread_mutex_lock(&mock.mu);
    while (!mock.stopping && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&mock.cv, &mock.mu, &until);
    bool ok = !mock.stopping;
    pthread_mutex_unlock(&mock.mu);
    return ok;
}

/* "hang": blocks until the client closes its end or the server stops. Only
** POLLRDHUP is asked for on the client socket, so data it sends (a pipelined
** request, a TLS alert) does not wake us, its FIN or RST does. */
static void hang_until_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd pf[2] = {
        {.fd = ci ? ci->connect_fd : -1, .events = POLLRDHUP},
        {.fd = mock.stop_rd, .events = POLLIN},
    };
    for (;;) {
        int n = poll(pf, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || pf[0].revents || pf[1].revents) return;
    }
}

/* ---- routes ---------------------------------------------------------------- */

typedef enum route {
    R_ENQUEUE, R_CHANGE, R_MODE, R_RESET, R_EVENTS, R_REQUESTS, R_STATS, R_WAIT, R_WEBHOOKS, R_WEBHOOK
} route;

static const struct {
    const char *path;
    const char *method;
    route r;
} routes[] = {
    {"/v2/enqueue", "POST", R_ENQUEUE},
    {"/v2/events", "POST", R_ENQUEUE},
    {"/v2/change/enqueue", "POST", R_CHANGE},
    {"/_mock/mode", "POST", R_MODE},
    {"/_mock/reset", "POST", R_RESET},
    {"/_mock/events", "GET", R_EVENTS},
    {"/_mock/requests", "GET", R_REQUESTS},
    {"/_mock/stats", "GET", R_STATS},
    {"/_mock/wait", "GET", R_WAIT},
    {"/_mock/webhooks", "GET", R_WEBHOOKS},
    {"/webhook", "POST", R_WEBHOOK},   /* and /webhook/ANYTHING: route_find */
};
#define ROUTES_N (sizeof routes / sizeof routes[0])

/* An absolute-form target ("http://host:port/path", what a client sends to
** an HTTP proxy) is served as its path, so the mock can stand in for a
** proxy too; *host_out (malloc'd) names the host it was addressed to. */
static const char *url_path(const char *url, char **host_out)
{
    const char *p = NULL;
    *host_out = NULL;
    if (!strncmp(url, "http://", 7)) p = url + 7;
    else if (!strncmp(url, "https://", 8)) p = url + 8;
    if (!p) return url;
    const char *slash = strchr(p, '/');
    *host_out = strndup(p, slash ? (size_t)(slash - p) : strlen(p));
    return slash ? slash : "/";
}

static int route_find(const char *url)
{
    for (size_t i = 0; i < ROUTES_N; i++)
        if (!strcmp(url, routes[i].path) || (routes[i].r == R_WEBHOOK && !strncmp(url, "/webhook/", 9)))
            return (int)i;
    return -1;
}

/* Per-request state, freed by on_completed. */
typedef struct req_ctx {
    int route_ix;
    char *url;  /* the path as requested (the webhook records it) */
    char *proxied_host; /* see mock_record */
    char *body; /* NUL-terminated */
    size_t len, cap;
    bool too_big;
} req_ctx;

static void body_append(req_ctx *ctx, const char *data, size_t n)
{
    if (ctx->too_big) return;
    if (ctx->len + n > MOCK_BODY_MAX) {
        ctx->too_big = true;
        free(ctx->body);
        ctx->body = NULL;
        ctx->len = ctx->cap = 0;
        return;
    }
    if (ctx->len + n + 1 > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + n + 1) cap *= 2;
        char *b = realloc(ctx->body, cap);
        if (!b) {
            ctx->too_big = true;
            return;
        }
        ctx->body = b;
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, n);
    ctx->len += n;
    ctx->body[ctx->len] = '\0';
}

static enum MHD_Result handle_event(struct MHD_Connection *conn, req_ctx *ctx)
{
    const char *path = routes[ctx->route_ix].path;
    check_result cr;
    decision d;
    mockpd_validate(ctx->body, ctx->len, ctx->too_big, routes[ctx->route_ix].r == R_CHANGE, &cr);
    event_decide(path, ctx->proxied_host, &cr, ctx->too_big ? NULL : (ctx->body ? ctx->body : ""), &d);

    enum MHD_Result rc = MHD_NO;
    if (d.fault == FAULT_RESET) goto out;
    if (d.fault == FAULT_HANG) {
        hang_until_gone(conn);
        goto out;
    }
    if (d.delay_ms > 0 && !delay_ms(d.delay_ms)) goto out;
    rc = reply_json(conn, (unsigned)d.status, event_reply_body(&cr, &d),
                    d.retry_after ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, d.retry_after);
out:
    free(d.retry_after);
    mockpd_check_free(&cr);
    return rc;
}

/* MHD_get_connection_values iterator: each header into a JSON object. */
static enum MHD_Result header_add(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    cJSON_AddStringToObject(cls, key, value ? value : "");
    return MHD_YES;
}

/* A webhook request: decided, recorded and counted under the mutex (its
** own fault mode), then answered like an event request. */
static enum MHD_Result handle_webhook(struct MHD_Connection *conn, req_ctx *ctx, const char *method)
{
    cJSON *hdrs = cJSON_CreateObject();
    char *htext;
    mock_fault fault;
    int status, delay;
    char *retry_after = NULL;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, header_add, hdrs);
    htext = cJSON_PrintUnformatted(hdrs);
    cJSON_Delete(hdrs);

    pthread_mutex_lock(&mock.mu);
    mock.seq++;
    fault = mock.wh_fault;
    delay = mock.latency_ms;
    if (mock.wh_fault != FAULT_OK && mock.wh_left > 0 && --mock.wh_left == 0) mock.wh_fault = FAULT_OK;
    switch (fault) {
    case FAULT_HANG:
    case FAULT_RESET: status = 0; break;
    case FAULT_STATUS:
        status = mock.wh_status;
        retry_after = xstrdup(mock.wh_retry_after);
        break;
    case FAULT_SLOW: delay += mock.wh_delay_ms; /* fall through */
    default: status = ctx->too_big ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_OK; break;
    }
    mock.wh_requests++;
    if (status >= 200 && status < 300) mock.wh_accepted++;
    if (mock.nwhs < MOCK_RECORDS_MAX) {
        if (mock.nwhs == mock.capwhs) {
            size_t cap = mock.capwhs ? mock.capwhs * 2 : 64;
            wh_record *n = realloc(mock.whs, cap * sizeof *n);
            if (!n) abort();
            mock.whs = n;
            mock.capwhs = cap;
        }
        wh_record *r = &mock.whs[mock.nwhs++];
        r->seq = mock.seq;
        r->arrival_ms = mono_ms();
        r->method = xstrdup(method);
        r->path = xstrdup(ctx->url);
        r->headers = xstrdup(htext ? htext : "{}");
        r->status = status;
        r->fault = fault;
        r->body = xstrdup(ctx->body ? ctx->body : "");
    }
    pthread_cond_broadcast(&mock.cv);
    pthread_mutex_unlock(&mock.mu);
    cJSON_free(htext);

    enum MHD_Result rc = MHD_NO;
    if (fault == FAULT_RESET) goto out;
    if (fault == FAULT_HANG) {
        hang_until_gone(conn);
        goto out;
    }
    if (delay > 0 && !delay_ms(delay)) goto out;
    rc = reply_json(conn, (unsigned)status,
                    fault == FAULT_STATUS ? msg_json("mock fault", "Injected webhook fault") : msg_json("ok", "Recorded"),
                    retry_after ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, retry_after);
out:
    free(retry_after);
    return rc;
}

static enum MHD_Result handle_webhooks(struct MHD_Connection *conn)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&mock.mu);
    for (size_t i = 0; i < mock.nwhs; i++) {
        const wh_record *r = &mock.whs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)r->seq);
        cJSON_AddNumberToObject(o, "arrival_ms", (double)r->arrival_ms);
        cJSON_AddStringToObject(o, "method", r->method);
        cJSON_AddStringToObject(o, "path", r->path);
        cJSON_AddNumberToObject(o, "status", r->status);
        if (r->fault == FAULT_OK) cJSON_AddNullToObject(o, "fault");
        else cJSON_AddStringToObject(o, "fault", fault_names[r->fault]);
        cJSON *h = cJSON_Parse(r->headers);
        cJSON_AddItemToObject(o, "headers", h ? h : cJSON_CreateObject());
        cJSON_AddStringToObject(o, "body", r->body);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&mock.mu);
    return reply_json(conn, MHD_HTTP_OK, arr, NULL, NULL);
}

static cJSON *stats_json(void) /* under mock.mu */
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "accepted", (double)mock.accepted);
    cJSON_AddNumberToObject(j, "throttled", (double)mock.throttled);
    cJSON_AddNumberToObject(j, "invalid", (double)mock.invalid);
    cJSON_AddNumberToObject(j, "faulted", (double)mock.faulted);
    cJSON_AddNumberToObject(j, "requests", (double)mock.requests);
    cJSON_AddNumberToObject(j, "webhooks", (double)mock.wh_accepted);
    cJSON_AddNumberToObject(j, "webhook_requests", (double)mock.wh_requests);
    return j;
}

static cJSON *mode_json(void) /* under mock.mu */
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", fault_names[mock.fault]);
    cJSON_AddNumberToObject(j, "status", mock.fault_status);
    cJSON_AddNumberToObject(j, "delay_ms", mock.fault_delay_ms);
    cJSON_AddNumberToObject(j, "count", mock.fault_left < 0 ? 0 : (double)mock.fault_left);
    if (mock.retry_after) cJSON_AddStringToObject(j, "retry_after", mock.retry_after);
    return j;
}

static void add_str_or_null(cJSON *o, const char *name, const char *s)
{
    if (s) cJSON_AddStringToObject(o, name, s);
    else cJSON_AddNullToObject(o, name);
}

static enum MHD_Result handle_records(struct MHD_Connection *conn, bool accepted_only)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&mock.mu);
    for (size_t i = 0; i < mock.nrecs; i++) {
        const mock_record *r = &mock.recs[i];
        if (accepted_only && r->status != MHD_HTTP_ACCEPTED) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)r->seq);
        cJSON_AddNumberToObject(o, "arrival_ms", (double)r->arrival_ms);
        cJSON_AddStringToObject(o, "path", r->path);
        add_str_or_null(o, "proxied_host", r->proxied_host);
        cJSON_AddNumberToObject(o, "status", r->status);
        add_str_or_null(o, "fault", r->fault == FAULT_OK ? NULL : fault_names[r->fault]);
        add_str_or_null(o, "routing_key", r->routing_key);
        add_str_or_null(o, "event_action", r->event_action);
        add_str_or_null(o, "dedup_key", r->dedup_key);
        add_str_or_null(o, "summary", r->summary);
        add_str_or_null(o, "body", r->body);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&mock.mu);
    return reply_json(conn, MHD_HTTP_OK, arr, NULL, NULL);
}

/* A query argument as a non-negative int; def when absent; -1 when bad. */
static long query_long(struct MHD_Connection *conn, const char *name, long def, long max)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    char *end;
    if (!v) return def;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0) return -1;
    return n > max ? max : n;
}

static enum MHD_Result handle_wait(struct MHD_Connection *conn)
{
    long want_acc = query_long(conn, "accepted", 0, LONG_MAX);
    long want_req = query_long(conn, "requests", 0, LONG_MAX);
    long want_wh = query_long(conn, "webhooks", 0, LONG_MAX);
    long want_whr = query_long(conn, "webhook_requests", 0, LONG_MAX);
    long timeout = query_long(conn, "timeout_ms", MOCK_WAIT_DEFAULT_MS, MOCK_WAIT_MAX_MS);
    if (want_acc < 0 || want_req < 0 || want_wh < 0 || want_whr < 0 || timeout < 0)
        return reply_msg(conn, MHD_HTTP_BAD_REQUEST, "bad request",
                         "accepted, requests and timeout_ms must be non-negative integers");
    struct timespec until = deadline_in(timeout);
    int rc = 0;
    pthread_mutex_lock(&mock.mu);
    while (!mock.stopping && rc != ETIMEDOUT &&
           (mock.accepted < want_acc || mock.requests < want_req || mock.wh_accepted < want_wh ||
            mock.wh_requests < want_whr))
        rc = pthread_cond_timedwait(&mock.cv, &mock.mu, &until);
    bool reached = mock.accepted >= want_acc && mock.requests >= want_req && mock.wh_accepted >= want_wh &&
                   mock.wh_requests >= want_whr;
    bool stopping = mock.stopping;
    cJSON *stats = stats_json();
    pthread_mutex_unlock(&mock.mu);
    if (stopping) {
        cJSON_Delete(stats);
        return MHD_NO;
    }
    return reply_json(conn, reached ? MHD_HTTP_OK : MHD_HTTP_REQUEST_TIMEOUT, stats, NULL, NULL);
}

/* POST /_mock/mode {"mode":..., "status":N, "delay_ms":N, "count":N, "retry_after":"..."} */
static enum MHD_Result handle_mode(struct MHD_Connection *conn, req_ctx *ctx)
{
    cJSON *j = ctx->body ? cJSON_ParseWithLength(ctx->body, ctx->len) : NULL;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(j, "delay_ms");
    const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(j, "count");
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(j, "retry_after");
    const cJSON *tg = cJSON_GetObjectItemCaseSensitive(j, "target");
    bool webhook = cJSON_IsString(tg) && !strcmp(tg->valuestring, "webhook");
    const char *problem = NULL;
    int f = -1;
    if (!cJSON_IsObject(j) || !cJSON_IsString(mode)) {
        problem = "body must be a JSON object with a string \"mode\"";
    } else {
        for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0]; i++)
            if (!strcmp(mode->valuestring, fault_names[i])) f = (int)i;
        if (f < 0) problem = "mode must be one of: ok, status, hang, reset, slow";
        else if (st && (!cJSON_IsNumber(st) || st->valuedouble < 100 || st->valuedouble > 599))
            problem = "status must be an HTTP status (100-599)";
        else if (dl && (!cJSON_IsNumber(dl) || dl->valuedouble < 0 || dl->valuedouble > 3600000))
            problem = "delay_ms must be 0-3600000";
        else if (cnt && (!cJSON_IsNumber(cnt) || cnt->valuedouble < 0 || cnt->valuedouble > 1e9))
            problem = "count must be a non-negative integer";
        else if (ra && !cJSON_IsNull(ra) && !cJSON_IsString(ra))
            problem = "retry_after must be a string";
        else if (tg && !(cJSON_IsString(tg) && (webhook || !strcmp(tg->valuestring, "events"))))
            problem = "target must be \"events\" or \"webhook\"";
    }
    if (problem) {
        cJSON_Delete(j);
        return reply_msg(conn, MHD_HTTP_BAD_REQUEST, "bad request", problem);
    }
    pthread_mutex_lock(&mock.mu);
    if (webhook) {
        mock.wh_fault = (mock_fault)f;
        mock.wh_status = st ? st->valueint : 500;
        mock.wh_delay_ms = dl ? dl->valueint : 0;
        mock.wh_left = cnt && cnt->valueint > 0 ? cnt->valueint : -1;
        free(mock.wh_retry_after);
        mock.wh_retry_after = cJSON_IsString(ra) ? xstrdup(ra->valuestring) : NULL;
        cJSON *reply = mode_json();
        pthread_mutex_unlock(&mock.mu);
        cJSON_Delete(j);
        return reply_json(conn, MHD_HTTP_OK, reply, NULL, NULL);
    }
    mock.fault = (mock_fault)f;
    mock.fault_status = st ? st->valueint : 500;
    mock.fault_delay_ms = dl ? dl->valueint : 0;
    mock.fault_left = cnt && cnt->valueint > 0 ? cnt->valueint : -1;
    free(mock.retry_after);
    mock.retry_after = cJSON_IsString(ra) ? xstrdup(ra->valuestring) : NULL;
    cJSON *reply = mode_json();
    pthread_mutex_unlock(&mock.mu);
    cJSON_Delete(j);
    return reply_json(conn, MHD_HTTP_OK, reply, NULL, NULL);
}

static enum MHD_Result handle_reset(struct MHD_Connection *conn)
{
    pthread_mutex_lock(&mock.mu);
    records_free();
    windows_free();
    mock.seq = 0;
    mock.accepted = mock.throttled = mock.invalid = mock.faulted = mock.requests = 0;
    mock.fault = FAULT_OK;
    mock.fault_status = 0;
    mock.fault_delay_ms = 0;
    mock.fault_left = -1;
    free(mock.retry_after);
    mock.retry_after = NULL;
    mock.wh_fault = FAULT_OK;
    mock.wh_left = -1;
    mock.wh_accepted = mock.wh_requests = 0;
    free(mock.wh_retry_after);
    mock.wh_retry_after = NULL;
    cJSON *stats = stats_json();
    pthread_cond_broadcast(&mock.cv);
    pthread_mutex_unlock(&mock.mu);
    return reply_json(conn, MHD_HTTP_OK, stats, NULL, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    req_ctx *ctx = *con_cls;
    (void)cls;
    (void)version;
    if (!ctx) {
        char *host = NULL;
        int ix = route_find(url_path(url, &host));
        if (ix < 0 || (host && routes[ix].r != R_ENQUEUE && routes[ix].r != R_CHANGE)) {
            free(host);
            return reply_msg(conn, MHD_HTTP_NOT_FOUND, "not found", "No such path");
        }
        if (strcmp(method, routes[ix].method) != 0) {
            char msg[64];
            free(host);
            snprintf(msg, sizeof msg, "Use %s", routes[ix].method);
            return reply_json(conn, MHD_HTTP_METHOD_NOT_ALLOWED, msg_json("method not allowed", msg),
                              MHD_HTTP_HEADER_ALLOW, routes[ix].method);
        }
        ctx = calloc(1, sizeof *ctx);
        if (!ctx) {
            free(host);
            return MHD_NO;
        }
        ctx->route_ix = ix;
        ctx->proxied_host = host;
        ctx->url = xstrdup(url);
        *con_cls = ctx;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > MOCK_BODY_MAX) {
            /* Refuse before reading (or sending 100 Continue for) the body. */
            ctx->too_big = true;
            route r = routes[ix].r;
            if (r == R_ENQUEUE || r == R_CHANGE) return handle_event(conn, ctx);
            if (r == R_WEBHOOK) return handle_webhook(conn, ctx, method);
            return reply_msg(conn, MHD_HTTP_CONTENT_TOO_LARGE, "Request too large",
                             "Request body is larger than 1 MB");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        body_append(ctx, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    switch (routes[ctx->route_ix].r) {
    case R_ENQUEUE:
    case R_CHANGE:
        return handle_event(conn, ctx);
    case R_MODE:
        return handle_mode(conn, ctx);
    case R_RESET:
        return handle_reset(conn);
    case R_EVENTS:
        return handle_records(conn, true);
    case R_REQUESTS:
        return handle_records(conn, false);
    case R_STATS: {
        pthread_mutex_lock(&mock.mu);
        cJSON *s = stats_json();
        pthread_mutex_unlock(&mock.mu);
        return reply_json(conn, MHD_HTTP_OK, s, NULL, NULL);
    }
    case R_WAIT:
        return handle_wait(conn);
    case R_WEBHOOKS:
        return handle_webhooks(conn);
    case R_WEBHOOK:
        return handle_webhook(conn, ctx, method);
    }
    return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_ctx *ctx = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (ctx) {
        free(ctx->body);
        free(ctx->proxied_host);
        free(ctx->url);
        free(ctx);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!mock.verbose) return;
    fputs("mock_pd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ---- process -------------------------------------------------------------- */

static int sig_wr = -1;

static void on_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    if (write(sig_wr, &c, 1) < 0) {
        /* nothing to do: the pipe is full, so main is being woken anyway */
    }
    errno = saved;
}

static void usage(void)
{
    fputs("usage: mock_pd [--port N] [--tls-cert FILE --tls-key FILE] [--limit N]\n"
          "               [--window-ms MS] [--latency-ms MS] [--port-file PATH]\n"
          "               [--watch-stdin] [--verbose]\n",
          stderr);
    exit(2);
}

static int parse_int(const char *s, int min, int max)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < min || v > max) usage();
    return (int)v;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 8192, len = 0, n;
    char *buf = xmalloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            if (cap >= 1024 * 1024) break; /* certificates are small */
            char *b = realloc(buf, cap *= 2);
            if (!b) break;
            buf = b;
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* The port number + "\n" to path, atomically (tmp + rename), so a reader
** never sees a half-written file. */
static int write_port_file(const char *path, int port)
{
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%d\n", port) > 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) unlink(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    int port = 0;
    bool watch_stdin = false;
    const char *cert_path = NULL, *key_path = NULL, *port_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--port")) port = parse_int(v, 0, 65535), i++;
        else if (!strcmp(a, "--tls-cert")) { if (!v) usage(); cert_path = v; i++; }
        else if (!strcmp(a, "--tls-key")) { if (!v) usage(); key_path = v; i++; }
        else if (!strcmp(a, "--limit")) mock.limit = parse_int(v, 0, 1000000), i++;
        else if (!strcmp(a, "--window-ms")) mock.window_ms = parse_int(v, 1, INT_MAX), i++;
        else if (!strcmp(a, "--latency-ms")) mock.latency_ms = parse_int(v, 0, 3600000), i++;
        else if (!strcmp(a, "--port-file")) { if (!v) usage(); port_file = v; i++; }
        else if (!strcmp(a, "--watch-stdin")) watch_stdin = true;
        else if (!strcmp(a, "--verbose")) mock.verbose = true;
        else usage();
    }
    if (!cert_path != !key_path) usage();
    bool tls = cert_path != NULL;

    clock_gettime(CLOCK_MONOTONIC, &mock.t0);
    mock.uuid_state = ((uint64_t)mock.t0.tv_nsec << 20) ^ (uint64_t)getpid() ^ UINT64_C(0x9E3779B97F4A7C15);
    mock.fault_left = -1;
    mock.wh_left = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&mock.cv, &ca);
    pthread_condattr_destroy(&ca);

    char *cert = NULL, *key = NULL;
    if (tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            fputs("mock_pd: this libmicrohttpd has no TLS support\n", stderr);
            return 1;
        }
        cert = read_file(cert_path);
        key = read_file(key_path);
        if (!cert || !key) {
            fprintf(stderr, "mock_pd: cannot read %s\n", cert ? key_path : cert_path);
            return 1;
        }
    }

    int sig_pipe[2], stop_pipe[2];
    if (pipe(sig_pipe) != 0 || pipe(stop_pipe) != 0) {
        perror("mock_pd: pipe");
        return 1;
    }
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    sig_wr = sig_pipe[1];
    mock.stop_rd = stop_pipe[0];
    mock.stop_wr = stop_pipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = listen_on(port);
    if (lfd < 0) {
        fprintf(stderr, "mock_pd: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    getsockname(lfd, (struct sockaddr *)&bound, &blen);
    port = ntohs(bound.sin_port);

    struct MHD_OptionItem tls_opts[3] = {{MHD_OPTION_END, 0, NULL}};
    if (tls) {
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, cert};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, key};
        tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
        MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)4000,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024),
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mock_pd: MHD_start_daemon failed on port %d\n", port);
        close(lfd);
        return 1;
    }
    if (port_file && write_port_file(port_file, port) != 0) {
        fprintf(stderr, "mock_pd: cannot write %s: %s\n", port_file, strerror(errno));
        MHD_stop_daemon(d);
        return 1;
    }
    printf("%d\n", port);
    fflush(stdout);

    /* Wait for a signal (or EOF on stdin): a blocking poll, no timeout. */
    for (;;) {
        struct pollfd pf[2] = {{.fd = sig_pipe[0], .events = POLLIN}, {.fd = watch_stdin ? 0 : -1, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pf[0].revents) break;
        if (pf[1].revents) {
            char buf[256];
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0 && !(n < 0 && errno == EINTR)) break;
        }
    }

    pthread_mutex_lock(&mock.mu);
    mock.stopping = true;
    pthread_cond_broadcast(&mock.cv);
    pthread_mutex_unlock(&mock.mu);
    if (write(mock.stop_wr, "x", 1) < 0) perror("mock_pd: stop pipe");
    MHD_stop_daemon(d);

    records_free();
    windows_free();
    free(mock.retry_after);
    free(mock.wh_retry_after);
    free(cert);
    free(key);
    if (mock.verbose) fputs("mock_pd: stopped\n", stderr);
    return 0;
}
