/*
** cli_queue.c — `pdrelay queue`: status, list, retry and purge of the outbox,
** check (the full integrity check of the file, db_integrity_check), and
** kick, which tells the running daemon that the uplink is back (SIGUSR1
** to the pid in data_dir/pdrelay.lock, once the lock is proved held).
** Every routing key printed is redacted; --json gives one JSON document (built
** with cJSON) for scripts. status, list and check only look: they open the
** outbox read-only, which creates nothing and refuses a missing one. What comes from
** alerts or the config (summary, dedup_key, last_error, target, path) is
** printed through pdr_log_escape: no control character or invalid UTF-8
** reaches the terminal, in the tables or in the JSON.
**
** export and import carry events by hand between outboxes in a bundle file
** (db/bundle.c: its format, the order of the steps that make both
** crash-safe). export without --remove only reads the outbox (opened
** read-only); everything they print from a bundle (site, ids, the path) is
** escaped like the rest. The daemon need not be stopped for either: an
** import's commit wakes its sender as a `pdrelay send` does (it watches
** the data directory).
*/
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "cli.h"
#include "event.h"
#include "log.h"

enum { OPT_JSON = 256, OPT_DEAD, OPT_KEY, OPT_LIMIT, OPT_ALL, OPT_OLDER, OPT_SINCE, OPT_REMOVE };

static const struct option queue_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"json", no_argument, NULL, OPT_JSON},
    {"dead", no_argument, NULL, OPT_DEAD},
    {"key", required_argument, NULL, OPT_KEY},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"all", no_argument, NULL, OPT_ALL},
    {"older-than", required_argument, NULL, OPT_OLDER},
    {"since", required_argument, NULL, OPT_SINCE},
    {"remove", no_argument, NULL, OPT_REMOVE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}
};

typedef struct queue_args {
    const char *config;
    int json, dead, all, remove;
    const char *key;
    const char *since;
    const char *limit;
    const char *older;
    const char *sub;
    char **ids;
    int n_ids;
} queue_args;

static int queue_parse(int argc, char **argv, queue_args *a)
{
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", queue_options, NULL)) != -1) {
        switch (c) {
        case 'c': a->config = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_DEAD: a->dead = 1; break;
        case OPT_KEY: a->key = optarg; break;
        case OPT_LIMIT: a->limit = optarg; break;
        case OPT_ALL: a->all = 1; break;
        case OPT_OLDER: a->older = optarg; break;
        case OPT_SINCE: a->since = optarg; break;
        case OPT_REMOVE: a->remove = 1; break;
        case 'h': cli_help(stdout, "queue"); return -1;
        case ':':
        default:
            return cli_getopt_error("queue", c, argv);
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "pdrelay queue: missing subcommand: status, list, retry, purge, check, kick, export or import; "
                        "see 'pdrelay queue --help'\n");
        return CLI_EXIT_USAGE;
    }
    a->sub = argv[optind++];
    a->ids = argv + optind;
    a->n_ids = argc - optind;
    return 0;
}

static const char *shown(const char *s);

/* Flags that a subcommand does not take are errors, not silently ignored. */
static int queue_check_flags(const queue_args *a)
{
    struct { int given; const char *flag; const char *subs; } f[] = {
        {a->dead, "--dead", "list purge"},
        {a->key != NULL, "--key", "list retry export"},
        {a->limit != NULL, "--limit", "list"},
        {a->all, "--all", "retry"},
        {a->older != NULL, "--older-than", "purge"},
        {a->since != NULL, "--since", "export"},
        {a->remove, "--remove", "export"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (!f[i].given) continue;
        const char *s = strstr(f[i].subs, a->sub);
        size_t n = strlen(a->sub);
        if (!s || (s[n] != ' ' && s[n] != '\0')) {
            fprintf(stderr, "pdrelay queue %s: %s is not an option of '%s' (it belongs to: %s)\n",
                    a->sub, f[i].flag, a->sub, f[i].subs);
            bad = 1;
        }
    }
    if (!strcmp(a->sub, "export") || !strcmp(a->sub, "import")) {
        if (a->n_ids != 1) {
            fprintf(stderr, "pdrelay queue %s: give one FILE (the bundle%s); see 'pdrelay queue --help'\n",
                    a->sub, a->n_ids ? ", not several" : "");
            bad = 1;
        }
    } else if (a->n_ids && strcmp(a->sub, "retry")) {
        fprintf(stderr, "pdrelay queue %s: unexpected argument '%s'\n", a->sub, shown(a->ids[0]));
        bad = 1;
    }
    return bad ? CLI_EXIT_USAGE : 0;
}


/* `queue kick`: SIGUSR1 to the daemon serving cfg's data_dir (exit 1 when
** none runs there, as for anything not found). */
static int queue_kick(const pdr_config *cfg)
{
    char why[4400] = "";
    long pid = db_daemon_pid(cfg->data_dir, why, sizeof why);
    if (pid < 0) {
        fprintf(stderr, "pdrelay queue kick: %s\n", why);
        return CLI_EXIT_FAIL;
    }
    if (pid > 0 && kill((pid_t)pid, SIGUSR1) != 0) {
        if (errno != ESRCH) {
            fprintf(stderr, "pdrelay queue kick: cannot signal pdrelay (pid %ld): %s; run it as the daemon's "
                            "user or root\n", pid, strerror(errno));
            return CLI_EXIT_FAIL;
        }
        pid = 0;
    }
    if (pid == 0) {
        fprintf(stderr, "pdrelay queue kick: no daemon is running on %s\n", cfg->data_dir);
        return CLI_EXIT_FAIL;
    }
    printf("kicked pdrelay (pid %ld): probing the uplink now\n", pid);
    return CLI_EXIT_OK;
}

/* Prints doc, with what cJSON leaves raw (DEL, C1, invalid UTF-8) escaped. */
static void print_json(cJSON *doc)
{
    char *s = doc ? cJSON_Print(doc) : NULL;
    char *e = s ? pdr_log_escape_dup(s, PDR_ESC_JSON) : NULL;
    if (e)
        printf("%s\n", e);
    else
        fprintf(stderr, "pdrelay queue: out of memory\n");
    free(e);
    cJSON_free(s);
    cJSON_Delete(doc);
}

/* Text for a table: s escaped (see log.h), in one of a few rotating buffers
** freed by the next calls; "?" when out of memory. */
static const char *shown(const char *s)
{
    static char *ring[4];
    static size_t next;
    char *e = pdr_log_escape_dup(s, PDR_ESC_TEXT);
    free(ring[next]);
    ring[next] = e;
    next = (next + 1) % (sizeof ring / sizeof ring[0]);
    return e ? e : "?";
}

/* How long a key's backlog takes at its current rate: pending events at
** rate_per_minute (or the halved rate of a throttled key, after its wait). */
static int64_t drain_eta_ms(const db_key_stats *k, const pdr_config *cfg, int64_t now)
{
    int throttled = k->throttled_until_ms > now;
    int rate = throttled && k->throttle_rate > 0 ? k->throttle_rate : cfg->rate_per_minute;
    /* rate_per_minute 0: no limiter on this hop (upstream = relay), no estimate of its own */
    int64_t eta = rate > 0 ? k->pending * 60000 / rate : 0;
    return eta + (throttled ? k->throttled_until_ms - now : 0);
}

/* n bytes as "812 B", "4.0 KiB", "20.4 MiB", "1.2 GiB". */
static const char *fmt_bytes(int64_t n, char *out, size_t outsz)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(out, outsz, "%lld B", (long long)n);
    else snprintf(out, outsz, "%.1f %s", v, units[u]);
    return out;
}

static int queue_status(db_handle *db, const pdr_config *cfg, int json)
{
    db_key_stats *st = NULL;
    size_t n = 0;
    int64_t pending = 0, dead = 0, since = 0;
    int64_t now = pdr_clock_now_ms();
    int link = 0;
    char red[PDR_REDACT_SIZE], age[32], next[32], why[4400] = "", when[PDR_TIMESTAMP_SIZE], upstream[600];
    long pid = db_daemon_pid(cfg->data_dir, why, sizeof why);
    db_counts counts;
    int64_t file_bytes = 0, wal_bytes = 0;
    pdr_rc rc = db_outbox_counts(db, &counts);
    pending = counts.pending;
    dead = counts.dead;
    if (!rc) rc = db_file_sizes(db, &file_bytes, &wal_bytes);
    if (!rc) rc = db_outbox_stats(db, &st, &n);
    if (!rc) rc = db_link_get(db, &link, &since);
    if (!rc) rc = db_upstream_get(db, upstream, sizeof upstream);
    if (rc) {
        fprintf(stderr, "pdrelay queue status: %s: %s (%s)\n", db_path(db), pdr_strerror(rc), db_errmsg(db));
        free(st);
        return cli_exit_for(rc);
    }
    if (link < DB_LINK_UP || link > DB_LINK_PROBING) link = DB_LINK_UP;
    /* the uplink as the running daemon last recorded it; unknown without one */
    const char *uplink = pid > 0 ? db_link_state_name(link) : "unknown";
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON *up = cJSON_AddObjectToObject(doc, "uplink");
        cJSON_AddStringToObject(up, "state", uplink);
        if (pid > 0 && since) cJSON_AddStringToObject(up, "since", pdr_timestamp_format(since, when));
        else cJSON_AddNullToObject(up, "since");
        cJSON_AddBoolToObject(up, "daemon_running", pid > 0);
        /* the url requests go to ([pagerduty] url, agent/upstream.h) */
        if (pid > 0 && upstream[0]) cJSON_AddStringToObject(up, "upstream", upstream);
        else cJSON_AddNullToObject(up, "upstream");
        cJSON *keys = cJSON_AddArrayToObject(doc, "keys");
        cJSON_AddStringToObject(doc, "database", db_path(db));
        cJSON_AddNumberToObject(doc, "pending", (double)pending);
        cJSON_AddNumberToObject(doc, "dead", (double)dead);
        cJSON_AddNumberToObject(doc, "max_events", (double)cfg->max_events);
        cJSON_AddNumberToObject(doc, "max_bytes", (double)cfg->max_bytes);
        cJSON_AddNumberToObject(doc, "min_free", (double)cfg->min_free);
        cJSON_AddNumberToObject(doc, "max_dead", (double)cfg->max_dead);
        /* on disk: the file and its WAL; in it: the bodies of the rows */
        cJSON_AddNumberToObject(doc, "database_bytes", (double)(file_bytes + wal_bytes));
        cJSON_AddNumberToObject(doc, "database_file_bytes", (double)file_bytes);
        cJSON_AddNumberToObject(doc, "wal_bytes", (double)wal_bytes);
        cJSON_AddNumberToObject(doc, "pending_bytes", (double)counts.pending_bytes);
        cJSON_AddNumberToObject(doc, "dead_bytes", (double)counts.dead_bytes);
        for (size_t i = 0; i < n; i++) {
            cJSON *k = cJSON_CreateObject();
            const char *t = cli_target_of(cfg, st[i].routing_key);
            cJSON_AddItemToArray(keys, k);
            cJSON_AddStringToObject(k, "routing_key", pdr_redact(st[i].routing_key, red, sizeof red));
            if (t) cJSON_AddStringToObject(k, "target", t);
            else cJSON_AddNullToObject(k, "target");
            cJSON_AddNumberToObject(k, "pending", (double)st[i].pending);
            cJSON_AddNumberToObject(k, "dead", (double)st[i].dead);
            if (st[i].pending) {
                cJSON_AddNumberToObject(k, "oldest_pending_age_ms", (double)(now - st[i].oldest_pending_ms));
                cJSON_AddNumberToObject(k, "next_attempt_in_ms",
                                        (double)(st[i].next_attempt_ms > now ? st[i].next_attempt_ms - now : 0));
                cJSON_AddNumberToObject(k, "drain_eta_ms", (double)drain_eta_ms(&st[i], cfg, now));
            } else {
                cJSON_AddNullToObject(k, "oldest_pending_age_ms");
                cJSON_AddNullToObject(k, "next_attempt_in_ms");
                cJSON_AddNullToObject(k, "drain_eta_ms");
            }
            if (st[i].throttled_until_ms > now) {
                cJSON_AddStringToObject(k, "throttled_until", pdr_timestamp_format(st[i].throttled_until_ms, when));
                cJSON_AddNumberToObject(k, "rate_per_minute", st[i].throttle_rate);
            } else {
                cJSON_AddNullToObject(k, "throttled_until");
                cJSON_AddNumberToObject(k, "rate_per_minute", cfg->rate_per_minute);
            }
        }
        print_json(doc);
    } else {
        char mb[32], mf[32];
        printf("outbox %s: %lld pending, %lld dead (max_events %lld, max_bytes %s, min_free %s, max_dead %lld)\n",
               shown(db_path(db)), (long long)pending, (long long)dead, (long long)cfg->max_events,
               pdr_size_format(cfg->max_bytes, mb, sizeof mb), pdr_size_format(cfg->min_free, mf, sizeof mf),
               (long long)cfg->max_dead);
        {
            char a[24], b[24], c[24], d[24], e[24];
            printf("database: %s on disk (file %s + WAL %s); it holds %s of pending events and %s of dead "
                   "letters\n", fmt_bytes(file_bytes + wal_bytes, a, sizeof a), fmt_bytes(file_bytes, b, sizeof b),
                   fmt_bytes(wal_bytes, c, sizeof c), fmt_bytes(counts.pending_bytes, d, sizeof d),
                   fmt_bytes(counts.dead_bytes, e, sizeof e));
        }
        if (pid <= 0)
            printf("uplink: unknown (no daemon is running on %s)\n", shown(cfg->data_dir));
        else if (link == DB_LINK_UP)
            printf("uplink: up\n");
        else
            printf("uplink: %s for %s (since %s); events wait for it\n", uplink,
                   pdr_fmt_age(now - since, age, sizeof age), pdr_timestamp_format(since, when));
        if (pid > 0 && upstream[0] && cfg->n_upstreams > 1) {
            size_t at = 0;
            for (size_t i = 0; i < cfg->n_upstreams && !at; i++) {
                char u[600];
                if (!strcmp(pdr_url_redact(cfg->upstreams[i].url, u, sizeof u), upstream)) at = i + 1;
            }
            if (at) printf("upstream: %s (url %zu of %zu%s)\n", shown(upstream), at, cfg->n_upstreams,
                           at > 1 ? "; the first is probed to fail back" : "");
            else printf("upstream: %s\n", shown(upstream));
        }
        if (n) printf("%-12s %-16s %8s %6s  %-14s %-12s %-12s %s\n", "ROUTING KEY", "TARGET", "PENDING", "DEAD",
                      "OLDEST PENDING", "NEXT ATTEMPT", "DRAIN ETA", "STATE");
        for (size_t i = 0; i < n; i++) {
            const char *t = cli_target_of(cfg, st[i].routing_key);
            char eta[40], state[96];
            if (st[i].pending) {
                char d[24];
                pdr_fmt_age(now - st[i].oldest_pending_ms, age, sizeof age);
                if (st[i].next_attempt_ms <= now) snprintf(next, sizeof next, "now");
                else {
                    char in[24];
                    snprintf(next, sizeof next, "in %s", pdr_fmt_age(st[i].next_attempt_ms - now, in, sizeof in));
                }
                snprintf(eta, sizeof eta, "%s%s", pdr_fmt_age(drain_eta_ms(&st[i], cfg, now), d, sizeof d),
                         pid > 0 && link != DB_LINK_UP ? "+uplink" : "");
            } else {
                snprintf(age, sizeof age, "-");
                snprintf(next, sizeof next, "-");
                snprintf(eta, sizeof eta, "-");
            }
            if (st[i].throttled_until_ms > now)
                snprintf(state, sizeof state, "throttled until %s, then %d/min",
                         pdr_timestamp_format(st[i].throttled_until_ms, when), st[i].throttle_rate);
            else
                snprintf(state, sizeof state, "%s", st[i].pending ? "sending" : "-");
            /* The redacted key holds a 3-byte ellipsis: pad by bytes + 2. */
            printf("%-14s %-16s %8lld %6lld  %-14s %-12s %-12s %s\n", pdr_redact(st[i].routing_key, red, sizeof red),
                   t ? shown(t) : "-", (long long)st[i].pending, (long long)st[i].dead, age, next, eta, state);
        }
    }
    free(st);
    return CLI_EXIT_OK;
}

static const char *row_summary(const db_row *r, cJSON **owner)
{
    cJSON *ev = cJSON_ParseWithLength(r->body, r->body_len);
    cJSON *p = ev ? cJSON_GetObjectItemCaseSensitive(ev, "payload") : NULL;
    cJSON *s = p ? cJSON_GetObjectItemCaseSensitive(p, "summary") : NULL;
    *owner = ev;
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

static int parse_count(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

static int queue_list(db_handle *db, const pdr_config *cfg, const queue_args *a)
{
    long long limit = 100;
    const char *key = NULL;
    db_row *rows = NULL;
    size_t n = 0;
    int64_t now = pdr_clock_now_ms();
    char red[PDR_REDACT_SIZE], age[32];

    if (a->limit && parse_count(a->limit, &limit)) {
        fprintf(stderr, "pdrelay queue list: invalid --limit '%s'; expected a number >= 0 (0 = all)\n", a->limit);
        return CLI_EXIT_USAGE;
    }
    if (a->key && !(key = cli_resolve_key("queue list", cfg, a->key))) return CLI_EXIT_USAGE;
    pdr_rc rc = db_outbox_list(db, a->dead ? DB_ROW_DEAD : DB_ROW_PENDING, key, (size_t)limit, &rows, &n);
    if (rc) {
        fprintf(stderr, "pdrelay queue list: %s: %s (%s)\n", db_path(db), pdr_strerror(rc), db_errmsg(db));
        return cli_exit_for(rc);
    }
    cJSON *doc = a->json ? cJSON_CreateArray() : NULL;
    if (!a->json && n)
        printf("%-8s %-14s %-11s %8s %-8s %s\n", "ID", "ROUTING KEY", "ACTION", "ATTEMPTS", "AGE", "DEDUP KEY");
    for (size_t i = 0; i < n; i++) {
        const db_row *r = &rows[i];
        cJSON *owner;
        const char *summary = row_summary(r, &owner);
        pdr_redact(r->routing_key, red, sizeof red);
        if (a->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(doc, o);
            cJSON_AddNumberToObject(o, "id", (double)r->id);
            cJSON_AddStringToObject(o, "state", r->state == DB_ROW_DEAD ? "dead" : "pending");
            cJSON_AddStringToObject(o, "routing_key", red);
            const char *t = cli_target_of(cfg, r->routing_key);
            if (t) cJSON_AddStringToObject(o, "target", t); else cJSON_AddNullToObject(o, "target");
            cJSON_AddStringToObject(o, "action", pdr_action_name(r->action) ? pdr_action_name(r->action) : "?");
            if (r->dedup_key) cJSON_AddStringToObject(o, "dedup_key", r->dedup_key);
            else cJSON_AddNullToObject(o, "dedup_key");
            if (summary) cJSON_AddStringToObject(o, "summary", summary);
            else cJSON_AddNullToObject(o, "summary");
            cJSON_AddNumberToObject(o, "attempts", (double)r->attempts);
            cJSON_AddNumberToObject(o, "created_ms", (double)r->created_ms);
            cJSON_AddNumberToObject(o, "next_attempt_ms", (double)r->next_ms);
            if (r->state == DB_ROW_DEAD) cJSON_AddNumberToObject(o, "dead_ms", (double)r->dead_ms);
            if (r->last_error) cJSON_AddStringToObject(o, "last_error", r->last_error);
            else cJSON_AddNullToObject(o, "last_error");
        } else {
            printf("%-8lld %-16s %-11s %8lld %-8s %s\n", (long long)r->id, red,
                   pdr_action_name(r->action) ? pdr_action_name(r->action) : "?", (long long)r->attempts,
                   pdr_fmt_age(now - r->created_ms, age, sizeof age), r->dedup_key ? shown(r->dedup_key) : "-");
            if (summary) printf("         summary: %s\n", shown(summary));
            if (r->last_error) printf("         %s: %s\n", r->state == DB_ROW_DEAD ? "died of" : "last error",
                                      shown(r->last_error));
        }
        cJSON_Delete(owner);
    }
    if (a->json) print_json(doc);
    else if (!n) printf("no %s events%s\n", a->dead ? "dead" : "pending", a->key ? " for this key" : "");
    db_rows_free(rows, n);
    return CLI_EXIT_OK;
}

static int queue_retry(db_handle *db, const pdr_config *cfg, const queue_args *a)
{
    int64_t n = 0;
    pdr_rc rc = PDR_OK;
    int modes = (a->all ? 1 : 0) + (a->key ? 1 : 0) + (a->n_ids ? 1 : 0);
    int ex = CLI_EXIT_OK;

    if (modes != 1) {
        fprintf(stderr, "pdrelay queue retry: give exactly one of --all, --key K or IDs\n");
        return CLI_EXIT_USAGE;
    }
    if (a->all) {
        rc = db_outbox_retry_all(db, &n);
    } else if (a->key) {
        const char *key = cli_resolve_key("queue retry", cfg, a->key);
        if (!key) return CLI_EXIT_USAGE;
        rc = db_outbox_retry_key(db, key, &n);
    } else {
        for (int i = 0; i < a->n_ids; i++) {
            long long id;
            if (parse_count(a->ids[i], &id) || id == 0) {
                fprintf(stderr, "pdrelay queue retry: invalid id '%s'; expected a positive number "
                                "(see 'pdrelay queue list --dead')\n", a->ids[i]);
                return CLI_EXIT_USAGE;
            }
        }
        for (int i = 0; i < a->n_ids; i++) {
            pdr_rc r = db_outbox_retry_id(db, strtoll(a->ids[i], NULL, 10));
            if (r == PDR_ERR_NOT_FOUND) {
                fprintf(stderr, "pdrelay queue retry: %s: no dead letter with this id\n", a->ids[i]);
                ex = CLI_EXIT_FAIL;
            } else if (r) {
                rc = r;
                break;
            } else {
                n++;
            }
        }
    }
    if (rc) {
        fprintf(stderr, "pdrelay queue retry: %s: %s (%s)\n", db_path(db), pdr_strerror(rc), db_errmsg(db));
        return cli_exit_for(rc);
    }
    if (a->json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "retried", (double)n);
        print_json(doc);
    } else {
        printf("retried %lld dead letter%s: pending again, due now\n", (long long)n, n == 1 ? "" : "s");
    }
    return ex;
}

static int queue_purge(db_handle *db, const queue_args *a)
{
    int64_t cutoff = INT64_MAX, older = 0, n = 0;
    if (!a->dead) {
        fprintf(stderr, "pdrelay queue purge: only dead letters can be purged: give --dead "
                        "(pending events are never purged)\n");
        return CLI_EXIT_USAGE;
    }
    if (a->older) {
        if (pdr_duration_parse(a->older, &older)) {
            fprintf(stderr, "pdrelay queue purge: invalid --older-than '%s'; expected a duration such "
                            "as 90s, 30m, 12h or 7d (units ms, s, m, h, d)\n", a->older);
            return CLI_EXIT_USAGE;
        }
        cutoff = pdr_clock_now_ms() - older;
    }
    pdr_rc rc = db_outbox_purge_dead(db, cutoff, &n);
    if (rc) {
        fprintf(stderr, "pdrelay queue purge: %s: %s (%s)\n", db_path(db), pdr_strerror(rc), db_errmsg(db));
        return cli_exit_for(rc);
    }
    if (a->json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "purged", (double)n);
        print_json(doc);
    } else {
        printf("purged %lld dead letter%s%s%s\n", (long long)n, n == 1 ? "" : "s",
               a->older ? " older than " : "", a->older ? a->older : "");
    }
    return CLI_EXIT_OK;
}

/* The problems integrity_check reports, escaped as they come (they quote
** the file: a damaged page's bytes may be in them). */
typedef struct check_report {
    int json;
    cJSON *problems;
} check_report;

static void check_problem(void *ctx, const char *text)
{
    check_report *r = ctx;
    if (r->json) cJSON_AddItemToArray(r->problems, cJSON_CreateString(text));
    else printf("problem: %s\n", shown(text));
}

/* `queue check`: PRAGMA integrity_check over the whole file; exit 0 when
** sound, else each problem and the exit code of a corrupt outbox (1). */
static int queue_check(db_handle *db, int json)
{
    struct timespec t0, t1;
    check_report r = {json, json ? cJSON_CreateArray() : NULL};
    int64_t n = 0;
    double ms;
    pdr_rc rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = db_integrity_check(db, check_problem, &r, &n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (rc) {
        cJSON_Delete(r.problems);
        fprintf(stderr, "pdrelay queue check: %s: %s (%s)\n", shown(db_path(db)), pdr_strerror(rc),
                shown(db_errmsg(db)));
        return cli_exit_for(rc);
    }
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "database", db_path(db));
        cJSON_AddBoolToObject(doc, "ok", n == 0);
        cJSON_AddItemToObject(doc, "problems", r.problems);
        cJSON_AddNumberToObject(doc, "elapsed_ms", ms);
        print_json(doc);
    } else if (n == 0) {
        printf("ok: %s: every page and index entry checked in %.1f ms\n", shown(db_path(db)), ms);
    } else {
        fprintf(stderr, "pdrelay queue check: %s is corrupt: %lld problem%s%s (integrity_check, %.1f ms). Stop "
                        "pdrelay, move the file aside to start with an empty outbox, or restore a backup.\n",
                shown(db_path(db)), (long long)n, n == 1 ? "" : "s", n >= 100 ? " or more" : "", ms);
    }
    return n ? cli_exit_for(PDR_ERR_CORRUPT) : CLI_EXIT_OK;
}

/* --since T: an RFC 3339 time (2026-11-30T08:00:00Z), or a duration meaning
** that long ago (12h, 7d). */
static int parse_since(const char *s, int64_t *ms_out)
{
    int64_t d;
    if (pdr_timestamp_parse_ms(s, ms_out) == PDR_OK) return 0;
    if (pdr_duration_parse(s, &d) == PDR_OK) {
        *ms_out = pdr_clock_now_ms() - d;
        return 0;
    }
    return -1;
}

/* The exit code of a failed export or import: a bad bundle, or a FILE that
** exists, is the input's fault (2); a bound or a lock, retry later (75). */
static int bundle_exit_for(pdr_rc rc)
{
    if (rc == PDR_ERR_CORRUPT || rc == PDR_ERR_TOO_NEW) return CLI_EXIT_USAGE;
    return cli_exit_for(rc);
}

static void bundle_error(const char *sub, const char *err, pdr_rc rc)
{
    fprintf(stderr, "pdrelay queue %s: %s\n", sub, shown(err[0] ? err : pdr_strerror(rc)));
}

static int queue_export(db_handle *db, const pdr_config *cfg, const queue_args *a)
{
    db_export_opts o;
    db_bundle_info info;
    char err[1024] = "", when[PDR_TIMESTAMP_SIZE];
    pdr_rc rc;

    memset(&o, 0, sizeof o);
    o.path = a->ids[0];
    o.since_ms = INT64_MIN;
    o.site = cfg->source;
    o.remove = a->remove;
    if (a->key && !(o.routing_key = cli_resolve_key("queue export", cfg, a->key))) return CLI_EXIT_USAGE;
    if (a->since && parse_since(a->since, &o.since_ms)) {
        fprintf(stderr, "pdrelay queue export: invalid --since '%s'; expected an RFC 3339 time such as "
                        "2026-11-30T08:00:00Z, or a duration meaning that long ago, such as 12h or 7d\n",
                shown(a->since));
        return CLI_EXIT_USAGE;
    }
    rc = db_bundle_export(db, &o, &info, err, sizeof err);
    if (rc) {
        bundle_error("export", err, rc);
        return bundle_exit_for(rc);
    }
    if (a->json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "exported", (double)info.count);
        if (info.count) {
            cJSON_AddStringToObject(doc, "file", o.path);
            cJSON_AddStringToObject(doc, "bundle_id", info.bundle_id);
            cJSON_AddStringToObject(doc, "sha256", info.sha256);
            cJSON_AddStringToObject(doc, "created", pdr_timestamp_format(info.created_ms, when));
        } else {
            cJSON_AddNullToObject(doc, "file");
        }
        cJSON_AddBoolToObject(doc, "removed", info.count && o.remove);
        print_json(doc);
    } else if (!info.count) {
        printf("nothing to export: no pending events%s%s; no file written\n", a->key ? " for this key" : "",
               a->since ? " since then" : "");
    } else {
        printf("exported %lld event%s to %s (bundle %s, sha256 %s)%s\n", (long long)info.count,
               info.count == 1 ? "" : "s", shown(o.path), info.bundle_id, info.sha256,
               o.remove ? " and removed them from the outbox" : "");
    }
    return CLI_EXIT_OK;
}

static int queue_import(db_handle *db, const queue_args *a)
{
    db_import_result r;
    char err[1024] = "", when[PDR_TIMESTAMP_SIZE], made[PDR_TIMESTAMP_SIZE], from[320];
    const char *path = a->ids[0];
    pdr_rc rc = db_bundle_import(db, path, &r, err, sizeof err);
    if (rc) {
        bundle_error("import", err, rc);
        return bundle_exit_for(rc);
    }
    if (r.info.site[0])
        snprintf(from, sizeof from, "%s", shown(r.info.site));
    else
        snprintf(from, sizeof from, "outbox %s", shown(r.info.origin));
    if (a->json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "file", path);
        cJSON_AddStringToObject(doc, "bundle_id", r.info.bundle_id);
        if (r.info.site[0]) cJSON_AddStringToObject(doc, "site", r.info.site);
        else cJSON_AddNullToObject(doc, "site");
        cJSON_AddStringToObject(doc, "origin", r.info.origin);
        cJSON_AddStringToObject(doc, "exported", pdr_timestamp_format(r.info.created_ms, made));
        cJSON_AddNumberToObject(doc, "bundle_schema_version", r.info.version);
        cJSON_AddBoolToObject(doc, "already_imported", r.already);
        if (r.already) cJSON_AddStringToObject(doc, "imported_at", pdr_timestamp_format(r.imported_ms, when));
        cJSON_AddNumberToObject(doc, "imported", (double)r.imported);
        cJSON_AddNumberToObject(doc, "already_present", (double)r.present);
        print_json(doc);
    } else if (r.already) {
        printf("%s: bundle %s from %s was already imported on %s; nothing queued\n", shown(path),
               shown(r.info.bundle_id), from, pdr_timestamp_format(r.imported_ms, when));
    } else {
        printf("imported %lld event%s from %s (bundle %s from %s, exported %s); %lld already present\n",
               (long long)r.imported, r.imported == 1 ? "" : "s", shown(path), shown(r.info.bundle_id), from,
               pdr_timestamp_format(r.info.created_ms, made), (long long)r.present);
    }
    return CLI_EXIT_OK;
}

int cli_queue(int argc, char **argv)
{
    queue_args a;
    pdr_config *cfg = NULL;
    db_handle *db = NULL;
    int ex;

    memset(&a, 0, sizeof a);
    ex = queue_parse(argc, argv, &a);
    if (ex) return ex < 0 ? CLI_EXIT_OK : ex;
    if (strcmp(a.sub, "status") && strcmp(a.sub, "list") && strcmp(a.sub, "retry") && strcmp(a.sub, "purge") &&
        strcmp(a.sub, "kick") && strcmp(a.sub, "check") && strcmp(a.sub, "export") && strcmp(a.sub, "import")) {
        fprintf(stderr, "pdrelay queue: unknown subcommand '%s'; expected status, list, retry, purge, check, kick, "
                        "export or import\n", shown(a.sub));
        return CLI_EXIT_USAGE;
    }
    ex = queue_check_flags(&a);
    if (ex) return ex;
    cfg = cli_config_load("queue", a.config, &ex);
    if (!cfg) return ex;
    if (!strcmp(a.sub, "kick")) {
        ex = queue_kick(cfg);   /* the database is not opened */
        goto out;
    }
    if (!strcmp(a.sub, "check"))
        db = cli_db_open_unchecked("queue", cfg, &ex);   /* it reports every problem itself */
    else if (!strcmp(a.sub, "status") || !strcmp(a.sub, "list") || (!strcmp(a.sub, "export") && !a.remove))
        db = cli_db_open_read_only("queue", cfg, &ex);
    else
        db = cli_db_open("queue", cfg, &ex);
    if (!db) goto out;

    if (!strcmp(a.sub, "status")) ex = queue_status(db, cfg, a.json);
    else if (!strcmp(a.sub, "list")) ex = queue_list(db, cfg, &a);
    else if (!strcmp(a.sub, "check")) ex = queue_check(db, a.json);
    else if (!strcmp(a.sub, "retry")) ex = queue_retry(db, cfg, &a);
    else if (!strcmp(a.sub, "export")) ex = queue_export(db, cfg, &a);
    else if (!strcmp(a.sub, "import")) ex = queue_import(db, &a);
    else ex = queue_purge(db, &a);
out:
    db_close(db);
    pdr_config_destroy(cfg);
    return ex;
}
