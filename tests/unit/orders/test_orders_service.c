#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json_depth.h"
#include "core/log.h"
#include "store/drivers.h"
#include "orders/orders_service.h"
#include "fake_users_peer.h"
#include "mutate.h"
#include "nested.h"
#include "small_stack.h"

struct fixture {
	struct fake_users_peer peer;
	struct users_peer iface;
	struct orders_repo *repo;
	struct orders_service *svc;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	fake_users_peer_init(&f->peer);
	f->iface = fake_users_peer_iface(&f->peer);
	f->repo = orders_repo_memory_create(NULL);
	f->svc = orders_service_create(f->repo, &f->iface);
	*state = f;
	return f->repo && f->svc ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	orders_service_destroy(f->svc);
	orders_repo_destroy(f->repo);
	free(f);
	return 0;
}

static size_t stored(struct fixture *f)
{
	struct order *list;
	size_t n;

	assert_int_equal(orders_service_list(f->svc, ORDERS_LIMIT_MAX, 0, &list, &n), MN_OK);
	order_list_free(list, n);
	return n;
}

static enum mn_err create(struct fixture *f, const char *body, const struct users_peer_trace *trace,
			  struct order *out, unsigned *retry, char *err)
{
	return orders_service_create_order(f->svc, body, strlen(body), trace, out, retry, err, 256);
}

static enum mn_err validate(const char *body, struct order *out, char *err)
{
	return orders_validate(body, strlen(body), out, err, 256);
}

static void test_valid_bodies(void **state)
{
	struct order o;
	char err[256], body[512], product[ORDER_PRODUCT_MAX + 1];
	(void)state;

	assert_int_equal(validate("{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}", &o, err),
			 MN_OK);
	assert_int_equal(o.id, 0);
	assert_int_equal(o.user_id, 42);
	assert_string_equal(o.product, "tea");
	assert_int_equal(o.quantity, 3);
	order_release(&o);

	/* trimmed; unknown fields ignored; the limits themselves are fine */
	assert_int_equal(
		validate("{\"note\":[1],\"quantity\":1000000,\"product\":\"   green tea \","
			 "\"user_id\":9223372036854775807,\"id\":5}",
			 &o, err),
		MN_OK);
	assert_string_equal(o.product, "green tea");
	assert_int_equal(o.quantity, 1000000);
	assert_int_equal(o.user_id, INT64_MAX);
	assert_int_equal(o.id, 0);
	order_release(&o);
	assert_int_equal(validate("{\"user_id\":1,\"product\":\"x\",\"quantity\":1}", &o, err),
			 MN_OK);
	order_release(&o);

	/* ORDER_PRODUCT_MAX bytes once trimmed, more before */
	memset(product, 'p', ORDER_PRODUCT_MAX);
	product[ORDER_PRODUCT_MAX] = '\0';
	snprintf(body, sizeof(body), "{\"user_id\":1,\"product\":\"   %s   \",\"quantity\":1}",
		 product);
	assert_int_equal(validate(body, &o, err), MN_OK);
	assert_int_equal(strlen(o.product), ORDER_PRODUCT_MAX);
	order_release(&o);
}

static void test_invalid_bodies(void **state)
{
	static const struct {
		const char *body;
		const char *message_part;
	} cases[] = {
		{"", "invalid JSON"},
		{"{\"user_id\":1,", "invalid JSON"},
		{"{\"user_id\":1,\"user_id\":2,\"product\":\"x\",\"quantity\":1}", "invalid JSON"},
		{"{\"user_id\":1,\"product\":\"a\\u0000b\",\"quantity\":1}", "invalid JSON"},
		{"[{\"user_id\":1,\"product\":\"x\",\"quantity\":1}]", "JSON object"},
		{"\"order\"", "JSON object"},
		{"null", "JSON object"},
		/* user_id */
		{"{\"product\":\"x\",\"quantity\":1}", "'user_id' is required"},
		{"{\"user_id\":null,\"product\":\"x\",\"quantity\":1}", "'user_id' is required"},
		{"{\"user_id\":\"42\",\"product\":\"x\",\"quantity\":1}",
		 "'user_id' must be an integer"},
		{"{\"user_id\":42.0,\"product\":\"x\",\"quantity\":1}",
		 "'user_id' must be an integer"},
		{"{\"user_id\":4e1,\"product\":\"x\",\"quantity\":1}",
		 "'user_id' must be an integer"},
		{"{\"user_id\":true,\"product\":\"x\",\"quantity\":1}",
		 "'user_id' must be an integer"},
		{"{\"user_id\":0,\"product\":\"x\",\"quantity\":1}",
		 "'user_id' must be at least 1"},
		{"{\"user_id\":-3,\"product\":\"x\",\"quantity\":1}",
		 "'user_id' must be at least 1"},
		/* product */
		{"{\"user_id\":1,\"quantity\":1}", "'product' is required"},
		{"{\"user_id\":1,\"product\":null,\"quantity\":1}", "'product' is required"},
		{"{\"user_id\":1,\"product\":7,\"quantity\":1}", "'product' must be a string"},
		{"{\"user_id\":1,\"product\":[\"x\"],\"quantity\":1}",
		 "'product' must be a string"},
		{"{\"user_id\":1,\"product\":\"\",\"quantity\":1}",
		 "'product' must be 1 to 200 bytes"},
		{"{\"user_id\":1,\"product\":\"    \",\"quantity\":1}", "'product' must be 1 to"},
		/* control characters anywhere, never trimmed away */
		{"{\"user_id\":1,\"product\":\" \\t\\n \",\"quantity\":1}",
		 "'product' must not contain control characters (U+0009 at byte 1)"},
		{"{\"user_id\":1,\"product\":\"green tea\\n\",\"quantity\":1}",
		 "'product' must not contain control characters (U+000A at byte 9)"},
		{"{\"user_id\":1,\"product\":\"te\\u001b[31ma\",\"quantity\":1}",
		 "(U+001B at byte 2)"},
		{"{\"user_id\":1,\"product\":\"tea\\u007f\",\"quantity\":1}", "(U+007F at byte 3)"},
		{"{\"user_id\":1,\"product\":\"tea\\u0085\",\"quantity\":1}", "(U+0085 at byte 3)"},
		{"{\"user_id\":1,\"product\":\"t\\u0000a\",\"quantity\":1}", "invalid JSON"},
		{"{\"user_id\":1,\"product\":\"t\xff\",\"quantity\":1}", "invalid JSON"},
		/* quantity */
		{"{\"user_id\":1,\"product\":\"x\"}", "'quantity' is required"},
		{"{\"user_id\":1,\"product\":\"x\",\"quantity\":null}", "'quantity' is required"},
		{"{\"user_id\":1,\"product\":\"x\",\"quantity\":\"3\"}",
		 "'quantity' must be an integer"},
		{"{\"user_id\":1,\"product\":\"x\",\"quantity\":2.5}",
		 "'quantity' must be an integer"},
		{"{\"user_id\":1,\"product\":\"x\",\"quantity\":0}",
		 "'quantity' must be from 1 to 1000000"},
		{"{\"user_id\":1,\"product\":\"x\",\"quantity\":-1}",
		 "'quantity' must be from 1 to"},
		{"{\"user_id\":1,\"product\":\"x\",\"quantity\":1000001}",
		 "'quantity' must be from 1"},
	};
	struct order o;
	char err[256];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(validate(cases[i].body, &o, err), MN_INVALID);
		assert_null(o.product);
		if (strstr(err, cases[i].message_part) == NULL)
			fail_msg("body %s: message '%s' lacks '%s'", cases[i].body, err,
				 cases[i].message_part);
	}
}

static void test_product_too_long(void **state)
{
	char body[512], product[ORDER_PRODUCT_MAX + 2], err[256];
	struct order o;
	(void)state;

	memset(product, 'p', sizeof(product) - 1);
	product[sizeof(product) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"user_id\":1,\"product\":\"%s\",\"quantity\":1}", product);
	assert_int_equal(validate(body, &o, err), MN_INVALID);
	assert_null(o.product);
	assert_non_null(strstr(err, "'product' must be 1 to 200 bytes"));
}

/* A valid order whose "note" takes the body to 'depth' levels in all. */
static char *body_nested(size_t depth)
{
	return nested_json("{\"user_id\":1,\"product\":\"x\",\"quantity\":1,\"note\":", depth - 1,
			   "}", NULL);
}

static void test_deep_bodies_refused(void **state)
{
	char err[256], *body, *deep;
	struct order o;
	(void)state;

	body = body_nested(MN_JSON_MAX_DEPTH);
	assert_int_equal(validate(body, &o, err), MN_OK);
	order_release(&o);
	free(body);
	body = body_nested(MN_JSON_MAX_DEPTH + 1);
	assert_int_equal(validate(body, &o, err), MN_INVALID);
	assert_string_equal(err, "JSON nested deeper than 64 levels");
	assert_null(o.product);
	free(body);

	deep = small_stack_brackets(1000);
	assert_int_equal(orders_validate(deep, 1000, &o, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "JSON nested deeper than 64 levels");
	free(deep);
}

struct deep_call {
	struct fixture *f;
	const char *body;
	size_t len;
	enum mn_err result;
	char err[256];
};

static void *deep_call_run(void *arg)
{
	struct deep_call *c = arg;
	unsigned retry = 0;
	struct order o;

	order_init(&o);
	c->result = orders_service_create_order(c->f->svc, c->body, c->len, NULL, &o, &retry,
						c->err, sizeof(c->err));
	order_release(&o);
	return NULL;
}

/* On a worker-sized stack: past jansson's own limit of 2048 levels its
 * recursion alone would need about 160 KiB. */
static void test_deep_body_on_a_worker_stack(void **state)
{
	struct deep_call c = {.f = *state, .len = 4096};
	char *body = small_stack_brackets(c.len);

	c.body = body;
	assert_true(small_stack_run(deep_call_run, &c));
	assert_int_equal(c.result, MN_INVALID);
	assert_string_equal(c.err, "JSON nested deeper than 64 levels");
	assert_int_equal(c.f->peer.calls, 0);
	assert_int_equal(stored(c.f), 0);
	free(body);
}

static void test_invalid_body_never_reaches_the_peer(void **state)
{
	static const char *const bodies[] = {
		"not json",
		"{\"user_id\":\"42\",\"product\":\"tea\",\"quantity\":1}",
		"{\"user_id\":42,\"product\":\"  \",\"quantity\":1}",
		"{\"user_id\":42,\"product\":\"tea\",\"quantity\":0}",
	};
	struct fixture *f = *state;
	struct order o;
	unsigned retry = 99;
	char err[256];

	order_init(&o);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		assert_int_equal(create(f, bodies[i], NULL, &o, &retry, err), MN_INVALID);
		assert_int_equal(retry, 0);
		assert_null(o.product);
	}
	assert_int_equal(f->peer.calls, 0);
	assert_int_equal(stored(f), 0);
}

static void test_unknown_user_is_unprocessable(void **state)
{
	struct fixture *f = *state;
	struct order o;
	unsigned retry;
	char err[256];

	order_init(&o);
	assert_int_equal(create(f, "{\"user_id\":7,\"product\":\"tea\",\"quantity\":1}", NULL, &o,
				&retry, err),
			 MN_UNPROCESSABLE);
	assert_string_equal(err, "user 7 does not exist");
	assert_int_equal(f->peer.calls, 1);
	assert_int_equal(f->peer.last_id, 7);
	assert_int_equal(retry, 0);
	assert_null(o.product);
	assert_int_equal(stored(f), 0);
}

static void test_unavailable_passes_retry_after(void **state)
{
	struct fixture *f = *state;
	const char *body = "{\"user_id\":42,\"product\":\"tea\",\"quantity\":1}";
	struct order o;
	unsigned retry;
	char err[256];

	order_init(&o);
	f->peer.fail = MN_UNAVAILABLE;
	f->peer.retry_after_s = 7;
	assert_int_equal(create(f, body, NULL, &o, &retry, err), MN_UNAVAILABLE);
	assert_int_equal(retry, 7);
	assert_int_equal(f->peer.calls, 1);

	/* a peer breaking its promise of >= 1 still yields a usable value */
	f->peer.retry_after_s = 0;
	assert_int_equal(create(f, body, NULL, &o, &retry, err), MN_UNAVAILABLE);
	assert_int_equal(retry, 1);
	assert_null(o.product);
	assert_int_equal(stored(f), 0);
}

static void test_peer_failure_is_internal(void **state)
{
	static const enum mn_err failures[] = {MN_PROTOCOL, MN_IO, MN_TIMEOUT, MN_INVALID};
	struct fixture *f = *state;
	const char *body = "{\"user_id\":42,\"product\":\"tea\",\"quantity\":1}";
	int devnull = open("/dev/null", O_WRONLY);
	struct order o;
	unsigned retry;
	char err[256];

	assert_true(devnull >= 0);
	log_set_fd(devnull); /* the failure is logged; keep the test output clean */
	order_init(&o);
	for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
		f->peer.fail = failures[i];
		assert_int_equal(create(f, body, NULL, &o, &retry, err), MN_INTERNAL);
		assert_int_equal(retry, 0);
		assert_null(o.product);
	}
	log_set_fd(2);
	close(devnull);
	assert_int_equal(f->peer.calls, 4);
	assert_int_equal(stored(f), 0);
}

static void test_create_stores_and_get_list_return_it(void **state)
{
	struct fixture *f = *state;
	struct users_peer_trace trace = {"req-123",
					 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"};
	struct order o, got, *list;
	unsigned retry = 99;
	char err[256];
	size_t n;

	order_init(&o);
	order_init(&got);
	assert_int_equal(create(f, "{\"user_id\":42,\"product\":\"  tea \",\"quantity\":3}", &trace,
				&o, &retry, err),
			 MN_OK);
	assert_int_equal(retry, 0);
	assert_int_equal(o.id, 1);
	assert_int_equal(o.user_id, 42);
	assert_string_equal(o.product, "tea");
	assert_int_equal(o.quantity, 3);
	assert_int_equal(f->peer.calls, 1);
	assert_int_equal(f->peer.last_id, 42);
	assert_true(f->peer.got_trace);
	assert_string_equal(f->peer.request_id, "req-123");
	assert_string_equal(f->peer.traceparent, trace.traceparent);

	assert_int_equal(orders_service_get(f->svc, o.id, &got), MN_OK);
	assert_int_equal(got.id, 1);
	assert_int_equal(got.user_id, 42);
	assert_string_equal(got.product, "tea");
	assert_int_equal(got.quantity, 3);
	assert_int_equal(orders_service_get(f->svc, 2, &got), MN_NOT_FOUND);

	/* a trace is optional */
	assert_int_equal(create(f, "{\"user_id\":1,\"product\":\"cake\",\"quantity\":1}", NULL, &o,
				&retry, err),
			 MN_OK);
	assert_int_equal(o.id, 2);
	assert_false(f->peer.got_trace);

	assert_int_equal(orders_service_list(f->svc, 10, 0, &list, &n), MN_OK);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].id, 1);
	assert_string_equal(list[0].product, "tea");
	assert_int_equal(list[1].id, 2);
	assert_string_equal(list[1].product, "cake");
	order_list_free(list, n);
	assert_int_equal(orders_service_list(f->svc, 10, 1, &list, &n), MN_OK);
	assert_int_equal(n, 1);
	assert_int_equal(list[0].id, 2);
	order_list_free(list, n);
	order_release(&o);
	order_release(&got);
}

static void test_order_json(void **state)
{
	struct order o;
	json_t *j;
	char *s;
	(void)state;

	order_init(&o);
	assert_int_equal(order_set(&o, 7, 42, "a \"big\" pot", 1000000), MN_OK);
	j = order_to_json(&o);
	assert_non_null(j);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(
		s,
		"{\"id\":7,\"product\":\"a \\\"big\\\" pot\",\"quantity\":1000000,\"user_id\":42}");
	free(s);
	json_decref(j);
	order_release(&o);
}

static void test_order_set_and_release(void **state)
{
	struct order o;
	(void)state;

	order_init(&o);
	assert_null(o.product);
	assert_int_equal(order_set(&o, 3, 4, "kettle", 5), MN_OK);
	/* setting from its own product must not read freed memory */
	assert_int_equal(order_set(&o, 6, 7, o.product, 8), MN_OK);
	assert_int_equal(o.id, 6);
	assert_int_equal(o.user_id, 7);
	assert_string_equal(o.product, "kettle");
	assert_int_equal(o.quantity, 8);
	order_release(&o);
	assert_null(o.product);
	assert_int_equal(o.id, 0);
	assert_int_equal(o.quantity, 0);
	order_list_free(NULL, 0);
}

/* Create bodies mutated thousands of ways: MN_INVALID with a message, or
 * MN_OK with every field within its limits. */
static void test_mutated_bodies(void **state)
{
	static const char body[] = "{\"user_id\":42,\"product\":\"book\",\"quantity\":3,"
				   "\"note\":{\"gift\":true}}";
	char m[2 * sizeof(body)], err[256];
	uint64_t rng = 0x94D049BB133111EBULL;
	(void)state;

	for (int round = 0; round < 3000; round++) {
		size_t mlen = sizeof(body) - 1;
		struct order o;
		enum mn_err e;

		memcpy(m, body, mlen);
		mutate(m, &mlen, sizeof(m), &rng, 1 + round % 4);
		order_init(&o);
		err[0] = '\0';
		e = orders_validate(m, mlen, &o, err, sizeof(err));
		if (e == MN_OK) {
			assert_true(o.user_id >= 1);
			assert_in_range(o.quantity, 1, ORDER_QUANTITY_MAX);
			assert_non_null(o.product);
			assert_in_range(strlen(o.product), 1, ORDER_PRODUCT_MAX);
		} else {
			assert_int_equal(e, MN_INVALID);
			assert_true(err[0] != '\0');
		}
		order_release(&o);
	}
}

#define WITH_SERVICE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_bodies),
		cmocka_unit_test(test_invalid_bodies),
		cmocka_unit_test(test_mutated_bodies),
		cmocka_unit_test(test_product_too_long),
		cmocka_unit_test(test_deep_bodies_refused),
		WITH_SERVICE(test_deep_body_on_a_worker_stack),
		WITH_SERVICE(test_invalid_body_never_reaches_the_peer),
		WITH_SERVICE(test_unknown_user_is_unprocessable),
		WITH_SERVICE(test_unavailable_passes_retry_after),
		WITH_SERVICE(test_peer_failure_is_internal),
		WITH_SERVICE(test_create_stores_and_get_list_return_it),
		cmocka_unit_test(test_order_json),
		cmocka_unit_test(test_order_set_and_release),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
