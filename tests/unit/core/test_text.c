#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/text.h"

static ssize_t find(const char *s, unsigned *cp)
{
	return text_find_control(s, strlen(s), cp);
}

static void test_find_control(void **state)
{
	unsigned cp = 0;
	(void)state;

	assert_int_equal(find("", &cp), -1);
	assert_int_equal(find("Ada Lovelace", &cp), -1);
	/* printable UTF-8, including the bytes around C1 */
	assert_int_equal(find("Ren\xc3\xa9"
			      "e \xc2\xa0 \xe2\x80\xae",
			      &cp),
			 -1);
	assert_int_equal(find("a\tb", &cp), 1);
	assert_int_equal(cp, 0x09);
	assert_int_equal(find("\x01", &cp), 0);
	assert_int_equal(cp, 0x01);
	assert_int_equal(find("ab\x1f", &cp), 2);
	assert_int_equal(cp, 0x1f);
	assert_int_equal(find("x\x7f", &cp), 1);
	assert_int_equal(cp, 0x7f);
	assert_int_equal(find("x\xc2\x85y", &cp), 1); /* NEL */
	assert_int_equal(cp, 0x85);
	assert_int_equal(find("\xc2\x80", &cp), 0);
	assert_int_equal(cp, 0x80);
	assert_int_equal(find("\xc2\x9f", &cp), 0);
	assert_int_equal(cp, 0x9f);
	assert_int_equal(find("\xc2\xa0", NULL), -1); /* NBSP is not a control */
	assert_int_equal(find("\xc2", NULL), -1);     /* cut short: not a C1 */
	/* an embedded NUL counts, and 'len' bounds the search */
	assert_int_equal(text_find_control("ab\0c", 4, &cp), 2);
	assert_int_equal(cp, 0);
	assert_int_equal(text_find_control("ab\ncd", 2, NULL), -1);
}

static void trimmed(const char *in, const char *want)
{
	const char *s = in;
	size_t len = strlen(in);

	text_trim(&s, &len);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(s, want, len);
}

static void test_trim(void **state)
{
	(void)state;
	trimmed("", "");
	trimmed("   ", "");
	trimmed("x", "x");
	trimmed(" dup@x.com ", "dup@x.com");
	trimmed("\t\r\n\v\f a b \n", "a b");
	trimmed("\xc2\xa0x\xc2\xa0", "\xc2\xa0x\xc2\xa0"); /* ASCII whitespace only */
}

static void test_equal_nocase(void **state)
{
	(void)state;
	assert_true(text_equal_nocase("DUP@x.com", "dup@X.COM"));
	assert_true(text_equal_nocase("", ""));
	assert_false(text_equal_nocase("dup@x.com", "dup@x.co"));
	assert_false(text_equal_nocase("dup@x.co", "dup@x.com"));
	assert_false(text_equal_nocase("a", "b"));
	/* as SQLite's NOCASE: only ASCII folds */
	assert_false(text_equal_nocase("\xc3\x89", "\xc3\xa9"));
	assert_true(text_equal_nocase("\xc3\xa9", "\xc3\xa9"));
	assert_false(text_equal_nocase("@", "`")); /* 0x40 and 0x60 are not letters */
	assert_false(text_equal_nocase("[", "{"));
}

/* One boolean parser: what Consul's tools accept, any case, trimmed. */
static void test_parse_bool(void **state)
{
	static const char *const yes[] = {"true", "TRUE", "True", "t", "T", "1", " true\n"};
	static const char *const no[] = {"false", "FALSE", "f", "F", "0", "\tfalse "};
	static const char *const neither[] = {"", "yes", "no", "on", "2", "tru", "true1", "-1"};
	bool b;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		assert_true(text_parse_bool(yes[i], &b));
		assert_true(b);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		assert_true(text_parse_bool(no[i], &b));
		assert_false(b);
	}
	for (size_t i = 0; i < sizeof(neither) / sizeof(neither[0]); i++)
		assert_false(text_parse_bool(neither[i], &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_control),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_equal_nocase),
		cmocka_unit_test(test_parse_bool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
