/*
** annotate.h — what the sender changes in a body at send time, as pure
** functions (no clock, no database: every time is passed in).
**
** The stamp, for every send: a trigger or change event stored without
** payload.timestamp (pdrelay adds none at ingest, so repeats stay
** byte-identical and coalesce) gets stamp_ms, the row's created_ms (when
** pdrelay received it), as ISO 8601 UTC with ms; one that has a timestamp
** keeps it.
**
** Two annotations, both for an event that waited in the outbox:
**   resolved while offline  ([outbox] resolved_while_queued = note): a
**                           trigger whose resolve is queued behind it goes
**                           out with severity "info" and its summary
**                           prefixed "[resolved while offline] ", so
**                           PagerDuty keeps the record but severity-based
**                           urgency rules wake nobody;
**   delay note              ([outbox] delay_note_after): custom_details
**                           gets pdrelay = {queued_at, attempts, delayed_s}
**                           (and resolved_at, when resolved while offline).
** A change event gets the note only (it has no severity and is never
** resolved). An acknowledge or resolve is sent as it is.
**
** Never produces a body PagerDuty would refuse: the summary stays within
** PDR_SUMMARY_MAX_CHARS characters (the original is cut, ending in "…" as
** event.c cuts, on a UTF-8 character boundary, so the prefix fits); the body
** stays within PDR_EVENT_MAX_BYTES (a note that would not fit is left out,
** then a stamp that would not fit; the event is not); a custom_details that
** is not an object, or that already holds a member "pdrelay" from the
** client, is left alone (no note).
*/
#ifndef PDR_ANNOTATE_H
#define PDR_ANNOTATE_H

#include <stddef.h>
#include <stdint.h>

#include "pdr.h"

#define ANNOTATE_RESOLVED_PREFIX "[resolved while offline] "

typedef struct annotate_opts {
    int resolved_while_offline;   /* 1: severity "info", summary prefixed "[resolved while offline] " */
    int64_t resolved_ms;          /* when it resolved (event_ms of the resolve), 0 unknown; with
                                  ** resolved_while_offline: custom_details.pdrelay.resolved_at */
    int delay_note;               /* 1: add custom_details.pdrelay {queued_at, attempts, delayed_s} */
    int64_t queued_ms;            /* when pdrelay received it (row created_ms) */
    int64_t attempts;             /* attempts made before this one */
    int64_t now_ms;               /* send time */
    int64_t stamp_ms;             /* > 0: a trigger's or change event's body without payload.timestamp
                                  ** gets this time (ISO 8601 UTC with ms) */
} annotate_opts;

/* Rewrites a trigger's or change event's body (JSON text, len bytes) per o
** (all of it in one parse and print) into a new malloc'd NUL-terminated
** compact JSON *out / *outlen (free()).
** Returns PDR_OK; PDR_ERR_NOT_FOUND when nothing applies (an acknowledge or
** resolve, no payload, nothing asked, a stamp on a body that has a
** timestamp, nothing could be added): the caller
** sends the body as is; PDR_ERR_NOMEM; PDR_ERR_INVALID when the body is not
** a JSON object. queued_at and resolved_at are ISO 8601 UTC with ms;
** delayed_s = (now_ms - queued_ms) / 1000, an integer. */
pdr_rc annotate_body(const char *body, size_t len, const annotate_opts *o, char **out, size_t *outlen);

#endif /* PDR_ANNOTATE_H */
