/*
** help.c — the help text of every command, in one place, so that --help,
** `pdrelay help CMD` and the man page say the same thing.
*/
#include <string.h>

#include "cli.h"

static const char help_overview[] =
"Usage: pdrelay COMMAND [OPTIONS]\n"
"\n"
"pdrelay stores alerts in a durable SQLite outbox and forwards them to the\n"
"PagerDuty Events API v2 at the pace PagerDuty allows.\n"
"\n"
"Commands:\n"
"  run            the daemon: take alerts over HTTP, deliver the outbox to PagerDuty\n"
"  send           queue one event (like pd-send); works with the daemon stopped\n"
"  queue          inspect and repair the outbox: status, list, retry, purge, check;\n"
"                 kick; export and import (events carried by hand)\n"
"  config check   validate a config file and print every error with FILE:LINE\n"
"  config keys    list every config key with its default and meaning\n"
"  help [COMMAND] show help for a command\n"
"\n"
"Options:\n"
"  -c, --config FILE   config file (default: $PDRELAY_CONFIG, else " CLI_DEFAULT_CONFIG ")\n"
"  -h, --help          show help\n"
"  -V, --version       show the version of pdrelay and of the libraries it runs with\n"
"\n"
"Exit status:\n"
"  0   success\n"
"  1   operational failure (database unreadable or corrupt, I/O error, not found)\n"
"  2   usage error, invalid input or invalid config\n"
"  75  temporary failure, retry later (outbox full, database locked)\n"
"  77  run: the database cannot be written (permission denied, read-only\n"
"      file system)\n";

static const char help_run[] =
"Usage: pdrelay run [-c FILE] [-v]\n"
"\n"
"Run the daemon. It takes alerts over HTTP ([listen] address:port, and\n"
"unix_socket if set), commits each to the outbox before it answers, and\n"
"delivers every event of the outbox to the PagerDuty Events API v2, in order\n"
"per routing key, at most rate_per_minute per key, retrying transient\n"
"failures with exponential backoff for as long as it takes.\n"
"\n"
"Endpoints:\n"
"  POST /v2/enqueue, /v2/events   a PagerDuty event (202, or 400 as PagerDuty)\n"
"  POST /v2/change/enqueue        a PagerDuty change event\n"
"  POST /v1/alertmanager          an Alertmanager webhook: one event per alert\n"
"                                 and matching [target]\n"
"  POST /v1/alerts                one alert or an array, generic model\n"
"  GET  /healthz, /readyz         alive; outbox writable and not full\n"
"A refusal that is worth retrying (outbox full, disk full, shutting down)\n"
"is 503 with Retry-After.\n"
"\n"
"Signals: SIGTERM or SIGINT stops it: new requests get 503, requests being\n"
"committed are answered, requests to PagerDuty in flight get [pagerduty]\n"
"timeout_ms, and every event not confirmed by PagerDuty stays queued.\n"
"SIGHUP reloads the config file: targets, routing key files, auth token,\n"
"log_level and syslog; an invalid file is logged and the running config kept.\n"
"SIGUSR1 (pdrelay queue kick) says the uplink is back: a link that is down is\n"
"probed at once instead of at its backoff (at most [pagerduty] down_probe_max).\n"
"Logs go to stderr in logfmt, routing keys redacted.\n"
"\n"
"Options:\n"
"  -c, --config FILE   config file\n"
"  -v, --verbose       log at debug level (overrides [agent] log_level)\n"
"  -h, --help          show this help\n"
"\n"
"Exit status: 0 stopped by a signal; 1 cannot start (database unreadable or\n"
"corrupt, listen address in use); 2 invalid config, unreadable auth token\n"
"file, or usage; 75 database locked by another process (retry), or another\n"
"pdrelay run already serves this data_dir (it holds pdrelay.lock); 77 database\n"
"not writable (permission denied, read-only file system: the message names\n"
"the file and the fix).\n"
"\n"
"Files: it warns (and runs) when the database, a routing_key_file or the\n"
"auth_token_file can be read by group or others; fix with chmod 600 FILE.\n";

static const char help_send[] =
"Usage: pdrelay send [-c FILE] [OPTIONS]\n"
"\n"
"Queue one PagerDuty event in the outbox and exit 0 once it is committed to\n"
"disk. The daemon need not run: it delivers the event when it next runs.\n"
"Prints the event's dedup key on standard output.\n"
"\n"
"Without -k, the event is queued once for each [target] of the config\n"
"(all of them; their match rules apply to alerts, not to send).\n"
"\n"
"Options (pd-send names first):\n"
"  -k, --routing-key KEY    the 32-character integration key (alias --service-key)\n"
"      --target NAME        send to this configured target only\n"
"  -t, --event-type TYPE    trigger (default), acknowledge or resolve\n"
"  -d, --description TEXT   the summary (payload.summary); over 1024 characters is cut\n"
"  -i, --incident-key KEY   the dedup key (alias --dedup-key); required for\n"
"                           acknowledge and resolve; a trigger without one gets a new one\n"
"      --client NAME        the monitoring client's name (pd-send's -c; here -c is the config)\n"
"  -u, --client-url URL     the monitoring client's URL\n"
"  -f, --field KEY=VALUE    a custom detail (repeatable; into payload.custom_details)\n"
"      --severity SEV       critical, error (default), warning or info\n"
"      --source SOURCE      payload.source (default: [agent] source, the host name)\n"
"      --component NAME     payload.component\n"
"      --group NAME         payload.group\n"
"      --class NAME         payload.class\n"
"      --link URL[=TEXT]    a link (repeatable); TEXT follows the first '=' that\n"
"                           comes before any '?' in the argument\n"
"      --image SRC          an image URL (repeatable); a non-HTTPS image is dropped\n"
"      --change             send a change event instead of an alert\n"
"  -c, --config FILE        config file\n"
"  -h, --help               show this help\n"
"\n"
"Exit status: 0 queued (or an identical event was already pending), 1 database\n"
"failure, 2 invalid input, 75 outbox full or database locked (retry later).\n";

static const char help_queue[] =
"Usage: pdrelay queue [-c FILE] [--json] SUBCOMMAND [OPTIONS]\n"
"\n"
"Inspect and repair the outbox. Routing keys are shown redacted (R0\xe2\x80\xa6" "ab12);\n"
"wherever a key is asked for, a target name of the config works too.\n"
"\n"
"Subcommands:\n"
"  status                        per routing key: pending, dead, oldest pending age,\n"
"                                next attempt\n"
"  list [--dead] [--key K] [--limit N]\n"
"                                list pending (or dead) events, oldest first\n"
"                                (default limit 100; 0 = all)\n"
"  retry --all | --key K | ID... make dead letters pending again; they go to the\n"
"                                back of their key's queue, in their original order\n"
"  purge --dead [--older-than DURATION]\n"
"                                delete dead letters (that died more than DURATION\n"
"                                ago, e.g. 7d); pending events are never purged\n"
"  check                         the full integrity check of the outbox file\n"
"                                (PRAGMA integrity_check: every page, every index\n"
"                                entry); prints ok, or each problem and exits 1\n"
"  kick                          tell the running daemon the uplink is back: it\n"
"                                probes PagerDuty now (SIGUSR1 to the pid in\n"
"                                data_dir/pdrelay.lock); exit 1 when no daemon\n"
"                                runs on the data_dir\n"
"  export FILE [--key K] [--since T] [--remove]\n"
"                                write the pending events (of key K, queued since\n"
"                                T: a time like 2026-11-30T08:00:00Z, or a\n"
"                                duration like 12h: that long ago) to a new\n"
"                                bundle FILE, in their order; --remove takes them\n"
"                                out of the outbox once FILE is complete and\n"
"                                synced. No event matches: no file, exit 0; FILE\n"
"                                exists: exit 2\n"
"  import FILE                   check a bundle's manifest (the SHA-256 of its\n"
"                                events), then queue its events in their order;\n"
"                                importing it again queues nothing. A damaged or\n"
"                                altered bundle: exit 2; outbox full: nothing\n"
"                                queued, exit 75\n"
"\n"
"status, list and check only read: they create nothing, work on a read-only\n"
"database, and exit 1 with 'no outbox at PATH' when nothing has been queued\n"
"yet. Text from events (summaries, errors) is printed with control\n"
"characters escaped (\\x1b); --json stays valid UTF-8 JSON.\n"
"\n"
"Options:\n"
"  -c, --config FILE   config file\n"
"      --json          machine-readable output (one JSON document)\n"
"  -h, --help          show this help\n";

static const char help_config[] =
"Usage: pdrelay config check [-c FILE]\n"
"\n"
"Validate a config file. Prints every error as FILE:LINE: message (not just\n"
"the first) and exits 2 when there is any; otherwise prints a summary of the\n"
"effective settings, with routing keys redacted, and exits 0. Warns (stderr,\n"
"exit status unchanged) when a routing_key_file, the auth_token_file or the\n"
"database can be read by group or others. A path that is not a plain text\n"
"file (a directory, a device, a FIFO, over 1 MiB, a NUL byte, lines ending\n"
"in CR only) is refused (exit 2).\n"
"\n"
"pdrelay config keys [--markdown] prints every key: its default, what it\n"
"allows, whether SIGHUP applies it, and what it does; --markdown prints the\n"
"table of README.md's configuration reference.\n"
"\n"
"Options:\n"
"  -c, --config FILE   config file\n"
"      --markdown      config keys: print a Markdown table\n"
"  -h, --help          show this help\n";

const char *cli_help_text(const char *cmd)
{
    if (!cmd) return help_overview;
    if (!strcmp(cmd, "run")) return help_run;
    if (!strcmp(cmd, "send")) return help_send;
    if (!strcmp(cmd, "queue")) return help_queue;
    if (!strcmp(cmd, "config")) return help_config;
    return NULL;
}

int cli_help(FILE *out, const char *cmd)
{
    const char *t = cli_help_text(cmd);
    if (!t) {
        fprintf(stderr, "pdrelay help: unknown command '%s'; commands: run, send, queue, config\n", cmd);
        return CLI_EXIT_USAGE;
    }
    fputs(t, out);
    return CLI_EXIT_OK;
}
