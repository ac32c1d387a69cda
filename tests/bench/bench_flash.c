/*
** bench_flash.c — flash wear: bytes written to storage per durable event by
** the real `pdrelay run`, for [outbox] synchronous = full and normal, at 1,
** 16 and 64 concurrent senders.
**
**   bench_flash [--events N] [--sync full|normal] [--senders N]
**               [--commit-interval MS] [--deliver] [--keep]
**
**   --events N       events posted per cell (default 20000)
**   --sync MODE      run only this synchronous mode (default: full, normal)
**   --senders N      run only this many senders (default: 1, 16, 64)
**   --commit-interval MS   [outbox] commit_interval of the daemon (default 0)
**   --deliver        after the ingest, bring the mock PagerDuty up and
**                    measure the delivery too (the sender's deletes)
**   --keep           keep the scratch directories
**
** What is counted. The daemon's own storage writes: write_bytes of
** /proc/PID/io, which the kernel counts when the process dirties a page of
** the page cache (4 KiB granularity, so a WAL frame that straddles two pages
** costs both; a page dirtied again before writeback counts once). The ext4
** journal's writes (jbd2) are not the process's and are not in it.
**
** One cell: a scratch directory on a real disk (not tmpfs, where
** write_bytes stays 0: $TMPDIR, else /var/tmp, else the working directory;
** its file system type is printed); the mock PagerDuty started then halted,
** so the uplink is down (connections refused) and the sender does nothing
** but a reschedule and a probe now and then: the writes measured are the
** ingest's. N PagerDuty events of about 500 bytes (4 routing keys, a
** distinct dedup_key each, hashed so that they land anywhere in the
** indexes, as real ones do) are posted by C connections, each sending its
** next request when the last one's 202 came (closed loop).
**   at commit  write_bytes from before the first POST to after the last
**              202: the WAL frames of the commits (and the -shm), plus any
**              checkpoint that ran meanwhile (wal_autocheckpoint).
**   ingest     the same up to the daemon's exit after SIGTERM: its last
**              connection checkpoints the WAL into the database file on
**              close, so every byte the events cost is in it. This is the
**              figure of record: bytes per durable event.
**   delivery   (--deliver) from the last 202 until the outbox is empty again
**              after the mock came back (SIGUSR1): the deletes' commits.
**              The ingest figure then ends at the last 202 (the exit's
**              checkpoint is shared by both).
** commits: pdrelay_ingest_commit_seconds_count of /metrics, before and after.
**
** Progress to stderr, the table to stdout; exit 1 when a cell failed.
*/
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "benchutil.h"
#include "testutil.h"

#define EVENTS_DEFAULT 20000
#define NKEYS 4
#define BODY_MAX 1024
#define TMPFS_MAGIC_ 0x01021994

static const char *const KEYS[NKEYS] = {
    "R0flashaaaaaaaaaaaaaaaaaaaaaa001", "R0flashaaaaaaaaaaaaaaaaaaaaaa002",
    "R0flashaaaaaaaaaaaaaaaaaaaaaa003", "R0flashaaaaaaaaaaaaaaaaaaaaaa004",
};

/* ---- the load: C connections, closed loop (as bench_ingest) ------------ */

typedef struct slot {
    CURL *h;
    char body[BODY_MAX];
    int busy;
} slot;

typedef struct run {
    CURLM *multi;
    slot *slots;
    int nslots;
    long next, done, failed;
    char url[128];
    struct curl_slist *hdrs;
} run;

static size_t sink(char *d, size_t sz, size_t nm, void *ud)
{
    (void)d;
    (void)ud;
    return sz * nm;
}

/* A dedup_key as a monitoring system makes one: a hash, so that keys of
** events sent one after the other are far apart in every index. */
static unsigned long long mix(unsigned long long x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Event i: a trigger of about 500 bytes, as Nagios or a script sends them. */
static int event_body(char *out, size_t sz, long i)
{
    return snprintf(out, sz,
                    "{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%016llx\","
                    "\"payload\":{\"summary\":\"DISK CRITICAL - free space: /var 812 MB (4%% inode=91%%) on "
                    "web%03ld.example.net\",\"source\":\"web%03ld.example.net\",\"severity\":\"critical\","
                    "\"timestamp\":\"2026-01-15T10:%02ld:%02ld.000Z\",\"component\":\"filesystem /var\","
                    "\"group\":\"web-frontend\",\"class\":\"disk\",\"custom_details\":{\"check\":\"check_disk\","
                    "\"warning\":\"10%%\",\"critical\":\"5%%\",\"mount\":\"/var\",\"device\":\"/dev/mmcblk0p3\","
                    "\"n\":%ld}},\"client\":\"Nagios\",\"client_url\":\"https://nagios.example.net/cgi-bin/"
                    "extinfo.cgi?host=web%03ld\"}",
                    KEYS[i % NKEYS], mix((unsigned long long)i + 1), i % 1000, i % 1000, (i / 60) % 60, i % 60,
                    i, i % 1000);
}

static void run_init(run *r, int port, int nslots)
{
    memset(r, 0, sizeof *r);
    r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    r->multi = curl_multi_init();
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)nslots);
    r->nslots = nslots;
    r->slots = calloc((size_t)nslots, sizeof *r->slots);
    snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d/v2/enqueue", port);
    for (int i = 0; i < nslots; i++) {
        CURL *h = curl_easy_init();
        curl_easy_setopt(h, CURLOPT_URL, r->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        r->slots[i].h = h;
    }
}

static void run_cleanup(run *r)
{
    for (int i = 0; i < r->nslots; i++) {
        curl_multi_remove_handle(r->multi, r->slots[i].h);
        curl_easy_cleanup(r->slots[i].h);
    }
    curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->hdrs);
    free(r->slots);
}

static slot *free_slot(run *r)
{
    for (int i = 0; i < r->nslots; i++)
        if (!r->slots[i].busy) return &r->slots[i];
    return NULL;
}

static void run_reap(run *r)
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
        }
        r->done++;
    }
}

/* Posts n events over conns connections; the elapsed seconds, or -1 when a
** request failed. */
static double post_all(int port, int conns, long n)
{
    run r;
    int running = 0;
    double t0;
    run_init(&r, port, conns);
    t0 = bench_mono_s();
    while (r.done < n) {
        slot *s;
        while (r.next < n && (s = free_slot(&r))) {
            int len = event_body(s->body, sizeof s->body, r.next++);
            curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)len);
            curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
            curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
            s->busy = 1;
            curl_multi_add_handle(r.multi, s->h);
        }
        curl_multi_perform(r.multi, &running);
        run_reap(&r);
        if (r.done < n && (r.next >= n || !free_slot(&r))) curl_multi_poll(r.multi, NULL, 0, 100, NULL);
    }
    double el = bench_mono_s() - t0;
    long failed = r.failed;
    run_cleanup(&r);
    return failed ? -1 : el;
}

/* ---- what is read from the daemon --------------------------------------- */

/* write_bytes of /proc/PID/io (a zombie's too: read before it is reaped),
** or -1. */
static long long io_write_bytes(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/io", (long)pid);
    char *s = tu_read_file(path, NULL);
    const char *p = s ? strstr(s, "\nwrite_bytes: ") : NULL;
    long long v = p ? strtoll(p + sizeof "\nwrite_bytes: " - 1, NULL, 10) : -1;
    free(s);
    return v;
}

/* A sample's value in /metrics ("name value" at a line's start), or -1. */
static double metric(const char *base, const char *name)
{
    char *text = NULL, *p;
    double v = -1;
    size_t len = strlen(name);
    if (it_http(base, "GET", "/metrics", NULL, NULL, &text, NULL) != 200 || !text) {
        free(text);
        return -1;
    }
    for (p = text; (p = strstr(p, name)) != NULL; p += len)
        if ((p == text || p[-1] == '\n') && p[len] == ' ') {
            v = strtod(p + len + 1, NULL);
            break;
        }
    free(text);
    return v;
}

static long long file_size(const char *dir, const char *name)
{
    struct stat sb;
    char *p = tu_printf("%s/%s", dir, name);
    long long v = stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
    free(p);
    return v;
}

/* The directory the scratch directories go in: a real disk. */
static const char *disk_dir(char *fstype, size_t sz)
{
    static const char *cands[3];
    struct statfs sf;
    const char *t = getenv("TMPDIR");
    cands[0] = t && *t ? t : "/var/tmp";
    cands[1] = "/var/tmp";
    cands[2] = ".";
    for (int i = 0; i < 3; i++) {
        if (statfs(cands[i], &sf) != 0 || (unsigned long)sf.f_type == TMPFS_MAGIC_) continue;
        switch ((unsigned long)sf.f_type) {
        case 0xEF53: snprintf(fstype, sz, "ext2/3/4"); break;
        case 0x58465342: snprintf(fstype, sz, "xfs"); break;
        case 0x9123683E: snprintf(fstype, sz, "btrfs"); break;
        case 0xF2F52010: snprintf(fstype, sz, "f2fs"); break;
        case 0x794c7630: snprintf(fstype, sz, "overlayfs"); break;
        default: snprintf(fstype, sz, "f_type 0x%lx", (unsigned long)sf.f_type); break;
        }
        return cands[i];
    }
    return NULL;
}

/* ---- one cell ------------------------------------------------------------ */

typedef struct cell {
    const char *sync;
    int senders;
    int ok;
    double eps;             /* events/s of the ingest */
    double commits;
    double b_commit;        /* bytes/event at commit time */
    double b_ingest;        /* ... ingest, up to the exit (or the last 202 with --deliver) */
    double b_deliver;       /* with --deliver: the delivery's bytes/event */
    double b_total;         /* everything, to the exit */
    long long db_bytes, wal_bytes;  /* files after the ingest */
} cell;

static int run_cell(cell *c, long n, long commit_interval, int deliver, int keep)
{
    mockpd_opts mo = {0};
    it_daemon d = {0};
    char *dir = tu_mkdtemp();
    char *cfg = tu_printf("%s/pdrelay.ini", dir), *data = tu_printf("%s/var", dir);
    char *log = tu_printf("%s/pdrelay.log", dir), *base = NULL, *text;
    int port = it_free_port(), rc = -1;
    long long io0, io1, io2 = -1, io3;
    mockpd *m;

    char ci[64] = "";   /* (a daemon without the key: left out at 0) */
    if (commit_interval) snprintf(ci, sizeof ci, "commit_interval = %ldms\n", commit_interval);
    mo.limit = -1;
    m = mockpd_start(&mo);
    if (!m) goto out;
    text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n"
                     "[pagerduty]\nurl = %s\nrate_per_minute = 1000000\nburst = 1000\n"
                     "backoff_initial_ms = 1000\nbackoff_max_ms = 60000\n"
                     "[outbox]\nsynchronous = %s\n%s",
                     data, port, mockpd_url(m), c->sync, ci);
    tu_write_file(cfg, text);
    free(text);
    mockpd_halt(m);   /* the uplink is down: connections refused */
    base = tu_printf("http://127.0.0.1:%d", port);
    if (it_daemon_start(&d, cfg, log) != 0 || it_wait_log(&d, "msg=\"pdrelay started\"", 10000) != 0) {
        fprintf(stderr, "bench_flash: the daemon did not start; see %s\n", log);
        bench_log_tail(&d);
        goto out;
    }
    /* (no series before the first commit) */
    double c0 = metric(base, "pdrelay_ingest_commit_seconds_count");
    if (c0 < 0) c0 = 0;
    io0 = io_write_bytes(d.pid);
    double el = post_all(port, c->senders, n);
    io1 = io_write_bytes(d.pid);
    double c1 = metric(base, "pdrelay_ingest_commit_seconds_count");
    c->db_bytes = file_size(data, "pdrelay.db");
    c->wal_bytes = file_size(data, "pdrelay.db-wal");
    if (el < 0 || io0 < 0 || io1 < 0) {
        fprintf(stderr, "bench_flash: %s, %d senders: %s\n", c->sync, c->senders,
                el < 0 ? "requests failed" : "/proc/PID/io unreadable");
        goto stop;
    }
    if (deliver) {
        if (mockpd_restart(m) != 0) goto stop;
        kill(d.pid, SIGUSR1);   /* the link is back: probe now */
        if (bench_wait_accepted("delivery", m, &d, (int)n, 600000, 200) != 0) goto stop;
        /* The last 2xx's delete commits just after the mock counted it. */
        double until = bench_mono_ms() + 30000;
        while (metric(base, "pdrelay_outbox_events{state=\"pending\"}") != 0 && bench_mono_ms() < until)
            poll(NULL, 0, 50);
        io2 = io_write_bytes(d.pid);
    }
stop:
    {
        siginfo_t si;
        kill(d.pid, SIGTERM);
        memset(&si, 0, sizeof si);
        while (waitid(P_PID, (id_t)d.pid, &si, WEXITED | WNOWAIT) != 0 && errno == EINTR) {}
        io3 = io_write_bytes(d.pid);   /* the zombie keeps its counters */
        int st = it_daemon_stop(&d, 0);
        if (st != 0) fprintf(stderr, "bench_flash: the daemon exited %d\n", st);
    }
    if (el < 0 || io0 < 0 || io1 < 0 || io3 < 0 || (deliver && io2 < 0)) goto out;
    c->eps = (double)n / el;
    c->commits = c0 >= 0 && c1 >= 0 ? c1 - c0 : -1;
    c->b_commit = (double)(io1 - io0) / (double)n;
    c->b_total = (double)(io3 - io0) / (double)n;
    if (deliver) {
        c->b_ingest = c->b_commit;
        c->b_deliver = (double)(io2 - io1) / (double)n;
    } else {
        c->b_ingest = c->b_total;
    }
    c->ok = 1;
    rc = 0;
out:
    mockpd_stop(m);
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
    free(base);
    return rc;
}

int main(int argc, char **argv)
{
    static const char *const syncs[] = {"full", "normal"};
    static const int senders[] = {1, 16, 64};
    const char *only_sync = NULL;
    long n = EVENTS_DEFAULT, commit_interval = 0;
    int only_senders = 0, deliver = 0, keep = 0, ex = 0, ncells = 0;
    cell cells[6];
    char fstype[64], tail[256];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc) {
            n = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--sync") && i + 1 < argc) {
            only_sync = argv[++i];
        } else if (!strcmp(argv[i], "--senders") && i + 1 < argc) {
            only_senders = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--commit-interval") && i + 1 < argc) {
            commit_interval = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--deliver")) {
            deliver = 1;
        } else if (!strcmp(argv[i], "--keep")) {
            keep = 1;
        } else {
            fprintf(stderr, "usage: bench_flash [--events N] [--sync full|normal] [--senders N] "
                            "[--commit-interval MS] [--deliver] [--keep]\n");
            return 2;
        }
    }
    if (n < 1 || only_senders < 0 || commit_interval < 0 ||
        (only_sync && strcmp(only_sync, "full") && strcmp(only_sync, "normal"))) {
        fprintf(stderr, "bench_flash: --events and --senders must be positive, --sync full or normal\n");
        return 2;
    }
    const char *where = disk_dir(fstype, sizeof fstype);
    if (!where) {
        fprintf(stderr, "bench_flash: no directory on a real disk ($TMPDIR, /var/tmp and . are tmpfs)\n");
        return 1;
    }
    setenv("TMPDIR", where, 1);   /* tu_mkdtemp's directory */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mockpd_global_init();
    snprintf(tail, sizeof tail, "\noutbox in %s (%s); %ld events of %d bytes per cell, %d routing keys, "
             "uplink down; commit_interval %ldms",
             where, fstype, n, event_body((char[BODY_MAX]){0}, BODY_MAX, 12345), NKEYS, commit_interval);
    bench_print_header(argc, argv, tail);
    fflush(stdout);

    for (size_t s = 0; s < 2; s++) {
        if (only_sync && strcmp(only_sync, syncs[s])) continue;
        for (size_t k = 0; k < (only_senders ? 1 : 3); k++) {
            cell *c = &cells[ncells++];
            memset(c, 0, sizeof *c);
            c->sync = syncs[s];
            c->senders = only_senders ? only_senders : senders[k];
            fprintf(stderr, "synchronous=%s, %d senders, %ld events...\n", c->sync, c->senders, n);
            if (run_cell(c, n, commit_interval, deliver, keep) != 0) ex = 1;
        }
    }

    printf("\nbytes written per durable event (daemon's write_bytes / events)\n");
    printf("%-12s %7s %12s %12s %9s %11s", "synchronous", "senders", "ingest B/ev", "at commit", "events/s",
           "ev/commit");
    if (deliver) printf(" %12s %12s", "delivery", "total");
    printf(" %12s\n", "files after");
    for (int i = 0; i < ncells; i++) {
        cell *c = &cells[i];
        if (!c->ok) {
            printf("%-12s %7d  FAILED\n", c->sync, c->senders);
            continue;
        }
        printf("%-12s %7d %12.0f %12.0f %9.0f %11.2f", c->sync, c->senders, c->b_ingest, c->b_commit, c->eps,
               c->commits > 0 ? (double)n / c->commits : 0);
        if (deliver) printf(" %12.0f %12.0f", c->b_deliver, c->b_total);
        printf(" %7.1f MiB\n", (double)(c->db_bytes + c->wal_bytes) / (1024.0 * 1024.0));
    }
    for (int i = 0; i < ncells; i++)
        if (cells[i].ok && cells[i].senders == 16)
            printf("synchronous=%s at 16 senders: %.0f bytes per event (expected <= 2048: %s)\n", cells[i].sync,
                   cells[i].b_ingest, cells[i].b_ingest <= 2048 ? "met" : "MISSED");
    curl_global_cleanup();
    return ex;
}
