/*
** test_event.c — the PagerDuty event validator and its repairs (event.c) and
** the shared helpers of pdr.c (redaction, SHA-256, deterministic dedup keys).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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
    assert_true(has_error(&errs, "'payload.timestamp' is not a valid ISO 8601 timestamp"));
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
    free(c);
    /* a 4-byte character is never split */
    c = pdr_utf8_cut("ab\xf0\x9f\x94\xa5" "cd", 3, &chars, &nomem);
    assert_string_equal(c, "ab\xe2\x80\xa6");
    free(c);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_trigger_untouched),
        cmocka_unit_test(test_errors_like_pagerduty),
        cmocka_unit_test(test_trigger_gets_dedup_key),
        cmocka_unit_test(test_repairs),
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_change_event),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
