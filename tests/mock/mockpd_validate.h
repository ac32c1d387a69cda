/*
** mockpd_validate.h — the mock PagerDuty's event validator, as strict as the
** real Events API v2, as a function: mock_pd answers with it, and tests call
** it in-process to check that what pdrelay sends is what PagerDuty takes and
** means what pdrelay validated (tests/unit/test_differential.c).
**
** It is written apart from pdrelay's own validator (agent/event.c) and never
** links it, so the two check each other. The rules:
**   the body            JSON (else "JSON parse error"), an object, at most
**                       512 KB; every string and member name valid UTF-8
**                       without NUL; no object names a member twice
**   routing_key         32 characters, letters and digits
**   event_action        trigger | acknowledge | resolve
**   dedup_key           at most 255 characters; required for acknowledge
**                       and resolve
**   client, client_url  strings; client_url an http(s) URL with a host
**   payload (trigger, change)  summary (at most 1024 characters) and source
**                       required (source optional for change), severity
**                       critical | error | warning | info (trigger);
**                       timestamp an ISO 8601 date-time; component, group,
**                       class strings
**   images[]            src an HTTPS URL; href an http(s) URL; alt a string
**   links[]             href an http(s) URL; text a string
** "Characters" are Unicode code points.
**
** Ownership: the result holds the parsed body; free it with
** mockpd_check_free(). The extracted strings point into it.
*/
#ifndef MOCKPD_VALIDATE_H
#define MOCKPD_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define MOCKPD_EVENT_MAX (512 * 1024)  /* PagerDuty's event size limit: 400 */

typedef enum mockpd_verdict {
    MOCKPD_VALID,
    MOCKPD_NOT_JSON,   /* 400 "Unrecognized object", errors ["JSON parse error"] */
    MOCKPD_INVALID,    /* 400 "invalid event", errors[] */
    MOCKPD_TOO_BIG     /* larger than the mock takes at all (413) */
} mockpd_verdict;

/* What a body means to PagerDuty. */
typedef struct mockpd_check {
    mockpd_verdict v;
    cJSON *doc;        /* the parsed body, or NULL */
    cJSON *errors;     /* MOCKPD_INVALID: an array of messages (else possibly empty) */
    /* As PagerDuty reads them (NULL when absent or not a string);
    ** event_action is "change" for a change event, which has no dedup_key;
    ** severity is a trigger's only. */
    const char *routing_key, *event_action, *dedup_key, *severity, *summary;
    bool is_change;
    bool is_trigger;
} mockpd_check;

/* Validates body (len bytes, need not be NUL-terminated) as an alert event
** (or a change event with is_change); too_big: the body was cut off (the
** verdict is MOCKPD_TOO_BIG). Fills *cr. */
void mockpd_validate(const char *body, size_t len, bool too_big, bool is_change, mockpd_check *cr);

/* Does cr's errors[] hold exactly msg? */
bool mockpd_check_has_error(const mockpd_check *cr, const char *msg);

void mockpd_check_free(mockpd_check *cr);

#endif /* MOCKPD_VALIDATE_H */
