/*
** outbox.c — the outbox: events waiting for PagerDuty, one row each, and
** every transition of a row's life (see the diagram at the top of db.c):
** push (with coalescing, urgency, the head flag and the max_events bound),
** the sender's reads (each key's next row, next due time, a queued resolve)
** and outcomes (delivered, reschedule, kill, collapse, wake), the state it
** publishes (key throttle, uplink), and the operator's repairs (list,
** retry, purge, stats).
**
** Writes that touch more than one statement run inside BEGIN IMMEDIATE, so
** another process writing the same file waits on the busy timeout instead
** of interleaving; a single statement is its own transaction.
**
** assert() checks invariants of db.c where they could break, at no cost
** but in memory, except one read of the counts row per push transaction:
** counts equal the rows the transaction found plus those it inserted
** (invariant 5); a coalesced push found a pending row of its group, so
** an inserted row is a head only when its group had none (3); the rows
** db_outbox_due() and db_outbox_head() return are pending, due ones due.
** That a delivered, rescheduled or killed id was pending is the SQL's own
** condition (sql.h: "AND state=0"); any other id is PDR_ERR_NOT_FOUND.
*/
#include "dbInt.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "clock.h"

/* ---- push ------------------------------------------------------------------ */

/* A count for a LIMIT: size_t may be wider than int64_t (64-bit) or
** narrower (32-bit ARM). Decided by the preprocessor: on 32-bit a runtime
** comparison is always false, which -Wtype-limits (-Werror in CI) refuses. */
static int64_t size_to_i64(size_t n)
{
#if SIZE_MAX > INT64_MAX
    return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
#else
    return (int64_t)n;
#endif
}

int db_outbox_event_valid(const db_event *ev)
{
    if (!ev || !ev->routing_key || !ev->body) return 0;
    if (ev->action < PDR_ACTION_TRIGGER || ev->action > PDR_ACTION_CHANGE) return 0;
    if (ev->dedup_key && strlen(ev->dedup_key) > PDR_DEDUP_KEY_MAX_BYTES) return 0;
    return 1;
}

/* The counts row, inside or outside a transaction. */
pdr_rc db_outbox_counts_row(db_handle *db, db_counts *c)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_COUNTS);
    pdr_rc rc = PDR_OK;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        c->pending = sqlite3_column_int64(st, 0);
        c->dead = sqlite3_column_int64(st, 1);
        c->pending_bytes = sqlite3_column_int64(st, 2);
        c->dead_bytes = sqlite3_column_int64(st, 3);
    } else {
        rc = db_fail(db, src == SQLITE_DONE ? SQLITE_CORRUPT : src, "reading counts");
    }
    sqlite3_reset(st);
    return rc;
}

static pdr_rc outbox_counts(db_handle *db, int64_t *pending, int64_t *dead)
{
    db_counts c;
    pdr_rc rc = db_outbox_counts_row(db, &c);
    if (rc) return rc;
    *pending = c.pending;
    *dead = c.dead;
    return PDR_OK;
}

/*
** Coalescing: is the newest pending row of (routing_key, dedup_key) the same
** event? Only the newest counts: after trigger, resolve, a new identical
** trigger re-opens the incident and must be stored; a repeated trigger
** (Alertmanager every group_interval) must not. Bodies are compared byte for
** byte. Sets *id_out to the row's id when it is the same. The same look-up
** tells the push whether the group has a pending row (*found: the new row
** is then not the group's head) and that row's urgency (*urgency, which an
** acknowledge or resolve inherits).
*/
static pdr_rc outbox_coalesce(db_handle *db, const db_event *ev, int *same, int64_t *id_out,
                              int *found, int *urgency)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_OUTBOX_NEWEST);
    pdr_rc rc = PDR_OK;
    int src = SQLITE_OK;

    *same = 0;
    *found = 0;
    db_bind_text(st, "@routing_key", ev->routing_key, &src);
    db_bind_text(st, "@dedup_key", ev->dedup_key, &src);
    if (src) {
        rc = db_fail(db, src, "binding");
        goto out;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const void *body = sqlite3_column_blob(st, 2);
        *found = 1;
        *urgency = sqlite3_column_int(st, 3);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        if (sqlite3_column_int(st, 1) == (int)ev->action && len == ev->body_len &&
            (len == 0 || (body && memcmp(body, ev->body, len) == 0))) {
            *same = 1;
            *id_out = sqlite3_column_int64(st, 0);
        }
    } else if (src != SQLITE_DONE) {
        rc = db_fail(db, src, NULL);
    }
out:
    sqlite3_reset(st);
    return rc;
}

/* The urgency a live dedup entry of (routing_key, dedup_key) records, for
** an acknowledge or resolve whose group has no pending row. */
static pdr_rc outbox_dedup_urgency(db_handle *db, const db_event *ev, int64_t now, int *urgency)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_DEDUP_GET_BY_KEY);
    pdr_rc rc = PDR_OK;
    int src = SQLITE_OK;

    db_bind_text(st, "@routing_key", ev->routing_key, &src);
    db_bind_text(st, "@dedup_key", ev->dedup_key, &src);
    db_bind_int64(st, "@now", now, &src);
    if (src) {
        rc = db_fail(db, src, "binding");
        goto out;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *urgency = sqlite3_column_int(st, 4);
    else if (src != SQLITE_DONE)
        rc = db_fail(db, src, NULL);
out:
    sqlite3_reset(st);
    return rc;
}

static int urgency_valid(int u)
{
    return u >= PDR_URGENCY_CRITICAL && u <= PDR_URGENCY_CHANGE;
}

/* The urgency the row is stored with (db.h, db_event.urgency). */
static pdr_rc outbox_urgency(db_handle *db, const db_event *ev, int64_t now, int found,
                             int newest_urgency, int *out)
{
    switch (ev->action) {
    case PDR_ACTION_TRIGGER:
        *out = urgency_valid(ev->urgency) ? ev->urgency : PDR_URGENCY_WARNING;
        return PDR_OK;
    case PDR_ACTION_CHANGE:
        *out = urgency_valid(ev->urgency) ? ev->urgency : PDR_URGENCY_CHANGE;
        return PDR_OK;
    default:
        break;
    }
    /* acknowledge, resolve: inherit */
    *out = PDR_URGENCY_WARNING;
    if (found) {
        if (urgency_valid(newest_urgency)) *out = newest_urgency;
        return PDR_OK;
    }
    if (ev->dedup_key) {
        int u = -1;
        pdr_rc rc = outbox_dedup_urgency(db, ev, now, &u);
        if (rc) return rc;
        if (urgency_valid(u)) *out = u;
    }
    return PDR_OK;
}

/* A pushed trigger records its incident at once (db.h, db_outbox_push). */
static pdr_rc outbox_dedup_queue(db_handle *db, const db_event *ev, int64_t now, int urgency)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_DEDUP_QUEUE);
    int64_t ttl = db->dedup_ttl_ms;
    int src = SQLITE_OK;

    db_bind_text(st, "@routing_key", ev->routing_key, &src);
    db_bind_text(st, "@fingerprint", ev->fingerprint, &src);
    db_bind_text(st, "@dedup_key", ev->dedup_key, &src);
    db_bind_text(st, "@target", ev->target, &src);
    db_bind_int64(st, "@urgency", urgency, &src);
    db_bind_int64(st, "@now", now, &src);
    db_bind_int64(st, "@expires", ttl > INT64_MAX - now ? INT64_MAX : now + ttl, &src);
    return db_stmt_run_many(db, st, src, NULL);
}

static int64_t outbox_free_space(db_handle *db, int64_t now);

/* Which bound (invariant 4) refuses an event of len bytes at now, given the
** counts c (those of the transaction so far). */
static db_bound outbox_bound(db_handle *db, const db_counts *c, int64_t len, int64_t now)
{
    if (c->pending >= db->max_events) return DB_BOUND_MAX_EVENTS;
    if (c->pending_bytes > db->max_bytes - len) return DB_BOUND_MAX_BYTES;
    if (db->min_free) {
        int64_t avail = outbox_free_space(db, now);
        if (avail >= 0 && avail - len < db->min_free) return DB_BOUND_MIN_FREE;
    }
    return DB_BOUND_NONE;
}

/* One valid event inside the push transaction; *c the counts so far.
** Returns the event's result (PDR_OK, PDR_COALESCED, PDR_ERR_FULL) or a
** database error, on which the caller rolls back. */
static pdr_rc outbox_push_one(db_handle *db, const db_event *ev, int64_t now,
                              db_counts *c, int64_t *id_out)
{
    return db_outbox_push_in_tx(db, ev, now, now, 0, c, id_out);
}

pdr_rc db_outbox_push_in_tx(db_handle *db, const db_event *ev, int64_t now, int64_t created_ms,
                            int keep_urgency, db_counts *c, int64_t *id_out)
{
    db_bound bound;
    sqlite3_stmt *st;
    pdr_rc rc;
    int same = 0, found = 0, newest_urgency = -1, urgency = PDR_URGENCY_WARNING;
    int src = SQLITE_OK;

    *id_out = 0;
    rc = outbox_coalesce(db, ev, &same, id_out, &found, &newest_urgency);
    if (rc) return rc;
    assert(!same || found);   /* invariant 3: head = !found below */
    if (same) return PDR_COALESCED;
    bound = outbox_bound(db, c, (int64_t)ev->body_len, now);
    if (bound != DB_BOUND_NONE) {
        db->last_bound = bound;
        return PDR_ERR_FULL;
    }
    if (keep_urgency && urgency_valid(ev->urgency))
        urgency = ev->urgency;
    else if ((rc = outbox_urgency(db, ev, now, found, newest_urgency, &urgency)) != PDR_OK)
        return rc;

    st = db_stmt(db, DB_STMT_OUTBOX_INSERT);
    db_bind_text(st, "@routing_key", ev->routing_key, &src);
    db_bind_int64(st, "@action", ev->action, &src);
    db_bind_text(st, "@dedup_key", ev->dedup_key, &src);
    db_bind_text(st, "@fingerprint", ev->fingerprint, &src);
    db_bind_textn(st, "@body", ev->body, ev->body_len, &src);
    db_bind_int64(st, "@now", now, &src);
    db_bind_int64(st, "@created", created_ms, &src);
    db_bind_int64(st, "@urgency", urgency, &src);
    db_bind_int64(st, "@head", !found, &src);
    db_bind_text(st, "@target", ev->target, &src);
    db_bind_int64(st, "@event_ms", ev->event_ms, &src);
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    rc = db_stmt_run(db, st, NULL);
    if (rc) return rc;
    *id_out = sqlite3_last_insert_rowid(db->h);
    c->pending++;
    c->pending_bytes += (int64_t)ev->body_len;
    db->free_spent += (int64_t)ev->body_len;
    if (db->dedup_ttl_ms > 0 && ev->action == PDR_ACTION_TRIGGER && ev->fingerprint &&
        ev->target && ev->dedup_key) {
        rc = outbox_dedup_queue(db, ev, now, urgency);
        if (rc) return rc;
    }
    return PDR_OK;
}

#ifndef NDEBUG
/* Invariant 5, inside the push transaction: the counts row the triggers
** keep says what the transaction found plus what it inserted, rows and
** bytes. (Not pending <= max_events: a file may hold more after a bound
** was lowered; push then stores nothing.) */
static int outbox_counts_match(db_handle *db, const db_counts *want)
{
    db_counts c;
    if (db_outbox_counts_row(db, &c)) return 1;   /* a read error is not ours to judge */
    return c.pending == want->pending && c.dead == want->dead &&
           c.pending_bytes == want->pending_bytes && c.dead_bytes == want->dead_bytes;
}
#endif

/* Is rc one of the per-event results (as opposed to a database error)? */
static int outbox_is_event_result(pdr_rc rc)
{
    return rc == PDR_OK || rc == PDR_COALESCED || rc == PDR_ERR_FULL;
}

pdr_rc db_outbox_push_batch(db_handle *db, const db_event *evs, size_t n,
                            pdr_rc *results, int64_t *ids)
{
    int64_t id, now;
    db_counts c;
    pdr_rc rc, ev_rc = PDR_OK;
    size_t i;

    if (!db || (n && (!evs || !results))) return PDR_ERR_INVALID;
    if (!n) return PDR_OK;
    db->last_bound = DB_BOUND_NONE;
    now = pdr_clock_now_ms();
    rc = db_tx_begin(db);
    if (rc) goto out;
    /* Read once: we hold the write lock, nobody else changes it. */
    rc = db_outbox_counts_row(db, &c);
    if (rc) goto out;
    for (i = 0; i < n; i++) {
        if (!db_outbox_event_valid(&evs[i])) {
            /* A caller's bug, not the database's: refuse this one only. */
            results[i] = PDR_ERR_INVALID;
            if (ids) ids[i] = 0;
            continue;
        }
        ev_rc = outbox_push_one(db, &evs[i], now, &c, &id);
        if (!outbox_is_event_result(ev_rc)) {
            rc = ev_rc;
            goto out;
        }
        results[i] = ev_rc;
        if (ids) ids[i] = id;
    }
    assert(outbox_counts_match(db, &c));
    rc = db_tx_commit(db);
out:
    if (rc) {
        db_tx_rollback(db);
        for (i = 0; i < n; i++) {
            results[i] = rc;
            if (ids) ids[i] = 0;
        }
    }
    return rc;
}

pdr_rc db_outbox_push(db_handle *db, const db_event *ev, int64_t *id_out)
{
    pdr_rc result = PDR_OK;
    int64_t id = 0;
    pdr_rc rc;

    if (!ev) return PDR_ERR_INVALID;
    rc = db_outbox_push_batch(db, ev, 1, &result, &id);
    if (rc) return rc;
    if (id_out) *id_out = id;
    return result;
}

/* ---- the sender's reads ---------------------------------------------------- */

pdr_rc db_outbox_due(db_handle *db, int64_t now_ms, size_t max, db_row **rows_out, size_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;

    if (!db || !rows_out || !n_out) return PDR_ERR_INVALID;
    *rows_out = NULL;
    *n_out = 0;
    if (!max) return PDR_OK;
    st = db_stmt(db, DB_STMT_OUTBOX_DUE);
    db_bind_int64(st, "@now", now_ms, &src);
    db_bind_int64(st, "@max", size_to_i64(max), &src);
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    pdr_rc rc = db_rows_collect(db, st, max, rows_out, n_out);
    for (size_t i = 0; !rc && i < *n_out; i++)   /* invariant 3: next rows, pending and due */
        assert((*rows_out)[i].state == DB_ROW_PENDING && (*rows_out)[i].next_ms <= now_ms);
    return rc;
}

/* Steps st for exactly one row and reads it into row_out; NOT_FOUND when
** the statement gives none. Resets st. */
static pdr_rc outbox_one_row(db_handle *db, sqlite3_stmt *st, db_row *row_out)
{
    pdr_rc rc;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        rc = db_row_read(db, st, row_out);
    else if (src == SQLITE_DONE)
        rc = PDR_ERR_NOT_FOUND;
    else
        rc = db_fail(db, src, NULL);
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_outbox_head(db_handle *db, const char *routing_key, db_row *row_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;

    if (!db || !routing_key || !row_out) return PDR_ERR_INVALID;
    memset(row_out, 0, sizeof *row_out);
    st = db_stmt(db, DB_STMT_OUTBOX_HEAD);
    db_bind_text(st, "@routing_key", routing_key, &src);
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    pdr_rc rc = outbox_one_row(db, st, row_out);
    assert(rc || row_out->state == DB_ROW_PENDING);   /* invariant 3: a next row is pending */
    return rc;
}

pdr_rc db_outbox_next_due_ms(db_handle *db, int64_t *ms_out)
{
    return db_outbox_next_due_after(db, INT64_MIN, ms_out);
}

/* Steps st (bound) for one nullable integer: PDR_ERR_NOT_FOUND for NULL. */
static pdr_rc outbox_one_int64(db_handle *db, sqlite3_stmt *st, int64_t *out)
{
    pdr_rc rc = PDR_OK;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) == SQLITE_NULL)
            rc = PDR_ERR_NOT_FOUND;
        else
            *out = sqlite3_column_int64(st, 0);
    } else {
        rc = db_fail(db, src == SQLITE_DONE ? SQLITE_INTERNAL : src, NULL);
    }
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_outbox_next_due_after(db_handle *db, int64_t after_ms, int64_t *ms_out)
{
    sqlite3_stmt *st;
    pdr_rc rc;
    int src = SQLITE_OK;

    if (!db || !ms_out) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_NEXT_DUE);
    db_bind_int64(st, "@after", after_ms, &src);
    if (src != SQLITE_OK) {
        rc = db_fail(db, src, "binding");
        sqlite3_reset(st);
        return rc;
    }
    return outbox_one_int64(db, st, ms_out);
}

pdr_rc db_outbox_oldest_ms(db_handle *db, int64_t *ms_out)
{
    if (!db || !ms_out) return PDR_ERR_INVALID;
    return outbox_one_int64(db, db_stmt(db, DB_STMT_OUTBOX_OLDEST), ms_out);
}

pdr_rc db_outbox_wake_heads(db_handle *db, int64_t now_ms, int64_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (n_out) *n_out = 0;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_WAKE);
    db_bind_int64(st, "@now", now_ms, &src);
    return db_stmt_run_many(db, st, src, n_out);
}

pdr_rc db_outbox_find_resolve(db_handle *db, const char *routing_key, const char *dedup_key,
                              int64_t after_id, int64_t *id_out, int64_t *event_ms_out)
{
    sqlite3_stmt *st;
    pdr_rc rc = PDR_OK;
    int src = SQLITE_OK;

    if (!db || !routing_key) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_FIND_RESOLVE);
    db_bind_text(st, "@routing_key", routing_key, &src);
    db_bind_text(st, "@dedup_key", dedup_key, &src);
    db_bind_int64(st, "@after", after_id, &src);
    if (src) {
        rc = db_fail(db, src, "binding");
        goto out;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (id_out) *id_out = sqlite3_column_int64(st, 0);
        if (event_ms_out) *event_ms_out = sqlite3_column_int64(st, 1);
    } else if (src == SQLITE_DONE) {
        rc = PDR_ERR_NOT_FOUND;
    } else {
        rc = db_fail(db, src, NULL);
    }
out:
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_outbox_collapse(db_handle *db, const char *routing_key, const char *dedup_key,
                          int64_t upto_id, int64_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (n_out) *n_out = 0;
    if (!db || !routing_key) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_COLLAPSE);
    db_bind_text(st, "@routing_key", routing_key, &src);
    db_bind_text(st, "@dedup_key", dedup_key, &src);
    db_bind_int64(st, "@upto", upto_id, &src);
    return db_stmt_run_many(db, st, src, n_out);
}

/* ---- the sender's outcomes --------------------------------------------------- */

pdr_rc db_outbox_delivered(db_handle *db, int64_t id)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_DELIVERED);
    db_bind_int64(st, "@id", id, &src);
    return db_stmt_run_one(db, st, src);
}

pdr_rc db_outbox_reschedule(db_handle *db, int64_t id, int64_t next_ms, const char *error)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_RESCHEDULE);
    db_bind_int64(st, "@id", id, &src);
    db_bind_int64(st, "@next_ms", next_ms, &src);
    db_bind_text(st, "@error", error, &src);
    return db_stmt_run_one(db, st, src);
}

/* One pending row becomes dead now with error (OUTBOX_KILL or _EXPIRE). */
static pdr_rc outbox_kill_one(db_handle *db, db_stmt_id which, int64_t id, const char *error)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, which);
    db_bind_int64(st, "@id", id, &src);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    db_bind_text(st, "@error", error, &src);
    return db_stmt_run_one(db, st, src);
}

pdr_rc db_outbox_kill(db_handle *db, int64_t id, const char *error)
{
    return outbox_kill_one(db, DB_STMT_OUTBOX_KILL, id, error);
}

pdr_rc db_outbox_expire(db_handle *db, int64_t id, const char *error)
{
    return outbox_kill_one(db, DB_STMT_OUTBOX_EXPIRE, id, error);
}

pdr_rc db_outbox_clamp_next(db_handle *db, int64_t limit_ms, int64_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_CLAMP_NEXT);
    db_bind_int64(st, "@limit", limit_ms, &src);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    return db_stmt_run_many(db, st, src, n_out);
}

pdr_rc db_outbox_kill_older(db_handle *db, int64_t cutoff_ms, const char *error, int64_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_KILL_OLDER);
    db_bind_int64(st, "@cutoff", cutoff_ms, &src);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    db_bind_text(st, "@error", error, &src);
    return db_stmt_run_many(db, st, src, n_out);
}

/* ---- the operator's repairs ---------------------------------------------------- */

/*
** Retry: copy the chosen dead rows as new pending rows (INSERT ... SELECT
** ... ORDER BY id: new ids, larger than any, in the old relative order),
** then delete the originals, in one transaction. The count of rows does not
** change, so the max_events bound is not consulted. routing_key or id
** selects (see the statements); *n_out gets the rows retried.
*/
static pdr_rc outbox_retry(db_handle *db, db_stmt_id copy_id, db_stmt_id delete_id,
                           const char *routing_key, const int64_t *id, int64_t *n_out)
{
    sqlite3_stmt *st;
    int64_t copied = 0, deleted = 0, max_id = 0;
    pdr_rc rc;
    int src = SQLITE_OK;

    *n_out = 0;
    rc = db_tx_begin(db);
    if (rc) return rc;
    rc = outbox_one_int64(db, db_stmt(db, DB_STMT_OUTBOX_MAX_ID), &max_id);
    if (rc) goto out;

    st = db_stmt(db, copy_id);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    if (routing_key) db_bind_text(st, "@routing_key", routing_key, &src);
    if (id) db_bind_int64(st, "@id", *id, &src);
    rc = db_stmt_run_many(db, st, src, &copied);
    if (rc) goto out;

    src = SQLITE_OK;
    st = db_stmt(db, delete_id);
    if (routing_key) db_bind_text(st, "@routing_key", routing_key, &src);
    if (id) db_bind_int64(st, "@id", *id, &src);
    rc = db_stmt_run_many(db, st, src, &deleted);
    if (rc) goto out;
    if (copied != deleted) {
        /* Cannot happen while we hold the write lock: a bug, keep the rows. */
        rc = PDR_ERR_INTERNAL;
        goto out;
    }
    /* The copies came in with head=0: those first of their group become
    ** heads (rare: an operator's order; only the new rows are looked at). */
    src = SQLITE_OK;
    st = db_stmt(db, DB_STMT_OUTBOX_RETRY_HEADS);
    db_bind_int64(st, "@after", max_id, &src);
    rc = db_stmt_run_many(db, st, src, NULL);
    if (rc) goto out;
    rc = db_tx_commit(db);
    if (!rc) *n_out = copied;
out:
    if (rc) db_tx_rollback(db);
    return rc;
}

pdr_rc db_outbox_retry_all(db_handle *db, int64_t *n_out)
{
    int64_t n = 0;
    pdr_rc rc;
    if (!db) return PDR_ERR_INVALID;
    rc = outbox_retry(db, DB_STMT_OUTBOX_RETRY_ALL_COPY, DB_STMT_OUTBOX_RETRY_ALL_DELETE,
                      NULL, NULL, &n);
    if (n_out) *n_out = n;
    return rc;
}

pdr_rc db_outbox_retry_key(db_handle *db, const char *routing_key, int64_t *n_out)
{
    int64_t n = 0;
    pdr_rc rc;
    if (!db || !routing_key) return PDR_ERR_INVALID;
    rc = outbox_retry(db, DB_STMT_OUTBOX_RETRY_KEY_COPY, DB_STMT_OUTBOX_RETRY_KEY_DELETE,
                      routing_key, NULL, &n);
    if (n_out) *n_out = n;
    return rc;
}

pdr_rc db_outbox_retry_id(db_handle *db, int64_t id)
{
    int64_t n = 0;
    pdr_rc rc;
    if (!db) return PDR_ERR_INVALID;
    rc = outbox_retry(db, DB_STMT_OUTBOX_RETRY_ID_COPY, DB_STMT_OUTBOX_RETRY_ID_DELETE,
                      NULL, &id, &n);
    if (!rc && n == 0) rc = PDR_ERR_NOT_FOUND;
    return rc;
}

pdr_rc db_outbox_purge_dead(db_handle *db, int64_t cutoff_ms, int64_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_OUTBOX_PURGE_DEAD);
    db_bind_int64(st, "@cutoff", cutoff_ms, &src);
    return db_stmt_run_many(db, st, src, n_out);
}

/* ---- inspection -------------------------------------------------------------- */

pdr_rc db_outbox_list(db_handle *db, db_row_state state, const char *routing_key,
                      size_t limit, db_row **rows_out, size_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;

    if (!db || !rows_out || !n_out) return PDR_ERR_INVALID;
    *rows_out = NULL;
    *n_out = 0;
    if (state != DB_ROW_PENDING && state != DB_ROW_DEAD) return PDR_ERR_INVALID;
    if (state == DB_ROW_PENDING)
        st = db_stmt(db, routing_key ? DB_STMT_OUTBOX_LIST_PENDING_KEY
                                     : DB_STMT_OUTBOX_LIST_PENDING);
    else
        st = db_stmt(db, routing_key ? DB_STMT_OUTBOX_LIST_DEAD_KEY : DB_STMT_OUTBOX_LIST_DEAD);
    /* LIMIT -1: no limit */
    db_bind_int64(st, "@limit", limit == 0 ? -1 : size_to_i64(limit), &src);
    if (routing_key) db_bind_text(st, "@routing_key", routing_key, &src);
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    return db_rows_collect(db, st, limit ? limit : SIZE_MAX, rows_out, n_out);
}

pdr_rc db_outbox_get(db_handle *db, int64_t id, db_row *row_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;

    if (!db || !row_out) return PDR_ERR_INVALID;
    memset(row_out, 0, sizeof *row_out);
    st = db_stmt(db, DB_STMT_OUTBOX_GET);
    db_bind_int64(st, "@id", id, &src);
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    return outbox_one_row(db, st, row_out);
}

pdr_rc db_outbox_stats(db_handle *db, db_key_stats **stats_out, size_t *n_out)
{
    sqlite3_stmt *st;
    db_key_stats *stats = NULL, *k;
    size_t n = 0, cap = 0;
    pdr_rc rc = PDR_OK;
    int src;

    if (!db || !stats_out || !n_out) return PDR_ERR_INVALID;
    *stats_out = NULL;
    *n_out = 0;
    st = db_stmt(db, DB_STMT_OUTBOX_STATS);
    for (;;) {
        src = sqlite3_step(st);
        if (src == SQLITE_DONE) break;
        if (src != SQLITE_ROW) {
            rc = db_fail(db, src, NULL);
            goto out;
        }
        /* One entry per distinct key: bounded by the outbox's rows. */
        rc = db_grow((void **)&stats, &cap, n, sizeof *stats, 8, SIZE_MAX);
        if (rc) goto out;
        k = &stats[n++];
        memset(k, 0, sizeof *k);
        {
            const unsigned char *rk = sqlite3_column_text(st, 0);
            size_t len = (size_t)sqlite3_column_bytes(st, 0);
            if (len > PDR_ROUTING_KEY_LEN) len = PDR_ROUTING_KEY_LEN;
            if (rk) memcpy(k->routing_key, rk, len);
            k->routing_key[len] = '\0';
        }
        k->pending = sqlite3_column_int64(st, 1);
        k->dead = sqlite3_column_int64(st, 2);
        k->oldest_pending_ms = sqlite3_column_int64(st, 3);
        k->next_attempt_ms = sqlite3_column_int64(st, 4);
        k->throttled_until_ms = sqlite3_column_int64(st, 5);
        k->throttle_rate = sqlite3_column_int(st, 6);
    }
out:
    sqlite3_reset(st);
    if (rc) {
        free(stats);
        return rc;
    }
    *stats_out = stats;
    *n_out = n;
    return PDR_OK;
}

pdr_rc db_outbox_count(db_handle *db, int64_t *pending_out, int64_t *dead_out)
{
    int64_t pending = 0, dead = 0;
    pdr_rc rc;
    if (!db) return PDR_ERR_INVALID;
    rc = outbox_counts(db, &pending, &dead);
    if (rc) return rc;
    if (pending_out) *pending_out = pending;
    if (dead_out) *dead_out = dead;
    return PDR_OK;
}

pdr_rc db_outbox_counts(db_handle *db, db_counts *out)
{
    if (!db || !out) return PDR_ERR_INVALID;
    memset(out, 0, sizeof *out);
    return db_outbox_counts_row(db, out);
}

/* ---- bounds ------------------------------------------------------------------- */

const char *db_bound_key(db_bound b)
{
    switch (b) {
    case DB_BOUND_MAX_EVENTS: return "max_events";
    case DB_BOUND_MAX_BYTES: return "max_bytes";
    case DB_BOUND_MIN_FREE: return "min_free";
    case DB_BOUND_NONE: break;
    }
    return "";
}

db_bound db_outbox_last_bound(const db_handle *db)
{
    return db ? (db_bound)db->last_bound : DB_BOUND_NONE;
}

db_bound db_outbox_bound_reached(db_handle *db, const db_counts *c)
{
    if (!db || !c) return DB_BOUND_NONE;
    if (c->pending >= db->max_events) return DB_BOUND_MAX_EVENTS;
    if (c->pending_bytes >= db->max_bytes) return DB_BOUND_MAX_BYTES;
    if (db->min_free) {
        int64_t avail = db_free_space(db);
        if (avail >= 0 && avail <= db->min_free) return DB_BOUND_MIN_FREE;
    }
    return DB_BOUND_NONE;
}

static db_free_space_fn free_space_fn;
static void *free_space_ctx;

void db_set_free_space_fn(db_free_space_fn fn, void *ctx)
{
    free_space_fn = fn;
    free_space_ctx = ctx;
}

static int64_t free_space_statvfs(const char *dir)
{
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0) return -1;
    if (sv.f_frsize && sv.f_bavail > (fsblkcnt_t)(INT64_MAX / (int64_t)sv.f_frsize)) return INT64_MAX;
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

/* A statvfs per push would cost a system call per event; once a second is
** enough for a bound meant to leave tens of MB, and the bytes pushed since
** the last read are subtracted so that a burst cannot overshoot it. */
#define DB_FREE_SPACE_REFRESH_MS 1000

/* db_free_space at now (the push's time: one clock read per batch). */
static int64_t outbox_free_space(db_handle *db, int64_t now)
{
    /* the injectable clock; a step backwards reads again */
    if (!db->free_read_ms || now - db->free_read_ms >= DB_FREE_SPACE_REFRESH_MS || now < db->free_read_ms) {
        db->free_read = free_space_fn ? free_space_fn(db->dir, free_space_ctx) : free_space_statvfs(db->dir);
        db->free_spent = 0;
        db->free_read_ms = now ? now : 1;
    }
    if (db->free_read < 0) return -1;
    return db->free_read - db->free_spent;
}

int64_t db_free_space(db_handle *db)
{
    return db ? outbox_free_space(db, pdr_clock_now_ms()) : -1;
}

/* The MIN(dead_ms) of the dead rows, 0 when there are none. */
static pdr_rc outbox_dead_oldest(db_handle *db, int64_t *out)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_OUTBOX_DEAD_OLDEST);
    int src = sqlite3_step(st);
    pdr_rc rc = PDR_OK;
    *out = 0;
    if (src == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    else rc = db_fail(db, src, "reading the oldest dead letter");
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_outbox_trim_dead(db_handle *db, int64_t now_ms, int64_t *by_age, int64_t *by_count,
                           int64_t *next_ms_out)
{
    int64_t oldest = 0, n_age = 0, n_count = 0;
    int64_t cutoff;
    db_counts c;
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    pdr_rc rc;

    if (by_age) *by_age = 0;
    if (by_count) *by_count = 0;
    if (next_ms_out) *next_ms_out = 0;
    if (!db) return PDR_ERR_INVALID;
    cutoff = now_ms - db->max_dead_age_ms;
    /* Nothing past a bound: no write transaction at all. */
    rc = db_outbox_counts_row(db, &c);
    if (!rc) rc = outbox_dead_oldest(db, &oldest);
    if (rc) return rc;
    if (c.dead > db->max_dead || (c.dead && oldest < cutoff)) {
        rc = db_tx_begin(db);
        if (rc) return rc;
        st = db_stmt(db, DB_STMT_OUTBOX_TRIM_DEAD_AGE);
        db_bind_int64(st, "@cutoff", cutoff, &src);
        rc = db_stmt_run_many(db, st, src, &n_age);
        if (!rc) rc = db_outbox_counts_row(db, &c);
        if (!rc && c.dead > db->max_dead) {
            st = db_stmt(db, DB_STMT_OUTBOX_TRIM_DEAD_COUNT);
            db_bind_int64(st, "@excess", c.dead - db->max_dead, &src);
            rc = db_stmt_run_many(db, st, src, &n_count);
        }
        if (!rc) rc = db_tx_commit(db);
        if (rc) {
            db_tx_rollback(db);
            return rc;
        }
        rc = outbox_dead_oldest(db, &oldest);
        if (rc) return rc;
    }
    if (by_age) *by_age = n_age;
    if (by_count) *by_count = n_count;
    if (next_ms_out && oldest) *next_ms_out = oldest + db->max_dead_age_ms;
    return PDR_OK;
}

/* ---- state the sender publishes ------------------------------------------------- */

pdr_rc db_key_throttle_set(db_handle *db, const char *routing_key, int64_t until_ms,
                           int rate_per_minute)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db || !routing_key) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_KEY_THROTTLE_SET);
    db_bind_text(st, "@routing_key", routing_key, &src);
    db_bind_int64(st, "@until", until_ms, &src);
    db_bind_int64(st, "@rate", rate_per_minute, &src);
    return db_stmt_run_many(db, st, src, NULL);
}

pdr_rc db_key_throttle_clear(db_handle *db, const char *routing_key)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db || !routing_key) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_KEY_THROTTLE_CLEAR);
    db_bind_text(st, "@routing_key", routing_key, &src);
    return db_stmt_run_many(db, st, src, NULL);
}

pdr_rc db_link_set(db_handle *db, int state, int64_t since_ms)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db || state < DB_LINK_UP || state > DB_LINK_PROBING) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_LINK_SET);
    db_bind_int64(st, "@state", state, &src);
    db_bind_int64(st, "@since", since_ms, &src);
    return db_stmt_run_one(db, st, src);
}

const char *db_link_state_name(int state)
{
    static const char *const names[] = {"up", "down", "probing"};
    return state >= DB_LINK_UP && state <= DB_LINK_PROBING ? names[state] : "unknown";
}

pdr_rc db_link_get(db_handle *db, int *state, int64_t *since_ms)
{
    sqlite3_stmt *st;
    pdr_rc rc = PDR_OK;
    int src;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_LINK_GET);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (state) *state = sqlite3_column_int(st, 0);
        if (since_ms) *since_ms = sqlite3_column_int64(st, 1);
    } else {
        /* The row is made by the migration: a missing one is damage. */
        rc = db_fail(db, src == SQLITE_DONE ? SQLITE_CORRUPT : src, "reading link_state");
    }
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_upstream_set(db_handle *db, const char *url)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db || !url) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_UPSTREAM_SET);
    db_bind_text(st, "@upstream", url, &src);
    return db_stmt_run_one(db, st, src);
}

pdr_rc db_upstream_get(db_handle *db, char *out, size_t outsz)
{
    sqlite3_stmt *st;
    pdr_rc rc = PDR_OK;
    int src;
    if (!db || !out || !outsz) return PDR_ERR_INVALID;
    out[0] = '\0';
    st = db_stmt(db, DB_STMT_UPSTREAM_GET);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        size_t n = t ? strlen(t) : 0;
        if (n >= outsz) n = outsz - 1;
        if (n) memcpy(out, t, n);
        out[n] = '\0';
    } else {
        rc = db_fail(db, src == SQLITE_DONE ? SQLITE_CORRUPT : src, "reading link_state");
    }
    sqlite3_reset(st);
    return rc;
}
