/*
** test_outbox.c — the outbox through db.h: push and coalescing, the bound,
** due heads per routing key, the sender's outcomes, dead letters (kill,
** list, retry, purge), stats and counts. Time is the fake clock.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "db.h"
#include "clock.h"

#define RK_A "R0000000000000000000000000000AAA"
#define RK_B "R0000000000000000000000000000BBB"
#define RK_C "R0000000000000000000000000000CCC"
#define T0 1700000000000LL

typedef struct fixture {
    char *dir;
    db_handle *db;
} fixture;

static fixture *fixture_open(int64_t max_events)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_mkdtemp();
    tu_clock_install(T0);
    f->db = tu_db_open(f->dir, max_events);
    return f;
}

static int setup(void **state)
{
    *state = fixture_open(1000);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    db_close(f->db);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static db_event ev_make(const char *rk, pdr_action action, const char *dedup_key, const char *body)
{
    db_event ev;
    memset(&ev, 0, sizeof ev);
    ev.routing_key = rk;
    ev.action = action;
    ev.dedup_key = dedup_key;
    ev.body = body;
    ev.body_len = strlen(body);
    ev.urgency = pdr_urgency_of(action, "warning");
    return ev;
}

/* Pushes and expects PDR_OK; returns the id. */
static int64_t push(db_handle *db, const char *rk, pdr_action action, const char *dk, const char *body)
{
    db_event ev = ev_make(rk, action, dk, body);
    int64_t id = -1;
    assert_int_equal(db_outbox_push(db, &ev, &id), PDR_OK);
    assert_true(id > 0);
    return id;
}

static void expect_counts(db_handle *db, int64_t pending, int64_t dead)
{
    int64_t p = -1, d = -1;
    assert_int_equal(db_outbox_count(db, &p, &d), PDR_OK);
    assert_int_equal(p, pending);
    assert_int_equal(d, dead);
}

/* Ids of the due heads, in order; returns how many. */
static size_t due_ids(db_handle *db, size_t max, int64_t *ids)
{
    db_row *rows = NULL;
    size_t n = 0, i;
    assert_int_equal(db_outbox_due(db, pdr_clock_now_ms(), max, &rows, &n), PDR_OK);
    for (i = 0; i < n; i++) ids[i] = rows[i].id;
    db_rows_free(rows, n);
    return n;
}

/* Ids of a list, in order; returns how many. */
static size_t list_ids(db_handle *db, db_row_state st, const char *rk, size_t limit, int64_t *ids)
{
    db_row *rows = NULL;
    size_t n = 0, i;
    assert_int_equal(db_outbox_list(db, st, rk, limit, &rows, &n), PDR_OK);
    for (i = 0; i < n; i++) {
        assert_int_equal(rows[i].state, st);
        if (rk) assert_string_equal(rows[i].routing_key, rk);
        ids[i] = rows[i].id;
    }
    db_rows_free(rows, n);
    return n;
}

/* ---- push ------------------------------------------------------------------ */

static void test_push_and_get(void **state)
{
    fixture *f = *state;
    const char *body = "{\"payload\":{\"summary\":\"disk full\"}}trailing";
    db_event ev = ev_make(RK_A, PDR_ACTION_TRIGGER, "disk-full", body);
    db_row row;
    int64_t id = 0;

    ev.fingerprint = "fp-1";
    ev.body_len = strlen(body) - strlen("trailing"); /* body_len is what counts */
    assert_int_equal(db_outbox_push(f->db, &ev, &id), PDR_OK);
    assert_int_equal(db_outbox_get(f->db, id, &row), PDR_OK);
    assert_int_equal(row.id, id);
    assert_string_equal(row.routing_key, RK_A);
    assert_int_equal(row.action, PDR_ACTION_TRIGGER);
    assert_string_equal(row.dedup_key, "disk-full");
    assert_string_equal(row.fingerprint, "fp-1");
    assert_string_equal(row.body, "{\"payload\":{\"summary\":\"disk full\"}}");
    assert_int_equal(row.body_len, ev.body_len);
    assert_int_equal(row.created_ms, T0);
    assert_int_equal(row.attempts, 0);
    assert_int_equal(row.next_ms, T0);
    assert_null(row.last_error);
    assert_int_equal(row.state, DB_ROW_PENDING);
    assert_int_equal(row.dead_ms, 0);
    db_row_cleanup(&row);
    db_row_cleanup(&row); /* idempotent */

    /* A change event: no dedup key, no fingerprint. */
    id = push(f->db, RK_A, PDR_ACTION_CHANGE, NULL, "{\"summary\":\"deploy\"}");
    assert_int_equal(db_outbox_get(f->db, id, &row), PDR_OK);
    assert_null(row.dedup_key);
    assert_null(row.fingerprint);
    assert_int_equal(row.action, PDR_ACTION_CHANGE);
    db_row_cleanup(&row);

    assert_int_equal(db_outbox_get(f->db, 999999, &row), PDR_ERR_NOT_FOUND);
    expect_counts(f->db, 2, 0);
}

static void test_push_invalid(void **state)
{
    fixture *f = *state;
    db_event ev = ev_make(RK_A, PDR_ACTION_TRIGGER, "k", "{}");
    char longkey[PDR_DEDUP_KEY_MAX_BYTES + 2];

    ev.routing_key = NULL;
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_INVALID);
    ev = ev_make(RK_A, (pdr_action)9, "k", "{}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_INVALID);
    ev = ev_make(RK_A, PDR_ACTION_TRIGGER, "k", "{}");
    ev.body = NULL;
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_INVALID);
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    ev = ev_make(RK_A, PDR_ACTION_TRIGGER, longkey, "{}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_INVALID);
    assert_int_equal(db_outbox_push(f->db, NULL, NULL), PDR_ERR_INVALID);
    expect_counts(f->db, 0, 0);
}

static void test_batch_push(void **state)
{
    fixture *f = *state;
    db_event evs[100];
    pdr_rc results[100];
    int64_t ids[100];
    char bodies[100][32];
    size_t i;

    for (i = 0; i < 100; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"n\":%zu}", i);
        evs[i] = ev_make(i % 2 ? RK_A : RK_B, PDR_ACTION_TRIGGER, bodies[i], bodies[i]);
    }
    assert_int_equal(db_outbox_push_batch(f->db, evs, 100, results, ids), PDR_OK);
    for (i = 0; i < 100; i++) {
        assert_int_equal(results[i], PDR_OK);
        if (i) assert_true(ids[i] > ids[i - 1]);
    }
    expect_counts(f->db, 100, 0);
    /* ids may be NULL; n = 0 is a no-op */
    evs[0] = ev_make(RK_C, PDR_ACTION_TRIGGER, "x", "{}");
    assert_int_equal(db_outbox_push_batch(f->db, evs, 1, results, NULL), PDR_OK);
    assert_int_equal(results[0], PDR_OK);
    assert_int_equal(db_outbox_push_batch(f->db, evs, 0, results, NULL), PDR_OK);
    expect_counts(f->db, 101, 0);

    /* An invalid event is refused alone; the others of its batch go in. */
    evs[0] = ev_make(RK_C, PDR_ACTION_TRIGGER, "y", "{}");
    evs[1] = ev_make(NULL, PDR_ACTION_TRIGGER, "z", "{}");
    evs[2] = ev_make(RK_C, PDR_ACTION_RESOLVE, "y", "{}");
    assert_int_equal(db_outbox_push_batch(f->db, evs, 3, results, ids), PDR_OK);
    assert_int_equal(results[0], PDR_OK);
    assert_int_equal(results[1], PDR_ERR_INVALID);
    assert_int_equal(ids[1], 0);
    assert_int_equal(results[2], PDR_OK);
    expect_counts(f->db, 103, 0);
}

/* ---- coalescing ------------------------------------------------------------- */

static void test_coalesce_repeated_trigger(void **state)
{
    fixture *f = *state;
    db_event ev = ev_make(RK_A, PDR_ACTION_TRIGGER, "cpu", "{\"summary\":\"cpu hot\"}");
    int64_t id1 = 0, id2 = 0;

    assert_int_equal(db_outbox_push(f->db, &ev, &id1), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &ev, &id2), PDR_COALESCED);
    assert_int_equal(id2, id1);
    assert_int_equal(db_outbox_push(f->db, &ev, &id2), PDR_COALESCED);
    expect_counts(f->db, 1, 0);

    /* Same key and action, another body (one byte differs): stored. */
    ev.body = "{\"summary\":\"cpu hoT\"}";
    assert_int_equal(db_outbox_push(f->db, &ev, &id2), PDR_OK);
    assert_true(id2 > id1);
    /* A longer body sharing the prefix: stored. */
    ev.body = "{\"summary\":\"cpu hoT\"} ";
    ev.body_len = strlen(ev.body);
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_OK);
    /* Same body, other routing key or other dedup key: stored. */
    ev = ev_make(RK_B, PDR_ACTION_TRIGGER, "cpu", "{\"summary\":\"cpu hot\"}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_OK);
    ev = ev_make(RK_A, PDR_ACTION_TRIGGER, "cpu2", "{\"summary\":\"cpu hot\"}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_OK);
    expect_counts(f->db, 5, 0);
}

/* Only the newest pending row counts: trigger, resolve, trigger re-opens the
** incident, so the third event must be stored. */
static void test_coalesce_trigger_resolve_trigger(void **state)
{
    fixture *f = *state;
    const char *body = "{\"summary\":\"link down\"}";
    db_event trig = ev_make(RK_A, PDR_ACTION_TRIGGER, "link", body);
    db_event res = ev_make(RK_A, PDR_ACTION_RESOLVE, "link", body);
    int64_t ids[8];

    assert_int_equal(db_outbox_push(f->db, &trig, NULL), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &res, NULL), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &trig, NULL), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &trig, NULL), PDR_COALESCED);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, RK_A, 0, ids), 3);
}

static void test_coalesce_change_events_null_key(void **state)
{
    fixture *f = *state;
    db_event ch = ev_make(RK_A, PDR_ACTION_CHANGE, NULL, "{\"summary\":\"deploy 42\"}");
    db_event ch2 = ev_make(RK_A, PDR_ACTION_CHANGE, NULL, "{\"summary\":\"deploy 43\"}");
    db_event trig = ev_make(RK_A, PDR_ACTION_TRIGGER, "x", "{\"summary\":\"deploy 43\"}");
    int64_t id1 = 0, id2 = 0;

    assert_int_equal(db_outbox_push(f->db, &ch, &id1), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &ch, &id2), PDR_COALESCED);
    assert_int_equal(id1, id2);
    assert_int_equal(db_outbox_push(f->db, &trig, NULL), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &ch2, NULL), PDR_OK);
    /* The newest NULL-key row is now ch2: ch is stored again. */
    assert_int_equal(db_outbox_push(f->db, &ch, NULL), PDR_OK);
    expect_counts(f->db, 4, 0);
}

/* Rows that left the pending state do not coalesce anything. */
static void test_coalesce_only_pending(void **state)
{
    fixture *f = *state;
    db_event ev = ev_make(RK_A, PDR_ACTION_TRIGGER, "k", "{}");
    int64_t id = 0;

    assert_int_equal(db_outbox_push(f->db, &ev, &id), PDR_OK);
    assert_int_equal(db_outbox_delivered(f->db, id), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &ev, &id), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, id, "400"), PDR_OK);
    assert_int_equal(db_outbox_push(f->db, &ev, &id), PDR_OK);
    expect_counts(f->db, 1, 1);
}

static void test_coalesce_within_batch(void **state)
{
    fixture *f = *state;
    db_event evs[3];
    pdr_rc results[3];
    int64_t ids[3];

    evs[0] = ev_make(RK_A, PDR_ACTION_TRIGGER, "k", "{\"a\":1}");
    evs[1] = evs[0];
    evs[2] = ev_make(RK_A, PDR_ACTION_RESOLVE, "k", "{\"a\":1}");
    assert_int_equal(db_outbox_push_batch(f->db, evs, 3, results, ids), PDR_OK);
    assert_int_equal(results[0], PDR_OK);
    assert_int_equal(results[1], PDR_COALESCED);
    assert_int_equal(ids[1], ids[0]);
    assert_int_equal(results[2], PDR_OK);
    expect_counts(f->db, 2, 0);
}

/* ---- bound ------------------------------------------------------------------- */

static void test_max_events_single(void **state)
{
    fixture *f = fixture_open(3);
    db_event ev;
    int64_t id1, n = 0;
    (void)state;

    id1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "1", "{}");
    push(f->db, RK_A, PDR_ACTION_TRIGGER, "2", "{}");
    push(f->db, RK_B, PDR_ACTION_TRIGGER, "3", "{}");
    ev = ev_make(RK_B, PDR_ACTION_TRIGGER, "4", "{}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_FULL);
    expect_counts(f->db, 3, 0);
    /* A coalesced event needs no space. */
    ev = ev_make(RK_B, PDR_ACTION_TRIGGER, "3", "{}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_COALESCED);
    assert_int_equal(db_outbox_last_bound(f->db), DB_BOUND_NONE);
    /* Dead letters do not count against the bound (invariant 4): a refused
    ** event makes room for a new one. */
    assert_int_equal(db_outbox_kill(f->db, id1, "400"), PDR_OK);
    ev = ev_make(RK_B, PDR_ACTION_TRIGGER, "4", "{}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_OK);
    expect_counts(f->db, 3, 1);
    ev = ev_make(RK_B, PDR_ACTION_TRIGGER, "5", "{}");
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_FULL);
    assert_int_equal(db_outbox_last_bound(f->db), DB_BOUND_MAX_EVENTS);
    assert_string_equal(db_bound_key(DB_BOUND_MAX_EVENTS), "max_events");
    assert_int_equal(db_outbox_purge_dead(f->db, INT64_MAX, &n), PDR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(db_outbox_push(f->db, &ev, NULL), PDR_ERR_FULL);   /* the dead one was no obstacle */
    expect_counts(f->db, 3, 0);
    teardown((void **)&f);
}

/* The counts row's bytes equal the bodies' octets through every transition
** (push, kill, retry, delivered, collapse, purge): invariant 5, bytes. */
static void expect_bytes(db_handle *db)
{
    db_counts c;
    db_row *rows = NULL;
    size_t n = 0;
    int64_t want[2] = {0, 0};
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    for (int st = DB_ROW_PENDING; st <= DB_ROW_DEAD; st++) {
        assert_int_equal(db_outbox_list(db, (db_row_state)st, NULL, 0, &rows, &n), PDR_OK);
        for (size_t i = 0; i < n; i++) want[st] += (int64_t)strlen(rows[i].body);
        assert_int_equal((int64_t)n, st == DB_ROW_PENDING ? c.pending : c.dead);
        db_rows_free(rows, n);
    }
    assert_int_equal(c.pending_bytes, want[DB_ROW_PENDING]);
    assert_int_equal(c.dead_bytes, want[DB_ROW_DEAD]);
}

static void test_bytes_kept_by_triggers(void **state)
{
    fixture *f = *state;
    int64_t a, b, n = 0;
    (void)state;
    a = push(f->db, RK_A, PDR_ACTION_TRIGGER, "1", "{\"summary\":\"h\u00e9llo \xc3\xa9\"}");   /* UTF-8: octets */
    b = push(f->db, RK_A, PDR_ACTION_TRIGGER, "2", "{\"x\":\"0123456789\"}");
    push(f->db, RK_B, PDR_ACTION_TRIGGER, "3", "{}");
    expect_bytes(f->db);
    assert_int_equal(db_outbox_kill(f->db, a, "400"), PDR_OK);
    expect_bytes(f->db);
    assert_int_equal(db_outbox_retry_id(f->db, a), PDR_OK);
    expect_bytes(f->db);
    assert_int_equal(db_outbox_delivered(f->db, b), PDR_OK);
    expect_bytes(f->db);
    assert_int_equal(db_outbox_kill_older(f->db, INT64_MAX, "max_age", &n), PDR_OK);
    expect_bytes(f->db);
    assert_int_equal(db_outbox_purge_dead(f->db, INT64_MAX, &n), PDR_OK);
    expect_bytes(f->db);
    db_counts c;
    assert_int_equal(db_outbox_counts(f->db, &c), PDR_OK);
    assert_int_equal(c.pending_bytes + c.dead_bytes, 0);
}

/* max_bytes: an event is stored only if the pending bodies plus its own stay
** within the bound; exactly at the bound is allowed. */
static void test_max_bytes(void **state)
{
    char *dir = tu_mkdtemp();
    db_options o;
    db_handle *db = NULL;
    char body[1024];
    db_event evs[3];
    pdr_rc res[3];
    (void)state;
    tu_clock_install(T0);
    memset(&o, 0, sizeof o);
    o.data_dir = dir;
    o.max_bytes = 3000;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    memset(body, 'x', sizeof body - 1);
    body[0] = '"';
    body[999] = '"';
    body[1000] = '\0';   /* a 1000-byte JSON string */
    evs[0] = ev_make(RK_A, PDR_ACTION_TRIGGER, "b0", body);
    evs[1] = ev_make(RK_A, PDR_ACTION_TRIGGER, "b1", body);
    evs[2] = ev_make(RK_A, PDR_ACTION_TRIGGER, "b2", body);
    assert_int_equal(db_outbox_push_batch(db, evs, 3, res, NULL), PDR_OK);
    assert_int_equal(res[0], PDR_OK);
    assert_int_equal(res[1], PDR_OK);
    assert_int_equal(res[2], PDR_OK);   /* 3000 of 3000 */
    db_event one = ev_make(RK_B, PDR_ACTION_TRIGGER, "tiny", "{}");
    assert_int_equal(db_outbox_push(db, &one, NULL), PDR_ERR_FULL);
    assert_int_equal(db_outbox_last_bound(db), DB_BOUND_MAX_BYTES);
    db_counts c;
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    assert_int_equal(c.pending, 3);
    assert_int_equal(c.pending_bytes, 3000);
    assert_int_equal(db_outbox_bound_reached(db, &c), DB_BOUND_MAX_BYTES);
    db_close(db);
    /* Lowered below what is stored: nothing pending is dropped, new events
    ** are refused until it drains. */
    o.max_bytes = 1500;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    assert_int_equal(c.pending, 3);
    assert_int_equal(db_outbox_push(db, &one, NULL), PDR_ERR_FULL);
    db_row row;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(db_outbox_head(db, RK_A, &row), PDR_OK);
        assert_int_equal(db_outbox_delivered(db, row.id), PDR_OK);
        db_row_cleanup(&row);
    }
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    assert_int_equal(db_outbox_bound_reached(db, &c), DB_BOUND_NONE);
    assert_int_equal(db_outbox_push(db, &one, NULL), PDR_OK);
    db_close(db);
    tu_rmrf(dir);
    free(dir);
}

/* min_free, through a stand-in for statvfs: read at most once a second of
** the injectable clock, less what was pushed since. */
typedef struct fake_fs {
    int64_t avail;
    int reads;
} fake_fs;

static int64_t fake_free(const char *dir, void *ctx)
{
    fake_fs *fs = ctx;
    (void)dir;
    fs->reads++;
    return fs->avail;
}

static void test_min_free(void **state)
{
    char *dir = tu_mkdtemp();
    db_options o;
    db_handle *db = NULL;
    fake_fs fs = {10000, 0};
    db_counts c;
    (void)state;
    tu_clock_install(T0);
    db_set_free_space_fn(fake_free, &fs);
    memset(&o, 0, sizeof o);
    o.data_dir = dir;
    o.min_free = 9000;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    char big[600];
    memset(big, 'y', sizeof big);
    big[0] = '"';
    big[498] = '"';
    big[499] = '\0';   /* 499 bytes */
    db_event e1 = ev_make(RK_A, PDR_ACTION_TRIGGER, "f1", big);
    db_event e2 = ev_make(RK_A, PDR_ACTION_TRIGGER, "f2", big);
    db_event e3 = ev_make(RK_A, PDR_ACTION_TRIGGER, "f3", big);
    assert_int_equal(db_outbox_push(db, &e1, NULL), PDR_OK);    /* 10000 - 499 >= 9000 */
    assert_int_equal(db_outbox_push(db, &e2, NULL), PDR_OK);    /* 10000 - 998 >= 9000 */
    assert_int_equal(fs.reads, 1);                              /* cached within the second */
    assert_int_equal(db_outbox_push(db, &e3, NULL), PDR_ERR_FULL);   /* 10000 - 1497 < 9000 */
    assert_int_equal(db_outbox_last_bound(db), DB_BOUND_MIN_FREE);
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    assert_int_equal(c.pending, 2);
    assert_int_equal(fs.reads, 1);
    /* Space is freed: seen only once the second is over. */
    fs.avail = 1000000;
    tu_clock_advance(999);
    assert_int_equal(db_outbox_push(db, &e3, NULL), PDR_ERR_FULL);
    assert_int_equal(fs.reads, 1);
    tu_clock_advance(1);
    assert_int_equal(db_outbox_push(db, &e3, NULL), PDR_OK);
    assert_int_equal(fs.reads, 2);
    /* Unknown free space (statvfs failed) holds nobody back. */
    fs.avail = -1;
    tu_clock_advance(1000);
    db_event e4 = ev_make(RK_A, PDR_ACTION_TRIGGER, "f4", big);
    assert_int_equal(db_outbox_push(db, &e4, NULL), PDR_OK);
    /* /readyz's view: full while free space is at or below min_free. */
    fs.avail = 9000;
    tu_clock_advance(1000);
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    assert_int_equal(db_outbox_bound_reached(db, &c), DB_BOUND_MIN_FREE);
    db_set_free_space_fn(NULL, NULL);
    db_close(db);
    tu_rmrf(dir);
    free(dir);
}

/* Dead letters are bounded apart (max_dead, max_dead_age): the oldest go
** first; nothing pending is touched; the next due time is reported. */
static void test_trim_dead(void **state)
{
    char *dir = tu_mkdtemp();
    db_options o;
    db_handle *db = NULL;
    int64_t ids[6], by_age = -1, by_count = -1, next = -1;
    db_counts c;
    db_row row;
    (void)state;
    tu_clock_install(T0);
    memset(&o, 0, sizeof o);
    o.data_dir = dir;
    o.max_events = 3;
    o.max_dead = 3;
    o.max_dead_age_ms = 3600 * 1000;
    assert_int_equal(db_open(&o, &db, NULL, 0), PDR_OK);
    for (int i = 0; i < 6; i++) {
        char dk[8];
        snprintf(dk, sizeof dk, "d%d", i);
        ids[i] = push(db, RK_A, PDR_ACTION_TRIGGER, dk, "{}");
        /* each dies a minute after the previous one; pending never
        ** exceeds one, so max_events = 3 never refuses */
        assert_int_equal(db_outbox_kill(db, ids[i], "400"), PDR_OK);
        tu_clock_advance(60 * 1000);
    }
    int64_t p = push(db, RK_B, PDR_ACTION_TRIGGER, "keep", "{}");
    /* Nothing past max_dead_age yet; 6 dead > 3: the three oldest go. */
    assert_int_equal(db_outbox_trim_dead(db, tu_clock_get(), &by_age, &by_count, &next), PDR_OK);
    assert_int_equal(by_age, 0);
    assert_int_equal(by_count, 3);
    assert_int_equal(db_outbox_get(db, ids[2], &row), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_get(db, ids[3], &row), PDR_OK);
    /* The oldest remaining died at T0 + 3 min: due at that plus an hour. */
    assert_int_equal(next, T0 + 3 * 60 * 1000 + 3600 * 1000);
    assert_int_equal(row.state, DB_ROW_DEAD);
    db_row_cleanup(&row);
    /* Within the bounds: nothing to do. */
    assert_int_equal(db_outbox_trim_dead(db, tu_clock_get(), &by_age, &by_count, &next), PDR_OK);
    assert_int_equal(by_age + by_count, 0);
    /* An hour later, the one that died at T0 + 3 min is of age, not the others. */
    tu_clock_install(next);
    assert_int_equal(db_outbox_trim_dead(db, tu_clock_get(), &by_age, &by_count, &next), PDR_OK);
    assert_int_equal(by_age, 0);    /* dead_ms < cutoff, not <= */
    tu_clock_advance(1);
    assert_int_equal(db_outbox_trim_dead(db, tu_clock_get(), &by_age, &by_count, &next), PDR_OK);
    assert_int_equal(by_age, 1);
    assert_int_equal(by_count, 0);
    assert_int_equal(db_outbox_counts(db, &c), PDR_OK);
    assert_int_equal(c.dead, 2);
    assert_int_equal(c.pending, 1);   /* the pending one untouched */
    assert_int_equal(db_outbox_get(db, p, &row), PDR_OK);
    assert_int_equal(row.state, DB_ROW_PENDING);
    db_row_cleanup(&row);
    /* All of age: all go; none left, no next. */
    tu_clock_advance(24 * 3600 * 1000LL);
    assert_int_equal(db_outbox_trim_dead(db, tu_clock_get(), &by_age, &by_count, &next), PDR_OK);
    assert_int_equal(by_age, 2);
    assert_int_equal(next, 0);
    expect_bytes(db);
    db_close(db);
    tu_rmrf(dir);
    free(dir);
}

static void test_max_events_batch(void **state)
{
    fixture *f = fixture_open(5);
    db_event evs[4];
    pdr_rc results[4];
    int64_t ids[4];
    (void)state;

    push(f->db, RK_A, PDR_ACTION_TRIGGER, "a", "{}");
    push(f->db, RK_A, PDR_ACTION_TRIGGER, "b", "{}");
    push(f->db, RK_A, PDR_ACTION_TRIGGER, "c", "{}");
    evs[0] = ev_make(RK_B, PDR_ACTION_TRIGGER, "d", "{}");
    evs[1] = ev_make(RK_B, PDR_ACTION_TRIGGER, "e", "{}");
    evs[2] = ev_make(RK_B, PDR_ACTION_TRIGGER, "f", "{}");
    evs[3] = ev_make(RK_A, PDR_ACTION_TRIGGER, "a", "{}"); /* coalesces even when full */
    assert_int_equal(db_outbox_push_batch(f->db, evs, 4, results, ids), PDR_OK);
    assert_int_equal(results[0], PDR_OK);
    assert_int_equal(results[1], PDR_OK);
    assert_int_equal(results[2], PDR_ERR_FULL);
    assert_int_equal(ids[2], 0);
    assert_int_equal(results[3], PDR_COALESCED);
    expect_counts(f->db, 5, 0);
    teardown((void **)&f);
}

/* ---- the sender's view ---------------------------------------------------------- */

static void test_heads_across_keys(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, b1, b2, c1, ids[8];
    db_row row;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    b1 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}");
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    c1 = push(f->db, RK_C, PDR_ACTION_TRIGGER, "c1", "{}");
    b2 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b2", "{}");

    /* One head per key, earliest next_ms (then id) first. */
    assert_int_equal(due_ids(f->db, 10, ids), 3);
    assert_int_equal(ids[0], a1);
    assert_int_equal(ids[1], b1);
    assert_int_equal(ids[2], c1);
    assert_int_equal(due_ids(f->db, 2, ids), 2);
    assert_int_equal(due_ids(f->db, 0, ids), 0);

    assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_OK);
    assert_int_equal(row.id, a1);
    db_row_cleanup(&row);

    assert_int_equal(db_outbox_delivered(f->db, a1), PDR_OK);
    assert_int_equal(db_outbox_delivered(f->db, a1), PDR_ERR_NOT_FOUND);
    assert_int_equal(due_ids(f->db, 10, ids), 3);
    assert_int_equal(ids[0], b1);
    assert_int_equal(ids[1], a2);
    assert_int_equal(ids[2], c1);

    assert_int_equal(db_outbox_delivered(f->db, b1), PDR_OK);
    assert_int_equal(db_outbox_delivered(f->db, a2), PDR_OK);
    assert_int_equal(db_outbox_delivered(f->db, c1), PDR_OK);
    assert_int_equal(due_ids(f->db, 10, ids), 1);
    assert_int_equal(ids[0], b2);
    assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_delivered(f->db, b2), PDR_OK);
    assert_int_equal(due_ids(f->db, 10, ids), 0);
    expect_counts(f->db, 0, 0);
}

static void test_non_due_head_holds_back_its_key(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, b1, ids[8], next = 0;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    tu_clock_advance(5);
    b1 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}");
    assert_int_equal(db_outbox_next_due_ms(f->db, &next), PDR_OK);
    assert_int_equal(next, T0);

    assert_int_equal(db_outbox_reschedule(f->db, a1, T0 + 1000, "HTTP 503"), PDR_OK);
    /* a2 is due but waits behind its head. */
    assert_int_equal(due_ids(f->db, 10, ids), 1);
    assert_int_equal(ids[0], b1);
    assert_int_equal(db_outbox_next_due_ms(f->db, &next), PDR_OK);
    assert_int_equal(next, T0 + 5);

    assert_int_equal(db_outbox_delivered(f->db, b1), PDR_OK);
    assert_int_equal(due_ids(f->db, 10, ids), 0);
    assert_int_equal(db_outbox_next_due_ms(f->db, &next), PDR_OK);
    assert_int_equal(next, T0 + 1000);

    tu_clock_advance(994); /* T0 + 999 */
    assert_int_equal(due_ids(f->db, 10, ids), 0);
    tu_clock_advance(1);
    assert_int_equal(due_ids(f->db, 10, ids), 1);
    assert_int_equal(ids[0], a1);
    assert_int_equal(db_outbox_delivered(f->db, a1), PDR_OK);
    assert_int_equal(due_ids(f->db, 10, ids), 1);
    assert_int_equal(ids[0], a2);
    assert_int_equal(db_outbox_delivered(f->db, a2), PDR_OK);
    assert_int_equal(db_outbox_next_due_ms(f->db, &next), PDR_ERR_NOT_FOUND);
}

/* The next head that is not yet due (for the sender's sleep). */
static void test_next_due_after(void **state)
{
    fixture *f = *state;
    int64_t a1, next = 0;

    assert_int_equal(db_outbox_next_due_after(f->db, T0, &next), PDR_ERR_NOT_FOUND);
    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");          /* behind a1: not a head */
    push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}");          /* head, due at T0 */
    assert_int_equal(db_outbox_reschedule(f->db, a1, T0 + 1000, NULL), PDR_OK);
    assert_int_equal(db_outbox_next_due_after(f->db, T0, &next), PDR_OK);
    assert_int_equal(next, T0 + 1000);
    assert_int_equal(db_outbox_next_due_after(f->db, T0 - 1, &next), PDR_OK);
    assert_int_equal(next, T0);
    assert_int_equal(db_outbox_next_due_after(f->db, T0 + 1000, &next), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_next_due_ms(f->db, &next), PDR_OK);
    assert_int_equal(next, T0);
}

/* Heads among many keys and rows: the order is by next_ms, then id. */
static void test_due_order_by_next_ms(void **state)
{
    fixture *f = *state;
    char rk[PDR_ROUTING_KEY_LEN + 1], dk[16];
    int64_t first[20], ids[20];
    int i, j;

    for (j = 0; j < 5; j++) {
        for (i = 0; i < 20; i++) {
            snprintf(rk, sizeof rk, "R%031d", i);
            snprintf(dk, sizeof dk, "round-%d", j);
            int64_t id = push(f->db, rk, PDR_ACTION_TRIGGER, dk, "{}");
            if (!j) first[i] = id;
        }
    }
    /* Key i's head becomes due at T0 + (20 - i): reverse order. */
    for (i = 0; i < 20; i++)
        assert_int_equal(db_outbox_reschedule(f->db, first[i], T0 + 20 - i, NULL), PDR_OK);
    tu_clock_advance(100);
    assert_int_equal(due_ids(f->db, 20, ids), 20);
    for (i = 0; i < 20; i++) assert_int_equal(ids[i], first[19 - i]);
    assert_int_equal(due_ids(f->db, 3, ids), 3);
    assert_int_equal(ids[0], first[19]);
}

static void test_reschedule(void **state)
{
    fixture *f = *state;
    int64_t id = push(f->db, RK_A, PDR_ACTION_TRIGGER, "k", "{}");
    db_row row;

    assert_int_equal(db_outbox_reschedule(f->db, id, T0 + 100, "HTTP 429"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, id, T0 + 300, "timeout"), PDR_OK);
    assert_int_equal(db_outbox_get(f->db, id, &row), PDR_OK);
    assert_int_equal(row.attempts, 2);
    assert_int_equal(row.next_ms, T0 + 300);
    assert_string_equal(row.last_error, "timeout");
    assert_int_equal(row.state, DB_ROW_PENDING);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_reschedule(f->db, id, T0 + 400, NULL), PDR_OK);
    assert_int_equal(db_outbox_get(f->db, id, &row), PDR_OK);
    assert_int_equal(row.attempts, 3);
    assert_null(row.last_error);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_reschedule(f->db, id + 100, T0, "x"), PDR_ERR_NOT_FOUND);
    expect_counts(f->db, 1, 0);
}

/* A wall clock set back leaves next_ms far ahead: clamp makes exactly the
** rows beyond the limit due now, and leaves ordinary backoffs alone. */
static void test_clamp_next(void **state)
{
    fixture *f = *state;
    int64_t far = push(f->db, RK_A, PDR_ACTION_TRIGGER, "far", "{}");
    int64_t near = push(f->db, RK_B, PDR_ACTION_TRIGGER, "near", "{}");
    int64_t n = -1;
    db_row row;

    assert_int_equal(db_outbox_reschedule(f->db, far, T0 + 10 * 3600 * 1000, "timeout"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, near, T0 + 1800 * 1000, "timeout"), PDR_OK);
    assert_int_equal(db_outbox_clamp_next(f->db, T0 + 3600 * 1000, &n), PDR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(db_outbox_get(f->db, far, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0);
    assert_int_equal(row.attempts, 1);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, near, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0 + 1800 * 1000);
    db_row_cleanup(&row);
}


/* ---- urgency: the next row of a key (db.c, invariant 3) ------------------------ */

/* Pushes an event with an explicit urgency (PDR_URGENCY_INHERIT for
** acknowledge and resolve); returns its id. */
static int64_t push_u(db_handle *db, const char *rk, pdr_action action, const char *dk, const char *body,
                      int urgency)
{
    db_event ev = ev_make(rk, action, dk, body);
    int64_t id = -1;
    ev.urgency = urgency;
    assert_int_equal(db_outbox_push(db, &ev, &id), PDR_OK);
    assert_true(id > 0);
    return id;
}

static int row_urgency(db_handle *db, int64_t id)
{
    db_row row;
    int u;
    assert_int_equal(db_outbox_get(db, id, &row), PDR_OK);
    u = row.urgency;
    db_row_cleanup(&row);
    return u;
}

/* Delivers, pass after pass, every row db_outbox_due returns, in its order,
** until nothing is due; the ids in delivery order go to seq. Returns how
** many. */
static size_t deliver_all(db_handle *db, int64_t *seq, size_t max)
{
    size_t n = 0;
    for (;;) {
        int64_t ids[64];
        size_t k = due_ids(db, 64, ids), i;
        if (!k) break;
        for (i = 0; i < k; i++) {
            assert_true(n < max);
            assert_int_equal(db_outbox_delivered(db, ids[i]), PDR_OK);
            seq[n++] = ids[i];
        }
    }
    return n;
}

static void expect_seq(const int64_t *got, size_t n_got, const int64_t *want, size_t n_want)
{
    size_t i;
    if (n_got != n_want) fail_msg("delivered %zu rows, expected %zu", n_got, n_want);
    for (i = 0; i < n_want; i++)
        if (got[i] != want[i])
            fail_msg("delivery %zu: id %lld, expected %lld", i, (long long)got[i], (long long)want[i]);
}

/* The product rule on one key: the most urgent group first; within a group
** strictly id order even when a later row of it is more urgent; an
** acknowledge or resolve takes the urgency of its group's newest pending
** row; change events after every alert. */
static void test_urgent_first_groups_in_order(void **state)
{
    fixture *f = *state;
    int64_t seq[16];
    size_t n;

    int64_t a1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"s\":\"w\"}", PDR_URGENCY_WARNING);
    int64_t a2 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "y", "{\"s\":\"i\"}", PDR_URGENCY_INFO);
    int64_t a3 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"s\":\"c\"}", PDR_URGENCY_CRITICAL);
    int64_t a4 = push_u(f->db, RK_A, PDR_ACTION_RESOLVE, "y", "{}", PDR_URGENCY_INHERIT);
    int64_t a5 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "z", "{\"s\":\"e\"}", PDR_URGENCY_ERROR);
    int64_t a6 = push_u(f->db, RK_A, PDR_ACTION_CHANGE, NULL, "{\"deploy\":1}", PDR_URGENCY_CHANGE);
    int64_t a7 = push_u(f->db, RK_A, PDR_ACTION_ACKNOWLEDGE, "x", "{}", PDR_URGENCY_INHERIT);
    int64_t a8 = push_u(f->db, RK_A, PDR_ACTION_CHANGE, NULL, "{\"deploy\":2}", PDR_URGENCY_CHANGE);
    const int64_t want[] = {a5, a1, a3, a7, a2, a4, a6, a8};

    assert_int_equal(row_urgency(f->db, a4), PDR_URGENCY_INFO);      /* y's trigger */
    assert_int_equal(row_urgency(f->db, a7), PDR_URGENCY_CRITICAL);  /* x's newest: a3 */
    assert_int_equal(row_urgency(f->db, a6), PDR_URGENCY_CHANGE);
    n = deliver_all(f->db, seq, 16);
    expect_seq(seq, n, want, sizeof want / sizeof want[0]);
    expect_counts(f->db, 0, 0);
}

/* A critical event behind 10,000 warnings (distinct dedup keys) of its key
** is the key's next row at once; the warnings then go in id order. */
static void test_critical_overtakes_backlog(void **state)
{
    fixture *f = fixture_open(20000);
    db_event *evs = calloc(10000, sizeof *evs);
    pdr_rc *res = calloc(10000, sizeof *res);
    int64_t *ids = calloc(10000, sizeof *ids);
    char (*dks)[16] = calloc(10000, sizeof *dks);
    int64_t crit, due[4];
    db_row row;
    size_t i;
    (void)state;

    assert_non_null(evs);
    assert_non_null(res);
    assert_non_null(ids);
    assert_non_null(dks);
    for (i = 0; i < 10000; i++) {
        snprintf(dks[i], sizeof dks[i], "w%zu", i);
        evs[i] = ev_make(RK_A, PDR_ACTION_TRIGGER, dks[i], "{\"severity\":\"warning\"}");
    }
    assert_int_equal(db_outbox_push_batch(f->db, evs, 10000, res, ids), PDR_OK);
    crit = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "fire", "{\"severity\":\"critical\"}",
                  PDR_URGENCY_CRITICAL);
    push_u(f->db, RK_B, PDR_ACTION_TRIGGER, "b", "{}", PDR_URGENCY_INFO);

    assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_OK);
    assert_int_equal(row.id, crit);
    assert_int_equal(row.urgency, PDR_URGENCY_CRITICAL);
    db_row_cleanup(&row);
    /* Across keys: by urgency first (A's critical before B's info). */
    assert_int_equal(due_ids(f->db, 4, due), 2);
    assert_int_equal(due[0], crit);
    assert_int_equal(db_outbox_delivered(f->db, crit), PDR_OK);
    assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_OK);
    assert_int_equal(row.id, ids[0]);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_delivered(f->db, ids[0]), PDR_OK);
    assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_OK);
    assert_int_equal(row.id, ids[1]);
    db_row_cleanup(&row);
    free(evs);
    free(res);
    free(ids);
    free(dks);
    teardown((void **)&f);
}

/* The plan of every statement that finds the keys' next rows: the index
** outbox_sched, and no full scan of the outbox. */
static void test_schedule_is_index_driven(void **state)
{
    fixture *f = *state;
    static const char *const names[] = {"OUTBOX_DUE", "OUTBOX_NEXT_DUE", "OUTBOX_HEAD"};
    char plan[8192];
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *line;
        assert_int_equal(db_explain(f->db, names[i], plan, sizeof plan), PDR_OK);
        if (!strstr(plan, "outbox_sched")) fail_msg("%s does not use outbox_sched:\n%s", names[i], plan);
        /* A line "SCAN outbox" or "SCAN o" (its alias) would read every row. */
        for (line = plan; *line; line = strchr(line, '\n') + 1) {
            const char *p = line;
            while (*p == ' ') p++;
            if (!strncmp(p, "SCAN ", 5) && strncmp(p, "SCAN keys", 9) && strncmp(p, "SCAN nexts", 10) &&
                strncmp(p, "SCAN CONSTANT ROW", 17))
                fail_msg("%s scans:\n%s", names[i], plan);
        }
    }
    /* Waking reads the heads (outbox_sched), not the rows queued behind them. */
    assert_int_equal(db_explain(f->db, "OUTBOX_WAKE", plan, sizeof plan), PDR_OK);
    assert_non_null(strstr(plan, "USING INDEX outbox_sched"));
    /* A group's statements read that group's range only. */
    assert_int_equal(db_explain(f->db, "OUTBOX_FIND_RESOLVE", plan, sizeof plan), PDR_OK);
    assert_non_null(strstr(plan, "outbox_coalesce"));
    assert_null(strstr(plan, "SCAN"));
    assert_int_equal(db_explain(f->db, "OUTBOX_COLLAPSE", plan, sizeof plan), PDR_OK);
    assert_non_null(strstr(plan, "outbox_coalesce"));
    /* Schema 3 dropped outbox_head (a page per push): listing a key's rows
    ** reads its range of outbox_coalesce. */
    assert_int_equal(db_explain(f->db, "OUTBOX_LIST_PENDING_KEY", plan, sizeof plan), PDR_OK);
    assert_non_null(strstr(plan, "outbox_coalesce"));
    assert_null(strstr(plan, "outbox_head"));
    assert_null(strstr(plan, "SCAN"));
    assert_int_equal(db_explain(f->db, "NO_SUCH_STATEMENT", plan, sizeof plan), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_explain(f->db, "OUTBOX_DUE", plan, 8), PDR_ERR_FULL);
}

/* head follows the group whoever removes its head: kill, expire, max_age,
** delivery; the rest of the group goes on in id order. */
static void test_head_moves_on_kill_and_expire(void **state)
{
    fixture *f = *state;
    int64_t x1, x2, x3, x4, y1, n = 0, seq[8];
    size_t k;

    x1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":1}", PDR_URGENCY_ERROR);
    x2 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":2}", PDR_URGENCY_ERROR);
    tu_clock_advance(10);
    x3 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":3}", PDR_URGENCY_ERROR);
    x4 = push_u(f->db, RK_A, PDR_ACTION_RESOLVE, "x", "{}", PDR_URGENCY_INHERIT);
    y1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "y", "{}", PDR_URGENCY_INFO);

    assert_int_equal(db_outbox_kill(f->db, x1, "400"), PDR_OK);         /* the head */
    assert_int_equal(db_outbox_kill_older(f->db, T0 + 5, "age", &n), PDR_OK);  /* x2, the new head */
    assert_int_equal(n, 1);
    {
        db_row row;
        assert_int_equal(db_outbox_get(f->db, x2, &row), PDR_OK);
        assert_int_equal(row.state, DB_ROW_DEAD);
        db_row_cleanup(&row);
    }
    assert_int_equal(db_outbox_expire(f->db, x4, "age"), PDR_OK);       /* not the head */
    {
        const int64_t want[] = {x3, y1};
        k = deliver_all(f->db, seq, 8);
        expect_seq(seq, k, want, 2);
    }
    expect_counts(f->db, 0, 3);
}

/* Retried dead letters take their place at the back of their group, and
** head goes to the right row whether or not the group still has pending
** rows. */
static void test_retry_sets_heads(void **state)
{
    fixture *f = *state;
    int64_t x1, x2, y1, y2, n = 0, seq[8];
    size_t k;

    x1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":1}", PDR_URGENCY_CRITICAL);
    x2 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":2}", PDR_URGENCY_CRITICAL);
    y1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "y", "{\"n\":3}", PDR_URGENCY_ERROR);
    y2 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "y", "{\"n\":4}", PDR_URGENCY_ERROR);
    assert_int_equal(db_outbox_kill(f->db, x1, "400"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, y1, "400"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, y2, "400"), PDR_OK);
    /* x: x2 pending, x1' goes behind it; y: nothing pending, y1' is the head. */
    assert_int_equal(db_outbox_retry_all(f->db, &n), PDR_OK);
    assert_int_equal(n, 3);
    {
        /* The copies keep their urgency. */
        int64_t ids[8];
        assert_int_equal(list_ids(f->db, DB_ROW_PENDING, RK_A, 0, ids), 4);
        assert_int_equal(row_urgency(f->db, ids[1]), PDR_URGENCY_CRITICAL);
        assert_int_equal(row_urgency(f->db, ids[2]), PDR_URGENCY_ERROR);
    }
    k = deliver_all(f->db, seq, 8);
    assert_int_equal(k, 4);
    assert_int_equal(seq[0], x2);
    assert_true(seq[1] > y2);     /* x1', critical */
    assert_true(seq[2] > seq[1]); /* y1', then y2' */
    assert_true(seq[3] > seq[2]);
    expect_counts(f->db, 0, 0);
}

/* A trigger resolved while queued: find the resolve, collapse up to it. */
static void test_find_resolve_and_collapse(void **state)
{
    fixture *f = *state;
    int64_t t1, a1, r1, t2, other, found = 0, ev_ms = 0, n = 0, seq[8];
    db_event ev;
    size_t k;

    t1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":1}", PDR_URGENCY_WARNING);
    other = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "y", "{}", PDR_URGENCY_INFO);
    a1 = push_u(f->db, RK_A, PDR_ACTION_ACKNOWLEDGE, "x", "{}", PDR_URGENCY_INHERIT);
    ev = ev_make(RK_A, PDR_ACTION_RESOLVE, "x", "{\"r\":1}");
    ev.event_ms = T0 - 5000;
    assert_int_equal(db_outbox_push(f->db, &ev, &r1), PDR_OK);
    t2 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "x", "{\"n\":2}", PDR_URGENCY_WARNING);
    push_u(f->db, RK_B, PDR_ACTION_RESOLVE, "x", "{}", PDR_URGENCY_INHERIT);   /* another key */

    assert_int_equal(db_outbox_find_resolve(f->db, RK_A, "x", 0, &found, &ev_ms), PDR_OK);
    assert_int_equal(found, r1);
    assert_int_equal(ev_ms, T0 - 5000);
    assert_int_equal(db_outbox_find_resolve(f->db, RK_A, "x", r1, &found, NULL), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_find_resolve(f->db, RK_A, "y", 0, &found, NULL), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_find_resolve(f->db, RK_C, "x", 0, &found, NULL), PDR_ERR_NOT_FOUND);

    /* The trigger and the acknowledge go; the resolve is the head now. */
    assert_int_equal(db_outbox_collapse(f->db, RK_A, "x", r1 - 1, &n), PDR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(db_outbox_get(f->db, a1, &(db_row){0}), PDR_ERR_NOT_FOUND);
    expect_counts(f->db, 4, 0);
    assert_int_equal(db_outbox_collapse(f->db, RK_A, "x", t1, &n), PDR_OK);
    assert_int_equal(n, 0);
    {
        db_row row;
        assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_OK);
        assert_int_equal(row.id, r1);   /* warning (inherited) before y's info */
        assert_int_equal(row.event_ms, T0 - 5000);
        db_row_cleanup(&row);
    }
    /* Only RK_A's x: deliver the rest in order. */
    k = deliver_all(f->db, seq, 8);
    assert_int_equal(k, 4);
    assert_int_equal(seq[0], r1);
    assert_int_equal(seq[2], t2);
    assert_int_equal(seq[3], other);
}

/* The uplink is back: each key's next row is due now, but not a throttled
** key's, nor any row that is not a key's next. */
static void test_wake_heads(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, b1, c1, n = -1;
    db_row row;
    db_key_stats *st = NULL;
    size_t ns = 0;

    a1 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}", PDR_URGENCY_ERROR);
    a2 = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}", PDR_URGENCY_WARNING);
    b1 = push_u(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}", PDR_URGENCY_ERROR);
    c1 = push_u(f->db, RK_C, PDR_ACTION_TRIGGER, "c1", "{}", PDR_URGENCY_ERROR);
    assert_int_equal(db_outbox_reschedule(f->db, a1, T0 + 60000, "down"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, a2, T0 + 60000, "down"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, b1, T0 + 60000, "429"), PDR_OK);
    assert_int_equal(db_key_throttle_set(f->db, RK_B, T0 + 30000, 60), PDR_OK);
    assert_int_equal(db_key_throttle_set(f->db, RK_C, T0 - 1, 100), PDR_OK);   /* over */

    assert_int_equal(db_outbox_wake_heads(f->db, T0 + 10, &n), PDR_OK);
    assert_int_equal(n, 2);   /* a1 and a2 (both heads of A); c1 was due already */
    assert_int_equal(db_outbox_get(f->db, a1, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0 + 10);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, a2, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0 + 10);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, b1, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0 + 60000);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, c1, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0);
    db_row_cleanup(&row);

    /* The throttle shows in the stats; cleared, B wakes too. */
    assert_int_equal(db_outbox_stats(f->db, &st, &ns), PDR_OK);
    assert_int_equal(ns, 3);
    assert_int_equal(st[0].throttled_until_ms, 0);
    assert_int_equal(st[0].throttle_rate, 0);
    assert_int_equal(st[0].next_attempt_ms, T0 + 10);
    assert_int_equal(st[1].throttled_until_ms, T0 + 30000);
    assert_int_equal(st[1].throttle_rate, 60);
    assert_int_equal(st[2].throttle_rate, 100);
    free(st);
    assert_int_equal(db_key_throttle_set(f->db, RK_B, T0 + 40000, 30), PDR_OK);   /* replaced */
    assert_int_equal(db_outbox_wake_heads(f->db, T0 + 10, &n), PDR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(db_key_throttle_clear(f->db, RK_B), PDR_OK);
    assert_int_equal(db_key_throttle_clear(f->db, RK_B), PDR_OK);
    assert_int_equal(db_outbox_wake_heads(f->db, T0 + 20, &n), PDR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(db_outbox_get(f->db, b1, &row), PDR_OK);
    assert_int_equal(row.next_ms, T0 + 20);
    db_row_cleanup(&row);
}

static void test_link_state(void **state)
{
    fixture *f = *state;
    int st = -1;
    int64_t since = -1;

    assert_int_equal(db_link_get(f->db, &st, &since), PDR_OK);
    assert_int_equal(st, DB_LINK_UP);
    assert_int_equal(since, 0);
    assert_int_equal(db_link_set(f->db, DB_LINK_DOWN, T0 + 5), PDR_OK);
    assert_int_equal(db_link_get(f->db, &st, &since), PDR_OK);
    assert_int_equal(st, DB_LINK_DOWN);
    assert_int_equal(since, T0 + 5);
    assert_int_equal(db_link_set(f->db, DB_LINK_PROBING, T0 + 9), PDR_OK);
    assert_int_equal(db_link_get(f->db, &st, NULL), PDR_OK);
    assert_int_equal(st, DB_LINK_PROBING);
    assert_int_equal(db_link_set(f->db, 3, T0), PDR_ERR_INVALID);
}

/* Urgency given out of range, and inheritance without a pending row: from
** a live dedup entry of the same routing key and dedup_key, else warning. */
static void test_urgency_defaults_and_inherit_from_dedup(void **state)
{
    fixture *f = *state;
    int64_t t, c, r1, r2, r3;

    t = push_u(f->db, RK_A, PDR_ACTION_TRIGGER, "t", "{}", 7);
    c = push_u(f->db, RK_A, PDR_ACTION_CHANGE, NULL, "{}", PDR_URGENCY_INHERIT);
    assert_int_equal(row_urgency(f->db, t), PDR_URGENCY_WARNING);
    assert_int_equal(row_urgency(f->db, c), PDR_URGENCY_CHANGE);

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "inc", DB_DEDUP_TRIGGERED, 1000, "db", PDR_URGENCY_ERROR),
                     PDR_OK);
    r1 = push_u(f->db, RK_A, PDR_ACTION_RESOLVE, "inc", "{}", PDR_URGENCY_CRITICAL);   /* value not read */
    assert_int_equal(row_urgency(f->db, r1), PDR_URGENCY_ERROR);
    r2 = push_u(f->db, RK_B, PDR_ACTION_RESOLVE, "inc", "{}", PDR_URGENCY_INHERIT);   /* other key */
    assert_int_equal(row_urgency(f->db, r2), PDR_URGENCY_WARNING);
    tu_clock_advance(1000);   /* the entry expired */
    assert_int_equal(db_outbox_delivered(f->db, r1), PDR_OK);
    r3 = push_u(f->db, RK_A, PDR_ACTION_ACKNOWLEDGE, "inc", "{}", PDR_URGENCY_INHERIT);
    assert_int_equal(row_urgency(f->db, r3), PDR_URGENCY_WARNING);
}

/* ---- dead letters ------------------------------------------------------------------ */

static void test_kill_and_list_dead(void **state)
{
    fixture *f = *state;
    const char *err = "HTTP 400: {\"status\":\"invalid event\",\"errors\":[\"'routing_key' is invalid\"]}";
    int64_t a1, a2, ids[8];
    db_row *rows = NULL, row;
    size_t n = 0;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    tu_clock_advance(42);
    assert_int_equal(db_outbox_kill(f->db, a1, err), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, a1, err), PDR_ERR_NOT_FOUND);
    /* Invariant 2: a dead row is not delivered away. */
    assert_int_equal(db_outbox_delivered(f->db, a1), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_reschedule(f->db, a1, T0, NULL), PDR_ERR_NOT_FOUND);
    expect_counts(f->db, 1, 1);

    assert_int_equal(db_outbox_list(f->db, DB_ROW_DEAD, NULL, 0, &rows, &n), PDR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].id, a1);
    assert_int_equal(rows[0].state, DB_ROW_DEAD);
    assert_string_equal(rows[0].last_error, err);
    assert_int_equal(rows[0].dead_ms, T0 + 42);
    db_rows_free(rows, n);

    /* The rest of the key goes on. */
    assert_int_equal(db_outbox_head(f->db, RK_A, &row), PDR_OK);
    assert_int_equal(row.id, a2);
    db_row_cleanup(&row);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, NULL, 0, ids), 1);
    assert_int_equal(ids[0], a2);
    assert_int_equal(list_ids(f->db, DB_ROW_DEAD, RK_B, 0, ids), 0);
}

/* A dead letter shows every attempt it had: the refusal that killed it
** counts, after any transient failures; an expiry (max_age) adds none. */
static void test_kill_counts_the_refused_attempt(void **state)
{
    fixture *f = *state;
    int64_t once = push(f->db, RK_A, PDR_ACTION_TRIGGER, "once", "{}");
    int64_t thrice = push(f->db, RK_B, PDR_ACTION_TRIGGER, "thrice", "{}");
    int64_t old = push(f->db, RK_C, PDR_ACTION_TRIGGER, "old", "{}");
    db_row row;

    assert_int_equal(db_outbox_kill(f->db, once, "HTTP 400"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, thrice, T0 + 10, "HTTP 503"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, thrice, T0 + 30, "HTTP 503"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, thrice, "HTTP 400"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, old, T0 + 10, "timeout"), PDR_OK);
    tu_clock_advance(7);
    assert_int_equal(db_outbox_expire(f->db, old, "max_age exceeded"), PDR_OK);
    assert_int_equal(db_outbox_expire(f->db, old, "max_age exceeded"), PDR_ERR_NOT_FOUND);

    assert_int_equal(db_outbox_get(f->db, once, &row), PDR_OK);
    assert_int_equal(row.state, DB_ROW_DEAD);
    assert_int_equal(row.attempts, 1);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, thrice, &row), PDR_OK);
    assert_int_equal(row.attempts, 3);
    assert_string_equal(row.last_error, "HTTP 400");
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, old, &row), PDR_OK);
    assert_int_equal(row.state, DB_ROW_DEAD);
    assert_int_equal(row.attempts, 1);
    assert_int_equal(row.dead_ms, T0 + 7);
    assert_string_equal(row.last_error, "max_age exceeded");
    db_row_cleanup(&row);
    expect_counts(f->db, 0, 3);
}

static void test_kill_older(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, b1, n = 0;
    db_row row;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    b1 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}");
    tu_clock_advance(10);
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    assert_int_equal(db_outbox_kill_older(f->db, T0, "max_age", &n), PDR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(db_outbox_kill_older(f->db, T0 + 5, "max_age", &n), PDR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(db_outbox_get(f->db, a1, &row), PDR_OK);
    assert_int_equal(row.state, DB_ROW_DEAD);
    assert_string_equal(row.last_error, "max_age");
    assert_int_equal(row.dead_ms, T0 + 10);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, b1, &row), PDR_OK);
    assert_int_equal(row.state, DB_ROW_DEAD);
    db_row_cleanup(&row);
    assert_int_equal(db_outbox_get(f->db, a2, &row), PDR_OK);
    assert_int_equal(row.state, DB_ROW_PENDING);
    db_row_cleanup(&row);
    expect_counts(f->db, 1, 2);
}

static void test_retry_all_keeps_order_with_new_ids(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, a3, b1, ids[8], n = 0;
    db_row *rows = NULL, row;
    size_t nr = 0;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{\"n\":1}");
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{\"n\":2}");
    a3 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a3", "{\"n\":3}");
    b1 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{\"n\":4}");
    assert_int_equal(db_outbox_reschedule(f->db, a2, T0 + 5, "503"), PDR_OK);
    /* Killed out of id order: retry must restore id order, not kill order. */
    assert_int_equal(db_outbox_kill(f->db, a2, "400 second"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, a1, "400 first"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, b1, "403"), PDR_OK);
    expect_counts(f->db, 1, 3);

    tu_clock_advance(1000);
    assert_int_equal(db_outbox_retry_all(f->db, &n), PDR_OK);
    assert_int_equal(n, 3);
    expect_counts(f->db, 4, 0);
    assert_int_equal(list_ids(f->db, DB_ROW_DEAD, NULL, 0, ids), 0);

    /* A's queue: a3 (never died), then a1', a2' at the back, in order. */
    assert_int_equal(db_outbox_list(f->db, DB_ROW_PENDING, RK_A, 0, &rows, &nr), PDR_OK);
    assert_int_equal(nr, 3);
    assert_int_equal(rows[0].id, a3);
    assert_true(rows[1].id > b1);
    assert_true(rows[2].id > rows[1].id);
    assert_string_equal(rows[1].dedup_key, "a1");
    assert_string_equal(rows[1].body, "{\"n\":1}");
    assert_string_equal(rows[2].dedup_key, "a2");
    assert_int_equal(rows[2].attempts, 0);
    assert_null(rows[2].last_error);
    assert_int_equal(rows[2].dead_ms, 0);
    assert_int_equal(rows[2].next_ms, T0 + 1000);
    assert_int_equal(rows[2].state, DB_ROW_PENDING);
    db_rows_free(rows, nr);
    assert_int_equal(db_outbox_get(f->db, a1, &row), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_get(f->db, a2, &row), PDR_ERR_NOT_FOUND);

    assert_int_equal(db_outbox_retry_all(f->db, &n), PDR_OK);
    assert_int_equal(n, 0);
}

static void test_retry_key(void **state)
{
    fixture *f = *state;
    int64_t a1, b1, b2, ids[8], n = 0;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    b1 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}");
    b2 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b2", "{}");
    assert_int_equal(db_outbox_kill(f->db, a1, "e"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, b1, "e"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, b2, "e"), PDR_OK);

    assert_int_equal(db_outbox_retry_key(f->db, RK_B, &n), PDR_OK);
    assert_int_equal(n, 2);
    expect_counts(f->db, 2, 1);
    assert_int_equal(list_ids(f->db, DB_ROW_DEAD, NULL, 0, ids), 1);
    assert_int_equal(ids[0], a1);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, RK_B, 0, ids), 2);
    assert_true(ids[0] > b2);
    assert_true(ids[1] > ids[0]);
    assert_int_equal(db_outbox_retry_key(f->db, RK_C, &n), PDR_OK);
    assert_int_equal(n, 0);
}

static void test_retry_id(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, ids[8];
    db_row row;

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    assert_int_equal(db_outbox_kill(f->db, a1, "e"), PDR_OK);
    assert_int_equal(db_outbox_retry_id(f->db, a2), PDR_ERR_NOT_FOUND); /* pending */
    assert_int_equal(db_outbox_retry_id(f->db, 424242), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_outbox_retry_id(f->db, a1), PDR_OK);
    assert_int_equal(db_outbox_retry_id(f->db, a1), PDR_ERR_NOT_FOUND); /* gone */
    assert_int_equal(db_outbox_get(f->db, a1, &row), PDR_ERR_NOT_FOUND);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, RK_A, 0, ids), 2);
    assert_int_equal(ids[0], a2);
    assert_true(ids[1] > a2);
    expect_counts(f->db, 2, 0);
}

static void test_purge_dead(void **state)
{
    fixture *f = *state;
    int64_t a1, a2, a3, n = 0, ids[8];

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    a3 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a3", "{}");
    assert_int_equal(db_outbox_kill(f->db, a1, "e"), PDR_OK);  /* dead at T0 */
    tu_clock_advance(100);
    assert_int_equal(db_outbox_kill(f->db, a2, "e"), PDR_OK);  /* dead at T0+100 */

    assert_int_equal(db_outbox_purge_dead(f->db, T0, &n), PDR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(db_outbox_purge_dead(f->db, T0 + 50, &n), PDR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list_ids(f->db, DB_ROW_DEAD, NULL, 0, ids), 1);
    assert_int_equal(ids[0], a2);
    assert_int_equal(db_outbox_purge_dead(f->db, INT64_MAX, &n), PDR_OK);
    assert_int_equal(n, 1);
    /* Pending rows are never purged. */
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, NULL, 0, ids), 1);
    assert_int_equal(ids[0], a3);
    expect_counts(f->db, 1, 0);
    assert_int_equal(db_outbox_purge_dead(f->db, INT64_MAX, NULL), PDR_OK);
}

/* ---- inspection ---------------------------------------------------------------- */

static void test_list_limit_and_key(void **state)
{
    fixture *f = *state;
    int64_t ids[64], pushed[40];
    char dk[16];
    int i;

    for (i = 0; i < 40; i++) {
        snprintf(dk, sizeof dk, "k%d", i);
        pushed[i] = push(f->db, i % 2 ? RK_A : RK_B, PDR_ACTION_TRIGGER, dk, "{}");
    }
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, NULL, 0, ids), 40);
    for (i = 0; i < 40; i++) assert_int_equal(ids[i], pushed[i]);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, NULL, 7, ids), 7);
    assert_int_equal(ids[6], pushed[6]);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, RK_A, 0, ids), 20);
    assert_int_equal(ids[0], pushed[1]);
    assert_int_equal(list_ids(f->db, DB_ROW_PENDING, RK_A, 3, ids), 3);
    assert_int_equal(ids[2], pushed[5]);
    assert_int_equal(list_ids(f->db, DB_ROW_DEAD, NULL, 0, ids), 0);
}

static void test_stats_and_counts(void **state)
{
    fixture *f = *state;
    db_key_stats *st = NULL;
    int64_t a1, a2, a3, b1;
    size_t n = 0;

    assert_int_equal(db_outbox_stats(f->db, &st, &n), PDR_OK);
    assert_int_equal(n, 0);
    free(st);

    a1 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a1", "{}");
    tu_clock_advance(10);
    a2 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a2", "{}");
    a3 = push(f->db, RK_A, PDR_ACTION_TRIGGER, "a3", "{}");
    b1 = push(f->db, RK_B, PDR_ACTION_TRIGGER, "b1", "{}");
    (void)a3;
    assert_int_equal(db_outbox_kill(f->db, a1, "e"), PDR_OK);
    assert_int_equal(db_outbox_reschedule(f->db, a2, T0 + 777, NULL), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, b1, "e"), PDR_OK);
    push(f->db, RK_C, PDR_ACTION_CHANGE, NULL, "{}");

    assert_int_equal(db_outbox_stats(f->db, &st, &n), PDR_OK);
    assert_int_equal(n, 3);
    assert_string_equal(st[0].routing_key, RK_A);
    assert_int_equal(st[0].pending, 2);
    assert_int_equal(st[0].dead, 1);
    assert_int_equal(st[0].oldest_pending_ms, T0 + 10);
    assert_int_equal(st[0].next_attempt_ms, T0 + 777);
    assert_string_equal(st[1].routing_key, RK_B);
    assert_int_equal(st[1].pending, 0);
    assert_int_equal(st[1].dead, 1);
    assert_int_equal(st[1].oldest_pending_ms, 0);
    assert_int_equal(st[1].next_attempt_ms, 0);
    assert_string_equal(st[2].routing_key, RK_C);
    assert_int_equal(st[2].pending, 1);
    free(st);
    expect_counts(f->db, 3, 2);
}

/* The counts row stays equal to the real number of rows through every
** transition, and another handle sees the same. */
static void test_counts_follow_every_transition(void **state)
{
    fixture *f = *state;
    db_options o;
    db_handle *other = NULL;
    int64_t id[6], n = 0, p = 0, d = 0, ids[16];
    char dk[8];
    int i;

    for (i = 0; i < 6; i++) {
        snprintf(dk, sizeof dk, "d%d", i);
        id[i] = push(f->db, i < 3 ? RK_A : RK_B, PDR_ACTION_TRIGGER, dk, "{}");
    }
    expect_counts(f->db, 6, 0);
    assert_int_equal(db_outbox_delivered(f->db, id[0]), PDR_OK);
    expect_counts(f->db, 5, 0);
    assert_int_equal(db_outbox_kill(f->db, id[1], "e"), PDR_OK);
    assert_int_equal(db_outbox_kill(f->db, id[3], "e"), PDR_OK);
    expect_counts(f->db, 3, 2);
    assert_int_equal(db_outbox_reschedule(f->db, id[2], T0 + 1, "e"), PDR_OK);
    expect_counts(f->db, 3, 2);
    assert_int_equal(db_outbox_retry_id(f->db, id[1]), PDR_OK);
    expect_counts(f->db, 4, 1);
    assert_int_equal(db_outbox_kill_older(f->db, INT64_MAX, "age", &n), PDR_OK);
    assert_int_equal(n, 4);
    expect_counts(f->db, 0, 5);
    assert_int_equal(db_outbox_retry_key(f->db, RK_A, &n), PDR_OK);
    assert_int_equal(n, 2);
    expect_counts(f->db, 2, 3);
    assert_int_equal(db_outbox_purge_dead(f->db, INT64_MAX, &n), PDR_OK);
    assert_int_equal(n, 3);
    expect_counts(f->db, 2, 0);

    memset(&o, 0, sizeof o);
    o.data_dir = f->dir;
    assert_int_equal(db_open(&o, &other, NULL, 0), PDR_OK);
    assert_int_equal(db_outbox_count(other, &p, &d), PDR_OK);
    assert_int_equal(p, 2);
    assert_int_equal(d, 0);
    assert_int_equal(list_ids(other, DB_ROW_PENDING, NULL, 0, ids), 2);
    push(other, RK_C, PDR_ACTION_TRIGGER, "x", "{}");
    expect_counts(f->db, 3, 0);
    db_close(other);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_push_and_get),
        T(test_push_invalid),
        T(test_batch_push),
        T(test_coalesce_repeated_trigger),
        T(test_coalesce_trigger_resolve_trigger),
        T(test_coalesce_change_events_null_key),
        T(test_coalesce_only_pending),
        T(test_coalesce_within_batch),
        cmocka_unit_test(test_max_events_single),
        cmocka_unit_test(test_max_events_batch),
        cmocka_unit_test_setup_teardown(test_bytes_kept_by_triggers, setup, teardown),
        cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_min_free),
        cmocka_unit_test(test_trim_dead),
        T(test_heads_across_keys),
        T(test_non_due_head_holds_back_its_key),
        T(test_next_due_after),
        T(test_due_order_by_next_ms),
        T(test_reschedule),
        T(test_clamp_next),
        T(test_kill_and_list_dead),
        T(test_kill_counts_the_refused_attempt),
        T(test_kill_older),
        T(test_retry_all_keeps_order_with_new_ids),
        T(test_retry_key),
        T(test_retry_id),
        T(test_purge_dead),
        T(test_list_limit_and_key),
        T(test_stats_and_counts),
        T(test_counts_follow_every_transition),
        T(test_urgent_first_groups_in_order),
        cmocka_unit_test(test_critical_overtakes_backlog),
        T(test_schedule_is_index_driven),
        T(test_head_moves_on_kill_and_expire),
        T(test_retry_sets_heads),
        T(test_find_resolve_and_collapse),
        T(test_wake_heads),
        T(test_link_state),
        T(test_urgency_defaults_and_inherit_from_dedup),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
