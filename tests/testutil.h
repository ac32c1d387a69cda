/*
** testutil.h — helpers shared by the test programs: scratch directories, a
** fake clock, files, and running the real pdrelay binary with its output
** captured. cmocka must be included by the test itself (after the usual
** <stdarg.h> <stddef.h> <setjmp.h> <stdint.h>).
*/
#ifndef PDR_TESTUTIL_H
#define PDR_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "pdr.h"

/* A fresh directory under $TMPDIR (or /tmp), malloc'd path. Aborts on failure. */
char *tu_mkdtemp(void);
/* rm -rf path (best effort). */
void tu_rmrf(const char *path);

/* Writes content to path (mode 0644), aborting on failure. */
void tu_write_file(const char *path, const char *content);
/* Reads a whole file; malloc'd, NUL-terminated; NULL if unreadable. */
char *tu_read_file(const char *path, size_t *len_out);

/* The fake clock: installs itself as pdrelay's clock at the given time. */
void tu_clock_install(int64_t now_ms);
void tu_clock_advance(int64_t delta_ms);
int64_t tu_clock_get(void);

/* Runs argv (argv[0] is a path, or a name looked up in $PATH; NULL-terminated) with stdin_data (may be
** NULL: empty stdin) and captures stdout and stderr (malloc'd, NUL-terminated;
** pass NULL to discard). Returns the exit code, or 128+signal when killed. */
int tu_run(const char *const argv[], const char *stdin_data, char **out, char **err);

/* Opens the outbox of data_dir (created if missing) with at most max_events
** rows (0: the default), failing the running cmocka test if it cannot. The
** caller closes it with db_close(). */
struct db;
struct db *tu_db_open(const char *data_dir, int64_t max_events);

/* Queues one event straight into the outbox of data_dir (opened and closed
** again; a running daemon notices the commit), failing the running cmocka
** test unless it is stored (PDR_OK). A trigger's body is a valid PagerDuty
** event: summary, source "gw" and severity, its urgency that severity's
** (pdr_urgency_of_severity); any other action's body is routing_key,
** event_action and dedup_key only, its urgency inherited (severity and
** summary not read: pass NULL). fingerprint may be NULL. */
void tu_push_event(const char *data_dir, const char *key, pdr_action action, const char *dedup_key,
                   const char *fingerprint, const char *severity, const char *summary);

/* The path of the pdrelay binary under test. */
const char *tu_pdrelay(void);

/* The argv that runs argv (NULL-terminated) as a child. A cross build's
** pdrelay cannot be exec'd where binfmt_misc does not run it: then
** $PDR_TEST_EMULATOR (set by ctest for cross builds, e.g. "qemu-aarch64 -L
** /usr/aarch64-linux-gnu"; words split on blanks) is put in front of argv when
** argv[0] is tu_pdrelay(). Otherwise argv itself. Free with tu_argv_free. */
const char **tu_spawn_argv(const char *const argv[]);
void tu_argv_free(const char **spawn_argv, const char *const argv[]);

/* snprintf into a malloc'd string. */
char *tu_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Does haystack contain needle? (NULL haystack: no) */
int tu_contains(const char *haystack, const char *needle);

#endif
