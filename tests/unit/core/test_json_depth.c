#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_depth.h"
#include "mutate.h"

/* 'depth' copies of 'open', a 1, then the matching closers: a new string. */
static char *nested(size_t depth, const char *open, size_t *len)
{
	size_t olen = strlen(open), n = depth * (olen + 1) + 2;
	char *s = malloc(n), *p = s;

	assert_non_null(s);
	for (size_t i = 0; i < depth; i++, p += olen)
		memcpy(p, open, olen);
	*p++ = '1';
	for (size_t i = depth; i > 0; i--)
		*p++ = open[0] == '[' ? ']' : '}';
	*p = '\0';
	*len = (size_t)(p - s);
	return s;
}

static bool exceeds(const char *s, size_t max_depth)
{
	return json_depth_exceeds(s, strlen(s), max_depth);
}

static void test_limit_exactly(void **state)
{
	static const char *const opens[] = {"[", "{\"a\":"};
	char err[128];
	size_t len;
	(void)state;

	for (size_t k = 0; k < 2; k++) {
		char *ok = nested(MN_JSON_MAX_DEPTH, opens[k], &len);
		char *deep = nested(MN_JSON_MAX_DEPTH + 1, opens[k], &len);

		assert_false(exceeds(ok, MN_JSON_MAX_DEPTH));
		assert_int_equal(json_depth_check(ok, strlen(ok), err, sizeof(err)), MN_OK);
		assert_true(exceeds(deep, MN_JSON_MAX_DEPTH));
		err[0] = '\0';
		assert_int_equal(json_depth_check(deep, len, err, sizeof(err)), MN_INVALID);
		assert_string_equal(err, "JSON nested deeper than 64 levels");
		assert_int_equal(json_depth_check(deep, len, NULL, 0), MN_INVALID);
		/* the deepest accepted text is one jansson takes */
		json_t *v = json_loads(ok, JSON_DECODE_ANY, NULL);
		assert_non_null(v);
		json_decref(v);
		free(ok);
		free(deep);
	}
}

static void test_mixed_and_siblings(void **state)
{
	(void)state;

	assert_false(exceeds("[{\"a\":[{\"b\":[]}]}]", 5));
	assert_true(exceeds("[{\"a\":[{\"b\":[]}]}]", 4));
	assert_false(exceeds("{\"a\":[{}]}", 3));
	/* siblings do not add up: depth is what is open at once */
	assert_false(exceeds("[[[]],[[]],[[]],{\"x\":[]}]", 3));
	assert_true(exceeds("[[[]],[[[]]]]", 3));
	assert_false(exceeds("1", 0));
	assert_true(exceeds("[]", 0));
	assert_false(exceeds("[]", 1));
}

static void test_strings_do_not_count(void **state)
{
	(void)state;

	assert_false(exceeds("[\"[[[[{{{{\"]", 1));
	assert_false(exceeds("{\"[[[[\":\"{{{{\"}", 1));
	/* \" stays inside the string, so the brackets after it do too */
	assert_false(exceeds("[\"\\\"[[[[\"]", 1));
	assert_false(exceeds("[\"\\\\\\\"[[[[\"]", 1));
	/* \\ ends in a backslash: the quote after it closes the string */
	assert_true(exceeds("[\"\\\\\"[[[", 1));
	assert_true(exceeds("[\"a\\\\\",[[]]]", 2));
	assert_false(exceeds("[\"\\u005b[[\"]", 1));
	/* brackets after a string are counted again */
	assert_true(exceeds("[\"]]]]\",[[]]]", 2));
}

static void test_unterminated_and_empty(void **state)
{
	(void)state;

	assert_false(json_depth_exceeds("", 0, 0));
	assert_false(json_depth_exceeds(NULL, 0, MN_JSON_MAX_DEPTH));
	/* an unterminated string swallows the rest: the parser refuses it */
	assert_false(exceeds("[\"[[[[[[", 1));
	/* a backslash as the very last byte is not read past */
	assert_false(json_depth_exceeds("[\"abc\\", 6, 1));
	assert_false(json_depth_exceeds("[\"\\\"", 4, 1));
	/* the length is honoured, NUL bytes included */
	assert_true(json_depth_exceeds("[\0[", 3, 1));
	assert_false(json_depth_exceeds("[[[", 1, 1));
}

static void test_stray_closers_buy_nothing(void **state)
{
	char s[200];
	(void)state;

	memset(s, ']', 100);
	memset(s + 100, '[', 65);
	s[165] = '\0';
	assert_true(exceeds(s, 64));
	assert_true(exceeds("}}}}[[", 1));
}

static void test_one_mebibyte_of_brackets(void **state)
{
	size_t n = 1u << 20;
	char *s = malloc(n);
	(void)state;

	assert_non_null(s);
	memset(s, '[', n);
	assert_true(json_depth_exceeds(s, n, MN_JSON_MAX_DEPTH));
	/* the same bytes balanced never go past one level */
	for (size_t i = 1; i < n; i += 2)
		s[i] = ']';
	assert_false(json_depth_exceeds(s, n, 1));
	/* and a mebibyte inside one string is a single level */
	s[0] = '[';
	s[1] = '"';
	memset(s + 2, '[', n - 4);
	s[n - 2] = '"';
	s[n - 1] = ']';
	assert_false(json_depth_exceeds(s, n, 1));
	free(s);
}

/* The depth of what jansson built (the test's inputs are shallow). */
static size_t depth_of(json_t *v)
{
	size_t max = 0, i;
	const char *key;
	json_t *item;

	if (json_is_array(v)) {
		json_array_foreach(v, i, item) {
			size_t d = depth_of(item);
			max = d > max ? d : max;
		}
		return max + 1;
	}
	if (json_is_object(v)) {
		json_object_foreach(v, key, item) {
			size_t d = depth_of(item);
			max = d > max ? d : max;
		}
		return max + 1;
	}
	return 0;
}

/* Mutated documents: whenever jansson takes one, the smallest limit the
 * guard lets it through at is exactly the depth of what jansson built. */
static void test_agrees_with_jansson(void **state)
{
	static const char doc[] = "{\"a\":[1,{\"b\":\"[x\\\"]\",\"c\":[[[\"\\\\\"]]]},[]],"
				  "\"d\":{\"e\":{\"f\":[{}]}}}";
	char m[4 * sizeof(doc)];
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	int parsed = 0;
	(void)state;

	for (int round = 0; round < 20000; round++) {
		size_t mlen = sizeof(doc) - 1;
		json_t *v;

		memcpy(m, doc, mlen);
		mutate(m, &mlen, sizeof(m), &rng, 1 + round % 6);
		for (size_t d = 0; d <= 6; d++) {
			if (json_depth_exceeds(m, mlen, d))
				continue;
			v = json_loadb(m, mlen, JSON_DECODE_ANY, NULL);
			if (v) {
				assert_int_equal(depth_of(v), d);
				parsed++;
			}
			json_decref(v);
			break;
		}
	}
	assert_true(parsed > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_exactly),
		cmocka_unit_test(test_mixed_and_siblings),
		cmocka_unit_test(test_strings_do_not_count),
		cmocka_unit_test(test_unterminated_and_empty),
		cmocka_unit_test(test_stray_closers_buy_nothing),
		cmocka_unit_test(test_one_mebibyte_of_brackets),
		cmocka_unit_test(test_agrees_with_jansson),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
