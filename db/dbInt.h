/*
** dbInt.h — what the files of db/ share and nobody else sees: the db_handle
** structure, the statement ids, and the small helpers (error translation,
** binding by name, transactions, reading rows) that db.c defines for
** outbox.c and dedup.c.
**
** Every helper that takes a statement leaves it reset, whatever happened,
** so the next user finds it ready; a statement is only ever in use between
** db_stmt() and the helper that finishes it.
*/
#ifndef PDR_DB_INT_H
#define PDR_DB_INT_H

#include <sqlite3.h>

#include "db.h"
#include "sql.h"

typedef enum db_stmt_id {
#define DB_STMT_ENUM(name, sql) DB_STMT_##name,
    DB_STATEMENTS(DB_STMT_ENUM)
#undef DB_STMT_ENUM
    DB_STMT_COUNT
} db_stmt_id;

struct db {
    sqlite3 *h;                         /* the connection */
    char *path;                         /* data_dir/pdrelay.db, malloc'd */
    char *dir;                          /* data_dir, malloc'd (statvfs) */
    int64_t max_events;                 /* bound on pending rows */
    int64_t max_bytes;                  /* bound on pending bytes */
    int64_t min_free;                   /* free bytes a push leaves; 0: none */
    int64_t max_dead;                   /* dead rows kept (trim_dead) */
    int64_t max_dead_age_ms;            /* dead rows' age kept (trim_dead) */
    int64_t free_read;                  /* free bytes at the last statvfs; -1 unknown */
    int64_t free_spent;                 /* bytes pushed since that read */
    int64_t free_read_ms;               /* when (pdr_clock_now_ms); 0: never */
    int last_bound;                     /* db_bound of the last refused push */
    int read_only;
    int64_t dedup_ttl_ms;               /* db_options.dedup_ttl_ms (0: none) */
    int open_checked;                   /* 1: step 4 ran the check after an unclean stop */
    int64_t open_check_us;              /* and took this long */
    sqlite3_stmt *stmt[DB_STMT_COUNT];  /* prepared at open, finalized at close */
    char errmsg[256];                   /* the last error, for db_errmsg() */
};

/* snprintf into a message buffer (nothing when buf is NULL or sz 0). */
void db_msg(char *buf, size_t sz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Runs a one-row, one-integer query on h into *v; no row gives no_row
** (the caller says what that means: SQLITE_INTERNAL, SQLITE_CORRUPT). */
int db_query_int64(sqlite3 *h, const char *sql, int64_t *v, int no_row);

/* Translates a SQLite result code (primary or extended) into a pdr_rc. */
pdr_rc db_rc_from_sqlite(int src);

/* Records the connection's current error message (prefixed by what) and
** returns the translation of src. */
pdr_rc db_fail(db_handle *db, int src, const char *what);

/* The prepared statement id (reset, parameters from the last use still
** bound: bind every parameter before stepping). */
sqlite3_stmt *db_stmt(db_handle *db, db_stmt_id id);

/* Binding by parameter name ("@routing_key"). *src accumulates: once it
** holds an error the later binds do nothing, so a caller binds all and
** checks once. An unknown name is SQLITE_RANGE (a bug in sql.h). Text is
** bound SQLITE_STATIC: it must live until the statement is reset. */
void db_bind_text(sqlite3_stmt *st, const char *name, const char *s, int *src);
void db_bind_textn(sqlite3_stmt *st, const char *name, const char *s, size_t n, int *src);
void db_bind_int64(sqlite3_stmt *st, const char *name, int64_t v, int *src);

/* Steps a statement that returns no rows, then resets it. *changes_out (may
** be NULL) gets the number of rows it changed. */
pdr_rc db_stmt_run(db_handle *db, sqlite3_stmt *st, int64_t *changes_out);

/* Runs st (already bound) and collects its rows as db_rows (columns
** DB_ROW_COLUMNS), at most max. Resets st. */
/* Makes room for one more element in *arr (n used of *cap, elem bytes
** each), doubling from first up to max elements. PDR_ERR_NOMEM when it
** cannot; *arr is then unchanged. */
pdr_rc db_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t first, size_t max);

/* Runs a bound write changing any number of rows; *n_out (may be NULL) how
** many. Resets st. */
pdr_rc db_stmt_run_many(db_handle *db, sqlite3_stmt *st, int src, int64_t *n_out);

/* Runs a bound single-row write (src: the binding status); NOT_FOUND when
** it changed nothing. Resets st. */
pdr_rc db_stmt_run_one(db_handle *db, sqlite3_stmt *st, int src);

pdr_rc db_rows_collect(db_handle *db, sqlite3_stmt *st, size_t max,
                       db_row **rows_out, size_t *n_out);

/* Fills row from the current result row of st (columns DB_ROW_COLUMNS).
** PDR_ERR_CORRUPT (with db's errmsg set) for a row a damaged page garbled. */
pdr_rc db_row_read(db_handle *db, sqlite3_stmt *st, db_row *row);

/* ---- the push, for db/bundle.c (outbox.c) ---- */

/* Is ev an event the outbox takes (routing key and body present, a known
** action, a dedup_key within PDR_DEDUP_KEY_MAX_BYTES)? */
int db_outbox_event_valid(const db_event *ev);

/* The counts row, inside or outside a transaction. */
pdr_rc db_outbox_counts_row(db_handle *db, db_counts *c);

/* One valid event pushed inside the caller's write transaction (the logic
** of db_outbox_push_batch: coalescing, the bounds of invariant 4 against
** *c, urgency, head, the dedup record), stored with created_ms and due at
** now. keep_urgency: ev->urgency, when a valid pdr_urgency, is stored as
** it is, even for an acknowledge or resolve (an imported row keeps the
** urgency its first outbox gave it). Returns PDR_OK, PDR_COALESCED,
** PDR_ERR_FULL (db->last_bound says which bound) or a database error; on
** any but the first two the caller rolls back. */
pdr_rc db_outbox_push_in_tx(db_handle *db, const db_event *ev, int64_t now, int64_t created_ms,
                            int keep_urgency, db_counts *c, int64_t *id_out);

#endif /* PDR_DB_INT_H */
