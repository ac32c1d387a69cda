/*
** sender.h — the thread that drains the outbox to PagerDuty.
**
** One thread drives libcurl's multi interface. Each routing key is a lane
** with its own rate limiter (ratelimit.h), backoff (backoff.h) and curl
** handle; a lane has at most one request in flight, which keeps per-key
** order; lanes run in parallel up to [pagerduty] concurrency.
**
** INVARIANTS
**   1. A row is deleted only after a 2xx (db invariant 2); a crash at any
**      moment leaves every unconfirmed row pending, sent again on restart.
**   2. Only a key's head is ever sent (db invariant 3), and never while the
**      previous request of that key is in flight.
**   3. No request starts before ratelimit allows it, so no sliding 60 s
**      window sees more than rate_per_minute requests of a key.
**   4. Idle is asleep: the thread sleeps in curl_multi_poll until the next
**      due time, a finished transfer, a wake-up, or a write to the database
**      directory by another process (inotify), with no polling interval.
**
** LIFE OF A ROW IN THE SENDER
**
**   PENDING, due ──(lane idle, token)──► IN FLIGHT ──2xx──► deleted (+ dedup table)
**                                           │ ├──transient──► PENDING, next_ms = now + backoff
**                                           │ └──permanent──► DEAD with the reason
**                                           └──shutdown grace over──► PENDING (untouched)
**   PENDING, older than max_age ──► DEAD ("max_age exceeded")
*/
#ifndef PDR_SENDER_H
#define PDR_SENDER_H

#include "config.h"
#include "pdr.h"

typedef struct sender sender;

/* Creates the sender for cfg (borrowed: must outlive the sender). It opens
** its own database handle on start. */
pdr_rc sender_create(const pdr_config *cfg, sender **out);

/* Starts the thread. */
pdr_rc sender_start(sender *s);

/* Wakes the thread: new events were pushed by this process. Thread-safe. */
void sender_notify(sender *s);

/* Stops taking new work, lets requests in flight finish for up to
** [pagerduty] timeout_ms, then joins the thread. */
void sender_stop(sender *s);

void sender_destroy(sender *s);

#endif /* PDR_SENDER_H */
