/*
** mockpd_client.h — start, stop, steer and question the mock PagerDuty server
** (mock_pd.c) from a test.
**
** A test starts one mock per scenario, points pdrelay at mockpd_url(), makes
** the mock misbehave with mockpd_set_mode(), awaits deliveries with
** mockpd_wait_accepted() (a blocking wait inside the mock: no sleeps), and
** checks what arrived with mockpd_events() / mockpd_requests().
**
** The mock runs as a child process (MOCKPD_BINARY, or $MOCKPD_BINARY when
** set) bound to 127.0.0.1. It is started with --watch-stdin, so if the test
** process dies its mock exits too. mockpd_halt() + mockpd_restart() stop it
** and bring it back on the same port, for "connection refused, then
** recovery" scenarios.
**
** Ownership: a mockpd is freed by mockpd_stop() (NULL is fine). Strings
** returned by mockpd_url() / mockpd_ca_file() belong to the mockpd. cJSON
** values returned are the caller's: cJSON_Delete() them. A *reply_out string
** is the caller's: free() it.
**
** Not thread-safe per mockpd for start/halt/restart/stop; the HTTP calls
** (mockpd_http, mockpd_events, mockpd_wait_*, ...) may run from several
** threads at once (call mockpd_global_init() first from the main thread).
*/
#ifndef MOCKPD_CLIENT_H
#define MOCKPD_CLIENT_H

#include <stdbool.h>

#include <cjson/cJSON.h>

typedef struct mockpd mockpd;

typedef struct mockpd_opts {
    bool tls;              /* serve HTTPS (certificate for localhost/127.0.0.1) */
    const char *certs_dir; /* with tls: a directory made by mockpd_gen_certs();
                              NULL: a private one is generated and removed by
                              mockpd_stop() */
    int limit;             /* accepted requests per routing key per window;
                              0: the mock's default (120); <0: unlimited */
    int window_ms;         /* rate window; 0: the mock's default (60000) */
    int latency_ms;        /* delay before every event reply; 0: none */
    int port;              /* 0: the OS chooses */
} mockpd_opts;

/* curl_global_init, once. Called by mockpd_start(); call it yourself before
** using the HTTP functions from several threads. */
void mockpd_global_init(void);

/* Runs MOCKPD_GEN_CERTS dir: ca.pem ca.key server.pem server.key other-ca.pem
** in dir (idempotent). 0 on success. */
int mockpd_gen_certs(const char *dir);

/* Spawns the mock (o NULL: defaults) and waits until it listens (it reports
** its port on a pipe). NULL on failure, with the reason on stderr. */
mockpd *mockpd_start(const mockpd_opts *o);

/* Stops the mock (SIGTERM, wait; SIGKILL after 10 s) and frees m. NULL is fine. */
void mockpd_stop(mockpd *m);

/* Stops the process but keeps m (same port, same options), so connections
** to the port are refused until mockpd_restart(). 0 when the mock exited
** with status 0 (or was not running), -1 otherwise. */
int mockpd_halt(mockpd *m);

/* (Halts if running, then) starts the mock again on the same port with the
** same options. All records and counters start empty. 0 on success. */
int mockpd_restart(mockpd *m);

/* The port, and the base URL: "http://127.0.0.1:PORT", or with tls
** "https://localhost:PORT". */
int mockpd_port(const mockpd *m);
const char *mockpd_url(const mockpd *m);

/* With tls: the CA file that signed the server certificate (and the
** directory holding other-ca.pem). NULL without tls. */
const char *mockpd_ca_file(const mockpd *m);
const char *mockpd_certs_dir(const mockpd *m);

/* One HTTP request to the mock: method ("GET", "POST"), path ("/v2/enqueue"),
** body (NULL: none; sent as application/json). For HTTPS the peer is
** verified against cainfo, or the mock's CA when cainfo is NULL; "localhost"
** is pinned to 127.0.0.1. timeout_ms 0: 30 s. Returns the HTTP status, or
** -(CURLcode) when no HTTP reply came (e.g. -52 CURLE_GOT_NOTHING,
** -56 CURLE_RECV_ERROR, -60 CURLE_PEER_FAILED_VERIFICATION,
** -28 CURLE_OPERATION_TIMEDOUT). The reply body goes to *reply_out when
** reply_out is not NULL (malloc'd, NUL-terminated, "" when none). */
int mockpd_http(mockpd *m, const char *method, const char *path, const char *body,
                const char *cainfo, int timeout_ms, char **reply_out);

/* Fault mode for event requests: mode "ok", "status" (answer with status),
** "hang" (never answer), "reset" (close without a reply), "slow" (a normal
** reply after delay_ms). count > 0: only the next count event requests, then
** back to "ok"; 0: until changed. 0 on success. */
int mockpd_set_mode(mockpd *m, const char *mode, int status, int delay_ms, int count);

/* The same with the raw JSON body of POST /_mock/mode, e.g.
** {"mode":"status","status":429,"retry_after":"2"} (retry_after: a
** Retry-After header on "status" replies). 0 on success. */
int mockpd_set_mode_json(mockpd *m, const char *json);

/* Blocks (inside the mock) until at least n requests were accepted (202), or
** were received at all (any outcome, including hang/reset), or timeout_ms
** pass. 0 when reached, 1 on timeout, -1 on error. */
int mockpd_wait_accepted(mockpd *m, int n, int timeout_ms);
int mockpd_wait_requests(mockpd *m, int n, int timeout_ms);

/* GET /_mock/events: the accepted event requests, oldest first; each
** {"seq","arrival_ms","path","status","fault","routing_key","event_action",
** "dedup_key","summary","body"} ("event_action" is "change" for change
** events; "fault" is null or the fault mode applied; "body" is the raw body).
** mockpd_requests: every event request, whatever its status (0: no reply).
** mockpd_stats: {"accepted","throttled","invalid","faulted","requests"}.
** NULL on error. */
cJSON *mockpd_events(mockpd *m);
cJSON *mockpd_requests(mockpd *m);
cJSON *mockpd_stats(mockpd *m);

/* One counter of mockpd_stats ("accepted", ...), or -1 on error. */
long mockpd_stat(mockpd *m, const char *name);

/* The webhook endpoint (POST /webhook/ANYTHING). mockpd_webhooks: every
** request, oldest first, each {"seq","arrival_ms","method","path","status",
** "fault","headers":{name: value, ...},"body"}. mockpd_set_webhook_mode:
** as mockpd_set_mode, for the webhook endpoint only (retry_after: a
** Retry-After header on "status" replies, or NULL). mockpd_wait_webhooks:
** until n webhook requests were answered 2xx. */
cJSON *mockpd_webhooks(mockpd *m);
int mockpd_set_webhook_mode(mockpd *m, const char *mode, int status, int delay_ms, int count,
                            const char *retry_after);
int mockpd_wait_webhooks(mockpd *m, int n, int timeout_ms);
/* Until n webhook requests arrived, whatever their answer. */
int mockpd_wait_webhook_requests(mockpd *m, int n, int timeout_ms);

/* Clears records, counters and rate windows; mode back to "ok". 0 on success. */
int mockpd_reset(mockpd *m);

#endif
