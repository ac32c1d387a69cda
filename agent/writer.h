/*
** writer.h — group commit: how ingested events get into the outbox.
**
** The writer is one thread with its own database connection. HTTP requests
** hand it jobs without blocking (writer_submit_async: the event loop goes on
** serving other connections) and learn the outcome through a callback. The
** thread takes every job that queued up while the previous batch committed
** and pushes them in one transaction (db_outbox_push_batch: one fsync for
** the batch), then calls each job's callback with its results. So the fsync
** cost is paid per batch, the batch grows with the load by itself, and a
** client's reply is sent only after the commit that holds its events.
** [outbox] commit_interval (default 0) makes the thread wait, after the
** first job of a batch, up to that long for more before it commits: fewer,
** bigger commits (fewer writes to flash) for that much more latency; the
** replies still wait for their commit (invariant 1).
**
** INVARIANTS
**   1. A job's callback runs only after the batch holding the job's events
**      committed (results PDR_OK / PDR_COALESCED / PDR_ERR_FULL per event)
**      or rolled back as a whole (the job's rc says why; nothing of it stored).
**   2. Jobs are committed in the order they were submitted, so two events of
**      one client, sent one after the other, keep their order in the outbox.
**   3. A failed commit (disk full, I/O error, read-only) harms nothing
**      already stored, and the next batch simply tries again: ingest recovers
**      by itself when space returns.
**   4. After writer_stop() begins, new jobs get PDR_ERR_SHUTDOWN; jobs already
**      queued are still committed and their callbacks called.
**   5. An incident keeps its routing key: an alert of a [target] whose
**      fingerprint has a live incident in the dedup table under another key
**      (the target's key was rotated since) is queued for that key and its
**      dedup key, whatever its action; a trigger records its incident
**      (target, fingerprint, key, dedup key) in the same transaction that
**      queues it, so this holds while the trigger is still waiting too.
**
** Checked by assert() (writer.c): 1 and 2 (each job's callback is called
** once, in submit order, after the batch's commit or rollback).
**
** Threads: the writer's own thread owns its database connection. The
** callers are the ingest's event-loop threads (submit, probe, stats), the
** sender thread (writer_note_failure), the main thread (create, start, stop,
** destroy, stats); each function below says which. Callbacks run on the
** writer's thread and must not block: they hand the result back
** (MHD_resume_connection, a condition).
**
** Ownership: writer_create() returns an object freed by writer_destroy()
** (NULL accepted). A job is the caller's; it and the events and result
** arrays it points to must live until its callback ran.
*/
#ifndef PDR_WRITER_H
#define PDR_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "pdr.h"

typedef struct writer writer;

/* Called on the writer's thread after a commit that stored at least one
** event (the daemon wakes its sender with it). */
typedef void (*writer_commit_fn)(void *ctx);

/* The writer's figures, for /readyz and metrics. */
typedef struct writer_stats {
    int64_t batches;            /* transactions committed */
    int64_t events;             /* events handed in (stored + coalesced + full) */
    int64_t failed_batches;     /* transactions rolled back */
    int64_t queued_jobs;        /* requests waiting for the next batch now */
    pdr_rc last_rc;             /* result of the last transaction (PDR_OK once one succeeds again) */
    int64_t pending;            /* outbox figures of the last successful probe */
    int64_t dead;
    int64_t pending_bytes;
    int64_t dead_bytes;
    db_bound bound;             /* the bound reached (db_outbox_bound_reached) */
    int64_t oldest_ms;          /* created_ms of the oldest pending event; 0 when none */
    int64_t dedup_entries;
} writer_stats;

/* The db_options every opener of the outbox takes from cfg (the writer,
** the sender, `pdrelay send` and `queue`): data_dir, synchronous and the
** bounds ([outbox] max_events, max_bytes, min_free, max_dead, max_dead_age).
** Zeroes the rest. */
void writer_db_options(const pdr_config *cfg, db_options *out);

/* The value cfg gives bound b, as the config writes it ("1000000", "256MB"),
** into out; for the messages that name a bound (503, log, `send`). */
char *writer_bound_limit(const pdr_config *cfg, db_bound b, char *out, size_t outsz);

/* Opens its own database connection on cfg's data_dir. cfg is borrowed and
** must outlive the writer. on_commit may be NULL.
** Main thread, before any other call. */
pdr_rc writer_create(const pdr_config *cfg, writer_commit_fn on_commit, void *ctx, writer **out);
/* Starts the writer's thread. Main thread. */
pdr_rc writer_start(writer *w);


typedef struct writer_job writer_job;
typedef void (*writer_done_fn)(writer_job *job);

/* A unit of work for the writer: a push of n events, or a probe. The caller
** fills it with writer_job_push()/writer_job_probe(); the writer sets rc
** (and results/ids) before it calls done. */
struct writer_job {
    int kind;                   /* private */
    const db_event *evs;
    size_t n;
    pdr_rc *results;
    int64_t *ids;
    pdr_rc rc;                  /* outcome, as writer_submit() returns it */
    db_bound bound;             /* a push with a PDR_ERR_FULL result: the bound
                                ** that refused it (db_outbox_last_bound of
                                ** its batch; meaningless without one) */
    writer_done_fn done;
    void *ctx;                  /* the caller's */
    writer_job *next;           /* private */
    uint64_t seq;               /* private: its place in submit order */
};

/* Fills the caller's job; touches nothing shared. Thread-safe (any thread, on
** a job not yet submitted). */
void writer_job_push(writer_job *job, const db_event *evs, size_t n, pdr_rc *results, int64_t *ids,
                     writer_done_fn done, void *ctx);
void writer_job_probe(writer_job *job, writer_done_fn done, void *ctx);

/* Queues job and returns at once. PDR_OK: job->done will be called exactly
** once, on the writer's thread. Anything else (PDR_ERR_SHUTDOWN, or
** PDR_ERR_INVALID for n == 0 or n too large): the job was not taken and done
** is never called. Thread-safe: the ingest's event-loop threads call it at
** once (the queue is under the writer's mutex). */
pdr_rc writer_submit_async(writer *w, writer_job *job);

/* Queues n events (n >= 1) and blocks until their batch committed or failed.
** results[i] gets each event's outcome and ids[i] its row id (ids may be NULL).
** Returns PDR_OK when the batch committed, PDR_ERR_SHUTDOWN when the writer is
** stopping, or the database error that rolled the batch back. Thread-safe
** (any thread but the writer's own, which it would wait for forever). */
pdr_rc writer_submit(writer *w, const db_event *evs, size_t n, pdr_rc *results, int64_t *ids);

/* Checks the database in turn with the batches (async: writer_job_probe
** then writer_submit_async, and read the figures with writer_stats_get): it reads the outbox figures
** (pending, dead, oldest, dedup entries: so *stats is fresh) and, after a
** failed commit, tries a write transaction. Returns PDR_OK when the
** database can be written, else why not. Thread-safe (any thread but the
** writer's own, as writer_submit). */
pdr_rc writer_probe(writer *w, writer_stats *stats);

/* A copy of the figures, taken under the writer's mutex. Thread-safe. */
void writer_stats_get(writer *w, writer_stats *out);

/* Another connection of this process (the sender) failed to write the
** database with rc: until a write probe succeeds again, /readyz is 503.
** Thread-safe (the sender thread calls it). */
void writer_note_failure(writer *w, pdr_rc rc);

/* Refuses new jobs, lets the queued ones commit (their callbacks run), then
** joins the thread. Main thread, after the ingest stopped submitting. */
void writer_stop(writer *w);
/* Stops (writer_stop), then frees. Main thread; must not race with any
** other call. */
void writer_destroy(writer *w);

#endif /* PDR_WRITER_H */
