/*
** ratelimit.c — token bucket plus sliding window per routing key (see
** ratelimit.h for why both).
*/
#include "ratelimit.h"

#include <stdlib.h>

pdr_rc ratelimit_init(ratelimit *rl, int rate_per_minute, int burst, int64_t window_ms, int64_t now_ms)
{
    int64_t allowance = (int64_t)rate_per_minute * window_ms / 60000;
    rl->off = rate_per_minute == 0;
    if (rate_per_minute < 1) rate_per_minute = 1;
    rl->rate = allowance >= 1 ? (allowance <= 1000000 ? (int)allowance : 1000000) : 1;
    rl->window_ms = window_ms > 0 ? window_ms : 60000;
    rl->burst = burst > 0 ? burst : 1;
    rl->per_ms = (double)rate_per_minute / 60000.0;
    rl->tokens = rl->burst;
    rl->refilled_ms = now_ms;
    rl->n_done = 0;
    rl->head = 0;
    rl->halved_until_ms = 0;
    rl->done = pdr_malloc(sizeof *rl->done * (size_t)rl->rate);
    return rl->done ? PDR_OK : PDR_ERR_NOMEM;
}

void ratelimit_cleanup(ratelimit *rl)
{
    free(rl->done);
    rl->done = NULL;
}

/* Tokens per ms at t: halved before halved_until_ms. */
static double rate_at(const ratelimit *rl, int64_t t)
{
    return t < rl->halved_until_ms ? rl->per_ms / 2 : rl->per_ms;
}

static void refill(ratelimit *rl, int64_t now_ms)
{
    if (now_ms > rl->refilled_ms) {
        rl->tokens += (double)(now_ms - rl->refilled_ms) * rate_at(rl, rl->refilled_ms);
        if (rl->tokens > rl->burst) rl->tokens = rl->burst;
        rl->refilled_ms = now_ms;
    }
}

int64_t ratelimit_next_ms(ratelimit *rl, int64_t now_ms)
{
    int64_t t = now_ms;
    if (rl->off) return now_ms;
    refill(rl, now_ms);
    if (rl->tokens < 1.0) {
        int64_t wait = (int64_t)((1.0 - rl->tokens) / rate_at(rl, now_ms)) + 1;
        t = now_ms + wait;
    }
    /* The allowance of this window: the last `allow` completions must be
    ** older than a window before another request starts. */
    int allow = now_ms < rl->halved_until_ms ? (rl->rate / 2 > 0 ? rl->rate / 2 : 1) : rl->rate;
    if (rl->n_done >= allow) {
        int64_t w = rl->done[(rl->head + rl->n_done - allow) % rl->rate] + rl->window_ms + 1;
        if (w > t) t = w;
    }
    return t;
}

void ratelimit_take(ratelimit *rl, int64_t now_ms)
{
    refill(rl, now_ms);
    rl->tokens -= 1.0;
}

void ratelimit_done(ratelimit *rl, int64_t now_ms)
{
    if (rl->off) return;   /* n_done stays 0: nothing is recent */
    if (rl->n_done < rl->rate) {
        rl->done[(rl->head + rl->n_done) % rl->rate] = now_ms;
        rl->n_done++;
    } else {
        rl->done[rl->head] = now_ms;
        rl->head = (rl->head + 1) % rl->rate;
    }
}

void ratelimit_throttled(ratelimit *rl, int64_t now_ms)
{
    refill(rl, now_ms);
    rl->tokens = 0.0;
}

void ratelimit_halve(ratelimit *rl, int64_t until_ms)
{
    if (until_ms > rl->halved_until_ms) rl->halved_until_ms = until_ms;
}
