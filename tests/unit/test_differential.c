/*
** test_differential.c — "what is validated is what is sent": pdrelay's ingest
** parsers (normalize.c, event.c) against the mock PagerDuty's validator
** (tests/mock/mockpd_validate.c, written apart from them).
**
** The property, for every body: when a parser takes it (PDR_OK), each event
** it makes has a body the mock validator accepts, and the routing_key,
** event_action, dedup_key and severity the mock reads from that body are the
** ones the parser reported (normalize_event) — the event arrives meaning exactly
** what was validated. A body the parser refuses must carry its reasons;
** running out of memory is never the answer here.
**
** The bodies: the hostile cases (duplicate members at any depth, NUL, invalid
** UTF-8, overlong forms, bad keys, URLs, timestamps, lengths), each with its
** exact expected outcome; then thousands of mutants of valid bodies of every
** model from a fixed-seed generator (byte edits and tree edits that insert
** hostile values and duplicate members), so a run is the same every time and
** takes a few seconds.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mockpd_diff.h"
#include "normalize_config.h"
#include "normalize.h"
#include "testutil.h"

#define MUTANTS 20000

/* ---- the property --------------------------------------------------------- */

typedef enum parser { P_PD_ALERT, P_PD_CHANGE, P_AM, P_ALERTS, P_COUNT } parser;

static const char *const parser_names[] = {"normalize_pagerduty(alert)", "normalize_pagerduty(change)", "normalize_alertmanager",
                                           "normalize_alerts"};

static pdr_rc run(parser p, const char *body, size_t len, normalize_result *r)
{
    switch (p) {
    case P_PD_ALERT: return normalize_pagerduty(body, len, PDR_EVENT_ALERT, r);
    case P_PD_CHANGE: return normalize_pagerduty(body, len, PDR_EVENT_CHANGE, r);
    case P_AM: return normalize_alertmanager(body, len, cfg, r);
    default: return normalize_alerts(body, len, cfg, r);
    }
}

/* Runs body through parser p and checks the property; returns the rc. */
static pdr_rc check_len(parser p, const char *body, size_t len, normalize_result *r)
{
    char why[4096];
    pdr_rc rc = run(p, body, len, r);
    if (rc == PDR_OK) {
        for (size_t i = 0; i < r->n; i++) {
            if (mockpd_diff_event(&r->evs[i], why, sizeof why))
                fail_msg("%s took a body: %s\n  body: %s", parser_names[p], why, body);
        }
    } else if (rc == PDR_ERR_INVALID) {
        if (!r->errs.n) fail_msg("%s refused without a reason: %s", parser_names[p], body);
        if (r->n) fail_msg("%s refused but left events", parser_names[p]);
    } else {
        fail_msg("%s returned %s for %s", parser_names[p], pdr_strerror(rc), body);
    }
    if ((p == P_PD_ALERT || p == P_PD_CHANGE) && mockpd_diff_native(body, len, p == P_PD_CHANGE, rc, r, why, sizeof why))
        fail_msg("%s: %s\n  body: %s", parser_names[p], why, body);
    return rc;
}

static pdr_rc check(parser p, const char *body, normalize_result *r)
{
    return check_len(p, body, strlen(body), r);
}

static int has_error(const normalize_result *r, const char *msg)
{
    for (size_t i = 0; i < r->errs.n; i++)
        if (!strcmp(r->errs.msgs[i], msg)) return 1;
    return 0;
}

/* body through p must be refused with msg among the reasons. */
static void refused(parser p, const char *body, const char *msg)
{
    normalize_result r;
    pdr_rc rc = check(p, body, &r);
    if (rc != PDR_ERR_INVALID || !has_error(&r, msg))
        fail_msg("%s: want refusal \"%s\", got %s (%s)\n  body: %s", parser_names[p], msg, pdr_strerror(rc),
                 r.errs.n ? r.errs.msgs[0] : "-", body);
    normalize_result_cleanup(&r);
}

/* body through p must be taken; returns the first event's body (malloc'd)
** and its repairs. */
static char *taken(parser p, const char *body, pdr_repairs *rep)
{
    normalize_result r;
    pdr_rc rc = check(p, body, &r);
    if (rc != PDR_OK || !r.n)
        fail_msg("%s: want it taken, got %s (%s)\n  body: %s", parser_names[p], pdr_strerror(rc),
                 r.errs.n ? r.errs.msgs[0] : "-", body);
    char *out = tu_printf("%s", r.evs[0].body);
    *rep = r.evs[0].rep;
    normalize_result_cleanup(&r);
    return out;
}

/* ---- the hostile cases -------------------------------------------------- */

#define K1 "K1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define K2 "K2bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define PAYLOAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}"
#define TRIGGER "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","

static void test_duplicates(void **state)
{
    (void)state;
    /* The example: queued under K1 as a trigger, it reached
    ** PagerDuty as a resolve for K2. */
    const char *k1k2 = "{\"routing_key\":\"" K1 "\",\"routing_key\":\"" K2 "\",\"event_action\":\"trigger\","
                       "\"event_action\":\"resolve\",\"dedup_key\":\"d\"," PAYLOAD "}";
    refused(P_PD_ALERT, k1k2, "duplicate member \"routing_key\" in the event");
    refused(P_PD_ALERT, k1k2, "duplicate member \"event_action\" in the event");
    refused(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                               "\"severity\":\"critical\"}}",
            "duplicate member \"payload.severity\" in the event");
    refused(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                               "\"custom_details\":{\"x\":{\"y\":[1,{\"z\":1,\"z\":2}]}}}}",
            "duplicate member \"payload.custom_details.x.y[1].z\" in the event");
    refused(P_PD_CHANGE, "{\"routing_key\":\"" KEY_A "\",\"payload\":{\"summary\":\"a\",\"summary\":\"b\"}}",
            "duplicate member \"payload.summary\" in the event");
    refused(P_AM, "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"prod\",\"env\":\"dev\"}}]}",
            "duplicate member \"alerts[0].labels.env\" in the body");
    refused(P_AM, "{\"alerts\":[{\"status\":\"firing\",\"status\":\"resolved\",\"labels\":{\"env\":\"prod\"}}]}",
            "duplicate member \"alerts[0].status\" in the body");
    refused(P_ALERTS, "[{\"alert_name\":\"A\",\"status\":\"firing\",\"labels\":{\"team\":\"db\"},"
                      "\"annotations\":{\"summary\":\"a\",\"summary\":\"b\"}}]",
            "duplicate member \"[0].annotations.summary\" in the body");
    refused(P_ALERTS, "{\"alert_name\":\"A\",\"alert_name\":\"B\",\"status\":\"firing\"}",
            "duplicate member \"alert_name\" in the body");
    /* the same name in different objects is no duplicate */
    pdr_repairs rep;
    free(taken(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                                  "\"custom_details\":{\"summary\":1,\"a\":{\"summary\":2}}}}", &rep));
}

static void test_nul(void **state)
{
    (void)state;
    refused(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\\u0000hidden\",\"source\":\"h\",\"severity\":\"info\"}}",
            "'payload.summary' holds the NUL character (\\u0000), which PagerDuty refuses");
    refused(P_PD_ALERT, "{\"routing_key\":\"" KEY_A "\\u0000x\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
            "'routing_key' holds the NUL character (\\u0000), which PagerDuty refuses");
    refused(P_AM, "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"prod\\u0000\"}}]}",
            "'alerts[0].labels.env' holds the NUL character (\\u0000), which PagerDuty refuses");
    refused(P_ALERTS, "{\"alert_name\":\"A\\u0000B\",\"status\":\"firing\",\"labels\":{\"env\":\"prod\"}}",
            "'alert_name' holds the NUL character (\\u0000), which PagerDuty refuses");
    /* a raw NUL byte inside a string */
    static const char raw[] = "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"resolve\",\"dedup_key\":\"d\0x\"}";
    normalize_result r;
    assert_int_equal(check_len(P_PD_ALERT, raw, sizeof raw - 1, &r), PDR_ERR_INVALID);
    assert_true(has_error(&r, "'dedup_key' holds the NUL character (\\u0000), which PagerDuty refuses"));
    normalize_result_cleanup(&r);
}

static void test_utf8(void **state)
{
    (void)state;
    pdr_repairs rep;
    /* a stray byte, an overlong '/', an encoded surrogate, a code point
    ** over U+10FFFF: each maximal invalid part becomes one U+FFFD */
    char *out = taken(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"a\xff" "b\xc0\xaf" "c\xed\xa0\x80" "d\xf4\x90\x80\x80\","
                                        "\"source\":\"h\",\"severity\":\"info\",\"custom_details\":{\"n\xfe\":\"v\"}}}", &rep);
    assert_true(tu_contains(out, "\"summary\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                 "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
    assert_true(tu_contains(out, "\"n\xef\xbf\xbd\":\"v\""));
    assert_int_equal(rep.utf8_repaired, 1 + 2 + 3 + 4 + 1);
    free(out);
    /* in an Alertmanager label: repaired before routing, counted per event */
    out = taken(P_AM, "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"prod\",\"alertname\":\"Disk\xe2\x82\"}}]}", &rep);
    assert_true(tu_contains(out, "\"summary\":\"[WARNING] Disk\xef\xbf\xbd\""));
    assert_int_equal(rep.utf8_repaired, 1);
    free(out);
    /* invalid severity bytes are not an enum after repair */
    refused(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\xff\"}}",
            "'payload.severity' is invalid (must be one of: critical, error, warning, info)");
    /* two names that become the same once repaired */
    refused(P_PD_ALERT, TRIGGER PAYLOAD ",\"x\xff\":1,\"x\xfe\":2}", "duplicate member \"x\xef\xbf\xbd\" in the event");
}

static void test_formats(void **state)
{
    (void)state;
    pdr_repairs rep;
    refused(P_PD_ALERT, "{\"routing_key\":\"" KEY_A "x\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
            "'routing_key' is invalid: it must be 32 characters long");
    refused(P_PD_ALERT, "{\"routing_key\":\"A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p/\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
            "'routing_key' is invalid: it must be letters and digits only (an integration key)");
    /* 32 characters but 33 bytes is not a key either */
    refused(P_PD_ALERT, "{\"routing_key\":\"A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p\xc3\xa9\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}",
            "'routing_key' is invalid: it must be 32 characters long");
    refused(P_PD_ALERT, "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"Resolve\",\"dedup_key\":\"d\"}",
            "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)");
    refused(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"Info\"}}",
            "'payload.severity' is invalid (must be one of: critical, error, warning, info)");
    refused(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\",\"class\":[1]}}",
            "'payload.class' must be a string");

    char *out = taken(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                                        "\"timestamp\":\"2015-07-17T25:42:58Z\"}}", &rep);
    assert_int_equal(rep.timestamp_dropped, 1);
    assert_false(tu_contains(out, "timestamp"));
    free(out);
    out = taken(P_PD_ALERT, TRIGGER "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                                  "\"timestamp\":\"2016-02-29T08:42:58.315+00:00\"}}", &rep);
    assert_int_equal(rep.timestamp_dropped, 0);
    assert_true(tu_contains(out, "\"timestamp\":\"2016-02-29T08:42:58.315+00:00\""));
    free(out);

    out = taken(P_PD_ALERT, TRIGGER PAYLOAD ",\"links\":[{\"href\":\"javascript:alert(1)\",\"text\":\"x\"}],"
                                           "\"images\":[{\"src\":\"data:image/png;base64,AA\"},"
                                           "{\"src\":\"https://i/x.png\",\"href\":\"vbscript:x\"}],"
                                           "\"client_url\":\"file:///etc/passwd\"}", &rep);
    assert_int_equal(rep.urls_dropped, 3);
    assert_int_equal(rep.images_dropped, 1);
    assert_false(tu_contains(out, "javascript") || tu_contains(out, "data:") || tu_contains(out, "vbscript") ||
                 tu_contains(out, "file:"));
    assert_true(tu_contains(out, "\"images\":[{\"src\":\"https://i/x.png\"}]"));
    free(out);
    /* an annotation URL of an alert goes through the same rule */
    out = taken(P_AM, "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"prod\"},"
                      "\"annotations\":{\"runbook_url\":\"javascript:x\",\"snapshot_url\":\"data:x\"}}]}", &rep);
    assert_int_equal(rep.urls_dropped, 1);
    assert_int_equal(rep.images_dropped, 1);
    assert_false(tu_contains(out, "\"links\":[{"));
    free(out);
}

static void test_lengths(void **state)
{
    (void)state;
    pdr_repairs rep;
    /* summary: 1025 three-byte characters are cut to 1024, the last "…" */
    char *summary = malloc(1025 * 3 + 1), *body, *out;
    for (int i = 0; i < 1025; i++) memcpy(summary + 3 * i, "\xe2\x82\xac", 3);
    summary[1025 * 3] = '\0';
    body = tu_printf(TRIGGER "\"payload\":{\"summary\":\"%s\",\"source\":\"h\",\"severity\":\"info\"}}", summary);
    out = taken(P_PD_ALERT, body, &rep);
    assert_int_equal(rep.summary_chars, 1025);
    summary[1023 * 3] = '\0';
    char *want = tu_printf("\"summary\":\"%s\xe2\x80\xa6\"", summary);
    assert_true(tu_contains(out, want));
    free(want);
    free(out);
    free(body);
    /* exactly 1024: untouched */
    summary[1023 * 3] = '\xe2';
    summary[1024 * 3] = '\0';
    body = tu_printf(TRIGGER "\"payload\":{\"summary\":\"%s\",\"source\":\"h\",\"severity\":\"info\"}}", summary);
    out = taken(P_PD_ALERT, body, &rep);
    assert_int_equal(rep.summary_chars, 0);
    free(out);
    free(body);
    free(summary);

    /* dedup_key: 255 two-byte characters are fine, 256 ASCII ones are not */
    char dk[256 * 2 + 1];
    for (int i = 0; i < 255; i++) memcpy(dk + 2 * i, "\xc3\xa9", 2);
    dk[255 * 2] = '\0';
    body = tu_printf("{\"routing_key\":\"" KEY_A "\",\"event_action\":\"resolve\",\"dedup_key\":\"%s\"}", dk);
    normalize_result r;
    assert_int_equal(check(P_PD_ALERT, body, &r), PDR_OK);
    assert_string_equal(r.evs[0].dedup_key, dk);
    normalize_result_cleanup(&r);
    free(body);
    memset(dk, 'k', 256);
    dk[256] = '\0';
    body = tu_printf("{\"routing_key\":\"" KEY_A "\",\"event_action\":\"resolve\",\"dedup_key\":\"%s\"}", dk);
    refused(P_PD_ALERT, body, "'dedup_key' is too long (at most 255 characters)");
    free(body);
}

/* ---- mutants ------------------------------------------------------------ */

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const seeds[P_COUNT][3] = {
    {TRIGGER "\"payload\":{\"summary\":\"disk full\",\"source\":\"db1\",\"severity\":\"critical\","
             "\"timestamp\":\"2015-07-17T08:42:58.315+0000\",\"component\":\"pg\",\"group\":\"prod\",\"class\":\"disk\","
             "\"custom_details\":{\"free\":\"1%\",\"mounts\":[{\"path\":\"/\"}]}},"
             "\"links\":[{\"href\":\"https://runbook/x\",\"text\":\"Runbook\"}],"
             "\"images\":[{\"src\":\"https://img/x.png\",\"href\":\"https://img\",\"alt\":\"x\"}],"
             "\"client\":\"c\",\"client_url\":\"https://client\"}",
     "{\"routing_key\":\"" KEY_B "\",\"event_action\":\"resolve\",\"dedup_key\":\"abc\"}",
     "{\"routing_key\":\"" KEY_B "\",\"event_action\":\"trigger\",\"payload\":{\"summary\":\"s\",\"source\":\"h\","
     "\"severity\":\"warning\"}}"},
    {"{\"routing_key\":\"" KEY_A "\",\"payload\":{\"summary\":\"deployed v2\",\"source\":\"ci\","
     "\"timestamp\":\"2015-07-17T08:42:58Z\",\"custom_details\":{\"sha\":\"abc\"}},"
     "\"links\":[{\"href\":\"https://ci/1\",\"text\":\"build\"}]}",
     "{\"routing_key\":\"" KEY_B "\",\"payload\":{\"summary\":\"x\"}}",
     "{\"routing_key\":\"" KEY_A "\",\"payload\":{\"summary\":\"y\",\"source\":\"z\"},\"images\":[{\"src\":\"https://i\"}]}"},
    {"{\"version\":\"4\",\"groupKey\":\"g\",\"status\":\"firing\",\"receiver\":\"r\",\"externalURL\":\"https://am\","
     "\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"DiskFull\",\"env\":\"prod\",\"team\":\"db\","
     "\"severity\":\"critical\",\"instance\":\"db1\"},\"annotations\":{\"summary\":\"disk\",\"runbook_url\":\"https://rb\","
     "\"snapshot_url\":\"https://snap/x.png\"},\"startsAt\":\"2015-07-17T08:42:58Z\",\"generatorURL\":\"https://prom\","
     "\"fingerprint\":\"f1\"},{\"status\":\"resolved\",\"labels\":{\"env\":\"prod\"},\"fingerprint\":\"f2\"}]}",
     "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"env\":\"prod\",\"change_event\":\"true\"}}]}",
     "{\"alerts\":[{\"status\":\"firing\",\"labels\":{\"team\":\"storage\",\"severity\":\"noise\"}}]}"},
    {"[{\"alert_name\":\"DiskFull\",\"status\":\"firing\",\"labels\":{\"env\":\"prod\"},"
     "\"classification\":{\"severity\":\"noise\",\"reasoning\":\"flaps\"},\"starts_at\":\"2015-07-17T08:42:58Z\","
     "\"generator_url\":\"https://g\"},{\"alert_name\":\"B\",\"status\":\"silenced\",\"labels\":{\"team\":\"db\"}}]",
     "{\"alert_name\":\"A\",\"status\":\"acknowledged\",\"labels\":{\"env\":\"prod\"},\"fingerprint\":\"f\"}",
     "{\"alert_name\":\"A\",\"status\":\"firing\",\"labels\":{\"env\":\"prod\",\"change_event\":\"true\"}}"},
};

/* Hostile strings a tree edit puts in place of a value or a name. */
static const char *const hostile[] = {
    "\xff", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xf0\x9f\x94\xa5", "",  " ",
    "javascript:alert(1)", "data:image/png;base64,AA", "http://plain/x", "HTTPS://ok/x", "https://", "file:///x",
    "2015-02-29T00:00:00Z", "2016-02-29T23:59:60+05:30", "2015-07-17T08:42:58", "yesterday",
    "trigger", "resolve", "acknowledge", "Trigger", "change",
    "critical", "error", "warning", "info", "noise", "INFO",
    KEY_A, KEY_B, "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6x", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4-5p6",
    "firing", "resolved", "silenced", "prod", "db", "true", "4", "\"quoted\\", "\x01\x1f",
};

static const char *const names[] = {
    "routing_key", "event_action", "dedup_key", "payload", "summary", "source", "severity", "timestamp",
    "component", "group", "class", "custom_details", "links", "images", "href", "src", "alt", "text",
    "client", "client_url", "alerts", "status", "labels", "annotations", "env", "team", "alertname",
    "alert_name", "fingerprint", "startsAt", "starts_at", "snapshot_url", "runbook_url", "generatorURL",
    "classification", "version", "change_event",
};

static cJSON *random_value(int depth)
{
    switch (rnd(depth > 1 ? 5 : 7)) {
    case 0: return cJSON_CreateNumber(rnd(1000));
    case 1: return rnd(2) ? cJSON_CreateNull() : cJSON_CreateBool(rnd(2));
    case 5: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, names[rnd(sizeof names / sizeof *names)], random_value(depth + 1));
        return o;
    }
    case 6: {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, random_value(depth + 1));
        return a;
    }
    default: {
        /* a long one now and then: the length limits */
        if (!rnd(20)) {
            static const char *const chars[] = {"k", "\xc3\xa9", "\xe2\x82\xac"};   /* 1, 2, 3 bytes */
            size_t n = 250 + rnd(10) + (rnd(2) ? 770 : 0), w = rnd(3) + 1;
            char *s = malloc(n * w + 1);
            for (size_t i = 0; i < n; i++) memcpy(s + i * w, chars[w - 1], w);
            s[n * w] = '\0';
            cJSON *it = cJSON_CreateString(s);
            free(s);
            return it;
        }
        return cJSON_CreateString(hostile[rnd(sizeof hostile / sizeof *hostile)]);
    }
    }
}

/* Every container node of the tree (objects and arrays), in list order. */
static size_t containers(cJSON *node, cJSON **out, size_t n, size_t max)
{
    cJSON *it;
    if (n < max && (cJSON_IsObject(node) || cJSON_IsArray(node))) out[n++] = node;
    cJSON_ArrayForEach(it, node) n = containers(it, out, n, max);
    return n;
}

/* One tree edit: replace a member's value, add a member (often a
** duplicate of an existing name), rename a member, or remove one. */
static void tree_edit(cJSON *root)
{
    cJSON *nodes[256];
    size_t n = containers(root, nodes, 0, 256);
    if (!n) return;
    cJSON *c = nodes[rnd((uint32_t)n)];
    int size = cJSON_GetArraySize(c);
    cJSON *child = size ? cJSON_GetArrayItem(c, (int)rnd((uint32_t)size)) : NULL;
    switch (rnd(5)) {
    case 0:
    case 1:
        if (child) {
            cJSON *v = random_value(0);
            if (cJSON_IsObject(c)) cJSON_ReplaceItemInObjectCaseSensitive(c, child->string, v);
            else cJSON_ReplaceItemViaPointer(c, child, v);
            break;
        }
        /* fall through */
    case 2:
        if (cJSON_IsObject(c)) {
            const char *name = child && rnd(2) ? child->string : names[rnd(sizeof names / sizeof *names)];
            cJSON_AddItemToObject(c, name, random_value(0));
        } else {
            cJSON_AddItemToArray(c, random_value(0));
        }
        break;
    case 3:
        if (child && child->string) {
            const char *h = hostile[rnd(sizeof hostile / sizeof *hostile)];
            char *name = tu_printf("%s%s", rnd(2) ? child->string : "", rnd(2) ? h : "");
            cJSON_free(child->string);
            child->string = cJSON_malloc(strlen(name) + 1);
            memcpy(child->string, name, strlen(name) + 1);
            free(name);
        }
        break;
    default:
        if (child) cJSON_Delete(cJSON_DetachItemViaPointer(c, child));
        break;
    }
}

/* One byte edit of text: a hostile byte sequence or escape inserted, a
** byte changed, a span repeated or removed. Returns a malloc'd text. */
static char *byte_edit(const char *text, size_t *len)
{
    static const char *const inserts[] = {"\\u0000", "\\\\u0000", "\xff", "\xc0\xaf", "\xed\xa0\x80", "\\ud800",
                                          "\\uFFFD", "\x7f", "\t", "\"x\":1,", ",\"routing_key\":\"" KEY_B "\"",
                                          ",\"event_action\":\"resolve\"", ",\"dedup_key\":\"d2\"", "\\\"", "\\\\"};
    size_t n = *len, at = rnd((uint32_t)n + 1);
    char *out = malloc(n * 2 + 64);
    switch (rnd(4)) {
    case 0: {
        const char *ins = inserts[rnd(sizeof inserts / sizeof *inserts)];
        size_t k = strlen(ins);
        memcpy(out, text, at);
        memcpy(out + at, ins, k);
        memcpy(out + at + k, text + at, n - at);
        *len = n + k;
        break;
    }
    case 1:
        memcpy(out, text, n);
        if (n) out[rnd((uint32_t)n)] = (char)rnd(256);
        break;
    case 2: {
        size_t k = rnd((uint32_t)(n - (at < n ? at : n)) + 1);
        if (k > n) k = n;
        memcpy(out, text, at);
        memcpy(out + at, text + at, n - at);
        memcpy(out + n, text + at, k);   /* the span again, at the end: a repeat */
        *len = n + k;
        /* move the repeat into place: keep the text valid more often */
        memmove(out + at + k, out + at, n - at);
        memcpy(out + at, text + at, k);
        break;
    }
    default: {
        size_t k = at < n ? rnd((uint32_t)(n - at)) + 1 : 0;
        memcpy(out, text, at);
        memcpy(out + at, text + at + k, n - at - k);
        *len = n - k;
        break;
    }
    }
    out[*len] = '\0';
    return out;
}

static void test_mutants(void **state)
{
    (void)state;
    size_t taken_n = 0, total = 0;
    for (int i = 0; i < MUTANTS; i++) {
        for (parser p = 0; p < P_COUNT; p++) {
            const char *seed = seeds[p][rnd(3)];
            cJSON *root = cJSON_Parse(seed);
            assert_non_null(root);
            for (uint32_t k = rnd(4) + 1; k > 0; k--) tree_edit(root);
            char *text = cJSON_PrintUnformatted(root);
            cJSON_Delete(root);
            size_t len = strlen(text);
            char *body = text;
            if (rnd(3) == 0) {
                body = byte_edit(text, &len);
                cJSON_free(text);
                text = NULL;
            }
            normalize_result r;
            /* the same body through another parser too: a model's body is
            ** hostile to the others */
            if (check_len(p, body, len, &r) == PDR_OK) taken_n++;
            normalize_result_cleanup(&r);
            check_len((parser)rnd(P_COUNT), body, len, &r);
            normalize_result_cleanup(&r);
            total++;
            if (text) cJSON_free(text);
            else free(body);
        }
    }
    /* the generator must keep enough bodies valid to test the property */
    fprintf(stderr, "differential: %zu of %zu mutants taken\n", taken_n, total);
    assert_true(taken_n > total / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_mutants),
    };
    return cmocka_run_group_tests_name("differential", tests, group_setup, group_teardown);
}
