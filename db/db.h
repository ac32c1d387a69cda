/*
** db.h — pdrelay's database: the outbox of events waiting for PagerDuty and
** the dedup table. The only public door to SQLite; no SQL exists outside db/.
**
** The outbox invariants (numbered 1-7; "invariant N" below means one of
** them) and the life of a row are written once, at the top of db/db.c:
** read them there before changing anything. This file does not restate them.
**
** Threading: a db_handle is used by one thread at a time; no function here is
** thread-safe on a shared handle (the daemon's writer and sender threads
** each open their own). Several processes may open the same file (the
** daemon and `pdrelay send`): writers take the lock with BEGIN IMMEDIATE
** and wait up to the busy timeout.
**
** Ownership: db_open() returns a handle closed by db_close() (NULL accepted).
** Rows filled by reads own their strings; release them with
** db_row_cleanup() / db_rows_free().
*/
#ifndef PDR_DB_H
#define PDR_DB_H

#include <stddef.h>
#include <stdint.h>

#include "../agent/pdr.h"

#define DB_SCHEMA_VERSION 3
#define DB_FILE_NAME "pdrelay.db"

typedef struct db db_handle;

/* The bounds when the options give none (the [outbox] defaults). */
#define DB_MAX_EVENTS_DEFAULT 1000000
#define DB_MAX_BYTES_DEFAULT (INT64_C(256) << 20)
#define DB_MAX_DEAD_DEFAULT 10000
#define DB_MAX_DEAD_AGE_DEFAULT_MS (INT64_C(7) * 24 * 3600 * 1000)

typedef struct db_options {
    const char *data_dir;       /* created 0700 if missing (with parents) */
    int sync_full;              /* 1: synchronous=FULL, 0: NORMAL */
    int64_t max_events;         /* bound on pending rows; <= 0: DB_MAX_EVENTS_DEFAULT */
    int64_t max_bytes;          /* bound on the pending bodies' bytes; <= 0:
                                ** DB_MAX_BYTES_DEFAULT */
    int64_t min_free;           /* free bytes a push leaves on data_dir's
                                ** filesystem (db_free_space); 0: no bound */
    int64_t max_dead;           /* dead rows kept by db_outbox_trim_dead; <= 0:
                                ** DB_MAX_DEAD_DEFAULT */
    int64_t max_dead_age_ms;    /* a dead row older (dead_ms) is dropped by
                                ** db_outbox_trim_dead; <= 0: the default */
    int busy_timeout_ms;        /* 0: default 5000 */
    int skip_check;             /* 1: no check at open, even after an unclean
                                ** stop (db.c, OPENING step 4): for the
                                ** daemon's writer and sender, whose file the
                                ** daemon's own open checked */
    int read_only;              /* 1: open read-only (no create, no migration) */
    int64_t dedup_ttl_ms;       /* > 0: a pushed trigger with fingerprint, target
                                ** and dedup_key records its incident in the
                                ** dedup table (DB_DEDUP_QUEUED) for this long;
                                ** 0: the push records no dedup entries */
} db_options;

/* Opens or creates data_dir/pdrelay.db, migrates it to DB_SCHEMA_VERSION.
** On failure returns the reason and, if errbuf is given, a sentence for the
** user naming the file, what is wrong and what to do, e.g.
**   PDR_ERR_CORRUPT  "./var/pdrelay.db is corrupt: ... It was left untouched; ..."
**   PDR_ERR_TOO_NEW  "./var/pdrelay.db has schema version 7, newer than this pdrelay (1) ..."
** It never deletes or recreates an existing file.
** read_only: the file must exist (PDR_ERR_NOT_FOUND if it does not, or if
** it has no schema yet: "no outbox at PATH: nothing has been queued yet, or
** [agent] data_dir points elsewhere"); versions are checked, nothing is
** migrated (a file of an older schema version is refused, PDR_ERR_INVALID:
** "PATH has schema version 1, older than this pdrelay (2) ...: start
** `pdrelay run` once (or queue with `pdrelay send`), which migrates it"; the
** reads of this version do not know the older shapes), and nothing is
** created or written: not the directory, not the
** file, not its -wal or -shm. It works on a file or directory it may not
** write (mode 0444 or 0555, a read-only mount), and while the daemon writes
** (it then reads the daemon's commits through the existing -wal and -shm). */
pdr_rc db_open(const db_options *opt, db_handle **out, char *errbuf, size_t errsz);
void db_close(db_handle *db);

/* 1 when db_open checked the file because the last `pdrelay run` on it did
** not stop cleanly (or its stop is unknown: a file of schema version < 3),
** *us_out (may be NULL) then how long that took in microseconds; 0 when it
** did not (a clean stop, a new file, skip_check). The check reads what a
** crash can break, in a time that does not grow with the backlog (db.c,
** OPENING step 4); db_integrity_check() reads everything. */
int db_open_checked(const db_handle *db, int64_t *us_out);

/* ---- the daemon's run: the clean-stop marker (db.c, invariant 7) ---------- */

/* The daemon's start, once its handle is open and its lock taken (one
** transaction): *was_clean_out gets how the previous run ended, 1 stopped
** cleanly (db_run_end), 0 did not (killed, crashed, a fatal error), -1 no run
** recorded (a new outbox, or one migrated from schema version < 3); then the
** marker is cleared and started_ms set to pdr_clock_now_ms(). */
pdr_rc db_run_begin(db_handle *db, int *was_clean_out);

/* The daemon's clean stop, once its writer and sender have stopped and
** committed: the marker set, stopped_ms = pdr_clock_now_ms(). Never after a
** fatal error: the next open then checks the file. */
pdr_rc db_run_end(db_handle *db);

/* PRAGMA integrity_check over the whole file (`pdrelay queue check`): every
** page, every index entry against its row; O(file size). Works on a
** read-only handle (open it with skip_check, so a damage the open check
** would refuse is reported here, in full), and while the daemon writes.
** problem (may be NULL) is called with each problem SQLite reports, one
** line each, in its words (text from the file may appear in them: escape
** before printing); a page so damaged that the check stops on it is one
** more ("the check stopped: database disk image is malformed"). *n_out
** (may be NULL) gets their number, 0 for a sound file (SQLite stops at 100).
** PDR_OK when the check ran, whatever it found; a failure to run it (an I/O
** error, out of memory) is returned with db_errmsg() set. */
pdr_rc db_integrity_check(db_handle *db, void (*problem)(void *ctx, const char *text), void *ctx,
                          int64_t *n_out);

/* The settings in force on this connection, read back from SQLite (for
** tests and `pdrelay queue status`). synchronous: 1 NORMAL, 2 FULL. */
typedef struct db_settings {
    char journal_mode[16];      /* "wal" once opened read-write */
    int synchronous;
    int busy_timeout_ms;
    int64_t journal_size_limit; /* bytes */
    int user_version;           /* DB_SCHEMA_VERSION once opened */
    int32_t application_id;     /* pdrelay's fixed id */
    int page_size;              /* bytes; a new file's is sql.h's DB_SQL_PAGE_SIZE */
    int wal_autocheckpoint;     /* WAL frames */
} db_settings;

pdr_rc db_settings_get(db_handle *db, db_settings *out);

/* The sizes in bytes of the database file and of its -wal file (0 when
** there is none): what the outbox takes on disk (the -shm file, a 32 KiB
** index of the WAL, is left out). PDR_ERR_IO (errno's translation) when the
** database file cannot be stat'd. */
pdr_rc db_file_sizes(const db_handle *db, int64_t *file_out, int64_t *wal_out);

/* The full path of the database file (owned by db). */
const char *db_path(const db_handle *db);

/* The last SQLite error message of this handle (owned by db). */
const char *db_errmsg(const db_handle *db);

/* ---- transactions ---------------------------------------------------- */

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK, for a caller that groups several
** single-row writes (the sender's outcomes of one pass: delivered,
** reschedule, kill, dedup put/delete) under one fsync. Not for wrapping
** db_outbox_push*, db_outbox_retry_*: they run their own transaction. A
** failed commit rolls back. Rollback is quiet and safe to call when SQLite
** already rolled the transaction back itself (after a FULL or IOERR). */
pdr_rc db_tx_begin(db_handle *db);
pdr_rc db_tx_commit(db_handle *db);
void db_tx_rollback(db_handle *db);

/* Proves the database can be written: one transaction that rewrites a
** header field with its own value (one page to the WAL, one fsync). For
** /readyz after a failed commit; a healthy daemon does not call it. */
pdr_rc db_write_probe(db_handle *db);

/* Proves, at the daemon's start, that the database can be written: runs
** db_write_probe(). On failure returns why, with a sentence for the user in
** errbuf naming the file, the cause and the fix (see db_unwritable_explain):
**   PDR_ERR_PERM      "cannot write ./var/pdrelay.db: permission denied
**                     (EACCES): ... Fix: chown pdrelay ./var/pdrelay.db ..."
**   PDR_ERR_READONLY  "cannot write ./var/pdrelay.db: read-only file system
**                     (EROFS): ... Fix: remount ... read-write ..."
**   other             the probe's failure (disk full, locked, I/O error). */
pdr_rc db_writable_check(db_handle *db, char *errbuf, size_t errsz);

/* One daemon per outbox: takes an exclusive lock (flock) on
** data_dir/pdrelay.lock, held by *fd_out until it is closed (at exit), and
** writes the process id into it. Two daemons on one outbox would both send
** its heads (each event twice) and each pace a key at rate_per_minute.
** PDR_ERR_BUSY when another process holds it (errbuf names its pid). `send`
** and `queue` do not take it: they run beside the daemon. */
#define DB_LOCK_FILE_NAME "pdrelay.lock"
pdr_rc db_daemon_lock(const char *data_dir, int *fd_out, char *errbuf, size_t errsz);

/* The pid of the daemon serving data_dir (`pdrelay queue kick`, `queue
** status`): it holds the lock above with its pid in the file, so a shared
** lock that can be taken means nobody holds it. Returns the pid, 0 when no
** daemon runs there, -1 when that cannot be told (why gets the sentence). */
long db_daemon_pid(const char *data_dir, char *why, size_t whysz);

/* Explains a failure rc met opening or writing the database of data_dir
** for writing. SQLite reports a file it cannot write as SQLITE_READONLY (it
** opened it read-only without a word), SQLITE_CANTOPEN or SQLITE_PERM;
** which file and why is asked of the system as the daemon's user sees it
** (faccessat with the effective ids, statvfs ST_RDONLY), in this order: a
** read-only file system (PDR_ERR_READONLY); the database file, its
** directory (where -wal and -shm are created), or an existing -wal or
** -shm not writable (PDR_ERR_PERM). Then errbuf gets the sentence and that
** code is returned. When none of these explains it (or rc is not one of
** PDR_ERR_READONLY, PDR_ERR_PERM, PDR_ERR_IO), returns rc and leaves
** errbuf alone. */
pdr_rc db_unwritable_explain(const char *data_dir, pdr_rc rc, char *errbuf, size_t errsz);

/* ---- outbox ---------------------------------------------------------- */

typedef enum db_row_state {
    DB_ROW_PENDING = 0,
    DB_ROW_DEAD = 1
} db_row_state;

/* An event to push. All strings are borrowed for the call. New members go
** at the end: callers initialise it positionally. */
typedef struct db_event {
    const char *routing_key;    /* 32 chars */
    pdr_action action;
    const char *dedup_key;      /* NULL for change events */
    const char *fingerprint;    /* optional: the source's alert identity, for the dedup table */
    const char *body;           /* the JSON to POST upstream */
    size_t body_len;
    /* pdr_urgency (agent/pdr.h). A trigger or change event: the caller's
    ** value, 0 (critical) included; out of PDR_URGENCY_CRITICAL ..
    ** PDR_URGENCY_CHANGE: PDR_URGENCY_WARNING for a trigger,
    ** PDR_URGENCY_CHANGE for a change event. An acknowledge or resolve
    ** always inherits (pass PDR_URGENCY_INHERIT; the value is not read):
    ** the urgency of the newest pending row of its (routing_key,
    ** dedup_key), else of the live dedup entry of that routing_key and
    ** dedup_key, else PDR_URGENCY_WARNING. */
    int urgency;
    const char *target;         /* the [target] name it was routed by; may be NULL */
    int64_t event_ms;           /* when it happened, as the source said; 0 = unknown */
} db_event;

/* Pushes one event in its own transaction.
**   PDR_OK         stored (*id_out = its id, if id_out); with dedup_ttl_ms
**                  set, a trigger with fingerprint, target and dedup_key
**                  also records its incident in the same transaction: a new
**                  dedup entry (routing_key, fingerprint) -> dedup_key,
**                  target, urgency, DB_DEDUP_QUEUED, expiring now +
**                  dedup_ttl_ms; an existing one only gets its target,
**                  urgency and expiry refreshed (its dedup_key and state
**                  stay). So a key rotation during an outage finds the
**                  incident (db_dedup_route).
**   PDR_COALESCED  the newest pending row of the same routing key and
**                  dedup_key has the same action and body: nothing stored
**                  (*id_out = that row's id)
**   PDR_ERR_FULL   a bound refused it (invariant 4; db_outbox_last_bound()
**                  says which): nothing stored
**   other          database error */
pdr_rc db_outbox_push(db_handle *db, const db_event *ev, int64_t *id_out);

/* Pushes n events in one transaction (one fsync). results[i] gets each
** event's PDR_OK / PDR_COALESCED / PDR_ERR_FULL (or PDR_ERR_INVALID for an
** event without routing key or body, with an unknown action or a dedup_key
** over PDR_DEDUP_KEY_MAX_BYTES: nothing stored for it) and ids[i] its id (ids may
** be NULL). Returns PDR_OK when the transaction committed (whatever the
** per-event results), or the database error that rolled all of it back. */
pdr_rc db_outbox_push_batch(db_handle *db, const db_event *evs, size_t n,
                            pdr_rc *results, int64_t *ids);

/* A row as read back. Owns its strings. */
typedef struct db_row {
    int64_t id;
    char *routing_key;
    pdr_action action;
    char *dedup_key;            /* NULL for change events */
    char *fingerprint;          /* NULL when none */
    char *body;
    size_t body_len;
    int64_t created_ms;
    int64_t attempts;
    int64_t next_ms;            /* next attempt time */
    char *last_error;           /* NULL when none */
    db_row_state state;
    int64_t dead_ms;            /* when it became dead; 0 when pending */
    int urgency;                /* pdr_urgency, as stored at push */
    char *target;               /* NULL when none */
    int64_t event_ms;           /* 0 = unknown */
} db_row;

void db_row_cleanup(db_row *row);
void db_rows_free(db_row *rows, size_t n);

/* A key's NEXT row (db.c, invariant 3): among the pending heads of the key
** (the oldest pending row of each dedup_key), the one of lowest urgency,
** then lowest id. Every read below finds it with index seeks
** (outbox_sched), never by scanning the backlog.
**
** The due rows: for each routing key, its next row, if that row's next_ms
** <= now_ms (a next row not yet due holds back its key). At most max rows,
** by urgency, then next_ms, then id. *rows_out is a malloc'd array (free
** with db_rows_free), *n_out its length. */
pdr_rc db_outbox_due(db_handle *db, int64_t now_ms, size_t max, db_row **rows_out, size_t *n_out);

/* The next row of routing_key (due or not). PDR_ERR_NOT_FOUND if the key
** has no pending row. */
pdr_rc db_outbox_head(db_handle *db, const char *routing_key, db_row *row_out);

/* The earliest next_ms among all keys' next rows, or PDR_ERR_NOT_FOUND when
** nothing is pending. The sender sleeps until then. */
pdr_rc db_outbox_next_due_ms(db_handle *db, int64_t *ms_out);

/* The earliest next_ms among the keys' next rows whose next_ms > after_ms,
** or PDR_ERR_NOT_FOUND. The sender asks with after_ms = now: rows already
** due are either in flight or waiting for a token, and wake it otherwise. */
pdr_rc db_outbox_next_due_after(db_handle *db, int64_t after_ms, int64_t *ms_out);

/* The uplink is back: makes due now (next_ms = now_ms) every pending head
** (the oldest pending row of each dedup_key: the candidates for each key's
** next row) whose next_ms > now_ms, except for the keys throttled beyond
** now_ms (key_state, db_key_throttle_set). *n_out (may be NULL) how many
** rows. Reads the heads through outbox_sched, never the rows behind them. */
pdr_rc db_outbox_wake_heads(db_handle *db, int64_t now_ms, int64_t *n_out);

/* The first pending RESOLVE of (routing_key, dedup_key) with id > after_id:
** its id and event_ms (either out pointer may be NULL). PDR_ERR_NOT_FOUND
** if there is none. Reads the range of that group only (outbox_coalesce).
** dedup_key NULL: the change events of the key (which have no resolve). */
pdr_rc db_outbox_find_resolve(db_handle *db, const char *routing_key, const char *dedup_key,
                              int64_t after_id, int64_t *id_out, int64_t *event_ms_out);

/* Collapse (invariant 2; only at the sender's order, under [outbox]
** resolved_while_queued = collapse): deletes every pending row of
** (routing_key, dedup_key) with id <= upto_id, e.g. a trigger that resolved
** while queued and any acknowledge between (upto_id: the row before the
** resolve keeps the resolve; the resolve's own id removes it too). The next
** pending row of the group becomes its head. *n_out (may be NULL) how many
** rows were deleted (0 is not an error). */
pdr_rc db_outbox_collapse(db_handle *db, const char *routing_key, const char *dedup_key,
                          int64_t upto_id, int64_t *n_out);

/* created_ms of the oldest pending row (for the oldest-age metric), or
** PDR_ERR_NOT_FOUND when nothing is pending. */
pdr_rc db_outbox_oldest_ms(db_handle *db, int64_t *ms_out);

/* Delivered: deletes pending row id. PDR_ERR_NOT_FOUND if there is none. */
pdr_rc db_outbox_delivered(db_handle *db, int64_t id);

/* Transient failure: attempts += 1, next_ms, last_error (may be NULL). */
pdr_rc db_outbox_reschedule(db_handle *db, int64_t id, int64_t next_ms, const char *error);

/* Makes every pending row whose next_ms is after limit_ms due now; *n_out
** (may be NULL) how many. For a wall clock that stepped backwards: no
** backoff is ever longer than the sender's limit, so a later next_ms can
** only come from a clock that has since moved back. */
pdr_rc db_outbox_clamp_next(db_handle *db, int64_t limit_ms, int64_t *n_out);

/* Permanent failure: PagerDuty refused the pending row, which becomes dead
** with the error text; attempts += 1 (the refused attempt counts, so a dead
** letter shows every attempt that reached upstream). */
pdr_rc db_outbox_kill(db_handle *db, int64_t id, const char *error);

/* max_age exceeded: the pending row becomes dead with the error text,
** attempts unchanged (no attempt was made). */
pdr_rc db_outbox_expire(db_handle *db, int64_t id, const char *error);

/* Kills every pending row created before cutoff_ms (max_age); *n_out how
** many. error is stored as their last_error. */
pdr_rc db_outbox_kill_older(db_handle *db, int64_t cutoff_ms, const char *error, int64_t *n_out);

/* Retry dead letters: they become pending again, due now, attempts 0, at
** the back of their key's queue in their original relative order (new ids).
** _all: every dead row; _key: those of routing_key; _id: one row
** (PDR_ERR_NOT_FOUND if id is not a dead row). *n_out = rows retried. */
pdr_rc db_outbox_retry_all(db_handle *db, int64_t *n_out);
pdr_rc db_outbox_retry_key(db_handle *db, const char *routing_key, int64_t *n_out);
pdr_rc db_outbox_retry_id(db_handle *db, int64_t id);

/* Purge dead letters that died before cutoff_ms (INT64_MAX: all). */
pdr_rc db_outbox_purge_dead(db_handle *db, int64_t cutoff_ms, int64_t *n_out);

/* Lists rows of one state, oldest first, optionally of one key (NULL: all),
** at most limit (0: no limit). */
pdr_rc db_outbox_list(db_handle *db, db_row_state state, const char *routing_key,
                      size_t limit, db_row **rows_out, size_t *n_out);

/* Reads one row by id (any state). */
pdr_rc db_outbox_get(db_handle *db, int64_t id, db_row *row_out);

/* Per routing key figures, for `pdrelay queue status` and metrics. */
typedef struct db_key_stats {
    char routing_key[PDR_ROUTING_KEY_LEN + 1];  /* may be shorter if a stored key is odd */
    int64_t pending;
    int64_t dead;
    int64_t oldest_pending_ms;  /* created_ms of the oldest pending row; 0 when none */
    int64_t next_attempt_ms;    /* next_ms of the key's next row; 0 when none pending */
    int64_t throttled_until_ms; /* key_state (db_key_throttle_set); 0 when none */
    int throttle_rate;          /* its rate_per_minute; 0 when none */
} db_key_stats;

/* One entry per routing key having rows, ordered by key. malloc'd array. */
pdr_rc db_outbox_stats(db_handle *db, db_key_stats **stats_out, size_t *n_out);

/* Total rows (pending + dead), O(1). */
pdr_rc db_outbox_count(db_handle *db, int64_t *pending_out, int64_t *dead_out);

/* The counts row, O(1): rows and the bytes of their bodies, by state. */
typedef struct db_counts {
    int64_t pending;
    int64_t dead;
    int64_t pending_bytes;      /* sum of the pending bodies' sizes in bytes */
    int64_t dead_bytes;         /* the same for the dead letters */
} db_counts;

pdr_rc db_outbox_counts(db_handle *db, db_counts *out);

/* ---- bounds (invariant 4) --------------------------------------------- */

/* The bounds a push is refused by (PDR_ERR_FULL), in the order they are
** checked. Values are shown in metrics: never renumber. */
typedef enum db_bound {
    DB_BOUND_NONE = 0,
    DB_BOUND_MAX_EVENTS = 1,    /* pending rows reached max_events */
    DB_BOUND_MAX_BYTES = 2,     /* the event would take the pending bodies past max_bytes */
    DB_BOUND_MIN_FREE = 3       /* the event would leave less than min_free on the filesystem */
} db_bound;
#define DB_BOUND_COUNT 4

/* The [outbox] key of a bound ("max_events", "max_bytes", "min_free"); "" for NONE. */
const char *db_bound_key(db_bound b);

/* The bound that refused the last PDR_ERR_FULL event of the last
** db_outbox_push_batch() on this handle; DB_BOUND_NONE when none was refused. */
db_bound db_outbox_last_bound(const db_handle *db);

/* Is the outbox full now, for /readyz: the first bound reached by what is
** stored (pending >= max_events, pending_bytes >= max_bytes, free space <=
** min_free), else DB_BOUND_NONE. c: the counts just read. */
db_bound db_outbox_bound_reached(db_handle *db, const db_counts *c);

/* Free bytes for us on data_dir's filesystem (statvfs f_bavail x f_frsize),
** read at most once a second (pdr_clock_now_ms) and, in between, less the
** bytes pushed since; -1 when it cannot be known (the bound then holds
** nobody back). */
int64_t db_free_space(db_handle *db);

/* Tests: where free space is read from (NULL: statvfs), process-wide. fn
** returns bytes available on dir's filesystem, or -1. */
typedef int64_t (*db_free_space_fn)(const char *dir, void *ctx);
void db_set_free_space_fn(db_free_space_fn fn, void *ctx);

/* Drops the oldest dead letters past the bounds: every one that died before
** now_ms - max_dead_age, then the oldest (dead_ms, id) while more than
** max_dead remain; one transaction. Writes nothing when nothing is past a
** bound (one O(1) read and one index seek). *by_age and *by_count (may be
** NULL) get how many each dropped; *next_ms_out (may be NULL) when the
** oldest remaining dead letter reaches max_dead_age (0: none is left). */
pdr_rc db_outbox_trim_dead(db_handle *db, int64_t now_ms, int64_t *by_age, int64_t *by_count,
                           int64_t *next_ms_out);

/* ---- dedup table ----------------------------------------------------- */

typedef enum db_dedup_state {
    DB_DEDUP_TRIGGERED = 1,
    DB_DEDUP_ACKNOWLEDGED = 2,
    DB_DEDUP_RESOLVED = 3,
    DB_DEDUP_QUEUED = 4         /* pushed, not yet delivered (db_outbox_push) */
} db_dedup_state;

/* The longest [target] name an entry returns whole (a longer one is cut). */
#define DB_TARGET_MAX_BYTES 255

typedef struct db_dedup_entry {
    char dedup_key[PDR_DEDUP_KEY_MAX_BYTES + 1];
    db_dedup_state state;
    int64_t updated_ms;
    int64_t expires_ms;
    int urgency;                /* pdr_urgency of the incident */
    char target[DB_TARGET_MAX_BYTES + 1];   /* "" when none */
    char routing_key[PDR_ROUTING_KEY_LEN + 1];
} db_dedup_entry;

/* Inserts or replaces (routing_key, fingerprint) → dedup_key with state
** (DB_DEDUP_TRIGGERED .. DB_DEDUP_QUEUED), updated = now, expires = now +
** ttl_ms. target: NULL keeps the stored one (none for a new entry);
** urgency: -1 keeps the stored one (PDR_URGENCY_WARNING for a new entry),
** else PDR_URGENCY_CRITICAL .. PDR_URGENCY_CHANGE. */
pdr_rc db_dedup_put(db_handle *db, const char *routing_key, const char *fingerprint,
                    const char *dedup_key, db_dedup_state state, int64_t ttl_ms,
                    const char *target, int urgency);

/* Finds a live entry; PDR_ERR_NOT_FOUND if none or expired (now >= expires). */
pdr_rc db_dedup_get(db_handle *db, const char *routing_key, const char *fingerprint,
                    db_dedup_entry *out);

/* The live entry of (routing_key, dedup_key), the most recently updated if
** several fingerprints share it (index dedup_by_key); PDR_ERR_NOT_FOUND if
** none. */
pdr_rc db_dedup_get_by_key(db_handle *db, const char *routing_key, const char *dedup_key,
                           db_dedup_entry *out);

/* Routing at ingest: the live entry of target and fingerprint, whatever its
** routing key (the most recently updated if several), so that an incident
** keeps the routing key that triggered it after a key rotation. Copies its
** routing key into routing_key_out (PDR_ROUTING_KEY_LEN + 1 bytes) and its
** dedup_key into dedup_key_out (PDR_DEDUP_KEY_MAX_BYTES + 1 bytes); either
** may be NULL. PDR_ERR_NOT_FOUND if none. Index: dedup_target. */
pdr_rc db_dedup_route(db_handle *db, const char *target, const char *fingerprint,
                      char *routing_key_out, char *dedup_key_out);

/* PDR_ERR_NOT_FOUND if there was no such entry. */
pdr_rc db_dedup_delete(db_handle *db, const char *routing_key, const char *fingerprint);

/* Deletes expired entries; *n_out how many (may be NULL). */
pdr_rc db_dedup_purge_expired(db_handle *db, int64_t *n_out);

/* Number of entries (expired or not). */
pdr_rc db_dedup_count(db_handle *db, int64_t *n_out);

/* ---- state the sender publishes ------------------------------------------ */

/* A 429 throttles routing_key until until_ms at rate_per_minute (insert or
** replace); `pdrelay queue status` shows it (db_key_stats) and
** db_outbox_wake_heads() leaves the key alone until then. */
pdr_rc db_key_throttle_set(db_handle *db, const char *routing_key, int64_t until_ms,
                           int rate_per_minute);
/* Forgets the key's throttle; PDR_OK whether or not there was one. */
pdr_rc db_key_throttle_clear(db_handle *db, const char *routing_key);

/* The uplink state: 0 up, 1 down, 2 probing (DB_LINK_*), since since_ms. A
** new database says up since 0. */
#define DB_LINK_UP 0
#define DB_LINK_DOWN 1
#define DB_LINK_PROBING 2
pdr_rc db_link_set(db_handle *db, int state, int64_t since_ms);
pdr_rc db_link_get(db_handle *db, int *state, int64_t *since_ms);
/* "up", "down", "probing" for a DB_LINK_* state; "unknown" for others. */
const char *db_link_state_name(int state);

/* ---- bundles: events carried by hand (db/bundle.c) ------------------------ */

/* A bundle is a file of pending events exported from one outbox and
** imported into another (`pdrelay queue export` and `import`): a SQLite
** database of its own, with its own application_id (DB_BUNDLE_APPLICATION_ID,
** so that neither is taken for the other) and its own schema versions
** (bundle_sql.h); its format is described at the top of db/bundle.c. */
#define DB_BUNDLE_SCHEMA_VERSION 2

/* The longest site name a db_bundle_info holds whole. */
#define DB_BUNDLE_SITE_MAX 255

/* A bundle's manifest. */
typedef struct db_bundle_info {
    int version;                        /* the file's bundle schema version */
    char bundle_id[33];                 /* 32 random hex digits */
    char origin[33];                    /* the exporting outbox's identity */
    char site[DB_BUNDLE_SITE_MAX + 1];  /* [agent] source there; "" when none
                                        ** (version 1 has no site) */
    int64_t created_ms;
    int64_t count;                      /* events */
    char sha256[PDR_SHA256_HEX_LEN];    /* of the rows, canonical (bundle.c) */
} db_bundle_info;

typedef struct db_export_opts {
    const char *path;           /* the bundle to write; must not exist */
    const char *routing_key;    /* only this key's events; NULL: all */
    int64_t since_ms;           /* only events created at or after; INT64_MIN: all */
    const char *site;           /* recorded in the manifest; may be NULL */
    int remove;                 /* delete the exported events from the outbox */
    int schema_version;         /* 0: DB_BUNDLE_SCHEMA_VERSION; tests write an
                                ** older shape with 1 */
} db_export_opts;

/* Exports the pending events o selects, in id order, to a new bundle at
** o->path: written to o->path ".tmp" (a leftover one is replaced),
** committed and fsync'd, read back and its checksum verified, renamed to
** o->path, its directory fsync'd; only then, with o->remove, are the same
** events deleted from the outbox, in the transaction that selected them
** (BEGIN IMMEDIATE: the daemon's sender cannot deliver or change them
** meanwhile; it waits on the busy timeout). A crash at any point leaves
** every selected event in the outbox, or in a complete bundle, or both.
** info (may be NULL) gets the manifest. No event selected: PDR_OK with
** info->count 0 and no file written. o->path existing: PDR_ERR_INVALID,
** nothing written. errbuf gets a sentence for the user on failure. */
pdr_rc db_bundle_export(db_handle *db, const db_export_opts *o, db_bundle_info *info,
                        char *errbuf, size_t errsz);

/* Reads the manifest of the bundle at path and checks it: the file is a
** bundle (PDR_ERR_CORRUPT otherwise: not SQLite, a pdrelay outbox, another
** application's database), of a schema version this pdrelay reads
** (PDR_ERR_TOO_NEW), whose rows hash to the manifest's sha256 and number
** its count (PDR_ERR_CORRUPT: "checksum mismatch: the manifest says X, the
** rows hash to Y"). Opens it read-only; writes nothing. */
pdr_rc db_bundle_verify(const char *path, db_bundle_info *info, char *errbuf, size_t errsz);

typedef struct db_import_result {
    db_bundle_info info;        /* the bundle's manifest */
    int64_t imported;           /* events queued */
    int64_t present;            /* events skipped: imported before (from any
                                ** bundle), still in this outbox (a bundle of
                                ** its own), or identical to the newest pending
                                ** event of their group (coalesced) */
    int already;                /* this bundle was imported before: nothing done */
    int64_t imported_ms;        /* when it was, if already */
} db_import_result;

/* Imports the bundle at path: db_bundle_verify(), then one transaction on
** the outbox that queues its events in their order, each pushed as
** db_outbox_push_batch() would (coalescing, head, dedup record, the bounds
** of invariant 4), keeping its created_ms, event_ms and urgency, and due
** now; it records the bundle's id and each row's (origin, row_id) (db.c,
** invariant 8), so that the same bundle, or a row carried twice, is queued
** once. A bound that refuses an event rolls all of it back: PDR_ERR_FULL
** (db_outbox_last_bound() says which). errbuf gets a sentence on failure. */
pdr_rc db_bundle_import(db_handle *db, const char *path, db_import_result *res,
                        char *errbuf, size_t errsz);

/* The [pagerduty] url requests go to now (agent/upstream.h), credentials
** redacted: set by the sender at its start and at each failover and
** failback, shown by `pdrelay queue status`. Get: "" before any was set;
** cut to outsz - 1 bytes. */
pdr_rc db_upstream_set(db_handle *db, const char *url);
pdr_rc db_upstream_get(db_handle *db, char *out, size_t outsz);

/* ---- tests -------------------------------------------------------------- */

/* The query plan (EXPLAIN QUERY PLAN) of the prepared statement named
** stmt_name (its name in db/sql.h DB_STATEMENTS, e.g. "OUTBOX_DUE"): one
** line per step, "detail" text as SQLite gives it, each line indented two
** spaces per level. PDR_ERR_NOT_FOUND for an unknown name; PDR_ERR_FULL if
** out (outsz bytes) is too small (out then holds the plan cut short). */
pdr_rc db_explain(db_handle *db, const char *stmt_name, char *out, size_t outsz);

#endif /* PDR_DB_H */
