/*
** sender.h — the thread that drains the outbox to PagerDuty.
**
** One thread drives libcurl's multi interface. Each routing key (and each
** webhook target's key "webhook:NAME", agent/webhook.h) is a lane
** with its own rate limiter (ratelimit.h), backoff (backoff.h) and curl
** handle; a lane has at most one request in flight, which keeps per-key
** order; lanes run in parallel up to [pagerduty] concurrency.
**
** INVARIANTS
**   1. A row is deleted only after a 2xx (db invariant 2); a crash at any
**      moment leaves every unconfirmed row pending, sent again on restart.
**   2. Only a key's next row is ever sent (db_outbox_due: the most urgent
**      of the oldest pending rows of each dedup_key, so one dedup_key's
**      events keep their order), and never while the previous request of
**      that key is in flight.
**   3. No request starts before ratelimit allows it, so no sliding 60 s
**      window sees more than rate_per_minute requests of a key.
**   4. Idle is asleep: the thread sleeps in curl_multi_poll until the next
**      due time, a finished transfer, a wake-up, or a write to the database
**      directory by another process (inotify), with no polling interval.
**   5. A row whose outcome the database did not take (disk full, read-only)
**      still looks due; its lane waits in memory, with a backoff that keeps
**      growing while the writes keep failing (a success upstream does not
**      reset it), so no row is resent in a tight loop; every such failure
**      is reported (sender_set_db_error_hook).
**   6. A lane's backoff resumes from its head's stored attempts: after a
**      restart a row that failed k times waits as after k failures (capped
**      at backoff_max_ms), not backoff_initial_ms; the stored next_ms is
**      honoured first (a head is read only once due).
**   7. While the uplink is down (a failure with no HTTP reply, or a 5xx on
**      every PagerDuty key with work) at most one request to PagerDuty is
**      in flight, the probe (webhook keys, agent/webhook.h, are outside the
**      uplink: they neither take it down nor wait for it),
**      started no sooner than the probe schedule (backoff_max_ms doubling
**      to down_probe_max) or sender_kick(). The first answer that is not a
**      5xx brings it up: every key's next row becomes due at once. Failures
**      of the uplink do not grow a key's own backoff.
**   8. After a 429 a key sends nothing for throttle_backoff (or the
**      Retry-After given), then at half its rate for one window. Any other
**      Retry-After (a 503) is the least wait: of the key's backoff, or of
**      the next probe while the link is down (only sender_kick goes
**      sooner).
**   9. [outbox] resolved_while_queued acts only on a trigger that was held
**      (queued while the uplink was down or before this start) and only
**      when it is about to be sent; collapse never drops a resolve that
**      PagerDuty needs (an incident it already has goes as note).
**  10. With several [pagerduty] urls (upstream.h) requests go to one, the
**      active one. When it fails as in 7, the next one not known down
**      becomes active and every key's next row is due at once; only when
**      none is left does 7 apply, its probes rotating over the urls. While
**      a later one is active, the first is probed, one request at a time
**      on 7's schedule, with a key's next row; requests go back to it once
**      it has answered for failback_after. A failure of a request to an
**      upstream that is not the active one never moves the link or grows
**      the key's backoff: its row is due again at once. Per-dedup_key
**      order holds across these moves by 1 and 2 alone: a key has one
**      request in flight, to whichever url, and its row leaves only on a
**      2xx.
**
** LIFE OF A ROW IN THE SENDER
**
**   PENDING, due ──(lane idle, token)──► IN FLIGHT ──2xx──► deleted (+ dedup table)
**                                           │ ├──transient──► PENDING, attempts+1,
**                                           │ │               next_ms = now + backoff
**                                           │ └──permanent──► DEAD with the reason, attempts+1
**                                           └──shutdown grace over──► PENDING (untouched)
**   PENDING, older than max_age ──► DEAD ("max_age exceeded", attempts unchanged)
**   PENDING trigger, resolved while held ──collapse──► deleted with its resolve
**
** Checked by assert() (sender.c): 1, 2 (one request per lane), 7 (one
** probe), and 0 <= in_flight <= [pagerduty] concurrency.
**
** Threads: the sender's own thread does all the work, alone with its
** database handle, curl handles, rate limiters (ratelimit.h), backoffs
** (backoff.h), pd_client.h and annotate.h, none of which is shared. Other
** threads call only sender_notify (the writer), sender_kick and
** sender_set_token (main).
*/
#ifndef PDR_SENDER_H
#define PDR_SENDER_H

#include "config.h"
#include "pdr.h"

typedef struct sender sender;

/* Creates the sender for cfg (borrowed: must outlive the sender). It opens
** its own database handle on start. Main thread. */
pdr_rc sender_create(const pdr_config *cfg, sender **out);

/* A database write of the sender failed with rc (an outcome, an expiry, a
** clock repair): called on the sender thread, each time. The daemon passes
** it on to the writer (writer_note_failure), so /readyz answers 503 until
** the database can be written again. */
typedef void (*sender_db_error_fn)(void *ctx, pdr_rc rc);

/* Sets the hook (fn NULL: none). Main thread, before sender_start(). */
void sender_set_db_error_hook(sender *s, sender_db_error_fn fn, void *ctx);

/* Starts the thread. Main thread. */
pdr_rc sender_start(sender *s);

/* The token for "Authorization: Bearer" on every request upstream
** ([pagerduty] auth_token_file; NULL or "": none), copied. Used from each
** key's next request on; a change (not the first) makes every key's next
** row due. Main thread: before sender_start() and after a reload.
** PDR_OK or PDR_ERR_NOMEM (the previous token stays). */
pdr_rc sender_set_token(sender *s, const char *token);

/* Wakes the thread: new events were pushed by this process. Thread-safe
** (the writer thread calls it after a commit; an atomic flag and a curl
** wake-up). */
void sender_notify(sender *s);

/* A reload: the webhook targets of cfg (URL, headers, rate; copied, cfg
** is not kept) replace the sender's from its next pass (webhook.h, "THE
** TABLE"). PDR_OK or PDR_ERR_NOMEM (the running ones are kept). Main
** thread (SIGHUP); thread-safe against the sender thread. */
pdr_rc sender_webhooks_set(sender *s, const pdr_config *cfg);

/* "The uplink is back now" (SIGUSR1, `pdrelay queue kick`): the next
** probe of a link that is down goes at once instead of at its backoff.
** Thread-safe; async-signal-unsafe (call it from the signal loop). */
void sender_kick(sender *s);

/* Stops taking new work, lets requests in flight finish for up to
** [pagerduty] timeout_ms, then joins the thread. Main thread, after the
** writer stopped (its commits call sender_notify). */
void sender_stop(sender *s);

/* Stops, then frees. Main thread; must not race with any other call. */
void sender_destroy(sender *s);

#endif /* PDR_SENDER_H */
