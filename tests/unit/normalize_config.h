/*
** normalize_config.h — the config the normalize tests share (test_normalize.c,
** test_differential.c): three targets, loaded once per group with
** pdr_config_load() from a temp file. Header-only: each test program is one
** translation unit.
*/
#ifndef PDR_NORM_CONFIG_H
#define PDR_NORM_CONFIG_H

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "testutil.h"

#define KEY_A "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
#define KEY_B "Zz9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k"
#define KEY_C "C3c3C3c3C3c3C3c3C3c3C3c3C3c3C3c3"

/* Targets: prod (env=prod), db (team db or storage), disk (alertname=DiskFull). */
static const char config_text[] =
    "[agent]\n"
    "source = edge-gw-1\n"
    "default_severity = warning\n"
    "[target prod]\n"
    "routing_key = " KEY_A "\n"
    "match = env=prod\n"
    "[target db]\n"
    "routing_key = " KEY_B "\n"
    "match = team=~db|storage\n"
    "[target disk]\n"
    "routing_key = " KEY_C "\n"
    "match = alertname=DiskFull\n";

static pdr_config *cfg;
static char *cfg_dir;

static int group_setup(void **state)
{
    (void)state;
    pdr_config_errors errs = {0};
    pdr_log_set_level(PDR_LOG_WARN);   /* no "alerts unrouted" line per test body */
    cfg_dir = tu_mkdtemp();
    char *path = tu_printf("%s/pdrelay.ini", cfg_dir);
    tu_write_file(path, config_text);
    pdr_rc rc = pdr_config_load(path, &cfg, &errs);
    for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "config: %s\n", errs.msgs[i]);
    pdr_config_errors_cleanup(&errs);
    free(path);
    return rc == PDR_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    pdr_config_destroy(cfg);
    tu_rmrf(cfg_dir);
    free(cfg_dir);
    return 0;
}

#endif /* PDR_NORM_CONFIG_H */
