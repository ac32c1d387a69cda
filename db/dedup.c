/*
** dedup.c — the dedup table: (routing key, source fingerprint) → the
** dedup_key PagerDuty knows the incident by, its last state, and an expiry.
**
** An entry also records the incident's [target] and urgency: the push of a
** trigger writes it at once (state DB_DEDUP_QUEUED, outbox.c), so that an
** ingest after a key rotation routes the incident by its old key
** (db_dedup_route) and an acknowledge or resolve inherits its urgency.
**
** An entry is live while now < expires_ms; a lookup never returns an
** expired entry even before db_dedup_purge_expired() removed it, so the
** periodic purge only reclaims space and never changes an answer. Losing the
** table is harmless: dedup keys are derived deterministically (pdr.h), the
** table only remembers keys a source chose itself and the incident state.
*/
#include "dbInt.h"

#include <string.h>

#include "clock.h"

pdr_rc db_dedup_put(db_handle *db, const char *routing_key, const char *fingerprint,
                    const char *dedup_key, db_dedup_state state, int64_t ttl_ms,
                    const char *target, int urgency)
{
    sqlite3_stmt *st;
    int64_t now, expires;
    int src = SQLITE_OK;

    if (!db || !routing_key || !fingerprint || !dedup_key) return PDR_ERR_INVALID;
    if (strlen(dedup_key) > PDR_DEDUP_KEY_MAX_BYTES) return PDR_ERR_INVALID;
    if (state < DB_DEDUP_TRIGGERED || state > DB_DEDUP_QUEUED || ttl_ms < 0)
        return PDR_ERR_INVALID;
    if (urgency != -1 && (urgency < PDR_URGENCY_CRITICAL || urgency > PDR_URGENCY_CHANGE))
        return PDR_ERR_INVALID;
    now = pdr_clock_now_ms();
    expires = ttl_ms > INT64_MAX - now ? INT64_MAX : now + ttl_ms;

    st = db_stmt(db, DB_STMT_DEDUP_PUT);
    db_bind_text(st, "@routing_key", routing_key, &src);
    db_bind_text(st, "@fingerprint", fingerprint, &src);
    db_bind_text(st, "@dedup_key", dedup_key, &src);
    db_bind_int64(st, "@state", state, &src);
    db_bind_int64(st, "@now", now, &src);
    db_bind_int64(st, "@expires", expires, &src);
    db_bind_text(st, "@target", target, &src);
    if (urgency == -1)
        db_bind_text(st, "@urgency", NULL, &src);   /* NULL: keep */
    else
        db_bind_int64(st, "@urgency", urgency, &src);
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    return db_stmt_run(db, st, NULL);
}

/* Copies text column i of st into out (outsz bytes, cut if longer). */
static void dedup_col_copy(sqlite3_stmt *st, int i, char *out, size_t outsz)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    size_t len = v ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (len > outsz - 1) len = outsz - 1;
    if (v) memcpy(out, v, len);
    out[len] = '\0';
}

/* Steps st (bound; columns of DEDUP_GET) for one entry into out. Resets st. */
static pdr_rc dedup_entry_read(db_handle *db, sqlite3_stmt *st, db_dedup_entry *out)
{
    pdr_rc rc = PDR_OK;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        dedup_col_copy(st, 0, out->dedup_key, sizeof out->dedup_key);
        out->state = (db_dedup_state)sqlite3_column_int(st, 1);
        out->updated_ms = sqlite3_column_int64(st, 2);
        out->expires_ms = sqlite3_column_int64(st, 3);
        out->urgency = sqlite3_column_int(st, 4);
        dedup_col_copy(st, 5, out->target, sizeof out->target);
        dedup_col_copy(st, 6, out->routing_key, sizeof out->routing_key);
    } else if (src == SQLITE_DONE) {
        rc = PDR_ERR_NOT_FOUND;
    } else {
        rc = db_fail(db, src, NULL);
    }
    sqlite3_reset(st);
    return rc;
}

/* The live entry of routing_key and one more column (name = value) by
** statement which: db_dedup_get and db_dedup_get_by_key. */
static pdr_rc dedup_lookup(db_handle *db, int which, const char *routing_key, const char *name, const char *value,
                           db_dedup_entry *out)
{
    sqlite3_stmt *st;
    pdr_rc rc;
    int src = SQLITE_OK;

    if (!db || !routing_key || !value || !out) return PDR_ERR_INVALID;
    st = db_stmt(db, which);
    db_bind_text(st, "@routing_key", routing_key, &src);
    db_bind_text(st, name, value, &src);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    if (src) {
        rc = db_fail(db, src, "binding");
        sqlite3_reset(st);
        return rc;
    }
    return dedup_entry_read(db, st, out);
}

pdr_rc db_dedup_get(db_handle *db, const char *routing_key, const char *fingerprint,
                    db_dedup_entry *out)
{
    return dedup_lookup(db, DB_STMT_DEDUP_GET, routing_key, "@fingerprint", fingerprint, out);
}

pdr_rc db_dedup_get_by_key(db_handle *db, const char *routing_key, const char *dedup_key,
                           db_dedup_entry *out)
{
    return dedup_lookup(db, DB_STMT_DEDUP_GET_BY_KEY, routing_key, "@dedup_key", dedup_key, out);
}

pdr_rc db_dedup_route(db_handle *db, const char *target, const char *fingerprint,
                      char *routing_key_out, char *dedup_key_out)
{
    sqlite3_stmt *st;
    pdr_rc rc = PDR_OK;
    int src = SQLITE_OK;

    if (!db || !target || !fingerprint) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_DEDUP_ROUTE);
    db_bind_text(st, "@target", target, &src);
    db_bind_text(st, "@fingerprint", fingerprint, &src);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    if (src) {
        rc = db_fail(db, src, "binding");
        goto out;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (routing_key_out) dedup_col_copy(st, 0, routing_key_out, PDR_ROUTING_KEY_LEN + 1);
        if (dedup_key_out) dedup_col_copy(st, 1, dedup_key_out, PDR_DEDUP_KEY_MAX_BYTES + 1);
    } else if (src == SQLITE_DONE) {
        rc = PDR_ERR_NOT_FOUND;
    } else {
        rc = db_fail(db, src, NULL);
    }
out:
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_dedup_delete(db_handle *db, const char *routing_key, const char *fingerprint)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;

    if (!db || !routing_key || !fingerprint) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_DEDUP_DELETE);
    db_bind_text(st, "@routing_key", routing_key, &src);
    db_bind_text(st, "@fingerprint", fingerprint, &src);
    return db_stmt_run_one(db, st, src);
}

pdr_rc db_dedup_purge_expired(db_handle *db, int64_t *n_out)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;

    if (n_out) *n_out = 0;
    if (!db) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_DEDUP_PURGE);
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    return db_stmt_run_many(db, st, src, n_out);
}

pdr_rc db_dedup_count(db_handle *db, int64_t *n_out)
{
    sqlite3_stmt *st;
    pdr_rc rc = PDR_OK;
    int src;

    if (!db || !n_out) return PDR_ERR_INVALID;
    st = db_stmt(db, DB_STMT_DEDUP_COUNT);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *n_out = sqlite3_column_int64(st, 0);
    else
        rc = db_fail(db, src == SQLITE_DONE ? SQLITE_INTERNAL : src, NULL);
    sqlite3_reset(st);
    return rc;
}
