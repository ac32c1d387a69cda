/*
** test_writer.c — the group-commit writer: requests that arrive while a
** commit runs share the next one; each request learns its own events'
** outcomes; order is kept; a stopping writer refuses new work; [outbox]
** commit_interval holds a batch open for the requests that follow.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
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

static wfx *wfx_new_interval(int64_t max_events, int64_t commit_interval_ms);

static wfx *wfx_new(int64_t max_events)
{
    return wfx_new_interval(max_events, 0);
}

static wfx *wfx_new_interval(int64_t max_events, int64_t commit_interval_ms)
{
    wfx *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    assert_int_equal(pdr_config_defaults(&f->cfg), PDR_OK);
    free(f->cfg->data_dir);
    f->cfg->data_dir = tu_printf("%s/var", f->dir);
    f->cfg->max_events = max_events;
    f->cfg->synchronous = PDR_SYNC_NORMAL;
    f->cfg->commit_interval_ms = commit_interval_ms;
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

/* ---- [outbox] commit_interval ------------------------------------------- */

/* The test's clock: the writer thread reads it, the test moves it; reads
** are counted, so the test can await the writer's return to its wait. */
static _Atomic int64_t fake_now;
static atomic_int fake_reads;

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&fake_reads, 1);
    return atomic_load(&fake_now);
}

typedef struct ajob {
    writer_job job;
    wfx *f;
    db_event ev;
    char dedup[16];
    pdr_rc result;
    int64_t id;
    int commits_seen;       /* on_commit calls when the callback ran */
    atomic_int done;
} ajob;

static void ajob_done(writer_job *job)
{
    ajob *a = job->ctx;
    pthread_mutex_lock(&a->f->mu);
    a->commits_seen = a->f->commits;
    pthread_mutex_unlock(&a->f->mu);
    atomic_store(&a->done, 1);
}

static void ajob_submit(wfx *f, ajob *a, int i)
{
    memset(a, 0, sizeof *a);
    a->f = f;
    snprintf(a->dedup, sizeof a->dedup, "ci-%d", i);
    a->ev.routing_key = KEY;
    a->ev.action = PDR_ACTION_TRIGGER;
    a->ev.dedup_key = a->dedup;
    a->ev.body = "{\"n\":1}";
    a->ev.body_len = strlen(a->ev.body);
    a->ev.urgency = PDR_URGENCY_WARNING;
    writer_job_push(&a->job, &a->ev, 1, &a->result, &a->id, ajob_done, a);
    assert_int_equal(writer_submit_async(f->w, &a->job), PDR_OK);
}

static int jobs_done(ajob *a, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += atomic_load(&a[i].done);
    return k;
}

/* Awaits (5 s at most) the writer's reading the clock `more` times after
** `since` reads, or a job's being answered. */
static void await_clock_reads(int since, int more, ajob *a, int n)
{
    int64_t end = pdr_clock_mono_ms() + 5000;
    while (atomic_load(&fake_reads) < since + more && !jobs_done(a, n)) {
        assert_true(pdr_clock_mono_ms() < end);
        sched_yield();
    }
}

/* With commit_interval 50ms, requests that come within 50 ms (of the test's
** clock) of the first one share its commit, and none is answered before
** that commit: the first one waits for the interval, not for company. */
static void test_commit_interval(void **state)
{
    ajob a[3];
    (void)state;
    atomic_store(&fake_now, INT64_C(1700000000000));
    pdr_clock_set(fake_clock, NULL);   /* before the writer's thread starts */
    wfx *f = wfx_new_interval(100, 50);

    ajob_submit(f, &a[0], 0);
    /* The writer took the first job up and waits (it reads the clock at
    ** each turn of its wait: twice means it went back to waiting). */
    int reads = atomic_load(&fake_reads);
    await_clock_reads(reads, 2, a, 1);
    assert_int_equal(jobs_done(a, 1), 0);
    ajob_submit(f, &a[1], 1);
    ajob_submit(f, &a[2], 2);
    reads = atomic_load(&fake_reads);
    await_clock_reads(reads, 2, a, 3);
    assert_int_equal(jobs_done(a, 3), 0);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->commits, 0);
    pthread_mutex_unlock(&f->mu);

    atomic_fetch_add(&fake_now, 50);   /* the interval is over: one commit */
    int64_t end = pdr_clock_mono_ms() + 5000;
    while (jobs_done(a, 3) < 3) {
        assert_true(pdr_clock_mono_ms() < end);
        sched_yield();
    }
    writer_stats st;
    writer_stats_get(f->w, &st);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.events, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].result, PDR_OK);
        assert_int_equal(a[i].commits_seen, 1);   /* answered after its commit */
    }
    wfx_free(f);
    pdr_clock_set(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_results_per_event),
        cmocka_unit_test(test_stop_refuses),
        cmocka_unit_test(test_commit_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
