/*
** pdr.h — things every module of pdrelay shares: the one result enum, the
** event kinds and actions, the version, and small helpers (redaction, hashing).
**
** Result codes have fixed numbers that are never reused (curl's habit). Codes
** of third-party libraries (SQLite, libcurl, mbedTLS, libmicrohttpd) are
** translated into these where they enter pdrelay.
*/
#ifndef PDR_H
#define PDR_H

#include <stddef.h>
#include <stdint.h>

/* The version comes from CMake's project(VERSION); the fallback keeps the
** header usable outside the build. */
#ifdef PDR_VERSION_CMAKE
#define PDR_VERSION PDR_VERSION_CMAKE
#else
#define PDR_VERSION "0.0.0-unknown"
#endif

typedef enum pdr_rc {
    PDR_OK = 0,              /* success */
    PDR_COALESCED = 1,       /* push: an identical event is already pending; nothing stored */
    PDR_ERR_NOMEM = 2,       /* out of memory */
    PDR_ERR_FULL = 3,        /* outbox holds max_events rows; retry later */
    PDR_ERR_IO = 4,          /* I/O error reading or writing the database or a file */
    PDR_ERR_CORRUPT = 5,     /* database file is corrupt or not a pdrelay database */
    PDR_ERR_TOO_NEW = 6,     /* database schema is newer than this binary understands */
    PDR_ERR_BUSY = 7,        /* database locked by another process beyond the busy timeout */
    PDR_ERR_NOT_FOUND = 8,   /* no such row */
    PDR_ERR_INVALID = 9,     /* invalid argument or input */
    PDR_ERR_CONFIG = 10,     /* configuration invalid */
    PDR_ERR_DISK_FULL = 11,  /* no space left on device */
    PDR_ERR_READONLY = 12,   /* database or directory is read-only */
    PDR_ERR_PERM = 13,       /* permission denied */
    PDR_ERR_INTERNAL = 14,   /* a bug: unexpected library result */
    PDR_ERR_SHUTDOWN = 15    /* the daemon is stopping: not taken, retry later */
} pdr_rc;

/* A short, stable English description of rc ("outbox is full"). Never NULL. */
const char *pdr_strerror(pdr_rc rc);

/* What an outbox row will become upstream. Numbers are stored in the database:
** never renumber. */
typedef enum pdr_action {
    PDR_ACTION_TRIGGER = 1,
    PDR_ACTION_ACKNOWLEDGE = 2,
    PDR_ACTION_RESOLVE = 3,
    PDR_ACTION_CHANGE = 4     /* a change event (POST /v2/change/enqueue) */
} pdr_action;

/* "trigger", "acknowledge", "resolve", "change"; NULL for an unknown value. */
const char *pdr_action_name(pdr_action a);
/* Parses the PagerDuty event_action names (and "change"); 0 if unknown. */
pdr_action pdr_action_parse(const char *s);

/* Urgency of an event for scheduling; lower is sent first. The trigger
** values equal the severity indexes of pdr_severity_name() (config/config.h: critical 0 …
** info 3); change events come after every alert. Stored in the outbox
** (db/sql.h, schema version 2): never renumber. */
typedef enum pdr_urgency {
    PDR_URGENCY_CRITICAL = 0, PDR_URGENCY_ERROR = 1, PDR_URGENCY_WARNING = 2,
    PDR_URGENCY_INFO = 3, PDR_URGENCY_CHANGE = 4,
    PDR_URGENCY_INHERIT = -1   /* db_event: ack/resolve take their trigger's */
} pdr_urgency;

/* "critical".."info", "change"; NULL for any other value. */
const char *pdr_urgency_name(int u);
/* For a trigger's payload.severity string; PDR_URGENCY_WARNING for NULL or unknown. */
int pdr_urgency_of_severity(const char *severity);
/* The urgency to queue an event with (db_event.urgency): a trigger's from
** its severity, PDR_URGENCY_CHANGE for a change event, PDR_URGENCY_INHERIT
** for an acknowledge or resolve (the push takes its trigger's). */
int pdr_urgency_of(pdr_action action, const char *severity);

/* A PagerDuty integration (routing) key is exactly this long. */
#define PDR_ROUTING_KEY_LEN 32

/* The shape of an integration key: PDR_ROUTING_KEY_LEN letters and digits.
** The one check for it (ingest, `pdrelay send`, the config). Returns
** PDR_OK, or PDR_ERR_INVALID with *why set to "length" or "characters". */
pdr_rc pdr_routing_key_check(const char *key, size_t len, const char **why);
/* PagerDuty's cap on dedup_key, in characters; and the bytes that many
** UTF-8 characters take at most (what a buffer or the database must hold). */
#define PDR_DEDUP_KEY_MAX 255
#define PDR_DEDUP_KEY_MAX_BYTES (4 * PDR_DEDUP_KEY_MAX)
/* hex SHA-256 + NUL */
#define PDR_SHA256_HEX_LEN 65

/* Redacts a secret for display: "R0…ab12" (the first 2 characters, an
** ellipsis, the last 4) for secrets of 8 or more characters, "…" for
** shorter ones. Characters are UTF-8 code points, never cut; every byte that
** is not part of a valid sequence, and every control character (C0, DEL,
** C1), counts as one character and shows as '?'. The output is valid UTF-8
** of at most 15 bytes: a multi-byte character that would not fit (head at
** most 4 bytes, tail at most 8) is left out, so fewer characters show.
** Writes at most outsz bytes including the NUL; 16 bytes always suffice.
** Returns out. */
#define PDR_REDACT_SIZE 16
char *pdr_redact(const char *secret, char *out, size_t outsz);

/* Replaces, in place, every occurrence of secret in text (NUL-terminated)
** with its redaction: text quoted from elsewhere (an upstream's error reply
** that echoes the routing key) must not carry a key into logs or rows. The
** redaction is never longer than a 32-byte key, so text does not grow.
** Returns how many it replaced. */
size_t pdr_redact_in(char *text, const char *secret);

/* url for display: a password in it ("scheme://user:secret@host") becomes
** "…" ("scheme://user:…@host"). Writes at most outsz bytes with the NUL;
** returns out. */
char *pdr_url_redact(const char *url, char *out, size_t outsz);

/* pdr_url_redact for each entry of a comma-separated list (config/config.h
** PDR_KT_URL_LIST, PDR_KT_PER_URL), joined by ',' again; a value without a
** ',' is one entry. Returns out. */
char *pdr_url_list_redact(const char *list, char *out, size_t outsz);

/* The length (1 to 4) of the well-formed UTF-8 sequence at s, n bytes of
** which may be read, and its code point in *cp; 0 when s does not start one
** (a stray continuation byte, an overlong form, a surrogate, a code point
** over U+10FFFF, or a sequence cut by n). */
size_t pdr_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* The next character of UTF-8 text at s (n >= 1 bytes left): the bytes it
** spans, either a well-formed sequence (its code point in *cp) or else the
** maximal invalid subpart (at least 1 byte; *cp = PDR_UTF8_INVALID), which
** Unicode's "substitution of maximal subparts" replaces with one U+FFFD.
** The one UTF-8 decoder of pdrelay (repairs, escaping, redaction). */
#define PDR_UTF8_INVALID 0xFFFFFFFFu
size_t pdr_utf8_next(const char *s, size_t n, uint32_t *cp);

/* Characters (code points) of UTF-8 text: the bytes that do not continue a
** sequence. What PagerDuty's length limits count. */
size_t pdr_utf8_chars(const char *s);

/* SHA-256 (mbedTLS) of data: the 32 raw bytes. */
pdr_rc pdr_sha256_raw(const void *data, size_t len, unsigned char out[32]);

/* Lowercase hex SHA-256 (mbedTLS) of data into out[PDR_SHA256_HEX_LEN]. */
pdr_rc pdr_sha256_hex(const void *data, size_t len, char out[PDR_SHA256_HEX_LEN]);

/* SHA-256 (mbedTLS) of data given in pieces, for inputs too large to hold
** at once (a bundle's rows, db/bundle.c): pdr_sha256_new(), then
** pdr_sha256_update() for each piece, then pdr_sha256_final_hex(), which
** frees the context whatever it returns. pdr_sha256_free() drops a context
** that will not be finished (NULL accepted). new returns NULL on OOM. */
typedef struct pdr_sha256 pdr_sha256;
pdr_sha256 *pdr_sha256_new(void);
pdr_rc pdr_sha256_update(pdr_sha256 *h, const void *data, size_t len);
pdr_rc pdr_sha256_final_hex(pdr_sha256 *h, char out[PDR_SHA256_HEX_LEN]);
void pdr_sha256_free(pdr_sha256 *h);

/* The deterministic dedup key for an alert without one:
** hex SHA-256 of routing_key ":" fingerprint. */
pdr_rc pdr_dedup_key_derive(const char *routing_key, const char *fingerprint,
                            char out[PDR_SHA256_HEX_LEN]);

/* Formats a duration in ms for people (logs, `pdrelay queue`): "850ms",
** "12s", "5m12s", "3h04m", "2d03h"; negative counts as 0. Returns out. */
char *pdr_fmt_age(long long ms, char *out, size_t outsz);

/* ---- allocation ----------------------------------------------------------
** Every allocation of pdrelay's own code (agent/, db/, config/) goes through
** these, and so does cJSON's (agent/event.c installs pdr_malloc/pdr_free as
** its hooks). They are malloc, calloc, realloc, strdup and free, with one
** switch for tests: pdr_alloc_fail_after(n) lets n more allocations
** succeed, then makes the next one and every later one fail (NULL; realloc
** leaves its block alone), until pdr_alloc_fail_after(-1), the default,
** turns failures off. While failures are off the only cost is one relaxed
** atomic load per allocation, so the daemon runs the same code the tests
** run. Memory from them is freed with free() or pdr_free(), which are the
** same. Safe to call from any thread (the countdown is atomic).
**
** pdr_alloc_hook_libraries() puts the same countdown under SQLite
** (SQLITE_CONFIG_MALLOC: a wrapper around SQLite's default methods) and
** libcurl (curl_global_init_mem). It must run before SQLite and libcurl are
** first used (tests call it first thing in main); PDR_ERR_INTERNAL when it
** is too late. libmicrohttpd, inih, regcomp() and mbedTLS allocate with libc
** directly and are not covered. tests/unit/test_oom.c drives it. */
void *pdr_malloc(size_t n);
void *pdr_calloc(size_t n, size_t size);
void *pdr_realloc(void *p, size_t n);
char *pdr_strdup(const char *s);
void pdr_free(void *p);
/* n >= 0: allocations after the next n fail; -1: none fails. Resets the
** failure count. */
void pdr_alloc_fail_after(long n);
/* How many allocations failed since the last pdr_alloc_fail_after(). */
long pdr_alloc_failures(void);
pdr_rc pdr_alloc_hook_libraries(void);

#endif /* PDR_H */
