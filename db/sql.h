/*
** sql.h — every SQL statement of pdrelay, and nothing else.
**
** Three kinds of text live here:
**   1. DB_MIGRATIONS: the schema, one script per version. Script N takes a
**      database at user_version N-1 to N; db.c runs them in one BEGIN
**      IMMEDIATE transaction and then sets user_version. A released script
**      is never edited: a change to the schema is a new script.
**   2. DB_SQL_*: statements run once while opening (pragmas, header checks).
**   3. DB_STATEMENTS: the named statements prepared once at open (X-macro:
**      X(NAME, SQL) becomes db->stmt[DB_STMT_NAME]). Parameters are named
**      (@routing_key) and bound by name, so a statement can be reordered
**      without touching its callers.
**
** Which index serves which statement is noted next to it; a change that
** loses an index turns an O(log n) statement into a scan of the outbox.
*/
#ifndef PDR_DB_SQL_H
#define PDR_DB_SQL_H

/* "PDRL": PRAGMA application_id of every pdrelay database (bytes 68..71 of
** the file header), so `file(1)` and pdrelay can tell our files apart. */
#define DB_APPLICATION_ID 0x5044524C
_Static_assert(DB_APPLICATION_ID == 1346654796, "WRITE_PROBE repeats this number");

/* ---- 1. schema ---------------------------------------------------------- */

/*
** Version 1.
**
** outbox     one row per event. state 0 = pending, 1 = dead (db_row_state).
**            AUTOINCREMENT so that an id is never reused: ids are shown to
**            operators (`pdrelay queue list`) and a retried dead letter must
**            get an id larger than any the key ever had.
** outbox_head      (routing_key, id) of pending rows: each key's head is the
**                  first entry of its range; the distinct keys are found by
**                  a skip-scan over it (DB_STMT_OUTBOX_DUE).
** outbox_coalesce  (routing_key, dedup_key, id) of pending rows: the newest
**                  pending row of a (key, dedup_key) is the last entry of
**                  its range (coalescing at push).
** outbox_dead      (routing_key, id) of dead rows: dead letters are listed,
**                  retried and purged without scanning pending rows. Costs
**                  nothing at push (a new row is pending).
** outbox_age       created_ms of pending rows, for max_age (kill_older).
** counts           the single row (pending, dead), kept by the triggers, so
**                  that counting is O(1) and right for every process that
**                  writes the file (daemon and `pdrelay send`).
** dedup            (routing_key, fingerprint) -> dedup_key with an expiry;
**                  WITHOUT ROWID: the primary key is the only lookup path.
*/
#define DB_SQL_MIGRATION_V1 \
    "CREATE TABLE outbox(" \
    " id INTEGER PRIMARY KEY AUTOINCREMENT," \
    " routing_key TEXT NOT NULL," \
    " action INTEGER NOT NULL," \
    " dedup_key TEXT," \
    " fingerprint TEXT," \
    " body TEXT NOT NULL," \
    " created_ms INTEGER NOT NULL," \
    " attempts INTEGER NOT NULL DEFAULT 0," \
    " next_ms INTEGER NOT NULL," \
    " last_error TEXT," \
    " state INTEGER NOT NULL DEFAULT 0 CHECK(state IN (0,1))," \
    " dead_ms INTEGER NOT NULL DEFAULT 0);" \
    "CREATE INDEX outbox_head ON outbox(routing_key, id) WHERE state=0;" \
    "CREATE INDEX outbox_coalesce ON outbox(routing_key, dedup_key, id) WHERE state=0;" \
    "CREATE INDEX outbox_dead ON outbox(routing_key, id) WHERE state=1;" \
    "CREATE INDEX outbox_age ON outbox(created_ms) WHERE state=0;" \
    "CREATE TABLE counts(" \
    " one INTEGER PRIMARY KEY CHECK(one=1)," \
    " pending INTEGER NOT NULL," \
    " dead INTEGER NOT NULL);" \
    "INSERT INTO counts(one, pending, dead) VALUES(1, 0, 0);" \
    "CREATE TRIGGER outbox_count_insert AFTER INSERT ON outbox BEGIN" \
    " UPDATE counts SET pending=pending+(NEW.state=0), dead=dead+(NEW.state=1)" \
    "  WHERE one=1;" \
    " END;" \
    "CREATE TRIGGER outbox_count_delete AFTER DELETE ON outbox BEGIN" \
    " UPDATE counts SET pending=pending-(OLD.state=0), dead=dead-(OLD.state=1)" \
    "  WHERE one=1;" \
    " END;" \
    "CREATE TRIGGER outbox_count_state AFTER UPDATE OF state ON outbox" \
    " WHEN OLD.state<>NEW.state BEGIN" \
    " UPDATE counts SET pending=pending-(OLD.state=0)+(NEW.state=0)," \
    "  dead=dead-(OLD.state=1)+(NEW.state=1) WHERE one=1;" \
    " END;" \
    "CREATE TABLE dedup(" \
    " routing_key TEXT NOT NULL," \
    " fingerprint TEXT NOT NULL," \
    " dedup_key TEXT NOT NULL," \
    " state INTEGER NOT NULL," \
    " updated_ms INTEGER NOT NULL," \
    " expires_ms INTEGER NOT NULL," \
    " PRIMARY KEY(routing_key, fingerprint)) WITHOUT ROWID;" \
    "CREATE INDEX dedup_expires ON dedup(expires_ms);"

/* X(version, script): script `version` migrates version-1 to version.
** Keep them in order and without gaps; the last one is DB_SCHEMA_VERSION. */
#define DB_MIGRATIONS(X) \
    X(1, DB_SQL_MIGRATION_V1)

/* ---- 2. statements run while opening ---------------------------------------- */

#define DB_SQL_APPLICATION_ID      "PRAGMA application_id"
#define DB_SQL_USER_VERSION        "PRAGMA user_version"
#define DB_SQL_SCHEMA_COUNT        "SELECT count(*) FROM sqlite_schema"
#define DB_SQL_QUICK_CHECK         "PRAGMA quick_check"
#define DB_SQL_JOURNAL_WAL         "PRAGMA journal_mode=WAL"
#define DB_SQL_SYNC_FULL           "PRAGMA synchronous=FULL"
#define DB_SQL_SYNC_NORMAL         "PRAGMA synchronous=NORMAL"
/* After a checkpoint the WAL is truncated back to this size, so one burst
** (a backlog after days offline) does not leave a huge -wal file behind. */
#define DB_SQL_JOURNAL_SIZE_LIMIT  "PRAGMA journal_size_limit=16777216"
/* Page cache of 2 MiB per connection (negative: KiB), SQLite's default,
** stated: it holds the indexes' upper levels; a larger one only bought
** resident memory on the small gateways pdrelay runs on. */
#define DB_SQL_CACHE_SIZE          "PRAGMA cache_size=-2048"
#define DB_SQL_TEMP_STORE          "PRAGMA temp_store=MEMORY"
/* Check each b-tree page's cells as it is loaded: a damaged page (flash
** that lost a write) is reported as SQLITE_CORRUPT when first read instead
** of yielding garbage rows. Costs no measurable push throughput. */
#define DB_SQL_CELL_SIZE_CHECK     "PRAGMA cell_size_check=ON"
#define DB_SQL_MIGRATE_BEGIN       "BEGIN IMMEDIATE"
#define DB_SQL_MIGRATE_COMMIT      "COMMIT"
#define DB_SQL_MIGRATE_ROLLBACK    "ROLLBACK"
/* printf formats: the values are ours (integers), never user input. */
#define DB_SQL_SET_APPLICATION_ID  "PRAGMA application_id=%d"
#define DB_SQL_SET_USER_VERSION    "PRAGMA user_version=%d"

/* ---- 3. prepared statements ---------------------------------------------- */

/* The columns of a db_row, in the order db_row_read() takes them. */
#define DB_ROW_COLUMNS \
    "id, routing_key, action, dedup_key, fingerprint, body, created_ms," \
    " attempts, next_ms, last_error, state, dead_ms"

/* The same, qualified by the table (for joins). */
#define DB_ROW_COLUMNS_O \
    "o.id, o.routing_key, o.action, o.dedup_key, o.fingerprint, o.body," \
    " o.created_ms, o.attempts, o.next_ms, o.last_error, o.state, o.dead_ms"

/* The heads of all keys: a recursive skip-scan over outbox_head finds each
** distinct pending routing key with one index seek (O(keys log n)), then
** each key's lowest pending id, again one seek. Used by _DUE and _NEXT_DUE. */
#define DB_SQL_HEADS_CTE \
    "WITH RECURSIVE keys(rk) AS (" \
    "  SELECT (SELECT MIN(routing_key) FROM outbox WHERE state=0)" \
    "  UNION ALL" \
    "  SELECT (SELECT MIN(routing_key) FROM outbox" \
    "           WHERE state=0 AND routing_key>keys.rk)" \
    "    FROM keys WHERE keys.rk IS NOT NULL" \
    "), heads(hid) AS (" \
    "  SELECT (SELECT MIN(id) FROM outbox WHERE state=0 AND routing_key=keys.rk)" \
    "    FROM keys WHERE keys.rk IS NOT NULL" \
    ") "

#define DB_STATEMENTS(X) \
    /* transactions: writers take the lock at BEGIN, so they queue on the   \
    ** busy timeout instead of failing at their first write */              \
    X(BEGIN,   "BEGIN IMMEDIATE") \
    X(COMMIT,  "COMMIT") \
    X(ROLLBACK, "ROLLBACK") \
    /* counts (one-row table kept by triggers) */ \
    X(COUNTS, "SELECT pending, dead FROM counts WHERE one=1") \
    /* push: the newest pending row of (key, dedup_key); IS matches the   \
    ** NULL dedup_key of change events. Index: outbox_coalesce, one seek  \
    ** for MAX(id) whatever the statistics say (ORDER BY id DESC LIMIT 1  \
    ** may be planned as a sort of every match). */                        \
    X(OUTBOX_NEWEST, \
      "SELECT id, action, body FROM outbox WHERE id=(" \
      "SELECT MAX(id) FROM outbox" \
      " WHERE state=0 AND routing_key=@routing_key AND dedup_key IS @dedup_key)") \
    /* OR FAIL: a failing statement keeps what it already did instead of \
    ** undoing it, so SQLite needs no statement journal (a savepoint per  \
    ** insert: ~3 us of 10 per event). Safe because every error of a push \
    ** rolls back its whole transaction (outbox.c). */                     \
    X(OUTBOX_INSERT, \
      "INSERT OR FAIL INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, state, dead_ms)" \
      " VALUES(@routing_key, @action, @dedup_key, @fingerprint, @body," \
      " @now, 0, @now, 0, 0)") \
    /* sender */ \
    X(OUTBOX_DUE, \
      DB_SQL_HEADS_CTE \
      "SELECT " DB_ROW_COLUMNS_O " FROM heads JOIN outbox o ON o.id=heads.hid" \
      " WHERE o.next_ms<=@now ORDER BY o.next_ms, o.id LIMIT @max") \
    X(OUTBOX_NEXT_DUE, \
      DB_SQL_HEADS_CTE \
      "SELECT MIN(o.next_ms) FROM heads JOIN outbox o ON o.id=heads.hid" \
      " WHERE o.next_ms>@after") \
    /* Index: outbox_age. */ \
    X(OUTBOX_OLDEST, \
      "SELECT MIN(created_ms) FROM outbox WHERE state=0") \
    X(OUTBOX_HEAD, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox" \
      " WHERE state=0 AND routing_key=@routing_key ORDER BY id LIMIT 1") \
    X(OUTBOX_DELIVERED, \
      "DELETE FROM outbox WHERE id=@id AND state=0") \
    X(OUTBOX_RESCHEDULE, \
      "UPDATE outbox SET attempts=attempts+1, next_ms=@next_ms," \
      " last_error=@error WHERE id=@id AND state=0") \
    /* kill: refused upstream, so the attempt that killed it counts */ \
    X(OUTBOX_KILL, \
      "UPDATE outbox SET state=1, dead_ms=@now, last_error=@error," \
      " attempts=attempts+1 WHERE id=@id AND state=0") \
    /* expire: max_age over, killed without another attempt */ \
    X(OUTBOX_EXPIRE, \
      "UPDATE outbox SET state=1, dead_ms=@now, last_error=@error" \
      " WHERE id=@id AND state=0") \
    /* A step of the wall clock backwards leaves next_ms far in the future: \
    ** make such rows due now. Pending rows only (a scan: rare). */ \
    X(OUTBOX_CLAMP_NEXT, \
      "UPDATE outbox SET next_ms=@now WHERE state=0 AND next_ms>@limit") \
    /* Index: outbox_age. */ \
    X(OUTBOX_KILL_OLDER, \
      "UPDATE outbox SET state=1, dead_ms=@now, last_error=@error" \
      " WHERE state=0 AND created_ms<@cutoff") \
    /* Statements over all dead rows name outbox_dead: without statistics \
    ** the planner prefers a scan of the whole table in id order, which    \
    ** reads every pending row to find a few dead ones.                    \
    ** retry: copy the dead rows (in id order, so they keep their order and \
    ** get new, larger ids) as pending rows, then delete the originals; both \
    ** in one transaction. created_ms becomes now: the row re-enters the   \
    ** outbox, and max_age must not kill it again at once. */              \
    X(OUTBOX_RETRY_ALL_COPY, \
      "INSERT INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, last_error, state, dead_ms)" \
      " SELECT routing_key, action, dedup_key, fingerprint, body," \
      " @now, 0, @now, NULL, 0, 0 FROM outbox INDEXED BY outbox_dead" \
      " WHERE state=1 ORDER BY id") \
    X(OUTBOX_RETRY_ALL_DELETE, \
      "DELETE FROM outbox INDEXED BY outbox_dead WHERE state=1") \
    X(OUTBOX_RETRY_KEY_COPY, \
      "INSERT INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, last_error, state, dead_ms)" \
      " SELECT routing_key, action, dedup_key, fingerprint, body," \
      " @now, 0, @now, NULL, 0, 0 FROM outbox" \
      " WHERE state=1 AND routing_key=@routing_key ORDER BY id") \
    X(OUTBOX_RETRY_KEY_DELETE, \
      "DELETE FROM outbox WHERE state=1 AND routing_key=@routing_key") \
    X(OUTBOX_RETRY_ID_COPY, \
      "INSERT INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, last_error, state, dead_ms)" \
      " SELECT routing_key, action, dedup_key, fingerprint, body," \
      " @now, 0, @now, NULL, 0, 0 FROM outbox WHERE id=@id AND state=1") \
    X(OUTBOX_RETRY_ID_DELETE, \
      "DELETE FROM outbox WHERE id=@id AND state=1") \
    X(OUTBOX_PURGE_DEAD, \
      "DELETE FROM outbox INDEXED BY outbox_dead WHERE state=1 AND dead_ms<@cutoff") \
    /* inspection */ \
    /* The state is a literal, not a parameter: a partial index is only \
    ** used when the query's WHERE implies the index's. */                 \
    X(OUTBOX_LIST_PENDING, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox WHERE state=0" \
      " ORDER BY id LIMIT @limit") \
    X(OUTBOX_LIST_PENDING_KEY, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox" \
      " WHERE state=0 AND routing_key=@routing_key ORDER BY id LIMIT @limit") \
    X(OUTBOX_LIST_DEAD, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox INDEXED BY outbox_dead WHERE state=1" \
      " ORDER BY id LIMIT @limit") \
    X(OUTBOX_LIST_DEAD_KEY, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox" \
      " WHERE state=1 AND routing_key=@routing_key ORDER BY id LIMIT @limit") \
    X(OUTBOX_GET, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox WHERE id=@id") \
    X(OUTBOX_STATS, \
      "SELECT o.routing_key, SUM(o.state=0), SUM(o.state=1)," \
      " COALESCE(MIN(CASE WHEN o.state=0 THEN o.created_ms END), 0)," \
      " COALESCE((SELECT h.next_ms FROM outbox h" \
      "   WHERE h.state=0 AND h.routing_key=o.routing_key ORDER BY h.id LIMIT 1), 0)" \
      " FROM outbox o GROUP BY o.routing_key ORDER BY o.routing_key") \
    /* settings read back (db_settings_get) */ \
    X(PRAGMA_JOURNAL_MODE, "PRAGMA journal_mode") \
    X(PRAGMA_SYNCHRONOUS, "PRAGMA synchronous") \
    X(PRAGMA_BUSY_TIMEOUT, "PRAGMA busy_timeout") \
    X(PRAGMA_JOURNAL_SIZE_LIMIT, "PRAGMA journal_size_limit") \
    X(PRAGMA_USER_VERSION, "PRAGMA user_version") \
    X(PRAGMA_APPLICATION_ID, "PRAGMA application_id") \
    /* db_write_probe: rewrites the header's application_id with its own \
    ** value (1346654796 = DB_APPLICATION_ID), a one-page write. */ \
    X(WRITE_PROBE, "PRAGMA application_id=1346654796") \
    /* dedup table */ \
    X(DEDUP_PUT, \
      "INSERT INTO dedup(routing_key, fingerprint, dedup_key, state," \
      " updated_ms, expires_ms)" \
      " VALUES(@routing_key, @fingerprint, @dedup_key, @state, @now, @expires)" \
      " ON CONFLICT(routing_key, fingerprint) DO UPDATE SET" \
      " dedup_key=excluded.dedup_key, state=excluded.state," \
      " updated_ms=excluded.updated_ms, expires_ms=excluded.expires_ms") \
    X(DEDUP_GET, \
      "SELECT dedup_key, state, updated_ms, expires_ms FROM dedup" \
      " WHERE routing_key=@routing_key AND fingerprint=@fingerprint" \
      " AND expires_ms>@now") \
    X(DEDUP_DELETE, \
      "DELETE FROM dedup WHERE routing_key=@routing_key AND fingerprint=@fingerprint") \
    /* Index: dedup_expires. */ \
    X(DEDUP_PURGE, \
      "DELETE FROM dedup WHERE expires_ms<=@now") \
    X(DEDUP_COUNT, \
      "SELECT count(*) FROM dedup")

#endif /* PDR_DB_SQL_H */
