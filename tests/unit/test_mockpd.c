/*
** test_mockpd.c — the mock PagerDuty server (tests/mock/mock_pd.c) and its
** client library, tested as the integration tests will use them: over real
** HTTP(S), asserting the exact bodies PagerDuty would send, the rate limit,
** each fault mode, the records, the blocking wait, restarts on the same
** port, TLS verification against the right and the wrong CA, and hundreds
** of concurrent and keep-alive requests. No sleeps: every wait is the mock's
** own blocking /_mock/wait or a request's own duration. The validator's
** strict rules (UTF-8, NUL, duplicates, formats) are also called in-process
** (mockpd_validate.h), as the differential test calls them.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "mockpd_client.h"
#include "mockpd_validate.h"
#include "testutil.h"

#define KEY "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define KEY2 "R0bbbbbbbbbbbbbbbbbbbbbbbbbbbb34"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *trigger(const char *key, const char *dedup, const char *summary)
{
    if (dedup)
        return tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                         "\"payload\":{\"summary\":\"%s\",\"source\":\"h1\",\"severity\":\"error\"}}",
                         key, dedup, summary);
    return tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\","
                     "\"payload\":{\"summary\":\"%s\",\"source\":\"h1\",\"severity\":\"error\"}}",
                     key, summary);
}

/* POSTs body to path; returns the status, the reply in *reply (freed by caller). */
static int post(mockpd *m, const char *path, const char *body, char **reply)
{
    return mockpd_http(m, "POST", path, body, NULL, 0, reply);
}

static int post_trigger(mockpd *m, const char *key, const char *dedup, const char *summary)
{
    char *body = trigger(key, dedup, summary);
    int st = post(m, "/v2/enqueue", body, NULL);
    free(body);
    return st;
}

static mockpd *start_with(int limit, int window_ms, int latency_ms)
{
    mockpd_opts o = {.limit = limit, .window_ms = window_ms, .latency_ms = latency_ms};
    mockpd *m = mockpd_start(&o);
    assert_non_null(m);
    return m;
}

static void test_valid_events(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    char *reply = NULL;
    assert_true(tu_contains(mockpd_url(m), "http://127.0.0.1:"));
    assert_true(mockpd_port(m) > 0);

    char *body = trigger(KEY, "d1", "disk full");
    assert_int_equal(post(m, "/v2/enqueue", body, &reply), 202);
    assert_string_equal(reply, "{\"status\":\"success\",\"message\":\"Event processed\",\"dedup_key\":\"d1\"}");
    free(reply);
    /* the old path is an alias */
    assert_int_equal(post(m, "/v2/events", body, NULL), 202);
    free(body);

    /* a trigger without dedup_key gets a generated one, different each time */
    body = trigger(KEY, NULL, "no key");
    char *reply2 = NULL;
    assert_int_equal(post(m, "/v2/enqueue", body, &reply), 202);
    assert_int_equal(post(m, "/v2/enqueue", body, &reply2), 202);
    cJSON *j = cJSON_Parse(reply), *j2 = cJSON_Parse(reply2);
    const char *dk = cJSON_GetStringValue(cJSON_GetObjectItem(j, "dedup_key"));
    assert_non_null(dk);
    assert_int_equal(strlen(dk), 36);
    assert_string_not_equal(dk, cJSON_GetStringValue(cJSON_GetObjectItem(j2, "dedup_key")));
    cJSON_Delete(j);
    cJSON_Delete(j2);
    free(reply);
    free(reply2);
    free(body);

    /* acknowledge and resolve need only the key */
    assert_int_equal(post(m, "/v2/enqueue",
                          "{\"routing_key\":\"" KEY "\",\"event_action\":\"acknowledge\",\"dedup_key\":\"d1\"}",
                          NULL), 202);
    assert_int_equal(post(m, "/v2/enqueue",
                          "{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"d1\"}", NULL),
                     202);

    /* a full trigger: optional fields, HTTPS image, link, 1024 multibyte characters */
    char summary[1024 * 2 + 1];
    for (int i = 0; i < 1024; i++) memcpy(summary + 2 * i, "\xc3\xa9", 2);
    summary[2048] = '\0';
    body = tu_printf("{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"d2\","
                     "\"client\":\"am\",\"client_url\":\"https://am\","
                     "\"payload\":{\"summary\":\"%s\",\"source\":\"h\",\"severity\":\"critical\","
                     "\"timestamp\":\"2015-07-17T08:42:58.315+0000\",\"component\":\"c\",\"group\":\"g\","
                     "\"class\":\"k\",\"custom_details\":{\"a\":[1,2]}},"
                     "\"images\":[{\"src\":\"https://img\",\"href\":\"https://x\",\"alt\":\"a\"}],"
                     "\"links\":[{\"href\":\"https://l\",\"text\":\"t\"}]}",
                     summary);
    assert_int_equal(post(m, "/v2/enqueue", body, NULL), 202);
    free(body);

    /* change events */
    assert_int_equal(post(m, "/v2/change/enqueue",
                          "{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"deployed v2\","
                          "\"source\":\"ci\",\"timestamp\":\"2015-07-17T08:42:58.315+0000\"},"
                          "\"links\":[{\"href\":\"https://ci\"}]}",
                          &reply), 202);
    assert_string_equal(reply, "{\"status\":\"success\",\"message\":\"Change event processed\"}");
    free(reply);

    assert_int_equal(mockpd_stat(m, "accepted"), 8);
    assert_int_equal(mockpd_stat(m, "requests"), 8);
    mockpd_stop(m);
}

static void test_invalid_events(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    char *reply = NULL;

    assert_int_equal(post(m, "/v2/enqueue", "this is not json", &reply), 400);
    assert_string_equal(reply, "{\"status\":\"Unrecognized object\",\"message\":\"Event object is invalid\","
                               "\"errors\":[\"JSON parse error\"]}");
    free(reply);

    assert_int_equal(post(m, "/v2/enqueue",
                          "{\"routing_key\":\"short\",\"event_action\":\"trigger\","
                          "\"payload\":{\"summary\":\" \",\"source\":\"h\",\"severity\":\"fatal\"},"
                          "\"images\":[{\"src\":\"http://plain\"}],\"links\":[{\"text\":\"t\"}]}",
                          &reply), 400);
    assert_string_equal(reply,
                        "{\"status\":\"invalid event\",\"message\":\"Event object is invalid\",\"errors\":["
                        "\"Length of 'routing_key' is incorrect (should be 32 characters)\","
                        "\"'payload.summary' is missing or blank\","
                        "\"'payload.severity' is invalid (must be one of: critical, error, warning, info)\","
                        "\"'images[0].src' must be an HTTPS URL\","
                        "\"'links[0].href' is missing or blank\"]}");
    free(reply);

    assert_int_equal(post(m, "/v2/enqueue", "{\"event_action\":\"page\"}", &reply), 400);
    assert_string_equal(reply,
                        "{\"status\":\"invalid event\",\"message\":\"Event object is invalid\",\"errors\":["
                        "\"'routing_key' is missing or blank\","
                        "\"'event_action' is invalid (must be one of: trigger, acknowledge, resolve)\"]}");
    free(reply);

    assert_int_equal(post(m, "/v2/enqueue", "{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\"}", &reply),
                     400);
    assert_true(tu_contains(reply, "\"'dedup_key' is missing or blank (required for resolve)\""));
    free(reply);

    assert_int_equal(post(m, "/v2/enqueue", "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\"}", &reply),
                     400);
    assert_true(tu_contains(reply, "\"errors\":[\"'payload' is missing or blank\"]"));
    free(reply);

    /* too long: summary of 1025 characters, dedup_key of 256 */
    char long_s[1026], long_k[257];
    memset(long_s, 's', 1025);
    long_s[1025] = '\0';
    memset(long_k, 'k', 256);
    long_k[256] = '\0';
    char *body = trigger(KEY, long_k, long_s);
    assert_int_equal(post(m, "/v2/enqueue", body, &reply), 400);
    assert_true(tu_contains(reply, "\"'dedup_key' is too long (must be at most 255 characters)\""));
    assert_true(tu_contains(reply, "\"'payload.summary' is too long (must be at most 1024 characters)\""));
    free(reply);
    free(body);

    /* a change event needs a summary */
    assert_int_equal(post(m, "/v2/change/enqueue", "{\"routing_key\":\"" KEY "\",\"payload\":{}}", &reply), 400);
    assert_true(tu_contains(reply, "\"errors\":[\"'payload.summary' is missing or blank\"]"));
    free(reply);

    /* JSON that is not an object; a body over 1 MB */
    assert_int_equal(post(m, "/v2/enqueue", "[1,2]", &reply), 400);
    assert_true(tu_contains(reply, "Event object must be a JSON object"));
    free(reply);
    size_t big_n = 1024 * 1024 + 10;
    char *big = malloc(big_n + 1);
    assert_non_null(big);
    memset(big, ' ', big_n);
    big[big_n] = '\0';
    assert_int_equal(post(m, "/v2/enqueue", big, NULL), 413);
    free(big);

    /* what the control side saw */
    cJSON *s = mockpd_stats(m);
    assert_non_null(s);
    char *txt = cJSON_PrintUnformatted(s);
    assert_string_equal(txt, "{\"accepted\":0,\"throttled\":0,\"invalid\":9,\"faulted\":0,\"requests\":9,\"webhooks\":0,\"webhook_requests\":0}");
    cJSON_free(txt);
    cJSON_Delete(s);
    cJSON *ev = mockpd_events(m);
    assert_int_equal(cJSON_GetArraySize(ev), 0);
    cJSON_Delete(ev);
    cJSON *rq = mockpd_requests(m);
    assert_int_equal(cJSON_GetArraySize(rq), 9);
    const cJSON *first = cJSON_GetArrayItem(rq, 0);
    assert_int_equal(cJSON_GetObjectItem(first, "status")->valueint, 400);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(first, "body")), "this is not json");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(first, "routing_key")));
    cJSON_Delete(rq);
    mockpd_stop(m);
}


/* The validator in-process: every rule beyond the field checks above. */
static void test_validator_strict(void **state)
{
    (void)state;
#define TRIG_HEAD "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
#define TRIG_PAYLOAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\""
    static const struct {
        const char *body;
        const char *err;   /* NULL: valid */
    } cases[] = {
        {TRIG_HEAD TRIG_PAYLOAD ",\"timestamp\":\"2016-02-29T08:42:58.315+0000\"},"
                   "\"links\":[{\"href\":\"HTTP://h/x\"}],\"images\":[{\"src\":\"https://h/i\",\"href\":\"http://h\"}],"
                   "\"client_url\":\"https://u@h:1/\"}", NULL},
        {TRIG_HEAD TRIG_PAYLOAD "},\"dedup_key\":\"e\"}", "duplicate member \"dedup_key\""},
        {TRIG_HEAD TRIG_PAYLOAD ",\"custom_details\":{\"a\":[{\"x\":1,\"x\":1}]}}}", "duplicate member \"x\""},
        {TRIG_HEAD TRIG_PAYLOAD ",\"custom_details\":\"a\\u0000b\"}}", "a string holds the NUL character"},
        {TRIG_HEAD TRIG_PAYLOAD ",\"custom_details\":\"a\xc0\xaf\"}}", "a string is not valid UTF-8"},
        {TRIG_HEAD TRIG_PAYLOAD ",\"custom_details\":\"\xed\xa0\x80\"}}", "a string is not valid UTF-8"},
        {TRIG_HEAD TRIG_PAYLOAD ",\"custom_details\":{\"\xf4\x90\x80\x80\":1}}}", "a member name is not valid UTF-8"},
        {"{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaaa+12\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
         "'routing_key' is invalid (letters and digits only)"},
        {TRIG_HEAD TRIG_PAYLOAD ",\"timestamp\":\"2015-02-29T00:00:00Z\"}}", "'payload.timestamp' is not an ISO 8601 date-time"},
        {TRIG_HEAD TRIG_PAYLOAD "},\"links\":[{\"href\":\"javascript:alert(1)\"}]}", "'links[0].href' must be an http or https URL"},
        {TRIG_HEAD TRIG_PAYLOAD "},\"images\":[{\"src\":\"data:image/png;base64,AA\"}]}", "'images[0].src' must be an HTTPS URL"},
        {TRIG_HEAD TRIG_PAYLOAD "},\"images\":[{\"src\":\"https://h/i\",\"href\":\"file:///x\"}]}", "'images[0].href' must be an http or https URL"},
        {TRIG_HEAD TRIG_PAYLOAD "},\"client_url\":\"https://\"}", "'client_url' must be an http or https URL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mockpd_check cr;
        mockpd_validate(cases[i].body, strlen(cases[i].body), false, false, &cr);
        if (!cases[i].err && cr.v != MOCKPD_VALID) {
            char *e = cJSON_PrintUnformatted(cr.errors);
            fail_msg("case %zu refused: %s", i, e);
        }
        if (cases[i].err && !mockpd_check_has_error(&cr, cases[i].err)) {
            char *e = cr.errors ? cJSON_PrintUnformatted(cr.errors) : NULL;
            fail_msg("case %zu: want %s, got %s", i, cases[i].err, e ? e : "no errors");
        }
        if (!cases[i].err) {
            assert_string_equal(cr.routing_key, KEY);
            assert_string_equal(cr.event_action, "trigger");
            assert_string_equal(cr.dedup_key, "d");
            assert_string_equal(cr.severity, "info");
        }
        mockpd_check_free(&cr);
    }
    /* trailing bytes and a raw NUL byte between tokens */
    mockpd_check cr;
    mockpd_validate("{} x", 4, false, false, &cr);
    assert_int_equal(cr.v, MOCKPD_NOT_JSON);
    mockpd_check_free(&cr);
    mockpd_validate("{\"a\":1,\0\"b\":2}", 14, false, false, &cr);
    assert_int_equal(cr.v, MOCKPD_INVALID);
    assert_true(mockpd_check_has_error(&cr, "a string holds the NUL character"));
    mockpd_check_free(&cr);
    /* an escaped backslash before u0000 is text */
    mockpd_validate("{\"a\":\"\\\\u0000\"}", 15, false, true, &cr);
    assert_false(mockpd_check_has_error(&cr, "a string holds the NUL character"));
    mockpd_check_free(&cr);
}

static void test_http_errors(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    char *reply = NULL;
    assert_int_equal(mockpd_http(m, "GET", "/v2/enqueue", NULL, NULL, 0, &reply), 405);
    assert_string_equal(reply, "{\"status\":\"method not allowed\",\"message\":\"Use POST\"}");
    free(reply);
    assert_int_equal(mockpd_http(m, "POST", "/_mock/stats", "{}", NULL, 0, NULL), 405);
    assert_int_equal(mockpd_http(m, "GET", "/v1/enqueue", NULL, NULL, 0, &reply), 404);
    assert_true(tu_contains(reply, "\"status\":\"not found\""));
    free(reply);
    assert_int_equal(mockpd_http(m, "POST", "/_mock/mode", "{\"mode\":\"explode\"}", NULL, 0, NULL), 400);
    assert_int_equal(mockpd_http(m, "POST", "/_mock/mode", "nope", NULL, 0, NULL), 400);
    assert_int_equal(mockpd_http(m, "GET", "/_mock/wait?accepted=x", NULL, NULL, 0, NULL), 400);
    assert_int_equal(mockpd_stat(m, "requests"), 0); /* none of those was an event request */
    mockpd_stop(m);
}

static void test_rate_limit(void **state)
{
    (void)state;
    mockpd *m = start_with(3, 60000, 0);
    char *reply = NULL;
    for (int i = 0; i < 3; i++) assert_int_equal(post_trigger(m, KEY, "d", "s"), 202);
    char *body = trigger(KEY, "d", "s");
    assert_int_equal(post(m, "/v2/enqueue", body, &reply), 429);
    assert_string_equal(reply, "{\"status\":\"throttle event\",\"message\":"
                               "\"Requests for this service are arriving too quickly. Please retry later.\"}");
    free(reply);
    free(body);
    /* throttled requests do not use up the window; other keys are unaffected */
    assert_int_equal(post_trigger(m, KEY, "d", "s"), 429);
    assert_int_equal(post_trigger(m, KEY2, "d", "s"), 202);
    assert_int_equal(mockpd_stat(m, "throttled"), 2);
    assert_int_equal(mockpd_stat(m, "accepted"), 4);
    /* reset clears the windows */
    assert_int_equal(mockpd_reset(m), 0);
    assert_int_equal(post_trigger(m, KEY, "d", "s"), 202);
    mockpd_stop(m);

    /* a short window slides: once it has passed, the key may send again */
    m = start_with(1, 200, 0);
    assert_int_equal(post_trigger(m, KEY, "d", "s"), 202);
    int64_t t0 = now_ms();
    assert_int_equal(post_trigger(m, KEY, "d", "s"), 429);
    /* the wait endpoint's timeout doubles as the pause: nothing polls */
    assert_int_equal(mockpd_wait_accepted(m, 100, 250), 1);
    assert_true(now_ms() - t0 >= 250);
    assert_int_equal(post_trigger(m, KEY, "d", "s"), 202);
    mockpd_stop(m);
}

static void test_fault_status(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    char *reply = NULL;
    assert_int_equal(mockpd_set_mode(m, "status", 503, 0, 1), 0);
    assert_int_equal(post_trigger(m, KEY, "f1", "s"), 503);
    assert_int_equal(post_trigger(m, KEY, "f1", "s"), 202); /* count 1: back to ok */

    /* until changed; an invalid event is faulted too, not validated */
    assert_int_equal(mockpd_set_mode(m, "status", 500, 0, 0), 0);
    assert_int_equal(post_trigger(m, KEY, "f2", "s"), 500);
    assert_int_equal(post(m, "/v2/enqueue", "not json", &reply), 500);
    assert_string_equal(reply, "{\"status\":\"mock fault\",\"message\":\"Injected HTTP 500\"}");
    free(reply);
    assert_int_equal(mockpd_set_mode_json(m, "{\"mode\":\"status\",\"status\":429,\"retry_after\":\"1\"}"), 0);
    assert_int_equal(post_trigger(m, KEY, "f3", "s"), 429);
    assert_int_equal(mockpd_set_mode(m, "ok", 0, 0, 0), 0);
    assert_int_equal(post_trigger(m, KEY, "f4", "s"), 202);

    cJSON *rq = mockpd_requests(m);
    assert_int_equal(cJSON_GetArraySize(rq), 6);
    const cJSON *r0 = cJSON_GetArrayItem(rq, 0);
    assert_int_equal(cJSON_GetObjectItem(r0, "status")->valueint, 503);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(r0, "fault")), "status");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(r0, "dedup_key")), "f1");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(rq, 1), "fault")));
    cJSON_Delete(rq);
    assert_int_equal(mockpd_stat(m, "faulted"), 4);
    assert_int_equal(mockpd_stat(m, "accepted"), 2);
    mockpd_stop(m);
}

static void test_fault_reset(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    assert_int_equal(mockpd_set_mode(m, "reset", 0, 0, 2), 0);
    for (int i = 0; i < 2; i++) {
        int st = post_trigger(m, KEY, "r", "s");
        /* no HTTP reply at all: an empty reply, or a reset */
        assert_true(st == -(int)CURLE_GOT_NOTHING || st == -(int)CURLE_RECV_ERROR);
    }
    assert_int_equal(post_trigger(m, KEY, "r", "s"), 202);
    cJSON *rq = mockpd_requests(m);
    assert_int_equal(cJSON_GetArraySize(rq), 3);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(rq, 0), "status")->valueint, 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(rq, 0), "fault")), "reset");
    cJSON_Delete(rq);
    assert_int_equal(mockpd_stat(m, "faulted"), 2);
    assert_int_equal(mockpd_stat(m, "accepted"), 1);
    mockpd_stop(m);
}

static void test_fault_slow_and_latency(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    assert_int_equal(mockpd_set_mode(m, "slow", 0, 300, 1), 0);
    int64_t t0 = now_ms();
    assert_int_equal(post_trigger(m, KEY, "s", "s"), 202);
    int64_t took = now_ms() - t0;
    assert_true(took >= 300);
    t0 = now_ms();
    assert_int_equal(post_trigger(m, KEY, "s", "s"), 202);
    assert_true(now_ms() - t0 < 300);
    /* a client that gives up first: the event was still taken */
    assert_int_equal(mockpd_set_mode(m, "slow", 0, 2000, 1), 0);
    assert_int_equal(mockpd_http(m, "POST", "/v2/enqueue", "{}", NULL, 100, NULL), -(int)CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(mockpd_stat(m, "requests"), 3);
    mockpd_stop(m);

    m = start_with(0, 0, 200);
    t0 = now_ms();
    assert_int_equal(post(m, "/v2/enqueue", "bad", NULL), 400);
    assert_true(now_ms() - t0 >= 200);
    t0 = now_ms();
    assert_int_equal(mockpd_stat(m, "invalid"), 1); /* control endpoints are not delayed */
    assert_true(now_ms() - t0 < 200);
    mockpd_stop(m);
}

typedef struct bg_req {
    mockpd *m;
    int timeout_ms;
    int status;
    pthread_t th;
} bg_req;

static void *bg_post(void *arg)
{
    bg_req *b = arg;
    char *body = trigger(KEY, "bg", "background");
    b->status = mockpd_http(b->m, "POST", "/v2/enqueue", body, NULL, b->timeout_ms, NULL);
    free(body);
    return NULL;
}

static void test_fault_hang(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    assert_int_equal(mockpd_set_mode(m, "hang", 0, 0, 0), 0);

    /* a client that gives up: its time-out, and the mock goes on serving */
    assert_int_equal(mockpd_http(m, "POST", "/v2/enqueue", "{}", NULL, 200, NULL), -(int)CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(mockpd_stat(m, "faulted"), 1);

    /* a hanging request does not hold up shutdown */
    bg_req b = {.m = m, .timeout_ms = 20000};
    assert_int_equal(pthread_create(&b.th, NULL, bg_post, &b), 0);
    assert_int_equal(mockpd_wait_requests(m, 2, 10000), 0);
    cJSON *rq = mockpd_requests(m);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(rq, 1), "fault")), "hang");
    cJSON_Delete(rq);
    int64_t t0 = now_ms();
    assert_int_equal(mockpd_halt(m), 0); /* exit status 0 */
    assert_true(now_ms() - t0 < 5000);
    pthread_join(b.th, NULL);
    assert_true(b.status < 0); /* no reply ever came */
    mockpd_stop(m);
}

typedef struct bg_wait {
    mockpd *m;
    int rc;
    pthread_t th;
} bg_wait;

static void *bg_wait_fn(void *arg)
{
    bg_wait *w = arg;
    w->rc = mockpd_wait_accepted(w->m, 2, 20000);
    return NULL;
}

static void test_wait(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    /* reached at once */
    assert_int_equal(mockpd_wait_accepted(m, 0, 1000), 0);
    /* timeout, with the stats as the body and 408 */
    char *reply = NULL;
    int64_t t0 = now_ms();
    assert_int_equal(mockpd_http(m, "GET", "/_mock/wait?accepted=1&timeout_ms=150", NULL, NULL, 0, &reply), 408);
    assert_true(now_ms() - t0 >= 150);
    assert_string_equal(reply, "{\"accepted\":0,\"throttled\":0,\"invalid\":0,\"faulted\":0,\"requests\":0,\"webhooks\":0,\"webhook_requests\":0}");
    free(reply);
    /* a blocked waiter is woken by deliveries from elsewhere */
    bg_wait w = {.m = m, .rc = -2};
    assert_int_equal(pthread_create(&w.th, NULL, bg_wait_fn, &w), 0);
    assert_int_equal(post_trigger(m, KEY, "w1", "s"), 202);
    assert_int_equal(post(m, "/v2/enqueue", "bad", NULL), 400);
    assert_int_equal(post_trigger(m, KEY, "w2", "s"), 202);
    pthread_join(w.th, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(mockpd_wait_requests(m, 3, 1000), 0);
    assert_int_equal(mockpd_wait_requests(m, 4, 50), 1);
    mockpd_stop(m);
}

static void test_records_and_reset(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    char *b1 = trigger(KEY, "k1", "first");
    assert_int_equal(post(m, "/v2/enqueue", b1, NULL), 202);
    assert_int_equal(post(m, "/v2/enqueue", "{\"routing_key\":\"x\"}", NULL), 400);
    assert_int_equal(post(m, "/v2/change/enqueue", "{\"routing_key\":\"" KEY2 "\",\"payload\":{\"summary\":\"chg\"}}",
                          NULL), 202);
    assert_int_equal(post(m, "/v2/events", "{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"k1\"}",
                          NULL), 202);

    cJSON *ev = mockpd_events(m);
    assert_non_null(ev);
    assert_int_equal(cJSON_GetArraySize(ev), 3);
    static const struct {
        int seq;
        const char *path, *key, *action, *dedup, *summary;
    } want[] = {
        {1, "/v2/enqueue", KEY, "trigger", "k1", "first"},
        {3, "/v2/change/enqueue", KEY2, "change", NULL, "chg"},
        {4, "/v2/events", KEY, "resolve", "k1", NULL},
    };
    double last_ms = -1;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(ev, i);
        assert_int_equal(cJSON_GetObjectItem(e, "seq")->valueint, want[i].seq);
        assert_int_equal(cJSON_GetObjectItem(e, "status")->valueint, 202);
        assert_true(cJSON_GetObjectItem(e, "arrival_ms")->valuedouble >= last_ms);
        last_ms = cJSON_GetObjectItem(e, "arrival_ms")->valuedouble;
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "path")), want[i].path);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "routing_key")), want[i].key);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "event_action")), want[i].action);
        if (want[i].dedup)
            assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "dedup_key")), want[i].dedup);
        else
            assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "dedup_key")));
        if (want[i].summary)
            assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "summary")), want[i].summary);
        else
            assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "summary")));
    }
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(ev, 0), "body")), b1);
    cJSON_Delete(ev);
    free(b1);

    cJSON *rq = mockpd_requests(m);
    assert_int_equal(cJSON_GetArraySize(rq), 4);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(rq, 1), "status")->valueint, 400);
    cJSON_Delete(rq);

    assert_int_equal(mockpd_set_mode(m, "status", 502, 0, 0), 0);
    assert_int_equal(mockpd_reset(m), 0);
    ev = mockpd_events(m);
    assert_int_equal(cJSON_GetArraySize(ev), 0);
    cJSON_Delete(ev);
    assert_int_equal(mockpd_stat(m, "requests"), 0);
    assert_int_equal(post_trigger(m, KEY, "k2", "after reset"), 202); /* mode back to ok */
    ev = mockpd_events(m);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(ev, 0), "seq")->valueint, 1);
    cJSON_Delete(ev);
    mockpd_stop(m);
}

static void test_restart_same_port(void **state)
{
    (void)state;
    mockpd *m = start_with(0, 0, 0);
    int port = mockpd_port(m);
    assert_int_equal(post_trigger(m, KEY, "p", "s"), 202);
    assert_int_equal(mockpd_halt(m), 0);
    assert_int_equal(post_trigger(m, KEY, "p", "s"), -(int)CURLE_COULDNT_CONNECT);
    assert_int_equal(mockpd_restart(m), 0);
    assert_int_equal(mockpd_port(m), port);
    assert_int_equal(post_trigger(m, KEY, "p", "s"), 202);
    assert_int_equal(mockpd_stat(m, "accepted"), 1); /* a fresh process */
    /* restart while running works too */
    assert_int_equal(mockpd_restart(m), 0);
    assert_int_equal(mockpd_port(m), port);
    assert_int_equal(mockpd_stat(m, "accepted"), 0);
    mockpd_stop(m);

    /* a fixed port from the options */
    mockpd_opts o = {.port = port};
    m = mockpd_start(&o);
    assert_non_null(m);
    assert_int_equal(mockpd_port(m), port);
    mockpd_stop(m);
}

static void test_https(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    assert_int_equal(mockpd_gen_certs(dir), 0);
    assert_int_equal(mockpd_gen_certs(dir), 0); /* idempotent */
    mockpd_opts o = {.tls = true, .certs_dir = dir};
    mockpd *m = mockpd_start(&o);
    assert_non_null(m);
    char *want = tu_printf("https://localhost:%d", mockpd_port(m));
    assert_string_equal(mockpd_url(m), want);
    free(want);

    char *body = trigger(KEY, "tls", "over TLS");
    char *reply = NULL;
    assert_int_equal(mockpd_http(m, "POST", "/v2/enqueue", body, NULL, 0, &reply), 202);
    assert_string_equal(reply, "{\"status\":\"success\",\"message\":\"Event processed\",\"dedup_key\":\"tls\"}");
    free(reply);
    char *other = tu_printf("%s/other-ca.pem", dir);
    assert_int_equal(mockpd_http(m, "POST", "/v2/enqueue", body, other, 0, NULL),
                     -(int)CURLE_PEER_FAILED_VERIFICATION);
    free(other);
    free(body);
    /* control endpoints on the same TLS port; the rejected request never arrived */
    assert_int_equal(mockpd_wait_accepted(m, 1, 1000), 0);
    assert_int_equal(mockpd_stat(m, "requests"), 1);
    mockpd_stop(m);

    /* certificates made on the fly and removed at stop */
    o.certs_dir = NULL;
    m = mockpd_start(&o);
    assert_non_null(m);
    assert_non_null(mockpd_ca_file(m));
    assert_int_equal(post_trigger(m, KEY, "tls2", "s"), 202);
    mockpd_stop(m);
    tu_rmrf(dir);
    free(dir);
}

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    (void)userp;
    return size * nmemb;
}

#define N_PARALLEL 300
#define N_KEEPALIVE 200

static void test_concurrency(void **state)
{
    (void)state;
    mockpd *m = start_with(-1, 0, 0);
    char *url = tu_printf("%s/v2/enqueue", mockpd_url(m));
    char *body = trigger(KEY, "many", "s");
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");

    /* N_PARALLEL requests at once, each on its own connection */
    CURLM *multi = curl_multi_init();
    CURL *easy[N_PARALLEL];
    for (int i = 0; i < N_PARALLEL; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(easy[i], CURLOPT_NOPROXY, "*");
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, 60000L);
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = 1;
    while (running) {
        assert_int_equal(curl_multi_perform(multi, &running), CURLM_OK);
        if (running) assert_int_equal(curl_multi_poll(multi, NULL, 0, 1000, NULL), CURLM_OK);
    }
    int ok = 0;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left))) {
        long code = 0;
        if (msg->msg != CURLMSG_DONE || msg->data.result != CURLE_OK) continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        if (code == 202) ok++;
    }
    for (int i = 0; i < N_PARALLEL; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(multi);
    assert_int_equal(ok, N_PARALLEL);

    /* N_KEEPALIVE requests on one kept-alive connection */
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long connects = 0;
    for (int i = 0; i < N_KEEPALIVE; i++) {
        long n = 0, code = 0;
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        assert_int_equal(code, 202);
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &n);
        connects += n;
    }
    curl_easy_cleanup(c);
    assert_int_equal(connects, 1);

    assert_int_equal(mockpd_wait_accepted(m, N_PARALLEL + N_KEEPALIVE, 5000), 0);
    assert_int_equal(mockpd_stat(m, "requests"), N_PARALLEL + N_KEEPALIVE);
    cJSON *ev = mockpd_events(m);
    assert_int_equal(cJSON_GetArraySize(ev), N_PARALLEL + N_KEEPALIVE);
    cJSON_Delete(ev);
    curl_slist_free_all(hdrs);
    free(body);
    free(url);
    mockpd_stop(m);
}

int main(void)
{
    mockpd_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_events),
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_validator_strict),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_fault_status),
        cmocka_unit_test(test_fault_reset),
        cmocka_unit_test(test_fault_slow_and_latency),
        cmocka_unit_test(test_fault_hang),
        cmocka_unit_test(test_wait),
        cmocka_unit_test(test_records_and_reset),
        cmocka_unit_test(test_restart_same_port),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_concurrency),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
