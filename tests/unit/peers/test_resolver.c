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
#include "peers/resolver.h"
#include "fake_transport.h"
#include "peers_fixture.h"

/* The resolver over the fake transport, replaying health answers captured
 * from a real consul 1.8.7 -dev agent (tests/fixtures/consul/peers/). The
 * resolver runs its real watch threads and sweeper thread; the hand clock
 * drives its time stamps and the watches' spacing, while its waits (the
 * first answer, the sweeper's second) count real time: every wait here is
 * a bounded poll, and no assertion is about how long something took. */

#define USERS_URL "/v1/health/service/users"

/* What prepare makes of a snapshot, checked when it comes back. */
#define TOKEN_MAGIC 0x70726570u

struct token {
	unsigned magic;
	size_t n;
	uint64_t index;
};

/* The resolver's callbacks. allowed() parks every thread but the test's
 * (that is, the sweeper) while 'gate' is closed, so that the test's own
 * resolver_sweep() is the one that acts. */
struct hooks {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t test_thread;
	const char *denied[4];
	bool gate;
	unsigned parked;
	atomic_uint prepares, releases, bad_prepares;
	atomic_uint sweeper_calls;
	atomic_uint threshold; /* peers.users.panic_threshold */
};

struct rt {
	struct hand_clock clk;
	struct fake_transport *ft;
	struct consul *consul;
	struct resolver *r;
	struct hooks h;
	struct fixture_answer users, without3, back, blue, stock, unchanged;
};

/* ---- hooks ---------------------------------------------------------------- */

static bool hooks_allowed(void *ctx, const char *service)
{
	struct hooks *h = ctx;
	bool ok = true;

	pthread_mutex_lock(&h->lock);
	if (!pthread_equal(pthread_self(), h->test_thread)) {
		atomic_fetch_add(&h->sweeper_calls, 1);
		while (h->gate) {
			h->parked++;
			pthread_cond_broadcast(&h->cond);
			pthread_cond_wait(&h->cond, &h->lock);
			h->parked--;
		}
	}
	for (size_t i = 0; i < sizeof(h->denied) / sizeof(h->denied[0]); i++)
		if (h->denied[i] && strcmp(h->denied[i], service) == 0)
			ok = false;
	pthread_mutex_unlock(&h->lock);
	return ok;
}

static unsigned hooks_panic_threshold(void *ctx, const char *service)
{
	struct hooks *h = ctx;

	(void)service;
	return atomic_load(&h->threshold);
}

static void *hooks_prepare(void *ctx, const struct peer_snapshot *s)
{
	struct hooks *h = ctx;
	struct token *t = malloc(sizeof(*t));

	/* no cmocka assertion off the test's thread: counted, checked later */
	if (t == NULL || s->n == 0 || !s->known || s->inst == NULL || s->prepared != NULL)
		atomic_fetch_add(&h->bad_prepares, 1);
	if (t == NULL)
		return NULL;
	*t = (struct token){TOKEN_MAGIC, s->n, s->index};
	atomic_fetch_add(&h->prepares, 1);
	return t;
}

static void hooks_release(void *ctx, void *prepared)
{
	struct hooks *h = ctx;
	struct token *t = prepared;

	if (t->magic != TOKEN_MAGIC)
		atomic_fetch_add(&h->bad_prepares, 1);
	t->magic = 0;
	free(t);
	atomic_fetch_add(&h->releases, 1);
}

static void gate_close(struct hooks *h)
{
	pthread_mutex_lock(&h->lock);
	h->gate = true;
	pthread_mutex_unlock(&h->lock);
}

/* Waits (real time, bounded: the sweeper runs every second) until the
 * sweeper is parked in allowed(). */
static bool gate_wait_parked(struct hooks *h)
{
	struct timespec ts = clock_deadline_ms(POLL_MS);
	bool ok;

	pthread_mutex_lock(&h->lock);
	while (h->parked == 0)
		if (pthread_cond_timedwait(&h->cond, &h->lock, &ts) == ETIMEDOUT)
			break;
	ok = h->parked > 0;
	pthread_mutex_unlock(&h->lock);
	return ok;
}

static void gate_open(struct hooks *h)
{
	pthread_mutex_lock(&h->lock);
	h->gate = false;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

static void deny(struct hooks *h, const char *service)
{
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < sizeof(h->denied) / sizeof(h->denied[0]); i++) {
		if (h->denied[i] == NULL) {
			h->denied[i] = service;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
}

/* ---- fixture --------------------------------------------------------------- */

static int setup(void **state)
{
	struct rt *t = calloc(1, sizeof(*t));
	char err[256];

	assert_non_null(t);
	hand_clock_init(&t->clk);
	t->ft = fake_create();
	t->ft->elapse = hand_clock_elapse;
	t->ft->elapse_ctx = &t->clk;
	t->consul = consul_create(&(struct consul_opts){.address = "http://127.0.0.1:8500",
							.transport = &t->ft->iface},
				  err, sizeof(err));
	assert_non_null(t->consul);
	pthread_mutex_init(&t->h.lock, NULL);
	assert_int_equal(clock_cond_init(&t->h.cond), 0);
	t->h.test_thread = pthread_self();
	atomic_init(&t->h.threshold, 50);
	peers_answer_load(&t->users, "users_passing.http");
	peers_answer_load(&t->without3, "users_passing_without_3.http");
	peers_answer_load(&t->back, "users_passing_3_back.http");
	peers_answer_load(&t->blue, "users_tag_blue.http");
	peers_answer_load(&t->stock, "stock_passing.http");
	peers_answer_load(&t->unchanged, "users_blocking_unchanged.http");
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct rt *t = *state;

	gate_open(&t->h);
	resolver_destroy(t->r);
	logcap_stop(-1); /* a test that failed may have left it on */
	/* every snapshot prepared was released, and every watch thread gave
	 * its handle back */
	assert_int_equal(atomic_load(&t->h.prepares), atomic_load(&t->h.releases));
	assert_int_equal(atomic_load(&t->h.bad_prepares), 0);
	assert_int_equal(fake_handles_live(t->ft), 0);
	assert_int_equal(fake_unexpected(t->ft), 0);
	consul_destroy(t->consul);
	fake_destroy(t->ft);
	fixture_answer_free(&t->users);
	fixture_answer_free(&t->without3);
	fixture_answer_free(&t->back);
	fixture_answer_free(&t->blue);
	fixture_answer_free(&t->stock);
	fixture_answer_free(&t->unchanged);
	pthread_cond_destroy(&t->h.cond);
	pthread_mutex_destroy(&t->h.lock);
	free(t);
	return 0;
}

/* The resolver, with the fixture's consul, clock and hooks. */
static struct resolver *rt_resolver(struct rt *t, struct resolver_opts o)
{
	o.consul = t->consul;
	o.clock = &t->clk.clock;
	o.allowed = hooks_allowed;
	o.panic_threshold = hooks_panic_threshold;
	o.prepare = hooks_prepare;
	o.release = hooks_release;
	o.ctx = &t->h;
	t->r = resolver_create(&o);
	assert_non_null(t->r);
	return t->r;
}

/* A rule for the users watch, answering the captured answer as Consul's
 * blocking query does. */
static int users_rule(struct rt *t, const struct fixture_answer *a)
{
	return fake_rule_add(t->ft, &(struct fake_rule){
					    .method = "GET",
					    .url_has = USERS_URL,
					    .ans = {.body = a->body, .index = a->index},
					    .blocking = true,
				    });
}

static const struct peer_snapshot *get_ok(struct rt *t, const char *service, const char *tag)
{
	const struct peer_snapshot *s;
	char err[256] = "";
	enum mn_err e = resolver_get(t->r, service, tag, &s, err, sizeof(err));

	if (e != MN_OK)
		fail_msg("resolver_get('%s'): %s: %s", service, mn_strerror(e), err);
	assert_non_null(s);
	return s;
}

/* Polls until the snapshot of 'service' came with 'index'. A watch makes
 * its next call once the hand clock passed its interval: 'advance' moves
 * it first (not needed when the call is out already). */
static const struct peer_snapshot *get_index_after(struct rt *t, const char *service,
						   const char *tag, uint64_t index, bool advance)
{
	uint64_t end = clock_monotonic_ms() + POLL_MS;

	if (advance)
		hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	for (;;) {
		const struct peer_snapshot *s = get_ok(t, service, tag);

		if (s->index == index)
			return s;
		resolver_put(s);
		if (clock_monotonic_ms() >= end)
			fail_msg("no snapshot of '%s' at index %llu", service,
				 (unsigned long long)index);
		clock_sleep_ms(2);
	}
}

/* Polls until the fake saw a request whose URL has 'url_has'. */
static bool poll_seen(struct rt *t, const char *url_has)
{
	uint64_t end = clock_monotonic_ms() + POLL_MS;

	while (fake_seen(t->ft, url_has) == 0) {
		if (clock_monotonic_ms() >= end)
			return false;
		clock_sleep_ms(2);
	}
	return true;
}

static const struct peer_snapshot *get_index(struct rt *t, const char *service, const char *tag,
					     uint64_t index)
{
	return get_index_after(t, service, tag, index, true);
}

static const struct token *token_of(const struct peer_snapshot *s)
{
	const struct token *k = s->prepared;

	assert_non_null(k);
	assert_int_equal(k->magic, TOKEN_MAGIC);
	assert_int_equal(k->n, s->n);
	assert_int_equal(k->index, s->index);
	return k;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_first_answer_published(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct fake_request req;
	int rule = users_rule(t, &t->users);

	rt_resolver(t, (struct resolver_opts){0});
	s = get_ok(t, "users", NULL);
	assert_true(s->known);
	assert_string_equal(s->service, "users");
	assert_string_equal(s->tag, "");
	assert_int_equal(s->index, 16);
	assert_int_equal(s->changed_ms, HAND_CLOCK_START);
	assert_int_equal(s->n, 3);
	assert_string_equal(s->inst[0].id, "users-1");
	assert_int_equal(s->inst[0].port, 9101);
	assert_string_equal(s->inst[1].id, "users-2");
	assert_string_equal(s->inst[2].id, "users-3");
	/* users-3 was registered without an address: the node's is used */
	assert_string_equal(s->inst[2].address, "127.0.0.1");
	token_of(s);
	assert_int_equal(atomic_load(&t->h.prepares), 1);
	assert_int_equal(resolver_followed(t->r), 1);

	/* one plain read, with the agent's headers, then nothing until the
	 * watch's interval passed */
	assert_int_equal(fake_calls(t->ft, rule), 1);
	assert_true(fake_last(t->ft, USERS_URL, &req));
	assert_string_equal(req.url, "http://127.0.0.1:8500" USERS_URL);
	assert_string_equal(req.method, "GET");
	assert_non_null(strstr(req.headers, "Content-Type: application/json"));

	/* a second caller gets the same snapshot without asking Consul */
	{
		const struct peer_snapshot *again = get_ok(t, "users", "");

		assert_ptr_equal(again, s);
		resolver_put(again);
	}
	assert_int_equal(fake_calls(t->ft, rule), 1);
	resolver_put(s);
}

static void test_first_wait_respected_when_consul_is_silent(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	/* holds the first read until index 16 is published */
	int rule = fake_rule_add(t->ft, &(struct fake_rule){
						.url_has = USERS_URL,
						.blocking = true,
						.hold_until = 16,
					});

	rt_resolver(t, (struct resolver_opts){.first_wait_ms = 50});
	s = get_ok(t, "users", NULL);
	/* first_wait_ms passed without an answer: an empty, unknown view */
	assert_false(s->known);
	assert_int_equal(s->n, 0);
	assert_null(s->prepared);
	assert_int_equal(s->index, 0);
	resolver_put(s);
	assert_true(fake_wait_held(t->ft, rule, 1, POLL_MS));
	assert_int_equal(atomic_load(&t->h.prepares), 0);

	/* the agent answers late: the held read gets it */
	fake_publish(t->ft, rule, t->users.body, 16);
	s = get_index(t, "users", NULL, 16);
	assert_true(s->known);
	assert_int_equal(s->n, 3);
	token_of(s);
	resolver_put(s);
}

struct publisher {
	struct fake_transport *ft;
	int rule;
	const char *body;
	uint64_t index;
	bool held;
};

static void *publish_when_held(void *arg)
{
	struct publisher *p = arg;

	p->held = fake_wait_held(p->ft, p->rule, 1, POLL_MS);
	fake_publish(p->ft, p->rule, p->body, p->index);
	return NULL;
}

static void test_answer_during_first_wait_is_returned(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct publisher p = {t->ft, 0, t->users.body, 16, false};
	pthread_t th;

	p.rule = fake_rule_add(t->ft, &(struct fake_rule){
					      .url_has = USERS_URL,
					      .blocking = true,
					      .hold_until = 16,
				      });
	/* a long first wait: the answer comes while the caller waits */
	rt_resolver(t, (struct resolver_opts){.first_wait_ms = 10000});
	assert_int_equal(pthread_create(&th, NULL, publish_when_held, &p), 0);
	s = get_ok(t, "users", NULL);
	pthread_join(th, NULL);
	assert_true(p.held);
	assert_true(s->known);
	assert_int_equal(s->n, 3);
	assert_int_equal(s->index, 16);
	token_of(s);
	resolver_put(s);
}

static void test_new_index_publishes_new_snapshot_old_stays_valid(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s1, *s2;
	int rule = users_rule(t, &t->users);

	rt_resolver(t, (struct resolver_opts){0});
	s1 = get_ok(t, "users", NULL);
	assert_int_equal(s1->index, 16);

	/* users-3 deregistered */
	fake_publish(t->ft, rule, t->without3.body, t->without3.index);
	s2 = get_index(t, "users", NULL, 18);
	assert_ptr_not_equal(s1, s2);
	assert_int_equal(s2->n, 2);
	assert_string_equal(s2->inst[1].id, "users-2");
	token_of(s2);
	/* the blocking query went out from the first answer's index, with the
	 * default wait */
	assert_true(fake_seen(t->ft, USERS_URL "?index=16&wait=300000ms") >= 1);

	/* the old snapshot is intact while held, and released once let go */
	assert_int_equal(s1->n, 3);
	assert_int_equal(s1->index, 16);
	assert_string_equal(s1->inst[2].id, "users-3");
	token_of(s1);
	assert_int_equal(atomic_load(&t->h.prepares), 2);
	assert_int_equal(atomic_load(&t->h.releases), 0);
	resolver_put(s1);
	assert_int_equal(atomic_load(&t->h.releases), 1);
	/* the current one stays with the resolver */
	resolver_put(s2);
	assert_int_equal(atomic_load(&t->h.releases), 1);
}

static bool seen_two_unchanged(void *ctx)
{
	struct rt *t = ctx;

	/* each call waits for the watch's interval on the hand clock */
	hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	return fake_seen(t->ft, "?index=18&wait=50ms") >= 2;
}

static void test_unchanged_answer_publishes_nothing(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s1, *s2;
	int rule = users_rule(t, &t->without3);

	rt_resolver(t, (struct resolver_opts){.wait_ms = 50});
	s1 = get_ok(t, "users", NULL);
	assert_int_equal(s1->index, 18);
	/* what the agent answered when a blocking query's wait passed with
	 * nothing new: the same index and body */
	fake_publish(t->ft, rule, t->unchanged.body, t->unchanged.index);
	/* the second blocking call starts only after the first one's answer
	 * was handled */
	assert_true(poll_until(seen_two_unchanged, t, POLL_MS));
	s2 = get_ok(t, "users", NULL);
	assert_ptr_equal(s1, s2);
	assert_int_equal(atomic_load(&t->h.prepares), 1);
	resolver_put(s2);
	resolver_put(s1);
}

static void test_not_allowed_is_not_found_and_starts_nothing(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s = (const void *)1;
	char err[256] = "";

	users_rule(t, &t->users);
	deny(&t->h, "billing");
	rt_resolver(t, (struct resolver_opts){0});
	assert_int_equal(resolver_get(t->r, "billing", NULL, &s, err, sizeof(err)), MN_NOT_FOUND);
	assert_null(s);
	assert_non_null(strstr(err, "'billing'"));
	assert_int_equal(resolver_followed(t->r), 0);
	assert_int_equal(fake_total(t->ft), 0);
	assert_int_equal(fake_handles_live(t->ft), 0);
	assert_int_equal(resolver_stale_ms(t->r, "billing"), 0);
}

static void test_cap_refuses_the_next_service(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *a, *b, *c = (const void *)1;
	char err[256] = "";

	users_rule(t, &t->users);
	fake_rule_add(t->ft, &(struct fake_rule){
				     .url_has = "/v1/health/service/stock",
				     .ans = {.body = t->stock.body, .index = t->stock.index},
				     .blocking = true,
			     });
	rt_resolver(t, (struct resolver_opts){.max_services = 2});
	a = get_ok(t, "users", NULL);
	b = get_ok(t, "stock", NULL);
	assert_int_equal(b->n, 1);
	assert_int_equal(resolver_get(t->r, "orders", NULL, &c, err, sizeof(err)), MN_UNAVAILABLE);
	assert_null(c);
	assert_non_null(strstr(err, "watch_max_services"));
	/* nothing started for it */
	assert_int_equal(fake_seen(t->ft, "/service/orders"), 0);
	assert_int_equal(resolver_followed(t->r), 2);
	assert_int_equal(fake_handles_live(t->ft), 2);
	/* those followed are still served */
	resolver_put(a);
	a = get_ok(t, "users", NULL);
	assert_int_equal(a->n, 3);
	resolver_put(a);
	resolver_put(b);
}

static void test_idle_service_stops_and_is_followed_again(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	int rule = users_rule(t, &t->users);

	rt_resolver(t, (struct resolver_opts){.idle_ms = 60000});
	s = get_ok(t, "users", NULL);
	resolver_put(s);
	assert_int_equal(fake_handles_live(t->ft), 1);

	gate_close(&t->h);
	assert_true(gate_wait_parked(&t->h));
	/* a call only marks the service used (no clock read on the call
	 * path); the sweep that sees the mark dates the use */
	assert_int_equal(resolver_sweep(t->r), 0);
	hand_clock_advance(&t->clk, 59999);
	assert_int_equal(resolver_sweep(t->r), 0);
	assert_int_equal(resolver_followed(t->r), 1);
	hand_clock_advance(&t->clk, 1);
	assert_int_equal(resolver_sweep(t->r), 1);
	assert_int_equal(resolver_followed(t->r), 0);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 0);
	/* the watch thread ended and gave its handle back */
	assert_int_equal(fake_handles_live(t->ft), 0);
	/* its snapshot went with it */
	assert_int_equal(atomic_load(&t->h.releases), 1);
	gate_open(&t->h);

	/* used again: followed again, from a fresh read */
	s = get_ok(t, "users", NULL);
	assert_true(s->known);
	assert_int_equal(s->n, 3);
	assert_int_equal(resolver_followed(t->r), 1);
	/* two plain reads (the first watch may have gone on to a blocking
	 * query before it stopped) */
	assert_int_equal(fake_calls(t->ft, rule) - fake_seen(t->ft, "index="), 2);
	resolver_put(s);
}

static void test_tag_change_replaces_the_watch(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *any, *blue;
	int blue_rule, users;

	/* first match wins: the tagged query before the untagged one */
	blue_rule =
		fake_rule_add(t->ft, &(struct fake_rule){
					     .url_has = USERS_URL "?tag=blue",
					     .ans = {.body = t->blue.body, .index = t->blue.index},
					     .blocking = true,
				     });
	users = users_rule(t, &t->users);
	rt_resolver(t, (struct resolver_opts){0});
	any = get_ok(t, "users", "");
	assert_int_equal(any->n, 3);
	/* let the untagged watch go into its blocking query */
	hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	assert_true(fake_wait_held(t->ft, users, 1, POLL_MS));

	blue = get_ok(t, "users", "blue");
	assert_true(blue->known);
	assert_string_equal(blue->tag, "blue");
	assert_int_equal(blue->n, 1);
	assert_string_equal(blue->inst[0].id, "users-1");
	assert_int_equal(fake_calls(t->ft, blue_rule), 1);
	assert_true(fake_seen(t->ft, "?tag=blue") >= 1);
	/* one watch per service: the untagged one stops (on the sweeper), its
	 * blocking query cancelled */
	assert_int_equal(resolver_followed(t->r), 1);
	assert_true(fake_wait_handles(t->ft, 1, POLL_MS));
	assert_int_equal(fake_cancelled(t->ft), 1);
	/* the snapshot taken before stays valid */
	assert_int_equal(any->n, 3);
	assert_string_equal(any->inst[2].id, "users-3");
	resolver_put(any);
	resolver_put(blue);
}

static void test_tag_is_escaped_in_the_query(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;

	users_rule(t, &t->users);
	rt_resolver(t, (struct resolver_opts){0});
	s = get_ok(t, "users", "a&b c/d");
	assert_string_equal(s->tag, "a&b c/d");
	resolver_put(s);
	assert_int_equal(fake_seen(t->ft, USERS_URL "?tag=a%26b%20c%2Fd"), 1);
}

static void test_service_no_longer_allowed_stops_at_next_sweep(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	char err[256];

	users_rule(t, &t->users);
	rt_resolver(t, (struct resolver_opts){0});
	s = get_ok(t, "users", NULL);
	resolver_put(s);

	gate_close(&t->h);
	assert_true(gate_wait_parked(&t->h));
	deny(&t->h, "users");
	assert_int_equal(resolver_sweep(t->r), 1);
	assert_int_equal(resolver_followed(t->r), 0);
	assert_int_equal(fake_handles_live(t->ft), 0);
	gate_open(&t->h);
	assert_int_equal(resolver_get(t->r, "users", NULL, &s, err, sizeof(err)), MN_NOT_FOUND);
}

/* A health answer over max_response (consul.watch_max_bytes) is not read:
 * nothing is published from it, the view's staleness keeps growing, and
 * the watch blocks from its index instead of reading it again; the next
 * answer that fits is published. */
static void test_answer_over_the_cap_keeps_the_view_and_its_staleness(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	int rule = fake_rule_add(t->ft, &(struct fake_rule){
						.method = "GET",
						.url_has = USERS_URL,
						.ans = {.body = "[]", .index = 16},
						.blocking = true,
					});

	assert_true(strlen(t->users.body) > 256);
	rt_resolver(t, (struct resolver_opts){.max_response = 256});
	s = get_index_after(t, "users", NULL, 16, false);
	resolver_put(s);
	hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	assert_true(fake_wait_held(t->ft, rule, 1, POLL_MS));
	hand_clock_advance(&t->clk, 1000);
	/* the agent's answer grows past the cap */
	fake_publish(t->ft, rule, t->users.body, 17);
	/* the next call, after the watch's interval, blocks from the
	 * oversized answer's index: it is not read again in a loop */
	hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	assert_true(poll_seen(t, "?index=17&"));
	assert_true(fake_wait_held(t->ft, rule, 1, POLL_MS));
	hand_clock_advance(&t->clk, 5000);
	/* the last view stays, and its staleness counts from the last answer
	 * read (index 16), not from the one refused */
	s = get_ok(t, "users", NULL);
	assert_int_equal(s->index, 16);
	resolver_put(s);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 2 * WATCH_INTERVAL_MS + 6000);
	assert_int_equal(atomic_load(&t->h.prepares), 0); /* "[]" has no instance */

	fake_publish(t->ft, rule, "[]", 18);
	s = get_index_after(t, "users", NULL, 18, false);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 0);
	resolver_put(s);
}

static void test_stale_grows_while_consul_is_silent(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	/* an agent that takes the first read and never answers */
	int rule = fake_rule_add(t->ft,
				 &(struct fake_rule){
					 .url_has = USERS_URL,
					 .ans = {.body = t->users.body, .index = t->users.index},
					 .blocking = true,
					 .hang = true,
				 });

	rt_resolver(t, (struct resolver_opts){.first_wait_ms = 20});
	assert_int_equal(resolver_stale_ms(t->r, "users"), 0); /* not followed */
	s = get_ok(t, "users", NULL);
	assert_false(s->known);
	resolver_put(s);
	assert_true(fake_wait_held(t->ft, rule, 1, POLL_MS));
	assert_int_equal(resolver_stale_ms(t->r, "users"), 0);
	hand_clock_advance(&t->clk, 5000);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 5000);
	hand_clock_advance(&t->clk, 25000);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 30000);

	/* it answers: the view is current again */
	fake_set_hang(t->ft, rule, false);
	s = get_index_after(t, "users", NULL, 16, false);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 0);
	resolver_put(s);

	/* silent again inside the blocking query that follows */
	hand_clock_advance(&t->clk, WATCH_INTERVAL_MS);
	assert_true(fake_wait_held(t->ft, rule, 1, POLL_MS));
	hand_clock_advance(&t->clk, 60000);
	assert_int_equal(resolver_stale_ms(t->r, "users"), WATCH_INTERVAL_MS + 60000);
	fake_publish(t->ft, rule, t->without3.body, t->without3.index);
	s = get_index_after(t, "users", NULL, 18, false);
	assert_int_equal(resolver_stale_ms(t->r, "users"), 0);
	resolver_put(s);
}

/* publish() releases the snapshot it replaced after the new one is seen
 * (the swap under the lock, then a log line, then the release): wait for
 * the count rather than read it at once. */
struct releases_wait {
	struct rt *t;
	unsigned want;
};

static bool releases_reached(void *ctx)
{
	struct releases_wait *w = ctx;

	return atomic_load(&w->t->h.releases) >= w->want;
}

static void test_prepare_and_release_once_per_snapshot(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct fixture_answer none;
	int rule = users_rule(t, &t->users);

	/* Consul's answer for a service without instances (captured for an
	 * unknown service: the same empty array) */
	fixture_answer_load(&none, "consul/health/health_unknown_service.http");
	rt_resolver(t, (struct resolver_opts){0});
	s = get_ok(t, "users", NULL);
	assert_int_equal(atomic_load(&t->h.prepares), 1);
	resolver_put(s);

	/* no instance: nothing to prepare; the previous one is released */
	fake_publish(t->ft, rule, none.body, 17);
	s = get_index(t, "users", NULL, 17);
	assert_int_equal(s->n, 0);
	assert_null(s->prepared);
	resolver_put(s);
	assert_true(poll_until(releases_reached, &(struct releases_wait){t, 1}, POLL_MS));
	assert_int_equal(atomic_load(&t->h.prepares), 1);
	assert_int_equal(atomic_load(&t->h.releases), 1);

	fake_publish(t->ft, rule, t->without3.body, t->without3.index);
	s = get_index(t, "users", NULL, 18);
	token_of(s);
	resolver_put(s);
	fake_publish(t->ft, rule, t->back.body, t->back.index);
	s = get_index(t, "users", NULL, 19);
	assert_int_equal(s->n, 3);
	token_of(s);
	resolver_put(s);
	assert_true(poll_until(releases_reached, &(struct releases_wait){t, 2}, POLL_MS));
	assert_int_equal(atomic_load(&t->h.prepares), 3);
	assert_int_equal(atomic_load(&t->h.releases), 2);
	/* the current one is released by resolver_destroy (teardown checks) */
	resolver_destroy(t->r);
	t->r = NULL;
	assert_int_equal(atomic_load(&t->h.releases), 3);
	fixture_answer_free(&none);
}

static void test_invalid_names(void **state)
{
	struct rt *t = *state;
	/* empty, a path, a query, a fragment, an escape, a space, not ASCII,
	 * a header smuggled in */
	static const char *const bad[] = {"",	       "a/b",	      "../etc",
					  "users?x=1", "users#x",     "us%65rs",
					  "a b",       "caf\xc3\xa9", "users\r\nX-Evil: 1"};
	char long_name[130], err[256];
	const struct peer_snapshot *s;

	rt_resolver(t, (struct resolver_opts){0});
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = (const void *)1;
		assert_int_equal(resolver_get(t->r, bad[i], NULL, &s, err, sizeof(err)),
				 MN_INVALID);
		assert_null(s);
		assert_false(resolver_name_valid(bad[i]));
	}
	assert_int_equal(resolver_get(t->r, NULL, NULL, &s, err, sizeof(err)), MN_INVALID);
	memset(long_name, 'a', 129);
	long_name[129] = '\0';
	assert_int_equal(resolver_get(t->r, long_name, NULL, &s, err, sizeof(err)), MN_INVALID);
	long_name[128] = '\0';
	assert_true(resolver_name_valid(long_name));
	assert_true(resolver_name_valid("users-v2.eu_west"));
	assert_int_equal(fake_total(t->ft), 0);
	assert_int_equal(resolver_followed(t->r), 0);
}

struct seen_services {
	char names[4][16];
	size_t n;
	uint64_t stale[4];
};

static void collect(void *ctx, const struct peer_snapshot *s, uint64_t stale_ms)
{
	struct seen_services *seen = ctx;

	if (seen->n < 4) {
		snprintf(seen->names[seen->n], sizeof(seen->names[0]), "%s", s->service);
		seen->stale[seen->n++] = stale_ms;
	}
}

static void test_foreach_sees_every_followed_service(void **state)
{
	struct rt *t = *state;
	struct seen_services seen = {0};

	users_rule(t, &t->users);
	fake_rule_add(t->ft, &(struct fake_rule){
				     .url_has = "/v1/health/service/stock",
				     .ans = {.body = t->stock.body, .index = t->stock.index},
				     .blocking = true,
			     });
	rt_resolver(t, (struct resolver_opts){0});
	resolver_put(get_ok(t, "users", NULL));
	resolver_put(get_ok(t, "stock", NULL));
	hand_clock_advance(&t->clk, 700);
	resolver_foreach(t->r, collect, &seen);
	assert_int_equal(seen.n, 2);
	assert_true((strcmp(seen.names[0], "users") == 0 && strcmp(seen.names[1], "stock") == 0) ||
		    (strcmp(seen.names[0], "stock") == 0 && strcmp(seen.names[1], "users") == 0));
	/* no answer since the first: 700 ms behind, unless a blocking call
	 * already came back (it cannot: nothing was published) */
	assert_int_equal(seen.stale[0], 700);
	assert_int_equal(seen.stale[1], 700);
}

static void test_ten_thousand_instances(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	char *big = health_body_range("users_passing.http", "users", 0, 10000, 20000);

	fake_rule_add(t->ft, &(struct fake_rule){
				     .url_has = USERS_URL,
				     .ans = {.body = big, .index = 30},
				     .blocking = true,
			     });
	rt_resolver(t, (struct resolver_opts){.first_wait_ms = 30000});
	s = get_ok(t, "users", NULL);
	assert_true(s->known);
	assert_int_equal(s->n, 10000);
	assert_string_equal(s->inst[0].id, "users-0");
	assert_string_equal(s->inst[9999].id, "users-9999");
	assert_int_equal(s->inst[9999].port, 29999);
	token_of(s);
	assert_int_equal(atomic_load(&t->h.prepares), 1);
	resolver_put(s);
	resolver_destroy(t->r);
	t->r = NULL;
	free(big);
}

/* ---- the panic threshold ------------------------------------------------------- */

static void test_panic_rule(void **state)
{
	(void)state;
	/* Envoy's 50 %: one of two down is not panic, both are */
	assert_false(resolver_panic(1, 2, 50));
	assert_true(resolver_panic(0, 2, 50));
	/* one instance: 0 of 1 is the only shrink there is */
	assert_false(resolver_panic(1, 1, 50));
	assert_true(resolver_panic(0, 1, 50));
	assert_false(resolver_panic(2, 3, 50));
	assert_true(resolver_panic(1, 3, 50));
	assert_false(resolver_panic(5, 10, 50));
	assert_true(resolver_panic(4, 10, 50));
	/* none passing of some is panic with any threshold but 0 */
	assert_true(resolver_panic(0, 10000, 1));
	assert_false(resolver_panic(0, 3, 0));
	assert_false(resolver_panic(0, 0, 50));
	assert_false(resolver_panic(0, 0, 100));
	/* 100: any instance not passing; above 100 counts as 100 */
	assert_true(resolver_panic(2, 3, 100));
	assert_false(resolver_panic(3, 3, 100));
	assert_false(resolver_panic(3, 3, 1000));
	assert_true(resolver_panic(1, 2, 60));
	/* no overflow with the largest answers */
	assert_true(resolver_panic(4999, 10000, 50));
	assert_false(resolver_panic(5000, 10000, 50));
}

struct story {
	struct fixture_answer three, one_critical, two_critical, all_critical, two_back, node_check,
		maint_two, maint_rest_critical, node_maint, scaled_down;
};

static void story_load(struct story *st)
{
	peers_answer_load(&st->three, "panic_three_passing.http");
	peers_answer_load(&st->one_critical, "panic_one_critical.http");
	peers_answer_load(&st->two_critical, "panic_two_critical.http");
	peers_answer_load(&st->all_critical, "panic_all_critical.http");
	peers_answer_load(&st->two_back, "panic_two_back.http");
	peers_answer_load(&st->node_check, "panic_node_check_critical.http");
	peers_answer_load(&st->maint_two, "panic_two_in_maintenance.http");
	peers_answer_load(&st->maint_rest_critical, "panic_rest_critical_in_maintenance.http");
	peers_answer_load(&st->node_maint, "panic_node_maintenance.http");
	peers_answer_load(&st->scaled_down, "panic_scaled_down.http");
}

/* Stops the watches (the fake borrows the answers), then frees them. */
static void story_free(struct rt *t, struct story *st)
{
	resolver_destroy(t->r);
	t->r = NULL;
	fixture_answer_free(&st->three);
	fixture_answer_free(&st->one_critical);
	fixture_answer_free(&st->two_critical);
	fixture_answer_free(&st->all_critical);
	fixture_answer_free(&st->two_back);
	fixture_answer_free(&st->node_check);
	fixture_answer_free(&st->maint_two);
	fixture_answer_free(&st->maint_rest_critical);
	fixture_answer_free(&st->node_maint);
	fixture_answer_free(&st->scaled_down);
}

/* The snapshot once Consul answered 'a' (published on 'rule'). */
static const struct peer_snapshot *answer(struct rt *t, int rule, const struct fixture_answer *a)
{
	fake_publish(t->ft, rule, a->body, a->index);
	return get_index(t, "users", NULL, a->index);
}

static void assert_counts(const struct peer_snapshot *s, size_t n, size_t passing,
			  size_t registered, bool panic)
{
	assert_true(s->known);
	assert_int_equal(s->n, n);
	assert_int_equal(s->passing, passing);
	assert_int_equal(s->registered, registered);
	assert_int_equal(s->panic, panic);
	if (n)
		token_of(s); /* prepared once, with the instances calls use */
	else
		assert_null(s->prepared);
}

#define ENTERED "service 'users' in panic: "
#define LEFT	"service 'users' out of panic: "

/* Users-2 and users-3 fail one after the other, then users-1 too, then
 * two come back: panic from 1 of 3 passing (below 50 %) to 2 of 3, with one
 * line when it starts and one when it ends, whatever came between. */
static void test_panic_entered_and_left_once(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct story st;
	int rule, log;

	story_load(&st);
	rule = users_rule(t, &st.three);
	rt_resolver(t, (struct resolver_opts){0});
	log = logcap_start(MN_LOG_INFO);
	s = get_ok(t, "users", NULL);
	assert_counts(s, 3, 3, 3, false);
	resolver_put(s);

	s = answer(t, rule, &st.one_critical);
	assert_counts(s, 2, 2, 3, false);
	assert_string_equal(s->inst[0].id, "users-1");
	assert_string_equal(s->inst[1].id, "users-2");
	resolver_put(s);
	assert_int_equal(logcap_count(log, ENTERED), 0);

	s = answer(t, rule, &st.two_critical);
	assert_counts(s, 3, 1, 3, true);
	/* every registered instance, the passing one first */
	assert_string_equal(s->inst[0].id, "users-1");
	assert_true(s->inst[0].passing);
	assert_string_equal(s->inst[1].id, "users-2");
	assert_false(s->inst[1].passing);
	assert_string_equal(s->inst[2].id, "users-3");
	assert_false(s->inst[2].passing);
	resolver_put(s);
	assert_int_equal(logcap_wait(log,
					  ENTERED "1 of 3 instances passing, below "
						  "peers.users.panic_threshold (50%); "
						  "calling all 3 until enough pass again",
					  1, POLL_MS),
			 1);

	s = answer(t, rule, &st.all_critical);
	assert_counts(s, 3, 0, 3, true);
	resolver_put(s);

	s = answer(t, rule, &st.two_back);
	assert_counts(s, 2, 2, 3, false);
	assert_string_equal(s->inst[0].id, "users-1");
	assert_string_equal(s->inst[1].id, "users-2");
	resolver_put(s);
	assert_int_equal(logcap_wait(log,
					  LEFT "2 of 3 instances passing "
					       "(peers.users.panic_threshold 50%); "
					       "calling the passing ones again",
					  1, POLL_MS),
			 1);
	/* the watch thread logs in order: every line before that one is in */
	assert_int_equal(logcap_count(log, ENTERED), 1);
	assert_int_equal(logcap_count(log, LEFT), 1);
	/* each answer still has its line */
	assert_int_equal(logcap_wait(log,
					  "service 'users': 0 of 3 instances passing, "
					  "in panic at index 19",
					  1, POLL_MS),
			 1);
	logcap_stop(log);
	story_free(t, &st);
}

/* A host Consul declares failed (serfHealth, a node check, critical) fails
 * every instance on it: none passing of three is panic from the first
 * answer on. */
static void test_node_check_critical_is_panic(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct story st;
	int log;

	story_load(&st);
	users_rule(t, &st.node_check);
	rt_resolver(t, (struct resolver_opts){0});
	log = logcap_start(MN_LOG_INFO);
	s = get_ok(t, "users", NULL);
	assert_counts(s, 3, 0, 3, true);
	resolver_put(s);
	assert_int_equal(logcap_wait(log, ENTERED "0 of 3", 1, POLL_MS), 1);
	logcap_stop(log);
	story_free(t, &st);
}

/* Threshold 0: the passing set, whatever it is, as before there was a
 * threshold; none passing is no instance. */
static void test_threshold_zero_is_never_panic(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct story st;
	int rule, log;

	story_load(&st);
	atomic_store(&t->h.threshold, 0);
	rule = users_rule(t, &st.two_critical);
	rt_resolver(t, (struct resolver_opts){0});
	log = logcap_start(MN_LOG_INFO);
	s = get_ok(t, "users", NULL);
	assert_counts(s, 1, 1, 3, false);
	resolver_put(s);
	s = answer(t, rule, &st.all_critical);
	assert_counts(s, 0, 0, 3, false);
	resolver_put(s);
	assert_int_equal(logcap_count(log, "panic:"), 0);
	logcap_stop(log);
	story_free(t, &st);
}

/* Deregistered instances leave the count at once: a scale-down from 3 to
 * 1 is 1 of 1 passing, not 1 of 3. */
static void test_scale_down_is_no_panic(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct story st;
	int rule;

	story_load(&st);
	rule = users_rule(t, &st.three);
	rt_resolver(t, (struct resolver_opts){0});
	s = get_ok(t, "users", NULL);
	assert_counts(s, 3, 3, 3, false);
	resolver_put(s);
	s = answer(t, rule, &st.scaled_down);
	assert_counts(s, 1, 1, 1, false);
	assert_string_equal(s->inst[0].id, "users-1");
	resolver_put(s);
	story_free(t, &st);
}

/* Instances in maintenance count nowhere and are never called: two of
 * three in service maintenance leave 1 of 1 passing (1 of 3, were they
 * counted, would be panic); the last one critical is panic over it alone;
 * the node in maintenance leaves nothing, and no panic. */
static void test_maintenance_counts_nowhere(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s;
	struct story st;
	int rule;

	story_load(&st);
	rule = users_rule(t, &st.maint_two);
	rt_resolver(t, (struct resolver_opts){0});
	s = get_ok(t, "users", NULL);
	assert_counts(s, 1, 1, 1, false);
	assert_string_equal(s->inst[0].id, "users-1");
	resolver_put(s);

	s = answer(t, rule, &st.maint_rest_critical);
	assert_counts(s, 1, 0, 1, true);
	assert_string_equal(s->inst[0].id, "users-1");
	assert_false(s->inst[0].passing);
	resolver_put(s);

	s = answer(t, rule, &st.node_maint);
	assert_counts(s, 0, 0, 0, false);
	resolver_put(s);
	story_free(t, &st);
}

struct panic_wait {
	struct rt *t;
	bool panic;
};

static bool snapshot_panic_is(void *ctx)
{
	const struct panic_wait *w = ctx;
	const struct peer_snapshot *s = get_ok(w->t, "users", NULL);
	bool done = s->panic == w->panic;

	resolver_put(s);
	return done;
}

/* A changed threshold applies at the next sweep (within a second), not at
 * the next answer: the same instances and index published again, decided
 * anew, with its own table. */
static void test_threshold_change_applies_at_the_next_sweep(void **state)
{
	struct rt *t = *state;
	const struct peer_snapshot *s, *before;
	struct story st;
	int log;

	story_load(&st);
	users_rule(t, &st.two_critical);
	rt_resolver(t, (struct resolver_opts){0});
	log = logcap_start(MN_LOG_INFO);
	before = get_ok(t, "users", NULL);
	assert_counts(before, 3, 1, 3, true);

	atomic_store(&t->h.threshold, 0);
	resolver_sweep(t->r);
	assert_true(poll_until(snapshot_panic_is, &(struct panic_wait){t, false}, POLL_MS));
	s = get_ok(t, "users", NULL);
	assert_ptr_not_equal(s, before);
	assert_counts(s, 1, 1, 3, false);
	assert_int_equal(s->index, 18);
	assert_string_equal(s->inst[0].id, "users-1");
	resolver_put(s);
	assert_int_equal(logcap_wait(log,
					  LEFT "1 of 3 instances passing "
					       "(peers.users.panic_threshold 0%)",
					  1, POLL_MS),
			 1);
	/* the snapshot held before is intact */
	assert_counts(before, 3, 1, 3, true);
	assert_string_equal(before->inst[2].id, "users-3");
	resolver_put(before);

	/* 1 of 3 is 33 %: not below 30, below 34 */
	atomic_store(&t->h.threshold, 30);
	resolver_sweep(t->r);
	s = get_ok(t, "users", NULL);
	assert_false(s->panic);
	resolver_put(s);
	atomic_store(&t->h.threshold, 34);
	resolver_sweep(t->r);
	assert_true(poll_until(snapshot_panic_is, &(struct panic_wait){t, true}, POLL_MS));
	s = get_ok(t, "users", NULL);
	assert_counts(s, 3, 1, 3, true);
	resolver_put(s);
	assert_int_equal(logcap_wait(log, ENTERED, 2, POLL_MS), 2);
	assert_int_equal(logcap_wait(log, LEFT, 1, POLL_MS), 1);
	logcap_stop(log);
	story_free(t, &st);
}

/* peers.<name>.connect: the service's Connect endpoints, watched on
 * /v1/health/connect/<name> (captured: the proxy `consul connect proxy
 * -register` put in front of billing), the instance's datacenter kept for
 * the identity a call expects; the plain way again follows anew. */
static void test_connect_endpoints(void **state)
{
	struct rt *t = *state;
	struct fixture_answer proxy;
	const struct peer_snapshot *s;
	char err[256] = "";
	int connect_rule, plain_rule;

	fixture_answer_load(&proxy, "consul/connect/outbound_health_billing.http");
	connect_rule = fake_rule_add(t->ft, &(struct fake_rule){
						    .method = "GET",
						    .url_has = "/v1/health/connect/billing",
						    .ans = {.body = proxy.body, .index = proxy.index},
						    .blocking = true,
					    });
	plain_rule = fake_rule_add(t->ft, &(struct fake_rule){
						  .method = "GET",
						  .url_has = "/v1/health/service/billing",
						  .ans = {.body = t->users.body, .index = t->users.index},
						  .blocking = true,
					  });
	rt_resolver(t, (struct resolver_opts){.dns_server = "127.0.0.1:8600"});
	assert_int_equal(resolver_get_for(t->r, "billing", "", false, true, &s, err, sizeof(err)),
			 MN_OK);
	assert_true(s->known);
	assert_true(s->connect);
	assert_int_equal(s->index, 15);
	assert_int_equal(s->n, 1);
	assert_string_equal(s->inst[0].id, "billing-proxy");
	assert_string_equal(s->inst[0].address, "127.0.0.1");
	assert_int_equal(s->inst[0].port, 55017);
	assert_string_equal(s->inst[0].dc, "dc1");
	assert_true(s->inst[0].passing);
	assert_int_equal(fake_calls(t->ft, connect_rule), 1);
	assert_int_equal(fake_calls(t->ft, plain_rule), 0);
	resolver_put(s);

	/* peers.billing.connect = false: the instances themselves */
	assert_int_equal(resolver_get_for(t->r, "billing", "", false, false, &s, err, sizeof(err)),
			 MN_OK);
	assert_false(s->connect);
	assert_int_equal(s->n, 3);
	assert_int_equal(fake_calls(t->ft, plain_rule), 1);
	resolver_put(s);
	assert_int_equal(resolver_followed(t->r), 1);

	/* Consul's DNS has no tag for Connect names */
	assert_int_equal(resolver_get_for(t->r, "billing", "blue", true, true, &s, err, sizeof(err)),
			 MN_INVALID);
	assert_null(s);
	assert_non_null(strstr(err, "no tag for Connect"));
	fixture_answer_free(&proxy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_answer_published, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_endpoints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_wait_respected_when_consul_is_silent,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_during_first_wait_is_returned, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_new_index_publishes_new_snapshot_old_stays_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchanged_answer_publishes_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_allowed_is_not_found_and_starts_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap_refuses_the_next_service, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_service_stops_and_is_followed_again,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_tag_change_replaces_the_watch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tag_is_escaped_in_the_query, setup, teardown),
		cmocka_unit_test_setup_teardown(test_service_no_longer_allowed_stops_at_next_sweep,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_over_the_cap_keeps_the_view_and_its_staleness,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_grows_while_consul_is_silent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prepare_and_release_once_per_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_invalid_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_sees_every_followed_service, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ten_thousand_instances, setup, teardown),
		cmocka_unit_test(test_panic_rule),
		cmocka_unit_test_setup_teardown(test_panic_entered_and_left_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_check_critical_is_panic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threshold_zero_is_never_panic, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scale_down_is_no_panic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_maintenance_counts_nowhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threshold_change_applies_at_the_next_sweep,
						setup, teardown),
	};

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
