/*
** cli.c — what the CLI commands share: finding and loading the config,
** opening the outbox (read-write, or read-only for commands that only look)
** with messages a user can act on, mapping result codes to exit codes,
** resolving a --key argument, formatting ages, the getopt error messages.
** Messages that may hold bytes of a file or of an argument are printed
** escaped (pdr_log_escape).
*/
#include "cli.h"
#include "log.h"
#include "writer.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cli_config_path(const char *path)
{
    const char *env;
    if (path && *path) return path;
    env = getenv("PDRELAY_CONFIG");
    if (env && *env) return env;
    return CLI_DEFAULT_CONFIG;
}

pdr_config *cli_config_load(const char *cmd, const char *path, int *exit_code)
{
    pdr_config *cfg = NULL;
    pdr_config_errors errs = {0};
    const char *p = cli_config_path(path);
    pdr_rc rc;
    if (path && !*path) {
        /* -c "" (an unset variable, say) must not fall back to the system config. */
        fprintf(stderr, "pdrelay %s: -c/--config needs a file name, not an empty string\n", cmd);
        *exit_code = CLI_EXIT_USAGE;
        return NULL;
    }
    rc = pdr_config_load(p, &cfg, &errs);
    if (rc == PDR_OK) return cfg;
    for (size_t i = 0; i < errs.n; i++) {
        /* the file's own bytes may be in the message: shown escaped */
        char *shown = pdr_log_escape_dup(errs.msgs[i], PDR_ESC_TEXT);
        fprintf(stderr, "pdrelay %s: %s\n", cmd, shown ? shown : pdr_strerror(PDR_ERR_NOMEM));
        free(shown);
    }
    if (errs.n == 0) fprintf(stderr, "pdrelay %s: %s: %s\n", cmd, p, pdr_strerror(rc));
    if (!path && rc == PDR_ERR_IO)
        fprintf(stderr, "pdrelay %s: give the config file with -c FILE (or set PDRELAY_CONFIG)\n", cmd);
    pdr_config_errors_cleanup(&errs);
    *exit_code = rc == PDR_ERR_NOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
    return NULL;
}

int cli_getopt_error(const char *cmd, int c, char **argv)
{
    const char *opt = argv[optind - 1];
    char shown[2048];
    /* the argument's own bytes: shown escaped */
    pdr_log_escape(shown, sizeof shown, opt, strlen(opt), PDR_ESC_TEXT, NULL);
    if (c == ':')
        fprintf(stderr, "pdrelay %s: option '%s' needs a value\n", cmd, shown);
    else
        fprintf(stderr, "pdrelay %s: unknown option '%s'; see 'pdrelay %s --help'\n", cmd, shown, cmd);
    return CLI_EXIT_USAGE;
}

int cli_exit_for(pdr_rc rc)
{
    switch (rc) {
    case PDR_OK:
    case PDR_COALESCED:
        return CLI_EXIT_OK;
    case PDR_ERR_FULL:
    case PDR_ERR_BUSY:
        return CLI_EXIT_TEMPFAIL;
    case PDR_ERR_INVALID:
    case PDR_ERR_CONFIG:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAIL;
    }
}

enum { DB_OPEN_RW, DB_OPEN_RO, DB_OPEN_WRITABLE, DB_OPEN_RO_UNCHECKED };

static db_handle *cli_db_open_mode(const char *cmd, const pdr_config *cfg, int mode, int *exit_code)
{
    db_options opt;
    db_handle *db = NULL;
    char err[1024] = "";
    writer_db_options(cfg, &opt);
    opt.read_only = mode == DB_OPEN_RO || mode == DB_OPEN_RO_UNCHECKED;
    opt.skip_check = mode == DB_OPEN_RO_UNCHECKED;
    pdr_rc rc = db_open(&opt, &db, err, sizeof err);
    if (mode == DB_OPEN_WRITABLE) {
        /* Proved with a real write; a failure is explained (which file, why, the fix). */
        if (rc) rc = db_unwritable_explain(cfg->data_dir, rc, err, sizeof err);
        else rc = db_writable_check(db, err, sizeof err);
    }
    if (rc == PDR_OK) return db;
    db_close(db);
    char *shown = pdr_log_escape_dup(err[0] ? err : pdr_strerror(rc), PDR_ESC_TEXT);
    fprintf(stderr, "pdrelay %s: %s\n", cmd, shown ? shown : pdr_strerror(rc));
    free(shown);
    *exit_code = mode == DB_OPEN_WRITABLE && (rc == PDR_ERR_PERM || rc == PDR_ERR_READONLY) ? CLI_EXIT_NOT_WRITABLE
                                                                                           : cli_exit_for(rc);
    return NULL;
}

db_handle *cli_db_open(const char *cmd, const pdr_config *cfg, int *exit_code)
{
    return cli_db_open_mode(cmd, cfg, DB_OPEN_RW, exit_code);
}

db_handle *cli_db_open_read_only(const char *cmd, const pdr_config *cfg, int *exit_code)
{
    return cli_db_open_mode(cmd, cfg, DB_OPEN_RO, exit_code);
}

db_handle *cli_db_open_writable(const char *cmd, const pdr_config *cfg, int *exit_code)
{
    return cli_db_open_mode(cmd, cfg, DB_OPEN_WRITABLE, exit_code);
}

db_handle *cli_db_open_unchecked(const char *cmd, const pdr_config *cfg, int *exit_code)
{
    return cli_db_open_mode(cmd, cfg, DB_OPEN_RO_UNCHECKED, exit_code);
}

const char *cli_target_of(const pdr_config *cfg, const char *routing_key)
{
    for (size_t i = 0; i < cfg->n_targets; i++)
        if (!strcmp(pdr_target_key(&cfg->targets[i]), routing_key)) return cfg->targets[i].name;
    return NULL;
}

const char *cli_resolve_key(const char *cmd, const pdr_config *cfg, const char *arg)
{
    const pdr_target *t = pdr_config_target(cfg, arg);
    char red[PDR_REDACT_SIZE];
    const char *why;
    if (t) return pdr_target_key(t);   /* "webhook:NAME" for a webhook target */
    if (pdr_routing_key_check(arg, strlen(arg), &why) == PDR_OK || pdr_key_is_webhook(arg)) return arg;
    fprintf(stderr,
            "pdrelay %s: --key %s is neither a target of the config nor a routing key "
            "(a routing key is exactly %d letters and digits; this has %zu characters)\n",
            cmd, pdr_redact(arg, red, sizeof red), PDR_ROUTING_KEY_LEN, pdr_utf8_chars(arg));
    return NULL;
}

