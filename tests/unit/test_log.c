/*
** test_log.c — what reaches a log line or a terminal: the logfmt line of
** pdr_log (captured through pdr_log_set_fd), the escaping it shares with the
** CLI (pdr_log_escape) and the redaction of routing keys (pdr_redact). Every
** output must be valid UTF-8 without a raw control character.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pdr.h"
#include "testutil.h"

/* Valid UTF-8, by glibc's decoder (not pdrelay's). */
static int utf8_valid(const char *s, size_t n)
{
    iconv_t cd = iconv_open("UTF-8", "UTF-8");
    char buf[8192], *in = (char *)s, *o = buf;
    size_t il = n, ol = sizeof buf;
    assert_true(cd != (iconv_t)-1);
    assert_true(n <= sizeof buf);
    size_t r = iconv(cd, &in, &il, &o, &ol);
    iconv_close(cd);
    return r != (size_t)-1 && il == 0;
}

static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) return 1;
        if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9F)
            return 1;
    }
    return 0;
}

/* Logs one line with field "v" = value and returns it (malloc'd), less its
** "ts=… " prefix and final newline, after checking it is clean. */
static char *log_line(const char *msg, const char *key, const char *value)
{
    int p[2];
    char buf[8192];
    assert_int_equal(pipe(p), 0);
    pdr_log_set_fd(p[1]);
    pdr_log(PDR_LOG_ERROR, msg, key, value, NULL);
    pdr_log_set_fd(-1);
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
    close(p[0]);
    buf[n] = '\0';
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_ptr_equal(memchr(buf, '\n', n), buf + n - 1);
    assert_true(utf8_valid(buf, n));
    assert_false(has_control(buf, n - 1));
    buf[n - 1] = '\0';
    const char *from = strstr(buf, " level=");
    assert_non_null(from);
    return strdup(from + 1);
}

static void assert_logged(const char *value, const char *want)
{
    char *line = log_line("m", "v", value);
    char *exp = tu_printf("level=error msg=m v=%s", want);
    assert_string_equal(line, exp);
    free(exp);
    free(line);
}

static void test_log_escapes_controls(void **state)
{
    (void)state;
    /* a terminal title change, then a bell */
    assert_logged("\x1b]0;pwned\x07", "\"\\x1b]0;pwned\\x07\"");
    /* a forged second line */
    assert_logged("ok\r\nts=x level=info msg=forged", "\"ok\\r\\nts=x level=info msg=forged\"");
    assert_logged("a\tb", "\"a\\tb\"");
    /* C1 CSI (U+009B) and NEL (U+0085), DEL */
    assert_logged("\xc2\x9b" "31m red", "\"\\u009b31m red\"");
    assert_logged("x\xc2\x85y", "\"x\\u0085y\"");
    assert_logged("del\x7f", "\"del\\x7f\"");
    /* invalid UTF-8: a lone byte, a cut sequence, an overlong '/', a surrogate */
    assert_logged("\xff", "\"\\xff\"");
    assert_logged("a\xe6\x97", "\"a\\xe6\\x97\"");
    assert_logged("\xc0\xaf", "\"\\xc0\\xaf\"");
    assert_logged("\xed\xa0\x80", "\"\\xed\\xa0\\x80\"");
    /* a bidi override */
    assert_logged("\xe2\x80\xae" "gnp.exe", "\"\\u202egnp.exe\"");
    /* invisible characters: a zero-width space, a direction mark, the BOM, a tag */
    assert_logged("a\xe2\x80\x8b" "b\xe2\x80\x8e" "c\xef\xbb\xbf" "d\xf3\xa0\x81\x81",
                  "\"a\\u200bb\\u200ec\\ufeffd\\udb40\\udc41\"");
    /* quotes and backslashes cannot forge an escape */
    assert_logged("say \"hi\" \\x1b", "\"say \\\"hi\\\" \\\\x1b\"");
    /* readable text stays readable */
    assert_logged("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\"");
    assert_logged("plain", "plain");
}

static void test_log_escapes_msg_and_keys(void **state)
{
    (void)state;
    char *line = log_line("bad\x1b[2J", "k\x1b y=\"", "v");
    assert_string_equal(line, "level=error msg=\"bad\\x1b[2J\" k__y__=v");
    free(line);
}

/* A line over 4 KB is cut on a character boundary, never inside an escape. */
static void test_log_cut_whole_characters(void **state)
{
    (void)state;
    for (size_t shift = 0; shift < 4; shift++) {
        char big[6000];
        size_t n = 0;
        for (size_t i = 0; i < shift; i++) big[n++] = 'a';
        while (n + 4 < sizeof big) {
            memcpy(big + n, "\xe6\x97\xa5\x1b", 4);
            n += 4;
        }
        big[n] = '\0';
        char *line = log_line("m", "v", big);   /* checks UTF-8 and controls */
        size_t len = strlen(line);
        assert_true(len < 4096);
        assert_memory_equal(line + len - 3, "\xe2\x80\xa6", 3);
        /* the last whole unit before the ellipsis */
        assert_true(!memcmp(line + len - 7, "\\x1b", 4) || !memcmp(line + len - 6, "\xe6\x97\xa5", 3) ||
                    line[len - 4] == 'a' || line[len - 4] == '"');
        free(line);
    }
}

static void test_escape_modes(void **state)
{
    (void)state;
    const char *in = "a\"b\\c\x1b\n\x7f\xc2\x9b\xff\xc3\xa9";
    char out[128];
    size_t used;
    assert_int_equal(pdr_log_escape(out, sizeof out, in, strlen(in), PDR_ESC_TEXT, &used),
                     strlen("a\"b\\\\c\\x1b\\n\\x7f\\u009b\\xff\xc3\xa9"));
    assert_string_equal(out, "a\"b\\\\c\\x1b\\n\\x7f\\u009b\\xff\xc3\xa9");
    assert_int_equal(used, strlen(in));
    pdr_log_escape(out, sizeof out, in, strlen(in), PDR_ESC_LOGFMT, NULL);
    assert_string_equal(out, "a\\\"b\\\\c\\x1b\\n\\x7f\\u009b\\xff\xc3\xa9");
    /* JSON: what cJSON left raw (DEL, C1, invalid bytes) */
    pdr_log_escape(out, sizeof out, in, strlen(in), PDR_ESC_JSON, NULL);
    assert_string_equal(out, "a\"b\\c\x1b\n\\u007f\\u009b\\ufffd\xc3\xa9");

    /* too small: whole escapes and characters only */
    assert_int_equal(pdr_log_escape(out, 6, "ab\x1b", 3, PDR_ESC_TEXT, &used), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(used, 2);
    assert_int_equal(pdr_log_escape(out, 3, "a\xc3\xa9", 3, PDR_ESC_TEXT, &used), 1);
    assert_string_equal(out, "a");
    assert_int_equal(used, 1);
    assert_int_equal(pdr_log_escape(out, 0, "a", 1, PDR_ESC_TEXT, &used), 0);
    assert_int_equal(used, 0);

    /* the worst case fits 6 * len + 1 */
    char *d = pdr_log_escape_dup("\xff\xff\xff", PDR_ESC_JSON);
    assert_string_equal(d, "\\ufffd\\ufffd\\ufffd");
    free(d);
    d = pdr_log_escape_dup(NULL, PDR_ESC_TEXT);
    assert_string_equal(d, "");
    free(d);
}

/* ---- redaction ---------------------------------------------------------- */

static void assert_redacted(const char *key, const char *want)
{
    char red[PDR_REDACT_SIZE];
    memset(red, 'Z', sizeof red);
    pdr_redact(key, red, sizeof red);
    assert_string_equal(red, want);
    assert_true(strlen(red) < PDR_REDACT_SIZE);
    assert_true(utf8_valid(red, strlen(red)));
    assert_false(has_control(red, strlen(red)));
    if (key && strlen(key) >= 8) assert_null(strstr(red, key));
}

static void test_redact(void **state)
{
    (void)state;
    assert_redacted("R0aaaaaaaaaaaaaaaaaaaaaaaaaaab12", "R0\xe2\x80\xa6" "ab12");
    assert_redacted("short", "\xe2\x80\xa6");
    assert_redacted(NULL, "\xe2\x80\xa6");
    assert_redacted("12345678", "12\xe2\x80\xa6" "5678");
    /* 7 characters of 2 bytes (14 bytes) are still short */
    assert_redacted("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "\xe2\x80\xa6");
    /* characters, not bytes: é and 日 are never cut */
    assert_redacted("\xc3\xa9\xc3\xa8xxxxxxxx\xc3\xa0\xc3\xa2\xc3\xa4\xc3\xab",
                    "\xc3\xa9\xc3\xa8\xe2\x80\xa6\xc3\xa0\xc3\xa2\xc3\xa4\xc3\xab");
    /* 3-byte tail characters: only the last two fit 8 bytes */
    assert_redacted("ab------\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe5\xad\x97",
                    "ab\xe2\x80\xa6\xe8\xaa\x9e\xe5\xad\x97");
    /* 4-byte characters: one in the head, two in the tail */
    assert_redacted("\xf0\x9f\x94\x91\xf0\x9f\x94\x91------\xf0\x9f\x94\x91\xf0\x9f\x94\x92",
                    "\xf0\x9f\x94\x91\xe2\x80\xa6\xf0\x9f\x94\x91\xf0\x9f\x94\x92");
    /* invalid bytes and controls count as one character each and show as '?' */
    assert_redacted("\xff\xfe" "aaaaaaaa\xe6\x97" "b\x1b\xc2\x9b", "??\xe2\x80\xa6" "?b??");
    /* a short buffer gets whole characters */
    char small[5];
    assert_string_equal(pdr_redact("R0aaaaaaaaaaaab12", small, sizeof small), "R0");
    char one[1];
    assert_string_equal(pdr_redact("R0aaaaaaaaaaaab12", one, sizeof one), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_escapes_controls),
        cmocka_unit_test(test_log_escapes_msg_and_keys),
        cmocka_unit_test(test_log_cut_whole_characters),
        cmocka_unit_test(test_escape_modes),
        cmocka_unit_test(test_redact),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
