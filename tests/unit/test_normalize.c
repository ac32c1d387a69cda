/*
** test_normalize.c — unit tests of normalize.c: what goes upstream for each
** body model, field by field (each event's body is parsed back), the routing
** of alerts to targets, every class of refusal with its exact sentence, the
** PagerDuty-native path and its repairs, and allocation failures (every
** allocation fails at each point in turn: no event, or the same events).
**
** JSON in this file is written with single quotes for readability; q()
** turns them into double quotes (\\' gives an escaped quote).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normalize_config.h"
#include "normalize.h"
#include "testutil.h"

#define ELLIPSIS "\xe2\x80\xa6"

/* ---- helpers ------------------------------------------------------------ */

/* Single quotes to double quotes; malloc'd. */
static char *q(const char *s)
{
    char *out = tu_printf("%s", s);
    for (char *p = out; *p; p++)
        if (*p == '\'') *p = '"';
    return out;
}

static pdr_rc am(const char *sq, normalize_result *r)
{
    char *b = q(sq);
    pdr_rc rc = normalize_alertmanager(b, strlen(b), cfg, r);
    free(b);
    return rc;
}

static pdr_rc alerts(const char *sq, normalize_result *r)
{
    char *b = q(sq);
    pdr_rc rc = normalize_alerts(b, strlen(b), cfg, r);
    free(b);
    return rc;
}

static pdr_rc pd(const char *sq, pdr_event_kind kind, normalize_result *r)
{
    char *b = q(sq);
    pdr_rc rc = normalize_pagerduty(b, strlen(b), kind, r);
    free(b);
    return rc;
}

/* The event body parsed back (caller deletes). */
static cJSON *body_of(const normalize_event *e)
{
    assert_non_null(e->body);
    assert_int_equal(e->body_len, strlen(e->body));
    cJSON *j = cJSON_Parse(e->body);
    assert_non_null(j);
    return j;
}

/* Walks a dotted path ("payload.summary", "links.1.text"); NULL if absent. */
static const cJSON *at(const cJSON *j, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && j; tok = strtok(NULL, ".")) {
        if (cJSON_IsArray(j))
            j = cJSON_GetArrayItem(j, atoi(tok));
        else
            j = cJSON_GetObjectItemCaseSensitive(j, tok);
    }
    return j;
}

static const char *str_at(const cJSON *j, const char *path)
{
    const cJSON *it = at(j, path);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void assert_str_at(const cJSON *j, const char *path, const char *want)
{
    const char *got = str_at(j, path);
    if (!got) print_message("%s: absent or not a string\n", path);
    assert_non_null(got);
    assert_string_equal(got, want);
}

static int n_members(const cJSON *j)
{
    return j ? cJSON_GetArraySize(j) : -1;
}

static void assert_derived(const normalize_event *e, const char *key, const char *fp)
{
    char dk[PDR_SHA256_HEX_LEN];
    assert_int_equal(pdr_dedup_key_derive(key, fp, dk), PDR_OK);
    assert_string_equal(e->dedup_key, dk);
    assert_int_equal(strlen(e->dedup_key), 64);
}

/* A refusal: exactly one error, this sentence, and nothing else left. */
static void assert_refused(pdr_rc rc, normalize_result *r, const char *want)
{
    assert_int_equal(rc, PDR_ERR_INVALID);
    if (r->errs.n != 1)
        for (size_t i = 0; i < r->errs.n; i++) print_message("error: %s\n", r->errs.msgs[i]);
    assert_int_equal(r->errs.n, 1);
    assert_string_equal(r->errs.msgs[0], want);
    assert_int_equal(r->n, 0);
    assert_null(r->evs);
    normalize_result_cleanup(r);
}

/* An Alertmanager 0.27 webhook body with one firing alert for prod. */
static const char am_full[] =
    "{'receiver':'pdrelay','status':'firing','alerts':[{'status':'firing',"
    "'labels':{'alertname':'HighCPU','env':'prod','instance':'node1:9100','job':'node',"
    "'cluster':'eu1','namespace':'mon','severity':'CRITICAL'},"
    "'annotations':{'summary':'CPU above 90%','description':'CPU is hot',"
    "'runbook_url':'https://runbooks.example.com/cpu','dashboard_url':'https://dash.example.com/d/1',"
    "'grafana_url':'https://grafana.example.com/d/2','snapshot_url':'https://img.example.com/s.png',"
    "'empty_url':''},"
    "'startsAt':'2024-03-05T10:00:00.123456789Z','endsAt':'0001-01-01T00:00:00Z',"
    "'generatorURL':'http://prom:9090/graph?g0.expr=cpu','fingerprint':'5ef77f1d2c4e5b6a'}],"
    "'groupLabels':{'alertname':'HighCPU'},'commonLabels':{'alertname':'HighCPU','env':'prod'},"
    "'commonAnnotations':{},'externalURL':'http://am.example.com:9093','version':'4',"
    "'groupKey':'{}:{alertname=\\'HighCPU\\'}','truncatedAlerts':0}";

/* ---- Alertmanager ------------------------------------------------------- */

static void test_am_trigger_fields(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(am(am_full, &r), PDR_OK);
    assert_int_equal(r.alerts, 1);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.unrouted, 0);
    assert_int_equal(r.repaired, 0);
    assert_int_equal(r.parse_error, 0);

    const normalize_event *e = &r.evs[0];
    assert_string_equal(e->routing_key, KEY_A);
    assert_string_equal(e->target, "prod");
    assert_string_equal(e->fingerprint, "5ef77f1d2c4e5b6a");
    assert_int_equal(e->action, PDR_ACTION_TRIGGER);
    assert_int_equal(e->repaired, 0);
    assert_derived(e, KEY_A, "5ef77f1d2c4e5b6a");

    cJSON *b = body_of(e);
    assert_str_at(b, "routing_key", KEY_A);
    assert_str_at(b, "event_action", "trigger");
    assert_str_at(b, "dedup_key", e->dedup_key);
    assert_str_at(b, "payload.summary", "[CRITICAL] HighCPU: CPU above 90%");
    assert_str_at(b, "payload.severity", "critical");
    assert_str_at(b, "payload.source", "node1:9100");
    assert_str_at(b, "payload.component", "node");
    assert_str_at(b, "payload.group", "eu1");
    assert_str_at(b, "payload.class", "HighCPU");
    assert_str_at(b, "payload.timestamp", "2024-03-05T10:00:00.123456789Z");
    assert_str_at(b, "payload.custom_details.labels.severity", "CRITICAL");
    assert_str_at(b, "payload.custom_details.labels.instance", "node1:9100");
    assert_str_at(b, "payload.custom_details.annotations.description", "CPU is hot");
    assert_str_at(b, "payload.custom_details.startsAt", "2024-03-05T10:00:00.123456789Z");
    assert_str_at(b, "payload.custom_details.fingerprint", "5ef77f1d2c4e5b6a");
    assert_str_at(b, "payload.custom_details.generatorURL", "http://prom:9090/graph?g0.expr=cpu");
    assert_str_at(b, "payload.custom_details.receiver", "pdrelay");
    assert_str_at(b, "payload.custom_details.externalURL", "http://am.example.com:9093");
    assert_int_equal(n_members(at(b, "payload.custom_details")), 7);
    assert_int_equal(n_members(at(b, "links")), 4);
    assert_str_at(b, "links.0.href", "http://prom:9090/graph?g0.expr=cpu");
    assert_str_at(b, "links.0.text", "Source");
    assert_str_at(b, "links.1.href", "https://runbooks.example.com/cpu");
    assert_str_at(b, "links.1.text", "Runbook");
    assert_str_at(b, "links.2.href", "https://dash.example.com/d/1");
    assert_str_at(b, "links.2.text", "Dashboard");
    assert_str_at(b, "links.3.href", "https://grafana.example.com/d/2");
    assert_str_at(b, "links.3.text", "Dashboard");
    assert_int_equal(n_members(at(b, "images")), 1);
    assert_str_at(b, "images.0.src", "https://img.example.com/s.png");
    assert_str_at(b, "images.0.alt", "snapshot");
    assert_str_at(b, "client", "Alertmanager");
    assert_str_at(b, "client_url", "http://am.example.com:9093");
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
    assert_null(r.evs);
    assert_int_equal(r.n, 0);
}

static void test_am_body_not_nul_terminated(void **state)
{
    (void)state;
    normalize_result r;
    char *b = q(am_full);
    size_t len = strlen(b);
    /* Bytes after len must not be read as part of the body. */
    char *buf = tu_printf("%s} garbage", b);
    assert_int_equal(normalize_alertmanager(buf, len, cfg, &r), PDR_OK);
    assert_int_equal(r.n, 1);
    normalize_result_cleanup(&r);
    /* ... but garbage inside len is a parse error, as at PagerDuty. */
    assert_int_equal(normalize_alertmanager(buf, len + 1, cfg, &r), PDR_ERR_INVALID);
    assert_int_equal(r.parse_error, 1);
    normalize_result_cleanup(&r);
    free(buf);
    free(b);
}

static void test_am_fallbacks(void **state)
{
    (void)state;
    normalize_result r;
    /* 0: noise, description only, no instance/fingerprint/startsAt/URLs;
    ** 1: severity missing, no alertname, namespace but no cluster, zero time;
    ** 2: unknown severity, no annotations member at all. */
    assert_int_equal(am("{'version':'4','alerts':["
                        "{'status':'firing','labels':{'alertname':'Flappy','env':'prod','severity':'noise','job':'j'},"
                        " 'annotations':{'description':'flaps'}},"
                        "{'status':'firing','labels':{'env':'prod','namespace':'ns1'},'annotations':{},"
                        " 'startsAt':'0001-01-01T00:00:00Z','fingerprint':''},"
                        "{'status':'firing','labels':{'alertname':'X','env':'prod','severity':'page'},"
                        " 'startsAt':'yesterday'}]}",
                        &r),
                     PDR_OK);
    assert_int_equal(r.alerts, 3);
    assert_int_equal(r.n, 3);

    cJSON *b = body_of(&r.evs[0]);
    assert_str_at(b, "payload.summary", "[INFO] Flappy: flaps");
    assert_str_at(b, "payload.severity", "info");
    assert_str_at(b, "payload.source", "edge-gw-1");
    assert_str_at(b, "payload.component", "j");
    assert_null(at(b, "payload.group"));
    assert_null(at(b, "payload.timestamp"));
    assert_null(at(b, "links"));
    assert_null(at(b, "images"));
    assert_null(at(b, "client_url"));
    assert_null(at(b, "payload.custom_details.receiver"));
    assert_null(at(b, "payload.custom_details.generatorURL"));
    assert_str_at(b, "client", "Alertmanager");
    /* No fingerprint: SHA-256 of the sorted "name=value\n" lines. */
    const char *lines = "alertname=Flappy\nenv=prod\njob=j\nseverity=noise\n";
    char fp[PDR_SHA256_HEX_LEN];
    assert_int_equal(pdr_sha256_hex(lines, strlen(lines), fp), PDR_OK);
    assert_string_equal(r.evs[0].fingerprint, fp);
    assert_str_at(b, "payload.custom_details.fingerprint", fp);
    assert_derived(&r.evs[0], KEY_A, fp);
    cJSON_Delete(b);

    b = body_of(&r.evs[1]);
    assert_str_at(b, "payload.summary", "[WARNING] alert");
    assert_str_at(b, "payload.severity", "warning");   /* default_severity */
    assert_str_at(b, "payload.group", "ns1");
    assert_null(at(b, "payload.class"));
    assert_null(at(b, "payload.component"));
    assert_null(at(b, "payload.timestamp"));          /* Go's zero time */
    lines = "env=prod\nnamespace=ns1\n";
    assert_int_equal(pdr_sha256_hex(lines, strlen(lines), fp), PDR_OK);
    assert_string_equal(r.evs[1].fingerprint, fp);
    cJSON_Delete(b);

    b = body_of(&r.evs[2]);
    assert_str_at(b, "payload.summary", "[WARNING] X");
    assert_str_at(b, "payload.severity", "warning");
    assert_null(at(b, "payload.timestamp"));          /* not ISO 8601: kept in details only */
    assert_str_at(b, "payload.custom_details.startsAt", "yesterday");
    assert_null(at(b, "payload.custom_details.annotations"));
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

static void test_am_severity_mapping(void **state)
{
    (void)state;
    static const struct { const char *in, *want; } cases[] = {
        {"critical", "critical"}, {"Error", "error"}, {"WARNING", "warning"}, {"info", "info"},
        {"noise", "info"}, {"NOISE", "info"}, {"p1", "warning"}, {"", "warning"},
        {"criticalcriticalcritical", "warning"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        normalize_result r;
        char *body = tu_printf("{'alerts':[{'status':'firing','labels':{'alertname':'A','env':'prod',"
                               "'severity':'%s'}}]}", cases[i].in);
        assert_int_equal(am(body, &r), PDR_OK);
        assert_int_equal(r.n, 1);
        cJSON *b = body_of(&r.evs[0]);
        assert_str_at(b, "payload.severity", cases[i].want);
        char want[64];
        snprintf(want, sizeof want, "[%s] A", cases[i].want);
        for (char *p = want; *p; p++)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        assert_str_at(b, "payload.summary", want);
        cJSON_Delete(b);
        normalize_result_cleanup(&r);
        free(body);
    }
}

static void test_am_http_snapshot_dropped(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(am("{'alerts':[{'status':'firing','labels':{'alertname':'A','env':'prod'},"
                        "'annotations':{'snapshot_url':'http://img.example.com/s.png'}}]}",
                        &r),
                     PDR_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.repaired, 1);
    assert_int_equal(r.evs[0].repaired, 1);
    assert_int_equal(r.evs[0].rep.images_dropped, 1);
    cJSON *b = body_of(&r.evs[0]);
    assert_null(cJSON_GetObjectItem(b, "images"));   /* emptied: left out */
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

/* Blank URLs would make PagerDuty refuse the event: they are left out. */
static void test_am_blank_urls_skipped(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(am("{'alerts':[{'status':'firing','labels':{'alertname':'A','env':'prod','instance':' '},"
                        "'generatorURL':' ','annotations':{'runbook_url':'\\t','snapshot_url':'  ',"
                        "'dashboard_url':'https://d'}}]}",
                        &r),
                     PDR_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.repaired, 0);
    cJSON *b = body_of(&r.evs[0]);
    assert_int_equal(n_members(at(b, "links")), 1);
    assert_str_at(b, "links.0.href", "https://d");
    assert_null(at(b, "images"));
    assert_str_at(b, "payload.source", "edge-gw-1");
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

static void test_am_long_summary_cut(void **state)
{
    (void)state;
    normalize_result r;
    char text[2001];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    char *body = tu_printf("{'alerts':[{'status':'firing','labels':{'alertname':'A','env':'prod'},"
                           "'annotations':{'summary':'%s'}}]}", text);
    assert_int_equal(am(body, &r), PDR_OK);
    assert_int_equal(r.repaired, 1);
    assert_int_equal(r.evs[0].rep.summary_chars, strlen("[WARNING] A: ") + 2000);
    cJSON *b = body_of(&r.evs[0]);
    const char *s = str_at(b, "payload.summary");
    assert_non_null(s);
    assert_int_equal(strlen(s), 1023 + 3);   /* 1023 ASCII characters and "…" */
    assert_string_equal(s + 1023, ELLIPSIS);
    assert_memory_equal(s, "[WARNING] A: xxx", 16);
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
    free(body);
}

static void test_am_resolve_three_keys(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(am("{'version':'4','status':'resolved','alerts':[{'status':'resolved',"
                        "'labels':{'alertname':'HighCPU','env':'prod','severity':'critical'},"
                        "'annotations':{'summary':'s','runbook_url':'https://r'},"
                        "'startsAt':'2024-03-05T10:00:00Z','endsAt':'2024-03-05T10:05:00Z',"
                        "'generatorURL':'http://g','fingerprint':'5ef77f1d2c4e5b6a'}]}",
                        &r),
                     PDR_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.evs[0].action, PDR_ACTION_RESOLVE);
    /* The same dedup_key as the trigger of test_am_trigger_fields. */
    assert_derived(&r.evs[0], KEY_A, "5ef77f1d2c4e5b6a");
    cJSON *b = body_of(&r.evs[0]);
    assert_int_equal(n_members(b), 3);
    assert_str_at(b, "routing_key", KEY_A);
    assert_str_at(b, "event_action", "resolve");
    assert_str_at(b, "dedup_key", r.evs[0].dedup_key);
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

#define CHANGE_ALERT_FMT \
    "{'alerts':[{'status':'%s','labels':{'alertname':'Deploy','env':'prod'," \
    "'change_event':'true','instance':'ci1','severity':'critical'}," \
    "'annotations':{'summary':'v1.2 rolled out','snapshot_url':'https://i/x.png'}," \
    "'startsAt':'2024-03-05T10:00:00Z','generatorURL':'https://ci/1','fingerprint':'f1'}]}"

static void test_am_change_event(void **state)
{
    (void)state;
    normalize_result r;
    char *body = tu_printf(CHANGE_ALERT_FMT, "firing");
    assert_int_equal(am(body, &r), PDR_OK);
    free(body);
    assert_int_equal(r.n, 1);
    const normalize_event *e = &r.evs[0];
    assert_int_equal(e->action, PDR_ACTION_CHANGE);
    assert_string_equal(e->dedup_key, "");
    assert_string_equal(e->fingerprint, "f1");
    cJSON *b = body_of(e);
    assert_int_equal(n_members(b), 3);   /* routing_key, payload, links */
    assert_str_at(b, "routing_key", KEY_A);
    assert_null(at(b, "event_action"));
    assert_null(at(b, "dedup_key"));
    assert_null(at(b, "images"));
    assert_null(at(b, "client"));
    assert_int_equal(n_members(at(b, "payload")), 4);
    assert_str_at(b, "payload.summary", "[CRITICAL] Deploy: v1.2 rolled out");
    assert_str_at(b, "payload.source", "ci1");
    assert_str_at(b, "payload.timestamp", "2024-03-05T10:00:00Z");
    assert_str_at(b, "payload.custom_details.labels.change_event", "true");
    assert_str_at(b, "links.0.href", "https://ci/1");
    cJSON_Delete(b);
    normalize_result_cleanup(&r);

    /* A resolved change alert makes nothing and is not unrouted. */
    body = tu_printf(CHANGE_ALERT_FMT, "resolved");
    assert_int_equal(am(body, &r), PDR_OK);
    free(body);
    assert_int_equal(r.alerts, 1);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.unrouted, 0);
    normalize_result_cleanup(&r);

    /* Only "true" makes a change event. */
    assert_int_equal(am("{'alerts':[{'status':'firing','labels':{'alertname':'A','env':'prod',"
                        "'change_event':'false'}}]}", &r),
                     PDR_OK);
    assert_int_equal(r.evs[0].action, PDR_ACTION_TRIGGER);
    normalize_result_cleanup(&r);
}

static void test_am_routing(void **state)
{
    (void)state;
    normalize_result r;
    /* 0: prod and db; 1: nothing; 2: db only; 3: nothing. */
    assert_int_equal(am("{'alerts':["
                        "{'status':'firing','labels':{'alertname':'A','env':'prod','team':'db'},'fingerprint':'f0'},"
                        "{'status':'firing','labels':{'alertname':'B','env':'staging'},'fingerprint':'f1'},"
                        "{'status':'resolved','labels':{'alertname':'C','team':'storage'},'fingerprint':'f2'},"
                        "{'status':'firing','labels':{'alertname':'D','team':'dba'},'fingerprint':'f3'}]}",
                        &r),
                     PDR_OK);
    assert_int_equal(r.alerts, 4);
    assert_int_equal(r.unrouted, 2);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.evs[0].target, "prod");
    assert_string_equal(r.evs[0].routing_key, KEY_A);
    assert_derived(&r.evs[0], KEY_A, "f0");
    assert_string_equal(r.evs[1].target, "db");
    assert_string_equal(r.evs[1].routing_key, KEY_B);
    assert_derived(&r.evs[1], KEY_B, "f0");
    assert_string_not_equal(r.evs[0].dedup_key, r.evs[1].dedup_key);
    cJSON *b = body_of(&r.evs[1]);
    assert_str_at(b, "routing_key", KEY_B);
    cJSON_Delete(b);
    assert_string_equal(r.evs[2].target, "db");
    assert_string_equal(r.evs[2].fingerprint, "f2");
    assert_int_equal(r.evs[2].action, PDR_ACTION_RESOLVE);
    normalize_result_cleanup(&r);

    /* Nothing routed is not an error; an empty alerts list neither. */
    assert_int_equal(am("{'alerts':[{'status':'firing','labels':{'alertname':'B'}}]}", &r), PDR_OK);
    assert_int_equal(r.n, 0);
    assert_null(r.evs);
    assert_int_equal(r.unrouted, 1);
    normalize_result_cleanup(&r);
    assert_int_equal(am("{'version':'4','alerts':[]}", &r), PDR_OK);
    assert_int_equal(r.alerts, 0);
    assert_int_equal(r.n, 0);
    normalize_result_cleanup(&r);
}

static void test_am_errors(void **state)
{
    (void)state;
    normalize_result r;
    static const struct { const char *body, *want; } cases[] = {
        {"[]", "Webhook body must be a JSON object"},
        {"{'version':'3','alerts':[]}", "'version' must be \"4\""},
        {"{'version':4,'alerts':[]}", "'version' must be \"4\""},
        {"{'version':'4'}", "'alerts' is missing or not an array"},
        {"{'alerts':{}}", "'alerts' is missing or not an array"},
        {"{'alerts':[1]}", "'alerts[0]' must be an object"},
        {"{'alerts':[{'labels':{}}]}", "'alerts[0].status' must be \"firing\" or \"resolved\""},
        {"{'alerts':[{'status':'pending','labels':{}}]}",
         "'alerts[0].status' must be \"firing\" or \"resolved\""},
        {"{'alerts':[{'status':'firing'}]}", "'alerts[0].labels' must be an object"},
        {"{'alerts':[{'status':'firing','labels':['a']}]}", "'alerts[0].labels' must be an object"},
        {"{'alerts':[{'status':'firing','labels':{'severity':2}}]}",
         "'alerts[0].labels.severity' must be a string"},
        {"{'alerts':[{'status':'firing','labels':{},'annotations':'x'}]}",
         "'alerts[0].annotations' must be an object"},
        {"{'alerts':[{'status':'firing','labels':{},'startsAt':1}]}", "'alerts[0].startsAt' must be a string"},
        {"{'alerts':[{'status':'firing','labels':{},'fingerprint':{}}]}",
         "'alerts[0].fingerprint' must be a string"},
        {"{'receiver':5,'alerts':[]}", "'receiver' must be a string"},
        {"{'externalURL':true,'alerts':[]}", "'externalURL' must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_refused(am(cases[i].body, &r), &r, cases[i].want);
    }

    /* Nothing partial: alerts 0 and 1 are fine, 2 is not. */
    pdr_rc rc = am("{'alerts':[{'status':'firing','labels':{'env':'prod'}},"
                   "{'status':'firing','labels':{'env':'prod'}},{'status':'gone','labels':{'env':'prod'}}]}",
                   &r);
    assert_int_equal(r.parse_error, 0);
    assert_refused(rc, &r, "'alerts[2].status' must be \"firing\" or \"resolved\"");

    /* Not JSON. */
    static const char *const not_json[] = {"", "{", "{'alerts':[]} x", "nul", "{'a':1,}"};
    for (size_t i = 0; i < sizeof not_json / sizeof *not_json; i++) {
        rc = am(not_json[i], &r);
        assert_int_equal(r.parse_error, 1);
        assert_refused(rc, &r, "JSON parse error");
    }
    assert_int_equal(normalize_alertmanager(NULL, 0, cfg, &r), PDR_ERR_INVALID);
    assert_int_equal(r.parse_error, 1);
    normalize_result_cleanup(&r);
}

/* n alerts, each matching prod and db: 2n events. */
static char *two_target_alerts(size_t n)
{
    const char *one = "{'status':'firing','labels':{'env':'prod','team':'db'}},";
    size_t size = 16 + n * strlen(one);
    char *s = malloc(size), *p = s;
    assert_non_null(s);
    p += sprintf(p, "{'alerts':[");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s", one);
    sprintf(p - 1, "]}");
    return s;
}

static void test_am_event_cap(void **state)
{
    (void)state;
    normalize_result r;
    char *body = two_target_alerts(NORMALIZE_MAX_EVENTS / 2);
    assert_int_equal(am(body, &r), PDR_OK);
    assert_int_equal(r.n, NORMALIZE_MAX_EVENTS);
    normalize_result_cleanup(&r);
    free(body);

    body = two_target_alerts(NORMALIZE_MAX_EVENTS / 2 + 1);
    assert_refused(am(body, &r), &r,
                   "Body would make more than 10000 events (alerts x matching targets); "
                   "send fewer alerts per request");
    free(body);
}

/* ---- /v1/alerts ---------------------------------------------------------- */

static void test_alerts_single_ai(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(alerts("{'fingerprint':'fp-9','alert_name':'DiskFull','status':'firing',"
                            "'labels':{'severity':'critical','instance':'db1','namespace':'storage-ns'},"
                            "'annotations':{'summary':'Disk 95%','runbook_url':'https://rb/disk',"
                            "'grafana_url':'https://g/d','snapshot_url':'https://s/p.png'},"
                            "'starts_at':'2024-03-05T10:00:00Z','ends_at':null,"
                            "'generator_url':'https://prom/g',"
                            "'classification':{'severity':'noise','confidence':0.92,"
                            "'reasoning':'Known nightly spike','recommendations':['ignore','tune']}}",
                            &r),
                     PDR_OK);
    assert_int_equal(r.alerts, 1);
    assert_int_equal(r.n, 1);   /* alertname=DiskFull from alert_name: target disk */
    const normalize_event *e = &r.evs[0];
    assert_string_equal(e->target, "disk");
    assert_string_equal(e->fingerprint, "fp-9");
    assert_derived(e, KEY_C, "fp-9");
    assert_int_equal(e->action, PDR_ACTION_TRIGGER);

    cJSON *b = body_of(e);
    assert_str_at(b, "payload.summary", "[INFO] DiskFull - AI: Known nightly spike");
    assert_str_at(b, "payload.severity", "info");   /* classification wins over labels */
    assert_str_at(b, "payload.source", "db1");
    assert_str_at(b, "payload.class", "DiskFull");
    assert_str_at(b, "payload.group", "storage-ns");
    assert_str_at(b, "payload.timestamp", "2024-03-05T10:00:00Z");
    const cJSON *d = at(b, "payload.custom_details");
    assert_int_equal(n_members(d), 6);
    assert_str_at(d, "labels.severity", "critical");
    assert_str_at(d, "annotations.summary", "Disk 95%");
    assert_str_at(d, "starts_at", "2024-03-05T10:00:00Z");
    assert_null(at(d, "ends_at"));
    assert_str_at(d, "fingerprint", "fp-9");
    assert_str_at(d, "generator_url", "https://prom/g");
    assert_str_at(d, "classification.severity", "noise");
    assert_str_at(d, "classification.reasoning", "Known nightly spike");
    assert_true(cJSON_IsNumber(at(d, "classification.confidence")));
    assert_true(at(d, "classification.confidence")->valuedouble > 0.91);
    assert_str_at(d, "classification.recommendations.1", "tune");
    assert_int_equal(n_members(at(b, "links")), 3);
    assert_str_at(b, "links.0.text", "Source");
    assert_str_at(b, "links.1.href", "https://rb/disk");
    assert_str_at(b, "links.2.text", "Dashboard");
    assert_str_at(b, "images.0.src", "https://s/p.png");
    assert_null(at(b, "client"));
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

static void test_alerts_array_statuses(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(alerts("[{'alert_name':'Api5xx','status':'firing','labels':{'env':'prod','severity':'error'},"
                            "  'annotations':{'description':'5xx rate high'},"
                            "  'classification':{'severity':'warning','reasoning':'  '}},"
                            " {'alert_name':'Api5xx','status':'resolved','labels':{'env':'prod','severity':'error'}},"
                            " {'alert_name':'Api5xx','status':'acknowledged','labels':{'env':'prod','severity':'error'}},"
                            " {'alert_name':'Api5xx','status':'silenced','labels':{'env':'prod','severity':'error'}},"
                            " {'alert_name':'Lonely','status':'firing'}]",
                            &r),
                     PDR_OK);
    assert_int_equal(r.alerts, 5);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.unrouted, 1);

    /* No fingerprint: labels plus alertname=alert_name, sorted. */
    const char *lines = "alertname=Api5xx\nenv=prod\nseverity=error\n";
    char fp[PDR_SHA256_HEX_LEN];
    assert_int_equal(pdr_sha256_hex(lines, strlen(lines), fp), PDR_OK);
    static const pdr_action want[] = {PDR_ACTION_TRIGGER, PDR_ACTION_RESOLVE, PDR_ACTION_ACKNOWLEDGE,
                                      PDR_ACTION_ACKNOWLEDGE};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(r.evs[i].action, want[i]);
        assert_string_equal(r.evs[i].fingerprint, fp);
        assert_derived(&r.evs[i], KEY_A, fp);
    }
    cJSON *b = body_of(&r.evs[0]);
    /* Blank reasoning: the annotation form; severity from classification. */
    assert_str_at(b, "payload.summary", "[WARNING] Api5xx: 5xx rate high");
    assert_str_at(b, "payload.severity", "warning");
    assert_str_at(b, "payload.class", "Api5xx");
    assert_str_at(b, "payload.source", "edge-gw-1");
    cJSON_Delete(b);
    b = body_of(&r.evs[2]);
    assert_int_equal(n_members(b), 3);
    assert_str_at(b, "event_action", "acknowledge");
    assert_str_at(b, "dedup_key", r.evs[2].dedup_key);
    assert_str_at(b, "routing_key", KEY_A);
    cJSON_Delete(b);
    normalize_result_cleanup(&r);

    /* The Alertmanager and the generic model agree on an alert's fingerprint. */
    assert_int_equal(am("{'alerts':[{'status':'firing','labels':{'alertname':'Api5xx','env':'prod',"
                        "'severity':'error'}}]}", &r),
                     PDR_OK);
    assert_string_equal(r.evs[0].fingerprint, fp);
    normalize_result_cleanup(&r);
}

static void test_alerts_change_event(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(alerts("[{'alert_name':'Deploy','status':'firing','labels':{'env':'prod','change_event':'true'},"
                            "  'annotations':{'summary':'v2'},'fingerprint':'d1'},"
                            " {'alert_name':'Deploy','status':'acknowledged','labels':{'env':'prod','change_event':'true'}}]",
                            &r),
                     PDR_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.unrouted, 0);
    assert_int_equal(r.evs[0].action, PDR_ACTION_CHANGE);
    assert_string_equal(r.evs[0].dedup_key, "");
    cJSON *b = body_of(&r.evs[0]);
    assert_str_at(b, "payload.summary", "[WARNING] Deploy: v2");
    assert_null(at(b, "payload.severity"));
    assert_null(at(b, "event_action"));
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

static void test_alerts_errors(void **state)
{
    (void)state;
    normalize_result r;
    static const struct { const char *body, *want; } cases[] = {
        {"[{'alert_name':'a','status':'firing'},{'alert_name':'b','status':'firing'},"
         "{'alert_name':'c','status':'resolved'},{'alert_name':'d','status':'open'}]",
         "'[3].status' must be one of firing, resolved, acknowledged, silenced"},
        {"{'alert_name':'a'}", "'status' must be one of firing, resolved, acknowledged, silenced"},
        {"{'alert_name':'a','status':'FIRING'}", "'status' must be one of firing, resolved, acknowledged, silenced"},
        {"{'status':'firing'}", "'alert_name' is missing or blank"},
        {"{'alert_name':' ','status':'firing'}", "'alert_name' is missing or blank"},
        {"{'alert_name':7,'status':'firing'}", "'alert_name' must be a string"},
        {"[{'alert_name':'a','status':'firing'},'x']", "'[1]' must be an object"},
        {"{'alert_name':'a','status':'firing','labels':[]}", "'labels' must be an object"},
        {"[{'alert_name':'a','status':'firing','labels':{'x':null}}]", "'[0].labels.x' must be a string"},
        {"{'alert_name':'a','status':'firing','annotations':1}", "'annotations' must be an object"},
        {"{'alert_name':'a','status':'firing','fingerprint':12}", "'fingerprint' must be a string"},
        {"{'alert_name':'a','status':'firing','starts_at':12}", "'starts_at' must be a string"},
        {"{'alert_name':'a','status':'firing','classification':'noise'}", "'classification' must be an object"},
        {"{'alert_name':'a','status':'firing','classification':{'severity':1}}",
         "'classification.severity' must be a string"},
        {"{'alert_name':'a','status':'firing','classification':{'reasoning':[]}}",
         "'classification.reasoning' must be a string"},
        {"'firing'", "Body must be an alert object or an array of alert objects"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) assert_refused(alerts(cases[i].body, &r), &r, cases[i].want);

    /* Several errors are all reported, as PagerDuty does. */
    assert_int_equal(alerts("[{'status':'x'},{'alert_name':'b','status':'firing','labels':5}]", &r), PDR_ERR_INVALID);
    assert_int_equal(r.errs.n, 3);
    assert_string_equal(r.errs.msgs[0], "'[0].alert_name' is missing or blank");
    assert_string_equal(r.errs.msgs[1], "'[0].status' must be one of firing, resolved, acknowledged, silenced");
    assert_string_equal(r.errs.msgs[2], "'[1].labels' must be an object");
    normalize_result_cleanup(&r);

    pdr_rc rc = alerts("[{'alert_name':'a','status':'firing'}", &r);
    assert_int_equal(r.parse_error, 1);
    assert_refused(rc, &r, "JSON parse error");

    assert_int_equal(alerts("[]", &r), PDR_OK);
    assert_int_equal(r.alerts, 0);
    assert_int_equal(r.n, 0);
    normalize_result_cleanup(&r);
}

/* ---- PagerDuty-native ---------------------------------------------------- */

static void test_pd_trigger_generated_key(void **state)
{
    (void)state;
    normalize_result r;
    assert_int_equal(pd("{'routing_key':'" KEY_A "','event_action':'trigger','payload':{'summary':'s',"
                        "'source':'h','severity':'info','custom_details':{'x':[1,2]}},'extra':'kept'}",
                        PDR_EVENT_ALERT, &r),
                     PDR_OK);
    assert_int_equal(r.alerts, 1);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.repaired, 0);   /* a generated key is what PagerDuty does: no repair */
    const normalize_event *e = &r.evs[0];
    assert_int_equal(e->action, PDR_ACTION_TRIGGER);
    assert_string_equal(e->routing_key, KEY_A);
    assert_int_equal(strlen(e->dedup_key), 36);
    assert_int_equal(e->rep.dedup_key_generated, 1);
    assert_int_equal(e->repaired, 0);
    assert_null(e->fingerprint);
    assert_null(e->target);
    cJSON *b = body_of(e);
    assert_str_at(b, "dedup_key", e->dedup_key);
    assert_str_at(b, "extra", "kept");
    assert_int_equal(n_members(at(b, "payload.custom_details.x")), 2);
    cJSON_Delete(b);
    normalize_result_cleanup(&r);
}

static void test_pd_as_received(void **state)
{
    (void)state;
    normalize_result r;
    /* Valid and unrepaired: the body goes upstream as received (compact). */
    char *want = q("{'routing_key':'" KEY_B "','event_action':'resolve','dedup_key':'k-1'}");
    assert_int_equal(pd("{ 'routing_key' : '" KEY_B "', 'event_action':'resolve', 'dedup_key':'k-1' }\n",
                        PDR_EVENT_ALERT, &r),
                     PDR_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.repaired, 0);
    assert_int_equal(r.evs[0].action, PDR_ACTION_RESOLVE);
    assert_string_equal(r.evs[0].dedup_key, "k-1");
    assert_string_equal(r.evs[0].body, want);
    free(want);
    normalize_result_cleanup(&r);

    /* Repairs are counted: a long summary and an http image. */
    char text[1101];
    memset(text, 'y', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    char *body = tu_printf("{'routing_key':'" KEY_A "','event_action':'trigger','dedup_key':'d',"
                           "'payload':{'summary':'%s','source':'h','severity':'error'},"
                           "'images':[{'src':'http://x/y.png'},{'src':'https://x/z.png'}]}", text);
    assert_int_equal(pd(body, PDR_EVENT_ALERT, &r), PDR_OK);
    free(body);
    assert_int_equal(r.repaired, 1);
    assert_int_equal(r.evs[0].rep.summary_chars, 1100);
    assert_int_equal(r.evs[0].rep.images_dropped, 1);
    assert_int_equal(r.evs[0].rep.dedup_key_generated, 0);
    cJSON *b = body_of(&r.evs[0]);
    assert_int_equal(n_members(at(b, "images")), 1);
    assert_str_at(b, "images.0.src", "https://x/z.png");
    assert_int_equal(strlen(str_at(b, "payload.summary")), 1023 + 3);
    cJSON_Delete(b);
    normalize_result_cleanup(&r);

    /* A change event. */
    assert_int_equal(pd("{'routing_key':'" KEY_A "','payload':{'summary':'deployed'}}", PDR_EVENT_CHANGE, &r),
                     PDR_OK);
    assert_int_equal(r.evs[0].action, PDR_ACTION_CHANGE);
    assert_string_equal(r.evs[0].dedup_key, "");
    normalize_result_cleanup(&r);
}

static void test_pd_refused(void **state)
{
    (void)state;
    normalize_result r;
    assert_refused(pd("{'routing_key':'" KEY_A "','event_action':'acknowledge'}", PDR_EVENT_ALERT, &r), &r,
                   "'dedup_key' is missing or blank (required for acknowledge)");
    assert_refused(pd("{'routing_key':'short','event_action':'resolve','dedup_key':'k'}", PDR_EVENT_ALERT, &r), &r,
                   "'routing_key' is invalid: it must be 32 characters long");
    assert_refused(pd("[1]", PDR_EVENT_ALERT, &r), &r, "Event object must be a JSON object");
    pdr_rc rc = pd("{'routing_key':", PDR_EVENT_ALERT, &r);
    assert_int_equal(r.parse_error, 1);
    assert_refused(rc, &r, "JSON parse error");
    rc = pd("not json", PDR_EVENT_CHANGE, &r);
    assert_int_equal(r.parse_error, 1);
    assert_refused(rc, &r, "JSON parse error");
}

/* ---- allocation failures ------------------------------------------------- */

static long alloc_budget = -1;   /* allocations left before one fails; -1: never */
static int alloc_failed;

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0) {
        alloc_failed = 1;
        return NULL;
    }
    if (alloc_budget > 0) alloc_budget--;
    return malloc(n);
}

typedef pdr_rc (*parser_fn)(const char *sq, normalize_result *r);

static pdr_rc pd_alert(const char *sq, normalize_result *r)
{
    return pd(sq, PDR_EVENT_ALERT, r);
}

/* Fails the n-th allocation for n = 0, 1, … until the parser gets through
** (every allocation of normalize.c and event.c, the parse included, goes
** through cJSON's allocator): each run ends in NOMEM with nothing left (a
** leak shows under ASan; never "invalid": out of memory is a temporary
** fault), or exactly the events of a run without failures. */
static void nomem_sweep(parser_fn fn, const char *body)
{
    normalize_result ref, r;
    cJSON_Hooks hooks = {failing_malloc, free};

    assert_int_equal(fn(body, &ref), PDR_OK);
    assert_true(ref.n > 0);
    pdr_json_hooks_set(&hooks);
    for (long n = 0;; n++) {
        alloc_budget = n;
        alloc_failed = 0;
        pdr_rc rc = fn(body, &r);
        alloc_budget = -1;
        if (rc == PDR_OK) {
            assert_int_equal(r.n, ref.n);
            for (size_t i = 0; i < r.n; i++) {
                /* A generated dedup_key is random: compare the rest. */
                if (!r.evs[i].rep.dedup_key_generated) assert_string_equal(r.evs[i].body, ref.evs[i].body);
                assert_string_equal(r.evs[i].dedup_key, ref.evs[i].dedup_key);
            }
        } else {
            assert_int_equal(rc, PDR_ERR_NOMEM);
            assert_int_equal(r.parse_error, 0);
            assert_true(alloc_failed);
            assert_int_equal(r.n, 0);
            assert_null(r.evs);
        }
        normalize_result_cleanup(&r);
        if (!alloc_failed) break;
        assert_true(n < 100000);
    }
    pdr_json_hooks_set(NULL);
    normalize_result_cleanup(&ref);
}

static void test_nomem(void **state)
{
    (void)state;
    nomem_sweep(am, am_full);
    nomem_sweep(am, "{'alerts':[{'status':'firing','labels':{'env':'prod','team':'db','alertname':'A'},"
                    "'annotations':{'summary':'x'}},{'status':'resolved','labels':{'env':'prod'}}]}");
    nomem_sweep(alerts, "[{'alert_name':'DiskFull','status':'firing','labels':{'env':'prod'},"
                        "'classification':{'severity':'noise','reasoning':'r'}},"
                        "{'alert_name':'DiskFull','status':'silenced','labels':{'change_event':'true'}}]");
    nomem_sweep(pd_alert, "{'routing_key':'" KEY_A "','event_action':'trigger','dedup_key':'d',"
                          "'payload':{'summary':'s','source':'h','severity':'info'}}");
    /* the repairs allocate too: UTF-8, a bad timestamp, a javascript: link,
    ** an object large enough that the duplicate check allocates */
    nomem_sweep(pd_alert, "{'routing_key':'" KEY_A "','event_action':'trigger','dedup_key':'d',"
                          "'payload':{'summary':'s\xff','source':'h\xc0\xaf','severity':'info','timestamp':'2015-02-30T00:00:00Z',"
                          "'custom_details':{'a':1,'b':2,'c':3,'d':4,'e':5,'f':6,'g':7,'h':8,'i':9,'j':10,'k':11,'l':12,"
                          "'m':13,'n':14,'o':15,'p':16,'q':17,'k\xff':18}},'links':[{'href':'javascript:x'}]}");
    nomem_sweep(am, "{'alerts':[{'status':'firing','labels':{'env':'prod','alertname':'A\xed\xa0\x80'},"
                    "'annotations':{'runbook_url':'data:x'}}]}");
}

static void test_cleanup(void **state)
{
    (void)state;
    normalize_result r;
    normalize_result_cleanup(NULL);
    assert_int_equal(am(am_full, &r), PDR_OK);
    normalize_result_cleanup(&r);
    normalize_result zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&r, &zero, sizeof r);
    normalize_result_cleanup(&r);   /* twice is harmless */
}

/* ---- event_ms: the time the source gave ------------------------------------ */

/* PagerDuty-native: nothing is added to the body (the sender stamps a body
** without payload.timestamp when it sends it, so repeats stay identical);
** event_ms is a valid payload.timestamp, else 0. */
static void test_event_ms_pagerduty(void **state)
{
    (void)state;
    normalize_result r;

    /* none given: the body as received, event_ms 0 */
    assert_int_equal(pd("{'routing_key':'" KEY_A "','event_action':'trigger','dedup_key':'d',"
                        "'payload':{'summary':'s','source':'h','severity':'info'}}", PDR_EVENT_ALERT, &r), PDR_OK);
    assert_string_equal(r.evs[0].body, "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
                                       "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}}");
    assert_int_equal(r.evs[0].event_ms, 0);
    assert_int_equal(r.evs[0].repaired, 0);
    normalize_result_cleanup(&r);

    /* invalid: dropped (a counted repair), nothing in its place, event_ms 0 */
    assert_int_equal(pd("{'routing_key':'" KEY_A "','event_action':'trigger','dedup_key':'d',"
                        "'payload':{'summary':'s','timestamp':'2015-02-29T08:42:58Z','source':'h','severity':'info'}}",
                        PDR_EVENT_ALERT, &r), PDR_OK);
    assert_string_equal(r.evs[0].body, "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
                                       "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\"}}");
    assert_int_equal(r.evs[0].rep.timestamp_dropped, 1);
    assert_int_equal(r.evs[0].repaired, 1);
    assert_int_equal(r.evs[0].event_ms, 0);
    normalize_result_cleanup(&r);

    /* given and valid: kept as written; event_ms is that instant */
    assert_int_equal(pd("{'routing_key':'" KEY_A "','event_action':'trigger','dedup_key':'d',"
                        "'payload':{'summary':'s','source':'h','severity':'info','timestamp':'2024-03-05T10:00:00+01:00'}}",
                        PDR_EVENT_ALERT, &r), PDR_OK);
    assert_string_equal(r.evs[0].body, "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
                                       "\"payload\":{\"summary\":\"s\",\"source\":\"h\",\"severity\":\"info\","
                                       "\"timestamp\":\"2024-03-05T10:00:00+01:00\"}}");
    assert_int_equal(r.evs[0].event_ms, INT64_C(1709629200000));
    normalize_result_cleanup(&r);

    /* a change event: its timestamp, else 0 and no timestamp added */
    assert_int_equal(pd("{'routing_key':'" KEY_A "','payload':{'summary':'Deployed','source':'ci',"
                        "'timestamp':'2026-11-27T12:34:56.789Z'}}", PDR_EVENT_CHANGE, &r), PDR_OK);
    assert_int_equal(r.evs[0].event_ms, INT64_C(1795782896789));
    normalize_result_cleanup(&r);
    assert_int_equal(pd("{'routing_key':'" KEY_A "','payload':{'summary':'Deployed','source':'ci'}}", PDR_EVENT_CHANGE, &r),
                     PDR_OK);
    assert_string_equal(r.evs[0].body, "{\"routing_key\":\"" KEY_A "\",\"payload\":{\"summary\":\"Deployed\","
                                       "\"source\":\"ci\"}}");
    assert_int_equal(r.evs[0].event_ms, 0);
    normalize_result_cleanup(&r);

    /* acknowledge and resolve name no time */
    assert_int_equal(pd("{'routing_key':'" KEY_A "','event_action':'resolve','dedup_key':'d'}", PDR_EVENT_ALERT, &r),
                     PDR_OK);
    assert_string_equal(r.evs[0].body, "{\"routing_key\":\"" KEY_A "\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}");
    assert_int_equal(r.evs[0].event_ms, 0);
    normalize_result_cleanup(&r);
}

/* Alerts: a trigger's time is startsAt | starts_at; a resolve's endsAt |
** ends_at; Go's zero time, an invalid one or none is 0, and the body holds
** no timestamp pdrelay made up. */
static void test_event_ms_alerts(void **state)
{
    (void)state;
    normalize_result r;

    assert_int_equal(am("{'version':'4','alerts':["
                        "{'status':'firing','labels':{'alertname':'A','env':'prod'},'startsAt':'2024-03-05T10:00:00Z'},"
                        "{'status':'resolved','labels':{'alertname':'B','env':'prod'},'startsAt':'2024-03-05T10:00:00Z',"
                        " 'endsAt':'2024-03-05T11:30:00.5Z'},"
                        "{'status':'resolved','labels':{'alertname':'C','env':'prod'},'endsAt':'0001-01-01T00:00:00Z'},"
                        "{'status':'resolved','labels':{'alertname':'D','env':'prod'},'endsAt':'soon'},"
                        "{'status':'firing','labels':{'alertname':'E','env':'prod'}},"
                        "{'status':'firing','labels':{'alertname':'F','env':'prod'},'startsAt':'0001-01-01T00:00:00Z'}]}",
                        &r),
                     PDR_OK);
    assert_int_equal(r.n, 6);
    assert_int_equal(r.evs[0].event_ms, INT64_C(1709632800000));
    assert_true(strstr(r.evs[0].body, "\"timestamp\":\"2024-03-05T10:00:00Z\"") != NULL);
    assert_int_equal(r.evs[1].event_ms, INT64_C(1709638200500));
    assert_int_equal(r.evs[2].event_ms, 0);   /* Go's zero time */
    assert_int_equal(r.evs[3].event_ms, 0);   /* not ISO 8601 */
    assert_int_equal(r.evs[4].event_ms, 0);   /* none */
    assert_int_equal(r.evs[5].event_ms, 0);   /* Go's zero time */
    for (size_t i = 1; i < r.n; i++) {
        cJSON *b = body_of(&r.evs[i]);
        assert_null(at(b, "payload.timestamp"));
        cJSON_Delete(b);
    }
    assert_int_equal(r.repaired, 0);
    normalize_result_cleanup(&r);

    assert_int_equal(alerts("[{'alert_name':'A','status':'firing','labels':{'env':'prod'},"
                            " 'starts_at':'2024-03-05T10:00:00.25-01:00'},"
                            "{'alert_name':'B','status':'resolved','labels':{'env':'prod'},"
                            " 'ends_at':'2024-03-05T13:00:00+01:00'},"
                            "{'alert_name':'C','status':'acknowledged','labels':{'env':'prod'},"
                            " 'ends_at':'2024-03-05T13:00:00+01:00'},"
                            "{'alert_name':'D','status':'firing','labels':{'env':'prod','change_event':'true'}},"
                            "{'alert_name':'E','status':'firing','labels':{'env':'prod'}}]", &r),
                     PDR_OK);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.evs[0].event_ms, INT64_C(1709636400250));
    assert_int_equal(r.evs[1].event_ms, INT64_C(1709640000000));
    assert_int_equal(r.evs[2].action, PDR_ACTION_ACKNOWLEDGE);
    assert_int_equal(r.evs[2].event_ms, 0);   /* an acknowledge names no time */
    assert_int_equal(r.evs[3].action, PDR_ACTION_CHANGE);
    assert_int_equal(r.evs[3].event_ms, 0);
    assert_null(strstr(r.evs[3].body, "timestamp"));
    assert_int_equal(r.evs[4].event_ms, 0);
    assert_null(strstr(r.evs[4].body, "\"timestamp\""));
    normalize_result_cleanup(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_am_trigger_fields),
        cmocka_unit_test(test_am_body_not_nul_terminated),
        cmocka_unit_test(test_am_fallbacks),
        cmocka_unit_test(test_am_severity_mapping),
        cmocka_unit_test(test_am_http_snapshot_dropped),
        cmocka_unit_test(test_am_blank_urls_skipped),
        cmocka_unit_test(test_am_long_summary_cut),
        cmocka_unit_test(test_am_resolve_three_keys),
        cmocka_unit_test(test_am_change_event),
        cmocka_unit_test(test_am_routing),
        cmocka_unit_test(test_am_errors),
        cmocka_unit_test(test_am_event_cap),
        cmocka_unit_test(test_alerts_single_ai),
        cmocka_unit_test(test_alerts_array_statuses),
        cmocka_unit_test(test_alerts_change_event),
        cmocka_unit_test(test_alerts_errors),
        cmocka_unit_test(test_pd_trigger_generated_key),
        cmocka_unit_test(test_pd_as_received),
        cmocka_unit_test(test_pd_refused),
        cmocka_unit_test(test_nomem),
        cmocka_unit_test(test_cleanup),
        cmocka_unit_test(test_event_ms_pagerduty),
        cmocka_unit_test(test_event_ms_alerts),
    };
    return cmocka_run_group_tests_name("normalize", tests, group_setup, group_teardown);
}
