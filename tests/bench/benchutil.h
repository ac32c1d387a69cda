/*
** benchutil.h — helpers shared by the benchmarks that run the real `pdrelay
** run` (bench_sender, bench_outage, bench_recovery): clocks, the machine's
** load, the daemon's liveness and log, and the mock PagerDuty's records.
*/
#ifndef PDR_BENCHUTIL_H
#define PDR_BENCHUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "itutil.h"
#include "mockpd_client.h"

/* CLOCK_MONOTONIC in milliseconds / in seconds. */
double bench_mono_ms(void);
double bench_mono_s(void);

/* The first three fields of /proc/loadavg ("? ? ?" if unreadable): how busy
** the machine was. */
void bench_loadavg(char *out, size_t sz);

/* Prints the command line ("$ argv...") and a line naming pdrelay's version,
** the system, its CPUs and load average, "all on 127.0.0.1" and then tail
** (may be NULL). */
void bench_print_header(int argc, char **argv, const char *tail);

/* 1 while pid runs (peeks without reaping, so wait4 still gets the rusage). */
int bench_daemon_alive(pid_t pid);

/* The last 3000 bytes of the daemon's log, to stderr, when something went wrong. */
void bench_log_tail(const it_daemon *d);

/* The number o.name, or -1 when absent or not a number. */
double bench_num(const cJSON *o, const char *name);

/* qsort comparator for doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/* The mock's clock (ms since it started, CLOCK_MONOTONIC) minus this
** process's bench_mono_ms(): one marker event (routing key
** BENCH_MARKER_KEY), its arrival_ms against the middle of the round trip
** (error <= half of it: *rtt_ms is the round trip, to print). Then the mock
** is reset, so the marker is in no count. -1e18 on failure. */
#define BENCH_MARKER_KEY "R0BENCHMARKER0000000000000000000"
double bench_mock_clock_offset(mockpd *m, double *rtt_ms);

/* Waits, up to timeout_ms and while the daemon runs, until the mock has
** accepted n events (polling every step_ms). 0 when it has; otherwise -1,
** after "<who>: only X of n accepted" and the log's tail on stderr. */
int bench_wait_accepted(const char *who, mockpd *m, const it_daemon *d, int n, double timeout_ms, int step_ms);

#endif
