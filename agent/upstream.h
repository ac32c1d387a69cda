/*
** upstream.h — the ordered uplinks of [pagerduty] url (config.h
** pdr_upstream): which one a request goes to, failover to the next when the
** active one fails, failback to the first once it has answered probes for
** [pagerduty] failback_after. The sender (sender.c) owns one and calls it
** from its thread only; it decides what a failure is (its link_failure())
** and does the logging, the metric and the database; this file only keeps
** the state. With one url nothing here ever changes: every request goes to
** it and every failure is the link's (sender.h invariant 7).
**
** THE STATE (sender.h invariant 10)
**
**   active     the upstream requests go to: the first at the start.
**   down[i]    i failed (as the active one, as the probe, or a request to
**              it failed while another was active) since it last answered.
**
**   active fails, another not down ──► FAILOVER: active = the next one in
**        the list (wrapping) that is not down; the link stays up.
**   active fails, every other down ──► ALL_DOWN: the link goes down
**        (invariant 7); its probes rotate over the list from the first, so
**        whichever uplink comes back first is found, the preferred one
**        first; the one whose probe is answered becomes active.
**   active is a later one ──► the first is probed: one request at a time
**        (the failback probe: the next row of the most urgent key that may
**        go), on the probe schedule (backoff_max_ms doubling to
**        down_probe_max; at once on sender_kick). A probe answered (any
**        HTTP reply below 500) starts or continues its run; a probe that
**        fails ends it. The first answer at least failback_after after the
**        run began ──► FAILBACK: active = the first, every down[] cleared.
**
** Order per dedup_key holds across all of this because it never depends on
** which upstream a row goes to: a key has one request in flight at a time
** and a row leaves the outbox only on a 2xx (sender.h invariants 1 and 2);
** a failback probe is a key's next row, like any request.
*/
#ifndef PDR_UPSTREAM_H
#define PDR_UPSTREAM_H

#include <stdint.h>

#include "backoff.h"
#include "config.h"

typedef enum ups_verdict {
    UPS_SAME = 0,      /* the active upstream is unchanged */
    UPS_FAILOVER,      /* the active one failed: requests go to another now */
    UPS_ALL_DOWN,      /* the active one failed and none is left: the link is down */
    UPS_FAILBACK       /* the first answered for failback_after: requests go back to it */
} ups_verdict;

typedef struct ups_entry {
    const pdr_upstream *cfg;    /* url, proxy, interface */
    char url_alert[600], url_change[600];
    char shown[600];            /* the url, credentials redacted: logs, metric, queue status */
    int down;
} ups_entry;

typedef struct upstreams {
    ups_entry e[PDR_CONFIG_MAX_UPSTREAMS];
    int n;                      /* >= 1 */
    int active;
    int next_probe;             /* while all are down: the next probe's upstream */
    int64_t failback_after_ms;
    backoff fb_bo;              /* the failback probes' schedule */
    int64_t fb_next_ms;         /* the first may be probed from then */
    int64_t fb_since_ms;        /* it has answered every probe since then; 0: not so */
    int fb_out;                 /* a failback probe is in flight */
} upstreams;

/* From cfg->upstreams (borrowed: cfg must outlive u). */
void ups_init(upstreams *u, const pdr_config *cfg, uint64_t seed);

/* Where the next request goes: while the link is down, the probe's turn;
** while up, the first when its failback probe is due (*fb = 1), else the
** active one. */
int ups_pick(const upstreams *u, int link_up, int64_t now, int *fb);

/* The request ups_pick() chose went out. */
void ups_started(upstreams *u, int idx, int link_up, int fb);

/* A request to idx failed as the link fails (no HTTP reply; a 5xx where
** the sender counts it as the link's); fb: it was the failback probe. */
ups_verdict ups_failed(upstreams *u, int idx, int fb, int link_up, int64_t now);

/* A request to idx was answered (an HTTP reply below 500); link_up 0: the
** link was down and this answer brings it up, with idx active. */
ups_verdict ups_answered(upstreams *u, int idx, int fb, int link_up, int64_t now);

/* sender_kick(): a failback probe due now. */
void ups_kick(upstreams *u, int64_t now);

/* When a failback probe may go next (INT64_MAX: none is waited for). */
int64_t ups_wake_ms(const upstreams *u);

#endif /* PDR_UPSTREAM_H */
