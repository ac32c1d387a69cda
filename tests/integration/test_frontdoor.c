/*
** test_frontdoor.c — the ingest server against clients that misbehave at the
** HTTP level: slow ones that trickle a request, idle ones that hold a
** connection, one address opening too many, and requests whose framing is
** ambiguous. Each test asserts what such a client sees (the reply, or the
** connection closed), that well-behaved clients are still served, and that
** nothing queued is harmed.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "pdr.h"
#include "testutil.h"

static const char *const KEYS[] = {"R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"};

/* The scene (a mock without a limit, a port for the listener) with its
** config written and the daemon started. */
static it_fx *fx_new(const char *listen_extra)
{
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    char *text;
    it_fx_port(f);
    text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = %d\n%s"
                     "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                     "rate_per_minute = 60000\nburst = 100\n",
                     f->data_dir, f->port, listen_extra, mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
    return f;
}

/* A raw TCP connection to the daemon; -1 when it was not accepted. */
static int raw_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void raw_send(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads until the server closes the connection or timeout_ms pass; while
** waiting, sends one byte of trickle (if given) every trickle_ms. Returns
** what was read (malloc'd); *closed = 1 when the server ended it. */
static char *raw_read_until_close(int fd, int timeout_ms, const char *trickle, int trickle_ms, int *closed)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    int64_t end = pdr_clock_mono_ms() + timeout_ms;
    *closed = 0;
    for (;;) {
        int64_t left = end - pdr_clock_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r;
        if (left <= 0) break;
        r = poll(&p, 1, trickle ? (int)(left < trickle_ms ? left : trickle_ms) : (int)left);
        if (r == 0) {
            if (trickle && *trickle) {
                if (send(fd, trickle, 1, MSG_NOSIGNAL) != 1) {
                    *closed = 1;
                    break;
                }
                trickle++;
            }
            continue;
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got <= 0) {
            *closed = 1;   /* EOF, or a reset: either way the server ended it */
            break;
        }
        len += (size_t)got;
        if (len + 1 >= cap) break;
    }
    buf[len] = '\0';
    return buf;
}

/* The JSON body after the header of a raw reply, asserted in PagerDuty's
** error shape with an error containing want. */
static void assert_raw_error(const char *reply, const char *status_line, const char *want)
{
    const char *body = strstr(reply, "\r\n\r\n");
    cJSON *j, *errs;
    if (strncmp(reply, status_line, strlen(status_line)) != 0) it_fail("reply starts %.60s, want %s", reply, status_line);
    if (!tu_contains(reply, "Content-Type: application/json")) it_fail("reply is not JSON: %s", reply);
    assert_non_null(body);
    j = cJSON_Parse(body + 4);
    if (!j) it_fail("reply body is not JSON: %s", body + 4);
    assert_non_null(it_jstr(j, "status"));
    assert_non_null(it_jstr(j, "message"));
    errs = cJSON_GetObjectItemCaseSensitive(j, "errors");
    assert_true(cJSON_IsArray(errs));
    if (!strstr(cJSON_GetArrayItem(errs, 0)->valuestring, want))
        it_fail("error \"%s\" lacks \"%s\"", cJSON_GetArrayItem(errs, 0)->valuestring, want);
    cJSON_Delete(j);
}

static char *event_json(const char *dedup)
{
    return tu_printf("{\"routing_key\":\"%s\",\"event_action\":\"trigger\",\"dedup_key\":\"%s\","
                     "\"payload\":{\"summary\":\"disk full\",\"source\":\"db-1\",\"severity\":\"critical\"}}",
                     KEYS[0], dedup);
}

static void post_ok(it_fx *f, const char *dedup)
{
    char *body = event_json(dedup), *reply = NULL;
    int st = it_http(f->base, "POST", "/v2/enqueue", body, NULL, &reply, NULL);
    if (st != 202) it_fail("POST %s: status %d: %s", dedup, st, reply ? reply : "(none)");
    free(body);
    free(reply);
}

/* ---- request_timeout --------------------------------------------------- */

/* A client that sends part of its headers and then nothing (or a byte now
** and then, which MHD's idle timeout never catches) is told 408 in
** PagerDuty's shape once request_timeout passed, not before, and its
** connection is closed. */
static void test_slow_headers_get_408(void **state)
{
    (void)state;
    it_fx *f = fx_new("request_timeout = 1s\nidle_timeout = 30s\n");
    char *log = it_log(&f->d);
    assert_null(strstr(log, "level=warn"));   /* a plain start is quiet */
    free(log);
    for (int trickle = 0; trickle < 2; trickle++) {
        int fd = raw_connect(f->port), closed;
        int64_t t0 = pdr_clock_mono_ms();
        char *reply;
        assert_true(fd >= 0);
        raw_send(fd, "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\n");
        reply = raw_read_until_close(fd, 10000, trickle ? "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" : NULL,
                                     100, &closed);
        assert_true(closed);
        if (pdr_clock_mono_ms() - t0 < 900) it_fail("cut off after %lld ms, before request_timeout",
                                                    (long long)(pdr_clock_mono_ms() - t0));
        assert_raw_error(reply, "HTTP/1.1 408 ", "request_timeout");
        free(reply);
        close(fd);
    }
    assert_int_equal(it_wait_log(&f->d, "msg=\"slow connections cut off\"", 10000), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, 1);
}

/* A body that trickles in is cut off too; nothing of it is queued, and a
** complete request on another connection meanwhile is served. */
static void test_slow_body_cut_off(void **state)
{
    (void)state;
    it_fx *f = fx_new("request_timeout = 1s\n");
    char *body = event_json("slow-body"), *hdr, *reply;
    int fd = raw_connect(f->port), closed;
    assert_true(fd >= 0);
    hdr = tu_printf("POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", strlen(body));
    raw_send(fd, hdr);
    post_ok(f, "fast");   /* served while the slow one is still sending */
    reply = raw_read_until_close(fd, 10000, body, 100, &closed);
    assert_true(closed);
    assert_raw_error(reply, "HTTP/1.1 408 ", "request_timeout");   /* nothing was answered yet */
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    /* Only the fast one was ever queued. */
    cJSON *evs = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(evs), 1);
    assert_string_equal(it_jstr(cJSON_GetArrayItem(evs, 0), "dedup_key"), "fast");
    cJSON_Delete(evs);
    close(fd);
    free(reply);
    free(hdr);
    free(body);
    it_fx_free(f, KEYS, 1);
}

/* Hundreds of slow and idle connections from the same address do not lock
** a well-behaved client out: the event loop serves it, and the slow ones are
** cut off at their deadline. */
static void test_fast_client_among_slow_ones(void **state)
{
    (void)state;
    enum { SLOW = 300, IDLE = 100, EVENTS = 20 };
    it_fx *f = fx_new("request_timeout = 2s\n");
    int fds[SLOW + IDLE];
    for (int i = 0; i < SLOW + IDLE; i++) {
        fds[i] = raw_connect(f->port);
        assert_true(fds[i] >= 0);
        if (i < SLOW) raw_send(fds[i], "POST /v2/enqueue HTTP/1.1\r\nHo");
    }
    for (int i = 0; i < EVENTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "ok-%d", i);
        post_ok(f, name);
    }
    assert_int_equal(mockpd_wait_accepted(f->mock, EVENTS, 10000), 0);
    /* Every slow and idle connection is ended by the server. */
    for (int i = 0; i < SLOW + IDLE; i++) {
        int closed;
        char *r = raw_read_until_close(fds[i], 10000, NULL, 0, &closed);
        if (!closed) it_fail("connection %d still open", i);
        free(r);
        close(fds[i]);
    }
    assert_int_equal(it_http(f->base, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
    it_fx_free(f, KEYS, 1);
}

/* The [listen] settings need a restart: a reload that changes
** request_timeout says so, and the running value stays in force. */
static void test_reload_keeps_listen_settings(void **state)
{
    (void)state;
    it_fx *f = fx_new("request_timeout = 1s\n");
    char *text = tu_read_file(f->cfg, NULL), *changed;
    int fd, closed;
    char *reply;
    assert_non_null(text);
    changed = tu_printf("%s", text);
    /* request_timeout = 1s -> 9m */
    char *at = strstr(changed, "request_timeout = 1s");
    assert_non_null(at);
    memcpy(at, "request_timeout = 9m", 20);
    tu_write_file(f->cfg, changed);
    kill(f->d.pid, SIGHUP);
    assert_int_equal(it_wait_log(&f->d, "msg=\"changed settings take effect only after a restart\" "
                                        "settings=\"[listen] request_timeout\"", 10000), 0);
    fd = raw_connect(f->port);
    assert_true(fd >= 0);
    raw_send(fd, "POST /v2/enqueue HTTP/1.1\r\n");
    reply = raw_read_until_close(fd, 10000, NULL, 0, &closed);   /* cut at 1 s, not 9 min */
    assert_true(closed);
    assert_raw_error(reply, "HTTP/1.1 408 ", "request_timeout");
    free(reply);
    close(fd);
    free(changed);
    free(text);
    it_fx_free(f, KEYS, 1);
}

/* A client that asks and then reads the replies a byte at a time (or not at
** all) holds its connection no longer than request_timeout. */
static void test_slow_reader_cut_off(void **state)
{
    (void)state;
    enum { ASKS = 3000 };   /* 3000 replies of 3.5 KB: more than the socket buffers take */
    it_fx *f = fx_new("request_timeout = 1s\n");
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 256, closed, replies = 0;
    char *reply;
    const char *p;
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)f->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    for (int i = 0; i < ASKS; i++) raw_send(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Not reading: the daemon's replies pile up until it cuts the connection. */
    /* (generous bounds: under qemu-user on a loaded machine this is slow) */
    assert_int_equal(it_wait_log(&f->d, "msg=\"slow connections cut off\"", 30000), 0);
    reply = raw_read_until_close(fd, 30000, NULL, 0, &closed);
    assert_true(closed);
    for (p = reply; (p = strstr(p, "HTTP/1.1 200")) != NULL; p++) replies++;
    if (replies >= ASKS) it_fail("all %d replies were taken: the slow reader was not cut off", replies);
    free(reply);
    close(fd);
    assert_int_equal(it_http(f->base, "GET", "/healthz", NULL, NULL, NULL, NULL), 200);
    it_fx_free(f, KEYS, 1);
}

/* Asks GET /metrics until its text holds want (the daemon's own view). */
static void await_metric(it_fx *f, const char *want)
{
    for (int tries = 0; tries < 20000; tries++) {   /* each ask is a round trip: no sleep */
        char *text = NULL;
        int found = it_http(f->base, "GET", "/metrics", NULL, NULL, &text, NULL) == 200 && tu_contains(text, want);
        free(text);
        if (found) return;
    }
    it_fail("/metrics never showed %s", want);
}

/* Bodies in progress hold at most 64 MiB at once: past that a request is
** answered 503 (retry), and taken again once the holders are gone. */
static void test_body_memory_budget(void **state)
{
    (void)state;
    /* 130 of 512 KiB: 128 fill the budget, whichever come first */
    enum { HOLDERS = 130, PART = 300 * 1024, LEN = PART + 100000 };
    it_fx *f = fx_new("request_timeout = 60s\n");
    int fds[HOLDERS], fd, closed, st;
    char *chunk = malloc(LEN), *hdr, *hdr_close, *reply;
    memset(chunk, ' ', LEN);
    chunk[0] = '{';
    chunk[LEN - 1] = '}';
    hdr = tu_printf("POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", LEN);
    hdr_close = tu_printf("POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
                          LEN);
    for (int i = 0; i < HOLDERS; i++) {   /* each asks for a 512 KiB buffer, then stalls */
        fds[i] = raw_connect(f->port);
        assert_true(fds[i] >= 0);
        raw_send(fds[i], hdr);
        assert_int_equal(send(fds[i], chunk, PART, MSG_NOSIGNAL), PART);
    }
    /* The daemon has read them when its gauge says the budget is full. */
    await_metric(f, "pdrelay_ingest_body_bytes 67108864\n");
    /* One more, whole: over the budget while those hold it. */
    fd = raw_connect(f->port);
    assert_true(fd >= 0);
    raw_send(fd, hdr_close);
    assert_int_equal(send(fd, chunk, LEN, MSG_NOSIGNAL), LEN);
    reply = raw_read_until_close(fd, 10000, NULL, 0, &closed);
    close(fd);
    assert_raw_error(reply, "HTTP/1.1 503 ", "MiB pdrelay buffers");
    assert_true(tu_contains(reply, "Retry-After: 5"));
    free(reply);
    /* The holders give up: their memory is given back, and the next body read. */
    for (int i = 0; i < HOLDERS; i++) close(fds[i]);
    await_metric(f, "pdrelay_ingest_body_bytes 0\n");
    reply = NULL;
    st = it_http(f->base, "POST", "/v2/enqueue", "{}", NULL, &reply, NULL);   /* 400: read and parsed */
    free(reply);
    assert_int_equal(st, 400);
    free(hdr);
    free(hdr_close);
    free(chunk);
    it_fx_free(f, KEYS, 1);
}

/* ---- framing -------------------------------------------------------------- */

/* A request whose body length can be read two ways is refused in JSON, and
** never reaches the outbox. */
static void test_ambiguous_framing_refused(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        const char *want;
    } cases[] = {
        {"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
         "2 Content-Length headers"},
        {"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "both Content-Length and Transfer-Encoding"},
        {"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "'gzip' is not supported"},
        {"POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n",
         "not supported"},
        /* every route: a GET smuggling a second request in a "body" */
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 33\r\n\r\n"
         "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
         "2 Content-Length headers"},
        {"GET /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "both Content-Length and Transfer-Encoding"},
    };
    it_fx *f = fx_new("");
    post_ok(f, "before");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = raw_connect(f->port), closed;
        char *reply;
        assert_true(fd >= 0);
        raw_send(fd, cases[i].req);
        reply = raw_read_until_close(fd, 10000, NULL, 0, &closed);
        assert_raw_error(reply, "HTTP/1.1 400 ", cases[i].want);
        if (strstr(reply + 1, "HTTP/1.1 ")) it_fail("case %zu: a second reply: %s", i, reply);
        free(reply);
        close(fd);
    }
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    cJSON *evs = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(evs), 1);
    assert_string_equal(it_jstr(cJSON_GetArrayItem(evs, 0), "dedup_key"), "before");
    cJSON_Delete(evs);
    /* "delivered" is logged after the commit that deleted the row. */
    assert_int_equal(it_wait_log(&f->d, "msg=delivered", 10000), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING) + it_count(f->data_dir, DB_ROW_DEAD), 0);
    it_fx_free(f, KEYS, 1);
}

/* A path of stray bytes and control characters is quoted in the 404, and
** the reply is still valid UTF-8 JSON. */
static void test_reply_is_valid_utf8_json(void **state)
{
    (void)state;
    it_fx *f = fx_new("");
    int fd = raw_connect(f->port), closed;
    char *reply;
    assert_true(fd >= 0);
    raw_send(fd, "GET /\xff\xfe\x1b[2J\xc3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    reply = raw_read_until_close(fd, 10000, NULL, 0, &closed);
    assert_raw_error(reply, "HTTP/1.1 404 ", "no endpoint at /\xef\xbf\xbd\xef\xbf\xbd\x1b[2J");
    for (const char *q = reply; *q;) {
        uint32_t cp;
        size_t k = pdr_utf8_next(q, strlen(q), &cp);
        if (cp == PDR_UTF8_INVALID) it_fail("the reply holds invalid UTF-8 at byte %zu", (size_t)(q - reply));
        q += k;
    }
    assert_null(strchr(reply, '\x1b'));   /* escaped as \u001b in the JSON text */
    free(reply);
    close(fd);
    it_fx_free(f, KEYS, 1);
}

/* ---- connection limits ------------------------------------------------ */

/* One address may hold max_connections_per_client connections; the next is
** refused (closed at once, logged), and taken again once one of them ends. */
static void test_per_client_limit(void **state)
{
    (void)state;
    enum { LIMIT = 4 };
    it_fx *f = fx_new("max_connections_per_client = 4\n");
    int fds[LIMIT], extra, closed, st = 0;
    char *r;
    for (int i = 0; i < LIMIT; i++) {
        fds[i] = raw_connect(f->port);
        assert_true(fds[i] >= 0);
        raw_send(fds[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");   /* proves it was accepted */
    }
    for (int i = 0; i < LIMIT; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        char buf[16];
        assert_int_equal(poll(&p, 1, 10000), 1);
        assert_true(recv(fds[i], buf, sizeof buf, 0) > 0);   /* a reply, connection kept alive */
    }
    extra = raw_connect(f->port);   /* the kernel accepts; pdrelay closes it */
    assert_true(extra >= 0);
    r = raw_read_until_close(extra, 10000, NULL, 0, &closed);
    assert_true(closed);
    assert_string_equal(r, "");
    free(r);
    close(extra);
    assert_int_equal(it_wait_log(&f->d, "connection refused: a connection limit is reached", 10000), 0);
    close(fds[0]);
    /* Once the server has seen that close, a new connection is taken. */
    for (int tries = 0; tries < 200 && st != 200; tries++) {
        int fd = raw_connect(f->port);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[64] = "";
        raw_send(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if (poll(&p, 1, 10000) == 1 && recv(fd, buf, sizeof buf - 1, 0) > 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0)
            st = 200;
        close(fd);
    }
    assert_int_equal(st, 200);
    for (int i = 1; i < LIMIT; i++) close(fds[i]);
    it_fx_free(f, KEYS, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_headers_get_408),
        cmocka_unit_test(test_slow_body_cut_off),
        cmocka_unit_test(test_fast_client_among_slow_ones),
        cmocka_unit_test(test_reload_keeps_listen_settings),
        cmocka_unit_test(test_slow_reader_cut_off),
        cmocka_unit_test(test_body_memory_budget),
        cmocka_unit_test(test_ambiguous_framing_refused),
        cmocka_unit_test(test_reply_is_valid_utf8_json),
        cmocka_unit_test(test_per_client_limit),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
