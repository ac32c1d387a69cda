/*
** test_start.c — the clean-stop marker through the real `pdrelay run`
** (db/db.c, invariant 7): each start logs how the previous run ended, which
** decides whether opening checks the outbox; and `pdrelay queue check`, the
** full integrity check, on a sound outbox (also beside the running daemon)
** and on tests/fixtures/corrupt.db.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define KEY "R0START000000000000000000000000A"
static const char *const KEYS[] = {KEY};

#define LINE_NONE "no previous run recorded on this outbox"
#define LINE_CLEAN "previous run stopped cleanly"
#define LINE_UNCLEAN "previous run did not stop cleanly"

static void write_config(it_fx *f, int port)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\naddress = 127.0.0.1\nport = %d\n[pagerduty]\n"
                           "url = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n",
                           f->data_dir, port, mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
}

/* Starts the daemon and waits until it has started (its marker cleared). */
static void start(it_fx *f, int nth)
{
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    if (it_wait_log_count(&f->d, "pdrelay started", nth, 10000) != 0) {
        char *log = it_log(&f->d);
        it_fail("start %d: no \"pdrelay started\"; the log:\n%s", nth, log);
    }
}

/* The log's line count of needle is n. */
static void assert_count(it_fx *f, const char *needle, int n)
{
    char *log = it_log(&f->d);
    int found = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++) found++;
    if (found != n) it_fail("\"%s\" %d times in the log, expected %d; the log:\n%s", needle, found, n, log);
    free(log);
}

/* First start: none recorded; SIGTERM, then a start says clean; kill -9,
** then a start says unclean (and what the check took); a start that fails
** (its port taken) is no clean stop either. */
static void test_marker_across_restarts(void **state)
{
    it_fx *f = it_fx_new(NULL);
    (void)state;
    it_fx_port(f);
    write_config(f, f->port);
    it_queue(f->data_dir, KEY, "e", 3);

    start(f, 1);
    assert_count(f, LINE_NONE, 1);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);

    start(f, 2);
    assert_count(f, LINE_CLEAN, 1);
    assert_count(f, LINE_UNCLEAN, 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGKILL), 128 + SIGKILL);

    start(f, 3);
    assert_count(f, LINE_UNCLEAN, 1);
    assert_count(f, LINE_CLEAN, 1);
    {
        char *log = it_log(&f->d);
        const char *l = strstr(log, LINE_UNCLEAN);
        const char *eol = l ? strchr(l, '\n') : NULL;
        if (!l || !eol || !strstr(l, " ms") || strstr(l, " ms") > eol)
            it_fail("the unclean line does not say how long the check took:\n%s", log);
        free(log);
    }
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);

    /* A fatal error at start (the [listen] port taken) records no clean
    ** stop, though the previous run's was. */
    {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(s, 1), 0);
        assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
        write_config(f, ntohs(sa.sin_port));
        assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
        assert_int_not_equal(it_daemon_stop(&f->d, 0), 0);   /* exits by itself */
        close(s);
    }
    assert_count(f, LINE_CLEAN, 2);
    write_config(f, f->port);
    start(f, 4);
    assert_count(f, LINE_UNCLEAN, 2);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, 1);
}

/* Runs `pdrelay queue -c cfg check [--json]`; returns the exit code. */
static int queue_check(it_fx *f, int json, char **out, char **err)
{
    const char *argv[] = {tu_pdrelay(), "queue", "-c", f->cfg, "check", json ? "--json" : NULL, NULL};
    return tu_run(argv, NULL, out, err);
}

static void test_queue_check(void **state)
{
    it_fx *f = it_fx_new(NULL);
    char *out = NULL, *err = NULL, *db = NULL;
    (void)state;
    it_fx_port(f);
    write_config(f, f->port);
    it_queue(f->data_dir, KEY, "e", 20);
    db = tu_printf("%s/%s", f->data_dir, DB_FILE_NAME);

    /* Sound, the daemon stopped. */
    if (queue_check(f, 0, &out, &err) != 0) it_fail("queue check: %s%s", out, err);
    if (strncmp(out, "ok: ", 4) || !strstr(out, db) || !strstr(out, " ms")) it_fail("queue check said: %s", out);
    free(out);
    free(err);

    /* Sound, beside the running daemon. */
    start(f, 1);
    if (queue_check(f, 1, &out, &err) != 0) it_fail("queue check --json: %s%s", out, err);
    {
        cJSON *doc = cJSON_Parse(out);
        assert_non_null(doc);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "ok")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "problems")), 0);
        cJSON_Delete(doc);
    }
    free(out);
    free(err);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);

    /* The corrupt fixture: every problem, and exit 1 (a corrupt outbox). */
    {
        size_t len = 0;
        char *bytes = tu_read_file(PDR_TEST_FIXTURES "/corrupt.db", &len);
        FILE *fp = fopen(db, "wb");
        assert_non_null(bytes);
        assert_non_null(fp);
        assert_int_equal(fwrite(bytes, 1, len, fp), len);
        assert_int_equal(fclose(fp), 0);
        free(bytes);
    }
    assert_int_equal(queue_check(f, 0, &out, &err), 1);
    if (!strstr(out, "problem: On tree page") || !strstr(err, "is corrupt") || !strstr(err, db))
        it_fail("queue check on the corrupt fixture said:\n%s\n%s", out, err);
    free(out);
    free(err);
    assert_int_equal(queue_check(f, 1, &out, &err), 1);
    {
        cJSON *doc = cJSON_Parse(out);
        assert_non_null(doc);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(doc, "ok")));
        assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "problems")) > 0);
        cJSON_Delete(doc);
    }
    free(out);
    free(err);
    free(db);
    it_fx_free(f, KEYS, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marker_across_restarts),
        cmocka_unit_test(test_queue_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
