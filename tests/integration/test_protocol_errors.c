/*
** test_protocol_errors.c — requests that break HTTP itself, sent over a raw
** socket to the real `pdrelay run`: a malformed request line, an unsupported
** HTTP version, a bad Content-Length, a header too large, a malformed chunk.
** libmicrohttpd answers these before pdrelay sees a request; with pdrelay's
** patch (cross/patches/libmicrohttpd) each gets exactly one status line and
** a JSON body in PagerDuty's error shape, and an event queued before them is
** still delivered.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

#define KEY "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define REPLY_TIMEOUT_MS 10000

/* Sends req (len bytes) on a new connection to 127.0.0.1:port, then reads
** until the daemon closes it (at most REPLY_TIMEOUT_MS between reads).
** Returns the reply, malloc'd and NUL-terminated. The daemon may close
** before it read all of a large request: a failed send then still leaves
** its reply to read. */
static char *raw_exchange(int port, const char *req, size_t len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_MS / 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (got + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            it_fail("no end of the reply within %d ms; got so far: %.*s", REPLY_TIMEOUT_MS, (int)got, buf);
        break;   /* closed (or reset after the reply) */
    }
    close(fd);
    buf[got] = '\0';
    return buf;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Asserts what a client sees: one status line with want, a JSON content
** type, and a body {"status":"…","message":"…","errors":["…",…]}. */
static void assert_json_error(const char *what, const char *reply, int want)
{
    char status[32];
    snprintf(status, sizeof status, "HTTP/1.1 %d ", want);
    if (strncmp(reply, status, strlen(status)) != 0)
        it_fail("%s: the reply does not start with \"%s\": %s", what, status, reply);
    if (count_of(reply, "HTTP/1.1 ") != 1) it_fail("%s: not exactly one status line: %s", what, reply);
    const char *end = strstr(reply, "\r\n\r\n");
    if (!end) it_fail("%s: no end of the header: %s", what, reply);
    int json_type = 0;
    for (const char *line = strstr(reply, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n"))
        if (!strncasecmp(line + 2, "Content-Type: application/json", 30)) json_type = 1;
    if (!json_type) it_fail("%s: no Content-Type: application/json header: %s", what, reply);
    cJSON *j = cJSON_Parse(end + 4);
    if (!cJSON_IsObject(j)) it_fail("%s: the body is not a JSON object: %s", what, end + 4);
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "status")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message")))
        it_fail("%s: no string status and message: %s", what, end + 4);
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors"), *e;
    if (!cJSON_IsArray(errs) || cJSON_GetArraySize(errs) < 1) it_fail("%s: no errors array: %s", what, end + 4);
    cJSON_ArrayForEach(e, errs)
        if (!cJSON_IsString(e)) it_fail("%s: an error that is not a string: %s", what, end + 4);
    cJSON_Delete(j);
}

static void test_protocol_errors_answer_json(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *cfg = tu_printf("%s/pdrelay.ini", dir);
    char *data_dir = tu_printf("%s/var", dir);
    char *log = tu_printf("%s/pdrelay.log", dir);
    int port = it_free_port();
    char *base = tu_printf("http://127.0.0.1:%d", port);
    mockpd_opts mo = {.limit = -1};
    mockpd *mock = mockpd_start(&mo);
    assert_non_null(mock);
    char *text = tu_printf("[agent]\ndata_dir = %s\nsource = gw-test\n[listen]\nport = %d\n"
                           "[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n"
                           "timeout_ms = 1000\nconnect_timeout_ms = 500\n",
                           data_dir, port, mockpd_url(mock));
    tu_write_file(cfg, text);
    free(text);

    /* Upstream down: the event queued first stays in the outbox throughout. */
    assert_int_equal(mockpd_halt(mock), 0);
    it_daemon d = {0};
    assert_int_equal(it_daemon_start(&d, cfg, log), 0);
    assert_int_equal(it_wait_log(&d, "msg=\"pdrelay started\"", 10000), 0);
    char *reply = NULL;
    assert_int_equal(it_http(base, "POST", "/v2/enqueue",
                             "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"before-1\","
                             "\"payload\":{\"summary\":\"queued before the bad requests\",\"source\":\"db-1\","
                             "\"severity\":\"critical\"}}",
                             NULL, &reply, NULL), 202);
    free(reply);
    assert_int_equal(it_count(data_dir, DB_ROW_PENDING), 1);

    size_t big = 70000;
    const char *big_head = "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nX-Big: ";
    char *big_req = malloc(strlen(big_head) + big + 5);
    assert_non_null(big_req);
    strcpy(big_req, big_head);
    memset(big_req + strlen(big_head), 'a', big);
    strcpy(big_req + strlen(big_head) + big, "\r\n\r\n");
    const struct {
        const char *what, *req;
        int status;
    } cases[] = {
        {"no request line", "GARBAGE\r\n\r\n", 400},
        {"HTTP/9.9", "POST /v2/enqueue HTTP/9.9\r\nHost: x\r\n\r\n", 505},
        {"no HTTP version", "POST /v2/enqueue\r\n\r\n", 400},
        {"Content-Length abc", "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
        {"Content-Length too large",
         "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
        {"Content-Length 2 2", "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 2 2\r\n\r\n", 400},
        {"a 70000-byte header", big_req, 431},
        {"a malformed chunk",
         "POST /v2/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        reply = raw_exchange(port, cases[i].req, strlen(cases[i].req));
        assert_json_error(cases[i].what, reply, cases[i].status);
        free(reply);
    }
    free(big_req);

    /* Nothing queued was harmed: the event is still pending, and delivered
    ** once upstream is back. */
    db_row *rows;
    size_t n = it_rows(data_dir, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].dedup_key, "before-1");
    db_rows_free(rows, n);
    assert_int_equal(mockpd_restart(mock), 0);
    assert_int_equal(mockpd_wait_accepted(mock, 1, 10000), 0);
    cJSON *ev = mockpd_events(mock);
    assert_int_equal(cJSON_GetArraySize(ev), 1);
    assert_string_equal(it_jstr(cJSON_GetArrayItem(ev, 0), "dedup_key"), "before-1");
    assert_string_equal(it_jstr(cJSON_GetArrayItem(ev, 0), "routing_key"), KEY);
    cJSON_Delete(ev);
    assert_int_equal(it_daemon_stop(&d, SIGTERM), 0);
    assert_int_equal(it_count(data_dir, DB_ROW_PENDING), 0);

    mockpd_stop(mock);
    if (!getenv("PDR_KEEP")) tu_rmrf(dir);
    free(d.log_path);
    free(dir);
    free(cfg);
    free(data_dir);
    free(log);
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_errors_answer_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
