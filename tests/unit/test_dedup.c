/*
** test_dedup.c — the dedup table through db.h: put, get, replace, delete,
** expiry at exactly expires_ms, and purge of exactly the expired entries,
** all on the fake clock.
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
#define T0 1700000000000LL
#define DAY (24LL * 3600 * 1000)

typedef struct fixture {
    char *dir;
    db_handle *db;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_mkdtemp();
    tu_clock_install(T0);
    f->db = tu_db_open(f->dir, 0);
    *state = f;
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

static int64_t count(db_handle *db)
{
    int64_t n = -1;
    assert_int_equal(db_dedup_count(db, &n), PDR_OK);
    return n;
}

static void test_put_get(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;

    assert_int_equal(db_dedup_get(f->db, RK_A, "fp1", &e), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp1", "dk-1", DB_DEDUP_TRIGGERED, DAY, NULL, -1), PDR_OK);
    memset(&e, 0x55, sizeof e);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp1", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "dk-1");
    assert_int_equal(e.state, DB_DEDUP_TRIGGERED);
    assert_int_equal(e.updated_ms, T0);
    assert_int_equal(e.expires_ms, T0 + DAY);
    /* The key is (routing key, fingerprint). */
    assert_int_equal(db_dedup_get(f->db, RK_B, "fp1", &e), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp2", &e), PDR_ERR_NOT_FOUND);
    assert_int_equal(count(f->db), 1);
}

static void test_put_replaces(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "old", DB_DEDUP_TRIGGERED, 1000, NULL, -1), PDR_OK);
    tu_clock_advance(500);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "new", DB_DEDUP_RESOLVED, 2000, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "new");
    assert_int_equal(e.state, DB_DEDUP_RESOLVED);
    assert_int_equal(e.updated_ms, T0 + 500);
    assert_int_equal(e.expires_ms, T0 + 2500);
    assert_int_equal(count(f->db), 1);
    /* A put revives an expired entry. */
    tu_clock_advance(5000);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "again", DB_DEDUP_ACKNOWLEDGED, 10, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "again");
    assert_int_equal(e.state, DB_DEDUP_ACKNOWLEDGED);
}

/* Live while now < expires: found at expires - 1, gone at expires. */
static void test_ttl_boundary(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_TRIGGERED, DAY, NULL, -1), PDR_OK);
    tu_clock_advance(DAY - 1);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    tu_clock_advance(1);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_ERR_NOT_FOUND);
    /* Expired but not yet purged: still counted. */
    assert_int_equal(count(f->db), 1);
}

static void test_delete(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_TRIGGERED, DAY, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_put(f->db, RK_B, "fp", "dk", DB_DEDUP_TRIGGERED, DAY, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_delete(f->db, RK_A, "fp"), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_dedup_get(f->db, RK_B, "fp", &e), PDR_OK);
    assert_int_equal(db_dedup_delete(f->db, RK_A, "fp"), PDR_ERR_NOT_FOUND);
    assert_int_equal(count(f->db), 1);
}

/* Purge removes exactly the entries whose expiry has come. */
static void test_purge_expired(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;
    int64_t n = -1;

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp10", "a", DB_DEDUP_TRIGGERED, 10, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp20", "b", DB_DEDUP_TRIGGERED, 20, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp30", "c", DB_DEDUP_TRIGGERED, 30, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_purge_expired(f->db, &n), PDR_OK);
    assert_int_equal(n, 0);
    tu_clock_advance(20);
    assert_int_equal(db_dedup_purge_expired(f->db, &n), PDR_OK);
    assert_int_equal(n, 2);
    assert_int_equal(count(f->db), 1);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp30", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "c");
    tu_clock_advance(10);
    assert_int_equal(db_dedup_purge_expired(f->db, NULL), PDR_OK);
    assert_int_equal(count(f->db), 0);
}

static void test_invalid_and_long_keys(void **state)
{
    fixture *f = *state;
    char key[PDR_DEDUP_KEY_MAX_BYTES + 2];   /* the database bounds bytes: 255 characters of UTF-8 */
    db_dedup_entry e;

    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", key, DB_DEDUP_TRIGGERED, DAY, NULL, -1),
                     PDR_ERR_INVALID);
    key[PDR_DEDUP_KEY_MAX_BYTES] = '\0'; /* exactly the maximum */
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", key, DB_DEDUP_TRIGGERED, DAY, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    assert_string_equal(e.dedup_key, key);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", (db_dedup_state)7, DAY, NULL, -1),
                     PDR_ERR_INVALID);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_TRIGGERED, -1, NULL, -1),
                     PDR_ERR_INVALID);
    assert_int_equal(db_dedup_put(f->db, NULL, "fp", "dk", DB_DEDUP_TRIGGERED, DAY, NULL, -1),
                     PDR_ERR_INVALID);
    assert_int_equal(db_dedup_get(f->db, RK_A, NULL, &e), PDR_ERR_INVALID);
    /* A TTL past the end of time saturates. */
    assert_int_equal(db_dedup_put(f->db, RK_B, "fp", "dk", DB_DEDUP_TRIGGERED, INT64_MAX, NULL, -1),
                     PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_B, "fp", &e), PDR_OK);
    assert_int_equal(e.expires_ms, INT64_MAX);
}

static void test_survives_reopen(void **state)
{
    fixture *f = *state;
    db_options o;
    db_dedup_entry e;

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_ACKNOWLEDGED, DAY, NULL, -1), PDR_OK);
    db_close(f->db);
    memset(&o, 0, sizeof o);
    o.data_dir = f->dir;
    assert_int_equal(db_open(&o, &f->db, NULL, 0), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    assert_int_equal(e.state, DB_DEDUP_ACKNOWLEDGED);
}


/* Reopens the fixture's database with [outbox] dedup_ttl_ms = ttl. */
static void reopen_with_ttl(fixture *f, int64_t ttl)
{
    db_options o;
    db_close(f->db);
    memset(&o, 0, sizeof o);
    o.data_dir = f->dir;
    o.dedup_ttl_ms = ttl;
    assert_int_equal(db_open(&o, &f->db, NULL, 0), PDR_OK);
}

static pdr_rc push_trigger(db_handle *db, const char *rk, const char *dk, const char *fp, const char *target,
                           int urgency, const char *body)
{
    db_event ev;
    memset(&ev, 0, sizeof ev);
    ev.routing_key = rk;
    ev.action = PDR_ACTION_TRIGGER;
    ev.dedup_key = dk;
    ev.fingerprint = fp;
    ev.target = target;
    ev.urgency = urgency;
    ev.body = body;
    ev.body_len = strlen(body);
    return db_outbox_push(db, &ev, NULL);
}

/* A pushed trigger records its incident at once (queued); a later push
** refreshes its target, urgency and expiry, never its state or key. */
static void test_push_records_incident(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;
    char rk[PDR_ROUTING_KEY_LEN + 1], dk[PDR_DEDUP_KEY_MAX_BYTES + 1];

    /* Without a ttl the push records nothing. */
    assert_int_equal(push_trigger(f->db, RK_A, "dk-0", "fp0", "db", PDR_URGENCY_ERROR, "{\"n\":0}"), PDR_OK);
    assert_int_equal(count(f->db), 0);

    reopen_with_ttl(f, DAY);
    assert_int_equal(push_trigger(f->db, RK_A, "dk-1", "fp1", "db", PDR_URGENCY_ERROR, "{\"n\":1}"), PDR_OK);
    /* Missing fingerprint, target or dedup_key: nothing recorded. */
    assert_int_equal(push_trigger(f->db, RK_A, "dk-2", NULL, "db", PDR_URGENCY_ERROR, "{}"), PDR_OK);
    assert_int_equal(push_trigger(f->db, RK_A, "dk-3", "fp3", NULL, PDR_URGENCY_ERROR, "{}"), PDR_OK);
    assert_int_equal(count(f->db), 1);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp1", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "dk-1");
    assert_int_equal(e.state, DB_DEDUP_QUEUED);
    assert_int_equal(e.urgency, PDR_URGENCY_ERROR);
    assert_string_equal(e.target, "db");
    assert_string_equal(e.routing_key, RK_A);
    assert_int_equal(e.expires_ms, T0 + DAY);

    /* Delivered (the sender's put), then pushed again, escalated. */
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp1", "dk-1", DB_DEDUP_TRIGGERED, DAY, NULL, -1), PDR_OK);
    tu_clock_advance(1000);
    assert_int_equal(push_trigger(f->db, RK_A, "dk-other", "fp1", "db2", PDR_URGENCY_CRITICAL, "{\"n\":2}"),
                     PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp1", &e), PDR_OK);
    assert_string_equal(e.dedup_key, "dk-1");
    assert_int_equal(e.state, DB_DEDUP_TRIGGERED);
    assert_int_equal(e.urgency, PDR_URGENCY_CRITICAL);
    assert_string_equal(e.target, "db2");
    assert_int_equal(e.expires_ms, T0 + 1000 + DAY);
    assert_int_equal(e.updated_ms, T0);

    /* Routing at ingest: by target and fingerprint, whatever the key. */
    assert_int_equal(db_dedup_route(f->db, "db2", "fp1", rk, dk), PDR_OK);
    assert_string_equal(rk, RK_A);
    assert_string_equal(dk, "dk-1");
    assert_int_equal(db_dedup_route(f->db, "db", "fp1", rk, dk), PDR_ERR_NOT_FOUND);
    assert_int_equal(db_dedup_route(f->db, "db2", "fp9", NULL, NULL), PDR_ERR_NOT_FOUND);
}

/* put keeps the stored target and urgency when given NULL and -1. */
static void test_put_target_urgency(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_QUEUED, DAY, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    assert_string_equal(e.target, "");
    assert_int_equal(e.urgency, PDR_URGENCY_WARNING);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_TRIGGERED, DAY, "web", PDR_URGENCY_INFO),
                     PDR_OK);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_ACKNOWLEDGED, DAY, NULL, -1), PDR_OK);
    assert_int_equal(db_dedup_get(f->db, RK_A, "fp", &e), PDR_OK);
    assert_int_equal(e.state, DB_DEDUP_ACKNOWLEDGED);
    assert_string_equal(e.target, "web");
    assert_int_equal(e.urgency, PDR_URGENCY_INFO);
    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "dk", DB_DEDUP_TRIGGERED, DAY, NULL, 5),
                     PDR_ERR_INVALID);
}

/* A key rotation: the same target and fingerprint live under two routing
** keys; route answers the most recently updated, and only live entries. */
static void test_route_newest_live(void **state)
{
    fixture *f = *state;
    db_dedup_entry e;
    char rk[PDR_ROUTING_KEY_LEN + 1], dk[PDR_DEDUP_KEY_MAX_BYTES + 1];

    assert_int_equal(db_dedup_put(f->db, RK_A, "fp", "old", DB_DEDUP_TRIGGERED, 5000, "db", 1), PDR_OK);
    tu_clock_advance(10);
    assert_int_equal(db_dedup_put(f->db, RK_B, "fp", "new", DB_DEDUP_TRIGGERED, 100, "db", 0), PDR_OK);
    assert_int_equal(db_dedup_route(f->db, "db", "fp", rk, dk), PDR_OK);
    assert_string_equal(rk, RK_B);
    assert_string_equal(dk, "new");
    tu_clock_advance(100);   /* RK_B's entry expired */
    assert_int_equal(db_dedup_route(f->db, "db", "fp", rk, dk), PDR_OK);
    assert_string_equal(rk, RK_A);
    assert_string_equal(dk, "old");

    /* By dedup_key: the live entry of (routing key, dedup_key). */
    assert_int_equal(db_dedup_get_by_key(f->db, RK_A, "old", &e), PDR_OK);
    assert_int_equal(e.urgency, PDR_URGENCY_ERROR);
    assert_string_equal(e.target, "db");
    assert_int_equal(db_dedup_get_by_key(f->db, RK_B, "new", &e), PDR_ERR_NOT_FOUND);   /* expired */
    assert_int_equal(db_dedup_get_by_key(f->db, RK_B, "old", &e), PDR_ERR_NOT_FOUND);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_put_get),
        T(test_put_replaces),
        T(test_ttl_boundary),
        T(test_delete),
        T(test_purge_expired),
        T(test_invalid_and_long_keys),
        T(test_survives_reopen),
        T(test_push_records_incident),
        T(test_put_target_urgency),
        T(test_route_newest_live),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
