/*
** backoff.h — exponential backoff with jitter for one routing key:
** initial, doubling up to max; the delay actually used is drawn uniformly
** from [d/2, d] ("equal jitter"), so keys that failed together do not retry
** together. A success resets it.
*/
#ifndef PDR_BACKOFF_H
#define PDR_BACKOFF_H

#include <stdint.h>

typedef struct backoff {
    int64_t initial_ms, max_ms;
    int failures;             /* consecutive transient failures */
    uint64_t rng;             /* xorshift state for the jitter */
} backoff;

void backoff_init(backoff *b, int64_t initial_ms, int64_t max_ms, uint64_t seed);

/* Records a failure and returns the delay before the next attempt. */
int64_t backoff_next(backoff *b);

/* The undrawn delay after `failures` failures: min(initial * 2^(f-1), max). */
int64_t backoff_ceiling(const backoff *b, int failures);

void backoff_reset(backoff *b);

/* Resumes after `failures` earlier failures (a row's stored attempts, after
** a restart): the count is raised to it, never lowered, so the next delay
** is drawn as after failures + 1 failures (capped at max). */
void backoff_resume(backoff *b, int64_t failures);

#endif /* PDR_BACKOFF_H */
