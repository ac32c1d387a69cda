/*
** test_startup.c — `pdrelay run` at start: a database it cannot write (file
** mode 0444, another user's file, a data directory where -wal and -shm
** cannot be created, a read-only mount) is refused with exit 77 and a message naming the file,
** the cause and the fix, and the daemon never answers /readyz 200 nor sends
** anything; files holding secrets that group or others can read are warned
** about; a reload keeps the running [outbox] max_events.
**
** As root, file modes stop nobody: the daemon then runs without
** CAP_DAC_OVERRIDE (setpriv), and the read-only mount is a tmpfs remounted
** read-only in a private mount namespace (unshare -m). Where neither can
** be had, the test is skipped and says why.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static const char *const KEYS[] = {"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"};

/* What runs the daemon as root without the capability that lets root
** write any file (so file modes apply to it as to the pdrelay user). */
#define NO_DAC_OVERRIDE "setpriv --bounding-set=-dac_override,-dac_read_search --"

typedef struct fx {
    char *dir, *cfg, *data_dir, *db_file, *log, *base;
    int port;
    mockpd *mock;
    it_daemon d;
} fx;

static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    f->cfg = tu_printf("%s/pdrelay.ini", f->dir);
    f->data_dir = tu_printf("%s/var", f->dir);
    f->db_file = tu_printf("%s/pdrelay.db", f->data_dir);
    f->log = tu_printf("%s/pdrelay.log", f->dir);
    f->port = it_free_port();
    f->base = tu_printf("http://127.0.0.1:%d", f->port);
    f->mock = mockpd_start(NULL);
    assert_non_null(f->mock);
    return f;
}

/* The config: the mock's URL, fast backoff, plus listen_extra in [listen]
** and extra at the end (either may be NULL). */
static void fx_config(fx *f, const char *listen_extra, const char *extra)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\naddress = 127.0.0.1\nport = %d\n%s[pagerduty]\n"
                           "url = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n%s",
                           f->data_dir, f->port, listen_extra ? listen_extra : "", mockpd_url(f->mock),
                           extra ? extra : "");
    tu_write_file(f->cfg, text);
    free(text);
}

static void fx_free(fx *f)
{
    mockpd_stop(f->mock);
    chmod(f->data_dir, 0700);   /* so that it can be removed */
    it_teardown(&f->d, f->dir, KEYS, sizeof KEYS / sizeof *KEYS);
    free(f->dir);
    free(f->cfg);
    free(f->data_dir);
    free(f->db_file);
    free(f->log);
    free(f->base);
    free(f);
}

/* Starts the daemon with wrapper (a command line, blank-separated words)
** in front of it, through $PDR_TEST_EMULATOR (which a cross build's
** emulator keeps following). */
static void start_wrapped(fx *f, const char *wrapper)
{
    const char *emu = getenv("PDR_TEST_EMULATOR");
    char *saved = emu ? strdup(emu) : NULL;
    char *both = tu_printf("%s %s", wrapper, saved ? saved : "");
    setenv("PDR_TEST_EMULATOR", both, 1);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    if (saved) setenv("PDR_TEST_EMULATOR", saved, 1);
    else unsetenv("PDR_TEST_EMULATOR");
    free(saved);
    free(both);
}

/* The wrapper under which file modes stop the daemon: none for a user
** other than root; as root, NO_DAC_OVERRIDE if it works here. NULL (and
** the test skipped) otherwise. */
static const char *modes_wrapper(fx *f)
{
    if (geteuid() != 0) return "";
    char *probe = tu_printf("%s/probe", f->dir);
    char *script = tu_printf("echo x >> %s", probe);
    tu_write_file(probe, "");
    chmod(probe, 0444);
    const char *argv[] = {"setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", "sh", "-c", script,
                          NULL};
    int rc = tu_run(argv, NULL, NULL, NULL);
    free(script);
    free(probe);
    return rc != 0 ? NO_DAC_OVERRIDE : NULL;
}

/* Waits for the daemon to exit by itself (within 10 s), asking /readyz all
** along: it must never answer 200. Returns the exit code. */
static int await_refusal(fx *f)
{
    int64_t end = pdr_clock_mono_ms() + 10000;
    siginfo_t si;
    for (;;) {
        memset(&si, 0, sizeof si);
        assert_int_equal(waitid(P_PID, (id_t)f->d.pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
        if (si.si_pid == f->d.pid) return it_daemon_stop(&f->d, 0);   /* reaps it */
        int st = it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL);
        if (st == 200) {
            char *log = it_log(&f->d);
            it_fail("the daemon answered /readyz 200 on a database it cannot write; its log:\n%s", log);
        }
        if (pdr_clock_mono_ms() > end) {
            char *log = it_log(&f->d);
            it_fail("the daemon still runs 10 s after its start; its log:\n%s", log);
        }
    }
}

/* Fails unless the daemon's log holds the text made of fmt. */
static void assert_log_has(const fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void assert_log_has(const fx *f, const char *fmt, ...)
{
    char needle[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(needle, sizeof needle, fmt, ap);
    va_end(ap);
    char *log = it_log(&f->d);
    if (!strstr(log, needle)) it_fail("the log lacks \"%s\"; it is:\n%s", needle, log);
    free(log);
}

/* The refused daemon left the queued event where it was and sent nothing. */
static void assert_nothing_sent(fx *f)
{
    assert_int_equal(mockpd_stat(f->mock, "requests"), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 1);
}

/* A scenario where file modes must stop the daemon: the fixture, with one
** event queued; *wrapper what to start the daemon under. Skips the test
** where modes stop nothing. */
static fx *fx_new_modes(const char **wrapper)
{
    fx *f = fx_new();
    *wrapper = modes_wrapper(f);
    if (!*wrapper) {
        fx_free(f);
        print_message("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here: file modes stop nothing\n");
        skip();
    }
    fx_config(f, NULL, NULL);
    it_queue(f->data_dir, KEYS[0], "e", 1);
    return f;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_database_mode_0444_refused(void **state)
{
    (void)state;
    const char *wrapper;
    fx *f = fx_new_modes(&wrapper);
    assert_int_equal(chmod(f->db_file, 0444), 0);
    start_wrapped(f, wrapper);
    assert_int_equal(await_refusal(f), 77);
    assert_log_has(f, "pdrelay run: cannot write %s: permission denied (EACCES): %s (mode 0444, owner ",
                          f->db_file, f->db_file);
    assert_log_has(f, "which pdrelay runs as. Fix: chown ");
    assert_log_has(f, "&& chmod 600 %s*", f->db_file);
    assert_int_equal(chmod(f->db_file, 0600), 0);
    assert_nothing_sent(f);
    fx_free(f);
}

/* Mode 0600, but another user's file (here nobody's, 65534). */
static void test_database_of_another_user_refused(void **state)
{
    (void)state;
    const char *wrapper;
    fx *f = fx_new_modes(&wrapper);
    if (geteuid() != 0 || chown(f->db_file, 65534, 65534) != 0) {
        fx_free(f);
        print_message("giving the database to another user needs root: skipped\n");
        skip();
    }
    start_wrapped(f, wrapper);
    assert_int_equal(await_refusal(f), 77);
    assert_log_has(f, "pdrelay run: cannot write %s: permission denied (EACCES): %s (mode 0600, owner ",
                   f->db_file, f->db_file);
    assert_log_has(f, "Fix: chown ");
    assert_int_equal(chown(f->db_file, getuid(), getgid()), 0);
    assert_nothing_sent(f);
    fx_free(f);
}

static void test_data_dir_0555_without_wal_refused(void **state)
{
    (void)state;
    const char *wrapper;
    fx *f = fx_new_modes(&wrapper);
    char *wal = tu_printf("%s-wal", f->db_file), *shm = tu_printf("%s-shm", f->db_file);
    struct stat sb;
    assert_int_not_equal(stat(wal, &sb), 0);   /* the last connection removed them */
    assert_int_not_equal(stat(shm, &sb), 0);
    assert_int_equal(chmod(f->data_dir, 0555), 0);
    start_wrapped(f, wrapper);
    assert_int_equal(await_refusal(f), 77);
    assert_log_has(f, "pdrelay run: cannot write %s: permission denied (EACCES): its directory %s (mode 0555, "
                          "owner ", f->db_file, f->data_dir);
    assert_log_has(f, "so the -wal and -shm files beside the database cannot be created");
    assert_log_has(f, "&& chmod 700 %s\n", f->data_dir);
    assert_int_equal(chmod(f->data_dir, 0700), 0);
    assert_nothing_sent(f);
    free(wal);
    free(shm);
    fx_free(f);
}

static void test_read_only_mount_refused(void **state)
{
    (void)state;
    const char *probe[] = {"unshare", "-m", "true", NULL};
    if (geteuid() != 0 || tu_run(probe, NULL, NULL, NULL) != 0) {
        print_message("a read-only mount needs root and a private mount namespace (unshare -m): not available\n");
        skip();
    }
    fx *f = fx_new();
    /* The outbox is made in src/, then copied onto a tmpfs mounted on
    ** data_dir in the daemon's own mount namespace, remounted read-only. */
    char *src = tu_printf("%s/src", f->dir);
    char *script = tu_printf("%s/ro-mount.sh", f->dir);
    char *text = tu_printf("#!/bin/sh\nset -e\nmkdir -p %s\nmount -t tmpfs -o mode=0700 pdrelay-test %s\n"
                           "cp %s/pdrelay.db %s/\nmount -o remount,ro %s\nexec \"$@\"\n",
                           f->data_dir, f->data_dir, src, f->data_dir, f->data_dir);
    tu_write_file(script, text);
    assert_int_equal(chmod(script, 0755), 0);
    fx_config(f, NULL, NULL);
    it_queue(src, KEYS[0], "e", 1);
    char *wrapper = tu_printf("unshare -m %s", script);
    start_wrapped(f, wrapper);
    assert_int_equal(await_refusal(f), 77);
    assert_log_has(f, "pdrelay run: cannot write %s: read-only file system (EROFS): %s is on a file system "
                          "mounted read-only. Fix: remount it read-write", f->db_file, f->data_dir);
    assert_int_equal(mockpd_stat(f->mock, "requests"), 0);
    assert_int_equal(it_count(src, DB_ROW_PENDING), 1);
    free(wrapper);
    free(text);
    free(script);
    free(src);
    fx_free(f);
}

/* A readable routing_key_file, auth_token_file and database: `run` warns
** about each (file, mode, fix), starts all the same, and never prints the
** secrets. */
static void test_run_warns_readable_secrets(void **state)
{
    (void)state;
    fx *f = fx_new();
    char *key = tu_printf("%s/prod.key", f->dir), *tok = tu_printf("%s/token", f->dir);
    tu_write_file(key, KEYS[0]);
    tu_write_file(tok, "s3cr3t-t0ken-value\n");
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(chmod(tok, 0644), 0);
    char *listen = tu_printf("auth_token_file = %s\n", tok);
    char *extra = tu_printf("[target prod]\nrouting_key_file = %s\n", key);
    fx_config(f, listen, extra);
    it_queue(f->data_dir, KEYS[0], "e", 1);
    assert_int_equal(chmod(f->db_file, 0644), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
    assert_log_has(f, "level=warn msg=\"file readable by group or others\" file=%s "
                        "holds=\"routing_key_file of [target prod]\" mode=0640 fix=\"chmod 600 %s\"", key, key);
    assert_log_has(f, "file=%s holds=\"[listen] auth_token_file\" mode=0644 fix=\"chmod 600 %s\"", tok, tok);
    assert_log_has(f, "file=%s holds=\"the outbox database\" mode=0644 fix=\"chmod 600 %s\"", f->db_file, f->db_file);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    char *log = it_log(&f->d);
    assert_null(strstr(log, "s3cr3t-t0ken-value"));
    free(log);
    free(listen);
    free(extra);
    free(key);
    free(tok);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_database_mode_0444_refused),
        cmocka_unit_test(test_database_of_another_user_refused),
        cmocka_unit_test(test_data_dir_0555_without_wal_refused),
        cmocka_unit_test(test_read_only_mount_refused),
        cmocka_unit_test(test_run_warns_readable_secrets),
    };
    return cmocka_run_group_tests_name("startup", tests, NULL, NULL);
}
