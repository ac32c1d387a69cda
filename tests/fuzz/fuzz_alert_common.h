/*
** fuzz_alert_common.h — the body of the two alert-parser fuzz targets
** (fuzz_alertmanager.c, fuzz_alerts.c): the fixed config of fuzz_common.h and
** the checks of what normalize.h promises: every event body is JSON again
** with the event's routing key; a refusal has reasons and no events; the
** counts add up. Header-only so each fuzzer stays one translation unit.
*/
#ifndef PDR_FUZZ_ALERT_COMMON_H
#define PDR_FUZZ_ALERT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "normalize.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef pdr_rc (*normalize_parse_fn)(const char *body, size_t len, const pdr_config *cfg, normalize_result *out);

static pdr_config *cfg;

/* Is msg one of pdr_event_check()'s sentences? (Not one about NUL or a
** duplicate member: those name the body's own members, refused before any
** event is made.) */
static int event_error(const char *msg)
{
    if (strstr(msg, "holds the NUL character") || !strncmp(msg, "duplicate member", 16)) return 0;
    static const char *const prefixes[] = {"'payload", "'links", "'images", "'routing_key'",
                                           "'dedup_key'", "'event_action'", "'client", "Event object"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncmp(msg, prefixes[i], strlen(prefixes[i]))) return 1;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cfg = fuzz_config();
    return 0;
}

/* Runs one input through parse (normalize_alertmanager or normalize_alerts). */
static int fuzz_alert_parser(normalize_parse_fn parse, const uint8_t *data, size_t size)
{
    normalize_result r;
    pdr_rc rc = parse((const char *)data, size, cfg, &r);
    if (rc == PDR_OK) {
        if (r.unrouted > r.alerts || r.n > 2 * r.alerts || r.repaired > r.n) abort();
        for (size_t i = 0; i < r.n; i++) {
            const normalize_event *e = &r.evs[i];
            if (!e->body || strlen(e->body) != e->body_len || !e->target || !e->fingerprint) abort();
            if (e->action == PDR_ACTION_CHANGE ? e->dedup_key[0] != '\0' : strlen(e->dedup_key) != 64)
                abort();
            cJSON *j = cJSON_Parse(e->body);
            const cJSON *rk = cJSON_GetObjectItemCaseSensitive(j, "routing_key");
            if (!cJSON_IsString(rk) || strcmp(rk->valuestring, e->routing_key) != 0) abort();
            cJSON_Delete(j);
        }
    } else if (rc == PDR_ERR_INVALID) {
        if (r.n || r.evs || !r.errs.n) abort();
        /* Events made from valid alerts must pass pdr_event_check(): its
        ** sentences never refuse an alert body (a 64 KB input cannot reach
        ** the 512 KB limit). */
        for (size_t i = 0; i < r.errs.n; i++)
            if (event_error(r.errs.msgs[i])) abort();
    } else if (rc != PDR_ERR_NOMEM) {
        abort();
    }
    normalize_result_cleanup(&r);
    return 0;
}

#endif
