/*
** sender.c — the delivery thread (see sender.h for its invariants and the
** life of a row). One loop:
**
**   1. if something may have changed (a transfer finished, a due time or
**      token came, another process wrote the database, sender_notify), read
**      the due heads and start what the lanes, rate limiters and the
**      concurrency cap allow; note the earliest time anything else could go;
**   2. let libcurl progress; handle every finished transfer (classify,
**      then delete, reschedule or kill the row);
**   3. sleep in curl_multi_poll until that time, socket activity, a wake-up
**      or an inotify event on the data directory.
**
** THE UPLINK (sender.h invariant 7). A failure that is about the network
** (no HTTP reply: DNS, refused, timeout, TLS) or a 5xx on every key with
** work puts the link DOWN: from then on fill() starts one request only, the
** probe (the most urgent head of all keys), at the probe schedule (link_bo:
** from backoff_max_ms doubling to down_probe_max, sender_kick() makes it
** due at once). Any other answer (2xx, 4xx, 429) puts it UP again: every
** key's next row becomes due (db_outbox_wake_heads) and each lane goes on
** under its own limiter. The log says so at each change, and once per
** outage_log_interval while down; attempts and per-key repeats go to debug.
**
** SEVERAL UPLINKS (sender.h invariant 10, upstream.h). With more than one
** [pagerduty] url, a failure of the link on the active one moves requests
** to the next (`uplink failover`, every key's next row due at once) and the
** link stays up; only when none is left does it go DOWN as above, its probes
** rotating over the list. Each request records its upstream (lane.up): the
** outcome of one sent to an upstream that is not the active one (sent before
** a failover, or the failback probe) never moves the link; when it failed
** its row is due again at once, for the active one, without growing the
** key's backoff. The failback probe is started by fill() like any request,
** so it is a key's next row; `uplink failback` when the first has answered
** for failback_after.
**
** THE UPSTREAM'S WAITS. A Retry-After on an answer that keeps the link
** down (a site relay's 503 "Outbox full", PagerDuty's 503) is the earliest
** next probe (probe_floor_ms), whatever the probe schedule says; only
** sender_kick() goes sooner. On a key's own failure it is the least backoff.
**
** THE TOKEN ([pagerduty] auth_token_file). The main thread hands the token
** over with sender_set_token() (at start and after each reload that
** changed it): a copy under token_mu and a generation number. The thread
** takes it at the top of its loop (token_take) and puts it on a lane's
** handle before that lane's next request (start_request), so a request
** never changes headers while in flight. A new token makes every key's
** next row due (a key held for a 401 goes again at once).
**
** WEBHOOK KEYS ("webhook:NAME", agent/webhook.h) are lanes like any key
** (order, one request in flight, their target's rate_per_minute, backoff,
** 429 throttling), with three differences: the URL, headers and rate come
** from the webhook table (a copy of the running config's webhook targets,
** swapped in by sender_webhooks_set at each reload; a key whose target is
** gone is held, its rows pending, one error line per key); the body goes as
** stored (no annotate.h rewriting, no resolved_while_queued); and they are
** outside THE UPLINK: their failures never take it down, their answers
** never bring it up, and while it is down they go on under their own
** limiter and backoff (only PagerDuty keys wait for the probe).
**
** assert() checks, where they could break: a lane starts a request only
** when idle, so one per key (invariant 2); 0 <= in_flight <= concurrency;
** fill() starts a request while the link is not up only as the one probe
** (invariant 7: never while PROBING, never while an earlier probe is still
** out: probes_in_flight); a row is deleted
** (db_outbox_delivered) only for an answer pd_client.c classified PD_OK,
** which is a 2xx (invariant 1).
*/
#define _GNU_SOURCE   /* pthread_setname_np */
#include "sender.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "annotate.h"
#include "backoff.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "metrics.h"
#include "pd_client.h"
#include "ratelimit.h"
#include "upstream.h"
#include "webhook.h"
#include "writer.h"

#define SENDER_DUE_BATCH 512
/* A fill asked for only by sender_notify(), right after such a fill that
** could start nothing, waits until this long after it: while every head is
** backing off, rate limited or in flight, a stream of ingest commits then
** costs one look at the outbox per 20 ms instead of one per commit. The
** price: the first event of a new key may wait up to 20 ms in that case. */
#define SENDER_NOTIFY_QUIET_MS 20
#define SENDER_MAX_LANES 4096
/* Retry-After is clamped to an hour (pd_client.c). */
#define SENDER_RETRY_AFTER_MAX_MS (INT64_C(3600) * 1000)
/* The first purge of expired dedup entries comes cleanup_interval after the
** start, at most this long, not before the first fill: after a long stop every entry may have expired,
** and deleting a backlog's worth of them must not hold back the first
** request (an expired entry is never an answer: the purge only reclaims
** space, db/dedup.c). */
#define SENDER_FIRST_CLEANUP_MS 10000
/* A webhook key whose target left the config: looked at again after this
** (or at once when a reload swaps the table). */
#define SENDER_WEBHOOK_HOLD_MS 60000

typedef enum link_state {      /* as db_link_set() stores it */
    LINK_UP = DB_LINK_UP,
    LINK_DOWN = DB_LINK_DOWN,
    LINK_PROBING = DB_LINK_PROBING
} link_state;

typedef struct lane {
    char key[PDR_OUTBOX_KEY_MAX + 1];
    char red[PDR_OUTBOX_KEY_MAX + 1]; /* the key redacted, for logs (a webhook key
                                ** is no secret: as it is) */
    int webhook;                /* a webhook key (pdr_key_is_webhook) */
    int rate;                   /* its rate_per_minute */
    struct curl_slist *wh_headers; /* webhook: the headers of the request in
                                ** flight (or of the last one) */
    int wh_missing;             /* webhook: its target is not in the table (logged) */
    ratelimit rl;
    backoff bo;
    pd_request *req;
    int busy;
    db_row row;                 /* the row in flight when busy */
    int noted;                  /* the row in flight went out as "resolved while offline" */
    int probe;                  /* the request in flight was started as the probe (link not up) */
    int up;                     /* the upstream (index) the request in flight went to */
    int fb;                     /* the request in flight is the failback probe (upstream.h) */
    int64_t not_before_ms;      /* after an outcome the database did not take:
                                ** no new request before then (wall clock) */
    int64_t retry_at_ms;        /* after a failure of this key (not of the link):
                                ** no request before then, whichever row is next */
    int64_t throttled_until_ms; /* after a 429 */
    int last_5xx;               /* its last answer was a 5xx */
    int64_t seen_fill;          /* the fill that last saw a due row of this key */
    int token_gen;              /* the token generation its handle carries */
    /* Repeated failures for one reason: logged once, then summarised. */
    char fail_reason[48];       /* "server_error HTTP 503"; "" when not failing */
    int64_t fail_count;         /* failures since the key last delivered */
    int64_t fail_since_ms;
    int64_t fail_unlogged;      /* of the current reason, since its last line */
    int64_t fail_next_summary_ms;
} lane;

/* One finished transfer of the current pass: recorded in the database
** first, reported in the log after the pass's commit (so a "delivered"
** line means the event has left the outbox). */
typedef struct outcome {
    lane *l;
    pd_result res;
    int64_t delay;              /* PD_RETRY: until the next attempt */
    pdr_rc rc;                  /* of the database write */
    int link_fail;              /* a failure of the uplink, not of the key */
    int elsewhere;              /* a failure of an upstream that is not the active one:
                                ** the row goes again at once, to the active one */
    int logged;                 /* a link transition line already said it */
} outcome;

struct sender {
    const pdr_config *cfg;
    db_handle *db;
    CURLM *multi;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int notified;
    atomic_int kicked;          /* sender_kick() since the last look */
    lane *lanes;
    size_t n_lanes;
    outcome *done;              /* one pass's finished transfers: at most concurrency */
    int in_flight;
    int probes_in_flight;       /* of them, started as the probe: 0 or 1 (invariant 7) */
    int64_t starts;             /* requests started, ever (for SENDER_NOTIFY_QUIET_MS) */
    int ino_fd;
    int64_t next_cleanup_ms;
    int64_t next_trim_ms;       /* trim_dead's next pass: at start, after a row
                                ** died, or when the oldest dead letter comes
                                ** of age (only this thread makes dead rows) */
    int64_t fill_seq;           /* fills so far (lane.seen_fill) */
    /* the uplink */
    link_state link;
    backoff link_bo;            /* the probe schedule while down */
    int64_t link_down_ms;       /* wall clock: when the current outage began */
    int64_t up_since_ms;        /* when it last came up; the sender's start first */
    int64_t next_probe_ms;
    int64_t next_outage_log_ms;
    int64_t outage_attempts;    /* requests made during the current outage */
    char down_cause[sizeof ((pd_result *)0)->error]; /* the error that took it down */
    upstreams ups;              /* the urls and which one is active (upstream.h) */
    int64_t probe_floor_ms;     /* no probe before then: an upstream's Retry-After */
    /* the upstream token: handed over by sender_set_token() under token_mu */
    pthread_mutex_t token_mu;
    char *token_next;           /* under token_mu: the newest token (NULL: none) */
    atomic_int token_gen;       /* bumped by each sender_set_token() that changed it */
    char *token;                /* the sender thread's copy */
    int token_seen;             /* the generation of token */
    webhook_table *wh;          /* the webhook targets in use (sender thread) */
    pthread_mutex_t wh_mu;      /* guards wh_next */
    webhook_table *wh_next;     /* a reload's table, not yet taken */
    atomic_int wh_swap;         /* wh_next is set */
    sender_db_error_fn on_db_error;
    void *on_db_error_ctx;
};

void sender_set_db_error_hook(sender *s, sender_db_error_fn fn, void *ctx)
{
    s->on_db_error = fn;
    s->on_db_error_ctx = ctx;
}

pdr_rc sender_create(const pdr_config *cfg, sender **out)
{
    sender *s = pdr_calloc(1, sizeof *s);
    if (!s) return PDR_ERR_NOMEM;
    s->cfg = cfg;
    s->ino_fd = -1;
    atomic_init(&s->stop, 0);
    atomic_init(&s->notified, 0);
    atomic_init(&s->kicked, 0);
    ups_init(&s->ups, cfg, (uint64_t)pdr_clock_mono_ms() * 0x9E3779B97F4A7C15ull);
    atomic_init(&s->token_gen, 0);
    pthread_mutex_init(&s->token_mu, NULL);
    atomic_init(&s->wh_swap, 0);
    pthread_mutex_init(&s->wh_mu, NULL);
    s->multi = curl_multi_init();
    s->lanes = pdr_calloc(SENDER_MAX_LANES, sizeof *s->lanes);
    s->done = pdr_calloc((size_t)cfg->concurrency, sizeof *s->done);
    if (!s->multi || !s->lanes || !s->done || webhook_table_new(cfg, &s->wh) != PDR_OK) {
        sender_destroy(s);
        return PDR_ERR_NOMEM;
    }
    /* Probes start at the per-key cap (a lane already failed that far) and
    ** double up to down_probe_max; jitter within the last tenth only, so
    ** a 10-minute outage costs about 600 s / down_probe_max probes. */
    backoff_init(&s->link_bo, cfg->backoff_max_ms < cfg->down_probe_max_ms ? cfg->backoff_max_ms : cfg->down_probe_max_ms,
                 cfg->down_probe_max_ms, (uint64_t)pdr_clock_mono_ms());
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)cfg->concurrency * 2);
    curl_multi_setopt(s->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->concurrency);
    *out = s;
    return PDR_OK;
}

static void token_free(char *t)
{
    if (!t) return;
    pdr_secure_zero(t, strlen(t));
    free(t);
}

void sender_destroy(sender *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_lanes; i++) {
        lane *l = &s->lanes[i];
        if (l->busy) curl_multi_remove_handle(s->multi, pd_request_easy(l->req));
        db_row_cleanup(&l->row);
        pd_request_destroy(l->req);
        ratelimit_cleanup(&l->rl);
        webhook_headers_free(l->wh_headers);
    }
    free(s->lanes);
    webhook_table_free(s->wh);
    webhook_table_free(s->wh_next);
    pthread_mutex_destroy(&s->wh_mu);
    free(s->done);
    if (s->multi) curl_multi_cleanup(s->multi);
    if (s->ino_fd >= 0) close(s->ino_fd);
    db_close(s->db);
    token_free(s->token);
    token_free(s->token_next);
    pthread_mutex_destroy(&s->token_mu);
    free(s);
}

/* ---- lanes ---------------------------------------------------------------- */

/* Forgets idle lanes whose limiter holds nothing recent, to make room. */
static void lanes_gc(sender *s, int64_t now)
{
    size_t j = 0;
    for (size_t i = 0; i < s->n_lanes; i++) {
        lane *l = &s->lanes[i];
        int recent = l->rl.n_done > 0 &&
                     l->rl.done[(l->rl.head + l->rl.n_done - 1) % l->rl.rate] > now - l->rl.window_ms;
        if (!l->busy && !recent && l->bo.failures == 0 && !l->fail_reason[0] && l->throttled_until_ms <= now &&
            l->retry_at_ms <= now && l->not_before_ms <= now) {
            pd_request_destroy(l->req);
            ratelimit_cleanup(&l->rl);
            webhook_headers_free(l->wh_headers);
            continue;
        }
        if (i != j) s->lanes[j] = *l;
        j++;
    }
    s->n_lanes = j;
}

static lane *lane_get(sender *s, const char *key, int64_t now)
{
    for (size_t i = 0; i < s->n_lanes; i++)
        if (!strcmp(s->lanes[i].key, key)) return &s->lanes[i];
    if (s->n_lanes == SENDER_MAX_LANES) lanes_gc(s, now);
    if (s->n_lanes == SENDER_MAX_LANES || strlen(key) > PDR_OUTBOX_KEY_MAX) return NULL;
    lane *l = &s->lanes[s->n_lanes];
    memset(l, 0, sizeof *l);
    snprintf(l->key, sizeof l->key, "%s", key);
    l->webhook = pdr_key_is_webhook(key);
    l->rate = s->cfg->rate_per_minute;
    if (l->webhook) {
        const webhook_target *t = webhook_table_find(s->wh, key);
        if (t) l->rate = t->rate_per_minute;
        snprintf(l->red, sizeof l->red, "%s", key);
    } else {
        pdr_redact(key, l->red, sizeof l->red);
    }
    l->req = pd_request_create(s->cfg);
    if (!l->req || ratelimit_init(&l->rl, l->rate, s->cfg->burst, s->cfg->rate_window_ms, now) != PDR_OK) {
        pd_request_destroy(l->req);
        return NULL;
    }
    backoff_init(&l->bo, s->cfg->backoff_initial_ms, s->cfg->backoff_max_ms,
                 (uint64_t)now ^ ((uint64_t)s->n_lanes * 0x9E3779B97F4A7C15ull));
    s->n_lanes++;
    return l;
}

static lane *lane_of_easy(sender *s, CURL *easy)
{
    for (size_t i = 0; i < s->n_lanes; i++)
        if (s->lanes[i].busy && pd_request_easy(s->lanes[i].req) == easy) return &s->lanes[i];
    return NULL;
}

/* ---- the uplink -------------------------------------------------------------- */

static void min_into(int64_t *wake, int64_t t)
{
    if (t < *wake) *wake = t;
}

static void log_db_error(sender *s, const char *what, pdr_rc rc, const char *red)
{
    pdr_log(PDR_LOG_ERROR, what, "key", red, "error", pdr_strerror(rc), "detail", db_errmsg(s->db), NULL);
}

/* A write the database did not take: logged, and reported to the hook. */
static void write_failed(sender *s, const char *what, pdr_rc rc, const char *red)
{
    log_db_error(s, what, rc, red);
    if (s->on_db_error) s->on_db_error(s->on_db_error_ctx, rc);
}

/* The backlog, for the uplink's log lines: pending events and the age of
** the oldest (0 when none). */
static void backlog(sender *s, int64_t now, int64_t *pending, int64_t *oldest_age)
{
    int64_t dead = 0, oldest = 0;
    *pending = 0;
    *oldest_age = 0;
    if (db_outbox_count(s->db, pending, &dead) != PDR_OK) *pending = -1;
    if (db_outbox_oldest_ms(s->db, &oldest) == PDR_OK) *oldest_age = now - oldest;
}

static void link_publish(sender *s, int64_t since)
{
    pdr_rc rc = db_link_set(s->db, (int)s->link, since);
    if (rc) write_failed(s, "cannot record the uplink state", rc, NULL);
}

/* The active upstream, for `queue status` and pdrelay_upstream_active. */
static void upstream_publish(sender *s)
{
    metrics_upstream_active(s->ups.active);
    pdr_rc rc = db_upstream_set(s->db, s->ups.e[s->ups.active].shown);
    if (rc) write_failed(s, "cannot record the active uplink", rc, NULL);
}

/* The delay until the next probe: the schedule's next step, jittered
** within its last tenth (one probe at a time: no herd to spread). */
static int64_t probe_delay(sender *s)
{
    int64_t d = backoff_ceiling(&s->link_bo, s->link_bo.failures + 1);
    int64_t drawn = backoff_next(&s->link_bo);   /* in [d/2, d] */
    return d - (d - drawn) / 5;
}

/* The next probe: the schedule's next step, and no sooner than an
** upstream's Retry-After (probe_floor_ms). */
static int64_t probe_at(sender *s, int64_t now)
{
    int64_t t = now + probe_delay(s);
    return t > s->probe_floor_ms ? t : s->probe_floor_ms;
}

/* Is this outcome a failure of the uplink rather than of the key? No HTTP
** reply at all (DNS, refused, timeout, TLS), or a 5xx while every other key
** with work also last answered 5xx. */
static int link_failure(sender *s, lane *l, const pd_result *res)
{
    if (res->http_status == 0)
        return res->type == PD_ERR_NETWORK || res->type == PD_ERR_TIMEOUT || res->type == PD_ERR_TLS ||
               res->type == PD_ERR_OTHER;
    l->last_5xx = res->http_status >= 500;
    if (!l->last_5xx) return 0;
    for (size_t i = 0; i < s->n_lanes; i++) {
        const lane *o = &s->lanes[i];
        if (o->webhook) continue;   /* not PagerDuty: says nothing about the uplink */
        int has_work = o->busy || o->seen_fill == s->fill_seq || o->fail_reason[0];
        if (has_work && !o->last_5xx) return 0;
    }
    return 1;
}

static void fmt_i64(char *out, size_t sz, int64_t v)
{
    snprintf(out, sz, "%lld", (long long)v);
}

/* The link failed: UP goes DOWN (logged, with the backlog); a probe that
** failed sets the next one. Returns 1 when this outcome took the link
** down (its line says so; the event's own line goes to debug). */
static int link_failed(sender *s, const lane *l, const pd_result *res, int64_t now, int was_probe)
{
    int was = s->link;
    s->outage_attempts++;
    /* A request started before the link went down that fails while the
    ** probe is out changes nothing: the probe's outcome decides. */
    if (was == LINK_PROBING && !was_probe) return 0;
    if (was == LINK_PROBING) metrics_inc(MC_PROBES, "failed", NULL);
    if (was == LINK_UP) {
        char pend[24], next[32], oldest[32];
        int64_t pending, age;
        s->link_down_ms = now;
        s->outage_attempts = 1;
        backoff_reset(&s->link_bo);
        snprintf(s->down_cause, sizeof s->down_cause, "%s", res->error);
        pdr_redact_in(s->down_cause, l->key);
        backlog(s, now, &pending, &age);
        s->link = LINK_DOWN;
        s->next_probe_ms = probe_at(s, now);
        s->next_outage_log_ms = now + s->cfg->outage_log_interval_ms;
        metrics_link_set(0);
        link_publish(s, now);
        fmt_i64(pend, sizeof pend, pending);
        pdr_log(res->type == PD_ERR_TLS ? PDR_LOG_ERROR : PDR_LOG_WARN,
                res->type == PD_ERR_TLS ? "uplink down: TLS failure talking to PagerDuty (check [pagerduty] ca_file "
                                          "and the system clock); events are kept and one probe is sent at a time"
                                        : "uplink down: events are kept and one probe is sent at a time",
                "cause", pd_error_type_name(res->type), "error", s->down_cause, "backlog", pend, "oldest",
                pdr_fmt_age(age, oldest, sizeof oldest), "next_probe_in",
                pdr_fmt_age(s->next_probe_ms - now, next, sizeof next), NULL);
        return 1;
    }
    if (was == LINK_PROBING) {
        s->link = LINK_DOWN;
        s->next_probe_ms = probe_at(s, now);
    }
    return 0;
}

/* Every key goes again now: its own backoff forgotten, its next row due
** (db_outbox_wake_heads); a key throttled by a 429 still waits. */
static void lanes_resume(sender *s, int64_t now)
{
    int64_t n = 0;
    for (size_t i = 0; i < s->n_lanes; i++) {
        lane *l = &s->lanes[i];
        if (l->throttled_until_ms > now) continue;
        backoff_reset(&l->bo);
        l->retry_at_ms = 0;
    }
    pdr_rc rc = db_outbox_wake_heads(s->db, now, &n);
    if (rc) write_failed(s, "cannot make the waiting events due", rc, NULL);
}

/* An answer came: a link that was down is up again; every key's next row
** is due at once (db_outbox_wake_heads; throttled keys excepted) and the
** lanes forget the backoff the outage gave them. Called inside the pass's
** transaction. */
static void link_answered(sender *s, int64_t now)
{
    if (s->link == LINK_UP) return;
    char len[32], pend[24], att[24], oldest[32];
    int64_t pending, age;
    if (s->link == LINK_PROBING) metrics_inc(MC_PROBES, "recovered", NULL);
    s->link = LINK_UP;
    s->up_since_ms = now;
    s->probe_floor_ms = 0;
    backoff_reset(&s->link_bo);
    lanes_resume(s, now);
    metrics_link_set(1);
    link_publish(s, now);
    if (s->ups.n > 1) upstream_publish(s);
    backlog(s, now, &pending, &age);
    fmt_i64(pend, sizeof pend, pending);
    fmt_i64(att, sizeof att, s->outage_attempts);
    pdr_log(PDR_LOG_WARN, "uplink up: delivering the backlog, most urgent first", "outage",
            pdr_fmt_age(now - s->link_down_ms, len, sizeof len), "waiting", pend, "oldest",
            pdr_fmt_age(age, oldest, sizeof oldest), "attempts", att, "via",
            s->ups.n > 1 ? s->ups.e[s->ups.active].shown : NULL, NULL);
}

/* The active upstream failed and the link goes on through the next one
** (ups_failed said so): every key's next row is due at once, there. Called
** inside the pass's transaction. */
static void failover(sender *s, const lane *l, const pd_result *res, int from, int64_t now)
{
    char err[sizeof res->error];
    snprintf(err, sizeof err, "%s", res->error);
    pdr_redact_in(err, l->key);
    lanes_resume(s, now);
    upstream_publish(s);
    pdr_log(PDR_LOG_WARN, "uplink failover: requests go to the next url", "from", s->ups.e[from].shown, "to",
            s->ups.e[s->ups.active].shown, "cause", pd_error_type_name(res->type), "error", err, NULL);
}

/* The first url answered for failback_after: requests go back to it. */
static void failback(sender *s, int from)
{
    char after[32];
    upstream_publish(s);
    pdr_log(PDR_LOG_WARN, "uplink failback: the first url answered, requests go back to it", "from",
            s->ups.e[from].shown, "to", s->ups.e[0].shown, "answered_for",
            pdr_duration_format(s->cfg->failback_after_ms, after, sizeof after), NULL);
}

/* While down: one line per outage_log_interval. */
static void outage_summary(sender *s, int64_t now, int64_t *wake)
{
    if (s->link == LINK_UP) return;
    if (now >= s->next_outage_log_ms) {
        char len[32], pend[24], att[24], oldest[32], next[32];
        int64_t pending, age;
        backlog(s, now, &pending, &age);
        fmt_i64(pend, sizeof pend, pending);
        fmt_i64(att, sizeof att, s->outage_attempts);
        pdr_log(PDR_LOG_WARN, "uplink still down", "for", pdr_fmt_age(now - s->link_down_ms, len, sizeof len),
                "backlog", pend, "oldest", pdr_fmt_age(age, oldest, sizeof oldest), "attempts", att,
                "cause", s->down_cause, "next_probe_in",
                pdr_fmt_age(s->next_probe_ms - now, next, sizeof next), NULL);
        s->next_outage_log_ms = now + s->cfg->outage_log_interval_ms;
    }
    min_into(wake, s->next_outage_log_ms);
}

/* ---- starting requests ------------------------------------------------------ */

/* Was this trigger held by the uplink (or by pdrelay not running)? */
static int held(const sender *s, const db_row *row)
{
    return s->link != LINK_UP || row->created_ms < s->up_since_ms;
}

/* [outbox] resolved_while_queued = collapse for a trigger whose resolve is
** queued behind it: the rows up to the resolve go, in one transaction.
** Returns 1 when they went. */
static int collapse(sender *s, lane *l, const db_row *row, int64_t resolve_id)
{
    int64_t n = 0;
    pdr_rc rc = db_tx_begin(s->db);
    if (!rc) rc = db_outbox_collapse(s->db, row->routing_key, row->dedup_key, resolve_id, &n);
    if (!rc && row->fingerprint) {
        rc = db_dedup_delete(s->db, row->routing_key, row->fingerprint);
        if (rc == PDR_ERR_NOT_FOUND) rc = PDR_OK;
    }
    if (!rc) rc = db_tx_commit(s->db);
    else db_tx_rollback(s->db);
    if (rc) {
        write_failed(s, "cannot drop a trigger that resolved while queued (it is sent instead)", rc, l->red);
        return 0;
    }
    char c[24];
    fmt_i64(c, sizeof c, n);
    metrics_inc(MC_RESOLVED_WHILE_QUEUED, "collapsed", NULL);
    pdr_log(PDR_LOG_INFO, "resolved while queued: trigger and resolve dropped, PagerDuty is not told",
            "key", l->red, "dedup_key", row->dedup_key, "events", c, NULL);
    return 1;
}

/* What goes out for row: its body as queued, or rewritten (annotate.h) for
** a trigger that resolved while held (note), an event held past
** delay_note_after, or one without payload.timestamp (stamped). *body is the row's or a new buffer (*owned 1). Returns
** 1 when the row is gone instead (collapse), 0 to send, -1 when memory ran
** out rewriting it (the row waits: a trigger that resolved while held must
** not go out unmarked). */
static int body_for(sender *s, lane *l, db_row *row, int64_t now, char **body, size_t *len, int *owned)
{
    annotate_opts o;
    memset(&o, 0, sizeof o);
    *body = row->body;
    *len = row->body_len;
    *owned = 0;
    l->noted = 0;
    if (l->webhook) return 0;   /* the body as stored (webhook.h) */
    if (row->action == PDR_ACTION_TRIGGER && row->dedup_key && s->cfg->resolved_while_queued != PDR_RWQ_SEND &&
        held(s, row)) {
        int64_t rid = 0, rms = 0;
        pdr_rc frc = db_outbox_find_resolve(s->db, row->routing_key, row->dedup_key, row->id, &rid, &rms);
        if (frc == PDR_ERR_NOMEM) return -1;
        if (frc == PDR_OK) {
            db_dedup_entry e;
            /* PagerDuty already has an incident for this key: it must hear
            ** the resolve, so collapse falls back to note. */
            pdr_rc grc = db_dedup_get_by_key(s->db, row->routing_key, row->dedup_key, &e);
            if (grc == PDR_ERR_NOMEM) return -1;
            int open = grc == PDR_OK && e.state != DB_DEDUP_QUEUED;
            if (s->cfg->resolved_while_queued == PDR_RWQ_COLLAPSE && !open && collapse(s, l, row, rid)) return 1;
            o.resolved_while_offline = 1;
            o.resolved_ms = rms;
        }
    }
    if (s->cfg->delay_note_after_ms > 0 && now - row->created_ms > s->cfg->delay_note_after_ms &&
        (row->action == PDR_ACTION_TRIGGER || row->action == PDR_ACTION_CHANGE)) {
        o.delay_note = 1;
        o.queued_ms = row->created_ms;
        o.attempts = row->attempts;
        o.now_ms = now;
    }
    /* True times: a trigger or change event whose source gave no time
    ** (event_ms 0) goes out stamped with when pdrelay received it, added
    ** now rather than at ingest so that repeats still coalesce. */
    if (row->event_ms == 0 && (row->action == PDR_ACTION_TRIGGER || row->action == PDR_ACTION_CHANGE))
        o.stamp_ms = row->created_ms;
    if (!o.resolved_while_offline && !o.delay_note && !o.stamp_ms) return 0;
    o.now_ms = now;
    char *out = NULL;
    size_t n = 0;
    pdr_rc rc = annotate_body(row->body, row->body_len, &o, &out, &n);
    if (rc == PDR_ERR_NOMEM) return -1;
    if (rc == PDR_OK) {
        *body = out;
        *len = n;
        *owned = 1;
        l->noted = o.resolved_while_offline;
    }
    return 0;
}

/* A webhook key whose target is not in the table: its rows stay pending
** (never dead-lettered for it), the key looked at again after
** SENDER_WEBHOOK_HOLD_MS or at the next reload; one error line per key. */
static void webhook_held(lane *l, int64_t now)
{
    l->retry_at_ms = now + SENDER_WEBHOOK_HOLD_MS;
    if (l->wh_missing) return;
    l->wh_missing = 1;
    pdr_log(PDR_LOG_ERROR, "webhook target not in the configuration: its events are held (pending, not dead) "
            "until a reload brings it back", "key", l->key, "target", l->key + PDR_WEBHOOK_KEY_PREFIX_LEN, NULL);
}

/* Prepares a webhook key's request: its target's URL and headers (the
** lane keeps the header list until its next request). 0, 2 when the
** target is gone (held), -1 out of memory. */
static int webhook_start(sender *s, lane *l, const db_row *row, int64_t now)
{
    const webhook_target *t = webhook_table_find(s->wh, l->key);
    struct curl_slist *h;
    if (!t) {
        webhook_held(l, now);
        return 2;
    }
    if (l->wh_missing) {
        l->wh_missing = 0;
        pdr_log(PDR_LOG_INFO, "webhook target back in the configuration: its events go out", "key", l->key, NULL);
    }
    h = webhook_headers(t);
    if (!h || webhook_prepare(l->req, t, h, row->body, row->body_len) != PDR_OK) {
        webhook_headers_free(h);
        return -1;
    }
    webhook_headers_free(l->wh_headers);   /* the handle now holds h */
    l->wh_headers = h;
    return 0;
}

/* Starts row's request on l. Returns 0 when started, 1 when the row went
** without a request (collapsed), 2 when it is held (a webhook key without
** its target: l->retry_at_ms says until when), -1 when it could not start
** (memory). */
static int start_request(sender *s, lane *l, db_row *row, int64_t now)
{
    /* a webhook key's request goes to its own url, never an upstream's */
    int fb = 0, up = l->webhook ? 0 : ups_pick(&s->ups, s->link == LINK_UP, now, &fb);
    const ups_entry *ue = &s->ups.e[up];
    const char *url = row->action == PDR_ACTION_CHANGE ? ue->url_change : ue->url_alert;
    char *body;
    size_t len;
    int owned, bad;
    if (l->webhook) {
        bad = webhook_start(s, l, row, now);
        if (bad) return bad;
    } else {
        /* the lane is idle (not in the multi handle): its headers may change */
        if (l->token_gen != s->token_seen) {
            if (pd_request_set_token(l->req, s->token) != PDR_OK) return -1;
            l->token_gen = s->token_seen;
        }
        bad = body_for(s, l, row, now, &body, &len, &owned);
        if (bad) return bad;
        /* one url: its proxy and interface were set when the lane was made */
        bad = (s->ups.n > 1 && pd_request_via(l->req, ue->cfg) != PDR_OK) ||
              pd_request_prepare(l->req, url, body, len) != PDR_OK;
        if (owned) free(body);
        if (bad) return -1;
    }
    /* Invariants 2 and 7: the lane is idle; a link not up has no probe out
    ** (webhook keys are outside the uplink). */
    assert(!l->busy);
    assert(s->in_flight < s->cfg->concurrency);
    assert(l->webhook || s->link != LINK_PROBING);
    assert(l->webhook || s->link == LINK_UP || s->probes_in_flight == 0);
    if (curl_multi_add_handle(s->multi, pd_request_easy(l->req)) != CURLM_OK) return -1;
    /* Sender invariant 6: a head that failed before (in an earlier run of
    ** the daemon too) goes on from its backoff, not from the start. */
    if (s->link == LINK_UP || l->webhook) backoff_resume(&l->bo, row->attempts);
    ratelimit_take(&l->rl, now);
    l->row = *row;
    memset(row, 0, sizeof *row);   /* the lane owns the strings now */
    l->busy = 1;
    s->in_flight++;
    l->probe = !l->webhook && s->link != LINK_UP;
    s->probes_in_flight += l->probe;
    l->up = up;
    l->fb = fb;
    if (!l->webhook) ups_started(&s->ups, up, s->link == LINK_UP, fb);
    s->starts++;
    if (fb && pdr_log_enabled(PDR_LOG_DEBUG)) {
        char id[24];
        fmt_i64(id, sizeof id, l->row.id);
        pdr_log(PDR_LOG_DEBUG, "probing the first url", "key", l->red, "id", id, "url", ue->shown, NULL);
    }
    if (!l->webhook && s->link == LINK_DOWN) {
        s->link = LINK_PROBING;
        if (pdr_log_enabled(PDR_LOG_DEBUG)) {
            char id[24];
            fmt_i64(id, sizeof id, l->row.id);
            pdr_log(PDR_LOG_DEBUG, "probing the uplink", "key", l->red, "id", id, NULL);
        }
    }
    return 0;
}

static void kill_expired(sender *s, lane *l, db_row *row)
{
    char id[24];
    pdr_rc rc = db_outbox_expire(s->db, row->id, "max_age exceeded: not delivered in time");
    s->next_trim_ms = 0;   /* a dead letter more: trim_dead at the next pass */
    snprintf(id, sizeof id, "%lld", (long long)row->id);
    if (rc) {
        write_failed(s, "cannot move an expired event to the dead letters", rc, l->red);
        return;
    }
    metrics_inc(MC_DEAD_LETTERS, "max_age", NULL);
    pdr_log(PDR_LOG_WARN, "event expired: moved to the dead letters", "key", l->red, "id", id,
            "dedup_key", row->dedup_key, "reason", "max_age", NULL);
}

/* When l may start a request (now when it may). */
static int64_t lane_ready_ms(lane *l, int64_t now)
{
    int64_t t = now;
    if (l->not_before_ms > t) t = l->not_before_ms;
    if (l->retry_at_ms > t) t = l->retry_at_ms;
    if (l->throttled_until_ms > t) t = l->throttled_until_ms;
    int64_t r = ratelimit_next_ms(&l->rl, t);
    return r > t ? r : t;
}

/* Starts what may start; lowers *wake to when anything else may. While
** the link is down that is one probe at most for the PagerDuty keys: the
** first row of the most urgent such key that may go, whatever its own
** next_ms (the probe schedule decides); webhook keys go on as when up. */
static void fill(sender *s, int64_t now, int64_t *wake)
{
    db_row *rows = NULL;
    size_t n = 0;
    int64_t next;
    int probing = s->link != LINK_UP;
    int probe_due = s->link == LINK_DOWN && now >= s->next_probe_ms;   /* a PagerDuty key may probe now */
    int probed = 0;
    if (probing && !probe_due) {
        if (s->link == LINK_DOWN) min_into(wake, s->next_probe_ms);   /* else the probe's completion wakes us */
        if (!s->wh->n) return;                    /* no webhook key may go either */
    }
    s->fill_seq++;
    pdr_rc rc = db_outbox_due(s->db, probe_due ? INT64_MAX : now, SENDER_DUE_BATCH, &rows, &n);
    if (rc) {
        log_db_error(s, "cannot read the outbox", rc, NULL);
        min_into(wake, now + 1000);
        return;
    }
    if (pdr_log_enabled(PDR_LOG_DEBUG)) {
        char c[24], in[24];
        snprintf(c, sizeof c, "%zu", n);
        snprintf(in, sizeof in, "%d", s->in_flight);
        pdr_log(PDR_LOG_DEBUG, "due heads", "count", c, "in_flight", in, "link", db_link_state_name((int)s->link), NULL);
    }
    for (size_t i = 0; i < n; i++) {
        lane *l = lane_get(s, rows[i].routing_key, now);
        if (!l) {
            min_into(wake, now + 1000);
            continue;
        }
        l->seen_fill = s->fill_seq;
        if (l->busy) continue;                    /* its completion wakes us */
        if (probing && !l->webhook && (!probe_due || probed)) continue;   /* waits for the probe */
        if (l->webhook && rows[i].next_ms > now) {   /* read for a probe, not due itself */
            min_into(wake, rows[i].next_ms);
            continue;
        }
        if (s->cfg->max_age_ms && rows[i].created_ms + s->cfg->max_age_ms <= now) {
            kill_expired(s, l, &rows[i]);
            min_into(wake, now);                  /* the next head may be due */
            continue;
        }
        int64_t t = lane_ready_ms(l, now);
        if (t > now) {
            min_into(wake, t);
            continue;
        }
        if (s->in_flight >= s->cfg->concurrency) continue;
        int st = start_request(s, l, &rows[i], now);
        if (st < 0) {
            pdr_log(PDR_LOG_ERROR, "cannot start a request (out of memory)", "key", l->red, NULL);
            min_into(wake, now + 1000);
        } else if (st == 2) {
            min_into(wake, l->retry_at_ms);       /* held: a webhook key without its target */
        } else if (st > 0) {
            min_into(wake, now);                  /* collapsed: the key's next row may go */
        } else if (probing && !l->webhook) {
            probed = 1;                           /* one probe */
        }
    }
    db_rows_free(rows, n);
    if (probing) {
        /* nothing could probe (every key throttled or held): look again */
        if (s->link == LINK_DOWN) min_into(wake, now + 1000 < s->next_probe_ms ? s->next_probe_ms : now + 1000);
        /* webhook keys in their backoff: when the first is due */
        if (s->wh->n && db_outbox_next_due_after(s->db, now, &next) == PDR_OK) min_into(wake, next);
        return;
    }
    if (n == SENDER_DUE_BATCH) min_into(wake, now);
    /* the failback probe's turn (one due now waits for a row to go) */
    if (ups_wake_ms(&s->ups) > now) min_into(wake, ups_wake_ms(&s->ups));
    /* The longest delay the sender ever sets, and a second to spare. */
    int64_t longest = s->cfg->backoff_max_ms;
    if (s->cfg->down_probe_max_ms > longest) longest = s->cfg->down_probe_max_ms;
    if (s->cfg->throttle_backoff_ms > longest) longest = s->cfg->throttle_backoff_ms;
    if (SENDER_RETRY_AFTER_MAX_MS > longest) longest = SENDER_RETRY_AFTER_MAX_MS;
    int64_t max_delay = longest + 1000;
    rc = db_outbox_next_due_after(s->db, now, &next);
    if (rc == PDR_OK && next > now + max_delay) {
        /* No delay the sender sets is that long: the wall clock was set
        ** back since. Waiting it out could hold pages for hours. */
        int64_t n_clamped = 0;
        char c[24];
        rc = db_outbox_clamp_next(s->db, now + max_delay, &n_clamped);
        snprintf(c, sizeof c, "%lld", (long long)n_clamped);
        if (rc) write_failed(s, "cannot make events due after the clock moved back", rc, NULL);
        else pdr_log(PDR_LOG_WARN, "the clock moved back: events waiting beyond any backoff are due now",
                     "count", c, NULL);
        min_into(wake, now);
    } else if (rc == PDR_OK) {
        min_into(wake, next);
    } else if (rc != PDR_ERR_NOT_FOUND) {
        min_into(wake, now + 1000);
    }
}

/* ---- finished requests ------------------------------------------------------ */

static void update_dedup(sender *s, const lane *l, const pd_result *res)
{
    const db_row *r = &l->row;
    const char *dk = res->dedup_key[0] ? res->dedup_key : r->dedup_key;
    pdr_rc rc = PDR_OK;
    if (!r->fingerprint || !dk) return;
    switch (r->action) {
    case PDR_ACTION_TRIGGER:
        rc = db_dedup_put(s->db, r->routing_key, r->fingerprint, dk, DB_DEDUP_TRIGGERED, s->cfg->dedup_ttl_ms,
                          r->target, r->urgency);
        break;
    case PDR_ACTION_ACKNOWLEDGE:
        rc = db_dedup_put(s->db, r->routing_key, r->fingerprint, dk, DB_DEDUP_ACKNOWLEDGED,
                          s->cfg->dedup_ttl_ms, r->target, r->urgency);
        break;
    case PDR_ACTION_RESOLVE:
        rc = db_dedup_delete(s->db, r->routing_key, r->fingerprint);
        if (rc == PDR_ERR_NOT_FOUND) rc = PDR_OK;
        break;
    case PDR_ACTION_CHANGE:
        break;
    }
    if (rc) write_failed(s, "cannot update the dedup table", rc, l->red);
}

static const char *endpoint_name(pdr_action a)
{
    return a == PDR_ACTION_CHANGE ? "change" : "enqueue";
}

/* The request's own figures: counted whatever becomes of the row. */
static void api_metrics(const lane *l, const pd_result *res)
{
    char status[16], target[80];
    curl_off_t us = 0;
    const char *ep = endpoint_name(l->row.action);
    snprintf(status, sizeof status, "%ld", res->http_status);
    if (l->webhook) {   /* not PagerDuty's API: a family of its own */
        metrics_inc(MC_WEBHOOK_REQUESTS, l->key + PDR_WEBHOOK_KEY_PREFIX_LEN, status);
        return;
    }
    metrics_inc(MC_API_REQUESTS, ep, status);
    if (curl_easy_getinfo(pd_request_easy(l->req), CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK)
        metrics_observe(MH_API_DURATION, ep, (double)us / 1e6);
    if (res->outcome != PD_OK) metrics_inc(MC_API_ERRORS, pd_error_type_name(res->type), NULL);
    if (res->type == PD_ERR_RATE_LIMIT)
        metrics_inc(MC_RATE_LIMIT_HITS, metrics_target(l->key, target, sizeof target), NULL);
}

/* An event's fate, counted once its row's change is committed. */
static void event_metrics(const outcome *o)
{
    const db_row *r = &o->l->row;
    char target[80];
    if (o->res.outcome == PD_DEAD) {
        metrics_inc(MC_DEAD_LETTERS, "permanent", NULL);
        return;
    }
    if (o->res.outcome != PD_OK || o->l->webhook) return;   /* webhooks: pdrelay_webhook_requests_total */
    metrics_target(r->routing_key, target, sizeof target);
    switch (r->action) {
    case PDR_ACTION_TRIGGER:
        /* what PagerDuty got: a trigger noted as resolved went as info */
        metrics_inc(MC_TRIGGERED, target, o->l->noted ? "info" : pdr_urgency_name(r->urgency));
        if (o->l->noted) metrics_inc(MC_RESOLVED_WHILE_QUEUED, "noted", NULL);
        break;
    case PDR_ACTION_ACKNOWLEDGE: metrics_inc(MC_ACKNOWLEDGED, target, NULL); break;
    case PDR_ACTION_RESOLVE: metrics_inc(MC_RESOLVED, target, NULL); break;
    case PDR_ACTION_CHANGE: metrics_inc(MC_CHANGE, target, NULL); break;
    }
}

/* A 429: the key waits at least throttle_backoff (or what Retry-After
** says), then runs at half its rate for a window; the state is stored for
** `pdrelay queue status`. */
static int64_t throttled(sender *s, lane *l, const pd_result *res, int64_t now)
{
    int64_t delay = backoff_next(&l->bo);
    int64_t floor = res->retry_after_ms > 0 ? res->retry_after_ms : s->cfg->throttle_backoff_ms;
    if (floor > delay) delay = floor;
    ratelimit_throttled(&l->rl, now);
    ratelimit_halve(&l->rl, now + delay + s->cfg->rate_window_ms);
    l->throttled_until_ms = now + delay;
    /* the key's rate halved; 0 (rate_per_minute 0 with a relay: no limiter)
    ** is stored as 0, the key has no rate to halve */
    int half = l->rate == 0 ? 0 : l->rate / 2 > 0 ? l->rate / 2 : 1;
    pdr_rc rc = db_key_throttle_set(s->db, l->key, now + delay, half);
    if (rc) write_failed(s, "cannot record a throttled key", rc, l->red);
    return delay;
}

/* With several urls: what o says about the upstream its request went to
** (upstream.h). Before the link's own logic in record(): a failover keeps
** the link up (o->link_fail cleared), ALL_DOWN leaves o->link_fail for it. */
static void upstream_outcome(sender *s, outcome *o, int64_t now)
{
    lane *l = o->l;
    int up = s->link == LINK_UP, from = s->ups.active;
    int healthy = o->res.http_status > 0 && o->res.http_status < 500;
    ups_verdict v = UPS_SAME;
    if (!up) {
        /* the probe's upstream (a 5xx keeps the link down: record()) */
        if (healthy) ups_answered(&s->ups, l->up, l->fb, 0, now);
        else if (o->res.outcome == PD_RETRY) ups_failed(&s->ups, l->up, l->fb, 0, now);
        return;
    }
    if (l->up != from || l->fb) {
        /* not the active one: it never moves the link */
        if (healthy) {
            v = ups_answered(&s->ups, l->up, l->fb, 1, now);
        } else if (o->res.outcome == PD_RETRY) {
            ups_failed(&s->ups, l->up, l->fb, 1, now);
            o->elsewhere = 1;
        }
        o->link_fail = 0;
    } else if (o->link_fail) {
        v = ups_failed(&s->ups, l->up, 0, 1, now);
        if (v == UPS_FAILOVER) {
            failover(s, l, &o->res, from, now);
            o->link_fail = 0;
            o->elsewhere = o->logged = 1;
        }
    } else if (healthy) {
        ups_answered(&s->ups, l->up, 0, 1, now);
    }
    if (v == UPS_FAILBACK) failback(s, from);
}

static void record(sender *s, outcome *o, CURLcode cc)
{
    lane *l = o->l;
    int64_t now = pdr_clock_now_ms();
    db_row *r = &l->row;

    if (l->webhook) {
        webhook_result(l->req, cc, l->wh_headers, &o->res);   /* header values scrubbed from the text */
    } else {
        pd_request_result(l->req, cc, &o->res);
        pdr_redact_in(o->res.error, l->key);   /* an upstream that echoes the key: not into rows or logs */
    }
    api_metrics(l, &o->res);
    curl_multi_remove_handle(s->multi, pd_request_easy(l->req));
    assert(l->busy && s->in_flight > 0 && s->in_flight <= s->cfg->concurrency);
    l->busy = 0;
    s->in_flight--;
    int was_probe = l->probe;   /* only the probe's own outcome ends PROBING */
    s->probes_in_flight -= l->probe;
    l->probe = 0;
    assert(s->probes_in_flight >= 0);
    if (o->res.http_status) ratelimit_done(&l->rl, now);
    /* A webhook key's outcome is its own: never the uplink's. */
    o->link_fail = !l->webhook && o->res.outcome == PD_RETRY && link_failure(s, l, &o->res);
    if (s->ups.n > 1 && !l->webhook) upstream_outcome(s, o, now);
    /* a 5xx while down is the outage going on; any other answer ends it
    ** (after this row's own outcome is written, below) */
    int answered = !l->webhook && !o->link_fail && o->res.http_status &&
                   !(o->res.http_status >= 500 && s->link != LINK_UP);
    /* An upstream that says when to come back (a relay's 503 "Outbox
    ** full" with Retry-After): while the link is down, no probe before. */
    if (!l->webhook && o->res.outcome == PD_RETRY && o->res.type != PD_ERR_RATE_LIMIT &&
        o->res.retry_after_ms > 0 && now + o->res.retry_after_ms > s->probe_floor_ms)
        s->probe_floor_ms = now + o->res.retry_after_ms;
    if (o->link_fail) {
        o->logged = link_failed(s, l, &o->res, now, was_probe);
    } else if (answered) {
        /* link_answered() below */
    } else if (s->link == LINK_PROBING && was_probe) {
        link_failed(s, l, &o->res, now, was_probe);   /* a 5xx (or no answer) to the probe: down still */
    }
    if (s->link == LINK_DOWN && s->next_probe_ms < s->probe_floor_ms) s->next_probe_ms = s->probe_floor_ms;
    switch (o->res.outcome) {
    case PD_OK:
        /* Invariant 1: deleted only after a 2xx. */
        assert(o->res.http_status >= 200 && o->res.http_status < 300);
        o->rc = db_outbox_delivered(s->db, r->id);
        if (!o->rc) update_dedup(s, l, &o->res);
        if (!o->rc && l->throttled_until_ms && l->throttled_until_ms <= now) {
            l->throttled_until_ms = 0;
            pdr_rc rc = db_key_throttle_clear(s->db, l->key);
            if (rc) write_failed(s, "cannot clear a throttled key", rc, l->red);
        }
        break;
    case PD_RETRY:
        if (o->elsewhere) {
            /* not the active upstream's failure: the row goes again now, to it */
            o->delay = 0;
        } else if (!l->webhook && (o->link_fail || (s->link != LINK_UP && !answered))) {
            /* the uplink's failure: the row waits for the probe schedule,
            ** the key's own backoff is not grown */
            o->delay = s->next_probe_ms > now ? s->next_probe_ms - now : 0;
        } else if (o->res.type == PD_ERR_RATE_LIMIT) {
            o->delay = throttled(s, l, &o->res, now);
        } else {
            o->delay = backoff_next(&l->bo);
            if (o->res.retry_after_ms > o->delay) o->delay = o->res.retry_after_ms;
            l->retry_at_ms = now + o->delay;
        }
        o->rc = db_outbox_reschedule(s->db, r->id, now + o->delay, o->res.error);
        break;
    case PD_DEAD:
        o->rc = db_outbox_kill(s->db, r->id, o->res.error);
        s->next_trim_ms = 0;   /* a dead letter more: trim_dead at the next pass */
        break;
    }
    if (answered) link_answered(s, now);
}

/* A key's failure: the first of a reason is logged at warn, repeats at
** debug with a summary each outage_log_interval and when the reason
** changes or the key delivers again. */
static void report_retry(sender *s, lane *l, const outcome *o, const char *id, const char *action,
                         const char *attempts, int64_t now)
{
    const db_row *r = &l->row;
    const pd_result *res = &o->res;
    char reason[sizeof l->fail_reason], delay_s[32];
    snprintf(delay_s, sizeof delay_s, "%.3fs", (double)o->delay / 1000.0);
    snprintf(reason, sizeof reason, "%s HTTP %ld", pd_error_type_name(res->type), res->http_status);
    if (!l->fail_reason[0]) l->fail_since_ms = now;
    l->fail_count++;
    if (o->link_fail || o->elsewhere || s->link != LINK_UP || !strcmp(reason, l->fail_reason)) {
        int quiet = o->logged || o->link_fail || o->elsewhere || s->link != LINK_UP;
        if (!quiet) l->fail_unlogged++;
        pdr_log(PDR_LOG_DEBUG, "delivery failed; will retry", "key", l->red, "id", id, "action", action,
                "dedup_key", r->dedup_key, "error_type", pd_error_type_name(res->type), "error", res->error,
                "attempts", attempts, "retry_in", delay_s, NULL);
        if (!quiet && now >= l->fail_next_summary_ms) {
            char c[24], since[32];
            fmt_i64(c, sizeof c, l->fail_unlogged);
            pdr_log(res->type == PD_ERR_UNAUTHORIZED ? PDR_LOG_ERROR : PDR_LOG_WARN,
                    "delivery still failing for this key", "key", l->red, "reason", l->fail_reason,
                    "failures", c, "since", pdr_fmt_age(now - l->fail_since_ms, since, sizeof since),
                    "error", res->error, NULL);
            l->fail_unlogged = 0;
            l->fail_next_summary_ms = now + s->cfg->outage_log_interval_ms;
        }
        return;
    }
    snprintf(l->fail_reason, sizeof l->fail_reason, "%s", reason);
    l->fail_unlogged = 0;
    l->fail_next_summary_ms = now + s->cfg->outage_log_interval_ms;
    if (res->type == PD_ERR_UNAUTHORIZED) {
        /* only with upstream = relay (pd_upstream_adjust): else a 401/403 is dead */
        pdr_log(PDR_LOG_ERROR,
                "refused by the upstream relay's token check: events are held and retried, never dead-lettered; "
                "check [pagerduty] auth_token_file here against [listen] auth_token_file at the relay (repeats "
                "are logged at debug)",
                "key", l->red, "id", id, "action", action, "dedup_key", r->dedup_key, "error_type",
                pd_error_type_name(res->type), "error", res->error, "attempts", attempts, "retry_in", delay_s, NULL);
        return;
    }
    pdr_log(PDR_LOG_WARN,
            res->type == PD_ERR_RATE_LIMIT ? (l->webhook ? "throttled by the webhook (429): this key waits, then runs "
                                                           "at half rate for a window; repeats are logged at debug"
                                                         : "throttled by PagerDuty (429): this key waits, then runs at "
                                                           "half rate for a window; repeats are logged at debug")
                                           : "delivery failed; will retry (repeats for this reason are logged at debug)",
            "key", l->red, "id", id, "action", action, "dedup_key", r->dedup_key, "error_type",
            pd_error_type_name(res->type), "error", res->error, "attempts", attempts, "retry_in", delay_s, NULL);
}

static void report(sender *s, const outcome *o)
{
    lane *l = o->l;
    const db_row *r = &l->row;
    const pd_result *res = &o->res;
    char id[24], attempts[24], status[16];
    const char *action = pdr_action_name(r->action);
    int64_t now = pdr_clock_now_ms();

    snprintf(id, sizeof id, "%lld", (long long)r->id);
    snprintf(attempts, sizeof attempts, "%lld", (long long)r->attempts + 1);
    snprintf(status, sizeof status, "%ld", res->http_status);
    if (o->rc) {
        log_db_error(s, res->outcome == PD_OK ? "delivered, but cannot remove the event from the outbox "
                                                "(it will be sent again)"
                        : res->outcome == PD_RETRY ? "cannot reschedule an event (it stays pending)"
                                                   : "cannot move a refused event to the dead letters",
                     o->rc, l->red);
        return;
    }
    event_metrics(o);
    if (res->outcome != PD_RETRY && l->fail_reason[0]) {
        char c[24], since[32];
        fmt_i64(c, sizeof c, l->fail_count);
        pdr_log(PDR_LOG_INFO, "key delivering again", "key", l->red, "failures", c, "last_reason", l->fail_reason,
                "for", pdr_fmt_age(now - l->fail_since_ms, since, sizeof since), NULL);
        l->fail_reason[0] = '\0';
        l->fail_count = l->fail_unlogged = 0;
    }
    switch (res->outcome) {
    case PD_OK:
        pdr_log(PDR_LOG_INFO, "delivered", "key", l->red, "id", id, "action", action, "dedup_key",
                r->dedup_key, "status", status, "attempts", attempts, "note",
                l->noted ? "resolved while offline: sent as info" : NULL, NULL);
        break;
    case PD_RETRY:
        report_retry(s, l, o, id, action, attempts, now);
        break;
    case PD_DEAD:
        pdr_log(PDR_LOG_ERROR, l->webhook ? "refused by the webhook: moved to the dead letters"
                                          : "refused by PagerDuty: moved to the dead letters", "key", l->red, "id", id,
                "action", action, "dedup_key", r->dedup_key, "error_type", pd_error_type_name(res->type),
                "error", res->error, "attempts", attempts, NULL);
        break;
    }
}

/* Handles every finished transfer; returns how many. The outcomes of one
** pass are written in one transaction: one fsync for all of them instead of
** one each (a crash before that commit only means those events are sent
** again, with the same dedup keys). */
static int collect(sender *s)
{
    CURLMsg *m;
    int left, n = 0, in_tx = 0;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        lane *l = lane_of_easy(s, m->easy_handle);
        if (!l || n >= s->cfg->concurrency) continue;
        if (!in_tx) in_tx = db_tx_begin(s->db) == PDR_OK;
        memset(&s->done[n], 0, sizeof s->done[n]);
        s->done[n].l = l;
        record(s, &s->done[n], m->data.result);
        n++;
    }
    if (in_tx) {
        pdr_rc rc = db_tx_commit(s->db);
        if (rc) {
            log_db_error(s, "cannot record delivery outcomes (those events will be sent again)", rc, NULL);
            for (int i = 0; i < n; i++) s->done[i].rc = rc;
        }
    }
    for (int i = 0; i < n; i++) {
        outcome *o = &s->done[i];
        lane *l = o->l;
        if (o->rc) {
            /* The database did not take the outcome (disk full, read-only,
            ** I/O error), so the row still looks due: hold the lane back in
            ** memory with its backoff, which grows with every such failure
            ** (sender invariant 5), or a failing disk becomes a resend loop. */
            l->not_before_ms = pdr_clock_now_ms() + (o->res.outcome == PD_RETRY ? o->delay : backoff_next(&l->bo));
            if (s->on_db_error) s->on_db_error(s->on_db_error_ctx, o->rc);
        } else if (o->res.outcome != PD_RETRY) {
            backoff_reset(&l->bo);   /* the row left the head: the next one starts afresh */
        }
        report(s, o);
        db_row_cleanup(&l->row);
    }
    return n;
}

/* ---- the loop ---------------------------------------------------------------- */

/* sender_kick(): a link that is down is probed at once; one that is up
** has every key's next row made due (a key in its own backoff goes now;
** a throttled key still waits). */
static void kicked(sender *s, int64_t now)
{
    if (s->link == LINK_DOWN) {
        s->next_probe_ms = now;
        s->probe_floor_ms = 0;   /* the operator says now */
        pdr_log(PDR_LOG_DEBUG, "kicked: probing the uplink now", NULL);
        return;
    }
    if (s->link != LINK_UP) return;
    lanes_resume(s, now);
    ups_kick(&s->ups, now);   /* and the first url, when it is not the active one, probed now */
    pdr_log(PDR_LOG_DEBUG, "kicked: every key's next event is due now", NULL);
}

/* Dead letters past [outbox] max_dead or max_dead_age are dropped, oldest
** first (db.c, invariant 4), counted and logged. Only when one may be past
** a bound: at the start, after this thread made a row dead, and when the
** oldest remaining one comes of age; not at every pass. */
static void trim_dead(sender *s, int64_t now, int64_t *wake)
{
    int64_t by_age = 0, by_count = 0, next = 0;
    pdr_rc rc;
    if (now < s->next_trim_ms) {
        min_into(wake, s->next_trim_ms);
        return;
    }
    rc = db_outbox_trim_dead(s->db, now, &by_age, &by_count, &next);
    if (rc) {
        write_failed(s, "cannot drop dead letters past their bounds", rc, NULL);
        return;
    }
    if (by_age || by_count) {
        char a[24], n[24], lim[24], age[32];
        snprintf(a, sizeof a, "%lld", (long long)by_age);
        snprintf(n, sizeof n, "%lld", (long long)by_count);
        snprintf(lim, sizeof lim, "%lld", (long long)s->cfg->max_dead);
        pdr_duration_format(s->cfg->max_dead_age_ms, age, sizeof age);
        pdr_log(PDR_LOG_WARN, "dropped the oldest dead letters past their bounds", "by_age", a, "by_count", n,
                "max_dead", lim, "max_dead_age", age, NULL);
        metrics_add(MC_DEAD_DROPPED, "max_dead_age", NULL, (double)by_age);
        metrics_add(MC_DEAD_DROPPED, "max_dead", NULL, (double)by_count);
    }
    s->next_trim_ms = next ? next : INT64_MAX;
    min_into(wake, s->next_trim_ms);
}

static void housekeeping(sender *s, int64_t now, int64_t *wake)
{
    outage_summary(s, now, wake);
    trim_dead(s, now, wake);
    if (now >= s->next_cleanup_ms) {
        int64_t n = 0;
        pdr_rc rc = db_dedup_purge_expired(s->db, &n);
        if (rc) write_failed(s, "cannot purge expired dedup entries", rc, NULL);
        else if (n) {
            char c[24];
            snprintf(c, sizeof c, "%lld", (long long)n);
            pdr_log(PDR_LOG_DEBUG, "purged expired dedup entries", "count", c, NULL);
        }
        s->next_cleanup_ms = now + s->cfg->cleanup_interval_ms;
    }
    min_into(wake, s->next_cleanup_ms);
}

/* Drains the inotify queue; 1 if the database or its WAL was written. */
static int inotify_drain(sender *s)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(s->ino_fd, buf, sizeof buf);
        if (n <= 0) break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->len && !strncmp(ev->name, DB_FILE_NAME, strlen(DB_FILE_NAME))) hit = 1;
            p += sizeof *ev + ev->len;
        }
    }
    return hit;
}

/* Takes the token sender_set_token() left; a change after the first makes
** every key's next row due (a key held for a 401 goes now). Returns 1 when
** it did so. On no memory the old token stays and the next loop tries
** again. */
static int token_take(sender *s, int64_t now)
{
    char *t = NULL;
    int gen, nomem;
    pthread_mutex_lock(&s->token_mu);
    gen = atomic_load(&s->token_gen);
    if (s->token_next) t = pdr_strdup(s->token_next);
    nomem = s->token_next && !t;
    pthread_mutex_unlock(&s->token_mu);
    if (nomem) return 0;
    token_free(s->token);
    s->token = t;
    s->token_seen = gen;
    if (s->fill_seq == 0 || s->link != LINK_UP) return 0;   /* the start's token; a probe goes on schedule */
    lanes_resume(s, now);
    pdr_log(PDR_LOG_INFO, "upstream token changed: every key's next event is due now", NULL);
    return 1;
}

/* Takes a reload's webhook table (sender_webhooks_set): held keys look
** again now; a key whose target's rate changed gets a new limiter when
** idle (else at its next creation). The old table goes: requests in flight
** hold their own copies (the lane's header list, libcurl's URL). */
static void webhooks_take(sender *s, int64_t now)
{
    webhook_table *n;
    pthread_mutex_lock(&s->wh_mu);
    n = s->wh_next;
    s->wh_next = NULL;
    atomic_store(&s->wh_swap, 0);
    pthread_mutex_unlock(&s->wh_mu);
    if (!n) return;
    webhook_table_free(s->wh);
    s->wh = n;
    for (size_t i = 0; i < s->n_lanes; i++) {
        lane *l = &s->lanes[i];
        const webhook_target *t;
        ratelimit rl;
        if (!l->webhook) continue;
        if (l->wh_missing) l->retry_at_ms = 0;
        t = webhook_table_find(s->wh, l->key);
        if (!t || t->rate_per_minute == l->rate || l->busy ||
            ratelimit_init(&rl, t->rate_per_minute, s->cfg->burst, s->cfg->rate_window_ms, now) != PDR_OK)
            continue;
        ratelimit_cleanup(&l->rl);
        l->rl = rl;
        l->rate = t->rate_per_minute;
    }
}

static void *sender_main(void *arg)
{
    sender *s = arg;
    int dirty = 1;
    int64_t wake_at = 0, grace_end = 0;

    int64_t quiet_until = 0;   /* monotonic; see SENDER_NOTIFY_QUIET_MS */
    for (;;) {
        int stopping = atomic_load(&s->stop);
        int64_t now = pdr_clock_now_ms(), mono = pdr_clock_mono_ms();
        int postponed = 0;
        if (atomic_load(&s->token_gen) != s->token_seen && token_take(s, now)) dirty = 1;
        if (atomic_load(&s->wh_swap)) {
            webhooks_take(s, now);
            dirty = 1;
        }
        if (stopping) {
            if (!grace_end) grace_end = mono + s->cfg->timeout_ms;
            if (s->in_flight == 0 || mono >= grace_end) break;
        } else if (atomic_exchange(&s->kicked, 0)) {
            kicked(s, now);
            dirty = 1;
            continue;
        } else if (dirty || now >= wake_at || atomic_load(&s->notified)) {
            int only_notified = !dirty && now < wake_at;
            if (only_notified && mono < quiet_until) {
                /* notified stays set, so further commits do not wake us */
                postponed = 1;
            } else {
                int64_t starts = s->starts;
                atomic_store(&s->notified, 0);
                wake_at = INT64_MAX;
                housekeeping(s, now, &wake_at);
                fill(s, now, &wake_at);
                dirty = 0;
                quiet_until = only_notified && s->starts == starts ? mono + SENDER_NOTIFY_QUIET_MS : 0;
            }
        }
        int running = 0;
        curl_multi_perform(s->multi, &running);
        if (collect(s)) {
            dirty = 1;
            continue;
        }
        int64_t timeout = stopping ? grace_end - pdr_clock_mono_ms() : wake_at - now;
        if (postponed && quiet_until - mono < timeout) timeout = quiet_until - mono;
        if (timeout < 0) timeout = 0;
        if (timeout > INT_MAX) timeout = INT_MAX;
        if (s->ino_fd < 0 && timeout > 1000) timeout = 1000;   /* no inotify: look each second */
        struct curl_waitfd wfd = {s->ino_fd, CURL_WAIT_POLLIN, 0};
        curl_multi_poll(s->multi, &wfd, s->ino_fd >= 0 ? 1 : 0, (int)timeout, NULL);
        if (s->ino_fd >= 0 && (wfd.revents & CURL_WAIT_POLLIN) && inotify_drain(s)) dirty = 1;
    }
    if (s->in_flight) {
        char c[16];
        snprintf(c, sizeof c, "%d", s->in_flight);
        pdr_log(PDR_LOG_WARN, "shutdown grace over: requests in flight abandoned; their events stay queued",
                "count", c, NULL);
    }
    return NULL;
}

pdr_rc sender_start(sender *s)
{
    db_options opt;
    char err[1024] = "";
    writer_db_options(s->cfg, &opt);
    opt.skip_check = 1;   /* the daemon checked it when it opened its own handle */
    pdr_rc rc = db_open(&opt, &s->db, err, sizeof err);
    if (rc) {
        pdr_log(PDR_LOG_ERROR, "sender cannot open the outbox", "error", err, NULL);
        return rc;
    }
    s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s->ino_fd < 0 ||
        /* IN_CLOSE_WRITE comes when another process (`pdrelay send`,
        ** `queue retry`) closes the database, after its commit, so the fill
        ** it triggers sees the new rows. No IN_MODIFY: it comes while a
        ** writer is still inside its transaction, and for every commit of
        ** this daemon's own ingest, which wakes the sender itself
        ** (sender_notify) and never closes the file. */
        inotify_add_watch(s->ino_fd, s->cfg->data_dir, IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0) {
        pdr_log(PDR_LOG_WARN, "inotify unavailable: events queued by other processes are noticed within 1s",
                "error", strerror(errno), NULL);
        if (s->ino_fd >= 0) close(s->ino_fd);
        s->ino_fd = -1;
    }
    /* Up until shown otherwise; what was queued before this start was held. */
    s->link = LINK_UP;
    s->up_since_ms = pdr_clock_now_ms();
    s->next_cleanup_ms = s->up_since_ms + (s->cfg->cleanup_interval_ms < SENDER_FIRST_CLEANUP_MS
                                               ? s->cfg->cleanup_interval_ms : SENDER_FIRST_CLEANUP_MS);
    metrics_link_set(1);
    link_publish(s, s->up_since_ms);
    {
        const char *shown[PDR_CONFIG_MAX_UPSTREAMS];
        for (int i = 0; i < s->ups.n; i++) shown[i] = s->ups.e[i].shown;
        metrics_upstreams_set(shown, s->ups.n);
    }
    upstream_publish(s);
    if (pthread_create(&s->thread, NULL, sender_main, s) != 0) return PDR_ERR_NOMEM;
    pthread_setname_np(s->thread, "pdr-sender");   /* shown by top -H, ps -L, perf */
    s->started = 1;
    return PDR_OK;
}

pdr_rc sender_set_token(sender *s, const char *token)
{
    char *copy = NULL;
    int same;
    if (token && *token && !(copy = pdr_strdup(token))) return PDR_ERR_NOMEM;
    pthread_mutex_lock(&s->token_mu);
    same = copy ? s->token_next && !strcmp(copy, s->token_next) : !s->token_next;
    if (!same) {
        char *old = s->token_next;
        s->token_next = copy;
        copy = old;
        atomic_fetch_add(&s->token_gen, 1);
    }
    pthread_mutex_unlock(&s->token_mu);
    token_free(copy);
    if (!same && s->multi) curl_multi_wakeup(s->multi);
    return PDR_OK;
}

void sender_notify(sender *s)
{
    /* One wake-up per fill is enough: while a notification is pending (the
    ** thread has not yet looked), more commits need not wake it again. */
    if (atomic_exchange(&s->notified, 1) == 0) curl_multi_wakeup(s->multi);
}

pdr_rc sender_webhooks_set(sender *s, const pdr_config *cfg)
{
    webhook_table *n = NULL, *old;
    pdr_rc rc = webhook_table_new(cfg, &n);
    if (rc) return rc;
    pthread_mutex_lock(&s->wh_mu);
    old = s->wh_next;
    s->wh_next = n;
    atomic_store(&s->wh_swap, 1);
    pthread_mutex_unlock(&s->wh_mu);
    webhook_table_free(old);
    curl_multi_wakeup(s->multi);
    return PDR_OK;
}

void sender_kick(sender *s)
{
    atomic_store(&s->kicked, 1);
    curl_multi_wakeup(s->multi);
}

void sender_stop(sender *s)
{
    if (!s || !s->started) return;
    atomic_store(&s->stop, 1);
    curl_multi_wakeup(s->multi);
    pthread_join(s->thread, NULL);
    s->started = 0;
}
