/*
** upstream.c — the uplinks' state (see upstream.h for the state machine).
*/
#include "upstream.h"

#include <stdio.h>
#include <string.h>

void ups_init(upstreams *u, const pdr_config *cfg, uint64_t seed)
{
    memset(u, 0, sizeof *u);
    u->n = cfg->n_upstreams > 0 ? (int)cfg->n_upstreams : 0;
    for (int i = 0; i < u->n; i++) {
        ups_entry *e = &u->e[i];
        e->cfg = &cfg->upstreams[i];
        snprintf(e->url_alert, sizeof e->url_alert, "%s/v2/enqueue", e->cfg->url);
        snprintf(e->url_change, sizeof e->url_change, "%s/v2/change/enqueue", e->cfg->url);
        pdr_url_redact(e->cfg->url, e->shown, sizeof e->shown);
    }
    u->failback_after_ms = cfg->failback_after_ms;
    /* as the sender's own probe schedule (sender.c sender_create) */
    backoff_init(&u->fb_bo, cfg->backoff_max_ms < cfg->down_probe_max_ms ? cfg->backoff_max_ms : cfg->down_probe_max_ms,
                 cfg->down_probe_max_ms, seed);
}

/* The next step of the failback schedule, jittered within its last tenth. */
static int64_t fb_delay(upstreams *u)
{
    int64_t d = backoff_ceiling(&u->fb_bo, u->fb_bo.failures + 1);
    int64_t drawn = backoff_next(&u->fb_bo);   /* in [d/2, d] */
    return d - (d - drawn) / 5;
}

/* Requests go to a later upstream: the first is probed from a step of the
** schedule on. */
static void fb_begin(upstreams *u, int64_t now)
{
    backoff_reset(&u->fb_bo);
    u->fb_since_ms = 0;
    u->fb_next_ms = now + fb_delay(u);
}

int ups_pick(const upstreams *u, int link_up, int64_t now, int *fb)
{
    *fb = 0;
    if (u->n <= 1) return 0;
    if (!link_up) return u->next_probe;
    if (u->active != 0 && !u->fb_out && now >= u->fb_next_ms) {
        *fb = 1;
        return 0;
    }
    return u->active;
}

void ups_started(upstreams *u, int idx, int link_up, int fb)
{
    if (u->n <= 1) return;
    if (fb) u->fb_out = 1;
    if (!link_up) u->next_probe = (idx + 1) % u->n;
}

ups_verdict ups_failed(upstreams *u, int idx, int fb, int link_up, int64_t now)
{
    if (fb) u->fb_out = 0;
    if (u->n <= 1) return link_up ? UPS_ALL_DOWN : UPS_SAME;
    u->e[idx].down = 1;
    if (idx == 0 && u->active != 0) {
        /* the failback probe (or a request sent before the failover): the
        ** run of answers ends; the schedule goes on */
        u->fb_since_ms = 0;
        if (fb) u->fb_next_ms = now + fb_delay(u);
    }
    if (!link_up || idx != u->active) return UPS_SAME;
    for (int k = 1; k < u->n; k++) {
        int j = (idx + k) % u->n;
        if (u->e[j].down) continue;
        u->active = j;
        if (j != 0 && idx == 0) fb_begin(u, now);
        return UPS_FAILOVER;
    }
    u->next_probe = 0;
    return UPS_ALL_DOWN;
}

ups_verdict ups_answered(upstreams *u, int idx, int fb, int link_up, int64_t now)
{
    if (fb) u->fb_out = 0;
    if (u->n <= 1) return UPS_SAME;
    u->e[idx].down = 0;
    if (!link_up) {
        /* the link comes up through idx */
        u->active = idx;
        if (idx != 0) fb_begin(u, now);
        return UPS_SAME;
    }
    if (idx != 0 || u->active == 0) return UPS_SAME;
    if (!u->fb_since_ms) u->fb_since_ms = now;
    if (now - u->fb_since_ms >= u->failback_after_ms) {
        u->active = 0;
        u->fb_since_ms = 0;
        for (int i = 0; i < u->n; i++) u->e[i].down = 0;
        return UPS_FAILBACK;
    }
    if (fb) {
        /* the next probe on the schedule, and one when the run is long enough */
        int64_t t = now + fb_delay(u), due = u->fb_since_ms + u->failback_after_ms;
        u->fb_next_ms = t < due ? t : due;
    }
    return UPS_SAME;
}

void ups_kick(upstreams *u, int64_t now)
{
    if (u->n > 1 && u->active != 0) u->fb_next_ms = now;
}

int64_t ups_wake_ms(const upstreams *u)
{
    return u->n > 1 && u->active != 0 && !u->fb_out ? u->fb_next_ms : INT64_MAX;
}
