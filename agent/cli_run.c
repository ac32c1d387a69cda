/*
** cli_run.c — `pdrelay run`: the daemon. Loads the config, opens and checks
** the outbox, starts the sender, the writer and the HTTP ingest, and waits
** for a signal.
**
** Threads (README "Design"): this main thread (start, signals, reload,
** stop); the ingest's event-loop threads ([listen] threads, libmicrohttpd
** epoll: a connection is not a thread) and its reaper (ingest.h); the
** writer, one thread with its own database connection that commits the
** ingest's events in batches, one transaction and one fsync each
** (writer.h); and the sender, with its own connection (sender.h). Signals
** are blocked in every thread and taken by sigwait() in the main thread,
** so no code runs in a signal handler:
**   SIGTERM, SIGINT  stop: new POSTs get 503, requests in progress are
**                    committed and answered, then the sender's requests in
**                    flight get [pagerduty] timeout_ms; whatever is not
**                    confirmed stays queued
**   SIGHUP           reload the config file: the keys config/config.c's
**                    key table marks PDR_RELOAD_APPLIES (targets, routing key
**                    files, auth tokens, the upstream one included, log
**                    level, …). An invalid file is
**                    reported and the running config kept. A changed key
**                    that needs a restart is named in a warning; [outbox]
**                    max_events (PDR_RELOAD_KEEP) keeps its running value in
**                    the reloaded config.
**   SIGUSR1          "the uplink is back now" (`pdrelay queue kick`, a
**                    network hook): sender_kick(), so a link that is down is
**                    probed at once instead of at its backoff. Blocked from
**                    the first line of cli_run(), so it never kills the
**                    daemon, not even while it starts.
**
** At start the outbox is proved writable with a real write: a database it
** cannot write (mode, owner, a directory where -wal and -shm cannot be
** created, a read-only mount) is refused with exit 77 and a message naming
** the file, the cause and the fix. Files holding secrets (key files, the
** auth token file, the database) that group or others can read are warned
** about, at start and at each reload. A failed write of the sender makes
** /readyz 503 (sender_set_db_error_hook → writer_note_failure).
**
** Under systemd (Type=notify) the daemon reports READY=1 once it listens,
** RELOADING=1 … READY=1 around a reload, and STOPPING=1; see sdnotify.h.
*/
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli.h"
#include "ingest.h"
#include "log.h"
#include "sdnotify.h"
#include "sender.h"
#include "writer.h"

static const struct option run_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}
};

static void on_commit(void *ctx)
{
    sender_notify(ctx);
}

/* The sender could not write the database: /readyz is 503 until the
** writer's probe proves it writable again. */
static void on_sender_db_error(void *ctx, pdr_rc rc)
{
    writer_note_failure(ctx, rc);
}

/* Names the changed settings a reload cannot apply: every key the table
** (config/config.c) marks as needing a restart whose value differs, as
** "[section] key", in table order. A key whose running value the reloaded
** config keeps (PDR_RELOAD_KEEP: [outbox] max_events) gets a warning of its
** own with both values. */
static void reload_warn_restart(const pdr_config *o, const pdr_config *n)
{
    char what[1024] = "";
    size_t len = 0, nkeys;
    const pdr_config_key *keys = pdr_config_keys(&nkeys);

    for (size_t i = 0; i < nkeys; i++) {
        const pdr_config_key *k = &keys[i];
        if (k->reload == PDR_RELOAD_APPLIES || !pdr_config_key_differs(k, o, n)) continue;
        if (len < sizeof what)
            len += (size_t)snprintf(what + len, sizeof what - len, "%s[%s] %s", len ? ", " : "", k->section,
                                    k->key);
    }
    if (len)
        pdr_log(PDR_LOG_WARN, "changed settings take effect only after a restart", "settings", what, NULL);
    for (size_t i = 0; i < nkeys; i++) {
        const pdr_config_key *k = &keys[i];
        char msg[160], run_v[128], new_v[128];
        if (k->reload != PDR_RELOAD_KEEP || !pdr_config_key_differs(k, o, n)) continue;
        snprintf(msg, sizeof msg, "[%s] %s needs a restart: the running value stays in force", k->section, k->key);
        pdr_log(PDR_LOG_WARN, msg, "running", pdr_config_key_value(k, o, run_v, sizeof run_v), "new",
                pdr_config_key_value(k, n, new_v, sizeof new_v), NULL);
    }
}

/* A file holding a secret that group or others can read: a warning, not
** a refusal (the daemon runs). */
static void run_mode_warn(void *ctx, const char *file, const char *what, unsigned mode)
{
    char m[16], fix[4200];
    (void)ctx;
    snprintf(m, sizeof m, "%04o", mode);
    snprintf(fix, sizeof fix, "chmod 600 %s", file);
    pdr_log(PDR_LOG_WARN, "file readable by group or others", "file", file, "holds", what, "mode", m, "fix", fix,
            NULL);
}

/* The STATUS= line systemctl status shows: what the daemon listens on. */
static void notify_ready(const pdr_config *cfg)
{
    char msg[512], tcp[300] = "";
    const char *addr = cfg->listen_address ? cfg->listen_address : "";
    int v6 = strchr(addr, ':') != NULL;

    if (cfg->listen_port)
        snprintf(tcp, sizeof tcp, "%s%s%s:%d", v6 ? "[" : "", addr, v6 ? "]" : "", cfg->listen_port);
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=listening on %s%s%s, %zu target%s", tcp,
             tcp[0] && cfg->unix_socket ? " and " : "", cfg->unix_socket ? cfg->unix_socket : "",
             cfg->n_targets, cfg->n_targets == 1 ? "" : "s");
    sdnotify_send(msg);
}

/* One line on how the previous run ended, and what opening checked. */
static void run_log_previous(db_handle *db, int was_clean)
{
    char took[32] = "";
    int64_t us = 0;
    if (db_open_checked(db, &us)) snprintf(took, sizeof took, "%lld.%03lld ms", (long long)(us / 1000),
                                           (long long)(us % 1000));
    if (was_clean > 0)
        pdr_log(PDR_LOG_INFO, "previous run stopped cleanly; outbox not checked", NULL);
    else if (was_clean < 0)
        pdr_log(PDR_LOG_INFO, took[0] ? "no previous run recorded on this outbox; checked what a crash can break"
                                      : "no previous run recorded on this outbox",
                "took", took[0] ? took : NULL, NULL);
    else
        pdr_log(PDR_LOG_WARN, "previous run did not stop cleanly; checked what a crash can break "
                "(`pdrelay queue check` checks everything)", "took", took[0] ? took : "0 ms", NULL);
}

/* SIGHUP: loads the file again; a valid one replaces the ingest's config. */
static void reload(ingest *ing, sender *snd, const pdr_config *running, int verbose)
{
    pdr_config *n = NULL;
    pdr_config_errors errs = {0};
    char err[512], nt[16];
    pdr_rc rc = pdr_config_load(running->path, &n, &errs);
    if (rc) {
        for (size_t i = 0; i < errs.n; i++)
            pdr_log(PDR_LOG_ERROR, "reload: invalid config", "error", errs.msgs[i], NULL);
        if (errs.n == 0) pdr_log(PDR_LOG_ERROR, "reload: cannot load config", "error", pdr_strerror(rc), NULL);
        pdr_log(PDR_LOG_ERROR, "reload failed: the running configuration is kept", "config", running->path, NULL);
        pdr_config_errors_cleanup(&errs);
        return;
    }
    reload_warn_restart(running, n);
    /* The keys the table marks PDR_RELOAD_KEEP keep their running value in
    ** the reloaded config: max_events bounds the writer's and the sender's
    ** connections, opened at start, so /readyz and the writer never disagree
    ** on the bound. */
    if (pdr_config_keep_running(n, running) != PDR_OK) {
        pdr_log(PDR_LOG_ERROR, "reload failed: the running configuration is kept", "error",
                pdr_strerror(PDR_ERR_NOMEM), NULL);
        pdr_config_destroy(n);
        return;
    }
    snprintf(nt, sizeof nt, "%zu", n->n_targets);
    pdr_log_set_level(verbose ? PDR_LOG_DEBUG : n->log_level);
    pdr_log_set_syslog(n->syslog);
    cli_modes_check(n, run_mode_warn, NULL);
    rc = ingest_reload(ing, n, err, sizeof err);   /* takes n: alive until the next reload */
    if (rc) {
        pdr_log(PDR_LOG_ERROR, "reload failed: the running configuration is kept", "error", err, NULL);
        return;
    }
    /* [pagerduty] auth_token_file, read by the load: the sender uses it from
    ** each key's next request (sender.c, THE TOKEN) */
    if (sender_set_token(snd, n->upstream_token) != PDR_OK)
        pdr_log(PDR_LOG_ERROR, "reload: cannot hand the upstream token to the sender: the old one stays", "error",
                pdr_strerror(PDR_ERR_NOMEM), NULL);
    /* n lives on in the ingest until the next reload (this thread's): the
    ** sender copies its webhook targets now. */
    if (sender_webhooks_set(snd, n) != PDR_OK)
        pdr_log(PDR_LOG_ERROR, "reload: out of memory: the sender keeps the previous webhook targets", NULL);
    pdr_log(PDR_LOG_INFO, "configuration reloaded", "config", running->path, "targets", nt, NULL);
}

int cli_run(int argc, char **argv)
{
    const char *path = NULL;
    int c, verbose = 0, ex = CLI_EXIT_OK;
    pdr_rc rc;
    pdr_config *cfg = NULL;
    db_handle *db = NULL;
    sender *snd = NULL;
    writer *wr = NULL;
    ingest *ing = NULL;
    sigset_t set;
    char red[PDR_REDACT_SIZE], nt[16], dbp[1024], err[512];
    int lock_fd = -1;   /* one daemon per outbox: held until exit */
    int was_clean = 0;
    char shown_url[1024];

    /* SIGUSR1 (a kick) must never kill the daemon: blocked before anything
    ** else; one that arrives before the signal loop waits for it there. */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:vh", run_options, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'v': verbose = 1; break;
        case 'h': return cli_help(stdout, "run");
        case ':':
        default:
            return cli_getopt_error("run", c, argv);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pdrelay run: unexpected argument '%s'\n", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    cfg = cli_config_load("run", path, &ex);
    if (!cfg) return ex;
    pdr_log_set_level(verbose ? PDR_LOG_DEBUG : cfg->log_level);
    pdr_log_set_syslog(cfg->syslog);

    /* Block the signals before any thread exists, so every thread inherits it. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file size limit reached is a failed write (reported, retried), not death. */
    signal(SIGXFSZ, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        pdr_log(PDR_LOG_ERROR, "cannot initialise libcurl", NULL);
        ex = CLI_EXIT_FAIL;
        goto out;
    }
    /* Open (and so check and migrate) the outbox here, so that a corrupt,
    ** too-new or unwritable database is refused with its message before
    ** anything starts; the sender then works on its own connection. */
    db = cli_db_open_writable("run", cfg, &ex);
    if (!db) goto out_curl;
    rc = db_daemon_lock(cfg->data_dir, &lock_fd, err, sizeof err);
    if (rc) {
        fprintf(stderr, "pdrelay run: %s\n", err);
        ex = cli_exit_for(rc);
        goto out_curl;
    }
    /* The clean-stop marker (db/db.c, invariant 7): how the last run ended,
    ** then cleared until this one stops cleanly. db stays open for that. */
    rc = db_run_begin(db, &was_clean);
    if (rc) {
        fprintf(stderr, "pdrelay run: %s: cannot record the start: %s (%s)\n", db_path(db), pdr_strerror(rc),
                db_errmsg(db));
        ex = cli_exit_for(rc);
        goto out_curl;
    }
    run_log_previous(db, was_clean);
    cli_modes_check(cfg, run_mode_warn, NULL);
    snprintf(dbp, sizeof dbp, "%s", db_path(db));
    /* Both exist before either starts: the sender reports its failed
    ** writes to the writer, the writer wakes the sender after a commit. */
    if (sender_create(cfg, &snd) != PDR_OK || writer_create(cfg, on_commit, snd, &wr) != PDR_OK) {
        pdr_log(PDR_LOG_ERROR, "cannot create the sender and the ingest writer", NULL);
        ex = CLI_EXIT_FAIL;
        goto out_curl;
    }
    sender_set_db_error_hook(snd, on_sender_db_error, wr);
    if (sender_set_token(snd, cfg->upstream_token) != PDR_OK || sender_start(snd) != PDR_OK) {
        pdr_log(PDR_LOG_ERROR, "cannot start the sender", NULL);
        ex = CLI_EXIT_FAIL;
        goto out_curl;
    }
    if (writer_start(wr) != PDR_OK) {
        pdr_log(PDR_LOG_ERROR, "cannot start the ingest writer", NULL);
        ex = CLI_EXIT_FAIL;
        goto out_stop;
    }
    err[0] = '\0';
    rc = ingest_create(cfg, wr, &ing, err, sizeof err);
    if (!rc) rc = ingest_start(ing, err, sizeof err);
    if (rc) {
        fprintf(stderr, "pdrelay run: %s\n", err[0] ? err : "cannot start the HTTP server");
        ex = rc == PDR_ERR_CONFIG ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
        goto out_stop;
    }
    snprintf(nt, sizeof nt, "%zu", cfg->n_targets);
    pdr_log(PDR_LOG_INFO, "pdrelay started", "version", PDR_VERSION, "config", cfg->path, "database",
            dbp, "url", pdr_url_list_redact(cfg->pd_url, shown_url, sizeof shown_url), "targets", nt, NULL);
    notify_ready(cfg);
    for (size_t i = 0; i < cfg->n_targets; i++) {
        char origin[256];
        const pdr_target *t = &cfg->targets[i];
        pdr_log(PDR_LOG_DEBUG, "target", "name", t->name, "key",
                t->webhook_url ? t->webhook_key : pdr_redact(t->routing_key, red, sizeof red), "url",
                t->webhook_url ? pdr_url_origin(t->webhook_url, origin, sizeof origin) : NULL, NULL);
    }

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            /* READY=1 whatever the result: a refused file leaves the old
            ** config running, which is still a ready service. */
            sdnotify_reloading();
            reload(ing, snd, cfg, verbose);
            sdnotify_send("READY=1");
            continue;
        }
        if (sig == SIGUSR1) {
            pdr_log(PDR_LOG_INFO, "uplink kick: probing now (SIGUSR1)", NULL);
            sender_kick(snd);
            continue;
        }
        pdr_log(PDR_LOG_INFO, "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
        sdnotify_send("STOPPING=1");
        break;
    }
out_stop:
    /* Order: no new ingest, answer what is being committed, then the sender. */
    ingest_stop(ing);
    writer_stop(wr);
    if (wr) {
        writer_stats ws;
        char b[24], e[24], fb[24];
        writer_stats_get(wr, &ws);
        snprintf(b, sizeof b, "%lld", (long long)ws.batches);
        snprintf(e, sizeof e, "%lld", (long long)ws.events);
        snprintf(fb, sizeof fb, "%lld", (long long)ws.failed_batches);
        pdr_log(PDR_LOG_INFO, "ingest totals", "events", e, "commits", b, "failed_commits", fb, NULL);
    }
    sender_stop(snd);
    if (ex == CLI_EXIT_OK) {
        /* A clean stop: the writer and the sender have stopped, what they
        ** wrote is committed. Not after a fatal error (ex set). */
        rc = db_run_end(db);
        if (rc)
            pdr_log(PDR_LOG_WARN, "cannot record the clean stop: the next start checks the outbox", "error",
                    db_errmsg(db), NULL);
        pdr_log(PDR_LOG_INFO, "pdrelay stopped", NULL);
    }
out_curl:
    ingest_destroy(ing);
    writer_destroy(wr);
    sender_destroy(snd);
    curl_global_cleanup();
out:
    db_close(db);
    if (lock_fd >= 0) close(lock_fd);
    pdr_config_destroy(cfg);
    return ex;
}
