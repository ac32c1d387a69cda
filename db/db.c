/*
** db.c — opening pdrelay's database: the data directory and file modes, the
** checks that refuse a file that is not ours, too new or corrupt, the
** pragmas, the migrations, the statements prepared once; and the helpers
** the rest of db/ shares (dbInt.h): error translation, binding, transactions
** and reading rows. The outbox is in outbox.c, the dedup table in dedup.c,
** export and import of bundles in bundle.c, every SQL text in sql.h (a
** bundle file's own in bundle_sql.h).
**
** NOTES ON THE DESIGN OF THE DATABASE
**
** INVARIANTS
**   1. An event pushed with PDR_OK is durable when the push returns: the push
**      commits before returning, in WAL mode with synchronous=FULL (the WAL
**      is fsync'd at each commit) or NORMAL (fsync'd at checkpoints only: a
**      power cut may lose the last commits, a process crash loses nothing).
**   2. A row leaves the outbox only by db_outbox_delivered() (after a 2xx
**      upstream), db_outbox_purge_dead() (an operator's order),
**      db_outbox_trim_dead() (dead rows past max_dead or max_dead_age), or
**      db_outbox_collapse() (only at the sender's order, under [outbox]
**      resolved_while_queued = collapse: the pending rows of one
**      (routing_key, dedup_key) up to a given id, a trigger that resolved
**      while queued and any acknowledge between), or db_bundle_export()
**      with --remove (the rows it exported, in the transaction that
**      selected them, committed only once the bundle holding them is
**      complete and fsync'd: bundle.c); retrying a dead letter
**      replaces it by a copy in the same transaction. Nothing else deletes
**      a pending row.
**   3. Order. A GROUP is the pending rows of one (routing_key, dedup_key)
**      (IS: the NULL-dedup change events of a key are one group). Within a
**      group rows are delivered strictly in id order: only the group's HEAD
**      (its lowest pending id, outbox.head = 1) can be sent. Across the
**      groups of a key, the key's NEXT row is the head of lowest urgency
**      (critical 0 .. info 3, change 4; an acknowledge or resolve carries
**      its trigger's), then lowest id; the sender only ever takes a key's
**      next row, and a next row that is not due holds back the rest of its
**      key. head is kept by the INSERT (push) and by triggers (a head
**      deleted or leaving state 0 hands it to the next pending row of its
**      group), so every process that writes keeps it right. The next rows
**      are found through the index outbox_sched (routing_key, urgency, id)
**      WHERE state=0 AND head=1, never by a scan of the backlog (sql.h,
**      DB_SQL_NEXT_CTE). Ids are never reused (AUTOINCREMENT).
**   4. Bounds. A push stores an event only while the pending rows are fewer
**      than max_events, the pending bodies' bytes plus its own stay within
**      max_bytes, and the filesystem keeps min_free bytes free after it
**      (db_free_space). The counts are read inside the push's write
**      transaction, so two processes pushing at once cannot both take the
**      last place. Dead rows count towards none of these: they are bounded
**      apart, by max_dead and max_dead_age, and only db_outbox_trim_dead()
**      drops them, oldest first, so a pile of refused events never turns a
**      new event away. A bound lowered below what is stored drops nothing
**      pending: pushes are refused until the outbox drains.
**   5. counts.pending and counts.dead equal the number of rows in each state
**      at every commit: triggers keep them, inside the writing transaction,
**      whichever process writes.
**   6. A file that is not ours, newer than us, or corrupt is never written:
**      every check runs before the first write (even before journal_mode=WAL,
**      which rewrites the header), and checkpoint-on-close stays off until
**      the file is accepted.
**   7. run_state.clean is 1 only from a clean stop of the daemon
**      (db_run_end, once its writer and sender have stopped and committed)
**      to its next start (db_run_begin clears it, in the daemon's first
**      write): a file that says clean was last closed with every
**      transaction whole, and opening trusts it (OPENING, step 4). Nothing
**      else writes run_state.
**   8. Import is idempotent. An event carried in a bundle is queued at most
**      once by an outbox: a bundle whose id is in imports queues nothing,
**      and a row whose (origin, row_id) is in imported_rows (imported
**      from another bundle) or, for a bundle of this outbox's own, whose
**      id is still here, is skipped. The rows, imported_rows and imports
**      are written in one transaction, so a kill leaves all or none of an
**      import (bundle.c).
**
** LIFE OF A ROW
**
**     push ──► PENDING ──(2xx)── db_outbox_delivered ──► (deleted)
**   (or import)  │  ▲
**   (transient)  │  └── db_outbox_reschedule (attempts+1, next_ms, last_error)
**                │  └── db_outbox_wake_heads (next_ms = now: the uplink is back)
**                │
**   (resolved    ├──── db_outbox_collapse ──► (deleted, with the rows of its
**    while queued)                             group up to the given id)
**                │
**   (carried     ├──── db_bundle_export, --remove ──► (deleted, once in a
**    by hand)                                          complete bundle)
**                │
**   (permanent)  └──── db_outbox_kill ───► DEAD ──(db_outbox_retry_*)──► PENDING (new id,
**                      (attempts+1)         │                            back of its group,
**   (max_age)    └──── db_outbox_expire, ──►│                            attempts 0)
**                      db_outbox_kill_older └──(db_outbox_purge_dead,───► (deleted)
**                                                db_outbox_trim_dead)
**
** A pending row is its group's head (head = 1) while no older pending row
** of the group exists; a dead row never is (head = 0).
**
** attempts counts the requests made for the row: one per reschedule (a
** transient failure) and one for the refusal that killed it; an expiry
** (max_age) adds none.
**
** "In flight" is not a stored state: a row being sent is still PENDING, so a
** crash mid-request sends it again on restart (at-least-once, same dedup_key).
**
** OPENING, in this order (each step may refuse; nothing is written before 6)
**   1. mkdir -p data_dir (0700), open(O_CREAT, 0600) the file so that SQLite
**      finds it with our mode and gives -wal and -shm the same.
**   2. sqlite3_open_v2 without SQLITE_OPEN_CREATE; no checkpoint on close.
**   3. application_id, user_version, schema: foreign → CORRUPT, newer →
**      TOO_NEW. A file that is not SQLite fails here with NOTADB → CORRUPT.
**   4. the check, in a time that does not grow with the backlog: none when
**      run_state says the last run stopped cleanly (invariant 7), nor for a
**      new file, nor with skip_check (the daemon's writer and sender: the
**      daemon's own open checked). Otherwise (an unclean stop, a run in
**      progress, a file of version < 3 without run_state) the pages a
**      crash can break are read (below, DB_OPEN_CHECKS in sql.h), with
**      cell_size_check on: a damaged page → CORRUPT.
**   5. pragmas: page_size (a new file's), WAL, synchronous, busy_timeout,
**      journal_size_limit, wal_autocheckpoint, cache.
**   6. migrations from user_version to DB_SCHEMA_VERSION in one BEGIN
**      IMMEDIATE transaction (re-reading the version inside it, for two
**      processes that open a new file at once).
**   7. prepare every statement of sql.h once (SQLITE_PREPARE_PERSISTENT).
**
** WHAT A CRASH CAN BREAK, and so what step 4 reads
** The outbox is in WAL mode. A commit appends its pages to the -wal as
** frames, each with a checksum that chains to the previous one, and only
** a commit frame makes a transaction visible; opening after a crash
** rebuilds the WAL index from the frames up to the last whole commit and
** ignores the rest (SQLite's WAL recovery). So a crash of the process, or
** a power cut on storage that keeps its fsync promises, leaves committed
** transactions whole and uncommitted ones absent: nothing to check. What
** is left is storage that does not: a device that acknowledged an fsync
** and lost or tore the write at the power cut. The writes at risk are the
** last ones, and the pages they touched are few and known: a push appends
** at the right edge of the outbox table and of outbox_age, writes the
** counts row (triggers), a head's entry of outbox_sched and a dedup entry
** (expiring last); a delivery deletes at the left edge (the oldest pending
** rows, outbox_age's first entries); a kill appends to outbox_dead_age;
** the sender rewrites link_state and key_state; a checkpoint copies those
** same pages into the file. Step 4 reads each of them through its b-tree
** (a few root-to-leaf paths each, LIMIT 16 rows, every column so overflow
** pages too), besides the header and schema that step 3 reads: about a
** hundred pages, ~1 ms, at 100 or 1,000,000 rows. A damaged page anywhere
** else (media corruption: a flash block gone bad while nothing wrote it)
** is not a crash's doing; PRAGMA quick_check would find it by reading the
** whole file at every start (0.7 s at 150k rows, cold), which `pdrelay
** queue check` (db_integrity_check) does on demand instead. Until then
** such a page is met by the first read that crosses it, which fails with
** PDR_ERR_CORRUPT (cell_size_check, step 5), never with garbage rows.
**
** SQLite opens a file it may only read (mode 0444, a read-only mount)
** read-only without a word, and the steps above may all succeed on it: the
** daemon then proves the file writable with db_writable_check(), a real
** write, and db_unwritable_explain() asks the system which file and why.
*/
#include "dbInt.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DB_BUSY_TIMEOUT_DEFAULT_MS 5000

/* The advice given with every refusal of an existing file. */
#define DB_ADVICE_CORRUPT \
    "It was left untouched; move it aside to start with an empty outbox, " \
    "or restore a backup."
#define DB_ADVICE_NO_OUTBOX \
    "nothing has been queued yet, or [agent] data_dir points elsewhere"
#define DB_ADVICE_FOREIGN \
    "It was left untouched; check data_dir, or move the file aside to " \
    "start with an empty outbox."

static const char *const db_stmt_sql[DB_STMT_COUNT] = {
#define DB_STMT_SQL(name, sql) sql,
    DB_STATEMENTS(DB_STMT_SQL)
#undef DB_STMT_SQL
};

static const char *const db_stmt_names[DB_STMT_COUNT] = {
#define DB_STMT_NAME(name, sql) #name,
    DB_STATEMENTS(DB_STMT_NAME)
#undef DB_STMT_NAME
};

typedef struct db_migration {
    int version;
    const char *sql;
} db_migration;

static const db_migration db_migrations[] = {
#define DB_MIGRATION_ENTRY(v, sql) {v, sql},
    DB_MIGRATIONS(DB_MIGRATION_ENTRY)
#undef DB_MIGRATION_ENTRY
};

_Static_assert(sizeof db_migrations / sizeof db_migrations[0] == DB_SCHEMA_VERSION,
               "one migration per schema version, the last one DB_SCHEMA_VERSION");

/* ---- messages and error translation -------------------------------------- */

void db_msg(char *buf, size_t sz, const char *fmt, ...)
{
    va_list ap;
    if (!buf || !sz) return;
    va_start(ap, fmt);
    vsnprintf(buf, sz, fmt, ap);
    va_end(ap);
}

pdr_rc db_rc_from_sqlite(int src)
{
    if (src == SQLITE_IOERR_NOMEM) return PDR_ERR_NOMEM;
    switch (src & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return PDR_OK;
    case SQLITE_NOMEM: return PDR_ERR_NOMEM;
    case SQLITE_FULL: return PDR_ERR_DISK_FULL;
    case SQLITE_READONLY: return PDR_ERR_READONLY;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return PDR_ERR_BUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return PDR_ERR_CORRUPT;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN: return PDR_ERR_IO;
    case SQLITE_PERM:
    case SQLITE_AUTH: return PDR_ERR_PERM;
    case SQLITE_TOOBIG:
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH: return PDR_ERR_INVALID;
    default: return PDR_ERR_INTERNAL;
    }
}

static pdr_rc db_rc_from_errno(int err)
{
    switch (err) {
    case EACCES:
    case EPERM: return PDR_ERR_PERM;
    case EROFS: return PDR_ERR_READONLY;
    case ENOSPC:
    case EDQUOT: return PDR_ERR_DISK_FULL;
    case ENOMEM: return PDR_ERR_NOMEM;
    case ENOENT: return PDR_ERR_NOT_FOUND;
    default: return PDR_ERR_IO;
    }
}

pdr_rc db_fail(db_handle *db, int src, const char *what)
{
    const char *msg = db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(src);
    pdr_rc rc = db_rc_from_sqlite(src);
    if (what)
        db_msg(db->errmsg, sizeof db->errmsg, "%s: %s", what, msg);
    else
        db_msg(db->errmsg, sizeof db->errmsg, "%s", msg);
    /* SQLite says "unable to open" or "disk I/O error" for what errno can
    ** tell apart: a permission, a read-only mount, a full disk. */
    if (db->h && (rc == PDR_ERR_IO)) {
        pdr_rc by_errno = db_rc_from_errno(sqlite3_system_errno(db->h));
        if (by_errno == PDR_ERR_PERM || by_errno == PDR_ERR_READONLY ||
            by_errno == PDR_ERR_DISK_FULL)
            rc = by_errno;
    }
    return rc;
}

const char *db_path(const db_handle *db)
{
    return db ? db->path : NULL;
}

const char *db_errmsg(const db_handle *db)
{
    return db ? db->errmsg : "no database";
}

/* ---- statements, binding, transactions ----------------------------------- */

sqlite3_stmt *db_stmt(db_handle *db, db_stmt_id id)
{
    return db->stmt[id];
}

static int db_bind_index(sqlite3_stmt *st, const char *name, int *src)
{
    int i;
    if (*src != SQLITE_OK) return 0;
    i = sqlite3_bind_parameter_index(st, name);
    if (!i) *src = SQLITE_RANGE;
    return i;
}

void db_bind_text(sqlite3_stmt *st, const char *name, const char *s, int *src)
{
    int i = db_bind_index(st, name, src);
    if (!i) return;
    *src = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

void db_bind_textn(sqlite3_stmt *st, const char *name, const char *s, size_t n, int *src)
{
    int i = db_bind_index(st, name, src);
    if (!i) return;
    *src = s ? sqlite3_bind_text64(st, i, s, n, SQLITE_STATIC, SQLITE_UTF8)
             : sqlite3_bind_null(st, i);
}

void db_bind_int64(sqlite3_stmt *st, const char *name, int64_t v, int *src)
{
    int i = db_bind_index(st, name, src);
    if (!i) return;
    *src = sqlite3_bind_int64(st, i, v);
}

pdr_rc db_stmt_run(db_handle *db, sqlite3_stmt *st, int64_t *changes_out)
{
    pdr_rc rc = PDR_OK;
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        if (changes_out) *changes_out = sqlite3_changes64(db->h);
    } else if (src == SQLITE_ROW) {
        db_msg(db->errmsg, sizeof db->errmsg, "statement returned rows: %s", sqlite3_sql(st));
        rc = PDR_ERR_INTERNAL;
    } else {
        rc = db_fail(db, src, NULL);
    }
    sqlite3_reset(st);
    return rc;
}

pdr_rc db_tx_begin(db_handle *db)
{
    /* No caller nests transactions (db.h): one still open is what a
    ** ROLLBACK that failed (out of memory) left. Ending it now keeps that
    ** one failure from failing every later transaction of the connection. */
    if (!sqlite3_get_autocommit(db->h)) {
        db_tx_rollback(db);
        if (!sqlite3_get_autocommit(db->h)) return PDR_ERR_NOMEM;
    }
    return db_stmt_run(db, db->stmt[DB_STMT_BEGIN], NULL);
}

pdr_rc db_tx_commit(db_handle *db)
{
    pdr_rc rc = db_stmt_run(db, db->stmt[DB_STMT_COMMIT], NULL);
    if (rc) db_tx_rollback(db);
    return rc;
}

pdr_rc db_write_probe(db_handle *db)
{
    pdr_rc rc = db_tx_begin(db);
    if (rc) return rc;
    rc = db_stmt_run(db, db->stmt[DB_STMT_WRITE_PROBE], NULL);
    if (rc) {
        db_tx_rollback(db);
        return rc;
    }
    return db_tx_commit(db);
}

/* ---- proving the database writable ---------------------------------------- */

/* A user's name for a message and a chown: the numeric id (which chown
** takes too) when the user has no name. */
static void db_user_name(uid_t uid, char *out, size_t outsz)
{
    struct passwd pw, *res = NULL;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res && res->pw_name)
        snprintf(out, outsz, "%s", res->pw_name);
    else
        snprintf(out, outsz, "%u", (unsigned)uid);
}

/* 0 when the effective user may access path with mode, else the errno
** (ENOENT for a file that does not exist). */
static int db_access_errno(const char *path, int mode)
{
    return faccessat(AT_FDCWD, path, mode, AT_EACCESS) == 0 ? 0 : errno;
}

/* The sentence for a file (the database, its directory, its -wal or -shm)
** the daemon's user may not write. */
static void db_msg_denied(const char *db_path_, const char *file, int is_dir, int err,
                          char *errbuf, size_t errsz)
{
    struct stat sb;
    char user[64], owner[64] = "?";
    unsigned mode = 0;
    db_user_name(geteuid(), user, sizeof user);
    if (stat(file, &sb) == 0) {
        mode = (unsigned)(sb.st_mode & 07777);
        db_user_name(sb.st_uid, owner, sizeof owner);
    }
    if (err == EPERM) {
        db_msg(errbuf, errsz,
               "cannot write %s: operation not permitted (EPERM): %s%s (mode %04o, owner %s) refuses "
               "writes even to its owner. Fix: check its attributes (lsattr -d %s; chattr -i %s)",
               db_path_, is_dir ? "its directory " : "", file, mode, owner, file, file);
        return;
    }
    db_msg(errbuf, errsz,
           "cannot write %s: permission denied (EACCES): %s%s (mode %04o, owner %s) is not writable "
           "by user %s, which pdrelay runs as%s. Fix: chown %s %s%s && chmod %s %s%s",
           db_path_, is_dir ? "its directory " : "", file, mode, owner, user,
           is_dir ? ", so the -wal and -shm files beside the database cannot be created" : "",
           user, is_dir ? file : db_path_, is_dir ? "" : "*", is_dir ? "700" : "600",
           is_dir ? file : db_path_, is_dir ? "" : "*");
}

static void db_msg_rofs(const char *db_path_, const char *dir, char *errbuf, size_t errsz)
{
    db_msg(errbuf, errsz,
           "cannot write %s: read-only file system (EROFS): %s is on a file system mounted "
           "read-only. Fix: remount it read-write (mount -o remount,rw on its mount point), or set "
           "[agent] data_dir to a directory on a writable file system",
           db_path_, dir);
}

/* PDR_ERR_READONLY or PDR_ERR_PERM with errbuf set, or PDR_OK when the
** system sees nothing wrong with the files of data_dir. */
static pdr_rc db_find_unwritable(const char *data_dir, char *errbuf, size_t errsz)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", NULL};
    struct statvfs vfs;
    char path[4096], file[4112];
    int err;

    snprintf(path, sizeof path, "%s/%s", data_dir, DB_FILE_NAME);
    if (statvfs(data_dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        db_msg_rofs(path, data_dir, errbuf, errsz);
        return PDR_ERR_READONLY;
    }
    /* The database, then an existing -wal or -shm (a missing one is
    ** ENOENT: fine), then the directory (the last suffix: NULL). */
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        int is_dir = suffixes[i] == NULL;
        snprintf(file, sizeof file, "%s%s", is_dir ? data_dir : path, is_dir ? "" : suffixes[i]);
        err = db_access_errno(file, is_dir ? W_OK | X_OK : R_OK | W_OK);
        if (err == EROFS) {
            db_msg_rofs(path, data_dir, errbuf, errsz);
            return PDR_ERR_READONLY;
        }
        if (err == EACCES || err == EPERM) {
            db_msg_denied(path, file, is_dir, err, errbuf, errsz);
            return PDR_ERR_PERM;
        }
    }
    return PDR_OK;
}

pdr_rc db_unwritable_explain(const char *data_dir, pdr_rc rc, char *errbuf, size_t errsz)
{
    pdr_rc why;
    if (!data_dir || (rc != PDR_ERR_READONLY && rc != PDR_ERR_PERM && rc != PDR_ERR_IO)) return rc;
    why = db_find_unwritable(data_dir, errbuf, errsz);
    return why ? why : rc;
}

pdr_rc db_writable_check(db_handle *db, char *errbuf, size_t errsz)
{
    char dir[4096];
    const char *slash;
    pdr_rc rc, why;

    if (!db) return PDR_ERR_INVALID;
    rc = db_write_probe(db);
    if (!rc) return PDR_OK;
    slash = strrchr(db->path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - db->path) : 1, slash ? db->path : ".");
    why = rc == PDR_ERR_READONLY || rc == PDR_ERR_PERM || rc == PDR_ERR_IO
              ? db_find_unwritable(dir, errbuf, errsz) : PDR_OK;
    if (why) return why;
    db_msg(errbuf, errsz, "cannot write %s: %s (%s)", db->path, pdr_strerror(rc), db->errmsg);
    return rc;
}

pdr_rc db_daemon_lock(const char *data_dir, int *fd_out, char *errbuf, size_t errsz)
{
    char path[4200], pid[32] = "";
    int fd;
    ssize_t n;
    *fd_out = -1;
    snprintf(path, sizeof path, "%s/%s", data_dir, DB_LOCK_FILE_NAME);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int err = errno;
        db_msg(errbuf, errsz, "cannot open %s: %s", path, strerror(err));
        return db_rc_from_errno(err);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        n = read(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (err != EWOULDBLOCK) {
            db_msg(errbuf, errsz, "cannot lock %s: %s", path, strerror(err));
            return PDR_ERR_IO;
        }
        db_msg(errbuf, errsz, "another pdrelay run (pid %s) already serves the outbox in %s; one daemon per "
               "outbox (stop it, or give this one its own [agent] data_dir)", pid[0] ? pid : "unknown", data_dir);
        return PDR_ERR_BUSY;
    }
    n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The lock holds without the pid: it is only for the message. */
    }
    *fd_out = fd;
    return PDR_OK;
}

long db_daemon_pid(const char *data_dir, char *why, size_t whysz)
{
    char path[4200], buf[32] = "", *end;
    ssize_t n;
    long pid;
    int fd;

    snprintf(path, sizeof path, "%s/%s", data_dir, DB_LOCK_FILE_NAME);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno != ENOENT) {
        db_msg(why, whysz, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0) {
        if (fd >= 0) close(fd);   /* (closing releases the lock we took) */
        return 0;
    }
    if (errno != EWOULDBLOCK) {
        db_msg(why, whysz, "cannot test the lock on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno || end == buf || (*end && *end != '\n') || pid <= 1) {
        db_msg(why, whysz, "%s is locked but holds no pid; is it a pdrelay data_dir?", path);
        return -1;
    }
    return pid;
}

void db_tx_rollback(db_handle *db)
{
    /* After SQLITE_FULL, IOERR or NOMEM SQLite may have rolled back already. */
    if (sqlite3_get_autocommit(db->h)) return;
    sqlite3_step(db->stmt[DB_STMT_ROLLBACK]);
    sqlite3_reset(db->stmt[DB_STMT_ROLLBACK]);
}

/* ---- reading rows -------------------------------------------------------- */

/* A malloc'd copy of text column i, NULL for SQL NULL. *nomem set on OOM. */
static char *db_col_dup(sqlite3_stmt *st, int i, size_t *len_out, int *nomem)
{
    const unsigned char *s;
    size_t n;
    char *p;
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        if (len_out) *len_out = 0;
        return NULL;
    }
    s = sqlite3_column_text(st, i);
    n = (size_t)sqlite3_column_bytes(st, i);
    if (!s) {
        *nomem = 1;
        return NULL;
    }
    p = pdr_malloc(n + 1);
    if (!p) {
        *nomem = 1;
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = '\0';
    if (len_out) *len_out = n;
    return p;
}

pdr_rc db_row_read(db_handle *db, sqlite3_stmt *st, db_row *row)
{
    int nomem = 0;
    memset(row, 0, sizeof *row);
    row->id = sqlite3_column_int64(st, 0);
    row->routing_key = db_col_dup(st, 1, NULL, &nomem);
    row->action = (pdr_action)sqlite3_column_int(st, 2);
    row->dedup_key = db_col_dup(st, 3, NULL, &nomem);
    row->fingerprint = db_col_dup(st, 4, NULL, &nomem);
    row->body = db_col_dup(st, 5, &row->body_len, &nomem);
    row->created_ms = sqlite3_column_int64(st, 6);
    row->attempts = sqlite3_column_int64(st, 7);
    row->next_ms = sqlite3_column_int64(st, 8);
    row->last_error = db_col_dup(st, 9, NULL, &nomem);
    row->state = sqlite3_column_int(st, 10) ? DB_ROW_DEAD : DB_ROW_PENDING;
    row->dead_ms = sqlite3_column_int64(st, 11);
    row->urgency = sqlite3_column_int(st, 12);
    row->target = db_col_dup(st, 13, NULL, &nomem);
    row->event_ms = sqlite3_column_int64(st, 14);
    if (!nomem && (!row->routing_key || !row->body)) {
        /* NOT NULL columns: only a damaged file gets here. */
        db_msg(db->errmsg, sizeof db->errmsg,
               "database disk image is malformed: outbox row %lld lacks its %s",
               (long long)row->id, row->routing_key ? "body" : "routing key");
        db_row_cleanup(row);
        return PDR_ERR_CORRUPT;
    }
    if (nomem) {
        db_row_cleanup(row);
        return PDR_ERR_NOMEM;
    }
    return PDR_OK;
}

void db_row_cleanup(db_row *row)
{
    if (!row) return;
    free(row->routing_key);
    free(row->dedup_key);
    free(row->fingerprint);
    free(row->body);
    free(row->last_error);
    free(row->target);
    memset(row, 0, sizeof *row);
}

void db_rows_free(db_row *rows, size_t n)
{
    size_t i;
    if (!rows) return;
    for (i = 0; i < n; i++) db_row_cleanup(&rows[i]);
    free(rows);
}

pdr_rc db_stmt_run_many(db_handle *db, sqlite3_stmt *st, int src, int64_t *n_out)
{
    int64_t changes = 0;
    pdr_rc rc;
    if (n_out) *n_out = 0;
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    rc = db_stmt_run(db, st, &changes);
    if (!rc && n_out) *n_out = changes;
    return rc;
}

pdr_rc db_stmt_run_one(db_handle *db, sqlite3_stmt *st, int src)
{
    int64_t changes = 0;
    pdr_rc rc;
    if (src) {
        sqlite3_reset(st);
        return db_fail(db, src, "binding");
    }
    rc = db_stmt_run(db, st, &changes);
    if (rc) return rc;
    return changes ? PDR_OK : PDR_ERR_NOT_FOUND;
}

pdr_rc db_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t first, size_t max)
{
    size_t ncap;
    void *grown;
    if (n < *cap) return PDR_OK;
    ncap = *cap ? *cap * 2 : first;
    if (ncap > max) ncap = max;
    if (ncap <= n || ncap > SIZE_MAX / elem) return PDR_ERR_NOMEM;
    grown = pdr_realloc(*arr, ncap * elem);
    if (!grown) return PDR_ERR_NOMEM;
    *arr = grown;
    *cap = ncap;
    return PDR_OK;
}

pdr_rc db_rows_collect(db_handle *db, sqlite3_stmt *st, size_t max,
                       db_row **rows_out, size_t *n_out)
{
    db_row *rows = NULL;
    size_t n = 0, cap = 0;
    pdr_rc rc = PDR_OK;
    int src;

    *rows_out = NULL;
    *n_out = 0;
    while (n < max) {
        src = sqlite3_step(st);
        if (src == SQLITE_DONE) break;
        if (src != SQLITE_ROW) {
            rc = db_fail(db, src, NULL);
            goto out;
        }
        /* The array grows with the result, which max and the outbox's own
        ** bound (max_events) cap. */
        rc = db_grow((void **)&rows, &cap, n, sizeof *rows, 16, max);
        if (rc) goto out;
        rc = db_row_read(db, st, &rows[n]);
        if (rc) goto out;
        n++;
    }
out:
    sqlite3_reset(st);
    if (rc) {
        db_rows_free(rows, n);
        return rc;
    }
    *rows_out = rows;
    *n_out = n;
    return PDR_OK;
}

/* ---- opening ------------------------------------------------------------- */

/* mkdir -p dir; directories we create get mode 0700. */
static pdr_rc db_mkdirs(const char *dir, char *errbuf, size_t errsz)
{
    char *buf = pdr_strdup(dir);
    char *p;
    struct stat sb;
    pdr_rc rc = PDR_OK;

    if (!buf) return PDR_ERR_NOMEM;
    for (p = buf + 1; ; p++) {
        char c = *p;
        if (c != '/' && c != '\0') continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            int err = errno;
            db_msg(errbuf, errsz, "cannot create data directory %s: %s", buf, strerror(err));
            rc = db_rc_from_errno(err);
            if (rc == PDR_ERR_NOT_FOUND) rc = PDR_ERR_IO;
            goto out;
        }
        *p = c;
        if (c == '\0') break;
    }
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        /* A setting to correct, not a permission to widen (ENOTDIR). */
        db_msg(errbuf, errsz, "[agent] data_dir %s is not a directory (ENOTDIR): set data_dir to a directory", buf);
        rc = PDR_ERR_CONFIG;
    }
out:
    free(buf);
    return rc;
}

/* Creates the file, if missing, with mode 0600 (SQLite would use 0644).
** An existing file is not opened at all: close() drops every POSIX lock
** this process holds on the file, so opening and closing it here while
** another connection of the same process (the daemon's sender and its main
** thread) has it open would silently release that connection's locks; the
** next process to close the database would then think it the last one and
** delete the -wal and -shm files under it. O_EXCL: only a file we just
** made, which nobody can have locked, is ever closed here. */
/* The outbox must be a regular file: a FIFO or a device would hang or
** mislead SQLite's open (a FIFO blocks it for good). */
static pdr_rc db_file_regular(const char *path, char *errbuf, size_t errsz)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || S_ISREG(sb.st_mode)) return PDR_OK;   /* a vanished file: the open says */
    db_msg(errbuf, errsz, "%s is not a regular file (a %s): the outbox is a SQLite database file; move it "
           "away or set [agent] data_dir elsewhere",
           path, S_ISDIR(sb.st_mode) ? "directory" : S_ISFIFO(sb.st_mode) ? "FIFO" : S_ISSOCK(sb.st_mode) ? "socket"
                 : "device");
    return PDR_ERR_CONFIG;
}

static pdr_rc db_file_create(const char *path, char *errbuf, size_t errsz)
{
    pdr_rc rc;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        if (err == EEXIST) return db_file_regular(path, errbuf, errsz);
        db_msg(errbuf, errsz, "cannot open %s: %s", path, strerror(err));
        rc = db_rc_from_errno(err);
        return rc == PDR_ERR_NOT_FOUND ? PDR_ERR_IO : rc;
    }
    close(fd);
    return PDR_OK;
}

/*
** The URI a read-only open gives SQLite, which must create nothing (a
** -wal or -shm file left by `pdrelay queue status`, perhaps root's, or in a
** directory it cannot write). A WAL database is read through its -shm, which
** a read-only connection creates when it is missing, and cannot create in a
** read-only directory. So:
**   - no -wal file: no connection has the database open (a connection in
**     WAL mode keeps it until the last one closes, which checkpoints into
**     the file and deletes it), so the file alone holds every commit:
**     immutable=1 reads it without locks, -wal or -shm. A writer that opens
**     it meanwhile commits into its WAL, not into the file (until a
**     checkpoint), so the snapshot stays sound.
**   - a -wal file: a writer (the daemon) is running, or died: mode=ro reads
**     through its -wal and -shm, which exist, and sees its commits.
** *out: a malloc'd "file:" URI, the path percent-encoded.
*/
static pdr_rc db_read_only_uri(const char *path, char **out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(path), o = 0;
    size_t cap = sizeof "file://" + 3 * n + sizeof "?immutable=1";
    char *wal = pdr_malloc(n + sizeof "-wal");
    char *uri = pdr_malloc(cap);
    struct stat sb;
    int has_wal;

    *out = NULL;
    if (!wal || !uri) {
        free(wal);
        free(uri);
        return PDR_ERR_NOMEM;
    }
    snprintf(wal, n + sizeof "-wal", "%s-wal", path);
    has_wal = stat(wal, &sb) == 0;
    free(wal);
    /* "file:///abs" (an empty authority) or "file:rel" */
    o = (size_t)snprintf(uri, cap, "%s", path[0] == '/' ? "file://" : "file:");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%' || c == '?' || c == '#' || c <= ' ' || c >= 0x7F) {
            uri[o++] = '%';
            uri[o++] = hex[c >> 4];
            uri[o++] = hex[c & 15];
        } else {
            uri[o++] = (char)c;
        }
    }
    snprintf(uri + o, cap - o, "%s", has_wal ? "?mode=ro" : "?immutable=1");
    *out = uri;
    return PDR_OK;
}

int db_query_int64(sqlite3 *h, const char *sql, int64_t *v, int no_row)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    if (src) return src;
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        src = no_row;
    }
    sqlite3_finalize(st);
    return src;
}

/* Explains an SQLite failure met while opening; returns its translation. */
static pdr_rc db_open_fail(db_handle *db, int src, const char *doing, char *errbuf, size_t errsz)
{
    pdr_rc rc = db_fail(db, src, doing);
    switch (rc) {
    case PDR_ERR_CORRUPT:
        if ((src & 0xff) == SQLITE_NOTADB)
            db_msg(errbuf, errsz, "%s is not a SQLite database (%s). " DB_ADVICE_FOREIGN,
                   db->path, db->errmsg);
        else
            db_msg(errbuf, errsz, "%s is corrupt (%s). " DB_ADVICE_CORRUPT,
                   db->path, db->errmsg);
        break;
    case PDR_ERR_BUSY:
        db_msg(errbuf, errsz, "%s is locked by another process (%s); try again",
               db->path, db->errmsg);
        break;
    default:
        db_msg(errbuf, errsz, "cannot open %s: %s", db->path, db->errmsg);
        break;
    }
    return rc;
}

/*
** Step 3: is this file ours, and which version? *version_out gets its
** user_version (0 for a new, empty file).
*/
static pdr_rc db_check_header(db_handle *db, int64_t *version_out, char *errbuf, size_t errsz)
{
    int64_t app_id = 0, version = 0, n_schema = 0;
    int src;

    src = db_query_int64(db->h, DB_SQL_APPLICATION_ID, &app_id, SQLITE_INTERNAL);
    if (!src) src = db_query_int64(db->h, DB_SQL_USER_VERSION, &version, SQLITE_INTERNAL);
    if (!src) src = db_query_int64(db->h, DB_SQL_SCHEMA_COUNT, &n_schema, SQLITE_INTERNAL);
    if (src) return db_open_fail(db, src, "reading the header", errbuf, errsz);

    if (app_id != 0 && app_id != DB_APPLICATION_ID) {
        db_msg(errbuf, errsz,
               "%s is not a pdrelay database (application_id 0x%08llx, pdrelay's is 0x%08x). "
               DB_ADVICE_FOREIGN,
               db->path, (unsigned long long)(uint32_t)app_id, (unsigned)DB_APPLICATION_ID);
        db_msg(db->errmsg, sizeof db->errmsg, "not a pdrelay database");
        return PDR_ERR_CORRUPT;
    }
    if (version > DB_SCHEMA_VERSION) {
        db_msg(errbuf, errsz,
               "%s has schema version %lld, newer than this pdrelay (%d) understands. "
               "It was left untouched; upgrade pdrelay (this is %s) to open it.",
               db->path, (long long)version, DB_SCHEMA_VERSION, PDR_VERSION);
        db_msg(db->errmsg, sizeof db->errmsg, "schema version %lld is newer than %d",
               (long long)version, DB_SCHEMA_VERSION);
        return PDR_ERR_TOO_NEW;
    }
    if (app_id == 0 && n_schema > 0) {
        db_msg(errbuf, errsz,
               "%s holds tables but is not a pdrelay database (no pdrelay application_id). "
               DB_ADVICE_FOREIGN, db->path);
        db_msg(db->errmsg, sizeof db->errmsg, "not a pdrelay database");
        return PDR_ERR_CORRUPT;
    }
    if (app_id == DB_APPLICATION_ID && (version == 0 || n_schema == 0)) {
        db_msg(errbuf, errsz,
               "%s is damaged: it is marked as pdrelay's but has no schema (version %lld). "
               DB_ADVICE_CORRUPT, db->path, (long long)version);
        db_msg(db->errmsg, sizeof db->errmsg, "no schema");
        return PDR_ERR_CORRUPT;
    }
    *version_out = version;
    return PDR_OK;
}

typedef struct db_open_check {
    int version;
    const char *sql;
} db_open_check;

static const db_open_check db_open_checks[] = {
#define DB_OPEN_CHECK_ENTRY(v, sql) {v, sql},
    DB_OPEN_CHECKS(DB_OPEN_CHECK_ENTRY)
#undef DB_OPEN_CHECK_ENTRY
};

/* Step 4: did the last run stop cleanly (invariant 7)? A file of version
** < 3 has no run_state, and a missing row says nothing: not clean. */
static pdr_rc db_read_clean(db_handle *db, int64_t version, int *clean_out, char *errbuf, size_t errsz)
{
    int64_t clean = 0;
    int src;
    *clean_out = 0;
    if (version < 3) return PDR_OK;
    src = db_query_int64(db->h, DB_SQL_RUN_STATE_CLEAN, &clean, SQLITE_INTERNAL);
    if (src == SQLITE_INTERNAL) return PDR_OK;      /* no row */
    if (src) return db_open_fail(db, src, "reading run_state", errbuf, errsz);
    *clean_out = clean == 1;
    return PDR_OK;
}

static int64_t db_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Step 4 after an unclean stop: reads the pages a crash can break (the
** header comment, "What a crash can break"; DB_OPEN_CHECKS), every column
** of every row, with cell_size_check on so that a damaged page fails here. */
static pdr_rc db_check_after_crash(db_handle *db, int64_t version, char *errbuf, size_t errsz)
{
    int64_t t0 = db_mono_us();
    int src = sqlite3_exec(db->h, DB_SQL_CELL_SIZE_CHECK, NULL, NULL, NULL);
    if (src) return db_open_fail(db, src, "checking after an unclean stop", errbuf, errsz);
    for (size_t i = 0; i < sizeof db_open_checks / sizeof db_open_checks[0]; i++) {
        sqlite3_stmt *st = NULL;
        if (db_open_checks[i].version > version) continue;
        src = sqlite3_prepare_v2(db->h, db_open_checks[i].sql, -1, &st, NULL);
        if ((src & 0xff) == SQLITE_ERROR) {
            /* A table or index of this version missing: not the schema
            ** pdrelay made. */
            db_msg(db->errmsg, sizeof db->errmsg, "%s", sqlite3_errmsg(db->h));
            db_msg(errbuf, errsz, "%s is damaged: its schema (version %lld) lacks what pdrelay made (%s). "
                   DB_ADVICE_CORRUPT, db->path, (long long)version, db->errmsg);
            return PDR_ERR_CORRUPT;
        }
        if (src) return db_open_fail(db, src, "checking after an unclean stop", errbuf, errsz);
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            int n = sqlite3_column_count(st);
            for (int c = 0; c < n; c++) {
                (void)sqlite3_column_blob(st, c);   /* loads its overflow pages */
                (void)sqlite3_column_bytes(st, c);
            }
        }
        sqlite3_finalize(st);
        if (src != SQLITE_DONE)
            return db_open_fail(db, src, "checking after an unclean stop", errbuf, errsz);
    }
    db->open_checked = 1;
    db->open_check_us = db_mono_us() - t0;
    return PDR_OK;
}

int db_open_checked(const db_handle *db, int64_t *us_out)
{
    if (!db || !db->open_checked) return 0;
    if (us_out) *us_out = db->open_check_us;
    return 1;
}

static pdr_rc db_exec(db_handle *db, const char *sql, const char *doing, char *errbuf, size_t errsz)
{
    int src = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    if (src) return db_open_fail(db, src, doing, errbuf, errsz);
    return PDR_OK;
}

/* Step 5. */
static pdr_rc db_set_pragmas(db_handle *db, const db_options *opt, char *errbuf, size_t errsz)
{
    sqlite3_stmt *st = NULL;
    pdr_rc rc;
    int src;

    if (!opt->read_only) {
        /* Before anything writes the file (journal_mode=WAL writes the
        ** header of a new one); ignored for an existing file. */
        rc = db_exec(db, DB_SQL_PAGE_SIZE, "setting page_size", errbuf, errsz);
        if (rc) return rc;
        /* journal_mode answers with the mode in force: on a file system
        ** without shared memory it stays "delete", which we refuse rather
        ** than lose group commit and concurrent readers silently. */
        src = sqlite3_prepare_v2(db->h, DB_SQL_JOURNAL_WAL, -1, &st, NULL);
        if (!src) src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(st, 0);
            if (!mode || strcmp(mode, "wal") != 0) {
                db_msg(errbuf, errsz, "%s: cannot switch to WAL mode (journal_mode is %s)",
                       db->path, mode ? mode : "unknown");
                sqlite3_finalize(st);
                return PDR_ERR_IO;
            }
            src = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (src) return db_open_fail(db, src, "setting WAL mode", errbuf, errsz);
    }
    rc = db_exec(db, opt->sync_full ? DB_SQL_SYNC_FULL : DB_SQL_SYNC_NORMAL,
                 "setting synchronous", errbuf, errsz);
    if (!rc) rc = db_exec(db, DB_SQL_JOURNAL_SIZE_LIMIT, "setting journal_size_limit",
                          errbuf, errsz);
    if (!rc) rc = db_exec(db, DB_SQL_WAL_AUTOCHECKPOINT, "setting wal_autocheckpoint",
                          errbuf, errsz);
    if (!rc) rc = db_exec(db, DB_SQL_CACHE_SIZE, "setting cache_size", errbuf, errsz);
    if (!rc) rc = db_exec(db, DB_SQL_TEMP_STORE, "setting temp_store", errbuf, errsz);
    if (!rc) rc = db_exec(db, DB_SQL_CELL_SIZE_CHECK, "setting cell_size_check", errbuf, errsz);
    return rc;
}

/* Step 6: from `from` to DB_SCHEMA_VERSION in one transaction. */
static pdr_rc db_migrate(db_handle *db, int64_t from, char *errbuf, size_t errsz)
{
    char sql[64];
    int64_t version = 0, app_id = 0;
    pdr_rc rc;
    int src;
    size_t i;

    if (from == DB_SCHEMA_VERSION) return PDR_OK;
    rc = db_exec(db, DB_SQL_MIGRATE_BEGIN, "migrating", errbuf, errsz);
    if (rc) return rc;
    /* Another process may have migrated between our check and our lock. */
    src = db_query_int64(db->h, DB_SQL_USER_VERSION, &version, SQLITE_INTERNAL);
    if (!src) src = db_query_int64(db->h, DB_SQL_APPLICATION_ID, &app_id, SQLITE_INTERNAL);
    if (src) {
        rc = db_open_fail(db, src, "migrating", errbuf, errsz);
        goto out;
    }
    if (version > DB_SCHEMA_VERSION || (app_id != 0 && app_id != DB_APPLICATION_ID)) {
        /* Changed under us: check again from the start, and refuse. */
        rc = db_check_header(db, &version, errbuf, errsz);
        if (!rc) rc = PDR_ERR_INTERNAL;
        goto out;
    }
    for (i = 0; i < sizeof db_migrations / sizeof db_migrations[0]; i++) {
        if (db_migrations[i].version <= version) continue;
        rc = db_exec(db, db_migrations[i].sql, "migrating", errbuf, errsz);
        if (rc) goto out;
    }
    snprintf(sql, sizeof sql, DB_SQL_SET_APPLICATION_ID, DB_APPLICATION_ID);
    rc = db_exec(db, sql, "migrating", errbuf, errsz);
    if (rc) goto out;
    snprintf(sql, sizeof sql, DB_SQL_SET_USER_VERSION, DB_SCHEMA_VERSION);
    rc = db_exec(db, sql, "migrating", errbuf, errsz);
    if (rc) goto out;
    rc = db_exec(db, DB_SQL_MIGRATE_COMMIT, "migrating", errbuf, errsz);
out:
    if (rc && !sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, DB_SQL_MIGRATE_ROLLBACK, NULL, NULL, NULL);
    return rc;
}

/* Step 7. */
static pdr_rc db_prepare_all(db_handle *db, char *errbuf, size_t errsz)
{
    int i, src;
    for (i = 0; i < DB_STMT_COUNT; i++) {
        src = sqlite3_prepare_v3(db->h, db_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                 &db->stmt[i], NULL);
        if (src) {
            pdr_rc rc = db_fail(db, src, db_stmt_names[i]);
            db_msg(errbuf, errsz, "%s: cannot prepare statement %s: %s",
                   db->path, db_stmt_names[i], db->errmsg);
            return rc;
        }
    }
    return PDR_OK;
}

pdr_rc db_open(const db_options *opt, db_handle **out, char *errbuf, size_t errsz)
{
    db_handle *db = NULL;
    char *uri = NULL;
    int64_t version = 0;
    pdr_rc rc;
    int src, flags;
    size_t len;

    if (errbuf && errsz) errbuf[0] = '\0';
    if (!out) return PDR_ERR_INVALID;
    *out = NULL;
    if (!opt || !opt->data_dir || !*opt->data_dir) {
        db_msg(errbuf, errsz, "no data directory given");
        return PDR_ERR_INVALID;
    }

    db = pdr_calloc(1, sizeof *db);
    if (!db) return PDR_ERR_NOMEM;
    len = strlen(opt->data_dir) + sizeof "/" DB_FILE_NAME;
    db->path = pdr_malloc(len);
    if (!db->path) {
        rc = PDR_ERR_NOMEM;
        goto out;
    }
    snprintf(db->path, len, "%s/%s", opt->data_dir, DB_FILE_NAME);
    db->dir = pdr_strdup(opt->data_dir);
    if (!db->dir) {
        rc = PDR_ERR_NOMEM;
        goto out;
    }
    db->max_events = opt->max_events > 0 ? opt->max_events : DB_MAX_EVENTS_DEFAULT;
    db->max_bytes = opt->max_bytes > 0 ? opt->max_bytes : DB_MAX_BYTES_DEFAULT;
    db->min_free = opt->min_free > 0 ? opt->min_free : 0;
    db->max_dead = opt->max_dead > 0 ? opt->max_dead : DB_MAX_DEAD_DEFAULT;
    db->max_dead_age_ms = opt->max_dead_age_ms > 0 ? opt->max_dead_age_ms : DB_MAX_DEAD_AGE_DEFAULT_MS;
    db->free_read = -1;
    db->read_only = opt->read_only ? 1 : 0;
    db->dedup_ttl_ms = opt->dedup_ttl_ms > 0 ? opt->dedup_ttl_ms : 0;

    /* 1. directory and file, with our modes */
    if (db->read_only) {
        struct stat sb;
        if (stat(db->path, &sb) != 0) {
            int err = errno;
            rc = db_rc_from_errno(err);
            if (rc == PDR_ERR_NOT_FOUND)
                db_msg(errbuf, errsz, "no outbox at %s: " DB_ADVICE_NO_OUTBOX, db->path);
            else
                db_msg(errbuf, errsz, "cannot open %s: %s", db->path, strerror(err));
            goto out;
        }
        rc = db_file_regular(db->path, errbuf, errsz);
        if (rc) goto out;
    } else {
        rc = db_mkdirs(opt->data_dir, errbuf, errsz);
        if (rc) goto out;
        rc = db_file_create(db->path, errbuf, errsz);
        if (rc) goto out;
    }

    /* 2. connection: never creates, never checkpoints into a file we refuse */
    flags = (db->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
            SQLITE_OPEN_NOMUTEX;
    if (db->read_only) {
        rc = db_read_only_uri(db->path, &uri);
        if (rc) goto out;
        flags |= SQLITE_OPEN_URI;
    }
    src = sqlite3_open_v2(uri ? uri : db->path, &db->h, flags, NULL);
    if (src) {
        rc = db_open_fail(db, src, NULL, errbuf, errsz);
        goto out;
    }
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_db_config(db->h, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_db_config(db->h, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_busy_timeout(db->h, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms
                                                         : DB_BUSY_TIMEOUT_DEFAULT_MS);

    /* 3. ours? which version? 4. sound? */
    rc = db_check_header(db, &version, errbuf, errsz);
    if (rc) goto out;
    if (!opt->skip_check && version > 0) {
        int clean = 0;
        rc = db_read_clean(db, version, &clean, errbuf, errsz);
        if (!rc && !clean) rc = db_check_after_crash(db, version, errbuf, errsz);
        if (rc) goto out;
    }
    if (db->read_only && version == 0) {
        db_msg(errbuf, errsz, "no outbox in %s (an empty file): " DB_ADVICE_NO_OUTBOX, db->path);
        rc = PDR_ERR_NOT_FOUND;
        goto out;
    }
    if (db->read_only && version < DB_SCHEMA_VERSION) {
        /* The reads of this version know only its shape (db.h, db_open). */
        db_msg(errbuf, errsz,
               "%s has schema version %lld, older than this pdrelay (%d), which does not read "
               "it without migrating it: start `pdrelay run` once (or queue with `pdrelay send`), "
               "which migrates it, then ask again",
               db->path, (long long)version, DB_SCHEMA_VERSION);
        rc = version == 0 ? PDR_ERR_NOT_FOUND : PDR_ERR_INVALID;
        goto out;
    }

    /* 5. pragmas  6. migrations  7. statements */
    rc = db_set_pragmas(db, opt, errbuf, errsz);
    if (rc) goto out;
    if (!db->read_only) {
        rc = db_migrate(db, version, errbuf, errsz);
        if (rc) goto out;
    }
    rc = db_prepare_all(db, errbuf, errsz);
    if (rc) goto out;

    /* Accepted: from now on the last connection to close checkpoints. */
    sqlite3_db_config(db->h, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, (int *)NULL);
    db->errmsg[0] = '\0';
    free(uri);
    *out = db;
    return PDR_OK;

out:
    if (errbuf && errsz && !errbuf[0])
        db_msg(errbuf, errsz, "cannot open %s: %s", db->path ? db->path : opt->data_dir,
               pdr_strerror(rc));
    free(uri);
    db_close(db);
    return rc;
}

void db_close(db_handle *db)
{
    int i;
    if (!db) return;
    for (i = 0; i < DB_STMT_COUNT; i++) sqlite3_finalize(db->stmt[i]);
    if (db->h) sqlite3_close(db->h);
    free(db->path);
    free(db->dir);
    free(db);
}

/* ---- settings ------------------------------------------------------------ */

pdr_rc db_settings_get(db_handle *db, db_settings *out)
{
    static const db_stmt_id ids[] = {
        DB_STMT_PRAGMA_JOURNAL_MODE, DB_STMT_PRAGMA_SYNCHRONOUS, DB_STMT_PRAGMA_BUSY_TIMEOUT,
        DB_STMT_PRAGMA_JOURNAL_SIZE_LIMIT, DB_STMT_PRAGMA_USER_VERSION,
        DB_STMT_PRAGMA_APPLICATION_ID, DB_STMT_PRAGMA_PAGE_SIZE, DB_STMT_PRAGMA_WAL_AUTOCHECKPOINT
    };
    size_t i;
    int src;

    if (!db || !out) return PDR_ERR_INVALID;
    memset(out, 0, sizeof *out);
    for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        sqlite3_stmt *st = db->stmt[ids[i]];
        src = sqlite3_step(st);
        if (src != SQLITE_ROW) {
            pdr_rc rc = db_fail(db, src == SQLITE_DONE ? SQLITE_INTERNAL : src, NULL);
            sqlite3_reset(st);
            return rc;
        }
        switch (ids[i]) {
        case DB_STMT_PRAGMA_JOURNAL_MODE: {
            const char *m = (const char *)sqlite3_column_text(st, 0);
            snprintf(out->journal_mode, sizeof out->journal_mode, "%s", m ? m : "");
            break;
        }
        case DB_STMT_PRAGMA_SYNCHRONOUS:
            out->synchronous = sqlite3_column_int(st, 0);
            break;
        case DB_STMT_PRAGMA_BUSY_TIMEOUT:
            out->busy_timeout_ms = sqlite3_column_int(st, 0);
            break;
        case DB_STMT_PRAGMA_JOURNAL_SIZE_LIMIT:
            out->journal_size_limit = sqlite3_column_int64(st, 0);
            break;
        case DB_STMT_PRAGMA_USER_VERSION:
            out->user_version = sqlite3_column_int(st, 0);
            break;
        case DB_STMT_PRAGMA_APPLICATION_ID:
            out->application_id = (int32_t)sqlite3_column_int64(st, 0);
            break;
        case DB_STMT_PRAGMA_PAGE_SIZE:
            out->page_size = sqlite3_column_int(st, 0);
            break;
        case DB_STMT_PRAGMA_WAL_AUTOCHECKPOINT:
            out->wal_autocheckpoint = sqlite3_column_int(st, 0);
            break;
        default:
            break;
        }
        sqlite3_reset(st);
    }
    return PDR_OK;
}

/* ---- the daemon's run (invariant 7) ---------------------------------------- */

pdr_rc db_run_begin(db_handle *db, int *was_clean_out)
{
    sqlite3_stmt *st;
    int64_t clean = 0, started = 0;
    pdr_rc rc;
    int src = SQLITE_OK;

    if (!db || !was_clean_out) return PDR_ERR_INVALID;
    rc = db_tx_begin(db);
    if (rc) return rc;
    st = db->stmt[DB_STMT_RUN_STATE_GET];
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        clean = sqlite3_column_int64(st, 0);
        started = sqlite3_column_int64(st, 1);
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        /* The migration made the row; nothing deletes it. */
        db_msg(db->errmsg, sizeof db->errmsg, "database disk image is malformed: run_state has no row");
        src = SQLITE_CORRUPT;
    }
    sqlite3_reset(st);
    if (src == SQLITE_CORRUPT) rc = PDR_ERR_CORRUPT;
    else if (src) rc = db_fail(db, src, "reading run_state");
    if (!rc) {
        st = db->stmt[DB_STMT_RUN_STATE_BEGIN];
        db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
        rc = db_stmt_run_one(db, st, src);
    }
    if (rc) {
        db_tx_rollback(db);
        return rc;
    }
    rc = db_tx_commit(db);
    if (rc) return rc;
    *was_clean_out = started == 0 ? -1 : clean == 1;
    return PDR_OK;
}

pdr_rc db_run_end(db_handle *db)
{
    sqlite3_stmt *st;
    int src = SQLITE_OK;
    if (!db) return PDR_ERR_INVALID;
    st = db->stmt[DB_STMT_RUN_STATE_END];
    db_bind_int64(st, "@now", pdr_clock_now_ms(), &src);
    return db_stmt_run_one(db, st, src);
}

/* ---- the full check -------------------------------------------------------- */

/* One problem per line: integrity_check may give several lines in one row,
** the first perhaps only "*** in database main ***". */
static int64_t db_problem_lines(const char *text, void (*problem)(void *ctx, const char *text), void *ctx)
{
    int64_t n = 0;
    while (*text) {
        size_t len = strcspn(text, "\n");
        if (len && strncmp(text, "*** ", 4) != 0) {
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), text);
            n++;
            if (problem) problem(ctx, line);
        }
        text += len;
        if (*text) text++;
    }
    return n;
}

pdr_rc db_integrity_check(db_handle *db, void (*problem)(void *ctx, const char *text), void *ctx,
                          int64_t *n_out)
{
    sqlite3_stmt *st = NULL;
    int64_t n = 0;
    pdr_rc rc = PDR_OK;
    int src;

    if (n_out) *n_out = 0;
    if (!db) return PDR_ERR_INVALID;
    /* With cell_size_check on, the first bad page stops the check with
    ** SQLITE_CORRUPT; off, the check describes every problem itself. */
    src = sqlite3_exec(db->h, DB_SQL_CELL_SIZE_CHECK_OFF, NULL, NULL, NULL);
    if (!src) src = sqlite3_prepare_v2(db->h, DB_SQL_INTEGRITY_CHECK, -1, &st, NULL);
    if (src) {
        rc = db_fail(db, src, "integrity_check");
        goto out;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        if (!text) {
            src = SQLITE_NOMEM;
            break;
        }
        if (strcmp(text, "ok") != 0) n += db_problem_lines(text, problem, ctx);
    }
    if ((src & 0xff) == SQLITE_CORRUPT || (src & 0xff) == SQLITE_NOTADB) {
        /* A page the check itself could not go past: one problem more. */
        char line[300];
        snprintf(line, sizeof line, "the check stopped: %s", sqlite3_errmsg(db->h));
        n += db_problem_lines(line, problem, ctx);
    } else if (src != SQLITE_DONE) {
        rc = db_fail(db, src, "integrity_check");
    }
out:
    sqlite3_finalize(st);
    sqlite3_exec(db->h, DB_SQL_CELL_SIZE_CHECK, NULL, NULL, NULL);
    if (n_out) *n_out = n;
    return rc;
}

pdr_rc db_file_sizes(const db_handle *db, int64_t *file_out, int64_t *wal_out)
{
    struct stat sb;
    char wal[4200];
    if (!db || !file_out || !wal_out) return PDR_ERR_INVALID;
    if (stat(db->path, &sb) != 0) return db_rc_from_errno(errno);
    *file_out = (int64_t)sb.st_size;
    snprintf(wal, sizeof wal, "%s-wal", db->path);
    *wal_out = stat(wal, &sb) == 0 ? (int64_t)sb.st_size : 0;
    return PDR_OK;
}

/* ---- tests --------------------------------------------------------------- */

pdr_rc db_explain(db_handle *db, const char *stmt_name, char *out, size_t outsz)
{
    static const char prefix[] = DB_SQL_EXPLAIN;
    sqlite3_stmt *st = NULL;
    char *sql;
    size_t len, used = 0;
    pdr_rc rc = PDR_OK;
    int i, src;

    if (!db || !stmt_name || !out || !outsz) return PDR_ERR_INVALID;
    out[0] = '\0';
    for (i = 0; i < DB_STMT_COUNT; i++)
        if (!strcmp(db_stmt_names[i], stmt_name)) break;
    if (i == DB_STMT_COUNT) return PDR_ERR_NOT_FOUND;
    len = sizeof prefix + strlen(db_stmt_sql[i]);
    sql = pdr_malloc(len);
    if (!sql) return PDR_ERR_NOMEM;
    snprintf(sql, len, "%s%s", prefix, db_stmt_sql[i]);
    src = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    free(sql);
    if (src) return db_fail(db, src, stmt_name);
    /* Columns: id, parent, notused, detail. Depth from the parents. */
    {
        int ids[64], depth[64], n = 0;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            int id = sqlite3_column_int(st, 0), parent = sqlite3_column_int(st, 1), d = 0, k, w;
            const char *detail = (const char *)sqlite3_column_text(st, 3);
            for (k = n - 1; k >= 0; k--)
                if (ids[k] == parent) {
                    d = depth[k] + 1;
                    break;
                }
            if (n < 64) {
                ids[n] = id;
                depth[n] = d;
                n++;
            }
            w = snprintf(out + used, outsz - used, "%*s%s\n", 2 * d, "", detail ? detail : "");
            if (w < 0 || (size_t)w >= outsz - used) {
                rc = PDR_ERR_FULL;
                break;
            }
            used += (size_t)w;
        }
    }
    if (!rc && src != SQLITE_DONE) rc = db_fail(db, src, stmt_name);
    sqlite3_finalize(st);
    return rc;
}
