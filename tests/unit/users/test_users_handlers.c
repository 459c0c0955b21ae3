/* The users handlers behind a real router over the memory repository, fed
 * hand-made requests as the server would: the statuses, headers and bodies
 * a client sees (docs/http-api.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/drivers.h"
#include "users/users_handlers.h"
#include "route_call.h"

struct fixture {
	struct users_repo *repo;
	struct users_service *svc;
	struct http_router *router;
	struct http_response res;
};

static int setup_with_repo(void **state, struct users_repo *repo)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	*state = f;
	f->repo = repo;
	f->svc = users_service_create(f->repo);
	f->router = http_router_create();
	http_response_init(&f->res);
	if (f->repo == NULL || f->svc == NULL || f->router == NULL)
		return -1;
	return users_handlers_register(f->router, f->svc) == MN_OK ? 0 : -1;
}

static int setup(void **state)
{
	return setup_with_repo(state, users_repo_memory_create());
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	http_response_release(&f->res);
	http_router_destroy(f->router);
	users_service_destroy(f->svc);
	users_repo_destroy(f->repo);
	free(f);
	return 0;
}

/* Runs one request; the reply is in f->res. 'content_type' NULL: none. */
static void request(struct fixture *f, const char *method, const char *target, const char *body,
		    const char *content_type)
{
	struct route_headers h = {.content_type = content_type, .request_id = "req-9"};

	route_call(f->router, &f->res, method, target, body, &h);
}

static void post(struct fixture *f, const char *body)
{
	request(f, "POST", "/users", body, "application/json");
}

static void put(struct fixture *f, const char *target, const char *body)
{
	request(f, "PUT", target, body, "application/json");
}

static void get(struct fixture *f, const char *target)
{
	request(f, "GET", target, NULL, NULL);
}

static const char *body_text(const struct fixture *f)
{
	return route_body(&f->res);
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void expect(const struct fixture *f, int status, const char *body)
{
	route_expect(&f->res, status, body);
}

static void test_routes_registered(void **state)
{
	struct fixture *f = *state;
	struct http_route_match m;

	/* the Allow a 405 and an OPTIONS carry */
	assert_int_equal(http_router_match(f->router, "PATCH", "/users/1", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, PUT, DELETE, OPTIONS");
	assert_int_equal(http_router_match(f->router, "DELETE", "/users", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, POST, OPTIONS");
	assert_int_equal(http_router_match(f->router, "PUT", "/users", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_int_equal(http_router_match(f->router, "GET", "/users/1/x", &m),
			 HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(f->router, "HEAD", "/users/1", &m), HTTP_MATCH_OK);
	assert_string_equal(m.pattern, "/users/{id}");
	/* a second registration on the same router is refused */
	assert_int_equal(users_handlers_register(f->router, f->svc), MN_INVALID);
}

static void test_create_201_with_location(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}");
	assert_int_equal(f->res.status, 201);
	assert_string_equal(f->res.headers, "Location: /users/1\r\n");
	assert_string_equal(f->res.content_type, "application/json");
	assert_string_equal(body_text(f),
			    "{\"id\":1,\"name\":\"Ada\",\"email\":\"ada@example.com\"}");

	/* trimmed; no email is null; other fields ignored; a Content-Type
	 * with parameters, or none at all, is JSON */
	request(f, "POST", "/users", "{\"name\":\"  Grace  \",\"role\":\"admiral\"}",
		"Application/JSON; charset=utf-8");
	assert_int_equal(f->res.status, 201);
	assert_string_equal(f->res.headers, "Location: /users/2\r\n");
	assert_string_equal(body_text(f), "{\"id\":2,\"name\":\"Grace\",\"email\":null}");
	request(f, "POST", "/users", "{\"name\":\"Alan\",\"email\":null}", NULL);
	assert_int_equal(f->res.status, 201);
	assert_string_equal(f->res.headers, "Location: /users/3\r\n");
	assert_string_equal(body_text(f), "{\"id\":3,\"name\":\"Alan\",\"email\":null}");
}

static void test_get_one(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}");
	get(f, "/users/1");
	expect(f, 200, "{\"id\":1,\"name\":\"Ada\",\"email\":\"ada@example.com\"}");
}

static void test_404_for_a_missing_user(void **state)
{
	struct fixture *f = *state;
	const char *valid = "{\"name\":\"Ada\"}";

	get(f, "/users/99");
	expect(f, 404, "{\"error\":\"user 99 not found\"}");
	put(f, "/users/99", valid);
	expect(f, 404, "{\"error\":\"user 99 not found\"}");
	request(f, "DELETE", "/users/99", NULL, NULL);
	expect(f, 404, "{\"error\":\"user 99 not found\"}");
	get(f, "/users/9223372036854775807");
	expect(f, 404, "{\"error\":\"user 9223372036854775807 not found\"}");
}

static void test_400_for_a_bad_id(void **state)
{
	struct fixture *f = *state;
	const char *bad[] = {"abc", "0", "-1", "+1", "01x", "1.5", "9223372036854775808", " 1"};
	char target[128], want[128];
	char longid[101];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(target, sizeof(target), "/users/%s", bad[i]);
		snprintf(want, sizeof(want), "{\"error\":\"invalid user id '%s'\"}", bad[i]);
		get(f, target);
		expect(f, 400, want);
		put(f, target, "{\"name\":\"Ada\"}");
		expect(f, 400, want);
		request(f, "DELETE", target, NULL, NULL);
		expect(f, 400, want);
	}
	/* the id is quoted to 64 bytes at most */
	memset(longid, '7', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	snprintf(target, sizeof(target), "/users/%s", longid);
	snprintf(want, sizeof(want), "{\"error\":\"invalid user id '%.64s'\"}", longid);
	get(f, target);
	expect(f, 400, want);
}

/* POST and PUT refuse the same bodies with the same words. */
static void expect_refused(struct fixture *f, const char *body, const char *want)
{
	post(f, body);
	expect(f, 400, want);
	put(f, "/users/1", body);
	expect(f, 400, want);
}

static void test_400_for_bad_bodies(void **state)
{
	struct fixture *f = *state;
	char name[USER_EMAIL_MAX + 8], body[USER_EMAIL_MAX + 600], deep[1001];

	post(f, "{\"name\":\"Ada\"}");
	assert_int_equal(f->res.status, 201);

	post(f, "{oops");
	assert_int_equal(f->res.status, 400);
	assert_true(starts_with(body_text(f), "{\"error\":\"invalid JSON: "));
	assert_int_equal(f->res.headers_len, 0);
	post(f, "");
	assert_int_equal(f->res.status, 400);
	assert_true(starts_with(body_text(f), "{\"error\":\"invalid JSON: "));
	expect_refused(f, "[1]", "{\"error\":\"the body must be a JSON object\"}");
	expect_refused(f, "\"Ada\"", "{\"error\":\"the body must be a JSON object\"}");
	expect_refused(f, "{\"email\":\"a@b\"}", "{\"error\":\"'name' is required\"}");
	expect_refused(f, "{\"name\":null}", "{\"error\":\"'name' is required\"}");
	expect_refused(f, "{\"name\":7}", "{\"error\":\"'name' must be a string\"}");
	/* jansson's words after the prefix */
	put(f, "/users/1", "{\"name\":\"Ada\",\"name\":\"Bob\"}");
	assert_int_equal(f->res.status, 400);
	assert_true(starts_with(body_text(f), "{\"error\":\"invalid JSON: duplicate"));
	expect_refused(f, "{\"name\":\"   \"}",
		       "{\"error\":\"'name' must be 1 to 200 bytes of text, not only spaces\"}");
	expect_refused(f, "{\"name\":\"A\\nda\"}",
		       "{\"error\":\"'name' must not contain control characters (U+000A at byte "
		       "1)\"}");
	expect_refused(f, "{\"name\":\"Ada\",\"email\":\"nobody\"}",
		       "{\"error\":\"'email' must be an address such as name@example.com, at "
		       "most 254 bytes\"}");
	expect_refused(f, "{\"name\":\"Ada\",\"email\":\"\"}",
		       "{\"error\":\"'email' must be an address such as name@example.com, at "
		       "most 254 bytes\"}");
	expect_refused(f, "{\"name\":\"Ada\",\"email\":1}",
		       "{\"error\":\"'email' must be a string\"}");

	/* USER_NAME_MAX bytes are a name, one more is not; the 960 bytes
	 * the integration test sends neither */
	memset(name, 'n', USER_NAME_MAX);
	name[USER_NAME_MAX] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	put(f, "/users/1", body);
	assert_int_equal(f->res.status, 200);
	strcat(name, "n");
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	expect_refused(f, body,
		       "{\"error\":\"'name' must be 1 to 200 bytes of text, not only spaces\"}");

	/* an email of 255 bytes */
	memset(name, 'e', 250);
	name[250] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"Ada\",\"email\":\"%s@x.yz\"}", name);
	expect_refused(f, body,
		       "{\"error\":\"'email' must be an address such as name@example.com, at "
		       "most 254 bytes\"}");

	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	expect_refused(f, deep, "{\"error\":\"JSON nested deeper than 64 levels\"}");

	/* nothing refused was stored or changed */
	memset(name, 'n', USER_NAME_MAX);
	name[USER_NAME_MAX] = '\0';
	snprintf(body, sizeof(body), "[{\"id\":1,\"name\":\"%s\",\"email\":null}]", name);
	get(f, "/users");
	expect(f, 200, body);
}

static void test_415_for_a_body_that_is_not_json(void **state)
{
	struct fixture *f = *state;
	const char *want = "{\"error\":\"the body must be application/json\"}";

	request(f, "POST", "/users", "{\"name\":\"Ada\"}", "text/plain");
	expect(f, 415, want);
	request(f, "POST", "/users", "{\"name\":\"Ada\"}", "application/jsonx");
	expect(f, 415, want);
	post(f, "{\"name\":\"Ada\"}");
	assert_int_equal(f->res.status, 201);
	request(f, "PUT", "/users/1", "{\"name\":\"Bob\"}", "text/plain");
	expect(f, 415, want);
	/* the id is looked at first */
	request(f, "PUT", "/users/x", "{\"name\":\"Bob\"}", "text/plain");
	expect(f, 400, "{\"error\":\"invalid user id 'x'\"}");
	get(f, "/users");
	expect(f, 200, "[{\"id\":1,\"name\":\"Ada\",\"email\":null}]");
}

static void test_update_and_conflicts(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}");
	post(f, "{\"name\":\"Bob\",\"email\":\"bob@example.com\"}");
	assert_int_equal(f->res.status, 201);

	put(f, "/users/2", "{\"name\":\" Robert \",\"email\":\"robert@example.com\"}");
	expect(f, 200, "{\"id\":2,\"name\":\"Robert\",\"email\":\"robert@example.com\"}");
	/* the email dropped when the body has none */
	put(f, "/users/2", "{\"name\":\"Robert\"}");
	expect(f, 200, "{\"id\":2,\"name\":\"Robert\",\"email\":null}");

	/* emails are unique without regard to ASCII case */
	post(f, "{\"name\":\"Eve\",\"email\":\"ADA@example.com\"}");
	expect(f, 409, "{\"error\":\"email 'ADA@example.com' is already taken\"}");
	put(f, "/users/2", "{\"name\":\"Robert\",\"email\":\"Ada@Example.com\"}");
	expect(f, 409, "{\"error\":\"email 'Ada@Example.com' is already taken\"}");
	/* a user keeps its own email */
	put(f, "/users/1", "{\"name\":\"Ada L.\",\"email\":\"ADA@example.com\"}");
	expect(f, 200, "{\"id\":1,\"name\":\"Ada L.\",\"email\":\"ADA@example.com\"}");
	get(f, "/users/2");
	expect(f, 200, "{\"id\":2,\"name\":\"Robert\",\"email\":null}");
}

static void test_delete_204_then_404(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"name\":\"Ada\"}");
	post(f, "{\"name\":\"Bob\"}");
	request(f, "DELETE", "/users/1", NULL, NULL);
	assert_int_equal(f->res.status, 204);
	assert_int_equal(f->res.body.len, 0);
	assert_null(f->res.content_type);
	assert_int_equal(f->res.headers_len, 0);
	get(f, "/users/1");
	expect(f, 404, "{\"error\":\"user 1 not found\"}");
	request(f, "DELETE", "/users/1", NULL, NULL);
	expect(f, 404, "{\"error\":\"user 1 not found\"}");
	get(f, "/users");
	expect(f, 200, "[{\"id\":2,\"name\":\"Bob\",\"email\":null}]");
}

static void test_list_pages(void **state)
{
	struct fixture *f = *state;
	char body[64];

	get(f, "/users");
	expect(f, 200, "[]");
	for (int i = 1; i <= USERS_LIMIT_DEFAULT + 1; i++) {
		snprintf(body, sizeof(body), "{\"name\":\"u%d\"}", i);
		post(f, body);
		assert_int_equal(f->res.status, 201);
	}
	/* the default page: USERS_LIMIT_DEFAULT users from the first */
	get(f, "/users");
	assert_int_equal(f->res.status, 200);
	assert_true(starts_with(body_text(f), "[{\"id\":1,\"name\":\"u1\",\"email\":null},"));
	assert_non_null(strstr(body_text(f), "{\"id\":50,\"name\":\"u50\",\"email\":null}]"));
	assert_null(strstr(body_text(f), "\"u51\""));

	get(f, "/users?limit=2&offset=1");
	expect(f, 200,
	       "[{\"id\":2,\"name\":\"u2\",\"email\":null},{\"id\":3,\"name\":\"u3\",\"email\":"
	       "null}]");
	get(f, "/users?offset=50");
	expect(f, 200, "[{\"id\":51,\"name\":\"u51\",\"email\":null}]");
	get(f, "/users?offset=51");
	expect(f, 200, "[]");
	/* an offset is at most INT64_MAX */
	get(f, "/users?offset=9223372036854775807");
	expect(f, 200, "[]");
	get(f, "/users?offset=9223372036854775808");
	expect(f, 400, "{\"error\":\"'offset' must be a non-negative integer\"}");
	get(f, "/users?limit=1000&offset=49");
	expect(f, 200,
	       "[{\"id\":50,\"name\":\"u50\",\"email\":null},{\"id\":51,\"name\":\"u51\",\"email\":"
	       "null}]");
	get(f, "/users?limit=1");
	expect(f, 200, "[{\"id\":1,\"name\":\"u1\",\"email\":null}]");
}

static void test_list_400_for_bad_paging(void **state)
{
	struct fixture *f = *state;
	const char *limit = "{\"error\":\"'limit' must be an integer from 1 to 1000\"}";
	const char *offset = "{\"error\":\"'offset' must be a non-negative integer\"}";

	get(f, "/users?limit=0");
	expect(f, 400, limit);
	get(f, "/users?limit=1001");
	expect(f, 400, limit);
	get(f, "/users?limit=-1");
	expect(f, 400, limit);
	get(f, "/users?limit=ten");
	expect(f, 400, limit);
	get(f, "/users?limit=");
	expect(f, 400, limit);
	get(f, "/users?offset=-1");
	expect(f, 400, offset);
	get(f, "/users?offset=x");
	expect(f, 400, offset);
	get(f, "/users?limit=5&offset=1e3");
	expect(f, 400, offset);
}

/* A failing store: a full disk on writes, busy on reads, broken lists. */
static enum mn_err busy_create(struct users_repo *r, const char *name, const char *email,
			       struct user *out, char *err, size_t errlen)
{
	(void)r, (void)name, (void)email, (void)out;
	return mn_error(err, errlen, MN_UNAVAILABLE, "the store cannot write: disk full");
}

static enum mn_err busy_get(struct users_repo *r, int64_t id, struct user *out)
{
	(void)r, (void)id, (void)out;
	return MN_UNAVAILABLE;
}

static enum mn_err busy_list(struct users_repo *r, size_t limit, size_t offset, struct user **out,
			     size_t *n)
{
	(void)r, (void)limit, (void)offset;
	*out = NULL;
	*n = 0;
	return MN_IO;
}

static enum mn_err busy_update(struct users_repo *r, int64_t id, const char *name,
			       const char *email, struct user *out, char *err, size_t errlen)
{
	(void)r, (void)id, (void)name, (void)email, (void)out, (void)err, (void)errlen;
	/* no words for the client: the handler has its own */
	return MN_UNAVAILABLE;
}

static enum mn_err busy_remove(struct users_repo *r, int64_t id, char *err, size_t errlen)
{
	(void)r, (void)id;
	return mn_error(err, errlen, MN_IO, "disk I/O error at /var/lib/meshnode/users.db");
}

static void busy_destroy(struct users_repo *r)
{
	free(r);
}

static const struct users_repo_ops busy_ops = {
	.create = busy_create,
	.get = busy_get,
	.list = busy_list,
	.update = busy_update,
	.remove = busy_remove,
	.destroy = busy_destroy,
};

static int setup_busy_store(void **state)
{
	struct users_repo *r = malloc(sizeof(*r));

	if (r)
		r->ops = &busy_ops;
	return setup_with_repo(state, r);
}

static void test_store_failures(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"name\":\"Ada\"}");
	assert_int_equal(f->res.status, 503);
	assert_string_equal(f->res.headers, "Retry-After: 1\r\n");
	assert_string_equal(body_text(f), "{\"error\":\"the store cannot write: disk full\"}");
	get(f, "/users/1");
	assert_int_equal(f->res.status, 503);
	assert_string_equal(f->res.headers, "Retry-After: 1\r\n");
	assert_string_equal(body_text(f), "{\"error\":\"the store is unavailable; try again\"}");
	put(f, "/users/1", "{\"name\":\"Ada\"}");
	assert_int_equal(f->res.status, 503);
	assert_string_equal(body_text(f), "{\"error\":\"the store is unavailable; try again\"}");
	/* what the store said of itself is not for the client */
	request(f, "DELETE", "/users/1", NULL, NULL);
	expect(f, 500, "{\"error\":\"internal error\"}");
	get(f, "/users");
	expect(f, 500, "{\"error\":\"internal error\"}");
	/* a bad request is refused before the store is asked */
	post(f, "{\"name\":\"\"}");
	expect(f, 400, "{\"error\":\"'name' must be 1 to 200 bytes of text, not only spaces\"}");
	get(f, "/users?limit=0");
	expect(f, 400, "{\"error\":\"'limit' must be an integer from 1 to 1000\"}");
}

#define WITH(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		WITH(test_routes_registered),
		WITH(test_create_201_with_location),
		WITH(test_get_one),
		WITH(test_404_for_a_missing_user),
		WITH(test_400_for_a_bad_id),
		WITH(test_400_for_bad_bodies),
		WITH(test_415_for_a_body_that_is_not_json),
		WITH(test_update_and_conflicts),
		WITH(test_delete_204_then_404),
		WITH(test_list_pages),
		WITH(test_list_400_for_bad_paging),
		cmocka_unit_test_setup_teardown(test_store_failures, setup_busy_store, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
