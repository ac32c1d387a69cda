/*
** clock.c — the replaceable wall clock (see clock.h).
*/
#include "clock.h"

#include <time.h>

static int64_t clock_real(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pdr_clock_fn clock_fn = clock_real;
static void *clock_ctx;

int64_t pdr_clock_now_ms(void)
{
    return clock_fn(clock_ctx);
}

void pdr_clock_set(pdr_clock_fn fn, void *ctx)
{
    clock_fn = fn ? fn : clock_real;
    clock_ctx = fn ? ctx : NULL;
}

int64_t pdr_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
