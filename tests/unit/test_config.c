/*
** test_config.c — unit tests of config/: the defaults of every key, every
** value type, durations, each class of error with its exact "FILE:LINE: …"
** text, routing keys (inline and from a file, never printed whole), label
** matchers, and the shipped config/pdrelay.ini.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "config.h"

/* Valid routing keys: 32 printable characters. */
#define KEY_A "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
#define KEY_B "Zz9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k"
#define ELLIPSIS "\xe2\x80\xa6"

typedef struct fx {
    char *dir;
    char *path;      /* DIR/pdrelay.ini */
    pdr_config *cfg;
    pdr_config_errors errs;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->dir = tu_mkdtemp();
    f->path = tu_printf("%s/pdrelay.ini", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    pdr_config_destroy(f->cfg);
    pdr_config_errors_cleanup(&f->errs);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

/* Writes content as the config and loads it into f->cfg / f->errs. */
static pdr_rc load(fx *f, const char *content)
{
    pdr_config_destroy(f->cfg);
    f->cfg = NULL;
    pdr_config_errors_cleanup(&f->errs);
    tu_write_file(f->path, content);
    return pdr_config_load(f->path, &f->cfg, &f->errs);
}

static void load_ok(fx *f, const char *content)
{
    pdr_rc rc = load(f, content);
    for (size_t i = 0; i < f->errs.n; i++) print_message("unexpected: %s\n", f->errs.msgs[i]);
    assert_int_equal(rc, PDR_OK);
    assert_int_equal(f->errs.n, 0);
    assert_non_null(f->cfg);
}

/* Loads content and asserts the errors are exactly the NULL-terminated list
** of suffixes, each prefixed with "PATH". */
static void expect_errors(fx *f, const char *content, ...)
{
    va_list ap;
    size_t n = 0;
    const char *suffix;

    assert_int_equal(load(f, content), PDR_ERR_CONFIG);
    assert_null(f->cfg);
    va_start(ap, content);
    while ((suffix = va_arg(ap, const char *)) != NULL) {
        char *want = tu_printf("%s%s", f->path, suffix);
        if (n >= f->errs.n) {
            print_message("missing error: %s\n", want);
            fail();
        }
        assert_string_equal(f->errs.msgs[n], want);
        free(want);
        n++;
    }
    va_end(ap);
    for (size_t i = n; i < f->errs.n; i++) print_message("extra error: %s\n", f->errs.msgs[i]);
    assert_int_equal(f->errs.n, n);
}

static void check_defaults(const pdr_config *c)
{
    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';

    assert_string_equal(c->data_dir, "./var");
    assert_int_equal(c->log_level, PDR_LOG_INFO);
    assert_int_equal(c->syslog, 0);
    assert_string_equal(c->source, host);
    assert_string_equal(c->listen_address, "127.0.0.1");
    assert_int_equal(c->listen_port, 8787);
    assert_null(c->unix_socket);
    assert_null(c->auth_token_file);
    assert_int_equal(c->max_connections, 4096);
    assert_int_equal(c->max_connections_per_client, 2048);
    assert_int_equal(c->listen_threads, 0);
    assert_int_equal(c->request_timeout_ms, 10000);
    assert_int_equal(c->idle_timeout_ms, 30000);
    assert_string_equal(pdr_severity_name(c->default_severity), "error");
    assert_string_equal(c->pd_url, "https://events.pagerduty.com");
    assert_int_equal(c->rate_per_minute, 120);
    assert_int_equal(c->burst, 10);
    assert_int_equal(c->backoff_initial_ms, 100);
    assert_int_equal(c->backoff_max_ms, 5000);
    assert_int_equal(c->timeout_ms, 10000);
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_int_equal(c->concurrency, 16);
    assert_int_equal(c->rate_window_ms, 60000);
    assert_null(c->ca_file);
    assert_null(c->proxy);
    assert_int_equal(c->synchronous, PDR_SYNC_FULL);
    assert_int_equal(c->commit_interval_ms, 0);
    assert_int_equal(c->max_events, 1000000);
    assert_int_equal(c->max_age_ms, 0);
    assert_int_equal(c->dedup_ttl_ms, 24 * 3600 * 1000LL);
    assert_int_equal(c->cleanup_interval_ms, 3600 * 1000LL);
    assert_int_equal(c->down_probe_max_ms, 60000);
    assert_int_equal(c->throttle_backoff_ms, 30000);
    assert_int_equal(c->outage_log_interval_ms, 600000);
    assert_int_equal(c->delay_note_after_ms, 300000);
    assert_int_equal(c->resolved_while_queued, PDR_RWQ_NOTE);
    assert_null(c->targets);
    assert_int_equal(c->n_targets, 0);
}

/* ---- defaults and value types ------------------------------------------- */

static void test_defaults(void **state)
{
    pdr_config *c = NULL;
    (void)state;
    assert_int_equal(pdr_config_defaults(&c), PDR_OK);
    assert_non_null(c);
    assert_string_equal(c->path, "(defaults)");
    check_defaults(c);
    pdr_config_destroy(c);
}

static void test_empty_file_is_defaults(void **state)
{
    fx *f = *state;
    load_ok(f, "");
    assert_string_equal(f->cfg->path, f->path);
    check_defaults(f->cfg);

    /* sections without keys, comments and blank lines change nothing */
    load_ok(f, "; comment\n# another\n\n[agent]\n[listen]\n  ; indented comment\n[pagerduty]\n[outbox]\n[dedup]\n");
    check_defaults(f->cfg);
}

static void test_every_type_parsed(void **state)
{
    fx *f = *state;
    load_ok(f,
            "[agent]\n"
            "data_dir = /var/lib/pdrelay\n"
            "log_level = debug\n"
            "source = edge-7\n"
            "[listen]\n"
            "address = 0.0.0.0\n"
            "port = 0\n"
            "unix_socket = /run/pdrelay.sock\n"
            "auth_token_file = /etc/pdrelay/token\n"
            "[pagerduty]\n"
            "url = http://127.0.0.1:9999/pd///\n"
            "rate_per_minute = 60   ; an inline comment\n"
            "burst = 3\n"
            "backoff_initial_ms = 250\n"
            "backoff_max_ms = 250\n"
            "timeout_ms = 1500\n"
            "ca_file = /etc/ssl/ca.pem\n"
            "proxy = http://proxy:3128\n"
            "[outbox]\n"
            "synchronous = normal\n"
            "max_events = 42\n"
            "max_age = 7d\n"
            "[dedup]\n"
            "ttl = 90m\n"
            "cleanup_interval = 30s\n");
    const pdr_config *c = f->cfg;
    assert_string_equal(c->data_dir, "/var/lib/pdrelay");
    assert_int_equal(c->log_level, PDR_LOG_DEBUG);
    assert_string_equal(c->source, "edge-7");
    assert_string_equal(c->listen_address, "0.0.0.0");
    assert_int_equal(c->listen_port, 0);
    assert_string_equal(c->unix_socket, "/run/pdrelay.sock");
    assert_string_equal(c->auth_token_file, "/etc/pdrelay/token");
    assert_string_equal(c->pd_url, "http://127.0.0.1:9999/pd");
    assert_int_equal(c->rate_per_minute, 60);
    assert_int_equal(c->burst, 3);
    assert_int_equal(c->backoff_initial_ms, 250);
    assert_int_equal(c->backoff_max_ms, 250);
    assert_int_equal(c->timeout_ms, 1500);
    assert_string_equal(c->ca_file, "/etc/ssl/ca.pem");
    assert_string_equal(c->proxy, "http://proxy:3128");
    assert_int_equal(c->synchronous, PDR_SYNC_NORMAL);
    assert_int_equal(c->max_events, 42);
    assert_int_equal(c->max_age_ms, 7 * 86400000LL);
    assert_int_equal(c->dedup_ttl_ms, 90 * 60000LL);
    assert_int_equal(c->cleanup_interval_ms, 30000);
    assert_int_equal(c->n_targets, 0);

    /* the other enum values, the range ends */
    load_ok(f, "[agent]\nlog_level = error\n[listen]\nport = 65535\n[outbox]\nsynchronous = full\n"
               "max_events = 1000000000\n");
    assert_int_equal(f->cfg->log_level, PDR_LOG_ERROR);
    assert_int_equal(f->cfg->listen_port, 65535);
    assert_int_equal(f->cfg->synchronous, PDR_SYNC_FULL);
    assert_int_equal(f->cfg->max_events, 1000000000);
    load_ok(f, "[agent]\nlog_level = warn\n[pagerduty]\nurl = https://pd.example/\n");
    assert_int_equal(f->cfg->log_level, PDR_LOG_WARN);
    assert_string_equal(f->cfg->pd_url, "https://pd.example");
}

static void test_duplicate_key_last_wins_and_empty_unsets(void **state)
{
    fx *f = *state;
    load_ok(f, "[listen]\nport = 1\nunix_socket = /x.sock\nport = 2\nunix_socket =\n"
               "[outbox]\nmax_age = 1h\nmax_age =\n[listen]\naddress = ::1\n");
    assert_int_equal(f->cfg->listen_port, 2);
    assert_null(f->cfg->unix_socket);
    assert_int_equal(f->cfg->max_age_ms, 0);
    assert_string_equal(f->cfg->listen_address, "::1");

    load_ok(f, "[outbox]\nmax_age = 0\n[pagerduty]\nproxy = http://p:1\nproxy =\n");
    assert_int_equal(f->cfg->max_age_ms, 0);
    assert_null(f->cfg->proxy);
}

/* ---- durations ------------------------------------------------------------ */

static void test_duration_parse(void **state)
{
    static const struct { const char *s; int64_t ms; } good[] = {
        {"0", 0}, {"0ms", 0}, {"0d", 0}, {"1ms", 1}, {"250ms", 250}, {"30s", 30000},
        {"5m", 300000}, {"24h", 86400000}, {"7d", 604800000}, {"007s", 7000},
        {"9223372036854775807ms", INT64_MAX},
    };
    static const char *const bad[] = {
        "", "5", "5x", "-1s", "+1s", " 5s", "5s ", "5 s", "1.5s", "s", "ms", "5sec", "5M", "5S",
        "5ms5", "0x10s", "9223372036854775808ms", "9223372036854775807s", "106751991167301d",
        "99999999999999999999999d",
    };
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = -7;
        if (pdr_duration_parse(good[i].s, &v) != PDR_OK) print_message("rejected: '%s'\n", good[i].s);
        assert_int_equal(pdr_duration_parse(good[i].s, &v), PDR_OK);
        assert_int_equal(v, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = -7;
        if (pdr_duration_parse(bad[i], &v) != PDR_ERR_INVALID) print_message("accepted: '%s'\n", bad[i]);
        assert_int_equal(pdr_duration_parse(bad[i], &v), PDR_ERR_INVALID);
        assert_int_equal(v, -7);   /* untouched on failure */
    }
    int64_t v;
    assert_int_equal(pdr_duration_parse(NULL, &v), PDR_ERR_INVALID);
    assert_int_equal(pdr_duration_parse("5s", NULL), PDR_ERR_INVALID);
}

/* ---- sizes ---------------------------------------------------------------- */

static void test_size_parse_and_format(void **state)
{
    static const struct { const char *s; int64_t b; } good[] = {
        {"0", 0}, {"100", 100}, {"100B", 100}, {"1K", 1024}, {"1KB", 1024}, {"1KiB", 1024},
        {"64MB", 64LL << 20}, {"256M", 256LL << 20}, {"3GiB", 3LL << 30}, {"2TB", 2LL << 40},
        {"007MB", 7LL << 20}, {"9223372036854775807", INT64_MAX},
    };
    static const char *const bad[] = {
        "", "MB", "-1MB", "+1MB", " 1MB", "1MB ", "1 MB", "1.5MB", "1mb", "1Mb", "1kb", "1PB",
        "1MBB", "0x10", "9223372036854775808", "8388608TB", "99999999999999999999MB",
    };
    static const struct { int64_t b; const char *s; } fmt[] = {
        {0, "0"}, {100, "100"}, {1024, "1KB"}, {1536, "1536"}, {1536LL << 10, "1536KB"},
        {64LL << 20, "64MB"}, {256LL << 20, "256MB"}, {1LL << 30, "1GB"}, {1LL << 50, "1024TB"},
    };
    char buf[32];
    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = -7;
        if (pdr_size_parse(good[i].s, &v) != PDR_OK) print_message("rejected: '%s'\n", good[i].s);
        assert_int_equal(pdr_size_parse(good[i].s, &v), PDR_OK);
        assert_int_equal(v, good[i].b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = -7;
        if (pdr_size_parse(bad[i], &v) != PDR_ERR_INVALID) print_message("accepted: '%s'\n", bad[i]);
        assert_int_equal(pdr_size_parse(bad[i], &v), PDR_ERR_INVALID);
        assert_int_equal(v, -7);
    }
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
        int64_t back = -1;
        assert_string_equal(pdr_size_format(fmt[i].b, buf, sizeof buf), fmt[i].s);
        assert_int_equal(pdr_size_parse(buf, &back), PDR_OK);
        assert_int_equal(back, fmt[i].b);
    }
}

/* A size key's mistakes name the line, the key and what is allowed; the
** defaults are the issue's. */
static void test_sizes_in_config(void **state)
{
    fx *f = *state;
#define NOT_SIZE ": not a size; allowed: a whole number of bytes, or with a unit KB, MB, GB or TB " \
                 "(powers of 1024; e.g. 512KB, 256MB)"
    expect_errors(f, "[outbox]\nmax_bytes = 12 MB\nmin_free = 1mb\nmax_bytes = 100\nmin_free =\n"
                     "max_dead = 0\nmax_dead_age = 30s\n",
                  ":2: max_bytes = 12 MB" NOT_SIZE,
                  ":3: min_free = 1mb" NOT_SIZE,
                  ":4: max_bytes = 100: out of range; allowed: 1MB to 1024TB",
                  ":5: min_free: empty value; allowed: a whole number of bytes, or with a unit KB, MB, GB or "
                  "TB (powers of 1024; e.g. 512KB, 256MB)",
                  ":6: max_dead = 0: out of range; allowed: 1 to 1000000000",
                  ":7: max_dead_age = 30s: out of range; allowed: 1m to 3650d", NULL);
#undef NOT_SIZE
    load_ok(f, "[outbox]\nmax_bytes = 1GB\nmin_free = 0\nmax_dead = 5\nmax_dead_age = 2h\n");
    assert_int_equal(f->cfg->max_bytes, 1LL << 30);
    assert_int_equal(f->cfg->min_free, 0);
    assert_int_equal(f->cfg->max_dead, 5);
    assert_int_equal(f->cfg->max_dead_age_ms, 2 * 3600 * 1000LL);
    load_ok(f, "");
    assert_int_equal(f->cfg->max_bytes, 256LL << 20);
    assert_int_equal(f->cfg->min_free, 64LL << 20);
    assert_int_equal(f->cfg->max_dead, 10000);
    assert_int_equal(f->cfg->max_dead_age_ms, 7 * 86400 * 1000LL);
}

static void test_duration_format(void **state)
{
    static const struct { int64_t ms; const char *s; } cases[] = {
        {0, "0"}, {1, "1ms"}, {1500, "1500ms"}, {1000, "1s"}, {90000, "90s"}, {60000, "1m"},
        {5400000, "90m"}, {3600000, "1h"}, {86400000, "24h"}, {129600000, "36h"},
        {172800000, "2d"}, {604800000, "7d"}, {3650 * 86400000LL, "3650d"}, {86401000, "86401s"},
    };
    char buf[32];
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_ptr_equal(pdr_duration_format(cases[i].ms, buf, sizeof buf), buf);
        assert_string_equal(buf, cases[i].s);
        /* and it parses back to the same value */
        int64_t back = -1;
        assert_int_equal(pdr_duration_parse(buf, &back), PDR_OK);
        assert_int_equal(back, cases[i].ms);
    }
    char small[4];
    pdr_duration_format(1500, small, sizeof small);
    assert_string_equal(small, "150");   /* truncated, still terminated */
}

static void test_durations_in_config(void **state)
{
    fx *f = *state;
    static const struct { const char *v; int64_t ms; } units[] = {
        {"1500ms", 1500}, {"45s", 45000}, {"15m", 900000}, {"2h", 7200000}, {"3d", 259200000},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        char *ini = tu_printf("[dedup]\nttl = %s\ncleanup_interval = %s\n[outbox]\nmax_age = %s\n",
                              units[i].v, units[i].v, units[i].v);
        load_ok(f, ini);
        assert_int_equal(f->cfg->dedup_ttl_ms, units[i].ms);
        assert_int_equal(f->cfg->cleanup_interval_ms, units[i].ms);
        assert_int_equal(f->cfg->max_age_ms, units[i].ms);
        free(ini);
    }
#define NOT_DURATION ": not a duration; allowed: a whole number with a unit ms, s, m, h or d " \
                     "(e.g. 500ms, 30s, 5m, 24h, 7d), or 0"
    expect_errors(f, "[dedup]\nttl = 5\ncleanup_interval = 5x\n[outbox]\nmax_age = -1s\n"
                     "[dedup]\nttl = 99999999999999999999d\n",
                  ":2: ttl = 5" NOT_DURATION,
                  ":3: cleanup_interval = 5x" NOT_DURATION,
                  ":5: max_age = -1s" NOT_DURATION,
                  ":7: ttl = 99999999999999999999d" NOT_DURATION, NULL);
    expect_errors(f, "[dedup]\nttl = 0\ncleanup_interval = 3651d\nttl =\n",
                  ":2: ttl = 0: out of range; allowed: 1ms to 3650d",
                  ":3: cleanup_interval = 3651d: out of range; allowed: 1ms to 3650d",
                  ":4: ttl: empty value; allowed: a whole number with a unit ms, s, m, h or d "
                  "(e.g. 500ms, 30s, 5m, 24h, 7d), or 0", NULL);
}

/* The outage keys: [pagerduty] down_probe_max and throttle_backoff, [agent]
** outage_log_interval, [outbox] delay_note_after and resolved_while_queued. */
static void test_outage_keys(void **state)
{
    fx *f = *state;
    load_ok(f, "[agent]\noutage_log_interval = 1h\n[pagerduty]\ndown_probe_max = 15m\nthrottle_backoff = 45s\n"
               "[outbox]\ndelay_note_after = 90s\nresolved_while_queued = collapse\n");
    assert_int_equal(f->cfg->outage_log_interval_ms, 3600000);
    assert_int_equal(f->cfg->down_probe_max_ms, 900000);
    assert_int_equal(f->cfg->throttle_backoff_ms, 45000);
    assert_int_equal(f->cfg->delay_note_after_ms, 90000);
    assert_int_equal(f->cfg->resolved_while_queued, PDR_RWQ_COLLAPSE);

    /* the range ends; 0 turns the delay note and the 429 floor off */
    load_ok(f, "[agent]\noutage_log_interval = 1s\n[pagerduty]\ndown_probe_max = 1ms\nthrottle_backoff = 0\n"
               "[outbox]\ndelay_note_after = 0\nresolved_while_queued = send\n");
    assert_int_equal(f->cfg->outage_log_interval_ms, 1000);
    assert_int_equal(f->cfg->down_probe_max_ms, 1);
    assert_int_equal(f->cfg->throttle_backoff_ms, 0);
    assert_int_equal(f->cfg->delay_note_after_ms, 0);
    assert_int_equal(f->cfg->resolved_while_queued, PDR_RWQ_SEND);
    load_ok(f, "[agent]\noutage_log_interval = 3650d\n[pagerduty]\ndown_probe_max = 24h\nthrottle_backoff = 1h\n"
               "[outbox]\ndelay_note_after = 3650d\nresolved_while_queued = note\n");
    assert_int_equal(f->cfg->outage_log_interval_ms, 3650 * 86400000LL);
    assert_int_equal(f->cfg->down_probe_max_ms, 86400000);
    assert_int_equal(f->cfg->throttle_backoff_ms, 3600000);
    assert_int_equal(f->cfg->delay_note_after_ms, 3650 * 86400000LL);
    assert_int_equal(f->cfg->resolved_while_queued, PDR_RWQ_NOTE);

    expect_errors(f,
                  "[agent]\noutage_log_interval = 999ms\noutage_log_interval = 0\n"
                  "[pagerduty]\ndown_probe_max = 0\ndown_probe_max = 2d\nthrottle_backoff = 61m\n"
                  "down_probe_max = 60\n[outbox]\ndelay_note_after = 3651d\nresolved_while_queued = drop\n"
                  "resolved_while_queued =\ndelay_note_after =\n",
                  ":2: outage_log_interval = 999ms: out of range; allowed: 1s to 3650d",
                  ":3: outage_log_interval = 0: out of range; allowed: 1s to 3650d",
                  ":5: down_probe_max = 0: out of range; allowed: 1ms to 24h",
                  ":6: down_probe_max = 2d: out of range; allowed: 1ms to 24h",
                  ":7: throttle_backoff = 61m: out of range; allowed: 0 to 1h",
                  ":8: down_probe_max = 60" NOT_DURATION,
                  ":10: delay_note_after = 3651d: out of range; allowed: 0 to 3650d",
                  ":11: resolved_while_queued = drop: unknown value; allowed: note, send, collapse",
                  ":12: resolved_while_queued: empty value; allowed: note, send, collapse",
                  ":13: delay_note_after: empty value; allowed: a whole number with a unit ms, s, m, h or d "
                  "(e.g. 500ms, 30s, 5m, 24h, 7d), or 0",
                  NULL);
}

/* [outbox] commit_interval: a duration from 0 (commit at once) to 1s. */
static void test_commit_interval_key(void **state)
{
    fx *f = *state;
    load_ok(f, "[outbox]\ncommit_interval = 20ms\n");
    assert_int_equal(f->cfg->commit_interval_ms, 20);
    load_ok(f, "[outbox]\ncommit_interval = 1s\n");
    assert_int_equal(f->cfg->commit_interval_ms, 1000);
    load_ok(f, "[outbox]\ncommit_interval = 0\n");
    assert_int_equal(f->cfg->commit_interval_ms, 0);
    expect_errors(f, "[outbox]\ncommit_interval = 1001ms\ncommit_interval = 5\n",
                  ":2: commit_interval = 1001ms: out of range; allowed: 0 to 1s",
                  ":3: commit_interval = 5" NOT_DURATION,
                  NULL);
}

/* ---- each class of error ---------------------------------------------------- */

static void test_error_unknown_section(void **state)
{
    fx *f = *state;
    /* keys of an unknown section are not reported one by one */
    expect_errors(f, "[agent]\ndata_dir = /d\n[agnt]\ndata_dir = x\nfoo = 1\n[Agent]\n",
                  ":3: unknown section [agnt]; allowed: [agent] [listen] [pagerduty] [outbox] [dedup] [target NAME]",
                  ":6: unknown section [Agent]; allowed: [agent] [listen] [pagerduty] [outbox] [dedup] [target NAME]",
                  NULL);
    expect_errors(f, "[targets]\n",
                  ":1: unknown section [targets]; allowed: [agent] [listen] [pagerduty] [outbox] [dedup] [target NAME]",
                  NULL);
}

static void test_error_unknown_key(void **state)
{
    fx *f = *state;
    expect_errors(f,
                  "[listen]\nprot = 1\n[agent]\nLog_Level = info\n[pagerduty]\nrate = 1\n[outbox]\nsync = full\n"
                  "[dedup]\nttl_ms = 5\n[target prod]\nrouting_key = " KEY_A "\nkey = x\n",
                  ":2: unknown key 'prot' in [listen]; allowed: address, port, unix_socket, auth_token_file, max_connections, max_connections_per_client, threads, idle_timeout, request_timeout",
                  ":4: unknown key 'Log_Level' in [agent]; allowed: data_dir, log_level, source, syslog, default_severity, "
                  "outage_log_interval, fallback_target",
                  ":6: unknown key 'rate' in [pagerduty]; allowed: url, upstream, auth_token_file, rate_per_minute, burst, rate_window, "
                  "backoff_initial_ms, backoff_max_ms, timeout_ms, connect_timeout_ms, concurrency, ca_file, proxy, interface, "
                  "down_probe_max, failback_after, throttle_backoff",
                  ":8: unknown key 'sync' in [outbox]; allowed: synchronous, commit_interval, max_events, max_bytes, min_free, max_dead, max_dead_age, "
                  "max_age, delay_note_after, "
                  "resolved_while_queued",
                  ":10: unknown key 'ttl_ms' in [dedup]; allowed: ttl, cleanup_interval",
                  ":13: unknown key 'key' in [target prod]; allowed: routing_key, routing_key_file, match, "
                  "webhook_url, webhook_headers_file, rate_per_minute",
                  NULL);
    expect_errors(f, "port = 1\n[listen]\nport = 2\n",
                  ":1: key 'port' is outside any section; allowed: keys under [agent] [listen] [pagerduty] "
                  "[outbox] [dedup] [target NAME]",
                  NULL);
}

static void test_error_bad_number(void **state)
{
    fx *f = *state;
    expect_errors(f,
                  "[listen]\nport = 8o\nport = 65536\nport = -1\n[pagerduty]\nrate_per_minute = -1\n"
                  "burst = 1.5\ntimeout_ms = 10s\nbackoff_initial_ms =\n[outbox]\n"
                  "max_events = 99999999999999999999\n",
                  ":2: port = 8o: not an integer; allowed: 0 to 65535",
                  ":3: port = 65536: out of range; allowed: 0 to 65535",
                  ":4: port = -1: out of range; allowed: 0 to 65535",
                  ":6: rate_per_minute = -1: out of range; allowed: 0 to 1000000",
                  ":7: burst = 1.5: not an integer; allowed: 1 to 1000000",
                  ":8: timeout_ms = 10s: not an integer number of milliseconds; allowed: 1 to 3600000",
                  ":9: backoff_initial_ms: empty value; allowed: 1 to 86400000",
                  ":11: max_events = 99999999999999999999: out of range; allowed: 1 to 1000000000",
                  NULL);
}

static void test_error_bad_enum_url_string(void **state)
{
    fx *f = *state;
    expect_errors(f,
                  "[agent]\nlog_level = verbose\ndata_dir =\nlog_level =\n[outbox]\nsynchronous = FULL\n"
                  "[pagerduty]\nurl = ftp://pd.example\nurl = https://\nurl = events.pagerduty.com\n"
                  "url =\n[listen]\nunix_socket = /" "0123456789012345678901234567890123456789"
                  "0123456789012345678901234567890123456789012345678901234567890123456789\n",
                  ":2: log_level = verbose: unknown value; allowed: error, warn, info, debug",
                  ":3: data_dir: empty value; a value is required",
                  ":4: log_level: empty value; allowed: error, warn, info, debug",
                  ":6: synchronous = FULL: unknown value; allowed: full, normal",
                  ":8: url = ftp://pd.example: not an HTTP URL; allowed: http://HOST[:PORT][/PATH] or https://…",
                  ":9: url = https://: not an HTTP URL; allowed: http://HOST[:PORT][/PATH] or https://…",
                  ":10: url = events.pagerduty.com: not an HTTP URL; allowed: http://HOST[:PORT][/PATH] or https://…",
                  ":11: url: empty value; allowed: http://HOST[:PORT][/PATH] or https://…",
                  ":13: unix_socket = /0123456789012345678901234567890123456789"
                  "0123456789012345678901234567890123456789012345678901234567890123456789: "
                  "too long; allowed: at most 107 characters",
                  NULL);
}

/* [pagerduty] url as a list: entries trimmed and their trailing '/'
** removed, proxy and interface one entry per url ("-": none), one URL and
** one proxy as before; failback_after. */
static void test_url_list(void **state)
{
    fx *f = *state;
    load_ok(f, "[pagerduty]\nurl = https://a.example/ , http://user:pw@10.0.0.2:8080/pd//\n"
               "proxy = -, http://proxy:3128\ninterface = eth0 ,host!10.0.0.9\nfailback_after = 2s\n");
    const pdr_config *c = f->cfg;
    assert_string_equal(c->pd_url, "https://a.example,http://user:pw@10.0.0.2:8080/pd");
    assert_int_equal(c->n_upstreams, 2);
    assert_string_equal(c->upstreams[0].url, "https://a.example");
    assert_null(c->upstreams[0].proxy);
    assert_string_equal(c->upstreams[0].interface, "eth0");
    assert_string_equal(c->upstreams[1].url, "http://user:pw@10.0.0.2:8080/pd");
    assert_string_equal(c->upstreams[1].proxy, "http://proxy:3128");
    assert_string_equal(c->upstreams[1].interface, "host!10.0.0.9");
    assert_string_equal(c->proxy, "-,http://proxy:3128");
    assert_int_equal(c->failback_after_ms, 2000);
    /* what config check and config keys print: the list as stored */
    char v[256];
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(keys[i].key, "interface")) assert_string_equal(pdr_config_key_value(&keys[i], c, v, sizeof v),
                                                                  "eth0,host!10.0.0.9");

    /* one URL, one proxy: as before the list */
    load_ok(f, "[pagerduty]\nurl = http://127.0.0.1:9/\nproxy = http://proxy:3128\n");
    c = f->cfg;
    assert_int_equal(c->n_upstreams, 1);
    assert_string_equal(c->pd_url, "http://127.0.0.1:9");
    assert_string_equal(c->upstreams[0].url, "http://127.0.0.1:9");
    assert_string_equal(c->upstreams[0].proxy, "http://proxy:3128");
    assert_null(c->upstreams[0].interface);
    assert_int_equal(c->failback_after_ms, 10 * 60 * 1000);

    /* the defaults have their one upstream too */
    pdr_config *d = NULL;
    assert_int_equal(pdr_config_defaults(&d), PDR_OK);
    assert_int_equal(d->n_upstreams, 1);
    assert_string_equal(d->upstreams[0].url, "https://events.pagerduty.com");
    assert_null(d->upstreams[0].proxy);
    pdr_config_destroy(d);
}

static void test_error_url_list(void **state)
{
    fx *f = *state;
    expect_errors(f,
                  "[pagerduty]\n"
                  "url = https://a.example,ftp://x\n"
                  "url = https://a.example,,https://c.example\n"
                  "url = http://a,http://b,http://c,http://d,http://e\n"
                  "url = https://a.example, https://b.example\n"
                  "proxy = http://p:3128\n"
                  "interface = eth0,eth1,eth2\n",
                  ":2: url: entry 2 'ftp://x': not an http:// or https:// URL; allowed: "
                  "http://HOST[:PORT][/PATH] or https://…",
                  ":3: url: entry 2 '': empty; allowed: http://HOST[:PORT][/PATH] or https://…",
                  ":4: url: 5 entries; allowed: at most 4 comma-separated URLs",
                  ":6: proxy has 1 entry but url has 2; allowed: empty, or one entry per url entry, "
                  "comma-separated, - for none",
                  ":7: interface has 3 entries but url has 2; allowed: empty, or one entry per url entry, "
                  "comma-separated, - for none",
                  NULL);
    /* a proxy given before the url it counts against: the error is at the proxy */
    expect_errors(f,
                  "[pagerduty]\nproxy = -,-,-\ninterface = eth0,,eth1\nurl = http://a,http://b\n"
                  "failback_after = soon\n",
                  ":3: interface: entry 2 '': empty; allowed: one entry per url entry, comma-separated, - for none",
                  ":5: failback_after = soon: not a duration; allowed: a whole number with a unit ms, s, m, h or d "
                  "(e.g. 500ms, 30s, 5m, 24h, 7d), or 0",
                  ":2: proxy has 3 entries but url has 2; allowed: empty, or one entry per url entry, "
                  "comma-separated, - for none",
                  NULL);
}

static void test_error_backoff_order(void **state)
{
    fx *f = *state;
    expect_errors(f, "[pagerduty]\nbackoff_initial_ms = 1000\nbackoff_max_ms = 500\n",
                  ":3: backoff_max_ms = 500 is less than backoff_initial_ms = 1000; allowed: "
                  "backoff_max_ms >= backoff_initial_ms",
                  NULL);
    /* only the initial delay set: the error is on its line */
    expect_errors(f, "[pagerduty]\n\nbackoff_initial_ms = 6000\n",
                  ":3: backoff_max_ms = 5000 is less than backoff_initial_ms = 6000; allowed: "
                  "backoff_max_ms >= backoff_initial_ms",
                  NULL);
    load_ok(f, "[pagerduty]\nbackoff_initial_ms = 6000\nbackoff_max_ms = 6000\n");
}

/* [pagerduty] upstream, auth_token_file and rate_per_minute = 0 (README "A
** site relay"): a relay hop may go without a limiter, PagerDuty may not;
** the token file is read at load, each problem at the key's line, and the
** token is never in a message. */
static void test_relay_keys(void **state)
{
    fx *f = *state;
    char *tok = tu_printf("%s/up.token", f->dir), *content;
    load_ok(f, "[pagerduty]\n");
    assert_int_equal(f->cfg->upstream, PDR_UPSTREAM_PAGERDUTY);
    assert_null(f->cfg->upstream_token_file);
    assert_null(f->cfg->upstream_token);
    expect_errors(f, "[pagerduty]\n\nrate_per_minute = 0\n",
                  ":3: rate_per_minute = 0 (no limiter) is allowed only with upstream = relay, where the site relay "
                  "limits towards PagerDuty; allowed: 1 to 1000000, or set upstream = relay",
                  NULL);
    expect_errors(f, "[pagerduty]\nupstream = pdrelay\n",
                  ":2: upstream = pdrelay: unknown value; allowed: pagerduty, relay", NULL);
    load_ok(f, "[pagerduty]\nrate_per_minute = 0\nupstream = relay\n");
    assert_int_equal(f->cfg->upstream, PDR_UPSTREAM_RELAY);
    assert_int_equal(f->cfg->rate_per_minute, 0);

    content = tu_printf("[pagerduty]\nupstream = relay\nauth_token_file = %s\n", tok);
    char *missing = tu_printf(":3: auth_token_file = %s: cannot read the auth token file: No such file or directory",
                              tok);
    expect_errors(f, content, missing, NULL);
    tu_write_file(tok, "\n");
    char *empty = tu_printf(":3: auth_token_file = %s: the auth token file is empty; put the token on its first line",
                            tok);
    expect_errors(f, content, empty, NULL);
    tu_write_file(tok, "s3cr\001t\n");
    char *ctl = tu_printf(":3: auth_token_file = %s: the auth token holds a control character (byte 5); allowed: "
                          "printable text", tok);
    expect_errors(f, content, ctl, NULL);
    tu_write_file(tok, "s3cret-token \t\r\nsecond line\n");
    load_ok(f, content);
    assert_string_equal(f->cfg->upstream_token, "s3cret-token");
    assert_string_equal(f->cfg->upstream_token_file, tok);
    free(content);
    free(missing);
    free(empty);
    free(ctl);
    free(tok);
}

static void test_error_syntax(void **state)
{
    fx *f = *state;
    /* every one is reported, and the keys under a broken header are skipped */
    expect_errors(f, "[agent]\ngarbage\n[listen\nport = 1\n= 5\n[dedup ; ]\nttl = 1h\n[outbox]\nmax_events 5\n",
                  ":2: syntax error: expected 'key = value' or '[section]'",
                  ":3: syntax error: expected 'key = value' or '[section]'",
                  ":5: syntax error: expected 'key = value' or '[section]'",
                  ":6: syntax error: expected 'key = value' or '[section]'",
                  ":9: syntax error: expected 'key = value' or '[section]'", NULL);
    /* a UTF-8 byte order mark is allowed; an inline comment needs a space before ';' */
    load_ok(f, "\xEF\xBB\xBF[listen]\nport = 9000 ; comment\n[target a.b-c_1]  ; comment\n"
               "routing_key = " KEY_A "\n");
    assert_int_equal(f->cfg->listen_port, 9000);
    assert_non_null(pdr_config_target(f->cfg, "a.b-c_1"));
    expect_errors(f, "[listen]\nport = 9000;comment\n",
                  ":2: port = 9000;comment: not an integer; allowed: 0 to 65535", NULL);
}

static void test_error_continuation_line(void **state)
{
    fx *f = *state;
    expect_errors(f, "[agent]\ndata_dir = /a\n  log_level = debug\n",
                  ":3: indented line would continue the value of 'data_dir'; allowed: keys and sections at "
                  "the start of the line",
                  NULL);
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static void test_line_length_limit(void **state)
{
    fx *f = *state;
    /* exactly 199 characters fit, and the next line is read as itself */
    char *y = repeat('y', 199 - strlen("data_dir = "));
    char *ini = tu_printf("[agent]\ndata_dir = %s\nlog_level = debug\n", y);
    load_ok(f, ini);
    assert_string_equal(f->cfg->data_dir, y);
    assert_int_equal(f->cfg->log_level, PDR_LOG_DEBUG);
    free(ini);
    ini = tu_printf("[agent]\r\ndata_dir = %s\r\nlog_level = warn\r\n", y);
    load_ok(f, ini);
    assert_string_equal(f->cfg->data_dir, y);
    assert_int_equal(f->cfg->log_level, PDR_LOG_WARN);
    free(ini);
    free(y);

    /* 200 and 250 do not; the line count stays right after them */
    char *x200 = repeat('x', 200 - strlen("data_dir = "));
    char *x250 = repeat('x', 250);
    ini = tu_printf("[agent]\ndata_dir = %s\nbogus = 1\ndata_dir = %s\nlog_level = loud\n", x200, x250);
    expect_errors(f, ini,
                  ":2: line too long (at most 199 characters)",
                  ":3: unknown key 'bogus' in [agent]; allowed: data_dir, log_level, source, syslog, default_severity, outage_log_interval, fallback_target",
                  ":4: line too long (at most 199 characters)",
                  ":5: log_level = loud: unknown value; allowed: error, warn, info, debug", NULL);
    free(ini);
    /* a too-long last line without a newline */
    ini = tu_printf("[agent]\ndata_dir = %s", x250);
    expect_errors(f, ini, ":2: line too long (at most 199 characters)", NULL);
    free(ini);
    free(x200);
    free(x250);
}

static void test_error_targets(void **state)
{
    fx *f = *state;
    expect_errors(f,
                  "[target prod]\nmatch = a=b\n[agent]\n[target a b]\nrouting_key = x\n[target]\n"
                  "[target ok]\nrouting_key = " KEY_A "\n[target ok]\nrouting_key = " KEY_B "\n"
                  "[target empty]\n",
                  ":1: [target prod] has no routing key; allowed: routing_key = KEY (32 characters), "
                  "routing_key_file = PATH or webhook_url = URL",
                  ":4: bad target name 'a b'; allowed: letters, digits, '_', '.', '-'",
                  ":6: [target] needs a name; allowed: [target NAME], NAME of letters, digits, '_', '.', '-'",
                  ":9: duplicate [target ok]; first defined at line 7",
                  ":11: [target empty] has no routing key; allowed: routing_key = KEY (32 characters), "
                  "routing_key_file = PATH or webhook_url = URL",
                  NULL);
}

/* Webhook targets: the keys, the headers file (read at load), rate_per_minute
** (the [pagerduty] one when not set, wherever that section is), the outbox
** key, fallback_target; the URL shown without its path. */
static void test_webhook_targets(void **state)
{
    fx *f = *state;
    char *hf = tu_printf("%s/h.headers", f->dir);
    tu_write_file(hf, "# comment\n\nAuthorization: Bearer tok-SECRET\r\nX-Scope-OrgID:\t tenant-1 \n");
    char *ini = tu_printf("[agent]\nfallback_target = hook\n[target hook]\nwebhook_url = https://hooks.example/a/b?t=1\n"
                          "webhook_headers_file = %s\nmatch = team=web\n[target slow]\nwebhook_url = http://h:8080\n"
                          "rate_per_minute = 6\n[target pd]\nrouting_key = " KEY_A "\n[pagerduty]\nrate_per_minute = 90\n",
                          hf);
    load_ok(f, ini);
    const pdr_target *t = pdr_config_target(f->cfg, "hook");
    assert_non_null(t);
    assert_string_equal(t->webhook_url, "https://hooks.example/a/b?t=1");
    assert_string_equal(pdr_target_key(t), "webhook:hook");
    assert_true(pdr_key_is_webhook(pdr_target_key(t)));
    assert_string_equal(t->routing_key, "");
    assert_int_equal(t->n_headers, 2);
    assert_string_equal(t->headers[0].name, "Authorization");
    assert_string_equal(t->headers[0].value, "Bearer tok-SECRET");
    assert_string_equal(t->headers[1].name, "X-Scope-OrgID");
    assert_string_equal(t->headers[1].value, "tenant-1");
    assert_int_equal(t->rate_per_minute, 90);
    assert_int_equal(pdr_config_target(f->cfg, "slow")->rate_per_minute, 6);
    assert_int_equal(pdr_config_target(f->cfg, "pd")->rate_per_minute, 0);
    assert_string_equal(pdr_target_key(pdr_config_target(f->cfg, "pd")), KEY_A);
    assert_false(pdr_key_is_webhook(KEY_A));
    assert_string_equal(f->cfg->fallback_target, "hook");
    char o[128];
    assert_string_equal(pdr_url_origin("https://u:pw@hooks.example:8443/a/b?t=1", o, sizeof o),
                        "https://hooks.example:8443/…");
    assert_string_equal(pdr_url_origin("http://h", o, sizeof o), "http://h");
    free(ini);
    free(hf);
}

/* Every error of the webhook keys, each at its line; a headers file's
** errors name its own line and never print the line's text. */
static void test_webhook_errors(void **state)
{
    fx *f = *state;
    char *hf = tu_printf("%s/bad.headers", f->dir);
    tu_write_file(hf, "Good: yes\nno colon SECRET1\nBad Name: SECRET2\n: SECRET3\nEmpty:   \nCtl: a\x01SECRET4\n"
                      "content-length: 3\n");
    char *hf2 = tu_printf("%s/good.headers", f->dir);
    tu_write_file(hf2, "A: b\n");
    char *ini = tu_printf("[agent]\nfallback_target = nowhere\n"
                          "[target a]\nwebhook_url = " KEY_A "\n"
                          "[target b]\nrouting_key = " KEY_A "\nwebhook_url = http://x/y\n"
                          "[target c]\nwebhook_url = http://x\nwebhook_headers_file = %s\n"
                          "[target d]\nrouting_key = " KEY_B "\nwebhook_headers_file = %s\nrate_per_minute = 5\n"
                          "[target e]\nwebhook_url = http://x\nrate_per_minute = 0\nwebhook_url = http://y\n"
                          "[target %s]\nwebhook_url = http://x\n",
                          hf, hf2,
                          "n0123456789012345678901234567890123456789012345678901234567890123");
    char *e2 = tu_printf(":10: webhook_headers_file = %s:2: the line has no ':'; allowed: Name: value", hf);
    char *e3 = tu_printf(":10: webhook_headers_file = %s:3: the line has a character not allowed in a header name "
                         "(allowed: letters, digits and !#$%%&'*+-.^_`|~; no space before ':')", hf);
    char *e4 = tu_printf(":10: webhook_headers_file = %s:4: the line has no header name before ':'; allowed: Name: "
                         "value", hf);
    char *e5 = tu_printf(":10: webhook_headers_file = %s:5: the line has an empty value; allowed: Name: value", hf);
    char *e6 = tu_printf(":10: webhook_headers_file = %s:6: the line has a control character (a CR, say) in its value; "
                         "allowed: printable text", hf);
    char *e7 = tu_printf(":10: webhook_headers_file = %s:7: the line sets a header libcurl sets itself "
                         "(Content-Length, Transfer-Encoding, Host)", hf);
    expect_errors(f, ini,
                  ":4: webhook_url = …: not an HTTP URL; allowed: http://HOST[:PORT][/PATH] or https://…",
                  ":7: [target b] has both webhook_url (line 7) and routing_key (line 6); allowed: exactly one of "
                  "routing_key, routing_key_file and webhook_url",
                  e2, e3, e4, e5, e6, e7,
                  ":13: webhook_headers_file in [target d], which has no webhook_url; allowed: only with webhook_url",
                  ":14: rate_per_minute in [target d], which has no webhook_url; allowed: only with webhook_url (a "
                  "routing key's rate is [pagerduty] rate_per_minute)",
                  ":17: rate_per_minute = 0: not an integer in range; allowed: 1 to 1000000",
                  ":18: webhook_url set twice in [target e] (first at line 16); allowed: once",
                  ":20: [target n0123456789012345678901234567890123456789012345678901234567890123]: the name of a "
                  "webhook target is 65 bytes; allowed: at most 64",
                  ":2: fallback_target = nowhere: no [target nowhere] in this file; allowed: the NAME of a [target "
                  "NAME]",
                  NULL);
    for (size_t i = 0; i < f->errs.n; i++)
        if (strstr(f->errs.msgs[i], "SECRET")) fail_msg("a header line's text in: %s", f->errs.msgs[i]);
    free(e2); free(e3); free(e4); free(e5); free(e6); free(e7);
    free(ini);
    free(hf);
    free(hf2);
}

static void test_error_routing_keys(void **state)
{
    fx *f = *state;
    char *kf = tu_printf("%s/prod.key", f->dir);
    char *missing = tu_printf("%s/missing.key", f->dir);
    tu_write_file(kf, KEY_B "\n");

    /* both ways at once */
    char *ini = tu_printf("[target prod]\nrouting_key = %s\nrouting_key_file = %s\n", KEY_A, kf);
    char *want = tu_printf(":3: [target prod] has both routing_key (line 2) and routing_key_file (line 3); "
                           "allowed: exactly one of them");
    expect_errors(f, ini, want, NULL);
    free(ini);
    free(want);

    /* an unreadable file, a directory, a key set twice */
    ini = tu_printf("[target a]\nrouting_key_file = %s\n[target b]\nrouting_key_file = %s\n"
                    "[target c]\nrouting_key = %s\nrouting_key = %s\n[target d]\nrouting_key_file =\n",
                    missing, f->dir, KEY_A, KEY_B);
    char *w1 = tu_printf(":2: routing_key_file = %s: cannot read: No such file or directory", missing);
    char *w2 = tu_printf(":4: routing_key_file = %s: cannot read: Is a directory", f->dir);
    expect_errors(f, ini, w1, w2,
                  ":7: routing_key set twice in [target c] (first at line 6); allowed: once",
                  ":9: routing_key_file: empty value; allowed: the path of a file holding the key", NULL);
    free(ini);
    free(w1);
    free(w2);
    free(kf);
    free(missing);
}

static void test_key_wrong_length_never_printed(void **state)
{
    fx *f = *state;
    const char *k31 = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p";
    const char *k33 = KEY_A "X";
    char *kf = tu_printf("%s/long.key", f->dir);
    char *ef = tu_printf("%s/empty.key", f->dir);
    tu_write_file(kf, "  " KEY_A "X\n");
    tu_write_file(ef, " \n\n");

    char *ini = tu_printf("[target a]\nrouting_key = %s\n[target b]\nrouting_key_file = %s\n"
                          "[target c]\nrouting_key = A1b2C3d4E5f6 7h8I9j0K1l2M3n4O5p6\n"
                          "[target d]\nrouting_key_file = %s\n[target e]\nrouting_key = abc\n",
                          k31, kf, ef);
    char *w2 = tu_printf(":4: routing_key_file = %s: the key (A1" ELLIPSIS "5p6X) has 33 characters; "
                         "exactly 32 are required", kf);
    char *w4 = tu_printf(":8: routing_key_file = %s: the key (" ELLIPSIS ") has 0 characters; "
                         "exactly 32 are required", ef);
    expect_errors(f, ini,
                  ":2: routing_key (A1" ELLIPSIS "4O5p) has 31 characters; exactly 32 are required",
                  w2,
                  ":6: routing_key (A1" ELLIPSIS "O5p6) contains a character other than a letter or a digit; "
                  "an integration key is 32 letters and digits",
                  w4,
                  ":10: routing_key (" ELLIPSIS ") has 3 characters; exactly 32 are required", NULL);
    for (size_t i = 0; i < f->errs.n; i++) {
        assert_false(tu_contains(f->errs.msgs[i], k31));
        assert_false(tu_contains(f->errs.msgs[i], k33));
        assert_false(tu_contains(f->errs.msgs[i], "A1b2C3d4"));
    }
    free(ini);
    free(w2);
    free(w4);
    free(kf);
    free(ef);
}

static void test_key_file_read_and_trimmed(void **state)
{
    fx *f = *state;
    char *kf = tu_printf("%s/prod.key", f->dir);
    tu_write_file(kf, "\n \t" KEY_B "  \r\n\n");
    char *ini = tu_printf("[target prod]\nrouting_key_file = %s\n[target inline]\nrouting_key = %s\n", kf, KEY_A);
    load_ok(f, ini);
    assert_int_equal(f->cfg->n_targets, 2);
    const pdr_target *t = &f->cfg->targets[0];
    assert_string_equal(t->name, "prod");
    assert_string_equal(t->routing_key, KEY_B);
    assert_string_equal(t->routing_key_file, kf);
    assert_int_equal(t->line, 1);
    assert_int_equal(t->n_matchers, 0);
    t = &f->cfg->targets[1];
    assert_string_equal(t->name, "inline");
    assert_string_equal(t->routing_key, KEY_A);
    assert_null(t->routing_key_file);
    assert_int_equal(t->line, 3);

    assert_ptr_equal(pdr_config_target(f->cfg, "inline"), &f->cfg->targets[1]);
    assert_ptr_equal(pdr_config_target(f->cfg, "prod"), &f->cfg->targets[0]);
    assert_null(pdr_config_target(f->cfg, "staging"));
    assert_null(pdr_config_target(NULL, "prod"));
    free(ini);
    free(kf);
}

static void test_error_matchers(void **state)
{
    fx *f = *state;
    char why[256];
    regex_t re;
    int rc = regcomp(&re, "^(()$", REG_EXTENDED | REG_NOSUB);
    assert_int_not_equal(rc, 0);
    regerror(rc, &re, why, sizeof why);

#define MATCHER_ALLOWED "allowed: label=value, label!=value, label=~regex or label!~regex, " \
                        "label as [a-zA-Z_][a-zA-Z0-9_]*"
    char *w = tu_printf(":7: match = job=~(: bad regex: %s; allowed: a POSIX extended regular expression", why);
    expect_errors(f,
                  "[target t]\nrouting_key = " KEY_A "\nmatch = 1abc=x\nmatch = severity\nmatch = sev~x\n"
                  "match =\nmatch = job=~(\nmatch = a-b=c\n",
                  ":3: match = 1abc=x: not a matcher; " MATCHER_ALLOWED,
                  ":4: match = severity: not a matcher; " MATCHER_ALLOWED,
                  ":5: match = sev~x: not a matcher; " MATCHER_ALLOWED,
                  ":6: match: empty value; " MATCHER_ALLOWED,
                  w,
                  ":8: match = a-b=c: not a matcher; " MATCHER_ALLOWED, NULL);
    free(w);
    /* Regexes glibc's regcomp() would take gigabytes or a minute to compile
    ** (found by fuzz_config) are refused up front; ordinary ones still load. */
    expect_errors(f,
                  "[target t]\nrouting_key = " KEY_A "\nmatch = a=~a++++++++++++++++++++++\n"
                  "match = b=~a+?+?+?+?+?+?+?+?+?+?\nmatch = c=~((x{1,50}){1,50}){1,50}\n"
                  "match = d=~node-[0-9]{1,3}\nmatch = e=~(a+)?|db|web|.*:9100\n",
#define TOO_COMPLEX ": regex too complex (stacked repetitions like a+?, or repetitions that expand to more " \
                    "than 1000 nodes); allowed: a POSIX extended regular expression, each repetition on its " \
                    "own atom or group"
                  ":3: match = a=~a++++++++++++++++++++++" TOO_COMPLEX,
                  ":4: match = b=~a+?+?+?+?+?+?+?+?+?+?" TOO_COMPLEX,
                  ":5: match = c=~((x{1,50}){1,50}){1,50}" TOO_COMPLEX, NULL);
}

typedef struct labels {
    const char *const *kv;   /* name, value, name, value, …, NULL */
} labels;

static const char *label_get(void *ctx, const char *name)
{
    const labels *l = ctx;
    for (size_t i = 0; l->kv[i]; i += 2)
        if (!strcmp(l->kv[i], name)) return l->kv[i + 1];
    return NULL;
}

static int matches(const pdr_target *t, const char *const *kv)
{
    labels l = {kv};
    return pdr_target_matches(t, label_get, &l);
}

static void test_matchers(void **state)
{
    fx *f = *state;
    load_ok(f,
            "[target t]\nrouting_key = " KEY_A "\n"
            "match = severity=critical\n"
            "match = env != staging\n"
            "match = team=~\"db|web\"\n"
            "match = instance!~.*:9100\n"
            "match = maintenance=\n"
            "[target all]\nrouting_key = " KEY_B "\n");
    const pdr_target *t = pdr_config_target(f->cfg, "t");
    assert_non_null(t);
    assert_int_equal(t->n_matchers, 5);
    static const struct { const char *label; pdr_match_op op; const char *value; } want[] = {
        {"severity", PDR_MATCH_EQ, "critical"}, {"env", PDR_MATCH_NE, "staging"},
        {"team", PDR_MATCH_RE, "db|web"}, {"instance", PDR_MATCH_NRE, ".*:9100"},
        {"maintenance", PDR_MATCH_EQ, ""},
    };
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(t->matchers[i].label, want[i].label);
        assert_int_equal(t->matchers[i].op, want[i].op);
        assert_string_equal(t->matchers[i].value, want[i].value);
    }

    const char *ok[] = {"severity", "critical", "env", "prod", "team", "db", "instance", "h:9200", NULL};
    assert_true(matches(t, ok));
    const char *no_env[] = {"severity", "critical", "team", "web", NULL};   /* absent env: "" != staging */
    assert_true(matches(t, no_env));
    const char *warning[] = {"severity", "warning", "team", "db", NULL};
    assert_false(matches(t, warning));
    const char *staging[] = {"severity", "critical", "env", "staging", "team", "db", NULL};
    assert_false(matches(t, staging));
    const char *no_team[] = {"severity", "critical", NULL};                 /* absent team: "" !~ db|web */
    assert_false(matches(t, no_team));
    const char *unanchored[] = {"severity", "critical", "team", "dbx", NULL};  /* the regex is anchored */
    assert_false(matches(t, unanchored));
    const char *node[] = {"severity", "critical", "team", "db", "instance", "h:9100", NULL};
    assert_false(matches(t, node));
    const char *maint[] = {"severity", "critical", "team", "db", "maintenance", "yes", NULL};
    assert_false(matches(t, maint));
    const char *maint_empty[] = {"severity", "critical", "team", "db", "maintenance", "", NULL};
    assert_true(matches(t, maint_empty));

    const pdr_target *all = pdr_config_target(f->cfg, "all");
    assert_non_null(all);
    assert_int_equal(all->n_matchers, 0);
    const char *none[] = {NULL};
    assert_true(matches(all, none));
    assert_true(pdr_target_matches(all, NULL, NULL));
    assert_false(pdr_target_matches(NULL, label_get, NULL));

    /* =~ .* holds for an absent label, as in Prometheus */
    load_ok(f, "[target x]\nrouting_key = " KEY_A "\nmatch = anything=~.*\nmatch = other!~.+\n");
    assert_true(matches(pdr_config_target(f->cfg, "x"), none));
}

/* ---- caps, several errors, files ---------------------------------------------- */

static void test_caps(void **state)
{
    fx *f = *state;
    size_t cap = 64 * 64 + 64;
    char *ini = calloc(1, cap * 2), *p;
    assert_non_null(ini);

    /* 65 targets: the 65th is refused at its header line (2 lines each) */
    p = ini;
    for (int i = 0; i <= PDR_CONFIG_MAX_TARGETS; i++)
        p += sprintf(p, "[target t%d]\nrouting_key = %s\n", i, KEY_A);
    char *w = tu_printf(":%d: too many targets; allowed: at most 64", 2 * PDR_CONFIG_MAX_TARGETS + 1);
    expect_errors(f, ini, w, NULL);
    free(w);

    /* 33 matchers */
    p = ini;
    p += sprintf(p, "[target m]\nrouting_key = %s\n", KEY_A);
    for (int i = 0; i <= PDR_CONFIG_MAX_MATCHERS; i++) p += sprintf(p, "match = l%d=v\n", i);
    w = tu_printf(":%d: too many match lines in [target m]; allowed: at most 32", PDR_CONFIG_MAX_MATCHERS + 3);
    expect_errors(f, ini, w, NULL);
    free(w);

    /* 150 errors: 100 recorded, then one line */
    p = ini;
    p += sprintf(p, "[agent]\n");
    for (int i = 0; i < 150; i++) p += sprintf(p, "k%d = 1\n", i);
    assert_int_equal(load(f, ini), PDR_ERR_CONFIG);
    assert_int_equal(f->errs.n, PDR_CONFIG_MAX_ERRORS + 1);
    w = tu_printf("%s:101: unknown key 'k99' in [agent]; allowed: data_dir, log_level, source, syslog, default_severity, outage_log_interval, fallback_target", f->path);
    assert_string_equal(f->errs.msgs[99], w);
    free(w);
    w = tu_printf("%s: too many errors; only the first 100 are shown", f->path);
    assert_string_equal(f->errs.msgs[100], w);
    free(w);
    free(ini);
}

static void test_several_errors_all_reported(void **state)
{
    fx *f = *state;
    expect_errors(f,
                  "; a file with one mistake of each kind\n"
                  "[agent]\n"
                  "log_level = chatty\n"
                  "[listen]\n"
                  "port = http\n"
                  "[dedup]\n"
                  "ttl = 1 day\n"
                  "[logging]\n"
                  "[target prod]\n"
                  "match = sev\n"
                  "[outbox]\n"
                  "max_event = 5\n",
                  ":3: log_level = chatty: unknown value; allowed: error, warn, info, debug",
                  ":5: port = http: not an integer; allowed: 0 to 65535",
                  ":7: ttl = 1 day" NOT_DURATION,
                  ":8: unknown section [logging]; allowed: [agent] [listen] [pagerduty] [outbox] [dedup] [target NAME]",
                  ":10: match = sev: not a matcher; " MATCHER_ALLOWED,
                  ":9: [target prod] has no routing key; allowed: routing_key = KEY (32 characters), "
                  "routing_key_file = PATH or webhook_url = URL",
                  ":12: unknown key 'max_event' in [outbox]; allowed: synchronous, commit_interval, max_events, max_bytes, min_free, max_dead, max_dead_age, "
                  "max_age, delay_note_after, resolved_while_queued",
                  NULL);
}

static void test_cannot_open(void **state)
{
    fx *f = *state;
    char *missing = tu_printf("%s/nope.ini", f->dir);
    assert_int_equal(pdr_config_load(missing, &f->cfg, &f->errs), PDR_ERR_IO);
    assert_null(f->cfg);
    assert_int_equal(f->errs.n, 1);
    char *want = tu_printf("%s: cannot open: No such file or directory", missing);
    assert_string_equal(f->errs.msgs[0], want);
    free(want);
    free(missing);

    /* errs may be NULL */
    tu_write_file(f->path, "[bogus]\n");
    pdr_config *c = (pdr_config *)f;   /* any non-NULL value: must be reset */
    assert_int_equal(pdr_config_load(f->path, &c, NULL), PDR_ERR_CONFIG);
    assert_null(c);
    assert_int_equal(pdr_config_load(NULL, &c, NULL), PDR_ERR_INVALID);
}

/* Writes n bytes (NULs allowed) as the config and loads it. */
static pdr_rc load_bytes(fx *f, const char *content, size_t n)
{
    pdr_config_destroy(f->cfg);
    f->cfg = NULL;
    pdr_config_errors_cleanup(&f->errs);
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(content, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    return pdr_config_load(f->path, &f->cfg, &f->errs);
}

/* Loads path, which must be refused with the one error "PATH: want". An
** alarm ends the test program if the load hangs (a FIFO) or spins
** (/dev/zero) instead. */
static void expect_refused_path(fx *f, const char *path, const char *want)
{
    pdr_config_destroy(f->cfg);
    f->cfg = NULL;
    pdr_config_errors_cleanup(&f->errs);
    alarm(20);
    pdr_rc rc = pdr_config_load(path, &f->cfg, &f->errs);
    alarm(0);
    assert_int_equal(rc, PDR_ERR_CONFIG);
    assert_null(f->cfg);
    assert_int_equal(f->errs.n, 1);
    char *full = tu_printf("%s: %s", path, want);
    assert_string_equal(f->errs.msgs[0], full);
    free(full);
}

static void test_not_a_regular_file(void **state)
{
    fx *f = *state;
    expect_refused_path(f, f->dir, "is a directory, not a config file; allowed: a regular file");
    expect_refused_path(f, "/dev/zero", "is a character device, not a config file; allowed: a regular file");
    char *fifo = tu_printf("%s/fifo.ini", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect_refused_path(f, fifo, "is a FIFO (named pipe), not a config file; allowed: a regular file");
    free(fifo);
}

static void test_size_limit(void **state)
{
    fx *f = *state;
    size_t max = 1024 * 1024;
    char *big = malloc(max + 1);
    assert_non_null(big);
    /* comment lines of 64 bytes: exactly 1 MiB is accepted */
    for (size_t i = 0; i < max; i += 64) {
        memset(big + i, ' ', 64);
        big[i] = ';';
        big[i + 63] = '\n';
    }
    assert_int_equal(load_bytes(f, big, max), PDR_OK);
    big[max] = '\n';
    assert_int_equal(load_bytes(f, big, max + 1), PDR_ERR_CONFIG);
    assert_int_equal(f->errs.n, 1);
    char *want = tu_printf("%s: is 1048577 bytes; allowed: a config file of at most 1 MiB (1048576 bytes)", f->path);
    assert_string_equal(f->errs.msgs[0], want);
    free(want);
    free(big);
}

static void test_text_screened(void **state)
{
    fx *f = *state;
    /* classic Mac OS line endings: all but the first section would be lost */
    expect_errors(f, "[agent]\rsource = mac\r[outbox]\rmax_events = 5\r",
                  ":1: lines end with CR only (classic Mac OS line endings); allowed: lines ending with LF or "
                  "CRLF: convert the file (e.g. tr '\\r' '\\n')",
                  NULL);
    expect_errors(f, "[agent]\nsource = a\rb\n",
                  ":2: a CR not followed by LF (a line ending with CR only); allowed: lines ending with LF or CRLF",
                  NULL);
    /* a NUL ends inih's line: what follows it would be lost */
    static const char nul[] = "[agent]\nsource = a\n\n[outbox]\nmax_events = 5\0\n[dedup]\nttl = 1h\n";
    assert_int_equal(load_bytes(f, nul, sizeof nul - 1), PDR_ERR_CONFIG);
    assert_int_equal(f->errs.n, 1);
    char *want = tu_printf("%s:5: contains a NUL byte: not a text file; allowed: a plain text INI file", f->path);
    assert_string_equal(f->errs.msgs[0], want);
    free(want);
    /* CRLF stays accepted, and a CR at the very end */
    load_ok(f, "[agent]\r\nsource = dos\r\n[outbox]\r\nmax_events = 5\r\n");
    assert_string_equal(f->cfg->source, "dos");
    assert_int_equal(f->cfg->max_events, 5);
    load_ok(f, "[agent]\nsource = end\r");
    assert_string_equal(f->cfg->source, "end");
}

static void test_shipped_config(void **state)
{
    pdr_config *c = NULL;
    pdr_config_errors errs = {0};
    const char *path = PDR_TEST_SOURCE_DIR "/config/pdrelay.ini";
    (void)state;
    pdr_rc rc = pdr_config_load(path, &c, &errs);
    for (size_t i = 0; i < errs.n; i++) print_message("%s\n", errs.msgs[i]);
    assert_int_equal(rc, PDR_OK);
    assert_int_equal(errs.n, 0);
    assert_string_equal(c->path, path);
    check_defaults(c);   /* every value it shows is the default */
    pdr_config_destroy(c);
    pdr_config_errors_cleanup(&errs);
}

/* ---- the key table against what is generated from it or kept beside it -- */

static const pdr_config_key *table_find(const char *section, const char *key)
{
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key)) return &keys[i];
    return NULL;
}

/* config/pdrelay.ini against the table: every key of the table is in it,
** commented out or not, its first occurrence with the table's default as its
** value (any value for a key without a default: source, the [target] keys)
** and the table's description as the comment lines just above it ("; "
** lines, joined with a space); and no key the table lacks. A key line is
** "key = value" or ";key = value"; a section header "[s]" or ";[s]". */
static void test_shipped_config_matches_table(void **state)
{
    const char *path = PDR_TEST_SOURCE_DIR "/config/pdrelay.ini";
    char *text = tu_read_file(path, NULL), *next;
    char section[64] = "", desc[4096] = "";
    size_t n, failures = 0;
    const pdr_config_key *keys = pdr_config_keys(&n);
    int *seen = calloc(n, sizeof *seen);
    int lineno = 0;
    (void)state;
    assert_non_null(text);
    assert_non_null(seen);
    for (char *line = text; line && *line; line = next) {
        char *p = line, *eq;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        if (!strncmp(p, "; ", 2)) {   /* prose: part of the next key's description */
            size_t len = strlen(desc);
            snprintf(desc + len, sizeof desc - len, "%s%s", len ? " " : "", p + 2);
            continue;
        }
        if (*p == ';') p++;
        if (*p == '[') {
            char *close = strchr(p, ']');
            size_t len = close ? (size_t)(close - p - 1) : 0;
            if (len >= sizeof section) len = sizeof section - 1;
            memcpy(section, p + 1, len);
            section[len] = '\0';
            if (!strncmp(section, "target ", 7)) section[6] = '\0';
            desc[0] = '\0';
            continue;
        }
        eq = strstr(p, " =");
        if (!eq || strspn(p, "abcdefghijklmnopqrstuvwxyz_") != (size_t)(eq - p) || eq == p) {
            desc[0] = '\0';   /* a blank line, a lone ';' or other prose ends a description */
            continue;
        }
        *eq = '\0';
        const char *value = eq[2] == ' ' ? eq + 3 : eq + 2;
        const pdr_config_key *k = table_find(section, p);
        if (!k) {
            print_message("%s:%d: [%s] %s: not a key of the table in config/config.c\n", path, lineno, section, p);
            failures++;
        } else if (!seen[k - keys]++) {
            if (k->def && strcmp(value, k->def)) {
                print_message("%s:%d: [%s] %s = %s, but the table's default is '%s'\n", path, lineno, section, p,
                              value, k->def);
                failures++;
            }
            if (strcmp(desc, k->desc)) {
                print_message("%s:%d: [%s] %s: the comment above it is\n  '%s'\nbut the table's description is\n"
                              "  '%s'\n", path, lineno, section, p, desc, k->desc);
                failures++;
            }
        }
        desc[0] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        if (seen[i]) continue;
        print_message("%s: [%s] %s is missing (commented out or not)\n", path, keys[i].section, keys[i].key);
        failures++;
    }
    free(seen);
    free(text);
    assert_int_equal(failures, 0);
}

/* The table is well formed: a description that every generated text can show
** as it is (one line of printable ASCII, no double blanks, ending with '.'),
** an enum's description names each of its values, and each field's size
** fits its type (CFG() in config.c records the size of the field named). */
static void test_key_table_well_formed(void **state)
{
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    (void)state;
    assert_true(n > 30);
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        size_t want = 0, len = k->desc ? strlen(k->desc) : 0, ascii = 0;
        while (ascii < len && k->desc[ascii] >= 0x20 && k->desc[ascii] < 0x7f) ascii++;
        if (len < 10 || ascii < len || strstr(k->desc, "  ") || k->desc[len - 1] != '.')
            fail_msg("[%s] %s: the description is not one line of plain ASCII text ending with '.'", k->section,
                     k->key);
        switch (k->type) {
        case PDR_KT_STRING:
        case PDR_KT_URL:
        case PDR_KT_URL_LIST:
        case PDR_KT_PER_URL: want = sizeof(char *); break;
        case PDR_KT_INT:
        case PDR_KT_ENUM: want = sizeof(int); break;
        case PDR_KT_INT64:
        case PDR_KT_MS:
        case PDR_KT_DURATION:
        case PDR_KT_SIZE: want = sizeof(int64_t); break;
        case PDR_KT_ROUTING_KEY:
        case PDR_KT_ROUTING_KEY_FILE:
        case PDR_KT_MATCH:
        case PDR_KT_WEBHOOK_URL:
        case PDR_KT_WEBHOOK_HEADERS:
        case PDR_KT_TARGET_RATE: want = 0; break;
        }
        if (k->size != want || !strcmp(k->section, "target") != (want == 0))
            fail_msg("[%s] %s: field of %zu bytes for a type of %zu", k->section, k->key, k->size, want);
        if (k->type == PDR_KT_ENUM)
            for (size_t e = 0; k->names[e]; e++)
                if (!strstr(k->desc, k->names[e]))
                    fail_msg("[%s] %s: the description does not name the value '%s'", k->section, k->key,
                             k->names[e]);
    }
    assert_non_null(table_find("outbox", "max_events"));
    assert_int_equal(table_find("outbox", "max_events")->reload, PDR_RELOAD_KEEP);
}

/* A value of k other than its default, valid alone. */
static char *other_value(const pdr_config_key *k)
{
    const char *def = k->def ? k->def : "";
    int64_t v;
    switch (k->type) {
    case PDR_KT_STRING: return tu_printf("%sx", def);
    case PDR_KT_URL:
    case PDR_KT_URL_LIST: return tu_printf("%s/x", def);
    case PDR_KT_PER_URL: return tu_printf("x");   /* one entry, as url has by default */
    case PDR_KT_INT:
    case PDR_KT_INT64:
    case PDR_KT_MS:
        v = strtoll(def, NULL, 10);
        return tu_printf("%lld", (long long)(v + 1 <= k->max ? v + 1 : v - 1));
    case PDR_KT_DURATION:
        v = 0;
        if (*def) assert_int_equal(pdr_duration_parse(def, &v), PDR_OK);
        return tu_printf("%lldms", (long long)(v + 1 <= k->max ? v + 1 : v - 1));
    case PDR_KT_SIZE:
        v = 0;
        assert_int_equal(pdr_size_parse(def, &v), PDR_OK);
        return tu_printf("%lld", (long long)(v + 1 <= k->max ? v + 1 : v - 1));
    case PDR_KT_ENUM:
        for (size_t e = 0; k->names[e]; e++)
            if (!strcmp(k->names[e], def)) return tu_printf("%s", k->names[e + 1] ? k->names[e + 1] : k->names[0]);
        break;
    default: break;
    }
    fail_msg("no other value for %s", k->key);
    return NULL;
}

/* What a reload compares (pdr_config_key_differs, used by cli_run.c's
** restart warning): a file that changes one key differs from the defaults in
** that key and in no other, for every key of every type; and
** pdr_config_keep_running puts back the running value of max_events only. */
static void test_key_differs_each_key(void **state)
{
    fx *f = *state;
    pdr_config *def = NULL;
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    assert_int_equal(pdr_config_defaults(&def), PDR_OK);
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        if (!k->size) continue;
        char *value = other_value(k), *content;
        if (!strcmp(k->section, "pagerduty") && !strcmp(k->key, "auth_token_file")) {
            /* read at load: it must name a token file */
            free(value);
            value = tu_printf("%s/x.token", f->dir);
            tu_write_file(value, "tok\n");
        }
        content = tu_printf("[%s]\n%s = %s\n", k->section, k->key, value);
        if (!strcmp(k->key, "fallback_target")) {   /* must name a target */
            char *more = tu_printf("%s[target %s]\nrouting_key = " KEY_A "\n", content, value);
            free(content);
            content = more;
        }
        char shown[256];
        load_ok(f, content);
        for (size_t j = 0; j < n; j++) {
            if (!keys[j].size) continue;
            if (pdr_config_key_differs(&keys[j], def, f->cfg) != (i == j))
                fail_msg("[%s] %s = %s: differs reports [%s] %s wrongly", k->section, k->key, value,
                         keys[j].section, keys[j].key);
        }
        /* the value as written comes back (durations in their largest unit) */
        pdr_config_key_value(k, f->cfg, shown, sizeof shown);
        if (k->type != PDR_KT_DURATION) assert_string_equal(shown, value);
        assert_int_equal(pdr_config_keep_running(f->cfg, def), PDR_OK);
        assert_int_equal(pdr_config_key_differs(k, def, f->cfg), k->reload != PDR_RELOAD_KEEP);
        free(content);
        free(value);
    }
    pdr_config_destroy(def);
}

static void test_names_and_null(void **state)
{
    (void)state;
    assert_string_equal(pdr_log_level_name(PDR_LOG_ERROR), "error");
    assert_string_equal(pdr_log_level_name(PDR_LOG_WARN), "warn");
    assert_string_equal(pdr_log_level_name(PDR_LOG_INFO), "info");
    assert_string_equal(pdr_log_level_name(PDR_LOG_DEBUG), "debug");
    pdr_config_destroy(NULL);
    pdr_config_errors_cleanup(NULL);
    pdr_config_errors e = {0};
    pdr_config_errors_cleanup(&e);
    assert_int_equal(e.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_shipped_config_matches_table),
        cmocka_unit_test(test_key_table_well_formed),
        cmocka_unit_test_setup_teardown(test_key_differs_each_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_is_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_type_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key_last_wins_and_empty_unsets, setup, teardown),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_size_parse_and_format),
        cmocka_unit_test_setup_teardown(test_sizes_in_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durations_in_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_interval_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_unknown_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_bad_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_bad_enum_url_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_backoff_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_url_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_continuation_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_length_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_routing_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_wrong_length_never_printed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_read_and_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_matchers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matchers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_errors_all_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cannot_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_screened, setup, teardown),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_names_and_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
