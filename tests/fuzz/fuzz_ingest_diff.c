/*
** fuzz_ingest_diff.c — libFuzzer target for "what is validated is what is
** sent": any bytes through every ingest parser (normalize_pagerduty as an alert
** and as a change event, normalize_alertmanager, normalize_alerts, with the fixed
** config of fuzz_common.h), and each event a parser takes through the mock
** PagerDuty's validator (tests/mock/mockpd_validate.c). Aborts when an event
** would be refused upstream or mean something else there than what pdrelay
** validated (routing_key, event_action, dedup_key, severity), when a
** PagerDuty-native body the mock takes is refused or changed by pdrelay, or
** when a refusal has no reason (mockpd_diff.h holds the property).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "mockpd_diff.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pdr_config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cfg = fuzz_config();
    return 0;
}

static void violated(const char *parser, const char *why)
{
    fprintf(stderr, "fuzz_ingest_diff: %s: %s\n", parser, why);
    abort();
}

static void check(const char *parser, const char *body, size_t len, int native_change, pdr_rc rc,
                  const normalize_result *r)
{
    char why[4096];
    if (rc == PDR_OK) {
        for (size_t i = 0; i < r->n; i++)
            if (mockpd_diff_event(&r->evs[i], why, sizeof why)) violated(parser, why);
    } else if (rc == PDR_ERR_INVALID) {
        if (r->n || r->evs || !r->errs.n) violated(parser, "a refusal without reasons, or with events");
    } else if (rc != PDR_ERR_NOMEM) {
        violated(parser, pdr_strerror(rc));
    }
    if (native_change >= 0 && mockpd_diff_native(body, len, native_change, rc, r, why, sizeof why))
        violated(parser, why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    normalize_result r;
    pdr_rc rc;

    rc = normalize_pagerduty(body, size, PDR_EVENT_ALERT, &r);
    check("normalize_pagerduty(alert)", body, size, 0, rc, &r);
    normalize_result_cleanup(&r);
    rc = normalize_pagerduty(body, size, PDR_EVENT_CHANGE, &r);
    check("normalize_pagerduty(change)", body, size, 1, rc, &r);
    normalize_result_cleanup(&r);
    rc = normalize_alertmanager(body, size, cfg, &r);
    check("normalize_alertmanager", body, size, -1, rc, &r);
    normalize_result_cleanup(&r);
    rc = normalize_alerts(body, size, cfg, &r);
    check("normalize_alerts", body, size, -1, rc, &r);
    normalize_result_cleanup(&r);
    return 0;
}
