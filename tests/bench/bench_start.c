/*
** bench_start.c — how long from `pdrelay run` to the first request upstream
** with a large backlog queued (issue 12 §3, "Start in constant time").
**
**   bench_start [--events N]... [--runs R] [--keys K] [--drop-caches] [--keep]
**
**   --events N     events queued (default: 100000, then 1000000; repeat the
**                  flag for several sizes)
**   --runs R       timed starts per case (default 5)
**   --keys K       routing keys the events are spread over (default 4)
**   --drop-caches  also write 3 to /proc/sys/vm/drop_caches for the cold
**                  starts, where it is writable (it empties the page cache
**                  of the whole machine: off by default, the machine may be
**                  shared); posix_fadvise is used in any case
**   --keep         keep the scratch directories
**
** How: the outbox of N triggers (bodies of ~250 bytes, dedup keys e-0..,
** round robin over the keys) is built through the db layer in transactions
** of 20000 (db_outbox_push_batch), in a scratch directory of the build's
** temporary directory (its file system is printed: it must be a disk, not
** tmpfs, for cold to mean anything). Then, for each case, the real
** `pdrelay run` is started R times; a start's time is from just before
** fork/exec to the first request's arrival at the mock PagerDuty (its
** arrival_ms, this process's clock tied to the mock's by a marker request;
** the error is printed). After its first request the daemon is stopped:
** SIGTERM for the "clean" case (the next start finds the clean-stop
** marker), kill -9 for "unclean" (the next start finds it cleared and the
** -wal left behind, and checks what a crash can break). One untimed start
** before each case leaves the stop of its kind. Each start delivers a few
** events, so the backlog shrinks by a few dozen per start: nothing at
** these sizes.
**
** warm: the outbox's pages are in the page cache from the previous start.
** cold: before each start the database, -wal and -shm are fsync'd and
** dropped from the page cache with posix_fadvise(POSIX_FADV_DONTNEED)
** (works without root; the pdrelay binary and its libraries stay cached),
** and with --drop-caches also /proc/sys/vm/drop_caches. Which was used is
** printed.
**
** Printed per size and case: median, min and max of the R starts, and the
** median of what the daemon's log says its check at open took (none after
** a clean stop). Expected: <= 100 ms warm at 1M events.
*/
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "benchutil.h"
#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define BATCH 20000
#define MAX_SIZES 8
#define TMPFS_MAGIC_ 0x01021994

static int g_drop_caches;

#define BENCH_MAX_BYTES (INT64_C(4) << 30)   /* [outbox] max_bytes = 4GB */

/* The outbox with bounds that fit the backlog built (the defaults' max_bytes,
** 256MB, holds about 950k of these events). */
static db_handle *open_outbox(const char *data_dir, int64_t max_events)
{
    db_options o;
    db_handle *db = NULL;
    char err[512] = "";
    memset(&o, 0, sizeof o);
    o.data_dir = data_dir;
    o.max_events = max_events;
    o.max_bytes = BENCH_MAX_BYTES;
    if (db_open(&o, &db, err, sizeof err) != PDR_OK) {
        fprintf(stderr, "bench_start: cannot open the outbox of %s: %s\n", data_dir, err);
        exit(1);
    }
    return db;
}

/* N triggers over n_keys keys, in transactions of BATCH. 0 on success. */
static int build(const char *data_dir, int n, int n_keys, int64_t max_events)
{
    db_handle *db = open_outbox(data_dir, max_events);
    db_event *evs = calloc(BATCH, sizeof *evs);
    char **bodies = calloc(BATCH, sizeof *bodies), **dks = calloc(BATCH, sizeof *dks);
    char keys[16][PDR_ROUTING_KEY_LEN + 1];
    pdr_rc *res = calloc(BATCH, sizeof *res);
    int rc = 0;
    if (!evs || !bodies || !dks || !res) abort();
    for (int k = 0; k < n_keys; k++) snprintf(keys[k], sizeof keys[k], "R0START%025d", k);
    for (int done = 0; done < n && !rc; done += BATCH) {
        int m = n - done < BATCH ? n - done : BATCH;
        for (int i = 0; i < m; i++) {
            int j = done + i;
            const char *key = keys[j % n_keys];
            dks[i] = tu_printf("e-%d", j);
            bodies[i] = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                                  "\"payload\":{\"summary\":\"disk filling on gw-%05d: /var at 9%d%%\","
                                  "\"source\":\"gw-%05d\",\"severity\":\"warning\",\"custom_details\":"
                                  "{\"mount\":\"/var\",\"free_mb\":%d,\"note\":\"queued by bench_start\"}}}",
                                  key, dks[i], j % 10000, j % 10, j % 10000, j % 977);
            evs[i].routing_key = key;
            evs[i].action = PDR_ACTION_TRIGGER;
            evs[i].dedup_key = dks[i];
            evs[i].body = bodies[i];
            evs[i].body_len = strlen(bodies[i]);
            evs[i].urgency = PDR_URGENCY_WARNING;
        }
        if (db_outbox_push_batch(db, evs, (size_t)m, res, NULL) != PDR_OK) {
            fprintf(stderr, "bench_start: push: %s\n", db_errmsg(db));
            rc = -1;
        }
        for (int i = 0; i < m; i++) {
            if (!rc && res[i] != PDR_OK) {
                fprintf(stderr, "bench_start: event %d not queued: %s\n", done + i, pdr_strerror(res[i]));
                rc = -1;
            }
            free(bodies[i]);
            free(dks[i]);
        }
    }
    free(evs);
    free(bodies);
    free(dks);
    free(res);
    db_close(db);
    return rc;
}

/* Drops the outbox's files from the page cache. */
static void drop_cache(const char *data_dir)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        char *p = tu_printf("%s/%s%s", data_dir, DB_FILE_NAME, sfx[i]);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);   /* dirty pages are not dropped */
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
        free(p);
    }
    if (g_drop_caches) {
        FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
        sync();
        if (f) {
            fputs("3\n", f);
            if (fclose(f) != 0) g_drop_caches = -1;
        } else {
            g_drop_caches = -1;
        }
    }
}

/* What the log's last "previous run" line says the check took, in ms; 0
** when the start checked nothing; -1 when no such line. */
static double check_took(const it_daemon *d, int *clean_out)
{
    char *log = it_log(d), *p = log, *last = NULL;
    double ms = -1;
    while ((p = strstr(p, "previous run")) != NULL) last = p++;
    *clean_out = -1;
    if (last) {
        char *eol = strchr(last, '\n'), *t = strstr(last, "took=\"");
        if (eol) *eol = '\0';
        *clean_out = strstr(last, "stopped cleanly") && !strstr(last, "did not") ? 1 : 0;
        ms = t ? strtod(t + 6, NULL) : 0;
    }
    free(log);
    return ms;
}

/* One start: its time to the first request (ms), or -1. Stops it with sig. */
static double one_start(mockpd *m, double off, const char *cfg, const char *logp, const char *data_dir, int cold,
                        int sig, double *took, int *clean)
{
    it_daemon d;
    double t0, first = -1;
    memset(&d, 0, sizeof d);
    if (mockpd_reset(m) != 0) return -1;
    if (cold) drop_cache(data_dir);
    t0 = bench_mono_ms();
    if (it_daemon_start(&d, cfg, logp) != 0) return -1;
    if (mockpd_wait_requests(m, 1, 60000) != 0) {
        fprintf(stderr, "bench_start: no request within 60 s\n");
        bench_log_tail(&d);
        it_daemon_stop(&d, SIGKILL);
        free(d.log_path);
        return -1;
    }
    cJSON *reqs = mockpd_requests(m);
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs) {
        double at = bench_num(r, "arrival_ms");
        if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    cJSON_Delete(reqs);
    int ex = it_daemon_stop(&d, sig);
    if (sig == SIGTERM && ex != 0) {
        fprintf(stderr, "bench_start: pdrelay exited %d after SIGTERM\n", ex);
        bench_log_tail(&d);
    }
    *took = check_took(&d, clean);
    free(d.log_path);
    return first < 0 ? -1 : first - off - t0;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_start [--events N]... [--runs R] [--keys K] [--drop-caches] [--keep]\n"
               "  --events N     events queued (default 100000 and 1000000; repeatable)\n"
               "  --runs R       timed starts per case (default 5)\n"
               "  --keys K       routing keys (default 4, at most 16)\n"
               "  --drop-caches  also /proc/sys/vm/drop_caches for cold starts (whole machine)\n"
               "  --keep         keep the scratch directories\n");
}

int main(int argc, char **argv)
{
    int sizes[MAX_SIZES], n_sizes = 0, runs = 5, n_keys = 4, keep = 0, ok = 1;
    for (int i = 1; i < argc; i++) {
        char *end;
        if ((!strcmp(argv[i], "--events") || !strcmp(argv[i], "--runs") || !strcmp(argv[i], "--keys")) &&
            i + 1 < argc) {
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 100000000) {
                fprintf(stderr, "bench_start: %s wants a positive number\n", argv[i]);
                return 2;
            }
            if (!strcmp(argv[i], "--events")) {
                if (n_sizes == MAX_SIZES) return 2;
                sizes[n_sizes++] = (int)v;
            } else if (!strcmp(argv[i], "--runs")) {
                runs = (int)v;
            } else {
                n_keys = v > 16 ? 16 : (int)v;
            }
            i++;
        } else if (!strcmp(argv[i], "--drop-caches")) {
            g_drop_caches = 1;
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
    if (!n_sizes) {
        sizes[n_sizes++] = 100000;
        sizes[n_sizes++] = 1000000;
    }

    bench_print_header(argc, argv, NULL);
    mockpd_global_init();
    mockpd *mock = mockpd_start(NULL);
    if (!mock) {
        fprintf(stderr, "bench_start: cannot start the mock PagerDuty\n");
        return 1;
    }
    double rtt = 0, off = bench_mock_clock_offset(mock, &rtt);
    if (off < -1e17) {
        fprintf(stderr, "bench_start: cannot tie the mock's clock to ours\n");
        mockpd_stop(mock);
        return 1;
    }
    printf("%d starts per case, %d routing keys; our clock tied to the mock's within +-%.2f ms\n", runs, n_keys,
           rtt / 2);

    for (int s = 0; s < n_sizes && ok; s++) {
        int n = sizes[s];
        char *dir = tu_mkdtemp();
        char *cfg = tu_printf("%s/pdrelay.ini", dir), *data_dir = tu_printf("%s/var", dir);
        char *logp = tu_printf("%s/pdrelay.log", dir);
        struct statfs sf;
        double t_build = bench_mono_ms();
        int64_t max_events = (int64_t)n + 1000;

        if (statfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC_)
            printf("WARNING: %s is on tmpfs: cold starts read nothing from a disk\n", dir);
        char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n[pagerduty]\nurl = %s\n"
                               "[outbox]\nmax_events = %lld\nmax_bytes = %lld\n",
                               data_dir, mockpd_url(mock), (long long)max_events, (long long)BENCH_MAX_BYTES);
        tu_write_file(cfg, text);
        free(text);
        fprintf(stderr, "building an outbox of %d events in %s...\n", n, dir);
        if (build(data_dir, n, n_keys, max_events) != 0) {
            ok = 0;
            goto next;
        }
        {
            char *p = tu_printf("%s/%s", data_dir, DB_FILE_NAME);
            struct stat sb;
            printf("\n%d events queued in %.1f s; %s: %.0f MB (file system type 0x%lx)\n", n,
                   (bench_mono_ms() - t_build) / 1000, p, stat(p, &sb) == 0 ? (double)sb.st_size / 1e6 : -1,
                   (unsigned long)sf.f_type);
            free(p);
        }
        printf("%-8s %-7s %-5s %10s %10s %10s   %s\n", "stop", "cache", "runs", "median ms", "min ms", "max ms",
               "check at open (median ms)");
        static const struct { const char *stop; int sig; int cold; } cases[] = {
            {"clean", SIGTERM, 0}, {"clean", SIGTERM, 1}, {"unclean", SIGKILL, 0}, {"unclean", SIGKILL, 1},
        };
        for (size_t c = 0; c < sizeof cases / sizeof *cases && ok; c++) {
            double *t = calloc((size_t)runs, sizeof *t), *took = calloc((size_t)runs, sizeof *took), took0;
            int clean = -1, wrong = 0;
            if (!t || !took) abort();
            /* untimed: leaves the previous stop of this case's kind */
            if (one_start(mock, off, cfg, logp, data_dir, 0, cases[c].sig, &took0, &clean) < 0) {
                ok = 0;
                break;
            }
            for (int r = 0; r < runs && ok; r++) {
                t[r] = one_start(mock, off, cfg, logp, data_dir, cases[c].cold, cases[c].sig, &took[r], &clean);
                if (t[r] < 0) ok = 0;
                if (clean != (cases[c].sig == SIGTERM)) wrong++;
                if (took[r] < 0) took[r] = 0;
            }
            if (ok) {
                double lo, hi, med, tk;
                med = median(t, runs);
                lo = t[0];
                hi = t[runs - 1];
                tk = median(took, runs);
                printf("%-8s %-7s %-5d %10.1f %10.1f %10.1f   %s%.3f%s\n", cases[c].stop,
                       cases[c].cold ? "cold" : "warm", runs, med, lo, hi, cases[c].sig == SIGTERM ? "(none) " : "",
                       tk, wrong ? "  (the daemon's log disagrees on the previous stop!)" : "");
                fflush(stdout);
            }
            free(t);
            free(took);
        }
        {
            /* what is left, for the record */
            db_handle *db = open_outbox(data_dir, max_events);
            int64_t pending = 0;
            db_outbox_count(db, &pending, NULL);
            db_close(db);
            printf("(%lld events still queued at the end)\n", (long long)pending);
        }
    next:
        if (keep) fprintf(stderr, "kept %s\n", dir);
        else tu_rmrf(dir);
        free(cfg);
        free(data_dir);
        free(logp);
        free(dir);
    }
    printf("\ncold = posix_fadvise(POSIX_FADV_DONTNEED) on pdrelay.db, -wal, -shm%s\n",
           g_drop_caches > 0 ? " + /proc/sys/vm/drop_caches"
           : g_drop_caches < 0 ? " (/proc/sys/vm/drop_caches asked for, not writable here)"
                               : " (not /proc/sys/vm/drop_caches: pass --drop-caches)");
    mockpd_stop(mock);
    char load[64];
    bench_loadavg(load, sizeof load);
    printf("load average at the end: %s\n", load);
    printf("%s\n", ok ? "all figures measured" : "some figures could not be measured (see stderr)");
    return ok ? 0 : 1;
}
