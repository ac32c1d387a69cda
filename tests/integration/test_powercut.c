/*
** test_powercut.c — `pdrelay run` survives power cuts: 50 cycles of
** tests/powercut/powercut_cycle.c with [outbox] synchronous = full, each
** cut at a random operation by libpowercut.so (tests/powercut/powercut.c).
** No event answered 202 before a cut may be lost, no database may be
** corrupt, every restart must succeed. test_slow_powercut.c runs 1,000.
** Exit 77 (skipped) where the shim cannot run: a cross build under
** qemu-user.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "itutil.h"
#include "powercut_cycle.h"

#ifndef PC_CUTS
#define PC_CUTS 50
#endif

static void test_power_cuts_lose_nothing(void **state)
{
    (void)state;
    pc_totals t;
    pc_scene *s = pc_scene_new(1, 4);
    assert_non_null(s);
    if (pc_run(s, PC_CUTS, 100, 1, stderr, &t) != 0) it_fail("the calibration cycle failed (scratch %s)", pc_scene_dir(s));
    fprintf(stderr, "powercut: %d cuts (%d before the daemon was ready) in %.1f s: %ld events acknowledged, %ld lost, "
            "%d corrupt, %d failed starts\n",
            t.cuts, t.before_ready, t.seconds, t.acked, t.lost, t.corrupt, t.failed_starts);
    if (t.failure[0]) {
        fprintf(stderr, "powercut: FAILED %s\n", t.failure);
        it_fail("%.480s", t.failure);
    }
    pc_scene_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_cuts_lose_nothing),
    };
    if (pc_skip_reason()) {
        printf("skipped: %s\n", pc_skip_reason());
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
