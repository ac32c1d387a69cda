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

/*
** Version 2: urgent first, without breaking order (db.c, invariant 3).
**
** outbox.urgency   pdr_urgency (agent/pdr.h): 0 critical .. 3 info, 4 change.
**                  An acknowledge or resolve carries its trigger's.
** outbox.head      1 when the row is pending and the oldest pending row (lowest
**                  id) of its group (routing_key, dedup_key; IS, so the
**                  NULL-dedup change events of a key are one group), else 0.
**                  The push sets it (OUTBOX_INSERT); the triggers
**                  outbox_head_delete and outbox_head_leave move it to the next
**                  pending row of the group when a head is deleted or leaves
**                  state 0, for every process that writes the file.
** outbox.target    the [target] name the event was routed by (NULL for
**                  PagerDuty-native events); outbox.event_ms when the thing
**                  happened as the source said (0: unknown).
** outbox_sched     (routing_key, urgency, id) of the pending heads: a key's
**                  next row is the first entry of its range; the keys are
**                  found by a skip-scan over it (DB_SQL_NEXT_CTE).
** dedup.target, dedup.urgency  the incident's target and urgency, recorded
**                  at push (state 4, queued) so that an ingest after a key
**                  rotation finds it (dedup_target) and an acknowledge or
**                  resolve inherits its urgency (dedup_by_key).
** key_state        per-key throttle the sender publishes on a 429.
** link_state       the one row of the uplink state the sender publishes.
**
** The existing rows: a trigger's urgency from payload.severity, a change
** event's 4, an acknowledge's or resolve's that of the nearest earlier
** pending trigger of its group (2 without one); head on the lowest pending
** id of each group.
*/
#define DB_SQL_MIGRATION_V2 \
    "ALTER TABLE outbox ADD COLUMN urgency INTEGER NOT NULL DEFAULT 2;" \
    "ALTER TABLE outbox ADD COLUMN head INTEGER NOT NULL DEFAULT 0;" \
    "ALTER TABLE outbox ADD COLUMN target TEXT;" \
    "ALTER TABLE outbox ADD COLUMN event_ms INTEGER NOT NULL DEFAULT 0;" \
    "UPDATE outbox SET urgency=CASE" \
    " (CASE WHEN json_valid(body) THEN json_extract(body, '$.payload.severity') END)" \
    " WHEN 'critical' THEN 0 WHEN 'error' THEN 1 WHEN 'warning' THEN 2" \
    " WHEN 'info' THEN 3 ELSE 2 END WHERE action=1;" \
    "UPDATE outbox SET urgency=4 WHERE action=4;" \
    "UPDATE outbox SET urgency=COALESCE((SELECT t.urgency FROM outbox t" \
    "  WHERE t.state=0 AND t.action=1 AND t.routing_key=outbox.routing_key" \
    "  AND t.dedup_key IS outbox.dedup_key AND t.id<outbox.id" \
    "  ORDER BY t.id DESC LIMIT 1), 2) WHERE action IN (2, 3);" \
    "UPDATE outbox SET head=1 WHERE id IN (SELECT MIN(id) FROM outbox" \
    " WHERE state=0 GROUP BY routing_key, dedup_key);" \
    "CREATE INDEX outbox_sched ON outbox(routing_key, urgency, id) WHERE state=0 AND head=1;" \
    "CREATE TRIGGER outbox_head_delete AFTER DELETE ON outbox WHEN OLD.head=1 BEGIN" \
    " UPDATE outbox SET head=1 WHERE id=(SELECT MIN(id) FROM outbox WHERE state=0" \
    "  AND routing_key=OLD.routing_key AND dedup_key IS OLD.dedup_key);" \
    " END;" \
    "CREATE TRIGGER outbox_head_leave AFTER UPDATE OF state ON outbox" \
    " WHEN OLD.head=1 AND NEW.state<>0 BEGIN" \
    " UPDATE outbox SET head=0 WHERE id=NEW.id;" \
    " UPDATE outbox SET head=1 WHERE id=(SELECT MIN(id) FROM outbox WHERE state=0" \
    "  AND routing_key=NEW.routing_key AND dedup_key IS NEW.dedup_key);" \
    " END;" \
    "ALTER TABLE dedup ADD COLUMN target TEXT;" \
    "ALTER TABLE dedup ADD COLUMN urgency INTEGER NOT NULL DEFAULT 2;" \
    "CREATE INDEX dedup_target ON dedup(target, fingerprint) WHERE target IS NOT NULL;" \
    "CREATE INDEX dedup_by_key ON dedup(routing_key, dedup_key);" \
    "CREATE TABLE key_state(" \
    " routing_key TEXT PRIMARY KEY," \
    " throttled_until_ms INTEGER NOT NULL," \
    " rate_per_minute INTEGER NOT NULL) WITHOUT ROWID;" \
    "CREATE TABLE link_state(" \
    " one INTEGER PRIMARY KEY CHECK(one=1)," \
    " state INTEGER NOT NULL," \
    " since_ms INTEGER NOT NULL);" \
    "INSERT INTO link_state(one, state, since_ms) VALUES(1, 0, 0);"

/*
** Version 3: storage that fits the device.
**
** counts.pending_bytes, counts.dead_bytes   the sum of the stored bodies'
**                  sizes in bytes (length(CAST(body AS BLOB)): octets, not
**                  characters) of the pending and the dead rows, kept by
**                  the count triggers beside the row counts, so that the
**                  [outbox] max_bytes bound is O(1) like max_events. The
**                  triggers are replaced; the existing rows are summed once.
** outbox_dead_age  (dead_ms, id) of dead rows: the oldest dead letters are
**                  found with one seek when max_dead or max_dead_age drops
**                  them. Costs nothing at push (a new row is pending).
** outbox_head      dropped: since version 2 the sender finds the keys and
**                  their next rows through outbox_sched; OUTBOX_LIST_PENDING_KEY
**                  (`pdrelay queue list --key`) was its last reader. It cost
**                  every push one more index page per routing key in each
**                  commit: bench_flash (tests/bench), synchronous=full, one
**                  sender, 5,000 events, 4 KiB pages: 42.7 KB written per
**                  event with it, 36.1 KB without (2 KiB pages: 28.9, 24.6).
** run_state        the one row of the daemon's run: clean = 1 when the last
**                  `pdrelay run` stopped cleanly (written at its stop, cleared
**                  at its start), so that opening checks the file only after
**                  an unclean stop. 0 here: a file migrated from version 2
**                  does not say how its last run ended.
*/
#define DB_SQL_MIGRATION_V3 \
    "ALTER TABLE counts ADD COLUMN pending_bytes INTEGER NOT NULL DEFAULT 0;" \
    "ALTER TABLE counts ADD COLUMN dead_bytes INTEGER NOT NULL DEFAULT 0;" \
    "UPDATE counts SET" \
    " pending_bytes=(SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM outbox WHERE state=0)," \
    " dead_bytes=(SELECT COALESCE(SUM(length(CAST(body AS BLOB))), 0) FROM outbox WHERE state=1)" \
    " WHERE one=1;" \
    "DROP TRIGGER outbox_count_insert;" \
    "DROP TRIGGER outbox_count_delete;" \
    "DROP TRIGGER outbox_count_state;" \
    "CREATE TRIGGER outbox_count_insert AFTER INSERT ON outbox BEGIN" \
    " UPDATE counts SET pending=pending+(NEW.state=0), dead=dead+(NEW.state=1)," \
    "  pending_bytes=pending_bytes+(NEW.state=0)*length(CAST(NEW.body AS BLOB))," \
    "  dead_bytes=dead_bytes+(NEW.state=1)*length(CAST(NEW.body AS BLOB))" \
    "  WHERE one=1;" \
    " END;" \
    "CREATE TRIGGER outbox_count_delete AFTER DELETE ON outbox BEGIN" \
    " UPDATE counts SET pending=pending-(OLD.state=0), dead=dead-(OLD.state=1)," \
    "  pending_bytes=pending_bytes-(OLD.state=0)*length(CAST(OLD.body AS BLOB))," \
    "  dead_bytes=dead_bytes-(OLD.state=1)*length(CAST(OLD.body AS BLOB))" \
    "  WHERE one=1;" \
    " END;" \
    "CREATE TRIGGER outbox_count_state AFTER UPDATE OF state ON outbox" \
    " WHEN OLD.state<>NEW.state BEGIN" \
    " UPDATE counts SET pending=pending-(OLD.state=0)+(NEW.state=0)," \
    "  dead=dead-(OLD.state=1)+(NEW.state=1)," \
    "  pending_bytes=pending_bytes+((NEW.state=0)-(OLD.state=0))*length(CAST(NEW.body AS BLOB))," \
    "  dead_bytes=dead_bytes+((NEW.state=1)-(OLD.state=1))*length(CAST(NEW.body AS BLOB))" \
    "  WHERE one=1;" \
    " END;" \
    "CREATE INDEX outbox_dead_age ON outbox(dead_ms, id) WHERE state=1;" \
    "DROP INDEX outbox_head;" \
    "CREATE TABLE run_state(" \
    " one INTEGER PRIMARY KEY CHECK(one=1)," \
    " clean INTEGER NOT NULL," \
    " started_ms INTEGER NOT NULL," \
    " stopped_ms INTEGER NOT NULL);" \
    "INSERT INTO run_state(one, clean, started_ms, stopped_ms) VALUES(1, 0, 0, 0);" \
    /* Bundles (db/bundle.c, `pdrelay queue export` and `import`):          \
    ** outbox_identity  the one row naming this outbox: origin, 32 random   \
    **                  hex digits drawn once, written into every bundle    \
    **                  exported from it, so that (origin, id) names an     \
    **                  event across outboxes (ids alone repeat).           \
    ** imports          one row per bundle imported (its manifest's id),    \
    **                  so that importing it again queues nothing.          \
    ** imported_rows    (origin, row_id) of every row imported, so that a   \
    **                  row carried in two bundles is queued once (db.c,    \
    **                  invariant 8). */                                    \
    "CREATE TABLE outbox_identity(" \
    " one INTEGER PRIMARY KEY CHECK(one=1)," \
    " origin TEXT NOT NULL);" \
    "INSERT INTO outbox_identity(one, origin) VALUES(1, lower(hex(randomblob(16))));" \
    "CREATE TABLE imports(" \
    " bundle_id TEXT PRIMARY KEY," \
    " site TEXT," \
    " origin TEXT NOT NULL," \
    " imported_ms INTEGER NOT NULL," \
    " count INTEGER NOT NULL) WITHOUT ROWID;" \
    "CREATE TABLE imported_rows(" \
    " origin TEXT NOT NULL," \
    " row_id INTEGER NOT NULL," \
    " PRIMARY KEY(origin, row_id)) WITHOUT ROWID;" \
    /* link_state.upstream: the [pagerduty] url requests go to now, its \
    ** credentials redacted (db_upstream_set; "" until a daemon says) */ \
    "ALTER TABLE link_state ADD COLUMN upstream TEXT NOT NULL DEFAULT '';"

/* X(version, script): script `version` migrates version-1 to version.
** Keep them in order and without gaps; the last one is DB_SCHEMA_VERSION. */
#define DB_MIGRATIONS(X) \
    X(1, DB_SQL_MIGRATION_V1) \
    X(2, DB_SQL_MIGRATION_V2) \
    X(3, DB_SQL_MIGRATION_V3)

/* ---- 2. statements run while opening ---------------------------------------- */

#define DB_SQL_APPLICATION_ID      "PRAGMA application_id"
#define DB_SQL_USER_VERSION        "PRAGMA user_version"
#define DB_SQL_SCHEMA_COUNT        "SELECT count(*) FROM sqlite_schema"
/* Step 4 (db.c, OPENING): how the last `pdrelay run` stopped, read before
** anything is written. A file of schema version < 3 has no run_state. */
#define DB_SQL_RUN_STATE_CLEAN     "SELECT clean FROM run_state WHERE one=1"
/* Step 4 after an unclean stop: the pages the last transactions wrote, read
** through the b-trees' edges, each at most a few root-to-leaf paths (LIMIT),
** whatever the backlog (db.c, "What a crash can break"). X(version, SQL):
** run on a file of that schema version or later. Every column of every row
** is read, so overflow pages are loaded too. */
#define DB_OPEN_CHECKS(X) \
    X(1, "SELECT * FROM counts") \
    X(2, "SELECT * FROM link_state") \
    X(3, "SELECT * FROM run_state") \
    /* the newest rows: the table's right edge, where every push appends */ \
    X(1, "SELECT * FROM outbox ORDER BY id DESC LIMIT 16") \
    /* the oldest pending rows: the left edges of outbox_age and of the   \
    ** table, where deliveries delete */                                   \
    X(1, "SELECT * FROM outbox INDEXED BY outbox_age WHERE state=0" \
         " ORDER BY created_ms LIMIT 16") \
    /* the first heads of the schedule, the rows the sender reads first */ \
    X(2, "SELECT * FROM outbox INDEXED BY outbox_sched WHERE state=0 AND head=1" \
         " ORDER BY routing_key, urgency, id LIMIT 16") \
    /* the newest dead letters: outbox_dead_age's right edge (kills append) */ \
    X(3, "SELECT * FROM outbox INDEXED BY outbox_dead_age WHERE state=1" \
         " ORDER BY dead_ms DESC, id DESC LIMIT 16") \
    /* the dedup entries written last expire last */ \
    X(1, "SELECT * FROM dedup INDEXED BY dedup_expires ORDER BY expires_ms DESC LIMIT 16") \
    X(2, "SELECT * FROM key_state LIMIT 64")
/* `pdrelay queue check` (db_integrity_check): every page, every index entry
** against its row. One problem per row; "ok" alone when there is none. */
#define DB_SQL_INTEGRITY_CHECK     "PRAGMA integrity_check"
#define DB_SQL_JOURNAL_WAL         "PRAGMA journal_mode=WAL"
#define DB_SQL_SYNC_FULL           "PRAGMA synchronous=FULL"
#define DB_SQL_SYNC_NORMAL         "PRAGMA synchronous=NORMAL"
/*
** Flash wear (README "Flash wear" has the table; tests/bench/bench_flash.c
** measures it). What a commit costs is the pages it changes, each a whole
** WAL frame (24 bytes + a page), and the checkpoint writes each changed page
** once more into the database file.
**
** Page size, for a NEW file only: it must be set before the file's first
** write, and an existing file keeps the page size it was made with (in WAL
** mode not even VACUUM changes it). 2 KiB: a commit changes a handful of
** pages (the row's table leaf, the index leaves, counts, sqlite_sequence)
** that hold a few hundred bytes of news each, so a smaller page writes less;
** a PagerDuty event (~600 bytes stored) still fits three to a leaf, where
** 1 KiB pages hold one and spill the larger Alertmanager bodies into
** overflow pages. bench_flash, synchronous=full, one sender: 36.1 KB written
** per event with 4 KiB pages, 24.6 KB with 2 KiB (1 KiB: 21.2).
*/
#define DB_SQL_PAGE_SIZE           "PRAGMA page_size=2048"
/* Checkpoint when the WAL holds 4000 frames (8 MiB of 2 KiB pages) instead
** of SQLite's 1000: a page changed by many commits between two checkpoints
** (the counts row, the index leaves, the table's last leaf) is written into
** the database file once per checkpoint, so fewer checkpoints write less.
** bench_flash, synchronous=full, 2 KiB pages, 16 senders: 12.8 KB per event
** at 1000, 9.7 KB at 4000 (64 senders: 7.5, 6.3); beyond, little more.
** Per connection: every writer (daemon, `pdrelay send`) sets it. */
#define DB_SQL_WAL_AUTOCHECKPOINT  "PRAGMA wal_autocheckpoint=4000"
/* After a checkpoint the WAL is truncated back to this size, so one burst
** (a backlog after days offline) does not leave a huge -wal file behind.
** Above the WAL's size at a checkpoint (8 MiB, DB_SQL_WAL_AUTOCHECKPOINT),
** so an ordinary WAL is reused from its start, never truncated and grown
** again (each growth is a metadata write of the file system's). */
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
/* Off for the length of db_integrity_check, which checks every cell itself
** and reports each problem, where cell_size_check stops it at the first. */
#define DB_SQL_CELL_SIZE_CHECK_OFF "PRAGMA cell_size_check=OFF"
#define DB_SQL_MIGRATE_BEGIN       "BEGIN IMMEDIATE"
#define DB_SQL_MIGRATE_COMMIT      "COMMIT"
#define DB_SQL_MIGRATE_ROLLBACK    "ROLLBACK"
/* printf formats: the values are ours (integers), never user input. */
#define DB_SQL_SET_APPLICATION_ID  "PRAGMA application_id=%d"
#define DB_SQL_SET_USER_VERSION    "PRAGMA user_version=%d"
/* db_explain(): prefixed to a named statement's text (tests). */
#define DB_SQL_EXPLAIN             "EXPLAIN QUERY PLAN "

/* ---- 3. prepared statements ---------------------------------------------- */

/* The columns of a db_row, in the order db_row_read() takes them. */
#define DB_ROW_COLUMNS \
    "id, routing_key, action, dedup_key, fingerprint, body, created_ms," \
    " attempts, next_ms, last_error, state, dead_ms, urgency, target, event_ms"

/* The same, qualified by the table (for joins). */
#define DB_ROW_COLUMNS_O \
    "o.id, o.routing_key, o.action, o.dedup_key, o.fingerprint, o.body," \
    " o.created_ms, o.attempts, o.next_ms, o.last_error, o.state, o.dead_ms," \
    " o.urgency, o.target, o.event_ms"

/* Each key's next row (db.c, invariant 3): among the key's pending heads
** (the oldest pending row of each dedup_key, head=1), the lowest (urgency,
** id). Index: outbox_sched (routing_key, urgency, id) WHERE state=0 AND
** head=1, named (INDEXED BY) so that no plan walks the other pending rows.
** A recursive skip-scan over it finds each routing key having a pending
** head with one seek (O(keys log n)), then each key's next row is the first
** entry of that key's range, one seek more. No statement scans the backlog:
** test_outbox.c checks the plan (db_explain). KEY_FILTER: an extra
** condition on keys.rk ("" for none). Used by _DUE and _NEXT_DUE. */
#define DB_SQL_NEXT_CTE(KEY_FILTER) \
    "WITH RECURSIVE keys(rk) AS (" \
    "  SELECT (SELECT MIN(routing_key) FROM outbox INDEXED BY outbox_sched" \
    "           WHERE state=0 AND head=1)" \
    "  UNION ALL" \
    "  SELECT (SELECT MIN(routing_key) FROM outbox INDEXED BY outbox_sched" \
    "           WHERE state=0 AND head=1 AND routing_key>keys.rk)" \
    "    FROM keys WHERE keys.rk IS NOT NULL" \
    "), nexts(nid) AS (" \
    "  SELECT (SELECT id FROM outbox INDEXED BY outbox_sched" \
    "           WHERE state=0 AND head=1 AND routing_key=keys.rk" \
    "           ORDER BY urgency, id LIMIT 1)" \
    "    FROM keys WHERE keys.rk IS NOT NULL" KEY_FILTER \
    ") "

/* A key's next row, alone (OUTBOX_HEAD, OUTBOX_STATS). */
#define DB_SQL_NEXT_OF_KEY(ALIAS, KEY) \
    " FROM outbox " ALIAS " INDEXED BY outbox_sched" \
    " WHERE " ALIAS ".state=0 AND " ALIAS ".head=1 AND " ALIAS ".routing_key=" KEY \
    " ORDER BY " ALIAS ".urgency, " ALIAS ".id LIMIT 1"

#define DB_STATEMENTS(X) \
    /* transactions: writers take the lock at BEGIN, so they queue on the   \
    ** busy timeout instead of failing at their first write */              \
    X(BEGIN,   "BEGIN IMMEDIATE") \
    X(COMMIT,  "COMMIT") \
    X(ROLLBACK, "ROLLBACK") \
    /* counts (one-row table kept by triggers) */ \
    X(COUNTS, "SELECT pending, dead, pending_bytes, dead_bytes FROM counts WHERE one=1") \
    /* push: the newest pending row of (key, dedup_key); IS matches the   \
    ** NULL dedup_key of change events. Index: outbox_coalesce, one seek  \
    ** for MAX(id) whatever the statistics say (ORDER BY id DESC LIMIT 1  \
    ** may be planned as a sort of every match). */                        \
    X(OUTBOX_NEWEST, \
      "SELECT id, action, body, urgency FROM outbox WHERE id=(" \
      "SELECT MAX(id) FROM outbox" \
      " WHERE state=0 AND routing_key=@routing_key AND dedup_key IS @dedup_key)") \
    /* OR FAIL: a failing statement keeps what it already did instead of \
    ** undoing it, so SQLite needs no statement journal (a savepoint per  \
    ** insert: ~3 us of 10 per event). Safe because every error of a push \
    ** rolls back its whole transaction (outbox.c). */                     \
    /* @head: 1 when OUTBOX_NEWEST found no pending row of the group (the \
    ** same transaction: nobody else writes in between). @created: now,  \
    ** but for an imported row, which keeps its own (db/bundle.c). */    \
    X(OUTBOX_INSERT, \
      "INSERT OR FAIL INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, state, dead_ms, urgency, head, target, event_ms)" \
      " VALUES(@routing_key, @action, @dedup_key, @fingerprint, @body," \
      " @created, 0, @now, 0, 0, @urgency, @head, @target, @event_ms)") \
    /* push of a trigger: the incident is recorded at once, state 4 (queued); \
    ** an existing entry keeps its dedup_key, state and updated_ms. */      \
    X(DEDUP_QUEUE, \
      "INSERT INTO dedup(routing_key, fingerprint, dedup_key, state," \
      " updated_ms, expires_ms, target, urgency)" \
      " VALUES(@routing_key, @fingerprint, @dedup_key, 4, @now, @expires, @target, @urgency)" \
      " ON CONFLICT(routing_key, fingerprint) DO UPDATE SET" \
      " target=excluded.target, urgency=excluded.urgency, expires_ms=excluded.expires_ms") \
    /* sender */ \
    X(OUTBOX_DUE, \
      DB_SQL_NEXT_CTE("") \
      "SELECT " DB_ROW_COLUMNS_O " FROM nexts JOIN outbox o ON o.id=nexts.nid" \
      " WHERE o.next_ms<=@now ORDER BY o.urgency, o.next_ms, o.id LIMIT @max") \
    X(OUTBOX_NEXT_DUE, \
      DB_SQL_NEXT_CTE("") \
      "SELECT MIN(o.next_ms) FROM nexts JOIN outbox o ON o.id=nexts.nid" \
      " WHERE o.next_ms>@after") \
    /* the uplink is back: every pending head (the candidates of every key's \
    ** next row: a row rescheduled during the outage may sit behind a more  \
    ** urgent one that came since) due now, but for the keys throttled      \
    ** (key_state) beyond now. Reads outbox_sched, the heads only, never    \
    ** the rows queued behind them; once per recovery, not per send. */     \
    X(OUTBOX_WAKE, \
      "UPDATE outbox INDEXED BY outbox_sched SET next_ms=@now" \
      " WHERE state=0 AND head=1 AND next_ms>@now" \
      " AND NOT EXISTS(SELECT 1 FROM key_state k" \
      "  WHERE k.routing_key=outbox.routing_key AND k.throttled_until_ms>@now)") \
    /* The range of one group (outbox_coalesce), never the key's. */ \
    X(OUTBOX_FIND_RESOLVE, \
      "SELECT id, event_ms FROM outbox INDEXED BY outbox_coalesce" \
      " WHERE state=0 AND routing_key=@routing_key AND dedup_key IS @dedup_key" \
      " AND id>@after AND action=3 ORDER BY id LIMIT 1") \
    /* The trigger outbox_head_delete promotes the next row of the group. */ \
    X(OUTBOX_COLLAPSE, \
      "DELETE FROM outbox INDEXED BY outbox_coalesce" \
      " WHERE state=0 AND routing_key=@routing_key AND dedup_key IS @dedup_key" \
      " AND id<=@upto") \
    /* Index: outbox_age. */ \
    X(OUTBOX_OLDEST, \
      "SELECT MIN(created_ms) FROM outbox WHERE state=0") \
    X(OUTBOX_HEAD, \
      "SELECT " DB_ROW_COLUMNS_O DB_SQL_NEXT_OF_KEY("o", "@routing_key")) \
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
      " created_ms, attempts, next_ms, last_error, state, dead_ms," \
      " urgency, head, target, event_ms)" \
      " SELECT routing_key, action, dedup_key, fingerprint, body," \
      " @now, 0, @now, NULL, 0, 0, urgency, 0, target, event_ms FROM outbox INDEXED BY outbox_dead" \
      " WHERE state=1 ORDER BY id") \
    X(OUTBOX_RETRY_ALL_DELETE, \
      "DELETE FROM outbox INDEXED BY outbox_dead WHERE state=1") \
    X(OUTBOX_RETRY_KEY_COPY, \
      "INSERT INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, last_error, state, dead_ms," \
      " urgency, head, target, event_ms)" \
      " SELECT routing_key, action, dedup_key, fingerprint, body," \
      " @now, 0, @now, NULL, 0, 0, urgency, 0, target, event_ms FROM outbox" \
      " WHERE state=1 AND routing_key=@routing_key ORDER BY id") \
    X(OUTBOX_RETRY_KEY_DELETE, \
      "DELETE FROM outbox WHERE state=1 AND routing_key=@routing_key") \
    X(OUTBOX_RETRY_ID_COPY, \
      "INSERT INTO outbox(routing_key, action, dedup_key, fingerprint, body," \
      " created_ms, attempts, next_ms, last_error, state, dead_ms," \
      " urgency, head, target, event_ms)" \
      " SELECT routing_key, action, dedup_key, fingerprint, body," \
      " @now, 0, @now, NULL, 0, 0, urgency, 0, target, event_ms FROM outbox WHERE id=@id AND state=1") \
    X(OUTBOX_RETRY_ID_DELETE, \
      "DELETE FROM outbox WHERE id=@id AND state=1") \
    /* retry: the copies are pending with head=0; those that are the oldest \
    ** pending row of their group become heads. @after: MAX(id) before the  \
    ** copy, so only the new rows are looked at (a rowid range). */        \
    X(OUTBOX_MAX_ID, \
      "SELECT COALESCE(MAX(id), 0) FROM outbox") \
    X(OUTBOX_RETRY_HEADS, \
      "UPDATE outbox SET head=1 WHERE id>@after AND state=0 AND NOT EXISTS(" \
      "SELECT 1 FROM outbox p WHERE p.state=0 AND p.routing_key=outbox.routing_key" \
      " AND p.dedup_key IS outbox.dedup_key AND p.id<outbox.id)") \
    /* the dead-letter bounds (db_outbox_trim_dead). Index: outbox_dead_age. */ \
    X(OUTBOX_DEAD_OLDEST, \
      "SELECT MIN(dead_ms) FROM outbox INDEXED BY outbox_dead_age WHERE state=1") \
    X(OUTBOX_TRIM_DEAD_AGE, \
      "DELETE FROM outbox INDEXED BY outbox_dead_age WHERE state=1 AND dead_ms<@cutoff") \
    X(OUTBOX_TRIM_DEAD_COUNT, \
      "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox INDEXED BY outbox_dead_age" \
      " WHERE state=1 ORDER BY dead_ms, id LIMIT @excess)") \
    X(OUTBOX_PURGE_DEAD, \
      "DELETE FROM outbox INDEXED BY outbox_dead WHERE state=1 AND dead_ms<@cutoff") \
    /* inspection */ \
    /* The state is a literal, not a parameter: a partial index is only \
    ** used when the query's WHERE implies the index's. */                 \
    X(OUTBOX_LIST_PENDING, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox WHERE state=0" \
      " ORDER BY id LIMIT @limit") \
    /* Index: outbox_coalesce (the key's range) and a sort by id: reads \
    ** every pending row of the key, an inspection's price since schema 3 \
    ** dropped outbox_head, which cost every push a page (sql.h, v3). */   \
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
      " COALESCE((SELECT h.next_ms" DB_SQL_NEXT_OF_KEY("h", "o.routing_key") "), 0)," \
      " COALESCE(k.throttled_until_ms, 0), COALESCE(k.rate_per_minute, 0)" \
      " FROM outbox o LEFT JOIN key_state k ON k.routing_key=o.routing_key" \
      " GROUP BY o.routing_key ORDER BY o.routing_key") \
    /* settings read back (db_settings_get) */ \
    X(PRAGMA_JOURNAL_MODE, "PRAGMA journal_mode") \
    X(PRAGMA_SYNCHRONOUS, "PRAGMA synchronous") \
    X(PRAGMA_BUSY_TIMEOUT, "PRAGMA busy_timeout") \
    X(PRAGMA_JOURNAL_SIZE_LIMIT, "PRAGMA journal_size_limit") \
    X(PRAGMA_USER_VERSION, "PRAGMA user_version") \
    X(PRAGMA_APPLICATION_ID, "PRAGMA application_id") \
    X(PRAGMA_PAGE_SIZE, "PRAGMA page_size") \
    X(PRAGMA_WAL_AUTOCHECKPOINT, "PRAGMA wal_autocheckpoint") \
    /* db_write_probe: rewrites the header's application_id with its own \
    ** value (1346654796 = DB_APPLICATION_ID), a one-page write. */ \
    X(WRITE_PROBE, "PRAGMA application_id=1346654796") \
    /* dedup table */ \
    /* @target, @urgency NULL: keep the stored ones (2 for a new entry). */ \
    X(DEDUP_PUT, \
      "INSERT INTO dedup(routing_key, fingerprint, dedup_key, state," \
      " updated_ms, expires_ms, target, urgency)" \
      " VALUES(@routing_key, @fingerprint, @dedup_key, @state, @now, @expires," \
      " @target, COALESCE(@urgency, 2))" \
      " ON CONFLICT(routing_key, fingerprint) DO UPDATE SET" \
      " dedup_key=excluded.dedup_key, state=excluded.state," \
      " updated_ms=excluded.updated_ms, expires_ms=excluded.expires_ms," \
      " target=COALESCE(@target, target), urgency=COALESCE(@urgency, urgency)") \
    /* The columns of a db_dedup_entry, in the order dedup.c reads them. */ \
    X(DEDUP_GET, \
      "SELECT dedup_key, state, updated_ms, expires_ms, urgency, target, routing_key" \
      " FROM dedup WHERE routing_key=@routing_key AND fingerprint=@fingerprint" \
      " AND expires_ms>@now") \
    /* Index: dedup_by_key. */ \
    X(DEDUP_GET_BY_KEY, \
      "SELECT dedup_key, state, updated_ms, expires_ms, urgency, target, routing_key" \
      " FROM dedup INDEXED BY dedup_by_key" \
      " WHERE routing_key=@routing_key AND dedup_key=@dedup_key AND expires_ms>@now" \
      " ORDER BY updated_ms DESC LIMIT 1") \
    /* Index: dedup_target (target=@target implies target IS NOT NULL). */ \
    X(DEDUP_ROUTE, \
      "SELECT routing_key, dedup_key FROM dedup INDEXED BY dedup_target" \
      " WHERE target=@target AND fingerprint=@fingerprint AND expires_ms>@now" \
      " ORDER BY updated_ms DESC LIMIT 1") \
    X(DEDUP_DELETE, \
      "DELETE FROM dedup WHERE routing_key=@routing_key AND fingerprint=@fingerprint") \
    /* Index: dedup_expires. */ \
    X(DEDUP_PURGE, \
      "DELETE FROM dedup WHERE expires_ms<=@now") \
    X(DEDUP_COUNT, \
      "SELECT count(*) FROM dedup") \
    /* per-key throttle and uplink state, published by the sender */ \
    X(KEY_THROTTLE_SET, \
      "INSERT INTO key_state(routing_key, throttled_until_ms, rate_per_minute)" \
      " VALUES(@routing_key, @until, @rate)" \
      " ON CONFLICT(routing_key) DO UPDATE SET" \
      " throttled_until_ms=excluded.throttled_until_ms," \
      " rate_per_minute=excluded.rate_per_minute") \
    X(KEY_THROTTLE_CLEAR, \
      "DELETE FROM key_state WHERE routing_key=@routing_key") \
    X(LINK_SET, \
      "UPDATE link_state SET state=@state, since_ms=@since WHERE one=1") \
    X(LINK_GET, \
      "SELECT state, since_ms FROM link_state WHERE one=1") \
    X(UPSTREAM_SET, \
      "UPDATE link_state SET upstream=@upstream WHERE one=1") \
    X(UPSTREAM_GET, \
      "SELECT upstream FROM link_state WHERE one=1") \
    /* the daemon's run (db_run_begin, db_run_end): the clean-stop marker */ \
    X(RUN_STATE_GET, \
      "SELECT clean, started_ms FROM run_state WHERE one=1") \
    X(RUN_STATE_BEGIN, \
      "UPDATE run_state SET clean=0, started_ms=@now WHERE one=1") \
    X(RUN_STATE_END, \
      "UPDATE run_state SET clean=1, stopped_ms=@now WHERE one=1") \
    /* bundles (db/bundle.c): the outbox side of export and import; the   \
    ** bundle file's own statements are in bundle_sql.h.                  \
    ** BEGIN (deferred): an export without --remove only reads, from one \
    ** snapshot, and holds no writer back. */                              \
    X(BUNDLE_BEGIN_READ, "BEGIN") \
    /* The selection of an export, in id order: pending rows of one key   \
    ** (@routing_key NULL: every key) created at or after @since. A scan  \
    ** of the pending rows: an export is an operator's rare order. */      \
    X(BUNDLE_SELECT, \
      "SELECT " DB_ROW_COLUMNS " FROM outbox WHERE state=0" \
      " AND (@routing_key IS NULL OR routing_key=@routing_key)" \
      " AND created_ms>=@since ORDER BY id") \
    /* --remove: the same selection, up to the last id exported (the     \
    ** export's transaction held the write lock: nothing changed). */     \
    X(BUNDLE_REMOVE, \
      "DELETE FROM outbox WHERE state=0" \
      " AND (@routing_key IS NULL OR routing_key=@routing_key)" \
      " AND created_ms>=@since AND id<=@upto") \
    X(BUNDLE_ORIGIN, \
      "SELECT origin FROM outbox_identity WHERE one=1") \
    X(BUNDLE_IMPORT_GET, \
      "SELECT imported_ms, site FROM imports WHERE bundle_id=@bundle_id") \
    X(BUNDLE_IMPORT_PUT, \
      "INSERT INTO imports(bundle_id, site, origin, imported_ms, count)" \
      " VALUES(@bundle_id, @site, @origin, @now, @count)") \
    X(BUNDLE_ROW_SEEN, \
      "SELECT 1 FROM imported_rows WHERE origin=@origin AND row_id=@row_id") \
    X(BUNDLE_ROW_PUT, \
      "INSERT OR IGNORE INTO imported_rows(origin, row_id) VALUES(@origin, @row_id)") \
    /* A bundle of this outbox's own brought back: the row is still here \
    ** (exported without --remove) when its id is (ids are never reused). */ \
    X(BUNDLE_ROW_HERE, \
      "SELECT 1 FROM outbox WHERE id=@id")

#endif /* PDR_DB_SQL_H */
