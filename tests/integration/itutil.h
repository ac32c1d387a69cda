/*
** itutil.h — running the real `pdrelay run` for integration tests: start it
** with its log in a file, stop it with a signal, wait for a log line, queue
** events with `pdrelay send`, and read back the outbox.
*/
#ifndef PDR_ITUTIL_H
#define PDR_ITUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "db.h"

typedef struct it_daemon {
    pid_t pid;
    char *log_path;     /* stdout and stderr of every start, appended */
} it_daemon;

/* Starts `pdrelay run -c cfg`, its output appended to log_path. Returns 0.
** d must be zeroed before its first start; it may be started again after
** it_daemon_stop. */
int it_daemon_start(it_daemon *d, const char *cfg, const char *log_path);

/* it_daemon_start with env (NULL-terminated "NAME=value" strings, may be
** NULL) added to this process's environment for the daemon only, each
** replacing a variable of the same name. */
int it_daemon_start_env(it_daemon *d, const char *cfg, const char *log_path, const char *const *env);

/* Sends sig and waits for the exit; returns the exit code, or 128+signal. */
int it_daemon_stop(it_daemon *d, int sig);

/* Waits until the daemon's log holds needle, up to timeout_ms; 0 when found. */
int it_wait_log(const it_daemon *d, const char *needle, int timeout_ms);

/* Waits until the daemon's log holds needle at least n times; 0 when so. */
int it_wait_log_count(const it_daemon *d, const char *needle, int n, int timeout_ms);

/* The daemon's whole log (malloc'd). */
char *it_log(const it_daemon *d);

/* `pdrelay send -c cfg -k key -d summary -i dedup [-t action]`; returns the exit code. */
int it_send(const char *cfg, const char *key, const char *action, const char *dedup, const char *summary);

/* Rows of one state in the outbox of data_dir (caller frees with db_rows_free). */
size_t it_rows(const char *data_dir, db_row_state st, db_row **rows);

/* How many rows of one state the outbox of data_dir holds. */
size_t it_count(const char *data_dir, db_row_state st);

/* The end of a test's daemon: killed (-9) if still running, its log
** checked for the n secrets (it_assert_log_lacks; n may be 0), dir removed
** unless $PDR_KEEP is set, d->log_path freed. */
void it_teardown(it_daemon *d, const char *dir, const char *const *secrets, size_t n);

/* A test's scene: a scratch directory with the paths a test writes its
** config and the daemon its outbox and log to, a mock PagerDuty, and the
** daemon. The test writes the config itself (its own lines). */
struct mockpd;
struct mockpd_opts;
typedef struct it_fx {
    char *dir;          /* the scratch directory (tu_mkdtemp) */
    char *cfg;          /* dir/pdrelay.ini: not written by it_fx_new */
    char *data_dir;     /* dir/var: the outbox */
    char *log;          /* dir/pdrelay.log: the daemon's output */
    char *base;         /* "http://127.0.0.1:PORT" after it_fx_port, else NULL */
    int port;           /* the daemon's [listen] port after it_fx_port, else 0 */
    struct mockpd *mock;
    it_daemon d;        /* zeroed: start it with it_daemon_start(&f->d, f->cfg, f->log) */
} it_fx;

/* A new scene; the mock is started with mo (NULL: its defaults), failing
** the test if it cannot be. */
it_fx *it_fx_new(const struct mockpd_opts *mo);

/* Picks a free port for the daemon's [listen] (it_free_port): f->port and
** f->base (replaced if set before). */
void it_fx_port(it_fx *f);

/* Stops the mock, then it_teardown (the daemon killed if still running, its
** log checked for the n secrets, dir removed unless $PDR_KEEP), and frees f. */
void it_fx_free(it_fx *f, const char *const *secrets, size_t n);

/* Fails the test if the daemon's log holds any of the n secrets whole. */
void it_assert_log_lacks(const it_daemon *d, const char *const *secrets, size_t n);

/* Queues n valid triggers for key, dedup keys "<prefix>-0".."<prefix>-<n-1>",
** into data_dir's outbox in one transaction. Aborts on failure. */
void it_queue(const char *data_dir, const char *key, const char *prefix, int n);

/* The dedup keys the mock accepted for key (from mockpd_events), in arrival
** order, first arrival only (a repeat after kill -9 is allowed:
** at-least-once). Returns how many, at most max. */
int it_accepted_for(cJSON *events, const char *key, char out[][32], int max);

/* Aborts with a message unless exactly "<prefix>-0".."<prefix>-<n-1>" were
** accepted for key, in that order. */
void it_assert_in_order(cJSON *events, const char *key, const char *prefix, int n);

/* The most arrivals (arrival_ms of mockpd_events) in any window_ms. */
int it_max_in_window(const cJSON *events, int window_ms);

/* A free TCP port on 127.0.0.1 (bound, then released) for a daemon's [listen]. */
int it_free_port(void);

/* One HTTP request to a pdrelay: base is "http://127.0.0.1:PORT" or
** "unix:/path/to.sock"; header (NULL: none) one extra "Name: value" line;
** body NULL: no body (a POST then sends an empty one). Returns the status,
** or -(CURLcode) when no reply came. *reply_out (if given) the body and
** *headers_out (if given) the response headers, malloc'd. */
int it_http(const char *base, const char *method, const char *path, const char *body,
            const char *header, char **reply_out, char **headers_out);

/* A "Name:   N kB" figure of /proc/PID/status (VmHWM, RssAnon, ...), or -1. */
long it_proc_status_kb(pid_t pid, const char *name);

/* utime + stime of the whole process pid, in clock ticks; -1 on error. */
long long it_proc_cpu_ticks(pid_t pid);

const char *it_jstr(const cJSON *o, const char *name);
void it_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
