/*
** match.h — parsing and freeing one label matcher (config/match.c), for
** config/config.c, which owns the targets that hold them. What the rest of
** pdrelay calls, pdr_target_matches, is declared in config/config.h.
*/
#ifndef PDR_MATCH_H
#define PDR_MATCH_H

#include "config.h"

#include <stddef.h>

/* Parses one match value, spec ("label=value", "label!=value", "label=~regex"
** or "label!~regex"; a value in double quotes has them removed; a regex is
** compiled anchored at both ends) into *m. PDR_OK: *m is the caller's, freed
** with pdr_matcher_free. PDR_ERR_INVALID: why holds the whole message
** ("match = SPEC: what is wrong; allowed: …", without FILE:LINE). PDR_ERR_NOMEM.
** On failure *m holds nothing to free. */
pdr_rc pdr_matcher_parse(const char *spec, pdr_matcher *m, char *why, size_t whysz);

/* Frees what pdr_matcher_parse allocated in *m (not m itself). */
void pdr_matcher_free(pdr_matcher *m);

#endif
