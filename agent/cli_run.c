/*
** cli_run.c — `pdrelay run`: the daemon. Loads the config, opens and checks
** the outbox, starts the sender thread, and waits for a signal.
**
** Signals are blocked in every thread and taken by sigwait() in the main
** thread, so no code runs in a signal handler: SIGTERM and SIGINT stop the
** daemon (in-flight requests get [pagerduty] timeout_ms to finish; whatever
** is not confirmed stays queued), SIGHUP is acknowledged in the log.
*/
#include <getopt.h>
#include <signal.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "log.h"
#include "sender.h"

static const struct option run_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}
};

int cli_run(int argc, char **argv)
{
    const char *path = NULL;
    int c, verbose = 0, ex = CLI_EXIT_OK;
    pdr_config *cfg = NULL;
    db_t *db = NULL;
    sender *snd = NULL;
    sigset_t set;
    char red[16], nt[16], dbp[1024];

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:vh", run_options, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'v': verbose = 1; break;
        case 'h': return cli_help(stdout, "run");
        case ':':
            fprintf(stderr, "pdrelay run: option '%s' needs a value\n", argv[optind - 1]);
            return CLI_EXIT_USAGE;
        default:
            fprintf(stderr, "pdrelay run: unknown option '%s'; see 'pdrelay run --help'\n", argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pdrelay run: unexpected argument '%s'\n", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    cfg = cli_config_load("run", path, &ex);
    if (!cfg) return ex;
    pdr_log_set_level(verbose ? PDR_LOG_DEBUG : cfg->log_level);

    /* Block the signals before any thread exists, so every thread inherits it. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        pdr_log(PDR_LOG_ERROR, "cannot initialise libcurl", NULL);
        ex = CLI_EXIT_FAIL;
        goto out;
    }
    /* Open (and so check and migrate) the outbox here, so that a corrupt or
    ** too-new database is refused with its message before anything starts;
    ** the sender then works on its own connection. */
    db = cli_db_open("run", cfg, &ex);
    if (!db) goto out_curl;
    snprintf(dbp, sizeof dbp, "%s", db_path(db));
    db_close(db);
    db = NULL;
    if (sender_create(cfg, &snd) != PDR_OK || sender_start(snd) != PDR_OK) {
        pdr_log(PDR_LOG_ERROR, "cannot start the sender", NULL);
        ex = CLI_EXIT_FAIL;
        goto out_curl;
    }
    snprintf(nt, sizeof nt, "%zu", cfg->n_targets);
    pdr_log(PDR_LOG_INFO, "pdrelay started", "version", PDR_VERSION, "config", cfg->path, "database",
            dbp, "url", cfg->pd_url, "targets", nt, NULL);
    for (size_t i = 0; i < cfg->n_targets; i++)
        pdr_log(PDR_LOG_DEBUG, "target", "name", cfg->targets[i].name, "key",
                pdr_redact(cfg->targets[i].routing_key, red, sizeof red), NULL);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            pdr_log(PDR_LOG_INFO, "SIGHUP received: configuration reload is not supported yet; restart to apply",
                    NULL);
            continue;
        }
        pdr_log(PDR_LOG_INFO, "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
        break;
    }
    sender_stop(snd);
    pdr_log(PDR_LOG_INFO, "pdrelay stopped", NULL);
out_curl:
    sender_destroy(snd);
    curl_global_cleanup();
out:
    db_close(db);
    pdr_config_destroy(cfg);
    return ex;
}
