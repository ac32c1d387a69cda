/*
** pd_client.h — one HTTP request to the PagerDuty Events API v2 with
** libcurl, and the classification of its outcome.
**
** A pd_request wraps one curl easy handle that is reused for every request
** of one routing key, so connections are kept alive (the multi handle's
** connection pool is shared across keys). TLS verification is always on,
** TLS 1.2 at least; ca_file and timeouts come from the config, the proxy
** and the outgoing interface from the upstream the request goes to
** (pd_request_via; the first url's until then), and libcurl honours
** https_proxy / no_proxy from the environment when the upstream has no
** proxy of its own.
**
** Every reply is classified (Fluent Bit's OK / RETRY / ERROR):
**   2xx                                   PD_OK     (dedup_key parsed from the body)
**   429                                   PD_RETRY  rate_limit (Retry-After honoured, clamped)
**   5xx, 408, timeouts, connect/DNS/send/recv errors   PD_RETRY  server_error|timeout|network
**   TLS handshake or certificate failure  PD_RETRY  tls (a config problem, never a reason to drop)
**   400 (with PagerDuty's errors[]), 401, 403, 404, 413, other 4xx   PD_DEAD
**   anything else (3xx, 1xx)              PD_RETRY  other
**
** With [pagerduty] upstream = relay (another pdrelay answers), a 401 or 403
** is that relay's token check, not a verdict on the event: PD_RETRY
** unauthorized (pd_upstream_adjust), held until the token is fixed. Every
** request carries "Authorization: Bearer <token>" when a token is set
** (pd_request_set_token; the token is never put in a result or a log).
**
** Ownership: pd_request_create / pd_request_destroy (NULL accepted).
*/
#ifndef PDR_PD_CLIENT_H
#define PDR_PD_CLIENT_H

#include <curl/curl.h>
#include <stdint.h>

#include "config.h"

typedef enum pd_outcome {
    PD_OK = 0,
    PD_RETRY = 1,
    PD_DEAD = 2
} pd_outcome;

/* The error types of the pagerduty_api_errors_total metric. */
typedef enum pd_error_type {
    PD_ERR_NONE = 0,
    PD_ERR_BAD_REQUEST,   /* 400, 404, 413, other 4xx */
    PD_ERR_UNAUTHORIZED,  /* 401, 403 */
    PD_ERR_RATE_LIMIT,    /* 429 */
    PD_ERR_SERVER,        /* 5xx */
    PD_ERR_TIMEOUT,
    PD_ERR_NETWORK,
    PD_ERR_TLS,
    PD_ERR_OTHER
} pd_error_type;

const char *pd_error_type_name(pd_error_type t);

/* PagerDuty's replies are a few hundred bytes; a 400 lists its errors.
** Anything past this is dropped (the error text kept is shorter anyway). */
#define PD_RESPONSE_MAX (8 * 1024)

typedef struct pd_result {
    pd_outcome outcome;
    pd_error_type type;
    long http_status;           /* 0 when no HTTP reply was received */
    int64_t retry_after_ms;     /* from Retry-After on 429/503, else 0 */
    char dedup_key[PDR_DEDUP_KEY_MAX_BYTES + 1]; /* from a 2xx body, "" if none */
    char error[512];            /* for last_error and the log, "" on success */
} pd_result;

typedef struct pd_request pd_request;

/* NULL when out of memory. */
pd_request *pd_request_create(const pdr_config *cfg);
void pd_request_destroy(pd_request *r);

/* The easy handle to add to a multi handle after pd_request_prepare(). */
CURL *pd_request_easy(pd_request *r);

/* The proxy and interface of the upstream the next request goes to
** (CURLOPT_PROXY, CURLOPT_INTERFACE; NULL entries restore libcurl's
** defaults). PDR_OK, or PDR_ERR_NOMEM (libcurl could not copy them): then
** r must not be used before a call that succeeds. */
pdr_rc pd_request_via(pd_request *r, const pdr_upstream *u);

/* Sets up a POST of body (copied) to url. Returns PDR_OK, or PDR_ERR_NOMEM
** (libcurl could not copy the URL either): then r keeps no body and must be
** prepared again before it is used. */
pdr_rc pd_request_prepare(pd_request *r, const char *url, const char *body, size_t len);

/* The reply body of the finished transfer: at most PD_RESPONSE_MAX bytes,
** NUL-terminated, *len its length (agent/webhook.c classifies with it). */
const char *pd_request_response(const pd_request *r, size_t *len);

/* The finished transfer's HTTP status (0: none) and Retry-After in seconds
** (0: none; clamped to an hour), as pd_request_result() classifies them. */
void pd_request_reply(pd_request *r, long *status, int64_t *retry_after_s);

/* Classifies the finished transfer (cc from CURLMSG_DONE). */
void pd_request_result(pd_request *r, CURLcode cc, pd_result *out);

/* Sets the token sent as "Authorization: Bearer <token>" from the next
** prepared request on (NULL or "": none). Only while r is not in a multi
** handle. PDR_OK, or PDR_ERR_NOMEM (then r sends no Authorization header). */
pdr_rc pd_request_set_token(pd_request *r, const char *token);

/* What [pagerduty] upstream changes in a classified result: with
** PDR_UPSTREAM_RELAY a 401/403 (PD_DEAD unauthorized) becomes PD_RETRY.
** pd_request_result() applies it; exposed for unit tests. */
void pd_upstream_adjust(pd_result *res, pdr_upstream_kind upstream);

/* Classification of a reply alone (exposed for unit tests). body may be NULL. */
void pd_classify(long http_status, CURLcode cc, const char *body, size_t body_len,
                 int64_t retry_after_s, const char *curl_detail, pd_result *out);

#endif /* PDR_PD_CLIENT_H */
