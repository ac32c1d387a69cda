/*
** bench_outage.c — a 10-minute uplink outage with 50 routing keys and a
** steady trickle of events: what the outage costs in requests and in log
** lines, how fast the backlog goes once the link is back, and that nothing
** was lost, doubled or reordered.
**
**   bench_outage [--scale K] [--keys N] [--keep]
**
**   --scale K  divide every duration by K (the outage, [pagerduty]
**              down_probe_max and backoff_max_ms, [agent]
**              outage_log_interval, the trickle interval): --scale 20 runs
**              the same shape in 30 s; the expected figures are the same
**              counts (default 1: real time, about 11 minutes)
**   --keys N   routing keys of the trickle (default 50)
**   --keep     keep the scratch directory (config, log, outbox)
**
** How: the real `pdrelay run` (log_level info, the default) against the mock
** PagerDuty. At scale 1: backoff_max_ms 5000, down_probe_max 60s,
** outage_log_interval 1m (not the default 10m, so that the summary lines
** are counted: 10 in the outage), everything else pdrelay's default. A
** thread POSTs one event every 2 s, round-robin over the keys, to the
** daemon's own POST /v2/enqueue (the real ingest path), each with its own
** dedup_key "o-<key>-<n>"; it runs from the start until the daemon logs
** "uplink up". After 10 trickle intervals of normal delivery the mock is
** set to fault mode "reset" (every request is recorded, then its
** connection closed without a reply: a network-level failure) for the
** outage (600 s), then back to "ok"; the daemon notices at its next probe
** (no SIGUSR1).
**
** Printed (figures from the mock's records; times on the mock's clock,
** which is tied to this process's by a marker request at the start):
** 1. Requests during the outage: the requests the mock recorded after the
**    daemon logged "uplink down" (the count at that moment subtracted)
**    that met the reset. One probe at a time, from backoff_max_ms doubling
**    to down_probe_max, each wait shortened by at most a tenth (jitter).
**    Bound: floor(outage/down_probe_max + log2(down_probe_max/backoff_max_ms)
**    + 1) + 1 = floor(10 + 3.58 + 1) + 1 = 15 at the defaults (the ramp's
**    extra probes, and one for the jitter); the schedule without jitter
**    gives 12. Also the longest gap between two of them (<= down_probe_max)
**    and the attempts the daemon's "uplink up" line reports (the same
**    count, plus the request that took the link down).
** 2. Log lines during the outage: from the "uplink down" line to the
**    "uplink up" line inclusive. Bound: 10 + outage/outage_log_interval = 20
**    (expected: 1 down + ~10 "uplink still down" + 1 up).
** 3. Recovery: mock back to "ok" -> the first event accepted (<=
**    down_probe_max: the next probe), and -> the last queued event accepted
**    (about 300 events, ~6 per key, within each key's burst of 10, so they
**    go as fast as concurrency 16 allows); no verdict on the latter.
** 4. Every posted event accepted, exactly once per dedup_key (a repeat is
**    allowed: at-least-once, counted), and in the order posted for each key.
**
** Progress goes to stderr, the table to stdout. Exit status 1 when a figure
** could not be measured (timeout, daemon died, an ingest POST refused); a
** figure outside its expectation is marked MISS but is not an error.
*/
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "benchutil.h"
#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static int failures;

/* ---- small helpers ------------------------------------------------------------ */

static void sleep_until_ms(double t)
{
    /* the trickle's pace and the outage's length: letting time pass is the point */
    for (double now = bench_mono_ms(); now < t; now = bench_mono_ms()) poll(NULL, 0, (int)(t - now) + 1);
}

static void make_key(char out[PDR_ROUTING_KEY_LEN + 1], int i)
{
    snprintf(out, PDR_ROUTING_KEY_LEN + 1, "R0OUTAGE%024d", i);
}

/* Does the line [p, nl) hold needle? */
static int line_has(const char *p, const char *nl, const char *needle)
{
    size_t n = strlen(needle);
    for (; p + n <= nl; p++)
        if (!memcmp(p, needle, n)) return 1;
    return 0;
}

/* ---- the trickle ------------------------------------------------------------------ */

typedef struct trickle {
    const char *base;      /* the daemon's http://127.0.0.1:PORT */
    int keys;
    double interval_ms;
    double t0;
    atomic_int stop;
    int posted;            /* written by the thread; read after the join */
    int refused;           /* POSTs not answered 202 */
    int *per_key;          /* events posted per key */
    double late_ms;        /* the worst lag behind the schedule */
} trickle;

static void *trickle_main(void *arg)
{
    trickle *t = arg;
    for (int i = 0; !atomic_load(&t->stop); i++) {
        char key[PDR_ROUTING_KEY_LEN + 1];
        double due = t->t0 + (double)i * t->interval_ms;
        int k = i % t->keys, j = t->per_key[k];
        sleep_until_ms(due);
        if (atomic_load(&t->stop)) break;
        if (bench_mono_ms() - due > t->late_ms) t->late_ms = bench_mono_ms() - due;
        make_key(key, k);
        char *body = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"o-%d-%d\","
                               "\"payload\":{\"summary\":\"trickle %d of key %d\",\"source\":\"gw-%03d\","
                               "\"severity\":\"error\"}}",
                               key, k, j, j, k, k);
        int st = it_http(t->base, "POST", "/v2/enqueue", body, NULL, NULL, NULL);
        free(body);
        if (st != 202) {
            if (t->refused++ < 5) fprintf(stderr, "bench_outage: POST /v2/enqueue answered %d\n", st);
            continue;
        }
        t->per_key[k]++;
        t->posted++;
    }
    return NULL;
}

/* ---- the table -------------------------------------------------------------------- */

static void row(const char *label, const char *value, const char *expect, const char *verdict)
{
    printf("  %-52s %14s   %-18s %s\n", label, value, expect ? expect : "", verdict ? verdict : "");
}

static const char *verdict(int ok)
{
    return ok ? "ok" : "MISS";
}

/* Failed probes of the schedule without jitter within outage_ms. */
static int schedule_probes(double outage_ms, double bmax_ms, double dpm_ms)
{
    double t = 0, d = bmax_ms < dpm_ms ? bmax_ms : dpm_ms;
    int n = 0;
    for (;;) {
        t += d;
        if (t > outage_ms) return n;
        n++;
        d = d * 2 < dpm_ms ? d * 2 : dpm_ms;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_outage [--scale K] [--keys N] [--keep]\n"
               "  --scale K  divide every duration by K (--scale 20: the 600 s outage in 30 s)\n"
               "  --keys N   routing keys of the trickle (default 50)\n"
               "  --keep     keep the scratch directory\n");
}

int main(int argc, char **argv)
{
    double scale = 1;
    int keys = 50, keep = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
            scale = strtod(argv[++i], &end);
            if (*end || !(scale >= 1 && scale <= 600)) {
                fprintf(stderr, "bench_outage: --scale wants 1..600\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--keys") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "bench_outage: --keys wants 1..1000\n");
                return 2;
            }
            keys = (int)v;
        } else if (!strcmp(argv[i], "--keep")) {
            keep = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    /* the durations, scaled (ms) */
    const double outage_ms = 600000 / scale, dpm_ms = 60000 / scale, bmax_ms = 5000 / scale;
    const double trickle_ms = 2000 / scale;
    double olog_ms = 60000 / scale;
    if (olog_ms < 1000) olog_ms = 1000;   /* pdrelay's minimum */
    const long dpm_i = lround(dpm_ms), bmax_i = lround(bmax_ms) > 0 ? lround(bmax_ms) : 1, olog_i = lround(olog_ms);
    const int attempts_bound = (int)floor(outage_ms / dpm_ms + log2(dpm_ms / bmax_ms) + 1) + 1;
    const int attempts_sched = schedule_probes(outage_ms, bmax_ms, dpm_ms);
    const int lines_bound = 10 + (int)floor(outage_ms / olog_ms);

    char load[64];
    bench_print_header(argc, argv, NULL);
    printf("outage %.1f s, %d keys, one event every %.0f ms; backoff_max_ms %ld, down_probe_max %ldms, "
           "outage_log_interval %ldms (scale %g)\n",
           outage_ms / 1000, keys, trickle_ms, bmax_i, dpm_i, olog_i, scale);
    fflush(stdout);
    mockpd_global_init();

    /* ---- the scene ---- */
    char *dir = tu_mkdtemp();
    char *cfg = tu_printf("%s/pdrelay.ini", dir), *data_dir = tu_printf("%s/var", dir);
    char *logp = tu_printf("%s/pdrelay.log", dir);
    mockpd_opts mo;
    memset(&mo, 0, sizeof mo);   /* the mock's limit (120 per 60 s per key): ~6 per key here */
    mockpd *mock = mockpd_start(&mo);
    it_daemon d;
    memset(&d, 0, sizeof d);
    trickle tr;
    memset(&tr, 0, sizeof tr);
    pthread_t th;
    int th_started = 0, ok = 1;
    double rtt = 0, off = -1e18;
    long req_before = -1;
    double t_ok = 0;
    int port = it_free_port();
    char *base = tu_printf("http://127.0.0.1:%d", port);

    if (!mock) {
        fprintf(stderr, "bench_outage: cannot start the mock PagerDuty\n");
        return 1;
    }
    off = bench_mock_clock_offset(mock, &rtt);
    if (off < -1e17) {
        fprintf(stderr, "bench_outage: cannot tie the mock's clock to ours\n");
        ok = 0;
        goto out;
    }
    {
        char *text = tu_printf("[agent]\ndata_dir = %s\noutage_log_interval = %ldms\n[listen]\nport = %d\n"
                               "[pagerduty]\nurl = %s\nbackoff_initial_ms = %ld\nbackoff_max_ms = %ld\n"
                               "down_probe_max = %ldms\n",
                               data_dir, olog_i, port, mockpd_url(mock), bmax_i < 100 ? bmax_i : 100, bmax_i, dpm_i);
        tu_write_file(cfg, text);
        free(text);
    }
    if (it_daemon_start(&d, cfg, logp) != 0 || it_wait_log(&d, "msg=\"pdrelay started\"", 10000) != 0 ||
        it_wait_log(&d, "listening", 10000) != 0) {
        fprintf(stderr, "bench_outage: pdrelay did not start\n");
        bench_log_tail(&d);
        ok = 0;
        goto out;
    }

    tr.base = base;
    tr.keys = keys;
    tr.interval_ms = trickle_ms;
    tr.per_key = calloc((size_t)keys, sizeof *tr.per_key);
    tr.t0 = bench_mono_ms();
    if (!tr.per_key || pthread_create(&th, NULL, trickle_main, &tr) != 0) abort();
    th_started = 1;

    /* warm-up: 10 trickle intervals delivered normally */
    fprintf(stderr, "warm-up: %.1f s of normal delivery...\n", 10 * trickle_ms / 1000);
    sleep_until_ms(tr.t0 + 10 * trickle_ms);
    if (mockpd_set_mode(mock, "reset", 0, 0, 0) != 0) {
        fprintf(stderr, "bench_outage: cannot set the mock to reset\n");
        ok = 0;
        goto out;
    }
    double t_reset = bench_mono_ms();
    fprintf(stderr, "outage: %.1f s of connection resets...\n", outage_ms / 1000);
    if (it_wait_log(&d, "uplink down", (int)(10 * trickle_ms) + 10000) != 0) {
        fprintf(stderr, "bench_outage: no \"uplink down\" line\n");
        bench_log_tail(&d);
        ok = 0;
        goto out;
    }
    req_before = mockpd_stat(mock, "requests");
    sleep_until_ms(t_reset + outage_ms);
    if (mockpd_set_mode(mock, "ok", 0, 0, 0) != 0) {
        fprintf(stderr, "bench_outage: cannot set the mock back to ok\n");
        ok = 0;
        goto out;
    }
    t_ok = bench_mono_ms();
    fprintf(stderr, "link back: waiting for the next probe (<= %.1f s)...\n", dpm_ms / 1000);
    if (it_wait_log(&d, "uplink up", (int)dpm_ms + 10000) != 0) {
        fprintf(stderr, "bench_outage: no \"uplink up\" line\n");
        bench_log_tail(&d);
        ok = 0;
    }
    atomic_store(&tr.stop, 1);
    pthread_join(th, NULL);
    th_started = 0;
    if (tr.refused) ok = 0;
    fprintf(stderr, "trickle: %d events posted (%d refused, worst lag %.1f ms); draining...\n", tr.posted,
            tr.refused, tr.late_ms);

    /* every posted event, and the ones accepted before the outage, once */
    if (bench_wait_accepted("bench_outage", mock, &d, tr.posted, 60000, 500) != 0) ok = 0;
    if (it_daemon_stop(&d, SIGTERM) != 0) {
        fprintf(stderr, "bench_outage: pdrelay did not exit cleanly\n");
        bench_log_tail(&d);
        ok = 0;
    }

    /* ---- the figures ---- */
    {
        cJSON *reqs = mockpd_requests(mock), *evs = mockpd_events(mock);
        int n_req = cJSON_GetArraySize(reqs), failed_after = 0, accepted_after_ok = 0;
        double ok_mock = t_ok + off, first_after_ok = -1, last_acc = -1, prev_fail = -1, gap_max = 0;
        for (int i = 0; i < n_req; i++) {
            const cJSON *r = cJSON_GetArrayItem(reqs, i);
            double at = bench_num(r, "arrival_ms");
            int st = (int)bench_num(r, "status");
            if (i >= req_before && st == 0) {
                failed_after++;
                if (prev_fail >= 0 && at - prev_fail > gap_max) gap_max = at - prev_fail;
                prev_fail = at;
            }
            if (st == 202 && at >= ok_mock) {
                if (first_after_ok < 0) first_after_ok = at;
                accepted_after_ok++;
            }
            if (st == 202 && at > last_acc) last_acc = at;
        }
        long throttled = mockpd_stat(mock, "throttled");

        /* log lines from "uplink down" to "uplink up", inclusive */
        char *log = it_log(&d);
        int lines = -1, summaries = 0, others = 0;
        long up_attempts = -1;
        char *down = strstr(log, "uplink down"), *up = strstr(log, "uplink up");
        if (down && up && down < up) {
            while (down > log && down[-1] != '\n') down--;
            char *up_end = strchr(up, '\n');
            if (!up_end) up_end = up + strlen(up);
            lines = 0;
            for (char *p = down, *nl; p < up_end; p = nl + 1) {
                nl = strchr(p, '\n');
                if (!nl) nl = p + strlen(p);
                lines++;
                if (line_has(p, nl, "uplink still down")) summaries++;
                else if (!line_has(p, nl, "uplink down") && !line_has(p, nl, "uplink up") && others++ < 5)
                    fprintf(stderr, "outage log line: %.*s\n", (int)(nl - p), p);
                if (!*nl) break;
            }
            const char *a = strstr(up, "attempts=");
            if (a) up_attempts = strtol(a + 9, NULL, 10);
        }
        free(log);

        /* exactly once per dedup_key, in order per key */
        int *next = calloc((size_t)keys, sizeof *next), distinct = 0, dups = 0, disorder = 0, stray = 0;
        unsigned char **seen = calloc((size_t)keys, sizeof *seen);
        if (!next || !seen) abort();
        for (int k = 0; k < keys; k++)
            if (!(seen[k] = calloc((size_t)tr.per_key[k] + 1, 1))) abort();
        const cJSON *e;
        cJSON_ArrayForEach(e, evs) {
            const char *dk = it_jstr(e, "dedup_key");
            char *p, *q;
            long k, j;
            if (!dk || strncmp(dk, "o-", 2)) {
                stray++;
                continue;
            }
            k = strtol(dk + 2, &p, 10);
            if (*p != '-' || k < 0 || k >= keys) {
                stray++;
                continue;
            }
            j = strtol(p + 1, &q, 10);
            if (*q || j < 0 || j >= tr.per_key[k]) {
                stray++;
                continue;
            }
            if (seen[k][j]) {
                dups++;
                continue;
            }
            seen[k][j] = 1;
            distinct++;
            if (j != next[k]) disorder++;
            next[k] = (int)j + 1;
        }
        for (int k = 0; k < keys; k++) free(seen[k]);
        free(seen);
        free(next);

        char v[64], x[64];
        printf("\n%-54s %14s   %-18s %s\n", "figure", "measured", "expected", "");
        if (!ok) row("(not fully measured: see stderr)", "", "", "FAIL");
        printf("\n1. Requests while the link was down (fault \"reset\": each one recorded)\n");
        snprintf(v, sizeof v, "%ld", req_before);
        row("requests before the \"uplink down\" line", v, NULL, NULL);
        snprintf(v, sizeof v, "%d", failed_after);
        snprintf(x, sizeof x, "<= %d (sched. %d)", attempts_bound, attempts_sched);
        row("failed attempts during the outage", v, x, verdict(ok && failed_after <= attempts_bound));
        snprintf(v, sizeof v, "%.1f s", gap_max / 1000);
        snprintf(x, sizeof x, "<= %.1f s", dpm_ms / 1000);
        row("longest gap between two of them", v, x, verdict(gap_max <= dpm_ms + 50));
        snprintf(v, sizeof v, "%ld", up_attempts);
        snprintf(x, sizeof x, "%d + 1", failed_after);
        row("attempts= on the \"uplink up\" line", v, x, NULL);
        printf("\n2. Log lines while the link was down (log_level info)\n");
        snprintf(v, sizeof v, "%d", lines);
        snprintf(x, sizeof x, "<= %d", lines_bound);
        row("lines from \"uplink down\" to \"uplink up\" incl.", v, x, verdict(lines >= 2 && lines <= lines_bound));
        snprintf(v, sizeof v, "%d", summaries);
        snprintf(x, sizeof x, "~%d", (int)floor(outage_ms / olog_ms));
        row("  of which \"uplink still down\"", v, x, NULL);
        snprintf(v, sizeof v, "%d", others);
        row("  of which other than down/still down/up", v, "0", verdict(others == 0));
        printf("\n3. Recovery (mock back to \"ok\"; no SIGUSR1: the next probe finds it)\n");
        snprintf(v, sizeof v, "%.3f s", first_after_ok >= 0 ? (first_after_ok - ok_mock) / 1000 : -1);
        snprintf(x, sizeof x, "<= %.1f s", dpm_ms / 1000);
        row("link back -> first event accepted", v, x,
            verdict(first_after_ok >= 0 && first_after_ok - ok_mock <= dpm_ms + 50));
        snprintf(v, sizeof v, "%.3f s", first_after_ok >= 0 ? (last_acc - first_after_ok) / 1000 : -1);
        row("first event accepted -> last queued one accepted", v, NULL, NULL);
        snprintf(v, sizeof v, "%.3f s", first_after_ok >= 0 ? (last_acc - ok_mock) / 1000 : -1);
        row("link back -> last queued event accepted", v, NULL, NULL);
        snprintf(v, sizeof v, "%d", accepted_after_ok);
        row("events accepted after the link came back", v, NULL, NULL);
        snprintf(v, sizeof v, "+-%.2f ms", rtt / 2);
        row("(our clock tied to the mock's within)", v, NULL, NULL);
        printf("\n4. Delivery\n");
        snprintf(v, sizeof v, "%d / %d", distinct, tr.posted);
        row("distinct dedup_keys accepted / posted", v, "all", verdict(distinct == tr.posted && stray == 0));
        snprintf(v, sizeof v, "%d", dups);
        row("repeats (at-least-once)", v, "0", dups ? "repeat" : "ok");
        snprintf(v, sizeof v, "%d", disorder);
        row("out of order within a key", v, "0", verdict(disorder == 0));
        snprintf(v, sizeof v, "%ld", throttled);
        row("throttled by the mock (429)", v, "0", verdict(throttled == 0));
        cJSON_Delete(reqs);
        cJSON_Delete(evs);
    }

out:
    if (th_started) {
        atomic_store(&tr.stop, 1);
        pthread_join(th, NULL);
    }
    if (d.pid) it_daemon_stop(&d, SIGKILL);
    mockpd_stop(mock);
    if (keep) fprintf(stderr, "kept %s\n", dir);
    else tu_rmrf(dir);
    free(tr.per_key);
    free(d.log_path);
    free(base);
    free(cfg);
    free(data_dir);
    free(logp);
    free(dir);
    if (!ok) failures++;
    bench_loadavg(load, sizeof load);
    printf("\nload average at the end: %s\n", load);
    printf("%s\n", failures ? "some figures could not be measured (see stderr)" : "all figures measured");
    return failures ? 1 : 0;
}
