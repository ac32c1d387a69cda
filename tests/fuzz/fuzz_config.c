/*
** fuzz_config.c — libFuzzer target for pdr_config_load(): the input is
** written to a temp file (created once, rewritten per input) and loaded;
** the config or the error list is then released. Checks that a refusal has
** reasons and that a loaded config is whole.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[] = "/tmp/pdrelay-fuzz-config-XXXXXX";
static int fd = -1;

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = mkstemp(path);
    if (fd < 0) abort();
    atexit(remove_file);
    pdr_log_set_level(PDR_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pdr_config *cfg = NULL;
    pdr_config_errors errs = {0};

    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    pdr_rc rc = pdr_config_load(path, &cfg, &errs);
    if (rc == PDR_OK) {
        if (!cfg || errs.n) abort();
        for (size_t i = 0; i < cfg->n_targets; i++)
            if (strlen(cfg->targets[i].routing_key) != PDR_ROUTING_KEY_LEN) abort();
    } else if (rc == PDR_ERR_CONFIG) {
        if (cfg || !errs.n) abort();
    } else if (rc != PDR_ERR_IO && rc != PDR_ERR_NOMEM) {
        abort();
    }
    pdr_config_destroy(cfg);
    pdr_config_errors_cleanup(&errs);
    return 0;
}
