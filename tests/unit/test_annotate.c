/*
** test_annotate.c — unit tests of agent/annotate.c: every rule of
** annotate_body() with the exact body it produces.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "annotate.h"
#include "event.h"
#include "testutil.h"

#define KEY "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define QUEUED INT64_C(1795782896789)            /* 2026-11-27T12:34:56.789Z */
#define QUEUED_TS "2026-11-27T12:34:56.789Z"
#define NOW (QUEUED + 3723500)                   /* 1 h 2 min 3.5 s later */
#define RESOLVED INT64_C(1795783000000)          /* 2026-11-27T12:36:40.000Z */
#define RESOLVED_TS "2026-11-27T12:36:40.000Z"
#define ELLIPSIS "\xe2\x80\xa6"

#define TRIGGER_HEAD "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
#define NOTE "\"pdrelay\":{\"queued_at\":\"" QUEUED_TS "\",\"attempts\":41,\"delayed_s\":3723}"

static const annotate_opts DELAY = {0, 0, 1, QUEUED, 41, NOW, 0};
static const annotate_opts RESOLVED_ONLY = {1, 0, 0, QUEUED, 41, NOW, 0};
static const annotate_opts BOTH = {1, RESOLVED, 1, QUEUED, 41, NOW, 0};
static const annotate_opts DELAY_NONE = {0, 0, 0, QUEUED, 41, NOW, 0};   /* nothing asked */

/* annotate_body on the NUL-terminated in; returns its rc, *out the text (or NULL). */
static pdr_rc annotate(const char *in, const annotate_opts *o, char **out)
{
    size_t len = 7;
    pdr_rc rc = annotate_body(in, strlen(in), o, out, &len);
    if (rc == PDR_OK) {
        assert_non_null(*out);
        assert_int_equal(len, strlen(*out));
    } else {
        assert_null(*out);
        assert_int_equal(len, 0);
    }
    return rc;
}

static void expect(const char *in, const annotate_opts *o, const char *want)
{
    char *out;
    assert_int_equal(annotate(in, o, &out), PDR_OK);
    assert_string_equal(out, want);
    free(out);
}

static void expect_rc(const char *in, const annotate_opts *o, pdr_rc want)
{
    char *out;
    assert_int_equal(annotate(in, o, &out), want);
}

static void test_delay_note(void **state)
{
    (void)state;
    /* no custom_details: an object is made for the note */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"Disk full\",\"source\":\"h\",\"severity\":\"critical\"}}", &DELAY,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"Disk full\",\"source\":\"h\",\"severity\":\"critical\","
                        "\"custom_details\":{" NOTE "}}}");
    /* an object: the note is added after the client's members */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"disk\":\"/var\"}},\"client\":\"c\"}", &DELAY,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"disk\":\"/var\"," NOTE "}},\"client\":\"c\"}");
    /* null counts as absent */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\",\"custom_details\":null}}",
           &DELAY,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\",\"custom_details\":{" NOTE "}}}");
    /* a change event: the note, nothing else */
    expect("{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"Deployed\",\"source\":\"ci\"}}", &DELAY,
           "{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"Deployed\",\"source\":\"ci\","
           "\"custom_details\":{" NOTE "}}}");
    /* delayed_s is whole seconds, rounded down; attempts 0 */
    annotate_opts o = {0, 0, 1, QUEUED, 0, QUEUED + 999, 0};
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}}", &o,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"pdrelay\":{\"queued_at\":\"" QUEUED_TS "\",\"attempts\":0,\"delayed_s\":0}}}}");
}

static void test_note_left_out(void **state)
{
    (void)state;
    /* custom_details that is not an object: left alone, so nothing applies */
    expect_rc(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                           "\"custom_details\":\"free text\"}}", &DELAY, PDR_ERR_NOT_FOUND);
    expect_rc(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                           "\"custom_details\":[1,2]}}", &DELAY, PDR_ERR_NOT_FOUND);
    /* the client's own pdrelay member is not overwritten */
    expect_rc(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                           "\"custom_details\":{\"pdrelay\":\"mine\"}}}", &DELAY, PDR_ERR_NOT_FOUND);
    /* ... but the resolved-while-offline marking still applies */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"critical\","
                        "\"custom_details\":{\"pdrelay\":\"mine\"}}}", &BOTH,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"pdrelay\":\"mine\"}}}");
}

static void test_resolved_while_offline(void **state)
{
    (void)state;
    /* severity info, summary prefixed; no resolved time known: no note */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"Disk full\",\"source\":\"h\",\"severity\":\"critical\"}}",
           &RESOLVED_ONLY,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] Disk full\",\"source\":\"h\","
                        "\"severity\":\"info\"}}");
    /* with the resolve's time and the delay note */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"Disk full\",\"source\":\"h\",\"severity\":\"warning\"}}", &BOTH,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] Disk full\",\"source\":\"h\","
                        "\"severity\":\"info\",\"custom_details\":{\"pdrelay\":{\"queued_at\":\"" QUEUED_TS "\","
                        "\"attempts\":41,\"delayed_s\":3723,\"resolved_at\":\"" RESOLVED_TS "\"}}}}");
    /* the resolve's time without the delay note */
    annotate_opts o = {1, RESOLVED, 0, QUEUED, 41, NOW, 0};
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"error\"}}", &o,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"pdrelay\":{\"resolved_at\":\"" RESOLVED_TS "\"}}}}");
    /* a change event is never "resolved": its severity (none) and summary stay */
    expect_rc("{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"Deployed\",\"source\":\"ci\"}}", &RESOLVED_ONLY,
              PDR_ERR_NOT_FOUND);
}

/* The prefixed summary stays within 1024 characters: the original is cut on
** a character boundary, ending in "…" as event.c cuts. */
static void test_summary_limit(void **state)
{
    (void)state;
    const size_t prefix = strlen(ANNOTATE_RESOLVED_PREFIX);
    char *summary = malloc(4 * 1100 + 1), *want_summary = malloc(4 * 1100 + 64), *in, *want, *out;
    size_t n = 0;

    /* exactly 1024 - prefix characters: kept whole */
    for (size_t i = 0; i < PDR_SUMMARY_MAX_CHARS - prefix; i++) summary[n++] = 'a';
    summary[n] = '\0';
    in = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"%s\",\"source\":\"h\",\"severity\":\"error\"}}", summary);
    want = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"" ANNOTATE_RESOLVED_PREFIX "%s\",\"source\":\"h\","
                     "\"severity\":\"info\"}}", summary);
    expect(in, &RESOLVED_ONLY, want);
    free(in);
    free(want);

    /* 1024 characters of 3-byte "€": cut to 1024 - prefix - 1 of them and "…" */
    n = 0;
    for (size_t i = 0; i < PDR_SUMMARY_MAX_CHARS; i++) {
        memcpy(summary + n, "\xe2\x82\xac", 3);
        n += 3;
    }
    summary[n] = '\0';
    n = 0;
    for (size_t i = 0; i < PDR_SUMMARY_MAX_CHARS - prefix - 1; i++) {
        memcpy(want_summary + n, "\xe2\x82\xac", 3);
        n += 3;
    }
    memcpy(want_summary + n, ELLIPSIS, 4);
    in = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"%s\",\"source\":\"h\",\"severity\":\"error\"}}", summary);
    want = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"" ANNOTATE_RESOLVED_PREFIX "%s\",\"source\":\"h\","
                     "\"severity\":\"info\"}}", want_summary);
    assert_int_equal(annotate(in, &RESOLVED_ONLY, &out), PDR_OK);
    assert_string_equal(out, want);
    /* and the event check agrees: 1024 characters, nothing to repair */
    cJSON *ev = cJSON_Parse(out);
    pdr_repairs rep;
    pdr_event_errors errs;
    assert_int_equal(pdr_event_check(ev, PDR_EVENT_ALERT, &rep, &errs), PDR_OK);
    assert_int_equal(rep.summary_chars, 0);
    cJSON_Delete(ev);
    free(out);
    free(in);
    free(want);
    free(summary);
    free(want_summary);
}

/* A body near the 512 KB limit: the note is skipped, not the event. */
static void test_body_limit(void **state)
{
    (void)state;
    size_t fill = PDR_EVENT_MAX_BYTES - 250;   /* marked it fits; with the note (~135 bytes) not */
    char *big = malloc(fill + 1), *in, *want, *out;
    memset(big, 'x', fill);
    big[fill] = '\0';
    in = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"error\","
                   "\"custom_details\":{\"blob\":\"%s\"}}}", big);
    assert_true(strlen(in) <= PDR_EVENT_MAX_BYTES);
    /* the note alone does not fit: nothing applies */
    expect_rc(in, &DELAY, PDR_ERR_NOT_FOUND);
    /* with the marking: marked, without the note */
    want = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] s\",\"source\":\"h\","
                     "\"severity\":\"info\",\"custom_details\":{\"blob\":\"%s\"}}}", big);
    assert_int_equal(annotate(in, &BOTH, &out), PDR_OK);
    assert_string_equal(out, want);
    assert_true(strlen(out) <= PDR_EVENT_MAX_BYTES);
    free(out);
    free(want);
    free(in);

    /* no custom_details, no room: the object made for the note goes too */
    fill = PDR_EVENT_MAX_BYTES - 290;   /* marked it fits; with the note (~135 bytes) not */
    big = realloc(big, fill + 1);
    memset(big, 'y', fill);
    big[fill] = '\0';
    in = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"error\"},"
                   "\"client\":\"%s\"}", big);
    want = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] s\",\"source\":\"h\","
                     "\"severity\":\"info\"},\"client\":\"%s\"}", big);
    assert_int_equal(annotate(in, &BOTH, &out), PDR_OK);
    assert_string_equal(out, want);
    free(out);
    free(want);

    /* a body at the limit that the prefix would push over: sent as it is */
    size_t base = strlen(in) - fill;
    free(in);
    fill = PDR_EVENT_MAX_BYTES - base;
    big = realloc(big, fill + 1);
    memset(big, 'z', fill);
    big[fill] = '\0';
    in = tu_printf(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"error\"},"
                   "\"client\":\"%s\"}", big);
    assert_int_equal(strlen(in), PDR_EVENT_MAX_BYTES);
    expect_rc(in, &BOTH, PDR_ERR_NOT_FOUND);
    free(in);
    free(big);
}

static void test_nothing_applies(void **state)
{
    (void)state;
    static const annotate_opts none = {0, 0, 0, QUEUED, 1, NOW, 0};
    const char *trigger = TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}}";
    expect_rc(trigger, &none, PDR_ERR_NOT_FOUND);
    /* acknowledge and resolve: as they are */
    expect_rc("{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}", &BOTH, PDR_ERR_NOT_FOUND);
    expect_rc("{\"routing_key\":\"" KEY "\",\"event_action\":\"acknowledge\",\"dedup_key\":\"d\"}", &BOTH,
              PDR_ERR_NOT_FOUND);
    /* no payload object */
    expect_rc(TRIGGER_HEAD "\"payload\":\"s\"}", &BOTH, PDR_ERR_NOT_FOUND);
    expect_rc("{\"routing_key\":\"" KEY "\"}", &DELAY, PDR_ERR_NOT_FOUND);
    /* not a JSON object */
    expect_rc("[1,2]", &DELAY, PDR_ERR_INVALID);
    expect_rc("not json", &DELAY, PDR_ERR_INVALID);
    expect_rc("", &DELAY, PDR_ERR_INVALID);
    /* len is honoured: the body need not be NUL-terminated */
    char *out;
    size_t outlen;
    char buf[] = "{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"D\",\"source\":\"c\"}}GARBAGE";
    assert_int_equal(annotate_body(buf, strlen(buf) - 7, &DELAY, &out, &outlen), PDR_OK);
    assert_string_equal(out, "{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"D\",\"source\":\"c\","
                             "\"custom_details\":{" NOTE "}}}");
    free(out);
}

/* The stamp: a body without payload.timestamp gets stamp_ms (the row's
** created_ms), ISO 8601 UTC with ms; one with a timestamp keeps it. */
static void test_stamp(void **state)
{
    (void)state;
    static const annotate_opts stamp = {.stamp_ms = QUEUED, .queued_ms = QUEUED, .now_ms = NOW};
    static const annotate_opts stamp_delay = {.delay_note = 1, .queued_ms = QUEUED, .attempts = 41, .now_ms = NOW,
                                              .stamp_ms = QUEUED};
    static const annotate_opts stamp_resolved = {.resolved_while_offline = 1, .resolved_ms = RESOLVED,
                                                 .queued_ms = QUEUED, .now_ms = NOW, .stamp_ms = QUEUED};
    /* alone: added at the end of the payload */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"Disk full\",\"source\":\"h\",\"severity\":\"critical\"}}", &stamp,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"Disk full\",\"source\":\"h\",\"severity\":\"critical\","
                        "\"timestamp\":\"" QUEUED_TS "\"}}");
    /* null counts as absent: replaced where it is */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"timestamp\":null,\"source\":\"h\",\"severity\":\"info\"}}",
           &stamp,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"timestamp\":\"" QUEUED_TS "\",\"source\":\"h\","
                        "\"severity\":\"info\"}}");
    /* the source's own timestamp is kept: nothing applies */
    expect_rc(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                           "\"timestamp\":\"2024-03-05T10:00:00+01:00\"}}", &stamp, PDR_ERR_NOT_FOUND);
    /* ... but the other annotations still apply, the timestamp untouched */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"timestamp\":\"2024-03-05T10:00:00+01:00\"}}", &stamp_delay,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"timestamp\":\"2024-03-05T10:00:00+01:00\",\"custom_details\":{" NOTE "}}}");
    /* with the delay note, in one body */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"disk\":\"/var\"}}}", &stamp_delay,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"custom_details\":{\"disk\":\"/var\"," NOTE "},\"timestamp\":\"" QUEUED_TS "\"}}");
    /* with the resolved-while-offline marking */
    expect(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"error\"}}", &stamp_resolved,
           TRIGGER_HEAD "\"payload\":{\"summary\":\"[resolved while offline] s\",\"source\":\"h\",\"severity\":\"info\","
                        "\"timestamp\":\"" QUEUED_TS "\",\"custom_details\":{\"pdrelay\":{\"resolved_at\":\"" RESOLVED_TS "\"}}}}");
    /* a change event is stamped too */
    expect("{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"Deployed\",\"source\":\"ci\"}}", &stamp,
           "{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"Deployed\",\"source\":\"ci\","
           "\"timestamp\":\"" QUEUED_TS "\"}}");
    expect_rc("{\"routing_key\":\"" KEY "\",\"payload\":{\"summary\":\"Deployed\",\"source\":\"ci\","
              "\"timestamp\":\"2024-03-05T10:00:00Z\"}}", &stamp, PDR_ERR_NOT_FOUND);
    /* acknowledge and resolve: as they are */
    expect_rc("{\"routing_key\":\"" KEY "\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}", &stamp, PDR_ERR_NOT_FOUND);
    expect_rc("{\"routing_key\":\"" KEY "\",\"event_action\":\"acknowledge\",\"dedup_key\":\"d\"}", &stamp,
              PDR_ERR_NOT_FOUND);
    /* stamp_ms 0: no stamp */
    expect_rc(TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}}", &DELAY_NONE,
              PDR_ERR_NOT_FOUND);
}

/* A body at the 512 KB limit: the stamp is left out, not the event. */
static void test_stamp_body_limit(void **state)
{
    (void)state;
    static const annotate_opts stamp = {.stamp_ms = QUEUED, .queued_ms = QUEUED, .now_ms = NOW};
    const char *head = TRIGGER_HEAD "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"},"
                                    "\"client\":\"";
    size_t fill = PDR_EVENT_MAX_BYTES - strlen(head) - 2;
    char *big = malloc(fill + 1), *in;
    memset(big, 'x', fill);
    big[fill] = '\0';
    in = tu_printf("%s%s\"}", head, big);
    assert_int_equal(strlen(in), PDR_EVENT_MAX_BYTES);
    expect_rc(in, &stamp, PDR_ERR_NOT_FOUND);
    free(in);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_note),
        cmocka_unit_test(test_note_left_out),
        cmocka_unit_test(test_resolved_while_offline),
        cmocka_unit_test(test_summary_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_nothing_applies),
        cmocka_unit_test(test_stamp),
        cmocka_unit_test(test_stamp_body_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
