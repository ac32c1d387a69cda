/*
** test_metrics.c — GET /metrics of the real daemon: the exposition is valid
** (promtool check metrics), and the counters move as events flow through
** ingest, delivery, throttling and refusals. No whole routing key appears.
*/
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>

#include <cjson/cJSON.h>

#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define KEY_PROD "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define KEY_NATIVE "R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34"

typedef struct fx {
    char *dir, *cfg, *log, *base;
    mockpd *mock;
    it_daemon d;
} fx;

static fx *fx_start(const char *extra_listen)
{
    fx *f = calloc(1, sizeof *f);
    mockpd_opts mo = {.limit = -1};
    int port = it_free_port();
    f->dir = tu_mkdtemp();
    f->cfg = tu_printf("%s/pdrelay.ini", f->dir);
    f->log = tu_printf("%s/pdrelay.log", f->dir);
    f->base = tu_printf("http://127.0.0.1:%d", port);
    f->mock = mockpd_start(&mo);
    assert_non_null(f->mock);
    char *text = tu_printf("[agent]\ndata_dir = %s/var\nsource = gw\n[listen]\nport = %d\n%s"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 100\n"
                           "rate_per_minute = 60000\nburst = 100\nthrottle_backoff = 100ms\n"
                           "[target prod]\nrouting_key = " KEY_PROD "\nmatch = env=prod\n",
                           f->dir, port, extra_listen ? extra_listen : "", mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
    return f;
}

static void fx_free(fx *f)
{
    if (f->d.pid) assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    mockpd_stop(f->mock);
    if (!getenv("PDR_KEEP")) tu_rmrf(f->dir);
    free(f->d.log_path);
    free(f->dir);
    free(f->cfg);
    free(f->log);
    free(f->base);
    free(f);
}

static char *scrape(fx *f)
{
    char *body = NULL, *hdrs = NULL;
    assert_int_equal(it_http(f->base, "GET", "/metrics", NULL, NULL, &body, &hdrs), 200);
    assert_non_null(strcasestr(hdrs, "Content-Type: text/plain; version=0.0.4"));
    free(hdrs);
    assert_null(strstr(body, KEY_PROD));
    assert_null(strstr(body, KEY_NATIVE));
    return body;
}

/* The value of the sample named exactly series ("name{labels}"), or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return -1;
}

static void assert_sample(const char *text, const char *series, double want)
{
    double got = sample(text, series);
    if (got != want) it_fail("%s: got %g, want %g", series, got, want);
}

static void promtool_check(const char *text)
{
    const char *argv[] = {"promtool", "check", "metrics", NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, text, &out, &err);
    if (rc != 0) it_fail("promtool check metrics: exit %d: %s%s", rc, out, err);
    free(out);
    free(err);
}

static void post(fx *f, const char *path, const char *body, int want)
{
    char *reply = NULL;
    int st = it_http(f->base, "POST", path, body, NULL, &reply, NULL);
    if (st != want) it_fail("POST %s: %d, want %d: %s", path, st, want, reply);
    free(reply);
}

#define TRIGGER(key, dk, sev) \
    "{\"routing_key\":\"" key "\",\"event_action\":\"trigger\",\"dedup_key\":\"" dk "\"," \
    "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"" sev "\"}}"
#define AM(status, env) \
    "{\"version\":\"4\",\"status\":\"" status "\",\"receiver\":\"r\",\"alerts\":[{\"status\":\"" status "\"," \
    "\"labels\":{\"alertname\":\"DiskFull\",\"severity\":\"critical\",\"env\":\"" env "\"}," \
    "\"annotations\":{},\"fingerprint\":\"fp-" env "\"}]}"

static void test_counters_move(void **state)
{
    (void)state;
    fx *f = fx_start(NULL);
    char *m = scrape(f);
    promtool_check(m);
    /* At start: zero error counters, empty outbox, build info. */
    assert_sample(m, "pagerduty_api_errors_total{error_type=\"rate_limit\"}", 0);
    assert_sample(m, "pdrelay_dead_letters_total{reason=\"permanent\"}", 0);
    assert_sample(m, "pdrelay_outbox_events{state=\"pending\"}", 0);
    assert_non_null(strstr(m, "pdrelay_build_info{version=\""));
    assert_true(sample(m, "process_start_time_seconds") > 1.7e9);
    double written0 = sample(m, "pdrelay_db_bytes_written_total");   /* /proc/self/io */
    assert_true(written0 >= 0);
    free(m);

    /* One throttled attempt, then: a routed alert (prod), an unrouted one,
    ** a native event (redacted target), an invalid request. */
    assert_int_equal(mockpd_set_mode_json(f->mock, "{\"mode\":\"status\",\"status\":429,\"count\":1}"), 0);
    post(f, "/v1/alertmanager", AM("firing", "prod"), 200);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    post(f, "/v1/alertmanager", AM("firing", "staging"), 200);
    post(f, "/v2/enqueue", TRIGGER(KEY_NATIVE, "n-1", "warning"), 202);
    post(f, "/v2/enqueue", "{\"routing_key\":1}", 400);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=delivered key=\"R0\xe2\x80\xa6" "cd34\"", 10000), 0);
    m = scrape(f);
    promtool_check(m);
    assert_sample(m, "pagerduty_events_triggered_total{target=\"prod\",severity=\"critical\"}", 1);
    assert_sample(m, "pagerduty_events_triggered_total{target=\"R0\xe2\x80\xa6" "cd34\",severity=\"warning\"}", 1);
    assert_sample(m, "pagerduty_api_requests_total{endpoint=\"enqueue\",status=\"429\"}", 1);
    assert_sample(m, "pagerduty_api_requests_total{endpoint=\"enqueue\",status=\"202\"}", 2);
    assert_sample(m, "pagerduty_api_errors_total{error_type=\"rate_limit\"}", 1);
    assert_sample(m, "pagerduty_rate_limit_hits_total{target=\"prod\"}", 1);
    assert_sample(m, "pagerduty_api_duration_seconds_count{endpoint=\"enqueue\"}", 3);
    assert_sample(m, "pagerduty_api_duration_seconds_bucket{endpoint=\"enqueue\",le=\"+Inf\"}", 3);
    assert_sample(m, "pdrelay_ingest_total{endpoint=\"alertmanager\",result=\"queued\"}", 1);
    assert_sample(m, "pdrelay_ingest_total{endpoint=\"alertmanager\",result=\"unrouted\"}", 1);
    assert_sample(m, "pdrelay_ingest_total{endpoint=\"enqueue\",result=\"queued\"}", 1);
    assert_sample(m, "pdrelay_ingest_total{endpoint=\"enqueue\",result=\"rejected\"}", 1);
    assert_sample(m, "pdrelay_ingest_commit_seconds_count", 2);
    assert_sample(m, "pdrelay_outbox_events{state=\"pending\"}", 0);
    assert_sample(m, "pdrelay_dedup_entries", 1);   /* alerts with a fingerprint; native events have none */
    /* The commits wrote to the outbox's file system (tmpfs counts nothing). */
    struct statfs sf;
    assert_int_equal(statfs(f->dir, &sf), 0);
    if (sf.f_type != 0x01021994 /* TMPFS_MAGIC */) assert_true(sample(m, "pdrelay_db_bytes_written_total") > written0);
    free(m);

    /* A resolve, a refused event (dead letter), a change event. */
    assert_int_equal(mockpd_set_mode(f->mock, "status", 400, 0, 1), 0);
    post(f, "/v2/enqueue", TRIGGER(KEY_NATIVE, "n-2", "info"), 202);
    assert_int_equal(it_wait_log(&f->d, "msg=\"refused by PagerDuty: moved to the dead letters\"", 10000), 0);
    post(f, "/v1/alertmanager", AM("resolved", "prod"), 200);
    post(f, "/v2/change/enqueue", "{\"routing_key\":\"" KEY_PROD "\",\"payload\":{\"summary\":\"deploy\"}}", 202);
    assert_int_equal(mockpd_wait_accepted(f->mock, 4, 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "action=change", 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "action=resolve", 10000), 0);
    m = scrape(f);
    promtool_check(m);
    assert_sample(m, "pagerduty_events_resolved_total{target=\"prod\"}", 1);
    assert_sample(m, "pagerduty_change_events_total{target=\"prod\"}", 1);
    assert_sample(m, "pagerduty_api_requests_total{endpoint=\"change\",status=\"202\"}", 1);
    assert_sample(m, "pagerduty_api_errors_total{error_type=\"bad_request\"}", 1);
    assert_sample(m, "pdrelay_dead_letters_total{reason=\"permanent\"}", 1);
    assert_sample(m, "pdrelay_outbox_events{state=\"dead\"}", 1);
    assert_sample(m, "pdrelay_dedup_entries", 0);   /* the resolve removed prod's entry */
    free(m);
    fx_free(f);
}

/* With a token, /metrics needs it too; /healthz does not. */
static void test_metrics_behind_token(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *tok = tu_printf("%s/token", dir);
    tu_write_file(tok, "scrape-me\n");
    char *listen = tu_printf("auth_token_file = %s\n", tok);
    fx *f = fx_start(listen);
    assert_int_equal(it_http(f->base, "GET", "/metrics", NULL, NULL, NULL, NULL), 401);
    assert_int_equal(it_http(f->base, "GET", "/metrics", NULL, "Authorization: Bearer scrape-me", NULL, NULL), 200);
    assert_int_equal(it_http(f->base, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
    fx_free(f);
    tu_rmrf(dir);
    free(dir);
    free(tok);
    free(listen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_move),
        cmocka_unit_test(test_metrics_behind_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
