/*
** clock.h — the one source of time in pdrelay.
**
** Every time-dependent decision (outbox due times, dedup expiry, backoff,
** token buckets) asks pdr_clock_now_ms(). Tests replace the clock with
** pdr_clock_set() so that TTL and backoff tests run in microseconds.
**
** Times are wall-clock milliseconds since the Unix epoch, because they are
** stored in the database and must mean the same thing after a reboot.
*/
#ifndef PDR_CLOCK_H
#define PDR_CLOCK_H

#include <stdint.h>

typedef int64_t (*pdr_clock_fn)(void *ctx);

/* Current time in ms since the epoch, from the installed clock.
** Thread-safe (every thread asks it); the clock is installed before. */
int64_t pdr_clock_now_ms(void);

/* Installs fn (called with ctx) as the clock; fn == NULL restores the real
** clock. Not thread-safe: call before starting threads. */
void pdr_clock_set(pdr_clock_fn fn, void *ctx);

/* A monotonic clock in ms for measuring intervals inside one process
** (never stored). Not replaceable. Thread-safe. */
int64_t pdr_clock_mono_ms(void);

#endif /* PDR_CLOCK_H */
