#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect/authz.h"
#include "connect/connect_metrics.h"
#include "consul/client.h"
#include "core/log.h"
#include "fixture.h"
#include "log_capture.h"
#include "peers/fake_transport.h"

/* The agent's answers were captured from a real consul 1.8.7 -dev agent by
 * tests/fixtures/consul/connect/capture.py (the authz set): intentions
 * web -> users allow, then deny. The fake transport (tests/unit/peers/
 * fake_transport.h) replays them: the watch's filtered list as a blocking
 * query, the match read, and the authorize answers by source. */

#define TD	 "11111111-2222-3333-4444-555555555555.consul"
#define URI(svc) "spiffe://" TD "/ns/default/dc/dc1/svc/" svc

/* An answer captured with curl -si: status line, headers, body. */
struct captured {
	char *text;
	const char *body;
	uint64_t index; /* X-Consul-Index, 0 when absent (the match answers) */
};

static void captured_load(struct captured *c, const char *name)
{
	char path[256], *sep, *hdr;
	size_t len;

	snprintf(path, sizeof(path), "consul/connect/%s.http", name);
	c->text = fixture_read(path, &len);
	sep = strstr(c->text, "\n\n");
	assert_non_null(sep);
	*sep = '\0';
	c->body = sep + 2;
	hdr = strstr(c->text, "\nX-Consul-Index: ");
	c->index = hdr ? strtoull(hdr + 17, NULL, 10) : 0;
}

static struct captured list_allow, list_deny, match_allow, match_deny, match_blocked, auth_allow,
	auth_deny, auth_other;

static int load_fixtures(void **state)
{
	(void)state;
	captured_load(&list_allow, "authz_list_allow");
	captured_load(&list_deny, "authz_list_deny");
	captured_load(&match_allow, "authz_match_allow");
	captured_load(&match_deny, "authz_match_deny");
	captured_load(&match_blocked, "authz_match_blocked");
	captured_load(&auth_allow, "authz_authorize_allow");
	captured_load(&auth_deny, "authz_authorize_deny");
	captured_load(&auth_other, "authz_authorize_other");
	return 0;
}

static int free_fixtures(void **state)
{
	struct captured *all[] = {&list_allow,	  &list_deny,  &match_allow, &match_deny,
				  &match_blocked, &auth_allow, &auth_deny,   &auth_other};

	(void)state;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->text);
	return 0;
}

/* ---- the world of one test ------------------------------------------------- */

struct hand_clock {
	atomic_uint_fast64_t ms;
};

static uint64_t hand_now(void *ctx)
{
	return atomic_load(&((struct hand_clock *)ctx)->ms);
}

struct world {
	struct fake_transport *ft;
	struct consul *consul;
	struct metrics *registry;
	struct connect_metrics cm;
	struct connect_authorizer *a;
	struct hand_clock hc;
	struct mn_clock clock;
	int r_list, r_match, r_auth;
	/* the agent's authorize, as fn of the rule */
	atomic_bool web_denied;
	atomic_int fail; /* MN_OK: answer; else this failure */
	atomic_uint auth_calls;
	atomic_uint delay_ms; /* real time the answer takes */
	atomic_bool fail_open;
};

static void authorize_fn(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct world *w = ctx;

	atomic_fetch_add(&w->auth_calls, 1);
	if (atomic_load(&w->delay_ms))
		clock_sleep_ms(atomic_load(&w->delay_ms));
	if (atomic_load(&w->fail) != MN_OK) {
		ans->fail = (enum mn_err)atomic_load(&w->fail);
		return;
	}
	assert_non_null(req->body);
	if (strstr(req->body, "/svc/web\"") != NULL)
		ans->body = atomic_load(&w->web_denied) ? auth_deny.body : auth_allow.body;
	else if (strstr(req->body, "/svc/admin\"") != NULL)
		ans->body = auth_deny.body;
	else
		ans->body = auth_other.body;
}

static bool fail_open_fn(void *ctx)
{
	return atomic_load(&((struct world *)ctx)->fail_open);
}

static void world_start(struct world *w, size_t capacity)
{
	char err[256];

	memset(w, 0, sizeof(*w));
	atomic_init(&w->hc.ms, 1000000);
	w->clock = (struct mn_clock){hand_now, &w->hc};
	w->ft = fake_create();
	w->r_list = fake_rule_add(
		w->ft, &(struct fake_rule){
			       .method = "GET",
			       .url_has = "/v1/connect/intentions?filter=",
			       .ans = {.body = list_allow.body, .index = list_allow.index},
			       .blocking = true,
		       });
	w->r_match = fake_rule_add(w->ft, &(struct fake_rule){
						  .method = "GET",
						  .url_has = "/v1/connect/intentions/match?",
						  .ans = {.body = match_allow.body},
					  });
	w->r_auth = fake_rule_add(w->ft, &(struct fake_rule){
						 .method = "POST",
						 .url_has = "/v1/agent/connect/authorize",
						 .fn = authorize_fn,
						 .fn_ctx = w,
					 });
	w->consul = consul_create(&(struct consul_opts){.address = "http://127.0.0.1:8500",
							.transport = &w->ft->iface},
				  err, sizeof(err));
	assert_non_null(w->consul);
	w->registry = metrics_create();
	assert_non_null(w->registry);
	assert_int_equal(connect_metrics_register(&w->cm, w->registry), MN_OK);
	w->a = connect_authz_create(
		&(struct connect_authz_opts){
			.consul = w->consul,
			.target = "users",
			.capacity = capacity,
			.ttl_ms = 60000,
			.stale_grace_ms = 10000,
			.deadline_ms = 2000,
			.watch_wait_ms = 200,
			.watch_min_interval_ms = 10,
			.fail_open = fail_open_fn,
			.fail_open_ctx = w,
			.clock = &w->clock,
			.metric = w->cm.authz,
		},
		err, sizeof(err));
	assert_non_null(w->a);
	/* the watch's first answer moves the generation from 1 to 2 */
	for (int i = 0; i < 400 && connect_authz_generation(w->a) < 2; i++)
		clock_sleep_ms(5);
	assert_int_equal(connect_authz_generation(w->a), 2);
	assert_int_equal(fake_calls(w->ft, w->r_match), 1);
}

static void world_stop(struct world *w)
{
	connect_authz_destroy(w->a);
	assert_int_equal(fake_handles_live(w->ft), 0);
	assert_int_equal(fake_unexpected(w->ft), 0);
	consul_destroy(w->consul);
	metrics_destroy(w->registry);
	fake_destroy(w->ft);
}

static void advance(struct world *w, uint64_t ms)
{
	atomic_fetch_add(&w->hc.ms, ms);
}

static bool check(struct world *w, const char *svc, struct connect_authz_decision *d)
{
	struct spiffe_id id;
	char uri[SPIFFE_URI_MAX + 1];

	snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/dc/dc1/svc/%s", TD, svc);
	assert_int_equal(spiffe_parse(uri, strlen(uri), &id, NULL, 0), MN_OK);
	return connect_authz_check(w->a, &id, uri, "0a:0b", d);
}

/* The value of one series in the exposition, -1 when absent. */
static double metric_value(struct world *w, const char *source, const char *result)
{
	char want[256], *p;
	struct buf out;
	double v = -1;

	buf_init(&out, 1u << 22);
	assert_int_equal(metrics_render(w->registry, &out), MN_OK);
	assert_int_equal(buf_append(&out, "", 1), MN_OK);
	snprintf(want, sizeof(want), "meshnode_connect_authz_total{source=\"%s\",result=\"%s\"} ",
		 source, result);
	p = strstr(out.data, want);
	if (p)
		v = strtod(p + strlen(want), NULL);
	buf_release(&out);
	return v;
}

/* Polls the generation (it may move on the watch thread) until it differs
 * from 'from'; bounded. */
static uint64_t wait_generation_past(struct world *w, uint64_t from)
{
	uint64_t g = from;

	for (int i = 0; i < 600 && (g = connect_authz_generation(w->a)) == from; i++)
		clock_sleep_ms(5);
	return g;
}

/* ---- cases ----------------------------------------------------------------- */

static void test_allow_is_cached(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	(void)state;

	world_start(&w, 0);
	assert_true(check(&w, "web", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_ALLOW);
	assert_false(d.cached);
	assert_true(d.kept);
	assert_int_equal(d.generation, 2);
	assert_non_null(strstr(d.reason, "Matched intention: ALLOW default/web"));
	for (int i = 0; i < 99; i++) {
		assert_true(check(&w, "web", &d));
		assert_true(d.cached);
		assert_true(d.kept);
	}
	assert_int_equal(atomic_load(&w.auth_calls), 1);
	assert_true(metric_value(&w, "web", "allow") == 100);
	world_stop(&w);
}

static void test_deny_is_cached_and_refused(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	(void)state;

	world_start(&w, 0);
	assert_false(check(&w, "admin", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_DENY);
	assert_true(d.kept);
	assert_non_null(strstr(d.reason, "DENY"));
	assert_false(check(&w, "admin", &d));
	assert_true(d.cached);
	assert_int_equal(atomic_load(&w.auth_calls), 1);
	assert_true(metric_value(&w, "admin", "deny") == 2);
	world_stop(&w);
}

/* The intention changes to deny: the watch sees the list move, reads the
 * match, the generation moves on, and the next check asks again; AUTHZ_SETTLE_MS
 * later it moves on once more (the agent's own cache may have lagged). */
static void test_intention_flip_bumps_generation(void **state)
{
	struct connect_authz_decision d;
	uint64_t g0, g1, g2;
	struct world w;
	(void)state;

	world_start(&w, 0);
	assert_true(check(&w, "web", &d));
	g0 = d.generation;
	assert_true(check(&w, "web", &d));
	assert_true(d.cached);

	/* an unrelated answer of the list (same body, new index): no bump */
	fake_publish(w.ft, w.r_list, list_allow.body, list_allow.index + 1);
	clock_sleep_ms(100);
	assert_int_equal(connect_authz_generation(w.a), g0);

	atomic_store(&w.web_denied, true);
	fake_set_answer(w.ft, w.r_match, &(struct fake_answer){.body = match_deny.body});
	fake_publish(w.ft, w.r_list, list_deny.body, list_deny.index + 10);
	g1 = wait_generation_past(&w, g0);
	assert_int_equal(g1, g0 + 1);
	assert_false(check(&w, "web", &d));
	assert_false(d.cached);
	assert_int_equal(d.generation, g1);
	assert_int_equal(atomic_load(&w.auth_calls), 2);

	/* the settle: AUTHZ_SETTLE_MS on the clock, one more bump, one more call */
	advance(&w, AUTHZ_SETTLE_MS - 1);
	assert_int_equal(connect_authz_generation(w.a), g1);
	advance(&w, 1);
	g2 = connect_authz_generation(w.a);
	assert_int_equal(g2, g1 + 1);
	assert_false(check(&w, "web", &d));
	assert_false(d.cached);
	assert_int_equal(atomic_load(&w.auth_calls), 3);
	assert_false(check(&w, "web", &d));
	assert_true(d.cached);
	assert_int_equal(connect_authz_generation(w.a), g2);
	world_stop(&w);
}

/* The list moved (new index, new body) but the match answer is the same
 * as the last read: no bump. */
static void test_same_match_no_bump(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	uint64_t g0;
	(void)state;

	world_start(&w, 0);
	assert_true(check(&w, "web", &d));
	g0 = d.generation;
	fake_publish(w.ft, w.r_list, list_deny.body, list_deny.index + 10);
	for (int i = 0; i < 400 && fake_calls(w.ft, w.r_match) < 2; i++)
		clock_sleep_ms(5);
	assert_int_equal(fake_calls(w.ft, w.r_match), 2);
	clock_sleep_ms(20);
	assert_int_equal(connect_authz_generation(w.a), g0);
	assert_true(check(&w, "web", &d));
	assert_true(d.cached);
	world_stop(&w);
}

static void test_agent_down_fails_closed_then_open(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	(void)state;

	world_start(&w, 0);
	atomic_store(&w.fail, MN_UNAVAILABLE);
	assert_false(check(&w, "web", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_ERROR_CLOSED);
	assert_false(d.kept);
	assert_non_null(strstr(d.reason, "no decision from the agent"));
	assert_false(check(&w, "web", &d)); /* not cached: asked again */
	assert_int_equal(atomic_load(&w.auth_calls), 2);

	atomic_store(&w.fail_open, true); /* connect.authz_fail_open changed live */
	assert_true(check(&w, "web", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_ERROR_OPEN);
	assert_false(d.kept);
	assert_int_equal(atomic_load(&w.auth_calls), 3);
	assert_true(metric_value(&w, "web", "error_closed") == 2);
	assert_true(metric_value(&w, "web", "error_open") == 1);
	world_stop(&w);
}

static void test_bad_answer_is_no_decision(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	(void)state;

	world_start(&w, 0);
	/* the agent answers something else than a decision */
	pthread_mutex_lock(&w.ft->lock);
	w.ft->rules[w.r_auth].fn = NULL;
	w.ft->rules[w.r_auth].ans = (struct fake_answer){.body = "{\"Authorized\": \"yes\"}"};
	pthread_mutex_unlock(&w.ft->lock);
	assert_false(check(&w, "web", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_ERROR_CLOSED);
	assert_non_null(strstr(d.reason, "'Authorized' is not a boolean"));
	fake_set_answer(w.ft, w.r_auth, &(struct fake_answer){.status = 403, .body = "denied"});
	assert_false(check(&w, "web", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_ERROR_CLOSED);
	assert_non_null(strstr(d.reason, "permission denied"));
	world_stop(&w);
}

static void test_bad_callers_are_denied_without_asking(void **state)
{
	struct connect_authz_decision d;
	struct spiffe_id id, agent;
	const char *agent_uri = "spiffe://" TD "/agent/client/dc/dc1/id/node1";
	struct world w;
	(void)state;

	world_start(&w, 0);
	assert_int_equal(spiffe_parse(URI("web"), strlen(URI("web")), &id, NULL, 0), MN_OK);
	/* the URI names another service than the identity */
	assert_false(connect_authz_check(w.a, &id, URI("api"), NULL, &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_DENY);
	assert_non_null(strstr(d.reason, "names another service"));
	assert_false(connect_authz_check(w.a, &id, NULL, NULL, &d));
	assert_false(connect_authz_check(w.a, NULL, URI("web"), NULL, &d));
	spiffe_parse(agent_uri, strlen(agent_uri), &agent, NULL, 0);
	assert_int_equal(agent.kind, SPIFFE_AGENT);
	assert_false(connect_authz_check(w.a, &agent, agent_uri, NULL, &d));
	assert_non_null(strstr(d.reason, "not a service identity"));
	assert_int_equal(atomic_load(&w.auth_calls), 0);
	assert_true(metric_value(&w, "other", "deny") == 4);
	world_stop(&w);
}

static void test_ttl_expires(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	(void)state;

	world_start(&w, 0);
	check(&w, "web", &d);
	advance(&w, 59999);
	check(&w, "web", &d);
	assert_true(d.cached);
	advance(&w, 1);
	check(&w, "web", &d);
	assert_false(d.cached);
	assert_int_equal(atomic_load(&w.auth_calls), 2);
	world_stop(&w);
}

/* 10,000 distinct sources: the table stays at its capacity, the oldest go. */
static void test_cache_bound(void **state)
{
	struct connect_authz_decision d;
	char name[32];
	struct world w;
	(void)state;

	world_start(&w, 0);
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "svc-%d", i);
		assert_true(check(&w, name, &d));
		assert_true(connect_authz_sources(w.a) <= AUTHZ_CAPACITY_DEFAULT);
	}
	assert_int_equal(connect_authz_sources(w.a), AUTHZ_CAPACITY_DEFAULT);
	assert_int_equal(atomic_load(&w.auth_calls), 10000);
	check(&w, "svc-9999", &d); /* the newest is there */
	assert_true(d.cached);
	check(&w, "svc-0", &d); /* the oldest went */
	assert_false(d.cached);
	assert_int_equal(atomic_load(&w.auth_calls), 10001);
	world_stop(&w);
}

/* The metric: the first AUTHZ_METRIC_SOURCES_MAX sources by name, then "other". */
static void test_metric_label_bound(void **state)
{
	struct connect_authz_decision d;
	char name[32];
	struct world w;
	(void)state;

	world_start(&w, 0);
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "svc-%d", i);
		check(&w, name, &d);
	}
	assert_true(metric_value(&w, "svc-0", "allow") == 1);
	assert_true(metric_value(&w, "svc-63", "allow") == 1);
	assert_true(metric_value(&w, "svc-64", "allow") == -1);
	assert_true(metric_value(&w, "other", "allow") == 200 - AUTHZ_METRIC_SOURCES_MAX);
	world_stop(&w);
}

struct racer {
	struct world *w;
	pthread_barrier_t *start;
	struct connect_authz_decision d;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->start);
	check(r->w, "web", &r->d);
	return NULL;
}

/* Eight threads check the same new source at once: one agent call, the
 * others wait on it. */
static void test_single_flight(void **state)
{
	enum { N = 8 };
	struct racer racers[N];
	pthread_t threads[N];
	pthread_barrier_t start;
	struct world w;
	int joined = 0;
	(void)state;

	world_start(&w, 0);
	atomic_store(&w.delay_ms, 300);
	pthread_barrier_init(&start, NULL, N);
	for (int i = 0; i < N; i++) {
		racers[i] = (struct racer){.w = &w, .start = &start};
		assert_int_equal(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(atomic_load(&w.auth_calls), 1);
	for (int i = 0; i < N; i++) {
		assert_true(racers[i].d.allowed);
		assert_true(racers[i].d.kept);
		joined += racers[i].d.joined;
	}
	assert_int_equal(joined, N - 1);
	world_stop(&w);
}

/* A waiter gives up at the deadline: no decision, fail_open decides. */
static void test_single_flight_deadline(void **state)
{
	struct racer r;
	pthread_barrier_t start;
	pthread_t t;
	struct connect_authz_decision d;
	struct world w;
	char err[128];
	struct connect_authorizer *slow;
	(void)state;

	world_start(&w, 0);
	slow = connect_authz_create(&(struct connect_authz_opts){.consul = w.consul,
								 .target = "users",
								 .deadline_ms = 100,
								 .watch_wait_ms = 200},
				    err, sizeof(err));
	assert_non_null(slow);
	atomic_store(&w.delay_ms, 400);
	pthread_barrier_init(&start, NULL, 2);
	r = (struct racer){.w = &w, .start = &start};
	struct connect_authorizer *keep = w.a;
	w.a = slow;
	assert_int_equal(pthread_create(&t, NULL, racer_main, &r), 0);
	pthread_barrier_wait(&start);
	clock_sleep_ms(50); /* the racer's call is in flight */
	uint64_t t0 = clock_monotonic_ms();
	assert_false(check(&w, "web", &d));
	assert_true(clock_monotonic_ms() - t0 < 350);
	assert_true(d.joined);
	assert_int_equal(d.result, CONNECT_AUTHZ_ERROR_CLOSED);
	assert_non_null(strstr(d.reason, "within 100 ms"));
	pthread_join(t, NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(atomic_load(&w.auth_calls), 1);
	w.a = keep;
	connect_authz_destroy(slow);
	world_stop(&w);
}

/* The watch fails: cached decisions hold for the grace, new ones are not
 * kept; past it the cache goes (a bump), every check asks; when the watch
 * answers again decisions are kept again. */
static void test_watch_failing_grace(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	uint64_t g0;
	(void)state;

	world_start(&w, 0);
	check(&w, "web", &d);
	g0 = d.generation;
	fake_set_answer(w.ft, w.r_list, &(struct fake_answer){.fail = MN_UNAVAILABLE});
	/* the blocked call ends at its wait (200 ms), then fails: from then on
	 * a new source's decision is not kept */
	for (int i = 0; i < 200; i++) {
		char name[32];

		snprintf(name, sizeof(name), "probe-%d", i);
		check(&w, name, &d);
		if (!d.kept)
			break;
		clock_sleep_ms(10);
	}
	assert_false(d.kept);
	assert_int_equal(connect_authz_generation(w.a), g0);
	check(&w, "web", &d); /* cached before: in force */
	assert_true(d.cached);
	assert_true(d.kept);
	unsigned calls = atomic_load(&w.auth_calls);

	advance(&w, 10000);
	assert_int_equal(connect_authz_generation(w.a), g0 + 1);
	check(&w, "web", &d);
	assert_false(d.cached);
	check(&w, "web", &d);
	assert_false(d.cached);
	assert_false(d.kept);
	assert_int_equal(atomic_load(&w.auth_calls), calls + 2);

	/* agent and watch away: fail closed, not kept */
	atomic_store(&w.fail, MN_UNAVAILABLE);
	assert_false(check(&w, "web", &d));
	assert_int_equal(d.result, CONNECT_AUTHZ_ERROR_CLOSED);
	atomic_store(&w.fail, MN_OK);

	/* back */
	fake_publish(w.ft, w.r_list, list_allow.body, list_allow.index);
	for (int i = 0; i < 400; i++) {
		check(&w, "web", &d);
		if (d.kept)
			break;
		clock_sleep_ms(10);
	}
	assert_true(d.kept);
	check(&w, "web", &d);
	assert_true(d.cached);
	world_stop(&w);
}

/* Cached decisions stay in force within the grace. */
static void test_watch_failing_keeps_cache_within_grace(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	(void)state;

	world_start(&w, 0);
	check(&w, "web", &d);
	uint64_t g = d.generation;
	fake_set_answer(w.ft, w.r_list, &(struct fake_answer){.fail = MN_UNAVAILABLE});
	for (int i = 0; i < 200 && fake_calls(w.ft, w.r_list) < 3; i++)
		clock_sleep_ms(10);
	assert_true(fake_calls(w.ft, w.r_list) >= 3);
	advance(&w, 9999);
	check(&w, "web", &d);
	assert_true(d.cached);
	assert_int_equal(connect_authz_generation(w.a), g);
	assert_int_equal(atomic_load(&w.auth_calls), 1);
	world_stop(&w);
}

/* One line per source when its result changes, not per check. */
static void test_logged_once_per_change(void **state)
{
	struct connect_authz_decision d;
	struct world w;
	int fd;
	(void)state;

	world_start(&w, 0);
	fd = logcap_start(MN_LOG_INFO);
	for (int i = 0; i < 50; i++)
		check(&w, "web", &d);
	assert_int_equal(logcap_count(fd, "caller 'web'"), 1);
	assert_int_equal(logcap_count(fd, "allow: Matched intention: ALLOW default/web"), 1);
	assert_int_equal(logcap_count(fd, URI("web")), 1); /* the identity */
	atomic_store(&w.fail, MN_UNAVAILABLE);
	connect_authz_clear(w.a);
	for (int i = 0; i < 50; i++)
		check(&w, "web", &d);
	assert_int_equal(logcap_count(fd, "caller 'web'"), 2);
	assert_int_equal(logcap_count(fd, "error_closed: no decision from the agent"), 1);
	atomic_store(&w.fail, MN_OK);
	check(&w, "web", &d);
	assert_int_equal(logcap_count(fd, "caller 'web'"), 3);
	logcap_stop(fd);
	log_set_level(MN_LOG_ERROR);
	world_stop(&w);
}

/* The match answer blocked on ?index= carries no X-Consul-Index (Consul
 * 1.8.7): the reason the watch follows the list and not the match. */
static void test_match_answer_has_no_index(void **state)
{
	(void)state;
	assert_int_equal(match_blocked.index, 0);
	assert_int_equal(match_allow.index, 0);
	assert_true(list_allow.index > 0);
	assert_true(list_deny.index > list_allow.index);
	assert_string_equal(match_blocked.body, match_deny.body);
}

static void test_create_refuses_bad_options(void **state)
{
	char err[256];
	(void)state;

	assert_null(connect_authz_create(&(struct connect_authz_opts){.target = "us\"ers"}, err,
					 sizeof(err)));
	assert_non_null(strstr(err, "not a service name"));
	assert_null(
		connect_authz_create(&(struct connect_authz_opts){.target = ""}, err, sizeof(err)));
	/* a name no caller's SPIFFE ID could ever target */
	assert_null(connect_authz_create(&(struct connect_authz_opts){.target = "web.v2"}, err,
					 sizeof(err)));
	assert_non_null(strstr(err, "not a service name"));
	assert_null(connect_authz_create(
		&(struct connect_authz_opts){.target = "users", .capacity = AUTHZ_CAPACITY_MAX + 1},
		err, sizeof(err)));
	assert_non_null(strstr(err, "capacity"));
	connect_authz_destroy(NULL);
	assert_string_equal(connect_authz_result_name(CONNECT_AUTHZ_ERROR_OPEN), "error_open");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allow_is_cached),
		cmocka_unit_test(test_deny_is_cached_and_refused),
		cmocka_unit_test(test_intention_flip_bumps_generation),
		cmocka_unit_test(test_same_match_no_bump),
		cmocka_unit_test(test_agent_down_fails_closed_then_open),
		cmocka_unit_test(test_bad_answer_is_no_decision),
		cmocka_unit_test(test_bad_callers_are_denied_without_asking),
		cmocka_unit_test(test_ttl_expires),
		cmocka_unit_test(test_cache_bound),
		cmocka_unit_test(test_metric_label_bound),
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_single_flight_deadline),
		cmocka_unit_test(test_watch_failing_grace),
		cmocka_unit_test(test_watch_failing_keeps_cache_within_grace),
		cmocka_unit_test(test_logged_once_per_change),
		cmocka_unit_test(test_match_answer_has_no_index),
		cmocka_unit_test(test_create_refuses_bad_options),
	};

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, load_fixtures, free_fixtures);
}
