/*
** pd_client.h — one HTTP request to the PagerDuty Events API v2 with
** libcurl, and the classification of its outcome.
**
** A pd_request wraps one curl easy handle that is reused for every request
** of one routing key, so connections are kept alive (the multi handle's
** connection pool is shared across keys). TLS verification is always on,
** TLS 1.2 at least; ca_file, proxy and timeouts come from the config, and
** libcurl honours https_proxy / no_proxy from the environment.
**
** Every reply is classified (Fluent Bit's OK / RETRY / ERROR):
**   2xx                                   PD_OK     (dedup_key parsed from the body)
**   429                                   PD_RETRY  rate_limit (Retry-After honoured, clamped)
**   5xx, 408, timeouts, connect/DNS/send/recv errors   PD_RETRY  server_error|timeout|network
**   TLS handshake or certificate failure  PD_RETRY  tls (a config problem, never a reason to drop)
**   400 (with PagerDuty's errors[]), 401, 403, 404, 413, other 4xx   PD_DEAD
**   anything else (3xx, 1xx)              PD_RETRY  other
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

/* Sets up a POST of body (copied) to url. Returns PDR_OK, or PDR_ERR_NOMEM
** (libcurl could not copy the URL either): then r keeps no body and must be
** prepared again before it is used. */
pdr_rc pd_request_prepare(pd_request *r, const char *url, const char *body, size_t len);

/* The reply body of the finished transfer: at most PD_RESPONSE_MAX bytes,
** NUL-terminated, *len its length (agent/webhook.c classifies with it). */
const char *pd_request_response(const pd_request *r, size_t *len);

/* Classifies the finished transfer (cc from CURLMSG_DONE). */
void pd_request_result(pd_request *r, CURLcode cc, pd_result *out);

/* Classification of a reply alone (exposed for unit tests). body may be NULL. */
void pd_classify(long http_status, CURLcode cc, const char *body, size_t body_len,
                 int64_t retry_after_s, const char *curl_detail, pd_result *out);

#endif /* PDR_PD_CLIENT_H */
