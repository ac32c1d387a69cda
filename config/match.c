/*
** match.c — a target's label matchers: parsing one "match =" value
** (pdr_matcher_parse, called by config/config.c while it loads a [target]),
** the guard that refuses a regex glibc's regcomp() would blow up on
** (regex_cost), and pdr_target_matches, which normalize calls at run time
** for every alert and target (agent/normalize.c). A matcher is immutable once
** parsed; pdr_target_matches only reads it, so any number of threads may call
** it on the same config at once (regexec() on a compiled regex_t is
** thread-safe).
*/
#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the regex guard ---------------------------------------------------- */

static int is_label_start(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int is_label_char(int ch)
{
    return is_label_start(ch) || (ch >= '0' && ch <= '9');
}

#define MATCHER_ALLOWED \
    "label=value, label!=value, label=~regex or label!~regex, label as [a-zA-Z_][a-zA-Z0-9_]*"

/* glibc's regcomp() expands a repetition by copying the repeated tree ("x+"
** becomes "xx*", "x{2,5}" five copies of x), so nested repetitions grow
** exponentially, and stacked ones ("a+?+?+?", undefined in POSIX anyway)
** also make its epsilon closure exponential in time: "a++++++++++++++++++++++"
** takes gigabytes and "a+?+?+?+?+?+?+?+?+?+?" a minute (both found by
** tests/fuzz/fuzz_config). regex_cost() refuses stacked repetitions and
** estimates the expanded size the way glibc expands, saturating at
** REGEX_MAX_NODES + 1, so such a regex is refused before regcomp() sees it.
** Real matchers ("db|web", ".*:9100", "node-[0-9]{1,3}") cost tens of nodes;
** "(a+)?" says what "a+?" would. */
#define REGEX_MAX_NODES 1000
#define REGEX_MAX_DEPTH 64

static size_t cost_add(size_t a, size_t b)
{
    return a + b > REGEX_MAX_NODES ? REGEX_MAX_NODES + 1 : a + b;
}

static size_t cost_mul(size_t a, size_t b)
{
    if (a && b > (REGEX_MAX_NODES + 1) / a) return REGEX_MAX_NODES + 1;
    return cost_add(0, a * b);
}

/* A bound "{n}", "{n,}" or "{n,m}" at p: its copy count (the largest of n
** and m, plus one for an open end) and its length; 0 when p holds none (then
** regcomp() decides what '{' is). */
static size_t regex_bound(const char *p, size_t *len)
{
    const char *q = p + 1;
    size_t n = 0, m = 0;
    int digits = 0, comma = 0;
    for (; *q && *q != '}'; q++) {
        if (*q == ',' && !comma) {
            comma = 1;
        } else if (*q >= '0' && *q <= '9') {
            size_t *x = comma ? &m : &n;
            *x = *x > 100000 ? *x : *x * 10 + (size_t)(*q - '0');
            digits = 1;
        } else {
            return 0;
        }
    }
    if (*q != '}' || !digits) return 0;
    *len = (size_t)(q - p);
    return (m > n ? m : n) + 1;
}

static size_t regex_cost(const char *re)
{
    size_t total[REGEX_MAX_DEPTH], last[REGEX_MAX_DEPTH], factor, len;
    int depth = 0, after_repeat = 0, repeat;

    total[0] = last[0] = 0;
    for (const char *p = re; *p; p++, after_repeat = repeat) {
        factor = 0;
        repeat = *p == '*' || *p == '?' || *p == '+' || (*p == '{' && regex_bound(p, &len));
        if (repeat && after_repeat) return REGEX_MAX_NODES + 1;
        switch (*p) {
        case '(':
            if (depth + 1 >= REGEX_MAX_DEPTH) return REGEX_MAX_NODES + 1;
            depth++;
            total[depth] = last[depth] = 0;
            continue;
        case ')':
            if (depth == 0) break;   /* a literal ')' */
            depth--;
            last[depth] = cost_add(total[depth + 1], 1);
            total[depth] = cost_add(total[depth], last[depth]);
            continue;
        case '|':
            total[depth] = cost_add(total[depth], 1);
            last[depth] = 0;
            continue;
        case '*':
        case '?':
            continue;                /* no copies */
        case '+':
            factor = 2;
            break;
        case '{':
            factor = regex_bound(p, &len);
            if (factor) p += len;
            break;
        case '[':                    /* a bracket expression is one node */
            p++;
            if (*p == '^') p++;
            if (*p == ']') p++;
            while (*p && *p != ']') {
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char close = p[1];
                    p += 2;
                    while (*p && !(*p == close && p[1] == ']')) p++;
                    if (*p) p++;
                }
                if (*p) p++;
            }
            if (!*p) p--;
            break;
        case '\\':
            if (p[1]) p++;
            break;
        default:
            break;
        }
        if (factor) {
            total[depth] = cost_add(total[depth], cost_mul(last[depth], factor - 1));
            last[depth] = cost_mul(last[depth], factor);
        } else {
            total[depth] = cost_add(total[depth], 1);
            last[depth] = 1;
        }
    }
    while (depth > 0) {   /* unbalanced: regcomp() reports it */
        depth--;
        total[depth] = cost_add(total[depth], total[depth + 1]);
    }
    return total[0];
}

/* ---- parsing a matcher -------------------------------------------------- */

pdr_rc pdr_matcher_parse(const char *spec, pdr_matcher *m, char *why, size_t whysz)
{
    static const struct { const char *text; pdr_match_op op; } ops[] = {
        {"=~", PDR_MATCH_RE}, {"!~", PDR_MATCH_NRE}, {"!=", PDR_MATCH_NE}, {"=", PDR_MATCH_EQ}
    };
    const char *p = spec, *label, *v;
    size_t label_len, v_len;
    pdr_match_op op = (pdr_match_op)0;
    char *anchored = NULL;
    pdr_rc rc = PDR_ERR_INVALID;
    int rerr;

    memset(m, 0, sizeof *m);
    while (*p == ' ' || *p == '\t') p++;
    label = p;
    while (is_label_char((unsigned char)*p)) p++;
    label_len = (size_t)(p - label);
    while (*p == ' ' || *p == '\t') p++;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t n = strlen(ops[i].text);
        if (!strncmp(p, ops[i].text, n)) {
            op = ops[i].op;
            p += n;
            break;
        }
    }
    if (!op || !label_len || !is_label_start((unsigned char)label[0])) {
        snprintf(why, whysz, "match%s%s: %s; allowed: %s", *spec ? " = " : "", spec,
                 *spec ? "not a matcher" : "empty value", MATCHER_ALLOWED);
        return PDR_ERR_INVALID;
    }
    while (*p == ' ' || *p == '\t') p++;
    v = p;
    v_len = strlen(v);
    if (v_len >= 2 && v[0] == '"' && v[v_len - 1] == '"') {
        v++;
        v_len -= 2;
    }

    m->op = op;
    m->label = strndup(label, label_len);
    m->value = strndup(v, v_len);
    if (!m->label || !m->value) goto nomem;
    if (op == PDR_MATCH_RE || op == PDR_MATCH_NRE) {
        size_t n;
        if (regex_cost(m->value) > REGEX_MAX_NODES) {
            snprintf(why, whysz,
                     "match = %s: regex too complex (stacked repetitions like a+?, or repetitions "
                     "that expand to more than %d nodes); allowed: a POSIX extended regular "
                     "expression, each repetition on its own atom or group", spec, REGEX_MAX_NODES);
            goto fail;
        }
        n = strlen(m->value) + sizeof "^()$";
        anchored = pdr_malloc(n);
        if (!anchored) goto nomem;
        snprintf(anchored, n, "^(%s)$", m->value);
        rerr = regcomp(&m->re, anchored, REG_EXTENDED | REG_NOSUB);
        if (rerr != 0) {
            char re_why[256];
            regerror(rerr, &m->re, re_why, sizeof re_why);
            snprintf(why, whysz, "match = %s: bad regex: %s; allowed: a POSIX extended regular expression",
                     spec, re_why);
            goto fail;
        }
    }
    free(anchored);
    return PDR_OK;
nomem:
    rc = PDR_ERR_NOMEM;
fail:
    free(anchored);
    free(m->label);
    free(m->value);
    memset(m, 0, sizeof *m);
    return rc;
}

void pdr_matcher_free(pdr_matcher *m)
{
    if (m->op == PDR_MATCH_RE || m->op == PDR_MATCH_NRE) regfree(&m->re);
    free(m->label);
    free(m->value);
}

/* ---- matching ----------------------------------------------------------- */

int pdr_target_matches(const pdr_target *t, pdr_label_get_fn get, void *ctx)
{
    if (!t) return 0;
    for (size_t i = 0; i < t->n_matchers; i++) {
        const pdr_matcher *m = &t->matchers[i];
        const char *v = get ? get(ctx, m->label) : NULL;
        int hold;
        if (!v) v = "";
        switch (m->op) {
        case PDR_MATCH_EQ: hold = strcmp(v, m->value) == 0; break;
        case PDR_MATCH_NE: hold = strcmp(v, m->value) != 0; break;
        case PDR_MATCH_RE: hold = regexec(&m->re, v, 0, NULL, 0) == 0; break;
        case PDR_MATCH_NRE: hold = regexec(&m->re, v, 0, NULL, 0) != 0; break;
        default: hold = 0; break;
        }
        if (!hold) return 0;
    }
    return 1;
}
