#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <strings.h>

#include "http/params.h"

static void test_id(void **state)
{
	int64_t id;
	(void)state;

	assert_true(http_param_id("1", &id));
	assert_int_equal(id, 1);
	assert_true(http_param_id("9223372036854775807", &id));
	assert_int_equal(id, INT64_MAX);
	assert_false(http_param_id("9223372036854775808", &id));
	assert_false(http_param_id("0", &id));
	assert_false(http_param_id("-1", &id));
	assert_false(http_param_id("+1", &id));
	assert_false(http_param_id("abc", &id));
	assert_false(http_param_id("12abc", &id));
	assert_false(http_param_id(" 1", &id));
	assert_false(http_param_id("", &id));
	assert_false(http_param_id(NULL, &id));
}

static void test_page(void **state)
{
	size_t limit, offset;
	char err[128];
	(void)state;

	assert_int_equal(http_param_page(NULL, 50, 1000, &limit, &offset, err, sizeof(err)), MN_OK);
	assert_int_equal(limit, 50);
	assert_int_equal(offset, 0);
	assert_int_equal(http_param_page("limit=2&offset=5", 50, 1000, &limit, &offset, err,
					 sizeof(err)),
			 MN_OK);
	assert_int_equal(limit, 2);
	assert_int_equal(offset, 5);
	assert_int_equal(http_param_page("limit=1000", 50, 1000, &limit, &offset, err, sizeof(err)),
			 MN_OK);
	assert_int_equal(limit, 1000);
	static const char *const bad_limit[] = {"limit=1001", "limit=0", "limit=-1", "limit=x",
						"limit="};
	for (size_t i = 0; i < sizeof(bad_limit) / sizeof(bad_limit[0]); i++) {
		assert_int_equal(http_param_page(bad_limit[i], 50, 1000, &limit, &offset, err,
						 sizeof(err)),
				 MN_INVALID);
		assert_non_null(strstr(err, "'limit'"));
	}
	static const char *const bad_offset[] = {"offset=-3", "offset=", "offset=1e3",
						 "offset=99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad_offset) / sizeof(bad_offset[0]); i++) {
		assert_int_equal(http_param_page(bad_offset[i], 50, 1000, &limit, &offset, err,
						 sizeof(err)),
				 MN_INVALID);
		assert_non_null(strstr(err, "'offset'"));
	}
}

static const char *type_of;

static const char *header(const struct http_request *req, const char *name)
{
	(void)req;
	return strcasecmp(name, "Content-Type") == 0 ? type_of : NULL;
}

static void test_require_json(void **state)
{
	struct http_request req = {.method = "POST", .header = header};
	struct http_response res;
	static const char *const ok[] = {NULL, "application/json",
					 "application/json; charset=utf-8", "APPLICATION/JSON"};
	static const char *const refused[] = {"text/plain", "application/jsonx",
					      "application/x-www-form-urlencoded", ""};
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		http_response_init(&res);
		type_of = ok[i];
		assert_true(http_require_json(&req, &res));
		http_response_release(&res);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		http_response_init(&res);
		type_of = refused[i];
		assert_false(http_require_json(&req, &res));
		assert_int_equal(res.status, 415);
		http_response_release(&res);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id),
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_require_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
