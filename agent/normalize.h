/*
** normalize.h — from a received HTTP body to the events pdrelay queues.
**
** Three parsers, one per kind of body the ingest server takes:
**   normalize_pagerduty()    POST /v2/enqueue, /v2/events, /v2/change/enqueue:
**                       a PagerDuty event, checked and repaired by
**                       pdr_event_check(); it carries its own routing_key.
**   normalize_alertmanager() POST /v1/alertmanager: an Alertmanager webhook body
**                       (version "4"); each alert x each matching PagerDuty
**                       target is one event; each webhook target that any
**                       alert matches is one event (the payload, its alerts
**                       cut down to those routed there; agent/webhook.h).
**   normalize_alerts()       POST /v1/alerts: one alert or an array of alerts in
**                       the original service's model; each alert x each
**                       matching target is one event (for a webhook target:
**                       the alert object).
** An alert that matches no PagerDuty target also goes to [agent]
** fallback_target when one is set (unless its own matchers sent it there).
**
** Every parser first parses and sanitizes the whole body (pdr_json_parse,
** pdr_json_sanitize in event.h): invalid UTF-8 is replaced with U+FFFD
** (counted in each event's rep.utf8_repaired), and a body with a duplicate
** member at any depth or a NUL in a string is refused, naming it. Only then
** are fields read, so an event's routing_key, event_action, dedup_key and
** severity are the ones its printed body carries. Out of memory anywhere,
** the JSON parse included, is PDR_ERR_NOMEM, never PDR_ERR_INVALID.
**
** Threads: reentrant; the ingest's event-loop threads call them at once.
**
** They are pure: no I/O but one log line per body for unrouted alerts, no
** database (the dedup_key of an alert is the deterministic one,
** pdr_dedup_key_derive(routing_key, fingerprint), so an acknowledge or a
** resolve finds its incident even after the dedup table forgot it).
**
** Ownership: the result is caller-owned and released with
** normalize_result_cleanup() (its memory comes from cJSON's allocator, so tests
** can fail every allocation of a parse); cfg is borrowed for the call and
** the events point into nothing of it (target names are copied).
*/
#ifndef PDR_NORMALIZE_H
#define PDR_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "pdr.h"

/* A cap on events one body may produce (alerts x targets). */
#define NORMALIZE_MAX_EVENTS 10000

/* One event to queue. */
typedef struct normalize_event {
    char routing_key[PDR_OUTBOX_KEY_MAX + 1]; /* or "webhook:NAME" for a webhook
                                ** target (agent/webhook.h: what such an event is) */
    pdr_action action;
    char *dedup_key;            /* up to PDR_DEDUP_KEY_MAX characters; "" for change events, never NULL */
    char severity[16];          /* payload.severity of a trigger, else "" */
    char *fingerprint;          /* NULL for PagerDuty-native events and webhook targets */
    char *target;               /* target name; NULL for PagerDuty-native events */
    char *body;                 /* JSON text to POST upstream (compact) */
    size_t body_len;
    int64_t event_ms;           /* when it happened as the source said, ms since the
                                ** epoch; 0: the source gave no time. A trigger's or
                                ** change event's payload.timestamp as stored (from
                                ** Alertmanager startsAt, /v1/alerts starts_at); a
                                ** resolve's endsAt | ends_at when valid and not Go's zero time;
                                ** 0 for an acknowledge, for no time, and for an
                                ** invalid one (dropped). pdrelay adds no time to the
                                ** body: the sender stamps payload.timestamp with the
                                ** row's created_ms when it sends one without it. */
    pdr_repairs rep;            /* what pdr_event_check() repaired */
    int repaired;               /* 1 when any repair was made */
} normalize_event;

typedef struct normalize_result {
    normalize_event *evs;            /* array of n */
    size_t n;
    size_t alerts;              /* alerts in the body (1 for PagerDuty-native) */
    size_t unrouted;            /* alerts that matched no target, and there is no
                                ** [agent] fallback_target (one info line per body) */
    char unrouted_first[64];    /* the name of the first of them, for that line */
    size_t utf8_repaired;       /* invalid UTF-8 sequences replaced in the body */
    size_t repaired;            /* events with at least one repair */
    int parse_error;            /* 1: the body is not JSON (PagerDuty: "Unrecognized object") */
    pdr_event_errors errs;      /* why the body was refused (PDR_ERR_INVALID) */
} normalize_result;

/* Each returns
**   PDR_OK           out->evs holds 0..n events (0 when every alert was
**                    unrouted); out->unrouted, out->repaired counted
**   PDR_ERR_INVALID  the body is refused as a whole: out->errs holds the
**                    PagerDuty-style sentences for errors[], out->parse_error
**                    tells a JSON syntax error from a wrong shape; no events
**   PDR_ERR_NOMEM
** body need not be NUL-terminated. out is zeroed first. */
pdr_rc normalize_pagerduty(const char *body, size_t len, pdr_event_kind kind, normalize_result *out);
pdr_rc normalize_alertmanager(const char *body, size_t len, const pdr_config *cfg, normalize_result *out);
pdr_rc normalize_alerts(const char *body, size_t len, const pdr_config *cfg, normalize_result *out);

void normalize_result_cleanup(normalize_result *r);

#endif /* PDR_NORMALIZE_H */
