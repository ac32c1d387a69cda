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
    db_t *db;
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

static int64_t count(db_t *db)
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
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
