/*
** test_outage.c — `pdrelay run` through an uplink outage, against the mock
** PagerDuty: one probe at a time while down, SIGUSR1 ends the wait, the log
** says what happened once, the most urgent event goes first on recovery,
** what resolved while queued is sent, collapsed or noted, a 429 holds its
** key for throttle_backoff, and an event held long says so. The outage is
** the mock halted (connections refused) or resetting every connection;
** durations are scaled down in each config.
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

#include <cjson/cJSON.h>

#include "clock.h"
#include "db.h"
#include "event.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static const char *const KEYS[] = {
    "R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12",
    "R1bbbbbbbbbbbbbbbbbbbbbbbbbbcd34",
    "R1cccccccccccccccccccccccccccd56",
    "R1ddddddddddddddddddddddddddde78",
    "R1eeeeeeeeeeeeeeeeeeeeeeeeeeef90",
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)

/* The config: the mock, a listener for /metrics, short timeouts; then the
** test's own lines (sections may repeat their header: the last value of a
** key wins, so extra can override these). */
static void fx_config(it_fx *f, const char *agent, const char *pagerduty, const char *outbox)
{
    it_fx_port(f);
    char *text = tu_printf("[agent]\ndata_dir = %s\n%s\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 50\n"
                           "timeout_ms = 2000\nconnect_timeout_ms = 500\n%s\n[outbox]\n%s\n",
                           f->data_dir, agent ? agent : "", f->port, mockpd_url(f->mock), pagerduty ? pagerduty : "",
                           outbox ? outbox : "");
    tu_write_file(f->cfg, text);
    free(text);
}

/* How many times needle occurs in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The value of a metric line "name value" in /metrics, or -1. */
static double metric(it_fx *f, const char *name)
{
    char *body = NULL;
    double v = -1;
    assert_int_equal(it_http(f->base, "GET", "/metrics", NULL, NULL, &body, NULL), 200);
    char *want = tu_printf("\n%s ", name);
    const char *p = strstr(body, want);
    if (p) v = strtod(p + strlen(want), NULL);
    free(want);
    free(body);
    return v;
}

/* ---- 1. one probe, not a stampede ------------------------------------------------ */

/* Five keys with work and a mock that resets every connection: once the
** link is down, every request the mock sees is a probe, one at a time,
** spaced by the probe schedule (from backoff_max 50 ms up to 200 ms), and
** the probe is the head of the most urgent key. */
static void test_one_probe_while_down(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, "log_level = debug", "down_probe_max = 200ms", NULL);
    for (size_t k = 0; k < N_KEYS; k++) {
        char dk[16];
        snprintf(dk, sizeof dk, "w%zu", k);
        tu_push_event(f->data_dir, KEYS[k], PDR_ACTION_TRIGGER, dk, NULL, "warning", "disk filling");
    }
    tu_push_event(f->data_dir, KEYS[3], PDR_ACTION_TRIGGER, "crit", NULL, "critical", "site power lost");
    assert_int_equal(mockpd_set_mode(f->mock, "reset", 0, 0, 0), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    assert_int_equal(it_wait_log_count(&f->d, "probing the uplink", 6, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);

    char *log = it_log(&f->d);
    int probes = count_of(log, "probing the uplink");
    cJSON *reqs = mockpd_requests(f->mock);
    int n = cJSON_GetArraySize(reqs);
    /* before the link was known down, at most one request per key */
    assert_true(n <= (int)N_KEYS + probes);
    assert_true(n >= probes);
    /* the last `probes` requests: one at a time, spaced, most urgent key */
    double prev = -1;
    for (int i = n - probes; i < n; i++) {
        const cJSON *r = cJSON_GetArrayItem(reqs, i);
        double at = cJSON_GetObjectItemCaseSensitive(r, "arrival_ms")->valuedouble;
        assert_string_equal(it_jstr(r, "routing_key"), KEYS[3]);
        assert_string_equal(it_jstr(r, "dedup_key"), "crit");
        if (prev >= 0 && at - prev < 40) it_fail("probes %.0f ms apart: the schedule starts at 45 ms", at - prev);
        prev = at;
    }
    cJSON_Delete(reqs);
    assert_int_equal(count_of(log, "uplink down"), 1);
    free(log);
    /* nothing was lost or killed */
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), N_KEYS + 1);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* A probe schedule of minutes, then SIGUSR1 once the link is back: the
** probe goes at once, the link is up, every key drains. The metrics say
** down, then up, with the seconds it was down. */
static void test_sigusr1_ends_the_wait(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL, "backoff_max_ms = 60000\ndown_probe_max = 10m", NULL);
    for (size_t k = 0; k < N_KEYS; k++) it_queue(f->data_dir, KEYS[k], "e", 4);
    assert_int_equal(mockpd_halt(f->mock), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    assert_true(metric(f, "pdrelay_link_up") == 0);
    assert_int_equal(mockpd_restart(f->mock), 0);
    assert_int_equal(kill(f->d.pid, SIGUSR1), 0);
    /* the next scheduled probe is a minute away: only the kick explains this */
    assert_int_equal(mockpd_wait_accepted(f->mock, (int)N_KEYS * 4, 20000), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink up", 5000), 0);
    assert_true(metric(f, "pdrelay_link_up") == 1);
    assert_true(metric(f, "pdrelay_link_down_seconds_total") > 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *ev = mockpd_events(f->mock);
    for (size_t k = 0; k < N_KEYS; k++) it_assert_in_order(ev, KEYS[k], "e", 4);
    cJSON_Delete(ev);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 2. logs that say what happened, once ------------------------------------------ */

static void test_log_says_it_once(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, "outage_log_interval = 1s", "down_probe_max = 100ms", NULL);
    for (size_t k = 0; k < N_KEYS; k++) it_queue(f->data_dir, KEYS[k], "e", 3);
    assert_int_equal(mockpd_halt(f->mock), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    assert_int_equal(it_wait_log_count(&f->d, "uplink still down", 2, 10000), 0);
    assert_int_equal(mockpd_restart(f->mock), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, (int)N_KEYS * 3, 20000), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink up", 5000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);

    char *log = it_log(&f->d);
    assert_int_equal(count_of(log, "uplink down"), 1);
    assert_int_equal(count_of(log, "uplink up"), 1);
    /* no line per attempt at info: the failures are in the summaries */
    assert_int_equal(count_of(log, "delivery failed"), 0);
    assert_non_null(strstr(log, "cause=network"));
    assert_non_null(strstr(log, "backlog=15"));
    /* the lines from down to up: the down line and the summaries, nothing
    ** else (but the start's own lines, which a slow machine, qemu, may
    ** write after the first failure) */
    const char *down = strstr(log, "uplink down"), *up = strstr(log, "uplink up");
    assert_true(down && up && down < up);
    while (down > log && down[-1] != '\n') down--;   /* from the start of its line */
    int summaries = 0;
    for (const char *p = down; p < up;) {
        const char *eol = strchr(p, '\n');
        char *line = strndup(p, (size_t)(eol - p));
        if (strstr(line, "uplink up")) {   /* the end */
            free(line);
            break;
        }
        if (strstr(line, "uplink still down")) summaries++;
        else if (!strstr(line, "uplink down") && !strstr(line, "msg=listening") && !strstr(line, "pdrelay started"))
            it_fail("a line while the link was down: %s", line);
        free(line);
        p = eol + 1;
    }
    assert_int_equal(summaries, count_of(log, "uplink still down"));
    assert_true(summaries >= 2);
    free(log);
    it_fx_free(f, KEYS, N_KEYS);
}

/* A key that keeps failing for one reason while the link is up (a 408 is
** about the key): one warn line, repeats at debug, one line when it
** delivers again with the count. */
static void test_key_failures_logged_once(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL, NULL, NULL);
    it_queue(f->data_dir, KEYS[0], "k", 2);
    assert_int_equal(mockpd_set_mode(f->mock, "status", 408, 0, 6), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 20000), 0);
    assert_int_equal(it_wait_log(&f->d, "key delivering again", 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    char *log = it_log(&f->d);
    assert_int_equal(count_of(log, "level=warn msg=\"delivery failed; will retry"), 1);
    assert_non_null(strstr(log, "msg=\"key delivering again\" key=\"R1\xe2\x80\xa6" "ab12\" failures=6 "
                                "last_reason=\"timeout HTTP 408\""));
    assert_int_equal(count_of(log, "uplink"), 0);
    free(log);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 4. urgent first ------------------------------------------------------------- */

/* Thirty warnings wait for one key while the link is down; then a critical
** trigger comes. It is the probe, so it is the first event PagerDuty gets
** when the link returns (here at once, by SIGUSR1, seconds before the
** probe schedule); the warnings follow at once, in their order: the one
** that failed when the link went down does not wait for its old retry
** time. */
static void test_critical_first_after_recovery(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL, "backoff_max_ms = 4000\ndown_probe_max = 8s", NULL);
    for (int i = 0; i < 30; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "w-%d", i);
        tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, dk, NULL, "warning", "disk filling");
    }
    assert_int_equal(mockpd_halt(f->mock), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "crit", NULL, "critical", "site power lost");
    assert_int_equal(mockpd_restart(f->mock), 0);
    assert_int_equal(kill(f->d.pid, SIGUSR1), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 31, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *ev = mockpd_events(f->mock);
    assert_string_equal(it_jstr(cJSON_GetArrayItem(ev, 0), "dedup_key"), "crit");
    double crit_at = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ev, 0), "arrival_ms")->valuedouble;
    double w0_at = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ev, 1), "arrival_ms")->valuedouble;
    if (w0_at - crit_at > 1500) it_fail("the first warning came %.0f ms after the critical", w0_at - crit_at);
    char got[40][32];
    int n = it_accepted_for(ev, KEYS[0], got, 40);
    assert_int_equal(n, 31);
    for (int i = 1; i < 31; i++) {
        char want[16];
        snprintf(want, sizeof want, "w-%d", i - 1);
        assert_string_equal(got[i], want);
    }
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 5. don't page for what already resolved ---------------------------------------- */

/* Queued while pdrelay was not running (held): X triggered, was
** acknowledged and resolved; Y is still firing. Returns the mock's events. */
static cJSON *run_resolved_while_queued(it_fx *f, const char *mode)
{
    char *outbox = tu_printf("resolved_while_queued = %s", mode);
    fx_config(f, NULL, NULL, outbox);
    free(outbox);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "X", NULL, "critical", "pump failed");
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "Y", NULL, "warning", "tank low");
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_ACKNOWLEDGE, "X", NULL, NULL, NULL);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_RESOLVE, "X", NULL, NULL, NULL);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    return NULL;
}

static cJSON *finish(it_fx *f, int accepted)
{
    assert_int_equal(mockpd_wait_accepted(f->mock, accepted, 20000), 0);
    /* its "delivered" line comes after the row left the outbox */
    assert_int_equal(it_wait_log_count(&f->d, "msg=delivered", accepted, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    return mockpd_events(f->mock);
}

static void test_resolved_while_queued_send(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    run_resolved_while_queued(f, "send");
    cJSON *ev = finish(f, 4);
    assert_int_equal(cJSON_GetArraySize(ev), 4);
    /* critical X first, and X in its order: trigger, acknowledge, resolve */
    static const char *const want[][2] = {{"X", "trigger"}, {"X", "acknowledge"}, {"X", "resolve"}, {"Y", "trigger"}};
    int xi = 0;
    for (int i = 0; i < 4; i++) {
        const cJSON *e = cJSON_GetArrayItem(ev, i);
        if (!strcmp(it_jstr(e, "dedup_key"), "X")) {
            assert_string_equal(it_jstr(e, "event_action"), want[xi][1]);
            xi++;
        }
    }
    assert_int_equal(xi, 3);
    const cJSON *first = cJSON_GetArrayItem(ev, 0);
    assert_string_equal(it_jstr(first, "summary"), "pump failed");
    assert_non_null(strstr(it_jstr(first, "body"), "\"severity\":\"critical\""));
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_resolved_while_queued_collapse(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    run_resolved_while_queued(f, "collapse");
    cJSON *ev = finish(f, 1);
    assert_int_equal(cJSON_GetArraySize(ev), 1);
    assert_string_equal(it_jstr(cJSON_GetArrayItem(ev, 0), "dedup_key"), "Y");
    cJSON_Delete(ev);
    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "resolved while queued"));
    assert_non_null(strstr(log, "events=3"));
    free(log);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_resolved_while_queued_note(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    run_resolved_while_queued(f, "note");
    cJSON *ev = finish(f, 4);
    assert_int_equal(cJSON_GetArraySize(ev), 4);
    int xi = 0;
    static const char *const order[] = {"trigger", "acknowledge", "resolve"};
    for (int i = 0; i < 4; i++) {
        const cJSON *e = cJSON_GetArrayItem(ev, i);
        if (strcmp(it_jstr(e, "dedup_key"), "X")) continue;
        assert_string_equal(it_jstr(e, "event_action"), order[xi]);
        if (xi == 0) {
            assert_string_equal(it_jstr(e, "summary"), "[resolved while offline] pump failed");
            assert_non_null(strstr(it_jstr(e, "body"), "\"severity\":\"info\""));
        }
        xi++;
    }
    assert_int_equal(xi, 3);
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

/* A trigger and its resolve queued while the link is healthy (held back
** only by the key's rate) are not touched: note applies to what an outage
** held. */
static void test_healthy_link_not_touched(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    fx_config(f, NULL, "rate_per_minute = 60\nburst = 1\nrate_window = 1s", "resolved_while_queued = note");
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "pdrelay started", 10000), 0);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "A", NULL, "warning", "first");
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    /* the key's one token per second is spent: these two wait behind it */
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "X", NULL, "critical", "pump failed");
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_RESOLVE, "X", NULL, NULL, NULL);
    cJSON *ev = finish(f, 3);
    const cJSON *x = cJSON_GetArrayItem(ev, 1);
    assert_string_equal(it_jstr(x, "dedup_key"), "X");
    assert_string_equal(it_jstr(x, "summary"), "pump failed");
    assert_non_null(strstr(it_jstr(x, "body"), "\"severity\":\"critical\""));
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 7. 429 ---------------------------------------------------------------------- */

/* A 429 without Retry-After: the key waits throttle_backoff (400 ms here)
** as the mock's clock sees it, while another key goes on. */
static void test_429_waits_throttle_backoff(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    fx_config(f, NULL, "throttle_backoff = 400ms\nconcurrency = 1", NULL);
    it_queue(f->data_dir, KEYS[0], "t", 3);
    assert_int_equal(mockpd_set_mode(f->mock, "status", 429, 0, 1), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *reqs = mockpd_requests(f->mock);
    assert_int_equal(cJSON_GetArraySize(reqs), 4);
    const cJSON *a = cJSON_GetArrayItem(reqs, 0), *b = cJSON_GetArrayItem(reqs, 1);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(a, "status")->valueint, 429);
    double gap = cJSON_GetObjectItemCaseSensitive(b, "arrival_ms")->valuedouble -
                 cJSON_GetObjectItemCaseSensitive(a, "arrival_ms")->valuedouble;
    if (gap < 390) it_fail("the key went again %.0f ms after a 429; throttle_backoff is 400 ms", gap);
    assert_string_equal(it_jstr(b, "dedup_key"), "t-0");
    cJSON_Delete(reqs);
    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "throttled by PagerDuty"));
    free(log);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 6. an incident keeps its routing key ----------------------------------------- */

static void post_am(it_fx *f, const char *status, const char *fp)
{
    char *body = tu_printf("{\"version\":\"4\",\"status\":\"%s\",\"receiver\":\"r\",\"alerts\":[{\"status\":\"%s\","
                           "\"labels\":{\"alertname\":\"PumpDown\",\"severity\":\"critical\",\"env\":\"prod\"},"
                           "\"annotations\":{},\"fingerprint\":\"%s\"}]}", status, status, fp);
    assert_int_equal(it_http(f->base, "POST", "/v1/alertmanager", body, NULL, NULL, NULL), 200);
    free(body);
}

static void rotate(it_fx *f, const char *key_file, const char *key, int reloads)
{
    tu_write_file(key_file, key);
    assert_int_equal(kill(f->d.pid, SIGHUP), 0);
    assert_int_equal(it_wait_log_count(&f->d, "configuration reloaded", reloads, 10000), 0);
}

/* The events the mock got for one dedup key, as "action@key-index" words. */
static char *history(cJSON *ev, const char *dk)
{
    char *out = tu_printf("%s", "");
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        if (strcmp(it_jstr(e, "dedup_key"), dk)) continue;
        int k = -1;
        for (size_t i = 0; i < N_KEYS; i++)
            if (!strcmp(it_jstr(e, "routing_key"), KEYS[i])) k = (int)i;
        char *next = tu_printf("%s%s%s@%d", out, *out ? " " : "", it_jstr(e, "event_action"), k);
        free(out);
        out = next;
    }
    return out;
}

/* Key A triggers fp-1; the target's key file is rotated to B (SIGHUP); the
** resolve of fp-1 still goes to A with fp-1's dedup key, while a new alert
** fp-2 goes to B. Then, with the uplink down, fp-3 triggers under B and
** waits; the key rotates to C; fp-3's resolve joins its trigger under B. */
static void test_incident_keeps_its_key(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    char *key_file = tu_printf("%s/site.key", f->dir);
    tu_write_file(key_file, KEYS[0]);
    char *extra = tu_printf("resolved_while_queued = send\n[target site]\nrouting_key_file = %s\nmatch = env=prod\n",
                            key_file);
    fx_config(f, NULL, "down_probe_max = 100ms", extra);
    free(extra);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "pdrelay started", 10000), 0);

    post_am(f, "firing", "fp-1");
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    cJSON *ev = mockpd_events(f->mock);
    char *dk1 = tu_printf("%s", it_jstr(cJSON_GetArrayItem(ev, 0), "dedup_key"));
    cJSON_Delete(ev);
    assert_int_equal(it_wait_log(&f->d, "msg=delivered", 10000), 0);   /* the incident is recorded */

    rotate(f, key_file, KEYS[1], 1);
    post_am(f, "resolved", "fp-1");
    post_am(f, "firing", "fp-2");
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 10000), 0);
    ev = mockpd_events(f->mock);
    char *h1 = history(ev, dk1);
    assert_string_equal(h1, "trigger@0 resolve@0");
    const cJSON *e2 = cJSON_GetArrayItem(ev, 2);
    if (!strcmp(it_jstr(e2, "dedup_key"), dk1)) e2 = cJSON_GetArrayItem(ev, 1);
    assert_string_equal(it_jstr(e2, "routing_key"), KEYS[1]);
    cJSON_Delete(ev);
    assert_int_equal(it_wait_log_count(&f->d, "msg=delivered", 3, 10000), 0);

    /* while the uplink is down */
    assert_int_equal(mockpd_set_mode(f->mock, "reset", 0, 0, 0), 0);
    post_am(f, "firing", "fp-3");
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    rotate(f, key_file, KEYS[2], 2);
    post_am(f, "resolved", "fp-3");
    assert_int_equal(mockpd_set_mode(f->mock, "ok", 0, 0, 0), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 5, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    ev = mockpd_events(f->mock);
    char *dk3 = tu_printf("%s", it_jstr(cJSON_GetArrayItem(ev, 3), "dedup_key"));
    char *h3 = history(ev, dk3);
    assert_string_equal(h3, "trigger@1 resolve@1");
    cJSON_Delete(ev);
    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "incident keeps its routing key"));
    free(log);
    free(h1);
    free(h3);
    free(dk1);
    free(dk3);
    free(key_file);
    it_fx_free(f, KEYS, N_KEYS);
}

/* `pdrelay queue status` (text or --json): its output, and exit 0. */
static char *queue_status(it_fx *f, int json)
{
    const char *argv[] = {tu_pdrelay(), "queue", "status", "-c", f->cfg, json ? "--json" : NULL, NULL};
    char *out = NULL;
    assert_int_equal(tu_run(argv, NULL, &out, NULL), 0);
    return out;
}

/* After a 429 with throttle_backoff 1h, `queue status` shows the key
** throttled until then at half rate, and the drain ETA that follows; with
** the uplink down, it says so. */
static void test_queue_status_throttled_and_down(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    fx_config(f, NULL, "throttle_backoff = 1h\ndown_probe_max = 100ms", NULL);
    it_queue(f->data_dir, KEYS[0], "t", 3);
    assert_int_equal(mockpd_set_mode(f->mock, "status", 429, 0, 1), 0);
    char *out = queue_status(f, 0);
    assert_non_null(strstr(out, "uplink: unknown (no daemon is running on "));
    free(out);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "throttled by PagerDuty", 10000), 0);
    out = queue_status(f, 0);
    assert_non_null(strstr(out, "uplink: up\n"));
    assert_non_null(strstr(out, "throttled until "));
    assert_non_null(strstr(out, ", then 60/min"));
    free(out);
    out = queue_status(f, 1);
    cJSON *doc = cJSON_Parse(out);
    free(out);
    const cJSON *k = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "keys"), 0);
    assert_string_equal(it_jstr(cJSON_GetObjectItemCaseSensitive(doc, "uplink"), "state"), "up");
    assert_non_null(it_jstr(k, "throttled_until"));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(k, "rate_per_minute")->valueint, 60);
    /* an hour's wait, then 3 events at 60/min: 3 s */
    double eta = cJSON_GetObjectItemCaseSensitive(k, "drain_eta_ms")->valuedouble;
    assert_true(eta > 3600000.0 - 60000.0 && eta <= 3600000.0 + 3000.0);
    cJSON_Delete(doc);

    assert_int_equal(mockpd_set_mode(f->mock, "reset", 0, 0, 0), 0);
    tu_push_event(f->data_dir, KEYS[1], PDR_ACTION_TRIGGER, "d", NULL, "error", "down");
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    out = queue_status(f, 0);
    assert_non_null(strstr(out, "uplink: "));
    assert_true(strstr(out, "uplink: down for ") || strstr(out, "uplink: probing for "));
    free(out);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 3. true times ---------------------------------------------------------------- */

/* Events without a time of their own, queued by every ingest path and by
** `pdrelay send` while the uplink is down, reach PagerDuty stamped with the
** time pdrelay received them, not the time the link came back. */
static void test_true_times_every_path(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL, "down_probe_max = 100ms", "[target all]\nrouting_key = R1eeeeeeeeeeeeeeeeeeeeeeeeeeef90\n");
    assert_int_equal(mockpd_set_mode(f->mock, "reset", 0, 0, 0), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "pdrelay started", 10000), 0);
    int64_t before = pdr_clock_now_ms();
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue",
                             "{\"routing_key\":\"R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"trigger\","
                             "\"payload\":{\"summary\":\"tt-enqueue\",\"source\":\"h\",\"severity\":\"error\"}}",
                             NULL, NULL, NULL), 202);
    assert_int_equal(it_http(f->base, "POST", "/v2/change/enqueue",
                             "{\"routing_key\":\"R1bbbbbbbbbbbbbbbbbbbbbbbbbbcd34\","
                             "\"payload\":{\"summary\":\"tt-change\",\"source\":\"h\"}}", NULL, NULL, NULL), 202);
    assert_int_equal(it_http(f->base, "POST", "/v1/alertmanager",
                             "{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"Tt\"},"
                             "\"annotations\":{\"summary\":\"tt-am\"},\"startsAt\":\"0001-01-01T00:00:00Z\"}]}",
                             NULL, NULL, NULL), 200);
    assert_int_equal(it_http(f->base, "POST", "/v1/alerts",
                             "{\"alert_name\":\"TtAlerts\",\"status\":\"firing\",\"labels\":{},"
                             "\"annotations\":{\"summary\":\"tt-alerts\"}}", NULL, NULL, NULL), 200);
    assert_int_equal(it_send(f->cfg, KEYS[2], "trigger", "tt-send", "tt-send"), 0);
    int64_t after = pdr_clock_now_ms();
    /* held for a while: delivery comes well after the events arrived */
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, 12, 20000), 0);
    int64_t recovery = pdr_clock_now_ms();
    assert_int_equal(mockpd_set_mode(f->mock, "ok", 0, 0, 0), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 5, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_true(recovery - after >= 300);
    cJSON *ev = mockpd_events(f->mock);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, ev) {
        cJSON *body = cJSON_Parse(it_jstr(e, "body"));
        const char *ts = it_jstr(cJSON_GetObjectItemCaseSensitive(body, "payload"), "timestamp");
        int64_t ms = 0;
        if (!ts || pdr_timestamp_parse_ms(ts, &ms) != PDR_OK)
            it_fail("%s: no payload.timestamp reached PagerDuty", it_jstr(e, "summary"));
        if (ms < before - 1 || ms > after + 1)
            it_fail("%s: stamped %lld, received between %lld and %lld", it_jstr(e, "summary"), (long long)ms,
                    (long long)before, (long long)after);
        n++;
        cJSON_Delete(body);
    }
    assert_int_equal(n, 5);
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- 3. true times: the delay note ------------------------------------------------- */

/* An event that arrived ten minutes ago goes out with custom_details.pdrelay
** saying so; one that just arrived goes as it came. */
static void test_delay_note(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL, NULL, "delay_note_after = 5m");
    int64_t now = pdr_clock_now_ms();
    tu_clock_install(now - 10 * 60 * 1000);   /* this process only: the row's created_ms */
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "old", NULL, "error", "held");
    pdr_clock_set(NULL, NULL);
    tu_push_event(f->data_dir, KEYS[1], PDR_ACTION_TRIGGER, "new", NULL, "error", "fresh");
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *ev = mockpd_events(f->mock);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(ev, i);
        cJSON *body = cJSON_Parse(it_jstr(e, "body"));
        const cJSON *cd = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "payload"),
                                                           "custom_details");
        const cJSON *note = cJSON_GetObjectItemCaseSensitive(cd, "pdrelay");
        if (!strcmp(it_jstr(e, "dedup_key"), "old")) {
            assert_non_null(note);
            double delayed = cJSON_GetObjectItemCaseSensitive(note, "delayed_s")->valuedouble;
            assert_true(delayed >= 600 && delayed < 700);
            assert_int_equal(cJSON_GetObjectItemCaseSensitive(note, "attempts")->valueint, 0);
            assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(note, "queued_at")));
        } else {
            assert_null(note);
        }
        cJSON_Delete(body);
    }
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_probe_while_down),
        cmocka_unit_test(test_sigusr1_ends_the_wait),
        cmocka_unit_test(test_log_says_it_once),
        cmocka_unit_test(test_key_failures_logged_once),
        cmocka_unit_test(test_critical_first_after_recovery),
        cmocka_unit_test(test_resolved_while_queued_send),
        cmocka_unit_test(test_resolved_while_queued_collapse),
        cmocka_unit_test(test_resolved_while_queued_note),
        cmocka_unit_test(test_healthy_link_not_touched),
        cmocka_unit_test(test_429_waits_throttle_backoff),
        cmocka_unit_test(test_delay_note),
        cmocka_unit_test(test_queue_status_throttled_and_down),
        cmocka_unit_test(test_true_times_every_path),
        cmocka_unit_test(test_incident_keeps_its_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
