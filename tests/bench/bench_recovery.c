/*
** bench_recovery.c — 10,000 warning events queued for one routing key, the
** link down, then one critical trigger, then the link returns: does the
** critical go first, and does the backlog then drain at the key's limit?
**
**   bench_recovery [--events N] [--rate N] [--synchronous full|normal] [--keep]
**
**   --events N  warnings queued (default 10000)
**   --rate N    pdrelay's rate_per_minute and the mock's limit per 60 s
**               window for the key (default 6000)
**   --synchronous full|normal
**               [outbox] synchronous (default full, pdrelay's default: one
**               fsync per commit, so one per delivery here, as one key has
**               one request in flight; normal shows what that fsync costs)
**   --keep      keep the scratch directory (config, log, outbox)
**
** Why 6000/min: at PagerDuty's real 120/min, 10,000 events take 83 minutes;
** the shape is the same at a scaled limit. pdrelay: rate_per_minute 6000,
** burst 10, rate_window 60s, everything else its default; the mock allows
** 6000 per sliding 60 s window per key and answers at once.
**
** How: the warnings (urgency PDR_URGENCY_WARNING, dedup_keys w-0..w-N-1)
** are queued straight into the outbox in one transaction; the mock is set
** to fault mode "reset" (every connection closed without a reply) and the
** real `pdrelay run` is started; once it logs "uplink down", the critical
** trigger (PDR_URGENCY_CRITICAL, dedup_key "crit") is pushed into the
** outbox from this process (the daemon notices other processes' commits by
** inotify, and its probe reads the outbox afresh anyway); then the mock is
** set to "ok" and SIGUSR1 sent (probe now). That moment is the start of the
** recovery; all times are the mock's arrival_ms, this process's clock tied
** to the mock's by a marker request at the start (error printed).
**
** Printed:
** 1. recovery -> the critical accepted (expected: milliseconds), and whether
**    it was the first request the mock saw after the resets (expected: yes;
**    while down the probe is the most urgent head, so it is the critical).
** 2. The drain of the rest, from the critical's arrival to the last
**    arrival: the token bucket is full at recovery (burst 10: the critical
**    and 9 warnings go at once), then one per 60/rate s, and no more than
**    rate in any 60 s window. Ideal = that schedule simulated (for n <=
**    rate + burst simply (n - burst) / (rate/60), n = events + 1);
**    efficiency = ideal / measured, expected >= 0.99. Also the raw rate
**    (n - 1) / elapsed as a fraction of rate/60 (above 1 by the burst),
**    and the gaps between consecutive arrivals after the burst (median,
**    99th percentile, max; the limit's spacing is 60000/rate ms): one key
**    has one request in flight, so a gap is the limiter's wait or, when
**    longer, the request's round trip plus the commit of its outcome.
**    Also the longest gap between two arrivals and what preceded it, the
**    time from the critical to the first warning (w-0; expected ~0: the
**    link is up, every key's next event is due at once), and the
**    efficiency from w-0 on (ideal (events - burst) / (rate/60): the
**    limiter alone, the bucket full again after any stall).
** 3. 429s from the mock (expected 0), the most arrivals in any 60 s window
**    (<= rate), and every warning accepted once, in its queued order.
**
** Progress goes to stderr, the table to stdout. Exit status 1 when a figure
** could not be measured (timeout, daemon died); a figure outside its
** expectation is marked MISS but is not an error.
*/
#include <errno.h>
#include <poll.h>
#include <signal.h>
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

#define KEY "R0RECOVERY0000000000000000000001"
#define BURST 10
#define WINDOW_MS 60000

/* One trigger for KEY into the outbox, or n warnings w-0..w-(n-1) in one
** transaction. 0 on success. */
static int push(const char *data_dir, const char *dk_prefix, int n, int urgency, const char *severity)
{
    db_handle *db = tu_db_open(data_dir, 0);
    db_event *evs = calloc((size_t)n, sizeof *evs);
    char **bodies = calloc((size_t)n, sizeof *bodies), **dks = calloc((size_t)n, sizeof *dks);
    pdr_rc *res = calloc((size_t)n, sizeof *res);
    int rc = 0;
    if (!evs || !bodies || !dks || !res) abort();
    for (int i = 0; i < n; i++) {
        dks[i] = n == 1 ? tu_printf("%s", dk_prefix) : tu_printf("%s-%d", dk_prefix, i);
        bodies[i] = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                              "\"payload\":{\"summary\":\"%s %d\",\"source\":\"gw-01\",\"severity\":\"%s\"}}",
                              KEY, dks[i], n == 1 ? "site power lost" : "disk filling", i, severity);
        evs[i].routing_key = KEY;
        evs[i].action = PDR_ACTION_TRIGGER;
        evs[i].dedup_key = dks[i];
        evs[i].body = bodies[i];
        evs[i].body_len = strlen(bodies[i]);
        evs[i].urgency = urgency;
    }
    if (db_outbox_push_batch(db, evs, (size_t)n, res, NULL) != PDR_OK) {
        fprintf(stderr, "bench_recovery: push: %s\n", db_errmsg(db));
        rc = -1;
    }
    for (int i = 0; i < n; i++) {
        if (!rc && res[i] != PDR_OK) {
            fprintf(stderr, "bench_recovery: event %d not queued: %s\n", i, pdr_strerror(res[i]));
            rc = -1;
        }
        free(bodies[i]);
        free(dks[i]);
    }
    free(evs);
    free(bodies);
    free(dks);
    free(res);
    db_close(db);
    return rc;
}

/* The ideal time from the first to the last of n sends: a token bucket of
** burst, full at 0, refilled at rate per minute, and at most rate per
** window (the window's allowance: rate_per_minute x rate_window / 1 min). */
static double ideal_ms(int n, int rate, int burst)
{
    double *t = calloc((size_t)n, sizeof *t), per = 60000.0 / rate, last = 0;
    int allow = (int)((long long)rate * WINDOW_MS / 60000);
    if (!t) abort();
    for (int i = 0; i < n; i++) {
        double b = i < burst ? 0 : (double)(i - burst + 1) * per;   /* the bucket's i-th token */
        if (i >= allow && t[i - allow] + WINDOW_MS > b) b = t[i - allow] + WINDOW_MS;
        if (i > 0 && t[i - 1] > b) b = t[i - 1];
        t[i] = b;
    }
    last = t[n - 1];
    free(t);
    return last;
}

static void row(const char *label, const char *value, const char *expect, const char *verdict)
{
    printf("  %-52s %14s   %-16s %s\n", label, value, expect ? expect : "", verdict ? verdict : "");
}

static const char *verdict(int ok)
{
    return ok ? "ok" : "MISS";
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_recovery [--events N] [--rate N] [--synchronous full|normal] [--keep]\n"
               "  --events N  warnings queued for the one key (default 10000)\n"
               "  --rate N    rate_per_minute, and the mock's limit per 60 s (default 6000)\n"
               "  --synchronous full|normal  [outbox] synchronous (default full)\n"
               "  --keep      keep the scratch directory\n");
}

int main(int argc, char **argv)
{
    int events = 10000, rate = 6000, keep = 0, ok = 1;
    const char *sync_mode = "full";
    for (int i = 1; i < argc; i++) {
        char *end;
        if ((!strcmp(argv[i], "--events") || !strcmp(argv[i], "--rate")) && i + 1 < argc) {
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "bench_recovery: %s wants 1..1000000\n", argv[i]);
                return 2;
            }
            if (!strcmp(argv[i], "--events")) events = (int)v;
            else rate = (int)v;
            i++;
        } else if (!strcmp(argv[i], "--synchronous") && i + 1 < argc) {
            sync_mode = argv[++i];
            if (strcmp(sync_mode, "full") && strcmp(sync_mode, "normal")) {
                fprintf(stderr, "bench_recovery: --synchronous wants full or normal\n");
                return 2;
            }
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
    const int n = events + 1;   /* with the critical */
    const double ideal = ideal_ms(n, rate, BURST);

    char load[64];
    bench_print_header(argc, argv, NULL);
    printf("%d warnings + 1 critical for one key; pdrelay rate_per_minute %d, burst %d, rate_window 60s; "
           "mock %d per 60 s; synchronous = %s\n",
           events, rate, BURST, rate, sync_mode);
    fflush(stdout);
    mockpd_global_init();

    char *dir = tu_mkdtemp();
    char *cfg = tu_printf("%s/pdrelay.ini", dir), *data_dir = tu_printf("%s/var", dir);
    char *logp = tu_printf("%s/pdrelay.log", dir);
    mockpd_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.limit = rate;
    mo.window_ms = WINDOW_MS;
    mockpd *mock = mockpd_start(&mo);
    it_daemon d;
    memset(&d, 0, sizeof d);
    double rtt = 0, off = -1e18, t_kick = 0, t_queue = 0;

    if (!mock) {
        fprintf(stderr, "bench_recovery: cannot start the mock PagerDuty\n");
        return 1;
    }
    off = bench_mock_clock_offset(mock, &rtt);
    if (off < -1e17) {
        fprintf(stderr, "bench_recovery: cannot tie the mock's clock to ours\n");
        ok = 0;
        goto out;
    }
    {
        char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n[pagerduty]\nurl = %s\n"
                               "rate_per_minute = %d\nburst = %d\nrate_window = 60s\n[outbox]\nsynchronous = %s\n",
                               data_dir, mockpd_url(mock), rate, BURST, sync_mode);
        tu_write_file(cfg, text);
        free(text);
    }
    t_queue = bench_mono_ms();
    if (push(data_dir, "w", events, PDR_URGENCY_WARNING, "warning") != 0) {
        ok = 0;
        goto out;
    }
    fprintf(stderr, "%d warnings queued in %.2f s; link down...\n", events, (bench_mono_ms() - t_queue) / 1000);
    if (mockpd_set_mode(mock, "reset", 0, 0, 0) != 0 || it_daemon_start(&d, cfg, logp) != 0 ||
        it_wait_log(&d, "uplink down", 20000) != 0) {
        fprintf(stderr, "bench_recovery: no \"uplink down\"\n");
        bench_log_tail(&d);
        ok = 0;
        goto out;
    }
    if (push(data_dir, "crit", 1, PDR_URGENCY_CRITICAL, "critical") != 0) {
        ok = 0;
        goto out;
    }
    if (mockpd_set_mode(mock, "ok", 0, 0, 0) != 0) {
        ok = 0;
        goto out;
    }
    t_kick = bench_mono_ms();
    kill(d.pid, SIGUSR1);
    fprintf(stderr, "link back, SIGUSR1 sent; draining (ideal %.2f s)...\n", ideal / 1000);
    if (bench_wait_accepted("bench_recovery", mock, &d, n, ideal * 1.5 + 60000, 1000) != 0) ok = 0;
    if (it_daemon_stop(&d, SIGTERM) != 0) {
        fprintf(stderr, "bench_recovery: pdrelay did not exit cleanly\n");
        bench_log_tail(&d);
        ok = 0;
    }

    {
        cJSON *reqs = mockpd_requests(mock), *evs = mockpd_events(mock);
        const cJSON *r;
        double kick_mock = t_kick + off, crit_at = -1, last_at = -1;
        int resets = 0, first_is_crit = -1, order_bad = 0, next_w = 0, dups = 0, accepted = 0;
        const char *first_dk = "(none)";
        cJSON_ArrayForEach(r, reqs) {
            if ((int)bench_num(r, "status") == 0) {
                resets++;
                continue;
            }
            if (first_is_crit < 0) {
                first_dk = it_jstr(r, "dedup_key") ? it_jstr(r, "dedup_key") : "(none)";
                first_is_crit = !strcmp(first_dk, "crit");
            }
        }
        unsigned char *seen = calloc((size_t)events + 1, 1);
        if (!seen) abort();
        cJSON_ArrayForEach(r, evs) {
            const char *dk = it_jstr(r, "dedup_key");
            double at = bench_num(r, "arrival_ms");
            accepted++;
            if (at > last_at) last_at = at;
            if (dk && !strcmp(dk, "crit")) {
                if (crit_at < 0) crit_at = at;
                else dups++;
                continue;
            }
            char *q;
            long j = dk && !strncmp(dk, "w-", 2) ? strtol(dk + 2, &q, 10) : -1;
            if (j < 0 || j >= events || *q) {
                order_bad++;
                continue;
            }
            if (seen[j]) {
                dups++;
                continue;
            }
            seen[j] = 1;
            if (j != next_w) order_bad++;
            next_w = (int)j + 1;
        }
        free(seen);
        int worst = evs ? it_max_in_window(evs, WINDOW_MS) : -1;
        /* gaps between consecutive arrivals after the burst */
        int n_ev = cJSON_GetArraySize(evs), n_gap = 0;
        double *gap = calloc((size_t)n_ev + 1, sizeof *gap), g50 = -1, g99 = -1, gmax = -1;
        if (!gap) abort();
        /* the longest gap of all, and where: a stall of the drain */
        double stall = -1, w0_at = -1;
        const char *stall_after = "?";
        for (int i = 1; i < n_ev; i++) {
            const cJSON *e0 = cJSON_GetArrayItem(evs, i - 1), *e1 = cJSON_GetArrayItem(evs, i);
            double g = bench_num(e1, "arrival_ms") - bench_num(e0, "arrival_ms");
            if (g > stall) {
                stall = g;
                stall_after = it_jstr(e0, "dedup_key") ? it_jstr(e0, "dedup_key") : "?";
            }
            if (it_jstr(e1, "dedup_key") && !strcmp(it_jstr(e1, "dedup_key"), "w-0")) w0_at = bench_num(e1, "arrival_ms");
        }
        const double ideal_w = ideal_ms(events, rate, BURST);
        for (int i = BURST + 1; i < n_ev; i++)
            gap[n_gap++] = bench_num(cJSON_GetArrayItem(evs, i), "arrival_ms") - bench_num(cJSON_GetArrayItem(evs, i - 1), "arrival_ms");
        if (n_gap) {
            qsort(gap, (size_t)n_gap, sizeof *gap, bench_cmp_double);
            g50 = gap[n_gap / 2];
            g99 = gap[(int)((double)n_gap * 0.99)];
            gmax = gap[n_gap - 1];
        }
        free(gap);
        long throttled = mockpd_stat(mock, "throttled");
        double elapsed = last_at - crit_at;
        double eff = elapsed > 0 ? ideal / elapsed : 0;
        double raw = elapsed > 0 ? (double)(n - 1) / (elapsed / 1000) / (rate / 60.0) : 0;
        char v[64], x[64];

        printf("\n%-54s %14s   %-16s %s\n", "figure", "measured", "expected", "");
        if (!ok) row("(not fully measured: see stderr)", "", "", "FAIL");
        printf("\n1. The critical, after the link returned (mock \"ok\" + SIGUSR1)\n");
        snprintf(v, sizeof v, "%.1f ms", crit_at >= 0 ? crit_at - kick_mock : -1);
        row("recovery -> critical accepted", v, "ms", NULL);
        snprintf(v, sizeof v, "%s", first_is_crit > 0 ? "yes" : "no");
        row("critical was the first request after the resets", v, "yes", verdict(first_is_crit > 0));
        if (first_is_crit == 0) fprintf(stderr, "bench_recovery: the first request after the resets was %s\n", first_dk);
        snprintf(v, sizeof v, "%d", resets);
        row("requests reset while down (probes + the first)", v, NULL, NULL);
        snprintf(v, sizeof v, "+-%.2f ms", rtt / 2);
        row("(our clock tied to the mock's within)", v, NULL, NULL);
        printf("\n2. The drain of the rest (critical's arrival -> last arrival)\n");
        snprintf(v, sizeof v, "%.3f s", elapsed / 1000);
        snprintf(x, sizeof x, "ideal %.3f s", ideal / 1000);
        row("elapsed", v, x, NULL);
        snprintf(v, sizeof v, "%.4f", eff);
        row("efficiency (ideal / measured, burst counted)", v, ">= 0.99", verdict(eff >= 0.99));
        snprintf(v, sizeof v, "%.1f /s", elapsed > 0 ? (n - 1) / (elapsed / 1000) : 0);
        snprintf(x, sizeof x, "limit %.1f /s", rate / 60.0);
        row("(n - 1) / elapsed", v, x, NULL);
        snprintf(v, sizeof v, "%.4f", raw);
        row("  as a fraction of the limit (burst not counted)", v, NULL, NULL);
        snprintf(v, sizeof v, "%.0f / %.0f / %.0f ms", g50, g99, gmax);
        snprintf(x, sizeof x, "%.1f ms", 60000.0 / rate);
        row("gaps after the burst: median / p99 / max", v, x, NULL);
        snprintf(v, sizeof v, "%.3f s", stall / 1000);
        snprintf(x, sizeof x, "~%.1f ms", 60000.0 / rate);
        row("longest gap between two arrivals", v, x, verdict(stall < 1000));
        snprintf(v, sizeof v, "%s", stall_after);
        row("  it came after", v, NULL, NULL);
        snprintf(v, sizeof v, "%.3f s", w0_at >= 0 ? (w0_at - crit_at) / 1000 : -1);
        row("critical -> first warning (w-0)", v, "~0", verdict(w0_at >= 0 && w0_at - crit_at < 1000));
        snprintf(v, sizeof v, "%.4f", w0_at >= 0 && last_at > w0_at ? ideal_w / (last_at - w0_at) : 0);
        snprintf(x, sizeof x, "ideal %.3f s", ideal_w / 1000);
        row("efficiency from w-0 on (the limiter alone)", v, x, NULL);
        snprintf(v, sizeof v, "%.1f s", (last_at - kick_mock) / 1000);
        row("recovery -> last accepted", v, NULL, NULL);
        printf("\n3. Rate and delivery\n");
        snprintf(v, sizeof v, "%ld", throttled);
        row("throttled by the mock (429)", v, "0", verdict(throttled == 0));
        snprintf(v, sizeof v, "%d", worst);
        snprintf(x, sizeof x, "<= %d", rate);
        row("most arrivals in any 60 s window", v, x, verdict(worst >= 0 && worst <= rate));
        snprintf(v, sizeof v, "%d / %d", accepted, n);
        row("accepted / queued", v, "all", verdict(accepted >= n));
        snprintf(v, sizeof v, "%d", order_bad);
        row("warnings out of their queued order", v, "0", verdict(order_bad == 0));
        snprintf(v, sizeof v, "%d", dups);
        row("repeats (at-least-once)", v, "0", dups ? "repeat" : "ok");
        cJSON_Delete(reqs);
        cJSON_Delete(evs);
    }

out:
    if (d.pid) it_daemon_stop(&d, SIGKILL);
    mockpd_stop(mock);
    if (keep) fprintf(stderr, "kept %s\n", dir);
    else tu_rmrf(dir);
    free(d.log_path);
    free(cfg);
    free(data_dir);
    free(logp);
    free(dir);
    bench_loadavg(load, sizeof load);
    printf("\nload average at the end: %s\n", load);
    printf("%s\n", ok ? "all figures measured" : "some figures could not be measured (see stderr)");
    return ok ? 0 : 1;
}
