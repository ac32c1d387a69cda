/*
** metrics.h — pdrelay's Prometheus metrics: one process-wide registry of
** counters and histograms, rendered as text format 0.0.4 for GET /metrics.
**
** The names are a contract (dashboards and alert rules depend on them): the
** eight metrics of the original design keep their names, and pdrelay's own
** start with pdrelay_. Label values are bounded: a family holds at most
** METRICS_MAX_SERIES label sets; more are counted under the value "other".
**
** `target` labels are the [target] name of a routing key, or the key
** redacted ("R0…ab12") when no target has it: a whole routing key never
** appears in a metric.
**
** Thread-safe: every function may be called from any thread (the ingest's
** event-loop threads count and render, the writer and sender threads count,
** the main thread sets the targets on SIGHUP): each call takes one mutex,
** but metrics_now, which reads the clock. Nothing here allocates after a
** series exists, so counting never fails.
*/
#ifndef PDR_METRICS_H
#define PDR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define METRICS_MAX_SERIES 256

typedef enum metric_counter {
    MC_TRIGGERED = 0,      /* pagerduty_events_triggered_total{target,severity} */
    MC_ACKNOWLEDGED,       /* pagerduty_events_acknowledged_total{target} */
    MC_RESOLVED,           /* pagerduty_events_resolved_total{target} */
    MC_CHANGE,             /* pagerduty_change_events_total{target} */
    MC_API_REQUESTS,       /* pagerduty_api_requests_total{endpoint,status} */
    MC_API_ERRORS,         /* pagerduty_api_errors_total{error_type} */
    MC_RATE_LIMIT_HITS,    /* pagerduty_rate_limit_hits_total{target} */
    MC_INGEST,             /* pdrelay_ingest_total{endpoint,result} */
    MC_DEAD_LETTERS,       /* pdrelay_dead_letters_total{reason} */
    MC_RESOLVED_WHILE_QUEUED, /* pdrelay_resolved_while_queued_total{action}: collapsed | noted */
    MC_PROBES,             /* pdrelay_link_probes_total{result}: requests that probed a down uplink */
    MC_DEAD_DROPPED,       /* pdrelay_dead_dropped_total{bound}: max_dead | max_dead_age */
    MC_WEBHOOK_REQUESTS,   /* pdrelay_webhook_requests_total{target,status}: requests to webhook targets */
    MC_COUNT
} metric_counter;

typedef enum metric_hist {
    MH_API_DURATION = 0,   /* pagerduty_api_duration_seconds{endpoint} */
    MH_COMMIT,             /* pdrelay_ingest_commit_seconds */
    MH_COUNT
} metric_hist;

/* Adds n to a counter; label values in the family's order (l2 NULL for a
** family with one label, both NULL for none). */
void metrics_add(metric_counter c, const char *l1, const char *l2, double n);
#define metrics_inc(c, l1, l2) metrics_add((c), (l1), (l2), 1)

/* Adds ns[i] to the series (l1, l2s[i]) of c for i < n, under one lock. */
void metrics_add_each(metric_counter c, const char *l1, const char *const *l2s, const double *ns, size_t n);

/* Records one observation (seconds) in a histogram. */
void metrics_observe(metric_hist h, const char *l1, double seconds);

/* The current value of a counter series (0 when it does not exist): for tests. */
double metrics_get(metric_counter c, const char *l1, const char *l2);

/* Sets the routing key -> target name map used by metrics_target(). Called
** at start and on every reload; cfg is copied. */
void metrics_set_targets(const pdr_config *cfg);

/* The target label of a routing key into out (a target name, or the key
** redacted). Returns out. */
const char *metrics_target(const char *routing_key, char *out, size_t outsz);

/* Gauges read at scrape time from the database. */
typedef struct metrics_gauges {
    int64_t pending;
    int64_t dead;
    int64_t pending_bytes;  /* the stored bodies' bytes, by state */
    int64_t dead_bytes;
    int full_bound;         /* db_bound reached now (DB_BOUND_NONE: not full) */
    double oldest_age_s;    /* 0 when nothing is pending */
    int64_t dedup_entries;
    int64_t body_bytes;     /* memory held by request bodies in progress (ingest) */
    int64_t body_budget;    /* the most they may hold */
} metrics_gauges;

/* The whole exposition (malloc'd, NUL-terminated), or NULL on out of memory. */
char *metrics_render(const metrics_gauges *g);

/* The uplink's state as the sender sees it (link up or not), for
** pdrelay_link_up and pdrelay_link_down_seconds_total (the seconds spent
** down, the current outage included at each scrape). Starts up. */
void metrics_link_set(int up);

/* pdrelay_upstream_active{url}: the [pagerduty] urls (n at most
** PDR_CONFIG_MAX_UPSTREAMS, credentials already redacted; copied), the
** first active; then which one is (an index). No series before the first
** call. */
void metrics_upstreams_set(const char *const *urls, int n);
void metrics_upstream_active(int i);

/* Clears every series (tests). */
void metrics_reset(void);

/* A monotonic clock in seconds, for durations. */
double metrics_now(void);

#endif /* PDR_METRICS_H */
