/*
** cli.h — the command-line face of pdrelay: `send`, `queue`, `config check`,
** `--version` and `help`. Each command is a function taking main()'s argv
** (argv[0] is the command name) and returning the process exit code.
**
** Exit codes (documented in the README and --help):
**   0   success
**   1   operational failure (database unreadable, corrupt, I/O error, not found)
**   2   usage error or invalid input (bad flag, bad value, invalid config)
**   75  temporary failure: retry later (outbox full, database locked) — EX_TEMPFAIL
**   77  `run` only: the database cannot be written (permission denied,
**       read-only file system); the message names the file, the cause and
**       the fix — EX_NOPERM
*/
#ifndef PDR_CLI_H
#define PDR_CLI_H

#include <stdio.h>

#include "config.h"
#include "db.h"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_TEMPFAIL = 75,
    CLI_EXIT_NOT_WRITABLE = 77
};

#define CLI_DEFAULT_CONFIG "/etc/pdrelay/pdrelay.ini"

int cli_run(int argc, char **argv);
int cli_send(int argc, char **argv);
int cli_queue(int argc, char **argv);
int cli_config(int argc, char **argv);
int cli_version(void);
/* Prints help for cmd (NULL: overview) to out; returns 0, or 2 if cmd is unknown. */
int cli_help(FILE *out, const char *cmd);

/* The help text of a command ("run", "send", "queue", "config", NULL: overview);
** NULL when unknown. The man page is generated from the same text. */
const char *cli_help_text(const char *cmd);

/* Writes the pdrelay(1) man page (roff, from the help texts) to out; returns
** 0, or 1 on a write error. `pdrelay man`, a command left out of --help. */
int cli_man(FILE *out);

/* ---- shared helpers (cli.c) ---- */

/* The config path: path if given, else $PDRELAY_CONFIG, else the default. */
const char *cli_config_path(const char *path);

/* Loads the config, printing every error as "pdrelay CMD: FILE:LINE: …" to
** stderr. Returns NULL (and sets *exit_code) on failure. */
pdr_config *cli_config_load(const char *cmd, const char *path, int *exit_code);

/* Opens the outbox of cfg, printing a clear message on failure. */
db_handle *cli_db_open(const char *cmd, const pdr_config *cfg, int *exit_code);

/* The same, read-only, for commands that only look (queue status, list):
** nothing is created; a missing outbox is an error ("no outbox at PATH:
** nothing has been queued yet, …", exit 1). Works on a database or a
** directory it cannot write. */
db_handle *cli_db_open_read_only(const char *cmd, const pdr_config *cfg, int *exit_code);

/* Read-only and without the check at open (db_options.skip_check), for
** `queue check`, which reports every problem itself. */
db_handle *cli_db_open_unchecked(const char *cmd, const pdr_config *cfg, int *exit_code);

/* The same, and proves it can be written with a real write (`run`): a
** database that cannot be is refused with which file, why (EACCES, EROFS,
** ...) and the fix, exit CLI_EXIT_NOT_WRITABLE. */
db_handle *cli_db_open_writable(const char *cmd, const pdr_config *cfg, int *exit_code);

/* The one getopt error path of the commands (opterr = 0 and an optstring
** starting with ':'): for c == ':' prints "pdrelay CMD: option 'X' needs a
** value", else "pdrelay CMD: unknown option 'X'; see 'pdrelay CMD --help'",
** X being argv[optind - 1] shown escaped; returns CLI_EXIT_USAGE. */
int cli_getopt_error(const char *cmd, int c, char **argv);

/* The exit code for a pdr_rc of a database operation. */
int cli_exit_for(pdr_rc rc);

/* Resolves --key K: a target name of cfg or a literal routing key. Returns
** the key (owned by cfg or by arg), or NULL with a message printed. */
const char *cli_resolve_key(const char *cmd, const pdr_config *cfg, const char *arg);

/* The name of the first target of cfg using routing_key, or NULL. */
const char *cli_target_of(const pdr_config *cfg, const char *routing_key);

/* ---- file modes (cli_config.c) ---- */

/* Called for a file holding a secret that group or others may read: file,
** what it is ("routing_key_file of [target prod]"), its mode (& 07777). */
typedef void (*cli_mode_warn_fn)(void *ctx, const char *file, const char *what, unsigned mode);

/* Checks the files of cfg that hold secrets: every routing_key_file, both
** auth_token_files ([listen] and [pagerduty]), and the database (data_dir/pdrelay.db, if it exists:
** it holds every queued event with its routing key, so it is held to the
** same rule). Calls warn for each whose mode & 077 is not 0 (group or
** others have any access); a file that cannot be stat'ed is skipped.
** Returns how many were reported. Never reads a file's content. */
size_t cli_modes_check(const pdr_config *cfg, cli_mode_warn_fn warn, void *ctx);


#endif /* PDR_CLI_H */
