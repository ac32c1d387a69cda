/*
** event.h — PagerDuty Events API v2 bodies: the rules PagerDuty applies, and
** the repairs pdrelay makes so a page is not lost for a reason it can fix.
**
** pdr_event_check() is the one validator: `pdrelay send` builds an event and
** passes it here, and the HTTP ingest runs every received body through it.
** It repairs in place what DESIGN.md says to repair (summary over 1024
** characters cut UTF-8-safely with "…", custom_details shrunk until the event
** fits 512 KB, images with a non-HTTPS src dropped, a trigger without
** dedup_key given a generated one) and reports the rest as PagerDuty would,
** as a list of error strings for a 400 body.
**
** Ownership: the cJSON tree stays the caller's; the check only edits it.
*/
#ifndef PDR_EVENT_H
#define PDR_EVENT_H

#include <cjson/cJSON.h>

#include "pdr.h"

#define PDR_SUMMARY_MAX_CHARS 1024
#define PDR_EVENT_MAX_BYTES (512 * 1024)
#define PDR_EVENT_MAX_ERRORS 16

/* What pdr_event_check() repaired. */
typedef struct pdr_repairs {
    size_t summary_chars;     /* original length in characters when cut, else 0 */
    int images_dropped;       /* images with a non-HTTPS src removed */
    int details_shrunk;       /* custom_details members replaced to fit 512 KB */
    int dedup_key_generated;  /* 1 when a trigger got a generated dedup_key */
} pdr_repairs;

/* Why an event is invalid: PagerDuty-style sentences for errors[]. */
typedef struct pdr_event_errors {
    char msgs[PDR_EVENT_MAX_ERRORS][192];
    size_t n;
} pdr_event_errors;

/* Appends one formatted sentence to errs (dropped past PDR_EVENT_MAX_ERRORS):
** the one way every parser words a refusal. */
void pdr_event_err_add(pdr_event_errors *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What kind of endpoint the event came for. */
typedef enum pdr_event_kind {
    PDR_EVENT_ALERT = 0,      /* /v2/enqueue: trigger, acknowledge, resolve */
    PDR_EVENT_CHANGE = 1      /* /v2/change/enqueue */
} pdr_event_kind;

/* Validates ev (a parsed JSON value of any type) for kind and repairs it in
** place. Returns PDR_OK (possibly with repairs noted in *rep) or
** PDR_ERR_INVALID with errs filled; rep and errs may not be NULL. On PDR_OK
** for an alert event, ev holds a routing_key, an event_action and (for every
** action) a dedup_key. */
pdr_rc pdr_event_check(cJSON *ev, pdr_event_kind kind, pdr_repairs *rep, pdr_event_errors *errs);

/* pdr_event_check(), and the event as compact JSON text after its repairs,
** the body to send: *text_out (free with cJSON_free) and *len_out. The
** check measures the size on that text, so a caller that needs it gets it
** without printing the event a second time. */
pdr_rc pdr_event_check_text(cJSON *ev, pdr_event_kind kind, pdr_repairs *rep, pdr_event_errors *errs,
                            char **text_out, size_t *len_out);

/* The action of a checked event (PDR_ACTION_CHANGE for change events). */
pdr_action pdr_event_action(const cJSON *ev, pdr_event_kind kind);

/* Generates a random dedup key (a UUID v4 string, 36 chars + NUL), as
** PagerDuty does for a trigger that has none. */
pdr_rc pdr_event_random_key(char out[37]);

/* Cuts s (UTF-8) to at most max_chars characters, the last being "…", if it
** is longer. Returns a malloc'd string, or NULL when no cut is needed (or on
** allocation failure, with *nomem set). *chars_out = original length in
** characters. */
char *pdr_utf8_cut(const char *s, size_t max_chars, size_t *chars_out, int *nomem);

#endif /* PDR_EVENT_H */
