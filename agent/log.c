/*
** log.c — the logfmt writer (see log.h). A line is built in a fixed buffer
** (cut at 4 KB with "…") and written with one write(2) to stderr.
*/
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static volatile int log_level = PDR_LOG_INFO;
static volatile int log_syslog;

void pdr_log_set_syslog(int on)
{
    if (on && !log_syslog) openlog("pdrelay", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    if (!on && log_syslog) closelog();
    log_syslog = on;
}

void pdr_log_set_level(pdr_log_level level) { log_level = (int)level; }

int pdr_log_enabled(pdr_log_level level) { return (int)level <= log_level; }

typedef struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int cut;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (l->len + n > LOG_LINE_MAX - 8) {
        n = l->len < LOG_LINE_MAX - 8 ? LOG_LINE_MAX - 8 - l->len : 0;
        l->cut = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static int needs_quotes(const char *v)
{
    if (!*v) return 1;
    for (; *v; v++)
        /* unsigned: plain char is signed on x86 and unsigned on ARM, and
        ** UTF-8 bytes (>= 0x80) must be quoted on both alike */
        if ((unsigned char)*v <= ' ' || (unsigned char)*v >= 0x80 || *v == '"' || *v == '=' || *v == '\\')
            return 1;
    return 0;
}

static void put_value(line *l, const char *v)
{
    if (!needs_quotes(v)) {
        put(l, v, strlen(v));
        return;
    }
    put(l, "\"", 1);
    for (; *v; v++) {
        switch (*v) {
        case '"': put(l, "\\\"", 2); break;
        case '\\': put(l, "\\\\", 2); break;
        case '\n': put(l, "\\n", 2); break;
        case '\r': put(l, "\\r", 2); break;
        case '\t': put(l, "\\t", 2); break;
        default: put(l, v, 1);
        }
    }
    put(l, "\"", 1);
}

void pdr_log(pdr_log_level level, const char *msg, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    line l;
    struct timeval tv;
    struct tm tm;
    char ts[48];
    va_list ap;
    const char *k, *v;

    if (!pdr_log_enabled(level)) return;
    l.len = 0;
    l.cut = 0;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    put(&l, "ts=", 3);
    put(&l, ts, strlen(ts));
    put(&l, " level=", 7);
    put(&l, names[level], strlen(names[level]));
    put(&l, " msg=", 5);
    put_value(&l, msg);
    va_start(ap, msg);
    while ((k = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, const char *);
        if (!v) continue;
        put(&l, " ", 1);
        put(&l, k, strlen(k));
        put(&l, "=", 1);
        put_value(&l, v);
    }
    va_end(ap);
    if (l.cut) {
        memcpy(l.buf + l.len, "\xe2\x80\xa6", 3);
        l.len += 3;
    }
    l.buf[l.len++] = '\n';
    ssize_t w = write(2, l.buf, l.len);
    (void)w;
    if (log_syslog) {
        /* syslog stamps its own time: the line from "level=" on. */
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        const char *from = memchr(l.buf, ' ', l.len);
        from = from ? from + 1 : l.buf;
        syslog(prio[level], "%.*s", (int)(l.len - 1 - (size_t)(from - l.buf)), from);
    }
}
