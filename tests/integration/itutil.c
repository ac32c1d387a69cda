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

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "clock.h"
#include "mockpd_client.h"
#include "testutil.h"

extern char **environ;

/* Daemons still running when the test program exits (a failed assertion
** skips the test's own cleanup) are killed, so none is left behind. */
#define IT_MAX_DAEMONS 64
static pid_t it_pids[IT_MAX_DAEMONS];

static void it_kill_leftovers(void)
{
    for (int i = 0; i < IT_MAX_DAEMONS; i++)
        if (it_pids[i] > 0) {
            kill(it_pids[i], SIGKILL);
            waitpid(it_pids[i], NULL, 0);
        }
}

static void it_pid_track(pid_t pid, pid_t gone)
{
    static int registered;
    if (!registered) {
        atexit(it_kill_leftovers);
        registered = 1;
    }
    for (int i = 0; i < IT_MAX_DAEMONS; i++)
        if (it_pids[i] == gone) {
            it_pids[i] = pid;
            return;
        }
}

/* environ without the variables env names, then env: malloc'd, the strings shared. */
static char **it_env_merge(const char *const *env)
{
    size_t n = 0, k = 0, m = 0;
    char **out;
    while (environ[n]) n++;
    while (env && env[m]) m++;
    out = calloc(n + m + 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        int replaced = 0;
        for (size_t j = 0; j < m && !replaced; j++) {
            size_t len = strcspn(env[j], "=");
            replaced = !strncmp(environ[i], env[j], len) && environ[i][len] == '=';
        }
        if (!replaced) out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++) out[k++] = (char *)env[j];
    return out;
}

int it_daemon_start(it_daemon *d, const char *cfg, const char *log_path)
{
    return it_daemon_start_env(d, cfg, log_path, NULL);
}

int it_daemon_start_env(it_daemon *d, const char *cfg, const char *log_path, const char *const *env)
{
    posix_spawn_file_actions_t fa;
    const char *argv[] = {tu_pdrelay(), "run", "-c", cfg, NULL};
    char **envp;
    int rc;
    if (d->log_path != log_path) {   /* a restart reuses the struct */
        free(d->log_path);
        d->log_path = strdup(log_path);
    }
    /* Hermetic: a proxy of the environment must not carry the daemon's
    ** requests anywhere but where the test configured them. */
    static const char *const proxy_vars[] = {"http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                             "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"};
    for (size_t i = 0; i < sizeof proxy_vars / sizeof *proxy_vars; i++) unsetenv(proxy_vars[i]);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    const char **sargv = tu_spawn_argv(argv);
    envp = env ? it_env_merge(env) : environ;
    rc = envp ? posix_spawnp(&d->pid, sargv[0], &fa, NULL, (char *const *)sargv, envp) : ENOMEM;
    if (envp != environ) free(envp);
    posix_spawn_file_actions_destroy(&fa);
    tu_argv_free(sargv, argv);
    if (rc == 0) it_pid_track(d->pid, 0);
    return rc;
}

int it_daemon_stop(it_daemon *d, int sig)
{
    int status = 0;
    kill(d->pid, sig);
    while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR) {}
    it_pid_track(0, d->pid);
    d->pid = 0;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

char *it_log(const it_daemon *d)
{
    char *s = tu_read_file(d->log_path, NULL);
    return s ? s : strdup("");
}

int it_wait_log_count(const it_daemon *d, const char *needle, int n, int timeout_ms)
{
    int64_t end = pdr_clock_mono_ms() + timeout_ms;
    for (;;) {
        char *s = it_log(d);
        int found = 0;
        for (const char *p = s; found < n && (p = strstr(p, needle)) != NULL; p++) found++;
        free(s);
        if (found >= n) return 0;
        if (pdr_clock_mono_ms() >= end) return -1;
        poll(NULL, 0, 20);   /* a log file offers nothing to wait on: look again shortly */
    }
}

int it_wait_log(const it_daemon *d, const char *needle, int timeout_ms)
{
    return it_wait_log_count(d, needle, 1, timeout_ms);
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
    db_handle *db = tu_db_open(data_dir, 0);
    size_t n = 0;
    *rows = NULL;
    if (db_outbox_list(db, st, NULL, 0, rows, &n) != PDR_OK) n = (size_t)-1;
    db_close(db);
    return n;
}

void it_fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail_msg("%s", msg);   /* cmocka: fails the running test */
    abort();               /* not reached */
}

const char *it_jstr(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* Triggers "<prefix>-<i>" straight into the outbox in one transaction
** (pdrelay send is tested elsewhere; hundreds of process starts would only
** slow the tests). */
void it_queue(const char *data_dir, const char *key, const char *prefix, int n)
{
    db_handle *db = tu_db_open(data_dir, 0);
    db_event *evs = calloc((size_t)n, sizeof *evs);
    char **bodies = calloc((size_t)n, sizeof *bodies);
    char **dks = calloc((size_t)n, sizeof *dks);
    pdr_rc *res = calloc((size_t)n, sizeof *res);
    for (int i = 0; i < n; i++) {
        dks[i] = tu_printf("%s-%d", prefix, i);
        bodies[i] = tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                              "\"payload\":{\"summary\":\"event %d\",\"source\":\"gw\",\"severity\":\"error\"}}",
                              key, dks[i], i);
        evs[i].routing_key = key;
        evs[i].action = PDR_ACTION_TRIGGER;
        evs[i].dedup_key = dks[i];
        evs[i].body = bodies[i];
        evs[i].body_len = strlen(bodies[i]);
        evs[i].urgency = PDR_URGENCY_ERROR;   /* the body's severity */
    }
    if (db_outbox_push_batch(db, evs, (size_t)n, res, NULL) != PDR_OK) it_fail("it_queue: push failed");
    for (int i = 0; i < n; i++) {
        if (res[i] != PDR_OK) it_fail("it_queue: event %d not stored", i);
        free(bodies[i]);
        free(dks[i]);
    }
    free(evs); free(bodies); free(dks); free(res);
    db_close(db);
}

/* The dedup keys the mock accepted for key, in arrival order, first arrival
** only (a repeat after kill -9 is allowed: at-least-once). */
int it_accepted_for(cJSON *events, const char *key, char out[][32], int max)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, events) {
        if (strcmp(it_jstr(e, "routing_key"), key)) continue;
        const char *dk = it_jstr(e, "dedup_key");
        int seen = 0;
        for (int i = 0; i < n; i++) seen |= !strcmp(out[i], dk);
        if (!seen && n < max) snprintf(out[n++], 32, "%s", dk);
    }
    return n;
}

void it_assert_in_order(cJSON *events, const char *key, const char *prefix, int n)
{
    char (*got)[32] = calloc((size_t)n + 1, 32);
    if (it_accepted_for(events, key, got, n + 1) != n) it_fail("%s: %d distinct events accepted, expected %d", key, it_accepted_for(events, key, got, n + 1), n);
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "%s-%d", prefix, i);
        if (strcmp(got[i], want)) it_fail("%s: event %d is %s, expected %s", key, i, got[i], want);
    }
    free(got);
}

int it_max_in_window(const cJSON *events, int window_ms)
{
    int n = cJSON_GetArraySize(events), worst = 0;
    double *t = calloc((size_t)n + 1, sizeof *t);
    for (int i = 0; i < n; i++)
        t[i] = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(events, i), "arrival_ms")->valuedouble;
    for (int i = 0, j = 0; i < n; i++) {
        while (t[j] <= t[i] - window_ms) j++;
        if (i - j + 1 > worst) worst = i - j + 1;
    }
    free(t);
    return worst;
}

int it_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0) close(fd);
    if (port <= 0) it_fail("no free port: %s", strerror(errno));
    return port;
}

typedef struct it_buf {
    char *p;
    size_t n;
} it_buf;

static size_t it_on_data(char *d, size_t sz, size_t nm, void *ud)
{
    it_buf *b = ud;
    size_t n = sz * nm;
    char *p = realloc(b->p, b->n + n + 1);
    if (!p) return 0;
    memcpy(p + b->n, d, n);
    b->n += n;
    p[b->n] = '\0';
    b->p = p;
    return n;
}

int it_http(const char *base, const char *method, const char *path, const char *body,
            const char *header, char **reply_out, char **headers_out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    it_buf buf = {0}, hbuf = {0};
    char *url;
    long status = 0;
    CURLcode rc;

    if (!c) it_fail("curl_easy_init failed");
    if (strncmp(base, "unix:", 5) == 0) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, base + 5);
        url = tu_printf("http://localhost%s", path);
    } else {
        url = tu_printf("%s%s", base, path);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, it_on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hbuf);
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    if (header) hdrs = curl_slist_append(hdrs, header);
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    free(url);
    if (reply_out) {
        *reply_out = buf.p ? buf.p : strdup("");
    } else {
        free(buf.p);
    }
    if (headers_out) {
        *headers_out = hbuf.p ? hbuf.p : strdup("");
    } else {
        free(hbuf.p);
    }
    return rc == CURLE_OK ? (int)status : -(int)rc;
}

long it_proc_status_kb(pid_t pid, const char *name)
{
    char path[64], line[256];
    size_t len = strlen(name);
    long v = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, len) && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

long long it_proc_cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    size_t n;
    char *p;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields 14 and 15 count from the last ')'. */
    if (!(p = strrchr(buf, ')'))) return -1;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    return (long long)(ut + st);
}

size_t it_count(const char *data_dir, db_row_state st)
{
    db_row *rows;
    size_t n = it_rows(data_dir, st, &rows);
    db_rows_free(rows, n);
    return n;
}

void it_assert_log_lacks(const it_daemon *d, const char *const *secrets, size_t n)
{
    char *log = it_log(d);
    for (size_t i = 0; i < n; i++)
        if (strstr(log, secrets[i])) it_fail("the log holds a secret whole: %.6s...", secrets[i]);
    free(log);
}

void it_teardown(it_daemon *d, const char *dir, const char *const *secrets, size_t n)
{
    if (d->pid) it_daemon_stop(d, SIGKILL);
    if (n) it_assert_log_lacks(d, secrets, n);
    if (!getenv("PDR_KEEP")) tu_rmrf(dir);
    free(d->log_path);
    d->log_path = NULL;
}

it_fx *it_fx_new(const mockpd_opts *mo)
{
    it_fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_mkdtemp();
    f->cfg = tu_printf("%s/pdrelay.ini", f->dir);
    f->data_dir = tu_printf("%s/var", f->dir);
    f->log = tu_printf("%s/pdrelay.log", f->dir);
    f->mock = mockpd_start(mo);
    assert_non_null(f->mock);
    return f;
}

void it_fx_port(it_fx *f)
{
    f->port = it_free_port();
    free(f->base);
    f->base = tu_printf("http://127.0.0.1:%d", f->port);
}

void it_fx_free(it_fx *f, const char *const *secrets, size_t n)
{
    mockpd_stop(f->mock);
    it_teardown(&f->d, f->dir, secrets, n);
    free(f->dir);
    free(f->cfg);
    free(f->data_dir);
    free(f->log);
    free(f->base);
    free(f);
}
