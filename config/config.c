/*
** config.c — loads pdrelay.ini into one immutable pdr_config. It owns the key
** table below, which is the single list of sections, keys, types, defaults
** and limits (Fluent Bit's config map): defaults are applied by parsing the
** default strings through the same code as the file's values, and the
** "allowed: …" part of every unknown-key message is generated from it. inih
** does the INI syntax; this file adds what inih 55 does not give: line
** numbers (our reader counts the lines it hands to inih), section headers
** with their lines and sections that have no keys (the reader recognises
** "[...]" lines the way inih does), every syntax error rather than the first,
** and a clean error for lines over inih's limit. Errors are collected, never
** stopped at, each formatted "FILE:LINE: what is wrong; allowed: …", at most
** PDR_CONFIG_MAX_ERRORS of them. Routing keys are never printed whole: every
** message shows them through pdr_redact().
**
** Value syntax: strings are taken as inih trims them (a ';' after whitespace
** starts a comment); integers are plain decimal; *_ms keys are plain integers
** of milliseconds; durations are an integer with a unit (ms s m h d) or a bare
** 0; match values are label=value, label!=value, label=~regex or
** label!~regex, and a value wrapped in double quotes has them removed.
** Relative paths (data_dir, routing_key_file, …) are relative to the working
** directory of the process, not to the config file.
**
** The file is read whole before inih sees it (config_file_read): it must be
** a regular file (checked with fstat on the descriptor; opened O_NONBLOCK so
** a FIFO cannot hang us) of at most 1 MiB, without a NUL byte or a CR that
** does not end a CRLF (text inih would misread), else it is refused with one
** message naming the file and the reason.
*/
#include "config.h"
#include "match.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

/* ---- the key table ------------------------------------------------------ */

/* The row type, pdr_config_key, and the types are in config.h. */

#define DURATION_ALLOWED \
    "a whole number with a unit ms, s, m, h or d (e.g. 500ms, 30s, 5m, 24h, 7d), or 0"

#define SIZE_ALLOWED \
    "a whole number of bytes, or with a unit KB, MB, GB or TB (powers of 1024; e.g. 512KB, 256MB)"
#define MAX_SIZE (INT64_C(1) << 50)

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR (60 * MS_MINUTE)
#define MS_DAY (24 * MS_HOUR)
#define MAX_DURATION (3650 * MS_DAY)

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const sync_names[] = {"full", "normal", NULL};
static const char *const bool_names[] = {"false", "true", NULL};
static const char *const severity_names[] = {"critical", "error", "warning", "info", NULL};
/* index = pdr_rwq_mode value */
static const char *const rwq_names[] = {"note", "send", "collapse", NULL};
/* index = pdr_upstream_kind value */
static const char *const upstream_names[] = {"pagerduty", "relay", NULL};

_Static_assert(sizeof(pdr_log_level) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(pdr_sync_mode) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(pdr_rwq_mode) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(pdr_upstream_kind) == sizeof(int), "enum fields are stored as int");
_Static_assert(PDR_UPSTREAM_PAGERDUTY == 0 && PDR_UPSTREAM_RELAY == 1, "upstream_names order");
_Static_assert(PDR_RWQ_NOTE == 0 && PDR_RWQ_SEND == 1 && PDR_RWQ_COLLAPSE == 2, "rwq_names order");

/* A field of pdr_config: its offset and its size (checked against the type
** by tests/unit/test_config.c). */
#define CFG(f) offsetof(pdr_config, f), sizeof(((pdr_config *)0)->f)
#define NOFIELD 0, 0

#define APPLIES PDR_RELOAD_APPLIES
#define RESTART PDR_RELOAD_RESTART
#define KEEP PDR_RELOAD_KEEP

/* The one description of every key. Each row: section, key, type, flags,
** default (as written in the file), field, min, max, enum names, what SIGHUP
** does with it, and a one-line description. Descriptions are plain ASCII
** (no Markdown, no roff): README.md's reference, config/pdrelay.ini's
** comments and the man page show them as they are. Adding or changing a key
** here: run `pdrelay config keys --markdown` into README.md (see its
** "Configuration" section) and update config/pdrelay.ini; the tests say
** where they differ. */
static const pdr_config_key key_table[] = {
    {"agent", "data_dir", PDR_KT_STRING, 0, "./var", CFG(data_dir), 0, 0, NULL, RESTART,
     "Directory of the outbox database, data_dir/pdrelay.db (the directory is created 0700, the file 0600)."},
    {"agent", "log_level", PDR_KT_ENUM, 0, "info", CFG(log_level), 0, 0, log_level_names, APPLIES,
     "Log verbosity on stderr (and syslog): error, warn, info or debug."},
    {"agent", "source", PDR_KT_STRING, 0, NULL, CFG(source), 0, 0, NULL, APPLIES,
     "payload.source of alerts that name none; when not set, this machine's host name."},
    {"agent", "syslog", PDR_KT_ENUM, 0, "false", CFG(syslog), 0, 0, bool_names, APPLIES,
     "true: also send each log line to syslog (facility daemon, ident pdrelay); false: stderr only."},
    {"agent", "default_severity", PDR_KT_ENUM, 0, "error", CFG(default_severity), 0, 0, severity_names, APPLIES,
     "PagerDuty severity (critical, error, warning or info) of an alert whose severity label is missing or unknown."},
    {"agent", "outage_log_interval", PDR_KT_DURATION, 0, "10m", CFG(outage_log_interval_ms), MS_SECOND, MAX_DURATION,
     NULL, RESTART,
     "While the uplink to PagerDuty is down, one summary line (backlog, age of the oldest event, attempts made) "
     "per this interval."},
    {"agent", "fallback_target", PDR_KT_STRING, PDR_KF_OPTIONAL, "", CFG(fallback_target), 0, 0, NULL, APPLIES,
     "The NAME of a [target NAME] that gets every alert matching no PagerDuty target (typically a webhook "
     "target) instead of it being dropped as unrouted; empty: such alerts are unrouted."},
    {"listen", "address", PDR_KT_STRING, 0, "127.0.0.1", CFG(listen_address), 0, 0, NULL, RESTART,
     "Address of the HTTP ingest server (a name or an IPv4 or IPv6 address); 127.0.0.1 keeps it local to this "
     "machine."},
    {"listen", "port", PDR_KT_INT, 0, "8787", CFG(listen_port), 0, 65535, NULL, RESTART,
     "TCP port of the ingest server; 0 turns TCP off."},
    {"listen", "unix_socket", PDR_KT_STRING, PDR_KF_OPTIONAL, "", CFG(unix_socket), 0, 107, NULL, RESTART,
     "Also listen on this unix socket path (created 0660; a stale socket is replaced); empty: no socket."},
    {"listen", "auth_token_file", PDR_KT_STRING, PDR_KF_OPTIONAL, "", CFG(auth_token_file), 0, 0, NULL, APPLIES,
     "A file whose first line is a token that POSTs and GET /metrics must then send as \"Authorization: Bearer "
     "TOKEN\" (compared in constant time; /healthz and /readyz stay open); empty: no token."},
    {"listen", "max_connections", PDR_KT_INT, 0, "4096", CFG(max_connections), 1, 100000, NULL, RESTART,
     "HTTP connections open at once, from all clients; more are refused (closed at once, logged at most 5 times "
     "per 10 s). The open-files limit is raised to fit when the hard limit allows, else a warning says to raise "
     "LimitNOFILE or ulimit -n."},
    {"listen", "max_connections_per_client", PDR_KT_INT, 0, "2048", CFG(max_connections_per_client), 0, 100000,
     NULL, RESTART,
     "Connections open at once from one client address (half of max_connections, so that one host cannot take "
     "every slot); 0: no limit of its own (clients behind one NAT or proxy share an address)."},
    {"listen", "threads", PDR_KT_INT, 0, "0", CFG(listen_threads), 0, 64, NULL, RESTART,
     "Event-loop threads serving all connections (epoll: a connection costs memory, not a thread); 0: half the "
     "CPUs, at least 1."},
    {"listen", "idle_timeout", PDR_KT_DURATION, 0, "30s", CFG(idle_timeout_ms), 1000, MS_HOUR, NULL, RESTART,
     "A connection on which nothing arrives for this long (between requests or in the middle of one) is closed."},
    {"listen", "request_timeout", PDR_KT_DURATION, 0, "10s", CFG(request_timeout_ms), 100, MS_HOUR, NULL, RESTART,
     "A request (headers and body) must arrive whole within this of the connection's opening (on a kept-alive "
     "connection: within idle_timeout plus this of the previous reply), and its reply must be taken within this; "
     "a slower client is cut off (408 when nothing of its request was answered yet)."},
    {"pagerduty", "url", PDR_KT_URL_LIST, 0, "https://events.pagerduty.com", CFG(pd_url), 0, 0, NULL, RESTART,
     "Base URL of the Events API; /v2/enqueue and /v2/change/enqueue are appended (EU: "
     "https://events.eu.pagerduty.com). Several, comma-separated (at most 4), are uplinks in order of preference: "
     "requests go to the first that answers, and back to the first after failback_after."},
    {"pagerduty", "upstream", PDR_KT_ENUM, 0, "pagerduty", CFG(upstream), 0, 0, upstream_names, RESTART,
     "What url points at. pagerduty: PagerDuty (a 401 or 403 is a dead letter). relay: another pdrelay, a site "
     "relay: a 401 or 403 is its token check, so the event is held and retried with backoff (logged at error), "
     "never a dead letter, and rate_per_minute may be 0."},
    {"pagerduty", "auth_token_file", PDR_KT_STRING, PDR_KF_OPTIONAL, "", CFG(upstream_token_file), 0, 0, NULL,
     APPLIES,
     "A file whose first line is a token sent upstream as \"Authorization: Bearer TOKEN\" on every request (for "
     "a site relay's [listen] auth_token_file; read at load and at each reload); empty: no token."},
    {"pagerduty", "rate_per_minute", PDR_KT_INT, 0, "120", CFG(rate_per_minute), 0, 1000000, NULL, RESTART,
     "Requests per minute to PagerDuty, per routing key (PagerDuty's own limit is 120); 0, only with upstream = "
     "relay: no limiter on this hop (the site relay limits towards PagerDuty; a 429 is still honoured)."},
    {"pagerduty", "burst", PDR_KT_INT, 0, "10", CFG(burst), 1, 1000000, NULL, RESTART,
     "Requests a routing key may send at once after being idle (the token bucket's size)."},
    {"pagerduty", "rate_window", PDR_KT_DURATION, 0, "60s", CFG(rate_window_ms), 100, MS_HOUR, NULL, RESTART,
     "The sliding window PagerDuty counts requests over; the allowance per window is rate_per_minute x "
     "rate_window / 1 minute. Leave at 60s; a test bench may shrink it."},
    {"pagerduty", "backoff_initial_ms", PDR_KT_MS, 0, "100", CFG(backoff_initial_ms), 1, MS_DAY, NULL, RESTART,
     "First retry delay after a transient failure (429, 5xx, timeout, network), in ms."},
    {"pagerduty", "backoff_max_ms", PDR_KT_MS, 0, "5000", CFG(backoff_max_ms), 1, MS_DAY, NULL, RESTART,
     "The retry delay doubles up to this many ms; must be at least backoff_initial_ms."},
    {"pagerduty", "timeout_ms", PDR_KT_MS, 0, "10000", CFG(timeout_ms), 1, MS_HOUR, NULL, RESTART,
     "Time limit of one request to PagerDuty, in ms; also the shutdown grace for requests in flight."},
    {"pagerduty", "connect_timeout_ms", PDR_KT_MS, 0, "5000", CFG(connect_timeout_ms), 1, MS_HOUR, NULL, RESTART,
     "Time limit to establish a connection (TCP and TLS) to PagerDuty, in ms."},
    {"pagerduty", "concurrency", PDR_KT_INT, 0, "16", CFG(concurrency), 1, 1024, NULL, RESTART,
     "Requests in flight at once over all routing keys (each key has at most one)."},
    {"pagerduty", "ca_file", PDR_KT_STRING, PDR_KF_OPTIONAL, "", CFG(ca_file), 0, 0, NULL, RESTART,
     "CA bundle to verify PagerDuty's certificate with; empty: the system's CAs."},
    {"pagerduty", "proxy", PDR_KT_PER_URL, PDR_KF_OPTIONAL, "", CFG(proxy), 0, 0, NULL, RESTART,
     "HTTP(S) proxy for requests to PagerDuty, e.g. http://proxy.example:3128; with several urls, one entry per "
     "url, comma-separated, - for none; empty: none."},
    {"pagerduty", "interface", PDR_KT_PER_URL, PDR_KF_OPTIONAL, "", CFG(interface), 0, 0, NULL, RESTART,
     "Outgoing interface or source address of requests to PagerDuty, as libcurl's CURLOPT_INTERFACE takes it "
     "(eth1, if!eth1, host!192.0.2.7), one entry per url, comma-separated, - for the system's choice; empty: the "
     "system's choice."},
    {"pagerduty", "down_probe_max", PDR_KT_DURATION, 0, "60s", CFG(down_probe_max_ms), 1, MS_DAY, NULL, RESTART,
     "While the uplink is down, pdrelay probes it with one request at a time, on an exponential backoff capped by "
     "this (so a metered link is not probed every few seconds for days); recovery is noticed within this, or at "
     "once on SIGUSR1 or pdrelay queue kick."},
    {"pagerduty", "failback_after", PDR_KT_DURATION, 0, "10m", CFG(failback_after_ms), 0, MAX_DURATION, NULL,
     RESTART,
     "With several urls, while requests go to a later one, the first is probed on the down_probe_max schedule; "
     "once it has answered for this long, requests go back to it; 0: at its first answer."},
    {"pagerduty", "throttle_backoff", PDR_KT_DURATION, 0, "30s", CFG(throttle_backoff_ms), 0, MS_HOUR, NULL, RESTART,
     "After a 429 without Retry-After, the routing key waits at least this long (PagerDuty's advice) and its rate "
     "is halved for the next rate_window; 0: the ordinary retry backoff only (the rate is still halved)."},
    {"outbox", "synchronous", PDR_KT_ENUM, 0, "full", CFG(synchronous), 0, 0, sync_names, RESTART,
     "full: one fsync per commit, survives power loss. normal: spares flash, may lose the last commits on power "
     "loss."},
    {"outbox", "commit_interval", PDR_KT_DURATION, 0, "0", CFG(commit_interval_ms), 0, MS_SECOND, NULL, RESTART,
     "Group commits: after the first event of a batch, wait up to this long for more before committing them in one "
     "transaction, for fewer writes to flash; the replies wait for that commit. 0: commit at once (the batch is what "
     "queued during the last commit)."},
    {"outbox", "max_events", PDR_KT_INT64, 0, "1000000", CFG(max_events), 1, 1000000000, NULL, KEEP,
     "Bound on pending events (dead letters have their own bounds, max_dead and max_dead_age); when it is reached, "
     "ingest answers 503 with Retry-After (so senders retry), /readyz answers 503 and pdrelay send exits 75. "
     "Lowered below what is queued, nothing queued is dropped: new events are refused until the outbox drains."},
    {"outbox", "max_bytes", PDR_KT_SIZE, 0, "256MB", CFG(max_bytes), INT64_C(1) << 20, MAX_SIZE, NULL, KEEP,
     "Bound on the sum of the pending events' sizes (their JSON bodies as stored), kept as a running total; "
     "reaching it means the same as max_events."},
    {"outbox", "min_free", PDR_KT_SIZE, 0, "64MB", CFG(min_free), 0, MAX_SIZE, NULL, KEEP,
     "Free space pdrelay leaves on the filesystem of data_dir for everything else (statvfs, read at most once a "
     "second); an event that would leave less is refused as with max_events; 0: no such bound."},
    {"outbox", "max_dead", PDR_KT_INT64, 0, "10000", CFG(max_dead), 1, 1000000000, NULL, KEEP,
     "Dead letters kept (events PagerDuty refused or max_age expired); past it the oldest are dropped, counted in "
     "pdrelay_dead_dropped_total and logged. Dead letters never count towards max_events or max_bytes."},
    {"outbox", "max_dead_age", PDR_KT_DURATION, 0, "7d", CFG(max_dead_age_ms), MS_MINUTE, MAX_DURATION, NULL, KEEP,
     "A dead letter older than this (since it died) is dropped, counted and logged like those past max_dead."},
    {"outbox", "max_age", PDR_KT_DURATION, PDR_KF_OPTIONAL, "", CFG(max_age_ms), 0, MAX_DURATION, NULL, RESTART,
     "Pending events older than this become dead letters instead of being retried; empty: never expire."},
    {"outbox", "delay_note_after", PDR_KT_DURATION, 0, "5m", CFG(delay_note_after_ms), 0, MAX_DURATION, NULL, RESTART,
     "An event that goes out more than this after pdrelay received it gets custom_details.pdrelay = {queued_at, "
     "attempts, delayed_s}; 0: never."},
    {"outbox", "resolved_while_queued", PDR_KT_ENUM, 0, "note", CFG(resolved_while_queued), 0, 0, rwq_names, RESTART,
     "A trigger held while the link was down whose resolve (same dedup_key) is queued behind it. note: the "
     "trigger goes out as severity info, its summary prefixed \"[resolved while offline] \", then the resolve (the "
     "record is kept, nobody is woken). send: both as queued. collapse: both (and any acknowledge between) are "
     "dropped, counted and logged; sent as note when PagerDuty already has an open incident for that dedup_key."},
    {"dedup", "ttl", PDR_KT_DURATION, 0, "24h", CFG(dedup_ttl_ms), 1, MAX_DURATION, NULL, RESTART,
     "How long an alert's dedup_key is remembered."},
    {"dedup", "cleanup_interval", PDR_KT_DURATION, 0, "1h", CFG(cleanup_interval_ms), 1, MAX_DURATION, NULL, RESTART,
     "How often expired dedup entries are purged."},
    {"target", "routing_key", PDR_KT_ROUTING_KEY, 0, NULL, NOFIELD, 0, 0, NULL, APPLIES,
     "The integration key, inline; exactly one of routing_key, routing_key_file and webhook_url is required."},
    {"target", "routing_key_file", PDR_KT_ROUTING_KEY_FILE, 0, NULL, NOFIELD, 0, 0, NULL, APPLIES,
     "A file holding the integration key (read at load and at each reload, whitespace trimmed)."},
    {"target", "match", PDR_KT_MATCH, 0, NULL, NOFIELD, 0, 0, NULL, APPLIES,
     "A label matcher, repeatable, one per line; an alert goes to every target whose matchers all hold (none: "
     "every alert). A regex is POSIX extended and must match the whole value; a label the alert does not have "
     "counts as empty, as in Prometheus."},
    {"target", "webhook_url", PDR_KT_WEBHOOK_URL, 0, NULL, NOFIELD, 0, 0, NULL, APPLIES,
     "Instead of a routing key: POST each alert routed here to this URL as JSON (the Alertmanager payload, or "
     "the /v1/alerts alert object), queued and retried like PagerDuty events; NAME is then at most 64 "
     "characters. Logs show only the URL's scheme, host and port."},
    {"target", "webhook_headers_file", PDR_KT_WEBHOOK_HEADERS, 0, NULL, NOFIELD, 0, 0, NULL, APPLIES,
     "With webhook_url: a file of extra request headers, one \"Name: value\" per line (# comments and blank "
     "lines allowed), read at load and at each reload; values may be secrets and are never shown."},
    {"target", "rate_per_minute", PDR_KT_TARGET_RATE, 0, NULL, NOFIELD, 1, 1000000, NULL, APPLIES,
     "With webhook_url: requests per minute to the URL (burst as [pagerduty] burst); when not set, [pagerduty] "
     "rate_per_minute."},
};

#undef APPLIES
#undef RESTART
#undef KEEP

#define N_KEYS (sizeof key_table / sizeof key_table[0])

/* Sections in the order they are listed in messages; "target" takes a NAME. */
static const char *const section_names[] = {"agent", "listen", "pagerduty", "outbox", "dedup", "target"};
#define N_SECTIONS (sizeof section_names / sizeof section_names[0])
#define SECTIONS_ALLOWED "[agent] [listen] [pagerduty] [outbox] [dedup] [target NAME]"

enum {
    SEC_NONE = -1,       /* before the first section header */
    SEC_IGNORED = -2,    /* a section already reported as wrong: its keys are skipped */
    SEC_TARGET = 5       /* index of "target" in section_names */
};

#define KEY_FILE_MAX 1024   /* a key file longer than this is not a key file */
#define CONFIG_FILE_MAX (1024 * 1024)   /* a config file longer than this is refused */
#define MSG_MAX 1024        /* one message, without the "FILE:LINE: " prefix */

/* ---- load context ------------------------------------------------------- */

typedef enum line_kind {
    LK_OTHER = 0,
    LK_CONTINUATION      /* inih passes this line as more of the previous key */
} line_kind;

typedef struct target_aux {
    int rk_line;         /* line of routing_key, 0 if none */
    int rkf_line;        /* line of routing_key_file, 0 if none */
    int url_line;        /* line of webhook_url, 0 if none */
    int hf_line;         /* line of webhook_headers_file, 0 if none */
    int rate_line;       /* line of rate_per_minute, 0 if none */
} target_aux;

typedef struct load_ctx {
    const char *path;
    char *text;                   /* the whole file, read by config_file_read */
    size_t text_len, text_pos;    /* its length; where the reader is */
    pdr_config *cfg;
    pdr_config_errors *errs;
    size_t n_errs_seen;           /* including those past the cap */
    pdr_rc fatal;                 /* PDR_ERR_NOMEM once memory ran out */

    int lineno;                   /* the line inih is working on */
    line_kind kind;               /* of that line */
    int prev_key;                 /* mirror of inih's prev_name != "" */
    int first_syntax_line;

    int sec;                      /* index into section_names or SEC_* */
    char sec_name[INI_MAX_LINE];  /* as written between the brackets */
    int cur_target;               /* index into cfg->targets, -1 if none */
    target_aux aux[PDR_CONFIG_MAX_TARGETS];
    int key_line[N_KEYS];         /* last line that set each key (0: default) */
} load_ctx;

static void ctx_init(load_ctx *c, const char *path, pdr_config_errors *errs)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->errs = errs;
    c->sec = SEC_NONE;
    c->cur_target = -1;
}

/* ---- errors ------------------------------------------------------------- */

static void err_push(load_ctx *c, char *msg)
{
    pdr_config_errors *e = c->errs;
    if (!e->msgs) {
        e->msgs = pdr_calloc(PDR_CONFIG_MAX_ERRORS + 1, sizeof *e->msgs);
        if (!e->msgs) {
            free(msg);
            c->fatal = PDR_ERR_NOMEM;
            return;
        }
    }
    e->msgs[e->n++] = msg;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = pdr_malloc((size_t)n + 1);
    if (!p) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* Records "PATH:LINE: message" (or "PATH: message" when line <= 0). */
static void err_at(load_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void err_at(load_ctx *c, int line, const char *fmt, ...)
{
    char msg[MSG_MAX];
    char *full;
    va_list ap;

    c->n_errs_seen++;
    if (c->fatal) return;
    if (c->n_errs_seen > PDR_CONFIG_MAX_ERRORS + 1) return;
    if (c->n_errs_seen == PDR_CONFIG_MAX_ERRORS + 1) {
        full = str_printf("%s: too many errors; only the first %d are shown", c->path,
                          PDR_CONFIG_MAX_ERRORS);
    } else {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (line > 0)
            full = str_printf("%s:%d: %s", c->path, line, msg);
        else
            full = str_printf("%s: %s", c->path, msg);
    }
    if (!full) {
        c->fatal = PDR_ERR_NOMEM;
        return;
    }
    err_push(c, full);
}

static char *dup_or_fail(load_ctx *c, const char *s)
{
    char *p = pdr_strdup(s);
    if (!p) c->fatal = PDR_ERR_NOMEM;
    return p;
}

void pdr_secure_zero(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--) *v++ = 0;
}

/* ---- sizes --------------------------------------------------------------- */

static const struct { const char *name; int shift; } size_units[] = {
    {"", 0}, {"B", 0}, {"K", 10}, {"KB", 10}, {"KiB", 10}, {"M", 20}, {"MB", 20}, {"MiB", 20},
    {"G", 30}, {"GB", 30}, {"GiB", 30}, {"T", 40}, {"TB", 40}, {"TiB", 40}
};

pdr_rc pdr_size_parse(const char *s, int64_t *bytes_out)
{
    int64_t v = 0;
    const char *p = s;

    if (!s || !bytes_out) return PDR_ERR_INVALID;
    if (*p < '0' || *p > '9') return PDR_ERR_INVALID;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return PDR_ERR_INVALID;
        v = v * 10 + d;
    }
    for (size_t i = 0; i < sizeof size_units / sizeof size_units[0]; i++) {
        if (strcmp(p, size_units[i].name)) continue;
        if (v > (INT64_MAX >> size_units[i].shift)) return PDR_ERR_INVALID;
        *bytes_out = v << size_units[i].shift;
        return PDR_OK;
    }
    return PDR_ERR_INVALID;
}

char *pdr_size_format(int64_t bytes, char *out, size_t outsz)
{
    static const struct { const char *name; int shift; } units[] = {
        {"TB", 40}, {"GB", 30}, {"MB", 20}, {"KB", 10}
    };
    if (!out || !outsz) return out;
    for (size_t i = 0; bytes > 0 && i < sizeof units / sizeof units[0]; i++) {
        int64_t unit = (int64_t)1 << units[i].shift;
        if (bytes % unit == 0) {
            snprintf(out, outsz, "%lld%s", (long long)(bytes / unit), units[i].name);
            return out;
        }
    }
    snprintf(out, outsz, "%lld", (long long)bytes);
    return out;
}

/* ---- durations ---------------------------------------------------------- */

pdr_rc pdr_duration_parse(const char *s, int64_t *ms_out)
{
    static const struct { const char *name; int64_t ms; } units[] = {
        {"ms", 1}, {"s", MS_SECOND}, {"m", MS_MINUTE}, {"h", MS_HOUR}, {"d", MS_DAY}
    };
    int64_t v = 0;
    const char *p = s;

    if (!s || !ms_out) return PDR_ERR_INVALID;
    if (!strcmp(s, "0")) {
        *ms_out = 0;
        return PDR_OK;
    }
    if (*p < '0' || *p > '9') return PDR_ERR_INVALID;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return PDR_ERR_INVALID;
        v = v * 10 + d;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].name)) continue;
        if (v > INT64_MAX / units[i].ms) return PDR_ERR_INVALID;
        *ms_out = v * units[i].ms;
        return PDR_OK;
    }
    return PDR_ERR_INVALID;
}

/* Days are used from two days up; exactly one day is shown as "24h", the way
** people write it. */
char *pdr_duration_format(int64_t ms, char *out, size_t outsz)
{
    if (!out || !outsz) return out;
    if (ms == 0)
        snprintf(out, outsz, "0");
    else if (ms < 0)
        snprintf(out, outsz, "%lldms", (long long)ms);
    else if (ms % MS_DAY == 0 && ms / MS_DAY >= 2)
        snprintf(out, outsz, "%lldd", (long long)(ms / MS_DAY));
    else if (ms % MS_HOUR == 0)
        snprintf(out, outsz, "%lldh", (long long)(ms / MS_HOUR));
    else if (ms % MS_MINUTE == 0)
        snprintf(out, outsz, "%lldm", (long long)(ms / MS_MINUTE));
    else if (ms % MS_SECOND == 0)
        snprintf(out, outsz, "%llds", (long long)(ms / MS_SECOND));
    else
        snprintf(out, outsz, "%lldms", (long long)ms);
    return out;
}

/* ---- value parsing (one function per type) ------------------------------ */

static void *field(pdr_config *cfg, const pdr_config_key *kd)
{
    return (char *)cfg + kd->offset;
}

/* Strict decimal integer: optional '-', digits, nothing else. */
static int parse_int64(const char *s, int64_t *out, int *overflow)
{
    char *end;
    *overflow = 0;
    if (!(*s == '-' || (*s >= '0' && *s <= '9'))) return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end) return -1;
    if (errno == ERANGE) *overflow = 1;
    *out = (int64_t)v;
    return 0;
}

static int set_string(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    char **sp = field(c->cfg, kd);
    char *copy = NULL;

    if (!*value && !(kd->flags & PDR_KF_OPTIONAL)) {
        err_at(c, c->lineno, "%s: empty value; a value is required", kd->key);
        return -1;
    }
    if (kd->max > 0 && (int64_t)strlen(value) > kd->max) {
        err_at(c, c->lineno, "%s = %s: too long; allowed: at most %lld characters", kd->key, value,
               (long long)kd->max);
        return -1;
    }
    if (*value) {
        copy = dup_or_fail(c, value);
        if (!copy) return -1;
    }
    free(*sp);
    *sp = copy;
    return 0;
}

#define URL_ALLOWED "http://HOST[:PORT][/PATH] or https://…"

/* Where the host of an http:// or https:// URL begins, or NULL when value
** is not one (no host, or a blank in it). */
static const char *url_host(const char *value)
{
    const char *host;
    if (!strncmp(value, "https://", 8))
        host = value + 8;
    else if (!strncmp(value, "http://", 7))
        host = value + 7;
    else
        return NULL;
    return !*host || *host == '/' || strpbrk(value, " \t") ? NULL : host;
}

/* A copy of a URL without its trailing '/'s (NULL: memory ran out). */
static char *url_dup(load_ctx *c, const char *value, const char *host)
{
    char *copy = dup_or_fail(c, value);
    if (!copy) return NULL;
    size_t n = strlen(copy);
    while (n > (size_t)(host - value) && copy[n - 1] == '/') copy[--n] = '\0';
    return copy;
}

static int set_url(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    char **sp = field(c->cfg, kd);
    const char *host = url_host(value);
    char *copy;

    if (!host) {
        err_at(c, c->lineno, "%s%s%s: %s; allowed: " URL_ALLOWED, kd->key, *value ? " = " : "", value,
               *value ? "not an HTTP URL" : "empty value");
        return -1;
    }
    copy = url_dup(c, value, host);
    if (!copy) return -1;
    free(*sp);
    *sp = copy;
    return 0;
}

/* ---- lists: [pagerduty] url and the keys with one entry per url ---------- */

/* Splits s at ',' into entries, blanks around each trimmed: the first max
** of them into start[] and len[]. Returns how many there are (may be more
** than max). */
static size_t list_split(const char *s, const char *start[], size_t len[], size_t max)
{
    size_t n = 0;
    for (;;) {
        const char *e = strchr(s, ',');
        const char *end = e ? e : s + strlen(s);
        const char *b = s;
        while (b < end && isspace((unsigned char)*b)) b++;
        while (end > b && isspace((unsigned char)end[-1])) end--;
        if (n < max) {
            start[n] = b;
            len[n] = (size_t)(end - b);
        }
        n++;
        if (!e) return n;
        s = e + 1;
    }
}

/* The entries joined by ',' (malloc'd; NULL: memory ran out). */
static char *list_join(load_ctx *c, char *const entries[], size_t n)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++) total += strlen(entries[i]) + 1;
    char *out = pdr_malloc(total), *p = out;
    if (!out) {
        c->fatal = PDR_ERR_NOMEM;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(entries[i]);
        if (i) *p++ = ',';
        memcpy(p, entries[i], l);
        p += l;
    }
    *p = '\0';
    return out;
}

static char *entry_dup(load_ctx *c, const char *start, size_t len)
{
    char *p = pdr_malloc(len + 1);
    if (!p) {
        c->fatal = PDR_ERR_NOMEM;
        return NULL;
    }
    memcpy(p, start, len);
    p[len] = '\0';
    return p;
}

/* [pagerduty] url: one URL (as PDR_KT_URL, with its messages), or up to
** PDR_CONFIG_MAX_UPSTREAMS of them; each bad entry is named by its position. */
static int set_url_list(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    const char *start[PDR_CONFIG_MAX_UPSTREAMS];
    size_t len[PDR_CONFIG_MAX_UPSTREAMS];
    char *entries[PDR_CONFIG_MAX_UPSTREAMS] = {NULL};
    char **sp = field(c->cfg, kd);
    size_t n = list_split(value, start, len, PDR_CONFIG_MAX_UPSTREAMS);
    int bad = 0;

    if (n == 1) return set_url(c, kd, value);
    if (n > PDR_CONFIG_MAX_UPSTREAMS) {
        err_at(c, c->lineno, "%s: %zu entries; allowed: at most %d comma-separated URLs", kd->key, n,
               PDR_CONFIG_MAX_UPSTREAMS);
        return -1;
    }
    for (size_t i = 0; i < n && !c->fatal; i++) {
        char *e = entry_dup(c, start[i], len[i]);
        const char *host = e ? url_host(e) : NULL;
        if (e && !host) {
            err_at(c, c->lineno, "%s: entry %zu '%s': %s; allowed: " URL_ALLOWED, kd->key, i + 1, e,
                   *e ? "not an http:// or https:// URL" : "empty");
            bad = 1;
        } else if (e) {
            entries[i] = url_dup(c, e, host);
        }
        free(e);
    }
    char *joined = bad || c->fatal ? NULL : list_join(c, entries, n);
    for (size_t i = 0; i < n; i++) free(entries[i]);
    if (!joined) return -1;
    free(*sp);
    *sp = joined;
    return 0;
}

#define PER_URL_ALLOWED "one entry per url entry, comma-separated, - for none"

/* proxy, interface: entries without blanks, "-" for none; their count is
** checked against url's by upstreams_build(). */
static int set_per_url(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    const char *start[PDR_CONFIG_MAX_UPSTREAMS];
    size_t len[PDR_CONFIG_MAX_UPSTREAMS];
    char *entries[PDR_CONFIG_MAX_UPSTREAMS] = {NULL};
    char **sp = field(c->cfg, kd);
    size_t n;
    int bad = 0;

    if (!*value && (kd->flags & PDR_KF_OPTIONAL)) {
        free(*sp);
        *sp = NULL;
        return 0;
    }
    n = list_split(value, start, len, PDR_CONFIG_MAX_UPSTREAMS);
    if (n > PDR_CONFIG_MAX_UPSTREAMS) {
        err_at(c, c->lineno, "%s: %zu entries; allowed: " PER_URL_ALLOWED " (url has at most %d)", kd->key, n,
               PDR_CONFIG_MAX_UPSTREAMS);
        return -1;
    }
    for (size_t i = 0; i < n && !c->fatal; i++) {
        entries[i] = entry_dup(c, start[i], len[i]);
        if (!entries[i]) break;
        if (!len[i] || strpbrk(entries[i], " \t")) {
            err_at(c, c->lineno, "%s: entry %zu '%s': %s; allowed: " PER_URL_ALLOWED, kd->key, i + 1, entries[i],
                   len[i] ? "contains a blank" : "empty");
            bad = 1;
        }
    }
    char *joined = bad || c->fatal ? NULL : list_join(c, entries, n);
    for (size_t i = 0; i < n; i++) free(entries[i]);
    if (!joined) return -1;
    free(*sp);
    *sp = joined;
    return 0;
}

static void upstreams_free(pdr_config *cfg)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        free(cfg->upstreams[i].url);
        free(cfg->upstreams[i].proxy);
        free(cfg->upstreams[i].interface);
    }
    memset(cfg->upstreams, 0, sizeof cfg->upstreams);
    cfg->n_upstreams = 0;
}

/* Entry i of a per-url key into *out: NULL for none ("-", or the key unset). */
static void per_url_entry(load_ctx *c, const char *list, size_t i, char **out)
{
    const char *start[PDR_CONFIG_MAX_UPSTREAMS];
    size_t len[PDR_CONFIG_MAX_UPSTREAMS];
    *out = NULL;
    if (!list || list_split(list, start, len, PDR_CONFIG_MAX_UPSTREAMS) <= i) return;
    if (len[i] == 1 && start[i][0] == '-') return;
    *out = entry_dup(c, start[i], len[i]);
}

/* cfg->upstreams from url, proxy and interface; a per-url key whose count
** of entries is not url's is an error at its line. */
static void upstreams_build(load_ctx *c, int proxy_line, int interface_line)
{
    pdr_config *cfg = c->cfg;
    const char *start[PDR_CONFIG_MAX_UPSTREAMS];
    size_t len[PDR_CONFIG_MAX_UPSTREAMS];
    size_t n = list_split(cfg->pd_url, start, len, PDR_CONFIG_MAX_UPSTREAMS);
    const struct { const char *key, *list; int line; } per[] = {
        {"proxy", cfg->proxy, proxy_line}, {"interface", cfg->interface, interface_line}
    };

    upstreams_free(cfg);
    if (n > PDR_CONFIG_MAX_UPSTREAMS) n = PDR_CONFIG_MAX_UPSTREAMS;   /* reported by set_url_list */
    for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
        size_t m = per[k].list ? list_split(per[k].list, NULL, NULL, 0) : n;
        if (m != n)
            err_at(c, per[k].line, "%s has %zu entr%s but url has %zu; allowed: empty, or " PER_URL_ALLOWED,
                   per[k].key, m, m == 1 ? "y" : "ies", n);
    }
    for (size_t i = 0; i < n && !c->fatal; i++) {
        pdr_upstream *u = &cfg->upstreams[i];
        cfg->n_upstreams = i + 1;
        u->url = entry_dup(c, start[i], len[i]);
        per_url_entry(c, cfg->proxy, i, &u->proxy);
        per_url_entry(c, cfg->interface, i, &u->interface);
    }
}

static int set_number(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    int64_t v;
    int overflow;
    const char *what = kd->type == PDR_KT_MS ? "not an integer number of milliseconds" : "not an integer";

    if (!*value) {
        err_at(c, c->lineno, "%s: empty value; allowed: %lld to %lld", kd->key, (long long)kd->min,
               (long long)kd->max);
        return -1;
    }
    if (parse_int64(value, &v, &overflow)) {
        err_at(c, c->lineno, "%s = %s: %s; allowed: %lld to %lld", kd->key, value, what,
               (long long)kd->min, (long long)kd->max);
        return -1;
    }
    if (overflow || v < kd->min || v > kd->max) {
        err_at(c, c->lineno, "%s = %s: out of range; allowed: %lld to %lld", kd->key, value,
               (long long)kd->min, (long long)kd->max);
        return -1;
    }
    if (kd->type == PDR_KT_INT)
        *(int *)field(c->cfg, kd) = (int)v;
    else
        *(int64_t *)field(c->cfg, kd) = v;
    return 0;
}

static int set_size(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    int64_t v;
    char lo[32], hi[32];

    if (pdr_size_parse(value, &v)) {
        err_at(c, c->lineno, "%s%s%s: %s; allowed: " SIZE_ALLOWED, kd->key, *value ? " = " : "", value,
               *value ? "not a size" : "empty value");
        return -1;
    }
    if (v < kd->min || v > kd->max) {
        err_at(c, c->lineno, "%s = %s: out of range; allowed: %s to %s", kd->key, value,
               pdr_size_format(kd->min, lo, sizeof lo), pdr_size_format(kd->max, hi, sizeof hi));
        return -1;
    }
    *(int64_t *)field(c->cfg, kd) = v;
    return 0;
}

static int set_duration(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    int64_t v;
    char lo[32], hi[32];

    if (!*value && (kd->flags & PDR_KF_OPTIONAL)) {
        *(int64_t *)field(c->cfg, kd) = 0;
        return 0;
    }
    if (pdr_duration_parse(value, &v)) {
        err_at(c, c->lineno, "%s%s%s: %s; allowed: " DURATION_ALLOWED, kd->key, *value ? " = " : "", value,
               *value ? "not a duration" : "empty value");
        return -1;
    }
    if (v < kd->min || v > kd->max) {
        err_at(c, c->lineno, "%s = %s: out of range; allowed: %s to %s", kd->key, value,
               pdr_duration_format(kd->min, lo, sizeof lo), pdr_duration_format(kd->max, hi, sizeof hi));
        return -1;
    }
    *(int64_t *)field(c->cfg, kd) = v;
    return 0;
}

static void join_names(const char *const *names, char *out, size_t outsz)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; names[i] && len < outsz; i++) {
        int n = snprintf(out + len, outsz - len, "%s%s", i ? ", " : "", names[i]);
        if (n < 0) break;
        len += (size_t)n;
    }
}

static int set_enum(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    char allowed[256];
    for (int i = 0; kd->names[i]; i++) {
        if (!strcmp(kd->names[i], value)) {
            memcpy(field(c->cfg, kd), &i, sizeof i);
            return 0;
        }
    }
    join_names(kd->names, allowed, sizeof allowed);
    err_at(c, c->lineno, "%s%s%s: %s; allowed: %s", kd->key, *value ? " = " : "", value,
           *value ? "unknown value" : "empty value", allowed);
    return -1;
}

static int set_value(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    switch (kd->type) {
    case PDR_KT_STRING: return set_string(c, kd, value);
    case PDR_KT_URL: return set_url(c, kd, value);
    case PDR_KT_URL_LIST: return set_url_list(c, kd, value);
    case PDR_KT_PER_URL: return set_per_url(c, kd, value);
    case PDR_KT_INT:
    case PDR_KT_INT64:
    case PDR_KT_MS: return set_number(c, kd, value);
    case PDR_KT_DURATION: return set_duration(c, kd, value);
    case PDR_KT_SIZE: return set_size(c, kd, value);
    case PDR_KT_ENUM: return set_enum(c, kd, value);
    case PDR_KT_ROUTING_KEY:
    case PDR_KT_ROUTING_KEY_FILE:
    case PDR_KT_MATCH:
    case PDR_KT_WEBHOOK_URL:
    case PDR_KT_WEBHOOK_HEADERS:
    case PDR_KT_TARGET_RATE: break;   /* handled by the target code */
    }
    return -1;
}

/* Applies every default of the table by parsing its string. */
static pdr_rc apply_defaults(load_ctx *c)
{
    char host[256];
    for (size_t i = 0; i < N_KEYS; i++) {
        const pdr_config_key *kd = &key_table[i];
        const char *def = kd->def;
        if (!strcmp(kd->section, "target")) continue;
        if (!def) {   /* source: the host name */
            if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
            host[sizeof host - 1] = '\0';
            def = host;
        }
        if (set_value(c, kd, def)) return c->fatal ? c->fatal : PDR_ERR_INTERNAL;
    }
    return PDR_OK;
}

/* ---- targets: routing keys and matchers --------------------------------- */

/* Checks a key (len bytes, not necessarily NUL-terminated) and copies it to
** out on success. what names the key in messages. */
static int check_routing_key(load_ctx *c, const char *what, const char *key, size_t len,
                             char out[PDR_ROUTING_KEY_LEN + 1])
{
    char copy[KEY_FILE_MAX + 1];
    char red[PDR_REDACT_SIZE];
    const char *why;
    int rc = -1;

    if (len > KEY_FILE_MAX) len = KEY_FILE_MAX;
    memcpy(copy, key, len);
    copy[len] = '\0';
    pdr_redact(copy, red, sizeof red);
    if (pdr_routing_key_check(copy, len, &why) != PDR_OK) {
        if (strcmp(why, "length") == 0 && pdr_utf8_chars(copy) != PDR_ROUTING_KEY_LEN)
            err_at(c, c->lineno, "%s (%s) has %zu characters; exactly %d are required", what, red,
                   pdr_utf8_chars(copy), PDR_ROUTING_KEY_LEN);
        else
            err_at(c, c->lineno,
                   "%s (%s) contains a character other than a letter or a digit; an integration key is %d "
                   "letters and digits",
                   what, red, PDR_ROUTING_KEY_LEN);
        goto out;
    }
    memcpy(out, copy, len);
    out[len] = '\0';
    rc = 0;
out:
    pdr_secure_zero(copy, sizeof copy);
    return rc;
}

static void read_key_file(load_ctx *c, pdr_target *t, const char *path)
{
    char buf[KEY_FILE_MAX + 1];
    char what[64 + INI_MAX_LINE];
    size_t n, start, end;
    int more = 0, err = 0;
    FILE *f;

    f = fopen(path, "r");
    if (!f) {
        err_at(c, c->lineno, "routing_key_file = %s: cannot read: %s", path, strerror(errno));
        return;
    }
    n = fread(buf, 1, KEY_FILE_MAX, f);
    if (ferror(f))
        err = errno ? errno : EIO;
    else if (n == KEY_FILE_MAX && getc(f) != EOF)
        more = 1;
    fclose(f);
    if (err) {
        err_at(c, c->lineno, "routing_key_file = %s: cannot read: %s", path, strerror(err));
        goto out;
    }
    if (more) {
        err_at(c, c->lineno, "routing_key_file = %s: longer than %d bytes; exactly %d characters are required",
               path, KEY_FILE_MAX, PDR_ROUTING_KEY_LEN);
        goto out;
    }
    start = 0;
    end = n;
    while (start < end && isspace((unsigned char)buf[start])) start++;
    while (end > start && isspace((unsigned char)buf[end - 1])) end--;
    snprintf(what, sizeof what, "routing_key_file = %s: the key", path);
    check_routing_key(c, what, buf + start, end - start, t->routing_key);
out:
    pdr_secure_zero(buf, sizeof buf);
}

static void add_matcher(load_ctx *c, pdr_target *t, const char *spec)
{
    char why[MSG_MAX];
    pdr_matcher m;
    pdr_rc rc;

    if (t->n_matchers >= PDR_CONFIG_MAX_MATCHERS) {
        err_at(c, c->lineno, "too many match lines in [target %s]; allowed: at most %d", t->name,
               PDR_CONFIG_MAX_MATCHERS);
        return;
    }
    rc = pdr_matcher_parse(spec, &m, why, sizeof why);
    if (rc == PDR_ERR_INVALID) {
        err_at(c, c->lineno, "%s", why);
        return;
    }
    if (rc) {
        c->fatal = rc;
        return;
    }
    if (!t->matchers) {
        t->matchers = pdr_calloc(PDR_CONFIG_MAX_MATCHERS, sizeof *t->matchers);
        if (!t->matchers) {
            pdr_matcher_free(&m);
            c->fatal = PDR_ERR_NOMEM;
            return;
        }
    }
    t->matchers[t->n_matchers++] = m;
}

static void err_both_sources(load_ctx *c, const pdr_target *t, const target_aux *a)
{
    err_at(c, c->lineno,
           "[target %s] has both routing_key (line %d) and routing_key_file (line %d); "
           "allowed: exactly one of them",
           t->name, a->rk_line, a->rkf_line);
}

/* webhook_url beside a routing key (either order): one message, at the
** later of the two lines. */
static void err_url_and_key(load_ctx *c, const pdr_target *t, const target_aux *a)
{
    const char *other = a->rk_line ? "routing_key" : "routing_key_file";
    int other_line = a->rk_line ? a->rk_line : a->rkf_line;
    err_at(c, c->lineno,
           "[target %s] has both webhook_url (line %d) and %s (line %d); allowed: exactly one of routing_key, "
           "routing_key_file and webhook_url",
           t->name, a->url_line, other, other_line);
}

/* ---- webhook targets: the URL and the headers file ---------------------- */

#define HEADERS_FILE_MAX (64 * 1024)   /* a headers file longer than this is refused */

static void headers_free(pdr_target *t)
{
    for (size_t i = 0; i < t->n_headers; i++) {
        free(t->headers[i].name);
        if (t->headers[i].value) {
            pdr_secure_zero(t->headers[i].value, strlen(t->headers[i].value));
            free(t->headers[i].value);
        }
    }
    free(t->headers);
    t->headers = NULL;
    t->n_headers = 0;
}

/* RFC 9110 token characters: what a header name is made of. */
static int is_tchar(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Reads path, a webhook_headers_file: one "Name: value" per line, blank
** lines and lines starting with '#' skipped, a CRLF ending taken as LF.
** The name is an HTTP token; the value (spaces and tabs around it trimmed)
** is not empty and holds no control character (so no CR or LF can split
** it into a second header); Content-Length, Transfer-Encoding and Host are
** libcurl's. Errors name the config line, the file and its line, and what
** is wrong, never the line's text: a value is a secret, and a line without
** ':' or with a bad name may be one too. */
static void read_headers_file(load_ctx *c, pdr_target *t, const char *path)
{
    static const char *const reserved[] = {"Content-Length", "Transfer-Encoding", "Host"};
    char *buf = NULL;
    size_t n = 0;
    int err = 0, more = 0, line = 0;
    FILE *f = fopen(path, "r");

    if (!f) {
        err_at(c, c->lineno, "webhook_headers_file = %s: cannot read: %s", path, strerror(errno));
        return;
    }
    buf = pdr_malloc(HEADERS_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        c->fatal = PDR_ERR_NOMEM;
        return;
    }
    n = fread(buf, 1, HEADERS_FILE_MAX, f);
    if (ferror(f))
        err = errno ? errno : EIO;
    else if (n == HEADERS_FILE_MAX && getc(f) != EOF)
        more = 1;
    fclose(f);
    buf[n] = '\0';
    if (err) {
        err_at(c, c->lineno, "webhook_headers_file = %s: cannot read: %s", path, strerror(err));
        goto out;
    }
    if (more) {
        err_at(c, c->lineno, "webhook_headers_file = %s: longer than %d bytes; allowed: at most %d header lines",
               path, HEADERS_FILE_MAX, PDR_CONFIG_MAX_HEADERS);
        goto out;
    }
    if (memchr(buf, '\0', n)) {
        err_at(c, c->lineno, "webhook_headers_file = %s: contains a NUL byte; allowed: a text file of "
               "\"Name: value\" lines", path);
        goto out;
    }
    for (char *p = buf, *next; p < buf + n; p = next) {
        char *end = strchr(p, '\n'), *colon, *v, *ve;
        const char *why = NULL;
        next = end ? end + 1 : buf + n;
        if (!end) end = buf + n;
        *end = '\0';
        line++;
        if (end > p && end[-1] == '\r') *--end = '\0';
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        colon = strchr(p, ':');
        if (!colon) {
            why = "has no ':'; allowed: Name: value";
        } else if (colon == p) {
            why = "has no header name before ':'; allowed: Name: value";
        } else {
            for (char *q = p; q < colon && !why; q++)
                if (!is_tchar((unsigned char)*q))
                    why = "has a character not allowed in a header name (allowed: letters, digits and "
                          "!#$%&'*+-.^_`|~; no space before ':')";
        }
        if (!why) {
            v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            ve = v + strlen(v);
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            *ve = '\0';
            if (!*v) why = "has an empty value; allowed: Name: value";
            for (char *q = v; *q && !why; q++)
                if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                    why = "has a control character (a CR, say) in its value; allowed: printable text";
        }
        if (!why) {
            *colon = '\0';
            for (size_t r = 0; r < sizeof reserved / sizeof *reserved && !why; r++)
                if (!strcasecmp(p, reserved[r]))
                    why = "sets a header libcurl sets itself (Content-Length, Transfer-Encoding, Host)";
        }
        if (!why && t->n_headers >= PDR_CONFIG_MAX_HEADERS) why = "is one header too many (at most 32)";
        if (why) {
            err_at(c, c->lineno, "webhook_headers_file = %s:%d: the line %s", path, line, why);
            continue;
        }
        if (!t->headers) {
            t->headers = pdr_calloc(PDR_CONFIG_MAX_HEADERS, sizeof *t->headers);
            if (!t->headers) {
                c->fatal = PDR_ERR_NOMEM;
                goto out;
            }
        }
        t->headers[t->n_headers].name = dup_or_fail(c, p);
        t->headers[t->n_headers].value = dup_or_fail(c, v);
        t->n_headers++;
        if (c->fatal) goto out;
    }
out:
    pdr_secure_zero(buf, HEADERS_FILE_MAX + 1);
    free(buf);
}

/* http:// or https:// with a host, no space: the check of set_url. */
static int url_ok(const char *value)
{
    const char *host = !strncmp(value, "https://", 8) ? value + 8 : !strncmp(value, "http://", 7) ? value + 7 : NULL;
    return host && *host && *host != '/' && !strpbrk(value, " \t");
}

static void target_set(load_ctx *c, const pdr_config_key *kd, const char *value)
{
    pdr_target *t = &c->cfg->targets[c->cur_target];
    target_aux *a = &c->aux[c->cur_target];

    switch (kd->type) {
    case PDR_KT_ROUTING_KEY:
        if (a->rk_line) {
            err_at(c, c->lineno, "routing_key set twice in [target %s] (first at line %d); allowed: once",
                   t->name, a->rk_line);
            return;
        }
        a->rk_line = c->lineno;
        if (a->rkf_line)
            err_both_sources(c, t, a);
        else if (a->url_line)
            err_url_and_key(c, t, a);
        check_routing_key(c, "routing_key", value, strlen(value), t->routing_key);
        return;
    case PDR_KT_ROUTING_KEY_FILE:
        if (a->rkf_line) {
            err_at(c, c->lineno,
                   "routing_key_file set twice in [target %s] (first at line %d); allowed: once", t->name,
                   a->rkf_line);
            return;
        }
        a->rkf_line = c->lineno;
        if (a->rk_line)
            err_both_sources(c, t, a);
        else if (a->url_line)
            err_url_and_key(c, t, a);
        if (!*value) {
            err_at(c, c->lineno, "routing_key_file: empty value; allowed: the path of a file holding the key");
            return;
        }
        t->routing_key_file = dup_or_fail(c, value);
        if (!t->routing_key_file) return;
        read_key_file(c, t, value);
        return;
    case PDR_KT_MATCH:
        add_matcher(c, t, value);
        return;
    case PDR_KT_WEBHOOK_URL: {
        char shown[256];
        if (a->url_line) {
            err_at(c, c->lineno, "webhook_url set twice in [target %s] (first at line %d); allowed: once", t->name,
                   a->url_line);
            return;
        }
        a->url_line = c->lineno;
        if (a->rk_line || a->rkf_line) err_url_and_key(c, t, a);
        if (!url_ok(value)) {
            /* the URL may hold a token in its path: shown as its origin */
            err_at(c, c->lineno, "webhook_url%s%s: %s; allowed: http://HOST[:PORT][/PATH] or https://…",
                   *value ? " = " : "", *value ? pdr_url_origin(value, shown, sizeof shown) : "",
                   *value ? "not an HTTP URL" : "empty value");
            return;
        }
        if (strlen(t->name) > PDR_WEBHOOK_NAME_MAX)
            err_at(c, c->lineno, "[target %s]: the name of a webhook target is %zu bytes; allowed: at most %d",
                   t->name, strlen(t->name), PDR_WEBHOOK_NAME_MAX);
        t->webhook_url = dup_or_fail(c, value);
        snprintf(t->webhook_key, sizeof t->webhook_key, "%s%s", PDR_WEBHOOK_KEY_PREFIX, t->name);
        return;
    }
    case PDR_KT_WEBHOOK_HEADERS:
        if (a->hf_line) {
            err_at(c, c->lineno, "webhook_headers_file set twice in [target %s] (first at line %d); allowed: once",
                   t->name, a->hf_line);
            return;
        }
        a->hf_line = c->lineno;
        if (!*value) {
            err_at(c, c->lineno, "webhook_headers_file: empty value; allowed: the path of a file of header lines");
            return;
        }
        t->webhook_headers_file = dup_or_fail(c, value);
        if (!t->webhook_headers_file) return;
        read_headers_file(c, t, value);
        return;
    case PDR_KT_TARGET_RATE: {
        int64_t v;
        int overflow;
        if (a->rate_line) {
            err_at(c, c->lineno, "rate_per_minute set twice in [target %s] (first at line %d); allowed: once",
                   t->name, a->rate_line);
            return;
        }
        a->rate_line = c->lineno;
        if (parse_int64(value, &v, &overflow) || overflow || v < kd->min || v > kd->max) {
            err_at(c, c->lineno, "rate_per_minute%s%s: %s; allowed: %lld to %lld", *value ? " = " : "", value,
                   *value ? "not an integer in range" : "empty value", (long long)kd->min, (long long)kd->max);
            return;
        }
        t->rate_per_minute = (int)v;
        return;
    }
    default:
        return;
    }
}

/* ---- sections ----------------------------------------------------------- */

/* Closes the current section: a target must have a routing key or a
** webhook_url; the webhook keys need webhook_url. */
static void section_end(load_ctx *c)
{
    if (c->sec == SEC_TARGET && c->cur_target >= 0) {
        const pdr_target *t = &c->cfg->targets[c->cur_target];
        const target_aux *a = &c->aux[c->cur_target];
        if (!a->rk_line && !a->rkf_line && !a->url_line)
            err_at(c, t->line,
                   "[target %s] has no routing key; allowed: routing_key = KEY (%d characters), "
                   "routing_key_file = PATH or webhook_url = URL",
                   t->name, PDR_ROUTING_KEY_LEN);
        if (!a->url_line && a->hf_line)
            err_at(c, a->hf_line,
                   "webhook_headers_file in [target %s], which has no webhook_url; allowed: only with webhook_url",
                   t->name);
        if (!a->url_line && a->rate_line)
            err_at(c, a->rate_line,
                   "rate_per_minute in [target %s], which has no webhook_url; allowed: only with webhook_url "
                   "(a routing key's rate is [pagerduty] rate_per_minute)",
                   t->name);
    }
    c->sec = SEC_IGNORED;
    c->cur_target = -1;
}

/* NAME of [target NAME]: letters, digits, '_', '.' and '-'. */
static int is_target_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) {
        int ch = (unsigned char)*s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

static void target_begin(load_ctx *c, const char *name)
{
    pdr_config *cfg = c->cfg;
    pdr_target *t;

    if (!*name) {
        err_at(c, c->lineno, "[%s] needs a name; allowed: [target NAME], NAME of letters, digits, '_', '.', '-'",
               c->sec_name);
        return;
    }
    if (!is_target_name(name)) {
        err_at(c, c->lineno, "bad target name '%s'; allowed: letters, digits, '_', '.', '-'", name);
        return;
    }
    for (size_t i = 0; i < cfg->n_targets; i++) {
        if (!strcmp(cfg->targets[i].name, name)) {
            err_at(c, c->lineno, "duplicate [target %s]; first defined at line %d", name, cfg->targets[i].line);
            return;
        }
    }
    if (cfg->n_targets >= PDR_CONFIG_MAX_TARGETS) {
        err_at(c, c->lineno, "too many targets; allowed: at most %d", PDR_CONFIG_MAX_TARGETS);
        return;
    }
    if (!cfg->targets) {
        cfg->targets = pdr_calloc(PDR_CONFIG_MAX_TARGETS, sizeof *cfg->targets);
        if (!cfg->targets) {
            c->fatal = PDR_ERR_NOMEM;
            return;
        }
    }
    t = &cfg->targets[cfg->n_targets];
    t->name = dup_or_fail(c, name);
    if (!t->name) return;
    t->line = c->lineno;
    c->cur_target = (int)cfg->n_targets++;
    c->sec = SEC_TARGET;
}

/* A "[name]" header at line c->lineno (name is len bytes, not terminated). */
static void section_begin(load_ctx *c, const char *name, size_t len)
{
    section_end(c);
    if (len >= sizeof c->sec_name) len = sizeof c->sec_name - 1;
    memcpy(c->sec_name, name, len);
    c->sec_name[len] = '\0';

    if (!strncmp(c->sec_name, "target", 6) && (c->sec_name[6] == '\0' || c->sec_name[6] == ' ')) {
        target_begin(c, c->sec_name[6] ? c->sec_name + 7 : "");
        return;
    }
    for (size_t i = 0; i < N_SECTIONS; i++) {
        if (i != SEC_TARGET && !strcmp(c->sec_name, section_names[i])) {
            c->sec = (int)i;
            return;
        }
    }
    err_at(c, c->lineno, "unknown section [%s]; allowed: %s", c->sec_name, SECTIONS_ALLOWED);
}

/* ---- the reader and the handler given to inih --------------------------- */

/* inih's "find a char of chars, or an inline comment" (';' after whitespace). */
static const char *find_chars_or_comment(const char *s, const char *chars)
{
    int was_space = 0;
    while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static void syntax_error(load_ctx *c, int line)
{
    if (!c->first_syntax_line) c->first_syntax_line = line;
    err_at(c, line, "syntax error: expected 'key = value' or '[section]'");
}

/* Decides what inih will make of this line, the way inih 55 does: comment,
** blank, continuation of the previous key (indented, after a key), section
** header, key = value, or a syntax error. Section headers are handled here,
** since inih tells the handler neither their line nor empty sections. */
static void classify_line(load_ctx *c, const char *line)
{
    const char *p = line, *end;

    c->kind = LK_OTHER;
    if (c->lineno == 1 && !strncmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    while (*p && isspace((unsigned char)*p)) p++;
    if (!*p || *p == ';' || *p == '#') return;
    if (c->prev_key && p > line) {
        c->kind = LK_CONTINUATION;
        return;
    }
    if (*p == '[') {
        end = find_chars_or_comment(p + 1, "]");
        if (*end == ']') {
            c->prev_key = 0;
            section_begin(c, p + 1, (size_t)(end - (p + 1)));
        } else {
            syntax_error(c, c->lineno);
            section_end(c);   /* its keys would land in the previous section: skip them */
        }
        return;
    }
    end = find_chars_or_comment(p, "=:");
    if (*end == '=' || *end == ':')
        c->prev_key = 1;
    else
        syntax_error(c, c->lineno);
}

/* fgets and getc on the file's text. */
static char *text_gets(char *str, int num, load_ctx *c)
{
    size_t n = 0;
    if (c->text_pos >= c->text_len) return NULL;
    while (n + 1 < (size_t)num && c->text_pos < c->text_len) {
        char ch = c->text[c->text_pos++];
        str[n++] = ch;
        if (ch == '\n') break;
    }
    str[n] = '\0';
    return str;
}

static int text_getc(load_ctx *c)
{
    return c->text_pos < c->text_len ? (unsigned char)c->text[c->text_pos++] : EOF;
}

/* fgets for inih that counts lines and turns a line over inih's limit into
** one error (and a blank line), instead of inih reading its tail as the next
** line. */
static char *cfg_reader(char *str, int num, void *stream)
{
    load_ctx *c = stream;
    size_t n;
    int ch;

    if (num < 2 || !text_gets(str, num, c)) return NULL;
    c->lineno++;
    n = strlen(str);
    if (n == (size_t)num - 1 && str[n - 1] != '\n') {
        ch = text_getc(c);
        if (ch == '\r') {
            ch = text_getc(c);
            if (ch != '\n' && ch != EOF) ch = 'x';
        }
        if (ch != '\n' && ch != EOF) {
            while (ch != '\n' && ch != EOF) ch = text_getc(c);
            err_at(c, c->lineno, "line too long (at most %d characters)", num - 1);
            {
                const char *p = str;
                while (isspace((unsigned char)*p)) p++;
                if (*p == '[') section_end(c);   /* a header we cannot read: skip its keys */
            }
            c->kind = LK_OTHER;
            str[0] = '\n';
            str[1] = '\0';
            return str;
        }
    }
    classify_line(c, str);
    return str;
}

static const pdr_config_key *key_find(int sec, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(key_table[i].section, section_names[sec]) && !strcmp(key_table[i].key, name))
            return &key_table[i];
    return NULL;
}

static void keys_allowed(int sec, char *out, size_t outsz)
{
    const char *names[N_KEYS + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(key_table[i].section, section_names[sec])) names[n++] = key_table[i].key;
    names[n] = NULL;
    join_names(names, out, outsz);
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *c = user;
    const pdr_config_key *kd;
    char allowed[512];

    (void)section;   /* ours, from the reader, is not truncated to 49 bytes */
    if (c->fatal) return 1;
    if (c->kind == LK_CONTINUATION) {
        err_at(c, c->lineno,
               "indented line would continue the value of '%s'; allowed: keys and sections at the "
               "start of the line",
               name);
        return 1;
    }
    if (!*name) {
        syntax_error(c, c->lineno);
        return 1;
    }
    if (c->sec == SEC_IGNORED) return 1;
    if (c->sec == SEC_NONE) {
        err_at(c, c->lineno, "key '%s' is outside any section; allowed: keys under %s", name, SECTIONS_ALLOWED);
        return 1;
    }
    kd = key_find(c->sec, name);
    if (!kd) {
        keys_allowed(c->sec, allowed, sizeof allowed);
        if (c->sec == SEC_TARGET)
            err_at(c, c->lineno, "unknown key '%s' in [%s]; allowed: %s", name, c->sec_name, allowed);
        else
            err_at(c, c->lineno, "unknown key '%s' in [%s]; allowed: %s", name, section_names[c->sec], allowed);
        return 1;
    }
    if (c->sec == SEC_TARGET) {
        target_set(c, kd, value);
        return 1;
    }
    if (!set_value(c, kd, value)) c->key_line[kd - key_table] = c->lineno;
    return 1;
}

/* The line that last set the key section/name (0: its default). */
static int line_of(const load_ctx *c, const char *section, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(key_table[i].section, section) && !strcmp(key_table[i].key, name)) return c->key_line[i];
    return 0;
}

pdr_rc pdr_token_file_read(const char *path, char *out, size_t outsz, char *errbuf, size_t errsz)
{
    char line[PDR_TOKEN_MAX + 2];   /* one more: a longer line is refused, not cut */
    size_t n;
    FILE *f;
    pdr_rc rc = PDR_ERR_CONFIG;

    if (outsz) out[0] = '\0';
    f = fopen(path, "re");
    if (!f) {
        snprintf(errbuf, errsz, "cannot read the auth token file: %s", strerror(errno));
        return PDR_ERR_CONFIG;
    }
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    n = strcspn(line, "\r\n");
    while (n && (line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
    line[n] = '\0';
    if (n == 0) {
        snprintf(errbuf, errsz, "the auth token file is empty; put the token on its first line");
    } else if (n >= outsz || n > PDR_TOKEN_MAX) {
        snprintf(errbuf, errsz, "the auth token is longer than %d bytes", PDR_TOKEN_MAX);
    } else {
        size_t i;
        for (i = 0; i < n && (unsigned char)line[i] >= 0x20 && line[i] != 0x7f; i++) {}
        if (i < n) {
            snprintf(errbuf, errsz, "the auth token holds a control character (byte %zu); allowed: printable text",
                     i + 1);
        } else {
            memcpy(out, line, n + 1);
            rc = PDR_OK;
        }
    }
    pdr_secure_zero(line, sizeof line);
    return rc;
}

/* [pagerduty] auth_token_file: read now, so that a missing or empty file
** is an error at its line, and a reload reads it again. */
static void upstream_token_load(load_ctx *c)
{
    pdr_config *cfg = c->cfg;
    char tok[PDR_TOKEN_MAX + 1], why[256];
    if (!cfg->upstream_token_file) return;
    if (pdr_token_file_read(cfg->upstream_token_file, tok, sizeof tok, why, sizeof why)) {
        err_at(c, line_of(c, "pagerduty", "auth_token_file"), "auth_token_file = %s: %s", cfg->upstream_token_file,
               why);
        return;
    }
    cfg->upstream_token = dup_or_fail(c, tok);
    pdr_secure_zero(tok, sizeof tok);
}

/* Checks that need more than one key. */
static void validate_whole(load_ctx *c)
{
    pdr_config *cfg = c->cfg;
    upstreams_build(c, line_of(c, "pagerduty", "proxy"), line_of(c, "pagerduty", "interface"));
    upstream_token_load(c);
    if (cfg->rate_per_minute == 0 && cfg->upstream != PDR_UPSTREAM_RELAY)
        err_at(c, line_of(c, "pagerduty", "rate_per_minute"),
               "rate_per_minute = 0 (no limiter) is allowed only with upstream = relay, where the site relay "
               "limits towards PagerDuty; allowed: 1 to 1000000, or set upstream = relay");
    /* After the whole file: [pagerduty] may come after the targets. */
    for (size_t i = 0; i < cfg->n_targets; i++)
        if (cfg->targets[i].webhook_url && !cfg->targets[i].rate_per_minute)
            cfg->targets[i].rate_per_minute = cfg->rate_per_minute;
    if (cfg->fallback_target && !pdr_config_target(cfg, cfg->fallback_target)) {
        err_at(c, line_of(c, "agent", "fallback_target"),
               "fallback_target = %s: no [target %s] in this file; allowed: the NAME of a [target NAME]",
               cfg->fallback_target, cfg->fallback_target);
    }
    if (cfg->backoff_max_ms < cfg->backoff_initial_ms) {
        int li = line_of(c, "pagerduty", "backoff_initial_ms"), lm = line_of(c, "pagerduty", "backoff_max_ms");
        err_at(c, li > lm ? li : lm,
               "backoff_max_ms = %lld is less than backoff_initial_ms = %lld; allowed: backoff_max_ms >= "
               "backoff_initial_ms",
               (long long)cfg->backoff_max_ms, (long long)cfg->backoff_initial_ms);
    }
}

/* ---- reading the file --------------------------------------------------- */

/* What a file that is not a regular file is, for the message. */
static const char *file_kind(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* Refuses text inih would misread: a NUL byte (inih stops the line there)
** and a CR not followed by LF (inih does not end a line at a CR alone: a
** file with classic Mac OS line endings is one line, all but its first
** section silently lost). A CR at the very end is harmless. */
static pdr_rc text_screen(load_ctx *c)
{
    const char *t = c->text;
    size_t n = c->text_len;
    int line = 1;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '\n') {
            line++;
        } else if (t[i] == '\0') {
            err_at(c, line, "contains a NUL byte: not a text file; allowed: a plain text INI file");
            return PDR_ERR_CONFIG;
        } else if (t[i] == '\r' && i + 1 < n && t[i + 1] != '\n') {
            if (!memchr(t, '\n', n))
                err_at(c, line, "lines end with CR only (classic Mac OS line endings); allowed: lines ending "
                                "with LF or CRLF: convert the file (e.g. tr '\\r' '\\n')");
            else
                err_at(c, line, "a CR not followed by LF (a line ending with CR only); allowed: lines ending "
                                "with LF or CRLF");
            return PDR_ERR_CONFIG;
        }
    }
    return PDR_OK;
}

/* Reads the whole file at path into c->text: a regular file of at most
** CONFIG_FILE_MAX bytes, else refused with the reason. O_NONBLOCK: opening a
** FIFO does not wait for a writer; the type is checked with fstat on the
** opened descriptor (what is read is what was checked). */
static pdr_rc config_file_read(load_ctx *c, const char *path)
{
    struct stat sb;
    size_t n = 0;
    pdr_rc rc = PDR_OK;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd < 0) {
        err_at(c, 0, "cannot open: %s", strerror(errno));
        return PDR_ERR_IO;
    }
    if (fstat(fd, &sb) != 0) {
        err_at(c, 0, "cannot read: %s", strerror(errno));
        rc = PDR_ERR_IO;
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        err_at(c, 0, "is %s, not a config file; allowed: a regular file", file_kind(sb.st_mode));
        rc = PDR_ERR_CONFIG;
        goto out;
    }
    if (sb.st_size > CONFIG_FILE_MAX) {
        err_at(c, 0, "is %lld bytes; allowed: a config file of at most 1 MiB (%d bytes)",
               (long long)sb.st_size, CONFIG_FILE_MAX);
        rc = PDR_ERR_CONFIG;
        goto out;
    }
    /* Room for the size fstat gave and one byte more; a file that grew
    ** since gets more room, up to one byte over the limit, so that a file
    ** grown past it is seen. */
    size_t cap = (size_t)sb.st_size + 1;
    c->text = pdr_malloc(cap);
    if (!c->text) {
        rc = PDR_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap == CONFIG_FILE_MAX + 1) break;
            size_t ncap = cap * 2 < CONFIG_FILE_MAX + 1 ? cap * 2 : CONFIG_FILE_MAX + 1;
            char *grown = pdr_realloc(c->text, ncap);
            if (!grown) {
                rc = PDR_ERR_NOMEM;
                goto out;
            }
            c->text = grown;
            cap = ncap;
        }
        ssize_t r = read(fd, c->text + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            err_at(c, 0, "cannot read: %s", strerror(errno));
            rc = PDR_ERR_IO;
            goto out;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n > CONFIG_FILE_MAX) {
        err_at(c, 0, "is over 1 MiB; allowed: a config file of at most 1 MiB (%d bytes)", CONFIG_FILE_MAX);
        rc = PDR_ERR_CONFIG;
        goto out;
    }
    c->text_len = n;
    rc = text_screen(c);
out:
    close(fd);
    return rc;
}

/* ---- the table, for those who describe or compare keys ----------------- */

const pdr_config_key *pdr_config_keys(size_t *n)
{
    if (n) *n = N_KEYS;
    return key_table;
}

char *pdr_config_key_allowed(const pdr_config_key *k, char *out, size_t outsz)
{
    char lo[32], hi[32];
    size_t len = 0;

    if (!out || !outsz) return out;
    out[0] = '\0';
    if (!k) return out;
    switch (k->type) {
    case PDR_KT_STRING:
        if (k->max > 0)
            snprintf(out, outsz, "at most %lld characters", (long long)k->max);
        else
            snprintf(out, outsz, "text");
        break;
    case PDR_KT_URL: snprintf(out, outsz, "an http:// or https:// URL"); break;
    case PDR_KT_URL_LIST:
        snprintf(out, outsz, "1 to %d http:// or https:// URLs, comma-separated", PDR_CONFIG_MAX_UPSTREAMS);
        break;
    case PDR_KT_PER_URL: snprintf(out, outsz, PER_URL_ALLOWED); break;
    case PDR_KT_INT:
    case PDR_KT_INT64: snprintf(out, outsz, "%lld to %lld", (long long)k->min, (long long)k->max); break;
    case PDR_KT_MS: snprintf(out, outsz, "%lld to %lld (ms)", (long long)k->min, (long long)k->max); break;
    case PDR_KT_DURATION:
        snprintf(out, outsz, "%s to %s", pdr_duration_format(k->min, lo, sizeof lo),
                 pdr_duration_format(k->max, hi, sizeof hi));
        break;
    case PDR_KT_SIZE:
        snprintf(out, outsz, "%s to %s (bytes, or KB, MB, GB: powers of 1024)",
                 pdr_size_format(k->min, lo, sizeof lo), pdr_size_format(k->max, hi, sizeof hi));
        break;
    case PDR_KT_ENUM: join_names(k->names, out, outsz); break;
    case PDR_KT_ROUTING_KEY: snprintf(out, outsz, "%d letters and digits", PDR_ROUTING_KEY_LEN); break;
    case PDR_KT_ROUTING_KEY_FILE: snprintf(out, outsz, "a file name"); break;
    case PDR_KT_MATCH: snprintf(out, outsz, "label=value, label!=value, label=~regex, label!~regex"); break;
    case PDR_KT_WEBHOOK_URL: snprintf(out, outsz, "an http:// or https:// URL"); break;
    case PDR_KT_WEBHOOK_HEADERS: snprintf(out, outsz, "a file name"); break;
    case PDR_KT_TARGET_RATE: snprintf(out, outsz, "%lld to %lld", (long long)k->min, (long long)k->max); break;
    }
    len = strlen(out);
    if ((k->flags & PDR_KF_OPTIONAL) && len < outsz) snprintf(out + len, outsz - len, ", or empty");
    return out;
}

char *pdr_config_key_value(const pdr_config_key *k, const pdr_config *cfg, char *out, size_t outsz)
{
    if (!out || !outsz) return out;
    out[0] = '\0';
    if (!k || !cfg || !k->size) return out;
    const char *f = (const char *)cfg + k->offset;
    int iv;
    int64_t v;
    switch (k->type) {
    case PDR_KT_STRING:
    case PDR_KT_URL:
    case PDR_KT_URL_LIST:
    case PDR_KT_PER_URL: {
        const char *sv;
        memcpy(&sv, f, sizeof sv);
        snprintf(out, outsz, "%s", sv ? sv : "");
        break;
    }
    case PDR_KT_INT:
        memcpy(&iv, f, sizeof iv);
        snprintf(out, outsz, "%d", iv);
        break;
    case PDR_KT_ENUM:
        memcpy(&iv, f, sizeof iv);
        for (int i = 0; k->names[i]; i++)
            if (i == iv) snprintf(out, outsz, "%s", k->names[i]);
        break;
    case PDR_KT_INT64:
    case PDR_KT_MS:
        memcpy(&v, f, sizeof v);
        snprintf(out, outsz, "%lld", (long long)v);
        break;
    case PDR_KT_DURATION:
        memcpy(&v, f, sizeof v);
        if (v || !(k->flags & PDR_KF_OPTIONAL)) pdr_duration_format(v, out, outsz);
        break;
    case PDR_KT_SIZE:
        memcpy(&v, f, sizeof v);
        pdr_size_format(v, out, outsz);
        break;
    case PDR_KT_ROUTING_KEY:
    case PDR_KT_ROUTING_KEY_FILE:
    case PDR_KT_MATCH:
    case PDR_KT_WEBHOOK_URL:
    case PDR_KT_WEBHOOK_HEADERS:
    case PDR_KT_TARGET_RATE: break;
    }
    return out;
}

/* Is a field of this type a char * (compared and copied as text)? */
static int is_text(pdr_key_type t)
{
    return t == PDR_KT_STRING || t == PDR_KT_URL || t == PDR_KT_URL_LIST || t == PDR_KT_PER_URL;
}

int pdr_config_key_differs(const pdr_config_key *k, const pdr_config *a, const pdr_config *b)
{
    if (!k || !a || !b || !k->size) return 0;
    const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
    if (is_text(k->type)) {
        const char *sa, *sb;
        memcpy(&sa, fa, sizeof sa);
        memcpy(&sb, fb, sizeof sb);
        if (!sa || !sb) return sa != sb;
        return strcmp(sa, sb) != 0;
    }
    /* ints, enums, int64 durations: the field's bytes */
    return memcmp(fa, fb, k->size) != 0;
}

pdr_rc pdr_config_keep_running(pdr_config *n, const pdr_config *running)
{
    if (!n || !running) return PDR_ERR_INVALID;
    for (size_t i = 0; i < N_KEYS; i++) {
        const pdr_config_key *k = &key_table[i];
        char *fn = (char *)n + k->offset;
        const char *fr = (const char *)running + k->offset;
        if (k->reload != PDR_RELOAD_KEEP || !k->size) continue;
        if (is_text(k->type)) {
            char *old, *copy = NULL;
            const char *sr;
            memcpy(&sr, fr, sizeof sr);
            if (sr && !(copy = strdup(sr))) return PDR_ERR_NOMEM;
            memcpy(&old, fn, sizeof old);
            free(old);
            memcpy(fn, &copy, sizeof copy);
        } else {
            memcpy(fn, fr, k->size);
        }
    }
    return PDR_OK;
}

/* ---- public API --------------------------------------------------------- */

static pdr_rc config_new(load_ctx *c, const char *path)
{
    c->cfg = pdr_calloc(1, sizeof *c->cfg);
    if (!c->cfg) return PDR_ERR_NOMEM;
    c->cfg->path = pdr_strdup(path);
    if (!c->cfg->path) return PDR_ERR_NOMEM;
    pdr_rc rc = apply_defaults(c);
    if (rc == PDR_OK) upstreams_build(c, 0, 0);   /* a file's keys rebuild them (validate_whole) */
    return c->fatal ? c->fatal : rc;
}

pdr_rc pdr_config_defaults(pdr_config **out)
{
    load_ctx c;
    pdr_config_errors errs = {0};
    pdr_rc rc;

    if (!out) return PDR_ERR_INVALID;
    *out = NULL;
    ctx_init(&c, "(defaults)", &errs);
    rc = config_new(&c, "(defaults)");
    if (rc == PDR_OK)
        *out = c.cfg;
    else
        pdr_config_destroy(c.cfg);
    pdr_config_errors_cleanup(&errs);
    return rc;
}

pdr_rc pdr_config_load(const char *path, pdr_config **out, pdr_config_errors *errs)
{
    pdr_config_errors local = {0};
    load_ctx *c = NULL;
    pdr_rc rc = PDR_OK;
    int ini_rc;

    if (out) *out = NULL;
    if (errs) {
        errs->msgs = NULL;
        errs->n = 0;
    }
    if (!path || !out) return PDR_ERR_INVALID;
    c = pdr_malloc(sizeof *c);   /* a few KB: kept off the stack */
    if (!c) return PDR_ERR_NOMEM;
    ctx_init(c, path, errs ? errs : &local);

    rc = config_new(c, path);
    if (rc) goto out;
    rc = config_file_read(c, path);
    if (rc) {
        if (c->fatal) rc = c->fatal;
        goto out;
    }
    ini_rc = ini_parse_stream(cfg_reader, c, cfg_handler, c);
    section_end(c);
    if (ini_rc < 0) {
        rc = PDR_ERR_NOMEM;
        goto out;
    }
    if (ini_rc > 0 && ini_rc != c->first_syntax_line) syntax_error(c, ini_rc);
    validate_whole(c);
    if (c->fatal)
        rc = c->fatal;
    else if (c->n_errs_seen)
        rc = PDR_ERR_CONFIG;
out:
    free(c->text);
    if (rc == PDR_OK)
        *out = c->cfg;
    else
        pdr_config_destroy(c->cfg);
    pdr_config_errors_cleanup(&local);
    free(c);
    return rc;
}

void pdr_config_destroy(pdr_config *cfg)
{
    if (!cfg) return;
    free(cfg->path);
    free(cfg->data_dir);
    free(cfg->source);
    free(cfg->fallback_target);
    free(cfg->listen_address);
    free(cfg->unix_socket);
    free(cfg->auth_token_file);
    free(cfg->pd_url);
    free(cfg->upstream_token_file);
    if (cfg->upstream_token) {
        pdr_secure_zero(cfg->upstream_token, strlen(cfg->upstream_token));
        free(cfg->upstream_token);
    }
    free(cfg->ca_file);
    free(cfg->proxy);
    free(cfg->interface);
    upstreams_free(cfg);
    for (size_t i = 0; i < cfg->n_targets; i++) {
        pdr_target *t = &cfg->targets[i];
        for (size_t m = 0; m < t->n_matchers; m++) pdr_matcher_free(&t->matchers[m]);
        free(t->matchers);
        free(t->name);
        free(t->routing_key_file);
        pdr_secure_zero(t->routing_key, sizeof t->routing_key);
        free(t->webhook_url);
        free(t->webhook_headers_file);
        headers_free(t);
    }
    free(cfg->targets);
    free(cfg);
}

void pdr_config_errors_cleanup(pdr_config_errors *errs)
{
    if (!errs) return;
    for (size_t i = 0; i < errs->n; i++) free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

const pdr_target *pdr_config_target(const pdr_config *cfg, const char *name)
{
    if (!cfg || !name) return NULL;
    for (size_t i = 0; i < cfg->n_targets; i++)
        if (!strcmp(cfg->targets[i].name, name)) return &cfg->targets[i];
    return NULL;
}

const char *pdr_target_key(const pdr_target *t)
{
    return t->webhook_url ? t->webhook_key : t->routing_key;
}

int pdr_key_is_webhook(const char *key)
{
    return key && !strncmp(key, PDR_WEBHOOK_KEY_PREFIX, PDR_WEBHOOK_KEY_PREFIX_LEN);
}

char *pdr_url_origin(const char *url, char *out, size_t outsz)
{
    const char *host, *end, *at;
    size_t scheme;
    if (!out || !outsz) return out;
    out[0] = '\0';
    if (!url) return out;
    host = strstr(url, "://");
    if (!host) {
        snprintf(out, outsz, "…");
        return out;
    }
    scheme = (size_t)(host - url) + 3;
    host += 3;
    end = host + strcspn(host, "/?#");
    at = memchr(host, '@', (size_t)(end - host));
    if (at) host = at + 1;
    snprintf(out, outsz, "%.*s%.*s%s", (int)scheme, url, (int)(end - host), host, *end ? "/…" : "");
    return out;
}

const char *pdr_severity_name(int sev)
{
    return sev >= 0 && sev < 4 ? severity_names[sev] : "error";
}

const char *pdr_log_level_name(pdr_log_level l)
{
    if ((int)l >= 0 && (int)l < 4) return log_level_names[l];
    return "unknown";
}
