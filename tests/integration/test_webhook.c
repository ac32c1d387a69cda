/*
** test_webhook.c — webhook targets ([target NAME] webhook_url) and [agent]
** fallback_target, end to end: alerts posted to the real daemon reach the
** mock's plain webhook endpoint (tests/mock/mock_pd.c) with the headers of
** webhook_headers_file and the bodies agent/webhook.h documents, in order,
** retried on 5xx and 429 (Retry-After honoured), dead-lettered on 400, and
** apart from the PagerDuty uplink. Every test's log is checked for the
** secret header value (it_fx_free → it_assert_log_lacks).
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

#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "pdr.h"
#include "testutil.h"

#define KEY_DB "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define SECRET "s3cr3t-Webhook-Token-9f8e7d"
static const char *const SECRETS[] = {SECRET, KEY_DB};
#define N_SECRETS (sizeof SECRETS / sizeof *SECRETS)

#define jstr it_jstr

static it_fx *fx_new(void)
{
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    it_fx_port(f);
    return f;
}

/* The config: a PagerDuty target for team=db, a webhook target "hook" for
** team=web with a headers file; agent_extra goes under [agent]. */
static void fx_config(it_fx *f, const char *agent_extra)
{
    char *hf = tu_printf("%s/hook.headers", f->dir);
    tu_write_file(hf, "# sent with every request\nAuthorization: Bearer " SECRET "\r\n\nX-Team:  ops \n");
    char *text = tu_printf("[agent]\ndata_dir = %s\nsource = gw-test\nlog_level = debug\n%s"
                           "[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                           "rate_per_minute = 60000\nburst = 100\ntimeout_ms = 1000\nconnect_timeout_ms = 500\n"
                           "throttle_backoff = 0\n"
                           "[target db]\nrouting_key = " KEY_DB "\nmatch = team=db\n"
                           "[target hook]\nwebhook_url = %s/webhook/ops?token=" SECRET "\n"
                           "webhook_headers_file = %s\nmatch = team=web\n",
                           f->data_dir, agent_extra ? agent_extra : "", f->port, mockpd_url(f->mock),
                           mockpd_url(f->mock), hf);
    tu_write_file(f->cfg, text);
    free(text);
    free(hf);
}

static void fx_start(it_fx *f)
{
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
}

static cJSON *post(it_fx *f, const char *path, const char *body, int want)
{
    char *reply = NULL;
    int st = it_http(f->base, "POST", path, body, NULL, &reply, NULL);
    if (st != want) it_fail("POST %s: status %d, want %d: %s", path, st, want, reply);
    cJSON *j = cJSON_Parse(reply);
    if (!j) it_fail("POST %s: reply is not JSON: %s", path, reply);
    free(reply);
    return j;
}

static double jnum(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(it)) it_fail("no number '%s'", name);
    return it->valuedouble;
}

static char *am_alert(const char *name, const char *team, const char *status)
{
    return tu_printf("{\"status\":\"%s\",\"labels\":{\"alertname\":\"%s\",\"team\":\"%s\",\"severity\":\"warning\"},"
                     "\"annotations\":{\"summary\":\"%s is wrong\"},\"startsAt\":\"2026-01-02T03:04:05Z\","
                     "\"endsAt\":\"0001-01-01T00:00:00Z\",\"fingerprint\":\"fp-%s\"}",
                     status, name, team, name, name);
}

static char *v1_alert(const char *name, const char *team, const char *status)
{
    return tu_printf("{\"alert_name\":\"%s\",\"status\":\"%s\",\"labels\":{\"team\":\"%s\"},"
                     "\"annotations\":{\"summary\":\"%s\"},\"fingerprint\":\"v1-%s\"}",
                     name, status, team, name, name);
}

/* POSTs one /v1/alerts alert and checks it was queued (1 event). */
static void post_v1(it_fx *f, const char *name, const char *team, const char *status)
{
    char *a = v1_alert(name, team, status);
    cJSON *r = post(f, "/v1/alerts", a, 200);
    assert_int_equal((int)jnum(r, "queued"), 1);
    cJSON_Delete(r);
    free(a);
}

static cJSON *webhooks(it_fx *f)
{
    cJSON *w = mockpd_webhooks(f->mock);
    assert_non_null(w);
    return w;
}

static cJSON *wh_body(const cJSON *w, int i)
{
    cJSON *b = cJSON_Parse(jstr(cJSON_GetArrayItem(w, i), "body"));
    if (!b) it_fail("webhook %d: body is not JSON", i);
    return b;
}

/* An Alertmanager payload: the alerts routed to the webhook target arrive
** as one payload, with the headers of the file; the PagerDuty target gets
** its own event. */
static void test_alertmanager_payload(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    char *a1 = am_alert("DbDown", "db", "firing"), *a2 = am_alert("WebSlow", "web", "firing"),
         *a3 = am_alert("WebErr", "web", "resolved");
    char *body = tu_printf("{\"version\":\"4\",\"groupKey\":\"{}:{team=\\\"x\\\"}\",\"status\":\"firing\","
                           "\"receiver\":\"pdrelay\",\"groupLabels\":{},\"commonLabels\":{},"
                           "\"externalURL\":\"http://am:9093\",\"alerts\":[%s,%s,%s]}", a1, a2, a3);
    cJSON *r = post(f, "/v1/alertmanager", body, 200);
    assert_int_equal((int)jnum(r, "events"), 2);
    assert_int_equal((int)jnum(r, "unrouted"), 0);
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_webhooks(f->mock, 1, 10000), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);

    cJSON *w = webhooks(f);
    assert_int_equal(cJSON_GetArraySize(w), 1);
    const cJSON *rec = cJSON_GetArrayItem(w, 0);
    assert_string_equal(jstr(rec, "method"), "POST");
    assert_string_equal(jstr(rec, "path"), "/webhook/ops");   /* MHD keeps the query apart */
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(rec, "headers");
    assert_string_equal(jstr(h, "Authorization"), "Bearer " SECRET);
    assert_string_equal(jstr(h, "X-Team"), "ops");
    assert_string_equal(jstr(h, "Content-Type"), "application/json");
    cJSON *b = wh_body(w, 0);
    assert_string_equal(jstr(b, "version"), "4");
    assert_string_equal(jstr(b, "receiver"), "pdrelay");
    assert_string_equal(jstr(b, "status"), "firing");
    assert_string_equal(jstr(b, "groupKey"), "{}:{team=\"x\"}");
    const cJSON *alerts = cJSON_GetObjectItemCaseSensitive(b, "alerts");
    assert_int_equal(cJSON_GetArraySize(alerts), 2);   /* the team=web ones, in order */
    assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(alerts, 0), "labels"), "alertname"),
                        "WebSlow");
    assert_string_equal(jstr(cJSON_GetArrayItem(alerts, 1), "status"), "resolved");
    cJSON_Delete(b);
    cJSON_Delete(w);

    /* the PagerDuty event is the team=db alert only */
    cJSON *ev = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(ev), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 0), "routing_key"), KEY_DB);
    cJSON_Delete(ev);

    /* only the webhook alerts resolved: the payload says resolved */
    free(body);
    body = tu_printf("{\"version\":\"4\",\"groupKey\":\"g2\",\"status\":\"firing\",\"alerts\":[%s,%s]}", a1, a3);
    cJSON_Delete(post(f, "/v1/alertmanager", body, 200));
    assert_int_equal(mockpd_wait_webhooks(f->mock, 2, 10000), 0);
    w = webhooks(f);
    b = wh_body(w, 1);
    assert_string_equal(jstr(b, "status"), "resolved");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(b, "alerts")), 1);
    cJSON_Delete(b);
    cJSON_Delete(w);
    free(a1);
    free(a2);
    free(a3);
    free(body);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

/* /v1/alerts: each alert object arrives as received, one request each, in
** the order they were posted (one key: one request in flight, in order). */
static void test_v1_alerts_in_order(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    /* the first request fails twice: the rest wait behind it */
    assert_int_equal(mockpd_set_webhook_mode(f->mock, "status", 503, 0, 2, NULL), 0);
    /* one urgency (a key's next row is its most urgent head, then the oldest) */
    static const char *const names[] = {"a", "b", "c", "d", "e"};
    static const char *const st[] = {"firing", "firing", "firing", "firing", "firing"};
    for (int i = 0; i < 5; i++) post_v1(f, names[i], "web", st[i]);
    assert_int_equal(mockpd_wait_webhooks(f->mock, 5, 15000), 0);
    cJSON *w = webhooks(f);
    int ok = 0;
    for (int i = 0; i < cJSON_GetArraySize(w); i++) {
        const cJSON *rec = cJSON_GetArrayItem(w, i);
        if (jnum(rec, "status") != 200) continue;
        cJSON *b = wh_body(w, i);
        char *text = v1_alert(names[ok], "web", st[ok]);
        cJSON *want = cJSON_Parse(text);
        free(text);
        if (!cJSON_Compare(b, want, 1))
            it_fail("webhook %d: %s, want %s", ok, jstr(rec, "body"), cJSON_PrintUnformatted(want));
        cJSON_Delete(b);
        cJSON_Delete(want);
        ok++;
    }
    assert_int_equal(ok, 5);
    assert_int_equal(cJSON_GetArraySize(w), 7);   /* 2 refused, then 5 */
    cJSON_Delete(w);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

/* 400: a dead letter with the status and the reply's text; the PagerDuty
** uplink is untouched (still up, its events delivered). */
static void test_400_dead_letter(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    assert_int_equal(mockpd_set_webhook_mode(f->mock, "status", 400, 0, 1, NULL), 0);
    post_v1(f, "bad", "web", "firing");
    assert_int_equal(it_wait_log(&f->d, "refused by the webhook: moved to the dead letters", 10000), 0);
    db_row *rows = NULL;
    size_t n = it_rows(f->data_dir, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].routing_key, "webhook:hook");
    assert_non_null(strstr(rows[0].last_error, "HTTP 400: {\"status\":\"mock fault\""));
    assert_int_equal(rows[0].attempts, 1);
    db_rows_free(rows, n);
    /* the next alert goes, and PagerDuty's link never went down */
    post_v1(f, "good", "web", "firing");
    post_v1(f, "db", "db", "firing");
    assert_int_equal(mockpd_wait_webhooks(f->mock, 1, 10000), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    char *log = it_log(&f->d);
    assert_null(strstr(log, "uplink down"));
    free(log);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

/* 429 with Retry-After: 2: the next attempt waits that long. */
static void test_429_retry_after(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    assert_int_equal(mockpd_set_webhook_mode(f->mock, "status", 429, 0, 1, "2"), 0);
    post_v1(f, "busy", "web", "firing");
    assert_int_equal(mockpd_wait_webhooks(f->mock, 1, 15000), 0);
    cJSON *w = webhooks(f);
    assert_int_equal(cJSON_GetArraySize(w), 2);
    double t0 = jnum(cJSON_GetArrayItem(w, 0), "arrival_ms"), t1 = jnum(cJSON_GetArrayItem(w, 1), "arrival_ms");
    assert_int_equal((int)jnum(cJSON_GetArrayItem(w, 0), "status"), 429);
    if (t1 - t0 < 1900) it_fail("retried %.0f ms after a 429 with Retry-After: 2", t1 - t0);
    cJSON_Delete(w);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

/* The PagerDuty uplink down (connections reset) holds PagerDuty's events,
** not the webhook's; a webhook 5xx streak never takes the uplink down. */
static void test_apart_from_uplink(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    assert_int_equal(mockpd_set_mode(f->mock, "reset", 0, 0, 0), 0);
    post_v1(f, "db1", "db", "firing");
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    post_v1(f, "w1", "web", "firing");
    post_v1(f, "w2", "web", "firing");
    assert_int_equal(mockpd_wait_webhooks(f->mock, 2, 10000), 0);
    assert_int_equal(mockpd_stat(f->mock, "accepted"), 0);
    /* PagerDuty back (a kick probes now), the webhook failing: the uplink
    ** comes up and stays up through a streak of webhook 503s */
    assert_int_equal(mockpd_set_mode(f->mock, "ok", 0, 0, 0), 0);
    assert_int_equal(mockpd_set_webhook_mode(f->mock, "status", 503, 0, 0, NULL), 0);
    kill(f->d.pid, SIGUSR1);
    assert_int_equal(it_wait_log(&f->d, "uplink up", 10000), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    post_v1(f, "w3", "web", "firing");
    assert_int_equal(mockpd_wait_webhook_requests(f->mock, 6, 10000), 0);
    post_v1(f, "db2", "db", "firing");
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);
    char *log = it_log(&f->d);
    char *second = strstr(log, "uplink down");
    if (second && strstr(second + 1, "uplink down")) it_fail("a webhook's 503s took the uplink down");
    free(log);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

/* fallback_target: without it an alert matching no target is unrouted;
** with it (after a reload) the alert goes to the webhook. */
static void test_fallback_target(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    char *a = v1_alert("stray", "nobody", "firing");
    cJSON *r = post(f, "/v1/alerts", a, 200);
    assert_int_equal((int)jnum(r, "unrouted"), 1);
    assert_int_equal((int)jnum(r, "events"), 0);
    cJSON_Delete(r);

    fx_config(f, "fallback_target = hook\n");
    kill(f->d.pid, SIGHUP);
    assert_int_equal(it_wait_log(&f->d, "configuration reloaded", 10000), 0);
    r = post(f, "/v1/alerts", a, 200);
    assert_int_equal((int)jnum(r, "unrouted"), 0);
    assert_int_equal((int)jnum(r, "queued"), 1);
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_webhooks(f->mock, 1, 10000), 0);
    cJSON *w = webhooks(f);
    cJSON *b = wh_body(w, 0);
    assert_string_equal(jstr(b, "alert_name"), "stray");
    cJSON_Delete(b);
    cJSON_Delete(w);
    /* an alert of a PagerDuty target does not go to the fallback too */
    post_v1(f, "dbonly", "db", "firing");
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(mockpd_stat(f->mock, "webhook_requests"), 1);
    free(a);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

/* A target removed by a reload: its queued events are held, not dead, and
** go once a reload brings it back. */
static void test_target_gone_held(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL);
    fx_start(f);
    assert_int_equal(mockpd_set_webhook_mode(f->mock, "status", 503, 0, 0, NULL), 0);
    post_v1(f, "held", "web", "firing");
    assert_int_equal(it_wait_log(&f->d, "delivery failed; will retry", 10000), 0);
    char *text = tu_printf("[agent]\ndata_dir = %s\nlog_level = debug\n[listen]\nport = %d\n[pagerduty]\nurl = %s\n"
                           "backoff_initial_ms = 20\nbackoff_max_ms = 200\n", f->data_dir, f->port,
                           mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
    kill(f->d.pid, SIGHUP);
    assert_int_equal(it_wait_log(&f->d, "webhook target not in the configuration", 10000), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_DEAD), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 1);
    assert_int_equal(mockpd_set_webhook_mode(f->mock, "ok", 0, 0, 0, NULL), 0);
    fx_config(f, NULL);
    kill(f->d.pid, SIGHUP);
    assert_int_equal(mockpd_wait_webhooks(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, SECRETS, N_SECRETS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alertmanager_payload),
        cmocka_unit_test(test_v1_alerts_in_order),
        cmocka_unit_test(test_400_dead_letter),
        cmocka_unit_test(test_429_retry_after),
        cmocka_unit_test(test_apart_from_uplink),
        cmocka_unit_test(test_fallback_target),
        cmocka_unit_test(test_target_gone_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
