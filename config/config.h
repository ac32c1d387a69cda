/*
** config.h — pdrelay's configuration: one immutable struct loaded from an INI
** file by inih, validated as a whole.
**
** Every key has a default. config.c's key table (pdr_config_keys()) is the
** one description of every key: section, name, type, default, allowed range,
** a one-line description and whether SIGHUP applies it. `pdrelay config
** keys`, the man page, README.md's configuration reference, the shipped
** config/pdrelay.ini and the reload's restart warning are generated from it
** or tested against it (tests/unit/test_config.c, tests/cli/test_cli.c).
** Durations accept the
** units ms, s, m, h, d and are stored in milliseconds. Errors are collected,
** not stopped at: pdr_config_load() reports every problem of a file, each as
** "FILE:LINE: what is wrong; what is allowed".
**
** Ownership: pdr_config_load() returns a heap object the caller frees with
** pdr_config_destroy() (NULL accepted). The error list is caller-owned and
** freed with pdr_config_errors_cleanup().
*/
#ifndef PDR_CONFIG_H
#define PDR_CONFIG_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "../agent/pdr.h"

/* Caps: nothing in a config grows without bound. */
#define PDR_CONFIG_MAX_TARGETS 64    /* [target NAME] sections per file */
#define PDR_CONFIG_MAX_MATCHERS 32   /* match lines per target */
#define PDR_CONFIG_MAX_ERRORS 100    /* errors recorded; then one "too many errors" line */
#define PDR_CONFIG_MAX_UPSTREAMS 4   /* entries of [pagerduty] url */
#define PDR_TOKEN_MAX 4094           /* bytes of an auth token (pdr_token_file_read) */
#define PDR_CONFIG_MAX_HEADERS 32    /* lines of a webhook_headers_file */

/* Webhook targets ([target NAME] with webhook_url): their events are queued
** in the outbox under the key "webhook:NAME", which can never be a
** PagerDuty routing key (those are 32 letters and digits, no ':'), so a
** webhook target is a lane of its own in the sender (agent/webhook.h). */
#define PDR_WEBHOOK_KEY_PREFIX "webhook:"
#define PDR_WEBHOOK_KEY_PREFIX_LEN 8
#define PDR_WEBHOOK_NAME_MAX 64      /* NAME of a webhook target, in bytes */
/* The longest outbox key: a routing key or "webhook:NAME". */
#define PDR_OUTBOX_KEY_MAX (PDR_WEBHOOK_KEY_PREFIX_LEN + PDR_WEBHOOK_NAME_MAX)

typedef enum pdr_log_level {
    PDR_LOG_ERROR = 0,
    PDR_LOG_WARN = 1,
    PDR_LOG_INFO = 2,
    PDR_LOG_DEBUG = 3
} pdr_log_level;

typedef enum pdr_sync_mode {
    PDR_SYNC_FULL = 0,    /* one fsync per commit: survives power loss */
    PDR_SYNC_NORMAL = 1   /* WAL synced at checkpoints: may lose last commits on power loss */
} pdr_sync_mode;

/* [outbox] resolved_while_queued: what the sender does when a trigger that
** was held (the link was down) reaches the head of its key with a later
** resolve of the same dedup_key still pending behind it. */
typedef enum pdr_rwq_mode {
    PDR_RWQ_NOTE = 0,       /* trigger as severity info, summary prefixed
                            ** "[resolved while offline] ", then the resolve */
    PDR_RWQ_SEND = 1,       /* both go out as queued */
    PDR_RWQ_COLLAPSE = 2    /* both (and any acknowledge between) are dropped,
                            ** counted and logged; as NOTE when PagerDuty already
                            ** has an open incident for the dedup_key */
} pdr_rwq_mode;

/* [pagerduty] upstream: what answers the sender's requests. */
typedef enum pdr_upstream_kind {
    PDR_UPSTREAM_PAGERDUTY = 0, /* PagerDuty itself (or a mock of it) */
    PDR_UPSTREAM_RELAY = 1      /* another pdrelay (a site relay): it judges
                                ** events as PagerDuty does, so a 401/403 is
                                ** its token check, held and retried (pd_client.h),
                                ** and rate_per_minute = 0 may leave the
                                ** PagerDuty-facing limit to it */
} pdr_upstream_kind;

typedef enum pdr_match_op {
    PDR_MATCH_EQ = 1,       /* label=value   */
    PDR_MATCH_NE = 2,       /* label!=value  */
    PDR_MATCH_RE = 3,       /* label=~regex  (POSIX ERE, anchored at both ends) */
    PDR_MATCH_NRE = 4       /* label!~regex  */
} pdr_match_op;

typedef struct pdr_matcher {
    char *label;
    pdr_match_op op;
    char *value;            /* the value or the regex source as written */
    regex_t re;             /* compiled for RE/NRE only */
} pdr_matcher;

/* One line of a webhook_headers_file. The value is a secret: it is sent
** and never shown (not in logs, metrics, errors or `config check`). */
typedef struct pdr_header {
    char *name;
    char *value;
} pdr_header;

typedef struct pdr_target {
    char *name;                              /* NAME of [target NAME] */
    char routing_key[PDR_ROUTING_KEY_LEN + 1]; /* "" for a webhook target */
    char *routing_key_file;                  /* NULL when routing_key was inline */
    pdr_matcher *matchers;                   /* all must hold; none = match all */
    size_t n_matchers;
    int line;                                /* line of the section header */
    /* A webhook target (webhook_url set, no routing key): */
    char *webhook_url;                       /* NULL for a PagerDuty target */
    char *webhook_headers_file;              /* NULL when none */
    pdr_header *headers;                     /* from that file, in file order */
    size_t n_headers;
    int rate_per_minute;                     /* requests per minute to the URL: the
                                             ** target's, else [pagerduty]
                                             ** rate_per_minute; 0 for PagerDuty targets */
    char webhook_key[PDR_OUTBOX_KEY_MAX + 1]; /* "webhook:NAME"; "" for PagerDuty targets */
} pdr_target;

/* One entry of [pagerduty] url with its proxy and interface (the entries
** of the same position); agent/upstream.h chooses among them. */
typedef struct pdr_upstream {
    char *url;                  /* http:// or https://, no trailing '/' */
    char *proxy;                /* NULL: none of its own (libcurl still honours
                                ** https_proxy / no_proxy) */
    char *interface;            /* NULL: the system's choice; else libcurl's
                                ** CURLOPT_INTERFACE ("eth1", "host!10.0.0.2", …) */
} pdr_upstream;

typedef struct pdr_config {
    char *path;                 /* the file it was loaded from */

    /* [agent] */
    char *data_dir;             /* default "./var" */
    pdr_log_level log_level;    /* default info */
    char *source;               /* default: the host name */
    int syslog;                 /* default false: also log to syslog(3) */
    int default_severity;       /* default "error": PagerDuty severity of an alert
                                ** whose severity is missing or unknown; an index
                                ** for pdr_severity_name() */
    int64_t outage_log_interval_ms; /* default 10m, >= 1s: while the uplink is
                                ** down, one summary line per interval */
    char *fallback_target;      /* NULL when unset: the target (an existing one)
                                ** that gets every alert matching no PagerDuty
                                ** target (agent/normalize.c) */

    /* [listen] */
    char *listen_address;       /* default "127.0.0.1" */
    int listen_port;            /* default 8787, 0..65535 (0 = disabled) */
    char *unix_socket;          /* NULL when unset */
    char *auth_token_file;      /* NULL when unset */
    int max_connections;        /* default 4096: HTTP connections open at once */
    int max_connections_per_client; /* default 2048, 0 = no limit: connections from one address */
    int listen_threads;         /* default 0 (automatic: half the CPUs, at least 1):
                                ** event-loop threads serving the connections */
    int64_t idle_timeout_ms;    /* default 30s: a connection on which nothing
                                ** arrives this long is closed */
    int64_t request_timeout_ms; /* default 10s: a request (headers and body) must
                                ** arrive whole within this */

    /* [pagerduty] */
    char *pd_url;               /* default "https://events.pagerduty.com": the url
                                ** list, entries without trailing '/', joined by
                                ** ','; one entry is the URL alone. Requests use
                                ** upstreams[], not this */
    pdr_upstream_kind upstream; /* default pagerduty */
    char *upstream_token_file;  /* [pagerduty] auth_token_file; NULL when unset */
    char *upstream_token;       /* its first line, read at load (pdr_token_file_read);
                                ** NULL when unset; never logged or printed */
    int rate_per_minute;        /* default 120, >= 1; 0 (upstream = relay only):
                                ** no client-side limiter */
    int burst;                  /* default 10, >= 1 */
    int64_t rate_window_ms;     /* default 60s: PagerDuty's look-back; the allowance per
                                ** window is rate_per_minute * rate_window / 1 minute */
    int64_t backoff_initial_ms; /* default 100 */
    int64_t backoff_max_ms;     /* default 5000, >= backoff_initial_ms */
    int64_t timeout_ms;         /* default 10000: whole request; also the shutdown grace */
    int64_t connect_timeout_ms; /* default 5000 */
    int concurrency;            /* default 16: requests in flight at once, all keys */
    char *ca_file;              /* NULL when unset */
    char *proxy;                /* NULL when unset; else one entry per url entry,
                                ** joined by ',', "-" for none (upstreams[]) */
    char *interface;            /* NULL when unset; as proxy */
    int64_t failback_after_ms;  /* default 10m: the first url must answer probes
                                ** this long before requests go back to it */
    int64_t down_probe_max_ms;  /* default 60s, >= 1ms: while the uplink is down,
                                ** one probe request on an exponential backoff
                                ** capped by this */
    int64_t throttle_backoff_ms;/* default 30s: a key answered 429 without
                                ** Retry-After waits at least this long, and its
                                ** rate is halved for the next rate window */

    pdr_upstream upstreams[PDR_CONFIG_MAX_UPSTREAMS]; /* url, proxy and interface
                                ** by entry, in url's order */
    size_t n_upstreams;         /* 1 to PDR_CONFIG_MAX_UPSTREAMS */

    /* [outbox] */
    pdr_sync_mode synchronous;  /* default full */
    int64_t commit_interval_ms; /* default 0, at most 1s: the writer waits up to
                                ** this after a batch's first job for more
                                ** (agent/writer.h) */
    int64_t max_events;         /* default 1000000, >= 1: pending events */
    int64_t max_bytes;          /* default 256MB: the pending events' bodies */
    int64_t min_free;           /* default 64MB, 0 = none: free space left on
                                ** data_dir's filesystem */
    int64_t max_dead;           /* default 10000: dead letters kept */
    int64_t max_dead_age_ms;    /* default 7d: a dead letter older is dropped */
    int64_t max_age_ms;         /* default 0 = never expire */
    int64_t delay_note_after_ms;/* default 5m, 0 = off: an event sent more than
                                ** this after it arrived gets
                                ** custom_details.pdrelay {queued_at, attempts,
                                ** delayed_s} (annotate.h) */
    pdr_rwq_mode resolved_while_queued; /* default note */

    /* [dedup] */
    int64_t dedup_ttl_ms;       /* default 24h */
    int64_t cleanup_interval_ms;/* default 1h */

    pdr_target *targets;        /* in file order */
    size_t n_targets;
} pdr_config;

/* One error: already formatted as "FILE:LINE: message" (or "FILE: message"
** when no line applies). */
typedef struct pdr_config_errors {
    char **msgs;
    size_t n;
} pdr_config_errors;

/* ---- the key table ------------------------------------------------------ */

typedef enum pdr_key_type {
    PDR_KT_STRING,           /* char *; max = longest allowed length (0: no limit) */
    PDR_KT_URL,              /* char *; http:// or https://, trailing '/' removed */
    PDR_KT_URL_LIST,         /* char *; 1 to PDR_CONFIG_MAX_UPSTREAMS comma-separated
                             ** PDR_KT_URL entries, stored joined by ',' */
    PDR_KT_PER_URL,          /* char *; one comma-separated entry per entry of the
                             ** url list ("-": none), stored joined by ','; the
                             ** count is checked against url after the file */
    PDR_KT_INT,              /* int in [min, max] */
    PDR_KT_INT64,            /* int64_t in [min, max] */
    PDR_KT_MS,               /* int64_t milliseconds, a plain integer in [min, max] */
    PDR_KT_DURATION,         /* int64_t milliseconds, "30s" etc., in [min, max] */
    PDR_KT_SIZE,             /* int64_t bytes, "256MB" etc. (pdr_size_parse), in [min, max] */
    PDR_KT_ENUM,             /* an int (enum) field; value = index in names[] */
    PDR_KT_ROUTING_KEY,      /* [target]: the key inline */
    PDR_KT_ROUTING_KEY_FILE, /* [target]: a file holding the key */
    PDR_KT_MATCH,            /* [target]: one label matcher, repeatable */
    PDR_KT_WEBHOOK_URL,      /* [target]: the URL a webhook target POSTs to */
    PDR_KT_WEBHOOK_HEADERS,  /* [target]: a file of "Name: value" header lines */
    PDR_KT_TARGET_RATE       /* [target]: an int in [min, max], webhook targets only */
} pdr_key_type;

#define PDR_KF_OPTIONAL 1u   /* an empty value means unset (NULL or 0) */

/* What SIGHUP does with a changed key. */
typedef enum pdr_key_reload {
    PDR_RELOAD_APPLIES = 0,  /* the reloaded value is used from then on */
    PDR_RELOAD_RESTART = 1,  /* read once at start: a change is named in a
                             ** warning and takes effect at the next start */
    PDR_RELOAD_KEEP = 2      /* as RESTART, and the reloaded config keeps the
                             ** running value (pdr_config_keep_running), so
                             ** that nothing reading the reloaded config
                             ** disagrees with what runs; its own warning
                             ** shows both values */
} pdr_key_reload;

typedef struct pdr_config_key {
    const char *section;        /* "agent" … "target" (for [target NAME]) */
    const char *key;
    pdr_key_type type;
    unsigned flags;             /* PDR_KF_* */
    const char *def;            /* default as it would be written; "" with
                                ** PDR_KF_OPTIONAL: unset; NULL: none (source:
                                ** the host name; target keys) */
    size_t offset, size;        /* the field in pdr_config (0, 0: [target]) */
    int64_t min, max;
    const char *const *names;   /* PDR_KT_ENUM: NULL-terminated, index = value */
    pdr_key_reload reload;
    const char *desc;           /* one line, plain ASCII text, ends with '.' */
} pdr_config_key;

/* The table, in file order (sections agent, listen, pagerduty, outbox,
** dedup, target); *n gets its length. */
const pdr_config_key *pdr_config_keys(size_t *n);

/* What a value may be, as text: "0 to 65535", "1s to 3650d",
** "error | warn | info | debug", "at most 107 characters", … */
char *pdr_config_key_allowed(const pdr_config_key *k, char *out, size_t outsz);

/* k's value in cfg as it would be written in the file ("30s", "info", ""
** for unset). Not for [target] keys (out = ""). */
char *pdr_config_key_value(const pdr_config_key *k, const pdr_config *cfg, char *out, size_t outsz);

/* Do a and b hold different values of k? (0 for [target] keys.) */
int pdr_config_key_differs(const pdr_config_key *k, const pdr_config *a, const pdr_config *b);

/* Copies into n the running value of every PDR_RELOAD_KEEP key.
** PDR_OK or PDR_ERR_NOMEM (n unchanged for the key that failed). */
pdr_rc pdr_config_keep_running(pdr_config *n, const pdr_config *running);

/* Loads and validates path. On success returns PDR_OK and *out (caller
** destroys). On failure returns PDR_ERR_CONFIG (or PDR_ERR_IO when the file
** cannot be read, or PDR_ERR_NOMEM), *out = NULL, and errs holds every
** error found. errs may be NULL when the caller does not want the messages.
** A path that is not a plain text file is refused with PDR_ERR_CONFIG and
** one error: a directory, device, FIFO or socket, a file over 1 MiB, a NUL
** byte ("FILE:LINE: contains a NUL byte…"), a CR not followed by LF
** ("FILE:1: lines end with CR only…" for classic Mac OS line endings). */
pdr_rc pdr_config_load(const char *path, pdr_config **out, pdr_config_errors *errs);

/* A config with every default and no targets (path "(defaults)"). */
pdr_rc pdr_config_defaults(pdr_config **out);

void pdr_config_destroy(pdr_config *cfg);
void pdr_config_errors_cleanup(pdr_config_errors *errs);

/* Parses a duration: a non-negative integer followed by a unit, "250ms",
** "30s", "5m", "24h", "7d"; a bare "0" means zero. A unit is required
** otherwise. Returns PDR_OK or PDR_ERR_INVALID (also on overflow). */
pdr_rc pdr_duration_parse(const char *s, int64_t *ms_out);

/* Formats ms as the largest exact unit ("90s", "24h", "1500ms") into out. */
char *pdr_duration_format(int64_t ms, char *out, size_t outsz);

/* Parses a size in bytes: a non-negative integer, bare (bytes) or followed
** by a unit, B, KB, MB, GB or TB (also K, M, G, T and KiB, MiB, GiB, TiB);
** every unit is a power of 1024 ("64MB" is 67108864 bytes, as df -h
** counts). Returns PDR_OK or PDR_ERR_INVALID (also on overflow). */
pdr_rc pdr_size_parse(const char *s, int64_t *bytes_out);

/* Formats bytes as the largest exact unit ("256MB", "1536KB", "100") into out. */
char *pdr_size_format(int64_t bytes, char *out, size_t outsz);

/* Reads a token file: its first line, trailing spaces, tabs and the line
** end removed (the rules of [listen] and [pagerduty] auth_token_file). On
** success out holds the token (NUL-terminated, never empty). On failure
** returns PDR_ERR_CONFIG (unreadable, empty, longer than outsz - 1 bytes,
** or a control character in it) and errbuf says why, without the token
** or the path: "cannot read the auth token file: No such file or
** directory". The caller wipes out after use. */
pdr_rc pdr_token_file_read(const char *path, char *out, size_t outsz, char *errbuf, size_t errsz);

/* Overwrites a secret (a key, a token) so it does not linger in freed memory. */
void pdr_secure_zero(void *p, size_t n);

/* Does the target's matcher list hold for these labels? get(ctx, name)
** returns the label's value or NULL when absent (an absent label matches
** like the empty string, as in Prometheus). */
typedef const char *(*pdr_label_get_fn)(void *ctx, const char *name);
int pdr_target_matches(const pdr_target *t, pdr_label_get_fn get, void *ctx);

/* Finds a target by name; NULL if none. */
const pdr_target *pdr_config_target(const pdr_config *cfg, const char *name);

/* The outbox key of a target: its routing key, or "webhook:NAME" for a
** webhook target. */
const char *pdr_target_key(const pdr_target *t);

/* Is key an outbox key of a webhook target ("webhook:NAME")? */
int pdr_key_is_webhook(const char *key);

/* url for display without what may be a secret: only "scheme://host[:port]"
** and "/…" when a path or query followed (many webhook services put a
** token in the path); a user:password part is dropped too. Returns out. */
char *pdr_url_origin(const char *url, char *out, size_t outsz);

/* "critical", "error", "warning", "info" for 0..3 (others: "error") */
const char *pdr_severity_name(int sev);

/* "error", "warn", "info", "debug" */
const char *pdr_log_level_name(pdr_log_level l);

#endif /* PDR_CONFIG_H */
