/*
** log.h — logfmt lines on stderr: `ts=… level=… msg="…" key=value …`, and
** the one escaping of untrusted text that pdrelay writes to a terminal, a log
** or syslog (pdr_log_escape: the CLI's tables and JSON use it too).
**
** One process-wide level (from [agent] log_level, or -v). Values are quoted
** and escaped as logfmt wants (see pdr_log_escape, PDR_ESC_LOGFMT). A line is
** always valid UTF-8 without control characters but its final newline. Keys
** are written with every byte outside [A-Za-z0-9_.-] as '_'. Callers never
** pass a whole routing key: use pdr_redact() (a test greps the log for whole
** keys).
**
** Thread-safe: a line is formatted into a bounded buffer and written with
** one write(2), so lines of several threads do not interleave. A line over
** 4 KB is cut, on a character boundary, and ends with "…".
*/
#ifndef PDR_LOG_H
#define PDR_LOG_H

#include <stddef.h>

#include "config.h"

/* Main thread (at start, on SIGHUP), while other threads log: the level is
** one int that pdr_log and pdr_log_enabled read without a lock. */
void pdr_log_set_level(pdr_log_level level);

/* Also send every line to syslog(3) (facility daemon, ident "pdrelay"), for
** appliances whose init collects syslog rather than stderr ([agent] syslog).
** Syslog gets the same escaped line, from "level=" on. Main thread (at
** start, on SIGHUP), while other threads log: a flag read without a lock;
** syslog(3) itself is thread-safe. */
void pdr_log_set_syslog(int on);
/* Thread-safe. */
int pdr_log_enabled(pdr_log_level level);

/* For tests: write the lines to fd instead of stderr (2; a negative fd
** restores stderr). Before other threads log. */
void pdr_log_set_fd(int fd);

/* Logs msg with fields given as alternating key and value strings, ended by
** NULL: pdr_log(PDR_LOG_INFO, "delivered", "key", red, "dedup_key", dk, NULL).
** A NULL value is skipped. Thread-safe (every thread logs). */
void pdr_log(pdr_log_level level, const char *msg, ...) __attribute__((sentinel));

/* ---- escaping ------------------------------------------------------------
**
** What is escaped, in every mode:
**   - C0 controls (0x00-0x1F) and DEL (0x7F);
**   - C1 controls (U+0080-U+009F, bytes C2 80..C2 9F), the line and
**     paragraph separators U+2028 U+2029, the invisible characters (U+00AD,
**     U+061C, U+200B-U+200F, U+2060-U+2064, U+FEFF, the tags
**     U+E0000-U+E007F) and the bidirectional overrides
**     and isolates U+202A-U+202E, U+2066-U+2069 (they reorder what a
**     terminal shows);
**   - every byte that is not part of well-formed UTF-8.
** Every other character, ASCII or not ("é", "日本"), is copied as it is.
**
** PDR_ESC_TEXT (the CLI's tables) and PDR_ESC_LOGFMT (a log value, between
** double quotes): \n \r \t as such; other C0 and DEL as \xNN (ESC: \x1b);
** C1 and the other characters above as \uXXXX (U+009B: \u009b); an invalid
** byte as \xNN (0xFF: \xff); a backslash as \\ so that the escapes cannot be
** forged. LOGFMT also escapes '"' as \".
**
** PDR_ESC_JSON (text that cJSON printed, which escaped C0, '"' and '\'
** inside strings and uses tabs and newlines between them): C0, '"' and '\'
** are copied; DEL, C1 and the other characters above become \uXXXX; an
** invalid byte becomes \ufffd (U+FFFD, the replacement character), so the
** output is valid UTF-8 JSON.
*/
typedef enum pdr_esc_mode {
    PDR_ESC_TEXT,
    PDR_ESC_LOGFMT,
    PDR_ESC_JSON
} pdr_esc_mode;

/* Escapes len bytes of s into out (outsz bytes, the NUL included; out is
** NUL-terminated when outsz > 0). Only whole escapes and whole characters are
** written: when out is too small the output stops before the first that does
** not fit. Returns the bytes written (the NUL not counted); *used (may be
** NULL) gets the bytes of s consumed, len when everything fit. 6 * len + 1
** bytes always suffice. Thread-safe (no shared state). */
size_t pdr_log_escape(char *out, size_t outsz, const char *s, size_t len, pdr_esc_mode mode,
                      size_t *used);

/* The escaped copy of the string s (NULL: "") in a malloc'd string; NULL
** when out of memory. */
char *pdr_log_escape_dup(const char *s, pdr_esc_mode mode);

#endif /* PDR_LOG_H */
