/*
** test_db_open.c — opening the database: modes of the files and directories
** pdrelay creates, the pragmas in force, migration of a new or empty file,
** and the refusals (too new, not SQLite, not pdrelay's, corrupt) that must
** leave the user's file byte for byte as it was.
**
** sqlite3 is used directly only to build fixtures; every assertion goes
** through the db API.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testutil.h"
#include "db.h"
#include "sql.h"   /* DB_SQL_MIGRATION_V1: a released version-1 file, as a fixture */
#include "clock.h"

#define RK_A "R0000000000000000000000000000AAA"

static db_options opts_for(const char *dir)
{
    db_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dir;
    o.sync_full = 1;
    o.max_events = 1000;
    return o;
}

static void push_one(db_handle *db, const char *body)
{
    db_event ev;
    memset(&ev, 0, sizeof ev);
    ev.routing_key = RK_A;
    ev.action = PDR_ACTION_TRIGGER;
    ev.dedup_key = "k";
    ev.body = body;
    ev.body_len = strlen(body);
    ev.urgency = PDR_URGENCY_WARNING;
    assert_int_equal(db_outbox_push(db, &ev, NULL), PDR_OK);
}

static mode_t mode_of(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_mode & 07777;
}

/* Runs SQL on a raw connection (fixtures only). */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
}

/* Opens dir expecting failure `want`; checks the message names the file and
** contains each of the NULL-terminated needles, and that the file's bytes
** did not change. */
static void expect_refused(const char *dir, int read_only, pdr_rc want, ...)
{
    char *path = tu_printf("%s/%s", dir, DB_FILE_NAME);
    size_t len_before = 0, len_after = 0;
    char *before = tu_read_file(path, &len_before);
    char errbuf[512];
    db_options o = opts_for(dir);
    db_handle *db = (db_handle *)0x1;
    const char *needle;
    va_list ap;

    assert_non_null(before);
    o.read_only = read_only;
    assert_int_equal(db_open(&o, &db, errbuf, sizeof errbuf), want);
    assert_null(db);
    assert_true(tu_contains(errbuf, path));
    va_start(ap, want);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (!tu_contains(errbuf, needle)) fail_msg("message \"%s\" lacks \"%s\"", errbuf, needle);
    }
    va_end(ap);

    char *after = tu_read_file(path, &len_after);
    assert_non_null(after);
    assert_int_equal(len_before, len_after);
    assert_memory_equal(before, after, len_before);
    free(before);
    free(after);
    free(path);
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *data = tu_read_file(from, &len);
    FILE *f;
    assert_non_null(data);
    f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(data);
}

/* ---- creation ------------------------------------------------------------ */

static void test_creates_dirs_and_file_with_private_modes(void **state)
{
    char *tmp = tu_mkdtemp();
    char *dir = tu_printf("%s/a/b/var", tmp);
    char *a = tu_printf("%s/a", tmp);
    char *path, *wal, *shm;
    db_options o = opts_for(dir);
    db_handle *db = NULL;
    char errbuf[256];
    (void)state;

    assert_int_equal(db_open(&o, &db, errbuf, sizeof errbuf), PDR_OK);
    path = tu_printf("%s/%s", dir, DB_FILE_NAME);
    assert_string_equal(db_path(db), path);
    assert_int_equal(mode_of(a), 0700);
    assert_int_equal(mode_of(dir), 0700);
    assert_int_equal(mode_of(path), 0600);
    push_one(db, "{}");
    wal = tu_printf("%s-wal", path);
    shm = tu_printf("%s-shm", path);
    assert_int_equal(mode_of(wal), 0600);
    assert_int_equal(mode_of(shm), 0600);
    db_close(db);

    free(wal);
    free(shm);
    free(path);
    free(a);
    free(dir);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_pragmas_full(void **state)
{
    char *tmp = tu_mkdtemp();
    db_options o = opts_for(tmp);
    db_settings s;
    db_handle *db = NULL;
    (void)state;

    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_settings_get(db, &s), PDR_OK);
    assert_string_equal(s.journal_mode, "wal");
    assert_int_equal(s.synchronous, 2);
    assert_int_equal(s.busy_timeout_ms, 5000);
    assert_int_equal(s.journal_size_limit, 16 * 1024 * 1024);
    assert_int_equal(s.user_version, DB_SCHEMA_VERSION);
    assert_int_not_equal(s.application_id, 0);
    /* A new file gets the page size chosen for flash (sql.h). */
    assert_int_equal(s.page_size, 2048);
    assert_int_equal(s.wal_autocheckpoint, 4000);
    db_close(db);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_pragmas_normal_and_busy_timeout(void **state)
{
    char *tmp = tu_mkdtemp();
    db_options o = opts_for(tmp);
    db_settings s;
    db_handle *db = NULL;
    (void)state;

    o.sync_full = 0;
    o.busy_timeout_ms = 1234;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_settings_get(db, &s), PDR_OK);
    assert_string_equal(s.journal_mode, "wal");
    assert_int_equal(s.synchronous, 1);
    assert_int_equal(s.busy_timeout_ms, 1234);
    db_close(db);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_migrates_empty_file(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_settings s;
    db_handle *db = NULL;
    int64_t pending = -1, dead = -1;
    (void)state;

    tu_write_file(path, "");
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_settings_get(db, &s), PDR_OK);
    assert_int_equal(s.user_version, DB_SCHEMA_VERSION);
    assert_int_equal(db_outbox_count(db, &pending, &dead), PDR_OK);
    assert_int_equal(pending, 0);
    assert_int_equal(dead, 0);
    db_close(db);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_reopen_keeps_rows_and_version(void **state)
{
    char *tmp = tu_mkdtemp();
    db_options o = opts_for(tmp);
    db_settings s;
    db_handle *db = NULL;
    int64_t pending = 0;
    (void)state;

    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    push_one(db, "{\"a\":1}");
    db_close(db);
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_settings_get(db, &s), PDR_OK);
    assert_int_equal(s.user_version, DB_SCHEMA_VERSION);
    assert_int_equal(db_outbox_count(db, &pending, NULL), PDR_OK);
    assert_int_equal(pending, 1);
    db_close(db);
    tu_rmrf(tmp);
    free(tmp);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_too_new_is_refused_untouched(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_handle *db = NULL;
    (void)state;

    /* A real pdrelay database, then "upgraded" by a future pdrelay. */
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    push_one(db, "{}");
    db_close(db);
    raw_exec(path, "PRAGMA user_version=99");

    char *ours = tu_printf("(%d)", DB_SCHEMA_VERSION);
    expect_refused(tmp, 0, PDR_ERR_TOO_NEW, "99", ours, "upgrade pdrelay", "untouched",
                   (const char *)NULL);
    free(ours);
    expect_refused(tmp, 1, PDR_ERR_TOO_NEW, "99", (const char *)NULL);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_too_new_bare_file(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    (void)state;

    raw_exec(path, "PRAGMA user_version=99");
    expect_refused(tmp, 0, PDR_ERR_TOO_NEW, "schema version 99", (const char *)NULL);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_not_a_database_is_refused_untouched(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    char text[8192];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof text - 1; i++) text[i] = (char)('a' + i % 26);
    text[sizeof text - 1] = '\0';
    tu_write_file(path, text);
    expect_refused(tmp, 0, PDR_ERR_CORRUPT, "not a SQLite database", "untouched",
                   (const char *)NULL);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_foreign_database_is_refused_untouched(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    (void)state;

    /* Someone else's tables, no application_id. */
    raw_exec(path, "CREATE TABLE photos(id INTEGER PRIMARY KEY, name TEXT);"
                   "INSERT INTO photos(name) VALUES('cat.jpg');");
    expect_refused(tmp, 0, PDR_ERR_CORRUPT, "not a pdrelay database", (const char *)NULL);
    /* Someone else's application_id. */
    raw_exec(path, "PRAGMA application_id=1234");
    expect_refused(tmp, 0, PDR_ERR_CORRUPT, "not a pdrelay database", "application_id",
                   (const char *)NULL);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_corrupt_fixture_is_refused_untouched(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    (void)state;

    copy_file(PDR_TEST_FIXTURES "/corrupt.db", path);
    expect_refused(tmp, 0, PDR_ERR_CORRUPT, "is corrupt", "left untouched",
                   "move it aside", "restore a backup", (const char *)NULL);
    expect_refused(tmp, 1, PDR_ERR_CORRUPT, "is corrupt", (const char *)NULL);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

/* Without the check at open (skip_check) the damage is met by the first read
** that crosses the broken page, and reported as PDR_ERR_CORRUPT, not a crash. */
static void test_corrupt_fixture_without_check(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_row *rows = NULL;
    size_t n = 0;
    db_handle *db = NULL;
    (void)state;

    copy_file(PDR_TEST_FIXTURES "/corrupt.db", path);
    o.skip_check = 1;
    o.read_only = 1;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_ERR_CORRUPT);
    assert_null(rows);
    if (!tu_contains(db_errmsg(db), "malformed")) fail_msg("errmsg: %s", db_errmsg(db));
    db_close(db);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

/* ---- the check at open, and the clean-stop marker -------------------------- */

/* Sets run_state.clean of the file at path (fixtures only). */
static void set_clean(const char *path, int clean)
{
    char *sql = tu_printf("UPDATE run_state SET clean=%d WHERE one=1", clean);
    raw_exec(path, sql);
    free(sql);
}

static void count_problem(void *ctx, const char *text)
{
    (void)text;
    ++*(int *)ctx;
}

/* A file whose run_state says the last run stopped cleanly is not checked:
** the corrupt fixture, marked clean, opens (the check is what refuses it
** otherwise); the damage is then met by the first read that crosses it,
** and db_integrity_check reports it. */
static void test_clean_marker_skips_check(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_row *rows = NULL;
    size_t n = 0;
    db_handle *db = NULL;
    int64_t us = -1, problems = 0;
    int calls = 0;
    (void)state;

    copy_file(PDR_TEST_FIXTURES "/corrupt.db", path);
    set_clean(path, 1);
    for (int ro = 1; ro >= 0; ro--) {
        o.read_only = ro;
        assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
        assert_int_equal(db_open_checked(db, &us), 0);
        assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_ERR_CORRUPT);
        assert_null(rows);
        calls = 0;
        assert_int_equal(db_integrity_check(db, count_problem, &calls, &problems), PDR_OK);
        assert_true(problems > 0);
        assert_int_equal(calls, problems);
        db_close(db);
    }
    /* Marked unclean again, it is refused by the check at open. */
    set_clean(path, 0);
    expect_refused(tmp, 1, PDR_ERR_CORRUPT, "is corrupt", "unclean stop", (const char *)NULL);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

/* The marker through the daemon's life: none recorded on a new file, then
** each open after db_run_begin without db_run_end checks, and one after
** db_run_end does not. db_integrity_check finds nothing in a sound file. */
static void test_run_marker(void **state)
{
    char *tmp = tu_mkdtemp();
    db_options o = opts_for(tmp);
    db_handle *db = NULL, *ro = NULL;
    int was = 7;
    int64_t us = -1, problems = -1;
    (void)state;

    tu_clock_install(1700000000000);
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(db, NULL), 0);              /* a new file: nothing to check */
    push_one(db, "{\"a\":1}");
    assert_int_equal(db_run_begin(db, &was), PDR_OK);
    assert_int_equal(was, -1);                                   /* no run recorded */
    db_close(db);

    /* Started, never stopped (kill -9): checked. */
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(db, &us), 1);
    assert_true(us >= 0);
    /* A read-only open (queue status while the daemon runs) checks too;
    ** skip_check (the daemon's writer and sender) does not. */
    o.read_only = 1;
    assert_int_equal(db_open(&o, &ro, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(ro, NULL), 1);
    db_close(ro);
    o.read_only = 0;
    o.skip_check = 1;
    assert_int_equal(db_open(&o, &ro, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(ro, NULL), 0);
    db_close(ro);
    o.skip_check = 0;
    assert_int_equal(db_run_begin(db, &was), PDR_OK);
    assert_int_equal(was, 0);
    tu_clock_advance(1000);
    assert_int_equal(db_run_end(db), PDR_OK);
    db_close(db);

    /* Stopped cleanly: not checked; the next start says so. */
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(db, NULL), 0);
    assert_int_equal(db_integrity_check(db, NULL, NULL, &problems), PDR_OK);
    assert_int_equal(problems, 0);
    assert_int_equal(db_run_begin(db, &was), PDR_OK);
    assert_int_equal(was, 1);
    db_close(db);
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(db, NULL), 1);              /* begun again, not ended */
    db_close(db);
    pdr_clock_set(NULL, NULL);
    tu_rmrf(tmp);
    free(tmp);
}

/* The check after an unclean stop reads the pages a crash can break, not
** the whole file: a leaf in the middle of a large outbox, damaged, is not
** seen at open (it would be, were the check a scan), but by
** db_integrity_check and by the first read that crosses it. */
static void test_unclean_check_is_bounded(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_handle *db = NULL;
    db_row *rows = NULL;
    size_t n = 0, len = 0;
    int64_t problems = 0, root = 0;
    char body[800];
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    (void)state;

    memset(body, 'x', sizeof body - 1);
    body[0] = '"';
    body[sizeof body - 2] = '"';
    body[sizeof body - 1] = '\0';
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    for (int i = 0; i < 600; i++) {
        snprintf(body + 1, 8, "%06d", i);   /* distinct, or the push coalesces */
        body[7] = 'x';
        push_one(db, body);
    }
    db_close(db);   /* the last connection: checkpointed, no -wal left */

    /* The outbox's root is an interior page; damage the leaf its middle
    ** cell points at (its cell pointer array, as make_corrupt_db.py does). */
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT rootpage FROM sqlite_schema WHERE name='outbox'", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    root = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(h), SQLITE_OK);
    {
        unsigned char *f = (unsigned char *)tu_read_file(path, &len);
        size_t psz, pg, ncell, cell, leaf;
        FILE *out;
        assert_non_null(f);
        psz = (size_t)f[16] << 8 | f[17];
        if (psz == 1) psz = 65536;
        /* down the middle child of each interior page to a leaf */
        leaf = (size_t)root;
        pg = (leaf - 1) * psz;
        assert_int_equal(f[pg], 0x05);                          /* the root: an interior table page */
        while (f[pg] == 0x05) {
            ncell = (size_t)f[pg + 3] << 8 | f[pg + 4];
            assert_true(ncell >= 1);
            cell = (size_t)f[pg + 12 + 2 * (ncell / 2)] << 8 | f[pg + 12 + 2 * (ncell / 2) + 1];
            leaf = (size_t)f[pg + cell] << 24 | (size_t)f[pg + cell + 1] << 16 | (size_t)f[pg + cell + 2] << 8 |
                   f[pg + cell + 3];
            pg = (leaf - 1) * psz;
        }
        assert_int_equal(f[(leaf - 1) * psz], 0x0D);            /* a table leaf */
        memset(f + (leaf - 1) * psz + 8, 0xFF, 32);
        out = fopen(path, "wb");
        assert_non_null(out);
        assert_int_equal(fwrite(f, 1, len, out), len);
        assert_int_equal(fclose(out), 0);
        free(f);
    }

    /* run_state says unclean (no run ever ended): checked, and accepted. */
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(db, NULL), 1);
    assert_int_equal(db_integrity_check(db, NULL, NULL, &problems), PDR_OK);
    assert_true(problems > 0);
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_ERR_CORRUPT);
    if (!tu_contains(db_errmsg(db), "malformed")) fail_msg("errmsg: %s", db_errmsg(db));
    db_close(db);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

/* ---- read-only, paths, locks --------------------------------------------- */

static void test_read_only(void **state)
{
    char *tmp = tu_mkdtemp();
    char *sub = tu_printf("%s/none", tmp);
    db_options o = opts_for(sub);
    db_event ev;
    db_handle *db = NULL, *ro = NULL;
    char errbuf[256];
    int64_t pending = 0;
    struct stat sb;
    (void)state;

    o.read_only = 1;
    assert_int_equal(db_open(&o, &ro, errbuf, sizeof errbuf), PDR_ERR_NOT_FOUND);
    if (!tu_contains(errbuf, "no outbox at ") || !tu_contains(errbuf, sub) ||
        !tu_contains(errbuf, ": nothing has been queued yet, or [agent] data_dir points elsewhere"))
        fail_msg("errbuf: %s", errbuf);
    assert_int_not_equal(stat(sub, &sb), 0); /* read-only creates nothing */

    /* an empty file (what an older `pdrelay queue status` left) holds no outbox */
    assert_int_equal(mkdir(sub, 0700), 0);
    char *empty = tu_printf("%s/%s", sub, DB_FILE_NAME);
    tu_write_file(empty, "");
    assert_int_equal(db_open(&o, &ro, errbuf, sizeof errbuf), PDR_ERR_NOT_FOUND);
    if (!tu_contains(errbuf, "(an empty file): nothing has been queued yet")) fail_msg("errbuf: %s", errbuf);
    assert_int_equal(unlink(empty), 0);
    free(empty);

    o.read_only = 0;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    push_one(db, "{}");
    o.read_only = 1;
    assert_int_equal(db_open(&o, &ro, NULL, 0), PDR_OK);
    assert_int_equal(db_outbox_count(ro, &pending, NULL), PDR_OK);
    assert_int_equal(pending, 1);
    memset(&ev, 0, sizeof ev);
    ev.routing_key = RK_A;
    ev.action = PDR_ACTION_TRIGGER;
    ev.dedup_key = "other";
    ev.body = "{}";
    ev.body_len = 2;
    assert_int_equal(db_outbox_push(ro, &ev, NULL), PDR_ERR_READONLY);
    db_close(ro);
    db_close(db);
    free(sub);
    tu_rmrf(tmp);
    free(tmp);
}

static int exists(const char *dir, const char *name)
{
    char *p = tu_printf("%s/%s", dir, name);
    struct stat sb;
    int r = stat(p, &sb) == 0;
    free(p);
    return r;
}

/* A database with one pending row, closed: no -wal or -shm left. */
static void make_closed_db(const char *dir)
{
    db_options o = opts_for(dir);
    db_handle *db = NULL;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    push_one(db, "{}");
    db_close(db);
    assert_false(exists(dir, DB_FILE_NAME "-wal"));
    assert_false(exists(dir, DB_FILE_NAME "-shm"));
}

/* Opens dir read-only and expects `pending` rows; 0 when so, else a message. */
static const char *read_only_count(const char *dir, int64_t pending)
{
    static char err[512];
    db_options o = opts_for(dir);
    db_handle *db = NULL;
    int64_t n = -1;
    o.read_only = 1;
    if (db_open(&o, &db, err, sizeof err) != PDR_OK) return err;
    pdr_rc rc = db_outbox_count(db, &n, NULL);
    if (rc) snprintf(err, sizeof err, "count: %s (%s)", pdr_strerror(rc), db_errmsg(db));
    else if (n != pending) snprintf(err, sizeof err, "%lld pending, expected %lld", (long long)n, (long long)pending);
    db_close(db);
    return rc || n != pending ? err : NULL;
}

/* A read-only open writes nothing: no -wal or -shm appears next to a
** database nobody has open (SQLite creates them for a plain read-only
** connection to a WAL file, and leaves them). */
static void test_read_only_creates_nothing(void **state)
{
    char *tmp = tu_mkdtemp();
    /* characters a URI gives a meaning to: the path is opened all the same */
    char *dir = tu_printf("%s/a b?c#d%%20e\xc3\xa9", tmp);
    const char *err;
    (void)state;
    make_closed_db(dir);
    err = read_only_count(dir, 1);
    if (err) fail_msg("%s", err);
    assert_false(exists(dir, DB_FILE_NAME "-wal"));
    assert_false(exists(dir, DB_FILE_NAME "-shm"));
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

/* Runs read_only_count in a child that cannot write dir: as root (whom
** modes do not stop) it becomes nobody (65534) first. Returns its exit:
** 0 read as expected, 1 not (message on stderr), 77 cannot drop root. */
static int read_only_count_unprivileged(const char *dir, int64_t pending)
{
    pid_t pid = fork();
    int status;
    assert_true(pid >= 0);
    if (pid == 0) {
        /* no supplementary groups: root's could still let the child write */
        if (geteuid() == 0 && (setgroups(0, NULL) || setgid(65534) || setuid(65534))) _exit(77);
        const char *err = read_only_count(dir, pending);
        if (err) fprintf(stderr, "read-only open of %s: %s\n", dir, err);
        _exit(err ? 1 : 0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The file 0444 in a directory anyone may write, then the directory 0555
** too, with no -wal or -shm: read, and nothing created. */
static void test_read_only_unwritable(void **state)
{
    char *tmp = tu_mkdtemp();
    char *dir = tu_printf("%s/data", tmp);
    char *path = tu_printf("%s/%s", dir, DB_FILE_NAME);
    int ex;
    (void)state;

    assert_int_equal(chmod(tmp, 0755), 0);   /* nobody may reach dir */
    make_closed_db(dir);
    assert_int_equal(chmod(path, 0444), 0);
    assert_int_equal(chmod(dir, 01777), 0);
    ex = read_only_count_unprivileged(dir, 1);
    if (ex == 77) {
        tu_rmrf(tmp);
        free(path); free(dir); free(tmp);
        skip();   /* running as root, and cannot become nobody to test modes */
    }
    assert_int_equal(ex, 0);
    assert_false(exists(dir, DB_FILE_NAME "-wal"));
    assert_false(exists(dir, DB_FILE_NAME "-shm"));

    assert_int_equal(chmod(dir, 0555), 0);
    assert_int_equal(read_only_count_unprivileged(dir, 1), 0);
    assert_false(exists(dir, DB_FILE_NAME "-wal"));
    assert_false(exists(dir, DB_FILE_NAME "-shm"));

    assert_int_equal(chmod(dir, 0700), 0);
    tu_rmrf(tmp);
    free(path);
    free(dir);
    free(tmp);
}

/* While a writer (the daemon) has the database open in a directory that is
** now read-only, a read-only open sees the rows it committed into its WAL. */
static void test_read_only_beside_writer(void **state)
{
    char *tmp = tu_mkdtemp();
    db_options o = opts_for(tmp);
    db_handle *db = NULL;
    const char *err;
    (void)state;

    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    push_one(db, "{\"n\":1}");
    push_one(db, "{\"n\":2}");
    assert_true(exists(tmp, DB_FILE_NAME "-wal"));
    assert_int_equal(chmod(tmp, 0555), 0);
    err = read_only_count(tmp, 2);
    if (err) fail_msg("%s", err);
    push_one(db, "{\"n\":3}");
    err = read_only_count(tmp, 3);
    if (err) fail_msg("%s", err);
    db_close(db);
    assert_int_equal(chmod(tmp, 0700), 0);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_data_dir_is_a_file(void **state)
{
    char *tmp = tu_mkdtemp();
    char *file = tu_printf("%s/plain", tmp);
    db_options o = opts_for(file);
    db_handle *db = NULL;
    char errbuf[256];
    (void)state;

    tu_write_file(file, "x");
    assert_int_not_equal(db_open(&o, &db, errbuf, sizeof errbuf), PDR_OK);
    assert_null(db);
    assert_true(tu_contains(errbuf, file));
    free(file);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_invalid_options(void **state)
{
    db_options o;
    db_handle *db = NULL;
    char errbuf[64];
    (void)state;
    memset(&o, 0, sizeof o);
    assert_int_equal(db_open(&o, &db, errbuf, sizeof errbuf), PDR_ERR_INVALID);
    assert_int_equal(db_open(NULL, &db, NULL, 0), PDR_ERR_INVALID);
    db_close(NULL);
}

/* Another process holds the write lock past our busy timeout. */
static void test_locked_is_busy(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_event ev;
    sqlite3 *h = NULL;
    db_handle *db = NULL;
    (void)state;

    o.busy_timeout_ms = 50;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    memset(&ev, 0, sizeof ev);
    ev.routing_key = RK_A;
    ev.action = PDR_ACTION_TRIGGER;
    ev.dedup_key = "k";
    ev.body = "{}";
    ev.body_len = 2;
    assert_int_equal(db_outbox_push(db, &ev, NULL), PDR_ERR_BUSY);
    assert_int_equal(sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    /* Once released, the handle works again. */
    assert_int_equal(db_outbox_push(db, &ev, NULL), PDR_OK);
    db_close(db);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

/* Two handles (as the daemon and `pdrelay send` are): counts agree. */
static void test_two_handles_share_counts(void **state)
{
    char *tmp = tu_mkdtemp();
    db_options o = opts_for(tmp);
    db_handle *a = NULL, *b = NULL;
    int64_t pending = 0;
    (void)state;

    assert_int_equal(db_open(&o, &a, NULL, 0), PDR_OK);
    assert_int_equal(db_open(&o, &b, NULL, 0), PDR_OK);
    push_one(a, "{\"n\":1}");
    push_one(b, "{\"n\":2}");
    assert_int_equal(db_outbox_count(a, &pending, NULL), PDR_OK);
    assert_int_equal(pending, 2);
    assert_int_equal(db_outbox_count(b, &pending, NULL), PDR_OK);
    assert_int_equal(pending, 2);
    db_close(a);
    db_close(b);
    tu_rmrf(tmp);
    free(tmp);
}


/* ---- migration from version 1 ---------------------------------------------- */

#define RK_B "R0000000000000000000000000000BBB"

/* A version-1 file as pdrelay 1 left it: its script, its header, and rows
** of several groups and severities (ids 1..14 in this order). */
static void make_v1(const char *path)
{
#define V1_TRIGGER(rk, dk, sev) \
    "INSERT INTO outbox(routing_key, action, dedup_key, body, created_ms, next_ms)" \
    " VALUES('" rk "', 1, '" dk "', '{\"payload\":{\"summary\":\"s\"" sev "}}', 1, 1);"
#define V1_ROW(rk, action, dk, body) \
    "INSERT INTO outbox(routing_key, action, dedup_key, body, created_ms, next_ms)" \
    " VALUES('" rk "', " #action ", " dk ", '" body "', 1, 1);"
    raw_exec(path,
             DB_SQL_MIGRATION_V1
             V1_TRIGGER(RK_A, "x", ",\"severity\":\"critical\"")        /* 1 */
             V1_TRIGGER(RK_A, "y", ",\"severity\":\"info\"")            /* 2 */
             V1_ROW(RK_A, 2, "'x'", "{}")                               /* 3 ack x */
             V1_ROW(RK_A, 4, "NULL", "{\"summary\":\"deploy 1\"}")      /* 4 change */
             V1_TRIGGER(RK_A, "z", "")                                  /* 5 no severity */
             V1_ROW(RK_A, 3, "'y'", "{}")                               /* 6 resolve y */
             V1_TRIGGER(RK_A, "w", ",\"severity\":\"error\"")           /* 7, killed below */
             V1_ROW(RK_A, 3, "'q'", "{}")                               /* 8 resolve, no trigger */
             V1_TRIGGER(RK_A, "x", ",\"severity\":\"warning\"")         /* 9 */
             V1_ROW(RK_A, 4, "NULL", "{\"summary\":\"deploy 2\"}")      /* 10 change */
             V1_ROW(RK_A, 1, "'n'", "not json")                         /* 11 */
             V1_TRIGGER(RK_B, "x", ",\"severity\":\"error\"")           /* 12 */
             V1_TRIGGER(RK_A, "e", ",\"severity\":\"warning\"")         /* 13 */
             V1_TRIGGER(RK_A, "e", ",\"severity\":\"critical\"")        /* 14, behind 13 */
             "UPDATE outbox SET state=1, dead_ms=2, last_error='400' WHERE id=7;"
             "INSERT INTO dedup VALUES('" RK_A "', 'fp', 'x', 1, 1, 9223372036854775807);"
             "PRAGMA application_id=1346654796; PRAGMA user_version=1;");
#undef V1_TRIGGER
#undef V1_ROW
}

/* An existing file keeps the page size it was made with (SQLite's default
** then, 4096): page_size only applies to a file's first write. */
static void test_existing_file_keeps_its_page_size(void **state)
{
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_settings s;
    db_handle *db = NULL;
    (void)state;

    make_v1(path);
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_settings_get(db, &s), PDR_OK);
    assert_int_equal(s.page_size, 4096);
    assert_int_equal(s.user_version, DB_SCHEMA_VERSION);
    push_one(db, "{\"n\":1}");
    db_close(db);
    tu_rmrf(tmp);
    free(path);
    free(tmp);
}

static void test_migrates_v1(void **state)
{
    static const int want_urgency[] = {0, 0, 3, 0, 4, 2, 3, 1, 2, 2, 4, 2, 1, 2, 0};   /* by id */
    /* Delivery in the order db_outbox_due gives: A's critical and B's error
    ** first; then A one at a time: x's acknowledge, the warnings by id (e's
    ** critical 14 waits behind its group's 13), the info group, the changes. */
    static const int64_t want_seq[] = {1, 12, 3, 5, 8, 9, 11, 13, 14, 2, 6, 4, 10};
    char *tmp = tu_mkdtemp();
    char *path = tu_printf("%s/%s", tmp, DB_FILE_NAME);
    db_options o = opts_for(tmp);
    db_settings s;
    db_handle *db = NULL;
    db_row row, *rows = NULL;
    db_dedup_entry e;
    int64_t pending = 0, dead = 0, seq[32], since = -1;
    size_t n = 0, i;
    int link = -1;
    (void)state;

    make_v1(path);
    /* A read-only open (queue status) does not migrate: it says what to do. */
    expect_refused(tmp, 1, PDR_ERR_INVALID, "schema version 1", "older", "pdrelay run",
                   (const char *)NULL);
    /* No run_state says how its last run ended: checked before migrating. */
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_open_checked(db, NULL), 1);
    db_close(db);
    assert_int_equal(unlink(path), 0);   /* migrated: again from version 1 */
    make_v1(path);

    for (int round = 0; round < 2; round++) {
        /* The second open finds the current version: nothing to do, nothing changes. */
        assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
        assert_int_equal(db_settings_get(db, &s), PDR_OK);
        assert_int_equal(s.user_version, DB_SCHEMA_VERSION);
        assert_int_equal(db_outbox_count(db, &pending, &dead), PDR_OK);
        assert_int_equal(pending, 13);
        assert_int_equal(dead, 1);
        /* Version 3 summed the bodies: "{}" 4 times, the 5 changes and
        ** triggers by their text, row 7 dead. */
        {
            db_counts c;
            int64_t want_pending = 0, want_dead = 0;
            assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
            for (i = 1; i <= 14; i++) {
                assert_int_equal(db_outbox_get(db, (int64_t)i, &row), PDR_OK);
                if (row.state == DB_ROW_DEAD) want_dead += (int64_t)strlen(row.body);
                else want_pending += (int64_t)strlen(row.body);
                db_row_cleanup(&row);
            }
            assert_int_equal(c.pending, 13);
            assert_int_equal(c.pending_bytes, want_pending);
            assert_int_equal(c.dead_bytes, want_dead);
            assert_true(want_pending > 0 && want_dead > 0);
        }
        for (i = 1; i <= 14; i++) {
            assert_int_equal(db_outbox_get(db, (int64_t)i, &row), PDR_OK);
            if (row.urgency != want_urgency[i])
                fail_msg("row %zu: urgency %d, expected %d", i, row.urgency, want_urgency[i]);
            assert_null(row.target);
            assert_int_equal(row.event_ms, 0);
            db_row_cleanup(&row);
        }
        assert_int_equal(db_link_get(db, &link, &since), PDR_OK);
        assert_int_equal(link, DB_LINK_UP);
        assert_int_equal(since, 0);
        assert_int_equal(db_dedup_get_by_key(db, RK_A, "x", &e), PDR_OK);
        assert_int_equal(e.urgency, PDR_URGENCY_WARNING);
        assert_string_equal(e.target, "");
        db_close(db);
    }

    /* The head flags, through the order of delivery. */
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    for (;;) {
        assert_int_equal(db_outbox_due(db, INT64_MAX, 16, &rows, &n), PDR_OK);
        if (!n) break;
        for (i = 0; i < n; i++) {
            assert_true(pending > 0);
            seq[13 - pending--] = rows[i].id;
            assert_int_equal(db_outbox_delivered(db, rows[i].id), PDR_OK);
        }
        db_rows_free(rows, n);
    }
    assert_int_equal(pending, 0);
    for (i = 0; i < sizeof want_seq / sizeof want_seq[0]; i++)
        if (seq[i] != want_seq[i])
            fail_msg("delivery %zu: id %lld, expected %lld", i, (long long)seq[i], (long long)want_seq[i]);
    /* The dead row was no head; retried, its copy is one. */
    assert_int_equal(db_outbox_retry_id(db, 7), PDR_OK);
    assert_int_equal(db_outbox_head(db, RK_A, &row), PDR_OK);
    assert_int_equal(row.urgency, PDR_URGENCY_ERROR);
    assert_string_equal(row.dedup_key, "w");
    db_row_cleanup(&row);
    db_close(db);
    free(path);
    tu_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creates_dirs_and_file_with_private_modes),
        cmocka_unit_test(test_pragmas_full),
        cmocka_unit_test(test_pragmas_normal_and_busy_timeout),
        cmocka_unit_test(test_migrates_empty_file),
        cmocka_unit_test(test_reopen_keeps_rows_and_version),
        cmocka_unit_test(test_too_new_is_refused_untouched),
        cmocka_unit_test(test_too_new_bare_file),
        cmocka_unit_test(test_not_a_database_is_refused_untouched),
        cmocka_unit_test(test_foreign_database_is_refused_untouched),
        cmocka_unit_test(test_corrupt_fixture_is_refused_untouched),
        cmocka_unit_test(test_corrupt_fixture_without_check),
        cmocka_unit_test(test_clean_marker_skips_check),
        cmocka_unit_test(test_run_marker),
        cmocka_unit_test(test_unclean_check_is_bounded),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_read_only_creates_nothing),
        cmocka_unit_test(test_read_only_unwritable),
        cmocka_unit_test(test_read_only_beside_writer),
        cmocka_unit_test(test_data_dir_is_a_file),
        cmocka_unit_test(test_invalid_options),
        cmocka_unit_test(test_locked_is_busy),
        cmocka_unit_test(test_two_handles_share_counts),
        cmocka_unit_test(test_migrates_v1),
        cmocka_unit_test(test_existing_file_keeps_its_page_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
