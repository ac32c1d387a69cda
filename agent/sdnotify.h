/*
** sdnotify.h — systemd's readiness protocol (sd_notify(3)) without libsystemd:
** one datagram of "KEY=VALUE\n…" lines to the AF_UNIX socket named by
** $NOTIFY_SOCKET. systemd sets it for a Type=notify service; anywhere else
** (a shell, the SysV init script, a test) it is unset and these calls do
** nothing, so the daemon calls them unconditionally.
**
** Best effort by design: a message that cannot be sent is dropped silently,
** because the daemon must run the same whether or not a supervisor listens.
** Nothing here allocates; the caller owns every string it passes.
*/
#ifndef PDR_SDNOTIFY_H
#define PDR_SDNOTIFY_H

/* Sends state (e.g. "READY=1\nSTATUS=listening") as one datagram to
** $NOTIFY_SOCKET: a path, or with a leading '@' a name in the abstract
** namespace. No-op when the variable is unset, empty or not a usable address. */
void sdnotify_send(const char *state);

/* Sends "RELOADING=1\nMONOTONIC_USEC=<now>" with the CLOCK_MONOTONIC time in
** microseconds, which systemd (>= 253, Type=notify-reload) wants with
** RELOADING=1 and older versions ignore. Follow it with "READY=1". */
void sdnotify_reloading(void);

#endif /* PDR_SDNOTIFY_H */
