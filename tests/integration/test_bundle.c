/*
** test_bundle.c — events carried by hand: `pdrelay queue export` and
** `pdrelay queue import` (db/bundle.c), run as the real binary. Export
** selects by key and time, in order, removes only with --remove, never
** writes over a file; import queues in the original order (then `pdrelay
** run` delivers them to the mock PagerDuty in that order), is idempotent
** (the same bundle, or the same rows in another bundle, or a bundle brought
** back to its own outbox), refuses a tampered bundle, a newer one and an
** outbox, and reads an older bundle schema. Crash safety: an export
** --remove and an import cut at every one of their tracked writes and
** syncs (libpowercut.so, tests/powercut/powercut.c: a power cut, which
** also drops what was not fsync'd, so harsher than kill -9) lose nothing
** and queue nothing twice.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define KEY1 "R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define KEY2 "R2bbbbbbbbbbbbbbbbbbbbbbbbbbcd34"
static const char *const SECRETS[] = {KEY1, KEY2};

/* 2026-01-01T00:00:00Z and a day later: the created_ms of the old and the
** new events (the test's clock; the binary's is the real one). */
#define T0 INT64_C(1767225600000)
#define T1 (T0 + 86400000)

/* A site: a scratch directory with a config (targets t1, t2) and an outbox. */
typedef struct site {
    char *dir, *cfg, *data_dir;
} site;

static void site_config(site *s, const char *source, const char *extra)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\nsource = %s\n\n[target t1]\nrouting_key = " KEY1 "\n\n"
                           "[target t2]\nrouting_key = " KEY2 "\n%s",
                           s->data_dir, source, extra ? extra : "");
    tu_write_file(s->cfg, text);
    free(text);
}

static site *site_new(const char *source)
{
    site *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->dir = tu_mkdtemp();
    s->cfg = tu_printf("%s/pdrelay.ini", s->dir);
    s->data_dir = tu_printf("%s/var", s->dir);
    site_config(s, source, NULL);
    return s;
}

static void site_free(site *s)
{
    if (!getenv("PDR_KEEP")) tu_rmrf(s->dir);
    free(s->dir);
    free(s->cfg);
    free(s->data_dir);
    free(s);
}

/* Runs pdrelay with up to 30 arguments (NULL-terminated); out and err are
** checked for the routing keys, then returned (or freed when NULL). */
static int pdr(char **out, char **err, ...)
{
    const char *argv[32];
    char *o = NULL, *e = NULL;
    int n = 0, rc;
    va_list ap;
    argv[n++] = tu_pdrelay();
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 31);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    rc = tu_run(argv, NULL, &o, &e);
    for (size_t i = 0; i < sizeof SECRETS / sizeof *SECRETS; i++) {
        if (tu_contains(o, SECRETS[i]) || tu_contains(e, SECRETS[i]))
            it_fail("a whole routing key in the output of pdrelay %s: %s%s", argv[1], o, e);
    }
    if (out) *out = o; else free(o);
    if (err) *err = e; else free(e);
    return rc;
}

/* it_queue at the test clock's time ms. */
static void queue_at(const char *data_dir, int64_t ms, const char *key, const char *prefix, int n)
{
    tu_clock_install(ms);
    it_queue(data_dir, key, prefix, n);
}

/* The pending rows of data_dir as "KEYn/dedup_key" in id order, one string
** ("R1/a-0 R1/a-1 ..."); "" when none. */
static char *pending(const char *data_dir)
{
    db_row *rows = NULL;
    size_t n = it_rows(data_dir, DB_ROW_PENDING, &rows);
    char *s = strdup("");
    for (size_t i = 0; i < n; i++) {
        char *t = tu_printf("%s%s%.2s/%s", s, i ? " " : "", rows[i].routing_key,
                            rows[i].dedup_key ? rows[i].dedup_key : "-");
        free(s);
        s = t;
    }
    db_rows_free(rows, n);
    return s;
}

/* What a bundle holds, as pending() shows it: imported into a scratch outbox. */
static char *bundle_rows(const char *path)
{
    char *dir = tu_mkdtemp(), err[1024];
    db_handle *db = tu_db_open(dir, 0);
    db_import_result r;
    pdr_rc rc = db_bundle_import(db, path, &r, err, sizeof err);
    db_close(db);
    if (rc) it_fail("importing %s: %s", path, err);
    char *s = pending(dir);
    tu_rmrf(dir);
    free(dir);
    return s;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- export -------------------------------------------------------------- */

static void test_export_selects_in_order_and_removes_only_with_remove(void **state)
{
    (void)state;
    site *a = site_new("site-a");
    char *out = NULL, *err = NULL;
    char *all = tu_printf("%s/all.pdrb", a->dir), *newer = tu_printf("%s/newer.pdrb", a->dir);
    char *k2 = tu_printf("%s/k2.pdrb", a->dir), *gone = tu_printf("%s/gone.pdrb", a->dir);
    char *none = tu_printf("%s/none.pdrb", a->dir);
    const char *everything = "R1/a-0 R1/a-1 R1/a-2 R2/b-0 R2/b-1 R1/c-0 R1/c-1";

    queue_at(a->data_dir, T0, KEY1, "a", 3);
    queue_at(a->data_dir, T0, KEY2, "b", 2);
    queue_at(a->data_dir, T1, KEY1, "c", 2);

    /* all of them, in id order; the outbox keeps them */
    assert_int_equal(pdr(&out, &err, "queue", "-c", a->cfg, "export", all, NULL), 0);
    assert_true(tu_contains(out, "exported 7 events to "));
    assert_false(tu_contains(out, "removed"));
    free(out);
    free(err);
    char *p = pending(a->data_dir), *b = bundle_rows(all);
    assert_string_equal(p, everything);
    assert_string_equal(b, everything);
    free(p);
    free(b);
    struct stat sb;
    assert_int_equal(stat(all, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char *tmp = tu_printf("%s.tmp", all);
    assert_false(exists(tmp));
    free(tmp);

    /* --key by target name and --since an RFC 3339 time */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "export", newer, "--key", "t1",
                         "--since", "2026-01-01T12:00:00Z", NULL), 0);
    assert_true(tu_contains(out, "exported 2 events"));
    free(out);
    b = bundle_rows(newer);
    assert_string_equal(b, "R1/c-0 R1/c-1");
    free(b);
    /* --key by routing key, --json */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "--json", "export", k2, "--key", KEY2, NULL), 0);
    assert_true(tu_contains(out, "\"exported\":\t2"));
    assert_true(tu_contains(out, "\"removed\":\tfalse"));
    free(out);
    b = bundle_rows(k2);
    assert_string_equal(b, "R2/b-0 R2/b-1");
    free(b);

    /* a file that exists is never written over */
    assert_int_equal(pdr(NULL, &err, "queue", "-c", a->cfg, "export", all, "--remove", NULL), 2);
    assert_true(tu_contains(err, "exists: a bundle is never written over"));
    free(err);
    p = pending(a->data_dir);
    assert_string_equal(p, everything);
    free(p);

    /* --since as a duration: nothing that recent (the events are of 2026-01), no file */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "export", none, "--since", "1h", NULL), 0);
    assert_true(tu_contains(out, "nothing to export"));
    assert_false(exists(none));
    free(out);
    assert_int_equal(pdr(NULL, &err, "queue", "-c", a->cfg, "export", none, "--since", "yesterday", NULL), 2);
    assert_true(tu_contains(err, "invalid --since 'yesterday'"));
    free(err);

    /* --remove: the selected ones leave the outbox, the others stay */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "export", gone, "--remove", "--key", "t1", NULL), 0);
    assert_true(tu_contains(out, "exported 5 events to "));
    assert_true(tu_contains(out, "and removed them from the outbox"));
    free(out);
    p = pending(a->data_dir);
    assert_string_equal(p, "R2/b-0 R2/b-1");
    free(p);
    b = bundle_rows(gone);
    assert_string_equal(b, "R1/a-0 R1/a-1 R1/a-2 R1/c-0 R1/c-1");
    free(b);

    /* flags that belong elsewhere, and FILE missing */
    assert_int_equal(pdr(NULL, &err, "queue", "-c", a->cfg, "import", all, "--remove", NULL), 2);
    assert_true(tu_contains(err, "--remove is not an option of 'import'"));
    free(err);
    assert_int_equal(pdr(NULL, &err, "queue", "-c", a->cfg, "export", NULL), 2);
    assert_true(tu_contains(err, "give one FILE"));
    free(err);

    free(all); free(newer); free(k2); free(gone); free(none);
    site_free(a);
}

/* ---- import -------------------------------------------------------------- */

static void b_config(it_fx *f)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\nsource = site-b\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 50\n"
                           "timeout_ms = 2000\nconnect_timeout_ms = 500\n",
                           f->data_dir, f->port, mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
}

static void test_import_queues_in_order_once_and_run_delivers(void **state)
{
    (void)state;
    site *a = site_new("site-a");
    it_fx *f = it_fx_new(NULL);
    char *out = NULL, *err = NULL, *bundle = tu_printf("%s/carried.pdrb", a->dir);
    db_row *rows = NULL;

    it_fx_port(f);
    b_config(f);
    queue_at(a->data_dir, T0, KEY1, "a", 6);
    queue_at(a->data_dir, T0 + 1000, KEY2, "b", 4);
    queue_at(a->data_dir, T0 + 2000, KEY1, "c", 1);   /* after b in id order, same key as a */
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", bundle, "--remove", NULL), 0);
    assert_int_equal(it_count(a->data_dir, DB_ROW_PENDING), 0);

    /* into B's outbox (created by the import): pending, in their order, created_ms kept */
    assert_int_equal(pdr(&out, &err, "queue", "-c", f->cfg, "import", bundle, NULL), 0);
    assert_true(tu_contains(out, "imported 11 events from "));
    assert_true(tu_contains(out, "from site-a, exported "));
    assert_true(tu_contains(out, "; 0 already present"));
    free(out);
    free(err);
    char *p = pending(f->data_dir);
    assert_string_equal(p, "R1/a-0 R1/a-1 R1/a-2 R1/a-3 R1/a-4 R1/a-5 R2/b-0 R2/b-1 R2/b-2 R2/b-3 R1/c-0");
    free(p);
    size_t n = it_rows(f->data_dir, DB_ROW_PENDING, &rows);
    assert_int_equal(rows[0].created_ms, T0);
    assert_int_equal(rows[6].created_ms, T0 + 1000);
    assert_int_equal(rows[0].urgency, PDR_URGENCY_ERROR);
    db_rows_free(rows, n);

    /* again: nothing new */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", f->cfg, "import", bundle, NULL), 0);
    assert_true(tu_contains(out, "was already imported on "));
    assert_true(tu_contains(out, "nothing queued"));
    free(out);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 11);

    /* pdrelay run delivers them, in order per key */
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 11, 20000), 0);
    cJSON *ev = mockpd_events(f->mock);
    char got[16][32];
    assert_int_equal(it_accepted_for(ev, KEY1, got, 16), 7);
    for (int i = 0; i < 6; i++) {
        char want[32];
        snprintf(want, sizeof want, "a-%d", i);
        assert_string_equal(got[i], want);
    }
    assert_string_equal(got[6], "c-0");
    it_assert_in_order(ev, KEY2, "b", 4);
    cJSON_Delete(ev);

    /* with the daemon running: a third import is still nothing new, and
    ** delivered events are not queued again */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", f->cfg, "import", bundle, NULL), 0);
    assert_true(tu_contains(out, "already imported"));
    free(out);

    /* and a new bundle imported while it runs is delivered without a kick */
    queue_at(a->data_dir, T1, KEY2, "d", 3);
    char *second = tu_printf("%s/second.pdrb", a->dir);
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", second, "--remove", NULL), 0);
    assert_int_equal(pdr(&out, NULL, "queue", "-c", f->cfg, "import", second, NULL), 0);
    assert_true(tu_contains(out, "imported 3 events"));
    free(out);
    assert_int_equal(mockpd_wait_accepted(f->mock, 14, 20000), 0);
    ev = mockpd_events(f->mock);
    assert_int_equal(it_accepted_for(ev, KEY2, got, 16), 7);
    assert_string_equal(got[4], "d-0");
    assert_string_equal(got[6], "d-2");
    cJSON_Delete(ev);

    free(second);
    free(bundle);
    site_free(a);
    it_fx_free(f, SECRETS, 2);
}

/* The air-gapped side exports while its daemon runs, the uplink down. */
static void test_export_remove_beside_a_running_daemon(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    char *out = NULL, *bundle = tu_printf("%s/stick.pdrb", f->dir);
    it_fx_port(f);
    b_config(f);
    assert_int_equal(mockpd_halt(f->mock), 0);   /* no uplink */
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
    queue_at(f->data_dir, T0, KEY1, "a", 20);
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    assert_int_equal(pdr(&out, NULL, "queue", "-c", f->cfg, "export", bundle, "--remove", NULL), 0);
    assert_true(tu_contains(out, "exported 20 events"));
    free(out);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    char *b = bundle_rows(bundle);
    assert_true(tu_contains(b, "R1/a-0 R1/a-1 R1/a-2"));
    assert_true(tu_contains(b, "R1/a-19"));
    free(b);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    free(bundle);
    it_fx_free(f, SECRETS, 2);
}

/* The same rows in two bundles, and a bundle brought back to its own outbox. */
static void test_rows_carried_twice_are_queued_once(void **state)
{
    (void)state;
    site *a = site_new("site-a"), *b = site_new("site-b");
    char *out = NULL, *copy = tu_printf("%s/copy.pdrb", a->dir), *moved = tu_printf("%s/moved.pdrb", a->dir);

    queue_at(a->data_dir, T0, KEY1, "a", 4);
    /* a trigger and its resolve: the trigger is not the newest of its
    ** group, so no coalescing would catch it coming back */
    tu_push_event(a->data_dir, KEY1, PDR_ACTION_RESOLVE, "a-0", NULL, NULL, NULL);
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", copy, NULL), 0);

    /* brought back where it came from, the events still there: nothing new */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "import", copy, NULL), 0);
    assert_true(tu_contains(out, "imported 0 events"));
    assert_true(tu_contains(out, "; 5 already present"));
    free(out);
    assert_int_equal(it_count(a->data_dir, DB_ROW_PENDING), 5);
    db_handle *db = tu_db_open(a->data_dir, 0);
    db_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_OK);
    assert_int_equal(db_outbox_delivered(db, rows[4].id), PDR_OK);   /* the resolve: sent */
    db_rows_free(rows, n);
    db_close(db);

    queue_at(a->data_dir, T1, KEY1, "b", 2);
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", moved, "--remove", NULL), 0);
    assert_int_equal(pdr(&out, NULL, "queue", "-c", b->cfg, "import", copy, NULL), 0);
    assert_true(tu_contains(out, "imported 5 events"));
    free(out);
    /* B delivers them (as its sender would) */
    db = tu_db_open(b->data_dir, 0);
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_OK);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) assert_int_equal(db_outbox_delivered(db, rows[i].id), PDR_OK);
    db_rows_free(rows, n);
    db_close(db);
    /* moved holds a-0..a-3 again (another bundle) and b-0, b-1: only these are new */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", b->cfg, "import", moved, NULL), 0);
    assert_true(tu_contains(out, "imported 2 events"));
    assert_true(tu_contains(out, "; 4 already present"));
    free(out);
    char *p = pending(b->data_dir);
    assert_string_equal(p, "R1/b-0 R1/b-1");
    free(p);

    /* moved brought back to the now empty A: its events come home */
    assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "import", moved, NULL), 0);
    assert_true(tu_contains(out, "imported 6 events"));
    free(out);

    free(copy);
    free(moved);
    site_free(a);
    site_free(b);
}

/* Changes one byte of the body of event seq in the bundle at path. */
static void tamper(const char *path, int seq)
{
    sqlite3 *h = NULL;
    char *sql = tu_printf("UPDATE events SET body=substr(body, 1, 20) || "
                          "char(unicode(substr(body, 21, 1)) + 1) || substr(body, 22) WHERE seq=%d", seq);
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_changes(h), 1);
    sqlite3_close(h);
    free(sql);
}

static void set_pragma(const char *path, const char *pragma)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, pragma, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

static void test_refuses_tampered_newer_and_foreign_files(void **state)
{
    (void)state;
    site *a = site_new("site-a"), *b = site_new("site-b");
    char *err = NULL, *out = NULL, *bundle = tu_printf("%s/x.pdrb", a->dir);

    queue_at(a->data_dir, T0, KEY1, "a", 3);
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", bundle, NULL), 0);
    it_queue(b->data_dir, KEY2, "mine", 1);

    tamper(bundle, 2);
    assert_int_equal(pdr(&out, &err, "queue", "-c", b->cfg, "import", bundle, NULL), 2);
    assert_true(tu_contains(err, "pdrelay queue import: "));
    assert_true(tu_contains(err, "x.pdrb: checksum mismatch: the manifest says "));
    assert_true(tu_contains(err, ", the rows hash to "));
    assert_true(tu_contains(err, "the bundle is damaged or was altered; nothing imported"));
    assert_string_equal(out, "");
    free(out);
    free(err);
    char *p = pending(b->data_dir);
    assert_string_equal(p, "R2/mine-0");
    free(p);

    /* a newer bundle schema */
    tamper(bundle, 2);   /* (one more byte: still damaged, but the version is checked first) */
    set_pragma(bundle, "PRAGMA user_version=3");
    assert_int_equal(pdr(NULL, &err, "queue", "-c", b->cfg, "import", bundle, NULL), 2);
    assert_true(tu_contains(err, "has bundle schema version 3, newer than this pdrelay reads (2)"));
    free(err);

    /* an outbox is not a bundle, and a bundle is not an outbox */
    char *ob = tu_printf("%s/pdrelay.db", a->data_dir);
    assert_int_equal(pdr(NULL, &err, "queue", "-c", b->cfg, "import", ob, NULL), 2);
    assert_true(tu_contains(err, "is a pdrelay outbox, not a bundle"));
    free(err);
    assert_int_equal(pdr(NULL, &err, "queue", "-c", b->cfg, "import", a->cfg, NULL), 2);
    assert_true(tu_contains(err, "not a pdrelay bundle"));
    free(err);
    site *c = site_new("site-c");
    char *fresh = tu_printf("%s/fresh.pdrb", a->dir);
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", fresh, NULL), 0);
    assert_int_equal(mkdir(c->data_dir, 0700), 0);
    char *as_outbox = tu_printf("%s/pdrelay.db", c->data_dir);
    assert_int_equal(rename(fresh, as_outbox), 0);
    assert_int_equal(pdr(NULL, &err, "queue", "-c", c->cfg, "status", NULL), 1);
    assert_true(tu_contains(err, "is not a pdrelay database"));
    free(err);
    assert_int_equal(pdr(NULL, &err, "run", "-c", c->cfg, NULL), 1);
    assert_true(tu_contains(err, "is not a pdrelay database"));
    free(err);

    p = pending(b->data_dir);
    assert_string_equal(p, "R2/mine-0");
    free(p);
    free(as_outbox);
    free(fresh);
    free(ob);
    free(bundle);
    site_free(a);
    site_free(b);
    site_free(c);
}

/* A bundle of schema version 1 (no site, no event_ms), as an older pdrelay
** wrote it: db_bundle_export's schema_version runs the version-1 script
** and hashes version 1's columns. */
static void test_imports_an_older_bundle_schema(void **state)
{
    (void)state;
    site *a = site_new("site-a"), *b = site_new("site-b");
    char *out = NULL, err[1024], *old = tu_printf("%s/v1.pdrb", a->dir);
    db_bundle_info info;

    queue_at(a->data_dir, T0, KEY1, "a", 3);
    queue_at(a->data_dir, T0, KEY2, "b", 2);
    db_handle *db = tu_db_open(a->data_dir, 0);
    db_export_opts o = {old, NULL, INT64_MIN, "site-a", 1, 1};
    if (db_bundle_export(db, &o, &info, err, sizeof err)) it_fail("export v1: %s", err);
    db_close(db);
    assert_int_equal(info.count, 5);
    assert_int_equal(it_count(a->data_dir, DB_ROW_PENDING), 0);
    if (db_bundle_verify(old, &info, err, sizeof err)) it_fail("verify v1: %s", err);
    assert_int_equal(info.version, 1);
    assert_string_equal(info.site, "");

    assert_int_equal(pdr(&out, NULL, "queue", "-c", b->cfg, "import", old, NULL), 0);
    assert_true(tu_contains(out, "imported 5 events"));
    assert_true(tu_contains(out, "from outbox "));   /* no site in version 1 */
    free(out);
    char *p = pending(b->data_dir);
    assert_string_equal(p, "R1/a-0 R1/a-1 R1/a-2 R2/b-0 R2/b-1");
    free(p);
    assert_int_equal(pdr(&out, NULL, "queue", "-c", b->cfg, "import", old, NULL), 0);
    assert_true(tu_contains(out, "already imported"));
    free(out);

    /* and a tampered version-1 bundle is refused like any */
    char *old2 = tu_printf("%s/v1b.pdrb", a->dir);
    queue_at(a->data_dir, T0, KEY1, "z", 2);
    db = tu_db_open(a->data_dir, 0);
    db_export_opts o2 = {old2, NULL, INT64_MIN, NULL, 0, 1};
    if (db_bundle_export(db, &o2, &info, err, sizeof err)) it_fail("export v1: %s", err);
    db_close(db);
    tamper(old2, 1);
    assert_int_equal(pdr(NULL, &out, "queue", "-c", b->cfg, "import", old2, NULL), 2);
    assert_true(tu_contains(out, "checksum mismatch"));
    free(out);

    free(old2);
    free(old);
    site_free(a);
    site_free(b);
}

/* ---- crash safety ---------------------------------------------------------- */

#ifndef PDR_POWERCUT_LIB
#define PDR_POWERCUT_LIB ""
#endif

/* pdrelay with libpowercut.so tracking dir, cut at operation at (0: never).
** Returns the exit code (137: cut); *ops_out (may be NULL) the shim's count
** of tracked operations when it exited normally. */
static int pdr_cut(const char *dir, unsigned long at, long *ops_out, const char *cfg, const char *sub,
                   const char *file, const char *flag)
{
    const char *argv[] = {tu_pdrelay(), "queue", "-c", cfg, sub, file, flag, NULL};
    char at_s[32], *out = NULL, *err = NULL;
    const char *asan = getenv("ASAN_OPTIONS");
    char *asan_saved = asan ? strdup(asan) : NULL;
    char *asan_new = tu_printf("%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
    snprintf(at_s, sizeof at_s, "%lu", at);
    setenv("LD_PRELOAD", PDR_POWERCUT_LIB, 1);
    setenv("PDR_POWERCUT_DIR", dir, 1);
    setenv("PDR_POWERCUT_AT", at_s, 1);
    setenv("PDR_POWERCUT_SEED", at_s, 1);
    setenv("ASAN_OPTIONS", asan_new, 1);
    int rc = tu_run(argv, NULL, &out, &err);
    unsetenv("LD_PRELOAD");
    unsetenv("PDR_POWERCUT_DIR");
    unsetenv("PDR_POWERCUT_AT");
    unsetenv("PDR_POWERCUT_SEED");
    if (asan_saved) setenv("ASAN_OPTIONS", asan_saved, 1);
    else unsetenv("ASAN_OPTIONS");
    if (ops_out) {
        const char *o = strstr(err ? err : "", "powercut: exit ops=");
        *ops_out = o ? strtol(o + strlen("powercut: exit ops="), NULL, 10) : -1;
    }
    if (rc != 0 && rc != 137) fprintf(stderr, "pdrelay queue %s (cut at %lu): exit %d: %s%s\n", sub, at, rc, out, err);
    free(out);
    free(err);
    free(asan_saved);
    free(asan_new);
    return rc;
}

#define CRASH_EVENTS 12

static void test_export_remove_cut_at_every_operation_loses_nothing(void **state)
{
    (void)state;
    if (!PDR_POWERCUT_LIB[0]) skip();
    site *a = site_new("site-a");
    char *bundle = tu_printf("%s/stick.pdrb", a->dir), *again = tu_printf("%s/again.pdrb", a->dir);
    char *tmp = tu_printf("%s.tmp", bundle);
    site_config(a, "site-a", "[outbox]\nsynchronous = full\n");
    const char *expect = "R1/e-0 R1/e-1 R1/e-2 R1/e-3 R1/e-4 R1/e-5 R1/e-6 R1/e-7 R1/e-8 R1/e-9 R1/e-10 R1/e-11";
    long ops = -1;
    int cuts = 0, in_bundle = 0, in_both = 0;

    /* calibration: the whole export, uncut, counting its operations */
    it_queue(a->data_dir, KEY1, "e", CRASH_EVENTS);
    assert_int_equal(pdr_cut(a->dir, 0, &ops, a->cfg, "export", bundle, "--remove"), 0);
    if (ops < 5) it_fail("the shim counted %ld operations", ops);
    char *b = bundle_rows(bundle);
    assert_string_equal(b, expect);
    free(b);

    for (unsigned long at = 1; at <= (unsigned long)ops + 1; at++) {
        tu_rmrf(a->data_dir);
        unlink(bundle);
        unlink(again);
        it_queue(a->data_dir, KEY1, "e", CRASH_EVENTS);
        int rc = pdr_cut(a->dir, at, NULL, a->cfg, "export", bundle, "--remove");
        if (rc == 137) cuts++;
        else if (rc != 0 || at <= (unsigned long)ops) it_fail("cut at %lu of %ld: exit %d", at, ops, rc);
        /* every event is in the outbox, or in a complete bundle: never neither */
        char *p = pending(a->data_dir);
        int complete = exists(bundle);
        if (complete) {
            char err[1024];
            if (db_bundle_verify(bundle, NULL, err, sizeof err))
                it_fail("cut at %lu: %s exists but is not a complete bundle: %s", at, bundle, err);
            b = bundle_rows(bundle);
            assert_string_equal(b, expect);
            free(b);
            in_bundle++;
            if (p[0]) in_both++;
        }
        if (p[0] && strcmp(p, expect)) it_fail("cut at %lu: the outbox holds part of the events: %s", at, p);
        if (!p[0] && !complete) it_fail("cut at %lu: the events are neither in the outbox nor in a bundle", at);
        /* a leftover FILE.tmp does not break the next export */
        if (p[0]) {
            const char *next = complete ? again : bundle;
            char *out = NULL;
            assert_int_equal(pdr(&out, NULL, "queue", "-c", a->cfg, "export", next, "--remove", NULL), 0);
            assert_true(tu_contains(out, "exported 12 events"));
            free(out);
            assert_false(exists(tmp) && !complete);
            b = bundle_rows(next);
            assert_string_equal(b, expect);
            free(b);
            assert_int_equal(it_count(a->data_dir, DB_ROW_PENDING), 0);
        }
        free(p);
    }
    fprintf(stderr, "export --remove: %ld operations, %d cuts: the events were in a complete bundle after %d "
            "(and still in the outbox too after %d), in the outbox only after the others\n",
            ops, cuts, in_bundle, in_both);
    assert_true(cuts >= ops);
    free(tmp);
    free(again);
    free(bundle);
    site_free(a);
}

static void test_import_cut_at_every_operation_then_again_queues_once(void **state)
{
    (void)state;
    if (!PDR_POWERCUT_LIB[0]) skip();
    site *a = site_new("site-a"), *b = site_new("site-b");
    char *bundle = tu_printf("%s/stick.pdrb", a->dir);
    site_config(b, "site-b", "[outbox]\nsynchronous = full\n");
    long ops = -1;
    int cuts = 0, lost_import = 0;

    queue_at(a->data_dir, T0, KEY1, "e", 8);
    queue_at(a->data_dir, T0, KEY2, "f", 4);
    assert_int_equal(pdr(NULL, NULL, "queue", "-c", a->cfg, "export", bundle, "--remove", NULL), 0);
    const char *expect = "R2/mine-0 R1/e-0 R1/e-1 R1/e-2 R1/e-3 R1/e-4 R1/e-5 R1/e-6 R1/e-7 "
                         "R2/f-0 R2/f-1 R2/f-2 R2/f-3";

    it_queue(b->data_dir, KEY2, "mine", 1);
    assert_int_equal(pdr_cut(b->dir, 0, &ops, b->cfg, "import", bundle, NULL), 0);
    if (ops < 3) it_fail("the shim counted %ld operations", ops);
    char *p = pending(b->data_dir);
    assert_string_equal(p, expect);
    free(p);

    for (unsigned long at = 1; at <= (unsigned long)ops + 1; at++) {
        char *out = NULL;
        tu_rmrf(b->data_dir);
        it_queue(b->data_dir, KEY2, "mine", 1);
        int rc = pdr_cut(b->dir, at, NULL, b->cfg, "import", bundle, NULL);
        if (rc == 137) cuts++;
        else if (rc != 0 || at <= (unsigned long)ops) it_fail("cut at %lu of %ld: exit %d", at, ops, rc);
        /* all of the import or none of it */
        p = pending(b->data_dir);
        if (strcmp(p, "R2/mine-0") && strcmp(p, expect)) it_fail("cut at %lu: a partial import: %s", at, p);
        free(p);
        /* the same import again: each event exactly once */
        assert_int_equal(pdr(&out, NULL, "queue", "-c", b->cfg, "import", bundle, NULL), 0);
        if (tu_contains(out, "imported 12 events")) lost_import++;
        else if (!tu_contains(out, "already imported")) it_fail("cut at %lu, then import: %s", at, out);
        free(out);
        p = pending(b->data_dir);
        assert_string_equal(p, expect);
        free(p);
    }
    fprintf(stderr, "import: %ld operations, %d cuts; the import had not committed at %d of them\n", ops,
            cuts, lost_import);
    assert_true(cuts >= ops);
    free(bundle);
    site_free(a);
    site_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_selects_in_order_and_removes_only_with_remove),
        cmocka_unit_test(test_import_queues_in_order_once_and_run_delivers),
        cmocka_unit_test(test_export_remove_beside_a_running_daemon),
        cmocka_unit_test(test_rows_carried_twice_are_queued_once),
        cmocka_unit_test(test_refuses_tampered_newer_and_foreign_files),
        cmocka_unit_test(test_imports_an_older_bundle_schema),
        cmocka_unit_test(test_export_remove_cut_at_every_operation_loses_nothing),
        cmocka_unit_test(test_import_cut_at_every_operation_then_again_queues_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
