/*
** test_writer.c — the group-commit writer: requests that arrive while a
** commit runs share the next one; each request learns its own events'
** outcomes; order is kept; a stopping writer refuses new work.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "testutil.h"
#include "writer.h"

static const char *const KEY = "R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12";

typedef struct wfx {
    char *dir;
    pdr_config *cfg;
    writer *w;
    /* on_commit hook: the first call waits until `hold_until` jobs queue */
    pthread_mutex_t mu;
    int commits;
    int hold_until;
} wfx;

static void on_commit(void *ctx)
{
    wfx *f = ctx;
    int first;
    pthread_mutex_lock(&f->mu);
    first = f->commits++ == 0;
    pthread_mutex_unlock(&f->mu);
    /* Holding the leading request here (after its first commit) lets the
    ** other requests queue up; they must then share one transaction. */
    while (first && f->hold_until > 0) {
        writer_stats st;
        writer_stats_get(f->w, &st);
        if (st.queued_jobs >= f->hold_until) break;
        sched_yield();
    }
}

static wfx *wfx_new(int64_t max_events)
{
    wfx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    assert_int_equal(pdr_config_defaults(&f->cfg), PDR_OK);
    free(f->cfg->data_dir);
    f->cfg->data_dir = tu_printf("%s/var", f->dir);
    f->cfg->max_events = max_events;
    f->cfg->synchronous = PDR_SYNC_NORMAL;
    pthread_mutex_init(&f->mu, NULL);
    /* The writer opens an existing database: create it first. */
    db_close(tu_db_open(f->cfg->data_dir, max_events));
    assert_int_equal(writer_create(f->cfg, on_commit, f, &f->w), PDR_OK);
    assert_int_equal(writer_start(f->w), PDR_OK);
    return f;
}

static void wfx_free(wfx *f)
{
    writer_destroy(f->w);
    pdr_config_destroy(f->cfg);
    tu_rmrf(f->dir);
    free(f->dir);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

typedef struct sub {
    wfx *f;
    int who;
    int n;
    pdr_rc rc;
    pdr_rc results[8];
    int64_t ids[8];
    char dedup[8][32];
    char body[8][64];
} sub;

static void *submit_main(void *arg)
{
    sub *s = arg;
    db_event evs[8];
    memset(evs, 0, sizeof evs);
    for (int i = 0; i < s->n; i++) {
        snprintf(s->dedup[i], sizeof s->dedup[i], "w%d-%d", s->who, i);
        snprintf(s->body[i], sizeof s->body[i], "{\"n\":\"w%d-%d\"}", s->who, i);
        evs[i].routing_key = KEY;
        evs[i].action = PDR_ACTION_TRIGGER;
        evs[i].dedup_key = s->dedup[i];
        evs[i].body = s->body[i];
        evs[i].body_len = strlen(s->body[i]);
        evs[i].urgency = PDR_URGENCY_WARNING;   /* no severity in the body */
    }
    s->rc = writer_submit(s->f->w, evs, (size_t)s->n, s->results, s->ids);
    return NULL;
}

static void test_group_commit(void **state)
{
    (void)state;
    wfx *f = wfx_new(1000);
    sub subs[5];
    pthread_t th[5];
    memset(subs, 0, sizeof subs);
    f->hold_until = 4;
    /* The first request commits alone; while the writer is held in its
    ** on_commit, four more queue; they go in one second transaction. */
    subs[0] = (sub){.f = f, .who = 0, .n = 1};
    pthread_create(&th[0], NULL, submit_main, &subs[0]);
    for (;;) {   /* wait for the first commit to have begun its hook */
        pthread_mutex_lock(&f->mu);
        int c = f->commits;
        pthread_mutex_unlock(&f->mu);
        if (c) break;
        sched_yield();
    }
    for (int i = 1; i < 5; i++) {
        subs[i] = (sub){.f = f, .who = i, .n = 3};
        pthread_create(&th[i], NULL, submit_main, &subs[i]);
    }
    for (int i = 0; i < 5; i++) pthread_join(th[i], NULL);
    writer_stats st;
    writer_stats_get(f->w, &st);
    assert_int_equal(st.batches, 2);
    assert_int_equal(st.events, 13);
    assert_int_equal(st.failed_batches, 0);
    assert_int_equal(st.queued_jobs, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(subs[i].rc, PDR_OK);
        for (int k = 0; k < subs[i].n; k++) {
            assert_int_equal(subs[i].results[k], PDR_OK);
            if (k) assert_true(subs[i].ids[k] == subs[i].ids[k - 1] + 1);   /* a request's events stay together, in order */
        }
    }
    /* Every event is in the outbox, with the id its request was told. */
    db_handle *db = tu_db_open(f->cfg->data_dir, 1000);
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < subs[i].n; k++) {
            db_row row;
            assert_int_equal(db_outbox_get(db, subs[i].ids[k], &row), PDR_OK);
            assert_string_equal(row.dedup_key, subs[i].dedup[k]);
            assert_string_equal(row.body, subs[i].body[k]);
            db_row_cleanup(&row);
        }
    db_close(db);
    wfx_free(f);
}

static void test_results_per_event(void **state)
{
    (void)state;
    wfx *f = wfx_new(3);
    sub a = {.f = f, .who = 1, .n = 2}, b = {.f = f, .who = 1, .n = 2}, c = {.f = f, .who = 2, .n = 2};
    submit_main(&a);
    assert_int_equal(a.rc, PDR_OK);
    assert_int_equal(a.results[0], PDR_OK);
    assert_int_equal(a.results[1], PDR_OK);
    /* The same two events again: each equals the newest pending row of its
    ** dedup_key, so both coalesce onto the rows already stored. */
    submit_main(&b);
    assert_int_equal(b.rc, PDR_OK);
    assert_int_equal(b.results[0], PDR_COALESCED);
    assert_int_equal(b.results[1], PDR_COALESCED);
    assert_int_equal(b.ids[0], a.ids[0]);
    /* Two new ones with room for one: the second is refused, alone. */
    submit_main(&c);
    assert_int_equal(c.rc, PDR_OK);
    assert_int_equal(c.results[0], PDR_OK);
    assert_int_equal(c.results[1], PDR_ERR_FULL);
    writer_stats st;
    assert_int_equal(writer_probe(f->w, &st), PDR_OK);
    assert_int_equal(st.pending, 3);
    assert_int_equal(st.dead, 0);
    wfx_free(f);
}

static void test_stop_refuses(void **state)
{
    (void)state;
    wfx *f = wfx_new(10);
    writer_stop(f->w);
    sub s = {.f = f, .who = 0, .n = 1};
    submit_main(&s);
    assert_int_equal(s.rc, PDR_ERR_SHUTDOWN);
    assert_int_equal(writer_probe(f->w, NULL), PDR_ERR_SHUTDOWN);
    db_handle *db = tu_db_open(f->cfg->data_dir, 10);
    int64_t p = -1, d = -1;
    assert_int_equal(db_outbox_count(db, &p, &d), PDR_OK);
    assert_int_equal(p, 0);
    db_close(db);
    wfx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_results_per_event),
        cmocka_unit_test(test_stop_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
