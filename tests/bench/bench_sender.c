/*
** bench_sender.c — the real `pdrelay run` against the mock PagerDuty: how
** close it drains to the rate limit, what it costs, and what it does idle.
**
**   bench_sender [--quick] [--idle-seconds N] [--keep]
**
**   --quick           drain 1 with 10 keys instead of 50, idle 5 s: a smoke
**                     run of every figure (still ~50 s: the limiter is real)
**   --idle-seconds N  length of the idle measurement (default 60)
**   --keep            keep the scratch directories (configs, logs, outboxes)
**
** 1. Drain at PagerDuty's real limit: 50 routing keys x 100 events queued
**    straight into the outbox, a mock that answers after 50 ms and throttles
**    above 120 per 60 s per key, pdrelay with the default limiter (120/min,
**    burst 10, 60 s window) and concurrency 50. Time from spawning the
**    daemon until the mock has accepted all 5000. Per key the token bucket
**    allows the burst at once and then one every 0.5 s, so the ideal is
**    (100 - 10) / 2 per s = 45 s (100 events never fill a 60 s window of
**    120). Efficiency = ideal / measured; expected >= 0.97, 0 throttled.
** 2. The same shape at 6000/min per key (mock 6000 per 60 s, 5 ms latency):
**    ideal (100 - 10) / 100 per s = 0.9 s, i.e. ~5556 events/s in all.
** 3. For drains 1 and 2: CPU seconds per 1000 delivered events (the
**    daemon's whole life, from wait4's rusage: start, drain, stop) and peak
**    RSS (VmHWM just before the stop, and wait4's ru_maxrss), split into the
**    peaks of RssAnon (heap, stacks) and RssFile (mapped libraries), sampled
**    every 200 ms. Expected < 8 MiB.
** 4. Idle: an empty outbox; after 1 s of settling, CPU time (/proc/PID/stat)
**    and wake-ups (context switches summed over /proc/PID/task/x/status)
**    over --idle-seconds. Expected ~0.
** 5. Pickup latency: the idle daemon, then 20 times `pdrelay send` (the real
**    binary, each to its own routing key so the limiter never delays it):
**    time from spawning send until the mock has accepted the event, median
**    and max; also from send's exit (the daemon's own part: inotify).
**
** Everything listens on 127.0.0.1. Progress goes to stderr, the table to
** stdout. Exit status 1 when a figure could not be measured (timeout, daemon
** died); a figure outside its expectation is marked MISS but is not an error.
*/
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

#define PICKUP_RUNS 20

static int keep_dirs;
static int failures;

/* ---- small helpers ------------------------------------------------------------ */

static void sleep_ms(int ms)
{
    poll(NULL, 0, ms);   /* a benchmark measures time: sleeping is the point */
}

/* A valid 32-character routing key, distinct for each i. */
static void make_key(char out[PDR_ROUTING_KEY_LEN + 1], int i)
{
    snprintf(out, PDR_ROUTING_KEY_LEN + 1, "R0BENCH%025d", i);
}

/* The i of a routing key make_key(out, i) made; -1, with a message, when key
** is not one. */
static int key_index(const char *key)
{
    const char *digits = key + 7;
    char *end;
    long v;
    if (strncmp(key, "R0BENCH", 7) || *digits < '0' || *digits > '9') goto bad;
    errno = 0;
    v = strtol(digits, &end, 10);
    if (errno || *end || v > INT_MAX) goto bad;
    return (int)v;
bad:
    fprintf(stderr, "bench_sender: routing key %s is not one of the bench's\n", key);
    return -1;
}

/* ---- the daemon's process ---------------------------------------------------- */

/* SIGTERM and wait4; the exit code (128+signal when killed). */
static int daemon_stop_ru(it_daemon *d, struct rusage *ru)
{
    int status = 0;
    memset(ru, 0, sizeof *ru);
    kill(d->pid, SIGTERM);
    while (wait4(d->pid, &status, 0, ru) < 0 && errno == EINTR) {}
    d->pid = 0;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* A "Name:   value kB" line of /proc/PID/status, in kB; -1 if absent. */
/* utime + stime of the whole process, in clock ticks; -1 on error. */
/* Voluntary + involuntary context switches summed over every thread. */
static long long proc_ctxt_switches(pid_t pid, int *threads)
{
    char path[64], line[256];
    long long sum = 0;
    struct dirent *e;
    DIR *dir;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    *threads = 0;
    if (!(dir = opendir(path))) return -1;
    while ((e = readdir(dir)) != NULL) {
        char *tpath;
        FILE *f;
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        tpath = tu_printf("/proc/%d/task/%s/status", (int)pid, e->d_name);
        f = fopen(tpath, "r");
        free(tpath);
        if (!f) continue;   /* the thread just exited */
        (*threads)++;
        while (fgets(line, sizeof line, f)) {
            long long v;
            if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
                sum += v;
        }
        fclose(f);
    }
    closedir(dir);
    return sum;
}

/* ---- a scenario's scratch directory ------------------------------------------- */

typedef struct scene {
    char *dir, *cfg, *data_dir, *log;
    mockpd *mock;
    it_daemon d;
} scene;

static int scene_open(scene *sc, const mockpd_opts *mo)
{
    memset(sc, 0, sizeof *sc);
    sc->dir = tu_mkdtemp();
    sc->cfg = tu_printf("%s/pdrelay.ini", sc->dir);
    sc->data_dir = tu_printf("%s/var", sc->dir);
    sc->log = tu_printf("%s/pdrelay.log", sc->dir);
    sc->mock = mockpd_start(mo);
    if (!sc->mock) {
        fprintf(stderr, "bench_sender: cannot start the mock PagerDuty\n");
        return -1;
    }
    return 0;
}

/* Writes the config: data_dir and the mock's URL, then pagerduty_extra
** (lines of the [pagerduty] section). Everything else is pdrelay's default. */
static void scene_config(scene *sc, const char *pagerduty_extra)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n[pagerduty]\nurl = %s\n%s", sc->data_dir,
                           mockpd_url(sc->mock), pagerduty_extra ? pagerduty_extra : "");
    tu_write_file(sc->cfg, text);
    free(text);
}

static void scene_close(scene *sc)
{
    if (sc->d.pid) it_daemon_stop(&sc->d, SIGKILL);
    mockpd_stop(sc->mock);
    if (keep_dirs) fprintf(stderr, "kept %s\n", sc->dir);
    else if (sc->dir) tu_rmrf(sc->dir);
    free(sc->d.log_path);
    free(sc->dir);
    free(sc->cfg);
    free(sc->data_dir);
    free(sc->log);
    memset(sc, 0, sizeof *sc);
}

/* Queues per_key triggers for each of n_keys keys straight into the outbox,
** in one transaction, interleaved by key (event j of every key, then j+1). */
static int queue_direct(const scene *sc, int n_keys, int per_key)
{
    size_t n = (size_t)n_keys * (size_t)per_key, i = 0;
    db_handle *db;
    int rc = 0;
    char (*keys)[PDR_ROUTING_KEY_LEN + 1] = calloc((size_t)n_keys, sizeof *keys);
    db_event *evs = calloc(n, sizeof *evs);
    char **bodies = calloc(n, sizeof *bodies), **dks = calloc(n, sizeof *dks);
    pdr_rc *res = calloc(n, sizeof *res);

    if (!keys || !evs || !bodies || !dks || !res) abort();
    for (int k = 0; k < n_keys; k++) make_key(keys[k], k);
    for (int j = 0; j < per_key; j++)
        for (int k = 0; k < n_keys; k++, i++) {
            dks[i] = tu_printf("bench-%d-%d", k, j);
            bodies[i] = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                                  "\"payload\":{\"summary\":\"[FIRING:1] NodeFilesystemAlmostFull gw-%03d "
                                  "/var/lib/data has only 4%% space left\",\"source\":\"gw-%03d.site-%02d\","
                                  "\"severity\":\"critical\",\"component\":\"node-exporter\",\"group\":\"storage\","
                                  "\"custom_details\":{\"alertname\":\"NodeFilesystemAlmostFull\",\"event\":%d}},"
                                  "\"client\":\"Alertmanager\"}",
                                  keys[k], dks[i], j, j, k, j);
            evs[i].routing_key = keys[k];
            evs[i].action = PDR_ACTION_TRIGGER;
            evs[i].dedup_key = dks[i];
            evs[i].body = bodies[i];
            evs[i].body_len = strlen(bodies[i]);
            evs[i].urgency = PDR_URGENCY_CRITICAL;   /* the body's severity */
        }
    db = tu_db_open(sc->data_dir, 0);   /* aborts if it cannot */
    if (db_outbox_push_batch(db, evs, n, res, NULL) != PDR_OK) {
        fprintf(stderr, "bench_sender: push: %s\n", db_errmsg(db));
        rc = -1;
    }
    for (i = 0; rc == 0 && i < n; i++)
        if (res[i] != PDR_OK) {
            fprintf(stderr, "bench_sender: event %zu not queued: %s\n", i, pdr_strerror(res[i]));
            rc = -1;
        }
    db_close(db);
    for (i = 0; i < n; i++) {
        free(bodies[i]);
        free(dks[i]);
    }
    free(keys);
    free(evs);
    free(bodies);
    free(dks);
    free(res);
    return rc;
}

/* ---- the table ------------------------------------------------------------------ */

static void heading(const char *text)
{
    printf("\n%s\n", text);
}

/* One row: label, measured value, expectation, verdict (NULL: none). */
static void row(const char *label, const char *value, const char *expect, const char *verdict)
{
    printf("  %-50s %14s   %-16s %s\n", label, value, expect ? expect : "", verdict ? verdict : "");
}

static const char *verdict(int ok)
{
    return ok ? "ok" : "MISS";
}

/* ---- 1, 2, 3: drains ------------------------------------------------------------- */

typedef struct drain_spec {
    const char *title;
    int keys, per_key;
    int mock_limit, mock_window_ms, mock_latency_ms;
    int rate_per_minute, burst, concurrency;
    int rate_window_s;
    int timeout_s;
} drain_spec;

typedef struct drain_res {
    int ok;                 /* every figure measured */
    int n;                  /* events queued */
    double drain_s, ideal_s;
    double first_s;         /* daemon spawned -> first arrival (approx.) */
    double key_span_max_s;  /* slowest key: first -> last arrival */
    double key_span_min_s;
    long accepted, throttled, requests;
    int worst_window;       /* most accepted for one key within one mock window */
    size_t left_pending;
    double cpu_s;           /* utime + stime over the daemon's life */
    long vmhwm_kb, maxrss_kb;
    long anon_kb, file_kb;  /* peaks of RssAnon and RssFile, sampled every 200 ms */
    int exit_code;
} drain_res;

/* Reads the mock's record of accepted events: per key spans, the busiest
** window, and the total span (to split the drain time into start-up and
** sending). */
static void analyse_events(mockpd *m, const drain_spec *sp, drain_res *r)
{
    cJSON *ev = mockpd_events(m);
    const cJSON *e;
    int n_keys = sp->keys;
    double *first = calloc((size_t)n_keys, sizeof *first), *last = calloc((size_t)n_keys, sizeof *last);
    int *count = calloc((size_t)n_keys, sizeof *count);
    double **times = calloc((size_t)n_keys, sizeof *times);
    double g_first = -1, g_last = -1;

    if (!first || !last || !count || !times) abort();
    for (int k = 0; k < n_keys; k++)
        if (!(times[k] = calloc((size_t)sp->per_key * 2 + 1, sizeof **times))) abort();
    if (!ev) {
        fprintf(stderr, "bench_sender: cannot read the mock's events\n");
        r->ok = 0;
    }
    cJSON_ArrayForEach(e, ev) {
        const cJSON *rk = cJSON_GetObjectItemCaseSensitive(e, "routing_key");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "arrival_ms");
        int k;
        if (!cJSON_IsString(rk) || !cJSON_IsNumber(at) || strlen(rk->valuestring) != PDR_ROUTING_KEY_LEN)
            continue;
        k = key_index(rk->valuestring);
        if (k < 0 || k >= n_keys) continue;
        if (count[k] == 0) first[k] = at->valuedouble;
        last[k] = at->valuedouble;
        if (count[k] < sp->per_key * 2 + 1) times[k][count[k]] = at->valuedouble;
        count[k]++;
        if (g_first < 0) g_first = at->valuedouble;
        g_last = at->valuedouble;
    }
    r->key_span_max_s = 0;
    r->key_span_min_s = 1e9;
    r->worst_window = 0;
    for (int k = 0; k < n_keys; k++) {
        double span = (last[k] - first[k]) / 1000.0;
        int stored = count[k] < sp->per_key * 2 + 1 ? count[k] : sp->per_key * 2 + 1;
        if (span > r->key_span_max_s) r->key_span_max_s = span;
        if (span < r->key_span_min_s) r->key_span_min_s = span;
        for (int i = 0, j = 0; i < stored; i++) {
            while (times[k][j] <= times[k][i] - sp->mock_window_ms) j++;
            if (i - j + 1 > r->worst_window) r->worst_window = i - j + 1;
        }
        free(times[k]);
    }
    r->first_s = g_first >= 0 ? r->drain_s - (g_last - g_first) / 1000.0 : 0;
    free(times);
    free(first);
    free(last);
    free(count);
    cJSON_Delete(ev);
}

static drain_res run_drain(const drain_spec *sp)
{
    drain_res r;
    scene sc;
    mockpd_opts mo;
    struct rusage ru;
    char *extra;
    double t0, deadline;
    int reached = -1;

    memset(&r, 0, sizeof r);
    r.n = sp->keys * sp->per_key;
    /* The token bucket: the burst at once, then rate_per_minute / 60 per s.
    ** (Holds while per_key <= the window's allowance, as in both drains.) */
    r.ideal_s = (double)(sp->per_key - sp->burst) / ((double)sp->rate_per_minute / 60.0);
    memset(&mo, 0, sizeof mo);
    mo.limit = sp->mock_limit;
    mo.window_ms = sp->mock_window_ms;
    mo.latency_ms = sp->mock_latency_ms;
    if (scene_open(&sc, &mo)) {
        scene_close(&sc);
        return r;
    }
    extra = tu_printf("rate_per_minute = %d\nburst = %d\nrate_window = %ds\nconcurrency = %d\n",
                      sp->rate_per_minute, sp->burst, sp->rate_window_s, sp->concurrency);
    scene_config(&sc, extra);
    free(extra);
    if (queue_direct(&sc, sp->keys, sp->per_key)) {
        scene_close(&sc);
        return r;
    }
    fprintf(stderr, "%s: %d events queued; draining (ideal %.2f s)...\n", sp->title, r.n, r.ideal_s);

    t0 = bench_mono_s();
    if (it_daemon_start(&sc.d, sc.cfg, sc.log) != 0) {
        fprintf(stderr, "bench_sender: cannot start pdrelay\n");
        scene_close(&sc);
        return r;
    }
    /* Wait in slices, to notice a daemon that dies and to sample its memory;
    ** the mock answers the moment the count is reached, so slicing costs no
    ** precision. */
    deadline = t0 + sp->timeout_s;
    while (reached != 0 && bench_mono_s() < deadline && bench_daemon_alive(sc.d.pid)) {
        long anon, file;
        reached = mockpd_wait_accepted(sc.mock, r.n, 200);
        if (reached == 0) r.drain_s = bench_mono_s() - t0;
        anon = it_proc_status_kb(sc.d.pid, "RssAnon");
        file = it_proc_status_kb(sc.d.pid, "RssFile");
        if (anon > r.anon_kb) r.anon_kb = anon;
        if (file > r.file_kb) r.file_kb = file;
        if (reached < 0) break;
    }
    if (reached != 0) r.drain_s = bench_mono_s() - t0;
    if (reached != 0) {
        fprintf(stderr, "bench_sender: %s: only %ld of %d accepted after %.1f s%s\n", sp->title,
                mockpd_stat(sc.mock, "accepted"), r.n, r.drain_s,
                bench_daemon_alive(sc.d.pid) ? "" : " (pdrelay exited)");
        bench_log_tail(&sc.d);
    }
    r.vmhwm_kb = it_proc_status_kb(sc.d.pid, "VmHWM");
    r.exit_code = daemon_stop_ru(&sc.d, &ru);
    r.cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
              (double)ru.ru_stime.tv_usec / 1e6;
    r.maxrss_kb = ru.ru_maxrss;
    r.accepted = mockpd_stat(sc.mock, "accepted");
    r.throttled = mockpd_stat(sc.mock, "throttled");
    r.requests = mockpd_stat(sc.mock, "requests");
    r.ok = reached == 0 && r.exit_code == 0 && r.throttled >= 0;
    analyse_events(sc.mock, sp, &r);
    {
        db_row *rows = NULL;
        size_t left = it_rows(sc.data_dir, DB_ROW_PENDING, &rows);
        db_rows_free(rows, left == (size_t)-1 ? 0 : left);
        r.left_pending = left;
    }
    if (r.exit_code != 0) {
        fprintf(stderr, "bench_sender: %s: pdrelay exited with %d\n", sp->title, r.exit_code);
        bench_log_tail(&sc.d);
    }
    fprintf(stderr, "%s: %ld accepted in %.2f s\n", sp->title, r.accepted, r.drain_s);
    scene_close(&sc);
    if (!r.ok) failures++;
    return r;
}

static void print_drain(const char *title, const drain_spec *sp, const drain_res *r, int show_rate)
{
    char v[64], x[64];
    heading(title);
    printf("  (%d keys x %d events; mock: %d per %d s per key, %d ms latency; pdrelay: rate_per_minute %d, "
           "burst %d, rate_window %ds, concurrency %d)\n",
           sp->keys, sp->per_key, sp->mock_limit, sp->mock_window_ms / 1000, sp->mock_latency_ms,
           sp->rate_per_minute, sp->burst, sp->rate_window_s, sp->concurrency);
    if (!r->ok) row("(not fully measured: see stderr)", "", "", "FAIL");
    snprintf(v, sizeof v, "%.3f s", r->drain_s);
    snprintf(x, sizeof x, "ideal %.3f s", r->ideal_s);
    row("drain time (spawn -> all accepted)", v, x, NULL);
    if (show_rate) {
        snprintf(v, sizeof v, "%.0f /s", (double)r->n / r->drain_s);
        snprintf(x, sizeof x, "ideal %.0f /s", (double)r->n / r->ideal_s);
        row("events per second", v, x, NULL);
    }
    snprintf(v, sizeof v, "%.3f", r->ideal_s / r->drain_s);
    row("efficiency (ideal / measured)", v, show_rate ? "~1" : ">= 0.97",
        show_rate ? NULL : verdict(r->ideal_s / r->drain_s >= 0.97));
    snprintf(v, sizeof v, "%ld", r->throttled);
    row("throttled by the mock (429)", v, "0", verdict(r->throttled == 0));
    snprintf(v, sizeof v, "%ld / %ld", r->accepted, r->requests);
    snprintf(x, sizeof x, "%d", r->n);
    row("accepted / requests", v, x, verdict(r->accepted == r->n && r->requests == r->n));
    snprintf(v, sizeof v, "%.3f s", r->first_s);
    row("of which spawn -> first arrival", v, NULL, NULL);
    snprintf(v, sizeof v, "%.3f s", r->key_span_max_s);
    snprintf(x, sizeof x, "ideal %.3f s", r->ideal_s);
    row("slowest key, first -> last arrival", v, x, NULL);
    snprintf(v, sizeof v, "%.3f s", r->key_span_min_s);
    row("fastest key, first -> last arrival", v, x, NULL);
    snprintf(v, sizeof v, "%d", r->worst_window);
    snprintf(x, sizeof x, "<= %d", sp->mock_limit);
    row("most arrivals of one key in any mock window", v, x, verdict(r->worst_window <= sp->mock_limit));
    snprintf(v, sizeof v, "%zu", r->left_pending);
    row("left pending in the outbox after stop", v, "0", verdict(r->left_pending == 0));
}

static void print_resources(const char *name, const drain_res *r)
{
    char label[96], v[64];
    snprintf(label, sizeof label, "%s: CPU s per 1000 delivered", name);
    snprintf(v, sizeof v, "%.4f s", r->accepted > 0 ? r->cpu_s * 1000.0 / (double)r->accepted : 0.0);
    row(label, v, NULL, NULL);
    snprintf(label, sizeof label, "%s: CPU s in all (utime+stime)", name);
    snprintf(v, sizeof v, "%.3f s", r->cpu_s);
    row(label, v, NULL, NULL);
    snprintf(label, sizeof label, "%s: peak RSS (VmHWM before stop)", name);
    snprintf(v, sizeof v, "%.2f MiB", (double)r->vmhwm_kb / 1024.0);
    row(label, v, "< 8 MiB", verdict(r->vmhwm_kb >= 0 && r->vmhwm_kb < 8 * 1024));
    snprintf(label, sizeof label, "%s: peak RSS (wait4 ru_maxrss)", name);
    snprintf(v, sizeof v, "%.2f MiB", (double)r->maxrss_kb / 1024.0);
    row(label, v, "< 8 MiB", verdict(r->maxrss_kb < 8 * 1024));
    snprintf(label, sizeof label, "%s:   of which heap etc. (peak RssAnon)", name);
    snprintf(v, sizeof v, "%.2f MiB", (double)r->anon_kb / 1024.0);
    row(label, v, NULL, NULL);
    snprintf(label, sizeof label, "%s:   of which mapped files (peak RssFile)", name);
    snprintf(v, sizeof v, "%.2f MiB", (double)r->file_kb / 1024.0);
    row(label, v, NULL, NULL);
}

/* ---- 4, 5: idle and pickup ------------------------------------------------------- */

typedef struct idle_res {
    int ok, threads;
    double seconds, cpu_s, wakeups_per_s;
    double start_cpu_s;                  /* CPU used by start-up (spawn + 1 s) */
    long idle_anon_kb, idle_file_kb;
    long long switches;
    double pickup_ms[PICKUP_RUNS];       /* send spawned -> accepted */
    double after_exit_ms[PICKUP_RUNS];   /* send exited -> accepted */
    double send_ms[PICKUP_RUNS];         /* the send process itself */
    int pickups;
    long vmhwm_kb;
} idle_res;

static idle_res run_idle(int idle_seconds)
{
    idle_res r;
    scene sc;
    mockpd_opts mo;
    struct rusage ru;
    long long ticks0, ticks1, sw0, sw1;
    int th0 = 0, th1 = 0;
    long hz = sysconf(_SC_CLK_TCK);
    double t0;

    memset(&r, 0, sizeof r);
    memset(&mo, 0, sizeof mo);   /* the mock's defaults: 120 per 60 s per key, no latency */
    if (scene_open(&sc, &mo)) {
        scene_close(&sc);
        failures++;
        return r;
    }
    scene_config(&sc, NULL);   /* pdrelay's defaults throughout */
    if (it_daemon_start(&sc.d, sc.cfg, sc.log) != 0 || it_wait_log(&sc.d, "msg=\"pdrelay started\"", 10000) != 0) {
        fprintf(stderr, "bench_sender: pdrelay did not start\n");
        bench_log_tail(&sc.d);
        scene_close(&sc);
        failures++;
        return r;
    }
    fprintf(stderr, "idle: settling 1 s, then measuring %d s...\n", idle_seconds);
    sleep_ms(1000);
    ticks0 = it_proc_cpu_ticks(sc.d.pid);
    sw0 = proc_ctxt_switches(sc.d.pid, &th0);
    r.start_cpu_s = (double)ticks0 / (double)hz;
    r.idle_anon_kb = it_proc_status_kb(sc.d.pid, "RssAnon");
    r.idle_file_kb = it_proc_status_kb(sc.d.pid, "RssFile");
    t0 = bench_mono_s();
    sleep_ms(idle_seconds * 1000);
    ticks1 = it_proc_cpu_ticks(sc.d.pid);
    sw1 = proc_ctxt_switches(sc.d.pid, &th1);
    r.seconds = bench_mono_s() - t0;
    r.ok = ticks0 >= 0 && ticks1 >= 0 && sw0 >= 0 && sw1 >= 0 && bench_daemon_alive(sc.d.pid);
    r.cpu_s = (double)(ticks1 - ticks0) / (double)hz;
    r.switches = sw1 - sw0;
    r.wakeups_per_s = (double)r.switches / r.seconds;
    r.threads = th1;

    fprintf(stderr, "pickup: %d x pdrelay send...\n", PICKUP_RUNS);
    for (int i = 0; r.ok && i < PICKUP_RUNS; i++) {
        char key[PDR_ROUTING_KEY_LEN + 1], dk[32];
        double s0, s1, s2;
        int rc, w;
        make_key(key, 1000 + i);   /* its own key: the limiter never holds it back */
        snprintf(dk, sizeof dk, "pickup-%d", i);
        sleep_ms(200);             /* back to idle */
        s0 = bench_mono_s();
        rc = it_send(sc.cfg, key, "trigger", dk, "bench_sender pickup latency");
        s1 = bench_mono_s();
        w = mockpd_wait_accepted(sc.mock, i + 1, 10000);
        s2 = bench_mono_s();
        if (rc != 0 || w != 0) {
            fprintf(stderr, "bench_sender: pickup %d: send exited %d, mock wait %d\n", i, rc, w);
            bench_log_tail(&sc.d);
            r.ok = 0;
            break;
        }
        r.pickup_ms[i] = (s2 - s0) * 1000.0;
        r.after_exit_ms[i] = (s2 - s1) * 1000.0;
        r.send_ms[i] = (s1 - s0) * 1000.0;
        r.pickups++;
    }
    r.vmhwm_kb = it_proc_status_kb(sc.d.pid, "VmHWM");
    if (daemon_stop_ru(&sc.d, &ru) != 0) {
        fprintf(stderr, "bench_sender: idle pdrelay did not exit cleanly\n");
        bench_log_tail(&sc.d);
        r.ok = 0;
    }
    if (mockpd_stat(sc.mock, "throttled") != 0) r.ok = 0;
    scene_close(&sc);
    if (!r.ok) failures++;
    return r;
}

static void print_idle(const idle_res *r, int idle_seconds)
{
    char label[96], v[64];
    heading("4. Idle daemon, empty outbox, pdrelay defaults");
    if (!r->ok) row("(not fully measured: see stderr)", "", "", "FAIL");
    snprintf(label, sizeof label, "CPU time over %d s (utime+stime, /proc)", idle_seconds);
    snprintf(v, sizeof v, "%.2f s", r->cpu_s);
    row(label, v, "~0", verdict(r->cpu_s <= 0.02));
    snprintf(v, sizeof v, "%.3f /s", r->wakeups_per_s);
    row("wake-ups (context switches, all threads)", v, "~0", verdict(r->wakeups_per_s < 1.0));
    snprintf(v, sizeof v, "%lld in %.1f s", r->switches, r->seconds);
    row("context switches in the interval", v, NULL, NULL);
    snprintf(v, sizeof v, "%d", r->threads);
    row("threads", v, NULL, NULL);
    snprintf(v, sizeof v, "%.2f s", r->start_cpu_s);
    row("CPU time of start-up (spawn + 1 s settling)", v, NULL, NULL);
    snprintf(v, sizeof v, "%.2f + %.2f MiB", (double)r->idle_anon_kb / 1024.0, (double)r->idle_file_kb / 1024.0);
    row("RSS idle: RssAnon + RssFile", v, NULL, NULL);
}

static void print_pickup(const idle_res *r)
{
    double a[PICKUP_RUNS], b[PICKUP_RUNS], c[PICKUP_RUNS];
    char label[96], v[64];
    int n = r->pickups;
    heading("5. Pickup latency: `pdrelay send` to the idle daemon until the mock accepted it");
    if (n == 0) {
        row("(not measured: see stderr)", "", "", "FAIL");
        return;
    }
    memcpy(a, r->pickup_ms, sizeof a);
    memcpy(b, r->after_exit_ms, sizeof b);
    memcpy(c, r->send_ms, sizeof c);
    qsort(a, (size_t)n, sizeof *a, bench_cmp_double);
    qsort(b, (size_t)n, sizeof *b, bench_cmp_double);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    snprintf(label, sizeof label, "runs");
    snprintf(v, sizeof v, "%d", n);
    row(label, v, NULL, NULL);
    snprintf(v, sizeof v, "%.1f ms", a[n / 2]);
    row("send spawned -> accepted: median", v, NULL, NULL);
    snprintf(v, sizeof v, "%.1f ms", a[n - 1]);
    row("send spawned -> accepted: max", v, NULL, NULL);
    snprintf(v, sizeof v, "%.1f ms", c[n / 2]);
    row("  of which the send process (median)", v, NULL, NULL);
    snprintf(v, sizeof v, "%.1f ms", b[n / 2]);
    row("send exited -> accepted: median", v, NULL, NULL);
    snprintf(v, sizeof v, "%.1f ms", b[n - 1]);
    row("send exited -> accepted: max", v, NULL, NULL);
    if (r->vmhwm_kb >= 0) {
        snprintf(v, sizeof v, "%.2f MiB", (double)r->vmhwm_kb / 1024.0);
        row("peak RSS of the idle + pickup daemon (VmHWM)", v, "< 8 MiB", verdict(r->vmhwm_kb < 8 * 1024));
    }
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_sender [--quick] [--idle-seconds N] [--keep]\n"
               "  --quick           drain 1 with 10 keys, idle 5 s (a smoke run, ~1 min)\n"
               "  --idle-seconds N  idle measurement length (default 60)\n"
               "  --keep            keep scratch directories\n");
}

int main(int argc, char **argv)
{
    int quick = 0, idle_seconds = -1;
    char load[64];
    drain_spec d1 = {
        .title = "drain 1", .keys = 50, .per_key = 100,
        .mock_limit = 120, .mock_window_ms = 60000, .mock_latency_ms = 50,
        .rate_per_minute = 120, .burst = 10, .rate_window_s = 60, .concurrency = 50,
        .timeout_s = 300,
    };
    drain_spec d2 = {
        .title = "drain 2", .keys = 50, .per_key = 100,
        .mock_limit = 6000, .mock_window_ms = 60000, .mock_latency_ms = 5,
        .rate_per_minute = 6000, .burst = 10, .rate_window_s = 60, .concurrency = 50,
        .timeout_s = 120,
    };
    drain_res r1, r2;
    idle_res ri;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--keep")) keep_dirs = 1;
        else if (!strcmp(argv[i], "--idle-seconds") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 3600) {
                fprintf(stderr, "bench_sender: --idle-seconds wants 1..3600\n");
                return 2;
            }
            idle_seconds = (int)v;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (quick) d1.keys = 10;
    if (idle_seconds < 0) idle_seconds = quick ? 5 : 60;

    char *scratch = tu_printf(", scratch under %s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    bench_print_header(argc, argv, scratch);
    free(scratch);
    fflush(stdout);
    mockpd_global_init();

    r1 = run_drain(&d1);
    r2 = run_drain(&d2);
    ri = run_idle(idle_seconds);

    printf("\n%-52s %14s   %-16s %s\n", "figure", "measured", "expected", "");
    print_drain("1. Drain at PagerDuty's real limit", &d1, &r1, 0);
    print_drain("2. Drain at a scaled limit (is the sender the bottleneck?)", &d2, &r2, 1);
    heading("3. Cost of draining (the daemon's whole life: start, drain, stop)");
    print_resources("drain 1", &r1);
    print_resources("drain 2", &r2);
    print_idle(&ri, idle_seconds);
    print_pickup(&ri);
    bench_loadavg(load, sizeof load);
    printf("\nload average at the end: %s (other work on the machine skews drain 2 and the CPU figures)\n", load);
    printf("%s\n", failures ? "some figures could not be measured (see stderr)" : "all figures measured");
    return failures ? 1 : 0;
}
