/*
** bench_ingest.c — load generator for `pdrelay run`'s HTTP ingest
** (libcurl multi), against POST /v2/enqueue with [outbox] synchronous=full.
**
**   bench_ingest [--events N] [--seconds S] [--rate R] [--skip-hostile] [--keep]
**
**   --events N      requests of each throughput run (default 50000)
**   --seconds S     length of the latency run (default 10)
**   --rate R        offered rate of the latency run, events/s (default 2000)
**   --skip-hostile  leave out run 4
**   --keep          keep the scratch directory (config, log, outbox)
**
** 1. Throughput at 16 and at 64 keep-alive connections, each sending its
**    next request as soon as the reply to the last came (closed loop). Every
**    request is a distinct trigger (its own dedup_key), so nothing
**    coalesces. A 202 means the event is committed (fsync'd): events/s =
**    N / elapsed. Next to each, the HTTP-only ceiling: GET /healthz under
**    the same load (no parsing, no database). The daemon's CPU time per
**    durable event (utime + stime over the 16-connection run). Expected
**    >= 10,000/s and <= 40 us per event.
** 2. Latency at a fixed offered rate (open loop): request i is due at
**    start + i/R; its latency runs from that due time (not from when it was
**    actually sent, so a stall is not hidden: no coordinated omission) to
**    its 202. Up to 64 connections. p50, p99, max. Expected p99 <= 10 ms.
** 3. Peak RSS of the daemon (VmHWM, RssAnon) after those runs.
** 4. A hostile host: 1,000 slow connections (one byte every 2 s) and 200
**    idle ones, all from 127.0.0.1 like one host behind a NAT, held open
**    (reconnected when the daemon cuts them off) while a well-behaved client
**    posts 2,000 events at 200/s over keep-alive connections. With the
**    default [listen] settings: what saves it is the event loop,
**    request_timeout and max_connections, not a per-address limit. Its
**    p50/p99 latency (open loop, as in 2) and error count; the daemon's RSS
**    and thread count at their highest during the run. Expected 0 errors,
**    p99 <= 50 ms.
**
** The daemon's PagerDuty URL points at a closed port, so its sender only
** reschedules one head per key now and then and does not compete for the
** database. Progress to stderr, the table to stdout; exit 1 when a figure
** could not be measured.
*/
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "clock.h"
#include "db.h"
#include "itutil.h"
#include "testutil.h"

#define THROUGHPUT_CONNS 16
#define THROUGHPUT_CONNS_MANY 64
#define LATENCY_CONNS 64
#define HOSTILE_SLOW 1000
#define HOSTILE_IDLE 200
#define HOSTILE_EVENTS 2000
#define HOSTILE_RATE 200.0
#define HOSTILE_CONNS 8
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
    int get;                /* GET /healthz instead of POST /v2/enqueue */
    long want;              /* the status a success has */
    char url[128];
    long next;              /* next request number */
    long done, failed, nok;
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
    if (r->get) {
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        s->busy = 1;
        s->due_ms = due;
        curl_multi_add_handle(r->multi, s->h);
        return;
    }
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

static int run_init(run *r, int port, int nslots, int get)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    memset(r, 0, sizeof *r);
    r->multi = curl_multi_init();
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)nslots);
    r->nslots = nslots;
    r->get = get;
    r->want = get ? 200 : 202;
    r->slots = calloc((size_t)nslots, sizeof *r->slots);
    snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d%s", port, get ? "/healthz" : "/v2/enqueue");
    for (int i = 0; i < nslots; i++) {
        CURL *h = curl_easy_init();
        curl_easy_setopt(h, CURLOPT_URL, r->url);
        if (get) curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
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
        if (m->data.result != CURLE_OK || code != r->want) {
            if (r->failed++ < 5)
                fprintf(stderr, "request failed: %s, HTTP %ld\n", curl_easy_strerror(m->data.result), code);
        } else if (r->lat_ms) {
            r->lat_ms[r->nok++] = t - s->due_ms;
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

/* Closed loop: every one of conns connections keeps one request in flight. */
static double throughput(int port, int conns, int get, long n, long first_id)
{
    run r;
    int running = 0;
    double t0;
    run_init(&r, port, conns, get);
    t0 = now_ms();
    while (r.done < n) {
        slot *s;
        while (r.next < n && (s = free_slot(&r))) slot_send(&r, s, first_id + r.next++, 0);
        curl_multi_perform(r.multi, &running);
        run_reap(&r, now_ms());
        /* Wait only when every connection has a request out (or all are sent). */
        if (r.done < n && (r.next >= n || !free_slot(&r))) curl_multi_poll(r.multi, NULL, 0, 100, NULL);
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

/* The hostile run's figures of the daemon, sampled while it lasts. */
typedef struct sampler {
    pid_t pid;
    long rss_kb_max, threads_max;
    double next_ms;
} sampler;

static void sample(sampler *sm, double t)
{
    long v;
    if (!sm || t < sm->next_ms) return;
    sm->next_ms = t + 250;
    if ((v = it_proc_status_kb(sm->pid, "VmRSS")) > sm->rss_kb_max) sm->rss_kb_max = v;
    if ((v = it_proc_status_kb(sm->pid, "Threads")) > sm->threads_max) sm->threads_max = v;
}

/* Open loop: n requests at rate/s over conns connections; fills
** p50/p99/max and *failed_out (requests without a 202). */
static int latency(int port, double rate, long n, int conns, long first_id, double out[3], long *failed_out,
                   sampler *sm)
{
    run r;
    int running = 0;
    double t0, interval = 1000.0 / rate;
    long backlog_max = 0;
    run_init(&r, port, conns, 0);
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
        sample(sm, now_ms());
        if (r.done < n) {
            double next_due = t0 + (double)r.next * interval - now_ms();
            int wait = next_due > 1 ? (int)next_due : 0;
            curl_multi_poll(r.multi, NULL, 0, r.next < n ? wait : 100, NULL);
        }
    }
    *failed_out = r.failed;
    if (r.failed == n) {
        run_cleanup(&r);
        free(r.lat_ms);
        return -1;
    }
    /* A failed request has no latency: the figures are over the others. */
    long ok = n - r.failed;
    qsort(r.lat_ms, (size_t)ok, sizeof *r.lat_ms, cmp_d);
    out[0] = r.lat_ms[ok / 2];
    out[1] = r.lat_ms[(size_t)((double)ok * 0.99)];
    out[2] = r.lat_ms[ok - 1];
    if (backlog_max > 0) fprintf(stderr, "latency run: at most %ld requests waited for a connection\n", backlog_max);
    run_cleanup(&r);
    free(r.lat_ms);
    return 0;
}

/* ---- run 4: the hostile host ------------------------------------------ */

typedef struct attack {
    int port;
    atomic_int stop;
    long cut;               /* connections the daemon ended (then reopened) */
    long refused;           /* connects that failed */
} attack;

static int attack_connect(attack *a)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)a->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        a->refused++;
        return -1;
    }
    return fd;
}

/* Holds HOSTILE_SLOW connections that send one byte of a never-ending
** header every 2 s, and HOSTILE_IDLE that send nothing; any the daemon ends
** is opened again at once. */
static void *attack_main(void *arg)
{
    static const char trickle[] = "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    enum { N = HOSTILE_SLOW + HOSTILE_IDLE };
    attack *a = arg;
    struct pollfd *p = calloc(N, sizeof *p);
    size_t *pos = calloc(N, sizeof *pos);
    double next_tick = now_ms();
    for (int i = 0; i < N; i++) {
        p[i].fd = attack_connect(a);
        p[i].events = POLLIN;
    }
    while (!atomic_load(&a->stop)) {
        double t = now_ms();
        if (t >= next_tick) {
            next_tick = t + 2000;
            for (int i = 0; i < HOSTILE_SLOW; i++) {
                char c = pos[i] < sizeof trickle - 1 ? trickle[pos[i]] : 'a';
                if (p[i].fd >= 0 && send(p[i].fd, &c, 1, MSG_NOSIGNAL) == 1) pos[i]++;
            }
        }
        int wait = (int)(next_tick - now_ms());
        if (poll(p, N, wait < 0 ? 0 : wait > 100 ? 100 : wait) <= 0) continue;
        for (int i = 0; i < N; i++) {
            char buf[512];
            if (p[i].fd < 0 || !p[i].revents) continue;
            if (recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT) > 0) continue;   /* a 408: the end follows */
            close(p[i].fd);
            a->cut++;
            p[i].fd = attack_connect(a);
            pos[i] = 0;
        }
        for (int i = 0; i < N; i++)
            if (p[i].fd < 0) p[i].fd = attack_connect(a);
    }
    for (int i = 0; i < N; i++)
        if (p[i].fd >= 0) close(p[i].fd);
    free(p);
    free(pos);
    return NULL;
}

/* Run 4; returns 0 when measured. */
static int hostile(int port, pid_t pid, long first_id, double lat[3], long *failed, sampler *sm, attack *a)
{
    pthread_t th;
    int rc;
    a->port = port;
    atomic_store(&a->stop, 0);
    if (pthread_create(&th, NULL, attack_main, a) != 0) return -1;
    /* Let the attack take its connections before the client starts. */
    for (double until = now_ms() + 2000; now_ms() < until;) {
        sm->next_ms = 0;
        sample(sm, now_ms());
        poll(NULL, 0, 100);
    }
    sm->pid = pid;
    rc = latency(port, HOSTILE_RATE, HOSTILE_EVENTS, HOSTILE_CONNS, first_id, lat, failed, sm);
    atomic_store(&a->stop, 1);
    pthread_join(th, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    long n = 50000;
    int seconds = 10, keep = 0, ex = 0, skip_hostile = 0;
    double rate = 2000, lat[3], hlat[3];
    long lat_failed = 0, h_failed = 0, lat_n, answered = 0;
    it_daemon d = {0};
    sampler sm = {0};
    attack atk = {0};
    struct rlimit rl;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc) {
            n = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
            rate = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--skip-hostile")) {
            skip_hostile = 1;
        } else if (!strcmp(argv[i], "--keep")) {
            keep = 1;
        } else {
            fprintf(stderr, "usage: bench_ingest [--events N] [--seconds S] [--rate R] [--skip-hostile] [--keep]\n");
            return 2;
        }
    }
    if (n < 1 || seconds < 1 || rate <= 0) {
        fprintf(stderr, "bench_ingest: --events, --seconds and --rate must be positive\n");
        return 2;
    }
    /* The hostile run holds 1,200 sockets. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
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
    double eps = throughput(port, THROUGHPUT_CONNS, 0, n, 0);
    double cpu_s = (double)(it_proc_cpu_ticks(d.pid) - ticks0) / (double)sysconf(_SC_CLK_TCK);
    fprintf(stderr, "throughput: %ld events, %d connections...\n", n, THROUGHPUT_CONNS_MANY);
    double eps64 = throughput(port, THROUGHPUT_CONNS_MANY, 0, n, n);
    fprintf(stderr, "HTTP-only ceiling: GET /healthz...\n");
    double hz16 = throughput(port, THROUGHPUT_CONNS, 1, n, 0);
    double hz64 = throughput(port, THROUGHPUT_CONNS_MANY, 1, n, 0);
    answered = (eps < 0 ? 0 : n) + (eps64 < 0 ? 0 : n);
    fprintf(stderr, "latency: %.0f events/s offered for %d s...\n", rate, seconds);
    lat_n = (long)(rate * seconds);
    int lrc = latency(port, rate, lat_n, LATENCY_CONNS, 2 * n, lat, &lat_failed, NULL);
    answered += lat_n - lat_failed;
    long hwm = it_proc_status_kb(d.pid, "VmHWM"), anon = it_proc_status_kb(d.pid, "RssAnon");
    int hrc = 0;
    if (!skip_hostile) {
        fprintf(stderr, "hostile host: %d slow + %d idle connections, %d events at %.0f/s...\n", HOSTILE_SLOW,
                HOSTILE_IDLE, HOSTILE_EVENTS, HOSTILE_RATE);
        hrc = hostile(port, d.pid, 2 * n + lat_n, hlat, &h_failed, &sm, &atk);
        answered += HOSTILE_EVENTS - h_failed;
    }
    it_daemon_stop(&d, SIGTERM);

    db_handle *db = tu_db_open(data, 0);
    int64_t pending = 0, dead = 0;
    db_outbox_count(db, &pending, &dead);
    db_close(db);

    printf("pdrelay ingest benchmark: POST /v2/enqueue, synchronous=full, %ld CPUs\n", sysconf(_SC_NPROCESSORS_ONLN));
    if (eps < 0 || eps64 < 0 || hz16 < 0 || hz64 < 0) {
        printf("throughput runs: requests failed\n");
        ex = 1;
    } else {
        printf("durable events/s, %d keep-alive connections, %ld events: %.0f  (expected >= 10000: %s);"
               " HTTP-only ceiling (GET /healthz): %.0f/s, ratio %.2f\n",
               THROUGHPUT_CONNS, n, eps, eps >= 10000 ? "met" : "MISSED", hz16, eps / hz16);
        printf("durable events/s, %d keep-alive connections, %ld events: %.0f;"
               " HTTP-only ceiling (GET /healthz): %.0f/s, ratio %.2f\n",
               THROUGHPUT_CONNS_MANY, n, eps64, hz64, eps64 / hz64);
        printf("daemon CPU during the %d-connection run: %.2f s, %.1f us per durable event  (expected <= 40: %s)\n",
               THROUGHPUT_CONNS, cpu_s, cpu_s * 1e6 / (double)n, cpu_s * 1e6 / (double)n <= 40 ? "met" : "MISSED");
    }
    if (lrc || lat_failed) {
        printf("latency run: %ld requests failed\n", lat_failed);
        ex = 1;
    } else {
        printf("latency at %.0f events/s offered, %ld events: p50 %.2f ms  p99 %.2f ms  max %.2f ms"
               "  (expected p99 <= 10 ms: %s)\n",
               rate, lat_n, lat[0], lat[1], lat[2], lat[1] <= 10 ? "met" : "MISSED");
    }
    printf("daemon peak RSS (VmHWM) after runs 1-2: %.1f MiB; anonymous (heap, stacks): %.1f MiB\n",
           (double)hwm / 1024, (double)anon / 1024);
    if (!skip_hostile) {
        if (hrc) {
            printf("hostile run: every request failed\n");
            ex = 1;
        } else {
            printf("hostile host (%d slow + %d idle connections from 127.0.0.1; %ld cut off by the daemon and "
                   "reopened, %ld connects refused): well-behaved client, %d events at %.0f/s: p50 %.2f ms  "
                   "p99 %.2f ms  max %.2f ms  errors %ld  (expected 0 errors, p99 <= 50 ms: %s)\n",
                   HOSTILE_SLOW, HOSTILE_IDLE, atk.cut, atk.refused, HOSTILE_EVENTS, HOSTILE_RATE, hlat[0], hlat[1],
                   hlat[2], h_failed, !h_failed && hlat[1] <= 50 ? "met" : "MISSED");
            printf("daemon during the hostile run: RSS at most %.1f MiB, threads at most %ld\n",
                   (double)sm.rss_kb_max / 1024, sm.threads_max);
        }
        if (h_failed) ex = 1;
    }
    printf("rows in the outbox afterwards: %lld (requests answered 202: %ld)\n", (long long)pending, answered);
    if (pending != answered) {
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
