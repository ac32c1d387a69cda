/*
** webhook.h — the generic HTTP publisher: delivering an outbox row of a
** webhook target ([target NAME] with webhook_url) instead of PagerDuty.
**
** WHAT IS QUEUED (agent/normalize.c builds it; the outbox key is
** "webhook:NAME", config.h, so it can never collide with a routing key):
**   POST /v1/alertmanager  one row per request per webhook target: the
**                          Alertmanager payload as received (sanitized,
**                          printed compact) with "alerts" cut down to those
**                          routed to the target, in their order, and
**                          "status" recomputed for them ("firing" when any is
**                          firing, else "resolved"). dedup_key: derived
**                          from the key and groupKey, so one group's
**                          notifications keep their order; action trigger
**                          when any alert fires (urgency of the most severe),
**                          else resolve.
**   POST /v1/alerts        one row per alert per webhook target: the alert
**                          object as received. dedup_key: derived from the key
**                          and the fingerprint, so one alert's firing,
**                          acknowledged and resolved states keep their order.
** Rows carry no fingerprint: a webhook target writes nothing to the dedup
** table, and the writer's rerouting (writer.h invariant 5) never touches them.
** The sender sends the body as stored (no annotate.h rewriting).
**
** THE REQUEST: POST to webhook_url, Content-Type: application/json (unless
** the headers file sets one), plus the headers of webhook_headers_file.
** Header values are secrets: they are in the request and nowhere else; an
** error text quoting one (a reply that echoes it) has it overwritten with
** '*' before it reaches a row or a log line (webhook_scrub).
**
** CLASSIFICATION (as pd_client.h's, with its own error text):
**   2xx                              PD_OK     delivered
**   408, 429 (Retry-After honoured), 5xx, no reply (network, timeout, TLS)
**                                    PD_RETRY  with the key's backoff
**   any other 4xx                    PD_DEAD   "HTTP 400: <the reply's first
**                                              200 bytes, escaped>"
**   anything else (1xx, 3xx)         PD_RETRY  other
** A webhook target's failures are its own key's: they never take the
** PagerDuty uplink down, and its answers never bring it up (sender.c).
**
** THE TABLE: the sender reads webhook targets from a webhook_table, a deep
** copy of the running config's webhook targets, swapped in at each reload
** (sender_webhooks_set). A key whose target is no longer in the table is
** held, not dead-lettered: its rows stay pending (one error line per key)
** until a reload brings the target back, or an operator purges them.
**
** Threads: a webhook_table is immutable once built; the sender thread
** alone uses the request functions.
*/
#ifndef PDR_WEBHOOK_H
#define PDR_WEBHOOK_H

#include <stddef.h>

#include <curl/curl.h>

#include "config.h"
#include "pd_client.h"

typedef struct webhook_target {
    char *name;                 /* NAME of [target NAME] */
    char *key;                  /* "webhook:NAME" */
    char *url;
    char origin[256];           /* the URL for logs: pdr_url_origin */
    char **lines;               /* "Name: value" request header lines */
    size_t n_headers;
    int has_content_type;       /* the file sets Content-Type */
    int rate_per_minute;
} webhook_target;

typedef struct webhook_table {
    webhook_target *t;
    size_t n;
} webhook_table;

/* A copy of cfg's webhook targets (an empty table when it has none).
** PDR_OK or PDR_ERR_NOMEM. */
pdr_rc webhook_table_new(const pdr_config *cfg, webhook_table **out);
/* Frees the table, header values overwritten first. NULL accepted. */
void webhook_table_free(webhook_table *wt);
/* The target of an outbox key, or NULL. */
const webhook_target *webhook_table_find(const webhook_table *wt, const char *key);

/* The header list of one request (caller frees with webhook_headers_free,
** which overwrites the values): Content-Type (unless t sets it), "Expect:"
** (no 100-continue round trip), then t's lines. NULL when out of memory. */
struct curl_slist *webhook_headers(const webhook_target *t);
void webhook_headers_free(struct curl_slist *h);

/* Sets up r for a POST of body to t's URL with headers h (borrowed: it
** must live until the transfer is done). PDR_OK or PDR_ERR_NOMEM. */
pdr_rc webhook_prepare(pd_request *r, const webhook_target *t, const struct curl_slist *h, const char *body,
                       size_t len);

/* Classifies a finished webhook transfer (cc from CURLMSG_DONE) into out,
** as the table above says; the error text is scrubbed of the values of h,
** the request's headers (may be NULL). */
void webhook_result(pd_request *r, CURLcode cc, const struct curl_slist *h, pd_result *out);

/* The classification alone (for unit tests): body the reply (may be NULL). */
void webhook_classify(long http_status, CURLcode cc, const char *body, size_t len, int64_t retry_after_s,
                      const char *curl_detail, pd_result *out);

/* Overwrites with '*' every occurrence in text of the value of a
** "Name: value" line of h. */
void webhook_scrub(char *text, const struct curl_slist *h);

#endif /* PDR_WEBHOOK_H */
