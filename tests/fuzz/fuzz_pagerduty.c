/*
** fuzz_pagerduty.c — libFuzzer target for normalize_pagerduty(): any bytes, as
** both an alert event and a change event. Checks what the API promises: an
** event body that is JSON again, a refusal with reasons and no events.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "normalize.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    pdr_log_set_level(PDR_LOG_ERROR);
    return 0;
}

static void check(pdr_rc rc, const normalize_result *r)
{
    if (rc == PDR_OK) {
        if (r->n != 1 || !r->evs[0].body || strlen(r->evs[0].body) != r->evs[0].body_len) abort();
        cJSON *j = cJSON_Parse(r->evs[0].body);
        if (!j) abort();
        cJSON_Delete(j);
    } else if (rc == PDR_ERR_INVALID) {
        if (r->n || r->evs || !r->errs.n) abort();
    } else if (rc != PDR_ERR_NOMEM) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    normalize_result r;
    pdr_rc rc = normalize_pagerduty((const char *)data, size, PDR_EVENT_ALERT, &r);
    check(rc, &r);
    normalize_result_cleanup(&r);
    rc = normalize_pagerduty((const char *)data, size, PDR_EVENT_CHANGE, &r);
    check(rc, &r);
    normalize_result_cleanup(&r);
    return 0;
}
