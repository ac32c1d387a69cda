/*
** test_cli.c — runs the real pdrelay binary (send, queue, config check,
** --version, help) and asserts on what a user sees: its output, its exit code,
** and the rows it left in the outbox (read back through db.h).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "db.h"
#include "metrics.h"
#include "testutil.h"

#define KEY_A "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12"
#define KEY_B "R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34"
#define KEY_X "R0xxxxxxxxxxxxxxxxxxxxxxxxxxef56"

typedef struct fx {
    char *dir;
    char *cfg;       /* config with targets a (inline key) and b (key file) */
    char *data_dir;
} fx;

static void write_cfg(fx *f, const char *extra)
{
    char *keyfile = tu_printf("%s/b.key", f->dir);
    tu_write_file(keyfile, "  " KEY_B "\n\n");
    char *text = tu_printf("[agent]\ndata_dir = %s\nsource = gw-test\n\n"
                           "[target a]\nrouting_key = " KEY_A "\n\n"
                           "[target b]\nrouting_key_file = %s\nmatch = severity=critical\n%s",
                           f->data_dir, keyfile, extra ? extra : "");
    tu_write_file(f->cfg, text);
    free(text);
    free(keyfile);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    f->cfg = tu_printf("%s/pdrelay.ini", f->dir);
    f->data_dir = tu_printf("%s/var", f->dir);
    write_cfg(f, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_rmrf(f->dir);
    free(f->dir);
    free(f->cfg);
    free(f->data_dir);
    free(f);
    return 0;
}

/* Runs pdrelay with up to 62 arguments (NULL-terminated). */
static int run(char **out, char **err, ...)
{
    const char *argv[64];
    int n = 0;
    va_list ap;
    argv[n++] = tu_pdrelay();
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 63);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    return tu_run(argv, NULL, out, err);
}

static db_handle *open_db(const fx *f)
{
    return tu_db_open(f->data_dir, 0);
}

static size_t list_rows(const fx *f, db_row_state st, db_row **rows)
{
    db_handle *db = open_db(f);
    size_t n = 0;
    assert_int_equal(db_outbox_list(db, st, NULL, 0, rows, &n), PDR_OK);
    db_close(db);
    return n;
}

static const char *jstr(const cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *it = o;
    for (char *tok = strtok(buf, "."); tok && it; tok = strtok(NULL, "."))
        it = cJSON_GetObjectItemCaseSensitive(it, tok);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void assert_no_whole_key(const char *s)
{
    assert_false(tu_contains(s, KEY_A));
    assert_false(tu_contains(s, KEY_B));
    assert_false(tu_contains(s, KEY_X));
}

/* ---- version and help --------------------------------------------------- */

static void test_version(void **state)
{
    char *out, *err;
    (void)state;
    assert_int_equal(run(&out, &err, "--version", NULL), 0);
    assert_true(tu_contains(out, "pdrelay 0.1.0\n"));
    assert_true(tu_contains(out, "SQLite 3."));
    assert_true(tu_contains(out, "libcurl 7."));
    assert_true(tu_contains(out, "TLS backend: "));
    assert_true(tu_contains(out, "mbed TLS 2."));
    assert_true(tu_contains(out, "cJSON 1."));
    assert_true(tu_contains(out, "libmicrohttpd 0."));
    free(out);
    free(err);
}

static void test_help(void **state)
{
    char *out, *err;
    (void)state;
    assert_int_equal(run(&out, &err, "--help", NULL), 0);
    assert_true(tu_contains(out, "Usage: pdrelay COMMAND"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "help", "send", NULL), 0);
    assert_true(tu_contains(out, "-i, --incident-key KEY"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "--help", NULL), 0);
    assert_true(tu_contains(out, "Usage: pdrelay send"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "--help", NULL), 0);
    assert_true(tu_contains(out, "Usage: pdrelay queue"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "help", "frobnicate", NULL), 2);
    assert_true(tu_contains(err, "unknown command 'frobnicate'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "frobnicate", NULL), 2);
    assert_true(tu_contains(err, "pdrelay: unknown command 'frobnicate'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, NULL), 2);
    assert_true(tu_contains(err, "Usage: pdrelay COMMAND"));
    free(out); free(err);
}

/* ---- config check ------------------------------------------------------- */

static void test_config_check_shipped(void **state)
{
    char *out, *err;
    (void)state;
    assert_int_equal(run(&out, &err, "config", "check", "-c", PDR_TEST_SOURCE_DIR "/config/pdrelay.ini", NULL), 0);
    assert_true(tu_contains(out, "pdrelay.ini: valid"));
    assert_true(tu_contains(out, "rate_per_minute=120 burst=10"));
    free(out); free(err);
}

static void test_config_check_redacts(void **state)
{
    fx *f = *state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "config", "check", "-c", f->cfg, NULL), 0);
    assert_true(tu_contains(out, "[target a] routing_key=R0\xe2\x80\xa6" "ab12"));
    assert_true(tu_contains(out, "[target b] routing_key=R0\xe2\x80\xa6" "cd34 (from "));
    assert_true(tu_contains(out, "match=severity=critical"));
    assert_no_whole_key(out);
    assert_no_whole_key(err);
    free(out); free(err);
}

static void test_config_check_all_errors(void **state)
{
    fx *f = *state;
    char *out, *err;
    tu_write_file(f->cfg, "[agent]\n"
                          "log_level = loud\n"
                          "colour = blue\n"
                          "[outbox]\n"
                          "max_age = 5 minutes\n"
                          "[target short]\n"
                          "routing_key = R0shortkeyab12\n");
    assert_int_equal(run(&out, &err, "config", "check", "-c", f->cfg, NULL), 2);
    char *l2 = tu_printf("%s:2: ", f->cfg), *l3 = tu_printf("%s:3: ", f->cfg);
    char *l5 = tu_printf("%s:5: ", f->cfg), *l7 = tu_printf("%s:7: ", f->cfg);
    assert_true(tu_contains(err, l2));
    assert_true(tu_contains(err, l3));
    assert_true(tu_contains(err, l5));
    assert_true(tu_contains(err, l7));
    assert_true(tu_contains(err, "is not valid"));
    assert_false(tu_contains(err, "R0shortkeyab12"));
    free(l2); free(l3); free(l5); free(l7);
    free(out); free(err);
}

static void test_config_missing_file(void **state)
{
    fx *f = *state;
    char *out, *err;
    char *p = tu_printf("%s/nope.ini", f->dir);
    assert_int_equal(run(&out, &err, "config", "check", "-c", p, NULL), 2);
    assert_true(tu_contains(err, "nope.ini"));
    free(p); free(out); free(err);
}

/* Is the command name on $PATH? (tu_run aborts on a command it cannot start.) */
static int on_path(const char *name)
{
    const char *path = getenv("PATH");
    int found = 0;
    char *dirs = strdup(path ? path : "/usr/bin:/bin");
    for (char *d = dirs, *end; d && !found; d = end ? end + 1 : NULL) {
        end = strchr(d, ':');
        if (end) *end = '\0';
        char *full = tu_printf("%s/%s", *d ? d : ".", name);
        found = access(full, X_OK) == 0;
        free(full);
    }
    free(dirs);
    return found;
}

/* Runs pdrelay with args (NULL-terminated) behind the command wrapper
** (NULL-terminated, e.g. timeout(1) or setpriv(1)), keeping the emulator a
** cross build puts in front of pdrelay. */
static int run_wrapped(const char *const *wrapper, char **out, char **err, const char *const *args)
{
    const char *argv[32] = {tu_pdrelay()};
    const char *full[64];
    size_t n = 1, m = 0;
    for (size_t i = 0; args[i]; i++) {
        assert_true(n < 31);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    const char **sp = tu_spawn_argv(argv);
    for (size_t i = 0; wrapper[i]; i++) full[m++] = wrapper[i];
    for (size_t i = 0; sp[i]; i++) {
        assert_true(m < 63);
        full[m++] = sp[i];
    }
    full[m] = NULL;
    int rc = tu_run(full, NULL, out, err);
    tu_argv_free(sp, argv);
    return rc;
}

/* `pdrelay config check -c PATH` under timeout(1), so that a pdrelay that
** hangs on PATH (a FIFO) or spins (/dev/zero) is killed (exit 137) after
** 20 s rather than hanging the test. */
static int run_config_check_bounded(const char *path, char **out, char **err)
{
    static const char *const wrapper[] = {"timeout", "-s", "KILL", "20", NULL};
    const char *args[] = {"config", "check", "-c", path, NULL};
    return run_wrapped(wrapper, out, err, args);
}

static void test_config_not_a_regular_file(void **state)
{
    fx *f = *state;
    char *out, *err;
    if (!on_path("timeout")) skip();   /* coreutils' timeout(1) bounds the runs that could hang */
    char *fifo = tu_printf("%s/fifo.ini", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *paths[] = {"/dev/zero", fifo, f->dir};
    const char *kinds[] = {"a character device", "a FIFO (named pipe)", "a directory"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(run_config_check_bounded(paths[i], &out, &err), 2);
        char *want = tu_printf("pdrelay config check: %s: is %s, not a config file; allowed: a regular file\n",
                               paths[i], kinds[i]);
        assert_true(tu_contains(err, want));
        assert_string_equal(out, "");
        free(want);
        free(out); free(err);
    }
    free(fifo);
}

/* A config error quotes the file's bytes: escaped, like everything else. */
static void test_config_errors_escaped(void **state)
{
    fx *f = *state;
    char *out, *err;
    tu_write_file(f->cfg, "[agent]\nlog\x1b]0;x\x07level = info\n");
    assert_int_equal(run(&out, &err, "config", "check", "-c", f->cfg, NULL), 2);
    assert_true(tu_contains(err, ":2: unknown key 'log\\x1b]0;x\\x07level' in [agent]"));
    assert_null(strchr(err, '\x1b'));
    free(out); free(err);
}

/* ---- send --------------------------------------------------------------- */

static void test_send_trigger_fields(void **state)
{
    fx *f = *state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-t", "trigger",
                         "-d", "Disk full on web01", "--severity", "critical", "--client", "Zabbix",
                         "-u", "https://zabbix.example/1", "-f", "disk=/var", "-f", "used=99%",
                         "--component", "disk", "--group", "web", "--class", "storage",
                         "--link", "https://wiki.example/disk=Runbook", "--link", "https://x.example/?a=b",
                         "--image", "https://img.example/g.png", "--image", "http://insecure.example/g.png",
                         NULL), 0);
    /* stdout is the generated dedup key (a UUID) and nothing else */
    assert_int_equal(strlen(out), 37);
    assert_int_equal(out[8], '-');
    assert_true(tu_contains(err, "1 image(s) without an https:// src dropped"));
    assert_no_whole_key(err);

    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].routing_key, KEY_X);
    assert_int_equal(rows[0].action, PDR_ACTION_TRIGGER);
    assert_int_equal(strncmp(rows[0].dedup_key, out, 36), 0);
    cJSON *ev = cJSON_Parse(rows[0].body);
    assert_non_null(ev);
    assert_string_equal(jstr(ev, "routing_key"), KEY_X);
    assert_string_equal(jstr(ev, "event_action"), "trigger");
    assert_string_equal(jstr(ev, "dedup_key"), rows[0].dedup_key);
    assert_string_equal(jstr(ev, "payload.summary"), "Disk full on web01");
    assert_string_equal(jstr(ev, "payload.severity"), "critical");
    assert_string_equal(jstr(ev, "payload.source"), "gw-test");
    assert_string_equal(jstr(ev, "payload.component"), "disk");
    assert_string_equal(jstr(ev, "payload.group"), "web");
    assert_string_equal(jstr(ev, "payload.class"), "storage");
    assert_string_equal(jstr(ev, "payload.custom_details.disk"), "/var");
    assert_string_equal(jstr(ev, "payload.custom_details.used"), "99%");
    assert_string_equal(jstr(ev, "client"), "Zabbix");
    assert_string_equal(jstr(ev, "client_url"), "https://zabbix.example/1");
    cJSON *links = cJSON_GetObjectItem(ev, "links");
    assert_int_equal(cJSON_GetArraySize(links), 2);
    assert_string_equal(jstr(cJSON_GetArrayItem(links, 0), "href"), "https://wiki.example/disk");
    assert_string_equal(jstr(cJSON_GetArrayItem(links, 0), "text"), "Runbook");
    assert_string_equal(jstr(cJSON_GetArrayItem(links, 1), "href"), "https://x.example/?a=b");
    assert_null(jstr(cJSON_GetArrayItem(links, 1), "text"));
    cJSON *images = cJSON_GetObjectItem(ev, "images");
    assert_int_equal(cJSON_GetArraySize(images), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(images, 0), "src"), "https://img.example/g.png");
    /* none stored: the sender adds the time it was queued when it sends it */
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "timestamp"));
    cJSON_Delete(ev);
    db_rows_free(rows, n);
    free(out); free(err);
}

static void test_send_every_target(void **state)
{
    fx *f = *state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-d", "Fan failed", "-i", "fan-1", NULL), 0);
    assert_string_equal(out, "fan-1\n");
    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].routing_key, KEY_A);
    assert_string_equal(rows[1].routing_key, KEY_B);
    assert_string_equal(rows[0].dedup_key, "fan-1");
    assert_string_equal(rows[1].dedup_key, "fan-1");
    cJSON *ev = cJSON_Parse(rows[1].body);
    assert_string_equal(jstr(ev, "payload.severity"), "error");
    assert_string_equal(jstr(ev, "routing_key"), KEY_B);
    cJSON_Delete(ev);
    db_rows_free(rows, n);
    free(out); free(err);

    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "--target", "b", "-t", "resolve", "-i", "fan-1", NULL), 0);
    n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 3);
    assert_string_equal(rows[2].routing_key, KEY_B);
    assert_int_equal(rows[2].action, PDR_ACTION_RESOLVE);
    ev = cJSON_Parse(rows[2].body);
    assert_string_equal(jstr(ev, "event_action"), "resolve");
    assert_null(cJSON_GetObjectItem(ev, "payload"));
    cJSON_Delete(ev);
    db_rows_free(rows, n);
    free(out); free(err);
}

static void test_send_refusals(void **state)
{
    fx *f = *state;
    char *out, *err;
    /* something queued first: bad input must not harm it */
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "kept", "-i", "k1", NULL), 0);
    free(out); free(err);

    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-t", "acknowledge", NULL), 2);
    assert_true(tu_contains(err, "--event-type acknowledge needs -i/--incident-key"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "x", "--severity", "high", NULL), 2);
    assert_true(tu_contains(err, "invalid --severity 'high'; allowed: critical, error, warning, info"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", "R0tooshortkeyxxxxxxxxxxxxxxab12", "-d", "x", NULL), 2);
    assert_true(tu_contains(err, "routing key R0\xe2\x80\xa6" "ab12 has 31 characters"));
    assert_false(tu_contains(err, "R0tooshortkey"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-t", "page", NULL), 2);
    assert_true(tu_contains(err, "invalid --event-type 'page'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "x", "-f", "novalue", NULL), 2);
    assert_true(tu_contains(err, "invalid -f/--field 'novalue'; expected KEY=VALUE"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, NULL), 2);
    assert_true(tu_contains(err, "a trigger needs -d/--description"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "--bogus", NULL), 2);
    assert_true(tu_contains(err, "unknown option '--bogus'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-d", "x", "--target", "nope", NULL), 2);
    assert_true(tu_contains(err, "no [target nope]"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", NULL), 2);
    assert_true(tu_contains(err, "option '-k' needs a value"));
    free(out); free(err);

    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].dedup_key, "k1");
    db_rows_free(rows, n);
}

static void test_send_no_targets(void **state)
{
    fx *f = *state;
    char *out, *err;
    char *text = tu_printf("[agent]\ndata_dir = %s\n", f->data_dir);
    tu_write_file(f->cfg, text);
    free(text);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-d", "x", NULL), 2);
    assert_true(tu_contains(err, "no routing key: give -k KEY"));
    free(out); free(err);
}

static void test_send_summary_cut(void **state)
{
    fx *f = *state;
    char *out, *err;
    /* 1500 characters, multi-byte: "é" is two bytes */
    char *desc = malloc(3001);
    for (int i = 0; i < 1500; i++) memcpy(desc + 2 * i, "\xc3\xa9", 2);
    desc[3000] = '\0';
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", desc, NULL), 0);
    assert_true(tu_contains(err, "summary cut from 1500 to 1024 characters"));
    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    cJSON *ev = cJSON_Parse(rows[0].body);
    const char *s = jstr(ev, "payload.summary");
    assert_int_equal(strlen(s), 1023 * 2 + 3);
    assert_memory_equal(s + 1023 * 2, "\xe2\x80\xa6", 3);
    assert_memory_equal(s, desc, 1023 * 2);
    cJSON_Delete(ev);
    db_rows_free(rows, n);
    free(desc); free(out); free(err);
}

/* The same send twice (a cron job during an outage) is queued once: the
** stored body carries no time of its own, so the repeat is byte-identical. */
static void test_send_coalesce(void **state)
{
    fx *f = *state;
    char *out, *err;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "same", "-i", "dup", NULL), 0);
        assert_string_equal(out, "dup\n");
        if (i == 1) assert_true(tu_contains(err, "an identical event is already pending"));
        free(out); free(err);
    }
    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].dedup_key, "dup");
    db_rows_free(rows, n);
}

static void test_send_full(void **state)
{
    fx *f = *state;
    char *out, *err;
    write_cfg(f, "[outbox]\nmax_events = 2\n");
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "same", "-i", "dup", NULL), 0);
    assert_string_equal(out, "dup\n");
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "other", "-i", "o", NULL), 0);
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "third", "-i", "t", NULL), 75);
    assert_true(tu_contains(err, "outbox is full (max_events = 2)"));
    assert_string_equal(out, "");
    free(out); free(err);
    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].dedup_key, "dup");
    assert_string_equal(rows[1].dedup_key, "o");
    db_rows_free(rows, n);
}

static void test_send_change(void **state)
{
    fx *f = *state;
    char *out, *err;
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "--change", "-d", "Deployed v2",
                         "--link", "https://ci.example/42=Build 42", NULL), 0);
    assert_string_equal(out, "");
    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].action, PDR_ACTION_CHANGE);
    assert_null(rows[0].dedup_key);
    cJSON *ev = cJSON_Parse(rows[0].body);
    assert_string_equal(jstr(ev, "payload.summary"), "Deployed v2");
    assert_null(jstr(ev, "payload.timestamp"));   /* added when it is sent */
    assert_null(cJSON_GetObjectItem(ev, "event_action"));
    cJSON_Delete(ev);
    db_rows_free(rows, n);
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "--change", "-t", "resolve", "-d", "x", NULL), 2);
    assert_true(tu_contains(err, "--change sends a change event"));
    free(out); free(err);
}

/* ---- queue -------------------------------------------------------------- */

static void queue_three(fx *f)
{
    char *out, *err;
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "--target", "a", "-d", "one", "-i", "1", NULL), 0);
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "--target", "a", "-d", "two", "-i", "2", NULL), 0);
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "three", "-i", "3", NULL), 0);
    free(out); free(err);
}

/* The status table's line of a redacted key: its target and counts. */
static void assert_status_line(const char *out, const char *red, const char *target,
                               long long pending, long long dead)
{
    char k[32], t[32], age[32], next[32];
    long long p, d;
    const char *line = strstr(out, red);
    assert_non_null(line);
    assert_int_equal(sscanf(line, "%31s %31s %lld %lld %31s %31s", k, t, &p, &d, age, next), 6);
    assert_string_equal(t, target);
    assert_int_equal(p, pending);
    assert_int_equal(d, dead);
    assert_string_equal(next, "now");
}

static void test_queue_status(void **state)
{
    fx *f = *state;
    char *out, *err;
    struct stat sb;
    /* nothing queued yet: said so, and nothing created */
    char *msg = tu_printf("pdrelay queue: no outbox at %s/pdrelay.db: nothing has been queued yet, "
                          "or [agent] data_dir points elsewhere\n", f->data_dir);
    for (int json = 0; json < 2; json++) {
        assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", json ? "--json" : NULL, NULL), 1);
        assert_string_equal(err, msg);
        assert_string_equal(out, "");
        free(out); free(err);
        assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", json ? "--json" : NULL, NULL), 1);
        assert_string_equal(err, msg);
        assert_string_equal(out, "");
        free(out); free(err);
    }
    assert_int_not_equal(stat(f->data_dir, &sb), 0);
    free(msg);
    db_close(open_db(f));
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", NULL), 0);
    assert_true(tu_contains(out, ": 0 pending, 0 dead (max_events 1000000, max_bytes 256MB, min_free 64MB, max_dead 10000)"));
    free(out); free(err);
    queue_three(f);
    assert_int_equal(run(&out, &err, "queue", "status", "-c", f->cfg, NULL), 0);
    assert_true(tu_contains(out, ": 3 pending, 0 dead"));
    assert_status_line(out, "R0\xe2\x80\xa6" "ab12", "a", 2, 0);
    assert_status_line(out, "R0\xe2\x80\xa6" "ef56", "-", 1, 0);
    assert_no_whole_key(out);
    assert_true(tu_contains(out, "\ndatabase: "));
    assert_true(tu_contains(out, " on disk (file "));
    free(out); free(err);

    /* The database's size on disk and the bytes of the bodies it holds. */
    db_handle *db = open_db(f);
    db_counts counts;
    int64_t file_bytes = 0, wal_bytes = 0;
    assert_int_equal(db_outbox_counts(db, &counts), PDR_OK);
    db_close(db);
    assert_true(counts.pending_bytes > 0);
    char *dbpath = tu_printf("%s/%s", f->data_dir, DB_FILE_NAME), *walpath = tu_printf("%s-wal", dbpath);
    assert_int_equal(stat(dbpath, &sb), 0);
    file_bytes = sb.st_size;
    if (stat(walpath, &sb) == 0) wal_bytes = sb.st_size;
    assert_int_equal(run(&out, &err, "queue", "status", "--json", "-c", f->cfg, NULL), 0);
    assert_no_whole_key(out);
    cJSON *doc = cJSON_Parse(out);
    assert_non_null(doc);
    assert_true(cJSON_GetObjectItem(doc, "database_file_bytes")->valuedouble == (double)file_bytes);
    assert_true(cJSON_GetObjectItem(doc, "wal_bytes")->valuedouble == (double)wal_bytes);
    assert_true(cJSON_GetObjectItem(doc, "database_bytes")->valuedouble == (double)(file_bytes + wal_bytes));
    assert_true(cJSON_GetObjectItem(doc, "pending_bytes")->valuedouble == (double)counts.pending_bytes);
    assert_true(cJSON_GetObjectItem(doc, "dead_bytes")->valuedouble == 0);
    free(dbpath);
    free(walpath);
    assert_int_equal(cJSON_GetObjectItem(doc, "pending")->valueint, 3);
    cJSON *keys = cJSON_GetObjectItem(doc, "keys");
    assert_int_equal(cJSON_GetArraySize(keys), 2);
    cJSON *k0 = cJSON_GetArrayItem(keys, 0);
    assert_string_equal(jstr(k0, "target"), "a");
    assert_int_equal(cJSON_GetObjectItem(k0, "pending")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(k0, "next_attempt_in_ms")->valueint, 0);
    cJSON_Delete(doc);
    free(out); free(err);
}

static void test_queue_list_retry_purge(void **state)
{
    fx *f = *state;
    char *out, *err;
    queue_three(f);
    /* the sender would do this on a 400: kill the first row of key a */
    db_handle *db = open_db(f);
    db_row *rows;
    size_t n;
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, KEY_A, 0, &rows, &n), PDR_OK);
    assert_int_equal(n, 2);
    int64_t dead_id = rows[0].id;
    db_rows_free(rows, n);
    assert_int_equal(db_outbox_kill(db, dead_id, "400 'payload.summary' is missing or blank"), PDR_OK);
    db_close(db);

    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--dead", NULL), 0);
    assert_true(tu_contains(out, "died of: 400 'payload.summary' is missing or blank"));
    assert_true(tu_contains(out, "summary: one"));
    assert_no_whole_key(out);
    free(out); free(err);

    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--key", "a", "--json", NULL), 0);
    cJSON *doc = cJSON_Parse(out);
    assert_int_equal(cJSON_GetArraySize(doc), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(doc, 0), "summary"), "two");
    assert_string_equal(jstr(cJSON_GetArrayItem(doc, 0), "routing_key"), "R0\xe2\x80\xa6" "ab12");
    cJSON_Delete(doc);
    free(out); free(err);

    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--limit", "1", "--json", NULL), 0);
    doc = cJSON_Parse(out);
    assert_int_equal(cJSON_GetArraySize(doc), 1);
    cJSON_Delete(doc);
    free(out); free(err);

    char *id = tu_printf("%lld", (long long)dead_id);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "retry", id, "999", NULL), 1);
    assert_true(tu_contains(out, "retried 1 dead letter: pending again"));
    assert_true(tu_contains(err, "999: no dead letter with this id"));
    free(out); free(err);
    /* the retried row is now behind "two" in key a's queue */
    n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 3);
    assert_string_equal(rows[2].routing_key, KEY_A);
    assert_true(rows[2].id > dead_id);
    assert_null(rows[2].last_error);
    assert_int_equal(rows[2].attempts, 0);
    db_rows_free(rows, n);

    /* kill all, retry by target name, then purge */
    db = open_db(f);
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_OK);
    for (size_t i = 0; i < n; i++) assert_int_equal(db_outbox_kill(db, rows[i].id, "401 unauthorized"), PDR_OK);
    db_rows_free(rows, n);
    db_close(db);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "retry", "--key", "a", "--json", NULL), 0);
    doc = cJSON_Parse(out);
    assert_int_equal(cJSON_GetObjectItem(doc, "retried")->valueint, 2);
    cJSON_Delete(doc);
    free(out); free(err);

    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "purge", "--dead", "--older-than", "1h", NULL), 0);
    assert_true(tu_contains(out, "purged 0 dead letters older than 1h"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "purge", "--dead", NULL), 0);
    assert_true(tu_contains(out, "purged 1 dead letter\n"));
    free(out); free(err);
    n = list_rows(f, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 0);
    db_rows_free(rows, n);
    n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 2);
    db_rows_free(rows, n);
    free(id);
}

static void test_queue_refusals(void **state)
{
    fx *f = *state;
    char *out, *err;
    queue_three(f);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "purge", NULL), 2);
    assert_true(tu_contains(err, "give --dead"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "purge", "--dead", "--older-than", "soon", NULL), 2);
    assert_true(tu_contains(err, "invalid --older-than 'soon'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "retry", NULL), 2);
    assert_true(tu_contains(err, "give exactly one of --all, --key K or IDs"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "retry", "abc", NULL), 2);
    assert_true(tu_contains(err, "invalid id 'abc'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", "--all", NULL), 2);
    assert_true(tu_contains(err, "--all is not an option of 'status'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "drain", NULL), 2);
    assert_true(tu_contains(err, "unknown subcommand 'drain'"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, NULL), 2);
    assert_true(tu_contains(err, "missing subcommand"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--key", "R0short", NULL), 2);
    assert_true(tu_contains(err, "neither a target of the config nor a routing key"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--limit", "-3", NULL), 2);
    assert_true(tu_contains(err, "invalid --limit '-3'"));
    free(out); free(err);
    db_row *rows;
    size_t n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 3);
    db_rows_free(rows, n);
}

static void test_corrupt_database(void **state)
{
    fx *f = *state;
    char *out, *err;
    size_t len, len2;
    mkdir(f->data_dir, 0700);
    char *fixture = tu_read_file(PDR_TEST_FIXTURES "/corrupt.db", &len);
    assert_non_null(fixture);
    char *dbp = tu_printf("%s/pdrelay.db", f->data_dir);
    FILE *fp = fopen(dbp, "wb");
    assert_int_equal(fwrite(fixture, 1, len, fp), len);
    fclose(fp);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", NULL), 1);
    assert_true(tu_contains(err, "corrupt"));
    assert_true(tu_contains(err, dbp));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "x", NULL), 1);
    assert_true(tu_contains(err, "corrupt"));
    free(out); free(err);
    char *after = tu_read_file(dbp, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(fixture, after, len);
    free(after); free(fixture); free(dbp);
}

/* ---- what reaches the terminal ----------------------------------------- */

/* Valid UTF-8, by glibc's decoder. */
static int utf8_valid(const char *s)
{
    iconv_t cd = iconv_open("UTF-8", "UTF-8");
    size_t il = strlen(s), ol = 4 * il + 16;
    char *buf = malloc(ol), *in = (char *)s, *o = buf;
    assert_true(cd != (iconv_t)-1);
    size_t r = iconv(cd, &in, &il, &o, &ol);
    iconv_close(cd);
    free(buf);
    return r != (size_t)-1 && il == 0;
}

/* No control character but newline (and tab, between JSON's items): not C0,
** DEL or C1 (C2 80..C2 9F), and valid UTF-8. */
static void assert_clean(const char *out)
{
    for (const unsigned char *p = (const unsigned char *)out; *p; p++) {
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7F ||
            (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F))
            fail_msg("raw control byte 0x%02x at offset %td of:\n%s", *p, (const char *)p - out, out);
    }
    assert_true(utf8_valid(out));
}

/* Rows the CLI would refuse, stored as the API allows: a summary and a
** dedup_key that try to retitle the terminal, forge a table line, and carry
** C1 CSI and invalid UTF-8; a dead row whose last error does the same. */
static void push_hostile(fx *f)
{
    db_handle *db = open_db(f);
    const char *body = "{\"routing_key\":\"" KEY_X "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
                       "\"payload\":{\"summary\":\"\\u001b]0;pwned\\u0007 ok\\r\\n1 R0\xe2\x80\xa6" "ab12 trigger "
                       "\xc2\x9b" "2J \xff\xfe end\",\"source\":\"s\",\"severity\":\"info\"}}";
    db_event ev = {KEY_X, PDR_ACTION_TRIGGER, "dk\x1b[31m\r\n\xc2\x85\xff", NULL, body, strlen(body), PDR_URGENCY_INFO, NULL, 0};
    int64_t id = 0;
    assert_int_equal(db_outbox_push(db, &ev, &id), PDR_OK);
    db_event ev2 = {KEY_A, PDR_ACTION_TRIGGER, "dead\x7f", NULL, body, strlen(body), PDR_URGENCY_INFO, NULL, 0};
    assert_int_equal(db_outbox_push(db, &ev2, &id), PDR_OK);
    assert_int_equal(db_outbox_kill(db, id, "400 \x1b[2K\rforged \xc2\x9b\xe6\x97"), PDR_OK);
    db_close(db);
}

#define HOSTILE_SUMMARY_SHOWN "summary: \\x1b]0;pwned\\x07 ok\\r\\n1 R0\xe2\x80\xa6" "ab12 trigger \\u009b2J \\xff\\xfe end\n"
#define HOSTILE_SUMMARY_JSON "\x1b]0;pwned\x07 ok\r\n1 R0\xe2\x80\xa6" "ab12 trigger \xc2\x9b" "2J \xef\xbf\xbd\xef\xbf\xbd end"

static void test_queue_escapes_controls(void **state)
{
    fx *f = *state;
    char *out, *err;
    push_hostile(f);

    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", NULL), 0);
    assert_clean(out);
    assert_true(tu_contains(out, " dk\\x1b[31m\\r\\n\\u0085\\xff\n"));
    assert_true(tu_contains(out, HOSTILE_SUMMARY_SHOWN));
    free(out); free(err);

    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--dead", NULL), 0);
    assert_clean(out);
    assert_true(tu_contains(out, " dead\\x7f\n"));
    assert_true(tu_contains(out, "died of: 400 \\x1b[2K\\rforged \\u009b\\xe6\\x97\n"));
    free(out); free(err);

    for (int dead = 0; dead < 2; dead++) {
        assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "list", "--json", dead ? "--dead" : NULL, NULL), 0);
        assert_clean(out);
        cJSON *doc = cJSON_Parse(out);
        assert_non_null(doc);
        cJSON *row = cJSON_GetArrayItem(doc, 0);
        assert_string_equal(jstr(row, "summary"), HOSTILE_SUMMARY_JSON);
        if (dead) {
            assert_string_equal(jstr(row, "dedup_key"), "dead\x7f");
            assert_string_equal(jstr(row, "last_error"), "400 \x1b[2K\rforged \xc2\x9b\xef\xbf\xbd\xef\xbf\xbd");
        } else {
            assert_string_equal(jstr(row, "dedup_key"), "dk\x1b[31m\r\n\xc2\x85\xef\xbf\xbd");
        }
        cJSON_Delete(doc);
        free(out); free(err);
    }

    for (int json = 0; json < 2; json++) {
        assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", json ? "--json" : NULL, NULL), 0);
        assert_clean(out);
        assert_true(tu_contains(out, "R0\xe2\x80\xa6" "ef56"));
        free(out); free(err);
    }
}

/* `pdrelay queue -c CFG SUB` as a user who cannot write the outbox: as
** root (whom modes do not stop) as nobody through setpriv(1). When root
** cannot become nobody it runs as root, which still shows whether anything
** is created, and says so. */
static int run_queue_unprivileged(const fx *f, const char *sub, char **out, char **err)
{
    static const char *const as_nobody[] = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", NULL};
    static const char *const as_self[] = {NULL};
    const char *args[] = {"queue", "-c", f->cfg, sub, NULL};
    const char *probe[] = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true", NULL};
    if (geteuid() != 0) return run_wrapped(as_self, out, err, args);
    if (!on_path("setpriv") || !on_path("true") || tu_run(probe, NULL, NULL, NULL) != 0) {
        print_message("root cannot become nobody (setpriv): file modes are not tested\n");
        return run_wrapped(as_self, out, err, args);
    }
    return run_wrapped(as_nobody, out, err, args);
}

/* status and list on an outbox they cannot write: the file 0444 and the
** directory 0555, alone and beside a writer whose -wal and -shm they may
** only read; nothing created. */
static void test_queue_read_only_outbox(void **state)
{
    fx *f = *state;
    char *out, *err;
    char *dbp = tu_printf("%s/pdrelay.db", f->data_dir);
    char *wal = tu_printf("%s-wal", dbp), *shm = tu_printf("%s-shm", dbp);
    struct stat sb;
    int ex;
    queue_three(f);
    assert_int_not_equal(stat(wal, &sb), 0);
    assert_int_equal(chmod(f->dir, 0755), 0);   /* nobody may reach the config and the outbox */
    assert_int_equal(chmod(dbp, 0444), 0);
    assert_int_equal(chmod(f->data_dir, 0555), 0);
    ex = run_queue_unprivileged(f, "status", &out, &err);
    if (ex != 0) fail_msg("exit %d: %s", ex, err);
    assert_true(tu_contains(out, ": 3 pending, 0 dead"));
    free(out); free(err);
    assert_int_equal(run_queue_unprivileged(f, "list", &out, &err), 0);
    assert_true(tu_contains(out, "summary: three"));
    free(out); free(err);
    assert_int_not_equal(stat(wal, &sb), 0);
    assert_int_not_equal(stat(shm, &sb), 0);

    /* beside a writer, which commits one more */
    assert_int_equal(chmod(f->data_dir, 0700), 0);
    assert_int_equal(chmod(dbp, 0644), 0);
    db_handle *db = open_db(f);
    const char *body = "{\"routing_key\":\"" KEY_X "\",\"event_action\":\"resolve\",\"dedup_key\":\"w\"}";
    db_event ev = {KEY_X, PDR_ACTION_RESOLVE, "w", NULL, body, strlen(body), PDR_URGENCY_INHERIT, NULL, 0};
    assert_int_equal(db_outbox_push(db, &ev, NULL), PDR_OK);
    assert_int_equal(chmod(wal, 0444), 0);
    assert_int_equal(chmod(shm, 0444), 0);
    assert_int_equal(chmod(f->data_dir, 0555), 0);
    ex = run_queue_unprivileged(f, "status", &out, &err);
    if (ex != 0) fail_msg("exit %d: %s", ex, err);
    assert_true(tu_contains(out, ": 4 pending, 0 dead"));
    free(out); free(err);
    assert_int_equal(chmod(f->data_dir, 0700), 0);
    db_close(db);
    free(dbp); free(wal); free(shm);
}

/* Two connections in one process (the daemon has two) and another process
** that opens and closes the database: the other process must not take
** itself for the last user and delete the WAL under the live connections,
** and what they commit must be what it then reads. */
static void test_wal_survives_other_process(void **state)
{
    fx *f = *state;
    char *out, *err;
    db_handle *a = open_db(f), *b = open_db(f);
    char *wal = tu_printf("%s/pdrelay.db-wal", f->data_dir);
    struct stat st;
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", NULL), 0);
    free(out); free(err);
    assert_int_equal(stat(wal, &st), 0);
    const char *body = "{\"routing_key\":\"" KEY_X "\",\"event_action\":\"resolve\",\"dedup_key\":\"w\"}";
    db_event ev = {KEY_X, PDR_ACTION_RESOLVE, "w", NULL, body, strlen(body), PDR_URGENCY_INHERIT, NULL, 0};
    assert_int_equal(db_outbox_push(a, &ev, NULL), PDR_OK);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", "--json", NULL), 0);
    cJSON *doc = cJSON_Parse(out);
    assert_int_equal(cJSON_GetObjectItem(doc, "pending")->valueint, 1);
    cJSON_Delete(doc);
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_X, "-d", "from cli", "-i", "c", NULL), 0);
    free(out); free(err);
    db_row *rows;
    size_t n;
    assert_int_equal(db_outbox_list(b, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_OK);
    assert_int_equal(n, 2);
    db_rows_free(rows, n);
    assert_int_equal(stat(wal, &st), 0);
    db_close(a);
    db_close(b);
    free(wal);
}

/* ---- file modes ---------------------------------------------------------- */

/* config check warns (exit code unchanged) for each file holding a secret
** that group or others can read: a routing_key_file, the auth_token_file
** and the database, each named with its mode and the fix; it never prints
** the secret. Once they are 0600, no warning. */
static void test_config_check_warns_readable_secrets(void **state)
{
    fx *f = *state;
    char *out, *err;
    char *tok = tu_printf("%s/token", f->dir), *key = tu_printf("%s/b.key", f->dir);
    char *dbf = tu_printf("%s/pdrelay.db", f->data_dir);
    char *extra = tu_printf("[listen]\nauth_token_file = %s\n", tok);
    tu_write_file(tok, "s3cr3t-t0ken-value\n");
    write_cfg(f, extra);
    db_close(open_db(f));
    assert_int_equal(chmod(key, 0644), 0);
    assert_int_equal(chmod(tok, 0604), 0);
    assert_int_equal(chmod(dbf, 0640), 0);

    assert_int_equal(run(&out, &err, "config", "check", "-c", f->cfg, NULL), 0);
    assert_true(tu_contains(out, ": valid"));
    char *w_key = tu_printf("warning: %s (routing_key_file of [target b]) has mode 0644: group or others can "
                            "read it; fix: chmod 600 %s\n", key, key);
    char *w_tok = tu_printf("warning: %s ([listen] auth_token_file) has mode 0604", tok);
    char *w_tok_fix = tu_printf("fix: chmod 600 %s\n", tok);
    char *w_db = tu_printf("warning: %s (the outbox database) has mode 0640", dbf);
    if (!tu_contains(err, w_key) || !tu_contains(err, w_tok) || !tu_contains(err, w_tok_fix) ||
        !tu_contains(err, w_db))
        fail_msg("config check did not warn as expected; stderr:\n%s", err);
    assert_false(tu_contains(out, "s3cr3t-t0ken-value") || tu_contains(err, "s3cr3t-t0ken-value"));
    assert_no_whole_key(out);
    assert_no_whole_key(err);
    free(out); free(err);

    assert_int_equal(chmod(key, 0600), 0);
    assert_int_equal(chmod(tok, 0600), 0);
    assert_int_equal(chmod(dbf, 0600), 0);
    assert_int_equal(run(&out, &err, "config", "check", "-c", f->cfg, NULL), 0);
    assert_false(tu_contains(err, "warning"));
    free(out); free(err);
    free(w_key); free(w_tok); free(w_tok_fix); free(w_db);
    free(tok); free(key); free(dbf); free(extra);
}

/* The exit code for a database `run` cannot write is documented. */
/* The commands share one getopt error path (agent/cli.c, cli_getopt_error):
** the same two messages, the command named, exit 2; the option's bytes are
** shown escaped. */
static void test_getopt_errors(void **state)
{
    static const char *const cmds[] = {"run", "send", "queue", "config"};
    char *out, *err, want[128];
    (void)state;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        assert_int_equal(run(&out, &err, cmds[i], "--bogus", NULL), 2);
        snprintf(want, sizeof want, "pdrelay %s: unknown option '--bogus'; see 'pdrelay %s --help'\n", cmds[i],
                 cmds[i]);
        assert_string_equal(err, want);
        free(out); free(err);
        assert_int_equal(run(&out, &err, cmds[i], "-c", NULL), 2);
        snprintf(want, sizeof want, "pdrelay %s: option '-c' needs a value\n", cmds[i]);
        assert_string_equal(err, want);
        free(out); free(err);
    }
    assert_int_equal(run(&out, &err, "run", "--bo\033[2Jgus", NULL), 2);
    assert_null(strchr(err, '\033'));
    free(out); free(err);
}

static void test_help_names_exit_77(void **state)
{
    char *out, *err;
    (void)state;
    assert_int_equal(run(&out, &err, "--help", NULL), 0);
    assert_true(tu_contains(out, "  77  run: the database cannot be written"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "run", "--help", NULL), 0);
    assert_true(tu_contains(out, "77 database\nnot writable"));
    free(out); free(err);
}

/* config check prints values from the file escaped: a control character in
** the file cannot act on the terminal. */
static void test_config_check_escapes_values(void **state)
{
    fx *f = *state;
    char *out, *err;
    write_cfg(f, "[target c]\nrouting_key = " KEY_A "\nmatch = alertname=\x1b]0;pwned\x07\n"
                 "[pagerduty]\nproxy = http://p\x1b[2J:3128\n");
    assert_int_equal(run(&out, &err, "config", "check", "-c", f->cfg, NULL), 0);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\x07'));
    assert_true(tu_contains(out, "match=alertname=\\x1b]0;pwned\\x07"));
    assert_true(tu_contains(out, "proxy=http://p\\x1b[2J:3128"));
    free(out);
    free(err);
}

/* An outbox path that is not a regular file (a FIFO) and a data_dir that is
** not a directory are refused at once, as settings to correct (exit 2). */
static void test_outbox_not_a_file(void **state)
{
    fx *f = *state;
    char *out, *err, *db = tu_printf("%s/pdrelay.db", f->data_dir), *file = tu_printf("%s/plain", f->dir);
    char *cfg2 = tu_printf("%s/notdir.ini", f->dir), *text = tu_printf("[agent]\ndata_dir = %s\n", file);
    write_cfg(f, NULL);
    assert_int_equal(mkdir(f->data_dir, 0700), 0);
    assert_int_equal(mkfifo(db, 0600), 0);
    assert_int_equal(run(&out, &err, "queue", "-c", f->cfg, "status", NULL), 2);
    assert_true(tu_contains(err, "pdrelay.db is not a regular file (a FIFO)"));
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-k", KEY_A, "-d", "x", NULL), 2);
    assert_true(tu_contains(err, "is not a regular file (a FIFO)"));
    free(out); free(err);
    tu_write_file(file, "");
    tu_write_file(cfg2, text);
    assert_int_equal(run(&out, &err, "send", "-c", cfg2, "-k", KEY_A, "-d", "x", NULL), 2);
    assert_true(tu_contains(err, "is not a directory (ENOTDIR)"));
    assert_false(tu_contains(err, "chmod"));
    free(out); free(err);
    free(db); free(file); free(cfg2); free(text);
}

/* send stores and prints the dedup key the checked event carries: its
** invalid UTF-8 repaired (as in the body PagerDuty gets), printed escaped; a
** blank -i is none, so the generated key is the one stored and printed. */
static void test_send_dedup_key_as_checked(void **state)
{
    fx *f = *state;
    char *out, *err;
    db_row *rows;
    size_t n;
    write_cfg(f, NULL);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "--target", "a", "-d", "x", "-i",
                         "sk\x1b[31m\xff\xc2\x9b", NULL), 0);
    assert_null(strchr(out, '\x1b'));
    assert_string_equal(out, "sk\\x1b[31m\xef\xbf\xbd\\u009b\n");
    free(out); free(err);
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "--target", "a", "-d", "y", "-i", "   ", NULL), 0);
    assert_int_equal(strlen(out), 37);   /* a UUID and a newline */
    n = list_rows(f, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].dedup_key, "sk\x1b[31m\xef\xbf\xbd\xc2\x9b");
    assert_non_null(strstr(rows[0].body, "\"dedup_key\":\"sk\\u001b[31m\xef\xbf\xbd\xc2\x9b\""));
    assert_int_equal(strncmp(rows[1].dedup_key, out, 36), 0);
    db_rows_free(rows, n);
    free(out); free(err);
    /* config check refuses what run refuses: an unreadable auth token file. */
    {
        char *tokcfg = tu_printf("%s/tok.ini", f->dir);
        char *t = tu_printf("[agent]\ndata_dir = %s\n[listen]\nauth_token_file = %s/missing.token\n", f->data_dir,
                            f->dir);
        tu_write_file(tokcfg, t);
        assert_int_equal(run(&out, &err, "config", "check", "-c", tokcfg, NULL), 2);
        assert_true(tu_contains(err, "missing.token: cannot read the auth token file"));
        free(out); free(err); free(t); free(tokcfg);
    }
    /* -c "" is a usage error, never the system config. */
    assert_int_equal(run(&out, &err, "queue", "-c", "", "status", NULL), 2);
    assert_true(tu_contains(err, "-c/--config needs a file name, not an empty string"));
    assert_false(tu_contains(err, "/etc/pdrelay"));
    free(out); free(err);
    /* What send quotes of its arguments is escaped too. */
    assert_int_equal(run(&out, &err, "send", "-c", f->cfg, "-f", "x\x1b]0;T\x07", "-d", "x", NULL), 2);
    assert_null(strchr(err, '\x1b'));
    assert_true(tu_contains(err, "invalid -f/--field 'x\\x1b]0;T\\x07'"));
    free(out); free(err);
}

/* ---- the key table (config/config.c) and what is generated from it ---- */

#define README_BEGIN "<!-- config-keys:begin"
#define README_END "<!-- config-keys:end -->"
#define README_REGEN \
    "awk '/^<!-- config-keys:begin/{print; fflush(); system(\"build/pdrelay config keys --markdown\"); skip=1; " \
    "next} /^<!-- config-keys:end/{skip=0} !skip' README.md >README.md.new && mv README.md.new README.md"

/* README.md's configuration reference is exactly `pdrelay config keys
** --markdown`, between its two marker lines. */
static void test_readme_config_reference(void **state)
{
    char *out, *err, *readme = tu_read_file(PDR_TEST_SOURCE_DIR "/README.md", NULL), *begin, *end;
    (void)state;
    assert_non_null(readme);
    assert_int_equal(run(&out, &err, "config", "keys", "--markdown", NULL), 0);
    begin = strstr(readme, README_BEGIN);
    end = strstr(readme, README_END);
    if (!begin || !end || !(begin = strchr(begin, '\n')) || begin > end)
        fail_msg("README.md has no '%s …' line followed by a '%s' line in its Configuration section", README_BEGIN,
                 README_END);
    begin++;
    *end = '\0';
    if (strcmp(begin, out)) {
        /* the first line that differs */
        size_t i = 0, line = 1;
        while (begin[i] && begin[i] == out[i]) line += begin[i++] == '\n';
        print_message("README.md's configuration reference differs from the key table of config/config.c "
                      "(line %zu of the table). Regenerate it, from the top of the source tree, with\n  %s\n",
                      line, README_REGEN);
        fail();
    }
    free(out);
    free(err);
    free(readme);
}

/* README.md's table of metrics names every family /metrics exposes, and
** nothing else (the registry in agent/metrics.c is the one list). */
static void test_readme_metrics_table(void **state)
{
    metrics_gauges g;
    char *readme = tu_read_file(PDR_TEST_SOURCE_DIR "/README.md", NULL), *text, *p;
    int n = 0;
    (void)state;
    assert_non_null(readme);
    memset(&g, 0, sizeof g);
    metrics_reset();
    metrics_set_targets(NULL);
    text = metrics_render(&g);
    assert_non_null(text);
    for (p = strstr(text, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
        char name[128];
        size_t len = strcspn(p + 7, " ");
        assert_true(len < sizeof name);
        memcpy(name, p + 7, len);
        name[len] = '\0';
        char *row = tu_printf("\n| `%s` |", name);
        if (!strstr(readme, row)) fail_msg("README.md's Metrics table has no row for %s", name);
        free(row);
        n++;
    }
    /* and every row of the table is a family that exists */
    for (p = strstr(readme, "\n| `"); p; p = strstr(p + 1, "\n| `")) {
        char name[128];
        size_t len = strcspn(p + 4, "`");
        if (len >= sizeof name ||
            (strncmp(p + 4, "pdrelay_", 8) && strncmp(p + 4, "pagerduty_", 10) && strncmp(p + 4, "process_", 8)))
            continue;
        memcpy(name, p + 4, len);
        name[len] = '\0';
        char *type = tu_printf("# TYPE %s ", name);
        if (!strstr(text, type)) fail_msg("README.md's Metrics table lists %s, which /metrics does not have", name);
        free(type);
    }
    assert_true(n > 15);
    free(text);
    free(readme);
}

/* roff as man.c writes it: '\' and '-' escaped (the table's text is ASCII). */
static char *roff(const char *s)
{
    char *r = malloc(strlen(s) * 2 + 1), *p = r;
    assert_non_null(r);
    for (; *s; s++) {
        if (*s == '\\' || *s == '-') *p++ = '\\';
        *p++ = *s == '\\' ? 'e' : *s;
    }
    *p = '\0';
    return r;
}

/* The man page lists every key of the table: "[section] key = default",
** its description, what it allows, and what SIGHUP does with it. */
static void test_man_lists_config_keys(void **state)
{
    char *out, *err, allowed[256];
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    (void)state;
    assert_int_equal(run(&out, &err, "man", NULL), 0);
    assert_true(tu_contains(out, "\n.SH CONFIGURATION\n"));
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        const char *def = !k->def ? "(none)" : *k->def ? k->def : "(empty)";
        char *name = roff(k->key), *dv = roff(def), *desc = roff(k->desc);
        char *al = roff(pdr_config_key_allowed(k, allowed, sizeof allowed));
        char *entry = tu_printf("\n.TP\n\\fB[%s%s] %s\\fR = %s%s\n%s\n.br\nAllowed: %s. %s\n", k->section,
                                strcmp(k->section, "target") ? "" : " NAME", name, *dv == '.' ? "\\&" : "", dv,
                                desc, al,
                                k->reload == PDR_RELOAD_APPLIES ? "SIGHUP applies it."
                                : k->reload == PDR_RELOAD_KEEP ? "Needs a restart (a reload keeps the running value)."
                                                               : "Needs a restart.");
        if (!tu_contains(out, entry)) fail_msg("pdrelay man: no entry%s", entry);
        free(entry);
        free(al);
        free(desc);
        free(dv);
        free(name);
    }
    free(out);
    free(err);
}

/* `pdrelay config keys` names every key with its default; `keys` takes no
** -c, and `check` no --markdown. */
static void test_config_keys(void **state)
{
    char *out, *err;
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    (void)state;
    assert_int_equal(run(&out, &err, "config", "keys", NULL), 0);
    assert_string_equal(err, "");
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        char *line = tu_printf("[%s%s] %s = %s\n", k->section, strcmp(k->section, "target") ? "" : " NAME", k->key,
                               !k->def ? "(none)" : *k->def ? k->def : "(empty)");
        if (!tu_contains(out, line)) fail_msg("config keys: no line %s", line);
        free(line);
    }
    assert_true(tu_contains(out, "[outbox] max_events = 1000000\n    allowed: 1 to 1000000000; SIGHUP: needs a "
                                 "restart (a reload keeps the running value)\n    Bound on pending events"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "config", "keys", "-c", "x.ini", NULL), 2);
    assert_true(tu_contains(err, "expected 'pdrelay config check [-c FILE]' or 'pdrelay config keys [--markdown]'"));
    free(out);
    free(err);
    assert_int_equal(run(&out, &err, "config", "check", "--markdown", NULL), 2);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_config_check_shipped),
        cmocka_unit_test_setup_teardown(test_config_check_redacts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_check_all_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_not_a_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_trigger_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_every_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_no_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_summary_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_list_retry_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_survives_other_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_escapes_controls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_read_only_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_check_warns_readable_secrets, setup, teardown),
        cmocka_unit_test(test_help_names_exit_77),
        cmocka_unit_test(test_getopt_errors),
        cmocka_unit_test(test_readme_config_reference),
        cmocka_unit_test(test_readme_metrics_table),
        cmocka_unit_test(test_man_lists_config_keys),
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test_setup_teardown(test_config_check_escapes_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_not_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_dedup_key_as_checked, setup, teardown),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
