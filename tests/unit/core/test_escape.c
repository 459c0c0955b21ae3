#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/escape.h"

/* src escaped whole into a static buffer, NUL-terminated. */
static const char *esc(const char *src, size_t len, enum escape_style style)
{
	static char out[1024];
	size_t pos = 0;

	assert_int_equal(escape_append(out, sizeof(out) - 1, &pos, src, len, style), len);
	out[pos] = '\0';
	return out;
}

#define TEXT(s) esc(s, sizeof(s) - 1, ESCAPE_TEXT)
#define JSON(s) esc(s, sizeof(s) - 1, ESCAPE_JSON)

static void test_plain_text_passes(void **state)
{
	(void)state;

	assert_string_equal(TEXT("GET /users/42 ok"), "GET /users/42 ok");
	assert_string_equal(JSON("GET /users/42 ok"), "GET /users/42 ok");
	assert_string_equal(TEXT(""), "");
	/* text keeps quotes and backslashes; JSON escapes them */
	assert_string_equal(TEXT("say \"hi\" \\o/"), "say \"hi\" \\o/");
	assert_string_equal(JSON("say \"hi\" \\o/"), "say \\\"hi\\\" \\\\o/");
}

static void test_control_characters(void **state)
{
	(void)state;

	assert_string_equal(TEXT("a\nb\rc\td"), "a\\nb\\rc\\td");
	assert_string_equal(JSON("a\nb\rc\td"), "a\\nb\\rc\\td");
	assert_string_equal(TEXT("\x01\x1b[31m\x1f\x7f"), "\\x01\\x1b[31m\\x1f\\x7f");
	assert_string_equal(JSON("\x01\x1b[31m\x1f\x7f"), "\\u0001\\u001b[31m\\u001f\\u007f");
	assert_string_equal(esc("a\0b", 3, ESCAPE_TEXT), "a\\x00b");
	assert_string_equal(esc("a\0b", 3, ESCAPE_JSON), "a\\u0000b");
	/* C1 controls (NEL is a line break to some readers) and the Unicode
	 * separators, though valid UTF-8 */
	assert_string_equal(TEXT("a\xc2\x85" "b\xc2\x9b" "c\xc2\x80"), "a\\u0085b\\u009bc\\u0080");
	assert_string_equal(JSON("a\xc2\x85" "b"), "a\\u0085b");
	assert_string_equal(TEXT("\xe2\x80\xa8|\xe2\x80\xa9"), "\\u2028|\\u2029");
	assert_string_equal(JSON("\xe2\x80\xa8|\xe2\x80\xa9"), "\\u2028|\\u2029");
}

static void test_valid_utf8_passes(void **state)
{
	static const char *const ok[] = {
		"caf\xc3\xa9",             /* é */
		"\xc2\xa0",                /* U+00A0, first after C1 */
		"\xdf\xbf",                /* U+07FF */
		"\xe0\xa0\x80",            /* U+0800 */
		"\xe2\x82\xac",            /* € */
		"\xed\x9f\xbf",            /* U+D7FF, last before surrogates */
		"\xee\x80\x80",            /* U+E000, first after */
		"\xef\xbf\xbf",            /* U+FFFF */
		"\xf0\x90\x80\x80",        /* U+10000 */
		"\xf0\x9f\x98\x80",        /* 😀 */
		"\xf4\x8f\xbf\xbf",        /* U+10FFFF */
		"\xe2\x80\xa7\xe2\x80\xaa", /* around the separators */
	};
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_string_equal(esc(ok[i], strlen(ok[i]), ESCAPE_TEXT), ok[i]);
		assert_string_equal(esc(ok[i], strlen(ok[i]), ESCAPE_JSON), ok[i]);
	}
}

static void test_invalid_utf8_escaped_byte_by_byte(void **state)
{
	static const struct {
		const char *in, *text, *json;
	} cases[] = {
		{"\x80", "\\x80", "\\ufffd"},                           /* stray continuation */
		{"\xbf" "a", "\\xbfa", "\\ufffda"},
		{"\xc0\x80", "\\xc0\\x80", "\\ufffd\\ufffd"},           /* overlong NUL */
		{"\xc1\xbf", "\\xc1\\xbf", "\\ufffd\\ufffd"},           /* overlong */
		{"\xe0\x80\xaf", "\\xe0\\x80\\xaf", "\\ufffd\\ufffd\\ufffd"}, /* overlong '/' */
		{"\xed\xa0\x80", "\\xed\\xa0\\x80", "\\ufffd\\ufffd\\ufffd"}, /* U+D800 */
		{"\xed\xbf\xbf", "\\xed\\xbf\\xbf", "\\ufffd\\ufffd\\ufffd"}, /* U+DFFF */
		{"\xf0\x80\x80\x80", "\\xf0\\x80\\x80\\x80",
		 "\\ufffd\\ufffd\\ufffd\\ufffd"},                         /* overlong */
		{"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80",
		 "\\ufffd\\ufffd\\ufffd\\ufffd"},                         /* U+110000 */
		{"\xf5\xff\xfe", "\\xf5\\xff\\xfe", "\\ufffd\\ufffd\\ufffd"},
		{"a\xe2\x82", "a\\xe2\\x82", "a\\ufffd\\ufffd"},        /* cut short at the end */
		{"\xe2\x82" "b", "\\xe2\\x82b", "\\ufffd\\ufffdb"},     /* cut short by ASCII */
		{"\xc3\n", "\\xc3\\n", "\\ufffd\\n"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].in);

		assert_string_equal(esc(cases[i].in, n, ESCAPE_TEXT), cases[i].text);
		assert_string_equal(esc(cases[i].in, n, ESCAPE_JSON), cases[i].json);
	}
}

static void test_stops_before_what_does_not_fit(void **state)
{
	char out[16];
	size_t pos;
	(void)state;

	pos = 0;
	assert_int_equal(escape_append(out, 3, &pos, "ab\n", 3, ESCAPE_TEXT), 2);
	assert_int_equal(pos, 2);
	pos = 0;
	assert_int_equal(escape_append(out, 4, &pos, "a\xe2\x82\xac", 4, ESCAPE_JSON), 4);
	pos = 0;
	assert_int_equal(escape_append(out, 3, &pos, "a\xe2\x82\xac", 4, ESCAPE_JSON), 1);
	assert_int_equal(pos, 1);
	pos = 0;
	assert_int_equal(escape_append(out, 6, &pos, "\xff\xff", 2, ESCAPE_JSON), 1);
	assert_memory_equal(out, "\\ufffd", 6);
	/* appends after what is there */
	pos = 2;
	memcpy(out, "x:", 2);
	assert_int_equal(escape_append(out, sizeof(out), &pos, "\t", 1, ESCAPE_JSON), 1);
	assert_memory_equal(out, "x:\\t", 4);
	pos = 16;
	assert_int_equal(escape_append(out, 16, &pos, "a", 1, ESCAPE_TEXT), 0);
}

static enum mn_err printf_escaped(struct buf *b, enum escape_style style, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum mn_err printf_escaped(struct buf *b, enum escape_style style, const char *fmt, ...)
{
	va_list ap;
	enum mn_err err;

	va_start(ap, fmt);
	err = escape_vprintf(b, style, fmt, ap);
	va_end(ap);
	return err;
}

static void test_into_a_buffer(void **state)
{
	struct buf b;
	char big[1000];
	(void)state;

	buf_init(&b, 1 << 16);
	assert_int_equal(printf_escaped(&b, ESCAPE_TEXT, "kv key '%s': %d", "a\nb\x1b", 7), MN_OK);
	assert_string_equal(b.data, "kv key 'a\\nb\\x1b': 7");
	buf_release(&b);

	/* longer than the internal chunk, escapes across its edges */
	memset(big, '\n', sizeof(big));
	buf_init(&b, 1 << 16);
	assert_int_equal(escape_buf(&b, big, sizeof(big), ESCAPE_JSON), MN_OK);
	assert_int_equal(b.len, 2 * sizeof(big));
	for (size_t i = 0; i < b.len; i += 2)
		assert_memory_equal(b.data + i, "\\n", 2);
	buf_release(&b);

	/* the buffer's cap still holds */
	buf_init(&b, 10);
	assert_int_equal(escape_buf(&b, big, 6, ESCAPE_TEXT), MN_TOO_LARGE);
	assert_null(b.data);
	buf_init(&b, 10);
	assert_int_equal(escape_buf(&b, "", 0, ESCAPE_TEXT), MN_OK);
	assert_string_equal(b.data, "");
	buf_release(&b);
}

/* Random bytes: the JSON form always parses back as a string, and the
 * text form is valid UTF-8 without a single control character. */
static void test_random_bytes(void **state)
{
	uint64_t rng = 0x853C49E6748FEA9BULL;
	char in[64], out[64 * 6 + 3];
	(void)state;

	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)(mn_rand_next(&rng) % sizeof(in)), pos;
		json_t *v;

		for (size_t i = 0; i < n; i++)
			in[i] = (char)(mn_rand_next(&rng) >> (round % 2 ? 56 : 60));
		pos = 0;
		out[pos++] = '"';
		assert_int_equal(escape_append(out, sizeof(out) - 1, &pos, in, n, ESCAPE_JSON), n);
		out[pos++] = '"';
		v = json_loadb(out, pos, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		assert_true(json_is_string(v));
		json_decref(v);

		pos = 0;
		assert_int_equal(escape_append(out, sizeof(out), &pos, in, n, ESCAPE_TEXT), n);
		for (size_t i = 0; i < pos; i++) {
			unsigned char c = (unsigned char)out[i];

			assert_false(c < 0x20 || c == 0x7f);
			assert_false(c == 0xc2 && i + 1 < pos && (unsigned char)out[i + 1] < 0xa0);
		}
		v = json_stringn(out, pos);
		assert_non_null(v); /* jansson checks UTF-8 */
		json_decref(v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_text_passes),
		cmocka_unit_test(test_control_characters),
		cmocka_unit_test(test_valid_utf8_passes),
		cmocka_unit_test(test_invalid_utf8_escaped_byte_by_byte),
		cmocka_unit_test(test_stops_before_what_does_not_fit),
		cmocka_unit_test(test_into_a_buffer),
		cmocka_unit_test(test_random_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
