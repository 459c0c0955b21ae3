/* The orders handlers behind a real router, fed hand-made requests: the
 * statuses, headers and bodies a client sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "store/drivers.h"
#include "orders/orders_handlers.h"
#include "fake_users_peer.h"
#include "route_call.h"

struct fixture {
	struct fake_users_peer peer;
	struct users_peer iface;
	struct orders_repo *repo;
	struct orders_service *svc;
	struct http_router *router;
	struct http_response res;
};

/* What a request carries besides its line and body. */
static int setup_with_repo(void **state, struct orders_repo *repo)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	*state = f;
	fake_users_peer_init(&f->peer);
	f->iface = fake_users_peer_iface(&f->peer);
	f->repo = repo;
	f->svc = orders_service_create(f->repo, &f->iface);
	f->router = http_router_create();
	http_response_init(&f->res);
	if (f->repo == NULL || f->svc == NULL || f->router == NULL)
		return -1;
	return orders_handlers_register(f->router, f->svc) == MN_OK ? 0 : -1;
}

static int setup(void **state)
{
	return setup_with_repo(state, orders_repo_memory_create(NULL));
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	http_response_release(&f->res);
	http_router_destroy(f->router);
	orders_service_destroy(f->svc);
	orders_repo_destroy(f->repo);
	free(f);
	return 0;
}

/* Runs one request, with a traceparent; the reply is in f->res. */
static void request(struct fixture *f, const char *method, const char *target, const char *body,
		    const char *content_type)
{
	struct route_headers h = {content_type,
				  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "req-7"};

	route_call(f->router, &f->res, method, target, body, &h);
}

static void post(struct fixture *f, const char *body)
{
	request(f, "POST", "/orders", body, "application/json");
}

static const char *body_text(const struct fixture *f)
{
	return route_body(&f->res);
}

static void test_routes_registered(void **state)
{
	struct fixture *f = *state;
	struct http_route_match m;

	assert_int_equal(http_router_match(f->router, "DELETE", "/orders/1", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, OPTIONS");
	assert_int_equal(http_router_match(f->router, "PUT", "/orders", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, POST, OPTIONS");
	/* a second registration on the same router is refused */
	assert_int_equal(orders_handlers_register(f->router, f->svc), MN_INVALID);
}

static void test_create_201_with_location(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}");
	assert_int_equal(f->res.status, 201);
	assert_string_equal(f->res.headers, "Location: /orders/1\r\n");
	assert_string_equal(f->res.content_type, "application/json");
	assert_string_equal(body_text(f),
			    "{\"id\":1,\"user_id\":42,\"product\":\"tea\",\"quantity\":3}");
	/* the request's id and trace context went on to the users peer */
	assert_int_equal(f->peer.calls, 1);
	assert_string_equal(f->peer.request_id, "req-7");
	assert_string_equal(f->peer.traceparent,
			    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");

	request(f, "POST", "/orders", "{\"user_id\":1,\"product\":\"cake\",\"quantity\":1}",
		"Application/JSON; charset=utf-8");
	assert_int_equal(f->res.status, 201);
	assert_string_equal(f->res.headers, "Location: /orders/2\r\n");
	/* no Content-Type at all is taken as JSON, as for users */
	request(f, "POST", "/orders", "{\"user_id\":1,\"product\":\"pie\",\"quantity\":1}", NULL);
	assert_int_equal(f->res.status, 201);
	assert_string_equal(f->res.headers, "Location: /orders/3\r\n");
}

static void test_get_and_list(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}");
	post(f, "{\"user_id\":1,\"product\":\"cake\",\"quantity\":2}");
	request(f, "GET", "/orders/2", NULL, NULL);
	assert_int_equal(f->res.status, 200);
	assert_string_equal(body_text(f),
			    "{\"id\":2,\"user_id\":1,\"product\":\"cake\",\"quantity\":2}");
	request(f, "GET", "/orders", NULL, NULL);
	assert_int_equal(f->res.status, 200);
	assert_string_equal(body_text(f),
			    "[{\"id\":1,\"user_id\":42,\"product\":\"tea\",\"quantity\":3},"
			    "{\"id\":2,\"user_id\":1,\"product\":\"cake\",\"quantity\":2}]");
	request(f, "GET", "/orders?limit=1&offset=1", NULL, NULL);
	assert_int_equal(f->res.status, 200);
	assert_string_equal(body_text(f),
			    "[{\"id\":2,\"user_id\":1,\"product\":\"cake\",\"quantity\":2}]");
	request(f, "GET", "/orders?offset=5", NULL, NULL);
	assert_int_equal(f->res.status, 200);
	assert_string_equal(body_text(f), "[]");
}

static void test_404_for_a_missing_order(void **state)
{
	struct fixture *f = *state;

	request(f, "GET", "/orders/99", NULL, NULL);
	assert_int_equal(f->res.status, 404);
	assert_string_equal(body_text(f), "{\"error\":\"order 99 not found\"}");
}

static void test_400_for_bad_input(void **state)
{
	struct fixture *f = *state;
	char deep[1001];

	post(f, "{\"user_id\":\"42\",\"product\":\"tea\",\"quantity\":3}");
	assert_int_equal(f->res.status, 400);
	assert_string_equal(body_text(f), "{\"error\":\"'user_id' must be an integer\"}");
	assert_int_equal(f->res.headers_len, 0);
	post(f, "{\"user_id\":42,\"product\":\"tea\",\"quantity\":0}");
	assert_int_equal(f->res.status, 400);
	assert_non_null(strstr(body_text(f), "'quantity'"));
	post(f, "{oops");
	assert_int_equal(f->res.status, 400);
	assert_non_null(strstr(body_text(f), "invalid JSON"));
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	post(f, deep);
	assert_int_equal(f->res.status, 400);
	assert_string_equal(body_text(f), "{\"error\":\"JSON nested deeper than 64 levels\"}");
	assert_int_equal(f->peer.calls, 0);

	request(f, "GET", "/orders/abc", NULL, NULL);
	assert_int_equal(f->res.status, 400);
	assert_string_equal(body_text(f), "{\"error\":\"invalid order id 'abc'\"}");
	request(f, "GET", "/orders/0", NULL, NULL);
	assert_int_equal(f->res.status, 400);
	request(f, "GET", "/orders?limit=1001", NULL, NULL);
	assert_int_equal(f->res.status, 400);
	assert_non_null(strstr(body_text(f), "'limit'"));
	request(f, "GET", "/orders?offset=-1", NULL, NULL);
	assert_int_equal(f->res.status, 400);
}

static void test_415_for_a_body_that_is_not_json(void **state)
{
	struct fixture *f = *state;

	request(f, "POST", "/orders", "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}",
		"text/plain");
	assert_int_equal(f->res.status, 415);
	assert_string_equal(body_text(f), "{\"error\":\"the body must be application/json\"}");
	request(f, "POST", "/orders", "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}",
		"application/jsonx");
	assert_int_equal(f->res.status, 415);
	assert_int_equal(f->peer.calls, 0);
}

static void test_422_for_an_unknown_user(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"user_id\":7,\"product\":\"tea\",\"quantity\":3}");
	assert_int_equal(f->res.status, 422);
	assert_string_equal(body_text(f), "{\"error\":\"user 7 does not exist\"}");
	assert_int_equal(f->res.headers_len, 0);
	request(f, "GET", "/orders", NULL, NULL);
	assert_string_equal(body_text(f), "[]");
}

static void test_503_with_retry_after_when_no_users_instance_answers(void **state)
{
	struct fixture *f = *state;

	f->peer.fail = MN_UNAVAILABLE;
	f->peer.retry_after_s = 7;
	post(f, "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}");
	assert_int_equal(f->res.status, 503);
	assert_string_equal(f->res.headers, "Retry-After: 7\r\n");
	assert_string_equal(body_text(f),
			    "{\"error\":\"no users instance could answer; try again\"}");
	request(f, "GET", "/orders", NULL, NULL);
	assert_string_equal(body_text(f), "[]");
}

static void test_500_hides_the_peer_failure(void **state)
{
	struct fixture *f = *state;
	int devnull = open("/dev/null", O_WRONLY);

	assert_true(devnull >= 0);
	log_set_fd(devnull);
	f->peer.fail = MN_PROTOCOL;
	post(f, "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}");
	log_set_fd(2);
	close(devnull);
	assert_int_equal(f->res.status, 500);
	assert_string_equal(body_text(f), "{\"error\":\"internal error\"}");
	assert_int_equal(f->res.headers_len, 0);
}

/* A failing store: a full disk on create, busy on get (the 503s that are
 * not the peer's), broken on list. */
static enum mn_err busy_create(struct orders_repo *r, int64_t user_id, const char *product,
			       int64_t quantity, const char *event_id, struct order *out, char *err,
			       size_t errlen)
{
	(void)r, (void)user_id, (void)product, (void)quantity, (void)event_id, (void)out;
	return mn_error(err, errlen, MN_UNAVAILABLE, "the store cannot write: disk full");
}

static enum mn_err busy_get(struct orders_repo *r, int64_t id, struct order *out)
{
	(void)r, (void)id, (void)out;
	return MN_UNAVAILABLE;
}

static enum mn_err busy_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			     size_t *n)
{
	(void)r, (void)limit, (void)offset;
	*out = NULL;
	*n = 0;
	return MN_IO;
}

static void busy_destroy(struct orders_repo *r)
{
	free(r);
}

/* the handlers never touch the outbox: its operations stay NULL */
static const struct orders_repo_ops busy_ops = {
	.create = busy_create,
	.get = busy_get,
	.list = busy_list,
	.destroy = busy_destroy,
};

static int setup_busy_store(void **state)
{
	struct orders_repo *r = malloc(sizeof(*r));

	if (r)
		r->ops = &busy_ops;
	return setup_with_repo(state, r);
}

static void test_store_failures(void **state)
{
	struct fixture *f = *state;

	post(f, "{\"user_id\":42,\"product\":\"tea\",\"quantity\":3}");
	assert_int_equal(f->res.status, 503);
	/* not the peer's hint: the default of every 503 */
	assert_string_equal(f->res.headers, "Retry-After: 1\r\n");
	assert_string_equal(body_text(f), "{\"error\":\"the store cannot write: disk full\"}");
	request(f, "GET", "/orders/1", NULL, NULL);
	assert_int_equal(f->res.status, 503);
	assert_string_equal(body_text(f), "{\"error\":\"the store is unavailable; try again\"}");
	request(f, "GET", "/orders", NULL, NULL);
	assert_int_equal(f->res.status, 500);
	assert_string_equal(body_text(f), "{\"error\":\"internal error\"}");
}

#define WITH(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		WITH(test_routes_registered),
		WITH(test_create_201_with_location),
		WITH(test_get_and_list),
		WITH(test_404_for_a_missing_order),
		WITH(test_400_for_bad_input),
		WITH(test_415_for_a_body_that_is_not_json),
		WITH(test_422_for_an_unknown_user),
		WITH(test_503_with_retry_after_when_no_users_instance_answers),
		WITH(test_500_hides_the_peer_failure),
		cmocka_unit_test_setup_teardown(test_store_failures, setup_busy_store, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
