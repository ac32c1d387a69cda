/*
** cli_config.c — `pdrelay config check`: load a config, print every error
** (exit 2) or a summary of the effective settings with keys redacted (exit 0),
** with a warning for each file holding a secret that group or others can
** read; and that check of file modes (cli_modes_check), which `run` shares.
** `pdrelay config keys [--markdown]`: the key table of config/config.c, as
** text or as the Markdown table README.md's "Configuration" section holds
** between its config-keys markers (tests/cli/test_cli.c compares them).
*/
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "ingest.h"
#include "log.h"

static const struct option config_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {"markdown", no_argument, NULL, 'm'},
    {NULL, 0, NULL, 0}
};

static const char *match_op(pdr_match_op op)
{
    switch (op) {
    case PDR_MATCH_EQ: return "=";
    case PDR_MATCH_NE: return "!=";
    case PDR_MATCH_RE: return "=~";
    case PDR_MATCH_NRE: return "!~";
    }
    return "?";
}

/* Values from the file printed as text: escaped like the queue tables, so a
** control character in the file cannot act on the terminal. Each call's
** copy is kept in pool (freed by the caller) so one printf can take many. */
typedef struct esc_pool {
    char *s[16];
    size_t n;
} esc_pool;

static const char *esc(esc_pool *p, const char *s)
{
    char *e;
    if (!s || !*s) return "(unset)";
    if (p->n == sizeof p->s / sizeof p->s[0]) return "(?)";
    e = pdr_log_escape_dup(s, PDR_ESC_TEXT);
    if (!e) return "(?)";
    p->s[p->n++] = e;
    return e;
}

static void esc_free(esc_pool *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->s[i]);
    p->n = 0;
}

/* The effective settings, section by section, generated from the key table
** (config/config.c) so that every key is shown and none twice. Values are
** escaped; a URL's credentials are redacted, in each entry of a list
** (pdr_url_list_redact). */
static void config_print(const pdr_config *c)
{
    size_t n = 0;
    const pdr_config_key *keys = pdr_config_keys(&n);
    const char *section = NULL;
    esc_pool p = {{NULL}, 0};
    printf("%s: valid\n", esc(&p, c->path));
    esc_free(&p);
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        char v[1024], u[1024];
        if (!strcmp(k->section, "target")) continue;   /* below, per target */
        if (!section || strcmp(section, k->section)) {
            if (section) printf("\n");
            printf("[%s]", k->section);
            section = k->section;
        }
        pdr_config_key_value(k, c, v, sizeof v);
        printf(" %s=%s", k->key, esc(&p, strstr(v, "://") ? pdr_url_list_redact(v, u, sizeof u) : v));
        esc_free(&p);
    }
    if (section) printf("\n");
    if (!c->n_targets)
        printf("no [target] sections: `pdrelay send` needs -k KEY, alerts are unrouted\n");
    for (size_t i = 0; i < c->n_targets; i++) {
        const pdr_target *t = &c->targets[i];
        char red[PDR_REDACT_SIZE], origin[256];
        if (t->webhook_url) {
            /* the URL's path may hold a token; header values are secrets:
            ** the origin, the file and the header names only */
            printf("[target %s] webhook_url=%s rate_per_minute=%d", esc(&p, t->name),
                   esc(&p, pdr_url_origin(t->webhook_url, origin, sizeof origin)), t->rate_per_minute);
            esc_free(&p);
            if (t->webhook_headers_file) {
                printf(" headers=%s", t->n_headers ? "" : "(none)");
                for (size_t h = 0; h < t->n_headers; h++) {
                    printf("%s%s", h ? "," : "", esc(&p, t->headers[h].name));
                    esc_free(&p);
                }
                printf(" (from %s)", esc(&p, t->webhook_headers_file));
                esc_free(&p);
            }
        } else {
            printf("[target %s] routing_key=%s", esc(&p, t->name), pdr_redact(t->routing_key, red, sizeof red));
        }
        if (t->routing_key_file) printf(" (from %s)", esc(&p, t->routing_key_file));
        if (!t->n_matchers) printf(" match=(everything)");
        esc_free(&p);
        for (size_t m = 0; m < t->n_matchers; m++) {
            printf(" match=%s%s%s", esc(&p, t->matchers[m].label), match_op(t->matchers[m].op),
                   esc(&p, t->matchers[m].value));
            esc_free(&p);
        }
        printf("\n");
    }
}

static size_t mode_check_one(const char *file, const char *what, cli_mode_warn_fn warn, void *ctx)
{
    struct stat sb;
    if (!file || stat(file, &sb) != 0 || (sb.st_mode & 077) == 0) return 0;
    warn(ctx, file, what, (unsigned)(sb.st_mode & 07777));
    return 1;
}

size_t cli_modes_check(const pdr_config *cfg, cli_mode_warn_fn warn, void *ctx)
{
    char what[160], db_file[4096];
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_targets; i++) {
        snprintf(what, sizeof what, "routing_key_file of [target %s]", cfg->targets[i].name);
        n += mode_check_one(cfg->targets[i].routing_key_file, what, warn, ctx);
        snprintf(what, sizeof what, "webhook_headers_file of [target %s]", cfg->targets[i].name);
        n += mode_check_one(cfg->targets[i].webhook_headers_file, what, warn, ctx);
    }
    n += mode_check_one(cfg->auth_token_file, "[listen] auth_token_file", warn, ctx);
    n += mode_check_one(cfg->upstream_token_file, "[pagerduty] auth_token_file", warn, ctx);
    snprintf(db_file, sizeof db_file, "%s/%s", cfg->data_dir, DB_FILE_NAME);
    n += mode_check_one(db_file, "the outbox database", warn, ctx);
    return n;
}

static void config_mode_warn(void *ctx, const char *file, const char *what, unsigned mode)
{
    (void)ctx;
    fprintf(stderr, "pdrelay config check: warning: %s (%s) has mode %04o: group or others can read it; "
                    "fix: chmod 600 %s\n", file, what, mode, file);
}

/* ---- config keys ---- */

/* A key's default as shown: the value as written, "(empty)" for an
** optional key that is unset by default, "(none)" when there is none. */
static const char *key_default_shown(const pdr_config_key *k)
{
    if (!k->def) return "(none)";
    if (!*k->def) return "(empty)";
    return k->def;
}

static const char *key_reload_shown(const pdr_config_key *k)
{
    switch (k->reload) {
    case PDR_RELOAD_APPLIES: return "applied";
    case PDR_RELOAD_RESTART: return "restart";
    case PDR_RELOAD_KEEP: return "restart (running value kept)";
    }
    return "restart";
}

/* Text for a Markdown table cell: the characters Markdown would read as
** markup are escaped with a backslash. */
static void md_put(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (strchr("\\|<>*`", *s)) fputc('\\', out);
        fputc(*s, out);
    }
}

static void keys_markdown(FILE *out)
{
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    char allowed[256];
    fputs("| section | key | default | allowed | on SIGHUP | meaning |\n|---|---|---|---|---|---|\n", out);
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        int first = i == 0 || strcmp(keys[i - 1].section, k->section);
        fputs("| ", out);
        if (first) fprintf(out, "`[%s%s]` ", k->section, strcmp(k->section, "target") ? "" : " NAME");
        fprintf(out, "| `%s` | ", k->key);
        if (k->def && *k->def)
            fprintf(out, "`%s`", k->def);
        else
            fputs(key_default_shown(k), out);
        fputs(" | ", out);
        md_put(out, pdr_config_key_allowed(k, allowed, sizeof allowed));
        fprintf(out, " | %s | ", key_reload_shown(k));
        md_put(out, k->desc);
        fputs(" |\n", out);
    }
}

/* Words of s, indented, in lines of at most width columns. */
static void put_wrapped(FILE *out, const char *indent, const char *s, size_t width)
{
    size_t col = 0, ind = strlen(indent);
    while (*s) {
        size_t w = strcspn(s, " ");
        if (col && col + 1 + w > width) {
            fputc('\n', out);
            col = 0;
        }
        if (!col) {
            fputs(indent, out);
            col = ind;
        } else {
            fputc(' ', out);
            col++;
        }
        fwrite(s, 1, w, out);
        col += w;
        s += w;
        while (*s == ' ') s++;
    }
    if (col) fputc('\n', out);
}

static void keys_text(FILE *out)
{
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    char allowed[256];
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        fprintf(out, "[%s%s] %s = %s\n", k->section, strcmp(k->section, "target") ? "" : " NAME", k->key,
                key_default_shown(k));
        fprintf(out, "    allowed: %s; SIGHUP: %s\n", pdr_config_key_allowed(k, allowed, sizeof allowed),
                k->reload == PDR_RELOAD_APPLIES ? "applied" : k->reload == PDR_RELOAD_KEEP
                    ? "needs a restart (a reload keeps the running value)" : "needs a restart");
        put_wrapped(out, "    ", k->desc, 79);
    }
}

int cli_config(int argc, char **argv)
{
    const char *path = NULL;
    int c, ex, markdown = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", config_options, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'm': markdown = 1; break;
        case 'h': return cli_help(stdout, "config");
        case ':':
        default:
            return cli_getopt_error("config", c, argv);
        }
    }
    if (optind + 1 == argc && !strcmp(argv[optind], "keys") && !path) {
        if (markdown)
            keys_markdown(stdout);
        else
            keys_text(stdout);
        fflush(stdout);
        return ferror(stdout) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    }
    if (optind >= argc || strcmp(argv[optind], "check") || optind + 1 < argc || markdown) {
        fprintf(stderr, "pdrelay config: expected 'pdrelay config check [-c FILE]' or "
                        "'pdrelay config keys [--markdown]'\n");
        return CLI_EXIT_USAGE;
    }
    pdr_config *cfg = cli_config_load("config check", path, &ex);
    if (!cfg) {
        if (!path || *path) fprintf(stderr, "pdrelay config check: %s is not valid\n", cli_config_path(path));
        return ex;
    }
    {
        /* What `run` refuses at start, `config check` refuses too. */
        char err[600] = "";
        if (ingest_token_check(cfg->auth_token_file, err, sizeof err) != PDR_OK) {
            char *shown = pdr_log_escape_dup(err, PDR_ESC_TEXT);
            fprintf(stderr, "pdrelay config check: %s\n", shown ? shown : err);
            free(shown);
            fprintf(stderr, "pdrelay config check: %s is not valid\n", cli_config_path(path));
            pdr_config_destroy(cfg);
            return CLI_EXIT_USAGE;
        }
    }
    config_print(cfg);
    cli_modes_check(cfg, config_mode_warn, NULL);
    pdr_config_destroy(cfg);
    return CLI_EXIT_OK;
}
