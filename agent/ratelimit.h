/*
** ratelimit.h — how fast one routing key may send: a token bucket
** (rate_per_minute, burst) AND a sliding 60-second window.
**
** PagerDuty counts requests per integration key over a 60-second look-back.
** A token bucket alone lets burst + rate requests into some 60 s window
** (130 with the defaults), which PagerDuty would throttle. So a key also
** remembers when its last rate_per_minute requests COMPLETED and sends the
** next one only once the oldest of them is 60 s old (the window is a
** parameter, so tests and benchmarks can scale time). Completion time is
** later than the server's arrival time, so however the network delays
** requests, the server never sees more than rate_per_minute in any window.
**
** rate_per_minute 0 is no limiter ([pagerduty] upstream = relay: the site
** relay limits towards PagerDuty): every request may start at once; only
** the sender's own waits (a 429's, a backoff) hold a key back.
**
** All times are the caller's (pdr_clock_now_ms), so tests drive it.
** Caller-owned: ratelimit_init / ratelimit_cleanup.
*/
#ifndef PDR_RATELIMIT_H
#define PDR_RATELIMIT_H

#include <stdint.h>

#include "pdr.h"

typedef struct ratelimit {
    double tokens;            /* bucket content */
    int64_t refilled_ms;      /* when tokens was last brought up to date */
    int burst;
    double per_ms;            /* tokens per millisecond */
    int64_t *done;            /* ring of the last `rate` completion times */
    int rate;                 /* the allowance per window: ring size */
    int64_t window_ms;
    int n_done, head;         /* entries used; index of the oldest */
    int64_t halved_until_ms;  /* before then, half the rate (ratelimit_halve) */
    int off;                  /* rate_per_minute 0: no limit */
} ratelimit;

/* Returns PDR_OK, or PDR_ERR_NOMEM (rl untouched but for its fields; no
** ratelimit_cleanup needed). The bucket starts full; it refills
** at rate_per_minute; at most rate_per_minute * window_ms / 60000 requests
** (at least 1) fall in any window_ms (PagerDuty: 60000); rate_per_minute
** 0: no limit at all. */
pdr_rc ratelimit_init(ratelimit *rl, int rate_per_minute, int burst, int64_t window_ms, int64_t now_ms);
void ratelimit_cleanup(ratelimit *rl);

/* The earliest time >= now_ms at which a request may start. */
int64_t ratelimit_next_ms(ratelimit *rl, int64_t now_ms);

/* Takes a token for a request starting now (call only when
** ratelimit_next_ms(now) <= now). */
void ratelimit_take(ratelimit *rl, int64_t now_ms);

/* Records that a request which reached the server completed at now_ms. */
void ratelimit_done(ratelimit *rl, int64_t now_ms);

/* A 429: the bucket is emptied. */
void ratelimit_throttled(ratelimit *rl, int64_t now_ms);

/* After a 429: until until_ms the key runs at half its rate (the bucket
** refills at half speed and half the allowance fits in a window), so
** another sender sharing the key does not meet a 429 storm. */
void ratelimit_halve(ratelimit *rl, int64_t until_ms);

#endif /* PDR_RATELIMIT_H */
