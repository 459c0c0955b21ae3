#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/kv.h"
#include "core/json_depth.h"
#include "fixture.h"
#include "nested.h"
#include "mutate.h"
#include "small_stack.h"

static void test_parse_real_listing(void **state)
{
	struct consul_kv *kv;
	size_t n, len;
	char *json = fixture_read("consul/kv_recurse.json", &len);
	(void)state;

	assert_int_equal(consul_kv_parse(json, len, &kv, &n, NULL, 0), MN_OK);
	assert_int_equal(n, 5);
	assert_string_equal(kv[0].key, "config/shared/log/format");
	assert_string_equal(kv[0].value, "text");
	assert_int_equal(kv[0].modify_index, 13);
	assert_string_equal(kv[1].key, "config/users/folder/");
	assert_null(kv[1].value);
	assert_string_equal(kv[2].value, "debug");
	assert_string_equal(kv[3].key, "config/users/peers/users/timeout_ms");
	assert_string_equal(kv[3].value, "2000");
	/* written with a trailing newline: decoding keeps it, config trims */
	assert_string_equal(kv[4].value, "line\n");
	consul_kv_free(kv, n);
	free(json);
}

static void test_parse_rejects_bad_input(void **state)
{
	static const char *const bad[] = {
		"",                                    /* not JSON */
		"{\"Key\":\"a\"}",                     /* not an array */
		"[{\"Value\":\"YQ==\"}]",              /* no key */
		"[{\"Key\":\"a\",\"Value\":\"Y*==\"}]", /* bad base64 character */
		"[{\"Key\":\"a\",\"Value\":\"YQ=\"}]",  /* bad length */
		"[{\"Key\":\"a\",\"Value\":\"Y=Q=\"}]", /* padding in the middle */
		"[{\"Key\":\"a\",\"Value\":\"AGE=\"}]", /* NUL byte inside */
		"[{\"Key\":\"a\",\"Value\":12}]",       /* not a string */
	};
	char err[256];
	struct consul_kv *kv;
	size_t n;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(consul_kv_parse(bad[i], strlen(bad[i]), &kv, &n, err, sizeof(err)),
				 MN_INVALID);
		assert_null(kv);
		assert_int_equal(n, 0);
		assert_true(strlen(err) > 0);
	}
}

/* jansson quotes what it stopped at raw; the message stays one line */
static void test_parse_error_is_one_line(void **state)
{
	static const char bad[] = "[\"\\u00\n\x1b\"]";
	struct consul_kv *kv;
	char err[256];
	size_t n;
	(void)state;

	assert_int_equal(consul_kv_parse(bad, sizeof(bad) - 1, &kv, &n, err, sizeof(err)),
			 MN_INVALID);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\x1b'));
	assert_non_null(strstr(err, "cannot parse kv listing: invalid escape near '\"\\u00\\n"));
}

static void test_parse_empty_array(void **state)
{
	struct consul_kv *kv;
	size_t n;
	(void)state;

	assert_int_equal(consul_kv_parse("[]", 2, &kv, &n, NULL, 0), MN_OK);
	assert_int_equal(n, 0);
	consul_kv_free(kv, n);
}

static void test_index_parse(void **state)
{
	(void)state;
	assert_int_equal(consul_index_parse("17"), 17);
	assert_true(consul_index_parse("18446744073709551615") == UINT64_MAX);
	assert_int_equal(consul_index_parse("18446744073709551616"), 0);
	assert_int_equal(consul_index_parse(""), 0);
	assert_int_equal(consul_index_parse(NULL), 0);
	assert_int_equal(consul_index_parse("-1"), 0);
	assert_int_equal(consul_index_parse("12x"), 0);
}

/* The real listing mutated thousands of ways: MN_OK or MN_INVALID, never a
 * crash, and every accepted value is a NUL-free string. */
static void test_parse_mutated_listings(void **state)
{
	size_t len;
	char *json = fixture_read("consul/kv_recurse.json", &len);
	char *m = malloc(2 * len + 1);
	uint64_t rng = 0x2545F4914F6CDD1DULL;
	unsigned accepted = 0;
	(void)state;

	assert_non_null(m);
	for (int round = 0; round < 3000; round++) {
		struct consul_kv *kv;
		size_t mlen = len, n;
		enum mn_err e;

		memcpy(m, json, len);
		mutate(m, &mlen, 2 * len, &rng, 1 + round % 4);
		e = consul_kv_parse(m, mlen, &kv, &n, NULL, 0);
		assert_true(e == MN_OK || e == MN_INVALID);
		if (e != MN_OK)
			continue;
		accepted++;
		for (size_t i = 0; i < n; i++)
			assert_non_null(kv[i].key);
		consul_kv_free(kv, n);
	}
	assert_true(accepted > 0);
	free(m);
	free(json);
}

/* A listing of one pair whose extra field takes it to 'depth' levels. */
static char *listing_nested(size_t depth, size_t *len)
{
	return nested_json("[{\"Key\":\"config/users/a\",\"Value\":\"YQ==\",\"Extra\":", depth - 2,
			   "}]", len);
}

static void test_parse_refuses_deep_listings(void **state)
{
	struct consul_kv *kv;
	char err[256], *json;
	size_t n, len;
	(void)state;

	json = listing_nested(MN_JSON_MAX_DEPTH, &len);
	assert_int_equal(consul_kv_parse(json, len, &kv, &n, err, sizeof(err)), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(kv[0].value, "a");
	consul_kv_free(kv, n);
	free(json);

	json = listing_nested(MN_JSON_MAX_DEPTH + 1, &len);
	assert_int_equal(consul_kv_parse(json, len, &kv, &n, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "cannot parse kv listing: JSON nested deeper than 64 levels");
	assert_null(kv);
	assert_int_equal(n, 0);
	free(json);

	json = listing_nested(1000, &len);
	assert_int_equal(consul_kv_parse(json, len, &kv, &n, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "cannot parse kv listing: JSON nested deeper than 64 levels");
	free(json);
}

struct deep_parse {
	const char *json;
	size_t len;
	enum mn_err result;
	char err[256];
};

static void *deep_parse_run(void *arg)
{
	struct deep_parse *d = arg;
	struct consul_kv *kv;
	size_t n;

	d->result = consul_kv_parse(d->json, d->len, &kv, &n, d->err, sizeof(d->err));
	return NULL;
}

/* The watch and the startup read parse on ordinary threads; a worker-sized
 * stack is the tighter bound and must survive an answer 4096 levels deep. */
static void test_deep_listing_on_a_small_stack(void **state)
{
	struct deep_parse d = {.len = 4096};
	char *json = small_stack_brackets(d.len);
	(void)state;

	d.json = json;
	assert_true(small_stack_run(deep_parse_run, &d));
	assert_int_equal(d.result, MN_INVALID);
	assert_non_null(strstr(d.err, "JSON nested deeper than 64 levels"));
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_real_listing),
		cmocka_unit_test(test_parse_rejects_bad_input),
		cmocka_unit_test(test_parse_empty_array),
		cmocka_unit_test(test_parse_error_is_one_line),
		cmocka_unit_test(test_parse_refuses_deep_listings),
		cmocka_unit_test(test_deep_listing_on_a_small_stack),
		cmocka_unit_test(test_index_parse),
		cmocka_unit_test(test_parse_mutated_listings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
