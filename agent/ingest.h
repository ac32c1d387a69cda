/*
** ingest.h — the HTTP ingest server of `pdrelay run` (libmicrohttpd).
**
** Endpoints (README "Endpoints"):
**   POST /v2/enqueue, /v2/events   a PagerDuty alert event    → 202 / 400
**   POST /v2/change/enqueue        a PagerDuty change event   → 202 / 400
**   POST /v1/alertmanager          an Alertmanager webhook     → 200 / 400
**   POST /v1/alerts                one alert or an array       → 200 / 400
**   GET  /healthz                  alive                       → 200
**   GET  /readyz                   outbox writable, not full   → 200 / 503
** Anything else: 404, or 405 for a known path with the wrong method. Every
** reply has a JSON body in PagerDuty's shape {"status","message","errors"}.
** Retryable refusals (outbox full, disk full or I/O error, shutting down)
** are 503 with Retry-After, because Alertmanager retries 5xx only.
**
** A request's events go to the writer (writer.h) and the reply is sent
** after the commit that holds them. libmicrohttpd serves every connection
** (up to [listen] max_connections) from an event loop on [listen] threads
** threads; a request waiting for its commit is suspended and holds no
** thread, so requests wait for their commit in parallel and share its fsync.
** Every reply, including HTTP-level refusals (ambiguous framing, a request
** that did not arrive within [listen] request_timeout), is JSON.
**
** Threads: libmicrohttpd's event-loop threads ([listen] threads) run every
** request; a reaper thread cuts off requests past their deadline (ingest.c).
** The functions below are called from the main thread only; ingest_reload
** runs while those threads serve requests (it swaps the config under the
** ingest's mutex).
**
** Reload: ingest_reload() swaps in a new config (targets, rotated key files,
** auth token); requests in progress finish with the config they started
** with, which is freed when the last of them ends.
**
** Ownership: ingest_create() borrows cfg (the caller keeps it alive until
** ingest_destroy()) and w. Configs passed to ingest_reload() become the
** ingest's.
*/
#ifndef PDR_INGEST_H
#define PDR_INGEST_H

#include <stddef.h>

#include "config.h"
#include "pdr.h"
#include "writer.h"

/* The most a request body may hold: PagerDuty's own limit on an event. */
#define INGEST_BODY_MAX (512 * 1024)

typedef struct ingest ingest;

/* Reads and checks the auth token file (a non-empty first line) into cfg's
** token; errbuf gets "FILE: why" on failure. Main thread. */
pdr_rc ingest_create(const pdr_config *cfg, writer *w, ingest **out, char *errbuf, size_t errsz);

/* Reads the auth token file as ingest_create() does, keeping nothing
** (`config check`): PDR_OK for NULL or a readable non-empty first line, else
** PDR_ERR_CONFIG with errbuf saying why. Thread-safe (touches nothing shared). */
pdr_rc ingest_token_check(const char *path, char *errbuf, size_t errsz);

/* Binds the TCP address and the unix socket of cfg and starts serving.
** errbuf gets what failed ("127.0.0.1:8787: Address already in use").
** Main thread; starts the event-loop threads and the reaper. */
pdr_rc ingest_start(ingest *in, char *errbuf, size_t errsz);

/* Takes cfg (now owned by the ingest) as the config of new requests.
** Returns PDR_ERR_CONFIG (cfg destroyed, old config kept) when its auth
** token file cannot be read, with errbuf saying why. Main thread (SIGHUP);
** thread-safe against the event-loop threads, which take the current config
** under the ingest's mutex, one reference per request. */
pdr_rc ingest_reload(ingest *in, pdr_config *cfg, char *errbuf, size_t errsz);

/* From now on POSTs are answered 503 "shutting down": closes the listeners,
** lets requests in progress finish (up to 5 s), then stops. Main thread;
** joins the event-loop threads and the reaper. */
void ingest_stop(ingest *in);
/* Stops, then frees. Main thread; must not race with any other call. */
void ingest_destroy(ingest *in);

#endif /* PDR_INGEST_H */
