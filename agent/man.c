/*
** man.c — `pdrelay man`: the pdrelay(1) man page in roff, generated from the
** help texts of help.c, so that --help and the man page cannot disagree, and
** its CONFIGURATION section from the key table of config/config.c.
** The build runs it to make pdrelay.1.gz; the command is not in --help.
**
** The help texts are plain text laid out for a terminal; this file reads
** their layout back:
**   - "Usage: …" (first line)          SYNOPSIS, and the subsection name
**   - an unindented line               prose, filled (a blank line ends a
**                                      paragraph); one ending in ':' and
**                                      followed by a list is a bold heading
**   - a run of indented lines          a two-column list ("TAG  text"), one
**                                      .TP per tag; its text column is the one
**                                      most of its lines start their text at,
**                                      and lines indented to it continue the
**                                      text above. A run with no such column
**                                      is copied as is (.nf)
** Text is escaped for roff: '\' and '-' always, '.' and '\'' at the start of
** a line (they would be requests), non-ASCII as \[uXXXX] so the page does not
** depend on the formatter's input encoding.
*/
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pdr.h"

/* A help text line is at most ~100 characters; a list this long means the
** layout was not understood, and the run is copied as is instead. */
#define MAN_MAX_LIST 64

/* The commands with a subsection, in help's order. */
static const char *const man_commands[] = {"run", "send", "queue", "config"};

typedef struct man_line {
    const char *s;
    size_t n;
} man_line;

/* Writes s[0..n) escaped for roff, as the start of an input line. */
static void man_put(FILE *out, const char *s, size_t n)
{
    size_t i = 0;

    if (n && (s[0] == '.' || s[0] == '\'')) fputs("\\&", out);
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            fputs("\\e", out);
        } else if (c == '-') {
            fputs("\\-", out);
        } else if (c < 0x80) {
            fputc(c, out);
        } else {
            /* UTF-8 to a code point; a malformed sequence becomes '?'. */
            unsigned long cp;
            size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
            size_t k;
            if (!len || i + len > n) {
                fputc('?', out);
                i++;
                continue;
            }
            cp = c & (0x7fu >> len);
            for (k = 1; k < len; k++) {
                unsigned char cc = (unsigned char)s[i + k];
                if ((cc & 0xc0) != 0x80) break;
                cp = cp << 6 | (cc & 0x3fu);
            }
            if (k < len) {
                fputc('?', out);
                i++;
                continue;
            }
            fprintf(out, "\\[u%04lX]", cp);
            i += len;
            continue;
        }
        i++;
    }
}

static void man_put_line(FILE *out, const char *s, size_t n)
{
    man_put(out, s, n);
    fputc('\n', out);
}

static size_t man_indent(const man_line *l)
{
    size_t i = 0;
    while (i < l->n && l->s[i] == ' ') i++;
    return i;
}

/* Drops leading and trailing blanks of s[0..n) in place. */
static void man_trim(const char **s, size_t *n)
{
    while (*n && **s == ' ') (*s)++, (*n)--;
    while (*n && (*s)[*n - 1] == ' ') (*n)--;
}

/* The text column of a run of list lines: the column most lines start their
** text at after a gap of two or more blanks. 0 when no line has such a gap. */
static size_t man_list_column(const man_line *lines, size_t n)
{
    size_t cols[MAN_MAX_LIST], best = 0, best_count = 0;

    for (size_t i = 0; i < n; i++) {
        size_t p, ind = man_indent(&lines[i]);
        cols[i] = 0;
        for (p = ind + 2; p < lines[i].n; p++)
            if (lines[i].s[p - 1] == ' ' && lines[i].s[p - 2] == ' ' && lines[i].s[p] != ' ') {
                cols[i] = p;
                break;
            }
    }
    for (size_t i = 0; i < n; i++) {
        size_t count = 0;
        if (!cols[i]) continue;
        for (size_t j = 0; j < n; j++) count += cols[j] == cols[i];
        if (count > best_count) best = cols[i], best_count = count;
    }
    return best;
}

/* A run of indented lines: .TP per tag, or .nf when it is not a list. */
static void man_list(FILE *out, const man_line *lines, size_t n)
{
    size_t col = n <= MAN_MAX_LIST ? man_list_column(lines, n) : 0;

    if (!col) {
        fputs(".PP\n.nf\n", out);
        for (size_t i = 0; i < n; i++) man_put_line(out, lines[i].s, lines[i].n);
        fputs(".fi\n", out);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = lines[i].s, *t;
        size_t len = lines[i].n, tn;
        if (man_indent(&lines[i]) >= col) {       /* continues the text above */
            man_trim(&s, &len);
            man_put_line(out, s, len);
            continue;
        }
        fputs(".TP\n\\fB", out);
        if (len > col && s[col - 1] == ' ' && s[col] != ' ') {
            t = s;
            tn = col;
            man_trim(&t, &tn);
            man_put(out, t, tn);
            fputs("\\fR\n", out);
            s += col;
            len -= col;
            man_trim(&s, &len);
            man_put_line(out, s, len);
        } else {                                  /* a tag too long for the column */
            man_trim(&s, &len);
            man_put(out, s, len);
            fputs("\\fR\n", out);
        }
    }
}

static const char *man_next_line(const char *p, man_line *l)
{
    const char *nl = strchr(p, '\n');
    l->s = p;
    l->n = nl ? (size_t)(nl - p) : strlen(p);
    return nl ? nl + 1 : p + l->n;
}

static int man_starts(const man_line *l, const char *prefix)
{
    size_t k = strlen(prefix);
    return l->n >= k && !memcmp(l->s, prefix, k);
}

/* Renders text (a help text without its "Usage:" line). A paragraph (lines
** up to a blank line) that starts with skip is left out; with only set, only
** the paragraphs starting with it are rendered, without that heading line. */
static void man_render(FILE *out, const char *text, const char *skip, const char *only)
{
    man_line list[MAN_MAX_LIST + 1];
    const char *p = text;
    size_t nlist = 0;
    int para_start = 1, in_para = 0, keep = 1;

    while (*p) {
        man_line l;
        p = man_next_line(p, &l);
        if (para_start && l.n) {
            keep = (!skip || !man_starts(&l, skip)) && (!only || man_starts(&l, only));
            para_start = 0;
            if (keep && only && l.n == strlen(only)) continue;
        }
        if (!keep) {
            if (!l.n) para_start = 1;
            continue;
        }
        if (l.n && l.s[0] == ' ') {
            if (nlist < MAN_MAX_LIST + 1) list[nlist++] = l;
            continue;
        }
        if (nlist) {
            man_list(out, list, nlist);
            nlist = 0;
            in_para = 0;
        }
        if (!l.n) {
            para_start = 1;
            in_para = 0;
            continue;
        }
        if (!in_para) fputs(".PP\n", out);
        in_para = 1;
        if (l.s[l.n - 1] == ':' && *p == ' ') {   /* a heading of the list below */
            fputs("\\fB", out);
            man_put(out, l.s, l.n);
            fputs("\\fR\n", out);
            continue;
        }
        man_put_line(out, l.s, l.n);
    }
    if (nlist) man_list(out, list, nlist);
}

/* The text after the "Usage:" line (and the blank line after it). */
static const char *man_body(const char *text)
{
    const char *p = text;
    if (strncmp(p, "Usage:", 6)) return p;
    p = strchr(p, '\n');
    if (!p) return "";
    p++;
    if (*p == '\n') p++;
    return p;
}

/* The "Usage:" line of text split into the command ("pdrelay config check":
** the words before the first option or placeholder) and its arguments. */
static void man_usage(const char *text, man_line *name, man_line *args)
{
    man_line l;
    size_t i = 0, end = 0;

    man_next_line(text, &l);
    if (man_starts(&l, "Usage: ")) l.s += 7, l.n -= 7;
    while (i < l.n) {
        size_t w = i;
        while (w < l.n && l.s[w] != ' ') w++;
        if (l.s[i] == '[' || l.s[i] == '-' || (l.s[i] >= 'A' && l.s[i] <= 'Z')) break;
        end = w;
        i = w < l.n ? w + 1 : w;
    }
    name->s = l.s;
    name->n = end;
    args->s = l.s + i;
    args->n = i < l.n ? l.n - i : 0;
}

static const char man_header[] =
".\\\" pdrelay(1), generated by `pdrelay man` from the --help texts (agent/help.c)\n"
".\\\" and the key table (config/config.c).\n"
".\\\" Do not edit: change the help text or the key table instead.\n";

static const char man_name[] =
".SH NAME\n"
"pdrelay \\- store\\-and\\-forward relay of alerts to the PagerDuty Events API v2\n";

static const char man_tail[] =
".SH FILES\n"
".TP\n"
".I " CLI_DEFAULT_CONFIG "\n"
"The configuration file when neither \\fB\\-c\\fR nor \\fBPDRELAY_CONFIG\\fR names one.\n"
".TP\n"
".I /var/lib/pdrelay/pdrelay.db\n"
"The outbox, a SQLite database (with its \\-wal and \\-shm files), at\n"
"\\fIdata_dir\\fR/pdrelay.db; /var/lib/pdrelay is the data_dir of the packaged configuration.\n"
".TP\n"
".I /lib/systemd/system/pdrelay.service\n"
"The systemd unit (Type=notify: pdrelay reports readiness, reloads and stopping\n"
"through \\fB$NOTIFY_SOCKET\\fR).\n"
".TP\n"
".I /etc/init.d/pdrelay\n"
"The init script for systems without systemd.\n"
".SH ENVIRONMENT\n"
".TP\n"
".B PDRELAY_CONFIG\n"
"The configuration file when \\fB\\-c\\fR is not given.\n"
".TP\n"
".B NOTIFY_SOCKET\n"
"Set by systemd; \\fBpdrelay run\\fR sends READY=1, RELOADING=1 and STOPPING=1 to it.\n"
".SH SIGNALS\n"
"Taken by \\fBpdrelay run\\fR (see above):\n"
".TP\n"
".B SIGTERM, SIGINT\n"
"Stop; every event PagerDuty has not confirmed stays queued.\n"
".TP\n"
".B SIGHUP\n"
"Reload the configuration file (\\fBsystemctl reload pdrelay\\fR sends it).\n"
".TP\n"
".B SIGUSR1\n"
"The uplink is back: probe PagerDuty now instead of at the backoff\n"
"(\\fBpdrelay queue kick\\fR sends it). Never stops the daemon.\n"
".SH SEE ALSO\n"
".BR systemctl (1),\n"
".BR journalctl (1),\n"
".BR sqlite3 (1);\n"
"/usr/share/doc/pdrelay/README.md for the configuration reference, the endpoints\n"
"and the delivery guarantees.\n";

/* CONFIGURATION: every key of the table, "[section] key = default", its
** description, what it allows and what SIGHUP does with it. */
static void man_config(FILE *out)
{
    size_t n;
    const pdr_config_key *keys = pdr_config_keys(&n);
    char allowed[256];

    static const char intro[] =
        "The configuration file is an INI file; every key has a default, so an empty file is valid. "
        "Durations take a unit: ms, s, m, h, d (0 alone means zero). pdrelay config keys prints this "
        "list; a key that SIGHUP does not apply is read once, at start.";

    fputs(".SH CONFIGURATION\n", out);
    man_put_line(out, intro, strlen(intro));
    for (size_t i = 0; i < n; i++) {
        const pdr_config_key *k = &keys[i];
        const char *def = !k->def ? "(none)" : *k->def ? k->def : "(empty)";
        fputs(".TP\n\\fB", out);
        fprintf(out, "[%s%s] ", k->section, strcmp(k->section, "target") ? "" : " NAME");
        man_put(out, k->key, strlen(k->key));
        fputs("\\fR = ", out);
        man_put_line(out, def, strlen(def));
        man_put_line(out, k->desc, strlen(k->desc));
        fputs(".br\n", out);
        fputs("Allowed: ", out);
        pdr_config_key_allowed(k, allowed, sizeof allowed);
        man_put(out, allowed, strlen(allowed));
        fputs(k->reload == PDR_RELOAD_APPLIES ? ". SIGHUP applies it.\n"
              : k->reload == PDR_RELOAD_KEEP ? ". Needs a restart (a reload keeps the running value).\n"
                                             : ". Needs a restart.\n", out);
    }
}

int cli_man(FILE *out)
{
    man_line name, args;

    fputs(man_header, out);
    fprintf(out, ".TH PDRELAY 1 \"\" \"pdrelay %s\" \"User Commands\"\n", PDR_VERSION);
    /* Ragged right and no hyphenation: option names and paths must not be split. */
    fputs(".ad l\n.nh\n", out);
    fputs(man_name, out);

    fputs(".SH SYNOPSIS\n", out);
    for (size_t i = 0; i < sizeof man_commands / sizeof man_commands[0]; i++) {
        man_usage(cli_help_text(man_commands[i]), &name, &args);
        fputs(i ? ".br\n.B " : ".B ", out);
        man_put_line(out, name.s, name.n);
        if (args.n) man_put_line(out, args.s, args.n);
    }
    fputs(".br\n.B pdrelay help\n[COMMAND]\n.br\n.B pdrelay \\-\\-version\n", out);

    fputs(".SH DESCRIPTION\n", out);
    man_render(out, man_body(cli_help_text(NULL)), "Exit status:", NULL);

    fputs(".SH COMMANDS\n", out);
    for (size_t i = 0; i < sizeof man_commands / sizeof man_commands[0]; i++) {
        const char *text = cli_help_text(man_commands[i]);
        man_usage(text, &name, &args);
        fputs(".SS \"", out);
        man_put(out, name.s, name.n);
        fputs("\"\n", out);
        man_render(out, man_body(text), NULL, NULL);
    }

    man_config(out);

    fputs(".SH \"EXIT STATUS\"\n", out);
    man_render(out, man_body(cli_help_text(NULL)), NULL, "Exit status:");
    fputs(man_tail, out);
    fflush(out);
    return ferror(out) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
