/*
** testutil.c — see testutil.h.
*/
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "clock.h"
#include "db.h"

extern char **environ;

static void die(const char *what)
{
    perror(what);
    abort();
}

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *p = tu_printf("%s/pdrtest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) die("mkdtemp");
    return p;
}

void tu_rmrf(const char *path)
{
    const char *argv[] = {"/bin/rm", "-rf", path, NULL};
    tu_run(argv, NULL, NULL, NULL);
}

void tu_write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    if (!f) die(path);
    if (fputs(content, f) < 0) die(path);
    if (fclose(f) != 0) die(path);
}

char *tu_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) die("malloc");
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) die("realloc");
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

static int64_t fake_now;

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

void tu_clock_install(int64_t now_ms)
{
    fake_now = now_ms;
    pdr_clock_set(fake_clock, NULL);
}

void tu_clock_advance(int64_t delta_ms) { fake_now += delta_ms; }
int64_t tu_clock_get(void) { return fake_now; }

typedef struct sink {
    char *buf;
    size_t len, cap;
} sink;

static void sink_add(sink *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
        if (!s->buf) die("realloc");
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

int tu_run(const char *const argv[], const char *stdin_data, char **out, char **err)
{
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr)) die("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    posix_spawn_file_actions_addclose(&fa, pin[1]);
    posix_spawn_file_actions_addclose(&fa, pout[0]);
    posix_spawn_file_actions_addclose(&fa, perr[0]);
    pid_t pid;
    const char **sargv = tu_spawn_argv(argv);
    int rc = posix_spawnp(&pid, sargv[0], &fa, NULL, (char *const *)sargv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        die(sargv[0]);
    }
    tu_argv_free(sargv, argv);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);

    signal(SIGPIPE, SIG_IGN);
    const char *in = stdin_data ? stdin_data : "";
    size_t in_left = strlen(in);
    if (in_left == 0) {
        close(pin[1]);
        pin[1] = -1;
    }
    sink so = {0}, se = {0};
    sink_add(&so, "", 0);
    sink_add(&se, "", 0);
    int open_fds = 2;
    while (open_fds > 0 || pin[1] >= 0) {
        struct pollfd pf[3];
        int np = 0;
        int iout = -1, ierr = -1, iin = -1;
        if (pout[0] >= 0) { iout = np; pf[np].fd = pout[0]; pf[np++].events = POLLIN; }
        if (perr[0] >= 0) { ierr = np; pf[np].fd = perr[0]; pf[np++].events = POLLIN; }
        if (pin[1] >= 0) { iin = np; pf[np].fd = pin[1]; pf[np++].events = POLLOUT; }
        if (poll(pf, (nfds_t)np, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        char buf[8192];
        if (iout >= 0 && pf[iout].revents) {
            ssize_t n = read(pout[0], buf, sizeof buf);
            if (n > 0) sink_add(&so, buf, (size_t)n);
            else { close(pout[0]); pout[0] = -1; open_fds--; }
        }
        if (ierr >= 0 && pf[ierr].revents) {
            ssize_t n = read(perr[0], buf, sizeof buf);
            if (n > 0) sink_add(&se, buf, (size_t)n);
            else { close(perr[0]); perr[0] = -1; open_fds--; }
        }
        if (iin >= 0 && pf[iin].revents) {
            ssize_t n = write(pin[1], in, in_left);
            if (n > 0) { in += n; in_left -= (size_t)n; }
            if (n <= 0 || in_left == 0) { close(pin[1]); pin[1] = -1; }
        }
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die("waitpid");
    if (out) *out = so.buf; else free(so.buf);
    if (err) *err = se.buf; else free(se.buf);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

db_handle *tu_db_open(const char *data_dir, int64_t max_events)
{
    db_options o;
    db_handle *db = NULL;
    char err[512] = "";
    memset(&o, 0, sizeof o);
    o.data_dir = data_dir;
    o.sync_full = 0;   /* a test directory's durability does not matter */
    o.max_events = max_events;
    if (db_open(&o, &db, err, sizeof err) != PDR_OK) fail_msg("cannot open the outbox of %s: %s", data_dir, err);
    return db;
}

const char *tu_pdrelay(void)
{
    const char *env = getenv("PDRELAY_BIN");
    return env && *env ? env : PDR_TEST_BINARY;
}

const char **tu_spawn_argv(const char *const argv[])
{
    const char *emu = getenv("PDR_TEST_EMULATOR");
    if (!emu || !*emu || strcmp(argv[0], tu_pdrelay()) != 0) return (const char **)argv;
    size_t n = 0, words = 0;
    while (argv[n]) n++;
    char *copy = strdup(emu);
    if (!copy) die("strdup");
    for (char *p = copy; *p; p++) words += (*p != ' ' && *p != '\t') && (p == copy || p[-1] == ' ' || p[-1] == '\t');
    const char **out = calloc(words + n + 2, sizeof *out);
    if (!out) die("calloc");
    size_t k = 0;
    out[k++] = copy; /* out[0] owns the copy: see tu_argv_free */
    for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) out[k++] = w;
    for (size_t i = 0; i < n; i++) out[k++] = argv[i];
    out[k] = NULL;
    return out + 1;
}

void tu_argv_free(const char **spawn_argv, const char *const argv[])
{
    if (spawn_argv == (const char **)argv) return;
    free((char *)spawn_argv[-1]);
    free(spawn_argv - 1);
}

char *tu_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) die("vsnprintf");
    char *p = malloc((size_t)n + 1);
    if (!p) die("malloc");
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int tu_contains(const char *haystack, const char *needle)
{
    return haystack && strstr(haystack, needle) != NULL;
}

void tu_push_event(const char *data_dir, const char *key, pdr_action action, const char *dedup_key,
                   const char *fingerprint, const char *severity, const char *summary)
{
    db_handle *db = tu_db_open(data_dir, 0);
    char *body;
    db_event ev;
    if (action == PDR_ACTION_TRIGGER)
        body = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                         "\"payload\":{\"summary\":\"%s\",\"source\":\"gw\",\"severity\":\"%s\"}}",
                         key, dedup_key, summary, severity);
    else
        body = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"%s\",\"dedup_key\":\"%s\"}", key,
                         pdr_action_name(action), dedup_key);
    memset(&ev, 0, sizeof ev);
    ev.routing_key = key;
    ev.action = action;
    ev.dedup_key = dedup_key;
    ev.fingerprint = fingerprint;
    ev.body = body;
    ev.body_len = strlen(body);
    ev.urgency = pdr_urgency_of(action, severity);
    assert_int_equal(db_outbox_push(db, &ev, NULL), PDR_OK);
    free(body);
    db_close(db);
}
