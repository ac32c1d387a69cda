/*
** mockpd_diff.h — the differential property of pdrelay's ingest, shared by
** tests/unit/test_differential.c and the fuzz target
** tests/fuzz/fuzz_ingest_diff.c: an event pdrelay validated (a normalize_event)
** must be accepted by the mock PagerDuty's validator and mean the same to it
** (routing_key, event_action, dedup_key, severity), and a PagerDuty-native
** body the mock takes as is must be taken by pdrelay with the same meaning.
** Header-only: it needs normalize.h (pdrelay) and mockpd_validate.h (the
** mock), which the mock's own library never links together.
*/
#ifndef MOCKPD_DIFF_H
#define MOCKPD_DIFF_H

#include <stdio.h>
#include <string.h>

#include "mockpd_validate.h"
#include "normalize.h"

static const char *mockpd_diff_s(const char *s)
{
    return s ? s : "(null)";
}

/* NULL when e's body arrives meaning what e says; else why, in buf. */
static const char *mockpd_diff_event(const normalize_event *e, char *buf, size_t n)
{
    mockpd_check cr;
    int change = e->action == PDR_ACTION_CHANGE;
    const char *want_dk = change ? NULL : e->dedup_key;
    const char *want_sev = e->action == PDR_ACTION_TRIGGER ? e->severity : NULL;
    const char *why = NULL;

    mockpd_validate(e->body, e->body_len, false, change, &cr);
    if (e->body_len != strlen(e->body)) {
        snprintf(buf, n, "body_len is not the body's length");
        why = buf;
    } else if (cr.v != MOCKPD_VALID) {
        char *errs = cr.errors ? cJSON_PrintUnformatted(cr.errors) : NULL;
        snprintf(buf, n, "the mock refuses the event: %s\n  sent: %.2000s", errs ? errs : "not JSON", e->body);
        cJSON_free(errs);
        why = buf;
    } else if (strcmp(mockpd_diff_s(cr.routing_key), e->routing_key) ||
               strcmp(mockpd_diff_s(cr.event_action), pdr_action_name(e->action)) ||
               strcmp(mockpd_diff_s(cr.dedup_key), mockpd_diff_s(want_dk)) ||
               strcmp(mockpd_diff_s(cr.severity), mockpd_diff_s(want_sev)) ||
               (e->action == PDR_ACTION_TRIGGER && !e->severity[0])) {
        snprintf(buf, n, "the event means something else upstream\n  validated: %s %s %s %s\n"
                         "  arrives:   %s %s %s %s\n  sent: %.2000s",
                 e->routing_key, pdr_action_name(e->action), mockpd_diff_s(want_dk), mockpd_diff_s(want_sev),
                 mockpd_diff_s(cr.routing_key), mockpd_diff_s(cr.event_action), mockpd_diff_s(cr.dedup_key),
                 mockpd_diff_s(cr.severity), e->body);
        why = buf;
    }
    mockpd_check_free(&cr);
    return why;
}

/* For a PagerDuty-native body (change: sent to the change endpoint) that
** normalize_pagerduty answered with rc and r: NULL when pdrelay agrees with the
** mock, else why. A body the mock takes as is must be taken, with the same
** routing_key, event_action, severity and (when the client gave a non-blank
** one) dedup_key: no over-refusal, no change of meaning. */
static const char *mockpd_diff_native(const char *body, size_t len, int change, pdr_rc rc, const normalize_result *r,
                                      char *buf, size_t n)
{
    mockpd_check in;
    const char *why = NULL;
    mockpd_validate(body, len, false, change, &in);
    if (in.v == MOCKPD_VALID) {
        if (rc != PDR_OK || r->n != 1) {
            snprintf(buf, n, "pdrelay refused a body PagerDuty takes: %s", r->errs.n ? r->errs.msgs[0] : "-");
            why = buf;
        } else {
            const normalize_event *e = &r->evs[0];
            int client_key = in.dedup_key && strspn(in.dedup_key, " \t\r\n") < strlen(in.dedup_key);
            if (strcmp(mockpd_diff_s(in.routing_key), e->routing_key) ||
                strcmp(mockpd_diff_s(in.event_action), pdr_action_name(e->action)) ||
                (in.is_trigger && strcmp(mockpd_diff_s(in.severity), e->severity)) ||
                (client_key && strcmp(in.dedup_key, e->dedup_key))) {
                snprintf(buf, n, "pdrelay changed the meaning of a valid event\n  sent: %.2000s", e->body);
                why = buf;
            }
        }
    }
    mockpd_check_free(&in);
    return why;
}

#endif /* MOCKPD_DIFF_H */
