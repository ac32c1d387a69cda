/*
** metrics.c — the Prometheus registry (see metrics.h).
**
** Each family is a small array of series found by linear search on their
** label values: families hold a few dozen series (targets x severities,
** endpoints x statuses), and a scrape every 15 s is the only reader. Arrays
** grow by doubling up to METRICS_MAX_SERIES; the last slot is kept for
** one series labelled "other" that counts every label set past the cap.
*/
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "pdr.h"

#define LABEL_MAX 80
#define TARGETS_MAX PDR_CONFIG_MAX_TARGETS
#define RENDER_MAX (4 * 1024 * 1024)

typedef struct family {
    const char *name;
    const char *help;
    const char *labels[2];
    int nlabels;
} family;

static const family counter_families[MC_COUNT] = {
    {"pagerduty_events_triggered_total", "Alert triggers delivered to PagerDuty (answered 2xx).",
     {"target", "severity"}, 2},
    {"pagerduty_events_acknowledged_total", "Acknowledge events delivered to PagerDuty.", {"target", NULL}, 1},
    {"pagerduty_events_resolved_total", "Resolve events delivered to PagerDuty.", {"target", NULL}, 1},
    {"pagerduty_change_events_total", "Change events delivered to PagerDuty.", {"target", NULL}, 1},
    {"pagerduty_api_requests_total", "Requests to the PagerDuty Events API by endpoint and HTTP status (0: no reply).",
     {"endpoint", "status"}, 2},
    {"pagerduty_api_errors_total", "Failed requests to the PagerDuty Events API by error type.",
     {"error_type", NULL}, 1},
    {"pagerduty_rate_limit_hits_total", "429 replies from PagerDuty.", {"target", NULL}, 1},
    {"pdrelay_ingest_total", "Ingest outcomes by endpoint: events queued, coalesced, repaired; requests rejected; "
     "alerts unrouted.", {"endpoint", "result"}, 2},
    {"pdrelay_dead_letters_total", "Events moved to the dead letters, by reason.", {"reason", NULL}, 1},
    {"pdrelay_resolved_while_queued_total", "Triggers that resolved while queued ([outbox] resolved_while_queued): "
     "collapsed (dropped with their resolve) or noted (sent as info).", {"action", NULL}, 1},
    {"pdrelay_link_probes_total", "Requests that probed a down uplink, by result (failed, recovered).",
     {"result", NULL}, 1},
    {"pdrelay_dead_dropped_total", "Dead letters dropped, oldest first, past [outbox] max_dead or max_dead_age.",
     {"bound", NULL}, 1},
    {"pdrelay_webhook_requests_total", "Requests to webhook targets ([target] webhook_url) by target and HTTP "
     "status (0: no reply).", {"target", "status"}, 2},
};

static const double api_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double commit_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25};
#define NBUCKETS_MAX 9

typedef struct hist_family {
    const char *name;
    const char *help;
    const char *label;          /* NULL: no label */
    const double *bounds;
    int nbounds;
} hist_family;

static const hist_family hist_families[MH_COUNT] = {
    {"pagerduty_api_duration_seconds", "Duration of requests to the PagerDuty Events API.", "endpoint",
     api_buckets, (int)(sizeof api_buckets / sizeof *api_buckets)},
    {"pdrelay_ingest_commit_seconds", "Duration of ingest group-commit transactions (with the fsync).", NULL,
     commit_buckets, (int)(sizeof commit_buckets / sizeof *commit_buckets)},
};

typedef struct series {
    char lv[2][LABEL_MAX];
    double v;
} series;

typedef struct hseries {
    char lv[LABEL_MAX];
    uint64_t buckets[NBUCKETS_MAX];   /* non-cumulative; summed when rendered */
    uint64_t count;
    double sum;
} hseries;

typedef struct target_name {
    char key[PDR_ROUTING_KEY_LEN + 1];
    char name[LABEL_MAX];
} target_name;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static series *counters[MC_COUNT];
static size_t n_counters[MC_COUNT], cap_counters[MC_COUNT];
static hseries *hists[MH_COUNT];
static size_t n_hists[MH_COUNT], cap_hists[MH_COUNT];
static target_name targets[TARGETS_MAX];
static size_t n_targets;
static time_t start_time;

double metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_label(char dst[LABEL_MAX], const char *src)
{
    snprintf(dst, LABEL_MAX, "%s", src ? src : "");
}

/* Grows *arr (of elem bytes) to hold one more; 0 on success. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    size_t ncap;
    void *p;
    if (n < *cap) return 0;
    if (*cap >= METRICS_MAX_SERIES) return -1;
    ncap = *cap ? *cap * 2 : 8;
    if (ncap > METRICS_MAX_SERIES) ncap = METRICS_MAX_SERIES;
    p = pdr_realloc(*arr, ncap * elem);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static series *counter_find(metric_counter c, const char *a, const char *b)
{
    for (size_t i = 0; i < n_counters[c]; i++)
        if (!strcmp(counters[c][i].lv[0], a) && !strcmp(counters[c][i].lv[1], b)) return &counters[c][i];
    return NULL;
}

/* The series of c with these labels, created if new. The last slot of a
** family is kept for the series labelled "other", which counts every label
** set that came after the family was full. NULL only on out of memory.
** Called under mu. */
static series *counter_series(metric_counter c, const char *l1, const char *l2)
{
    char a[LABEL_MAX], b[LABEL_MAX];
    series *s;
    copy_label(a, l1);
    copy_label(b, l2);
    s = counter_find(c, a, b);
    if (s) return s;
    if (n_counters[c] >= METRICS_MAX_SERIES - 1) {
        copy_label(a, counter_families[c].nlabels > 0 ? "other" : "");
        copy_label(b, counter_families[c].nlabels > 1 ? "other" : "");
        s = counter_find(c, a, b);
        if (s || n_counters[c] >= METRICS_MAX_SERIES) return s;
    }
    if (grow((void **)&counters[c], &cap_counters[c], n_counters[c], sizeof(series))) return NULL;
    s = &counters[c][n_counters[c]++];
    memset(s, 0, sizeof *s);
    memcpy(s->lv[0], a, sizeof a);
    memcpy(s->lv[1], b, sizeof b);
    return s;
}

void metrics_add(metric_counter c, const char *l1, const char *l2, double n)
{
    series *s;
    if ((unsigned)c >= MC_COUNT) return;
    pthread_mutex_lock(&mu);
    s = counter_series(c, l1, l2);
    if (s) s->v += n;
    pthread_mutex_unlock(&mu);
}

void metrics_add_each(metric_counter c, const char *l1, const char *const *l2s, const double *ns, size_t n)
{
    if ((unsigned)c >= MC_COUNT) return;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n; i++) {
        series *s = counter_series(c, l1, l2s[i]);
        if (s) s->v += ns[i];
    }
    pthread_mutex_unlock(&mu);
}

double metrics_get(metric_counter c, const char *l1, const char *l2)
{
    char a[LABEL_MAX], b[LABEL_MAX];
    double v = 0;
    if ((unsigned)c >= MC_COUNT) return 0;
    copy_label(a, l1);
    copy_label(b, l2);
    pthread_mutex_lock(&mu);
    series *s = counter_find(c, a, b);
    if (s) v = s->v;
    pthread_mutex_unlock(&mu);
    return v;
}

void metrics_observe(metric_hist h, const char *l1, double seconds)
{
    char a[LABEL_MAX];
    hseries *s = NULL;
    if ((unsigned)h >= MH_COUNT) return;
    copy_label(a, hist_families[h].label ? l1 : NULL);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n_hists[h] && !s; i++)
        if (!strcmp(hists[h][i].lv, a)) s = &hists[h][i];
    if (!s && grow((void **)&hists[h], &cap_hists[h], n_hists[h], sizeof(hseries)) == 0) {
        s = &hists[h][n_hists[h]++];
        memset(s, 0, sizeof *s);
        memcpy(s->lv, a, sizeof a);
    }
    if (s) {
        int b = 0;
        while (b < hist_families[h].nbounds && seconds > hist_families[h].bounds[b]) b++;
        if (b < hist_families[h].nbounds) s->buckets[b]++;
        s->count++;
        s->sum += seconds;
    }
    pthread_mutex_unlock(&mu);
}

void metrics_set_targets(const pdr_config *cfg)
{
    static const char *const error_types[] = {"bad_request", "unauthorized", "rate_limit", "server_error",
                                              "timeout", "network", "tls"};
    pthread_mutex_lock(&mu);
    if (!start_time) {
        /* The first call (at start): series that should read 0 rather than
        ** be absent until the first error, so rate() and alerts work. */
        start_time = time(NULL);
        for (size_t i = 0; i < sizeof error_types / sizeof *error_types; i++)
            counter_series(MC_API_ERRORS, error_types[i], NULL);
        counter_series(MC_DEAD_LETTERS, "permanent", NULL);
        counter_series(MC_DEAD_LETTERS, "max_age", NULL);
        counter_series(MC_DEAD_DROPPED, "max_dead", NULL);
        counter_series(MC_DEAD_DROPPED, "max_dead_age", NULL);
    }
    n_targets = 0;
    for (size_t i = 0; cfg && i < cfg->n_targets && n_targets < TARGETS_MAX; i++) {
        /* The first target with a key names it (two targets may share one). */
        int seen = 0;
        for (size_t k = 0; k < n_targets; k++)
            if (!strcmp(targets[k].key, cfg->targets[i].routing_key)) seen = 1;
        if (seen || cfg->targets[i].webhook_url) continue;   /* webhook keys name their target */
        snprintf(targets[n_targets].key, sizeof targets[n_targets].key, "%s", cfg->targets[i].routing_key);
        copy_label(targets[n_targets].name, cfg->targets[i].name);
        n_targets++;
    }
    pthread_mutex_unlock(&mu);
}

const char *metrics_target(const char *routing_key, char *out, size_t outsz)
{
    int found = 0;
    pthread_mutex_lock(&mu);
    for (size_t k = 0; k < n_targets && !found; k++) {
        if (!strcmp(targets[k].key, routing_key)) {
            snprintf(out, outsz, "%s", targets[k].name);
            found = 1;
        }
    }
    pthread_mutex_unlock(&mu);
    return found ? out : pdr_redact(routing_key, out, outsz);
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    int failed;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    int len;
    if (b->failed) return;
    for (;;) {
        va_start(ap, fmt);
        len = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (len < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)len < b->cap - b->n) {
            b->n += (size_t)len;
            return;
        }
        size_t ncap = b->cap * 2;
        char *p;
        if (ncap > RENDER_MAX || !(p = pdr_realloc(b->p, ncap))) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = ncap;
    }
}

/* A label value escaped as the text format wants (\\, \", \n), into out
** of outsz bytes (twice the value's length fits it whole). */
static const char *esc_n(const char *v, char *out, size_t outsz)
{
    size_t o = 0;
    for (; *v && o + 2 < outsz; v++) {
        if (*v == '\\' || *v == '"') {
            out[o++] = '\\';
            out[o++] = *v;
        } else if (*v == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *v;
        }
    }
    out[o] = '\0';
    return out;
}

static const char *esc(const char *v, char out[LABEL_MAX * 2])
{
    return esc_n(v, out, LABEL_MAX * 2);
}

static void render_counters(buf *b)
{
    char e1[LABEL_MAX * 2], e2[LABEL_MAX * 2];
    for (int c = 0; c < MC_COUNT; c++) {
        const family *f = &counter_families[c];
        put(b, "# HELP %s %s\n# TYPE %s counter\n", f->name, f->help, f->name);
        for (size_t i = 0; i < n_counters[c]; i++) {
            const series *s = &counters[c][i];
            if (f->nlabels == 2)
                put(b, "%s{%s=\"%s\",%s=\"%s\"} %.17g\n", f->name, f->labels[0], esc(s->lv[0], e1), f->labels[1],
                    esc(s->lv[1], e2), s->v);
            else
                put(b, "%s{%s=\"%s\"} %.17g\n", f->name, f->labels[0], esc(s->lv[0], e1), s->v);
        }
    }
}

static void render_hists(buf *b)
{
    char e[LABEL_MAX * 2], lab[LABEL_MAX * 2 + 32];
    for (int h = 0; h < MH_COUNT; h++) {
        const hist_family *f = &hist_families[h];
        put(b, "# HELP %s %s\n# TYPE %s histogram\n", f->name, f->help, f->name);
        for (size_t i = 0; i < n_hists[h]; i++) {
            const hseries *s = &hists[h][i];
            uint64_t cum = 0;
            if (f->label) {
                snprintf(lab, sizeof lab, "%s=\"%s\",", f->label, esc(s->lv, e));
            } else {
                lab[0] = '\0';
            }
            for (int k = 0; k < f->nbounds; k++) {
                cum += s->buckets[k];
                put(b, "%s_bucket{%sle=\"%g\"} %llu\n", f->name, lab, f->bounds[k], (unsigned long long)cum);
            }
            put(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", f->name, lab, (unsigned long long)s->count);
            if (f->label) lab[strlen(lab) - 1] = '\0';   /* no trailing comma */
            put(b, "%s_sum%s%s%s %.9g\n", f->name, lab[0] ? "{" : "", lab, lab[0] ? "}" : "", s->sum);
            put(b, "%s_count%s%s%s %llu\n", f->name, lab[0] ? "{" : "", lab, lab[0] ? "}" : "",
                (unsigned long long)s->count);
        }
    }
}

/* Under mu. */
static int link_up = 1;
static double link_down_total, link_down_since;

void metrics_link_set(int up)
{
    double now = metrics_now();
    pthread_mutex_lock(&mu);
    if (link_up && !up) link_down_since = now;
    if (!link_up && up) link_down_total += now - link_down_since;
    link_up = up ? 1 : 0;
    pthread_mutex_unlock(&mu);
}

/* write_bytes of /proc/self/io: the bytes the whole process (every thread)
** made the kernel write to storage, counted as pages of the page cache are
** dirtied (the outbox's WAL frames, checkpoints, a log file). -1 when it
** cannot be read (not Linux, a kernel without task I/O accounting). */
static long long proc_write_bytes(void)
{
    char line[128];
    long long v = -1;
    FILE *f = fopen("/proc/self/io", "re");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "write_bytes:", 12)) {
            char *end;
            v = strtoll(line + 12, &end, 10);
            if (end == line + 12 || v < 0) v = -1;
            break;
        }
    fclose(f);
    return v;
}

/* Under mu: the urls for pdrelay_upstream_active, credentials redacted. */
#define UPSTREAM_LABEL_MAX 256
static char upstream_urls[PDR_CONFIG_MAX_UPSTREAMS][UPSTREAM_LABEL_MAX];
static int n_upstream_urls, upstream_active;

void metrics_upstreams_set(const char *const *urls, int n)
{
    pthread_mutex_lock(&mu);
    n_upstream_urls = n < PDR_CONFIG_MAX_UPSTREAMS ? n : PDR_CONFIG_MAX_UPSTREAMS;
    for (int i = 0; i < n_upstream_urls; i++)
        snprintf(upstream_urls[i], sizeof upstream_urls[i], "%s", urls[i]);
    upstream_active = 0;
    pthread_mutex_unlock(&mu);
}

void metrics_upstream_active(int i)
{
    pthread_mutex_lock(&mu);
    upstream_active = i;
    pthread_mutex_unlock(&mu);
}

/* Under mu. */
static void render_upstreams(buf *b)
{
    put(b, "# HELP pdrelay_upstream_active 1 for the [pagerduty] url requests go to now, 0 for the others.\n"
           "# TYPE pdrelay_upstream_active gauge\n");
    for (int i = 0; i < n_upstream_urls; i++) {
        char e[UPSTREAM_LABEL_MAX * 2];
        put(b, "pdrelay_upstream_active{url=\"%s\"} %d\n", esc_n(upstream_urls[i], e, sizeof e),
            i == upstream_active);
    }
}

char *metrics_render(const metrics_gauges *g)
{
    long long written = proc_write_bytes();
    buf b = {pdr_malloc(16384), 0, 16384, 0};
    if (!b.p) return NULL;
    pthread_mutex_lock(&mu);
    render_counters(&b);
    render_hists(&b);
    put(&b, "# HELP pdrelay_link_up 1 while the uplink to PagerDuty answers, 0 while it is down.\n"
            "# TYPE pdrelay_link_up gauge\npdrelay_link_up %d\n", link_up);
    put(&b, "# HELP pdrelay_link_down_seconds_total Seconds the uplink has been down since the start.\n"
            "# TYPE pdrelay_link_down_seconds_total counter\npdrelay_link_down_seconds_total %.3f\n",
        link_down_total + (link_up ? 0.0 : metrics_now() - link_down_since));
    render_upstreams(&b);
    pthread_mutex_unlock(&mu);
    put(&b, "# HELP pdrelay_outbox_events Events in the outbox by state.\n# TYPE pdrelay_outbox_events gauge\n");
    put(&b, "pdrelay_outbox_events{state=\"pending\"} %lld\n", (long long)g->pending);
    put(&b, "pdrelay_outbox_events{state=\"dead\"} %lld\n", (long long)g->dead);
    put(&b, "# HELP pdrelay_outbox_bytes Bytes of the stored events' bodies by state ([outbox] max_bytes bounds "
            "pending).\n# TYPE pdrelay_outbox_bytes gauge\n");
    put(&b, "pdrelay_outbox_bytes{state=\"pending\"} %lld\n", (long long)g->pending_bytes);
    put(&b, "pdrelay_outbox_bytes{state=\"dead\"} %lld\n", (long long)g->dead_bytes);
    put(&b, "# HELP pdrelay_outbox_full 1 for the [outbox] bound that refuses new events now (ingest answers "
            "503), else 0.\n# TYPE pdrelay_outbox_full gauge\n");
    for (int i = DB_BOUND_MAX_EVENTS; i < DB_BOUND_COUNT; i++)
        put(&b, "pdrelay_outbox_full{bound=\"%s\"} %d\n", db_bound_key((db_bound)i), g->full_bound == i);
    put(&b, "# HELP pdrelay_outbox_oldest_age_seconds Age of the oldest pending event (0 when none).\n"
            "# TYPE pdrelay_outbox_oldest_age_seconds gauge\npdrelay_outbox_oldest_age_seconds %.3f\n",
        g->oldest_age_s);
    put(&b, "# HELP pdrelay_dedup_entries Entries in the dedup table.\n# TYPE pdrelay_dedup_entries gauge\n"
            "pdrelay_dedup_entries %lld\n", (long long)g->dedup_entries);
    if (written >= 0)
        put(&b, "# HELP pdrelay_db_bytes_written_total Bytes the process caused to be written to storage "
                "(/proc/self/io write_bytes): the outbox's commits and checkpoints, nearly all of it.\n"
                "# TYPE pdrelay_db_bytes_written_total counter\npdrelay_db_bytes_written_total %lld\n", written);
    put(&b, "# HELP pdrelay_ingest_body_bytes Memory held by the bodies of requests in progress; past "
            "pdrelay_ingest_body_budget_bytes a request is answered 503.\n"
            "# TYPE pdrelay_ingest_body_bytes gauge\npdrelay_ingest_body_bytes %lld\n"
            "# HELP pdrelay_ingest_body_budget_bytes The most the bodies of requests in progress may hold.\n"
            "# TYPE pdrelay_ingest_body_budget_bytes gauge\npdrelay_ingest_body_budget_bytes %lld\n",
        (long long)g->body_bytes, (long long)g->body_budget);
    put(&b, "# HELP pdrelay_build_info pdrelay's version.\n# TYPE pdrelay_build_info gauge\n"
            "pdrelay_build_info{version=\"%s\"} 1\n", PDR_VERSION);
    put(&b, "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %lld\n",
        (long long)start_time);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&mu);
    for (int c = 0; c < MC_COUNT; c++) {
        free(counters[c]);
        counters[c] = NULL;
        n_counters[c] = cap_counters[c] = 0;
    }
    for (int h = 0; h < MH_COUNT; h++) {
        free(hists[h]);
        hists[h] = NULL;
        n_hists[h] = cap_hists[h] = 0;
    }
    n_targets = 0;
    link_up = 1;
    link_down_total = 0;
    n_upstream_urls = upstream_active = 0;
    pthread_mutex_unlock(&mu);
}
