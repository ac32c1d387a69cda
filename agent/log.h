/*
** log.h — logfmt lines on stderr: `ts=… level=… msg="…" key=value …`.
**
** One process-wide level (from [agent] log_level, or -v). Values are quoted
** and escaped as logfmt wants. Callers never pass a whole routing key: use
** pdr_redact() (a test greps the log for whole keys).
**
** Thread-safe: a line is formatted into a bounded buffer and written with
** one write(2), so lines of several threads do not interleave.
*/
#ifndef PDR_LOG_H
#define PDR_LOG_H

#include "config.h"

void pdr_log_set_level(pdr_log_level level);

/* Also send every line to syslog(3) (facility daemon, ident "pdrelay"), for
** appliances whose init collects syslog rather than stderr ([agent] syslog). */
void pdr_log_set_syslog(int on);
int pdr_log_enabled(pdr_log_level level);

/* Logs msg with fields given as alternating key and value strings, ended by
** NULL: pdr_log(PDR_LOG_INFO, "delivered", "key", red, "dedup_key", dk, NULL).
** A NULL value is skipped. */
void pdr_log(pdr_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif /* PDR_LOG_H */
