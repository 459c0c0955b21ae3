#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_depth.h"
#include "core/json_scan.h"
#include "mutate.h"
#include "nested.h"

/* true when the scanner takes 'text' as one JSON value and nothing else. */
static bool scan_ok(const char *text, size_t len)
{
	struct jscan s;

	jscan_init(&s, text, len);
	return jscan_skip(&s) && jscan_end(&s);
}

static bool scan_ok_str(const char *text) { return scan_ok(text, strlen(text)); }

static void test_valid_documents(void **state)
{
	static const char *const ok[] = {
		"[]", "{}", " [ ] ", "0", "-0", "1.5e+3", "-12.25E-2", "true", "false", "null",
		"\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\ud83d\\ude00\"",
		"[1,[2,{\"a\":[3]}],{}]", "{\"a\":1,\"a\":2}", "\t\r\n{ \"k\" : [ true , null ] }\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!scan_ok_str(ok[i]))
			fail_msg("refused valid '%s'", ok[i]);
}

static void test_invalid_documents(void **state)
{
	static const char *const bad[] = {
		"", " ", "[", "]", "[1,]", "[,1]", "[1 2]", "{\"a\" 1}", "{\"a\":}", "{1:2}",
		"{\"a\":1,}", "01", "1.", ".5", "-", "1e", "+1", "tru", "nulls", "[1]]", "\"abc",
		"\"\\x\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\u0000\"", "\"a\nb\"",
		"{\"a\":1}{", "[\"a\"\"b\"]", "NaN", "[1,,2]",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (scan_ok_str(bad[i]))
			fail_msg("accepted invalid '%s'", bad[i]);
}

static void test_strings_unescaped_and_checked(void **state)
{
	const char *text;
	struct jscan s;
	struct buf b;
	(void)state;

	buf_init(&b, 1024);
	text = "[\"caf\\u00e9\", \"\\ud83d\\ude00\", \"x\\ty\", \"\"]";
	jscan_init(&s, text, strlen(text));
	assert_true(jscan_array_begin(&s));
	assert_true(jscan_array_next(&s));
	assert_true(jscan_string(&s, &b));
	assert_string_equal(b.data, "caf\xc3\xa9");
	assert_true(jscan_array_next(&s));
	assert_true(jscan_string(&s, &b));
	assert_string_equal(b.data, "\xf0\x9f\x98\x80");
	assert_true(jscan_array_next(&s));
	assert_true(jscan_string(&s, &b));
	assert_string_equal(b.data, "x\ty");
	assert_true(jscan_array_next(&s));
	assert_true(jscan_string(&s, &b));
	assert_string_equal(b.data, "");
	assert_false(jscan_array_next(&s));
	assert_true(jscan_end(&s));

	/* invalid UTF-8 in a string taken out is refused */
	jscan_init(&s, "\"a\xff\"", 4);
	assert_false(jscan_string(&s, &b));
	assert_non_null(strstr(jscan_error(&s), "invalid UTF-8"));
	/* overlong and surrogate encodings too */
	jscan_init(&s, "\"\xc0\xaf\"", 4);
	assert_false(jscan_string(&s, &b));
	jscan_init(&s, "\"\xed\xa0\x80\"", 5);
	assert_false(jscan_string(&s, &b));
	/* past the buffer's cap: an error, not a cut */
	buf_release(&b);
	buf_init(&b, 3);
	jscan_init(&s, "\"abcd\"", 6);
	assert_false(jscan_string(&s, &b));
	buf_release(&b);
}

static void test_members_and_integers(void **state)
{
	const char *text = "{\"Port\": 8080, \"F\": 1.5, \"Big\": 99999999999999999999, "
			   "\"S\": \"x\", \"N\": {\"a\": [1, {\"b\": 2}]}}";
	struct jscan s;
	char key[8];
	long long v = 0;
	bool fits;
	(void)state;

	jscan_init(&s, text, strlen(text));
	assert_true(jscan_object_begin(&s));
	assert_true(jscan_object_next(&s, key, sizeof(key)));
	assert_string_equal(key, "Port");
	assert_true(jscan_integer(&s, &v, &fits));
	assert_true(fits);
	assert_int_equal(v, 8080);
	assert_true(jscan_object_next(&s, key, sizeof(key)));
	assert_true(jscan_integer(&s, &v, &fits));
	assert_false(fits); /* a fraction */
	assert_true(jscan_object_next(&s, key, sizeof(key)));
	assert_true(jscan_integer(&s, &v, &fits));
	assert_false(fits); /* out of range */
	assert_true(jscan_object_next(&s, key, sizeof(key)));
	assert_false(jscan_integer(&s, &v, &fits)); /* a string: an error */
	assert_non_null(strstr(jscan_error(&s), "expected a number"));
	/* the first error sticks */
	assert_false(jscan_object_next(&s, key, sizeof(key)));
	assert_false(jscan_skip(&s));

	jscan_init(&s, text, strlen(text));
	assert_true(jscan_object_begin(&s));
	for (int i = 0; i < 4; i++) {
		assert_true(jscan_object_next(&s, key, sizeof(key)));
		assert_true(jscan_skip(&s));
	}
	assert_true(jscan_object_next(&s, key, sizeof(key)));
	assert_string_equal(key, "N");
	assert_true(jscan_skip(&s)); /* a nested value as a whole */
	assert_false(jscan_object_next(&s, key, sizeof(key)));
	assert_true(jscan_end(&s));

	/* a member name longer than the caller's room is an error */
	jscan_init(&s, "{\"abcdefghij\":1}", 16);
	assert_true(jscan_object_begin(&s));
	assert_false(jscan_object_next(&s, key, sizeof(key)));
}

static void test_depth_limit(void **state)
{
	size_t len;
	char *json;
	(void)state;

	json = nested_json("", MN_JSON_MAX_DEPTH, "", &len);
	assert_true(scan_ok(json, len));
	free(json);
	json = nested_json("", MN_JSON_MAX_DEPTH + 1, "", &len);
	assert_false(scan_ok(json, len));
	free(json);
	json = nested_json("", 100000, "", &len);
	assert_false(scan_ok(json, len)); /* constant stack: no crash */
	free(json);
}

/* The scanner and jansson agree on what is JSON, over thousands of
 * mutations of valid documents (bytes kept ASCII: the scanner checks UTF-8
 * only in the strings it takes out, jansson everywhere). */
static void test_agrees_with_jansson(void **state)
{
	static const char *const seeds[] = {
		"[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"u-1\","
		"\"Tags\":[\"a\",\"b\"],\"Meta\":{\"k\":\"v\"},\"Port\":8080,\"W\":{\"P\":1,"
		"\"W\":-1.5e3}},\"Checks\":[{\"Status\":\"passing\",\"Output\":\"ok\\n\"}]}]",
		"{\"a\":[true,false,null,0,-0.25,\"\\u0041\\\\\"],\"b\":{}}",
	};
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	unsigned agreed = 0, accepted = 0;
	char m[1024];
	(void)state;

	for (int round = 0; round < 20000; round++) {
		const char *seed = seeds[round % 2];
		size_t len = strlen(seed);
		json_error_t jerr;
		json_t *j;
		bool ours, theirs;

		memcpy(m, seed, len);
		mutate(m, &len, sizeof(m), &rng, 1 + round % 3);
		for (size_t i = 0; i < len; i++)
			m[i] = (char)(m[i] & 0x7f);
		ours = scan_ok(m, len);
		if (memchr(m, '\0', len)) {
			/* never JSON; jansson 2.14 takes some as the end of the text */
			assert_false(ours);
			continue;
		}
		j = json_loadb(m, len, JSON_DECODE_ANY, &jerr);
		theirs = j != NULL;
		json_decref(j);
		if (!theirs && (strstr(jerr.text, "too big") || strstr(jerr.text, "overflow")))
			continue; /* jansson's number range, not the grammar */
		if (ours != theirs)
			fail_msg("disagree on '%.*s': scanner %d, jansson %d (%s)", (int)len, m, ours,
				 theirs, jerr.text);
		agreed++;
		accepted += ours;
	}
	assert_true(agreed > 15000);
	assert_true(accepted > 100); /* some mutations stay valid */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_documents),
		cmocka_unit_test(test_invalid_documents),
		cmocka_unit_test(test_strings_unescaped_and_checked),
		cmocka_unit_test(test_members_and_integers),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_agrees_with_jansson),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
