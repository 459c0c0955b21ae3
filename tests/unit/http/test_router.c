#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "http/router.h"

static void h_list(const struct http_request *q, struct http_response *s, void *c) { (void)q, (void)s, (void)c; }
static void h_one(const struct http_request *q, struct http_response *s, void *c) { (void)q, (void)s, (void)c; }

static int setup(void **state)
{
	struct http_router *r = http_router_create();

	assert_int_equal(http_router_add(r, "GET", "/users", h_list, NULL), MN_OK);
	assert_int_equal(http_router_add(r, "POST", "/users", h_list, NULL), MN_OK);
	assert_int_equal(http_router_add(r, "GET", "/users/{id}", h_one, (void *)1), MN_OK);
	assert_int_equal(http_router_add(r, "DELETE", "/users/{id}", h_one, NULL), MN_OK);
	assert_int_equal(http_router_add(r, "GET", "/a/{x}/b/{y}", h_one, NULL), MN_OK);
	assert_int_equal(http_router_add(r, "GET", "/", h_list, NULL), MN_OK);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	http_router_destroy(*state);
	return 0;
}

static void test_match_literal_and_params(void **state)
{
	struct http_route_match m;

	assert_int_equal(http_router_match(*state, "GET", "/users", &m), HTTP_MATCH_OK);
	assert_ptr_equal(m.fn, h_list);
	assert_string_equal(m.pattern, "/users");
	assert_int_equal(m.nparams, 0);

	assert_int_equal(http_router_match(*state, "GET", "/users/42", &m), HTTP_MATCH_OK);
	assert_ptr_equal(m.fn, h_one);
	assert_ptr_equal(m.ctx, (void *)1);
	assert_string_equal(m.pattern, "/users/{id}");
	assert_int_equal(m.nparams, 1);
	assert_string_equal(m.params[0], "42");

	assert_int_equal(http_router_match(*state, "GET", "/a/1/b/two", &m), HTTP_MATCH_OK);
	assert_int_equal(m.nparams, 2);
	assert_string_equal(m.params[0], "1");
	assert_string_equal(m.params[1], "two");

	assert_int_equal(http_router_match(*state, "GET", "/", &m), HTTP_MATCH_OK);
}

static void test_not_found(void **state)
{
	struct http_route_match m;
	static const char *const paths[] = {"/user", "/users/", "/users/1/x", "//users", "/users//",
					    "", "users", "/a/1/b", "/a//b/2"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		assert_int_equal(http_router_match(*state, "GET", paths[i], &m), HTTP_MATCH_NOT_FOUND);
}

static void test_method_not_allowed_lists_allow(void **state)
{
	struct http_route_match m;

	assert_int_equal(http_router_match(*state, "PATCH", "/users/1", &m), HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, DELETE, OPTIONS");
	assert_int_equal(http_router_match(*state, "DELETE", "/users", &m), HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, POST, OPTIONS");
	/* OPTIONS is answered by the server from allow. */
	assert_int_equal(http_router_match(*state, "OPTIONS", "/users", &m), HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, POST, OPTIONS");
}

static void test_allow_all_lists_every_method(void **state)
{
	char allow[96];

	http_router_allow_all(*state, allow, sizeof(allow));
	assert_string_equal(allow, "GET, HEAD, POST, DELETE, OPTIONS");
}

static void test_head_is_served_by_get(void **state)
{
	struct http_route_match m;

	assert_int_equal(http_router_match(*state, "HEAD", "/users/42", &m), HTTP_MATCH_OK);
	assert_string_equal(m.pattern, "/users/{id}");
	assert_int_equal(m.nparams, 1);
	assert_string_equal(m.params[0], "42");
	assert_string_equal(m.allow, "GET, HEAD, DELETE, OPTIONS");
	assert_int_equal(http_router_match(*state, "HEAD", "/nothing", &m), HTTP_MATCH_NOT_FOUND);
}

static void test_bad_patterns_refused(void **state)
{
	struct http_router *r = *state;

	assert_int_equal(http_router_add(r, "GET", "users", h_one, NULL), MN_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/x/{}", h_one, NULL), MN_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/x/{id", h_one, NULL), MN_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/x//y", h_one, NULL), MN_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/x/a{id}", h_one, NULL), MN_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/{a}/{b}/{c}/{d}/{e}", h_one, NULL), MN_INVALID);
	assert_int_equal(http_router_add(r, "GET", "/users", h_one, NULL), MN_INVALID); /* duplicate */
}

static void test_long_param_does_not_match(void **state)
{
	struct http_route_match m;
	char path[400] = "/users/";

	memset(path + 7, '9', 300);
	path[307] = '\0';
	assert_int_equal(http_router_match(*state, "GET", path, &m), HTTP_MATCH_NOT_FOUND);
}

static void test_query_get(void **state)
{
	char v[16];
	(void)state;

	assert_true(http_query_get("limit=10&offset=5", "offset", v, sizeof(v)));
	assert_string_equal(v, "5");
	assert_true(http_query_get("a=%41b+c&limit=1", "a", v, sizeof(v)));
	assert_string_equal(v, "Ab c");
	assert_true(http_query_get("flag&x=1", "flag", v, sizeof(v)));
	assert_string_equal(v, "");
	assert_false(http_query_get("limitx=1", "limit", v, sizeof(v)));
	assert_false(http_query_get(NULL, "limit", v, sizeof(v)));
	assert_false(http_query_get("limit=0123456789abcdefXYZ", "limit", v, sizeof(v)));
	/* too long, not absent: GET /config refuses it rather than list all */
	assert_true(http_query_has("limit=0123456789abcdefXYZ", "limit"));
	assert_true(http_query_has("x=1&flag", "flag"));
	assert_true(http_query_has("flag=&x=1", "flag"));
	assert_false(http_query_has("limitx=1&x=limit", "limit"));
	assert_false(http_query_has(NULL, "limit"));
}

static void test_response_headers_refuse_injection(void **state)
{
	struct http_response res;
	(void)state;

	http_response_init(&res);
	assert_true(http_response_add_header(&res, "Location", "/users/1"));
	assert_false(http_response_add_header(&res, "X-Evil", "a\r\nSet-Cookie: x"));
	assert_false(http_response_add_header(&res, "Bad:Name", "x"));
	assert_string_equal(res.headers, "Location: /users/1\r\n");
	http_reply_error(&res, 404, "user %d not found", 7);
	assert_int_equal(res.status, 404);
	assert_string_equal(res.body.data, "{\"error\":\"user 7 not found\"}");
	http_reply_json(&res, 204, NULL);
	assert_int_equal(res.body.len, 0);
	assert_null(res.content_type);
	http_response_release(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_match_literal_and_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_method_not_allowed_lists_allow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_is_served_by_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allow_all_lists_every_method, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_patterns_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_param_does_not_match, setup, teardown),
		cmocka_unit_test(test_query_get),
		cmocka_unit_test(test_response_headers_refuse_injection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
