/*
** powercut_cycle.h — one power-cut cycle of `pdrelay run`, shared by
** tests/integration/test_powercut.c, test_slow_powercut.c and
** tests/bench/bench_powercut.c: the daemon runs with libpowercut.so
** preloaded (tests/powercut/powercut.c) while clients post events to its
** ingest, until the shim cuts the power at a chosen operation; then the
** daemon is started again, without the shim, on the files the cut left, and
** the cycle checks that it starts, that the database is sound, and that
** every event answered 202 before the cut was either accepted by the mock
** PagerDuty or is still pending in the outbox.
*/
#ifndef PDR_POWERCUT_CYCLE_H
#define PDR_POWERCUT_CYCLE_H

#include <stdint.h>
#include <stdio.h>

typedef struct pc_scene pc_scene;

typedef struct pc_result {
    int ready;          /* the first start was ready before the cut */
    int acked;          /* events answered 202 before the cut */
    int lost;           /* of those, neither accepted by the mock nor pending after */
    int corrupt;        /* PRAGMA integrity_check was not "ok" after the restart */
    int failed_start;   /* the restart was not ready, or did not stop cleanly */
    char cut_line[256]; /* the shim's "powercut: cut at ..." line */
    char why[512];      /* the first problem seen, for a failure message */
} pc_result;

/* NULL when the power-cut cycle can run here; else why not (a cross build
** under qemu-user: the shim is not built). */
const char *pc_skip_reason(void);

/* A scratch directory, a mock PagerDuty (no rate limit) and a config with
** [outbox] synchronous = full (sync_full) or normal; clients: how many
** threads post at once. NULL (with a message on stderr) on failure. */
pc_scene *pc_scene_new(int sync_full, int clients);

/* The tracked operations of a cycle without a cut: the shim preloaded, a
** fresh data_dir, `events` events posted and delivered, then SIGTERM.
** PDR_POWERCUT_AT for a cycle is drawn from 1 to this. -1 on failure. */
long pc_calibrate(pc_scene *s, int events);

/* One cycle: a fresh data_dir, the cut at operation `at` with the tearing
** RNG seeded by seed, the clients posting until the daemon dies, the
** restart and the checks (see the header comment). 0 when the cycle ran
** (its verdict is in *r: lost, corrupt, failed_start); -1 when the harness
** itself failed (r->why says how: the daemon was not cut, ...). */
int pc_cycle(pc_scene *s, unsigned long at, uint64_t seed, pc_result *r);

/* The figures of pc_run. */
typedef struct pc_totals {
    uint64_t master;        /* the master seed each cycle's AT and SEED are drawn from */
    long ops;               /* pc_calibrate's count: AT is drawn from 1 to this */
    int cuts;               /* cycles run */
    int before_ready;       /* of those, cut before the first start was ready */
    long acked;             /* events answered 202 before a cut, all cycles */
    long lost;              /* of those, lost */
    int max_lost;           /* the most lost in one cycle */
    int corrupt;            /* cycles whose database failed integrity_check */
    int failed_starts;      /* cycles whose restart failed */
    int harness_failures;   /* cycles pc_cycle could not run (-1) */
    double seconds;         /* the whole run, calibration included */
    char failure[1024];     /* the first failed cycle: what, and how to replay it */
} pc_totals;

/* Calibrates (calib_events events), then runs cuts cycles, each with
** PDR_POWERCUT_AT drawn from 1 to the count and a seed, both from the
** master seed (pc_master_seed, printed to stderr). stop_at_failure: stop
** after the first cycle with a loss, a corrupt file, a failed restart or a
** harness failure. $PDR_POWERCUT_REPLAY="AT,SEED" (from a failure
** message) runs that one cycle instead. progress (NULL: none) gets a line
** every 50 cycles. -1 if the calibration failed, else 0 (the verdict is in
** *t: failure is "" when every cycle passed). */
int pc_run(pc_scene *s, int cuts, int calib_events, int stop_at_failure, FILE *progress, pc_totals *t);

/* Stops the mock, removes the scratch directory (unless $PDR_KEEP), frees s. */
void pc_scene_free(pc_scene *s);

/* The scratch directory (for messages). */
const char *pc_scene_dir(const pc_scene *s);

/* A seed: $PDR_POWERCUT_MASTER_SEED if set, else from the clock. */
uint64_t pc_master_seed(void);

/* splitmix64: the next number of the sequence *state (for drawing each
** cycle's PDR_POWERCUT_AT and PDR_POWERCUT_SEED from the master seed). */
uint64_t pc_next(uint64_t *state);

#endif
