/*
** backoff.c — see backoff.h.
*/
#include "backoff.h"

void backoff_init(backoff *b, int64_t initial_ms, int64_t max_ms, uint64_t seed)
{
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
    b->failures = 0;
    b->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
}

int64_t backoff_ceiling(const backoff *b, int failures)
{
    int64_t d = b->initial_ms;
    for (int i = 1; i < failures && d < b->max_ms; i++) d *= 2;
    return d < b->max_ms ? d : b->max_ms;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int64_t backoff_next(backoff *b)
{
    if (b->failures < 64) b->failures++;
    int64_t d = backoff_ceiling(b, b->failures);
    int64_t half = d / 2;
    return half + (int64_t)(xorshift(&b->rng) % (uint64_t)(d - half + 1));
}

void backoff_reset(backoff *b)
{
    b->failures = 0;
}

void backoff_resume(backoff *b, int64_t failures)
{
    if (failures > 64) failures = 64;
    if (failures > b->failures) b->failures = (int)failures;
}
