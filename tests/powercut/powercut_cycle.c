/*
** powercut_cycle.c — see powercut_cycle.h.
**
** A CYCLE, step by step:
**   1. data_dir is emptied (each cycle starts from nothing, so a printed
**      PDR_POWERCUT_AT and PDR_POWERCUT_SEED replay it), the log truncated.
**   2. `pdrelay run` starts with libpowercut.so preloaded: PDR_POWERCUT_DIR
**      is data_dir, PDR_POWERCUT_AT and PDR_POWERCUT_SEED the cycle's.
**   3. Once it logs "pdrelay started", pc_clients threads POST events to
**      /v2/enqueue, each with its own dedup_key, one at a time, and note
**      those answered 202, until the daemon is gone. A cut before the
**      daemon was ready is a cycle with no event.
**   4. The daemon must have died by SIGKILL with the shim's "powercut: cut
**      at" line; anything else fails the harness (pc_cycle returns -1).
**   5. `pdrelay run` again, without the shim: it must log "pdrelay
**      started" and exit 0 on SIGTERM (else failed_start).
**   6. PRAGMA integrity_check on the database (`pdrelay queue check` does
**      not exist yet): anything but "ok" is corrupt.
**   7. The pending rows (it_rows), then what the mock accepted
**      (mockpd_events): every acknowledged dedup_key must be in one of
**      them, else it is lost. The daemon is stopped by then, so nothing
**      moves between the two reads.
*/
#include "powercut_cycle.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "clock.h"
#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define PC_KEY "R0powercut000000000000000000ab12"
#define PC_READY "msg=\"pdrelay started\""
#define PC_CUT "powercut: cut at"
#define PC_START_MS 20000   /* a start, to "pdrelay started" */
#define PC_CUT_MS 60000     /* the clients' whole run, to the cut */
#define PC_MAX_CLIENTS 16
#ifndef PDR_POWERCUT_LIB
#define PDR_POWERCUT_LIB ""   /* not built (pc_skip_reason says why): nothing runs */
#endif

struct pc_scene {
    it_fx *fx;
    int sync_full, clients;
    unsigned long cycle;   /* numbers the dedup keys */
};

const char *pc_skip_reason(void)
{
#ifdef PDR_POWERCUT_SKIP
    return PDR_POWERCUT_SKIP;
#else
    return NULL;
#endif
}

uint64_t pc_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t pc_master_seed(void)
{
    const char *s = getenv("PDR_POWERCUT_MASTER_SEED");
    struct timespec ts;
    if (s && *s) return strtoull(s, NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

const char *pc_scene_dir(const pc_scene *s)
{
    return s->fx->dir;
}

pc_scene *pc_scene_new(int sync_full, int clients)
{
    mockpd_opts mo;
    pc_scene *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    memset(&mo, 0, sizeof mo);
    mo.limit = -1;
    s->fx = it_fx_new(&mo);
    s->sync_full = sync_full;
    s->clients = clients < 1 ? 1 : clients > PC_MAX_CLIENTS ? PC_MAX_CLIENTS : clients;
    it_fx_port(s->fx);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                           "rate_per_minute = 600000\nburst = 1000\ntimeout_ms = 2000\nconnect_timeout_ms = 500\n"
                           "[outbox]\nsynchronous = %s\n",
                           s->fx->data_dir, s->fx->port, mockpd_url(s->fx->mock), sync_full ? "full" : "normal");
    tu_write_file(s->fx->cfg, text);
    free(text);
    return s;
}

void pc_scene_free(pc_scene *s)
{
    if (!s) return;
    it_fx_free(s->fx, NULL, 0);
    free(s);
}

/* ---- the daemon ------------------------------------------------------------------ */

/* 1 while pid runs (peeks without reaping). */
static int pc_alive(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return 0;
    return si.si_pid == 0;
}

/* Waits until the log holds PC_READY n times (1), the daemon exits (0), or
** the deadline passes (-1). */
static int pc_wait_ready(it_daemon *d, int n)
{
    int64_t end = pdr_clock_mono_ms() + PC_START_MS;
    for (;;) {
        if (it_wait_log_count(d, PC_READY, n, 0) == 0) return 1;
        if (!pc_alive(d->pid)) return it_wait_log_count(d, PC_READY, n, 0) == 0;
        if (pdr_clock_mono_ms() >= end) return -1;
        poll(NULL, 0, 5);   /* the log offers nothing to wait on: look again shortly */
    }
}

/* Empties data_dir and the log; starts the daemon with the shim. */
static int pc_start_cut(pc_scene *s, unsigned long at, uint64_t seed)
{
    char e_pre[4200], e_dir[4200], e_at[64], e_seed[64], e_asan[1024];
    const char *asan = getenv("ASAN_OPTIONS");
    const char *env[6];
    if (pc_skip_reason()) return -1;
    tu_rmrf(s->fx->data_dir);
    if (mkdir(s->fx->data_dir, 0700) != 0) return -1;   /* the shim resolves it at load */
    tu_write_file(s->fx->log, "");
    snprintf(e_pre, sizeof e_pre, "LD_PRELOAD=%s", PDR_POWERCUT_LIB);
    snprintf(e_dir, sizeof e_dir, "PDR_POWERCUT_DIR=%s", s->fx->data_dir);
    snprintf(e_at, sizeof e_at, "PDR_POWERCUT_AT=%lu", at);
    snprintf(e_seed, sizeof e_seed, "PDR_POWERCUT_SEED=%" PRIu64, seed);
    /* An ASan build's pdrelay refuses a preloaded library before its runtime
    ** unless told not to check (harmless otherwise). */
    snprintf(e_asan, sizeof e_asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    env[0] = e_pre;
    env[1] = e_dir;
    env[2] = e_at;
    env[3] = e_seed;
    env[4] = e_asan;
    env[5] = NULL;
    return it_daemon_start_env(&s->fx->d, s->fx->cfg, s->fx->log, env);
}

/* ---- the clients ----------------------------------------------------------------- */

typedef struct pc_client {
    pthread_t th;
    const char *base;
    unsigned long cycle;
    int id;
    int limit;           /* stop after this many 202s; 0: no limit */
    atomic_int *stop;
    char (*acked)[48];   /* the dedup keys answered 202 */
    int n, cap;
} pc_client;

static void *pc_client_main(void *arg)
{
    pc_client *c = arg;
    for (int i = 0; !atomic_load(c->stop) && (!c->limit || c->n < c->limit); i++) {
        char dk[48];
        snprintf(dk, sizeof dk, "pc%lu-%d-%d", c->cycle, c->id, i);
        char *body = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                               "\"payload\":{\"summary\":\"power cut %s\",\"source\":\"gw-pc\","
                               "\"severity\":\"error\"}}",
                               PC_KEY, dk, dk);
        int st = it_http(c->base, "POST", "/v2/enqueue", body, NULL, NULL, NULL);
        free(body);
        if (st == 202) {
            if (c->n == c->cap) {
                int cap = c->cap ? 2 * c->cap : 64;
                char (*p)[48] = realloc(c->acked, (size_t)cap * sizeof *p);
                if (!p) break;
                c->acked = p;
                c->cap = cap;
            }
            snprintf(c->acked[c->n++], sizeof *c->acked, "%s", dk);
        } else if (st < 0) {
            /* no reply: the daemon is gone (or going); the main thread says
            ** when to stop, a refused connection costs little meanwhile */
            poll(NULL, 0, 1);
        }
    }
    return NULL;
}

/* ---- the checks ------------------------------------------------------------------ */

/* PRAGMA integrity_check of data_dir's database: 1 if "ok"; else 0, with
** its first line in why. */
static int pc_integrity_ok(const char *data_dir, char *why, size_t whysz)
{
    char *path = tu_printf("%s/%s", data_dir, DB_FILE_NAME);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(why, whysz, "integrity_check: cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
    } else if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
               sqlite3_step(st) != SQLITE_ROW) {
        snprintf(why, whysz, "integrity_check failed: %s", sqlite3_errmsg(db));
    } else {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        ok = res && !strcmp(res, "ok");
        if (!ok) snprintf(why, whysz, "integrity_check: %s", res ? res : "(null)");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    return ok;
}

static int pc_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dedup keys of the pending rows and of the mock's accepted events,
** sorted (malloc'd; the strings point into rows and events). */
static const char **pc_known(db_row *rows, size_t nrows, cJSON *events, size_t *n_out)
{
    size_t n = 0, cap = nrows + (size_t)cJSON_GetArraySize(events) + 1;
    const char **k = malloc(cap * sizeof *k);
    const cJSON *e;
    if (!k) return NULL;
    for (size_t i = 0; i < nrows; i++)
        if (rows[i].dedup_key) k[n++] = rows[i].dedup_key;
    cJSON_ArrayForEach(e, events) {
        const char *dk = it_jstr(e, "dedup_key");
        if (dk) k[n++] = dk;
    }
    qsort(k, n, sizeof *k, pc_cmp_str);
    *n_out = n;
    return k;
}

/* ---- the cycle ------------------------------------------------------------------- */

/* Runs the clients until the daemon exits; its exit status in *status.
** limit: 202s per client to stop at (calibration), 0: none. */
static int pc_run_clients(pc_scene *s, int limit, pc_client *cl, int *status, int wait_death)
{
    atomic_int stop = 0;
    int64_t end = pdr_clock_mono_ms() + PC_CUT_MS;
    int rc = 0;
    for (int i = 0; i < s->clients; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].base = s->fx->base;
        cl[i].cycle = s->cycle;
        cl[i].id = i;
        cl[i].limit = limit;
        cl[i].stop = &stop;
        if (pthread_create(&cl[i].th, NULL, pc_client_main, &cl[i]) != 0) {
            atomic_store(&stop, 1);
            for (int j = 0; j < i; j++) pthread_join(cl[j].th, NULL);
            return -1;
        }
    }
    if (wait_death) {
        while (pc_alive(s->fx->d.pid) && pdr_clock_mono_ms() < end) poll(NULL, 0, 2);
        if (pc_alive(s->fx->d.pid)) rc = -1;
        *status = it_daemon_stop(&s->fx->d, SIGKILL);   /* reaps it (already dead unless rc) */
        atomic_store(&stop, 1);
    }
    for (int i = 0; i < s->clients; i++) pthread_join(cl[i].th, NULL);
    return rc;
}

static void pc_clients_free(pc_client *cl, int n)
{
    for (int i = 0; i < n; i++) free(cl[i].acked);
}

/* The shim's line starting with what, into out (first 255 bytes). */
static void pc_log_line(it_daemon *d, const char *what, char *out, size_t sz)
{
    char *log = it_log(d);
    const char *p = strstr(log, what);
    out[0] = '\0';
    if (p) snprintf(out, sz, "%.*s", (int)strcspn(p, "\n"), p);
    free(log);
}

long pc_calibrate(pc_scene *s, int events)
{
    pc_client cl[PC_MAX_CLIENTS];
    char line[256];
    int per = (events + s->clients - 1) / s->clients, st = 0;
    long ops = -1;
    s->cycle++;
    if (pc_start_cut(s, 0, 1) != 0 || pc_wait_ready(&s->fx->d, 1) != 1) {
        fprintf(stderr, "powercut: calibration: pdrelay did not start (log: %s)\n", s->fx->log);
        return -1;
    }
    if (pc_run_clients(s, per, cl, &st, 0) == 0 &&
        mockpd_wait_accepted(s->fx->mock, per * s->clients, PC_CUT_MS) == 0 &&
        it_daemon_stop(&s->fx->d, SIGTERM) == 0) {
        pc_log_line(&s->fx->d, "powercut: exit ops=", line, sizeof line);
        if (line[0]) ops = strtol(line + strlen("powercut: exit ops="), NULL, 10);
        fprintf(stderr, "powercut: calibration, %d events: %s\n", per * s->clients, line);
    }
    if (ops <= 0) fprintf(stderr, "powercut: calibration failed (log: %s)\n", s->fx->log);
    pc_clients_free(cl, s->clients);
    if (s->fx->d.pid) it_daemon_stop(&s->fx->d, SIGKILL);
    mockpd_reset(s->fx->mock);
    return ops;
}

int pc_cycle(pc_scene *s, unsigned long at, uint64_t seed, pc_result *r)
{
    pc_client cl[PC_MAX_CLIENTS];
    int status = 0, ready, rc = 0, n_ready;
    it_daemon *d = &s->fx->d;

    memset(r, 0, sizeof *r);
    memset(cl, 0, sizeof cl);
    s->cycle++;
    if (pc_start_cut(s, at, seed) != 0) {
        snprintf(r->why, sizeof r->why, "cannot start pdrelay with the shim");
        return -1;
    }
    ready = pc_wait_ready(d, 1);
    if (ready < 0) {
        snprintf(r->why, sizeof r->why, "pdrelay with the shim neither started nor died in %d ms", PC_START_MS);
        it_daemon_stop(d, SIGKILL);
        return -1;
    }
    r->ready = ready;
    if (ready) {
        if (pc_run_clients(s, 0, cl, &status, 1) != 0) {
            snprintf(r->why, sizeof r->why, "no cut within %d ms (PDR_POWERCUT_AT beyond the cycle's operations?)",
                     PC_CUT_MS);
            rc = -1;
            goto out;
        }
    } else {
        status = it_daemon_stop(d, SIGKILL);   /* reaps it */
    }
    pc_log_line(d, PC_CUT, r->cut_line, sizeof r->cut_line);
    if (status != 128 + SIGKILL || !r->cut_line[0]) {
        snprintf(r->why, sizeof r->why, "pdrelay with the shim ended with status %d, %s", status,
                 r->cut_line[0] ? "after the cut" : "without a cut");
        rc = -1;
        goto out;
    }
    for (int i = 0; i < s->clients; i++) r->acked += cl[i].n;

    /* the restart, without the shim */
    n_ready = ready ? 2 : 1;
    if (it_daemon_start(d, s->fx->cfg, s->fx->log) != 0) {
        snprintf(r->why, sizeof r->why, "cannot spawn pdrelay");
        rc = -1;
        goto out;
    }
    if (pc_wait_ready(d, n_ready) != 1) {
        r->failed_start = 1;
        snprintf(r->why, sizeof r->why, "pdrelay did not start again after the cut (log: %s)", s->fx->log);
        it_daemon_stop(d, SIGKILL);
        goto out;
    }
    status = it_daemon_stop(d, SIGTERM);
    if (status != 0) {
        r->failed_start = 1;
        snprintf(r->why, sizeof r->why, "pdrelay restarted after the cut exited %d on SIGTERM (log: %s)", status,
                 s->fx->log);
        goto out;
    }
    if (!pc_integrity_ok(s->fx->data_dir, r->why, sizeof r->why)) {
        r->corrupt = 1;
        goto out;
    }

    /* the acknowledged keys: pending, or accepted (rows first: see above) */
    {
        db_row *rows = NULL;
        size_t nrows = it_rows(s->fx->data_dir, DB_ROW_PENDING, &rows), nk = 0;
        cJSON *events = mockpd_events(s->fx->mock);
        const char **known;
        if (nrows == (size_t)-1 || !events) {
            snprintf(r->why, sizeof r->why, "cannot read the outbox or the mock's events");
            if (nrows != (size_t)-1) db_rows_free(rows, nrows);
            cJSON_Delete(events);
            rc = -1;
            goto out;
        }
        known = pc_known(rows, nrows, events, &nk);
        for (int i = 0; known && i < s->clients; i++)
            for (int j = 0; j < cl[i].n; j++) {
                const char *key = cl[i].acked[j];
                if (bsearch(&key, known, nk, sizeof *known, pc_cmp_str)) continue;
                if (r->lost++ == 0)
                    snprintf(r->why, sizeof r->why, "%s was answered 202 before the cut, and is neither pending nor "
                             "accepted by the mock", key);
            }
        free(known);
        db_rows_free(rows, nrows);
        cJSON_Delete(events);
    }
out:
    pc_clients_free(cl, s->clients);
    if (d->pid) it_daemon_stop(d, SIGKILL);
    mockpd_reset(s->fx->mock);
    return rc;
}

/* ---- many cycles ------------------------------------------------------------------ */

int pc_run(pc_scene *s, int cuts, int calib_events, int stop_at_failure, FILE *progress, pc_totals *t)
{
    const char *replay = getenv("PDR_POWERCUT_REPLAY");
    int64_t t0 = pdr_clock_mono_ms();
    uint64_t state;
    memset(t, 0, sizeof *t);
    t->master = state = pc_master_seed();
    if (replay && *replay) {
        char *end;
        unsigned long at = strtoul(replay, &end, 10);
        uint64_t seed = *end == ',' ? strtoull(end + 1, NULL, 10) : 0;
        if (*end != ',' || at == 0) {
            fprintf(stderr, "powercut: PDR_POWERCUT_REPLAY is \"AT,SEED\", not \"%s\"\n", replay);
            return -1;
        }
        fprintf(stderr, "powercut: replaying one cycle: PDR_POWERCUT_AT=%lu PDR_POWERCUT_SEED=%" PRIu64 "\n", at, seed);
        state = seed;
        t->ops = (long)at;
        cuts = 1;
    } else {
        fprintf(stderr, "powercut: master seed %" PRIu64 " (PDR_POWERCUT_MASTER_SEED=%" PRIu64 " repeats the draws)\n",
                t->master, t->master);
        t->ops = pc_calibrate(s, calib_events);
        if (t->ops <= 0) return -1;
        fprintf(stderr, "powercut: a cycle of %d events without a cut: %ld tracked operations\n", calib_events, t->ops);
    }
    for (int i = 0; i < cuts; i++) {
        pc_result r;
        unsigned long at = replay && *replay ? (unsigned long)t->ops : 1 + (unsigned long)(pc_next(&state) % (uint64_t)t->ops);
        uint64_t seed = replay && *replay ? state : pc_next(&state);
        int rc = pc_cycle(s, at, seed, &r);
        t->cuts++;
        t->before_ready += rc == 0 && !r.ready;
        t->acked += r.acked;
        t->lost += r.lost;
        if (r.lost > t->max_lost) t->max_lost = r.lost;
        t->corrupt += r.corrupt;
        t->failed_starts += r.failed_start;
        t->harness_failures += rc != 0;
        if ((rc || r.lost || r.corrupt || r.failed_start) && !t->failure[0])
            snprintf(t->failure, sizeof t->failure,
                     "cycle %d: %s%s%d of %d acknowledged events lost [%s]; replay with "
                     "PDR_POWERCUT_REPLAY=%lu,%" PRIu64 " (scratch %s)",
                     i + 1, r.why, r.why[0] ? "; " : "", r.lost, r.acked, r.cut_line, at, seed, pc_scene_dir(s));
        if (rc)
            fprintf(stderr, "powercut: cycle %d could not run: %s (PDR_POWERCUT_REPLAY=%lu,%" PRIu64 ")\n", i + 1,
                    r.why, at, seed);
        if (progress && (i + 1) % 50 == 0)
            fprintf(progress, "powercut: %d cuts, %ld acknowledged, %ld lost, %d corrupt, %d failed starts\n",
                    i + 1, t->acked, t->lost, t->corrupt, t->failed_starts);
        if (stop_at_failure && t->failure[0]) break;
    }
    t->seconds = (double)(pdr_clock_mono_ms() - t0) / 1000.0;
    return 0;
}
