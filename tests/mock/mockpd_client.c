/*
** mockpd_client.c — see mockpd_client.h. Owns the mock_pd child process of a
** test: spawning it with posix_spawn (its stdout is a pipe on which it
** reports its port, its stdin a pipe whose EOF tells it that we are gone),
** stopping it (SIGTERM, then a pidfd poll with a deadline before SIGKILL),
** and every HTTP exchange with it, through libcurl easy handles.
*/
#define _GNU_SOURCE /* pipe2 */

#include "mockpd_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "testutil.h"

#define MOCKPD_START_TIMEOUT_MS 15000 /* until the port is reported */
#define MOCKPD_STOP_TIMEOUT_MS 10000  /* SIGTERM to exit, then SIGKILL */
#define MOCKPD_HTTP_TIMEOUT_MS 30000
#define MOCKPD_REPLY_MAX (64 * 1024 * 1024)

extern char **environ;

struct mockpd {
    mockpd_opts opts;
    pid_t pid;     /* -1 when halted */
    int stdin_fd;  /* write end of the child's stdin; -1 when halted */
    int port;
    char *certs_dir; /* tls only */
    bool own_certs;  /* certs_dir is ours to remove */
    char *ca_file, *cert_file, *key_file;
    char *url;
    char *resolve; /* "localhost:PORT:127.0.0.1" */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mockpd_global_init(void)
{
    static bool done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = true;
    }
}

static const char *binary_path(void)
{
    const char *env = getenv("MOCKPD_BINARY");
    return env && *env ? env : MOCKPD_BINARY;
}

int mockpd_gen_certs(const char *dir)
{
    const char *argv[] = {"/bin/sh", MOCKPD_GEN_CERTS, dir, NULL};
    char *err = NULL;
    int rc = tu_run(argv, NULL, NULL, &err);
    if (rc != 0) fprintf(stderr, "mockpd: gen-certs.sh %s failed (%d): %s", dir, rc, err ? err : "");
    free(err);
    return rc == 0 ? 0 : -1;
}

/* Waits for pid to exit, up to timeout_ms (a pidfd poll; a plain blocking
** waitpid where pidfds are unavailable). Returns the wait status, or -1. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int status = 0;
    int pfd = pidfd_open(pid, 0);
    if (pfd >= 0) {
        struct pollfd pf = {.fd = pfd, .events = POLLIN};
        int64_t until = now_ms() + timeout_ms;
        int n;
        do {
            int64_t left = until - now_ms();
            n = poll(&pf, 1, left > 0 ? (int)left : 0);
        } while (n < 0 && errno == EINTR);
        close(pfd);
        if (n == 0) return -1; /* still running */
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return status;
}

/* Reads the port line from fd until deadline. Returns the port or -1. */
static int read_port(int fd, int timeout_ms)
{
    char buf[32];
    size_t len = 0;
    int64_t until = now_ms() + timeout_ms;
    while (len < sizeof buf - 1) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = until - now_ms();
        if (left <= 0) return -1;
        int n = poll(&pf, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1; /* the mock exited */
        len += (size_t)r;
        buf[len] = '\0';
        char *nl = strchr(buf, '\n');
        if (nl) {
            char *end;
            long p = strtol(buf, &end, 10);
            return end != buf && end == nl && p > 0 && p < 65536 ? (int)p : -1;
        }
    }
    return -1;
}

/* Starts the process on port (0: any); sets m->pid, m->stdin_fd, m->port. */
static int spawn(mockpd *m, int port)
{
    char s_port[16], s_limit[16], s_window[16], s_latency[16];
    const char *argv[20];
    int n = 0;
    argv[n++] = binary_path();
    snprintf(s_port, sizeof s_port, "%d", port);
    argv[n++] = "--port";
    argv[n++] = s_port;
    argv[n++] = "--watch-stdin";
    if (m->opts.limit != 0) {
        snprintf(s_limit, sizeof s_limit, "%d", m->opts.limit < 0 ? 0 : m->opts.limit);
        argv[n++] = "--limit";
        argv[n++] = s_limit;
    }
    if (m->opts.window_ms > 0) {
        snprintf(s_window, sizeof s_window, "%d", m->opts.window_ms);
        argv[n++] = "--window-ms";
        argv[n++] = s_window;
    }
    if (m->opts.latency_ms > 0) {
        snprintf(s_latency, sizeof s_latency, "%d", m->opts.latency_ms);
        argv[n++] = "--latency-ms";
        argv[n++] = s_latency;
    }
    if (m->opts.tls) {
        argv[n++] = "--tls-cert";
        argv[n++] = m->cert_file;
        argv[n++] = "--tls-key";
        argv[n++] = m->key_file;
    }
    argv[n] = NULL;

    int pin[2], pout[2];
    if (pipe2(pin, O_CLOEXEC) != 0) return -1;
    if (pipe2(pout, O_CLOEXEC) != 0) {
        close(pin[0]);
        close(pin[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pin[0]);
    close(pout[1]);
    if (rc != 0) {
        fprintf(stderr, "mockpd: cannot run %s: %s\n", argv[0], strerror(rc));
        close(pin[1]);
        close(pout[0]);
        return -1;
    }
    int got = read_port(pout[0], MOCKPD_START_TIMEOUT_MS);
    close(pout[0]);
    if (got < 0) {
        fprintf(stderr, "mockpd: %s did not report a port\n", argv[0]);
        kill(pid, SIGKILL);
        wait_exit(pid, MOCKPD_STOP_TIMEOUT_MS);
        close(pin[1]);
        return -1;
    }
    m->pid = pid;
    m->stdin_fd = pin[1];
    m->port = got;
    free(m->url);
    free(m->resolve);
    m->url = tu_printf("%s://%s:%d", m->opts.tls ? "https" : "http",
                       m->opts.tls ? "localhost" : "127.0.0.1", got);
    m->resolve = tu_printf("localhost:%d:127.0.0.1", got);
    return 0;
}

mockpd *mockpd_start(const mockpd_opts *o)
{
    mockpd_global_init();
    mockpd *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (o) m->opts = *o;
    m->pid = -1;
    m->stdin_fd = -1;
    if (m->opts.tls) {
        if (m->opts.certs_dir) {
            m->certs_dir = tu_printf("%s", m->opts.certs_dir);
        } else {
            m->certs_dir = tu_mkdtemp();
            m->own_certs = true;
            if (mockpd_gen_certs(m->certs_dir) != 0) goto fail;
        }
        m->opts.certs_dir = m->certs_dir;
        m->ca_file = tu_printf("%s/ca.pem", m->certs_dir);
        m->cert_file = tu_printf("%s/server.pem", m->certs_dir);
        m->key_file = tu_printf("%s/server.key", m->certs_dir);
    }
    if (spawn(m, m->opts.port) != 0) goto fail;
    return m;
fail:
    mockpd_stop(m);
    return NULL;
}

int mockpd_halt(mockpd *m)
{
    if (!m || m->pid <= 0) return 0;
    kill(m->pid, SIGTERM);
    int status = wait_exit(m->pid, MOCKPD_STOP_TIMEOUT_MS);
    if (status < 0) {
        fprintf(stderr, "mockpd: mock %ld ignored SIGTERM; killing it\n", (long)m->pid);
        kill(m->pid, SIGKILL);
        wait_exit(m->pid, MOCKPD_STOP_TIMEOUT_MS);
    }
    close(m->stdin_fd);
    m->stdin_fd = -1;
    m->pid = -1;
    return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int mockpd_restart(mockpd *m)
{
    mockpd_halt(m);
    return spawn(m, m->port);
}

void mockpd_stop(mockpd *m)
{
    if (!m) return;
    mockpd_halt(m);
    if (m->own_certs && m->certs_dir) tu_rmrf(m->certs_dir);
    free(m->certs_dir);
    free(m->ca_file);
    free(m->cert_file);
    free(m->key_file);
    free(m->url);
    free(m->resolve);
    free(m);
}

int mockpd_port(const mockpd *m) { return m->port; }
const char *mockpd_url(const mockpd *m) { return m->url; }
const char *mockpd_ca_file(const mockpd *m) { return m->ca_file; }
const char *mockpd_certs_dir(const mockpd *m) { return m->certs_dir; }

/* ---- HTTP ------------------------------------------------------------------ */

typedef struct reply_buf {
    char *p;
    size_t len, cap;
    bool overflow;
} reply_buf;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    reply_buf *b = userp;
    size_t n = size * nmemb;
    if (b->len + n + 1 > MOCKPD_REPLY_MAX) {
        b->overflow = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

int mockpd_http(mockpd *m, const char *method, const char *path, const char *body,
                const char *cainfo, int timeout_ms, char **reply_out)
{
    if (reply_out) *reply_out = NULL;
    CURL *c = curl_easy_init();
    if (!c) return -(int)CURLE_FAILED_INIT;
    char *url = tu_printf("%s%s", m->url, path);
    struct curl_slist *hdrs = NULL, *resolve = NULL;
    reply_buf buf = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : MOCKPD_HTTP_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    if (m->opts.tls) {
        resolve = curl_slist_append(NULL, m->resolve);
        curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
        curl_easy_setopt(c, CURLOPT_CAINFO, cainfo ? cainfo : m->ca_file);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(resolve);
    free(url);
    if (reply_out) {
        *reply_out = buf.p ? buf.p : tu_printf("%s", "");
    } else {
        free(buf.p);
    }
    if (rc != CURLE_OK) return -(int)rc;
    return (int)status;
}

/* A control request whose reply must have status want and be JSON. */
static cJSON *control(mockpd *m, const char *method, const char *path, const char *body, int want,
                      int timeout_ms, int *status_out)
{
    char *reply = NULL;
    int st = mockpd_http(m, method, path, body, NULL, timeout_ms, &reply);
    if (status_out) *status_out = st;
    cJSON *j = NULL;
    if (st == want || (status_out && st > 0)) j = cJSON_Parse(reply);
    if (!j) fprintf(stderr, "mockpd: %s %s: status %d: %s\n", method, path, st, reply ? reply : "");
    free(reply);
    return j;
}

int mockpd_set_mode_json(mockpd *m, const char *json)
{
    cJSON *j = control(m, "POST", "/_mock/mode", json, 200, 0, NULL);
    cJSON_Delete(j);
    return j ? 0 : -1;
}

int mockpd_set_mode(mockpd *m, const char *mode, int status, int delay_ms, int count)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "mode", mode);
    if (status > 0) cJSON_AddNumberToObject(o, "status", status);
    if (delay_ms > 0) cJSON_AddNumberToObject(o, "delay_ms", delay_ms);
    if (count > 0) cJSON_AddNumberToObject(o, "count", count);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) return -1;
    int rc = mockpd_set_mode_json(m, json);
    cJSON_free(json);
    return rc;
}

static int wait_for(mockpd *m, const char *what, int n, int timeout_ms)
{
    char *path = tu_printf("/_mock/wait?%s=%d&timeout_ms=%d", what, n, timeout_ms);
    int st = 0;
    cJSON *j = control(m, "GET", path, NULL, 200, timeout_ms + MOCKPD_HTTP_TIMEOUT_MS, &st);
    free(path);
    cJSON_Delete(j);
    if (st == 200) return 0;
    if (st == 408) return 1;
    return -1;
}

int mockpd_wait_accepted(mockpd *m, int n, int timeout_ms) { return wait_for(m, "accepted", n, timeout_ms); }
int mockpd_wait_requests(mockpd *m, int n, int timeout_ms) { return wait_for(m, "requests", n, timeout_ms); }
int mockpd_wait_webhooks(mockpd *m, int n, int timeout_ms) { return wait_for(m, "webhooks", n, timeout_ms); }
int mockpd_wait_webhook_requests(mockpd *m, int n, int timeout_ms)
{
    return wait_for(m, "webhook_requests", n, timeout_ms);
}

cJSON *mockpd_webhooks(mockpd *m) { return control(m, "GET", "/_mock/webhooks", NULL, 200, 0, NULL); }

int mockpd_set_webhook_mode(mockpd *m, const char *mode, int status, int delay_ms, int count,
                            const char *retry_after)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "target", "webhook");
    cJSON_AddStringToObject(o, "mode", mode);
    if (status > 0) cJSON_AddNumberToObject(o, "status", status);
    if (delay_ms > 0) cJSON_AddNumberToObject(o, "delay_ms", delay_ms);
    if (count > 0) cJSON_AddNumberToObject(o, "count", count);
    if (retry_after) cJSON_AddStringToObject(o, "retry_after", retry_after);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json) return -1;
    int rc = mockpd_set_mode_json(m, json);
    cJSON_free(json);
    return rc;
}

cJSON *mockpd_events(mockpd *m) { return control(m, "GET", "/_mock/events", NULL, 200, 0, NULL); }
cJSON *mockpd_requests(mockpd *m) { return control(m, "GET", "/_mock/requests", NULL, 200, 0, NULL); }
cJSON *mockpd_stats(mockpd *m) { return control(m, "GET", "/_mock/stats", NULL, 200, 0, NULL); }

long mockpd_stat(mockpd *m, const char *name)
{
    cJSON *j = mockpd_stats(m);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    long n = cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
    cJSON_Delete(j);
    return n;
}

int mockpd_reset(mockpd *m)
{
    cJSON *j = control(m, "POST", "/_mock/reset", NULL, 200, 0, NULL);
    cJSON_Delete(j);
    return j ? 0 : -1;
}
