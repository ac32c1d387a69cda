/*
** log.c — the logfmt writer (see log.h). A line is built in a fixed buffer
** (cut at 4 KB with "…") and written with one write(2) to stderr. Also the
** escaping of untrusted text (pdr_log_escape) that the CLI shares.
*/
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static volatile int log_level = PDR_LOG_INFO;
static volatile int log_syslog;
static volatile int log_fd = 2;

void pdr_log_set_fd(int fd) { log_fd = fd < 0 ? 2 : fd; }

/* ---- escaping ------------------------------------------------------------ */

/* Characters a terminal must not get raw, besides C0 and DEL (see log.h). */
static int esc_unsafe(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
           /* invisible: soft hyphen, Arabic letter mark, zero-width space,
           ** joiners and direction marks, word joiner and its kin, the BOM,
           ** and the tag characters */
           cp == 0xAD || cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2060 && cp <= 0x2064) ||
           cp == 0xFEFF || (cp >= 0xE0000 && cp <= 0xE007F);
}

static const char esc_hex[] = "0123456789abcdef";

static size_t esc_x(char *e, unsigned char c)
{
    e[0] = '\\';
    e[1] = 'x';
    e[2] = esc_hex[c >> 4];
    e[3] = esc_hex[c & 15];
    return 4;
}

/* \uXXXX, or a UTF-16 surrogate pair past U+FFFF (as JSON spells it). */
static size_t esc_u(char *e, uint32_t cp)
{
    if (cp > 0xFFFF) {
        size_t n = esc_u(e, 0xD800 + ((cp - 0x10000) >> 10));
        return n + esc_u(e + n, 0xDC00 + ((cp - 0x10000) & 0x3FF));
    }
    e[0] = '\\';
    e[1] = 'u';
    for (int k = 0; k < 4; k++) e[2 + k] = esc_hex[(cp >> (12 - 4 * k)) & 15];
    return 6;
}

/* The escape of one character in mode into e: cp, or, when !valid, the
** byte c that starts no well-formed UTF-8. Its length; 0: copied as it is. */
static size_t esc_char(int valid, uint32_t cp, unsigned char c, pdr_esc_mode mode, char *e)
{
    if (!valid) return mode == PDR_ESC_JSON ? esc_u(e, 0xFFFD) : esc_x(e, c);
    if (esc_unsafe(cp) || (mode == PDR_ESC_JSON && cp == 0x7F)) return esc_u(e, cp);
    if (mode == PDR_ESC_JSON) return 0;   /* cJSON escaped C0, '"' and '\\' */
    if (cp < 0x20 || cp == 0x7F) {
        e[0] = '\\';
        switch (cp) {
        case '\n': e[1] = 'n'; return 2;
        case '\r': e[1] = 'r'; return 2;
        case '\t': e[1] = 't'; return 2;
        default: return esc_x(e, c);
        }
    }
    if (cp == '\\' || (cp == '"' && mode == PDR_ESC_LOGFMT)) {
        e[0] = '\\';
        e[1] = (char)cp;
        return 2;
    }
    return 0;
}

size_t pdr_log_escape(char *out, size_t outsz, const char *s, size_t len, pdr_esc_mode mode,
                      size_t *used)
{
    size_t o = 0, i = 0;

    if (!outsz) {
        if (used) *used = 0;
        return 0;
    }
    while (i < len) {
        uint32_t cp = 0;
        size_t n = pdr_utf8_decode(s + i, len - i, &cp);
        char e[16];
        size_t elen = esc_char(n != 0, cp, (unsigned char)s[i], mode, e);
        const char *piece = elen ? e : s + i;
        size_t plen = elen ? elen : n;
        if (o + plen >= outsz) break;   /* whole pieces only, and room for the NUL */
        memcpy(out + o, piece, plen);
        o += plen;
        i += n ? n : 1;
    }
    out[o] = '\0';
    if (used) *used = i;
    return o;
}

char *pdr_log_escape_dup(const char *s, pdr_esc_mode mode)
{
    size_t len = s ? strlen(s) : 0;
    char *out;
    if (len > (SIZE_MAX - 1) / 6) return NULL;
    out = pdr_malloc(6 * len + 1);
    if (out) pdr_log_escape(out, 6 * len + 1, s ? s : "", len, mode, NULL);
    return out;
}

/* ---- lines --------------------------------------------------------------- */

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

/* Once a line is cut nothing more goes in: a cut value is its last. */
static void put(line *l, const char *s, size_t n)
{
    if (l->cut) return;
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
        ** DEL and UTF-8 bytes (>= 0x7F) must be quoted on both alike */
        if ((unsigned char)*v <= ' ' || (unsigned char)*v >= 0x7F || *v == '"' || *v == '=' || *v == '\\')
            return 1;
    return 0;
}

static void put_value(line *l, const char *v)
{
    size_t len = strlen(v), used = 0, room;
    if (l->cut) return;
    if (!needs_quotes(v)) {
        put(l, v, len);
        return;
    }
    put(l, "\"", 1);
    if (l->cut) return;
    room = l->len < LOG_LINE_MAX - 8 ? LOG_LINE_MAX - 8 - l->len : 0;
    /* + 1: the NUL pdr_log_escape writes, past the room (the buffer has 8 more) */
    l->len += pdr_log_escape(l->buf + l->len, room + 1, v, len, PDR_ESC_LOGFMT, &used);
    if (used < len) l->cut = 1;
    put(l, "\"", 1);
}

/* A key as written: bytes outside [A-Za-z0-9_.-] become '_' (a key is not quoted). */
static void put_key(line *l, const char *k)
{
    for (; *k; k++) {
        char c = *k;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        put(l, ok ? k : "_", 1);
    }
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
        put_key(&l, k);
        put(&l, "=", 1);
        put_value(&l, v);
    }
    va_end(ap);
    if (l.cut) {
        memcpy(l.buf + l.len, "\xe2\x80\xa6", 3);
        l.len += 3;
    }
    l.buf[l.len++] = '\n';
    ssize_t w = write(log_fd, l.buf, l.len);
    (void)w;
    if (log_syslog) {
        /* syslog stamps its own time: the line from "level=" on. */
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        const char *from = memchr(l.buf, ' ', l.len);
        from = from ? from + 1 : l.buf;
        syslog(prio[level], "%.*s", (int)(l.len - 1 - (size_t)(from - l.buf)), from);
    }
}
