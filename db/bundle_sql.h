/*
** bundle_sql.h — the SQL of a bundle file (db/bundle.c), and nothing else:
** its schema, one script per bundle schema version, and the statements
** that write and read each version's shape. The outbox's side of export
** and import (selecting, removing, remembering imports) is in sql.h.
**
** A bundle is never migrated: it is written once, at the version of the
** pdrelay that exports it, and read as it is. So each version keeps the
** statements that read its shape, and a pdrelay reads every version up to
** DB_BUNDLE_SCHEMA_VERSION (db.h). A released script is never edited.
**
** Statements bind parameters by name, like sql.h's. The column order of
** BUNDLE_SQL_EVENTS_GET_V* is the order bundle.c reads them (and hashes
** them: see "THE CHECKSUM" in bundle.c).
*/
#ifndef PDR_DB_BUNDLE_SQL_H
#define PDR_DB_BUNDLE_SQL_H

/* "PDRB": PRAGMA application_id of a bundle, not the outbox's "PDRL"
** (sql.h), so that neither is ever opened as the other: `pdrelay run` given
** a bundle as its outbox refuses it as foreign, and import refuses an
** outbox. */
#define DB_BUNDLE_APPLICATION_ID 0x50445242

/* The manifest's format column: names the kind of file for a person with
** the sqlite3 shell. */
#define DB_BUNDLE_FORMAT "pdrelay-bundle"

/*
** Version 1.
**
** manifest   the one row describing the bundle: its random id, the
**            identity of the outbox it came from (outbox_identity there),
**            when it was written, how many events it holds and the SHA-256
**            of those rows (bundle.c, THE CHECKSUM).
** events     one row per event, in the order of the outbox it came from
**            (seq: 1, 2, ...). row_id is its id there: (origin, row_id)
**            names it across outboxes. routing_key as the outbox stores it
**            (the secret the event needs to be delivered; the only one a
**            bundle holds).
*/
#define BUNDLE_SQL_MIGRATION_V1 \
    "CREATE TABLE manifest(" \
    " one INTEGER PRIMARY KEY CHECK(one=1)," \
    " format TEXT NOT NULL," \
    " bundle_id TEXT NOT NULL," \
    " origin TEXT NOT NULL," \
    " created_ms INTEGER NOT NULL," \
    " count INTEGER NOT NULL," \
    " sha256 TEXT NOT NULL);" \
    "CREATE TABLE events(" \
    " seq INTEGER PRIMARY KEY," \
    " row_id INTEGER NOT NULL," \
    " routing_key TEXT NOT NULL," \
    " action INTEGER NOT NULL," \
    " dedup_key TEXT," \
    " fingerprint TEXT," \
    " body TEXT NOT NULL," \
    " created_ms INTEGER NOT NULL," \
    " urgency INTEGER NOT NULL," \
    " target TEXT);"

/*
** Version 2.
**
** manifest.site    the exporting pdrelay's [agent] source, for the
**                  importer's message and its imports table.
** events.event_ms  when the thing happened, as the source said (0:
**                  unknown); hashed after the fields of version 1.
** A version-1 bundle reads as site NULL, event_ms 0.
*/
#define BUNDLE_SQL_MIGRATION_V2 \
    "ALTER TABLE manifest ADD COLUMN site TEXT;" \
    "ALTER TABLE events ADD COLUMN event_ms INTEGER NOT NULL DEFAULT 0;"

/* The file is written once: a rollback journal (no -wal beside a file
** carried on a USB stick), synchronous=FULL (the journal and the file are
** fsync'd at the commit). */
#define BUNDLE_SQL_JOURNAL_DELETE  "PRAGMA journal_mode=DELETE"
#define BUNDLE_SQL_SYNC_FULL       "PRAGMA synchronous=FULL"
#define BUNDLE_SQL_BEGIN           "BEGIN"
#define BUNDLE_SQL_COMMIT          "COMMIT"
#define BUNDLE_SQL_ROLLBACK        "ROLLBACK"
#define BUNDLE_SQL_APPLICATION_ID  "PRAGMA application_id"
#define BUNDLE_SQL_USER_VERSION    "PRAGMA user_version"
/* printf formats: the values are ours (integers), never input. */
#define BUNDLE_SQL_SET_APPLICATION_ID "PRAGMA application_id=%d"
#define BUNDLE_SQL_SET_USER_VERSION   "PRAGMA user_version=%d"

/* ---- version 1's shape ---- */
#define BUNDLE_SQL_EVENT_PUT_V1 \
    "INSERT INTO events(seq, row_id, routing_key, action, dedup_key, fingerprint," \
    " body, created_ms, urgency, target)" \
    " VALUES(@seq, @row_id, @routing_key, @action, @dedup_key, @fingerprint," \
    " @body, @created_ms, @urgency, @target)"
#define BUNDLE_SQL_MANIFEST_PUT_V1 \
    "INSERT INTO manifest(one, format, bundle_id, origin, created_ms, count, sha256)" \
    " VALUES(1, @format, @bundle_id, @origin, @created_ms, @count, @sha256)"
#define BUNDLE_SQL_MANIFEST_GET_V1 \
    "SELECT format, bundle_id, origin, created_ms, count, sha256, NULL" \
    " FROM manifest WHERE one=1"
#define BUNDLE_SQL_EVENTS_GET_V1 \
    "SELECT seq, row_id, routing_key, action, dedup_key, fingerprint, body," \
    " created_ms, urgency, target, 0 FROM events ORDER BY seq"

/* ---- version 2's shape ---- */
#define BUNDLE_SQL_EVENT_PUT_V2 \
    "INSERT INTO events(seq, row_id, routing_key, action, dedup_key, fingerprint," \
    " body, created_ms, urgency, target, event_ms)" \
    " VALUES(@seq, @row_id, @routing_key, @action, @dedup_key, @fingerprint," \
    " @body, @created_ms, @urgency, @target, @event_ms)"
#define BUNDLE_SQL_MANIFEST_PUT_V2 \
    "INSERT INTO manifest(one, format, bundle_id, origin, created_ms, count, sha256, site)" \
    " VALUES(1, @format, @bundle_id, @origin, @created_ms, @count, @sha256, @site)"
#define BUNDLE_SQL_MANIFEST_GET_V2 \
    "SELECT format, bundle_id, origin, created_ms, count, sha256, site" \
    " FROM manifest WHERE one=1"
#define BUNDLE_SQL_EVENTS_GET_V2 \
    "SELECT seq, row_id, routing_key, action, dedup_key, fingerprint, body," \
    " created_ms, urgency, target, event_ms FROM events ORDER BY seq"

/* X(version, migration, event_put, manifest_put, manifest_get, events_get,
** hashed): hashed is how many columns of events_get the checksum covers
** (the columns a version has). In order, without gaps; the last one is
** DB_BUNDLE_SCHEMA_VERSION (db.h). */
#define BUNDLE_VERSIONS(X) \
    X(1, BUNDLE_SQL_MIGRATION_V1, BUNDLE_SQL_EVENT_PUT_V1, BUNDLE_SQL_MANIFEST_PUT_V1, \
      BUNDLE_SQL_MANIFEST_GET_V1, BUNDLE_SQL_EVENTS_GET_V1, 10) \
    X(2, BUNDLE_SQL_MIGRATION_V2, BUNDLE_SQL_EVENT_PUT_V2, BUNDLE_SQL_MANIFEST_PUT_V2, \
      BUNDLE_SQL_MANIFEST_GET_V2, BUNDLE_SQL_EVENTS_GET_V2, 11)

#endif /* PDR_DB_BUNDLE_SQL_H */
