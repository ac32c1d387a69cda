/*
** event.h — PagerDuty Events API v2 bodies: the rules PagerDuty applies, and
** the repairs pdrelay makes so a page is not lost for a reason it can fix.
**
** pdr_event_check() is the one validator: `pdrelay send` builds an event and
** passes it here, and the HTTP ingest runs every received body through it.
** What is validated is what is sent: the body upstream is printed from the
** checked tree, never copied from the received bytes.
**
** PagerDuty's rules (Events API v2), as enforced here:
**   routing_key         exactly 32 characters, letters and digits
**   event_action        trigger | acknowledge | resolve (exact, case-sensitive)
**   dedup_key           at most 255 characters; required for acknowledge and
**                       resolve (a trigger without one gets a generated UUID,
**                       as PagerDuty does)
**   payload             required for trigger and change events; summary
**                       (at most 1024 characters) and source required,
**                       severity critical | error | warning | info (trigger);
**                       timestamp ISO 8601; component, group, class strings
**   images[]            src required, HTTPS; href and alt optional
**   links[]             href required; text optional
**   client, client_url  optional strings
**   the whole event     at most 512 KB
** "Characters" are Unicode code points of the UTF-8 text. Every string must
** be valid UTF-8 without NUL, and an object may not name a member twice
** (PagerDuty takes the last, cJSON the first: the two would disagree).
**
** Repairs (counted in pdr_repairs; the event is still sent):
**   invalid UTF-8        each maximal invalid subsequence (overlong forms,
**                        UTF-16 surrogates, code points over U+10FFFF, stray
**                        bytes) becomes U+FFFD, in values and member names
**   summary too long     cut to 1024 characters, the last being "…"
**   timestamp            dropped when it is not a valid ISO 8601 date-time
**   URLs                 a link whose href, an image href or a client_url
**                        that is not an http(s) URL with a host is dropped;
**                        an image whose src is not HTTPS is dropped
**   size                 custom_details members shrunk until 512 KB fits
** Refused (PDR_ERR_INVALID): duplicate members at any depth, NUL in a
** string, a wrong type, a missing field, an enum or length out of range.
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
    size_t utf8_repaired;     /* invalid UTF-8 sequences replaced with U+FFFD */
    int timestamp_dropped;    /* 1 when an invalid payload.timestamp was removed */
    int urls_dropped;         /* links, image hrefs and client_url that were not http(s) */
    int numbers_changed;      /* numbers JSON carries as a double: out of range (sent as
                              ** null) or integers past 2^53 (rounded) */
} pdr_repairs;

/* Did pdr_event_check() make a repair worth logging? (A generated
** dedup_key is not one: PagerDuty would do the same.) */
int pdr_repairs_any(const pdr_repairs *rep);

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

/* cJSON's allocator for all of pdrelay: pdr_malloc and pdr_free (pdr.h; or inner's
** functions, for tests that make allocations fail), noting a failed
** allocation in a thread-local flag, so a parser can tell running out of
** memory from a syntax error (cJSON returns NULL for both). Installed before
** main(); call again with NULL to restore. Not for use while other threads
** use cJSON. */
void pdr_json_hooks_set(const cJSON_Hooks *inner);

/* Parses exactly len bytes of body as one JSON value (trailing whitespace
** allowed). Returns PDR_OK with *root, PDR_ERR_INVALID for a body that is
** not JSON, or PDR_ERR_NOMEM. A body that holds the NUL character (a raw
** 0x00 byte, or the escape \u0000, which cJSON would silently cut the
** string at) is parsed with U+FFFF in its place and *nul set, so that
** pdr_json_sanitize() can name the member and refuse it. */
pdr_rc pdr_json_parse(const char *body, size_t len, cJSON **root, int *nul);

/* Makes a received tree fit to check and forward, before any field is read:
** repairs invalid UTF-8 in every string value and member name (counting the
** sequences in *utf8_repaired), then refuses (PDR_ERR_INVALID, errs filled)
** an object that names a member twice, at any depth, and (with nul, from
** pdr_json_parse) the string that held NUL. what names the whole ("event",
** "body") in the sentences. Returns PDR_OK, PDR_ERR_INVALID or
** PDR_ERR_NOMEM. */
pdr_rc pdr_json_sanitize(cJSON *root, const char *what, int nul, size_t *utf8_repaired,
                         pdr_event_errors *errs);

/* Is s a valid ISO 8601 date-time, as PagerDuty takes payload.timestamp:
** YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|+HHMM|-HH:MM|-HHMM], every
** field in range (days of the month, leap years, a leap second 60)? */
int pdr_timestamp_valid(const char *s);

/* The instant s names, in ms since the Unix epoch: s as pdr_timestamp_valid()
** takes it (Z, +hh:mm, +hhmm, -hh:mm, -hhmm; a fraction of any length, cut to
** ms; a leap second 60 is the first second of the next minute; no offset
** at all is taken as UTC). Returns
** PDR_OK, or PDR_ERR_INVALID (s not valid, or before year 1; *ms_out
** untouched). */
pdr_rc pdr_timestamp_parse_ms(const char *s, int64_t *ms_out);

/* ms as ISO 8601 UTC with milliseconds, "2026-11-30T12:34:56.789Z" (24
** characters), into out (at least PDR_TIMESTAMP_SIZE bytes); returns out.
** Years 0..9999 (ms outside them are clamped to the range). */
#define PDR_TIMESTAMP_SIZE 25
char *pdr_timestamp_format(int64_t ms, char *out);

/* Is s an http or https URL (scheme in any case) with a host? */
int pdr_url_http(const char *s);

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
** is longer. Returns a string to free with cJSON_free, or NULL when no cut
** is needed (or on allocation failure, with *nomem set). *chars_out = original length in
** characters. */
char *pdr_utf8_cut(const char *s, size_t max_chars, size_t *chars_out, int *nomem);

#endif /* PDR_EVENT_H */
