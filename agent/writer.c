/*
** writer.c — group commit (see writer.h for the contract), leader/follower
** style: there is no writer thread.
**
** A request appends its job to a FIFO under the mutex. If no batch is being
** committed, it becomes the leader: it takes every queued job (up to
** WRITER_BATCH_MAX events, always at least one job), copies their events
** into one array, and calls db_outbox_push_batch(): one BEGIN IMMEDIATE ...
** COMMIT, one fsync. Requests that arrive meanwhile queue up and wait on
** their job's own mutex and condition variable. When the commit ends, the
** leader wakes the request now at the head of the queue, which leads the
** next batch with everything that gathered, then marks its own batch's jobs
** done (waking each of those requests only, outside the writer's mutex). So the batch grows with the load by itself, and
** the leader's own request pays no thread hand-off at all.
**
**   request:  lock mu; append job;
**             loop: if nobody commits: lead; unlock mu;
**                   wait job.cv until done or asked to lead; if done: return;
**                   lock mu
**   lead:     take jobs; committing = 1; unlock mu; push_batch; lock mu;
**             committing = 0; ask head to lead; unlock mu;
**             mark each job of the batch done (under its jm); lock mu
**
** The database handle is used by one leader at a time (committing == 1).
*/
#include "writer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

/* The most events committed in one transaction: bounds the memory of a batch
** and the latency a huge batch would add to the requests in it. */
#define WRITER_BATCH_MAX 4096

typedef enum job_kind { JOB_PUSH = 0, JOB_PROBE = 1 } job_kind;

typedef struct writer_job {
    job_kind kind;
    const db_event *evs;
    size_t n;
    pdr_rc *results;
    int64_t *ids;
    pdr_rc rc;
    /* The request waits on its own mutex and condition, so waking it never
    ** contends with the writer's mutex. Under jm: */
    int done;                   /* committed or failed: rc is set */
    int lead;                   /* it is at the head: it should lead a batch */
    pthread_mutex_t jm;
    pthread_cond_t cv;
    struct writer_job *next;
} writer_job;

struct writer {
    const pdr_config *cfg;
    writer_commit_fn on_commit;
    void *ctx;
    db_t *db;

    pthread_mutex_t mu;
    pthread_cond_t idle_cv;     /* broadcast when no batch runs and none waits */
    writer_job *head, *tail;    /* FIFO of queued jobs */
    int stopping;               /* no new jobs */
    int started;
    int committing;             /* a request is leading a batch */
    writer_stats stats;

    /* The leader's batch arrays, grown up to WRITER_BATCH_MAX. */
    db_event *bevs;
    pdr_rc *bres;
    int64_t *bids;
    size_t bcap;
};

pdr_rc writer_create(const pdr_config *cfg, writer_commit_fn on_commit, void *ctx, writer **out)
{
    writer *w;
    db_options opt;
    char err[512];
    pdr_rc rc;

    *out = NULL;
    w = calloc(1, sizeof *w);
    if (!w) return PDR_ERR_NOMEM;
    w->cfg = cfg;
    w->on_commit = on_commit;
    w->ctx = ctx;
    memset(&opt, 0, sizeof opt);
    opt.data_dir = cfg->data_dir;
    opt.sync_full = cfg->synchronous == PDR_SYNC_FULL;
    opt.max_events = cfg->max_events;
    opt.skip_quick_check = 1;   /* the daemon checked the file when it started */
    rc = db_open(&opt, &w->db, err, sizeof err);
    if (rc) {
        pdr_log(PDR_LOG_ERROR, "ingest cannot open the outbox", "error", err, NULL);
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->idle_cv, NULL);
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
    p = realloc(w->bevs, cap * sizeof *w->bevs);
    if (!p) return PDR_ERR_NOMEM;
    w->bevs = p;
    p = realloc(w->bres, cap * sizeof *w->bres);
    if (!p) return PDR_ERR_NOMEM;
    w->bres = p;
    p = realloc(w->bids, cap * sizeof *w->bids);
    if (!p) return PDR_ERR_NOMEM;
    w->bids = p;
    w->bcap = cap;
    return PDR_OK;
}

/* Runs a probe job on the writer's connection. */
static pdr_rc writer_run_probe(writer *w)
{
    int64_t pending = 0, dead = 0, oldest = 0, dedup = 0;
    pdr_rc rc = db_outbox_count(w->db, &pending, &dead);
    if (!rc) {
        rc = db_outbox_oldest_ms(w->db, &oldest);
        if (rc == PDR_ERR_NOT_FOUND) {
            oldest = 0;
            rc = PDR_OK;
        }
    }
    if (!rc) rc = db_dedup_count(w->db, &dedup);
    /* Healthy: no write needed, the last batch proved the disk. After a
    ** failure, write once to learn whether space (or the device) is back. */
    if (!rc && w->stats.last_rc != PDR_OK) rc = db_write_probe(w->db);
    pthread_mutex_lock(&w->mu);
    if (!rc) {
        w->stats.pending = pending;
        w->stats.dead = dead;
        w->stats.oldest_ms = oldest;
        w->stats.dedup_entries = dedup;
    }
    if (!rc || w->stats.last_rc == PDR_OK) w->stats.last_rc = rc;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Commits the jobs from first up to (not including) end as one batch. */
static pdr_rc writer_commit(writer *w, writer_job *first, writer_job *end, size_t nev)
{
    size_t k = 0, stored = 0;
    pdr_rc rc = batch_reserve(w, nev);
    if (rc) return rc;
    for (writer_job *j = first; j != end; j = j->next) {
        memcpy(w->bevs + k, j->evs, j->n * sizeof *j->evs);
        k += j->n;
    }
    double t0 = metrics_now();
    rc = db_outbox_push_batch(w->db, w->bevs, nev, w->bres, w->bids);
    if (rc) return rc;
    metrics_observe(MH_COMMIT, NULL, metrics_now() - t0);
    k = 0;
    for (writer_job *j = first; j != end; j = j->next) {
        memcpy(j->results, w->bres + k, j->n * sizeof *j->results);
        if (j->ids) memcpy(j->ids, w->bids + k, j->n * sizeof *j->ids);
        k += j->n;
    }
    for (size_t i = 0; i < nev; i++)
        if (w->bres[i] == PDR_OK) stored++;
    if (stored && w->on_commit) w->on_commit(w->ctx);
    return PDR_OK;
}

/* Under the job's mutex: done = 1 with rc (done > 0), or lead = 1 (done < 0). */
static void job_wake(writer_job *j, int done, pdr_rc rc)
{
    pthread_mutex_lock(&j->jm);
    if (done > 0) {
        j->rc = rc;
        j->done = 1;
    } else {
        j->lead = 1;
    }
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->jm);
}

/* Called with mu held by a request whose job is queued, when no batch is
** being committed: commits the batch at the head of the queue (the caller's
** own job may or may not be in it), hands the lead to the request now at the
** head, and wakes the batch's requests. Returns with mu released, and
** touches nothing of the writer after its last unlock (so writer_stop may
** return while the batch's requests are being woken). */
static void writer_lead(writer *w)
{
    writer_job *first = w->head, *end;
    size_t nev = 0;
    pdr_rc rc;

    if (first->kind == JOB_PROBE) {
        end = first->next;
    } else {
        /* Take push jobs while they fit (the first one always). */
        for (end = first; end && end->kind == JOB_PUSH; end = end->next) {
            if (nev && nev + end->n > WRITER_BATCH_MAX) break;
            nev += end->n;
        }
    }
    w->head = end;
    if (!end) w->tail = NULL;
    for (writer_job *j = first; j != end; j = j->next) w->stats.queued_jobs--;
    w->committing = 1;
    pthread_mutex_unlock(&w->mu);

    if (first->kind == JOB_PROBE) {
        rc = writer_run_probe(w);
    } else {
        rc = writer_commit(w, first, end, nev);
        if (rc) {
            pdr_log(PDR_LOG_ERROR, "ingest commit failed; the requests of this batch get 503",
                    "error", pdr_strerror(rc), "detail", db_errmsg(w->db), NULL);
        } else if (w->stats.last_rc != PDR_OK) {
            pdr_log(PDR_LOG_INFO, "ingest commits again", NULL);
        }
    }

    pthread_mutex_lock(&w->mu);
    if (first->kind == JOB_PUSH) {
        w->stats.events += (int64_t)nev;
        if (rc) {
            w->stats.failed_batches++;
        } else {
            w->stats.batches++;
        }
        w->stats.last_rc = rc;
    }
    w->committing = 0;
    if (w->head) {
        job_wake(w->head, -1, 0);   /* it leads the next batch */
    } else {
        pthread_cond_broadcast(&w->idle_cv);
    }
    pthread_mutex_unlock(&w->mu);
    /* The batch's jobs left the queue: only this thread touches them until
    ** each is marked done (and its request may then return at once). */
    for (writer_job *j = first; j != end;) {
        writer_job *next = j->next;
        job_wake(j, 1, rc);
        j = next;
    }
}

pdr_rc writer_start(writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->started = 1;
    pthread_mutex_unlock(&w->mu);
    return PDR_OK;
}

/* Queues job and returns when it is done: either another request's batch
** held it, or this request led the batch itself. */
static pdr_rc writer_run(writer *w, writer_job *job)
{
    int done = 0;
    pthread_mutex_lock(&w->mu);
    if (w->stopping || !w->started) {
        pthread_mutex_unlock(&w->mu);
        return PDR_ERR_SHUTDOWN;
    }
    job->next = NULL;
    pthread_mutex_init(&job->jm, NULL);
    pthread_cond_init(&job->cv, NULL);
    if (w->tail) {
        w->tail->next = job;
    } else {
        w->head = job;
    }
    w->tail = job;
    w->stats.queued_jobs++;
    for (;;) {
        if (!w->committing && w->head) {
            writer_lead(w);   /* unlocks mu */
        } else {
            pthread_mutex_unlock(&w->mu);
        }
        pthread_mutex_lock(&job->jm);
        while (!job->done && !job->lead) pthread_cond_wait(&job->cv, &job->jm);
        done = job->done;
        job->lead = 0;
        pthread_mutex_unlock(&job->jm);
        if (done) break;
        pthread_mutex_lock(&w->mu);   /* asked to lead: look again under mu */
    }
    pthread_cond_destroy(&job->cv);
    pthread_mutex_destroy(&job->jm);
    return job->rc;
}

pdr_rc writer_submit(writer *w, const db_event *evs, size_t n, pdr_rc *results, int64_t *ids)
{
    writer_job job;
    if (n == 0 || n > WRITER_BATCH_MAX * 4) return PDR_ERR_INVALID;
    memset(&job, 0, sizeof job);
    job.kind = JOB_PUSH;
    job.evs = evs;
    job.n = n;
    job.results = results;
    job.ids = ids;
    return writer_run(w, &job);
}

pdr_rc writer_probe(writer *w, writer_stats *stats)
{
    writer_job job;
    pdr_rc rc;
    memset(&job, 0, sizeof job);
    job.kind = JOB_PROBE;
    rc = writer_run(w, &job);
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
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    while (w->committing || w->head) pthread_cond_wait(&w->idle_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void writer_destroy(writer *w)
{
    if (!w) return;
    writer_stop(w);
    db_close(w->db);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->idle_cv);
    free(w->bevs);
    free(w->bres);
    free(w->bids);
    free(w);
}
