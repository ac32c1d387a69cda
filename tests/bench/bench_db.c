/*
** bench_db.c — how fast the outbox takes events durably, and how fast the
** dedup table answers.
**
**   bench_db [DIR]      (default: a fresh directory under $TMPDIR or /tmp)
**
** 1. Push throughput: events of ~600 bytes of realistic PagerDuty JSON,
**    spread over 4 routing keys, each with its own dedup key (so nothing
**    coalesces), pushed with db_outbox_push_batch() in batches of 1, 10,
**    100 and 1000 (one transaction, one commit each), under
**    synchronous=FULL and NORMAL. Each run uses a fresh database.
** 2. Dedup lookups: 100,000 entries, then 100,000 db_dedup_get() of random
**    existing entries, each timed with clock_gettime: median and p99.
**
** Targets on the 2-core CI machine: >= 100,000 events/s at batch 100 with
** FULL; dedup get median <= 5 us.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "testutil.h"
#include "db.h"
#include "clock.h"

#define N_KEYS 4
#define DEDUP_ROWS 100000
#define DEDUP_GETS 100000

static const char *const routing_keys[N_KEYS] = {
    "R015XHNJ7Q4H2K9P0D3F8Z6W1C5V7B2A", "R02M8N4B6V1C3X5Z7L9K2J4H6G8F0D1S",
    "R03Q7W9E1R3T5Y7U9I2O4P6A8S0D2F4G", "R04Z1X3C5V7B9N2M4Q6W8E0R2T4Y6U8I",
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* An Alertmanager-like trigger, ~600 bytes. */
static int make_body(char *buf, size_t sz, size_t i, const char *dedup_key)
{
    return snprintf(buf, sz,
        "{\"event_action\":\"trigger\",\"dedup_key\":\"%s\",\"payload\":{"
        "\"summary\":\"[FIRING:1] NodeFilesystemAlmostFull gw-%03zu.site-%02zu "
        "/var/lib/data has only 4.%zu%% space left\",\"source\":\"gw-%03zu.site-%02zu\","
        "\"severity\":\"critical\",\"timestamp\":\"2024-05-17T09:%02zu:%02zu.000Z\","
        "\"component\":\"node-exporter\",\"group\":\"storage\",\"class\":\"disk\","
        "\"custom_details\":{\"alertname\":\"NodeFilesystemAlmostFull\","
        "\"device\":\"/dev/mmcblk0p%zu\",\"fstype\":\"ext4\",\"instance\":\"gw-%03zu:9100\","
        "\"job\":\"node\",\"mountpoint\":\"/var/lib/data\",\"firing\":\"Labels: "
        "severity=critical team=edge-ops\"}},\"client\":\"Alertmanager\","
        "\"client_url\":\"http://alertmanager.site-%02zu.local:9093/#/alerts\"}",
        dedup_key, i % 1000, i % 50, i % 10, i % 1000, i % 50, (i / 60) % 60, i % 60,
        i % 4, i % 1000, i % 50);
}

typedef struct workload {
    db_event *evs;
    char **bodies;
    char **dedup_keys;
    size_t n;
} workload;

static void workload_init(workload *w, size_t n, size_t salt)
{
    size_t i;
    char dk[64], body[1024];
    w->n = n;
    w->evs = calloc(n, sizeof *w->evs);
    w->bodies = calloc(n, sizeof *w->bodies);
    w->dedup_keys = calloc(n, sizeof *w->dedup_keys);
    if (!w->evs || !w->bodies || !w->dedup_keys) abort();
    for (i = 0; i < n; i++) {
        int len;
        snprintf(dk, sizeof dk, "bench-%zu-%zu", salt, i);
        len = make_body(body, sizeof body, i, dk);
        w->dedup_keys[i] = strdup(dk);
        w->bodies[i] = strdup(body);
        if (!w->dedup_keys[i] || !w->bodies[i]) abort();
        w->evs[i].routing_key = routing_keys[i % N_KEYS];
        w->evs[i].action = PDR_ACTION_TRIGGER;
        w->evs[i].dedup_key = w->dedup_keys[i];
        w->evs[i].body = w->bodies[i];
        w->evs[i].body_len = (size_t)len;
        w->evs[i].urgency = PDR_URGENCY_CRITICAL;   /* the body's severity */
    }
}

static void workload_cleanup(workload *w)
{
    size_t i;
    for (i = 0; i < w->n; i++) {
        free(w->bodies[i]);
        free(w->dedup_keys[i]);
    }
    free(w->evs);
    free(w->bodies);
    free(w->dedup_keys);
}

static db_handle *open_fresh(const char *base, const char *name, int sync_full)
{
    char *dir = tu_printf("%s/%s", base, name);
    db_options o;
    db_handle *db = NULL;
    char errbuf[512];
    tu_rmrf(dir);
    memset(&o, 0, sizeof o);
    o.data_dir = dir;
    o.sync_full = sync_full;
    o.max_events = 100000000;
    if (db_open(&o, &db, errbuf, sizeof errbuf) != PDR_OK) {
        fprintf(stderr, "bench_db: %s\n", errbuf);
        exit(1);
    }
    free(dir);
    return db;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Figures the targets are checked against (printed at the end). */
static double full_batch100_eps;
static double dedup_median_us;

static void bench_push(const char *base)
{
    static const size_t batches[] = {1, 10, 100, 1000};
    static const int syncs[] = {1, 0};
    pdr_rc *results = malloc(1000 * sizeof *results);
    size_t s, b, avg_len = 0, i;
    workload w;

    if (!results) abort();
    workload_init(&w, 200000, 0);
    for (i = 0; i < w.n; i++) avg_len += w.evs[i].body_len;
    printf("durable push: %zu-byte JSON bodies (average), %d routing keys, distinct dedup keys\n",
           avg_len / w.n, N_KEYS);
    printf("%-12s %6s %8s %9s %11s %11s\n", "synchronous", "batch", "events", "seconds",
           "events/s", "ms/commit");
    for (s = 0; s < sizeof syncs / sizeof syncs[0]; s++) {
        for (b = 0; b < sizeof batches / sizeof batches[0]; b++) {
            size_t batch = batches[b];
            /* Enough events for a stable figure in a few seconds. */
            size_t n = batch == 1 ? 3000 : batch == 10 ? 30000 : 200000;
            char name[64];
            db_handle *db;
            double t0, dt;
            int64_t pending = 0;

            if (!syncs[s] && batch == 1) n = 30000;
            snprintf(name, sizeof name, "push-%s-%zu", syncs[s] ? "full" : "normal", batch);
            db = open_fresh(base, name, syncs[s]);
            t0 = now_s();
            for (i = 0; i < n; i += batch) {
                size_t k = n - i < batch ? n - i : batch;
                if (db_outbox_push_batch(db, &w.evs[i], k, results, NULL) != PDR_OK ||
                    results[k - 1] != PDR_OK) {
                    fprintf(stderr, "bench_db: push failed: %s\n", db_errmsg(db));
                    exit(1);
                }
            }
            dt = now_s() - t0;
            if (db_outbox_count(db, &pending, NULL) != PDR_OK || (size_t)pending != n) {
                fprintf(stderr, "bench_db: expected %zu rows, have %lld\n", n, (long long)pending);
                exit(1);
            }
            if (syncs[s] && batch == 100) full_batch100_eps = (double)n / dt;
            printf("%-12s %6zu %8zu %9.3f %11.0f %11.3f\n", syncs[s] ? "full" : "normal",
                   batch, n, dt, (double)n / dt, dt * 1000.0 / (double)((n + batch - 1) / batch));
            fflush(stdout);
            db_close(db);
        }
    }
    workload_cleanup(&w);
    free(results);
}

static void bench_dedup(const char *base)
{
    db_handle *db = open_fresh(base, "dedup", 0);
    int64_t *lat = malloc(DEDUP_GETS * sizeof *lat);
    char fp[64], dk[80];
    db_dedup_entry e;
    size_t i;
    double t0;
    unsigned seed = 12345;

    if (!lat) abort();
    t0 = now_s();
    for (i = 0; i < DEDUP_ROWS; i++) {
        snprintf(fp, sizeof fp, "%016zx%016zx", i * 2654435761u, i);
        snprintf(dk, sizeof dk, "dedup-%s", fp);
        if (db_dedup_put(db, routing_keys[i % N_KEYS], fp, dk, DB_DEDUP_TRIGGERED,
                         24LL * 3600 * 1000, NULL, -1) != PDR_OK) {
            fprintf(stderr, "bench_db: dedup put: %s\n", db_errmsg(db));
            exit(1);
        }
    }
    printf("\ndedup: %d entries put one per transaction (synchronous=normal) in %.2f s\n",
           DEDUP_ROWS, now_s() - t0);
    for (i = 0; i < DEDUP_GETS; i++) {
        size_t k = (size_t)rand_r(&seed) % DEDUP_ROWS;
        int64_t t;
        snprintf(fp, sizeof fp, "%016zx%016zx", k * 2654435761u, k);
        t = now_ns();
        if (db_dedup_get(db, routing_keys[k % N_KEYS], fp, &e) != PDR_OK) {
            fprintf(stderr, "bench_db: dedup get %zu: %s\n", k, db_errmsg(db));
            exit(1);
        }
        lat[i] = now_ns() - t;
    }
    qsort(lat, DEDUP_GETS, sizeof *lat, cmp_i64);
    dedup_median_us = (double)lat[DEDUP_GETS / 2] / 1000.0;
    printf("dedup get, %d random hits among %d rows: median %.2f us, p99 %.2f us, max %.1f us\n",
           DEDUP_GETS, DEDUP_ROWS, (double)lat[DEDUP_GETS / 2] / 1000.0,
           (double)lat[DEDUP_GETS * 99 / 100] / 1000.0, (double)lat[DEDUP_GETS - 1] / 1000.0);
    free(lat);
    db_close(db);
}

int main(int argc, char **argv)
{
    char *base;
    if (argc > 1) {
        base = tu_printf("%s/bench_db.XXXXXX", argv[1]);
        mkdir(argv[1], 0700);
        if (!mkdtemp(base)) {
            perror(argv[1]);
            return 1;
        }
    } else {
        base = tu_mkdtemp();
    }
    printf("bench_db in %s (SQLite %s)\n\n", base, sqlite3_libversion());
    bench_push(base);
    bench_dedup(base);
    printf("\ntargets: push full batch 100 >= 100000 events/s: %.0f (%s); "
           "dedup get median <= 5 us: %.2f (%s)\n",
           full_batch100_eps, full_batch100_eps >= 100000 ? "met" : "MISSED",
           dedup_median_us, dedup_median_us <= 5.0 ? "met" : "MISSED");
    tu_rmrf(base);
    free(base);
    return 0;
}
