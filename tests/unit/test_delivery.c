/*
** test_delivery.c — the sender's parts that decide when and whether to send:
** the rate limiter (never more than rate_per_minute in any sliding 60 s
** window as the server sees it), backoff with jitter (resumed from a row's
** stored attempts after a restart), and the classification of PagerDuty's
** replies.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "db.h"
#include "pd_client.h"
#include "ratelimit.h"
#include "webhook.h"
#include "testutil.h"

/* Drives one key's limiter as the sender does (one request in flight, each
** taking a varying latency) and returns the arrival times the server saw. */
static int64_t *simulate(int rate, int burst, int n, int64_t *end_out)
{
    ratelimit rl;
    int64_t *arrivals = malloc(sizeof *arrivals * (size_t)n);
    int64_t now = 1000000;
    uint64_t seed = 42;
    assert_int_equal(ratelimit_init(&rl, rate, burst, 60000, now), PDR_OK);
    for (int i = 0; i < n; i++) {
        int64_t t = ratelimit_next_ms(&rl, now);
        if (t > now) now = t;
        assert_true(ratelimit_next_ms(&rl, now) <= now);
        ratelimit_take(&rl, now);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int64_t up = (int64_t)(seed >> 33) % 80, down = (int64_t)(seed >> 40) % 80;
        arrivals[i] = now + up;          /* the server sees it after the uplink delay */
        now = arrivals[i] + down;        /* and we see the reply after the downlink delay */
        ratelimit_done(&rl, now);
    }
    ratelimit_cleanup(&rl);
    *end_out = now;
    return arrivals;
}

static void test_ratelimit_sliding_window(void **state)
{
    (void)state;
    int64_t end;
    int64_t *a = simulate(120, 10, 600, &end);
    /* no 60 s window (as the server counts: arrivals within (t-60000, t]) holds more than 120 */
    int j = 0, worst = 0;
    for (int i = 0; i < 600; i++) {
        while (a[j] <= a[i] - 60000) j++;
        if (i - j + 1 > worst) worst = i - j + 1;
    }
    assert_true(worst <= 120);
    assert_int_equal(worst, 120);      /* and it uses the whole allowance */
    /* and it does not waste it: once the first window is full, requests go
    ** at 120/min less only the network delays (>= 0.99 of the limit here) */
    double per_min = (double)(599 - 119) * 60000.0 / (double)(a[599] - a[119]);
    assert_true(per_min <= 120.0);
    assert_true(per_min >= 0.99 * 120.0);
    free(a);
}

/* After a 429 the key runs at half its rate until the given time: a
** greedy sender gets 60 starts in a window of 120/min, and 120 again
** after it. */
static void test_ratelimit_halved_after_429(void **state)
{
    (void)state;
    ratelimit rl;
    int64_t now = 1000, until = 1000 + 60000;
    assert_int_equal(ratelimit_init(&rl, 120, 10, 60000, now), PDR_OK);
    ratelimit_throttled(&rl, now);
    ratelimit_halve(&rl, until);
    int in_window = 0;
    int64_t t = now;
    for (;;) {
        t = ratelimit_next_ms(&rl, t);
        if (t >= until) break;
        ratelimit_take(&rl, t);
        ratelimit_done(&rl, t);
        in_window++;
    }
    /* 60/min for one minute, from an empty bucket: 59 or 60 starts */
    assert_true(in_window >= 59 && in_window <= 60);
    /* then the full rate: the next minute holds at most 120 and close to it */
    int next = 0;
    int64_t end = until + 60000;
    for (;;) {
        t = ratelimit_next_ms(&rl, t);
        if (t >= end) break;
        ratelimit_take(&rl, t);
        ratelimit_done(&rl, t);
        next++;
    }
    assert_true(next > 100 && next <= 120);
    ratelimit_cleanup(&rl);
}

static void test_ratelimit_burst_then_rate(void **state)
{
    (void)state;
    ratelimit rl;
    int64_t now = 5000;
    assert_int_equal(ratelimit_init(&rl, 120, 10, 60000, now), PDR_OK);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ratelimit_next_ms(&rl, now), now);
        ratelimit_take(&rl, now);
        ratelimit_done(&rl, now);
    }
    /* bucket empty: the next token comes in 500 ms (120/min) */
    int64_t t = ratelimit_next_ms(&rl, now);
    assert_true(t >= now + 500 && t <= now + 501);
    /* a 429 empties the bucket again */
    ratelimit_take(&rl, t);
    ratelimit_throttled(&rl, t + 100);
    assert_true(ratelimit_next_ms(&rl, t + 100) >= t + 100 + 500);
    ratelimit_cleanup(&rl);
}

/* rate_per_minute 0 ([pagerduty] upstream = relay): no limit, ever. */
static void test_ratelimit_off(void **state)
{
    ratelimit rl;
    int64_t now = 1000;
    (void)state;
    assert_int_equal(ratelimit_init(&rl, 0, 1, 60000, now), PDR_OK);
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(ratelimit_next_ms(&rl, now), now);
        ratelimit_take(&rl, now);
        ratelimit_done(&rl, now);
    }
    ratelimit_throttled(&rl, now);
    ratelimit_halve(&rl, now + 60000);
    assert_int_equal(ratelimit_next_ms(&rl, now), now);   /* the sender's own wait holds a 429'd key */
    assert_int_equal(rl.n_done, 0);
    ratelimit_cleanup(&rl);
}

static void test_backoff(void **state)
{
    (void)state;
    backoff b;
    backoff_init(&b, 100, 5000, 7);
    static const int64_t ceil[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    for (int i = 0; i < 9; i++) {
        int64_t d = backoff_next(&b);
        assert_int_equal(backoff_ceiling(&b, i + 1), ceil[i]);
        assert_true(d >= ceil[i] / 2 && d <= ceil[i]);
    }
    backoff_reset(&b);
    int64_t d = backoff_next(&b);
    assert_true(d >= 50 && d <= 100);
    /* jitter: two keys failing together do not retry together */
    backoff x, y;
    backoff_init(&x, 1000, 60000, 1);
    backoff_init(&y, 1000, 60000, 2);
    int same = 0;
    for (int i = 0; i < 6; i++) same += backoff_next(&x) == backoff_next(&y);
    assert_true(same < 6);
}

/* A crash loop during an outage: each run of the daemon fails the head
** once more. The stored next_ms holds the head back across a restart, and
** the new run's lane, resumed from the stored attempts, goes on from the
** grown backoff instead of backoff_initial. Time is the fake clock. */
static void test_backoff_resumes_after_restart(void **state)
{
    (void)state;
    const int64_t T0 = 1700000000000;
    char *dir = tu_mkdtemp();
    tu_clock_install(T0);
    db_handle *db = tu_db_open(dir, 0);
    db_event ev = {"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12", PDR_ACTION_TRIGGER, "k", NULL, "{}", 2, PDR_URGENCY_WARNING, NULL, 0};
    int64_t id = 0;
    assert_int_equal(db_outbox_push(db, &ev, &id), PDR_OK);

    backoff lane;
    int64_t delay = 0;
    for (int run = 1; run <= 8; run++) {
        db_row *rows = NULL;
        size_t n = 0;
        backoff_init(&lane, 100, 5000, (uint64_t)run);   /* a new process: a new lane */
        if (run > 1) {
            /* the stored next_ms is honoured: not due a moment before it */
            tu_clock_advance(delay - 1);
            assert_int_equal(db_outbox_due(db, pdr_clock_now_ms(), 10, &rows, &n), PDR_OK);
            assert_int_equal(n, 0);
            db_rows_free(rows, n);
            tu_clock_advance(1);
        }
        assert_int_equal(db_outbox_due(db, pdr_clock_now_ms(), 10, &rows, &n), PDR_OK);
        assert_int_equal(n, 1);
        assert_int_equal(rows[0].attempts, run - 1);
        backoff_resume(&lane, rows[0].attempts);
        db_rows_free(rows, n);
        delay = backoff_next(&lane);   /* this run's attempt failed */
        int64_t ceiling = backoff_ceiling(&lane, run);
        assert_true(delay >= ceiling / 2 && delay <= ceiling);
        assert_int_equal(db_outbox_reschedule(db, id, pdr_clock_now_ms() + delay, "HTTP 503"), PDR_OK);
    }
    /* after 8 failures, at the cap: [2500, 5000] ms, not [50, 100] */
    assert_true(delay >= 2500);

    /* resume never lowers a lane's count, and caps what it takes */
    backoff_init(&lane, 100, 5000, 1);
    backoff_resume(&lane, 3);
    backoff_resume(&lane, 1);
    assert_int_equal(lane.failures, 3);
    backoff_resume(&lane, INT64_MAX);
    assert_true(backoff_next(&lane) <= 5000);

    db_close(db);
    pdr_clock_set(NULL, NULL);
    tu_rmrf(dir);
    free(dir);
}

/* Webhook replies (webhook.h): 2xx delivered; 408, 429, 5xx, no reply
** retried; other 4xx dead with an escaped excerpt; the header values of the
** request scrubbed from the text. */
static void test_webhook_classify(void **state)
{
    (void)state;
    pd_result r;
    static const struct { long st; pd_outcome want; } cases[] = {
        {200, PD_OK}, {204, PD_OK}, {408, PD_RETRY}, {429, PD_RETRY}, {500, PD_RETRY}, {503, PD_RETRY},
        {400, PD_DEAD}, {401, PD_DEAD}, {404, PD_DEAD}, {413, PD_DEAD}, {301, PD_RETRY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        webhook_classify(cases[i].st, CURLE_OK, "{\"dedup_key\":\"x\"}", 15, 0, NULL, &r);
        if (r.outcome != cases[i].want) fail_msg("HTTP %ld: outcome %d", cases[i].st, (int)r.outcome);
        assert_string_equal(r.dedup_key, "");
    }
    webhook_classify(429, CURLE_OK, NULL, 0, 7, NULL, &r);
    assert_int_equal(r.type, PD_ERR_RATE_LIMIT);
    assert_int_equal(r.retry_after_ms, 7000);
    const char *body = "bad\x1b[31m token=Bearer SeCrEt\n";
    webhook_classify(400, CURLE_OK, body, strlen(body), 0, NULL, &r);
    assert_string_equal(r.error, "HTTP 400: bad\\x1b[31m token=Bearer SeCrEt\\n");
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Authorization: Bearer SeCrEt");
    webhook_scrub(r.error, h);
    assert_string_equal(r.error, "HTTP 400: bad\\x1b[31m token=*************\\n");
    curl_slist_free_all(h);
    webhook_classify(0, CURLE_COULDNT_CONNECT, NULL, 0, 0, "refused", &r);
    assert_int_equal(r.outcome, PD_RETRY);
    assert_int_equal(r.type, PD_ERR_NETWORK);
}

static void test_classify(void **state)
{
    (void)state;
    pd_result r;
    const char *ok = "{\"status\":\"success\",\"message\":\"Event processed\",\"dedup_key\":\"abc\"}";
    pd_classify(202, CURLE_OK, ok, strlen(ok), 0, NULL, &r);
    assert_int_equal(r.outcome, PD_OK);
    assert_string_equal(r.dedup_key, "abc");
    assert_string_equal(r.error, "");

    const char *bad = "{\"status\":\"invalid event\",\"message\":\"Event object is invalid\","
                      "\"errors\":[\"'payload.summary' is missing or blank\",\"'payload.source' is missing or blank\"]}";
    pd_classify(400, CURLE_OK, bad, strlen(bad), 0, NULL, &r);
    assert_int_equal(r.outcome, PD_DEAD);
    assert_int_equal(r.type, PD_ERR_BAD_REQUEST);
    assert_string_equal(r.error, "HTTP 400: 'payload.summary' is missing or blank; 'payload.source' is missing or blank");

    pd_classify(429, CURLE_OK, "{}", 2, 7, NULL, &r);
    assert_int_equal(r.outcome, PD_RETRY);
    assert_int_equal(r.type, PD_ERR_RATE_LIMIT);
    assert_int_equal(r.retry_after_ms, 7000);

    static const struct { long status; pd_outcome o; pd_error_type t; } table[] = {
        {500, PD_RETRY, PD_ERR_SERVER}, {502, PD_RETRY, PD_ERR_SERVER}, {503, PD_RETRY, PD_ERR_SERVER},
        {408, PD_RETRY, PD_ERR_TIMEOUT}, {401, PD_DEAD, PD_ERR_UNAUTHORIZED}, {403, PD_DEAD, PD_ERR_UNAUTHORIZED},
        {404, PD_DEAD, PD_ERR_BAD_REQUEST}, {413, PD_DEAD, PD_ERR_BAD_REQUEST}, {301, PD_RETRY, PD_ERR_OTHER},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        pd_classify(table[i].status, CURLE_OK, "not json", 8, 0, NULL, &r);
        assert_int_equal(r.outcome, table[i].o);
        assert_int_equal(r.type, table[i].t);
    }
    /* upstream = relay: a 401/403 is the relay's token check, held; nothing else changes */
    for (long st = 401; st <= 403; st += 2) {
        pd_classify(st, CURLE_OK, "{}", 2, 0, NULL, &r);
        pd_upstream_adjust(&r, PDR_UPSTREAM_PAGERDUTY);
        assert_int_equal(r.outcome, PD_DEAD);
        pd_upstream_adjust(&r, PDR_UPSTREAM_RELAY);
        assert_int_equal(r.outcome, PD_RETRY);
        assert_int_equal(r.type, PD_ERR_UNAUTHORIZED);
    }
    pd_classify(400, CURLE_OK, "{}", 2, 0, NULL, &r);
    pd_upstream_adjust(&r, PDR_UPSTREAM_RELAY);
    assert_int_equal(r.outcome, PD_DEAD);
    pd_classify(503, CURLE_OK, "{}", 2, 2, NULL, &r);
    pd_upstream_adjust(&r, PDR_UPSTREAM_RELAY);
    assert_int_equal(r.outcome, PD_RETRY);
    assert_int_equal(r.retry_after_ms, 2000);
    pd_classify(404, CURLE_OK, "not json", 8, 0, NULL, &r);
    assert_string_equal(r.error, "HTTP 404: not json");

    static const struct { CURLcode cc; pd_error_type t; } net[] = {
        {CURLE_OPERATION_TIMEDOUT, PD_ERR_TIMEOUT}, {CURLE_COULDNT_CONNECT, PD_ERR_NETWORK},
        {CURLE_COULDNT_RESOLVE_HOST, PD_ERR_NETWORK}, {CURLE_RECV_ERROR, PD_ERR_NETWORK},
        {CURLE_GOT_NOTHING, PD_ERR_NETWORK}, {CURLE_PEER_FAILED_VERIFICATION, PD_ERR_TLS},
        {CURLE_SSL_CONNECT_ERROR, PD_ERR_TLS}, {CURLE_SSL_CACERT_BADFILE, PD_ERR_TLS},
    };
    for (size_t i = 0; i < sizeof net / sizeof *net; i++) {
        pd_classify(0, net[i].cc, NULL, 0, 0, "detail", &r);
        assert_int_equal(r.outcome, PD_RETRY);
        assert_int_equal(r.type, net[i].t);
        assert_int_equal(r.http_status, 0);
    }
    pd_classify(0, CURLE_PEER_FAILED_VERIFICATION, NULL, 0, 0,
                "SSL certificate problem: unable to get local issuer certificate", &r);
    assert_string_equal(r.error, "tls: SSL certificate problem: unable to get local issuer certificate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit_sliding_window),
        cmocka_unit_test(test_ratelimit_burst_then_rate),
        cmocka_unit_test(test_ratelimit_halved_after_429),
        cmocka_unit_test(test_ratelimit_off),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_backoff_resumes_after_restart),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_webhook_classify),
    };
    return cmocka_run_group_tests_name("delivery", tests, NULL, NULL);
}
