/*
** itutil.h — running the real `pdrelay run` for integration tests: start it
** with its log in a file, stop it with a signal, wait for a log line, queue
** events with `pdrelay send`, and read back the outbox.
*/
#ifndef PDR_ITUTIL_H
#define PDR_ITUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "db.h"

typedef struct it_daemon {
    pid_t pid;
    char *log_path;     /* stdout and stderr of every start, appended */
} it_daemon;

/* Starts `pdrelay run -c cfg`, its output appended to log_path. Returns 0. */
int it_daemon_start(it_daemon *d, const char *cfg, const char *log_path);

/* Sends sig and waits for the exit; returns the exit code, or 128+signal. */
int it_daemon_stop(it_daemon *d, int sig);

/* Waits until the daemon's log holds needle, up to timeout_ms; 0 when found. */
int it_wait_log(const it_daemon *d, const char *needle, int timeout_ms);

/* The daemon's whole log (malloc'd). */
char *it_log(const it_daemon *d);

/* `pdrelay send -c cfg -k key -d summary -i dedup [-t action]`; returns the exit code. */
int it_send(const char *cfg, const char *key, const char *action, const char *dedup, const char *summary);

/* Rows of one state in the outbox of data_dir (caller frees with db_rows_free). */
size_t it_rows(const char *data_dir, db_row_state st, db_row **rows);

#endif
