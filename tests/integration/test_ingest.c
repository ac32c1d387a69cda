/*
** test_ingest.c — `pdrelay run`'s HTTP ingest, end to end: a client posts to
** the real daemon, the test reads the reply, the outbox rows, and what the
** mock PagerDuty received, field by field. Every refusal is checked for its
** status and body, and for leaving the queued rows exactly as they were.
*/
#define _GNU_SOURCE   /* strcasestr, prlimit */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "db.h"
#include "event.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "pdr.h"
#include "testutil.h"

static const char *const KEYS[] = {
    "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12",
    "R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34",
    "R0cccccccccccccccccccccccccccd56",
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)

/* The scene, its mock without a limit, a port for the daemon's listener. */
static it_fx *fx_new(void)
{
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    it_fx_port(f);
    return f;
}

/* The config: the mock's URL, fast backoff, this fixture's port; extra is
** appended (more sections: targets, [outbox], ...). */
static void fx_config(it_fx *f, const char *listen_extra, const char *extra)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\nsource = gw-test\n"
                           "[listen]\nport = %d\n%s"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                           "rate_per_minute = 60000\nburst = 100\ntimeout_ms = 1000\nconnect_timeout_ms = 500\n%s",
                           f->data_dir, f->port, listen_extra ? listen_extra : "", mockpd_url(f->mock),
                           extra ? extra : "");
    tu_write_file(f->cfg, text);
    free(text);
}

static void fx_start(it_fx *f)
{
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
}

/* POST body to path; asserts the status; returns the parsed reply. */
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

#define jstr it_jstr

/* The body the mock received for event i, parsed. */
static cJSON *upstream_body(cJSON *events, int i)
{
    cJSON *b = cJSON_Parse(jstr(cJSON_GetArrayItem(events, i), "body"));
    assert_non_null(b);
    return b;
}

/* Asserts a 4xx/5xx reply in PagerDuty's shape with one error containing want. */
static void assert_error_reply(const cJSON *j, const char *status, const char *message, const char *want)
{
    assert_string_equal(jstr(j, "status"), status);
    assert_string_equal(jstr(j, "message"), message);
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors");
    assert_true(cJSON_IsArray(errs));
    assert_true(cJSON_GetArraySize(errs) >= 1);
    int found = 0;
    for (int i = 0; i < cJSON_GetArraySize(errs); i++)
        if (strstr(cJSON_GetArrayItem(errs, i)->valuestring, want)) found = 1;
    if (!found) it_fail("no error containing \"%s\" in %s", want, cJSON_PrintUnformatted(errs));
}

/* A serialized snapshot of the pending and dead rows: ids, keys, bodies. */
static char *rows_snapshot(const it_fx *f)
{
    db_row *rows;
    size_t n = it_rows(f->data_dir, DB_ROW_PENDING, &rows);
    char *s = tu_printf("%zu", n);
    for (size_t i = 0; i < n; i++) {
        char *t = tu_printf("%s|%lld %s %d %s %s", s, (long long)rows[i].id, rows[i].routing_key,
                            (int)rows[i].action, rows[i].dedup_key ? rows[i].dedup_key : "-", rows[i].body);
        free(s);
        s = t;
    }
    db_rows_free(rows, n);
    return s;
}

static char *trigger_json(const char *key, const char *dedup, const char *summary)
{
    return tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\"%s%s%s,"
                     "\"payload\":{\"summary\":\"%s\",\"source\":\"db-1\",\"severity\":\"critical\"}}",
                     key, dedup ? ",\"dedup_key\":\"" : "", dedup ? dedup : "", dedup ? "\"" : "", summary);
}

/* ---- PagerDuty-compatible endpoints ------------------------------------ */

static void test_enqueue_as_pagerduty(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    fx_start(f);

    const char *full = "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"trigger\","
                       "\"dedup_key\":\"disk-1\",\"client\":\"Zabbix\",\"client_url\":\"https://zbx.example/\","
                       "\"payload\":{\"summary\":\"Disk full on db-1\",\"source\":\"db-1\",\"severity\":\"error\","
                       "\"timestamp\":\"2026-11-23T08:42:58.315+0000\",\"component\":\"postgres\",\"group\":\"prod\","
                       "\"class\":\"disk\",\"custom_details\":{\"free\":\"0 B\",\"mounts\":[\"/\",\"/var\"]}},"
                       "\"links\":[{\"href\":\"https://wiki.example/disk\",\"text\":\"Runbook\"}],"
                       "\"images\":[{\"src\":\"https://graph.example/d.png\",\"alt\":\"graph\"}]}";
    cJSON *r = post(f, "/v2/enqueue", full, 202);
    assert_string_equal(jstr(r, "status"), "success");
    assert_string_equal(jstr(r, "message"), "Event processed");
    assert_string_equal(jstr(r, "dedup_key"), "disk-1");
    cJSON_Delete(r);

    /* The alias, a trigger without dedup_key, and a change event. */
    char *nokey = trigger_json(KEYS[0], NULL, "No key given");
    r = post(f, "/v2/events", nokey, 202);
    char generated[64];
    snprintf(generated, sizeof generated, "%s", jstr(r, "dedup_key"));
    assert_int_equal(strlen(generated), 36);
    cJSON_Delete(r);
    free(nokey);
    r = post(f, "/v2/change/enqueue",
             "{\"routing_key\":\"R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34\",\"payload\":{\"summary\":\"Deployed v2\","
             "\"source\":\"ci\",\"custom_details\":{\"build\":42}},\"links\":[{\"href\":\"https://ci.example/42\"}]}",
             202);
    assert_string_equal(jstr(r, "message"), "Event processed");
    assert_null(cJSON_GetObjectItemCaseSensitive(r, "dedup_key"));
    cJSON_Delete(r);

    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 10000), 0);
    cJSON *ev = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(ev), 3);
    /* What went upstream is what was received, member for member. */
    cJSON *sent = cJSON_Parse(full), *got = NULL;
    for (int i = 0; i < 3; i++) {
        cJSON *e = cJSON_GetArrayItem(ev, i);
        if (!strcmp(jstr(e, "dedup_key") ? jstr(e, "dedup_key") : "", "disk-1")) got = upstream_body(ev, i);
    }
    assert_non_null(got);
    assert_true(cJSON_Compare(sent, got, 1));
    cJSON_Delete(sent);
    cJSON_Delete(got);
    int seen_generated = 0, seen_change = 0;
    for (int i = 0; i < 3; i++) {
        cJSON *e = cJSON_GetArrayItem(ev, i);
        if (!strcmp(jstr(e, "path"), "/v2/change/enqueue")) {
            seen_change = 1;
            assert_string_equal(jstr(e, "summary"), "Deployed v2");
            assert_string_equal(jstr(e, "routing_key"), KEYS[1]);
        } else if (!strcmp(jstr(e, "dedup_key"), generated)) {
            seen_generated = 1;
            assert_string_equal(jstr(e, "path"), "/v2/enqueue");
        }
    }
    assert_true(seen_generated && seen_change);
    cJSON_Delete(ev);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* What Alertmanager's own pagerduty_configs notifier posts (0.27), with
** url pointed at pdrelay: taken as PagerDuty would, empty arrays included. */
static void test_alertmanager_pagerduty_notifier(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    fx_start(f);
    const char *am =
        "{\"routing_key\":\"R0cccccccccccccccccccccccccccd56\",\"event_action\":\"trigger\","
        "\"dedup_key\":\"7d1c0e3f9a1b2c3d4e5f60718293a4b5c6d7e8f9012345678901234567890abc\","
        "\"payload\":{\"summary\":\"[FIRING:1] DiskFull (db-1:9100 node critical)\",\"source\":\"Alertmanager\","
        "\"severity\":\"critical\",\"custom_details\":{\"firing\":\"Labels:\\n - alertname = DiskFull\\n\","
        "\"num_firing\":\"1\",\"num_resolved\":\"0\",\"resolved\":\"\"}},"
        "\"client\":\"Alertmanager\",\"client_url\":\"http://am.example:9093/#/alerts?receiver=pd\","
        "\"images\":[],\"links\":[]}";
    int64_t before = pdr_clock_now_ms();
    cJSON *r = post(f, "/v2/enqueue", am, 202);
    int64_t after = pdr_clock_now_ms();
    assert_string_equal(jstr(r, "dedup_key"), "7d1c0e3f9a1b2c3d4e5f60718293a4b5c6d7e8f9012345678901234567890abc");
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    cJSON *ev = mockpd_events(f->mock);
    cJSON *sent = cJSON_Parse(am), *got = upstream_body(ev, 0);
    /* the notifier sets no payload.timestamp: PagerDuty gets the time pdrelay
    ** received the event (ms precision), and otherwise exactly what was sent */
    cJSON *payload = cJSON_GetObjectItemCaseSensitive(got, "payload");
    const char *ts = jstr(payload, "timestamp");
    int64_t ms = 0;
    assert_non_null(ts);
    assert_int_equal(pdr_timestamp_parse_ms(ts, &ms), PDR_OK);
    assert_true(ms >= before - 1 && ms <= after + 1);
    cJSON_DeleteItemFromObjectCaseSensitive(payload, "timestamp");
    assert_true(cJSON_Compare(sent, got, 1));
    cJSON_Delete(sent);
    cJSON_Delete(got);
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_enqueue_repairs(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    fx_start(f);
    char summary[1301];
    memset(summary, 'x', 1300);
    summary[1300] = '\0';
    char *body = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"long-1\","
                           "\"payload\":{\"summary\":\"%s\",\"source\":\"s\",\"severity\":\"info\"},"
                           "\"images\":[{\"src\":\"http://insecure.example/x.png\"},{\"src\":\"https://ok.example/y.png\"}]}",
                           KEYS[0], summary);
    cJSON *r = post(f, "/v2/enqueue", body, 202);
    assert_string_equal(jstr(r, "dedup_key"), "long-1");
    cJSON_Delete(r);
    free(body);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    cJSON *ev = mockpd_events(f->mock);
    cJSON *got = upstream_body(ev, 0);
    const char *sum = cJSON_GetObjectItem(cJSON_GetObjectItem(got, "payload"), "summary")->valuestring;
    assert_int_equal(strlen(sum), 1023 + 3);   /* 1023 x's and the 3-byte "…" */
    assert_string_equal(sum + 1023, "\xe2\x80\xa6");
    cJSON *imgs = cJSON_GetObjectItem(got, "images");
    assert_int_equal(cJSON_GetArraySize(imgs), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(imgs, 0), "src"), "https://ok.example/y.png");
    cJSON_Delete(got);
    cJSON_Delete(ev);
    assert_int_equal(it_wait_log(&f->d, "msg=\"event repaired\"", 1000), 0);
    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "summary_cut_from=1300 images_dropped=1"));
    free(log);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Every class of bad request gets its status and PagerDuty-shaped body, and
** the rows already queued stay exactly as they were. */
static void test_errors_leave_queue_intact(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, "[target all]\nrouting_key = R0cccccccccccccccccccccccccccd56\n");
    assert_int_equal(mockpd_halt(f->mock), 0);   /* upstream down: rows stay queued */
    fx_start(f);
    for (int i = 0; i < 3; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "q-%d", i);
        char *b = trigger_json(KEYS[i], dk, "queued before the bad requests");
        cJSON_Delete(post(f, "/v2/enqueue", b, 202));
        free(b);
    }
    char *before = rows_snapshot(f);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 3);

    cJSON *r = post(f, "/v2/enqueue", "{\"routing_key\": \"R0aaa", 400);
    assert_error_reply(r, "invalid event", "Unrecognized object", "JSON parse error");
    cJSON_Delete(r);
    r = post(f, "/v2/enqueue", "[1,2,3]", 400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "");
    cJSON_Delete(r);
    r = post(f, "/v2/enqueue",
             "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"trigger\","
             "\"payload\":{\"summary\":42,\"source\":\"s\",\"severity\":\"critical\"}}",
             400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "'payload.summary' must be a string");
    cJSON_Delete(r);
    r = post(f, "/v2/enqueue", "{\"event_action\":\"trigger\",\"payload\":{\"summary\":\"s\",\"source\":\"s\","
                               "\"severity\":\"critical\"}}", 400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "routing_key");
    cJSON_Delete(r);
    r = post(f, "/v2/enqueue", "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"acknowledge\"}",
             400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "dedup_key");
    cJSON_Delete(r);
    r = post(f, "/v2/enqueue", "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"explode\","
                               "\"dedup_key\":\"x\"}", 400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "event_action");
    cJSON_Delete(r);
    r = post(f, "/v1/alertmanager", "{\"version\":\"4\",\"alerts\":[{\"status\":\"burning\",\"labels\":{}}]}", 400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "alerts[0].status");
    cJSON_Delete(r);
    r = post(f, "/v1/alerts", "{\"alert_name\":\"X\",\"status\":\"firing\",\"labels\":\"not an object\"}", 400);
    assert_error_reply(r, "invalid event", "Event object is invalid", "labels");
    cJSON_Delete(r);

    /* 413: a body over 512 KB, with and without Content-Length. */
    size_t big = 600 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    r = post(f, "/v2/enqueue", huge, 413);
    assert_error_reply(r, "invalid event", "Request too large", "512 KB");
    cJSON_Delete(r);
    free(huge);

    /* 404 and 405, each with a JSON body; 405 names the allowed method. */
    char *reply = NULL, *hdrs = NULL;
    assert_int_equal(it_http(f->base, "GET", "/v2/nothing", NULL, NULL, &reply, NULL), 404);
    r = cJSON_Parse(reply);
    assert_error_reply(r, "not found", "Not found", "/v2/nothing");
    cJSON_Delete(r);
    free(reply);
    assert_int_equal(it_http(f->base, "GET", "/v2/enqueue", NULL, NULL, &reply, &hdrs), 405);
    r = cJSON_Parse(reply);
    assert_error_reply(r, "method not allowed", "Method not allowed", "takes POST");
    assert_non_null(strcasestr(hdrs, "Allow: POST"));
    cJSON_Delete(r);
    free(reply);
    free(hdrs);

    char *after = rows_snapshot(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_auth_token(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    char *tok = tu_printf("%s/token", f->dir);
    tu_write_file(tok, "s3cret-token\n");
    char *listen = tu_printf("auth_token_file = %s\n", tok);
    fx_config(f, listen, NULL);
    fx_start(f);
    char *b = trigger_json(KEYS[0], "auth-1", "authorized");
    char *reply = NULL, *hdrs = NULL;
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", b, NULL, &reply, &hdrs), 401);
    cJSON *r = cJSON_Parse(reply);
    assert_error_reply(r, "unauthorized", "Unauthorized", "Authorization: Bearer");
    assert_non_null(strcasestr(hdrs, "WWW-Authenticate: Bearer"));
    cJSON_Delete(r);
    free(reply);
    free(hdrs);
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", b, "Authorization: Bearer s3cret-tokeN", NULL, NULL), 401);
    /* a prefix of the token, and the token with more after it, are wrong tokens */
    static const char *const near[] = {"s3cret-toke", "s3cret", "s", "s3cret-token0", "s3cret-tokens3cret-token"};
    for (size_t i = 0; i < sizeof near / sizeof *near; i++) {
        char *h = tu_printf("Authorization: Bearer %s", near[i]);
        if (it_http(f->base, "POST", "/v2/enqueue", b, h, NULL, NULL) != 401) it_fail("token '%s' was accepted", near[i]);
        free(h);
    }
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", b, "Authorization: Bearer ", NULL, NULL), 401);
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", b, "Authorization: Basic czNjcmV0", NULL, NULL), 401);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING) + (size_t)mockpd_stat(f->mock, "requests"), 0);
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", b, "Authorization: Bearer s3cret-token", NULL, NULL), 202);
    /* Health checks need no token. */
    assert_int_equal(it_http(f->base, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    free(b);
    char *log = it_log(&f->d);
    assert_null(strstr(log, "s3cret"));
    free(log);
    free(tok);
    free(listen);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_outbox_full_503(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, "[outbox]\nmax_events = 2\n");
    assert_int_equal(mockpd_halt(f->mock), 0);
    fx_start(f);
    char *reply = NULL, *hdrs = NULL;
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, &reply, NULL), 200);
    cJSON *r = cJSON_Parse(reply);
    assert_string_equal(jstr(r, "status"), "ready");
    assert_int_equal((int)jnum(r, "pending"), 0);
    cJSON_Delete(r);
    free(reply);
    for (int i = 0; i < 2; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "f-%d", i);
        char *b = trigger_json(KEYS[0], dk, "fills the outbox");
        cJSON_Delete(post(f, "/v2/enqueue", b, 202));
        free(b);
    }
    char *before = rows_snapshot(f);
    char *b = trigger_json(KEYS[0], "f-2", "one too many");
    assert_int_equal(it_http(f->base, "POST", "/v2/enqueue", b, NULL, &reply, &hdrs), 503);
    r = cJSON_Parse(reply);
    assert_error_reply(r, "unavailable", "Outbox full", "max_events");
    assert_non_null(strcasestr(hdrs, "Retry-After: 60"));
    cJSON_Delete(r);
    free(reply);
    free(hdrs);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, &reply, NULL), 503);
    r = cJSON_Parse(reply);
    assert_error_reply(r, "unavailable", "Outbox full", "max_events");
    cJSON_Delete(r);
    free(reply);
    char *after = rows_snapshot(f);
    assert_string_equal(before, after);
    /* The uplink returns, the outbox drains, and the refused event is taken. */
    assert_int_equal(mockpd_restart(f->mock), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 20000), 0);
    /* "delivered" is logged after the commit that deleted the row. */
    assert_int_equal(it_wait_log(&f->d, "msg=delivered key=\"R0\xe2\x80\xa6" "ab12\" id=2 ", 10000), 0);
    cJSON_Delete(post(f, "/v2/enqueue", b, 202));
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 20000), 0);
    free(b);
    free(before);
    free(after);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Disk full, simulated with the daemon's file size limit (prlimit): 503 and
** a log line, the queued rows intact, and ingest recovers by itself when
** the limit is lifted. */
static void test_disk_full_503_and_recovery(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    assert_int_equal(mockpd_halt(f->mock), 0);
    fx_start(f);
    char *b = trigger_json(KEYS[0], "d-0", "before the disk filled");
    cJSON_Delete(post(f, "/v2/enqueue", b, 202));
    free(b);
    char *before = rows_snapshot(f);

    /* The limit holds for every file the daemon writes, its log (our
    ** stderr file) too: leave the log room to grow, so the failure shows up
    ** in the database files first. */
    struct stat lst;
    assert_int_equal(stat(f->log, &lst), 0);
    struct rlimit small = {.rlim_cur = (rlim_t)lst.st_size + 16384, .rlim_max = RLIM_INFINITY}, old;
    assert_int_equal(prlimit(f->d.pid, RLIMIT_FSIZE, &small, &old), 0);
    char big[3000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *reply = NULL, *hdrs = NULL;
    int refused = 0;
    /* Each event adds WAL frames; once the WAL would pass the limit, commits fail. */
    for (int i = 1; i < 200 && !refused; i++) {
        char dk[16];
        snprintf(dk, sizeof dk, "d-%d", i);
        b = trigger_json(KEYS[0], dk, big);
        int st = it_http(f->base, "POST", "/v2/enqueue", b, NULL, &reply, &hdrs);
        free(b);
        if (st == 503) {
            refused = 1;
            cJSON *r = cJSON_Parse(reply);
            assert_error_reply(r, "unavailable", "Outbox not writable", "nothing queued was harmed");
            assert_non_null(strcasestr(hdrs, "Retry-After: 5"));
            cJSON_Delete(r);
        } else {
            assert_int_equal(st, 202);
        }
        free(reply);
        free(hdrs);
    }
    assert_true(refused);
    if (it_wait_log(&f->d, "msg=\"ingest commit failed; the requests of this batch get 503\"", 5000) != 0) {
        char *log = it_log(&f->d);
        it_fail("503 without the log line; the daemon's log:\n%s", log);
    }
    /* Meanwhile the sender cannot record its failed attempts either: it
    ** must keep backing off (20 ms with equal jitter: at least 10 ms here),
    ** not resend at once (which took 0-1 ms). */
    assert_int_equal(it_wait_log_count(&f->d, "msg=\"cannot record delivery outcomes", 2, 10000), 0);
    char *log = it_log(&f->d);
    int64_t t[2];
    const char *p = log;
    for (int k = 0; k < 2; k++) {
        p = strstr(p, "msg=\"cannot record delivery outcomes");
        const char *line = p;
        while (line > log && line[-1] != '\n') line--;
        int hh, mm, ss, ms;
        assert_int_equal(sscanf(line, "ts=%*d-%*d-%*dT%d:%d:%d.%dZ", &hh, &mm, &ss, &ms), 4);
        t[k] = ((hh * 60 + mm) * 60 + ss) * 1000LL + ms;
        p++;
    }
    free(log);
    if (t[1] - t[0] < 5) it_fail("the sender resent after %lld ms while the disk was full", (long long)(t[1] - t[0]));
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL), 503);
    struct rlimit lifted = {.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
    assert_int_equal(prlimit(f->d.pid, RLIMIT_FSIZE, &lifted, NULL), 0);
    /* Space is back: readiness and ingest recover without a restart. */
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL), 200);
    b = trigger_json(KEYS[0], "d-after", "after the disk was freed");
    cJSON_Delete(post(f, "/v2/enqueue", b, 202));
    free(b);
    /* The rows from before the failure are still there, first in line. */
    db_row *rows;
    size_t n = it_rows(f->data_dir, DB_ROW_PENDING, &rows);
    assert_true(n >= 2);
    assert_string_equal(rows[0].dedup_key, "d-0");
    assert_string_equal(rows[n - 1].dedup_key, "d-after");
    db_rows_free(rows, n);
    assert_non_null(before);
    free(before);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    /* and the database is sound */
    char *out = NULL;
    const char *argv[] = {tu_pdrelay(), "queue", "-c", f->cfg, "status", NULL};
    assert_int_equal(tu_run(argv, NULL, &out, NULL), 0);
    free(out);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- Alertmanager webhook ------------------------------------------------- */

static const char *const AM_TARGETS =
    "[target crit]\nrouting_key = R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\nmatch = severity=critical\n"
    "[target db]\nrouting_key = R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34\nmatch = team=~db|storage\n";

static char *am_body(const char *status)
{
    return tu_printf(
        "{\"version\":\"4\",\"groupKey\":\"{}:{alertname=\\\"DiskFull\\\"}\",\"truncatedAlerts\":0,"
        "\"status\":\"%s\",\"receiver\":\"pdrelay\",\"groupLabels\":{\"alertname\":\"DiskFull\"},"
        "\"commonLabels\":{\"alertname\":\"DiskFull\"},\"commonAnnotations\":{},"
        "\"externalURL\":\"http://am.example:9093\",\"alerts\":["
        "{\"status\":\"%s\",\"labels\":{\"alertname\":\"DiskFull\",\"severity\":\"critical\",\"team\":\"db\","
        "\"instance\":\"db-1:9100\",\"job\":\"node\",\"cluster\":\"eu-1\"},"
        "\"annotations\":{\"summary\":\"Disk / is full\",\"runbook_url\":\"https://wiki.example/disk\"},"
        "\"startsAt\":\"2026-11-23T10:00:00Z\",\"endsAt\":\"0001-01-01T00:00:00Z\","
        "\"generatorURL\":\"http://prom.example/graph\",\"fingerprint\":\"a1b2c3d4e5f60718\"},"
        "{\"status\":\"%s\",\"labels\":{\"alertname\":\"CPUHigh\",\"severity\":\"warning\",\"team\":\"web\"},"
        "\"annotations\":{\"description\":\"CPU above 90%%\"},\"startsAt\":\"2026-11-23T10:01:00Z\","
        "\"fingerprint\":\"ffee000000000001\"}]}",
        status, status, status);
}

static void test_alertmanager_lifecycle(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, AM_TARGETS);
    fx_start(f);
    char *firing = am_body("firing"), *resolved = am_body("resolved");
    cJSON *r = post(f, "/v1/alertmanager", firing, 200);
    /* DiskFull matches both targets; CPUHigh matches none. */
    assert_string_equal(jstr(r, "status"), "success");
    assert_int_equal((int)jnum(r, "alerts"), 2);
    assert_int_equal((int)jnum(r, "queued"), 2);
    assert_int_equal((int)jnum(r, "coalesced"), 0);
    assert_int_equal((int)jnum(r, "unrouted"), 1);
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);
    r = post(f, "/v1/alertmanager", resolved, 200);
    assert_int_equal((int)jnum(r, "queued"), 2);
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_accepted(f->mock, 4, 10000), 0);

    cJSON *ev = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(ev), 4);
    for (int k = 0; k < 2; k++) {
        char dk[PDR_SHA256_HEX_LEN];
        assert_int_equal(pdr_dedup_key_derive(KEYS[k], "a1b2c3d4e5f60718", dk), PDR_OK);
        int seen = 0;
        for (int i = 0; i < 4; i++) {
            cJSON *e = cJSON_GetArrayItem(ev, i);
            if (strcmp(jstr(e, "routing_key"), KEYS[k])) continue;
            assert_string_equal(jstr(e, "dedup_key"), dk);
            cJSON *b = upstream_body(ev, i);
            if (seen == 0) {   /* the trigger comes first */
                assert_string_equal(jstr(e, "event_action"), "trigger");
                cJSON *p = cJSON_GetObjectItem(b, "payload");
                assert_string_equal(jstr(p, "summary"), "[CRITICAL] DiskFull: Disk / is full");
                assert_string_equal(jstr(p, "severity"), "critical");
                assert_string_equal(jstr(p, "source"), "db-1:9100");
                assert_string_equal(jstr(p, "component"), "node");
                assert_string_equal(jstr(p, "group"), "eu-1");
                assert_string_equal(jstr(p, "class"), "DiskFull");
                assert_string_equal(jstr(p, "timestamp"), "2026-11-23T10:00:00Z");
                cJSON *cd = cJSON_GetObjectItem(p, "custom_details");
                assert_string_equal(jstr(cd, "fingerprint"), "a1b2c3d4e5f60718");
                assert_string_equal(jstr(cd, "receiver"), "pdrelay");
                assert_string_equal(jstr(cd, "externalURL"), "http://am.example:9093");
                assert_string_equal(jstr(cJSON_GetObjectItem(cd, "labels"), "team"), "db");
                assert_string_equal(jstr(cJSON_GetObjectItem(cd, "annotations"), "summary"), "Disk / is full");
                cJSON *links = cJSON_GetObjectItem(b, "links");
                assert_int_equal(cJSON_GetArraySize(links), 2);
                assert_string_equal(jstr(cJSON_GetArrayItem(links, 0), "href"), "http://prom.example/graph");
                assert_string_equal(jstr(cJSON_GetArrayItem(links, 1), "href"), "https://wiki.example/disk");
            } else {
                assert_string_equal(jstr(e, "event_action"), "resolve");
                assert_int_equal(cJSON_GetArraySize(b), 3);   /* routing_key, event_action, dedup_key */
            }
            cJSON_Delete(b);
            seen++;
        }
        assert_int_equal(seen, 2);
    }
    cJSON_Delete(ev);
    assert_int_equal(it_wait_log(&f->d, "msg=\"alerts unrouted\" count=1", 1000), 0);
    free(firing);
    free(resolved);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Alertmanager repeats a group every group_interval: during an outage the
** repeats must not pile up. */
static void test_alertmanager_repeats_coalesce(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, AM_TARGETS);
    assert_int_equal(mockpd_halt(f->mock), 0);
    fx_start(f);
    char *firing = am_body("firing");
    for (int i = 0; i < 5; i++) {
        cJSON *r = post(f, "/v1/alertmanager", firing, 200);
        assert_int_equal((int)jnum(r, "queued"), i == 0 ? 2 : 0);
        assert_int_equal((int)jnum(r, "coalesced"), i == 0 ? 0 : 2);
        cJSON_Delete(r);
    }
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 2);
    /* A resolve is new; a repeat of the resolve is not. */
    char *resolved = am_body("resolved");
    cJSON *r = post(f, "/v1/alertmanager", resolved, 200);
    assert_int_equal((int)jnum(r, "queued"), 2);
    cJSON_Delete(r);
    r = post(f, "/v1/alertmanager", resolved, 200);
    assert_int_equal((int)jnum(r, "coalesced"), 2);
    cJSON_Delete(r);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 4);
    /* The uplink returns: per key, one trigger then one resolve. */
    assert_int_equal(mockpd_restart(f->mock), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 4, 20000), 0);
    cJSON *ev = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(ev), 4);
    for (int k = 0; k < 2; k++) {
        const char *first = NULL, *second = NULL;
        for (int i = 0; i < 4; i++) {
            cJSON *e = cJSON_GetArrayItem(ev, i);
            if (strcmp(jstr(e, "routing_key"), KEYS[k])) continue;
            if (!first) {
                first = jstr(e, "event_action");
            } else {
                second = jstr(e, "event_action");
            }
        }
        assert_string_equal(first, "trigger");
        assert_string_equal(second, "resolve");
    }
    cJSON_Delete(ev);
    free(firing);
    free(resolved);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- generic alerts ------------------------------------------------------ */

static void test_alerts_endpoint(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, "[target all]\nrouting_key = R0cccccccccccccccccccccccccccd56\n");
    fx_start(f);
    cJSON *r = post(f, "/v1/alerts",
                    "[{\"fingerprint\":\"fp-1\",\"alert_name\":\"PodCrashLoop\",\"status\":\"firing\","
                    "\"labels\":{\"namespace\":\"shop\"},\"annotations\":{},\"starts_at\":\"2026-11-23T10:00:00Z\","
                    "\"classification\":{\"severity\":\"critical\",\"confidence\":0.93,"
                    "\"reasoning\":\"checkout is down\",\"recommendations\":[\"roll back\"]}},"
                    "{\"fingerprint\":\"fp-2\",\"alert_name\":\"Flapping\",\"status\":\"firing\",\"labels\":{},"
                    "\"classification\":{\"severity\":\"noise\",\"confidence\":0.8,\"reasoning\":\"known flap\"}}]",
                    200);
    assert_int_equal((int)jnum(r, "alerts"), 2);
    assert_int_equal((int)jnum(r, "queued"), 2);
    cJSON_Delete(r);
    r = post(f, "/v1/alerts", "{\"fingerprint\":\"fp-1\",\"alert_name\":\"PodCrashLoop\",\"status\":\"acknowledged\","
                              "\"labels\":{}}", 200);
    assert_int_equal((int)jnum(r, "queued"), 1);
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 10000), 0);
    cJSON *ev = mockpd_events(f->mock);
    char dk1[PDR_SHA256_HEX_LEN];
    assert_int_equal(pdr_dedup_key_derive(KEYS[2], "fp-1", dk1), PDR_OK);
    int saw_trigger = 0, saw_ack = 0, saw_noise = 0;
    for (int i = 0; i < 3; i++) {
        cJSON *e = cJSON_GetArrayItem(ev, i);
        cJSON *b = upstream_body(ev, i);
        cJSON *p = cJSON_GetObjectItem(b, "payload");
        if (!strcmp(jstr(e, "event_action"), "acknowledge")) {
            assert_true(saw_trigger);   /* after its trigger: same key, in order */
            assert_string_equal(jstr(e, "dedup_key"), dk1);
            saw_ack = 1;
        } else if (!strcmp(jstr(e, "dedup_key"), dk1)) {
            assert_string_equal(jstr(p, "summary"), "[CRITICAL] PodCrashLoop - AI: checkout is down");
            assert_string_equal(jstr(p, "severity"), "critical");
            assert_string_equal(jstr(p, "source"), "gw-test");
            cJSON *cl = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "custom_details"), "classification");
            assert_string_equal(jstr(cl, "reasoning"), "checkout is down");
            saw_trigger = 1;
        } else {
            assert_string_equal(jstr(p, "severity"), "info");
            assert_string_equal(jstr(p, "summary"), "[INFO] Flapping - AI: known flap");
            saw_noise = 1;
        }
        cJSON_Delete(b);
    }
    assert_true(saw_trigger && saw_ack && saw_noise);
    cJSON_Delete(ev);
    /* A resolve of a fingerprint never seen (its trigger went out before a
    ** restart, or the dedup entry expired) still carries the deterministic
    ** key, so it closes the incident. */
    r = post(f, "/v1/alerts", "{\"fingerprint\":\"fp-never-seen\",\"alert_name\":\"Old\",\"status\":\"resolved\"}",
             200);
    assert_int_equal((int)jnum(r, "queued"), 1);
    cJSON_Delete(r);
    assert_int_equal(mockpd_wait_accepted(f->mock, 4, 10000), 0);
    ev = mockpd_events(f->mock);
    cJSON *last = cJSON_GetArrayItem(ev, 3);
    char dk_old[PDR_SHA256_HEX_LEN];
    assert_int_equal(pdr_dedup_key_derive(KEYS[2], "fp-never-seen", dk_old), PDR_OK);
    assert_string_equal(jstr(last, "event_action"), "resolve");
    assert_string_equal(jstr(last, "dedup_key"), dk_old);
    cJSON_Delete(ev);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- reload and unix socket --------------------------------------------- */

static void test_sighup_rotates_key(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    char *keyf = tu_printf("%s/prod.key", f->dir);
    tu_write_file(keyf, "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\n");
    char *targets = tu_printf("[target prod]\nrouting_key_file = %s\n", keyf);
    fx_config(f, NULL, targets);
    fx_start(f);
#define ROT_ALERT "{\"fingerprint\":\"rot-%d\",\"alert_name\":\"Rotate\",\"status\":\"firing\",\"labels\":{}}"
    char *b = tu_printf(ROT_ALERT, 1);
    cJSON_Delete(post(f, "/v1/alerts", b, 200));
    free(b);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);

    tu_write_file(keyf, "R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34\n");
    kill(f->d.pid, SIGHUP);
    assert_int_equal(it_wait_log(&f->d, "msg=\"configuration reloaded\"", 10000), 0);
    b = tu_printf(ROT_ALERT, 2);
    cJSON_Delete(post(f, "/v1/alerts", b, 200));
    free(b);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);

    /* A broken file: reported, and the running config stays. */
    tu_write_file(f->cfg, "[agent]\nbogus = 1\n");
    kill(f->d.pid, SIGHUP);
    assert_int_equal(it_wait_log(&f->d, "msg=\"reload failed: the running configuration is kept\"", 10000), 0);
    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "pdrelay.ini:2: unknown key"));
    free(log);
    b = tu_printf(ROT_ALERT, 3);
    cJSON_Delete(post(f, "/v1/alerts", b, 200));
    free(b);
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 10000), 0);

    cJSON *ev = mockpd_events(f->mock);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 0), "routing_key"), KEYS[0]);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 1), "routing_key"), KEYS[1]);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 2), "routing_key"), KEYS[1]);
    cJSON_Delete(ev);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    free(keyf);
    free(targets);
    it_fx_free(f, KEYS, N_KEYS);
}

/* max_events needs a restart: after a reload that lowers it, /readyz and the
** writer both keep the value they started with, and the log says so. */
static void test_reload_keeps_max_events(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    char *body, *reply = NULL;
    cJSON *j;
    fx_config(f, NULL, "[outbox]\nmax_events = 3\n");
    fx_start(f);
    assert_int_equal(mockpd_set_mode(f->mock, "status", 500, 0, 0), 0);   /* keep what is queued */
    body = trigger_json(KEYS[0], "mx-1", "one");
    cJSON_Delete(post(f, "/v2/enqueue", body, 202));
    free(body);
    fx_config(f, NULL, "[outbox]\nmax_events = 1\n");
    kill(f->d.pid, SIGHUP);
    assert_int_equal(it_wait_log(&f->d, "msg=\"configuration reloaded\"", 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "level=warn msg=\"[outbox] max_events needs a restart: the running value "
                                        "stays in force\" running=3 new=1", 10000), 0);
    /* named precisely, [section] key, in the list of what needs a restart */
    assert_int_equal(it_wait_log(&f->d, "level=warn msg=\"changed settings take effect only after a restart\" "
                                        "settings=\"[outbox] max_events\"", 10000), 0);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, &reply, NULL), 200);
    j = cJSON_Parse(reply);
    assert_int_equal((int)jnum(j, "max_events"), 3);
    cJSON_Delete(j);
    free(reply);
    /* The writer takes a second event too: both still use 3. */
    body = trigger_json(KEYS[0], "mx-2", "two");
    cJSON_Delete(post(f, "/v2/enqueue", body, 202));
    free(body);
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL), 200);
    body = trigger_json(KEYS[0], "mx-3", "three");
    cJSON_Delete(post(f, "/v2/enqueue", body, 202));
    free(body);
    /* Now full by the value both enforce. */
    assert_int_equal(it_http(f->base, "GET", "/readyz", NULL, NULL, NULL, NULL), 503);
    body = trigger_json(KEYS[0], "mx-4", "four");
    cJSON_Delete(post(f, "/v2/enqueue", body, 503));
    free(body);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_unix_socket(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    char *sock = tu_printf("%s/pdrelay.sock", f->dir);
    char *listen = tu_printf("unix_socket = %s\n", sock);
    fx_config(f, listen, NULL);
    fx_start(f);
    struct stat st;
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    char *base = tu_printf("unix:%s", sock);
    char *b = trigger_json(KEYS[1], "unix-1", "over the unix socket");
    char *reply = NULL;
    assert_int_equal(it_http(base, "POST", "/v2/enqueue", b, NULL, &reply, NULL), 202);
    assert_non_null(strstr(reply, "\"dedup_key\":\"unix-1\""));
    free(reply);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(stat(sock, &st), -1);   /* removed on exit */
    free(b);
    free(base);
    free(sock);
    free(listen);
    it_fx_free(f, KEYS, N_KEYS);
}

/* SIGTERM while a request is arriving: it is answered 503 "shutting down"
** (Alertmanager retries it against the restarted daemon), nothing is stored,
** and the daemon exits 0. "Expect: 100-continue" tells the test when the
** daemon has begun the request. */
static void test_shutdown_answers_503(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    fx_start(f);
    char *body = trigger_json(KEYS[0], "late-1", "arrives during shutdown");
    char *head = tu_printf("POST /v2/enqueue HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n", strlen(body));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);   /* blocks until the daemon answers 100 */
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "HTTP/1.1 100 Continue"));
    kill(f->d.pid, SIGTERM);
    assert_int_equal(it_wait_log(&f->d, "msg=stopping signal=SIGTERM", 10000), 0);
    assert_int_equal(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    size_t got = 0;
    while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 503"));
    assert_non_null(strcasestr(buf, "Retry-After: 5"));
    cJSON *r = cJSON_Parse(strstr(buf, "\r\n\r\n") + 4);
    assert_error_reply(r, "unavailable", "Shutting down", "shutting down");
    cJSON_Delete(r);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    free(body);
    free(head);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Start-up refusals: a port in use (exit 1), an unreadable token file (2). */
static void test_startup_errors(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    fx_start(f);
    /* A second daemon on the same port. */
    char *cfg2 = tu_printf("%s/second.ini", f->dir);
    char *text = tu_printf("[agent]\ndata_dir = %s/var2\n[listen]\nport = %d\n", f->dir, f->port);
    tu_write_file(cfg2, text);
    char *err = NULL;
    const char *argv[] = {tu_pdrelay(), "run", "-c", cfg2, NULL};
    assert_int_equal(tu_run(argv, NULL, NULL, &err), 1);
    char *want = tu_printf("pdrelay run: cannot listen on 127.0.0.1:%d: Address already in use", f->port);
    assert_non_null(strstr(err, want));
    free(err);
    free(want);
    free(text);
    text = tu_printf("[agent]\ndata_dir = %s/var2\n[listen]\nport = 0\nauth_token_file = %s/missing.token\n",
                     f->dir, f->dir);
    tu_write_file(cfg2, text);
    assert_int_equal(tu_run(argv, NULL, NULL, &err), 2);
    want = tu_printf("pdrelay run: %s/missing.token: cannot read the auth token file: No such file or directory", f->dir);
    assert_non_null(strstr(err, want));
    free(err);
    free(want);
    free(text);
    /* A second daemon on the same outbox (another port, or none): refused,
    ** or both would send every event and each pace a key on its own. */
    text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n", f->data_dir);
    tu_write_file(cfg2, text);
    assert_int_equal(tu_run(argv, NULL, NULL, &err), 75);
    want = tu_printf("pdrelay run: another pdrelay run (pid %d) already serves the outbox in %s", (int)f->d.pid,
                     f->data_dir);
    if (!strstr(err, want)) it_fail("stderr: %s", err);
    free(err);
    free(want);
    free(text);
    free(cfg2);
    /* The first daemon was not disturbed. */
    assert_int_equal(it_http(f->base, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* No route adds a time to the stored body (the sender stamps a trigger or
** change event without payload.timestamp as it sends it), so a source that
** repeats the same event during an outage, a cron job or Alertmanager's own
** PagerDuty notifier, has it queued once, on every route. */
static void test_repeats_coalesce_every_route(void **state)
{
    (void)state;
    static const struct { const char *path, *body, *stored; } posts[] = {
        {"/v2/enqueue", "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"trigger\","
                        "\"dedup_key\":\"rt-enqueue\",\"payload\":{\"summary\":\"rt-enqueue\",\"source\":\"h\","
                        "\"severity\":\"info\"}}", NULL},
        /* an invalid timestamp is dropped, nothing put in its place */
        {"/v2/events", "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"trigger\","
                       "\"dedup_key\":\"rt-events\",\"payload\":{\"summary\":\"rt-events\",\"source\":\"h\","
                       "\"severity\":\"info\",\"timestamp\":\"not a time\"}}",
         "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\",\"event_action\":\"trigger\","
         "\"dedup_key\":\"rt-events\",\"payload\":{\"summary\":\"rt-events\",\"source\":\"h\","
         "\"severity\":\"info\"}}"},
        {"/v2/change/enqueue", "{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12\","
                               "\"payload\":{\"summary\":\"rt-change\",\"source\":\"h\"}}", NULL},
        {"/v1/alertmanager", "{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"RtAm\","
                             "\"severity\":\"critical\"},\"annotations\":{\"summary\":\"rt-am\"},"
                             "\"startsAt\":\"0001-01-01T00:00:00Z\"}]}", NULL},
        {"/v1/alerts", "{\"alert_name\":\"RtAlerts\",\"status\":\"firing\",\"labels\":{\"severity\":\"critical\"},"
                       "\"annotations\":{\"summary\":\"rt-alerts\"}}", NULL},
    };
    enum { N = sizeof posts / sizeof posts[0] };
    it_fx *f = fx_new();
    fx_config(f, NULL, AM_TARGETS);
    assert_int_equal(mockpd_halt(f->mock), 0);   /* the outage: everything stays queued */
    fx_start(f);
    for (int i = 0; i < N; i++) {
        int v1 = !strncmp(posts[i].path, "/v1/", 4);
        for (int k = 0; k < 3; k++) {
            cJSON *r = post(f, posts[i].path, posts[i].body, v1 ? 200 : 202);
            if (v1) {
                assert_int_equal((int)jnum(r, "queued"), k == 0 ? 1 : 0);
                assert_int_equal((int)jnum(r, "coalesced"), k == 0 ? 0 : 1);
            }
            cJSON_Delete(r);
            if (it_count(f->data_dir, DB_ROW_PENDING) != (size_t)i + 1)
                it_fail("%s: repeat %d queued again", posts[i].path, k);
        }
    }
    db_row *rows;
    size_t n = it_rows(f->data_dir, DB_ROW_PENDING, &rows);
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) {
        cJSON *b = cJSON_Parse(rows[i].body);
        assert_non_null(b);
        if (cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "payload"), "timestamp"))
            it_fail("%s: stored with a payload.timestamp: %s", posts[i].path, rows[i].body);
        cJSON_Delete(b);
        /* the PagerDuty-native routes store the body as received (repaired) */
        if (i < 3) assert_string_equal(rows[i].body, posts[i].stored ? posts[i].stored : posts[i].body);
    }
    db_rows_free(rows, n);
    it_fx_free(f, KEYS, N_KEYS);
}

/* `pdrelay queue kick` finds the daemon of the data_dir through its lock
** file and sends SIGUSR1, which the daemon logs and survives; with no
** daemon it says so and exits 1. */
static void test_queue_kick(void **state)
{
    (void)state;
    it_fx *f = fx_new();
    fx_config(f, NULL, NULL);
    char *out = NULL, *err = NULL;
    const char *argv[] = {tu_pdrelay(), "queue", "-c", f->cfg, "kick", NULL};

    /* before any daemon ran: no lock file at all */
    assert_int_equal(tu_run(argv, NULL, &out, &err), 1);
    assert_string_equal(out, "");
    char *want = tu_printf("pdrelay queue kick: no daemon is running on %s\n", f->data_dir);
    assert_string_equal(err, want);
    free(out);
    free(err);

    fx_start(f);
    assert_int_equal(tu_run(argv, NULL, &out, &err), 0);
    char *kicked = tu_printf("kicked pdrelay (pid %d): probing the uplink now\n", (int)f->d.pid);
    assert_string_equal(out, kicked);
    assert_string_equal(err, "");
    free(out);
    free(err);
    assert_int_equal(it_wait_log(&f->d, "msg=\"uplink kick: probing now (SIGUSR1)\"", 10000), 0);
    /* a plain SIGUSR1 does the same, and never stops it */
    assert_int_equal(kill(f->d.pid, SIGUSR1), 0);
    assert_int_equal(it_wait_log_count(&f->d, "msg=\"uplink kick: probing now (SIGUSR1)\"", 2, 10000), 0);
    assert_int_equal(it_http(f->base, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);

    /* stopped: the lock file stays, but nobody holds it */
    assert_int_equal(tu_run(argv, NULL, &out, &err), 1);
    assert_string_equal(out, "");
    assert_string_equal(err, want);
    free(out);
    free(err);
    free(kicked);
    free(want);
    it_fx_free(f, KEYS, N_KEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enqueue_as_pagerduty),
        cmocka_unit_test(test_alertmanager_pagerduty_notifier),
        cmocka_unit_test(test_enqueue_repairs),
        cmocka_unit_test(test_errors_leave_queue_intact),
        cmocka_unit_test(test_auth_token),
        cmocka_unit_test(test_outbox_full_503),
        cmocka_unit_test(test_disk_full_503_and_recovery),
        cmocka_unit_test(test_alertmanager_lifecycle),
        cmocka_unit_test(test_alertmanager_repeats_coalesce),
        cmocka_unit_test(test_repeats_coalesce_every_route),
        cmocka_unit_test(test_queue_kick),
        cmocka_unit_test(test_alerts_endpoint),
        cmocka_unit_test(test_sighup_rotates_key),
        cmocka_unit_test(test_reload_keeps_max_events),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_shutdown_answers_503),
        cmocka_unit_test(test_startup_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
