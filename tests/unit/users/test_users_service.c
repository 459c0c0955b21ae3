#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "mutate.h"
#include "nested.h"
#include "small_stack.h"
#include "core/json_depth.h"
#include "store/drivers.h"
#include "users/users_service.h"

static enum mn_err validate(const char *body, char **name, char **email, char *err)
{
	return users_validate(body, strlen(body), name, email, err, 256);
}

static void test_valid_bodies(void **state)
{
	char *name, *email, err[256];
	(void)state;

	assert_int_equal(validate("{\"name\":\"Ada\",\"email\":\"ada@example.com\"}", &name, &email, err), MN_OK);
	assert_string_equal(name, "Ada");
	assert_string_equal(email, "ada@example.com");
	free(name);
	free(email);

	/* email optional or null; unknown fields ignored */
	assert_int_equal(validate("{\"name\":\"Bob\",\"age\":3,\"tags\":[1]}", &name, &email, err), MN_OK);
	assert_string_equal(name, "Bob");
	assert_null(email);
	free(name);
	assert_int_equal(validate("{\"name\":\"Bob\",\"email\":null}", &name, &email, err), MN_OK);
	assert_null(email);
	free(name);

	/* surrounding spaces trimmed from both; case kept; UTF-8 kept */
	assert_int_equal(validate("{\"name\":\"  Ren\u00e9e \",\"email\":\" DUP@x.com \"}", &name,
				  &email, err),
			 MN_OK);
	assert_string_equal(name, "Ren\xc3\xa9"
				  "e");
	assert_string_equal(email, "DUP@x.com");
	free(name);
	free(email);
}

static void test_invalid_bodies(void **state)
{
	static const struct {
		const char *body;
		const char *message_part;
	} cases[] = {
		{"{\"name\":", "invalid JSON"},
		{"", "invalid JSON"},
		{"[{\"name\":\"x\"}]", "JSON object"},
		{"\"name\"", "JSON object"},
		{"{\"email\":\"a@b.c\"}", "'name' is required"},
		{"{\"name\":null}", "'name' is required"},
		{"{\"name\":42}", "'name' must be a string"},
		{"{\"name\":[\"x\"]}", "'name' must be a string"},
		{"{\"name\":\"\"}", "'name' must be"},
		{"{\"name\":\"   \"}", "'name' must be"},
		{"{\"name\":\"a\\u0000b\"}", "invalid JSON"},
		{"{\"name\":\"x\",\"email\":7}", "'email' must be a string"},
		{"{\"name\":\"x\",\"email\":\"not-an-email\"}", "'email' must be an address"},
		{"{\"name\":\"x\",\"email\":\"@example.com\"}", "'email' must be an address"},
		{"{\"name\":\"x\",\"email\":\"a@\"}", "'email' must be an address"},
		{"{\"name\":\"x\",\"email\":\"a@b@c\"}", "'email' must be an address"},
		{"{\"name\":\"x\",\"name\":\"y\"}", "invalid JSON"},
		{"{\"name\":\"x\",\"email\":\"a b@c.d\"}", "'email' must be an address"},
		{"{\"name\":\"x\",\"email\":\"   \"}", "'email' must be an address"},
		{"{\"name\":\"x\",\"email\":\"\"}", "'email' must be an address"},
		/* control characters anywhere, escaped or raw, never trimmed away */
		{"{\"name\":\"Ada\\n\"}",
		 "'name' must not contain control characters (U+000A at byte 3)"},
		{"{\"name\":\"\\tAda\"}",
		 "'name' must not contain control characters (U+0009 at byte 0)"},
		{"{\"name\":\"A\\u001b[2Jda\"}", "(U+001B at byte 1)"},
		{"{\"name\":\"Ada\\u007f\"}", "(U+007F at byte 3)"},
		{"{\"name\":\"Ada\\u0085\"}", "(U+0085 at byte 3)"},
		{"{\"name\":\"Ada\\u009f\"}", "(U+009F at byte 3)"},
		{"{\"name\":\"Ada\\r\\nX-Injected: 1\"}", "(U+000D at byte 3)"},
		{"{\"name\":\"Ada\x01\"}", "invalid JSON"}, /* raw: jansson refuses it */
		{"{\"name\":\"x\",\"email\":\"a\\u0000b@c.d\"}", "invalid JSON"},
		{"{\"name\":\"x\",\"email\":\"dup@x.com\\n\"}",
		 "'email' must not contain control characters (U+000A at byte 9)"},
		{"{\"name\":\"x\",\"email\":\"d\\u0007up@x.com\"}", "'email' must not contain"},
		{"{\"name\":\"x\",\"email\":\"dup@x.com\\u0085\"}", "'email' must not contain"},
		/* invalid UTF-8: jansson refuses it */
		{"{\"name\":\"Ad\xff\"}", "invalid JSON"},
		{"{\"name\":\"Ad\xc3\"}", "invalid JSON"},
		{"{\"name\":\"Ad\xed\xa0\x80\"}", "invalid JSON"},		   /* a surrogate */
		{"{\"name\":\"x\",\"email\":\"\xc0\xaf@x.com\"}", "invalid JSON"}, /* overlong */
	};
	char *name, *email, err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(validate(cases[i].body, &name, &email, err), MN_INVALID);
		assert_null(name);
		assert_null(email);
		if (strstr(err, cases[i].message_part) == NULL)
			fail_msg("body %s: message '%s' lacks '%s'", cases[i].body, err,
				 cases[i].message_part);
	}
}

static void test_length_limits(void **state)
{
	char body[1024], *name, *email, err[256];
	char big[USER_NAME_MAX + 2];
	(void)state;

	memset(big, 'n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", big);
	assert_int_equal(validate(body, &name, &email, err), MN_INVALID);
	big[USER_NAME_MAX] = '\0'; /* exactly the limit is fine */
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", big);
	assert_int_equal(validate(body, &name, &email, err), MN_OK);
	free(name);
}

/* 'depth' levels of "extra" nesting inside an otherwise valid body. */
static char *body_nested(size_t depth)
{
	return nested_json("{\"name\":\"Ada\",\"extra\":", depth - 1, "}", NULL);
}

static void test_deep_bodies_refused(void **state)
{
	char *name, *email, err[256], *body;
	(void)state;

	/* 64 levels in all (the object and 63 arrays) are accepted */
	body = body_nested(MN_JSON_MAX_DEPTH);
	assert_int_equal(validate(body, &name, &email, err), MN_OK);
	free(name);
	free(body);
	body = body_nested(MN_JSON_MAX_DEPTH + 1);
	assert_int_equal(validate(body, &name, &email, err), MN_INVALID);
	assert_string_equal(err, "JSON nested deeper than 64 levels");
	assert_null(name);
	assert_null(email);
	free(body);

	body = small_stack_brackets(1000);
	assert_int_equal(users_validate(body, 1000, &name, &email, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "JSON nested deeper than 64 levels");
	free(body);
}

struct deep_call {
	struct users_service *svc;
	const char *body;
	size_t len;
	enum mn_err create, update;
	char err[256];
};

static void *deep_call_run(void *arg)
{
	struct deep_call *c = arg;
	struct user u;

	user_init(&u);
	c->create = users_service_create_user(c->svc, c->body, c->len, &u, c->err, sizeof(c->err));
	c->update = users_service_update(c->svc, 1, c->body, c->len, &u, c->err, sizeof(c->err));
	user_release(&u);
	return NULL;
}

/* On a worker-sized stack: past jansson's own limit of 2048 levels its
 * recursion alone would need about 160 KiB. */
static void test_deep_body_on_a_worker_stack(void **state)
{
	struct users_repo *repo = users_repo_memory_create();
	struct deep_call c = {.svc = users_service_create(repo), .len = 4096};
	char *body = small_stack_brackets(c.len);
	(void)state;

	c.body = body;
	assert_true(small_stack_run(deep_call_run, &c));
	assert_int_equal(c.create, MN_INVALID);
	assert_int_equal(c.update, MN_INVALID);
	assert_string_equal(c.err, "JSON nested deeper than 64 levels");
	free(body);
	users_service_destroy(c.svc);
	users_repo_destroy(repo);
}

static void test_service_over_memory_repo(void **state)
{
	struct users_repo *repo = users_repo_memory_create();
	struct users_service *svc = users_service_create(repo);
	struct user u, got;
	char err[256];
	const char *body = "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}";
	(void)state;

	user_init(&u);
	user_init(&got);
	assert_int_equal(users_service_create_user(svc, body, strlen(body), &u, err, sizeof(err)), MN_OK);
	assert_int_equal(u.id, 1);
	assert_int_equal(users_service_create_user(svc, body, strlen(body), &got, err, sizeof(err)),
			 MN_CONFLICT);
	assert_non_null(strstr(err, "already taken"));
	/* the same address, trimmed and without case: one address */
	body = "{\"name\":\"Ada 2\",\"email\":\"  ADA@Example.COM \"}";
	assert_int_equal(users_service_create_user(svc, body, strlen(body), &got, err, sizeof(err)),
			 MN_CONFLICT);
	assert_string_equal(err, "email 'ADA@Example.COM' is already taken");
	assert_int_equal(users_service_get(svc, 1, &got), MN_OK);
	assert_string_equal(got.name, "Ada");
	body = "{\"name\":\"Ada L\"}";
	assert_int_equal(users_service_update(svc, 1, body, strlen(body), &got, err, sizeof(err)), MN_OK);
	assert_string_equal(got.name, "Ada L");
	assert_null(got.email);
	assert_int_equal(users_service_update(svc, 99, body, strlen(body), &got, err, sizeof(err)),
			 MN_NOT_FOUND);
	assert_int_equal(users_service_update(svc, 1, "{}", 2, &got, err, sizeof(err)), MN_INVALID);
	/* an update follows the same rules */
	body = "{\"name\":\"Ada\\u0000\"}";
	assert_int_equal(users_service_update(svc, 1, body, strlen(body), &got, err, sizeof(err)),
			 MN_INVALID);
	body = "{\"name\":\"Ada\\n\"}";
	assert_int_equal(users_service_update(svc, 1, body, strlen(body), &got, err, sizeof(err)),
			 MN_INVALID);
	assert_non_null(strstr(err, "control characters"));
	body = "{\"name\":\"Bob\",\"email\":\"bob@example.com\"}";
	assert_int_equal(users_service_create_user(svc, body, strlen(body), &got, err, sizeof(err)),
			 MN_OK);
	body = "{\"name\":\"Ada\",\"email\":\" BOB@example.com\"}";
	assert_int_equal(users_service_update(svc, 1, body, strlen(body), &got, err, sizeof(err)),
			 MN_CONFLICT);
	body = "{\"name\":\" Ada \",\"email\":\" ADA@example.com \"}";
	assert_int_equal(users_service_update(svc, 1, body, strlen(body), &got, err, sizeof(err)),
			 MN_OK);
	assert_string_equal(got.name, "Ada");
	assert_string_equal(got.email, "ADA@example.com");
	assert_int_equal(users_service_delete(svc, 1, err, sizeof(err)), MN_OK);
	assert_int_equal(users_service_delete(svc, 1, err, sizeof(err)), MN_NOT_FOUND);
	user_release(&u);
	user_release(&got);
	users_service_destroy(svc);
	users_repo_destroy(repo);
}

static void test_user_json(void **state)
{
	struct user u;
	char *s;
	(void)state;

	user_init(&u);
	assert_int_equal(user_set(&u, 7, "Grace \"Amazing\" Hopper", NULL), MN_OK);
	json_t *o = user_to_json(&u);
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"email\":null,\"id\":7,\"name\":\"Grace \\\"Amazing\\\" Hopper\"}");
	free(s);
	json_decref(o);
	user_release(&u);
}

/* Request bodies mutated thousands of ways: MN_INVALID with a message, or
 * MN_OK with a name within its limit. */
static void test_mutated_bodies(void **state)
{
	static const char body[] = "{\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\","
				   "\"extra\":[1,{\"x\":null}]}";
	char m[2 * sizeof(body)], err[256];
	uint64_t rng = 0xD1B54A32D192ED03ULL;
	(void)state;

	for (int round = 0; round < 3000; round++) {
		size_t mlen = sizeof(body) - 1;
		char *name = NULL, *email = NULL;
		enum mn_err e;

		memcpy(m, body, mlen);
		mutate(m, &mlen, sizeof(m), &rng, 1 + round % 4);
		err[0] = '\0';
		e = users_validate(m, mlen, &name, &email, err, sizeof(err));
		if (e == MN_OK) {
			assert_non_null(name);
			assert_true(strlen(name) <= USER_NAME_MAX);
		} else {
			assert_int_equal(e, MN_INVALID);
			assert_true(err[0] != '\0');
		}
		free(name);
		free(email);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_bodies),
		cmocka_unit_test(test_invalid_bodies),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_deep_bodies_refused),
		cmocka_unit_test(test_deep_body_on_a_worker_stack),
		cmocka_unit_test(test_mutated_bodies),
		cmocka_unit_test(test_service_over_memory_repo),
		cmocka_unit_test(test_user_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
