/*
** test_uplinks.c — `pdrelay run` with two [pagerduty] urls, two mock
** PagerDuties A and B (url = A,B): events go to A; A halted (connections
** refused), delivery moves to B within one backoff, the log says `uplink
** failover`, pdrelay_upstream_active and `queue status` say B; A restarted,
** after failback_after of answered probes delivery is back on A (`uplink
** failback`). Every event arrives once, and each key's events (each with
** its own dedup_key) in order across both mocks. Durations are scaled down
** in the config.
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
#include <time.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "event.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static const char *const KEYS[] = {
    "R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12",
    "R1bbbbbbbbbbbbbbbbbbbbbbbbbbcd34",
    "R1cccccccccccccccccccccccccccd56",
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)
#define CAL_KEY "R1zzzzzzzzzzzzzzzzzzzzzzzzzzzz99"   /* the test's own, to set a mock's clock */
#define BACKOFF_MAX_MS 1000
#define MAX_EVENTS 4096

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* A mock's arrival_ms counts from its own start: one event posted by the
** test gives the offset to this process's monotonic clock, within *err ms. */
static double calibrate(mockpd *m, double *err)
{
    char *body = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"cal\","
                           "\"payload\":{\"summary\":\"cal\",\"source\":\"t\",\"severity\":\"info\"}}", CAL_KEY);
    double t0 = mono_ms();
    assert_int_equal(mockpd_http(m, "POST", "/v2/enqueue", body, NULL, 0, NULL), 202);
    double t1 = mono_ms();
    free(body);
    cJSON *ev = mockpd_events(m);
    double at = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, ev)
        if (!strcmp(it_jstr(e, "routing_key"), CAL_KEY))
            at = cJSON_GetObjectItemCaseSensitive(e, "arrival_ms")->valuedouble;
    cJSON_Delete(ev);
    assert_true(at >= 0);
    *err = (t1 - t0) / 2 + 1;   /* and arrival_ms's own millisecond */
    return (t0 + t1) / 2 - at;
}

/* One accepted event, on this process's clock. */
typedef struct arrival {
    char key[40], dk[32];
    double at;          /* mono_ms() */
    char mock;          /* 'A' before the halt, 'a' after the restart, 'B' */
} arrival;

typedef struct seen {
    arrival *a;
    int n;
} seen;

/* Adds a mock's accepted events (but the calibration) to s. */
static void collect(seen *s, mockpd *m, double offset, char mock)
{
    cJSON *ev = mockpd_events(m);
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        if (!strcmp(it_jstr(e, "routing_key"), CAL_KEY)) continue;
        assert_true(s->n < MAX_EVENTS);
        arrival *a = &s->a[s->n++];
        snprintf(a->key, sizeof a->key, "%s", it_jstr(e, "routing_key"));
        snprintf(a->dk, sizeof a->dk, "%s", it_jstr(e, "dedup_key"));
        a->at = cJSON_GetObjectItemCaseSensitive(e, "arrival_ms")->valuedouble + offset;
        a->mock = mock;
    }
    cJSON_Delete(ev);
}

static long accepted(mockpd *m)
{
    long n = mockpd_stat(m, "accepted");
    assert_true(n >= 0);
    return n;
}

/* The metric line's value, or -1 when absent. */
static double metric_line(it_fx *f, const char *line)
{
    char *body = NULL;
    double v = -1;
    assert_int_equal(it_http(f->base, "GET", "/metrics", NULL, NULL, &body, NULL), 200);
    char *want = tu_printf("\n%s ", line);
    const char *p = strstr(body, want);
    if (p) v = strtod(p + strlen(want), NULL);
    free(want);
    free(body);
    return v;
}

static char *queue_status(it_fx *f, int json)
{
    const char *argv[] = {tu_pdrelay(), "queue", "status", "-c", f->cfg, json ? "--json" : NULL, NULL};
    char *out = NULL;
    assert_int_equal(tu_run(argv, NULL, &out, NULL), 0);
    return out;
}

static void push(it_fx *f, size_t k, const char *prefix, int i)
{
    char dk[32];
    snprintf(dk, sizeof dk, "%s-%d", prefix, i);
    tu_push_event(f->data_dir, KEYS[k], PDR_ACTION_TRIGGER, dk, NULL, "error", "uplinks");
}

/* Where a dedup key ("a-3") stands in its key's sequence: phases a, b, c,
** d in that order, then the index. */
static long rank(const char *dk)
{
    return (long)(dk[0] - 'a') * 100000 + strtol(dk + 2, NULL, 10);
}

static void test_failover_and_failback(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    mockpd *a = f->mock, *b = mockpd_start(&mo);
    assert_non_null(b);
    it_fx_port(f);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s, %s/\nbackoff_initial_ms = 20\nbackoff_max_ms = %d\n"
                           "timeout_ms = 2000\nconnect_timeout_ms = 500\ndown_probe_max = 300ms\n"
                           "failback_after = 2s\nrate_per_minute = 100000\nburst = 1000\n",
                           f->data_dir, f->port, mockpd_url(a), mockpd_url(b), BACKOFF_MAX_MS);
    tu_write_file(f->cfg, text);
    free(text);
    double err_a, err_b, err_a2;
    double off_a = calibrate(a, &err_a), off_b = calibrate(b, &err_b);
    seen s = {calloc(MAX_EVENTS, sizeof(arrival)), 0};
    int n_c = 0, total = 0;

    /* 1. on A */
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    for (size_t k = 0; k < N_KEYS; k++)
        for (int i = 0; i < 5; i++) push(f, k, "a", i);
    total += 5 * (int)N_KEYS;
    assert_int_equal(mockpd_wait_accepted(a, 1 + total, 20000), 0);
    char *la = tu_printf("pdrelay_upstream_active{url=\"%s\"}", mockpd_url(a));
    char *lb = tu_printf("pdrelay_upstream_active{url=\"%s\"}", mockpd_url(b));
    assert_true(metric_line(f, la) == 1);
    assert_true(metric_line(f, lb) == 0);
    collect(&s, a, off_a, 'A');

    /* 2. A halted: the next events go to B, within one backoff */
    assert_int_equal(mockpd_halt(a), 0);
    double pushed = mono_ms();
    for (size_t k = 0; k < N_KEYS; k++)
        for (int i = 0; i < 5; i++) push(f, k, "b", i);
    total += 5 * (int)N_KEYS;
    assert_int_equal(mockpd_wait_accepted(b, 1 + 5 * (int)N_KEYS, 20000), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink failover", 5000), 0);
    {
        cJSON *ev = mockpd_events(b);
        double first = -1;
        const cJSON *e;
        cJSON_ArrayForEach(e, ev)
            if (strcmp(it_jstr(e, "routing_key"), CAL_KEY) && first < 0)
                first = cJSON_GetObjectItemCaseSensitive(e, "arrival_ms")->valuedouble + off_b;
        cJSON_Delete(ev);
        if (first - pushed > BACKOFF_MAX_MS + err_b)
            it_fail("the first event reached B %.0f ms after it was queued: more than one backoff (%d ms)",
                    first - pushed, BACKOFF_MAX_MS);
    }
    assert_true(metric_line(f, lb) == 1);
    assert_true(metric_line(f, la) == 0);
    char *out = queue_status(f, 0), *want = tu_printf("upstream: %s (url 2 of 2", mockpd_url(b));
    if (!strstr(out, want)) it_fail("queue status does not say B:\n%s", out);
    free(out);
    free(want);
    out = queue_status(f, 1);
    cJSON *doc = cJSON_Parse(out);
    assert_string_equal(it_jstr(cJSON_GetObjectItemCaseSensitive(doc, "uplink"), "upstream"), mockpd_url(b));
    assert_string_equal(it_jstr(cJSON_GetObjectItemCaseSensitive(doc, "uplink"), "state"), "up");
    cJSON_Delete(doc);
    free(out);

    /* 3. A back: events keep coming; after failback_after of answered
    ** probes they go to A again */
    assert_int_equal(mockpd_restart(a), 0);
    double off_a2 = calibrate(a, &err_a2);
    double restarted = mono_ms();
    while (it_wait_log(&f->d, "uplink failback", 100) != 0) {
        if (mono_ms() - restarted > 30000) it_fail("no failback within 30 s of A's restart");
        push(f, (size_t)n_c % N_KEYS, "c", n_c / (int)N_KEYS);
        n_c++;
    }
    double failback_at = mono_ms();
    if (failback_at - restarted < 2000) it_fail("failback %.0f ms after A came back: before failback_after", failback_at - restarted);
    total += n_c;
    long b_before = accepted(b);
    for (size_t k = 0; k < N_KEYS; k++)
        for (int i = 0; i < 3; i++) push(f, k, "d", i);
    total += 3 * (int)N_KEYS;
    /* everything arrives, on one mock or the other */
    double t0 = mono_ms();
    while (accepted(a) - 1 + accepted(b) - 1 + 5 * (long)N_KEYS < total) {
        if (mono_ms() - t0 > 20000) it_fail("not everything arrived: %ld + %ld of %d", accepted(a) - 1 + 5 * (long)N_KEYS, accepted(b) - 1, total);
        mockpd_wait_accepted(a, (int)accepted(a) + 1, 200);
    }
    assert_true(metric_line(f, la) == 1);
    assert_true(metric_line(f, lb) == 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    collect(&s, b, off_b, 'B');
    collect(&s, a, off_a2, 'a');
    assert_int_equal(s.n, total);
    /* after the failback B got nothing new (what was in flight to it then at most) */
    assert_true(accepted(b) <= b_before + (long)N_KEYS);

    /* once each, and each key's events in order: strictly on each mock,
    ** and across the two on the shared clock (within its error) */
    double slack = err_a > err_a2 ? err_a : err_a2;
    slack += err_b;
    for (int i = 0; i < s.n; i++)
        for (int j = 0; j < s.n; j++) {
            const arrival *x = &s.a[i], *y = &s.a[j];
            if (i == j || strcmp(x->key, y->key)) continue;
            if (!strcmp(x->dk, y->dk)) it_fail("%s %s arrived twice (%c, %c)", x->key, x->dk, x->mock, y->mock);
            if (rank(x->dk) >= rank(y->dk)) continue;
            /* x comes before y */
            if (x->mock == y->mock ? x->at > y->at : x->at > y->at + slack)
                it_fail("%s: %s (%c, %.1f) arrived after %s (%c, %.1f)", x->key, x->dk, x->mock, x->at, y->dk,
                        y->mock, y->at);
        }
    /* the probes of A while B was active were real events: A had at least
    ** the first answered and the one failback_after later */
    int c_on_a = 0, c_on_b = 0;
    for (int i = 0; i < s.n; i++) {
        if (s.a[i].dk[0] != 'c') continue;
        if (s.a[i].mock == 'a') c_on_a++;
        else c_on_b++;
    }
    if (c_on_a < 2 || c_on_b < 1) it_fail("c events: %d on A, %d on B", c_on_a, c_on_b);

    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "uplink failover"));
    assert_non_null(strstr(log, "uplink failback"));
    assert_null(strstr(log, "uplink down"));
    free(log);
    free(la);
    free(lb);
    free(s.a);
    mockpd_stop(b);
    it_fx_free(f, KEYS, N_KEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_and_failback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
