#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "http/path.h"

static enum mn_err decode(const char *raw, char *out, size_t outlen)
{
	char err[128];

	snprintf(out, outlen, "%s", raw);
	return http_path_decode(out, err, sizeof(err));
}

static void test_plain_and_decoded_paths(void **state)
{
	char p[256];
	(void)state;

	assert_int_equal(decode("/", p, sizeof(p)), MN_OK);
	assert_string_equal(p, "/");
	assert_int_equal(decode("/users/12", p, sizeof(p)), MN_OK);
	assert_string_equal(p, "/users/12");
	assert_int_equal(decode("/peers/us%65rs", p, sizeof(p)), MN_OK);
	assert_string_equal(p, "/peers/users");
	assert_int_equal(decode("/a%20b/%C3%A9", p, sizeof(p)), MN_OK);
	assert_string_equal(p, "/a b/\xc3\xa9");
	/* A dot inside a segment is no dot segment. */
	assert_int_equal(decode("/users/%2e%2e%2e", p, sizeof(p)), MN_OK);
	assert_string_equal(p, "/users/...");
	assert_int_equal(decode("/users/a%2e", p, sizeof(p)), MN_OK);
}

static void test_hostile_paths_are_refused(void **state)
{
	static const char *const bad[] = {
		"/health%00/xyz", "/users/1%00abc", "/users/..%2fconfig", "/users%2F1",
		"/users/%2e%2e/config", "/users/%2E", "/users/%2e%2e", "/x%0d%0aSet-Cookie:%20a",
		"/a%7f", "/a%", "/a%4", "/a%zz", "/a%%41", "users", "", "/a\nb", "/a\x01",
	};
	char p[256], err[128];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(p, sizeof(p), "%s", bad[i]);
		err[0] = '\0';
		if (http_path_decode(p, err, sizeof(err)) != MN_INVALID)
			fail_msg("path %zu ('%s') was accepted", i, bad[i]);
		assert_true(err[0] != '\0');
	}
}

static void test_content_length(void **state)
{
	int64_t v = -1;
	(void)state;

	assert_int_equal(http_content_length_parse("0", &v), MN_OK);
	assert_int_equal(v, 0);
	assert_int_equal(http_content_length_parse(" 39 ", &v), MN_OK);
	assert_int_equal(v, 39);
	assert_int_equal(http_content_length_parse("999999999999999999", &v), MN_OK);
	assert_int_equal(v, 999999999999999999LL);
	assert_int_equal(http_content_length_parse("9999999999999999999", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse("12abc", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse("-1", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse("+1", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse("1,1", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse("0, 39", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse("", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse(" ", &v), MN_INVALID);
	assert_int_equal(http_content_length_parse(NULL, &v), MN_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_decoded_paths),
		cmocka_unit_test(test_hostile_paths_are_refused),
		cmocka_unit_test(test_content_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
