/*
** test_event.c — the PagerDuty event validator and its repairs (event.c):
** field rules, UTF-8 repair, duplicate members, NUL, the timestamp and URL
** formats, the parse that tells out-of-memory from a syntax error; and the
** shared helpers of pdr.c (redaction, SHA-256, deterministic dedup keys).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "testutil.h"

#define KEY "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"

static cJSON *parse(const char *json)
{
    cJSON *ev = cJSON_Parse(json);
    assert_non_null(ev);
    return ev;
}

static int has_error(const pdr_event_errors *e, const char *msg)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->msgs[i], msg)) return 1;
    return 0;
}

static void test_valid_trigger_untouched(void **state)
{
    (void)state;
    const char *json = "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"d1\","
                       "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                       "\"timestamp\":\"2015-07-17T08:42:58.315+0000\",\"custom_details\":{\"a\":1}},"
                       "\"links\":[{\"href\":\"https://x\",\"text\":\"t\"}],\"images\":[{\"src\":\"https://i\"}]}";
    cJSON *ev = parse(json);
    pdr_repairs rep;
    pdr_event_errors errs;
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_OK);
    assert_int_equal(errs.n, 0);
    assert_int_equal(rep.summary_chars, 0);
    assert_int_equal(rep.images_dropped, 0);
    assert_int_equal(rep.dedup_key_generated, 0);
    assert_int_equal(pdr_event_action(ev, PDR_EVENT_ALERT), PDR_ACTION_TRIGGER);
    char *out = cJSON_PrintUnformatted(ev);
    assert_string_equal(out, json);
    cJSON_free(out);
    cJSON_Delete(ev);
}

static void test_errors_like_pagerduty(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    cJSON *ev = parse("{\"routing_key\":\"short\",\"event_action\":\"page\"}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_ERR_INVALID);
    assert_true(has_error(&errs, "'routing_key' is invalid: it must be 32 characters long"));
    assert_true(has_error(&errs, "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)"));
    cJSON_Delete(ev);

    ev = parse("{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\"}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_ERR_INVALID);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "'dedup_key' is missing or blank (required for resolve)");
    cJSON_Delete(ev);

    ev = parse("{\"event_action\":\"trigger\",\"payload\":{\"summary\":\" \",\"source\":5,\"severity\":\"high\","
               "\"timestamp\":\"yesterday\"},\"links\":[{\"text\":\"x\"}]}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_ERR_INVALID);
    assert_true(has_error(&errs, "'routing_key' is missing or blank"));
    assert_true(has_error(&errs, "'payload.summary' is missing or blank"));
    assert_true(has_error(&errs, "'payload.source' must be a string"));
    assert_true(has_error(&errs, "'payload.severity' is invalid (must be one of: critical, error, warning, info)"));
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "timestamp"));   /* dropped */
    assert_true(has_error(&errs, "'links[0].href' is missing or blank"));
    cJSON_Delete(ev);

    ev = parse("{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\"}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_ERR_INVALID);
    assert_true(has_error(&errs, "'payload' is missing or blank"));
    cJSON_Delete(ev);

    ev = parse("[1,2]");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_ERR_INVALID);
    assert_string_equal(errs.msgs[0], "Event object must be a JSON object");
    cJSON_Delete(ev);
}

static void test_trigger_gets_dedup_key(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    cJSON *ev = parse("{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\","
                      "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"error\"}}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_OK);
    assert_int_equal(rep.dedup_key_generated, 1);
    const cJSON *dk = cJSON_GetObjectItem(ev, "dedup_key");
    assert_true(cJSON_IsString(dk));
    assert_int_equal(strlen(dk->valuestring), 36);
    assert_int_equal(dk->valuestring[14], '4'); /* UUID v4 */
    char first[37];
    strcpy(first, dk->valuestring);
    cJSON_Delete(ev);
    char other[37];
    assert_int_equal(pdr_event_random_key(other), PDR_OK);
    assert_string_not_equal(first, other);
}

static void test_repairs(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    char *summary = malloc(1101);
    memset(summary, 'x', 1100);
    summary[1100] = '\0';
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "routing_key", KEY);
    cJSON_AddStringToObject(ev, "event_action", "trigger");
    cJSON_AddStringToObject(ev, "dedup_key", "d");
    cJSON *p = cJSON_AddObjectToObject(ev, "payload");
    cJSON_AddStringToObject(p, "summary", summary);
    cJSON_AddStringToObject(p, "source", "h");
    cJSON_AddStringToObject(p, "severity", "critical");
    cJSON *d = cJSON_AddObjectToObject(p, "custom_details");
    char *big = malloc(400 * 1024 + 1);
    memset(big, 'b', 400 * 1024);
    big[400 * 1024] = '\0';
    cJSON_AddStringToObject(d, "log1", big);
    cJSON_AddStringToObject(d, "log2", big);
    cJSON_AddStringToObject(d, "small", "kept");
    cJSON *images = cJSON_AddArrayToObject(ev, "images");
    cJSON *im = cJSON_CreateObject();
    cJSON_AddStringToObject(im, "src", "http://plain/x.png");
    cJSON_AddItemToArray(images, im);
    im = cJSON_CreateObject();
    cJSON_AddStringToObject(im, "src", "https://tls/x.png");
    cJSON_AddItemToArray(images, im);

    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_OK);
    assert_int_equal(rep.summary_chars, 1100);
    assert_int_equal(rep.images_dropped, 1);
    assert_int_equal(rep.details_shrunk, 1);
    const char *s = cJSON_GetObjectItem(p, "summary")->valuestring;
    assert_int_equal(strlen(s), 1023 + 3);
    assert_string_equal(s + 1023, "\xe2\x80\xa6");
    assert_int_equal(cJSON_GetArraySize(images), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(images, 0), "src")->valuestring, "https://tls/x.png");
    assert_string_equal(cJSON_GetObjectItem(d, "small")->valuestring, "kept");
    assert_true(tu_contains(cJSON_GetObjectItem(d, "log1")->valuestring, "bytes removed to fit"));
    assert_int_equal(strlen(cJSON_GetObjectItem(d, "log2")->valuestring), 400 * 1024);
    char *out = cJSON_PrintUnformatted(ev);
    assert_true(strlen(out) <= PDR_EVENT_MAX_BYTES);
    cJSON_free(out);
    cJSON_Delete(ev);
    free(big);
    free(summary);
}

static void test_utf8_cut(void **state)
{
    (void)state;
    size_t chars;
    int nomem;
    assert_null(pdr_utf8_cut("h\xc3\xa9llo", 5, &chars, &nomem));
    assert_int_equal(chars, 5);
    char *c = pdr_utf8_cut("h\xc3\xa9llo", 4, &chars, &nomem);
    assert_string_equal(c, "h\xc3\xa9l\xe2\x80\xa6");
    assert_int_equal(chars, 5);
    cJSON_free(c);
    /* a 4-byte character is never split */
    c = pdr_utf8_cut("ab\xf0\x9f\x94\xa5" "cd", 3, &chars, &nomem);
    assert_string_equal(c, "ab\xe2\x80\xa6");
    cJSON_free(c);
}


/* Checks body (a PagerDuty alert event) and returns the event as printed. */
static char *checked(const char *json, pdr_rc want, pdr_repairs *rep, pdr_event_errors *errs)
{
    cJSON *ev = parse(json);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(pdr_event_check_text(ev, PDR_EVENT_ALERT, rep, errs, &text, &len), want);
    cJSON_Delete(ev);
    return text;
}

#define EV_HEAD "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
#define EV_PAYLOAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}"

static void test_utf8_repaired(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    /* a stray continuation byte, an overlong '/', an encoded surrogate
    ** (ED A0 80: three maximal subparts), a code point over U+10FFFF, a
    ** truncated sequence; a valid 4-byte character stays */
    char *out = checked(EV_HEAD "\"payload\":{\"summary\":\"a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xf4\x90\x80\x80"
                        "e\xe2\x82" "f\xf0\x9f\x94\xa5\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"k\xff\":\"v\"}}}",
                        PDR_OK, &rep, &errs);
    assert_non_null(out);
    assert_true(tu_contains(out, "\"summary\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                 "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "e\xef\xbf\xbd" "f\xf0\x9f\x94\xa5\""));
    assert_true(tu_contains(out, "\"k\xef\xbf\xbd\":\"v\""));
    assert_int_equal(rep.utf8_repaired, 1 + 2 + 3 + 4 + 1 + 1);
    assert_true(pdr_repairs_any(&rep));
    cJSON_free(out);
}

static void test_duplicates_refused(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    assert_null(checked("{\"routing_key\":\"" KEY "\",\"routing_key\":\"R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12\","
                        "\"event_action\":\"trigger\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"," EV_PAYLOAD "}",
                        PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "duplicate member \"routing_key\" in the event"));
    assert_true(has_error(&errs, "duplicate member \"event_action\" in the event"));
    assert_null(checked(EV_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"x\":1,\"a\":[{\"y\":1,\"y\":2}],\"x\":2}}}",
                        PDR_ERR_INVALID, &rep, &errs));
    assert_int_equal(errs.n, 2);
    assert_true(has_error(&errs, "duplicate member \"payload.custom_details.x\" in the event"));
    assert_true(has_error(&errs, "duplicate member \"payload.custom_details.a[0].y\" in the event"));
    /* names that collide once repaired: both become "k\uFFFD" */
    assert_null(checked(EV_HEAD EV_PAYLOAD ",\"k\xff\":1,\"k\xfe\":2}", PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "duplicate member \"k\xef\xbf\xbd\" in the event"));
}

/* A duplicate deep inside long multi-byte names: the message's path is cut
** to fit, on a character boundary, so the 400 body stays valid UTF-8. */
static void test_duplicate_deep_path(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    char body[8192], *p = body;
    size_t left = sizeof body;
    int w = snprintf(p, left, "%s\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                              "\"custom_details\":", EV_HEAD);
    p += w;
    left -= (size_t)w;
    for (int i = 0; i < 40; i++) {   /* 40 levels of a 7-character, 13-byte name */
        w = snprintf(p, left, "{\"\xc3\xa9t\xc3\xa9\xe2\x82\xac%02d\":", i);
        p += w;
        left -= (size_t)w;
    }
    w = snprintf(p, left, "{\"z\":1,\"z\":2}");
    p += w;
    left -= (size_t)w;
    for (int i = 0; i < 40 + 2; i++) *p++ = '}';
    *p = '\0';
    assert_null(checked(body, PDR_ERR_INVALID, &rep, &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "duplicate member \"payload.custom_details.\xc3\xa9t\xc3\xa9"));
    for (const char *q = errs.msgs[0]; *q;) {
        uint32_t cp;
        size_t k = pdr_utf8_next(q, strlen(q), &cp);
        assert_true(cp != PDR_UTF8_INVALID);
        q += k;
    }
}

static void test_routing_key_format(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    assert_null(checked("{\"routing_key\":\"" KEY "x\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
                        PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "'routing_key' is invalid: it must be 32 characters long"));
    assert_null(checked("{\"routing_key\":\"R0aaaaaaaaaaaaaaaaaaaaaaaaaa-b12\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
                        PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "'routing_key' is invalid: it must be letters and digits only (an integration key)"));
}

static void test_dedup_key_characters(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    /* 255 two-byte characters (510 bytes) are fine; 256 are not */
    char key[2 * 256 + 1], json[1024];
    for (int i = 0; i < 256; i++) memcpy(key + 2 * i, "\xc3\xa9", 2);
    key[2 * 255] = '\0';
    snprintf(json, sizeof json, "{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"%s\"}", key);
    char *out = checked(json, PDR_OK, &rep, &errs);
    assert_true(tu_contains(out, key));
    cJSON_free(out);
    key[2 * 255] = '\xc3';
    key[2 * 256] = '\0';
    snprintf(json, sizeof json, "{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"%s\"}", key);
    assert_null(checked(json, PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "'dedup_key' is too long (at most 255 characters)"));
    /* blank is absent: a resolve needs one, a trigger gets one */
    assert_null(checked("{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"  \"}",
                        PDR_ERR_INVALID, &rep, &errs));
    out = checked("{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\" \"," EV_PAYLOAD "}",
                  PDR_OK, &rep, &errs);
    assert_int_equal(rep.dedup_key_generated, 1);
    assert_false(tu_contains(out, "\"dedup_key\":\" \""));
    cJSON_free(out);
}

static void test_timestamp_format(void **state)
{
    (void)state;
    static const char *const good[] = {
        "2015-07-17T08:42:58.315+0000", "2015-07-17T08:42:58Z", "2015-07-17T08:42:58.315+00:00",
        "2015-07-17T08:42:58", "2016-02-29T23:59:60-05:30", "2000-02-29T00:00:00Z", "2015-12-31T00:00:00.1Z"};
    static const char *const bad[] = {
        "2015-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2015-13-01T00:00:00Z", "2015-00-10T00:00:00Z",
        "2015-04-31T00:00:00Z", "2015-07-17T24:00:00Z", "2015-07-17T08:60:00Z", "2015-07-17T08:42:61Z",
        "2015-07-17T08:42:58+2400", "2015-07-17T08:42:58+00:60", "2015-07-17T08:42:58.Z", "2015-07-17 08:42:58Z",
        "2015-07-17T08:42:58Zx", "2015-07-17", "yesterday", "", "2015-7-17T08:42:58Z", "2015-07-17T08:42:58+0"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        if (!pdr_timestamp_valid(good[i])) fail_msg("refused %s", good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (pdr_timestamp_valid(bad[i])) fail_msg("took %s", bad[i]);
    }
    pdr_repairs rep;
    pdr_event_errors errs;
    char *out = checked(EV_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"timestamp\":\"2015-02-30T00:00:00Z\"}}", PDR_OK, &rep, &errs);
    assert_int_equal(rep.timestamp_dropped, 1);
    assert_false(tu_contains(out, "timestamp"));
    cJSON_free(out);
    assert_null(checked(EV_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"timestamp\":7}}", PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "'payload.timestamp' must be a string"));
}

/* Numbers a double cannot carry as written are sent changed: counted. */
static void test_numbers_changed(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    char *out = checked(EV_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"id\":1234567890123456789,\"m\":1e999,\"ok\":42,\"f\":1.5}}}",
                        PDR_OK, &rep, &errs);
    assert_int_equal(rep.numbers_changed, 2);
    assert_true(pdr_repairs_any(&rep));
    free(out);
    out = checked(EV_HEAD EV_PAYLOAD "}", PDR_OK, &rep, &errs);
    assert_int_equal(rep.numbers_changed, 0);
    free(out);
}

static void test_urls(void **state)
{
    (void)state;
    static const char *const good[] = {"http://h", "HTTPS://h.example/x?y#z", "https://u:p@h:8080/", "http://[::1]/"};
    static const char *const bad[] = {"javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "ftp://h/",
                                      "https://", "https:///x", "http:h", "https://@/", "https://:80/", " https://h",
                                      ""};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!pdr_url_http(good[i])) fail_msg("refused %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (pdr_url_http(bad[i])) fail_msg("took %s", bad[i]);

    pdr_repairs rep;
    pdr_event_errors errs;
    char *out = checked(EV_HEAD EV_PAYLOAD ",\"client_url\":\"javascript:alert(1)\","
                        "\"links\":[{\"href\":\"javascript:alert(1)\",\"text\":\"x\"},{\"href\":\"https://ok\"},"
                        "{\"href\":\"JAVASCRIPT:x\"}],"
                        "\"images\":[{\"src\":\"data:image/png;base64,AA\"},{\"src\":\"HTTPS://img/x.png\",\"href\":\"file:///x\"}]}",
                        PDR_OK, &rep, &errs);
    assert_int_equal(rep.urls_dropped, 4);   /* two links, an image href, client_url */
    assert_int_equal(rep.images_dropped, 1);
    assert_true(tu_contains(out, "\"links\":[{\"href\":\"https://ok\"}]"));
    assert_true(tu_contains(out, "\"images\":[{\"src\":\"HTTPS://img/x.png\"}]"));
    assert_false(tu_contains(out, "client_url"));
    assert_false(tu_contains(out, "javascript"));
    cJSON_free(out);
    assert_null(checked(EV_HEAD EV_PAYLOAD ",\"links\":[{\"href\":5}],\"client_url\":[]}", PDR_ERR_INVALID, &rep, &errs));
    assert_true(has_error(&errs, "'links[0].href' must be a string"));
    assert_true(has_error(&errs, "'client_url' must be a string"));
}

/* pdr_json_parse: NUL found on the raw bytes and named; syntax errors. */
static void test_parse_nul(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t len;
        const char *err;
    } cases[] = {
        {"{\"a\":\"x\\u0000y\"}", 0, "'a' holds the NUL character (\\u0000), which PagerDuty refuses"},
        {"{\"a\":{\"b\":[\"ok\",\"\\u0000\"]}}", 0, "'a.b[1]' holds the NUL character (\\u0000), which PagerDuty refuses"},
        {"{\"a\\u0000\":1}", 0, "the member name 'a\xef\xbf\xbf' holds the NUL character (\\u0000), which PagerDuty refuses"},
        {"{\"a\":\"\\\\\\u0000\"}", 0, "'a' holds the NUL character (\\u0000), which PagerDuty refuses"},
        {"{\"a\":\"x\0y\"}", 11, "'a' holds the NUL character (\\u0000), which PagerDuty refuses"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *root;
        int nul;
        size_t n = 0;
        pdr_event_errors errs = {.n = 0};
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].body);
        assert_int_equal(pdr_json_parse(cases[i].body, len, &root, &nul), PDR_OK);
        assert_int_equal(nul, 1);
        assert_int_equal(pdr_json_sanitize(root, "event", nul, &n, &errs), PDR_ERR_INVALID);
        if (!has_error(&errs, cases[i].err)) fail_msg("case %zu: %s", i, errs.n ? errs.msgs[0] : "no error");
        cJSON_Delete(root);
    }
    /* an escaped backslash before u0000 is text, not NUL */
    cJSON *root;
    int nul;
    const char *escaped = "{\"a\":\"\\\\u0000\"}";
    assert_int_equal(pdr_json_parse(escaped, strlen(escaped), &root, &nul), PDR_OK);
    assert_int_equal(nul, 0);
    assert_string_equal(cJSON_GetObjectItem(root, "a")->valuestring, "\\u0000");
    cJSON_Delete(root);
    assert_int_equal(pdr_json_parse("{\"a\":1} x", 9, &root, &nul), PDR_ERR_INVALID);
    assert_int_equal(pdr_json_parse("{\"a\":", 5, &root, &nul), PDR_ERR_INVALID);
    assert_null(root);
}

static long alloc_budget = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    return malloc(n);
}

/* Out of memory inside cJSON's parse (or the marking of a NUL, or the
** sanitizing walk) is NOMEM, not "not JSON" or "invalid". */
static void test_parse_nomem(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"a\":[1,2,{\"b\":\"c\"}],\"d\":\"e\"}",
        "{\"a\":\"x\\u0000\",\"b\":\"\xff\",\"c\":{\"1\":1,\"2\":2,\"3\":3,\"4\":4,\"5\":5,\"6\":6,\"7\":7,"
        "\"8\":8,\"9\":9,\"10\":10,\"11\":11,\"12\":12,\"13\":13,\"14\":14,\"15\":15,\"16\":16,\"17\":17}}",
    };
    cJSON_Hooks hooks = {failing_malloc, free};
    pdr_json_hooks_set(&hooks);
    for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++) {
        int ok = 0;
        for (long n = 0; n < 1000 && !ok; n++) {
            cJSON *root;
            int nul;
            size_t repaired = 0;
            pdr_event_errors errs = {.n = 0};
            alloc_budget = n;
            pdr_rc rc = pdr_json_parse(bodies[b], strlen(bodies[b]), &root, &nul);
            if (rc == PDR_OK) {
                rc = pdr_json_sanitize(root, "event", nul, &repaired, &errs);
                cJSON_Delete(root);
                /* the second body holds NUL: refused once memory suffices */
                if (rc == (b ? PDR_ERR_INVALID : PDR_OK)) ok = 1;
            }
            alloc_budget = -1;
            if (!ok) assert_int_equal(rc, PDR_ERR_NOMEM);
        }
        assert_true(ok);
    }
    pdr_json_hooks_set(NULL);
}

static void test_change_event(void **state)
{
    (void)state;
    pdr_repairs rep;
    pdr_event_errors errs;
    cJSON *ev = parse("{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"deployed\"}}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_CHANGE, &rep, &errs), PDR_OK);
    assert_int_equal(pdr_event_action(ev, PDR_EVENT_CHANGE), PDR_ACTION_CHANGE);
    assert_null(cJSON_GetObjectItem(ev, "dedup_key"));
    cJSON_Delete(ev);
    ev = parse("{\"routing_key\":\"" KEY "\",\"payload\":{}}");
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_CHANGE, &rep, &errs), PDR_ERR_INVALID);
    assert_true(has_error(&errs, "'payload.summary' is missing or blank"));
    cJSON_Delete(ev);
}

static void test_helpers(void **state)
{
    (void)state;
    char red[16];
    assert_string_equal(pdr_redact(KEY, red, sizeof red), "R0\xe2\x80\xa6" "ab12");
    assert_string_equal(pdr_redact("short", red, sizeof red), "\xe2\x80\xa6");
    assert_string_equal(pdr_redact(NULL, red, sizeof red), "\xe2\x80\xa6");
    /* A key quoted by an upstream's error text is redacted in it. */
    char text[256];
    snprintf(text, sizeof text, "HTTP 400: routing key %s is not valid; %s again", KEY, KEY);
    assert_int_equal(pdr_redact_in(text, KEY), 2);
    assert_string_equal(text, "HTTP 400: routing key R0\xe2\x80\xa6" "ab12 is not valid; R0\xe2\x80\xa6" "ab12 again");
    assert_int_equal(pdr_redact_in(text, KEY), 0);
    /* A password in a URL is not shown. */
    assert_string_equal(pdr_url_redact("http://user:S3cret@proxy:3128", text, sizeof text),
                        "http://user:\xe2\x80\xa6@proxy:3128");
    assert_string_equal(pdr_url_redact("https://events.pagerduty.com", text, sizeof text),
                        "https://events.pagerduty.com");
    assert_string_equal(pdr_url_redact("https://host/a:b@c", text, sizeof text), "https://host/a:b@c");
    /* in every entry of a list ([pagerduty] url, proxy) */
    assert_string_equal(pdr_url_list_redact("https://u:S3cret@a,-,http://v:T0p@b:1/x", text, sizeof text),
                        "https://u:\xe2\x80\xa6@a,-,http://v:\xe2\x80\xa6@b:1/x");
    assert_string_equal(pdr_url_list_redact("http://user:S3cret@proxy:3128", text, sizeof text),
                        "http://user:\xe2\x80\xa6@proxy:3128");
    char hex[PDR_SHA256_HEX_LEN];
    assert_int_equal(pdr_sha256_hex("abc", 3, hex), PDR_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(pdr_dedup_key_derive(KEY, "fp1", hex), PDR_OK);
    assert_string_equal(hex, "46db557b61695788136fdd3b6a1474b52fd0ea1a93082cfd9b99363a884e3f5d");
    assert_int_equal(pdr_action_parse("acknowledge"), PDR_ACTION_ACKNOWLEDGE);
    assert_int_equal(pdr_action_parse("page"), 0);
    assert_string_equal(pdr_action_name(PDR_ACTION_RESOLVE), "resolve");
    assert_string_equal(pdr_strerror(PDR_ERR_FULL), "outbox is full");
}

/* pdr_timestamp_parse_ms: every form pdr_timestamp_valid() takes, to the ms. */
static void test_timestamp_parse_ms(void **state)
{
    static const struct { const char *s; int64_t ms; } good[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"2026-11-27T12:34:56.789Z", INT64_C(1795782896789)},
        {"2026-11-27T12:34:56.7899999Z", INT64_C(1795782896789)},   /* cut to ms, not rounded */
        {"2026-11-27T12:34:56.7Z", INT64_C(1795782896700)},
        {"2024-03-05T10:00:00+01:00", INT64_C(1709629200000)},
        {"2024-03-05T10:00:00+0100", INT64_C(1709629200000)},
        {"2024-03-05T07:30:00-01:30", INT64_C(1709629200000)},
        {"2024-03-05T09:00:00-0000", INT64_C(1709629200000)},
        {"2024-03-05T09:00:00", INT64_C(1709629200000)},             /* no offset: taken as UTC */
        {"2024-02-29T00:00:00Z", INT64_C(1709164800000)},           /* leap day */
        {"2016-12-31T23:59:60Z", INT64_C(1483228800000)},           /* leap second: the next minute */
        {"1969-12-31T23:59:59.500Z", -500},
        {"0001-01-01T00:00:00Z", INT64_C(-62135596800000)},         /* Go's zero time */
        {"9999-12-31T23:59:59.999Z", INT64_C(253402300799999)},
    };
    static const char *const bad[] = {
        "", "2024-03-05", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
        "2024-03-05T24:00:00Z", "2024-03-05T10:00:00.Z", "2024-03-05 10:00:00Z", "2024-03-05T10:00:00+1",
        "2024-03-05T10:00:00Zx", "0000-01-01T00:00:00Z", "yesterday",
    };
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = 7;
        if (pdr_timestamp_parse_ms(good[i].s, &ms) != PDR_OK) print_message("refused: %s\n", good[i].s);
        assert_int_equal(pdr_timestamp_parse_ms(good[i].s, &ms), PDR_OK);
        if (ms != good[i].ms) print_message("%s\n", good[i].s);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 7;
        if (pdr_timestamp_parse_ms(bad[i], &ms) != PDR_ERR_INVALID) print_message("taken: %s\n", bad[i]);
        assert_int_equal(pdr_timestamp_parse_ms(bad[i], &ms), PDR_ERR_INVALID);
        assert_int_equal(ms, 7);
    }
    int64_t ms;
    assert_int_equal(pdr_timestamp_parse_ms(NULL, &ms), PDR_ERR_INVALID);
    assert_int_equal(pdr_timestamp_parse_ms("1970-01-01T00:00:00Z", NULL), PDR_ERR_INVALID);
}

/* pdr_timestamp_format: ISO 8601 UTC with ms, valid, and parsed back. */
static void test_timestamp_format_ms(void **state)
{
    static const struct { int64_t ms; const char *s; } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {INT64_C(1795782896789), "2026-11-27T12:34:56.789Z"},
        {INT64_C(1709164800000), "2024-02-29T00:00:00.000Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {INT64_C(-62135596800000), "0001-01-01T00:00:00.000Z"},
        {INT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
    };
    char buf[PDR_TIMESTAMP_SIZE];
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t back = 0;
        assert_ptr_equal(pdr_timestamp_format(cases[i].ms, buf), buf);
        assert_string_equal(buf, cases[i].s);
        assert_true(pdr_timestamp_valid(buf));
        assert_int_equal(pdr_timestamp_parse_ms(buf, &back), PDR_OK);
        assert_int_equal(back, cases[i].ms);
    }
    /* outside years 0..9999: clamped, still 24 characters */
    assert_string_equal(pdr_timestamp_format(INT64_MAX, buf), "9999-12-31T23:59:59.999Z");
    assert_string_equal(pdr_timestamp_format(INT64_MIN, buf), "0000-01-01T00:00:00.000Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_trigger_untouched),
        cmocka_unit_test(test_errors_like_pagerduty),
        cmocka_unit_test(test_trigger_gets_dedup_key),
        cmocka_unit_test(test_repairs),
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_utf8_repaired),
        cmocka_unit_test(test_duplicates_refused),
        cmocka_unit_test(test_duplicate_deep_path),
        cmocka_unit_test(test_routing_key_format),
        cmocka_unit_test(test_dedup_key_characters),
        cmocka_unit_test(test_timestamp_format),
        cmocka_unit_test(test_timestamp_parse_ms),
        cmocka_unit_test(test_timestamp_format_ms),
        cmocka_unit_test(test_numbers_changed),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_parse_nul),
        cmocka_unit_test(test_parse_nomem),
        cmocka_unit_test(test_change_event),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
