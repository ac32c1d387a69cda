/*
** test_upstream.c — the uplinks' state machine (agent/upstream.h) alone:
** failover to the next url not known down, all down, probes rotating, the
** failback probe's schedule, failback after failback_after, one url inert.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "upstream.h"

static pdr_config *load(const char *text)
{
    char *dir = tu_mkdtemp(), *path = tu_printf("%s/pdrelay.ini", dir);
    pdr_config *cfg = NULL;
    tu_write_file(path, text);
    assert_int_equal(pdr_config_load(path, &cfg, NULL), PDR_OK);
    tu_rmrf(dir);
    free(dir);
    free(path);
    return cfg;
}

static void test_failover_failback(void **state)
{
    (void)state;
    pdr_config *cfg = load("[pagerduty]\nurl = http://a, http://u:pw@b, http://c\nbackoff_max_ms = 100\n"
                           "down_probe_max = 400ms\nfailback_after = 1s\n");
    upstreams u;
    int fb;
    ups_init(&u, cfg, 1);
    assert_int_equal(u.n, 3);
    assert_string_equal(u.e[1].url_alert, "http://u:pw@b/v2/enqueue");
    assert_string_equal(u.e[1].shown, "http://u:\xe2\x80\xa6@b");
    assert_int_equal(ups_pick(&u, 1, 0, &fb), 0);
    assert_int_equal(fb, 0);
    /* a request to b failing while a is active moves nothing */
    assert_int_equal(ups_failed(&u, 1, 0, 1, 0), UPS_SAME);
    /* a fails: c, since b is known down */
    assert_int_equal(ups_failed(&u, 0, 0, 1, 10), UPS_FAILOVER);
    assert_int_equal(u.active, 2);
    assert_int_equal(ups_pick(&u, 1, 10, &fb), 2);
    /* the failback probe: not before the schedule's first step (50..100 ms) */
    int64_t t = ups_wake_ms(&u);
    assert_true(t >= 10 + 45 && t <= 10 + 100);
    assert_int_equal(ups_pick(&u, 1, t, &fb), 0);
    assert_int_equal(fb, 1);
    ups_started(&u, 0, 1, 1);
    assert_int_equal(ups_pick(&u, 1, t, &fb), 2);   /* one probe at a time */
    assert_int_equal(fb, 0);
    assert_int_equal(ups_wake_ms(&u), INT64_MAX);
    /* it fails: the schedule goes on */
    assert_int_equal(ups_failed(&u, 0, 1, 1, t), UPS_SAME);
    int64_t t2 = ups_wake_ms(&u);
    assert_true(t2 > t);
    /* answered from t2 on; failback only at an answer 1 s after the first */
    ups_started(&u, 0, 1, 1);
    assert_int_equal(ups_answered(&u, 0, 1, 1, t2), UPS_SAME);
    assert_true(ups_wake_ms(&u) <= t2 + 1000);
    ups_started(&u, 0, 1, 1);
    assert_int_equal(ups_answered(&u, 0, 1, 1, t2 + 999), UPS_SAME);
    ups_started(&u, 0, 1, 1);
    assert_int_equal(ups_answered(&u, 0, 1, 1, t2 + 1000), UPS_FAILBACK);
    assert_int_equal(u.active, 0);
    assert_int_equal(ups_wake_ms(&u), INT64_MAX);
    pdr_config_destroy(cfg);
}

static void test_all_down_rotates(void **state)
{
    (void)state;
    pdr_config *cfg = load("[pagerduty]\nurl = http://a, http://b\n");
    upstreams u;
    int fb;
    ups_init(&u, cfg, 1);
    assert_int_equal(ups_failed(&u, 0, 0, 1, 0), UPS_FAILOVER);
    assert_int_equal(ups_failed(&u, 1, 0, 1, 0), UPS_ALL_DOWN);
    /* the link is down: probes go to a, b, a, … */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ups_pick(&u, 0, 0, &fb), i % 2);
        ups_started(&u, i % 2, 0, 0);
        assert_int_equal(ups_failed(&u, i % 2, 0, 0, 0), UPS_SAME);
    }
    /* b answers: it is active, a is probed for failback */
    assert_int_equal(ups_answered(&u, 1, 0, 0, 5), UPS_SAME);
    assert_int_equal(u.active, 1);
    assert_true(ups_wake_ms(&u) < INT64_MAX);
    pdr_config_destroy(cfg);
}

static void test_one_url_inert(void **state)
{
    (void)state;
    pdr_config *cfg = load("[pagerduty]\nurl = http://a\n");
    upstreams u;
    int fb;
    ups_init(&u, cfg, 1);
    assert_int_equal(ups_failed(&u, 0, 0, 1, 0), UPS_ALL_DOWN);
    assert_int_equal(ups_pick(&u, 0, 0, &fb), 0);
    assert_int_equal(ups_answered(&u, 0, 0, 0, 0), UPS_SAME);
    assert_int_equal(ups_wake_ms(&u), INT64_MAX);
    pdr_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_failback),
        cmocka_unit_test(test_all_down_rotates),
        cmocka_unit_test(test_one_url_inert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
