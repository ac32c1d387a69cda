/*
** writer.h — group commit: how ingested events get into the outbox.
**
** Every HTTP request hands its events to the writer and waits. One request
** at a time leads: it takes everything that queued up while the previous
** batch committed and pushes it in one transaction (db_outbox_push_batch:
** one fsync for the batch), then wakes every request of the batch with its
** results. So the fsync cost is paid per
** batch, and a client's reply is sent only after the commit that holds its
** events (DESIGN.md: "Every ingest path answers only after the commit").
**
** INVARIANTS
**   1. writer_submit() returns only after the batch holding the job's events
**      committed (results PDR_OK / PDR_COALESCED / PDR_ERR_FULL per event)
**      or rolled back as a whole (the job's rc says why; nothing of it stored).
**   2. Jobs are committed in the order they were submitted, so two events of
**      one client, sent one after the other, keep their order in the outbox.
**   3. A failed commit (disk full, I/O error, read-only) harms nothing
**      already stored, and the next batch simply tries again: ingest recovers
**      by itself when space returns.
**   4. After writer_stop() begins, new jobs get PDR_ERR_SHUTDOWN; jobs already
**      queued are still committed.
**
** Ownership: writer_create() returns an object freed by writer_destroy()
** (NULL accepted). A job is the caller's (usually on its stack); the events
** and result arrays it points to must live until writer_submit() returns.
*/
#ifndef PDR_WRITER_H
#define PDR_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "pdr.h"

typedef struct writer writer;

/* Called by the leading request's thread after a commit that stored at
** least one event (the daemon wakes its sender with it). */
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
    int64_t oldest_ms;          /* created_ms of the oldest pending event; 0 when none */
    int64_t dedup_entries;
} writer_stats;

/* Opens its own database connection on cfg's data_dir. cfg is borrowed and
** must outlive the writer. on_commit may be NULL. */
pdr_rc writer_create(const pdr_config *cfg, writer_commit_fn on_commit, void *ctx, writer **out);
pdr_rc writer_start(writer *w);

/* Queues n events (n >= 1) and blocks until their batch committed or failed.
** results[i] gets each event's outcome and ids[i] its row id (ids may be NULL).
** Returns PDR_OK when the batch committed, PDR_ERR_SHUTDOWN when the writer is
** stopping, or the database error that rolled the batch back. */
pdr_rc writer_submit(writer *w, const db_event *evs, size_t n, pdr_rc *results, int64_t *ids);

/* Checks the database in turn with the batches: it reads the outbox figures
** (pending, dead, oldest, dedup entries: so *stats is fresh) and, after a
** failed commit, tries a write transaction. Returns PDR_OK when the
** database can be written, else why not. */
pdr_rc writer_probe(writer *w, writer_stats *stats);

void writer_stats_get(writer *w, writer_stats *out);

/* Another connection of this process (the sender) failed to write the
** database with rc: until a write probe succeeds again, /readyz is 503.
** Thread-safe. */
void writer_note_failure(writer *w, pdr_rc rc);

/* Refuses new jobs and waits until the queued ones are committed. */
void writer_stop(writer *w);
void writer_destroy(writer *w);

#endif /* PDR_WRITER_H */
