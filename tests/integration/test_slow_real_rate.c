/*
** test_slow_real_rate.c — PagerDuty's real limit, unscaled: 300 events to
** one routing key against a server that throttles above 120 requests per
** sliding 60 s, with pdrelay's default rate settings. None may be throttled,
** no 60 s window may hold more than 120, and the drain must not dawdle.
** Takes about 2.5 minutes: labelled "slow" (ctest -L slow).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define KEY "R0ssssssssssssssssssssssssssab12"

static void test_real_rate(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = 120, .window_ms = 60000};
    mockpd *m = mockpd_start(&mo);
    assert_non_null(m);
    char *dir = tu_mkdtemp();
    char *data_dir = tu_printf("%s/var", dir), *cfg = tu_printf("%s/pdrelay.ini", dir);
    char *log = tu_printf("%s/pdrelay.log", dir);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n[pagerduty]\nurl = %s\n", data_dir, mockpd_url(m));
    tu_write_file(cfg, text);
    it_queue(data_dir, KEY, "r", 300);

    it_daemon d = {0};
    assert_int_equal(it_daemon_start(&d, cfg, log), 0);
    assert_int_equal(mockpd_wait_accepted(m, 300, 240000), 0);
    assert_int_equal(it_daemon_stop(&d, SIGTERM), 0);
    assert_int_equal(mockpd_stat(m, "throttled"), 0);
    cJSON *ev = mockpd_events(m);
    int worst = it_max_in_window(ev, 60000);
    const cJSON *first = cJSON_GetArrayItem(ev, 0), *last = cJSON_GetArrayItem(ev, 299);
    double span = cJSON_GetObjectItem(last, "arrival_ms")->valuedouble -
                  cJSON_GetObjectItem(first, "arrival_ms")->valuedouble;
    print_message("300 events in %.1f s; most in any 60 s window: %d\n", span / 1000.0, worst);
    assert_true(worst <= 120);
    /* the limiter allows 120 in the first ~55 s (burst 10, then 2/s), then
    ** each further 120 one window after the first: the 300th no earlier
    ** than 120 s, and pdrelay should not be much later than ~150 s */
    assert_true(span >= 120000.0);
    assert_true(span <= 160000.0);
    it_assert_in_order(ev, KEY, "r", 300);
    cJSON_Delete(ev);

    char *l = it_log(&d);
    assert_null(strstr(l, KEY));
    free(l);
    mockpd_stop(m);
    tu_rmrf(dir);
    free(d.log_path);
    free(text); free(log); free(cfg); free(data_dir); free(dir);
}

int main(void)
{
    mockpd_global_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_real_rate)};
    return cmocka_run_group_tests_name("slow_real_rate", tests, NULL, NULL);
}
