/*
** main.c — pdrelay's entry point: dispatches to the commands of cli.h.
** The only file outside the core library.
*/
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <mbedtls/version.h>
#include <microhttpd.h>
#include <sqlite3.h>

#include "cli.h"

int cli_version(void)
{
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    char mbed[64] = "";
#if defined(MBEDTLS_VERSION_C)
    mbedtls_version_get_string_full(mbed);
#else
    snprintf(mbed, sizeof mbed, "%s", MBEDTLS_VERSION_STRING_FULL);
#endif
    printf("pdrelay %s\n", PDR_VERSION);
    printf("  SQLite %s\n", sqlite3_libversion());
    printf("  libcurl %s (TLS backend: %s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "none");
    printf("  %s\n", mbed);
    printf("  cJSON %s\n", cJSON_Version());
#ifdef PDR_MHD_PATCHES
    /* Set by CMakeLists.txt when the linked libmicrohttpd carries pdrelay's patches. */
    printf("  libmicrohttpd %s (pdrelay patches: %s)\n", MHD_get_version(), PDR_MHD_PATCHES);
#else
    printf("  libmicrohttpd %s\n", MHD_get_version());
#endif
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd) {
        cli_help(stderr, NULL);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) return cli_version();
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) return cli_help(stdout, NULL);
    if (!strcmp(cmd, "help")) return cli_help(stdout, argc > 2 ? argv[2] : NULL);
    if (!strcmp(cmd, "run")) return cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "send")) return cli_send(argc - 1, argv + 1);
    if (!strcmp(cmd, "queue")) return cli_queue(argc - 1, argv + 1);
    if (!strcmp(cmd, "config")) return cli_config(argc - 1, argv + 1);
    /* Hidden: the build makes the man page with it (see CMakeLists.txt). */
    if (!strcmp(cmd, "man")) return cli_man(stdout);
    fprintf(stderr, "pdrelay: unknown command '%s'; commands: run, send, queue, config, help "
                    "(see 'pdrelay --help')\n", cmd);
    return CLI_EXIT_USAGE;
}
