/*
** benchutil.c — see benchutil.h.
*/
#include "benchutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

double bench_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

double bench_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_loadavg(char *out, size_t sz)
{
    char *s = tu_read_file("/proc/loadavg", NULL);
    char a[16] = "?", b[16] = "?", c[16] = "?";
    if (s) sscanf(s, "%15s %15s %15s", a, b, c);
    snprintf(out, sz, "%s %s %s", a, b, c);
    free(s);
}

void bench_print_header(int argc, char **argv, const char *tail)
{
    struct utsname un;
    char load[64];
    printf("$");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    uname(&un);
    bench_loadavg(load, sizeof load);
    printf("pdrelay %s\n%s %s, %ld CPUs, load average %s; all on 127.0.0.1%s\n", tu_pdrelay(), un.sysname,
           un.release, sysconf(_SC_NPROCESSORS_ONLN), load, tail ? tail : "");
}

int bench_daemon_alive(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return 0;
    return si.si_pid == 0;
}

void bench_log_tail(const it_daemon *d)
{
    char *log = it_log(d);
    size_t len = strlen(log);
    fprintf(stderr, "---- last of %s ----\n%s\n----\n", d->log_path, len > 3000 ? log + len - 3000 : log);
    free(log);
}

double bench_num(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(it) ? it->valuedouble : -1;
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_mock_clock_offset(mockpd *m, double *rtt_ms)
{
    const char *body = "{\"routing_key\":\"" BENCH_MARKER_KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"marker\","
                       "\"payload\":{\"summary\":\"clock marker\",\"source\":\"bench\",\"severity\":\"info\"}}";
    double t0 = bench_mono_ms(), t1, off = -1e18;
    int st = mockpd_http(m, "POST", "/v2/enqueue", body, NULL, 5000, NULL);
    t1 = bench_mono_ms();
    cJSON *reqs = mockpd_requests(m);
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs) {
        const char *k = it_jstr(r, "routing_key");
        if (k && !strcmp(k, BENCH_MARKER_KEY)) off = bench_num(r, "arrival_ms") - (t0 + t1) / 2;
    }
    cJSON_Delete(reqs);
    *rtt_ms = t1 - t0;
    if (st != 202 || mockpd_reset(m) != 0) return -1e18;
    return off;
}

int bench_wait_accepted(const char *who, mockpd *m, const it_daemon *d, int n, double timeout_ms, int step_ms)
{
    double end = bench_mono_ms() + timeout_ms;
    int reached = 1;
    while (reached == 1 && bench_mono_ms() < end && bench_daemon_alive(d->pid))
        reached = mockpd_wait_accepted(m, n, step_ms);
    if (reached == 0) return 0;
    fprintf(stderr, "%s: only %ld of %d accepted\n", who, mockpd_stat(m, "accepted"), n);
    bench_log_tail(d);
    return -1;
}
