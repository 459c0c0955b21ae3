/* GET /peers/{service} behind a real router, over the peer client and
 * resolver wired as src/app.c wires them, both on the fake transport: the
 * users watch replays a health answer captured from a real consul 1.8.7
 * -dev agent (three passing instances, index 16). The settings come from a
 * source that counts its tokens. The statuses and bodies a client sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/client.h"
#include "core/log.h"
#include "peers/peer_client.h"
#include "peers/peers_handlers.h"
#include "peers/resolver.h"
#include "fake_transport.h"
#include "peers_fixture.h"
#include "route_call.h"

#define USERS_URL "/v1/health/service/users"

struct fixture {
	struct hand_clock clk;
	struct fake_transport *ft;
	struct consul *consul;
	struct peer_client *pc;
	struct resolver *r;
	struct fixture_answer users;
	struct peer_settings_source source;
	struct peers_handlers h;
	struct http_router *router;
	struct http_response res;
	/* the settings source */
	unsigned gets, puts, bad_puts;
	char asked[160];
	bool dns;
};

/* ---- the settings source, as the configuration's ------------------------- */

static const void *settings_get(void *ctx, const char *service, struct peer_settings *s)
{
	struct fixture *f = ctx;

	f->gets++;
	snprintf(f->asked, sizeof(f->asked), "%s", service);
	*s = (struct peer_settings){
		.name = service,
		.timeout_ms = 1500,
		.connect_timeout_ms = 0,
		.retries = 3,
		.lb = "least_inflight",
		.tag = "",
		.dns = f->dns,
		.breaker_failures = 5,
		.breaker_open_ms = 30000,
		.panic_threshold = 40,
	};
	return f;
}

static void settings_put(void *ctx, const void *token)
{
	struct fixture *f = ctx;

	f->puts++;
	if (token != f)
		f->bad_puts++;
}

/* ---- fixture ---------------------------------------------------------------- */

static bool allowed(void *ctx, const char *service)
{
	(void)ctx;
	return strcmp(service, "billing") != 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	*state = f;
	hand_clock_init(&f->clk);
	f->ft = fake_create();
	peers_answer_load(&f->users, "users_passing.http");
	fake_rule_add(f->ft, &(struct fake_rule){
				     .method = "GET",
				     .url_has = USERS_URL,
				     .ans = {.body = f->users.body, .index = f->users.index},
				     .blocking = true,
			     });
	f->consul = consul_create(&(struct consul_opts){.address = "http://127.0.0.1:8500",
							.transport = &f->ft->iface},
				  err, sizeof(err));
	assert_non_null(f->consul);
	f->pc = peer_client_create(&f->clk.clock, NULL, &f->ft->iface);
	assert_non_null(f->pc);
	f->r = resolver_create(&(struct resolver_opts){
		.consul = f->consul,
		.clock = &f->clk.clock,
		.first_wait_ms = 30000,
		.max_services = 1,
		.allowed = allowed,
		.prepare = peer_client_prepare,
		.release = peer_client_release,
		.ctx = f->pc,
	});
	assert_non_null(f->r);
	peer_client_attach(f->pc, f->r);
	f->source = (struct peer_settings_source){settings_get, settings_put, f};
	f->h = (struct peers_handlers){f->pc, &f->source};
	f->router = http_router_create();
	assert_non_null(f->router);
	assert_int_equal(peers_handlers_register(f->router, &f->h), MN_OK);
	http_response_init(&f->res);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	http_response_release(&f->res);
	http_router_destroy(f->router);
	resolver_destroy(f->r);
	peer_client_destroy(f->pc);
	assert_int_equal(fake_handles_live(f->ft), 0);
	assert_int_equal(fake_unexpected(f->ft), 0);
	consul_destroy(f->consul);
	fake_destroy(f->ft);
	fixture_answer_free(&f->users);
	/* every settings token taken was given back, whatever the answer */
	assert_int_equal(f->gets, f->puts);
	assert_int_equal(f->bad_puts, 0);
	free(f);
	return 0;
}

/* Runs one GET; the reply is in f->res. */
static void get(struct fixture *f, const char *target)
{
	route_call(f->router, &f->res, "GET", target, NULL, NULL);
}

static const char *body_text(const struct fixture *f)
{
	return route_body(&f->res);
}

static void expect(const struct fixture *f, int status, const char *body)
{
	route_expect(&f->res, status, body);
}

/* The 200 body as JSON (new reference). */
static json_t *view_of(const struct fixture *f)
{
	json_error_t jerr;
	json_t *v;

	assert_int_equal(f->res.status, 200);
	assert_string_equal(f->res.content_type, "application/json");
	assert_int_equal(f->res.headers_len, 0);
	v = json_loads(body_text(f), 0, &jerr);
	if (v == NULL)
		fail_msg("not JSON: %s: %s", jerr.text, body_text(f));
	assert_true(json_is_object(v));
	return v;
}

/* The object's keys, sorted and joined by ','. */
static void keys_of(json_t *o, char *out, size_t outlen)
{
	const char *names[32];
	size_t n = 0, pos = 0;
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
	{
		assert_true(n < 32);
		names[n++] = k;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			const char *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "", names[i]);
	assert_true(pos < outlen);
}

static json_int_t int_of(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static const char *str_of(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_route_registered(void **state)
{
	struct fixture *f = *state;
	struct http_route_match m;

	assert_int_equal(http_router_match(f->router, "POST", "/peers/users", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_string_equal(m.allow, "GET, HEAD, OPTIONS");
	assert_int_equal(http_router_match(f->router, "DELETE", "/peers/users", &m),
			 HTTP_MATCH_METHOD_NOT_ALLOWED);
	assert_int_equal(http_router_match(f->router, "GET", "/peers", &m), HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(f->router, "GET", "/peers/users/x", &m),
			 HTTP_MATCH_NOT_FOUND);
	assert_int_equal(http_router_match(f->router, "HEAD", "/peers/users", &m), HTTP_MATCH_OK);
	assert_string_equal(m.pattern, "/peers/{service}");
	assert_int_equal(peers_handlers_register(f->router, &f->h), MN_INVALID);
	assert_int_equal(fake_total(f->ft), 0);
}

static void test_view_shape(void **state)
{
	struct fixture *f = *state;
	json_t *v, *list, *one;
	char keys[512];

	get(f, "/peers/users");
	v = view_of(f);
	keys_of(v, keys, sizeof(keys));
	assert_string_equal(keys, "age_ms,connect,discovery,index,instances,instances_passing,"
				  "instances_registered,instances_reserve,instances_total,known,lb,"
				  "panic,panic_threshold,retries,service,stale_ms,tag,timeout_ms");
	assert_string_equal(str_of(v, "service"), "users");
	assert_string_equal(str_of(v, "tag"), "");
	assert_true(json_is_true(json_object_get(v, "known")));
	/* no Connect identity given to the client: plain HTTP */
	assert_true(json_is_false(json_object_get(v, "connect")));
	assert_int_equal(int_of(v, "index"), 16);
	assert_int_equal(int_of(v, "age_ms"), 0);
	assert_int_equal(int_of(v, "stale_ms"), 0);
	assert_true(json_is_false(json_object_get(v, "panic")));
	assert_int_equal(int_of(v, "instances_passing"), 3);
	assert_int_equal(int_of(v, "instances_registered"), 3);
	assert_int_equal(int_of(v, "instances_reserve"), 0);
	assert_int_equal(int_of(v, "instances_total"), 3);
	assert_string_equal(str_of(v, "discovery"), "http");
	/* the settings in force for the service, from the source */
	assert_string_equal(str_of(v, "lb"), "least_inflight");
	assert_int_equal(int_of(v, "timeout_ms"), 1500);
	assert_int_equal(int_of(v, "retries"), 3);
	assert_int_equal(int_of(v, "panic_threshold"), 40);
	assert_string_equal(f->asked, "users");
	assert_int_equal(f->gets, 1);
	assert_int_equal(f->puts, 1);

	list = json_object_get(v, "instances");
	assert_int_equal(json_array_size(list), 3);
	for (size_t i = 0; i < 3; i++) {
		char id[16];

		one = json_array_get(list, i);
		keys_of(one, keys, sizeof(keys));
		assert_string_equal(keys, "address,calls,circuit,failures,id,inflight,last_error,"
					  "meta,node,passing,port,recent_failures,tags");
		snprintf(id, sizeof(id), "users-%zu", i + 1);
		assert_string_equal(str_of(one, "id"), id);
		assert_string_equal(str_of(one, "node"), "meshnode-fixtures");
		assert_string_equal(str_of(one, "address"), "127.0.0.1");
		assert_int_equal(int_of(one, "port"), 9101 + (json_int_t)i);
		assert_true(json_is_array(json_object_get(one, "tags")));
		assert_true(json_is_object(json_object_get(one, "meta")));
		assert_true(json_is_true(json_object_get(one, "passing")));
		assert_string_equal(str_of(one, "circuit"), "closed");
		assert_int_equal(int_of(one, "inflight"), 0);
		assert_int_equal(int_of(one, "recent_failures"), 0);
		assert_int_equal(int_of(one, "calls"), 0);
		assert_int_equal(int_of(one, "failures"), 0);
		assert_string_equal(str_of(one, "last_error"), "");
	}
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(json_array_get(list, 0), "tags"), 0)),
			    "blue");
	json_decref(v);

	/* the age counts on the node's clock; one watch, asked once */
	hand_clock_advance(&f->clk, 2500);
	get(f, "/peers/users");
	v = view_of(f);
	assert_int_equal(int_of(v, "age_ms"), 2500);
	assert_int_equal(int_of(v, "index"), 16);
	json_decref(v);
	/* one plain read; the watch's blocking call from its index may have
	 * gone out by now too (the hand clock lets it go at once) */
	assert_int_equal(fake_seen(f->ft, USERS_URL) - fake_seen(f->ft, "index="), 1);
	assert_true(fake_seen(f->ft, "index=") <= 1);
}

static void test_view_pages(void **state)
{
	struct fixture *f = *state;
	json_t *v, *list;

	get(f, "/peers/users?limit=1&offset=1");
	v = view_of(f);
	list = json_object_get(v, "instances");
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(str_of(json_array_get(list, 0), "id"), "users-2");
	/* the counts are the service's, not the page's */
	assert_int_equal(int_of(v, "instances_total"), 3);
	json_decref(v);

	get(f, "/peers/users?offset=2&limit=1000");
	v = view_of(f);
	list = json_object_get(v, "instances");
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(str_of(json_array_get(list, 0), "id"), "users-3");
	json_decref(v);

	get(f, "/peers/users?offset=3");
	v = view_of(f);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 0);
	json_decref(v);
	get(f, "/peers/users?offset=9223372036854775807");
	v = view_of(f);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 0);
	json_decref(v);
}

static void test_400_for_bad_paging(void **state)
{
	struct fixture *f = *state;
	const char *limit = "{\"error\":\"'limit' must be an integer from 1 to 1000\"}";
	const char *offset = "{\"error\":\"'offset' must be a non-negative integer\"}";

	get(f, "/peers/users?limit=0");
	expect(f, 400, limit);
	get(f, "/peers/users?limit=1001");
	expect(f, 400, limit);
	get(f, "/peers/users?limit=-1");
	expect(f, 400, limit);
	get(f, "/peers/users?offset=-1");
	expect(f, 400, offset);
	get(f, "/peers/users?offset=9223372036854775808");
	expect(f, 400, offset);
	/* refused before Consul is asked */
	assert_int_equal(fake_total(f->ft), 0);
}

static void test_400_for_a_bad_service_name(void **state)
{
	struct fixture *f = *state;
	char target[160];

	get(f, "/peers/us$ers");
	expect(f, 400, "{\"error\":\"invalid service name\"}");
	get(f, "/peers/a%20b");
	expect(f, 400, "{\"error\":\"invalid service name\"}");
	/* 128 bytes are a name, 129 are not */
	snprintf(target, sizeof(target), "/peers/%0129d", 0);
	get(f, target);
	expect(f, 400, "{\"error\":\"invalid service name\"}");
	assert_int_equal(fake_total(f->ft), 0);
	assert_int_equal(f->gets, 0);
}

static void test_404_for_a_service_not_followed(void **state)
{
	struct fixture *f = *state;

	get(f, "/peers/billing");
	expect(f, 404,
	       "{\"error\":\"service 'billing' is not a peer of this node: its modules do not "
	       "call it and no peers.billing setting names it\"}");
	assert_string_equal(f->asked, "billing");
	assert_int_equal(fake_total(f->ft), 0);
}

static void test_503_past_watch_max_services(void **state)
{
	struct fixture *f = *state;

	get(f, "/peers/users");
	assert_int_equal(f->res.status, 200);
	/* max_services is 1: a second service cannot be followed now */
	get(f, "/peers/orders");
	assert_int_equal(f->res.status, 503);
	assert_string_equal(f->res.headers, "Retry-After: 1\r\n");
	assert_string_equal(body_text(f),
			    "{\"error\":\"cannot follow service 'orders': 1 services are followed "
			    "already (consul.watch_max_services)\"}");
	assert_int_equal(fake_seen(f->ft, "/v1/health/service/orders"), 0);
}

static void test_400_for_dns_without_a_dns_address(void **state)
{
	struct fixture *f = *state;

	f->dns = true;
	get(f, "/peers/users");
	expect(f, 400, "{\"error\":\"discovery through DNS needs the agent's DNS address\"}");
	assert_int_equal(fake_total(f->ft), 0);
}

static void test_500_when_the_client_cannot_show(void **state)
{
	struct fixture *f = *state;
	struct peer_client *detached = peer_client_create(&f->clk.clock, NULL, &f->ft->iface);
	struct peers_handlers h = {detached, &f->source};
	struct http_router *router = http_router_create();

	assert_non_null(detached);
	assert_non_null(router);
	assert_int_equal(peers_handlers_register(router, &h), MN_OK);
	http_router_destroy(f->router);
	f->router = router;
	/* no resolver attached: the client's own failure, not told */
	get(f, "/peers/users");
	expect(f, 500, "{\"error\":\"cannot show the peer view\"}");
	peer_client_destroy(detached);
}

#define WITH(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		WITH(test_route_registered),
		WITH(test_view_shape),
		WITH(test_view_pages),
		WITH(test_400_for_bad_paging),
		WITH(test_400_for_a_bad_service_name),
		WITH(test_404_for_a_service_not_followed),
		WITH(test_503_past_watch_max_services),
		WITH(test_400_for_dns_without_a_dns_address),
		WITH(test_500_when_the_client_cannot_show),
	};

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
