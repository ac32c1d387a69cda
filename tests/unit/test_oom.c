/*
** test_oom.c — every allocation can fail, and is made to (agent/pdr.h:
** pdr_alloc_fail_after, with the countdown under cJSON, SQLite and libcurl
** too). Each operation runs with allocation n failing (and every later
** one), for n = 0, 1, … until it gets through without a failure. At each n
** it must end in PDR_ERR_NOMEM (ingest answers that 503, never 400; the
** sender retries) with nothing half done: no config, no row stored, the
** outbox counts unchanged, nothing leaked (ASan's leak check, in the
** -DPDR_SANITIZE=ON build). An operation that copes with a failed
** allocation by itself may also succeed: then its result must be the one of
** a run without failures.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "annotate.h"
#include "cli.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "normalize.h"
#include "pd_client.h"
#include "ratelimit.h"
#include "testutil.h"
#include "writer.h"

/* A bound on the sweeps: far above what any operation here allocates. */
#define SWEEP_MAX 20000

#define KEY_A "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
#define KEY_B "Zz9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k"

static const char config_text[] =
    "[agent]\n"
    "source = edge-gw-1\n"
    "default_severity = warning\n"
    "[pagerduty]\n"
    "url = https://events.example.net\n"
    "proxy = http://user:secret@proxy.example.net:3128\n"
    "[target prod]\n"
    "routing_key = " KEY_A "\n"
    "match = env=prod\n"
    "match = team=~db|storage\n"
    "[target rest]\n"
    "routing_key = " KEY_B "\n"
    "match = env!~prod|staging\n";

static char *dir;
static pdr_config *cfg;
static int devnull = -1;

/* Arms the countdown: allocation n (from 0) and every later one fail. */
static void fail_from(long n)
{
    pdr_alloc_fail_after(n);
}

/* Disarms it; returns whether any allocation failed meanwhile. */
static int disarm(void)
{
    int failed = pdr_alloc_failures() > 0;
    pdr_alloc_fail_after(-1);
    return failed;
}

static int setup(void **state)
{
    (void)state;
    pdr_config_errors errs = {0};
    /* Each failed batch logs an error line: hundreds of them, not asserted. */
    devnull = open("/dev/null", O_WRONLY);
    pdr_log_set_fd(devnull);
    dir = tu_mkdtemp();
    char *path = tu_printf("%s/pdrelay.ini", dir);
    tu_write_file(path, config_text);
    pdr_rc rc = pdr_config_load(path, &cfg, &errs);
    for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "config: %s\n", errs.msgs[i]);
    pdr_config_errors_cleanup(&errs);
    free(path);
    if (rc) return -1;
    free(cfg->data_dir);
    cfg->data_dir = tu_printf("%s/var", dir);
    cfg->synchronous = PDR_SYNC_NORMAL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pdr_config_destroy(cfg);
    tu_rmrf(dir);
    free(dir);
    pdr_log_set_fd(-1);
    close(devnull);
    return 0;
}

/* ---- config ------------------------------------------------------------- */

static void test_config_load(void **state)
{
    (void)state;
    char *path = tu_printf("%s/pdrelay.ini", dir);
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        pdr_config *c = (pdr_config *)&n;   /* must become NULL on failure */
        pdr_config_errors errs = {0};
        fail_from(n);
        pdr_rc rc = pdr_config_load(path, &c, &errs);
        int failed = disarm();
        if (rc == PDR_OK) {
            assert_non_null(c);
            assert_int_equal(c->n_targets, 2);
            assert_string_equal(c->targets[1].name, "rest");
            assert_string_equal(c->proxy, "http://user:secret@proxy.example.net:3128");
            assert_int_equal(errs.n, 0);
            pdr_config_destroy(c);
        } else {
            /* not "the config is invalid": it is not */
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
            assert_null(c);
        }
        pdr_config_errors_cleanup(&errs);
        if (!failed) break;
    }
    assert_true(n > 10 && n < SWEEP_MAX);
    free(path);
}

/* ---- the outbox --------------------------------------------------------- */

static int64_t pending_of(db_handle *db)
{
    int64_t pending = -1, dead = -1;
    assert_int_equal(db_outbox_count(db, &pending, &dead), PDR_OK);
    return pending;
}

/* Three events for push round n (their dedup keys and bodies differ per
** round, so that a round that succeeded does not coalesce the next). */
typedef struct round {
    char dk[3][32];
    char body[3][224];
    db_event evs[3];
} round;

static void round_make(round *r, long n)
{
    for (int i = 0; i < 3; i++) {
        snprintf(r->dk[i], sizeof r->dk[i], "dk-%ld-%d", n, i);
        snprintf(r->body[i], sizeof r->body[i],
                 "{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                 "\"payload\":{\"summary\":\"disk full %ld\",\"source\":\"gw\",\"severity\":\"error\"}}",
                 KEY_A, r->dk[i], n);
        r->evs[i] = (db_event){KEY_A, PDR_ACTION_TRIGGER, r->dk[i], i == 0 ? "fp" : NULL, r->body[i],
                               strlen(r->body[i]), PDR_URGENCY_ERROR, i == 0 ? "prod" : NULL, 0};
    }
}

static void test_db_push_batch(void **state)
{
    (void)state;
    char *d = tu_printf("%s/push", dir);
    db_handle *db = tu_db_open(d, 0);
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        round r;
        pdr_rc res[3] = {-1, -1, -1};
        int64_t ids[3];
        int64_t before = pending_of(db);
        round_make(&r, n);
        fail_from(n);
        pdr_rc rc = db_outbox_push_batch(db, r.evs, 3, res, ids);
        int failed = disarm();
        if (rc == PDR_OK) {
            for (int i = 0; i < 3; i++) assert_int_equal(res[i], PDR_OK);
            assert_int_equal(pending_of(db), before + 3);
        } else {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
            assert_int_equal(pending_of(db), before);   /* all or nothing */
        }
        if (!failed) break;
    }
    assert_true(n > 0 && n < SWEEP_MAX);
    /* The connection still works after all that. */
    round r;
    pdr_rc res[3];
    round_make(&r, -1);
    assert_int_equal(db_outbox_push_batch(db, r.evs, 3, res, NULL), PDR_OK);
    db_close(db);
    free(d);
}

typedef pdr_rc (*rows_fn)(db_handle *db, db_row **rows, size_t *n);

/* The rows fn reads (compared with a run without failures). */

static pdr_rc due(db_handle *db, db_row **rows, size_t *n)
{
    return db_outbox_due(db, INT64_MAX, 100, rows, n);
}

static pdr_rc list(db_handle *db, db_row **rows, size_t *n)
{
    return db_outbox_list(db, DB_ROW_PENDING, NULL, 0, rows, n);
}

static void rows_sweep(rows_fn fn)
{
    char *d = tu_mkdtemp();
    db_handle *db = tu_db_open(d, 0);
    round r;
    pdr_rc res[3];
    round_make(&r, 0);
    r.evs[2].routing_key = KEY_B;   /* due: the head of each key */
    assert_int_equal(db_outbox_push_batch(db, r.evs, 3, res, NULL), PDR_OK);
    db_row *ref;
    size_t ref_n;
    assert_int_equal(fn(db, &ref, &ref_n), PDR_OK);
    assert_true(ref_n >= 2);
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        db_row *rows = (db_row *)&n;
        size_t k = 99;
        fail_from(n);
        pdr_rc rc = fn(db, &rows, &k);
        int failed = disarm();
        if (rc == PDR_OK) {
            assert_int_equal(k, ref_n);
            for (size_t i = 0; i < k; i++) {
                assert_int_equal(rows[i].id, ref[i].id);
                assert_string_equal(rows[i].body, ref[i].body);
                assert_string_equal(rows[i].routing_key, ref[i].routing_key);
            }
            assert_string_equal(rows[0].fingerprint, "fp");
            db_rows_free(rows, k);
        } else {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
            assert_null(rows);
            assert_int_equal(k, 0);
        }
        if (!failed) break;
    }
    assert_true(n > 0 && n < SWEEP_MAX);
    assert_int_equal(pending_of(db), 3);
    db_rows_free(ref, ref_n);
    db_close(db);
    tu_rmrf(d);
    free(d);
}

static void test_db_due(void **state)
{
    (void)state;
    rows_sweep(due);
}

static void test_db_list(void **state)
{
    (void)state;
    rows_sweep(list);
}

/* ---- normalize ---------------------------------------------------------- */

typedef pdr_rc (*normalize_fn)(const char *body, size_t len, normalize_result *out);

static pdr_rc pd_alert(const char *body, size_t len, normalize_result *out)
{
    return normalize_pagerduty(body, len, PDR_EVENT_ALERT, out);
}

static pdr_rc pd_change(const char *body, size_t len, normalize_result *out)
{
    return normalize_pagerduty(body, len, PDR_EVENT_CHANGE, out);
}

static pdr_rc am(const char *body, size_t len, normalize_result *out)
{
    return normalize_alertmanager(body, len, cfg, out);
}

static pdr_rc alerts(const char *body, size_t len, normalize_result *out)
{
    return normalize_alerts(body, len, cfg, out);
}

/* Out of memory is never a refusal of the body (PDR_ERR_INVALID: a 400,
** which a client does not retry): it is PDR_ERR_NOMEM (503). */
static void normalize_sweep(normalize_fn fn, const char *body)
{
    normalize_result ref, r;
    size_t len = strlen(body);
    assert_int_equal(fn(body, len, &ref), PDR_OK);
    assert_true(ref.n > 0);
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        fail_from(n);
        pdr_rc rc = fn(body, len, &r);
        int failed = disarm();
        if (rc == PDR_OK) {
            assert_int_equal(r.n, ref.n);
            for (size_t i = 0; i < r.n; i++) {
                if (!r.evs[i].rep.dedup_key_generated) assert_string_equal(r.evs[i].body, ref.evs[i].body);
                assert_string_equal(r.evs[i].routing_key, ref.evs[i].routing_key);
            }
        } else {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
            assert_int_equal(r.parse_error, 0);
            assert_int_equal(r.errs.n, 0);
            assert_int_equal(r.n, 0);
            assert_null(r.evs);
        }
        normalize_result_cleanup(&r);
        if (!failed) break;
    }
    assert_true(n > 0 && n < SWEEP_MAX);
    normalize_result_cleanup(&ref);
}

static void test_norm_pagerduty(void **state)
{
    (void)state;
    /* repairs (invalid UTF-8, a long summary), links, images, custom_details */
    normalize_sweep(pd_alert,
               "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\",\"dedup_key\":\"d1\","
               "\"payload\":{\"summary\":\"disk \xff full\",\"source\":\"gw\",\"severity\":\"critical\","
               "\"timestamp\":\"2024-01-02T03:04:05Z\",\"custom_details\":{\"a\":[1,2,{\"b\":\"c\"}]}},"
               "\"links\":[{\"href\":\"https://x.example\",\"text\":\"x\"}],"
               "\"images\":[{\"src\":\"https://x.example/i.png\"}]}");
    normalize_sweep(pd_alert, "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"resolve\",\"dedup_key\":\"d1\"}");
    normalize_sweep(pd_change, "{\"routing_key\":\"" KEY_B "\",\"payload\":{\"summary\":\"deployed\",\"source\":\"ci\"}}");
}

static void test_norm_alertmanager(void **state)
{
    (void)state;
    normalize_sweep(am, "{\"version\":\"4\",\"status\":\"firing\",\"alerts\":["
                   "{\"status\":\"firing\",\"labels\":{\"alertname\":\"DiskFull\",\"env\":\"prod\",\"team\":\"db\","
                   "\"severity\":\"critical\"},\"annotations\":{\"summary\":\"disk full\"},"
                   "\"startsAt\":\"2024-01-02T03:04:05Z\",\"fingerprint\":\"f1\"},"
                   "{\"status\":\"resolved\",\"labels\":{\"alertname\":\"Load\",\"env\":\"dev\"},"
                   "\"endsAt\":\"2024-01-02T04:00:00Z\",\"fingerprint\":\"f2\"}]}");
}

static void test_norm_alerts(void **state)
{
    (void)state;
    normalize_sweep(alerts, "[{\"fingerprint\":\"fp-9\",\"alert_name\":\"DiskFull\",\"status\":\"firing\","
                       "\"labels\":{\"severity\":\"critical\",\"env\":\"prod\",\"team\":\"db\"},"
                       "\"annotations\":{\"summary\":\"Disk 95%\",\"runbook_url\":\"https://rb/disk\"},"
                       "\"starts_at\":\"2024-03-05T10:00:00Z\",\"ends_at\":null,"
                       "\"classification\":{\"severity\":\"noise\",\"confidence\":0.92,"
                       "\"reasoning\":\"Known nightly spike\",\"recommendations\":[\"ignore\"]}},"
                       "{\"fingerprint\":\"fp-10\",\"alert_name\":\"Load\",\"status\":\"resolved\","
                       "\"labels\":{\"env\":\"dev\"},\"ends_at\":\"2024-03-05T11:00:00Z\"}]");
}

/* ---- the writer: a batch commit ------------------------------------------- */

static void test_writer_commit(void **state)
{
    (void)state;
    char *d = tu_printf("%s/var", dir);
    /* The incident of fingerprint "fp" (target prod) is open under KEY_B:
    ** the batch's first event is rerouted there (writer invariant 5), which
    ** takes a parse and a print too. */
    db_handle *db = tu_db_open(d, 0);
    round r;
    pdr_rc res[3];
    assert_int_equal(db_dedup_put(db, KEY_B, "fp", "incident-1", DB_DEDUP_TRIGGERED, 3600000, "prod",
                                  PDR_URGENCY_ERROR), PDR_OK);
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        writer *w;
        int64_t before = pending_of(db);
        round_make(&r, n);
        assert_int_equal(writer_create(cfg, NULL, NULL, &w), PDR_OK);
        assert_int_equal(writer_start(w), PDR_OK);
        fail_from(n);
        pdr_rc rc = writer_submit(w, r.evs, 3, res, NULL);
        int failed = disarm();
        writer_stop(w);
        writer_destroy(w);
        if (rc == PDR_OK) {
            for (int i = 0; i < 3; i++) assert_int_equal(res[i], PDR_OK);
            assert_int_equal(pending_of(db), before + 3);
        } else {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
            assert_int_equal(pending_of(db), before);
        }
        if (!failed) break;
    }
    assert_true(n > 0 && n < SWEEP_MAX);
    /* the last round went to the incident's key */
    db_row *rows;
    size_t k;
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, KEY_B, 0, &rows, &k), PDR_OK);
    assert_true(k >= 1);
    assert_string_equal(rows[k - 1].dedup_key, "incident-1");
    assert_true(tu_contains(rows[k - 1].body, "\"routing_key\":\"" KEY_B "\""));
    db_rows_free(rows, k);
    db_close(db);
    free(d);
}

/* ---- what the sender's pass calls --------------------------------------- */

static void test_pd_request(void **state)
{
    (void)state;
    static const char body[] = "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\"}";
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        fail_from(n);
        pd_request *req = pd_request_create(cfg);
        pdr_rc rc = req ? pd_request_prepare(req, "https://events.example.net/v2/enqueue", body, strlen(body))
                        : PDR_ERR_NOMEM;
        int failed = disarm();
        if (!req || rc) {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
        } else {
            char *url = NULL;
            assert_int_equal(curl_easy_getinfo(pd_request_easy(req), CURLINFO_EFFECTIVE_URL, &url), CURLE_OK);
            assert_string_equal(url, "https://events.example.net/v2/enqueue");
        }
        pd_request_destroy(req);
        if (!failed) break;
    }
    assert_true(n > 0 && n < SWEEP_MAX);
}

static void test_ratelimit(void **state)
{
    (void)state;
    ratelimit rl;
    fail_from(0);
    pdr_rc rc = ratelimit_init(&rl, 120, 10, 60000, 0);
    assert_true(disarm());
    assert_int_equal(rc, PDR_ERR_NOMEM);
    assert_int_equal(ratelimit_init(&rl, 120, 10, 60000, 0), PDR_OK);
    assert_int_equal(ratelimit_next_ms(&rl, 5), 5);
    ratelimit_cleanup(&rl);
}

/* Out of memory while annotating is NOMEM (the sender tries again), never
** INVALID or NOT_FOUND (both of which send the body unmarked: a trigger
** that resolved while offline would page at full severity). */
static void test_annotate(void **state)
{
    (void)state;
    static const char body[] =
        "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
        "\"payload\":{\"summary\":\"disk full on a rather long host name\",\"source\":\"gw\","
        "\"severity\":\"critical\",\"custom_details\":{\"a\":1}}}";
    const annotate_opts o = {1, 1700000100000, 1, 1700000000000, 3, 1700000200000, 1700000000000};
    char *ref, *out;
    size_t ref_len, len;
    assert_int_equal(annotate_body(body, strlen(body), &o, &ref, &ref_len), PDR_OK);
    long n;
    for (n = 0; n < SWEEP_MAX; n++) {
        fail_from(n);
        pdr_rc rc = annotate_body(body, strlen(body), &o, &out, &len);
        int failed = disarm();
        if (rc == PDR_OK) {
            assert_string_equal(out, ref);
            assert_int_equal(len, ref_len);
            free(out);
        } else {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_true(failed);
            assert_null(out);
        }
        if (!failed) break;
    }
    assert_true(n > 0 && n < SWEEP_MAX);
    free(ref);
}

/* A body that is not JSON is still INVALID when memory suffices. */
static void test_annotate_invalid(void **state)
{
    (void)state;
    const annotate_opts o = {1, 0, 0, 0, 0, 1700000200000, 0};
    char *out;
    size_t len;
    assert_int_equal(annotate_body("{\"a\":", 5, &o, &out, &len), PDR_ERR_INVALID);
}

/* ---- the CLI: pdrelay send ------------------------------------------------ */

/* cli_send(argv) in this process, its stdout and stderr in *err (malloc'd). */
static int run_send(const char *const argv[], char **err)
{
    char *path = tu_printf("%s/send.err", dir);
    int saved_out = dup(1), saved_err = dup(2);
    int argc = 0;
    while (argv[argc]) argc++;
    fflush(stdout);
    fflush(stderr);
    assert_non_null(freopen(path, "w", stderr));
    assert_int_equal(dup2(2, 1), 1);
    optind = 0;   /* getopt starts over */
    int ex = cli_send(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    *err = tu_read_file(path, NULL);
    free(path);
    return ex;
}

/* Out of memory anywhere in `pdrelay send` (config, event, outbox) ends in
** exit 1 with a message, and nothing queued. A send makes some 8000
** allocations, most of them SQLite's while db_open opens the outbox and
** prepares its statements: each of the first CLI_SWEEP_ALL (the config,
** the event) is failed, then every CLI_SWEEP_STEP-th, to keep the run
** short (all of them: some 12 s). */
#define CLI_SWEEP_ALL 600
#define CLI_SWEEP_STEP 29
static void test_cli_send(void **state)
{
    (void)state;
    char *d = tu_printf("%s/cli", dir);
    char *ini = tu_printf("%s/send.ini", dir);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[outbox]\nsynchronous = normal\n", d);
    tu_write_file(ini, text);
    db_handle *db = tu_db_open(d, 0);
    long n;
    for (n = 0; n < SWEEP_MAX; n += n < CLI_SWEEP_ALL ? 1 : CLI_SWEEP_STEP) {
        char key[32], *err = NULL;
        snprintf(key, sizeof key, "disk-%ld", n);
        const char *const argv[] = {"send", "-c", ini, "-k", KEY_A, "-t", "trigger", "-d", "disk full", "-i", key,
                                    "-f", "host=gw1", "--link", "https://x.example=runbook", NULL};
        int64_t before = pending_of(db);
        fail_from(n);
        int ex = run_send(argv, &err);
        int failed = disarm();
        if (ex == 0) {
            assert_int_equal(pending_of(db), before + 1);
            assert_true(tu_contains(err, key));   /* the dedup key, on stdout */
        } else {
            if (ex != 1) fprintf(stderr, "n=%ld exit %d: %s", n, ex, err ? err : "");
            assert_int_equal(ex, 1);
            assert_true(failed);
            assert_true(tu_contains(err, "pdrelay send: "));
            assert_int_equal(pending_of(db), before);
        }
        free(err);
        if (!failed) break;
    }
    assert_true(n > 10 && n < SWEEP_MAX);
    db_close(db);
    free(text);
    free(ini);
    free(d);
}

int main(void)
{
    /* Before SQLite and libcurl are first used. */
    if (pdr_alloc_hook_libraries() != PDR_OK) {
        fprintf(stderr, "cannot install the failing allocator under SQLite and libcurl\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_load),
        cmocka_unit_test(test_db_push_batch),
        cmocka_unit_test(test_db_due),
        cmocka_unit_test(test_db_list),
        cmocka_unit_test(test_norm_pagerduty),
        cmocka_unit_test(test_norm_alertmanager),
        cmocka_unit_test(test_norm_alerts),
        cmocka_unit_test(test_writer_commit),
        cmocka_unit_test(test_pd_request),
        cmocka_unit_test(test_ratelimit),
        cmocka_unit_test(test_annotate),
        cmocka_unit_test(test_annotate_invalid),
        cmocka_unit_test(test_cli_send),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
