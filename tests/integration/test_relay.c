/*
** test_relay.c — a relay chain, two real `pdrelay run`: an edge (outbox A,
** [pagerduty] upstream = relay, url = the site, auth_token_file) posts to a
** site (outbox B, [listen] auth_token_file) that posts to the mock
** PagerDuty (README "A site relay"). The site is killed with SIGKILL in the
** middle of a drain and nothing the edge answered 202 is lost; its token is
** broken and then fixed and nothing becomes a dead letter; a 503 with
** Retry-After (a relay whose outbox is full) holds the next attempt that
** long. Durations are scaled down in each config.
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
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static const char *const KEYS[] = {
    "R3aaaaaaaaaaaaaaaaaaaaaaaaaaab12",
    "R3bbbbbbbbbbbbbbbbbbbbbbbbbbcd34",
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)
#define TOKEN_1 "relay-t0ken-one-5b1e"
#define TOKEN_2 "relay-t0ken-two-9c3f"
static const char *const SECRETS[] = {KEYS[0], KEYS[1], TOKEN_1, TOKEN_2};
#define N_SECRETS (sizeof SECRETS / sizeof *SECRETS)

/* Each dedup_key gets these four, in this order: an incident opened,
** acknowledged, resolved and opened again. */
static const char *const ACTIONS[] = {"trigger", "acknowledge", "resolve", "trigger"};
#define N_STEPS 4

/* The chain: f->d is the site (f->data_dir, f->cfg, f->log, [listen]
** f->port, the mock upstream); edge is the other daemon, in f->dir/edge. */
typedef struct chain {
    it_fx *f;
    it_daemon edge;
    char *edge_cfg, *edge_data, *edge_log, *edge_base;
    char *site_token, *edge_token;   /* the token files */
} chain;

static chain *chain_new(const char *site_extra, const char *edge_extra)
{
    chain *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->f = it_fx_new(NULL);
    it_fx *f = c->f;
    it_fx_port(f);
    int edge_port = it_free_port();
    c->edge_cfg = tu_printf("%s/edge.ini", f->dir);
    c->edge_data = tu_printf("%s/edge-var", f->dir);
    c->edge_log = tu_printf("%s/edge.log", f->dir);
    c->edge_base = tu_printf("http://127.0.0.1:%d", edge_port);
    c->site_token = tu_printf("%s/site.token", f->dir);
    c->edge_token = tu_printf("%s/edge.token", f->dir);
    tu_write_file(c->site_token, TOKEN_1 "\n");
    tu_write_file(c->edge_token, TOKEN_1 "\n");
    char *site = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\nauth_token_file = %s\n"
                           "[pagerduty]\nurl = %s\nrate_per_minute = 100000\nburst = 1000\n"
                           "backoff_initial_ms = 20\nbackoff_max_ms = 100\ndown_probe_max = 200ms\n"
                           "timeout_ms = 2000\nconnect_timeout_ms = 500\n%s\n",
                           f->data_dir, f->port, c->site_token, mockpd_url(f->mock), site_extra ? site_extra : "");
    char *edge = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = http://127.0.0.1:%d\nupstream = relay\nauth_token_file = %s\n"
                           "rate_per_minute = 0\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                           "down_probe_max = 200ms\ntimeout_ms = 2000\nconnect_timeout_ms = 500\n%s\n",
                           c->edge_data, edge_port, f->port, c->edge_token, edge_extra ? edge_extra : "");
    tu_write_file(f->cfg, site);
    tu_write_file(c->edge_cfg, edge);
    free(site);
    free(edge);
    return c;
}

static void chain_free(chain *c)
{
    /* the edge: as it_teardown, its directory going with f's */
    if (c->edge.pid) it_daemon_stop(&c->edge, SIGKILL);
    it_assert_log_lacks(&c->edge, SECRETS, N_SECRETS);
    free(c->edge.log_path);
    it_fx_free(c->f, SECRETS, N_SECRETS);
    free(c->edge_cfg);
    free(c->edge_data);
    free(c->edge_log);
    free(c->edge_base);
    free(c->site_token);
    free(c->edge_token);
    free(c);
}

/* Posts step s of dedup_key "dk<i>" to the edge; the edge must answer 202.
** Triggers carry "#<s>" in their summary: the two triggers of a key are
** told apart by it. */
static void post_step(chain *c, int i, int s)
{
    char dk[16];
    snprintf(dk, sizeof dk, "dk%d", i);
    char *body = !strcmp(ACTIONS[s], "trigger")
                     ? tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                                 "\"payload\":{\"summary\":\"%s #%d\",\"source\":\"edge\",\"severity\":\"error\"}}",
                                 KEYS[i % N_KEYS], dk, dk, s)
                     : tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"%s\",\"dedup_key\":\"%s\"}",
                                 KEYS[i % N_KEYS], ACTIONS[s], dk);
    char *reply = NULL;
    int st = it_http(c->edge_base, "POST", "/v2/enqueue", body, NULL, &reply, NULL);
    if (st != 202) it_fail("edge answered %d to %s: %s", st, body, reply ? reply : "");
    free(reply);
    free(body);
}

/* Which step of dedup_key dk an arrival at the mock is; -1 if none. */
static int step_of(const cJSON *e, const char *dk)
{
    const char *act = it_jstr(e, "event_action");
    if (strcmp(it_jstr(e, "dedup_key"), dk)) return -1;
    if (!strcmp(act, "acknowledge")) return 1;
    if (!strcmp(act, "resolve")) return 2;
    if (strcmp(act, "trigger")) return -1;
    /* a trigger's summary may be rewritten on the way ("[resolved while
    ** offline] " in front), its "#s" stays */
    const char *sum = it_jstr(e, "summary"), *h = strrchr(sum, '#');
    return h && h[1] == '3' ? 3 : h && h[1] == '0' ? 0 : -1;
}

/* Checks the mock's arrivals against the n_dk x N_STEPS events the edge
** acknowledged: every one arrived; per dedup_key their first arrivals are
** in the order posted; every further arrival repeats one that already
** arrived. Returns the number of repeats. */
static int assert_all_arrived(cJSON *events, int n_dk)
{
    int repeats = 0;
    for (int i = 0; i < n_dk; i++) {
        char dk[16];
        int next = 0;   /* the step whose first arrival is due */
        snprintf(dk, sizeof dk, "dk%d", i);
        const cJSON *e;
        cJSON_ArrayForEach(e, events) {
            if (strcmp(it_jstr(e, "dedup_key"), dk)) continue;
            int s = step_of(e, dk);
            if (s < 0) it_fail("%s: an arrival that is none of its events: %s %s", dk, it_jstr(e, "event_action"),
                               it_jstr(e, "summary"));
            if (s == next) next++;
            else if (s < next) repeats++;
            else it_fail("%s: step %d (%s) arrived before step %d", dk, s, ACTIONS[s], next);
        }
        if (next != N_STEPS) it_fail("%s: only %d of its %d events arrived", dk, next, N_STEPS);
    }
    return repeats;
}

static int total_events(mockpd *m)
{
    cJSON *ev = mockpd_events(m);
    int n = cJSON_GetArraySize(ev);
    cJSON_Delete(ev);
    return n;
}

static int assert_all_arrived(cJSON *events, int n_dk);

/* How many of the n_dk x N_STEPS events arrived (repeats counted once);
** *total: the arrivals of the same snapshot, repeats included. */
static int distinct_arrived(mockpd *m, int n_dk, int *total)
{
    cJSON *ev = mockpd_events(m);
    int got = 0;
    *total = cJSON_GetArraySize(ev);
    for (int i = 0; i < n_dk; i++) {
        char dk[16];
        int seen[N_STEPS] = {0};
        const cJSON *e;
        snprintf(dk, sizeof dk, "dk%d", i);
        cJSON_ArrayForEach(e, ev) {
            int s = step_of(e, dk);
            if (s >= 0 && !seen[s]) got += seen[s] = 1;
        }
    }
    cJSON_Delete(ev);
    return got;
}

/* Waits until every one of the n_dk x N_STEPS events arrived: the mock's
** count includes repeats, so each wait is for one more arrival. */
static void await_all(mockpd *m, int n_dk, int timeout_ms)
{
    int want = n_dk * N_STEPS;
    int64_t end = pdr_clock_mono_ms() + timeout_ms;
    if (mockpd_wait_accepted(m, want, timeout_ms)) it_fail("only %d arrivals of %d events", total_events(m), want);
    for (int got, total; (got = distinct_arrived(m, n_dk, &total)) < want;) {
        int64_t left = end - pdr_clock_mono_ms();
        if (left <= 0 || mockpd_wait_accepted(m, total + 1, (int)left)) {
            cJSON *ev = mockpd_events(m);
            assert_all_arrived(ev, n_dk);   /* says which */
            it_fail("%d of %d events arrived", got, want);
        }
    }
}

/* ---- 1. the site killed in the middle of a drain --------------------------------- */

/* 50 dedup_keys x 4 events over two routing keys. The first 100 are
** posted to the edge while the site drains them to a mock slowed to 20 ms
** a request; once some have arrived the site is killed with SIGKILL, the
** other 100 are posted to the edge (which answers 202: they wait in its
** outbox), and the site is started again on its outbox.
**
** What is asserted, and why: every event the edge answered 202 arrives at
** the mock, and per dedup_key the first arrivals are in the order posted
** (sender.h invariants 1 and 2 at each hop: a row is deleted only after a
** 2xx from the next hop, and a key's next row goes only after it). A
** repeat is allowed (at-least-once, README "Delivery guarantees"), only of
** an event that already arrived, and only for requests in flight at the
** kill: the site may die after the mock accepted an event but before its
** outbox recorded it (the site sends it again), or after committing an
** event from the edge but before the edge read the 202 (the edge sends it
** again). One request per routing key is in flight at each hop, so at most
** 2 x N_KEYS repeats. */
static void test_site_killed_mid_drain(void **state)
{
    (void)state;
    chain *c = chain_new(NULL, NULL);
    it_fx *f = c->f;
    const int n_dk = 50, half = n_dk / 2;
    assert_int_equal(mockpd_set_mode(f->mock, "slow", 0, 20, 0), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "pdrelay started", 10000), 0);
    assert_int_equal(it_daemon_start(&c->edge, c->edge_cfg, c->edge_log), 0);
    assert_int_equal(it_wait_log(&c->edge, "pdrelay started", 10000), 0);

    for (int i = 0; i < half; i++)
        for (int s = 0; s < N_STEPS; s++) post_step(c, i, s);
    assert_int_equal(mockpd_wait_accepted(f->mock, 20, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGKILL), 128 + SIGKILL);
    int before = total_events(f->mock);
    if (before >= half * N_STEPS) it_fail("the drain was over (%d arrived) before the kill", before);

    for (int i = half; i < n_dk; i++)
        for (int s = 0; s < N_STEPS; s++) post_step(c, i, s);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_set_mode(f->mock, "ok", 0, 0, 0), 0);
    await_all(f->mock, n_dk, 60000);
    /* both outboxes empty: nothing pending, nothing dead */
    assert_int_equal(it_daemon_stop(&c->edge, SIGTERM), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(c->edge_data, DB_ROW_PENDING), 0);
    assert_int_equal(it_count(c->edge_data, DB_ROW_DEAD), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);

    cJSON *ev = mockpd_events(f->mock);
    int repeats = assert_all_arrived(ev, n_dk);
    print_message("arrived before the kill: %d; repeats after it: %d\n", before, repeats);
    if (repeats > 2 * (int)N_KEYS) it_fail("%d repeats: more than the %d requests in flight at the kill", repeats,
                                           2 * (int)N_KEYS);
    cJSON_Delete(ev);
    chain_free(c);
}

/* ---- 2. a broken token, then fixed -------------------------------------------------- */

/* The edge's pagerduty_api_errors_total{type="unauthorized"}, or -1. */
static double unauthorized_errors(chain *c)
{
    char *body = NULL;
    double v = -1;
    assert_int_equal(it_http(c->edge_base, "GET", "/metrics", NULL, NULL, &body, NULL), 200);
    const char *p = strstr(body, "pagerduty_api_errors_total{error_type=\"unauthorized\"} ");
    if (p) v = strtod(strchr(p, ' ') + 1, NULL);
    free(body);
    return v;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The site's token is changed (its file rewritten, SIGHUP): the edge's
** requests get 401. Events posted meanwhile are held at the edge, retried
** with backoff and logged at error once per key, never dead; the edge's
** token file is then fixed (SIGHUP to the edge: the sender takes the
** token read by the reload) and everything arrives. Neither token is in
** either log (chain_free). */
static void test_token_broken_then_fixed(void **state)
{
    (void)state;
    chain *c = chain_new(NULL, NULL);
    it_fx *f = c->f;
    const int n_dk = 10;
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "pdrelay started", 10000), 0);
    assert_int_equal(it_daemon_start(&c->edge, c->edge_cfg, c->edge_log), 0);
    assert_int_equal(it_wait_log(&c->edge, "pdrelay started", 10000), 0);
    post_step(c, 0, 0);   /* the chain works */
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);

    tu_write_file(c->site_token, TOKEN_2 "\n");
    assert_int_equal(kill(f->d.pid, SIGHUP), 0);
    assert_int_equal(it_wait_log(&f->d, "configuration reloaded", 10000), 0);
    for (int i = 1; i < n_dk; i++)
        for (int s = 0; s < N_STEPS; s++) post_step(c, i, s);
    /* several rounds of retries on every key: the site logs each 401 */
    assert_int_equal(it_wait_log_count(&f->d, "status=401", 6 * (int)N_KEYS, 20000), 0);
    assert_int_equal(it_wait_log_count(&c->edge, "level=error msg=\"refused by the upstream relay's token check",
                                       (int)N_KEYS, 5000), 0);
    double errs = unauthorized_errors(c);
    if (errs < 6 * (double)N_KEYS) it_fail("only %.0f 401s counted at the edge", errs);
    assert_int_equal(total_events(f->mock), 1);
    assert_int_equal(it_count(c->edge_data, DB_ROW_DEAD), 0);
    assert_true(it_count(c->edge_data, DB_ROW_PENDING) > 0);
    char *log = it_log(&c->edge);
    /* once per key for the streak, not once per retry */
    assert_int_equal(count_of(log, "refused by the upstream relay's token check"), (int)N_KEYS);
    assert_int_equal(count_of(log, "moved to the dead letters"), 0);
    free(log);

    tu_write_file(c->edge_token, TOKEN_2 "\n");
    assert_int_equal(kill(c->edge.pid, SIGHUP), 0);
    if (mockpd_wait_accepted(f->mock, 1 + (n_dk - 1) * N_STEPS, 20000))
        it_fail("only %d of %d arrived after the fix", total_events(f->mock), 1 + (n_dk - 1) * N_STEPS);
    assert_int_equal(it_wait_log(&c->edge, "upstream token changed", 5000), 0);
    assert_int_equal(it_wait_log_count(&c->edge, "key delivering again", (int)N_KEYS, 5000), 0);
    assert_int_equal(it_daemon_stop(&c->edge, SIGTERM), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(c->edge_data, DB_ROW_PENDING), 0);
    assert_int_equal(it_count(c->edge_data, DB_ROW_DEAD), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    cJSON *ev = mockpd_events(f->mock);
    for (int i = 1; i < n_dk; i++) {
        char dk[16];
        int seen = 0;
        const cJSON *e;
        snprintf(dk, sizeof dk, "dk%d", i);
        cJSON_ArrayForEach(e, ev) if (step_of(e, dk) == seen) seen++;
        if (seen != N_STEPS) it_fail("%s: %d of its events arrived in order", dk, seen);
    }
    cJSON_Delete(ev);
    chain_free(c);
}

/* ---- 3. a 503 with Retry-After --------------------------------------------------------- */

/* The mock plays a relay whose outbox is full: one 503 with Retry-After:
** 2. The edge's only key answered 5xx, so the link is down, and its probe
** schedule (backoff_max 50 ms, down_probe_max 100 ms) would go again
** within 100 ms; Retry-After is the earliest next attempt. */
static void test_503_retry_after_honoured(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    it_fx_port(f);
    char *cfg = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n[pagerduty]\nurl = %s\nupstream = relay\n"
                          "rate_per_minute = 0\nbackoff_initial_ms = 20\nbackoff_max_ms = 50\n"
                          "down_probe_max = 100ms\ntimeout_ms = 2000\nconnect_timeout_ms = 500\n",
                          f->data_dir, f->port, mockpd_url(f->mock));
    tu_write_file(f->cfg, cfg);
    free(cfg);
    assert_int_equal(mockpd_set_mode_json(f->mock, "{\"mode\":\"status\",\"status\":503,\"retry_after\":\"2\","
                                                   "\"count\":1}"),
                     0);
    it_queue(f->data_dir, KEYS[0], "e", 1);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 15000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *reqs = mockpd_requests(f->mock);
    assert_int_equal(cJSON_GetArraySize(reqs), 2);
    double t0 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(reqs, 0), "arrival_ms")->valuedouble;
    double t1 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(reqs, 1), "arrival_ms")->valuedouble;
    print_message("503 then the next attempt %.0f ms later\n", t1 - t0);
    /* the daemon's 2 s count from the reply, a little after the arrival */
    if (t1 - t0 < 2000) it_fail("the next attempt came %.0f ms after a 503 with Retry-After: 2", t1 - t0);
    cJSON_Delete(reqs);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_killed_mid_drain),
        cmocka_unit_test(test_token_broken_then_fixed),
        cmocka_unit_test(test_503_retry_after_honoured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
