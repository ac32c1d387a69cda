/*
** cli_send.c — `pdrelay send`: build one PagerDuty event from pd-send style
** flags, check and repair it like an ingested event (event.c), and commit it
** to the outbox once per routing key, in one transaction.
*/
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "log.h"
#include "event.h"
#include "writer.h"

#define SEND_MAX_KEYS 64
#define SEND_MAX_ITEMS 64

enum {
    OPT_TARGET = 256, OPT_CLIENT, OPT_SEVERITY, OPT_SOURCE, OPT_COMPONENT, OPT_GROUP,
    OPT_CLASS, OPT_LINK, OPT_IMAGE, OPT_CHANGE
};

/* Every message of send goes to stderr through here: what it quotes of
** the command line (an alert's text, often) is escaped like the queue
** tables, so it cannot act on the terminal. */
static void send_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void send_fail(const char *fmt, ...)
{
    char msg[2048], shown[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pdr_log_escape(shown, sizeof shown, msg, strlen(msg), PDR_ESC_TEXT, NULL);
    fprintf(stderr, "pdrelay send: %s\n", shown);
}

static const struct option send_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"routing-key", required_argument, NULL, 'k'},
    {"service-key", required_argument, NULL, 'k'},
    {"target", required_argument, NULL, OPT_TARGET},
    {"event-type", required_argument, NULL, 't'},
    {"description", required_argument, NULL, 'd'},
    {"incident-key", required_argument, NULL, 'i'},
    {"dedup-key", required_argument, NULL, 'i'},
    {"client", required_argument, NULL, OPT_CLIENT},
    {"client-url", required_argument, NULL, 'u'},
    {"field", required_argument, NULL, 'f'},
    {"severity", required_argument, NULL, OPT_SEVERITY},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"component", required_argument, NULL, OPT_COMPONENT},
    {"group", required_argument, NULL, OPT_GROUP},
    {"class", required_argument, NULL, OPT_CLASS},
    {"link", required_argument, NULL, OPT_LINK},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"change", no_argument, NULL, OPT_CHANGE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}
};

typedef struct send_args {
    const char *config;
    const char *routing_key;
    const char *target;
    const char *event_type;
    const char *description;
    const char *incident_key;
    const char *client;
    const char *client_url;
    const char *severity;
    const char *source;
    const char *component, *group, *class_;
    const char *fields[SEND_MAX_ITEMS];
    size_t n_fields;
    const char *links[SEND_MAX_ITEMS];
    size_t n_links;
    const char *images[SEND_MAX_ITEMS];
    size_t n_images;
    int change;
} send_args;

static int add_item(const char **arr, size_t *n, const char *v, const char *flag)
{
    if (*n >= SEND_MAX_ITEMS) {
        send_fail("too many %s options (at most %d)", flag, SEND_MAX_ITEMS);
        return -1;
    }
    arr[(*n)++] = v;
    return 0;
}

/* Returns 0, or an exit code. */
static int send_parse(int argc, char **argv, send_args *a)
{
    int c, bad = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:k:t:d:i:u:f:h", send_options, NULL)) != -1) {
        switch (c) {
        case 'c': a->config = optarg; break;
        case 'k': a->routing_key = optarg; break;
        case OPT_TARGET: a->target = optarg; break;
        case 't': a->event_type = optarg; break;
        case 'd': a->description = optarg; break;
        case 'i': a->incident_key = optarg; break;
        case OPT_CLIENT: a->client = optarg; break;
        case 'u': a->client_url = optarg; break;
        case 'f': bad |= add_item(a->fields, &a->n_fields, optarg, "-f/--field"); break;
        case OPT_SEVERITY: a->severity = optarg; break;
        case OPT_SOURCE: a->source = optarg; break;
        case OPT_COMPONENT: a->component = optarg; break;
        case OPT_GROUP: a->group = optarg; break;
        case OPT_CLASS: a->class_ = optarg; break;
        case OPT_LINK: bad |= add_item(a->links, &a->n_links, optarg, "--link"); break;
        case OPT_IMAGE: bad |= add_item(a->images, &a->n_images, optarg, "--image"); break;
        case OPT_CHANGE: a->change = 1; break;
        case 'h': cli_help(stdout, "send"); return -1;
        case ':':
        default:
            return cli_getopt_error("send", c, argv);
        }
    }
    if (bad) return CLI_EXIT_USAGE;
    if (optind < argc) {
        send_fail("unexpected argument '%s'; see 'pdrelay send --help'",
                argv[optind]);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* Checks what the flags alone can tell; prints every problem. */
static int send_validate(const send_args *a, pdr_action *act_out)
{
    int bad = 0;
    pdr_action act = PDR_ACTION_TRIGGER;
    char red[PDR_REDACT_SIZE];
    const char *why;

    if (a->event_type) {
        act = pdr_action_parse(a->event_type);
        if (!act || act == PDR_ACTION_CHANGE) {
            send_fail("invalid --event-type '%s'; allowed: trigger, acknowledge, resolve",
                    a->event_type);
            bad = 1;
        }
    }
    if (a->change) {
        if (a->event_type && act != PDR_ACTION_TRIGGER) {
            send_fail("--change sends a change event; it takes no --event-type %s",
                    a->event_type);
            bad = 1;
        }
        act = PDR_ACTION_CHANGE;
    }
    if ((act == PDR_ACTION_ACKNOWLEDGE || act == PDR_ACTION_RESOLVE) &&
        (!a->incident_key || !*a->incident_key)) {
        send_fail("--event-type %s needs -i/--incident-key, the dedup key of the "
                        "alert to %s", pdr_action_name(act), pdr_action_name(act));
        bad = 1;
    }
    if ((act == PDR_ACTION_TRIGGER || act == PDR_ACTION_CHANGE) && (!a->description || !*a->description)) {
        send_fail("a %s needs -d/--description (the summary)",
                act == PDR_ACTION_CHANGE ? "change event" : "trigger");
        bad = 1;
    }
    if (a->incident_key && pdr_utf8_chars(a->incident_key) > PDR_DEDUP_KEY_MAX) {
        send_fail("-i/--incident-key has %zu characters; at most %d are allowed",
                pdr_utf8_chars(a->incident_key), PDR_DEDUP_KEY_MAX);
        bad = 1;
    }
    if (a->severity && strcmp(a->severity, "critical") && strcmp(a->severity, "error") &&
        strcmp(a->severity, "warning") && strcmp(a->severity, "info")) {
        send_fail("invalid --severity '%s'; allowed: critical, error, warning, info",
                a->severity);
        bad = 1;
    }
    if (a->routing_key && pdr_routing_key_check(a->routing_key, strlen(a->routing_key), &why) != PDR_OK) {
        send_fail("routing key %s has %zu characters; a PagerDuty integration key is exactly %d letters and "
                  "digits",
                  pdr_redact(a->routing_key, red, sizeof red), pdr_utf8_chars(a->routing_key), PDR_ROUTING_KEY_LEN);
        bad = 1;
    }
    if (a->routing_key && a->target) {
        send_fail("give -k/--routing-key or --target, not both");
        bad = 1;
    }
    for (size_t i = 0; i < a->n_fields; i++) {
        const char *eq = strchr(a->fields[i], '=');
        if (!eq || eq == a->fields[i]) {
            send_fail("invalid -f/--field '%s'; expected KEY=VALUE", a->fields[i]);
            bad = 1;
        }
    }
    for (size_t i = 0; i < a->n_links; i++) {
        if (strncmp(a->links[i], "http://", 7) && strncmp(a->links[i], "https://", 8)) {
            send_fail("invalid --link '%s'; expected an http:// or https:// URL, "
                            "optionally followed by =TEXT", a->links[i]);
            bad = 1;
        }
    }
    *act_out = act;
    return bad ? CLI_EXIT_USAGE : 0;
}

static int add_str(cJSON *obj, const char *name, const char *v)
{
    if (!v) return 0;
    return cJSON_AddStringToObject(obj, name, v) ? 0 : -1;
}

/* The link's TEXT follows the first '=' that comes before any '?'. */
static int add_link(cJSON *links, const char *arg)
{
    const char *q = strchr(arg, '?');
    const char *eq = strchr(arg, '=');
    cJSON *l = cJSON_CreateObject();
    if (!l || !cJSON_AddItemToArray(links, l)) {
        cJSON_Delete(l);
        return -1;
    }
    if (eq && (!q || eq < q)) {
        char *href = strndup(arg, (size_t)(eq - arg));
        int rc = href ? add_str(l, "href", href) : -1;
        free(href);
        return rc ? rc : add_str(l, "text", eq + 1);
    }
    return add_str(l, "href", arg);
}

/* Builds the event without routing_key. NULL on allocation failure. */
static cJSON *send_build(const send_args *a, const pdr_config *cfg, pdr_action act, const char *dedup_key)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON *payload, *details = NULL;
    int rc = 0;
    if (!ev) return NULL;
    if (act != PDR_ACTION_CHANGE) {
        rc |= add_str(ev, "event_action", pdr_action_name(act));
        rc |= add_str(ev, "dedup_key", dedup_key);
    }
    if (act == PDR_ACTION_TRIGGER || act == PDR_ACTION_CHANGE) {
        payload = cJSON_AddObjectToObject(ev, "payload");
        if (!payload) goto fail;
        rc |= add_str(payload, "summary", a->description);
        rc |= add_str(payload, "source", a->source ? a->source : cfg->source);
        if (act == PDR_ACTION_TRIGGER) {
            rc |= add_str(payload, "severity", a->severity ? a->severity : "error");
            rc |= add_str(payload, "component", a->component);
            rc |= add_str(payload, "group", a->group);
            rc |= add_str(payload, "class", a->class_);
        }
        /* No payload.timestamp: the sender adds the row's created_ms (when
        ** it was queued) as it sends a trigger or change event without one,
        ** so identical sends stay byte-identical and coalesce. */
        if (a->n_fields) {
            details = cJSON_AddObjectToObject(payload, "custom_details");
            if (!details) goto fail;
        }
        for (size_t i = 0; i < a->n_fields; i++) {
            const char *eq = strchr(a->fields[i], '=');
            char *k = strndup(a->fields[i], (size_t)(eq - a->fields[i]));
            if (!k) goto fail;
            cJSON_DeleteItemFromObjectCaseSensitive(details, k);
            rc |= add_str(details, k, eq + 1);
            free(k);
        }
        if (act == PDR_ACTION_TRIGGER) {
            rc |= add_str(ev, "client", a->client);
            rc |= add_str(ev, "client_url", a->client_url);
        }
        if (a->n_links) {
            cJSON *links = cJSON_AddArrayToObject(ev, "links");
            if (!links) goto fail;
            for (size_t i = 0; i < a->n_links; i++) rc |= add_link(links, a->links[i]);
        }
        if (a->n_images) {
            cJSON *images = cJSON_AddArrayToObject(ev, "images");
            if (!images) goto fail;
            for (size_t i = 0; i < a->n_images; i++) {
                cJSON *im = cJSON_CreateObject();
                if (!im || !cJSON_AddItemToArray(images, im)) {
                    cJSON_Delete(im);
                    goto fail;
                }
                rc |= add_str(im, "src", a->images[i]);
            }
        }
    }
    if (rc) goto fail;
    return ev;
fail:
    cJSON_Delete(ev);
    return NULL;
}

static void report_repairs(const pdr_repairs *rep)
{
    if (rep->summary_chars)
        send_fail("warning: summary cut from %zu to %d characters (PagerDuty's limit)",
                rep->summary_chars, PDR_SUMMARY_MAX_CHARS);
    if (rep->images_dropped)
        send_fail("warning: %d image(s) without an https:// src dropped "
                        "(PagerDuty accepts only HTTPS images)", rep->images_dropped);
    if (rep->details_shrunk)
        send_fail("warning: %d custom detail(s) shortened to fit PagerDuty's 512 KB limit",
                rep->details_shrunk);
    if (rep->utf8_repaired)
        send_fail("warning: %zu invalid UTF-8 sequence(s) replaced with U+FFFD",
                rep->utf8_repaired);
    if (rep->timestamp_dropped)
        fputs("pdrelay send: warning: timestamp dropped (not an ISO 8601 date-time)\n", stderr);
    if (rep->urls_dropped)
        send_fail("warning: %d URL(s) dropped (only http:// and https:// are sent)",
                rep->urls_dropped);
    if (rep->numbers_changed)
        send_fail("warning: %d number(s) sent changed (out of range: null; integers past 2^53: rounded)",
                  rep->numbers_changed);
}

int cli_send(int argc, char **argv)
{
    send_args a;
    pdr_config *cfg = NULL;
    db_handle *db = NULL;
    cJSON *tmpl = NULL;
    char *bodies[SEND_MAX_KEYS] = {0};
    const char *keys[SEND_MAX_KEYS];
    db_event evs[SEND_MAX_KEYS];
    pdr_rc results[SEND_MAX_KEYS];
    size_t n_keys = 0;
    pdr_action act;
    char gen_key[37];
    const char *dedup_key;
    char checked_key[PDR_DEDUP_KEY_MAX_BYTES + 1] = "";
    int ex;
    pdr_rc rc;
    pdr_repairs rep;

    memset(&a, 0, sizeof a);
    ex = send_parse(argc, argv, &a);
    if (ex) return ex < 0 ? CLI_EXIT_OK : ex;
    ex = send_validate(&a, &act);
    if (ex) return ex;

    cfg = cli_config_load("send", a.config, &ex);
    if (!cfg) return ex;

    if (a.routing_key) {
        keys[n_keys++] = a.routing_key;
    } else if (a.target) {
        const pdr_target *t = pdr_config_target(cfg, a.target);
        if (!t) {
            send_fail("no [target %s] in %s", a.target, cfg->path);
            ex = CLI_EXIT_USAGE;
            goto out;
        }
        if (t->webhook_url) {
            send_fail("[target %s] is a webhook target: pdrelay send queues PagerDuty events only", a.target);
            ex = CLI_EXIT_USAGE;
            goto out;
        }
        keys[n_keys++] = t->routing_key;
    } else {
        /* every PagerDuty target; webhook targets take alerts, not events */
        for (size_t i = 0; i < cfg->n_targets && n_keys < SEND_MAX_KEYS; i++)
            if (!cfg->targets[i].webhook_url) keys[n_keys++] = cfg->targets[i].routing_key;
    }
    if (n_keys == 0) {
        send_fail("no routing key: give -k KEY, or configure a [target NAME] "
                        "with routing_key or routing_key_file in %s", cfg->path);
        ex = CLI_EXIT_USAGE;
        goto out;
    }

    /* One dedup key for all targets, so the one printed means every copy. A
    ** blank one is none, as over HTTP. */
    dedup_key = a.incident_key && a.incident_key[strspn(a.incident_key, " \t\r\n")] ? a.incident_key : NULL;
    if (!dedup_key && act == PDR_ACTION_TRIGGER) {
        if (pdr_event_random_key(gen_key) != PDR_OK) {
            send_fail("cannot read random bytes for a dedup key");
            ex = CLI_EXIT_FAIL;
            goto out;
        }
        dedup_key = gen_key;
    }
    tmpl = send_build(&a, cfg, act, dedup_key);
    if (!tmpl) goto nomem;

    for (size_t i = 0; i < n_keys; i++) {
        pdr_event_errors errs;
        size_t body_len = 0;
        cJSON *ev = cJSON_Duplicate(tmpl, 1);
        if (!ev || !cJSON_AddStringToObject(ev, "routing_key", keys[i])) {
            cJSON_Delete(ev);
            goto nomem;
        }
        rc = pdr_event_check_text(ev, act == PDR_ACTION_CHANGE ? PDR_EVENT_CHANGE : PDR_EVENT_ALERT, &rep, &errs,
                                  &bodies[i], &body_len);
        if (rc == PDR_ERR_INVALID) {
            for (size_t e = 0; e < errs.n; e++)
                send_fail("invalid event: %s", errs.msgs[e]);
            cJSON_Delete(ev);
            ex = CLI_EXIT_USAGE;
            goto out;
        }
        if (rc) {
            cJSON_Delete(ev);
            goto nomem;
        }
        if (i == 0) {
            /* What is stored and printed is the checked key (its UTF-8
            ** repaired), the one PagerDuty will read. */
            const cJSON *dk = cJSON_GetObjectItemCaseSensitive(ev, "dedup_key");
            report_repairs(&rep);
            if (act != PDR_ACTION_CHANGE && cJSON_IsString(dk))
                snprintf(checked_key, sizeof checked_key, "%s", dk->valuestring);
        }
        cJSON_Delete(ev);
        evs[i].routing_key = keys[i];
        evs[i].action = act;
        evs[i].dedup_key = checked_key[0] ? checked_key : NULL;
        evs[i].fingerprint = NULL;
        evs[i].body = bodies[i];
        evs[i].body_len = body_len;
        /* The severity send_build() wrote; an acknowledge or resolve takes
        ** its trigger's (db.h). */
        evs[i].urgency = pdr_urgency_of(act, a.severity ? a.severity : "error");
        evs[i].target = NULL;
        /* send has no option naming when it happened: the sender stamps
        ** payload.timestamp with the time it was queued */
        evs[i].event_ms = 0;
    }

    db = cli_db_open("send", cfg, &ex);
    if (!db) goto out;
    rc = db_outbox_push_batch(db, evs, n_keys, results, NULL);
    if (rc) {
        send_fail("cannot queue the event in %s: %s (%s); nothing was queued",
                db_path(db), pdr_strerror(rc), db_errmsg(db));
        ex = cli_exit_for(rc);
        goto out;
    }
    ex = CLI_EXIT_OK;
    for (size_t i = 0; i < n_keys; i++) {
        char red[PDR_REDACT_SIZE];
        const char *tname = cli_target_of(cfg, keys[i]);
        pdr_redact(keys[i], red, sizeof red);
        if (results[i] == PDR_COALESCED) {
            send_fail("an identical event is already pending for %s%s%s; "
                            "not queued again", tname ? tname : red, tname ? " " : "",
                    tname ? red : "");
        } else if (results[i] == PDR_ERR_FULL) {
            db_bound b = db_outbox_last_bound(db);
            char limit[32];
            send_fail("outbox is full (%s = %s): event not queued for %s; retry when the outbox drains%s",
                      db_bound_key(b), writer_bound_limit(cfg, b, limit, sizeof limit), tname ? tname : red,
                      b == DB_BOUND_MIN_FREE ? " or space is freed" : "");
            ex = CLI_EXIT_TEMPFAIL;
        }
    }
    if (ex == CLI_EXIT_OK && checked_key[0]) {
        char shown[PDR_DEDUP_KEY_MAX_BYTES * 6 + 1];
        pdr_log_escape(shown, sizeof shown, checked_key, strlen(checked_key), PDR_ESC_TEXT, NULL);
        printf("%s\n", shown);
    }
    goto out;

nomem:
    send_fail("out of memory");
    ex = CLI_EXIT_FAIL;
out:
    for (size_t i = 0; i < SEND_MAX_KEYS; i++) cJSON_free(bodies[i]);
    cJSON_Delete(tmpl);
    db_close(db);
    pdr_config_destroy(cfg);
    return ex;
}
