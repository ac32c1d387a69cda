/*
** test_sender.c — `pdrelay run` against the mock PagerDuty: what arrives
** upstream, in which order, at what pace; what stays in the outbox through
** faults, outages, kill -9 and wrong certificates; and what the log says.
** Rates are scaled (a 1 s window instead of 60 s) so each test takes seconds;
** test_slow_real_rate.c runs PagerDuty's real 120/minute.
*/
#define _GNU_SOURCE   /* prlimit */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "itutil.h"
#include "mockpd_client.h"
#include "testutil.h"

static const char *const KEYS[] = {
    "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12",
    "R0bbbbbbbbbbbbbbbbbbbbbbbbbbcd34",
    "R0cccccccccccccccccccccccccccd56",
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)

/* Writes the config: the mock's URL, fast backoff, short timeouts, plus extra. */
static void fx_config(it_fx *f, const char *extra)
{
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n[pagerduty]\nurl = %s\nbackoff_initial_ms = 20\n"
                           "backoff_max_ms = 200\ntimeout_ms = 1000\nconnect_timeout_ms = 500\n%s",
                           f->data_dir, mockpd_url(f->mock), extra ? extra : "");
    tu_write_file(f->cfg, text);
    free(text);
}

#define jstr it_jstr

/* ---- tests ------------------------------------------------------------------- */

static void test_order_per_key(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = -1};
    it_fx *f = it_fx_new(&mo);
    fx_config(f, "rate_per_minute = 60000\nburst = 50\n");
    for (int k = 0; k < 3; k++) it_queue(f->data_dir, KEYS[k], "e", 40);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 120, 30000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *ev = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(ev), 120);
    for (int k = 0; k < 3; k++) it_assert_in_order(ev, KEYS[k], "e", 40);
    cJSON_Delete(ev);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay stopped\"", 1000), 0);
    it_fx_free(f, KEYS, N_KEYS);   /* no routing key whole */
}

static void test_lifecycle_through_failures(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    /* queued before the start, the trigger would go as "resolved while
    ** offline" (test_outage.c): here the lifecycle is sent as queued */
    fx_config(f, "[outbox]\nresolved_while_queued = send\n");
    assert_int_equal(mockpd_set_mode(f->mock, "status", 503, 0, 2), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "disk-1", "Disk full"), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "acknowledge", "disk-1", NULL), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "resolve", "disk-1", NULL), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 20000), 0);
    cJSON *ev = mockpd_events(f->mock);
    assert_int_equal(cJSON_GetArraySize(ev), 3);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 0), "event_action"), "trigger");
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 1), "event_action"), "acknowledge");
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 2), "event_action"), "resolve");
    for (int i = 0; i < 3; i++) assert_string_equal(jstr(cJSON_GetArrayItem(ev, i), "dedup_key"), "disk-1");
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 0), "summary"), "Disk full");
    cJSON_Delete(ev);
    assert_int_equal(mockpd_stat(f->mock, "faulted"), 2);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    char *log = it_log(&f->d);
    /* the only key with work answered 503: the uplink is down, said once */
    assert_non_null(strstr(log, "msg=\"uplink down: events are kept and one probe is sent at a time\" "
                                "cause=server_error error=\"HTTP 503: Injected HTTP 503\""));
    assert_non_null(strstr(log, "msg=\"uplink up: delivering the backlog, most urgent first\""));
    assert_null(strstr(log, "delivery failed"));
    assert_non_null(strstr(log, "msg=delivered key=\"R0\xe2\x80\xa6" "ab12\" id=1 action=trigger dedup_key=disk-1 "
                                "status=202 attempts=3"));
    free(log);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* A 429 (here with Retry-After: 1) is transient: the event waits at least
** that long, then goes, and nothing behind it overtakes it. */
static void test_throttled_then_delivered(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL);
    assert_int_equal(mockpd_set_mode_json(f->mock, "{\"mode\":\"status\",\"status\":429,\"count\":1,"
                                                   "\"retry_after\":\"1\"}"), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "t-1", "throttled first"), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "t-2", "behind it"), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *req = mockpd_requests(f->mock);
    assert_int_equal(cJSON_GetArraySize(req), 3);
    const cJSON *r0 = cJSON_GetArrayItem(req, 0), *r1 = cJSON_GetArrayItem(req, 1);
    assert_int_equal(cJSON_GetObjectItem(r0, "status")->valueint, 429);
    assert_string_equal(jstr(r0, "dedup_key"), "t-1");
    assert_string_equal(jstr(r1, "dedup_key"), "t-1");
    assert_true(cJSON_GetObjectItem(r1, "arrival_ms")->valuedouble -
                cJSON_GetObjectItem(r0, "arrival_ms")->valuedouble >= 1000.0);
    assert_string_equal(jstr(cJSON_GetArrayItem(req, 2), "dedup_key"), "t-2");
    cJSON_Delete(req);
    assert_int_equal(it_wait_log(&f->d, "error_type=rate_limit", 1000), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* 300 events to one key against a server that throttles above 120 per
** sliding window: none throttled, none over 120 in any window. */
static void test_burst_never_throttled(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = 120, .window_ms = 1000};
    it_fx *f = it_fx_new(&mo);
    fx_config(f, "rate_per_minute = 7200\nburst = 10\nrate_window = 1s\n");
    it_queue(f->data_dir, KEYS[0], "b", 300);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 300, 60000), 0);
    assert_int_equal(mockpd_stat(f->mock, "throttled"), 0);
    cJSON *ev = mockpd_events(f->mock);
    int n = cJSON_GetArraySize(ev);
    assert_int_equal(n, 300);
    int worst = it_max_in_window(ev, 1000);
    print_message("most arrivals in any 1 s window: %d\n", worst);
    assert_true(worst <= 120);
    it_assert_in_order(ev, KEYS[0], "b", 300);
    cJSON_Delete(ev);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_dead_letter_then_retry(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL);
    /* An event PagerDuty refuses (an older pdrelay, or a hand-made row):
    ** the severity is not one PagerDuty knows. */
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "bad-1", NULL, "high", "s");
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "good-1", "after the bad one"), 0);

    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 20000), 0);
    /* the key went on after the refusal */
    cJSON *ev = mockpd_events(f->mock);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 0), "dedup_key"), "good-1");
    cJSON_Delete(ev);
    assert_int_equal(it_wait_log(&f->d, "msg=\"refused by PagerDuty: moved to the dead letters\"", 5000), 0);
    db_row *rows;
    size_t n = it_rows(f->data_dir, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].dedup_key, "bad-1");
    assert_non_null(strstr(rows[0].last_error, "HTTP 400: 'payload.severity'"));
    int64_t dead_id = rows[0].id;
    db_rows_free(rows, n);
    char *out, *errout;
    const char *argv1[] = {tu_pdrelay(), "queue", "-c", f->cfg, "list", "--dead", NULL};
    assert_int_equal(tu_run(argv1, NULL, &out, &errout), 0);
    assert_non_null(strstr(out, "died of: HTTP 400: 'payload.severity'"));
    free(out); free(errout);

    /* A transient refusal of a good event, then the operator retries it
    ** while the daemon runs: it is noticed and delivered. */
    assert_int_equal(mockpd_set_mode(f->mock, "status", 400, 0, 1), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "good-2", "refused once"), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, 3, 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=good-2 error_type=bad_request", 5000), 0);
    n = it_rows(f->data_dir, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 2);
    int64_t good2 = rows[1].id;
    assert_string_equal(rows[1].last_error, "HTTP 400: Injected HTTP 400");
    db_rows_free(rows, n);
    char *id = tu_printf("%lld", (long long)good2);
    const char *argv2[] = {tu_pdrelay(), "queue", "-c", f->cfg, "retry", id, NULL};
    assert_int_equal(tu_run(argv2, NULL, &out, &errout), 0);
    free(out); free(errout); free(id);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);
    ev = mockpd_events(f->mock);
    assert_string_equal(jstr(cJSON_GetArrayItem(ev, 1), "dedup_key"), "good-2");
    cJSON_Delete(ev);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    n = it_rows(f->data_dir, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].id, dead_id);
    db_rows_free(rows, n);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_outage_then_recovery(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL);
    assert_int_equal(mockpd_halt(f->mock), 0);        /* connections refused */
    it_queue(f->data_dir, KEYS[0], "o", 10);
    it_queue(f->data_dir, KEYS[1], "p", 10);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "cause=network", 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "uplink down", 10000), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 20);
    assert_int_equal(mockpd_restart(f->mock), 0);
    assert_int_equal(mockpd_set_mode(f->mock, "status", 503, 0, 4), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, 4, 10000), 0);
    assert_int_equal(mockpd_set_mode(f->mock, "hang", 0, 0, 2), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 20, 30000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *ev = mockpd_events(f->mock);
    it_assert_in_order(ev, KEYS[0], "o", 10);
    it_assert_in_order(ev, KEYS[1], "p", 10);
    cJSON_Delete(ev);
    /* down once, up once: the 503s and hangs while it was down are not lines
    ** of their own. Awaited (the log is written by the daemon's threads);
    ** the daemon has stopped, so a second "uplink down" cannot come later. */
    assert_int_equal(it_wait_log(&f->d, "uplink up", 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay stopped\"", 10000), 0);
    assert_int_equal(it_wait_log_count(&f->d, "uplink down", 2, 0), -1);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_kill9_loses_nothing(void **state)
{
    (void)state;
    mockpd_opts mo = {.limit = -1, .latency_ms = 20};
    it_fx *f = it_fx_new(&mo);
    fx_config(f, "rate_per_minute = 60000\nburst = 50\n");
    it_queue(f->data_dir, KEYS[0], "k", 100);
    it_queue(f->data_dir, KEYS[1], "l", 100);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 40, 30000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGKILL), 128 + SIGKILL);
    size_t left = it_count(f->data_dir, DB_ROW_PENDING);
    assert_true(left > 0 && left < 200);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    /* everything arrives: 200 distinct events (a repeat of what was in
    ** flight at the kill is allowed) */
    cJSON *ev = NULL;
    for (int want = 200;; want++) {
        assert_int_equal(mockpd_wait_accepted(f->mock, want, 30000), 0);
        cJSON_Delete(ev);
        ev = mockpd_events(f->mock);
        char got[201][32];
        if (it_accepted_for(ev, KEYS[0], got, 201) + it_accepted_for(ev, KEYS[1], got, 201) == 200) break;
        assert_true(want < 210);
    }
    it_assert_in_order(ev, KEYS[0], "k", 100);
    it_assert_in_order(ev, KEYS[1], "l", 100);
    cJSON_Delete(ev);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_sigterm_lets_inflight_finish(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL);
    assert_int_equal(mockpd_set_mode(f->mock, "slow", 0, 400, 1), 0);
    assert_int_equal(it_send(f->cfg, KEYS[2], "trigger", "slow-1", "slow reply"), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(mockpd_stat(f->mock, "accepted"), 1);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    char *log = it_log(&f->d);
    assert_non_null(strstr(log, "dedup_key=slow-1 status=202"));
    assert_true(strstr(log, "dedup_key=slow-1 status=202") < strstr(log, "msg=\"pdrelay stopped\""));
    free(log);
    it_fx_free(f, KEYS, N_KEYS);
}

static void test_tls(void **state)
{
    (void)state;
    mockpd_opts mo = {.tls = true};
    it_fx *f = it_fx_new(&mo);
    char *extra = tu_printf("ca_file = %s/other-ca.pem\n", mockpd_certs_dir(f->mock));
    fx_config(f, extra);
    free(extra);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "tls-1", "over TLS"), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "level=error msg=\"uplink down: TLS failure talking to PagerDuty (check "
                                        "[pagerduty] ca_file", 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    char *log = it_log(&f->d);
    /* libcurl's words for an untrusted certificate depend on its TLS backend:
    ** OpenSSL's (the host build), mbedTLS's (the firmware builds, cross/). */
    assert_true(strstr(log, "cause=tls error=\"tls: SSL certificate problem") ||
                strstr(log, "cause=tls error=\"tls: Cert verify failed: BADCERT_NOT_TRUSTED"));
    free(log);
    assert_int_equal(mockpd_stat(f->mock, "accepted"), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 1);

    /* the right CA: delivered */
    extra = tu_printf("ca_file = %s\n", mockpd_ca_file(f->mock));
    fx_config(f, extra);
    free(extra);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

static pdr_rc dedup_lookup(it_fx *f, const char *key, const char *fp, db_dedup_entry *out)
{
    db_handle *db = tu_db_open(f->data_dir, 0);
    pdr_rc rc = db_dedup_get(db, key, fp, out);
    db_close(db);
    return rc;
}

/* A delivered trigger records its dedup key for the alert's fingerprint; a
** delivered acknowledge marks it; a delivered resolve removes it. */
static void test_dedup_table_follows_deliveries(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, "[dedup]\nttl = 1h\n");
    db_dedup_entry e;
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "dk-1", "fp-1", "error", "s");
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=dk-1 status=202", 5000), 0);
    assert_int_equal(dedup_lookup(f, KEYS[0], "fp-1", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "dk-1");
    assert_int_equal(e.state, DB_DEDUP_TRIGGERED);
    assert_true(e.expires_ms - e.updated_ms == 3600000);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_ACKNOWLEDGE, "dk-1", "fp-1", NULL, NULL);
    assert_int_equal(mockpd_wait_accepted(f->mock, 2, 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "action=acknowledge dedup_key=dk-1 status=202", 5000), 0);
    assert_int_equal(dedup_lookup(f, KEYS[0], "fp-1", &e), PDR_OK);
    assert_int_equal(e.state, DB_DEDUP_ACKNOWLEDGED);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_RESOLVE, "dk-1", "fp-1", NULL, NULL);
    assert_int_equal(mockpd_wait_accepted(f->mock, 3, 10000), 0);
    assert_int_equal(it_wait_log(&f->d, "action=resolve dedup_key=dk-1 status=202", 5000), 0);
    assert_int_equal(dedup_lookup(f, KEYS[0], "fp-1", &e), PDR_ERR_NOT_FOUND);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Expired dedup entries are purged by the daemon every cleanup_interval;
** live ones survive every purge. */
static void test_dedup_housekeeping(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, "[agent]\nlog_level = debug\n[dedup]\nttl = 300ms\ncleanup_interval = 200ms\n");
    tu_push_event(f->data_dir, KEYS[2], PDR_ACTION_TRIGGER, "dk-h", "fp-h", "error", "s");
    /* a live incident of another key, an hour from expiry */
    db_handle *db = tu_db_open(f->data_dir, 0);
    assert_int_equal(db_dedup_put(db, KEYS[1], "fp-live", "dk-live", DB_DEDUP_TRIGGERED, 3600000, NULL, -1), PDR_OK);
    db_close(db);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=dk-h status=202", 10000), 0);
    /* exactly the expired one: a purge of everything says count=2 */
    assert_int_equal(it_wait_log(&f->d, "msg=\"purged expired dedup entries\" count=", 5000), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"purged expired dedup entries\" count=1", 0), 0);
    /* one more entry, 300 ms from expiry: the round that purges it comes
    ** after the first one, and finds the live one still live */
    db = tu_db_open(f->data_dir, 0);
    assert_int_equal(db_dedup_put(db, KEYS[0], "fp-late", "dk-late", DB_DEDUP_TRIGGERED, 300, NULL, -1), PDR_OK);
    db_close(db);
    assert_int_equal(it_wait_log_count(&f->d, "msg=\"purged expired dedup entries\" count=1", 2, 5000), 0);
    db_dedup_entry e;
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(dedup_lookup(f, KEYS[1], "fp-live", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "dk-live");
    assert_int_equal(dedup_lookup(f, KEYS[2], "fp-h", &e), PDR_ERR_NOT_FOUND);
    db = tu_db_open(f->data_dir, 0);
    int64_t n = -1;
    assert_int_equal(db_dedup_count(db, &n), PDR_OK);
    assert_int_equal(n, 1);
    db_close(db);
    it_fx_free(f, KEYS, N_KEYS);
}

/* An event whose next attempt lies beyond any delay pdrelay sets (the wall
** clock was set back after it was rescheduled) is sent now, not in hours. */
static void test_clock_set_back(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, NULL);
    tu_push_event(f->data_dir, KEYS[0], PDR_ACTION_TRIGGER, "cb-1", NULL, "error", "s");
    db_handle *db = tu_db_open(f->data_dir, 0);
    db_row *rows;
    size_t n;
    assert_int_equal(db_outbox_list(db, DB_ROW_PENDING, NULL, 0, &rows, &n), PDR_OK);
    assert_int_equal(n, 1);
    /* as if rescheduled by a clock that was 10 hours ahead */
    assert_int_equal(db_outbox_reschedule(db, rows[0].id, rows[0].created_ms + 10 * 3600 * 1000, "timeout"), PDR_OK);
    db_rows_free(rows, n);
    db_close(db);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"the clock moved back: events waiting beyond any backoff are due now\" "
                                        "count=1", 1000), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* [pagerduty] proxy: requests go through the proxy, addressed to the
** configured url (here a host that does not resolve: only the proxy can
** deliver). The mock plays the HTTP proxy and records the host asked for. */
static void test_proxy(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\nport = 0\n[pagerduty]\nurl = http://events.pagerduty.invalid\n"
                           "proxy = %s\nbackoff_max_ms = 200\n", f->data_dir, mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
    assert_int_equal(it_send(f->cfg, KEYS[1], "trigger", "px-1", "through the proxy"), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *ev = mockpd_events(f->mock);
    const cJSON *e = cJSON_GetArrayItem(ev, 0);
    assert_string_equal(jstr(e, "proxied_host"), "events.pagerduty.invalid");
    assert_string_equal(jstr(e, "path"), "/v2/enqueue");
    assert_string_equal(jstr(e, "dedup_key"), "px-1");
    cJSON_Delete(ev);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* With max_age set, events that cannot be delivered in time become dead
** letters (in order, the key's head first) instead of being retried forever. */
static void test_max_age(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, "[outbox]\nmax_age = 300ms\n");
    assert_int_equal(mockpd_halt(f->mock), 0);
    assert_int_equal(it_send(f->cfg, KEYS[1], "trigger", "old-1", "first"), 0);
    assert_int_equal(it_send(f->cfg, KEYS[1], "trigger", "old-2", "second"), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=old-2 reason=max_age", 10000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    db_row *rows;
    size_t n = it_rows(f->data_dir, DB_ROW_DEAD, &rows);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].dedup_key, "old-1");
    assert_string_equal(rows[1].dedup_key, "old-2");
    assert_string_equal(rows[0].last_error, "max_age exceeded: not delivered in time");
    db_rows_free(rows, n);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* ---- attempts, backoff across restarts, outcomes the database refuses ---------- */

static double arrival(const cJSON *reqs, int i)
{
    return cJSON_GetObjectItem(cJSON_GetArrayItem(reqs, i), "arrival_ms")->valuedouble;
}

/* `pdrelay queue list --dead --json`, as the operator sees it: the
** attempts of the dead letter with dedup_key dk. */
static int dead_attempts(it_fx *f, const char *dk)
{
    char *out = NULL, *err = NULL;
    const char *argv[] = {tu_pdrelay(), "queue", "-c", f->cfg, "list", "--dead", "--json", NULL};
    assert_int_equal(tu_run(argv, NULL, &out, &err), 0);
    cJSON *doc = cJSON_Parse(out);
    int attempts = -1;
    const cJSON *o;
    cJSON_ArrayForEach(o, doc)
        if (jstr(o, "dedup_key") && !strcmp(jstr(o, "dedup_key"), dk))
            attempts = cJSON_GetObjectItem(o, "attempts")->valueint;
    cJSON_Delete(doc);
    free(out);
    free(err);
    return attempts;
}

/* A dead letter shows the attempts it really had: refused at once, 1;
** refused after two transient failures, 3. */
static void test_dead_letter_counts_attempts(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    /* A first retry 150-300 ms later, the second 300-600 ms (later keys
    ** win): time enough to change the mock's answer in between. */
    fx_config(f, "backoff_initial_ms = 300\nbackoff_max_ms = 5000\n");
    assert_int_equal(mockpd_set_mode(f->mock, "status", 400, 0, 1), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "once", "refused at once"), 0);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=once error_type=bad_request", 10000), 0);
    assert_int_equal(dead_attempts(f, "once"), 1);

    /* 408: a failure of the key, on its own backoff (a 5xx on the only key
    ** would be the uplink's, on the probe schedule) */
    assert_int_equal(mockpd_set_mode(f->mock, "status", 408, 0, 0), 0);
    assert_int_equal(it_send(f->cfg, KEYS[0], "trigger", "thrice", "refused at the third attempt"), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, 3, 10000), 0);   /* 400, then 408 twice */
    assert_int_equal(mockpd_set_mode(f->mock, "status", 400, 0, 1), 0);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=thrice error_type=bad_request", 10000), 0);
    assert_int_equal(mockpd_stat(f->mock, "requests"), 4);
    assert_int_equal(dead_attempts(f, "thrice"), 3);
    assert_int_equal(it_wait_log(&f->d, "dedup_key=thrice error_type=bad_request error=\"HTTP 400: Injected HTTP 400\" "
                                        "attempts=3", 1000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* A key's own failures (408: a 5xx on the only key would be the uplink's,
** which follows the probe schedule) are retried after delays that double:
** the gaps between the attempts, as the mock saw them, are at least the
** lower bounds of the jittered delays (after failure k, drawn from
** [initial * 2^(k-1) / 2, initial * 2^(k-1)]). A backoff that never grows
** keeps every gap under 2 x initial and fails from the third gap on. */
static void test_backoff_grows(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    fx_config(f, "backoff_initial_ms = 40\nbackoff_max_ms = 5000\n");   /* later keys win */
    enum { FAILS = 6 };
    assert_int_equal(mockpd_set_mode(f->mock, "status", 408, 0, FAILS), 0);
    it_queue(f->data_dir, KEYS[0], "grow", 1);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_accepted(f->mock, 1, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    cJSON *reqs = mockpd_requests(f->mock);
    assert_int_equal(cJSON_GetArraySize(reqs), FAILS + 1);
    for (int k = 1; k <= FAILS; k++) {
        double gap = arrival(reqs, k) - arrival(reqs, k - 1);
        double floor_ms = 20.0 * (double)(1 << (k - 1));
        print_message("gap after failure %d: %.0f ms (at least %.0f)\n", k, gap, floor_ms);
        if (gap < floor_ms - 2.0)   /* 2 ms: arrival_ms is whole milliseconds */
            it_fail("the retry after failure %d came %.0f ms after it; a growing backoff waits at least %.0f ms",
                    k, gap, floor_ms);
    }
    cJSON_Delete(reqs);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* Sender invariant 6: killed during an outage, the daemon goes on from the
** backoff the row had grown, not from backoff_initial_ms, and its first
** attempt waits for the stored next_ms. */
static void test_backoff_survives_restart(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    /* initial 50 ms, max 800 ms (later keys win): after 4 failures the
    ** delay is at its cap */
    fx_config(f, "backoff_initial_ms = 50\nbackoff_max_ms = 800\n");
    /* 408: a failure of the key (a 5xx on the only key would be the
    ** uplink's, which waits for the probe schedule instead) */
    assert_int_equal(mockpd_set_mode(f->mock, "status", 408, 0, 0), 0);
    it_queue(f->data_dir, KEYS[0], "outage", 1);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, 6, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGKILL), 128 + SIGKILL);
    cJSON *reqs = mockpd_requests(f->mock);
    int n0 = cJSON_GetArraySize(reqs);
    cJSON_Delete(reqs);
    db_row *rows;
    size_t n = it_rows(f->data_dir, DB_ROW_PENDING, &rows);
    assert_int_equal(n, 1);
    int64_t attempts = rows[0].attempts;
    db_rows_free(rows, n);
    assert_true(attempts >= 5);

    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(mockpd_wait_requests(f->mock, n0 + 2, 20000), 0);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    reqs = mockpd_requests(f->mock);
    double across = arrival(reqs, n0) - arrival(reqs, n0 - 1), gap = arrival(reqs, n0 + 1) - arrival(reqs, n0);
    cJSON_Delete(reqs);
    print_message("after %d requests (%lld recorded) and a restart: %.0f ms across the restart, then %.0f ms\n",
                  n0, (long long)attempts, across, gap);
    /* When the last request's outcome was recorded before the kill, its
    ** next_ms (a delay drawn from [400, 800] ms) held the first attempt
    ** after the restart back. (Killed before that, the stored next_ms was
    ** already past.) */
    if (attempts == n0) assert_true(across >= 400.0);
    /* failure attempts+1 draws from [400, 800] ms; a fresh lane from [25, 50] */
    assert_true(gap >= 400.0);
    it_fx_free(f, KEYS, N_KEYS);
}

/* The sender cannot record an outcome (file size limit: every write of the
** daemon fails): /readyz answers 503 although ingest never failed, the
** event is resent with a growing delay (not the initial one each time),
** and once writes work again the daemon is ready and the event leaves the
** outbox. */
static void test_outcome_write_failure_not_ready(void **state)
{
    (void)state;
    it_fx *f = it_fx_new(NULL);
    int port = it_free_port();
    char *base = tu_printf("http://127.0.0.1:%d", port);
    char *text = tu_printf("[agent]\ndata_dir = %s\n[listen]\naddress = 127.0.0.1\nport = %d\n[pagerduty]\n"
                           "url = %s\nbackoff_initial_ms = 20\nbackoff_max_ms = 5000\n",
                           f->data_dir, port, mockpd_url(f->mock));
    tu_write_file(f->cfg, text);
    free(text);
    assert_int_equal(it_daemon_start(&f->d, f->cfg, f->log), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=\"pdrelay started\"", 10000), 0);
    assert_int_equal(it_http(base, "GET", "/readyz", NULL, NULL, NULL, NULL), 200);

    struct rlimit tiny = {.rlim_cur = 1, .rlim_max = RLIM_INFINITY};
    assert_int_equal(prlimit(f->d.pid, RLIMIT_FSIZE, &tiny, NULL), 0);
    it_queue(f->data_dir, KEYS[0], "w", 1);   /* this process has no limit */
    assert_int_equal(mockpd_wait_accepted(f->mock, 4, 10000), 0);
    assert_int_equal(it_http(base, "GET", "/readyz", NULL, NULL, NULL, NULL), 503);
    cJSON *ev = mockpd_events(f->mock);
    double g1 = arrival(ev, 1) - arrival(ev, 0), g3 = arrival(ev, 3) - arrival(ev, 2);
    cJSON_Delete(ev);
    print_message("resent after %.0f ms, then (third resend) after %.0f ms\n", g1, g3);
    /* the third failure in a row waits 40-80 ms; an initial delay 10-20 */
    assert_true(g3 >= 40.0);

    struct rlimit lifted = {.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
    assert_int_equal(prlimit(f->d.pid, RLIMIT_FSIZE, &lifted, NULL), 0);
    assert_int_equal(it_wait_log(&f->d, "msg=delivered", 10000), 0);
    assert_int_equal(it_http(base, "GET", "/readyz", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(it_daemon_stop(&f->d, SIGTERM), 0);
    assert_int_equal(it_count(f->data_dir, DB_ROW_PENDING), 0);
    free(base);
    it_fx_free(f, KEYS, N_KEYS);
}

int main(void)
{
    mockpd_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_per_key),
        cmocka_unit_test(test_lifecycle_through_failures),
        cmocka_unit_test(test_throttled_then_delivered),
        cmocka_unit_test(test_burst_never_throttled),
        cmocka_unit_test(test_dead_letter_then_retry),
        cmocka_unit_test(test_outage_then_recovery),
        cmocka_unit_test(test_kill9_loses_nothing),
        cmocka_unit_test(test_sigterm_lets_inflight_finish),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_dedup_table_follows_deliveries),
        cmocka_unit_test(test_dedup_housekeeping),
        cmocka_unit_test(test_max_age),
        cmocka_unit_test(test_clock_set_back),
        cmocka_unit_test(test_proxy),
        cmocka_unit_test(test_dead_letter_counts_attempts),
        cmocka_unit_test(test_backoff_grows),
        cmocka_unit_test(test_backoff_survives_restart),
        cmocka_unit_test(test_outcome_write_failure_not_ready),
    };
    return cmocka_run_group_tests_name("sender", tests, NULL, NULL);
}
