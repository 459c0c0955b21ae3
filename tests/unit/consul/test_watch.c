#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "consul/kv.h"
#include "consul/watch.h"
#include "fixture.h"

/* The fixtures are answers captured from a real consul 1.8.7 -dev agent with
 * `curl -si` (tests/fixtures/consul/watch/). */
static uint64_t hash_of(const struct fixture_answer *a) { return watch_hash(a->body, a->len); }

static void test_next_index_rules(void **state)
{
	(void)state;
	assert_int_equal(watch_next_index(0, 14), 14);  /* first answer */
	assert_int_equal(watch_next_index(14, 14), 14); /* wait expired, nothing new */
	assert_int_equal(watch_next_index(14, 16), 16);
	assert_int_equal(watch_next_index(16, 13), 1);  /* backwards: agent restarted */
	assert_int_equal(watch_next_index(0, 0), 1);    /* missing header: never 0 again */
	assert_int_equal(watch_next_index(16, 0), 1);
	assert_int_equal(watch_next_index(UINT64_MAX - 1, UINT64_MAX), UINT64_MAX);
}

static void test_change_rules(void **state)
{
	(void)state;
	assert_true(watch_is_change(true, 0, 0, 14, 99));
	assert_false(watch_is_change(false, 14, 99, 14, 99)); /* same index and body */
	assert_false(watch_is_change(false, 14, 99, 15, 99)); /* new index, same body */
	assert_false(watch_is_change(false, 14, 99, 14, 98)); /* same index */
	assert_true(watch_is_change(false, 14, 99, 16, 98));
}

static void test_hash_is_fnv1a_64(void **state)
{
	(void)state;
	assert_true(watch_hash("", 0) == 0xcbf29ce484222325ULL);
	assert_true(watch_hash("a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(watch_hash("foobar", 6) == 0x85944171f73967e8ULL);
}

static void test_call_timeout_above_wait_and_jitter(void **state)
{
	(void)state;
	assert_true(watch_call_timeout_ms(300000) > 300000 + 300000 / 16);
	assert_true(watch_call_timeout_ms(1000) > 1000 + 1000 / 16);
	assert_true(watch_call_timeout_ms(0) > 0);
}

/* The agent's own sequence: a first read, a blocking call that expires on an
 * unrelated write, a real change, then the agent restarted with -dev (state
 * lost, index back to 13). */
static void test_real_agent_sequence(void **state)
{
	struct fixture_answer first, unrelated, changed, restarted;
	struct watch_state s;
	uint64_t now = 1000;
	(void)state;

	fixture_answer_load(&first, "consul/watch/1_first.http");
	fixture_answer_load(&unrelated, "consul/watch/2_unrelated_write.http");
	fixture_answer_load(&changed, "consul/watch/3_changed.http");
	fixture_answer_load(&restarted, "consul/watch/5_after_restart.http");
	assert_int_equal(first.index, 14);
	assert_int_equal(changed.index, 16);
	assert_int_equal(restarted.index, 13);

	watch_state_init(&s, 100, 250, 30000, 1);
	assert_int_equal(watch_state_start(&s, now), 0); /* first call: plain read */
	assert_true(watch_state_answer(&s, first.index, hash_of(&first)));

	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 14);
	assert_false(watch_state_answer(&s, unrelated.index, hash_of(&unrelated)));

	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 14);
	assert_true(watch_state_answer(&s, changed.index, hash_of(&changed)));

	/* A blocked call answered by the restarted agent: index went backwards. */
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 16);
	assert_true(watch_state_answer(&s, restarted.index, hash_of(&restarted)));
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 1); /* reset, but never 0 */

	fixture_answer_free(&first);
	fixture_answer_free(&unrelated);
	fixture_answer_free(&changed);
	fixture_answer_free(&restarted);
}

/* A connection error resets the index: after the agent comes back the first
 * call is a plain read, so the first write is seen at once. */
static void test_error_resets_index_and_backs_off(void **state)
{
	struct fixture_answer changed, restarted;
	struct watch_state s;
	uint64_t now = 0, d;
	(void)state;

	fixture_answer_load(&changed, "consul/watch/3_changed.http");
	fixture_answer_load(&restarted, "consul/watch/5_after_restart.http");
	watch_state_init(&s, 100, 250, 1000, 7);
	watch_state_start(&s, now);
	assert_true(watch_state_answer(&s, changed.index, hash_of(&changed)));
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 16);

	/* The agent is gone: capped, jittered, growing delays. */
	uint64_t expect[] = {250, 500, 1000, 1000, 1000};
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
		d = watch_state_failed(&s, now);
		assert_in_range(d, expect[i] / 2, expect[i]);
		assert_int_equal(watch_state_delay(&s, now), d);
		now += d;
		assert_int_equal(watch_state_delay(&s, now), 0);
		assert_int_equal(watch_state_start(&s, now), 0);
	}
	assert_true(watch_state_answer(&s, restarted.index, hash_of(&restarted)));
	/* and the backoff starts over after an answer */
	d = watch_state_failed(&s, now);
	assert_in_range(d, 125, 250);

	fixture_answer_free(&changed);
	fixture_answer_free(&restarted);
}

/* A key written as fast as the agent answers: one call per minimum interval
 * plus jitter, never a spin. Simulated over 2 s of a hand-driven clock. */
static void test_hot_key_is_rate_limited(void **state)
{
	struct watch_state s;
	uint64_t now = 5000, last = 0, index = 100;
	unsigned calls = 0, delivered = 0;
	char body[32];
	(void)state;

	watch_state_init(&s, 100, 250, 30000, 3);
	while (now < 5000 + 2000) {
		uint64_t d = watch_state_delay(&s, now);

		if (d) {
			now += d;
			continue;
		}
		if (calls)
			assert_in_range(now - last, 100, 150);
		last = now;
		watch_state_start(&s, now);
		calls++;
		/* the agent answers at once with a new write */
		index++;
		snprintf(body, sizeof(body), "[{\"v\":%llu}]", (unsigned long long)index);
		delivered += watch_state_answer(&s, index, watch_hash(body, strlen(body)));
	}
	assert_in_range(calls, 2000 / 150, 2000 / 100 + 1);
	assert_int_equal(delivered, calls);
}

/* A prefix whose keys were all deleted answers 404 with an index and no
 * body; the watch treats it as an answer (hash of "" marked not-found) and
 * delivers it once. */
static void test_missing_prefix_is_an_answer(void **state)
{
	struct fixture_answer first, missing;
	struct watch_state s;
	uint64_t gone;
	(void)state;

	fixture_answer_load(&first, "consul/watch/1_first.http");
	fixture_answer_load(&missing, "consul/watch/4_missing_prefix.http");
	assert_int_equal(missing.status, 404);
	assert_int_equal(missing.len, 0);
	gone = watch_answer_hash(missing.body, missing.len, true);
	assert_true(gone != watch_answer_hash("", 0, false));
	watch_state_init(&s, 100, 250, 30000, 11);
	watch_state_start(&s, 0);
	assert_true(watch_state_answer(&s, first.index, hash_of(&first)));
	watch_state_start(&s, 200);
	assert_true(watch_state_answer(&s, missing.index, gone));
	assert_int_equal(watch_state_start(&s, 400), 16);
	assert_false(watch_state_answer(&s, missing.index, gone));
	fixture_answer_free(&first);
	fixture_answer_free(&missing);
}

/* Resuming from a read the caller made: the first call blocks from its
 * index, an expired wait is no change, a write is. */
static void test_resume_from_a_read(void **state)
{
	struct fixture_answer first, unrelated, changed;
	struct watch_state s;
	(void)state;

	fixture_answer_load(&first, "consul/watch/1_first.http");
	fixture_answer_load(&unrelated, "consul/watch/2_unrelated_write.http");
	fixture_answer_load(&changed, "consul/watch/3_changed.http");
	watch_state_init(&s, 100, 250, 30000, 13);
	watch_state_resume(&s, first.index);
	assert_int_equal(watch_state_start(&s, 0), 14);
	assert_false(watch_state_answer(&s, unrelated.index, hash_of(&unrelated)));
	assert_int_equal(watch_state_start(&s, 200), 14);
	assert_true(watch_state_answer(&s, changed.index, hash_of(&changed)));
	assert_int_equal(watch_state_start(&s, 400), 16);
	/* resuming from 0 is a plain first read */
	watch_state_init(&s, 100, 250, 30000, 13);
	watch_state_resume(&s, 0);
	assert_int_equal(watch_state_start(&s, 0), 0);
	assert_true(watch_state_answer(&s, first.index, hash_of(&first)));
	fixture_answer_free(&first);
	fixture_answer_free(&unrelated);
	fixture_answer_free(&changed);
}

/* An answer over max_response is an answer at its index: the next call
 * blocks from it (no plain re-read, no backoff), nothing is delivered,
 * and the next answer that fits is delivered even when its body equals
 * the last one delivered (the data went past the cap and came back). */
static void test_too_large_is_an_answer_at_its_index(void **state)
{
	struct fixture_answer first, changed;
	struct watch_state s;
	uint64_t now = 0, d;
	(void)state;

	fixture_answer_load(&first, "consul/watch/1_first.http");
	fixture_answer_load(&changed, "consul/watch/3_changed.http");
	watch_state_init(&s, 100, 250, 30000, 17);
	watch_state_start(&s, now);
	assert_true(watch_state_answer(&s, first.index, hash_of(&first)));
	/* two failures grow the backoff; the oversized answer resets it */
	now += watch_state_delay(&s, now);
	watch_state_start(&s, now);
	watch_state_failed(&s, now);
	now += watch_state_delay(&s, now);
	watch_state_start(&s, now);
	watch_state_failed(&s, now);
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 0);
	watch_state_too_large(&s, 20);
	assert_in_range(watch_state_delay(&s, now), 100, 150); /* the interval, no backoff */
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 20); /* blocks from its index */
	d = watch_state_failed(&s, now);
	assert_in_range(d, 125, 250); /* the backoff starts over */
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 0);
	watch_state_too_large(&s, 20); /* the same flood again, still one read */
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 20);
	/* the keys go: the listing is the first one again, and it is delivered */
	assert_true(watch_state_answer(&s, 24, hash_of(&first)));
	now += watch_state_delay(&s, now);
	assert_int_equal(watch_state_start(&s, now), 24);
	assert_false(watch_state_answer(&s, 24, hash_of(&first)));

	/* too large from the very first read: the first answer that fits is
	 * delivered */
	watch_state_init(&s, 100, 250, 30000, 19);
	assert_int_equal(watch_state_start(&s, 0), 0);
	watch_state_too_large(&s, 14);
	assert_int_equal(watch_state_start(&s, 200), 14);
	assert_true(watch_state_answer(&s, changed.index, hash_of(&changed)));
	fixture_answer_free(&first);
	fixture_answer_free(&changed);
}

/* ---- the thread, against sockets that are not an agent --------------- */

struct seen {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned errors, changes;
	enum mn_err last;
};

static void on_change(void *ctx, const char *body, size_t len, uint64_t index, bool not_found)
{
	struct seen *s = ctx;

	(void)body, (void)len, (void)index, (void)not_found;
	pthread_mutex_lock(&s->lock);
	s->changes++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void on_error(void *ctx, enum mn_err err, const char *msg)
{
	struct seen *s = ctx;

	(void)msg;
	pthread_mutex_lock(&s->lock);
	s->errors++;
	s->last = err;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* A loopback listener that accepts connections (the kernel does) and
 * never answers: a hung agent. */
static int silent_listener(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static struct watch *start_on(struct consul **c, int port, struct seen *seen)
{
	char addr[64], err[256];

	snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", port);
	*c = consul_create(&(struct consul_opts){.address = addr}, err, sizeof(err));
	assert_non_null(*c);
	return watch_start(&(struct watch_opts){
		.consul = *c,
		.op = "kv_watch",
		.path = "/v1/kv/config/users/?recurse=true",
		.backoff_base_ms = 20,
		.backoff_cap_ms = 40,
		.on_change = on_change,
		.on_error = on_error,
		.ctx = seen,
	});
}

static void test_unreachable_agent_reports_errors(void **state)
{
	struct seen seen = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, MN_OK};
	struct timespec ts;
	struct consul *c;
	struct watch *w;
	int fd, port;
	(void)state;

	/* a port nobody listens on: bound, then closed */
	fd = silent_listener(&port);
	close(fd);
	w = start_on(&c, port, &seen);
	assert_non_null(w);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&seen.lock);
	while (seen.errors < 3)
		if (pthread_cond_timedwait(&seen.cond, &seen.lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&seen.lock);
	assert_true(watch_stale_ms(w) > 0); /* no answer since it started */
	watch_stop(w);
	assert_true(seen.errors >= 3); /* it retried */
	assert_int_equal(seen.last, MN_UNAVAILABLE);
	assert_int_equal(seen.changes, 0);
	consul_destroy(c);
}

static void test_stop_cancels_a_blocked_call(void **state)
{
	struct seen seen = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, MN_OK};
	struct consul *c;
	struct watch *w;
	uint64_t t0, took;
	int fd, port;
	(void)state;

	fd = silent_listener(&port);
	w = start_on(&c, port, &seen);
	assert_non_null(w);
	clock_sleep_ms(300); /* the call is out and waiting */
	/* a silent agent is not vouched for: no answer since the start */
	assert_true(watch_stale_ms(w) >= 250);
	t0 = clock_monotonic_ms();
	watch_stop(w);
	took = clock_monotonic_ms() - t0;
	printf("# watch_stop with a call in flight took %llu ms\n", (unsigned long long)took);
	assert_true(took < 1000); /* 50 ms polling; the bound leaves room for sanitizers */
	assert_int_equal(seen.errors, 0);
	assert_int_equal(seen.changes, 0);
	consul_destroy(c);
	close(fd);
}

/* ---- the thread, through the transport seam ---------------------------- */

/* A transport that plays captured answers in turn, honouring the caller's
 * max_response as httpc_perform() does (the header captured, then
 * MN_TOO_LARGE), and after the last one blocks like a blocking query until
 * the call is cancelled. It records the path of every call. */
struct replay {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const struct fixture_answer *answers[4];
	size_t n_answers;
	size_t calls;
	char paths[8][256];
};

static struct httpc *replay_create(void *ctx)
{
	(void)ctx;
	return malloc(1); /* never looked inside */
}

static void replay_destroy(void *ctx, struct httpc *h)
{
	(void)ctx;
	free(h);
}

static enum mn_err replay_perform(void *ctx, struct httpc *h, const struct httpc_request *req,
				  struct httpc_response *res, char *err, size_t errlen)
{
	struct replay *r = ctx;
	const struct fixture_answer *a = NULL;
	const char *path = strstr(req->url, "/v1/");
	size_t i;

	(void)h;
	pthread_mutex_lock(&r->lock);
	i = r->calls++;
	if (i < sizeof(r->paths) / sizeof(r->paths[0]))
		snprintf(r->paths[i], sizeof(r->paths[i]), "%s", path ? path : req->url);
	if (i < r->n_answers)
		a = r->answers[i];
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	res->status = 0;
	res->captured[0] = '\0';
	buf_release(&res->body);
	buf_init(&res->body, req->max_response);
	if (a == NULL) {
		while (!atomic_load(req->cancel))
			clock_sleep_ms(5);
		return mn_error(err, errlen, MN_IO, "cancelled");
	}
	snprintf(res->captured, sizeof(res->captured), "%llu", (unsigned long long)a->index);
	if (buf_append(&res->body, a->body, a->len) != MN_OK)
		return mn_error(err, errlen, MN_TOO_LARGE, "response larger than %zu bytes",
				req->max_response);
	res->status = a->status;
	return MN_OK;
}

/* A listing over max_response: reported once through on_error with
 * MN_TOO_LARGE, not delivered, the agent not counted as failing, and the
 * next call blocks from its index instead of reading it again; the next
 * answer that fits (the prefix emptied: a 404) is delivered. */
static void test_too_large_answer_blocks_from_its_index(void **state)
{
	struct fixture_answer first, missing;
	struct replay r = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	struct seen seen = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, MN_OK};
	const struct httpc_transport transport = {replay_create, replay_destroy, replay_perform,
						  &r};
	struct timespec ts;
	char err[256];
	struct consul *c;
	struct watch *w;
	(void)state;

	fixture_answer_load(&first, "consul/watch/1_first.http");
	fixture_answer_load(&missing, "consul/watch/4_missing_prefix.http");
	assert_true(first.len > 200);
	r.answers[0] = &first;   /* 367 bytes: over the cap below */
	r.answers[1] = &missing; /* fits */
	r.n_answers = 2;
	c = consul_create(&(struct consul_opts){.address = "http://127.0.0.1:8500",
						.transport = &transport},
			  err, sizeof(err));
	assert_non_null(c);
	w = watch_start(&(struct watch_opts){
		.consul = c,
		.op = "kv_watch",
		.path = "/v1/kv/config/users/?recurse=true",
		.wait_ms = 1000,
		.max_response = 200,
		.backoff_base_ms = 5000, /* a failure would stall the test */
		.on_change = on_change,
		.on_error = on_error,
		.ctx = &seen,
	});
	assert_non_null(w);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&r.lock);
	while (r.calls < 3)
		if (pthread_cond_timedwait(&r.cond, &r.lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&r.lock);
	/* the agent answered (the last answer moments ago): not out of touch */
	assert_true(watch_stale_ms(w) < 1000);
	watch_stop(w);
	assert_true(r.calls >= 3);
	assert_string_equal(r.paths[0], "/v1/kv/config/users/?recurse=true");
	assert_string_equal(r.paths[1], "/v1/kv/config/users/?recurse=true&index=14&wait=1000ms");
	assert_string_equal(r.paths[2], "/v1/kv/config/users/?recurse=true&index=16&wait=1000ms");
	assert_int_equal(seen.errors, 1);
	assert_int_equal(seen.last, MN_TOO_LARGE);
	assert_int_equal(seen.changes, 1); /* the 404, not the oversized listing */
	consul_destroy(c);
	fixture_answer_free(&first);
	fixture_answer_free(&missing);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next_index_rules),
		cmocka_unit_test(test_change_rules),
		cmocka_unit_test(test_hash_is_fnv1a_64),
		cmocka_unit_test(test_call_timeout_above_wait_and_jitter),
		cmocka_unit_test(test_real_agent_sequence),
		cmocka_unit_test(test_error_resets_index_and_backs_off),
		cmocka_unit_test(test_hot_key_is_rate_limited),
		cmocka_unit_test(test_missing_prefix_is_an_answer),
		cmocka_unit_test(test_resume_from_a_read),
		cmocka_unit_test(test_too_large_is_an_answer_at_its_index),
		cmocka_unit_test(test_unreachable_agent_reports_errors),
		cmocka_unit_test(test_stop_cancels_a_blocked_call),
		cmocka_unit_test(test_too_large_answer_blocks_from_its_index),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
