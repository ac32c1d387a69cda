/*
** bench_powercut.c — power cuts, counted: N cycles of
** tests/powercut/powercut_cycle.c (the real `pdrelay run` with
** libpowercut.so preloaded, cut at a random operation, restarted without
** it, checked), and what they cost.
**
**   bench_powercut [--cuts N] [--sync full|normal] [--events E] [--clients C] [--keep]
**
**   --cuts N     cycles (default 1000)
**   --sync S     [outbox] synchronous (default full)
**   --events E   events of the calibration cycle (default 30): a cut falls
**                at an operation drawn from 1 to the count of that cycle, so
**                E bounds how far into a run a cut may come (on average
**                about E/2 events are acknowledged before it)
**   --clients C  threads posting at once (default 4)
**   --keep       keep the scratch directory (config, log, outbox)
**
** Printed: cuts (and how many came before the daemon was ready), events
** acknowledged (202) before the cuts, events lost (total, and the most in
** one cut: with --sync normal, the figure README quotes for that setting),
** cycles with a corrupt database (PRAGMA integrity_check), restarts that
** failed, cycles the harness could not run. $PDR_POWERCUT_MASTER_SEED
** repeats a run's draws; $PDR_POWERCUT_REPLAY="AT,SEED" one cycle.
**
** Exit status 1 when the calibration failed or a cycle could not be run;
** with --sync full, a loss, a corrupt file or a failed start is marked MISS
** (expected: none) and is an error too.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "mockpd_client.h"
#include "powercut_cycle.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_powercut [--cuts N] [--sync full|normal] [--events E] [--clients C] [--keep]\n"
               "  --cuts N     cycles (default 1000)\n"
               "  --sync S     [outbox] synchronous: full (default) or normal\n"
               "  --events E   events of the calibration cycle (default 30)\n"
               "  --clients C  threads posting at once (default 4)\n"
               "  --keep       keep the scratch directory\n");
}

static int arg_int(const char *s, int lo, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    int cuts = 1000, sync_full = 1, events = 30, clients = 4, ok = 1;
    pc_totals t;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cuts") && i + 1 < argc && arg_int(argv[i + 1], 1, &cuts) == 0) {
            i++;
        } else if (!strcmp(argv[i], "--events") && i + 1 < argc && arg_int(argv[i + 1], 1, &events) == 0) {
            i++;
        } else if (!strcmp(argv[i], "--clients") && i + 1 < argc && arg_int(argv[i + 1], 1, &clients) == 0) {
            i++;
        } else if (!strcmp(argv[i], "--sync") && i + 1 < argc &&
                   (!strcmp(argv[i + 1], "full") || !strcmp(argv[i + 1], "normal"))) {
            sync_full = !strcmp(argv[++i], "full");
        } else if (!strcmp(argv[i], "--keep")) {
            setenv("PDR_KEEP", "1", 1);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (pc_skip_reason()) {
        fprintf(stderr, "bench_powercut: %s\n", pc_skip_reason());
        return 1;
    }
    bench_print_header(argc, argv, NULL);
    printf("synchronous = %s, %d cuts, calibration %d events, %d clients\n", sync_full ? "full" : "normal", cuts,
           events, clients);
    fflush(stdout);
    mockpd_global_init();
    pc_scene *s = pc_scene_new(sync_full, clients);
    if (!s || pc_run(s, cuts, events, 0, stderr, &t) != 0) {
        fprintf(stderr, "bench_powercut: the calibration cycle failed\n");
        pc_scene_free(s);
        return 1;
    }
    const char *miss = sync_full && (t.lost || t.corrupt || t.failed_starts) ? "  MISS (expected 0)" : "";
    printf("master seed             %llu\n", (unsigned long long)t.master);
    printf("operations per cycle    %ld (calibration; each cut at one drawn from 1 to this)\n", t.ops);
    printf("cuts                    %d (%d before the daemon was ready)\n", t.cuts, t.before_ready);
    printf("events acknowledged     %ld (%.1f per cut)\n", t.acked, t.cuts ? (double)t.acked / t.cuts : 0.0);
    printf("events lost             %ld total, at most %d in one cut%s\n", t.lost, t.max_lost, miss);
    printf("corrupt databases       %d%s\n", t.corrupt, miss);
    printf("failed starts           %d%s\n", t.failed_starts, miss);
    printf("harness failures        %d\n", t.harness_failures);
    printf("time                    %.1f s (%.2f s per cut)\n", t.seconds, t.cuts ? t.seconds / t.cuts : 0.0);
    if (t.failure[0]) printf("first failed cycle      %s\n", t.failure);
    if (t.harness_failures || miss[0]) ok = 0;
    pc_scene_free(s);
    return ok ? 0 : 1;
}
