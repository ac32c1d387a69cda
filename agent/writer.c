/*
** writer.c — group commit (see writer.h for the contract) on one thread.
**
** A request appends its job to a FIFO under the mutex and signals the
** thread; it does not wait (the HTTP event loop suspends the connection and
** serves others). The thread takes every queued push job (up to
** WRITER_BATCH_MAX events, always at least one job), copies their events
** into one array and calls db_outbox_push_batch(): one BEGIN IMMEDIATE ...
** COMMIT, one fsync. Jobs that arrive meanwhile queue up for the next
** batch. When the commit ends, the thread calls each job's callback outside
** the mutex. A probe job runs alone, in its turn.
**
** [outbox] commit_interval > 0: with a push job at the head of the queue,
** the thread first waits, up to the interval, for more to queue
** (batch_gather), so that a site that prefers fewer writes to flash over
** latency gets bigger batches. The interval is measured by the injectable
** clock (agent/clock.h) and waited for on the condition (a timed wait
** that each submit cuts short), never by spinning.
**
**   submit:  lock mu; append job; signal cv; unlock
**   thread:  lock mu; wait cv until a job or stopping;
**            [commit_interval: wait cv until it is over, the batch is
**            full, or stopping]
**            take the batch; unlock; commit; lock; stats; unlock;
**            call each job's done; repeat
**
** The database handle is used by the writer's thread only.
**
** assert() checks invariants 1 and 2 of writer.h: every accepted job gets a
** number in submit order (seq, under mu), and the thread calls the jobs'
** callbacks strictly in that order, each once (completed), after the
** batch's db_outbox_push_batch() committed or rolled back (a committed
** batch gave each event a per-event result: batch_results_valid).
*/
#include "writer.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* The most events committed in one transaction: bounds the memory of a batch
** and the latency a huge batch would add to the requests in it. */
#define WRITER_BATCH_MAX 4096

enum { JOB_PUSH = 0, JOB_PROBE = 1 };

struct writer {
    const pdr_config *cfg;
    writer_commit_fn on_commit;
    void *ctx;
    db_handle *db;

    pthread_mutex_t mu;
    pthread_cond_t cv;          /* signalled when a job queues or stopping begins (CLOCK_MONOTONIC) */
    pthread_t thread;
    writer_job *head, *tail;    /* FIFO of queued jobs */
    size_t queued_events;       /* events of the queued push jobs */
    int stopping;               /* no new jobs */
    int started;                /* the thread runs */
    writer_stats stats;
    uint64_t submitted;         /* jobs accepted so far (job->seq), under mu */
    uint64_t completed;         /* seq of the last job whose callback ran: the thread's */

    db_bound refusing;          /* writer thread: the bound that refused the
                                ** last refused event, until one is stored */
    /* The batch arrays, grown up to WRITER_BATCH_MAX. */
    db_event *bevs;
    pdr_rc *bres;
    int64_t *bids;
    size_t bcap;
};

void writer_db_options(const pdr_config *cfg, db_options *out)
{
    memset(out, 0, sizeof *out);
    out->data_dir = cfg->data_dir;
    out->sync_full = cfg->synchronous == PDR_SYNC_FULL;
    out->max_events = cfg->max_events;
    out->max_bytes = cfg->max_bytes;
    out->min_free = cfg->min_free;
    out->max_dead = cfg->max_dead;
    out->max_dead_age_ms = cfg->max_dead_age_ms;
}

char *writer_bound_limit(const pdr_config *cfg, db_bound b, char *out, size_t outsz)
{
    if (b == DB_BOUND_MAX_BYTES) return pdr_size_format(cfg->max_bytes, out, outsz);
    if (b == DB_BOUND_MIN_FREE) return pdr_size_format(cfg->min_free, out, outsz);
    snprintf(out, outsz, "%lld", (long long)cfg->max_events);
    return out;
}

pdr_rc writer_create(const pdr_config *cfg, writer_commit_fn on_commit, void *ctx, writer **out)
{
    writer *w;
    db_options opt;
    char err[512];
    pdr_rc rc;

    *out = NULL;
    w = pdr_calloc(1, sizeof *w);
    if (!w) return PDR_ERR_NOMEM;
    w->cfg = cfg;
    w->on_commit = on_commit;
    w->ctx = ctx;
    writer_db_options(cfg, &opt);
    opt.skip_check = 1;   /* the daemon checked the file when it started */
    opt.dedup_ttl_ms = cfg->dedup_ttl_ms;   /* a trigger records its incident as it is queued */
    rc = db_open(&opt, &w->db, err, sizeof err);
    if (rc) {
        pdr_log(PDR_LOG_ERROR, "ingest cannot open the outbox", "error", err, NULL);
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    {
        /* batch_gather's timed waits must not jump with the wall clock */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    *out = w;
    return PDR_OK;
}

/* Makes room for n events in the batch arrays. */
static pdr_rc batch_reserve(writer *w, size_t n)
{
    size_t cap = w->bcap ? w->bcap : 64;
    void *p;
    if (n <= w->bcap) return PDR_OK;
    while (cap < n) cap *= 2;
    p = pdr_realloc(w->bevs, cap * sizeof *w->bevs);
    if (!p) return PDR_ERR_NOMEM;
    w->bevs = p;
    p = pdr_realloc(w->bres, cap * sizeof *w->bres);
    if (!p) return PDR_ERR_NOMEM;
    w->bres = p;
    p = pdr_realloc(w->bids, cap * sizeof *w->bids);
    if (!p) return PDR_ERR_NOMEM;
    w->bids = p;
    w->bcap = cap;
    return PDR_OK;
}

/* Runs a probe job on the writer's connection. */
static pdr_rc writer_run_probe(writer *w)
{
    int64_t oldest = 0, dedup = 0;
    db_counts c;
    db_bound bound = DB_BOUND_NONE;
    pdr_rc rc = db_outbox_counts(w->db, &c), last;
    pthread_mutex_lock(&w->mu);
    last = w->stats.last_rc;
    pthread_mutex_unlock(&w->mu);
    if (!rc) {
        rc = db_outbox_oldest_ms(w->db, &oldest);
        if (rc == PDR_ERR_NOT_FOUND) {
            oldest = 0;
            rc = PDR_OK;
        }
    }
    if (!rc) rc = db_dedup_count(w->db, &dedup);
    if (!rc) bound = db_outbox_bound_reached(w->db, &c);
    /* Healthy: no write needed, the last batch proved the disk. After a
    ** failure, write once to learn whether space (or the device) is back. */
    if (!rc && last != PDR_OK) rc = db_write_probe(w->db);
    pthread_mutex_lock(&w->mu);
    if (!rc) {
        w->stats.pending = c.pending;
        w->stats.dead = c.dead;
        w->stats.pending_bytes = c.pending_bytes;
        w->stats.dead_bytes = c.dead_bytes;
        w->stats.bound = bound;
        w->stats.oldest_ms = oldest;
        w->stats.dedup_entries = dedup;
    }
    if (!rc || w->stats.last_rc == PDR_OK) w->stats.last_rc = rc;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* The strings of an event sent to another key than the one it came with. */
typedef struct rerouted {
    struct rerouted *next;
    char routing_key[PDR_ROUTING_KEY_LEN + 1];
    char dedup_key[PDR_DEDUP_KEY_MAX_BYTES + 1];
    char *body;                 /* cJSON_PrintUnformatted: cJSON_free */
} rerouted;

/* An incident keeps its routing key (writer invariant 5): an alert of a
** target whose incident is open under another key (the target's key was
** rotated since its trigger; the dedup table says which) goes to that key,
** with its dedup key, whatever its action: PagerDuty drops an acknowledge
** or resolve sent to any other key, and a repeated trigger there would open
** a second incident. *out is set (caller frees) only when ev was changed. */
static pdr_rc reroute(writer *w, db_event *ev, rerouted **out)
{
    rerouted r;
    cJSON *b = NULL;
    pdr_rc rc;
    *out = NULL;
    if (!ev->target || !ev->fingerprint || !ev->dedup_key) return PDR_OK;
    rc = db_dedup_route(w->db, ev->target, ev->fingerprint, r.routing_key, r.dedup_key);
    if (rc == PDR_ERR_NOT_FOUND || (!rc && !strcmp(r.routing_key, ev->routing_key))) return PDR_OK;
    if (rc) return rc;
    rc = PDR_ERR_NOMEM;
    b = cJSON_ParseWithLength(ev->body, ev->body_len);
    if (!b || !cJSON_ReplaceItemInObjectCaseSensitive(b, "routing_key", cJSON_CreateString(r.routing_key)) ||
        !cJSON_ReplaceItemInObjectCaseSensitive(b, "dedup_key", cJSON_CreateString(r.dedup_key)))
        goto out;
    r.next = NULL;
    r.body = cJSON_PrintUnformatted(b);
    if (!r.body || !(*out = pdr_malloc(sizeof r))) {
        cJSON_free(r.body);
        goto out;
    }
    **out = r;
    char from[PDR_REDACT_SIZE], to[PDR_REDACT_SIZE];
    pdr_log(PDR_LOG_INFO, "incident keeps its routing key: sent to the key that triggered it", "target",
            ev->target, "fingerprint", ev->fingerprint, "action", pdr_action_name(ev->action), "key",
            pdr_redact(ev->routing_key, from, sizeof from), "incident_key",
            pdr_redact(r.routing_key, to, sizeof to), NULL);
    ev->routing_key = (*out)->routing_key;
    ev->dedup_key = (*out)->dedup_key;
    ev->body = (*out)->body;
    ev->body_len = strlen((*out)->body);
    rc = PDR_OK;
out:
    cJSON_Delete(b);
    return rc;
}

/* After a commit that refused events by bound b (DB_BOUND_NONE: none): the
** log says once when a bound starts refusing events and once when events
** are stored again. */
static void writer_note_bound(writer *w, db_bound b, size_t stored)
{
    if (b != DB_BOUND_NONE && b != w->refusing) {
        char limit[32];
        pdr_log(PDR_LOG_WARN, "outbox full: new events are refused (503) until it drains; nothing queued is "
                "dropped", "bound", db_bound_key(b), "limit", writer_bound_limit(w->cfg, b, limit, sizeof limit),
                NULL);
        w->refusing = b;
    } else if (b == DB_BOUND_NONE && stored && w->refusing != DB_BOUND_NONE) {
        pdr_log(PDR_LOG_INFO, "outbox accepts new events again", "bound", db_bound_key(w->refusing), NULL);
        w->refusing = DB_BOUND_NONE;
    }
}

/* Commits the jobs from first up to (not including) end as one batch. */
static pdr_rc writer_commit(writer *w, writer_job *first, writer_job *end, size_t nev)
{
    size_t k = 0, stored = 0;
    rerouted *moved = NULL;   /* this batch's rerouted events' strings */
    pdr_rc rc = batch_reserve(w, nev);
    if (rc) return rc;
    for (writer_job *j = first; j != end; j = j->next) {
        memcpy(w->bevs + k, j->evs, j->n * sizeof *j->evs);
        k += j->n;
    }
    for (size_t i = 0; i < nev && !rc; i++) {
        rerouted *r = NULL;
        rc = reroute(w, &w->bevs[i], &r);
        if (r) {
            r->next = moved;
            moved = r;
        }
    }
    double t0 = metrics_now();
    if (!rc) rc = db_outbox_push_batch(w->db, w->bevs, nev, w->bres, w->bids);
    while (moved) {
        rerouted *next = moved->next;
        cJSON_free(moved->body);
        free(moved);
        moved = next;
    }
    if (rc) return rc;
    metrics_observe(MH_COMMIT, NULL, metrics_now() - t0);
    db_bound bound = db_outbox_last_bound(w->db);
    k = 0;
    for (writer_job *j = first; j != end; j = j->next) {
        memcpy(j->results, w->bres + k, j->n * sizeof *j->results);
        if (j->ids) memcpy(j->ids, w->bids + k, j->n * sizeof *j->ids);
        j->bound = bound;   /* read with a PDR_ERR_FULL result only */
        k += j->n;
    }
    for (size_t i = 0; i < nev; i++)
        if (w->bres[i] == PDR_OK) stored++;
    writer_note_bound(w, bound, stored);
    if (stored && w->on_commit) w->on_commit(w->ctx);
    return PDR_OK;
}

/* Takes the next batch off the queue (mu held): one probe job, or push jobs
** while they fit (the first one always). *nev gets the events' count. */
static writer_job *batch_take(writer *w, size_t *nev)
{
    writer_job *first = w->head, *end, *last = NULL;
    *nev = 0;
    if (first->kind == JOB_PROBE) {
        end = first->next;
        last = first;
    } else {
        for (end = first; end && end->kind == JOB_PUSH; end = end->next) {
            if (*nev && *nev + end->n > WRITER_BATCH_MAX) break;
            *nev += end->n;
            last = end;
        }
    }
    w->head = end;
    if (!end) w->tail = NULL;
    last->next = NULL;   /* the batch is now a list of its own */
    for (writer_job *j = first; j; j = j->next) w->stats.queued_jobs--;
    w->queued_events -= *nev;
    return first;
}

/* [outbox] commit_interval (mu held; the waits release it): the head of the
** queue is a push job, the first of the next batch; waits up to the
** interval after it was taken up, by the injectable clock, for more jobs to
** join it. Ends early when the batch is full (WRITER_BATCH_MAX events) or
** the writer stops (the queued jobs then commit at once). Each wait is a
** timed wait on cv, cut short by every submit; a wall clock stepped back
** restarts the interval once instead of stretching it. */
static void batch_gather(writer *w)
{
    int64_t interval = w->cfg->commit_interval_ms;
    int64_t deadline = pdr_clock_now_ms() + interval;
    for (;;) {
        int64_t left = deadline - pdr_clock_now_ms();
        struct timespec ts;
        if (left > interval) {
            deadline -= left - interval;
            left = interval;
        }
        if (left <= 0 || w->stopping || w->queued_events >= WRITER_BATCH_MAX) return;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
}

#ifndef NDEBUG
/* After a commit, each push job's results are per-event results (db.h,
** db_outbox_push_batch), never a database error. */
static int batch_results_valid(const writer_job *j)
{
    if (j->kind != JOB_PUSH) return 1;
    for (size_t i = 0; i < j->n; i++) {
        pdr_rc r = j->results[i];
        if (r != PDR_OK && r != PDR_COALESCED && r != PDR_ERR_FULL && r != PDR_ERR_INVALID) return 0;
    }
    return 1;
}
#endif

static void *writer_main(void *arg)
{
    writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        writer_job *batch;
        size_t nev;
        pdr_rc rc, last;
        int probe;
        while (!w->head && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head) break;   /* stopping and nothing queued */
        if (w->head->kind == JOB_PUSH && w->cfg->commit_interval_ms > 0) batch_gather(w);
        batch = batch_take(w, &nev);
        probe = batch->kind == JOB_PROBE;
        last = w->stats.last_rc;
        pthread_mutex_unlock(&w->mu);

        if (probe) {
            rc = writer_run_probe(w);
        } else {
            rc = writer_commit(w, batch, NULL, nev);
            if (rc) {
                pdr_log(PDR_LOG_ERROR, "ingest commit failed; the requests of this batch get 503",
                        "error", pdr_strerror(rc), "detail", db_errmsg(w->db), NULL);
            } else if (last != PDR_OK) {
                pdr_log(PDR_LOG_INFO, "ingest commits again", NULL);
            }
        }

        pthread_mutex_lock(&w->mu);
        if (!probe) {
            w->stats.events += (int64_t)nev;
            if (rc) {
                w->stats.failed_batches++;
            } else {
                w->stats.batches++;
            }
            w->stats.last_rc = rc;
        }
        pthread_mutex_unlock(&w->mu);
        /* The batch left the queue: only this thread touches its jobs until
        ** each one's callback ran (after which its owner may free it). */
        for (writer_job *j = batch; j;) {
            writer_job *next = j->next;
            /* Invariants 1 and 2: once each, in submit order. */
            assert(j->seq == w->completed + 1);
            assert(rc != PDR_OK || batch_results_valid(j));
            w->completed = j->seq;
            j->rc = rc;
            j->done(j);
            j = next;
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

pdr_rc writer_start(writer *w)
{
    pdr_rc rc = PDR_OK;
    pthread_mutex_lock(&w->mu);
    if (!w->started) {
        if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
            rc = PDR_ERR_NOMEM;
        } else {
            w->started = 1;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void writer_job_push(writer_job *job, const db_event *evs, size_t n, pdr_rc *results, int64_t *ids,
                     writer_done_fn done, void *ctx)
{
    memset(job, 0, sizeof *job);
    job->kind = JOB_PUSH;
    job->evs = evs;
    job->n = n;
    job->results = results;
    job->ids = ids;
    job->done = done;
    job->ctx = ctx;
}

void writer_job_probe(writer_job *job, writer_done_fn done, void *ctx)
{
    memset(job, 0, sizeof *job);
    job->kind = JOB_PROBE;
    job->done = done;
    job->ctx = ctx;
}

pdr_rc writer_submit_async(writer *w, writer_job *job)
{
    if (job->kind == JOB_PUSH && (job->n == 0 || job->n > WRITER_BATCH_MAX * 4)) return PDR_ERR_INVALID;
    assert(job->done);
    pthread_mutex_lock(&w->mu);
    if (w->stopping || !w->started) {
        pthread_mutex_unlock(&w->mu);
        return PDR_ERR_SHUTDOWN;
    }
    job->next = NULL;
    job->seq = ++w->submitted;
    if (w->tail) {
        w->tail->next = job;
    } else {
        w->head = job;
    }
    w->tail = job;
    w->stats.queued_jobs++;
    if (job->kind == JOB_PUSH) w->queued_events += job->n;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return PDR_OK;
}

/* A blocking caller waits for its job on a mutex and condition of its own. */
typedef struct job_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} job_wait;

static void job_wait_done(writer_job *job)
{
    job_wait *jw = job->ctx;
    pthread_mutex_lock(&jw->mu);
    jw->done = 1;
    pthread_cond_signal(&jw->cv);
    pthread_mutex_unlock(&jw->mu);
}

static pdr_rc writer_run_blocking(writer *w, writer_job *job)
{
    job_wait jw;
    pdr_rc rc;
    memset(&jw, 0, sizeof jw);
    pthread_mutex_init(&jw.mu, NULL);
    pthread_cond_init(&jw.cv, NULL);
    job->done = job_wait_done;
    job->ctx = &jw;
    rc = writer_submit_async(w, job);
    if (!rc) {
        pthread_mutex_lock(&jw.mu);
        while (!jw.done) pthread_cond_wait(&jw.cv, &jw.mu);
        pthread_mutex_unlock(&jw.mu);
        rc = job->rc;
    }
    pthread_cond_destroy(&jw.cv);
    pthread_mutex_destroy(&jw.mu);
    return rc;
}

pdr_rc writer_submit(writer *w, const db_event *evs, size_t n, pdr_rc *results, int64_t *ids)
{
    writer_job job;
    writer_job_push(&job, evs, n, results, ids, NULL, NULL);
    return writer_run_blocking(w, &job);
}

pdr_rc writer_probe(writer *w, writer_stats *stats)
{
    writer_job job;
    pdr_rc rc;
    writer_job_probe(&job, NULL, NULL);
    rc = writer_run_blocking(w, &job);
    if (stats) writer_stats_get(w, stats);
    return rc;
}

void writer_stats_get(writer *w, writer_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

void writer_note_failure(writer *w, pdr_rc rc)
{
    if (!rc) return;
    pthread_mutex_lock(&w->mu);
    w->stats.last_rc = rc;
    pthread_mutex_unlock(&w->mu);
}

void writer_stop(writer *w)
{
    int join;
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    join = w->started;
    w->started = 0;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (join) pthread_join(w->thread, NULL);
}

void writer_destroy(writer *w)
{
    if (!w) return;
    writer_stop(w);
    db_close(w->db);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->bevs);
    free(w->bres);
    free(w->bids);
    free(w);
}
