/*
** test_bundle_format.c — the parts of db/bundle.c that stand alone: the checksum
** is the SHA-256 of the canonical serialization its header comment
** defines (rebuilt here byte by byte, for each bundle schema version), the
** streaming SHA-256 (pdr_sha256_*) equals the one-shot, and the version
** and kind checks of db_bundle_verify(). The commands are tested whole in
** tests/integration/test_bundle.c.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "db.h"
#include "testutil.h"

#define KEY "R1aaaaaaaaaaaaaaaaaaaaaaaaaaab12"

/* The canonical serialization, as bundle.c's header comment defines it. */
typedef struct buf {
    unsigned char *p;
    size_t n;
} buf;

static void put(buf *b, const void *s, size_t n)
{
    b->p = realloc(b->p, b->n + n + 1);
    assert_non_null(b->p);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_be64(buf *b, uint64_t x)
{
    unsigned char be[8];
    for (int i = 0; i < 8; i++) be[i] = (unsigned char)(x >> (56 - 8 * i));
    put(b, be, 8);
}

static void put_int(buf *b, int64_t v)
{
    put(b, "i", 1);
    put_be64(b, (uint64_t)v);
}

static void put_text(buf *b, const char *s)
{
    if (!s) {
        put(b, "n", 1);
        return;
    }
    put(b, "t", 1);
    put_be64(b, strlen(s));
    put(b, s, strlen(s));
}

static void test_streaming_sha256_equals_one_shot(void **state)
{
    (void)state;
    char one[PDR_SHA256_HEX_LEN], streamed[PDR_SHA256_HEX_LEN];
    const char *text = "the quick brown fox jumps over the lazy dog";
    assert_int_equal(pdr_sha256_hex(text, strlen(text), one), PDR_OK);
    pdr_sha256 *h = pdr_sha256_new();
    assert_non_null(h);
    assert_int_equal(pdr_sha256_update(h, text, 10), PDR_OK);
    assert_int_equal(pdr_sha256_update(h, text + 10, 0), PDR_OK);
    assert_int_equal(pdr_sha256_update(h, text + 10, strlen(text) - 10), PDR_OK);
    assert_int_equal(pdr_sha256_final_hex(h, streamed), PDR_OK);
    assert_string_equal(one, streamed);
    /* SHA-256 of the empty string, the known value */
    h = pdr_sha256_new();
    assert_int_equal(pdr_sha256_final_hex(h, streamed), PDR_OK);
    assert_string_equal(streamed, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* Two events into a fresh outbox at a fixed time, exported with the given
** bundle schema version; the expected checksum rebuilt by hand. */
static void check_version(int version)
{
    char *dir = tu_mkdtemp(), *path = tu_printf("%s/b.pdrb", dir), err[1024], want[PDR_SHA256_HEX_LEN];
    const char *body1 = "{\"routing_key\":\"" KEY "\",\"event_action\":\"trigger\",\"dedup_key\":\"d\","
                        "\"payload\":{\"summary\":\"s\",\"source\":\"gw\",\"severity\":\"critical\"}}";
    const char *body2 = "{\"routing_key\":\"" KEY "\",\"event_action\":\"change\",\"payload\":{\"summary\":\"c\"}}";
    db_event evs[2] = {
        {KEY, PDR_ACTION_TRIGGER, "d", "fp", body1, strlen(body1), PDR_URGENCY_CRITICAL, "t1", 1234},
        {KEY, PDR_ACTION_CHANGE, NULL, NULL, body2, strlen(body2), PDR_URGENCY_CHANGE, NULL, 0},
    };
    pdr_rc res[2];
    int64_t ids[2];
    db_bundle_info info, again;
    buf b = {NULL, 0};

    tu_clock_install(INT64_C(1767225600000));
    db_handle *db = tu_db_open(dir, 0);
    assert_int_equal(db_outbox_push_batch(db, evs, 2, res, ids), PDR_OK);
    assert_int_equal(res[0], PDR_OK);
    assert_int_equal(res[1], PDR_OK);
    db_export_opts o = {path, NULL, INT64_MIN, "site", 0, version};
    if (db_bundle_export(db, &o, &info, err, sizeof err)) fail_msg("export: %s", err);
    db_close(db);
    assert_int_equal(info.count, 2);
    assert_int_equal(info.version, version);
    assert_int_equal(strlen(info.bundle_id), 32);
    assert_int_equal(strspn(info.bundle_id, "0123456789abcdef"), 32);

    for (int i = 0; i < 2; i++) {
        put_int(&b, i + 1);                         /* seq */
        put_int(&b, ids[i]);                        /* row_id */
        put_text(&b, evs[i].routing_key);
        put_int(&b, evs[i].action);
        put_text(&b, evs[i].dedup_key);
        put_text(&b, evs[i].fingerprint);
        put_text(&b, evs[i].body);
        put_int(&b, INT64_C(1767225600000));        /* created_ms */
        put_int(&b, evs[i].urgency);
        put_text(&b, evs[i].target);
        if (version >= 2) put_int(&b, evs[i].event_ms);
    }
    assert_int_equal(pdr_sha256_hex(b.p, b.n, want), PDR_OK);
    assert_string_equal(info.sha256, want);
    if (db_bundle_verify(path, &again, err, sizeof err)) fail_msg("verify: %s", err);
    assert_string_equal(again.sha256, want);
    assert_string_equal(again.bundle_id, info.bundle_id);
    assert_string_equal(again.site, version >= 2 ? "site" : "");
    assert_int_equal(again.created_ms, INT64_C(1767225600000));
    free(b.p);
    tu_rmrf(dir);
    free(dir);
    free(path);
}

static void test_checksum_is_the_canonical_serialization_v2(void **state)
{
    (void)state;
    check_version(2);
}

static void test_checksum_is_the_canonical_serialization_v1(void **state)
{
    (void)state;
    check_version(1);
}

static void test_verify_refuses_what_is_not_a_readable_bundle(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), *path = tu_printf("%s/b.pdrb", dir), *missing = tu_printf("%s/none", dir);
    char *text = tu_printf("%s/text", dir), err[1024];
    sqlite3 *h = NULL;

    assert_int_equal(db_bundle_verify(missing, NULL, err, sizeof err), PDR_ERR_NOT_FOUND);
    tu_write_file(text, "not a database\n");
    assert_int_equal(db_bundle_verify(text, NULL, err, sizeof err), PDR_ERR_CORRUPT);
    assert_non_null(strstr(err, "not a pdrelay bundle"));

    /* an export of an empty outbox writes nothing */
    db_handle *db = tu_db_open(dir, 0);
    db_export_opts o = {path, NULL, INT64_MIN, NULL, 1, 0};
    db_bundle_info info;
    assert_int_equal(db_bundle_export(db, &o, &info, err, sizeof err), PDR_OK);
    assert_int_equal(info.count, 0);
    assert_int_equal(db_bundle_verify(path, NULL, err, sizeof err), PDR_ERR_NOT_FOUND);
    tu_push_event(dir, KEY, PDR_ACTION_TRIGGER, "d", NULL, "error", "s");
    assert_int_equal(db_bundle_export(db, &o, &info, err, sizeof err), PDR_OK);
    assert_int_equal(info.count, 1);
    db_close(db);
    assert_int_equal(db_bundle_verify(path, NULL, err, sizeof err), PDR_OK);

    /* versions: 0 (no schema) and one newer than DB_BUNDLE_SCHEMA_VERSION */
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=0", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(db_bundle_verify(path, NULL, err, sizeof err), PDR_ERR_CORRUPT);
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    char *newer = tu_printf("PRAGMA user_version=%d", DB_BUNDLE_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_exec(h, newer, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(db_bundle_verify(path, NULL, err, sizeof err), PDR_ERR_TOO_NEW);
    assert_non_null(strstr(err, "newer than this pdrelay reads"));

    free(newer);
    tu_rmrf(dir);
    free(dir);
    free(path);
    free(missing);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streaming_sha256_equals_one_shot),
        cmocka_unit_test(test_checksum_is_the_canonical_serialization_v2),
        cmocka_unit_test(test_checksum_is_the_canonical_serialization_v1),
        cmocka_unit_test(test_verify_refuses_what_is_not_a_readable_bundle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
