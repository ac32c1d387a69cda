/*
** test_hostile.c — hostile bodies against the real `pdrelay run` and the mock
** PagerDuty, over HTTP: what is validated is what is sent. Each body is
** POSTed to the ingest; a refusal must come back as PagerDuty's 400 naming
** the problem, and a body that is taken (possibly repaired) must arrive at
** the mock with exactly the meaning pdrelay validated — routing_key,
** event_action, dedup_key and severity as the mock's validator reads them
** from the body it received — while the mock records no 400 at all.
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

#include "itutil.h"
#include "mockpd_client.h"
#include "mockpd_validate.h"
#include "pdr.h"
#include "testutil.h"

#define KA "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define K1 "K1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define K2 "K2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define PAYLOAD(summary) "\"payload\":{\"summary\":\"" summary "\",\"source\":\"h\",\"severity\":\"info\"}"
#define TRIGGER(dk) "{\"routing_key\":\"" KA "\",\"event_action\":\"trigger\",\"dedup_key\":\"" dk "\","
#define U_FFFD "\xef\xbf\xbd"

typedef struct fx {
    char *dir, *cfg, *log, *base;
    mockpd *mock;
    it_daemon d;
} fx;

static fx *fx_start(void)
{
    fx *f = calloc(1, sizeof *f);
    mockpd_opts mo = {.limit = -1};
    f->dir = tu_mkdtemp();
    f->cfg = tu_printf("%s/pdrelay.ini", f->dir);
    f->log = tu_printf("%s/pdrelay.log", f->dir);
    int port = it_free_port();
    f->base = tu_printf("http://127.0.0.1:%d", port);
    f->mock = mockpd_start(&mo);
    assert_non_null(f->mock);
    char *text = tu_printf("[agent]\ndata_dir = %s/var\nsource = gw-test\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                           "rate_per_minute = 60000\nburst = 100\n"
                           "[target prod]\nrouting_key = " KA "\nmatch = env=prod\n",
                           f->dir, port, mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
    return f;
}

static void fx_stop(fx *f)
{
    static const char *const keys[] = {KA, K1, K2};
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    mockpd_stop(f->mock);
    it_teardown(&f->d, f->dir, keys, sizeof keys / sizeof *keys);
    free(f->dir);
    free(f->cfg);
    free(f->log);
    free(f->base);
    free(f);
}

/* ---- refused ------------------------------------------------------------ */

typedef struct refusal {
    const char *path, *body, *error;
} refusal;

static const refusal refusals[] = {
    /* the example: queued under K1, it reached PagerDuty as a resolve for K2 */
    {"/v2/enqueue",
     "{\"routing_key\":\"" K1 "\",\"routing_key\":\"" K2 "\",\"event_action\":\"trigger\",\"event_action\":\"resolve\","
     "\"dedup_key\":\"d\"," PAYLOAD("s") "}",
     "duplicate member \"routing_key\" in the event"},
    {"/v2/enqueue",
     TRIGGER("d") "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                  "\"custom_details\":{\"x\":{\"y\":[{\"z\":1,\"z\":2}]}}}}",
     "duplicate member \"payload.custom_details.x.y[0].z\" in the event"},
    {"/v2/change/enqueue", "{\"routing_key\":\"" KA "\",\"payload\":{\"summary\":\"a\",\"summary\":\"b\"}}",
     "duplicate member \"payload.summary\" in the event"},
    {"/v1/alertmanager", "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"dev\",\"env\":\"prod\"}}]}",
     "duplicate member \"alerts[0].labels.env\" in the body"},
    {"/v1/alerts", "{\"alert_name\":\"A\",\"status\":\"firing\",\"status\":\"resolved\",\"labels\":{\"env\":\"prod\"}}",
     "duplicate member \"status\" in the body"},
    {"/v2/enqueue", TRIGGER("d") PAYLOAD("before\\u0000after") "}",
     "'payload.summary' holds the NUL character (\\u0000), which PagerDuty refuses"},
    {"/v1/alertmanager", "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"prod\\u0000\"}}]}",
     "'alerts[0].labels.env' holds the NUL character (\\u0000), which PagerDuty refuses"},
    {"/v2/enqueue", "{\"routing_key\":\"" KA "b\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
     "'routing_key' is invalid: it must be 32 characters long"},
    {"/v2/enqueue", "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaa b12\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
     "'routing_key' is invalid: it must be letters and digits only (an integration key)"},
    {"/v2/enqueue", "{\"routing_key\":\"" KA "\",\"event_action\":\"Resolve\",\"dedup_key\":\"d\"}",
     "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)"},
    {"/v2/enqueue", TRIGGER("d") "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\xff\"}}",
     "'payload.severity' is invalid (must be one of: critical, error, warning, info)"},
    {"/v2/enqueue", TRIGGER("d") "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\",\"group\":{}}}",
     "'payload.group' must be a string"},
};

static void test_refused(void **state)
{
    (void)state;
    fx *f = fx_start();
    for (size_t i = 0; i < sizeof refusals / sizeof *refusals; i++) {
        const refusal *c = &refusals[i];
        char *reply = NULL;
        int st = it_http(f->base, "POST", c->path, c->body, NULL, &reply, NULL);
        cJSON *j = cJSON_Parse(reply ? reply : "");
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors"), *e;
        int found = 0;
        cJSON_ArrayForEach(e, errs) found |= cJSON_IsString(e) && !strcmp(e->valuestring, c->error);
        if (st != 400 || !found || strcmp(it_jstr(j, "status"), "invalid event") ||
            strcmp(it_jstr(j, "message"), "Event object is invalid"))
            it_fail("POST %s %s: %d %s; want 400 with \"%s\"", c->path, c->body, st, reply, c->error);
        cJSON_Delete(j);
        free(reply);
    }
    /* three alerts that match no target: taken, not queued, one log line */
    char *reply = NULL;
    assert_int_equal(it_http(f->base, "POST", "/v1/alertmanager",
                             "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"A\",\"env\":\"dev\"}},"
                             "{\"status\":\"firing\",\"labels\":{\"env\":\"dev\"}},"
                             "{\"status\":\"resolved\",\"labels\":{\"env\":\"qa\"}}]}",
                             NULL, &reply, NULL), 200);
    assert_true(tu_contains(reply, "\"unrouted\":3"));
    free(reply);
    assert_int_equal(it_wait_log(&f->d, "msg=\"alerts unrouted\" count=3 alerts=3 first=A", 5000), 0);
    char *log = it_log(&f->d), *first = strstr(log, "unrouted");
    assert_null(strstr(first + 1, "unrouted"));   /* one line, not one per alert */
    free(log);

    /* nothing was queued, so nothing reached PagerDuty */
    char *data_dir = tu_printf("%s/var", f->dir);
    assert_int_equal(it_count(data_dir, DB_ROW_PENDING), 0);
    free(data_dir);
    assert_int_equal(mockpd_stat(f->mock, "requests"), 0);
    fx_stop(f);
}

/* ---- taken, as validated ------------------------------------------------ */

typedef struct taken {
    const char *path, *body;
    const char *tag;          /* in the summary: finds the event at the mock */
    const char *action, *dedup_key, *severity;   /* dedup_key NULL: derived from fingerprint "fp-<tag>" */
    const char *has, *lacks;  /* in the body the mock received (NULL: no check) */
} taken;

static const taken takens[] = {
    {"/v2/enqueue", TRIGGER("utf8") "\"payload\":{\"summary\":\"t-utf8 a\xff" "b\xc0\xaf" "c\xed\xa0\x80\","
                                    "\"source\":\"h\xf4\x90\x80\x80\",\"severity\":\"critical\"}}",
     "t-utf8", "trigger", "utf8", "critical",
     "\"summary\":\"t-utf8 a" U_FFFD "b" U_FFFD U_FFFD "c" U_FFFD U_FFFD U_FFFD "\"", "\xff"},
    {"/v2/enqueue", TRIGGER("urls") PAYLOAD("t-urls") ",\"links\":[{\"href\":\"javascript:alert(1)\"},"
                                    "{\"href\":\"https://ok.example/\"}],\"images\":[{\"src\":\"data:image/png;base64,AA\"}],"
                                    "\"client_url\":\"file:///etc/passwd\"}",
     "t-urls", "trigger", "urls", "info", "\"links\":[{\"href\":\"https://ok.example/\"}]", "javascript"},
    {"/v2/enqueue", TRIGGER("ts") "\"payload\":{\"summary\":\"t-ts\",\"source\":\"h\",\"severity\":\"warning\","
                                  "\"timestamp\":\"2015-02-29T08:42:58Z\"}}",
     /* the invalid date is dropped; the sender stamps the time it was received */
     "t-ts", "trigger", "ts", "warning", "\"timestamp\":\"20", "2015-02-29"},
    {"/v2/enqueue", TRIGGER("text") PAYLOAD("t-text \\\\u0000 is text") "}",
     "t-text", "trigger", "text", "info", "t-text \\\\u0000 is text", NULL},
    {"/v2/enqueue", TRIGGER("  ") PAYLOAD("t-key") "}",
     "t-key", "trigger", "  ", "info", NULL, NULL},
    {"/v1/alertmanager", "{\"alerts\":[{\"status\":\"firing\",\"fingerprint\":\"fp-t-am\",\"labels\":{\"env\":\"prod\","
                         "\"alertname\":\"Disk\xe2\x82\",\"severity\":\"error\"},\"annotations\":{\"summary\":\"t-am\","
                         "\"runbook_url\":\"javascript:x\",\"snapshot_url\":\"http://plain/x.png\"},"
                         "\"startsAt\":\"2015-13-01T00:00:00Z\"}]}",
     "t-am", "trigger", NULL, "error", "[ERROR] Disk" U_FFFD ": t-am", "\"links\""},
};

/* The summary of 1025 three-byte characters, cut to 1024 (the last "…"),
** and a dedup_key of 255 characters: built at run time. */
static char *long_body(char **want_summary, char **dk)
{
    char *s = malloc(1025 * 3 + 1);
    for (int i = 0; i < 1025; i++) memcpy(s + 3 * i, "\xe2\x82\xac", 3);
    s[1025 * 3] = '\0';
    *dk = malloc(256);
    memset(*dk, 'k', 255);
    (*dk)[255] = '\0';
    char *body = tu_printf("{\"routing_key\":\"" KA "\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                           "\"payload\":{\"summary\":\"t-long%s\",\"source\":\"h\",\"severity\":\"info\"}}",
                           *dk, s);
    s[1017 * 3] = '\0';   /* "t-long" is 6 characters: 6 + 1017 + "…" = 1024 */
    *want_summary = tu_printf("t-long%s\xe2\x80\xa6", s);
    free(s);
    return body;
}

/* The accepted event at the mock whose summary holds tag. */
static const char *find_body(cJSON *events, const char *tag)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, events) {
        const char *s = it_jstr(e, "summary");
        if (s && strstr(s, tag)) return it_jstr(e, "body");
    }
    it_fail("no event with \"%s\" reached the mock", tag);
}

/* Asserts that body, as the mock's validator reads it, is valid and means
** (routing_key, action, dedup_key, severity). */
static void assert_means(const char *body, const char *action, const char *dedup_key, const char *severity)
{
    mockpd_check cr;
    mockpd_validate(body, strlen(body), false, false, &cr);
    if (cr.v != MOCKPD_VALID) it_fail("the mock refuses %s", body);
    if (strcmp(cr.routing_key, KA) || strcmp(cr.event_action, action) || !cr.dedup_key ||
        strcmp(cr.dedup_key, dedup_key) || !cr.severity || strcmp(cr.severity, severity))
        it_fail("arrived as %s %s %s %s, validated as %s %s %s %s: %s", cr.routing_key, cr.event_action,
                cr.dedup_key ? cr.dedup_key : "-", cr.severity ? cr.severity : "-", KA, action, dedup_key, severity,
                body);
    mockpd_check_free(&cr);
}

static void test_taken_as_validated(void **state)
{
    (void)state;
    fx *f = fx_start();
    size_t n = sizeof takens / sizeof *takens;
    char *want_summary, *long_dk;
    char *long_json = long_body(&want_summary, &long_dk);

    for (size_t i = 0; i < n; i++) {
        char *reply = NULL;
        int st = it_http(f->base, "POST", takens[i].path, takens[i].body, NULL, &reply, NULL);
        int want = strcmp(takens[i].path, "/v2/enqueue") ? 200 : 202;
        if (st != want) it_fail("POST %s %s: %d %s", takens[i].path, takens[i].body, st, reply);
        free(reply);
    }
    char *reply = NULL;
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", long_json, NULL, &reply, NULL), 202);
    assert_true(tu_contains(reply, long_dk));
    free(reply);

    assert_int_equal(mockpd_wait_accepted(f->mock, (int)n + 1, 10000), 0);
    cJSON *events = mockpd_events(f->mock);
    for (size_t i = 0; i < n; i++) {
        const taken *t = &takens[i];
        const char *body = find_body(events, t->tag);
        char derived[PDR_SHA256_HEX_LEN];
        const char *dk = t->dedup_key;
        if (!dk) {
            char *fp = tu_printf("fp-%s", t->tag);
            assert_int_equal(pdr_dedup_key_derive(KA, fp, derived), PDR_OK);
            free(fp);
            dk = derived;
        }
        if (!strcmp(t->tag, "t-key")) {
            /* blank is no key to PagerDuty: pdrelay sent a generated one */
            mockpd_check cr;
            mockpd_validate(body, strlen(body), false, false, &cr);
            assert_int_equal(cr.v, MOCKPD_VALID);
            assert_int_equal(strlen(cr.dedup_key), 36);
            dk = tu_printf("%s", cr.dedup_key);
            mockpd_check_free(&cr);
            assert_means(body, t->action, dk, t->severity);
            free((char *)dk);
        } else {
            assert_means(body, t->action, dk, t->severity);
        }
        if (t->has && !tu_contains(body, t->has)) it_fail("%s: no \"%s\" in %s", t->tag, t->has, body);
        if (t->lacks && tu_contains(body, t->lacks)) it_fail("%s: \"%s\" in %s", t->tag, t->lacks, body);
    }
    const char *body = find_body(events, "t-long");
    assert_means(body, "trigger", long_dk, "info");
    char *want = tu_printf("\"summary\":\"%s\"", want_summary);
    assert_true(tu_contains(body, want));
    free(want);
    cJSON_Delete(events);

    /* PagerDuty refused nothing pdrelay sent */
    assert_int_equal(mockpd_stat(f->mock, "invalid"), 0);
    assert_int_equal(mockpd_stat(f->mock, "accepted"), (long)n + 1);
    free(long_json);
    free(long_dk);
    free(want_summary);
    fx_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_taken_as_validated),
    };
    return cmocka_run_group_tests_name("hostile", tests, NULL, NULL);
}
