/*
** bundle.c — events carried by hand: `pdrelay queue export` writes pending
** events of the outbox to a bundle file, `pdrelay queue import` queues a
** bundle's events into another outbox (db.h, "bundles"). An air-gapped
** site exports to a USB stick; a connected machine imports.
**
** THE FILE. A SQLite database (rollback journal, written once) with its own
** application_id (DB_BUNDLE_APPLICATION_ID, "PDRB"), its own schema
** versions in user_version (bundle_sql.h: version 1 first, version 2 added
** manifest.site and events.event_ms; every version is read in its own
** shape, none is migrated), mode 0600, and two tables:
**   manifest  format, bundle_id (32 random hex digits from /dev/urandom),
**             site ([agent] source), origin (the exporting outbox's
**             outbox_identity), created_ms, count, sha256;
**   events    seq (1, 2, ... in the outbox's id order), row_id (the id
**             there), routing_key, action, dedup_key, fingerprint, body,
**             created_ms, urgency, target, event_ms.
** Nothing else: no config, no token; the routing keys are stored as the
** outbox stores them, as the events need them to be delivered.
**
** THE CHECKSUM. manifest.sha256 is the lowercase hex SHA-256 (mbedTLS,
** pdr_sha256_*) of the rows' canonical serialization: the rows of events
** in seq order, each as its columns in the order of bundle_sql.h's
** BUNDLE_SQL_EVENTS_GET_V<version> (seq, row_id, routing_key, action,
** dedup_key, fingerprint, body, created_ms, urgency, target, and for
** version 2 on event_ms), each column as
**   NULL     the byte 'n'
**   integer  the byte 'i', then its value as 8 bytes, big-endian two's
**            complement
**   text     the byte 't', then its length in bytes as 8 bytes big-endian,
**            then its bytes (UTF-8 as stored, no terminator)
** with nothing between columns or rows. The integer columns are seq,
** row_id, action, created_ms, urgency, event_ms; the others are text. An
** empty bundle is never written, so the hash covers at least one row.
**
** EXPORT (db_bundle_export), in this order, each step durable before the
** next:
**   1. BEGIN IMMEDIATE on the outbox with --remove (BEGIN, a read
**      snapshot, without): the sender cannot deliver, kill or change the
**      selected rows until the end;
**   2. FILE.tmp (a leftover of an export that died is deleted, with its
**      -journal) is created 0600 and filled in one transaction: schema,
**      events in id order, manifest; COMMIT (synchronous=FULL fsyncs it),
**      then an fsync of our own;
**   3. FILE.tmp is read back and its checksum verified;
**   4. renamed to FILE (refused if FILE exists) and FILE's directory is
**      fsync'd: the bundle is complete and durable;
**   5. with --remove, the exported rows (still pending: the lock held)
**      are deleted and the outbox transaction COMMITs; without, it ends.
** A kill at any point leaves each selected event in the outbox (before 5
** commits) or in the complete bundle FILE (from 4 on), or in both; never
** in neither. A FILE.tmp is never a bundle: import only reads FILE.
**
** IMPORT (db_bundle_import): the bundle is opened read-only and read in
** one read transaction; the manifest is checked against the rows
** (checksum, count) before anything is written; then ONE transaction on
** the outbox queues the events in seq order and records the bundle
** (imports) and each row (imported_rows) (db.c, invariant 8). A kill
** before its COMMIT leaves the outbox as it was; after, the bundle is
** known: importing it again queues nothing.
**
** A bundle may come from anywhere: its connection is read-only, defensive
** and does not trust its schema (SQLITE_DBCONFIG_TRUSTED_SCHEMA off), and
** every text from it is the caller's to escape before printing.
*/
#include "dbInt.h"
#include "bundle_sql.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"

typedef struct bundle_version {
    int version;
    const char *migration, *event_put, *manifest_put, *manifest_get, *events_get;
    int hashed;
} bundle_version;

static const bundle_version bundle_versions[] = {
#define BUNDLE_VERSION_ENTRY(v, mig, ep, mp, mg, eg, n) {v, mig, ep, mp, mg, eg, n},
    BUNDLE_VERSIONS(BUNDLE_VERSION_ENTRY)
#undef BUNDLE_VERSION_ENTRY
};

_Static_assert(sizeof bundle_versions / sizeof bundle_versions[0] == DB_BUNDLE_SCHEMA_VERSION,
               "one bundle schema script per version, the last one DB_BUNDLE_SCHEMA_VERSION");
_Static_assert(DB_BUNDLE_APPLICATION_ID != DB_APPLICATION_ID, "a bundle is not an outbox");

/* The columns of BUNDLE_SQL_EVENTS_GET_V*, by index. */
enum { BC_SEQ, BC_ROW_ID, BC_ROUTING_KEY, BC_ACTION, BC_DEDUP_KEY, BC_FINGERPRINT, BC_BODY,
       BC_CREATED_MS, BC_URGENCY, BC_TARGET, BC_EVENT_MS, BC_COUNT };

/* Which of them are integers (the others are text), for the checksum. */
static const char bundle_col_int[BC_COUNT] = {1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1};

/* ---- the checksum ---------------------------------------------------------- */

/* One column's value, as the checksum takes it. */
typedef struct bundle_val {
    char kind;          /* 'n' NULL, 'i' integer, 't' text */
    int64_t i;
    const char *s;
    size_t n;
} bundle_val;

static pdr_rc bundle_hash_vals(pdr_sha256 *h, const bundle_val *v, int n)
{
    unsigned char buf[9];
    pdr_rc rc = PDR_OK;
    for (int k = 0; k < n && !rc; k++) {
        uint64_t x = v[k].kind == 'i' ? (uint64_t)v[k].i : (uint64_t)v[k].n;
        buf[0] = (unsigned char)v[k].kind;
        for (int b = 0; b < 8; b++) buf[1 + b] = (unsigned char)(x >> (56 - 8 * b));
        rc = pdr_sha256_update(h, buf, v[k].kind == 'n' ? 1 : 9);
        if (!rc && v[k].kind == 't') rc = pdr_sha256_update(h, v[k].s, v[k].n);
    }
    return rc;
}

static bundle_val val_int(int64_t i)
{
    bundle_val v = {'i', i, NULL, 0};
    return v;
}

static bundle_val val_text(const char *s, size_t n)
{
    bundle_val v = {s ? 't' : 'n', 0, s, s ? n : 0};
    return v;
}

static bundle_val val_str(const char *s)
{
    return val_text(s, s ? strlen(s) : 0);
}

/* The values of the current row of an events statement. NULL text columns
** and NULL integers are 'n'. (The text pointers live until the next step.) */
static void bundle_row_vals(sqlite3_stmt *st, bundle_val v[BC_COUNT])
{
    for (int k = 0; k < BC_COUNT; k++) {
        if (sqlite3_column_type(st, k) == SQLITE_NULL) {
            v[k] = val_text(NULL, 0);
        } else if (bundle_col_int[k]) {
            v[k] = val_int(sqlite3_column_int64(st, k));
        } else {
            const char *s = (const char *)sqlite3_column_text(st, k);
            v[k] = val_text(s ? s : "", (size_t)sqlite3_column_bytes(st, k));
        }
    }
}

/* ---- reading a bundle ------------------------------------------------------ */

static pdr_rc bundle_fail(sqlite3 *h, int src, const char *path, const char *doing,
                          char *errbuf, size_t errsz)
{
    pdr_rc rc = db_rc_from_sqlite(src);
    db_msg(errbuf, errsz, "%s: %s: %s", path, doing,
               h ? sqlite3_errmsg(h) : sqlite3_errstr(src));
    return rc == PDR_OK ? PDR_ERR_INTERNAL : rc;
}

static void bundle_harden(sqlite3 *h)
{
    sqlite3_extended_result_codes(h, 1);
    sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
}

/* Opens the bundle at path read-only and checks what it is: *version_out
** its bundle schema version. */
static pdr_rc bundle_open_read(const char *path, sqlite3 **out, int *version_out,
                               char *errbuf, size_t errsz)
{
    sqlite3 *h = NULL;
    int64_t app_id = 0, version = 0;
    struct stat sb;
    pdr_rc rc;
    int src;

    *out = NULL;
    if (stat(path, &sb) != 0) {
        int err = errno;
        db_msg(errbuf, errsz, "%s: %s", path, strerror(err));
        return err == ENOENT ? PDR_ERR_NOT_FOUND : err == EACCES ? PDR_ERR_PERM : PDR_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        db_msg(errbuf, errsz, "%s: not a regular file, so not a bundle", path);
        return PDR_ERR_INVALID;
    }
    src = sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (src) {
        rc = bundle_fail(h, src, path, "cannot open", errbuf, errsz);
        sqlite3_close(h);
        return rc;
    }
    bundle_harden(h);
    src = db_query_int64(h, BUNDLE_SQL_APPLICATION_ID, &app_id, SQLITE_CORRUPT);
    if (!src) src = db_query_int64(h, BUNDLE_SQL_USER_VERSION, &version, SQLITE_CORRUPT);
    if (src) {
        if ((src & 0xff) == SQLITE_NOTADB || (src & 0xff) == SQLITE_CORRUPT) {
            db_msg(errbuf, errsz, "%s: not a pdrelay bundle (not a SQLite database, or a damaged "
                       "one); nothing imported", path);
            rc = PDR_ERR_CORRUPT;
        } else {
            rc = bundle_fail(h, src, path, "cannot read", errbuf, errsz);
        }
        sqlite3_close(h);
        return rc;
    }
    if (app_id != DB_BUNDLE_APPLICATION_ID) {
        if (app_id == DB_APPLICATION_ID)
            db_msg(errbuf, errsz, "%s is a pdrelay outbox, not a bundle: make a bundle of it with "
                       "`pdrelay queue export` where it runs", path);
        else
            db_msg(errbuf, errsz, "%s: not a pdrelay bundle (application_id %lld, not %d)", path,
                       (long long)app_id, DB_BUNDLE_APPLICATION_ID);
        sqlite3_close(h);
        return PDR_ERR_CORRUPT;
    }
    if (version > DB_BUNDLE_SCHEMA_VERSION) {
        db_msg(errbuf, errsz, "%s has bundle schema version %lld, newer than this pdrelay reads (%d): "
                   "import it with the newer pdrelay that wrote it, or upgrade this one; nothing imported",
                   path, (long long)version, DB_BUNDLE_SCHEMA_VERSION);
        sqlite3_close(h);
        return PDR_ERR_TOO_NEW;
    }
    if (version < 1) {
        db_msg(errbuf, errsz, "%s is damaged: it is marked as a pdrelay bundle but has no schema "
                   "(version %lld); nothing imported", path, (long long)version);
        sqlite3_close(h);
        return PDR_ERR_CORRUPT;
    }
    *out = h;
    *version_out = (int)version;
    return PDR_OK;
}

static void bundle_copy(char *dst, size_t dstsz, const unsigned char *s)
{
    snprintf(dst, dstsz, "%s", s ? (const char *)s : "");
}

/* The manifest of an open bundle. */
static pdr_rc bundle_read_manifest(sqlite3 *h, const char *path, int version, db_bundle_info *info,
                                   char *errbuf, size_t errsz)
{
    sqlite3_stmt *st = NULL;
    pdr_rc rc = PDR_OK;
    const char *format;
    int src = sqlite3_prepare_v2(h, bundle_versions[version - 1].manifest_get, -1, &st, NULL);
    if (src) return bundle_fail(h, src, path, "reading the manifest", errbuf, errsz);
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        if (src == SQLITE_DONE) {
            db_msg(errbuf, errsz, "%s is damaged: it has no manifest; nothing imported", path);
            rc = PDR_ERR_CORRUPT;
        } else {
            rc = bundle_fail(h, src, path, "reading the manifest", errbuf, errsz);
        }
        goto out;
    }
    format = (const char *)sqlite3_column_text(st, 0);
    if (!format || strcmp(format, DB_BUNDLE_FORMAT) != 0) {
        db_msg(errbuf, errsz, "%s is damaged: its manifest does not say %s; nothing imported", path,
                   DB_BUNDLE_FORMAT);
        rc = PDR_ERR_CORRUPT;
        goto out;
    }
    memset(info, 0, sizeof *info);
    info->version = version;
    bundle_copy(info->bundle_id, sizeof info->bundle_id, sqlite3_column_text(st, 1));
    bundle_copy(info->origin, sizeof info->origin, sqlite3_column_text(st, 2));
    info->created_ms = sqlite3_column_int64(st, 3);
    info->count = sqlite3_column_int64(st, 4);
    bundle_copy(info->sha256, sizeof info->sha256, sqlite3_column_text(st, 5));
    bundle_copy(info->site, sizeof info->site, sqlite3_column_text(st, 6));
    if (!info->bundle_id[0] || !info->origin[0]) {
        db_msg(errbuf, errsz, "%s is damaged: its manifest lacks its %s; nothing imported", path,
                   info->bundle_id[0] ? "origin" : "bundle id");
        rc = PDR_ERR_CORRUPT;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/* Recomputes the checksum of an open bundle's rows and compares it, and
** their number, with the manifest. */
static pdr_rc bundle_check_rows(sqlite3 *h, const char *path, const db_bundle_info *info,
                                char *errbuf, size_t errsz)
{
    const bundle_version *bv = &bundle_versions[info->version - 1];
    sqlite3_stmt *st = NULL;
    bundle_val v[BC_COUNT];
    char got[PDR_SHA256_HEX_LEN];
    int64_t n = 0;
    pdr_sha256 *hash;
    pdr_rc rc = PDR_OK;
    int src;

    src = sqlite3_prepare_v2(h, bv->events_get, -1, &st, NULL);
    if (src) return bundle_fail(h, src, path, "reading the events", errbuf, errsz);
    hash = pdr_sha256_new();
    if (!hash) {
        sqlite3_finalize(st);
        return PDR_ERR_NOMEM;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        bundle_row_vals(st, v);
        rc = bundle_hash_vals(hash, v, bv->hashed);
        if (rc) break;
        n++;
    }
    sqlite3_finalize(st);
    if (!rc && src != SQLITE_DONE) rc = bundle_fail(h, src, path, "reading the events", errbuf, errsz);
    if (rc) {
        pdr_sha256_free(hash);
        return rc;
    }
    rc = pdr_sha256_final_hex(hash, got);
    if (rc) return rc;
    if (strcmp(got, info->sha256) != 0) {
        db_msg(errbuf, errsz, "%s: checksum mismatch: the manifest says %.64s, the rows hash to %s; "
                   "the bundle is damaged or was altered; nothing imported", path, info->sha256, got);
        return PDR_ERR_CORRUPT;
    }
    if (n != info->count) {
        db_msg(errbuf, errsz, "%s: the manifest counts %lld events, the bundle holds %lld; the bundle is "
                   "damaged or was altered; nothing imported", path, (long long)info->count, (long long)n);
        return PDR_ERR_CORRUPT;
    }
    return PDR_OK;
}

/* Opens, begins a read transaction (so that both of import's passes see the
** same rows), reads the manifest and checks the rows. *out stays open on
** success (in the read transaction). */
static pdr_rc bundle_open_checked(const char *path, sqlite3 **out, db_bundle_info *info,
                                  char *errbuf, size_t errsz)
{
    sqlite3 *h = NULL;
    int version = 0, src;
    pdr_rc rc = bundle_open_read(path, &h, &version, errbuf, errsz);
    if (rc) return rc;
    src = sqlite3_exec(h, BUNDLE_SQL_BEGIN, NULL, NULL, NULL);
    if (src) rc = bundle_fail(h, src, path, "reading", errbuf, errsz);
    if (!rc) rc = bundle_read_manifest(h, path, version, info, errbuf, errsz);
    if (!rc) rc = bundle_check_rows(h, path, info, errbuf, errsz);
    if (rc) {
        sqlite3_close(h);
        return rc;
    }
    *out = h;
    return PDR_OK;
}

pdr_rc db_bundle_verify(const char *path, db_bundle_info *info, char *errbuf, size_t errsz)
{
    db_bundle_info tmp;
    sqlite3 *h = NULL;
    pdr_rc rc;
    if (errbuf && errsz) errbuf[0] = '\0';
    if (!path) return PDR_ERR_INVALID;
    rc = bundle_open_checked(path, &h, info ? info : &tmp, errbuf, errsz);
    sqlite3_close(h);
    return rc;
}

/* ---- export ---------------------------------------------------------------- */

/* 32 hex digits of /dev/urandom. */
static pdr_rc bundle_random_id(char out[33], char *errbuf, size_t errsz)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        db_msg(errbuf, errsz, "cannot open /dev/urandom for the bundle's id: %s", strerror(errno));
        return PDR_ERR_IO;
    }
    while (got < sizeof r) {
        ssize_t n = read(fd, r + got, sizeof r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            db_msg(errbuf, errsz, "cannot read /dev/urandom for the bundle's id: %s",
                       n < 0 ? strerror(errno) : "end of file");
            close(fd);
            return PDR_ERR_IO;
        }
        got += (size_t)n;
    }
    close(fd);
    for (size_t i = 0; i < sizeof r; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
    return PDR_OK;
}

static pdr_rc bundle_errno(int err)
{
    switch (err) {
    case EACCES:
    case EPERM: return PDR_ERR_PERM;
    case EROFS: return PDR_ERR_READONLY;
    case ENOSPC:
    case EDQUOT: return PDR_ERR_DISK_FULL;
    case ENOENT: return PDR_ERR_NOT_FOUND;
    default: return PDR_ERR_IO;
    }
}

/* fsync of a file (or a directory) by name. */
static pdr_rc bundle_fsync_path(const char *path, int dir, char *errbuf, size_t errsz)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
    int err = 0;
    if (fd < 0) {
        err = errno;
    } else {
        if (fsync(fd) != 0) err = errno;
        close(fd);
        /* A file system that cannot fsync a directory (EINVAL) makes its
        ** renames durable by itself or not at all; nothing more to do. */
        if (dir && err == EINVAL) err = 0;
    }
    if (!err) return PDR_OK;
    db_msg(errbuf, errsz, "cannot fsync %s: %s", path, strerror(err));
    return bundle_errno(err);
}

/* The directory of path, for its fsync. */
static void bundle_dir_of(const char *path, char *out, size_t outsz)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, outsz, ".");
    else if (slash == path) snprintf(out, outsz, "/");
    else snprintf(out, outsz, "%.*s", (int)(slash - path), path);
}

/* Is there anything at path? 0 no, 1 yes, -1 cannot tell (errbuf set). */
static int bundle_exists(const char *path, char *errbuf, size_t errsz)
{
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        db_msg(errbuf, errsz, "%s exists: a bundle is never written over; give a new file name "
                   "(or move the old one aside)", path);
        return 1;
    }
    if (errno == ENOENT) return 0;
    db_msg(errbuf, errsz, "%s: %s", path, strerror(errno));
    return -1;
}

/* Deletes path, quietly when it does not exist. */
static void bundle_unlink(const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT) {
        /* the create below reports what is wrong */
    }
}

static pdr_rc bundle_exec(sqlite3 *h, const char *sql, const char *path, const char *doing,
                          char *errbuf, size_t errsz)
{
    int src = sqlite3_exec(h, sql, NULL, NULL, NULL);
    return src ? bundle_fail(h, src, path, doing, errbuf, errsz) : PDR_OK;
}

/* The export in progress. */
typedef struct bundle_writer {
    const bundle_version *bv;
    const char *tmp;            /* FILE.tmp */
    sqlite3 *h;
    sqlite3_stmt *put;
    pdr_sha256 *hash;
    int64_t n;
} bundle_writer;

/* Step 2's start: a new FILE.tmp, 0600, with the version's schema, in an
** open transaction. */
static pdr_rc bundle_writer_open(bundle_writer *w, int version, char *errbuf, size_t errsz)
{
    char journal[PATH_MAX + 16], sql[64];
    pdr_rc rc;
    int fd, src;

    snprintf(journal, sizeof journal, "%s-journal", w->tmp);
    bundle_unlink(journal);     /* a leftover of an export that died */
    bundle_unlink(w->tmp);
    fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int err = errno;
        db_msg(errbuf, errsz, "cannot create %s: %s", w->tmp, strerror(err));
        return bundle_errno(err);
    }
    close(fd);
    src = sqlite3_open_v2(w->tmp, &w->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src) return bundle_fail(w->h, src, w->tmp, "cannot open", errbuf, errsz);
    bundle_harden(w->h);
    rc = bundle_exec(w->h, BUNDLE_SQL_JOURNAL_DELETE, w->tmp, "writing", errbuf, errsz);
    if (!rc) rc = bundle_exec(w->h, BUNDLE_SQL_SYNC_FULL, w->tmp, "writing", errbuf, errsz);
    if (!rc) rc = bundle_exec(w->h, BUNDLE_SQL_BEGIN, w->tmp, "writing", errbuf, errsz);
    for (int v = 0; !rc && v < version; v++)
        rc = bundle_exec(w->h, bundle_versions[v].migration, w->tmp, "writing the schema", errbuf, errsz);
    if (!rc) {
        snprintf(sql, sizeof sql, BUNDLE_SQL_SET_APPLICATION_ID, DB_BUNDLE_APPLICATION_ID);
        rc = bundle_exec(w->h, sql, w->tmp, "writing", errbuf, errsz);
    }
    if (!rc) {
        snprintf(sql, sizeof sql, BUNDLE_SQL_SET_USER_VERSION, version);
        rc = bundle_exec(w->h, sql, w->tmp, "writing", errbuf, errsz);
    }
    if (rc) return rc;
    src = sqlite3_prepare_v2(w->h, w->bv->event_put, -1, &w->put, NULL);
    if (src) return bundle_fail(w->h, src, w->tmp, "writing", errbuf, errsz);
    w->hash = pdr_sha256_new();
    return w->hash ? PDR_OK : PDR_ERR_NOMEM;
}

/* One outbox row into the bundle and the checksum. */
static pdr_rc bundle_writer_put(bundle_writer *w, const db_row *r, char *errbuf, size_t errsz)
{
    bundle_val v[BC_COUNT];
    sqlite3_stmt *st = w->put;
    int src = SQLITE_OK;
    pdr_rc rc;

    w->n++;
    v[BC_SEQ] = val_int(w->n);
    v[BC_ROW_ID] = val_int(r->id);
    v[BC_ROUTING_KEY] = val_str(r->routing_key);
    v[BC_ACTION] = val_int(r->action);
    v[BC_DEDUP_KEY] = val_str(r->dedup_key);
    v[BC_FINGERPRINT] = val_str(r->fingerprint);
    v[BC_BODY] = val_text(r->body, r->body_len);
    v[BC_CREATED_MS] = val_int(r->created_ms);
    v[BC_URGENCY] = val_int(r->urgency);
    v[BC_TARGET] = val_str(r->target);
    v[BC_EVENT_MS] = val_int(r->event_ms);
    db_bind_int64(st, "@seq", w->n, &src);
    db_bind_int64(st, "@row_id", r->id, &src);
    db_bind_text(st, "@routing_key", r->routing_key, &src);
    db_bind_int64(st, "@action", r->action, &src);
    db_bind_text(st, "@dedup_key", r->dedup_key, &src);
    db_bind_text(st, "@fingerprint", r->fingerprint, &src);
    db_bind_textn(st, "@body", r->body, r->body_len, &src);
    db_bind_int64(st, "@created_ms", r->created_ms, &src);
    db_bind_int64(st, "@urgency", r->urgency, &src);
    db_bind_text(st, "@target", r->target, &src);
    if (w->bv->hashed > BC_EVENT_MS) db_bind_int64(st, "@event_ms", r->event_ms, &src);
    if (!src) {
        src = sqlite3_step(st);
        if (src == SQLITE_DONE) src = SQLITE_OK;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (src) return bundle_fail(w->h, src, w->tmp, "writing an event", errbuf, errsz);
    rc = bundle_hash_vals(w->hash, v, w->bv->hashed);
    return rc;
}

/* Step 2's end: the manifest, COMMIT, close, fsync. */
static pdr_rc bundle_writer_finish(bundle_writer *w, db_bundle_info *info, char *errbuf, size_t errsz)
{
    sqlite3_stmt *st = NULL;
    pdr_rc rc;
    int src;

    rc = pdr_sha256_final_hex(w->hash, info->sha256);
    w->hash = NULL;
    if (rc) return rc;
    info->count = w->n;
    sqlite3_finalize(w->put);
    w->put = NULL;
    src = sqlite3_prepare_v2(w->h, w->bv->manifest_put, -1, &st, NULL);
    if (src) return bundle_fail(w->h, src, w->tmp, "writing the manifest", errbuf, errsz);
    db_bind_text(st, "@format", DB_BUNDLE_FORMAT, &src);
    db_bind_text(st, "@bundle_id", info->bundle_id, &src);
    db_bind_text(st, "@origin", info->origin, &src);
    db_bind_int64(st, "@created_ms", info->created_ms, &src);
    db_bind_int64(st, "@count", info->count, &src);
    db_bind_text(st, "@sha256", info->sha256, &src);
    if (w->bv->version >= 2) db_bind_text(st, "@site", info->site[0] ? info->site : NULL, &src);
    if (!src) {
        src = sqlite3_step(st);
        if (src == SQLITE_DONE) src = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (src) return bundle_fail(w->h, src, w->tmp, "writing the manifest", errbuf, errsz);
    rc = bundle_exec(w->h, BUNDLE_SQL_COMMIT, w->tmp, "committing", errbuf, errsz);
    if (rc) return rc;
    src = sqlite3_close(w->h);
    w->h = NULL;
    if (src) return bundle_fail(NULL, src, w->tmp, "closing", errbuf, errsz);
    /* synchronous=FULL fsync'd the file at the commit; this one is ours,
    ** so that durability does not rest on a pragma. */
    return bundle_fsync_path(w->tmp, 0, errbuf, errsz);
}

static void bundle_writer_abandon(bundle_writer *w)
{
    char journal[PATH_MAX + 16];
    pdr_sha256_free(w->hash);
    w->hash = NULL;
    sqlite3_finalize(w->put);
    w->put = NULL;
    if (w->h) sqlite3_close(w->h);
    w->h = NULL;
    snprintf(journal, sizeof journal, "%s-journal", w->tmp);
    bundle_unlink(journal);
    bundle_unlink(w->tmp);
}

/* The outbox's identity (outbox_identity). */
static pdr_rc bundle_origin(db_handle *db, char out[33])
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_BUNDLE_ORIGIN);
    pdr_rc rc = PDR_OK;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        bundle_copy(out, 33, sqlite3_column_text(st, 0));
    else
        rc = db_fail(db, src == SQLITE_DONE ? SQLITE_CORRUPT : src, "reading the outbox's identity");
    sqlite3_reset(st);
    return rc;
}

static void bundle_bind_selection(sqlite3_stmt *st, const db_export_opts *o, int *src)
{
    db_bind_text(st, "@routing_key", o->routing_key, src);
    db_bind_int64(st, "@since", o->since_ms, src);
}

pdr_rc db_bundle_export(db_handle *db, const db_export_opts *o, db_bundle_info *info_out,
                        char *errbuf, size_t errsz)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    bundle_writer w;
    db_bundle_info info, check;
    sqlite3_stmt *st;
    db_row row;
    int64_t last_id = 0, removed = 0;
    int version, src = SQLITE_OK, in_tx = 0;
    pdr_rc rc;

    if (errbuf && errsz) errbuf[0] = '\0';
    if (info_out) memset(info_out, 0, sizeof *info_out);
    if (!db || !o || !o->path || !*o->path) return PDR_ERR_INVALID;
    version = o->schema_version ? o->schema_version : DB_BUNDLE_SCHEMA_VERSION;
    if (version < 1 || version > DB_BUNDLE_SCHEMA_VERSION) return PDR_ERR_INVALID;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", o->path) >= (int)sizeof tmp) {
        db_msg(errbuf, errsz, "%s: file name too long", o->path);
        return PDR_ERR_INVALID;
    }
    memset(&w, 0, sizeof w);
    memset(&info, 0, sizeof info);
    w.bv = &bundle_versions[version - 1];
    w.tmp = tmp;
    info.version = version;
    snprintf(info.site, sizeof info.site, "%s", o->site ? o->site : "");
    switch (bundle_exists(o->path, errbuf, errsz)) {
    case 0: break;
    case 1: return PDR_ERR_INVALID;
    default: return PDR_ERR_IO;
    }

    /* 1. the outbox: the write lock for --remove, a snapshot without */
    if (o->remove) {
        rc = db_tx_begin(db);
    } else {
        db_tx_rollback(db);
        rc = db_stmt_run(db, db_stmt(db, DB_STMT_BUNDLE_BEGIN_READ), NULL);
    }
    if (rc) goto fail_db;
    in_tx = 1;
    rc = bundle_origin(db, info.origin);
    if (rc) goto fail_db;
    rc = bundle_random_id(info.bundle_id, errbuf, errsz);
    if (rc) goto out;
    info.created_ms = pdr_clock_now_ms();

    /* 2. FILE.tmp, row by row from the selection */
    st = db_stmt(db, DB_STMT_BUNDLE_SELECT);
    bundle_bind_selection(st, o, &src);
    if (src) {
        sqlite3_reset(st);
        rc = db_fail(db, src, "binding");
        goto fail_db;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (!w.h) {
            rc = bundle_writer_open(&w, version, errbuf, errsz);
            if (rc) break;
        }
        rc = db_row_read(db, st, &row);
        if (rc) break;
        rc = bundle_writer_put(&w, &row, errbuf, errsz);
        last_id = row.id;
        db_row_cleanup(&row);
        if (rc) break;
    }
    if (!rc && src != SQLITE_DONE) rc = db_fail(db, src, "selecting the events");
    sqlite3_reset(st);
    if (rc) {
        if (!errbuf || !errsz || !errbuf[0]) goto fail_db;
        goto out;
    }
    if (!w.h) {
        /* nothing selected: no file */
        db_tx_rollback(db);
        if (info_out) *info_out = info;
        return PDR_OK;
    }
    rc = bundle_writer_finish(&w, &info, errbuf, errsz);
    if (rc) goto out;

    /* 3. read back: the file as written must verify */
    rc = db_bundle_verify(tmp, &check, errbuf, errsz);
    if (!rc && (check.count != info.count || strcmp(check.sha256, info.sha256) != 0 ||
                strcmp(check.bundle_id, info.bundle_id) != 0)) {
        db_msg(errbuf, errsz, "%s: read back, it differs from what was written", tmp);
        rc = PDR_ERR_IO;
    }
    if (rc) goto out;

    /* 4. in place, durably */
    switch (bundle_exists(o->path, errbuf, errsz)) {
    case 0: break;
    case 1: rc = PDR_ERR_INVALID; goto out;
    default: rc = PDR_ERR_IO; goto out;
    }
    if (rename(tmp, o->path) != 0) {
        int err = errno;
        db_msg(errbuf, errsz, "cannot rename %s to %s: %s", tmp, o->path, strerror(err));
        rc = bundle_errno(err);
        goto out;
    }
    bundle_dir_of(o->path, dir, sizeof dir);
    rc = bundle_fsync_path(dir, 1, errbuf, errsz);
    if (rc) {
        /* The bundle is complete but perhaps not durable: keep the events. */
        char why[512];
        snprintf(why, sizeof why, "%s", errbuf && errsz ? errbuf : "");
        db_msg(errbuf, errsz, "%s was written, but its directory could not be synced (%s): the events "
                   "stay in the outbox too", o->path, why);
        db_tx_rollback(db);
        return rc;
    }

    /* 5. the exported rows leave the outbox (invariant 2), or stay */
    if (o->remove) {
        st = db_stmt(db, DB_STMT_BUNDLE_REMOVE);
        src = SQLITE_OK;
        bundle_bind_selection(st, o, &src);
        db_bind_int64(st, "@upto", last_id, &src);
        rc = db_stmt_run_many(db, st, src, &removed);
        if (!rc && removed != info.count) {
            db_msg(errbuf, errsz, "removing the exported events: %lld rows matched, %lld were exported",
                       (long long)removed, (long long)info.count);
            rc = PDR_ERR_INTERNAL;
        }
        if (!rc) rc = db_tx_commit(db);
        if (rc) {
            char why[512];
            snprintf(why, sizeof why, "%s", errbuf && errsz && errbuf[0] ? errbuf : db_errmsg(db));
            db_msg(errbuf, errsz, "the bundle %s is complete, but the events stay in the outbox too "
                       "(removing them failed: %s); a later export carries them again, and import skips "
                       "what it already queued", o->path, why);
            db_tx_rollback(db);
            return rc;
        }
    } else {
        db_tx_rollback(db);
    }
    if (info_out) *info_out = info;
    return PDR_OK;

fail_db:
    db_msg(errbuf, errsz, "%s: %s", db_path(db), db_errmsg(db));
out:
    bundle_writer_abandon(&w);
    if (in_tx) db_tx_rollback(db);
    return rc;
}

/* ---- import ---------------------------------------------------------------- */

/* Runs a bound statement that returns at most one row: 1 a row, 0 none,
** or -1 on error (rc set). Resets st. */
static int bundle_one(db_handle *db, sqlite3_stmt *st, int src, pdr_rc *rc)
{
    int found;
    if (src) {
        sqlite3_reset(st);
        *rc = db_fail(db, src, "binding");
        return -1;
    }
    src = sqlite3_step(st);
    found = src == SQLITE_ROW;
    if (!found && src != SQLITE_DONE) {
        *rc = db_fail(db, src, NULL);
        found = -1;
    }
    sqlite3_reset(st);
    return found;
}

/* Has this outbox seen the row (origin, row_id): imported before, or, for
** a bundle of its own, still here? 1 yes, 0 no, -1 error. */
static int bundle_row_seen(db_handle *db, const char *origin, int own, int64_t row_id, pdr_rc *rc)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_BUNDLE_ROW_SEEN);
    int src = SQLITE_OK, seen;
    db_bind_text(st, "@origin", origin, &src);
    db_bind_int64(st, "@row_id", row_id, &src);
    seen = bundle_one(db, st, src, rc);
    if (seen || !own) return seen;
    st = db_stmt(db, DB_STMT_BUNDLE_ROW_HERE);
    src = SQLITE_OK;
    db_bind_int64(st, "@id", row_id, &src);
    return bundle_one(db, st, src, rc);
}

/* Has the bundle been imported? 1 yes (*when set), 0 no, -1 error. */
static int bundle_imported(db_handle *db, const char *bundle_id, int64_t *when, pdr_rc *rc)
{
    sqlite3_stmt *st = db_stmt(db, DB_STMT_BUNDLE_IMPORT_GET);
    int src = SQLITE_OK, found;
    db_bind_text(st, "@bundle_id", bundle_id, &src);
    if (src) return bundle_one(db, st, src, rc);
    src = sqlite3_step(st);
    found = src == SQLITE_ROW;
    if (found) *when = sqlite3_column_int64(st, 0);
    else if (src != SQLITE_DONE) {
        *rc = db_fail(db, src, NULL);
        found = -1;
    }
    sqlite3_reset(st);
    return found;
}

/* The events of the open, checked bundle h into the outbox, inside its
** write transaction. */
static pdr_rc bundle_import_rows(db_handle *db, sqlite3 *h, const char *path, const char *own_origin,
                                 db_import_result *res, char *errbuf, size_t errsz)
{
    const db_bundle_info *info = &res->info;
    const bundle_version *bv = &bundle_versions[info->version - 1];
    int own = strcmp(info->origin, own_origin) == 0;
    int64_t now = pdr_clock_now_ms(), id;
    sqlite3_stmt *st = NULL;
    db_counts c;
    pdr_rc rc;
    int src;

    rc = db_outbox_counts_row(db, &c);
    if (rc) return rc;
    src = sqlite3_prepare_v2(h, bv->events_get, -1, &st, NULL);
    if (src) return bundle_fail(h, src, path, "reading the events", errbuf, errsz);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, BC_SEQ), row_id = sqlite3_column_int64(st, BC_ROW_ID);
        db_event ev;
        int seen;
        pdr_rc r;

        memset(&ev, 0, sizeof ev);
        ev.routing_key = (const char *)sqlite3_column_text(st, BC_ROUTING_KEY);
        ev.action = (pdr_action)sqlite3_column_int(st, BC_ACTION);
        ev.dedup_key = (const char *)sqlite3_column_text(st, BC_DEDUP_KEY);
        ev.fingerprint = (const char *)sqlite3_column_text(st, BC_FINGERPRINT);
        ev.body = (const char *)sqlite3_column_text(st, BC_BODY);
        ev.body_len = (size_t)sqlite3_column_bytes(st, BC_BODY);
        ev.urgency = sqlite3_column_int(st, BC_URGENCY);
        ev.target = (const char *)sqlite3_column_text(st, BC_TARGET);
        ev.event_ms = sqlite3_column_int64(st, BC_EVENT_MS);
        if (!db_outbox_event_valid(&ev)) {
            db_msg(errbuf, errsz, "%s: event %lld is not one pdrelay queues (no routing key or body, an "
                       "unknown action %d, or a dedup key too long); nothing imported", path, (long long)seq,
                       (int)ev.action);
            rc = PDR_ERR_INVALID;
            break;
        }
        seen = bundle_row_seen(db, info->origin, own, row_id, &rc);
        if (seen < 0) break;
        if (seen) {
            res->present++;
            continue;
        }
        r = db_outbox_push_in_tx(db, &ev, now, sqlite3_column_int64(st, BC_CREATED_MS), 1, &c, &id);
        if (r == PDR_OK) {
            res->imported++;
        } else if (r == PDR_COALESCED) {
            res->present++;
        } else {
            if (r == PDR_ERR_FULL)
                db_msg(errbuf, errsz, "the outbox is full: [outbox] %s refused event %lld of %lld; nothing "
                           "imported (make room, or raise the bound, then import again)",
                           db_bound_key(db_outbox_last_bound(db)), (long long)seq, (long long)info->count);
            rc = r;
            break;
        }
        {
            sqlite3_stmt *put = db_stmt(db, DB_STMT_BUNDLE_ROW_PUT);
            int psrc = SQLITE_OK;
            db_bind_text(put, "@origin", info->origin, &psrc);
            db_bind_int64(put, "@row_id", row_id, &psrc);
            rc = db_stmt_run_many(db, put, psrc, NULL);
            if (rc) break;
        }
    }
    if (!rc && src != SQLITE_DONE) rc = bundle_fail(h, src, path, "reading the events", errbuf, errsz);
    sqlite3_finalize(st);
    if (rc) return rc;
    st = db_stmt(db, DB_STMT_BUNDLE_IMPORT_PUT);
    src = SQLITE_OK;
    db_bind_text(st, "@bundle_id", info->bundle_id, &src);
    db_bind_text(st, "@site", info->site[0] ? info->site : NULL, &src);
    db_bind_text(st, "@origin", info->origin, &src);
    db_bind_int64(st, "@now", now, &src);
    db_bind_int64(st, "@count", info->count, &src);
    return db_stmt_run_many(db, st, src, NULL);
}

pdr_rc db_bundle_import(db_handle *db, const char *path, db_import_result *res,
                        char *errbuf, size_t errsz)
{
    char own[33];
    sqlite3 *h = NULL;
    pdr_rc rc;
    int already;

    if (errbuf && errsz) errbuf[0] = '\0';
    if (!db || !path || !res) return PDR_ERR_INVALID;
    memset(res, 0, sizeof *res);
    db->last_bound = DB_BOUND_NONE;
    rc = bundle_open_checked(path, &h, &res->info, errbuf, errsz);
    if (rc) return rc;

    rc = db_tx_begin(db);
    if (rc) goto fail_db;
    already = bundle_imported(db, res->info.bundle_id, &res->imported_ms, &rc);
    if (already < 0) goto fail_db;
    if (already) {
        res->already = 1;
        db_tx_rollback(db);
        sqlite3_close(h);
        return PDR_OK;
    }
    rc = bundle_origin(db, own);
    if (rc) goto fail_db;
    rc = bundle_import_rows(db, h, path, own, res, errbuf, errsz);
    if (!rc) rc = db_tx_commit(db);
    if (rc) {
        if (!errbuf || !errsz || !errbuf[0]) goto fail_db;
        goto out;
    }
    sqlite3_close(h);
    return PDR_OK;

fail_db:
    db_msg(errbuf, errsz, "%s: %s", db_path(db), db_errmsg(db));
out:
    db_tx_rollback(db);
    sqlite3_close(h);
    res->imported = res->present = 0;
    return rc;
}
