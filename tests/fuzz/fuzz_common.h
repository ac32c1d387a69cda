/*
** fuzz_common.h — what the libFuzzer targets share: a small fixed config
** with two targets, written to a temp file once and loaded with
** pdr_config_load() (the fuzzers then exercise the same matching code as
** the daemon). Header-only so each fuzzer stays one translation unit.
*/
#ifndef PDR_FUZZ_COMMON_H
#define PDR_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static const char fuzz_config_text[] =
    "[agent]\n"
    "source = fuzz-host\n"
    "log_level = error\n"
    "[target prod]\n"
    "routing_key = A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6\n"
    "match = env=prod\n"
    "[target db]\n"
    "routing_key = Zz9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k\n"
    "match = team=~db|storage\n"
    "match = severity!=noise\n";

/* Loads the fixed config; aborts on failure (the fuzzer must not run
** without it). */
static pdr_config *fuzz_config(void)
{
    char path[] = "/tmp/pdrelay-fuzz-XXXXXX";
    pdr_config *cfg = NULL;
    int fd = mkstemp(path);
    if (fd < 0) abort();
    if (write(fd, fuzz_config_text, sizeof fuzz_config_text - 1) != (ssize_t)(sizeof fuzz_config_text - 1))
        abort();
    close(fd);
    if (pdr_config_load(path, &cfg, NULL) != PDR_OK) abort();
    unlink(path);
    /* Unrouted alerts log at info: keep the fuzzer's output readable. */
    pdr_log_set_level(PDR_LOG_ERROR);
    return cfg;
}

#endif
