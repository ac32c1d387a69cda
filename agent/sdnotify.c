/*
** sdnotify.c — the sender side of sd_notify(3), see sdnotify.h.
**
** The address rules are systemd's: $NOTIFY_SOCKET is an absolute path, or
** '@' followed by a name in Linux's abstract namespace, where the '@' stands
** for the leading NUL byte and the address length (not a terminating NUL)
** ends the name. A fresh socket per message keeps this free of state and
** threads; the daemon sends a handful of messages in its whole life.
*/
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sdnotify.h"

/* Fills sa from $NOTIFY_SOCKET; returns the address length, 0 when unusable. */
static socklen_t notify_addr(struct sockaddr_un *sa)
{
    const char *e = getenv("NOTIFY_SOCKET");
    size_t n;

    if (!e || (e[0] != '/' && e[0] != '@')) return 0;
    n = strlen(e);
    /* A path needs room for its NUL; an abstract name does not have one. */
    if (n < 2 || n > sizeof sa->sun_path - (e[0] == '/' ? 1 : 0)) return 0;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, e, n);
    if (e[0] == '@') {
        sa->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    return (socklen_t)sizeof *sa;
}

void sdnotify_send(const char *state)
{
    struct sockaddr_un sa;
    socklen_t len = notify_addr(&sa);
    int fd;

    if (!len || !state) return;
    /* CLOEXEC: the daemon starts no children, but a notify socket must never
    ** leak into one if it ever does. */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    /* MSG_NOSIGNAL: a vanished receiver is not worth a SIGPIPE. */
    while (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa, len) < 0 &&
           errno == EINTR)
        ;
    close(fd);
}

void sdnotify_reloading(void)
{
    struct timespec ts;
    char msg[64];

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        sdnotify_send("RELOADING=1");
        return;
    }
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
    sdnotify_send(msg);
}
