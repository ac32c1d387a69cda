/*
** bench_ingest.c — load generator for `pdrelay run`'s HTTP ingest
** (libcurl multi), against POST /v2/enqueue with [outbox] synchronous=full.
**
**   bench_ingest [--events N] [--seconds S] [--rate R] [--keep]
**
**   --events N   requests of the throughput run (default 50000)
**   --seconds S  length of the latency run (default 10)
**   --rate R     offered rate of the latency run, events/s (default 2000)
**   --keep       keep the scratch directory (config, log, outbox)
**
** 1. Throughput: 16 keep-alive connections, each sending its next request as
**    soon as the reply to the last came (closed loop). Every request is a
**    distinct trigger (its own dedup_key), so nothing coalesces. A 202 means
**    the event is committed (fsync'd): events/s = N / elapsed. At the end the
**    outbox is counted: it must hold N rows. Expected >= 10,000/s.
** 2. Latency at a fixed offered rate (open loop): request i is due at
**    start + i/R; its latency runs from that due time (not from when it was
**    actually sent, so a stall is not hidden: no coordinated omission) to
**    its 202. Up to 64 connections. p50, p99, max. Expected p99 <= 10 ms.
** 3. Peak RSS of the daemon (VmHWM, RssAnon) after both runs.
**
** The daemon's PagerDuty URL points at a closed port, so its sender only
** reschedules one head per key now and then and does not compete for the
** database. Progress to stderr, the table to stdout; exit 1 when a figure
** could not be measured.
*/
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clock.h"
#include "db.h"
#include "itutil.h"
#include "testutil.h"

#define THROUGHPUT_CONNS 16
#define LATENCY_CONNS 64
#define BODY_MAX 512

static const char *const KEY = "R0bbbbbbbbbbbbbbbbbbbbbbbbbbe123";

typedef struct slot {
    CURL *h;
    char body[BODY_MAX];
    int busy;
    double due_ms;          /* latency run: when the request was due */
} slot;

typedef struct run {
    CURLM *multi;
    slot *slots;
    int nslots;
    char url[128];
    long next;              /* next request number */
    long done, failed;
    double *lat_ms;         /* latency run: one per request */
} run;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t sink(char *d, size_t sz, size_t nm, void *ud)
{
    (void)d;
    (void)ud;
    return sz * nm;
}

static void slot_send(run *r, slot *s, long i, double due)
{
    int n = snprintf(s->body, sizeof s->body,
                     "{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"bench-%ld\","
                     "\"payload\":{\"summary\":\"Load test event %ld\",\"source\":\"bench\","
                     "\"severity\":\"warning\",\"custom_details\":{\"n\":%ld}}}",
                     KEY, i, i, i);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)n);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
    s->busy = 1;
    s->due_ms = due;
    curl_multi_add_handle(r->multi, s->h);
}

static int run_init(run *r, int port, int nslots)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    memset(r, 0, sizeof *r);
    r->multi = curl_multi_init();
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)nslots);
    r->nslots = nslots;
    r->slots = calloc((size_t)nslots, sizeof *r->slots);
    snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d/v2/enqueue", port);
    for (int i = 0; i < nslots; i++) {
        CURL *h = curl_easy_init();
        curl_easy_setopt(h, CURLOPT_URL, r->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);   /* leaked once per run: a benchmark */
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        r->slots[i].h = h;
    }
    return 0;
}

static void run_cleanup(run *r)
{
    for (int i = 0; i < r->nslots; i++) {
        curl_multi_remove_handle(r->multi, r->slots[i].h);
        curl_easy_cleanup(r->slots[i].h);
    }
    curl_multi_cleanup(r->multi);
    free(r->slots);
}

/* Collects finished transfers; returns the slots freed. */
static void run_reap(run *r, double t)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(r->multi, &left))) {
        slot *s;
        long code = 0;
        if (m->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(r->multi, m->easy_handle);
        s->busy = 0;
        if (m->data.result != CURLE_OK || code != 202) {
            if (r->failed++ < 5)
                fprintf(stderr, "request failed: %s, HTTP %ld\n", curl_easy_strerror(m->data.result), code);
        } else if (r->lat_ms) {
            r->lat_ms[r->done] = t - s->due_ms;
        }
        r->done++;
    }
}

static slot *free_slot(run *r)
{
    for (int i = 0; i < r->nslots; i++)
        if (!r->slots[i].busy) return &r->slots[i];
    return NULL;
}

/* Closed loop: every connection keeps one request in flight. */
static double throughput(int port, long n, long first_id)
{
    run r;
    int running = 0;
    double t0;
    run_init(&r, port, THROUGHPUT_CONNS);
    t0 = now_ms();
    while (r.done < n) {
        slot *s;
        while (r.next < n && (s = free_slot(&r))) slot_send(&r, s, first_id + r.next++, 0);
        curl_multi_perform(r.multi, &running);
        run_reap(&r, now_ms());
        if (r.done < n) curl_multi_poll(r.multi, NULL, 0, 100, NULL);
    }
    double el = now_ms() - t0;
    long failed = r.failed;
    run_cleanup(&r);
    if (failed) return -1;
    return (double)n / (el / 1000.0);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Open loop at rate/s for seconds; fills p50/p99/max. */
static int latency(int port, double rate, int seconds, long first_id, double out[3], long *sent_out)
{
    run r;
    long n = (long)(rate * seconds);
    int running = 0;
    double t0, interval = 1000.0 / rate;
    long backlog_max = 0;
    run_init(&r, port, LATENCY_CONNS);
    r.lat_ms = calloc((size_t)n, sizeof *r.lat_ms);
    t0 = now_ms();
    while (r.done < n) {
        double t = now_ms();
        slot *s;
        /* Send every request whose due time has come, as connections allow. */
        while (r.next < n && t0 + (double)r.next * interval <= t && (s = free_slot(&r))) {
            slot_send(&r, s, first_id + r.next, t0 + (double)r.next * interval);
            r.next++;
        }
        long backlog = (long)((t - t0) / interval) - r.next;
        if (backlog > backlog_max) backlog_max = backlog;
        curl_multi_perform(r.multi, &running);
        run_reap(&r, now_ms());
        if (r.done < n) {
            double next_due = t0 + (double)r.next * interval - now_ms();
            int wait = next_due > 1 ? (int)next_due : 0;
            curl_multi_poll(r.multi, NULL, 0, r.next < n ? wait : 100, NULL);
        }
    }
    if (r.failed) {
        run_cleanup(&r);
        free(r.lat_ms);
        return -1;
    }
    qsort(r.lat_ms, (size_t)n, sizeof *r.lat_ms, cmp_d);
    out[0] = r.lat_ms[n / 2];
    out[1] = r.lat_ms[(size_t)((double)n * 0.99)];
    out[2] = r.lat_ms[n - 1];
    *sent_out = n;
    if (backlog_max > 0) fprintf(stderr, "latency run: at most %ld requests waited for a connection\n", backlog_max);
    run_cleanup(&r);
    free(r.lat_ms);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 50000;
    int seconds = 10, keep = 0, ex = 0;
    double rate = 2000, lat[3];
    long lat_n = 0;
    it_daemon d = {0};

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc) {
            n = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
            rate = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--keep")) {
            keep = 1;
        } else {
            fprintf(stderr, "usage: bench_ingest [--events N] [--seconds S] [--rate R] [--keep]\n");
            return 2;
        }
    }
    if (n < 1 || seconds < 1 || rate <= 0) {
        fprintf(stderr, "bench_ingest: --events, --seconds and --rate must be positive\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char *dir = tu_mkdtemp();
    char *cfg = tu_printf("%s/pdrelay.ini", dir);
    char *data = tu_printf("%s/var", dir);
    char *log = tu_printf("%s/pdrelay.log", dir);
    int port = it_free_port();
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = http://127.0.0.1:1\nbackoff_initial_ms = 1000\n"
                           "backoff_max_ms = 60000\n[outbox]\nsynchronous = full\n",
                           data, port);
    tu_write_file(cfg, text);
    free(text);
    if (it_daemon_start(&d, cfg, log) != 0 || it_wait_log(&d, "msg=\"pdrelay started\"", 10000) != 0) {
        fprintf(stderr, "bench_ingest: the daemon did not start; see %s\n", log);
        return 1;
    }
    fprintf(stderr, "throughput: %ld events, %d connections...\n", n, THROUGHPUT_CONNS);
    long long ticks0 = it_proc_cpu_ticks(d.pid);
    double eps = throughput(port, n, 0);
    double cpu_s = (double)(it_proc_cpu_ticks(d.pid) - ticks0) / (double)sysconf(_SC_CLK_TCK);
    fprintf(stderr, "latency: %.0f events/s offered for %d s...\n", rate, seconds);
    int lrc = latency(port, rate, seconds, n, lat, &lat_n);
    long hwm = it_proc_status_kb(d.pid, "VmHWM"), anon = it_proc_status_kb(d.pid, "RssAnon");
    it_daemon_stop(&d, SIGTERM);

    db_t *db = tu_db_open(data, 0);
    int64_t pending = 0, dead = 0;
    db_outbox_count(db, &pending, &dead);
    db_close(db);

    printf("pdrelay ingest benchmark: POST /v2/enqueue, synchronous=full, %ld CPUs\n", sysconf(_SC_NPROCESSORS_ONLN));
    if (eps < 0) {
        printf("throughput run: requests failed\n");
        ex = 1;
    } else {
        printf("durable events/s, %d keep-alive connections, %ld events: %.0f  (expected >= 10000: %s)\n",
               THROUGHPUT_CONNS, n, eps, eps >= 10000 ? "met" : "MISSED");
        printf("daemon CPU during the throughput run: %.2f s, %.0f us per event\n", cpu_s, cpu_s * 1e6 / (double)n);
    }
    if (lrc) {
        printf("latency run: requests failed\n");
        ex = 1;
    } else {
        printf("latency at %.0f events/s offered, %ld events: p50 %.2f ms  p99 %.2f ms  max %.2f ms"
               "  (expected p99 <= 10 ms: %s)\n",
               rate, lat_n, lat[0], lat[1], lat[2], lat[1] <= 10 ? "met" : "MISSED");
    }
    printf("daemon peak RSS (VmHWM): %.1f MiB; anonymous (heap, stacks) at the end: %.1f MiB\n",
           (double)hwm / 1024, (double)anon / 1024);
    printf("rows in the outbox afterwards: %lld (requests answered 202: %ld)\n", (long long)pending,
           (eps < 0 ? 0 : n) + (lrc ? 0 : lat_n));
    if (pending != (eps < 0 ? 0 : n) + (lrc ? 0 : lat_n)) {
        printf("MISMATCH: every 202 must be a row\n");
        ex = 1;
    }
    if (keep) {
        fprintf(stderr, "kept %s\n", dir);
    } else {
        tu_rmrf(dir);
    }
    free(d.log_path);
    free(dir);
    free(cfg);
    free(data);
    free(log);
    curl_global_cleanup();
    return ex;
}
