/*
** test_sdnotify.c — sdnotify_send() (sdnotify.c) against a datagram socket
** standing in for systemd: a path socket and an abstract one each receive
** exactly the bytes sent, in one datagram; with $NOTIFY_SOCKET unset or
** unusable nothing is sent and nothing breaks.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sdnotify.h"
#include "testutil.h"

/* A bound datagram socket; name is a path or "@abstract" as in $NOTIFY_SOCKET. */
static int listener(const char *name)
{
    struct sockaddr_un sa;
    size_t n = strlen(name);
    socklen_t len = (socklen_t)sizeof sa;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(n < sizeof sa.sun_path);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@') {
        sa.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    return fd;
}

/* The next datagram, NUL-terminated, or -1 when none is waiting. AF_UNIX
** datagrams are queued by the time sendto() returns, so no wait is needed. */
static ssize_t receive(int fd, char *buf, size_t bufsz)
{
    ssize_t n = recv(fd, buf, bufsz - 1, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        return -1;
    }
    assert_true((size_t)n < bufsz);   /* not truncated */
    buf[n] = '\0';
    return n;
}

static void test_path_socket(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_printf("%s/notify", dir);
    char buf[512];
    int fd = listener(path);

    setenv("NOTIFY_SOCKET", path, 1);
    sdnotify_send("READY=1\nSTATUS=listening on 127.0.0.1:8787, 2 targets");
    assert_int_equal(receive(fd, buf, sizeof buf), 53);
    assert_string_equal(buf, "READY=1\nSTATUS=listening on 127.0.0.1:8787, 2 targets");
    sdnotify_send("STOPPING=1");
    assert_int_equal(receive(fd, buf, sizeof buf), 10);
    assert_string_equal(buf, "STOPPING=1");
    assert_int_equal(receive(fd, buf, sizeof buf), -1);   /* one datagram each */

    unsetenv("NOTIFY_SOCKET");
    close(fd);
    tu_rmrf(dir);
    free(path);
    free(dir);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64], buf[512];
    int fd;

    snprintf(name, sizeof name, "@pdrelay-test-sdnotify-%ld-%ld", (long)getpid(), (long)time(NULL));
    fd = listener(name);
    setenv("NOTIFY_SOCKET", name, 1);
    sdnotify_send("READY=1");
    assert_int_equal(receive(fd, buf, sizeof buf), 7);
    assert_string_equal(buf, "READY=1");
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

/* RELOADING=1 carries the monotonic clock in microseconds, as systemd checks it. */
static void test_reloading(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_printf("%s/notify", dir);
    char buf[512], *end;
    struct timespec before, after;
    unsigned long long usec, lo, hi;
    int fd = listener(path);

    setenv("NOTIFY_SOCKET", path, 1);
    clock_gettime(CLOCK_MONOTONIC, &before);
    sdnotify_reloading();
    clock_gettime(CLOCK_MONOTONIC, &after);
    assert_true(receive(fd, buf, sizeof buf) > 0);
    assert_memory_equal(buf, "RELOADING=1\nMONOTONIC_USEC=", 27);
    usec = strtoull(buf + 27, &end, 10);
    assert_string_equal(end, "");
    lo = (unsigned long long)before.tv_sec * 1000000ULL + (unsigned long long)before.tv_nsec / 1000ULL;
    hi = (unsigned long long)after.tv_sec * 1000000ULL + (unsigned long long)after.tv_nsec / 1000ULL;
    assert_true(usec >= lo && usec <= hi);

    unsetenv("NOTIFY_SOCKET");
    close(fd);
    tu_rmrf(dir);
    free(path);
    free(dir);
}

/* Unset, empty, relative or too long: nothing reaches the listener, no crash. */
static void test_unset_or_unusable(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_printf("%s/notify", dir);
    char buf[512], longname[200];
    int fd = listener(path);

    unsetenv("NOTIFY_SOCKET");
    sdnotify_send("READY=1");
    sdnotify_reloading();
    sdnotify_send(NULL);
    setenv("NOTIFY_SOCKET", "", 1);
    sdnotify_send("READY=1");
    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    sdnotify_send("READY=1");
    memset(longname, 'x', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    sdnotify_send("READY=1");
    /* A path where nobody listens: the datagram is dropped, the caller goes on. */
    setenv("NOTIFY_SOCKET", "/nonexistent/pdrelay-notify", 1);
    sdnotify_send("READY=1");
    assert_int_equal(receive(fd, buf, sizeof buf), -1);

    unsetenv("NOTIFY_SOCKET");
    close(fd);
    tu_rmrf(dir);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_reloading),
        cmocka_unit_test(test_unset_or_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
