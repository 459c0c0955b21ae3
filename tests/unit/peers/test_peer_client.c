#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/client.h"
#include "core/log.h"
#include "metrics/metrics.h"
#include "peers/peer_client.h"
#include "peers/resolver.h"
#include "fake_transport.h"
#include "peers_fixture.h"

/* The peer client wired as src/app.c wires it (client, then a resolver
 * with the client's prepare/release hooks, then attach), both over the
 * fake transport: the users watch replays health answers captured from a
 * real consul 1.8.7 -dev agent, and every instance URL goes to one callback
 * that counts calls per port and answers as the test set that port to. The
 * hand clock drives the breaker, the deadlines and the snapshot times. */

#define USERS_URL      "/v1/health/service/users"
#define PORTS	       65536

enum inst_mode {
	INST_OK,	      /* 200 */
	INST_REFUSE,	      /* connection refused: nothing sent */
	INST_TIMEOUT,	      /* sent, no answer in time */
	INST_CONNECT_TIMEOUT, /* timed out while connecting: nothing sent */
	INST_5XX,	      /* 503 */
	INST_IO,	      /* the connection broke after sending */
	INST_CUT,	      /* its host cut off after the request went out on a
				 kept-alive connection: no acknowledgement */
};

struct pt {
	struct hand_clock clk;
	struct fake_transport *ft;
	struct consul *consul;
	struct peer_client *pc;
	struct resolver *r;
	struct metrics *metrics;
	struct metric_family *requests;
	int health, inst_rule;
	struct fixture_answer users, without3, back, two;
	const char *denied;
	atomic_uint threshold; /* peers.users.panic_threshold */
	atomic_uint prepares, releases, prepare_calls;
	/* the instances, by port */
	atomic_uint calls[PORTS];
	atomic_uchar mode[PORTS];
	atomic_int overrun; /* a timeout takes its timeout plus this on the
			       clock; < 0: takes no time */
	/* requests to "/hold..." wait until released */
	pthread_mutex_t hold_lock;
	pthread_cond_t hold_cond;
	unsigned holding;
	bool release_holds;
	atomic_uchar held_port[PORTS];
};

static struct peer_settings settings(const char *lb)
{
	return (struct peer_settings){
		.timeout_ms = 1000,
		.retries = 2,
		.lb = lb,
		.tag = "",
		.breaker_failures = 5,
		.breaker_open_ms = 60000,
	};
}

static struct peer_request get_user(void)
{
	return (struct peer_request){.service = "users", .method = "GET", .path = "/users/1"};
}

/* ---- the instances -------------------------------------------------------- */

static void hold(struct pt *t, int port)
{
	struct timespec ts = clock_deadline_ms(2 * POLL_MS);

	pthread_mutex_lock(&t->hold_lock);
	atomic_store(&t->held_port[port], 1);
	t->holding++;
	pthread_cond_broadcast(&t->hold_cond);
	while (!t->release_holds)
		if (pthread_cond_timedwait(&t->hold_cond, &t->hold_lock, &ts) == ETIMEDOUT)
			break;
	t->holding--;
	pthread_mutex_unlock(&t->hold_lock);
}

static void instance_answer(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct pt *t = ctx;
	int port = url_port(req->url), overrun;

	if (port <= 0 || port >= PORTS) {
		ans->fail = MN_INVALID;
		return;
	}
	atomic_fetch_add(&t->calls[port], 1);
	if (strstr(req->url, "/hold")) {
		hold(t, port);
		ans->body = "{}";
		return;
	}
	switch ((enum inst_mode)atomic_load(&t->mode[port])) {
	case INST_OK: ans->body = "{\"id\":1}"; break;
	case INST_REFUSE: ans->fail = MN_UNAVAILABLE; break;
	case INST_TIMEOUT:
	case INST_CONNECT_TIMEOUT:
		overrun = atomic_load(&t->overrun);
		/* a connection that never comes takes the connect timeout */
		if (overrun >= 0)
			hand_clock_advance(&t->clk,
					   (uint64_t)(atomic_load(&t->mode[port]) ==
								  INST_CONNECT_TIMEOUT &&
							  req->connect_timeout_ms
						      ? req->connect_timeout_ms
						      : req->timeout_ms) +
						   (uint64_t)overrun);
		ans->fail = MN_TIMEOUT;
		ans->not_sent = atomic_load(&t->mode[port]) == INST_CONNECT_TIMEOUT;
		break;
	case INST_5XX:
		ans->status = 503;
		ans->body = "{\"error\":\"busy\"}";
		break;
	case INST_IO: ans->fail = MN_IO; break;
	case INST_CUT:
		/* the libcurl transport gives up after ack_timeout_ms */
		hand_clock_advance(&t->clk, (uint64_t)(req->ack_timeout_ms ? req->ack_timeout_ms
									   : req->timeout_ms));
		ans->fail = MN_TIMEOUT;
		break;
	}
}

static void set_mode(struct pt *t, int port, enum inst_mode m)
{
	atomic_store(&t->mode[port], (unsigned char)m);
}

static void set_modes(struct pt *t, int from, int to, enum inst_mode m)
{
	for (int p = from; p < to; p++)
		set_mode(t, p, m);
}

static void clear_calls(struct pt *t)
{
	for (int p = 0; p < PORTS; p++)
		atomic_store(&t->calls[p], 0);
}

static unsigned calls(struct pt *t, int port)
{
	return atomic_load(&t->calls[port]);
}

/* ---- hooks, as src/app.c has them ---------------------------------------- */

static bool pt_allowed(void *ctx, const char *service)
{
	const struct pt *t = ctx;

	return t->denied == NULL || strcmp(t->denied, service) != 0;
}

static unsigned pt_threshold(void *ctx, const char *service)
{
	const struct pt *t = ctx;

	(void)service;
	return atomic_load(&t->threshold);
}

static void *pt_prepare(void *ctx, const struct peer_snapshot *snap)
{
	struct pt *t = ctx;
	void *p;

	atomic_fetch_add(&t->prepare_calls, 1);
	p = peer_client_prepare(t->pc, snap);

	if (p)
		atomic_fetch_add(&t->prepares, 1);
	return p;
}

static void pt_release(void *ctx, void *prepared)
{
	struct pt *t = ctx;

	atomic_fetch_add(&t->releases, 1);
	peer_client_release(t->pc, prepared);
}

/* ---- fixture --------------------------------------------------------------- */

static int setup(void **state)
{
	struct pt *t = calloc(1, sizeof(*t));
	char err[256];

	assert_non_null(t);
	hand_clock_init(&t->clk);
	t->ft = fake_create();
	t->consul = consul_create(&(struct consul_opts){.address = "http://127.0.0.1:8500",
							.transport = &t->ft->iface},
				  err, sizeof(err));
	assert_non_null(t->consul);
	t->metrics = metrics_create();
	t->requests = metrics_counter(t->metrics, "peer_requests_total", NULL, 2,
				      (const char *[]){"service", "outcome"});
	assert_non_null(t->requests);
	pthread_mutex_init(&t->hold_lock, NULL);
	assert_int_equal(clock_cond_init(&t->hold_cond), 0);
	atomic_init(&t->threshold, 50);
	peers_answer_load(&t->users, "users_passing.http");
	peers_answer_load(&t->without3, "users_passing_without_3.http");
	peers_answer_load(&t->back, "users_passing_3_back.http");
	/* an earlier capture: users-a-8081 and users-b-8082 passing */
	fixture_answer_load(&t->two, "consul/health/health_users_passing.http");
	*state = t;
	return 0;
}

/* The client and resolver, the users watch answering 'body' at 'index'. */
static void pt_start(struct pt *t, const char *body, uint64_t index)
{
	t->health = fake_rule_add(t->ft, &(struct fake_rule){
						 .method = "GET",
						 .url_has = USERS_URL,
						 .ans = {.body = body, .index = index},
						 .blocking = true,
					 });
	t->inst_rule =
		fake_rule_add(t->ft, &(struct fake_rule){.fn = instance_answer, .fn_ctx = t});
	t->pc = peer_client_create(&t->clk.clock, &(struct peer_metrics){.requests = t->requests},
				   &t->ft->iface);
	assert_non_null(t->pc);
	t->r = resolver_create(&(struct resolver_opts){
		.consul = t->consul,
		.clock = &t->clk.clock,
		.first_wait_ms = 30000,
		.allowed = pt_allowed,
		.panic_threshold = pt_threshold,
		.prepare = pt_prepare,
		.release = pt_release,
		.ctx = t,
	});
	assert_non_null(t->r);
	peer_client_attach(t->pc, t->r);
}

static int teardown(void **state)
{
	struct pt *t = *state;

	/* the watches first: their answers go through the client's hooks */
	resolver_destroy(t->r);
	peer_client_destroy(t->pc);
	assert_int_equal(atomic_load(&t->prepares), atomic_load(&t->releases));
	assert_int_equal(fake_handles_live(t->ft), 0);
	assert_int_equal(fake_unexpected(t->ft), 0);
	consul_destroy(t->consul);
	metrics_destroy(t->metrics);
	fake_destroy(t->ft);
	fixture_answer_free(&t->users);
	fixture_answer_free(&t->without3);
	fixture_answer_free(&t->back);
	fixture_answer_free(&t->two);
	pthread_cond_destroy(&t->hold_cond);
	pthread_mutex_destroy(&t->hold_lock);
	free(t);
	return 0;
}

/* Polls until the client's view of users came with 'index'; the watch's
 * next call goes once the hand clock passed its interval, moved here. */
static void wait_index(struct pt *t, uint64_t index)
{
	uint64_t end = clock_monotonic_ms() + POLL_MS;

	hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	for (;;) {
		const struct peer_snapshot *s;
		char err[256];
		bool done;

		assert_int_equal(resolver_get(t->r, "users", "", &s, err, sizeof(err)), MN_OK);
		done = s->index == index;
		resolver_put(s);
		if (done)
			return;
		if (clock_monotonic_ms() >= end)
			fail_msg("no snapshot of users at index %llu", (unsigned long long)index);
		clock_sleep_ms(2);
	}
}

static enum mn_err call(struct pt *t, const struct peer_settings *s, const struct peer_request *req,
			long *status, char *err, size_t errlen)
{
	struct httpc_response res;
	enum mn_err e;

	httpc_response_init(&res);
	e = peer_call(t->pc, s, req, &res, err, errlen);
	if (status)
		*status = res.status;
	httpc_response_release(&res);
	return e;
}

static void call_ok(struct pt *t, const struct peer_settings *s)
{
	struct peer_request req = get_user();
	char err[256] = "";
	long status;
	enum mn_err e = call(t, s, &req, &status, err, sizeof(err));

	if (e != MN_OK)
		fail_msg("peer_call: %s: %s", mn_strerror(e), err);
	assert_int_equal(status, 200);
}

/* Opens the circuit of the instance on 'port' (it refuses one call; round
 * robin reaches it within a turn), then lets it answer again. */
static void trip(struct pt *t, int port)
{
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	unsigned before = calls(t, port);
	char err[256];

	s.retries = 0;
	set_mode(t, port, INST_REFUSE);
	for (int i = 0; i < 10 && calls(t, port) == before; i++)
		call(t, &s, &req, NULL, err, sizeof(err));
	assert_int_equal(calls(t, port), before + 1);
	set_mode(t, port, INST_OK);
}

static json_t *view(struct pt *t, uint64_t open_ms)
{
	json_t *v = NULL;
	char err[256] = "";
	struct peer_settings s = {.tag = "", .breaker_open_ms = open_ms};
	enum mn_err e = peer_client_view(t->pc, "users", &s, 0, 100000, &v, err, sizeof(err));

	if (e != MN_OK)
		fail_msg("peer_client_view: %s: %s", mn_strerror(e), err);
	assert_non_null(v);
	return v;
}

/* The instance 'id' in a view, or NULL. */
static json_t *view_instance(json_t *v, const char *id)
{
	json_t *list = json_object_get(v, "instances"), *one;
	size_t i;

	json_array_foreach(list, i, one) if (strcmp(json_string_value(json_object_get(one, "id")),
						    id) == 0) return one;
	return NULL;
}

static const char *circuit_of(json_t *v, const char *id)
{
	json_t *one = view_instance(v, id);

	assert_non_null(one);
	return json_string_value(json_object_get(one, "circuit"));
}

static json_int_t int_of(json_t *obj, const char *key)
{
	json_t *x = json_object_get(obj, key);

	assert_true(json_is_integer(x));
	return json_integer_value(x);
}

static double metric_value(struct pt *t, const char *service, const char *outcome)
{
	struct buf out;
	char needle[128];
	const char *at;
	double v = 0;

	buf_init(&out, 1 << 20);
	assert_int_equal(metrics_render(t->metrics, &out), MN_OK);
	snprintf(needle, sizeof(needle), "peer_requests_total{service=\"%s\",outcome=\"%s\"} ",
		 service, outcome);
	at = out.data ? strstr(out.data, needle) : NULL;
	if (at)
		v = strtod(at + strlen(needle), NULL);
	buf_release(&out);
	return v;
}

/* Stops the resolver's watches before a test frees the answers it
 * published (the fake borrows them); the teardown then skips it. */
static void pt_stop_watches(struct pt *t)
{
	resolver_destroy(t->r);
	t->r = NULL;
}

/* ---- balancing -------------------------------------------------------------- */

static void test_round_robin_two_instances_alternate(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	int last = 0;

	pt_start(t, t->two.body, t->two.index);
	for (int i = 0; i < 200; i++) {
		unsigned a = calls(t, 8081);
		int now;

		call_ok(t, &s);
		now = calls(t, 8081) != a ? 8081 : 8082;
		assert_int_not_equal(now, last);
		last = now;
	}
	assert_int_equal(calls(t, 8081), 100);
	assert_int_equal(calls(t, 8082), 100);
}

/* 2000 sequential calls over two idle instances: each takes about half
 * (binomial(2000, 1/2): the bounds are 6 standard deviations out). With
 * nothing in flight between calls, least_inflight sees ties, broken at
 * random. */
static void two_instances_share(struct pt *t, const char *lb)
{
	struct peer_settings s = settings(lb);

	pt_start(t, t->two.body, t->two.index);
	for (int i = 0; i < 2000; i++)
		call_ok(t, &s);
	assert_in_range(calls(t, 8081), 850, 1150);
	assert_int_equal(calls(t, 8081) + calls(t, 8082), 2000);
}

static void test_random_two_instances_spread(void **state)
{
	two_instances_share(*state, "random");
}

static void test_least_inflight_two_idle_instances_share(void **state)
{
	two_instances_share(*state, "least_inflight");
}

struct holder {
	struct pt *t;
	pthread_t th;
	enum mn_err e;
};

static void *holder_main(void *arg)
{
	struct holder *h = arg;
	struct peer_settings s = settings("least_inflight");
	struct peer_request req = get_user();
	char err[256];

	req.path = "/hold";
	h->e = call(h->t, &s, &req, NULL, err, sizeof(err));
	return NULL;
}

static bool holding_at_least(struct pt *t, unsigned n)
{
	struct timespec ts = clock_deadline_ms(POLL_MS);
	bool ok;

	pthread_mutex_lock(&t->hold_lock);
	while (t->holding < n)
		if (pthread_cond_timedwait(&t->hold_cond, &t->hold_lock, &ts) == ETIMEDOUT)
			break;
	ok = t->holding >= n;
	pthread_mutex_unlock(&t->hold_lock);
	return ok;
}

/* Starts n calls that stay in flight, one after the other (each picks with
 * the others already in flight). */
static void hold_calls(struct pt *t, struct holder *h, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		h[i] = (struct holder){.t = t};
		assert_int_equal(pthread_create(&h[i].th, NULL, holder_main, &h[i]), 0);
		assert_true(holding_at_least(t, i + 1));
	}
}

static void release_calls(struct pt *t, struct holder *h, unsigned n)
{
	pthread_mutex_lock(&t->hold_lock);
	t->release_holds = true;
	pthread_cond_broadcast(&t->hold_cond);
	pthread_mutex_unlock(&t->hold_lock);
	for (unsigned i = 0; i < n; i++) {
		pthread_join(h[i].th, NULL);
		assert_int_equal(h[i].e, MN_OK);
	}
}

/* Calls to the ports whose instance holds a call, among 'probes' calls. */
static unsigned probes_to_busy(struct pt *t, unsigned probes, int from, int to)
{
	struct peer_settings s = settings("least_inflight");
	unsigned before = 0, after = 0;

	for (int p = from; p < to; p++)
		if (atomic_load(&t->held_port[p]))
			before += calls(t, p);
	for (unsigned i = 0; i < probes; i++)
		call_ok(t, &s);
	for (int p = from; p < to; p++)
		if (atomic_load(&t->held_port[p]))
			after += calls(t, p);
	return after - before;
}

static void test_least_inflight_two_instances_avoids_the_busy_one(void **state)
{
	struct pt *t = *state;
	struct holder h[1];

	pt_start(t, t->two.body, t->two.index);
	hold_calls(t, h, 1);
	/* two instances are compared exactly: never the busy one */
	assert_int_equal(probes_to_busy(t, 200, 8081, 8083), 0);
	release_calls(t, h, 1);
}

static void test_least_inflight_five_instances_prefers_idle(void **state)
{
	struct pt *t = *state;
	char *five = health_body_range("users_passing.http", "users", 0, 5, 9300);
	struct holder h[2];
	unsigned busy;

	pt_start(t, five, 40);
	hold_calls(t, h, 2);
	/* above 4 instances, the better of two random ones: a busy one only
	 * when both draws are busy, 2/5 * 1/4 = 10% of picks (random picking
	 * would give 40%) */
	busy = probes_to_busy(t, 1000, 9300, 9305);
	assert_true(busy < 250);
	release_calls(t, h, 2);
	free(five);
}

static void spread(struct pt *t, const char *lb, unsigned ncalls, int base, int n, unsigned *min,
		   unsigned *max)
{
	struct peer_settings s = settings(lb);

	clear_calls(t);
	for (unsigned i = 0; i < ncalls; i++)
		call_ok(t, &s);
	*min = UINT32_MAX;
	*max = 0;
	for (int p = base; p < base + n; p++) {
		unsigned c = calls(t, p);

		*min = c < *min ? c : *min;
		*max = c > *max ? c : *max;
	}
}

static void test_five_thousand_instances_every_strategy_spreads(void **state)
{
	struct pt *t = *state;
	char *big = health_body_range("users_passing.http", "users", 0, 5000, 20000);
	unsigned min, max;

	pt_start(t, big, 50);
	/* round robin: exactly twice each in two turns */
	spread(t, "round_robin", 10000, 20000, 5000, &min, &max);
	assert_int_equal(min, 2);
	assert_int_equal(max, 2);
	/* Poisson(20) per instance: every instance is chosen (P(0) = 2e-9) and
	 * none more than 60 times */
	spread(t, "random", 100000, 20000, 5000, &min, &max);
	assert_true(min >= 1);
	assert_true(max <= 60);
	spread(t, "least_inflight", 100000, 20000, 5000, &min, &max);
	assert_true(min >= 1);
	assert_true(max <= 60);
	pt_stop_watches(t);
	free(big);
}

static void test_five_thousand_instances_least_inflight_avoids_busy(void **state)
{
	struct pt *t = *state;
	char *big = health_body_range("users_passing.http", "users", 0, 5000, 20000);
	struct holder h[8];

	pt_start(t, big, 50);
	hold_calls(t, h, 8);
	/* 8 busy of 5,000: both draws busy for 8*7/(5000*4999) of the picks,
	 * about 0.01 in 5,000 probes (random picking: 8) */
	assert_true(probes_to_busy(t, 5000, 20000, 25000) <= 1);
	release_calls(t, h, 8);
	pt_stop_watches(t);
	free(big);
}

/* ---- breaker across snapshots ----------------------------------------------- */

static void test_open_circuit_survives_a_new_snapshot(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	json_t *v;

	pt_start(t, t->users.body, t->users.index);
	trip(t, 9101);
	v = view(t, s.breaker_open_ms);
	assert_string_equal(circuit_of(v, "users-1"), "open");
	json_decref(v);

	/* users-3 deregistered: users-1 still listed, with its circuit */
	fake_publish(t->ft, t->health, t->without3.body, t->without3.index);
	wait_index(t, t->without3.index);
	v = view(t, s.breaker_open_ms);
	assert_int_equal(int_of(v, "index"), 18);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 2);
	assert_string_equal(circuit_of(v, "users-1"), "open");
	assert_int_equal(int_of(view_instance(v, "users-1"), "failures"), 1);
	json_decref(v);
	for (int i = 0; i < 20; i++)
		call_ok(t, &s);
	assert_int_equal(calls(t, 9101), 1);
	assert_int_equal(calls(t, 9102), 20);
}

/* Two machines cloned with one hostname register the same service ID on
 * two Consul nodes (a real answer: vm_same_id_two_nodes.http): they are two
 * instances. One refusing opens its own circuit only; calls go on to the
 * other, and the view lists both with their nodes. */
static void test_same_id_on_two_nodes_is_two_instances(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct fixture_answer vm;
	json_t *v, *list;

	peers_answer_load(&vm, "vm_same_id_two_nodes.http");
	pt_start(t, vm.body, vm.index);
	trip(t, 9301);
	clear_calls(t);
	for (int i = 0; i < 20; i++)
		call_ok(t, &s);
	assert_int_equal(calls(t, 9301), 0);
	assert_int_equal(calls(t, 9302), 20);
	v = view(t, s.breaker_open_ms);
	list = json_object_get(v, "instances");
	assert_int_equal(json_array_size(list), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *one = json_array_get(list, i);
		bool a = strcmp(json_string_value(json_object_get(one, "node")), "host-a") == 0;

		assert_string_equal(json_string_value(json_object_get(one, "id")), "vm-cloned-8080");
		assert_string_equal(json_string_value(json_object_get(one, "circuit")),
				    a ? "open" : "closed");
		assert_int_equal(int_of(one, "calls"), a ? 1 : 20);
	}
	json_decref(v);
	pt_stop_watches(t);
	fixture_answer_free(&vm);
}

static void test_instance_back_within_prune_margin_keeps_its_state(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	json_t *v;

	pt_start(t, t->users.body, t->users.index);
	trip(t, 9103);
	fake_publish(t->ft, t->health, t->without3.body, t->without3.index);
	wait_index(t, t->without3.index);
	v = view(t, s.breaker_open_ms);
	assert_null(view_instance(v, "users-3"));
	json_decref(v);

	/* registered again: the same id, the same circuit */
	fake_publish(t->ft, t->health, t->back.body, t->back.index);
	wait_index(t, t->back.index);
	v = view(t, s.breaker_open_ms);
	assert_string_equal(circuit_of(v, "users-3"), "open");
	assert_int_equal(int_of(view_instance(v, "users-3"), "failures"), 1);
	assert_int_equal(int_of(view_instance(v, "users-3"), "calls"), 1);
	json_decref(v);
	for (int i = 0; i < 20; i++)
		call_ok(t, &s);
	assert_int_equal(calls(t, 9103), 1);

	/* its time out: the probe goes to it and closes the circuit */
	hand_clock_advance(&t->clk, s.breaker_open_ms);
	for (int i = 0; i < 3; i++)
		call_ok(t, &s);
	assert_int_equal(calls(t, 9103), 2);
	v = view(t, s.breaker_open_ms);
	assert_string_equal(circuit_of(v, "users-3"), "closed");
	json_decref(v);
}

static void test_instance_state_forgotten_past_prune_margin(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	/* a deployment of 20 other instances came and went */
	char *others = health_body_range("users_passing.http", "other", 0, 20, 9400);
	json_t *v;

	pt_start(t, t->users.body, t->users.index);
	trip(t, 9103);
	fake_publish(t->ft, t->health, others, 17);
	wait_index(t, 17);
	/* 2 live of 23 remembered: more than 2 * 2 + 8, the gone are forgotten */
	fake_publish(t->ft, t->health, t->without3.body, t->without3.index);
	wait_index(t, t->without3.index);
	fake_publish(t->ft, t->health, t->back.body, t->back.index);
	wait_index(t, t->back.index);
	v = view(t, s.breaker_open_ms);
	assert_string_equal(circuit_of(v, "users-3"), "closed");
	assert_int_equal(int_of(view_instance(v, "users-3"), "failures"), 0);
	assert_int_equal(int_of(view_instance(v, "users-3"), "calls"), 0);
	json_decref(v);
	free(others);
}

/* ---- retries ------------------------------------------------------------------ */

static void test_retries_go_to_other_instances(void **state)
{
	struct pt *t = *state;
	static const char *const lbs[] = {"round_robin", "random", "least_inflight"};
	struct peer_request req = get_user();
	char err[256];
	long status;

	pt_start(t, t->users.body, t->users.index);
	for (size_t k = 0; k < 3; k++) {
		struct peer_settings s = settings(lbs[k]);

		/* every instance answers 503: each tried once, the last answer
		 * returned; the breaker stays closed below its threshold */
		s.retries = 5;
		s.timeout_ms = 1; /* the pause between attempts is cut to the deadline */
		s.breaker_failures = 1000;
		set_modes(t, 9101, 9104, INST_5XX);
		for (int round = 0; round < 5; round++) {
			clear_calls(t);
			assert_int_equal(call(t, &s, &req, &status, err, sizeof(err)), MN_OK);
			assert_int_equal(status, 503);
			assert_int_equal(calls(t, 9101), 1);
			assert_int_equal(calls(t, 9102), 1);
			assert_int_equal(calls(t, 9103), 1);
		}
	}
	assert_int_equal(metric_value(t, "users", "server_error"), 3 * 5 * 3);

	/* every instance refuses: three attempts, one each, then unavailable */
	{
		struct peer_settings s = settings("random");

		s.retries = 5;
		s.timeout_ms = 1;
		set_modes(t, 9101, 9104, INST_REFUSE);
		clear_calls(t);
		assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
		assert_non_null(strstr(err, "(3 attempts)"));
		assert_int_equal(calls(t, 9101), 1);
		assert_int_equal(calls(t, 9102), 1);
		assert_int_equal(calls(t, 9103), 1);
		assert_int_equal(metric_value(t, "users", "connect_error"), 3);
	}
}

static void test_retries_among_thousands_never_repeat(void **state)
{
	struct pt *t = *state;
	char *big = health_body_range("users_passing.http", "users", 0, 5000, 20000);
	struct peer_request req = get_user();
	static const char *const lbs[] = {"round_robin", "random", "least_inflight"};
	char err[256];
	long status;

	pt_start(t, big, 50);
	set_modes(t, 20000, 25000, INST_5XX);
	for (size_t k = 0; k < 3; k++) {
		struct peer_settings s = settings(lbs[k]);

		s.retries = 10;
		s.timeout_ms = 1; /* the pause between attempts is cut to the deadline */
		s.breaker_failures = 1000;
		for (int round = 0; round < 5; round++) {
			unsigned total = 0;

			clear_calls(t);
			assert_int_equal(call(t, &s, &req, &status, err, sizeof(err)), MN_OK);
			assert_int_equal(status, 503);
			for (int p = 20000; p < 25000; p++) {
				assert_true(calls(t, p) <= 1);
				total += calls(t, p);
			}
			assert_int_equal(total, 11);
		}
	}
	pt_stop_watches(t);
	free(big);
}

static void test_post_not_retried_once_sent(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request post = get_user(), put = get_user();
	char err[256];
	long status;

	post.method = "POST";
	post.body = "{\"name\":\"x\"}";
	post.body_len = strlen(post.body);
	put.method = "PUT";
	pt_start(t, t->users.body, t->users.index);
	s.breaker_failures = 1000;
	atomic_store(&t->overrun, -1);

	/* timed out after sending: the request may have been carried out */
	set_modes(t, 9101, 9104, INST_TIMEOUT);
	assert_int_equal(call(t, &s, &post, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "(1 attempt)"));
	assert_int_equal(fake_calls(t->ft, t->inst_rule), 1);

	/* the same for a broken connection and for a 5xx answer */
	hand_clock_advance(&t->clk, s.breaker_open_ms); /* the circuit closes again */
	set_modes(t, 9101, 9104, INST_IO);
	assert_int_equal(call(t, &s, &post, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(fake_calls(t->ft, t->inst_rule), 2);
	set_modes(t, 9101, 9104, INST_5XX);
	assert_int_equal(call(t, &s, &post, &status, err, sizeof(err)), MN_OK);
	assert_int_equal(status, 503);
	assert_int_equal(fake_calls(t->ft, t->inst_rule), 3);

	/* PUT is idempotent: retried on the others */
	assert_int_equal(call(t, &s, &put, &status, err, sizeof(err)), MN_OK);
	assert_int_equal(fake_calls(t->ft, t->inst_rule), 6);
}

static void test_post_retried_when_nothing_was_sent(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request post = get_user();
	char err[256];
	long status;

	post.method = "POST";
	post.body = "{}";
	post.body_len = 2;
	pt_start(t, t->users.body, t->users.index);
	atomic_store(&t->overrun, -1);

	/* round robin starts at users-1: refused, then users-2 answers */
	set_mode(t, 9101, INST_REFUSE);
	assert_int_equal(call(t, &s, &post, &status, err, sizeof(err)), MN_OK);
	assert_int_equal(status, 200);
	assert_int_equal(calls(t, 9101), 1);
	assert_int_equal(calls(t, 9102), 1);

	/* a connect timeout sent nothing either: round robin goes on with
	 * users-3 (times out), users-1 (probed again, times out), users-2 */
	set_modes(t, 9101, 9104, INST_CONNECT_TIMEOUT);
	set_mode(t, 9102, INST_OK);
	clear_calls(t);
	hand_clock_advance(&t->clk, s.breaker_open_ms);
	assert_int_equal(call(t, &s, &post, &status, err, sizeof(err)), MN_OK);
	assert_int_equal(status, 200);
	assert_int_equal(calls(t, 9103), 1);
	assert_int_equal(calls(t, 9101), 1);
	assert_int_equal(calls(t, 9102), 1);
}

/* The granted timeouts of the instance requests in the fake's log, in order. */
static size_t granted_timeouts(struct pt *t, long *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&t->ft->lock);
	for (size_t k = 0; k < t->ft->n_log && k < FAKE_LOG_MAX && n < max; k++)
		if (t->ft->log[k].rule == t->inst_rule)
			out[n++] = t->ft->log[k].timeout_ms;
	pthread_mutex_unlock(&t->ft->lock);
	return n;
}

/* A host that does not accept the connection (cut off, its SYNs lost)
 * costs the connect timeout, not the request timeout: the instance is
 * ejected at once and the call goes on to another, well within the first
 * attempt's timeout. */
/* users-1 (9101) fails in 'mode' while the others answer: three calls
 * all succeed, users-1 is tried once, costs 'ms' on the clock and is
 * ejected (its circuit open). */
static void ejected_once_within(struct pt *t, const struct peer_settings *s, enum inst_mode mode,
				uint64_t ms)
{
	struct peer_request req = get_user();
	uint64_t t0 = hand_clock_now(&t->clk);
	char err[256];
	long status;
	json_t *v;

	set_mode(t, 9101, mode);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(call(t, s, &req, &status, err, sizeof(err)), MN_OK);
		assert_int_equal(status, 200);
	}
	assert_int_equal(hand_clock_now(&t->clk) - t0, ms);
	assert_int_equal(calls(t, 9101), 1);
	v = view(t, s->breaker_open_ms);
	assert_string_equal(circuit_of(v, "users-1"), "open");
	json_decref(v);
}

static void test_connect_timeout_moves_on_quickly(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");

	pt_start(t, t->users.body, t->users.index);
	s.timeout_ms = 5000;
	s.connect_timeout_ms = 250;
	ejected_once_within(t, &s, INST_CONNECT_TIMEOUT, 250);
}

/* A host cut off while a request is out on a kept-alive connection never
 * acknowledges it: the attempt ends after connect_timeout_ms (the
 * transport's ack_timeout_ms), not timeout_ms, the instance is ejected and
 * the call goes on to another. A request that cannot be retried is not. */
static void test_cut_off_host_given_up_after_connect_timeout(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user(), post = get_user();
	struct fake_request seen;
	uint64_t t0;
	char err[256];
	long status;

	pt_start(t, t->users.body, t->users.index);
	s.timeout_ms = 5000;
	s.connect_timeout_ms = 250;
	ejected_once_within(t, &s, INST_CUT, 250);
	assert_true(fake_last(t->ft, ":9101/", &seen));
	assert_int_equal(seen.ack_timeout_ms, 250);
	assert_int_equal(seen.timeout_ms, 5000);

	/* a POST that went out may have arrived: given up on, not retried */
	set_mode(t, 9102, INST_CUT);
	post.method = "POST";
	post.path = "/users";
	post.body = "{}";
	post.body_len = 2;
	clear_calls(t);
	t0 = hand_clock_now(&t->clk);
	assert_int_equal(call(t, &s, &post, &status, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(hand_clock_now(&t->clk) - t0, 250);
	assert_int_equal(calls(t, 9102), 1);

	/* connect_timeout_ms as long as timeout_ms: the check is off */
	s.connect_timeout_ms = 5000;
	set_modes(t, 9101, 9104, INST_OK);
	assert_int_equal(call(t, &s, &req, &status, err, sizeof(err)), MN_OK);
	assert_true(fake_last(t->ft, "/users/1", &seen));
	assert_int_equal(seen.ack_timeout_ms, 0);
}

static void test_deadline_is_timeout_times_attempts(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	uint64_t t0;
	long got[8];
	char err[256];

	pt_start(t, t->users.body, t->users.index);
	s.timeout_ms = 100;
	s.retries = 2;
	set_modes(t, 9101, 9104, INST_TIMEOUT);

	/* each timeout takes its time and 20 ms more (timers are late): the
	 * third attempt gets what is left of 3 x 100 ms */
	atomic_store(&t->overrun, 20);
	t0 = hand_clock_now(&t->clk);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(granted_timeouts(t, got, 8), 3);
	assert_int_equal(got[0], 100);
	assert_int_equal(got[1], 100);
	assert_int_equal(got[2], 60);
	assert_int_equal(hand_clock_now(&t->clk) - t0, 120 + 120 + 80);
	assert_non_null(strstr(err, "(3 attempts)"));
}

static void test_deadline_stops_retries_when_spent(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	long got[8];
	char err[256];

	pt_start(t, t->users.body, t->users.index);
	s.timeout_ms = 100;
	s.retries = 2;
	set_modes(t, 9101, 9104, INST_TIMEOUT);
	/* 150 ms a timeout: two of them spend the 300 ms */
	atomic_store(&t->overrun, 50);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(granted_timeouts(t, got, 8), 2);
	assert_int_equal(got[0], 100);
	assert_int_equal(got[1], 100);
	assert_non_null(strstr(err, "(2 attempts)"));
}

/* ---- errors --------------------------------------------------------------------- */

static void test_service_not_allowed_is_not_found(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	json_t *v = NULL;
	char err[256];

	struct peer_settings open_1000 = {.tag = "", .breaker_open_ms = 1000};

	t->denied = "billing";
	pt_start(t, t->users.body, t->users.index);
	req.service = "billing";
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_NOT_FOUND);
	assert_int_equal(peer_client_view(t->pc, "billing", &open_1000, 0, 100, &v, err, sizeof(err)),
			 MN_NOT_FOUND);
	assert_null(v);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "billing", &open_1000), 0);
	assert_int_equal(fake_total(t->ft), 0);
	assert_int_equal(metric_value(t, "billing", "no_instance"), 1);

	req.service = "no/such";
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_INVALID);
	req.service = "users";
	s.lb = "weighted";
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_INVALID);
	assert_non_null(strstr(err, "'weighted'"));
	assert_int_equal(fake_total(t->ft), 0);
}

static void test_unavailable_says_why(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	struct fixture_answer none;
	char err[256];

	pt_start(t, t->users.body, t->users.index);
	trip(t, 9101);
	trip(t, 9102);
	trip(t, 9103);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "every instance's circuit is open (0 attempts)"));

	fixture_answer_load(&none, "consul/health/health_unknown_service.http");
	fake_publish(t->ft, t->health, none.body, 20);
	wait_index(t, 20);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "no passing instance"));
	pt_stop_watches(t);
	fixture_answer_free(&none);
}

static void test_unavailable_before_consul_answers(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	char err[256];

	t->health = fake_rule_add(t->ft, &(struct fake_rule){.url_has = USERS_URL, .hang = true});
	t->inst_rule =
		fake_rule_add(t->ft, &(struct fake_rule){.fn = instance_answer, .fn_ctx = t});
	t->pc = peer_client_create(&t->clk.clock, NULL, &t->ft->iface);
	t->r = resolver_create(&(struct resolver_opts){
		.consul = t->consul,
		.clock = &t->clk.clock,
		.first_wait_ms = 20,
		.prepare = pt_prepare,
		.release = pt_release,
		.ctx = t,
	});
	peer_client_attach(t->pc, t->r);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "consul has not answered yet"));
	assert_int_equal(fake_calls(t->ft, t->inst_rule), 0);
}

/* ---- what the client shows ------------------------------------------------------ */

static void test_view_fields(void **state)
{
	struct pt *t = *state;
	json_t *v, *one;

	pt_start(t, t->users.body, t->users.index);
	trip(t, 9101);
	hand_clock_advance(&t->clk, 1234);
	v = view(t, 60000);
	assert_string_equal(json_string_value(json_object_get(v, "service")), "users");
	assert_string_equal(json_string_value(json_object_get(v, "tag")), "");
	assert_true(json_is_true(json_object_get(v, "known")));
	assert_int_equal(int_of(v, "index"), 16);
	assert_int_equal(int_of(v, "age_ms"), 1234);
	assert_int_equal(int_of(v, "stale_ms"), 1234);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 3);

	one = view_instance(v, "users-1");
	assert_non_null(one);
	assert_string_equal(json_string_value(json_object_get(one, "node")), "meshnode-fixtures");
	assert_string_equal(json_string_value(json_object_get(one, "address")), "127.0.0.1");
	assert_int_equal(int_of(one, "port"), 9101);
	assert_string_equal(json_string_value(json_array_get(json_object_get(one, "tags"), 0)),
			    "blue");
	assert_true(json_is_object(json_object_get(one, "meta")));
	assert_string_equal(json_string_value(json_object_get(one, "circuit")), "open");
	assert_int_equal(int_of(one, "inflight"), 0);
	assert_int_equal(int_of(one, "recent_failures"), 1);
	assert_int_equal(int_of(one, "calls"), 1);
	assert_int_equal(int_of(one, "failures"), 1);
	assert_non_null(strstr(json_string_value(json_object_get(one, "last_error")), ":9101/"));

	one = view_instance(v, "users-2");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(one, "meta"), "scheme")),
		"https");
	assert_string_equal(json_string_value(json_object_get(one, "circuit")), "closed");
	assert_string_equal(json_string_value(json_object_get(one, "last_error")), "");
	json_decref(v);

	/* past open_ms an open circuit shows as ready for its probe */
	hand_clock_advance(&t->clk, 60000);
	v = view(t, 60000);
	assert_string_equal(circuit_of(v, "users-1"), "half_open");
	json_decref(v);
}

struct circuits {
	char seen[4][64];
	size_t n;
};

static void collect_circuit(void *ctx, const char *service, const char *node,
			    const char *instance, const char *state)
{
	struct circuits *c = ctx;

	if (c->n < 4)
		snprintf(c->seen[c->n++], sizeof(c->seen[0]), "%s/%s/%s=%s", service, node,
			 instance, state);
}

static void test_foreach_instance_reports_circuits(void **state)
{
	struct pt *t = *state;
	const struct peer_snapshot *snap;
	struct circuits c = {0};
	char err[256];

	pt_start(t, t->users.body, t->users.index);
	trip(t, 9102);
	assert_int_equal(resolver_get(t->r, "users", "", &snap, err, sizeof(err)), MN_OK);
	peer_client_foreach_instance(snap, collect_circuit, &c);
	resolver_put(snap);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.seen[0], "users/meshnode-fixtures/users-1=closed");
	assert_string_equal(c.seen[1], "users/meshnode-fixtures/users-2=open");
	assert_string_equal(c.seen[2], "users/meshnode-fixtures/users-3=closed");
}

static void test_request_url_and_headers(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	struct fake_request seen;
	char err[256];

	pt_start(t, t->users.body, t->users.index);
	req.method = "POST";
	req.body = "{}";
	req.body_len = 2;
	req.request_id = "req-42";
	req.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	/* round robin: users-1, then users-2 (Meta scheme=https) */
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_OK);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_OK);
	assert_true(fake_last(t->ft, ":9101/", &seen));
	assert_string_equal(seen.url, "http://127.0.0.1:9101/users/1");
	assert_string_equal(seen.method, "POST");
	assert_true(fake_last(t->ft, ":9102/", &seen));
	assert_string_equal(seen.url, "https://127.0.0.1:9102/users/1");
	/* what the call needs and nothing more: every header costs each call */
	assert_null(strstr(seen.headers, "Accept:"));
	assert_non_null(strstr(seen.headers, "X-Request-ID: req-42"));
	assert_non_null(strstr(seen.headers, "Content-Type: application/json"));
	/* the caller's trace, with a span of ours */
	assert_non_null(strstr(seen.headers, "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"));
	assert_null(strstr(seen.headers, "00f067aa0ba902b7"));
	assert_int_equal(seen.timeout_ms, 1000);

	/* a request id with a line break is not passed on */
	req.request_id = "x\r\nEvil: 1";
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_OK);
	assert_true(fake_last(t->ft, ":9103/", &seen));
	assert_null(strstr(seen.headers, "X-Request-ID"));
	assert_null(strstr(seen.headers, "Evil"));
}

static void test_retry_after_ms(void **state)
{
	struct pt *t = *state;
	struct peer_settings open_5000 = {.tag = "", .breaker_open_ms = 5000};

	pt_start(t, t->users.body, t->users.index);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "users", &open_5000), 0);
	trip(t, 9101);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "users", &open_5000), 5000);
	hand_clock_advance(&t->clk, 1200);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "users", &open_5000), 3800);
	trip(t, 9103);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "users", &open_5000), 3800);
	hand_clock_advance(&t->clk, 3800);
	/* users-1 may be probed now; users-3 in 1200 ms */
	assert_int_equal(peer_client_retry_after_ms(t->pc, "users", &open_5000), 1200);
	hand_clock_advance(&t->clk, 1200);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "users", &open_5000), 0);
	assert_int_equal(peer_client_retry_after_ms(t->pc, "no/such", &open_5000), 0);
}

/* ---- threads ----------------------------------------------------------------------- */

#define WORKERS	     6
#define WORKER_CALLS 1500

struct worker {
	struct pt *t;
	pthread_t th;
	unsigned id, ok, unavailable, other;
};

static void *worker_main(void *arg)
{
	static const char *const lbs[] = {"round_robin", "random", "least_inflight"};
	struct worker *w = arg;
	struct peer_settings s = settings(lbs[w->id % 3]);
	struct peer_request req = get_user();

	s.timeout_ms = 2; /* short pauses between attempts (real sleeps) */
	s.breaker_open_ms = 500;
	if (w->id % 2)
		req.method = "POST";
	for (unsigned i = 0; i < WORKER_CALLS; i++) {
		char err[256];
		enum mn_err e = call(w->t, &s, &req, NULL, err, sizeof(err));

		if (e == MN_OK)
			w->ok++;
		else if (e == MN_UNAVAILABLE)
			w->unavailable++;
		else
			w->other++;
		if (i % 100 == 0) {
			struct peer_settings vs = s;
			json_t *v = NULL;

			vs.breaker_open_ms = 500;
			if (peer_client_view(w->t->pc, "users", &vs, 0, 100, &v, err, sizeof(err)) ==
			    MN_OK)
				json_decref(v);
			peer_client_retry_after_ms(w->t->pc, "users", &vs);
		}
	}
	return NULL;
}

static void test_concurrent_calls_over_a_thousand_instances(void **state)
{
	struct pt *t = *state;
	char *a = health_body_range("users_passing.http", "users", 0, 1000, 20000);
	char *b = health_body_range("users_passing.http", "users", 100, 1100, 20000);
	struct worker w[WORKERS];
	json_t *v, *one;
	size_t i;

	/* some instances refuse, some answer 503, some time out */
	for (int p = 20000; p < 21100; p++)
		set_mode(t, p,
			 p % 10 == 0   ? INST_REFUSE
			 : p % 10 == 1 ? INST_5XX
			 : p % 29 == 0 ? INST_TIMEOUT
				       : INST_OK);
	pt_start(t, a, 60);
	for (unsigned k = 0; k < WORKERS; k++) {
		w[k] = (struct worker){.t = t, .id = k};
		assert_int_equal(pthread_create(&w[k].th, NULL, worker_main, &w[k]), 0);
	}
	/* snapshots change under the callers */
	for (uint64_t index = 61; index < 67; index++) {
		fake_publish(t->ft, t->health, index % 2 ? b : a, index);
		wait_index(t, index);
	}
	for (unsigned k = 0; k < WORKERS; k++) {
		pthread_join(w[k].th, NULL);
		assert_int_equal(w[k].other, 0);
		assert_int_equal(w[k].ok + w[k].unavailable, WORKER_CALLS);
		assert_true(w[k].ok > 0);
	}
	/* nothing left in flight */
	v = view(t, 500);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 1000);
	json_array_foreach(json_object_get(v, "instances"), i, one)
		assert_int_equal(int_of(one, "inflight"), 0);
	json_decref(v);
	pt_stop_watches(t);
	free(a);
	free(b);
}

/* ---- bugs these tests found, fixed ------------------------------------------ */

/* peer_client_view() read the clock before resolver_get(), which on first
 * use waits for Consul's first answer; the snapshot was stamped later than
 * 'now', and age_ms = now - changed_ms wrapped: a negative age. */
static void test_view_age_on_first_use(void **state)
{
	struct pt *t = *state;
	json_int_t age;
	json_t *v;

	t->health = fake_rule_add(t->ft, &(struct fake_rule){
						 .url_has = USERS_URL,
						 .ans = {.body = t->users.body, .index = 16},
						 .blocking = true,
						 .elapse_ms = 40, /* the agent takes 40 ms */
					 });
	t->ft->elapse = hand_clock_elapse;
	t->ft->elapse_ctx = &t->clk;
	pt_start(t, t->users.body, 16); /* its rule comes after the one above */
	v = view(t, 60000);
	age = int_of(v, "age_ms");
	json_decref(v);
	if (age < 0)
		fail_msg("age_ms %lld on first use", (long long)age);
}

/* peer_call() read the clock before resolver_get(), so on first use the
 * wait for Consul's first answer was charged to the call's deadline of
 * timeout_ms x (retries + 1): with an agent taking 400 ms and a 300 ms
 * budget, one attempt went and no retry. The budget counts from when the
 * call has its instances. */
static void test_deadline_counts_from_the_snapshot(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	long got[8];
	char err[256];

	t->health = fake_rule_add(t->ft, &(struct fake_rule){
						 .url_has = USERS_URL,
						 .ans = {.body = t->users.body, .index = 16},
						 .blocking = true,
						 .elapse_ms = 400,
					 });
	t->ft->elapse = hand_clock_elapse;
	t->ft->elapse_ctx = &t->clk;
	pt_start(t, t->users.body, 16);
	s.timeout_ms = 100;
	s.retries = 2;
	set_modes(t, 9101, 9104, INST_TIMEOUT);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	/* the budget counts from when the call has its instances */
	assert_int_equal(granted_timeouts(t, got, 8), 3);
}

/* The header promises MN_OK when an instance answered, even with a 5xx,
 * and MN_UNAVAILABLE only when every attempt failed to connect or timed
 * out; a 503 followed by a refused retry used to return MN_UNAVAILABLE,
 * the 503 lost. */
static void test_answer_kept_when_a_retry_fails(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	char err[256];
	long status;

	pt_start(t, t->two.body, t->two.index);
	s.retries = 1;
	/* round robin starts at users-a-8081 */
	set_mode(t, 8081, INST_5XX);
	set_mode(t, 8082, INST_REFUSE);
	assert_int_equal(call(t, &s, &req, &status, err, sizeof(err)), MN_OK);
	assert_int_equal(status, 503);
}

/* ---- the panic threshold ----------------------------------------------------- */

/* What a real agent answered, without ?passing, for users-1..3 (ports
 * 9101-9103) as their checks failed and came back (capture.py panic). */
struct story {
	struct fixture_answer three, two_critical, all_critical, two_back, maint_rest_critical;
};

static void story_load(struct story *st)
{
	peers_answer_load(&st->three, "panic_three_passing.http");
	peers_answer_load(&st->two_critical, "panic_two_critical.http");
	peers_answer_load(&st->all_critical, "panic_all_critical.http");
	peers_answer_load(&st->two_back, "panic_two_back.http");
	peers_answer_load(&st->maint_rest_critical, "panic_rest_critical_in_maintenance.http");
}

static void story_free(struct pt *t, struct story *st)
{
	pt_stop_watches(t);
	fixture_answer_free(&st->three);
	fixture_answer_free(&st->two_critical);
	fixture_answer_free(&st->all_critical);
	fixture_answer_free(&st->two_back);
	fixture_answer_free(&st->maint_rest_critical);
}

static void answer(struct pt *t, const struct fixture_answer *a)
{
	fake_publish(t->ft, t->health, a->body, a->index);
	wait_index(t, a->index);
}

/* 30 calls, round robin; each succeeds. */
static void thirty_calls(struct pt *t)
{
	struct peer_settings s = settings("round_robin");

	clear_calls(t);
	for (int i = 0; i < 30; i++)
		call_ok(t, &s);
}

/* Below the threshold every registered instance takes calls, failing
 * checks or not (the flap: Consul fails healthy instances for a moment);
 * once enough pass again, only the passing ones do. */
static void test_panic_calls_every_registered_instance(void **state)
{
	struct pt *t = *state;
	struct story st;

	story_load(&st);
	pt_start(t, st.two_critical.body, st.two_critical.index);
	thirty_calls(t);
	assert_int_equal(calls(t, 9101), 10);
	assert_int_equal(calls(t, 9102), 10);
	assert_int_equal(calls(t, 9103), 10);

	answer(t, &st.all_critical);
	thirty_calls(t);
	assert_int_equal(calls(t, 9101), 10);
	assert_int_equal(calls(t, 9102), 10);
	assert_int_equal(calls(t, 9103), 10);

	answer(t, &st.two_back);
	thirty_calls(t);
	assert_int_equal(calls(t, 9101), 15);
	assert_int_equal(calls(t, 9102), 15);
	assert_int_equal(calls(t, 9103), 0);
	story_free(t, &st);
}

/* In panic the breakers and retries work as ever: the instances that are
 * really gone refuse once each, are ejected, and every call succeeds on
 * the one that answers. */
static void test_panic_keeps_breakers_and_retries(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct story st;
	json_t *v;

	story_load(&st);
	pt_start(t, st.all_critical.body, st.all_critical.index);
	set_mode(t, 9102, INST_REFUSE);
	set_mode(t, 9103, INST_REFUSE);
	for (int i = 0; i < 20; i++)
		call_ok(t, &s);
	assert_int_equal(calls(t, 9102), 1);
	assert_int_equal(calls(t, 9103), 1);
	assert_int_equal(calls(t, 9101), 20);
	v = view(t, s.breaker_open_ms);
	assert_string_equal(circuit_of(v, "users-1"), "closed");
	assert_string_equal(circuit_of(v, "users-2"), "open");
	assert_string_equal(circuit_of(v, "users-3"), "open");
	json_decref(v);
	story_free(t, &st);
}

/* Threshold 0: none passing is what it was before there was a threshold,
 * a call that fails at once and calls no instance. */
static void test_panic_off_with_zero(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	struct story st;
	char err[256];

	story_load(&st);
	atomic_store(&t->threshold, 0);
	/* 1 of 3: the passing one only */
	pt_start(t, st.two_critical.body, st.two_critical.index);
	thirty_calls(t);
	assert_int_equal(calls(t, 9101), 30);
	/* none */
	answer(t, &st.all_critical);
	clear_calls(t);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "no passing instance (0 attempts)"));
	assert_int_equal(calls(t, 9101) + calls(t, 9102) + calls(t, 9103), 0);
	story_free(t, &st);
}

/* An instance in maintenance is never called, in panic neither: with
 * users-2 and users-3 in maintenance and users-1 critical, users-1 alone
 * takes the calls. */
static void test_panic_never_calls_instances_in_maintenance(void **state)
{
	struct pt *t = *state;
	struct story st;

	story_load(&st);
	pt_start(t, st.maint_rest_critical.body, st.maint_rest_critical.index);
	thirty_calls(t);
	assert_int_equal(calls(t, 9101), 30);
	assert_int_equal(calls(t, 9102), 0);
	assert_int_equal(calls(t, 9103), 0);
	story_free(t, &st);
}

/* Out of panic, the registered instances that do not pass are a reserve:
 * never called while a passing one takes the call, tried when none can
 * (here the two passing ones refuse: cut off, while Consul wrongly fails
 * the third), and not kept at all with the threshold 0. */
static void test_reserve_answers_when_no_passing_instance_can(void **state)
{
	struct pt *t = *state;
	struct peer_settings s = settings("round_robin");
	struct peer_request req = get_user();
	struct fixture_answer one_critical;
	char err[256];
	json_t *v;

	peers_answer_load(&one_critical, "panic_one_critical.http");
	pt_start(t, one_critical.body, one_critical.index);
	thirty_calls(t);
	assert_int_equal(calls(t, 9101), 15);
	assert_int_equal(calls(t, 9102), 15);
	assert_int_equal(calls(t, 9103), 0);
	v = view(t, s.breaker_open_ms);
	assert_true(json_is_false(json_object_get(v, "panic")));
	assert_int_equal(int_of(v, "instances_total"), 2);
	assert_int_equal(int_of(v, "instances_reserve"), 1);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 2);
	json_decref(v);

	set_modes(t, 9101, 9103, INST_REFUSE);
	clear_calls(t);
	for (int i = 0; i < 10; i++)
		call_ok(t, &s);
	/* each refused once and was ejected; users-3 answered every call */
	assert_int_equal(calls(t, 9101), 1);
	assert_int_equal(calls(t, 9102), 1);
	assert_int_equal(calls(t, 9103), 10);

	/* a reserve that fails too: the call fails, having tried everything */
	set_mode(t, 9103, INST_REFUSE);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(calls(t, 9103), 11);

	/* threshold 0: the passing ones only */
	atomic_store(&t->threshold, 0);
	assert_int_equal(resolver_sweep(t->r), 0);
	set_mode(t, 9103, INST_OK);
	v = view(t, s.breaker_open_ms);
	assert_int_equal(int_of(v, "instances_reserve"), 0);
	json_decref(v);
	clear_calls(t);
	assert_int_equal(call(t, &s, &req, NULL, err, sizeof(err)), MN_UNAVAILABLE);
	assert_int_equal(calls(t, 9103), 0);
	pt_stop_watches(t);
	fixture_answer_free(&one_critical);
}

/* GET /peers/{service} says whether the service is in panic, with the
 * counts, and each listed instance's Consul health. */
static void test_view_shows_panic(void **state)
{
	struct pt *t = *state;
	struct story st;
	json_t *v;

	story_load(&st);
	pt_start(t, st.three.body, st.three.index);
	v = view(t, 60000);
	assert_true(json_is_false(json_object_get(v, "panic")));
	assert_int_equal(int_of(v, "instances_passing"), 3);
	assert_int_equal(int_of(v, "instances_registered"), 3);
	assert_int_equal(int_of(v, "instances_total"), 3);
	json_decref(v);

	answer(t, &st.two_critical);
	v = view(t, 60000);
	assert_true(json_is_true(json_object_get(v, "panic")));
	assert_int_equal(int_of(v, "instances_passing"), 1);
	assert_int_equal(int_of(v, "instances_registered"), 3);
	assert_int_equal(int_of(v, "instances_total"), 3);
	assert_int_equal(json_array_size(json_object_get(v, "instances")), 3);
	assert_true(json_is_true(json_object_get(view_instance(v, "users-1"), "passing")));
	assert_true(json_is_false(json_object_get(view_instance(v, "users-2"), "passing")));
	assert_true(json_is_false(json_object_get(view_instance(v, "users-3"), "passing")));
	json_decref(v);

	answer(t, &st.two_back);
	v = view(t, 60000);
	assert_true(json_is_false(json_object_get(v, "panic")));
	assert_int_equal(int_of(v, "instances_passing"), 2);
	assert_int_equal(int_of(v, "instances_registered"), 3);
	assert_int_equal(int_of(v, "instances_total"), 2);
	assert_null(view_instance(v, "users-3"));
	json_decref(v);
	story_free(t, &st);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_round_robin_two_instances_alternate),
		T(test_random_two_instances_spread),
		T(test_least_inflight_two_idle_instances_share),
		T(test_least_inflight_two_instances_avoids_the_busy_one),
		T(test_least_inflight_five_instances_prefers_idle),
		T(test_five_thousand_instances_every_strategy_spreads),
		T(test_five_thousand_instances_least_inflight_avoids_busy),
		T(test_open_circuit_survives_a_new_snapshot),
		T(test_same_id_on_two_nodes_is_two_instances),
		T(test_instance_back_within_prune_margin_keeps_its_state),
		T(test_instance_state_forgotten_past_prune_margin),
		T(test_retries_go_to_other_instances),
		T(test_retries_among_thousands_never_repeat),
		T(test_post_not_retried_once_sent),
		T(test_post_retried_when_nothing_was_sent),
		T(test_connect_timeout_moves_on_quickly),
		T(test_cut_off_host_given_up_after_connect_timeout),
		T(test_deadline_is_timeout_times_attempts),
		T(test_deadline_stops_retries_when_spent),
		T(test_service_not_allowed_is_not_found),
		T(test_unavailable_says_why),
		T(test_unavailable_before_consul_answers),
		T(test_view_fields),
		T(test_foreach_instance_reports_circuits),
		T(test_request_url_and_headers),
		T(test_retry_after_ms),
		T(test_concurrent_calls_over_a_thousand_instances),
		T(test_view_age_on_first_use),
		T(test_deadline_counts_from_the_snapshot),
		T(test_answer_kept_when_a_retry_fails),
		T(test_panic_calls_every_registered_instance),
		T(test_panic_keeps_breakers_and_retries),
		T(test_panic_off_with_zero),
		T(test_panic_never_calls_instances_in_maintenance),
		T(test_reserve_answers_when_no_passing_instance_can),
		T(test_view_shows_panic),
	};
#undef T

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
