/*
** bench_chain.c — a relay chain against a single hop: the same events
** posted to an edge pdrelay that sends them straight to the mock PagerDuty,
** and to an edge that sends them to a site pdrelay that sends them to the
** mock (README "A site relay").
**
**   bench_chain [--events N] [--clients C] [--keys K] [--runs R]
**               [--synchronous full|normal] [--keep]
**
**   --events N   events per run (default 10000), each its own dedup_key
**   --clients C  concurrent HTTP clients posting to the edge (default 4),
**                each on one kept-alive connection
**   --keys K     routing keys the events are spread over (default 20)
**   --runs R     runs of each shape (default 3); medians are printed
**   --synchronous  [outbox] synchronous of both daemons (default full)
**   --keep       keep the scratch directories (configs, logs, outboxes)
**
** Single hop: edge -> mock, rate_per_minute 1000000 and burst 100000 (the
** limiter never waits). Two hops: edge -> site -> mock, the edge with
** upstream = relay, rate_per_minute = 0 and the site's token; the site
** with [listen] auth_token_file and the same high rate towards the mock.
** The mock has no rate limit and answers at once. Both daemons log at
** info, the default (a "delivered" line per event, at each hop).
**
** Throughput: events / (the mock's last first-arrival - the first post).
** Latency: per event, from the edge's 202 (the client's clock, when curl
** returned) to the mock's first arrival of its dedup_key (the mock's clock,
** mapped to ours by bench_mock_clock_offset: error <= half a round trip);
** p50 and p99. Expected: two-hop throughput >= 0.8 of single-hop.
**
** Everything listens on 127.0.0.1, and every process shares the machine's
** CPUs. Progress goes to stderr, the table to stdout. Exit status 1 when a
** figure could not be measured.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "benchutil.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define BENCH_TOKEN "bench-chain-t0ken-7d1a"

static int n_events = 10000, n_clients = 4, n_keys = 20, n_runs = 3, keep_dirs;
static const char *sync_mode = "full";

typedef struct figures {
    double throughput;      /* events/s */
    double p50_ms, p99_ms;  /* edge 202 -> mock arrival */
    int repeats;            /* arrivals beyond the first per dedup_key */
} figures;

/* ---- the clients ---------------------------------------------------------------- */

typedef struct client {
    const char *base;       /* the edge */
    int first, step;        /* events first, first + step, ... */
    double *acked_ms;       /* per event: when its 202 came (bench_mono_ms) */
    int failures;
} client;

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static void *client_main(void *arg)
{
    client *c = arg;
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    char url[128], body[512];
    snprintf(url, sizeof url, "%s/v2/enqueue", c->base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    for (int i = c->first; i < n_events; i += c->step) {
        long st = 0;
        snprintf(body, sizeof body,
                 "{\"routing_key\":\"R0CHAIN%025d\",\"event_action\":\"trigger\",\"dedup_key\":\"c%d\","
                 "\"payload\":{\"summary\":\"chain bench %d\",\"source\":\"bench\",\"severity\":\"warning\"}}",
                 i % n_keys, i, i);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(h) != CURLE_OK || curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st) != CURLE_OK ||
            st != 202) {
            c->failures++;
            c->acked_ms[i] = -1;
            continue;
        }
        c->acked_ms[i] = bench_mono_ms();
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return NULL;
}

/* ---- one run ---------------------------------------------------------------------- */

static int cmp_d(const void *a, const void *b)
{
    return bench_cmp_double(a, b);
}

static double pct(const double *v, int n, double p)
{
    int i = (int)(p * (n - 1) + 0.5);
    return n ? v[i < n ? i : n - 1] : -1;
}

static void write_token(const char *path)
{
    tu_write_file(path, BENCH_TOKEN "\n");
    chmod(path, 0600);
}

/* One run of one shape (hops 1 or 2); 0 when measured. */
static int run_once(int hops, figures *out)
{
    mockpd_opts mo = {.limit = -1};
    mockpd *m = mockpd_start(&mo);
    char *dir = tu_mkdtemp();
    it_daemon edge = {0}, site = {0};
    int edge_port = it_free_port(), site_port = it_free_port(), rc = -1;
    char *edge_cfg = tu_printf("%s/edge.ini", dir), *site_cfg = tu_printf("%s/site.ini", dir);
    char *edge_log = tu_printf("%s/edge.log", dir), *site_log = tu_printf("%s/site.log", dir);
    char *tok = tu_printf("%s/token", dir), *base = tu_printf("http://127.0.0.1:%d", edge_port);
    char *text, *upstream;
    double *acked = calloc((size_t)n_events, sizeof *acked);
    double rtt = 0, off;
    figures f = {0};

    if (!m || !acked) goto out;
    write_token(tok);
    off = bench_mock_clock_offset(m, &rtt);
    if (off < -1e17) goto out;
    if (hops == 2) {
        text = tu_printf("[agent]\ndata_dir = %s/site-var\n[outbox]\nsynchronous = %s\n[listen]\nport = %d\nauth_token_file = %s\n"
                         "[pagerduty]\nurl = %s\nrate_per_minute = 1000000\nburst = 100000\nconcurrency = 64\n",
                         dir, sync_mode, site_port, tok, mockpd_url(m));
        tu_write_file(site_cfg, text);
        free(text);
        if (it_daemon_start(&site, site_cfg, site_log) || it_wait_log(&site, "pdrelay started", 10000)) {
            fprintf(stderr, "bench_chain: the site did not start\n");
            goto out;
        }
        upstream = tu_printf("url = http://127.0.0.1:%d\nupstream = relay\nauth_token_file = %s\nrate_per_minute = 0\n",
                             site_port, tok);
    } else {
        upstream = tu_printf("url = %s\nrate_per_minute = 1000000\nburst = 100000\n", mockpd_url(m));
    }
    text = tu_printf("[agent]\ndata_dir = %s/edge-var\n[outbox]\nsynchronous = %s\n[listen]\nport = %d\n"
                     "[pagerduty]\n%sconcurrency = 64\n",
                     dir, sync_mode, edge_port, upstream);
    free(upstream);
    tu_write_file(edge_cfg, text);
    free(text);
    if (it_daemon_start(&edge, edge_cfg, edge_log) || it_wait_log(&edge, "pdrelay started", 10000)) {
        fprintf(stderr, "bench_chain: the edge did not start\n");
        goto out;
    }

    pthread_t th[64];
    client cl[64];
    double t0 = bench_mono_ms();
    for (int i = 0; i < n_clients; i++) {
        cl[i] = (client){.base = base, .first = i, .step = n_clients, .acked_ms = acked};
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    int failures = 0;
    for (int i = 0; i < n_clients; i++) {
        pthread_join(th[i], NULL);
        failures += cl[i].failures;
    }
    if (failures) {
        fprintf(stderr, "bench_chain: %d posts were not answered 202\n", failures);
        goto out;
    }
    if (bench_wait_accepted(hops == 2 ? "two hops" : "single hop", m, &edge, n_events, 120000, 1000)) goto out;

    /* first arrival per dedup_key, in our clock */
    double *arr = malloc(sizeof *arr * (size_t)n_events), *lat = malloc(sizeof *lat * (size_t)n_events), last = 0;
    for (int i = 0; i < n_events; i++) arr[i] = -1;
    cJSON *ev = mockpd_events(m);
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        const char *dk = it_jstr(e, "dedup_key");
        char *end;
        long i = dk && dk[0] == 'c' ? strtol(dk + 1, &end, 10) : -1;
        if (i < 0 || i >= n_events) continue;
        if (arr[i] >= 0) {
            f.repeats++;
            continue;
        }
        arr[i] = bench_num(e, "arrival_ms") - off;
    }
    cJSON_Delete(ev);
    int n = 0;
    for (int i = 0; i < n_events; i++) {
        if (arr[i] < 0) continue;
        if (arr[i] > last) last = arr[i];
        lat[n++] = arr[i] - acked[i];
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    if (n == n_events) {
        f.throughput = n_events / ((last - t0) / 1000.0);
        f.p50_ms = pct(lat, n, 0.50);
        f.p99_ms = pct(lat, n, 0.99);
        *out = f;
        rc = 0;
    } else {
        fprintf(stderr, "bench_chain: %d of %d events matched\n", n, n_events);
    }
    free(arr);
    free(lat);
out:
    if (edge.pid) it_daemon_stop(&edge, SIGTERM);
    if (site.pid) it_daemon_stop(&site, SIGTERM);
    mockpd_stop(m);
    if (keep_dirs)
        fprintf(stderr, "bench_chain: kept %s\n", dir);
    else
        tu_rmrf(dir);
    free(edge.log_path);
    free(site.log_path);
    free(dir);
    free(edge_cfg);
    free(site_cfg);
    free(edge_log);
    free(site_log);
    free(tok);
    free(base);
    free(acked);
    return rc;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int int_arg(const char *s, int lo, int hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_chain: %s: expected a number from %d to %d\n", s, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc) n_events = int_arg(argv[++i], 1, 10000000);
        else if (!strcmp(argv[i], "--clients") && i + 1 < argc) n_clients = int_arg(argv[++i], 1, 64);
        else if (!strcmp(argv[i], "--keys") && i + 1 < argc) n_keys = int_arg(argv[++i], 1, 100000);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) n_runs = int_arg(argv[++i], 1, 99);
        else if (!strcmp(argv[i], "--synchronous") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "full") || !strcmp(argv[i + 1], "normal")))
            sync_mode = argv[++i];
        else if (!strcmp(argv[i], "--keep")) keep_dirs = 1;
        else {
            fprintf(stderr, "usage: bench_chain [--events N] [--clients C] [--keys K] [--runs R] "
                            "[--synchronous full|normal] [--keep]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    mockpd_global_init();
    char tail[160];
    snprintf(tail, sizeof tail, "; %d events, %d clients, %d routing keys, synchronous = %s, %d runs", n_events,
             n_clients, n_keys, sync_mode, n_runs);
    bench_print_header(argc, argv, tail);

    double tp[2][99], p50[2][99], p99[2][99];
    int reps[2] = {0, 0};
    for (int r = 0; r < n_runs; r++) {
        for (int h = 0; h < 2; h++) {
            figures f;
            fprintf(stderr, "bench_chain: run %d, %s\n", r + 1, h ? "two hops" : "single hop");
            if (run_once(h + 1, &f)) return 1;
            tp[h][r] = f.throughput;
            p50[h][r] = f.p50_ms;
            p99[h][r] = f.p99_ms;
            reps[h] += f.repeats;
            printf("run %d %-10s  %8.0f events/s  p50 %7.1f ms  p99 %7.1f ms  repeats %d\n", r + 1,
                   h ? "two hops" : "single hop", f.throughput, f.p50_ms, f.p99_ms, f.repeats);
            fflush(stdout);
        }
    }
    double t1 = median(tp[0], n_runs), t2 = median(tp[1], n_runs);
    printf("\nmedian of %d runs           throughput     p50 (202 -> mock)  p99\n", n_runs);
    printf("single hop (edge -> mock)   %8.0f /s    %7.1f ms         %7.1f ms\n", t1, median(p50[0], n_runs),
           median(p99[0], n_runs));
    printf("two hops (edge -> site -> mock) %4.0f /s    %7.1f ms         %7.1f ms\n", t2, median(p50[1], n_runs),
           median(p99[1], n_runs));
    double ratio[99];
    for (int r = 0; r < n_runs; r++) ratio[r] = tp[1][r] / tp[0][r];
    double rm = median(ratio, n_runs);
    printf("ratio two hops / single hop: %.2f of the medians; median of the runs' own ratios %.2f "
           "(expected >= 0.80) %s\n", t2 / t1, rm, rm >= 0.8 ? "ok" : "MISS");
    return 0;
}
