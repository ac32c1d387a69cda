/*
** itutil.c — see itutil.h.
*/
#include "itutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "testutil.h"

extern char **environ;

int it_daemon_start(it_daemon *d, const char *cfg, const char *log_path)
{
    posix_spawn_file_actions_t fa;
    const char *argv[] = {tu_pdrelay(), "run", "-c", cfg, NULL};
    int rc;
    d->log_path = strdup(log_path);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    rc = posix_spawn(&d->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int it_daemon_stop(it_daemon *d, int sig)
{
    int status = 0;
    kill(d->pid, sig);
    while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR) {}
    d->pid = 0;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

char *it_log(const it_daemon *d)
{
    char *s = tu_read_file(d->log_path, NULL);
    return s ? s : strdup("");
}

int it_wait_log(const it_daemon *d, const char *needle, int timeout_ms)
{
    int64_t end = pdr_clock_mono_ms() + timeout_ms;
    for (;;) {
        char *s = it_log(d);
        int found = strstr(s, needle) != NULL;
        free(s);
        if (found) return 0;
        if (pdr_clock_mono_ms() >= end) return -1;
        poll(NULL, 0, 20);   /* a log file offers nothing to wait on: look again shortly */
    }
}

int it_send(const char *cfg, const char *key, const char *action, const char *dedup, const char *summary)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = tu_pdrelay();
    argv[n++] = "send";
    argv[n++] = "-c";
    argv[n++] = cfg;
    argv[n++] = "-k";
    argv[n++] = key;
    if (action) {
        argv[n++] = "-t";
        argv[n++] = action;
    }
    if (dedup) {
        argv[n++] = "-i";
        argv[n++] = dedup;
    }
    if (summary) {
        argv[n++] = "-d";
        argv[n++] = summary;
    }
    argv[n] = NULL;
    return tu_run(argv, NULL, NULL, NULL);
}

size_t it_rows(const char *data_dir, db_row_state st, db_row **rows)
{
    db_options o;
    db_t *db = NULL;
    char err[512];
    size_t n = 0;
    memset(&o, 0, sizeof o);
    o.data_dir = data_dir;
    o.sync_full = 1;
    o.max_events = 1000000;
    o.skip_quick_check = 1;
    *rows = NULL;
    if (db_open(&o, &db, err, sizeof err) != PDR_OK) {
        fprintf(stderr, "it_rows: %s\n", err);
        return (size_t)-1;
    }
    if (db_outbox_list(db, st, NULL, 0, rows, &n) != PDR_OK) n = (size_t)-1;
    db_close(db);
    return n;
}
