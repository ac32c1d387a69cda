/*
** test_bounds.c — `pdrelay run` at the outbox's bounds, as a client and an
** operator see them: [outbox] max_bytes and min_free answer 503 with
** Retry-After naming the bound, /readyz agrees, the log and
** pdrelay_outbox_full{bound} say which; dead letters never turn a new event
** away and are dropped oldest first past max_dead (counted and logged); a
** bound lowered below what is queued drops nothing pending and refuses new
** events until the outbox drains.
*/
#define _GNU_SOURCE 1   /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static const char *const KEYS[] = {"R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12"};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)
#define KEY KEYS[0]

static void fx_config(it_fx *f, const char *outbox)
{
    it_fx_port(f);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 50\n"
                           "timeout_ms = 2000\nconnect_timeout_ms = 500\n[outbox]\n%s\n",
                           f->data_dir, f->port, mockpd_url(f->mock), outbox ? outbox : "");
    tu_write_file(f->cfg, text);
    free(text);
}

static int f_starts;

static void fx_start(it_fx *f)
{
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    /* the start's count: a test may start the daemon twice */
    assert_int_equal(it_wait_log_count(&f->d, "msg=\"pdrelay started\"", ++f_starts, 10000), 0);
}

/* A trigger whose body is about pad + 150 bytes. */
static char *trigger(const char *dk, size_t pad)
{
    char *p = malloc(pad + 1);
    assert_non_null(p);
    memset(p, 'p', pad);
    p[pad] = '\0';
    char *b = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                        "\"payload\":{\"summary\":\"disk filling\",\"source\":\"gw-1\",\"severity\":\"error\","
                        "\"custom_details\":{\"pad\":\"%s\"}}}",
                        KEY, dk, p);
    free(p);
    return b;
}

static int post(it_fx *f, const char *dk, size_t pad, char **reply, char **headers)
{
    char *b = trigger(dk, pad);
    int st = it_http(f->base, "POST", "/v2/enqueue", b, NULL, reply, headers);
    free(b);
    return st;
}

/* A 503 in PagerDuty's error shape, Retry-After set, its message naming key. */
static void expect_full_reply(const char *reply, const char *headers, const char *key)
{
    cJSON *r = cJSON_Parse(reply);
    assert_non_null(r);
    assert_string_equal(it_jstr(r, "status"), "unavailable");
    assert_string_equal(it_jstr(r, "message"), "Outbox full");
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(r, "errors");
    const cJSON *e0 = cJSON_GetArrayItem(errs, 0);
    if (!cJSON_IsString(e0) || !strstr(e0->valuestring, key)) it_fail("503 does not name %s: %s", key, reply);
    if (headers && !strcasestr(headers, "Retry-After: ")) it_fail("503 without Retry-After: %s", headers);
    cJSON_Delete(r);
}

/* The value of the metric line starting with series ("name{labels}"), or -1. */
static double metric(it_fx *f, const char *series)
{
    char *body = NULL;
    double v = -1;
    assert_int_equal(it_http(f->base, "GET", "/metrics", NULL, NULL, &body, NULL), 200);
    char *want = tu_printf("\n%s ", series);
    const char *p = strstr(body, want);
    if (p) v = strtod(p + strlen(want), NULL);
    free(want);
    free(body);
    return v;
}

/* The pending rows' dedup keys, in id order, joined by ','. */
static char *pending_keys(it_fx *f)
{
    db_row *rows = NULL;
    size_t n = it_rows(f->data_dir, DB_ROW_PENDING, &rows);
    char *s = tu_printf("%s", "");
    for (size_t i = 0; i < n; i++) {
        char *t = tu_printf("%s%s%s", s, i ? "," : "", rows[i].dedup_key);
        free(s);
        s = t;
    }
    db_rows_free(rows, n);
    return s;
}

/* max_bytes = 1MB, events of ~200 KB, the uplink down: five fit, the sixth
** is refused with a 503 naming max_bytes; /readyz, the metric and the log
** agree; what was queued is untouched. When the uplink returns and the
** outbox drains, events are accepted again and the log says so. */
static void test_max_bytes(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    f_starts = 0;
    char *reply = NULL, *hdrs = NULL;
    fx_config(f, "max_bytes = 1MB");
    assert_int_equal(mockpd_halt(f->mock), 0);
    fx_start(f);
    int accepted = 0;
    for (int i = 0; i < 10; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "big-%d", i);
        int st = post(f, dk, 200 * 1024, &reply, &hdrs);
        if (st == 202) {
            accepted++;
        } else {
            assert_int_equal(st, 503);
            expect_full_reply(reply, hdrs, "max_bytes (1MB)");
            free(reply);
            free(hdrs);
            reply = hdrs = NULL;
            break;
        }
        free(reply);
        free(hdrs);
        reply = hdrs = NULL;
    }
    assert_int_equal(accepted, 5);   /* 5 x ~200.2 KB < 1 MB < 6 x */
    char *before = pending_keys(f);
    assert_string_equal(before, "big-0,big-1,big-2,big-3,big-4");
    assert_int_equal(it_wait_log(&f->d, "msg=\"outbox full: new events are refused (503) until it drains; "
                                        "nothing queued is dropped\" bound=max_bytes limit=1MB", 5000), 0);
    /* a small event still fits under the bound: only what would cross it is refused */
    assert_int_equal(post(f, "small", 10, NULL, NULL), 202);
    assert_int_equal(it_wait_log(&f->d, "msg=\"outbox accepts new events again\" bound=max_bytes", 5000), 0);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, &reply, &hdrs), 200);
    free(reply);
    free(hdrs);
    assert_int_equal(post(f, "big-x", 200 * 1024, &reply, &hdrs), 503);
    free(reply);
    free(hdrs);
    assert_true(metric(f, "pdrelay_outbox_full{bound=\"max_bytes\"}") == 0);   /* not reached: 1 KB left */
    assert_true(metric(f, "pdrelay_outbox_bytes{state=\"pending\"}") > 5 * 200 * 1024);
    free(before);
    /* The uplink returns: everything drains, in order, and new events are taken. */
    assert_int_equal(mockpd_restart(f->mock), 0);
    kill(f->d.pid, SIGUSR1);
    assert_int_equal(mockpd_wait_accepted(f->mock, 6, 20000), 0);
    assert_int_equal(post(f, "after", 200 * 1024, NULL, NULL), 202);
    assert_int_equal(it_wait_log_count(&f->d, "msg=\"outbox accepts new events again\" bound=max_bytes", 2, 5000),
                     0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* min_free larger than any disk: nothing is taken, the 503 names min_free,
** /readyz says the same, pdrelay_outbox_full{bound="min_free"} is 1, and
** nothing was stored. */
static void test_min_free(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    f_starts = 0;
    char *reply = NULL, *hdrs = NULL;
    fx_config(f, "min_free = 1024TB");
    fx_start(f);
    assert_int_equal(post(f, "m-1", 10, &reply, &hdrs), 503);
    expect_full_reply(reply, hdrs, "min_free (1024TB)");
    free(reply);
    free(hdrs);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, &reply, &hdrs), 503);
    expect_full_reply(reply, hdrs, "min_free");
    free(reply);
    free(hdrs);
    assert_true(metric(f, "pdrelay_outbox_full{bound=\"min_free\"}") == 1);
    assert_true(metric(f, "pdrelay_outbox_full{bound=\"max_events\"}") == 0);
    assert_int_equal(it_wait_log(&f->d, "bound=min_free limit=1024TB", 5000), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* PagerDuty refuses everything (400): with max_events = 2 the dead letters
** pile up past it and new events are still taken; past max_dead = 3 the
** oldest are dropped, counted and logged. */
static void test_dead_letters_never_block(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    f_starts = 0;
    fx_config(f, "max_events = 2\nmax_dead = 3");
    assert_int_equal(mockpd_set_mode(f->mock, "status", 400, 0, 0), 0);
    fx_start(f);
    for (int i = 0; i < 6; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "d-%d", i);
        assert_int_equal(post(f, dk, 10, NULL, NULL), 202);
        /* each is refused upstream before the next one comes */
        assert_int_equal(mockpd_wait_requests(f->mock, i + 1, 10000), 0);
        assert_int_equal(it_wait_log_count(&f->d, "moved to the dead letters", i + 1, 10000), 0);
    }
    assert_int_equal(it_wait_log(&f->d, "msg=\"dropped the oldest dead letters past their bounds\"", 10000), 0);
    db_row *rows = NULL;
    size_t n = 0;
    /* the drops run at the sender's next pass: await the count */
    for (int tries = 0; tries < 200; tries++) {
        if (metric(f, "pdrelay_dead_dropped_total{bound=\"max_dead\"}") == 3) break;
        assert_int_equal(it_wait_log_count(&f->d, "dropped the oldest dead letters", tries + 1, 10000), 0);
    }
    assert_true(metric(f, "pdrelay_dead_dropped_total{bound=\"max_dead\"}") == 3);
    n = it_rows(f->data_dir, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].dedup_key, "d-3");   /* the oldest went first */
    assert_string_equal(rows[2].dedup_key, "d-5");
    db_rows_free(rows, n);
    assert_true(metric(f, "pdrelay_outbox_full{bound=\"max_events\"}") == 0);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Four events queued with the uplink down, then a restart with max_events
** = 2: nothing pending is dropped, new events are refused (503 naming
** max_events), and taken again once the outbox drained below the bound. */
static void test_lowered_bound_drops_nothing(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    f_starts = 0;
    char *reply = NULL, *hdrs = NULL;
    fx_config(f, "max_events = 10");
    assert_int_equal(mockpd_halt(f->mock), 0);
    fx_start(f);
    for (int i = 0; i < 4; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "l-%d", i);
        assert_int_equal(post(f, dk, 10, NULL, NULL), 202);
    }
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    fx_config(f, "max_events = 2");
    fx_start(f);
    char *keys = pending_keys(f);
    assert_string_equal(keys, "l-0,l-1,l-2,l-3");
    free(keys);
    assert_int_equal(post(f, "l-new", 10, &reply, &hdrs), 503);
    expect_full_reply(reply, hdrs, "max_events (2)");
    free(reply);
    free(hdrs);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL), 503);
    keys = pending_keys(f);
    assert_string_equal(keys, "l-0,l-1,l-2,l-3");
    free(keys);
    /* The uplink returns: all four arrive, in order, then new ones are taken. */
    assert_int_equal(mockpd_restart(f->mock), 0);
    kill(f->d.pid, SIGUSR1);
    assert_int_equal(mockpd_wait_accepted(f->mock, 4, 20000), 0);
    cJSON *evs = mockpd_events(f->mock);
    it_assert_in_order(evs, KEY, "l", 4);
    cJSON_Delete(evs);
    assert_int_equal(post(f, "l-new", 10, NULL, NULL), 202);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_min_free),
        cmocka_unit_test(test_dead_letters_never_block),
        cmocka_unit_test(test_lowered_bound_drops_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
