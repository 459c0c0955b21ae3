/* The live-configuration engine (src/config/live.c) through the Consul
 * client's transport seam: a table-driven fake
 * (tests/unit/peers/fake_transport.h) answering the KV listings a real
 * consul 1.8.7 -dev agent gave (tests/fixtures/consul/live/, captured by
 * capture.py there): the first load's reads, the watches' blocking
 * queries and SIGHUP's reads. No file (an optional one that is not
 * there), an empty environment: what changes comes from KV. Waits are on
 * the real clock (the watch threads), bounded by POLL_MS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/live.h"
#include "fixture.h"
#include "log_capture.h"
#include "metrics/metrics.h"
#include "peers/fake_transport.h"

#define AGENT	   "http://127.0.0.1:8500"
#define SHARED_URL "/v1/kv/config/shared/?recurse=true"
#define USERS_URL  "/v1/kv/config/users/?recurse=true"
#define POLL_MS	   5000
#define INVALID_WARNING                                                                            \
	"warn  [config] kv key 'config/users/log/level': expected one of debug, info, warn, "      \
	"error; keeping the value in force"

enum { A_SHARED, A_FIRST, A_DYNAMIC, A_STATIC, A_INVALID, A_REMOVED, A_EMPTY, A_N };
static const char *const answer_files[A_N] = {
	"consul/live/shared_first.http",  "consul/live/users_first.http",
	"consul/live/users_dynamic.http", "consul/live/users_static.http",
	"consul/live/users_invalid.http", "consul/live/users_removed.http",
	"consul/live/users_empty.http",
};

/* What the apply callback saw; guarded by 'lock'. */
struct applied {
	pthread_mutex_t lock;
	unsigned calls;
	char old_level[16], next_level[16];
};

struct t {
	struct fake_answer ans[A_N];
	struct fixture_answer fx[A_N];
	struct fake_transport *ft;
	struct consul *consul; /* the one config_live_follow() is given */
	struct metrics *metrics;
	struct config_live *live;
	struct applied applied;
	int r_shared, r_users;
	int log;
	/* the SIGHUP test's gate on config/shared/'s plain reads */
	pthread_mutex_t gate_lock;
	bool gate_open;
	unsigned gate_reads, gate_waiting;
};

static char *const no_env[] = {NULL};

static void apply(void *ctx, const struct config *old, const struct config *next)
{
	struct applied *a = ctx;

	pthread_mutex_lock(&a->lock);
	a->calls++;
	snprintf(a->old_level, sizeof(a->old_level), "%s", old->log_level);
	snprintf(a->next_level, sizeof(a->next_level), "%s", next->log_level);
	pthread_mutex_unlock(&a->lock);
}

static unsigned applied_calls(struct t *t)
{
	unsigned n;

	pthread_mutex_lock(&t->applied.lock);
	n = t->applied.calls;
	pthread_mutex_unlock(&t->applied.lock);
	return n;
}

/* Waits (real time, bounded) until the apply callback ran n times. */
static bool wait_applied(struct t *t, unsigned n)
{
	uint64_t end = clock_monotonic_ms() + POLL_MS;

	while (applied_calls(t) < n && clock_monotonic_ms() < end)
		usleep(2000);
	return applied_calls(t) >= n;
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	char err[256];

	assert_non_null(t);
	for (int i = 0; i < A_N; i++) {
		fixture_answer_load(&t->fx[i], answer_files[i]);
		t->ans[i] = (struct fake_answer){.status = t->fx[i].status,
						 .body = t->fx[i].body,
						 .body_len = t->fx[i].len,
						 .index = t->fx[i].index};
	}
	assert_int_equal(t->fx[A_EMPTY].status, 404);
	pthread_mutex_init(&t->applied.lock, NULL);
	pthread_mutex_init(&t->gate_lock, NULL);
	t->ft = fake_create();
	t->consul =
		consul_create(&(struct consul_opts){.address = AGENT, .transport = &t->ft->iface},
			      err, sizeof(err));
	assert_non_null(t->consul);
	t->metrics = metrics_create();
	assert_non_null(t->metrics);
	t->log = logcap_start(MN_LOG_DEBUG);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	config_live_destroy(t->live);
	logcap_stop(t->log);
	metrics_destroy(t->metrics);
	consul_destroy(t->consul);
	assert_int_equal(fake_handles_live(t->ft), 0);
	assert_int_equal(fake_unexpected(t->ft), 0);
	fake_destroy(t->ft);
	for (int i = 0; i < A_N; i++)
		fixture_answer_free(&t->fx[i]);
	pthread_mutex_destroy(&t->applied.lock);
	pthread_mutex_destroy(&t->gate_lock);
	free(t);
	return 0;
}

/* The two prefixes' rules, answering as Consul does to blocking queries. */
static void add_kv_rules(struct t *t)
{
	t->r_shared = fake_rule_add(t->ft, &(struct fake_rule){.method = "GET",
							       .url_has = SHARED_URL,
							       .blocking = true,
							       .ans = t->ans[A_SHARED]});
	t->r_users = fake_rule_add(t->ft, &(struct fake_rule){.method = "GET",
							      .url_has = USERS_URL,
							      .blocking = true,
							      .ans = t->ans[A_FIRST]});
}

static void create(struct t *t, struct buf *warnings)
{
	struct buf errors;

	buf_init(&errors, 1 << 16);
	assert_int_equal(config_live_create(
				 &(struct config_live_opts){
					 .file_path = "/nonexistent/meshnode-test-live.cfg",
					 .file_optional = true,
					 .environ = no_env,
					 .apply = apply,
					 .ctx = &t->applied,
					 .transport = &t->ft->iface,
				 },
				 &t->live, &errors, warnings),
			 MN_OK);
	assert_int_equal(errors.len, 0);
	buf_release(&errors);
	assert_int_equal(config_live_metrics(t->live, t->metrics), MN_OK);
}

/* The config in force, copied out: log.level, log.format, server.threads
 * and the static settings waiting for a restart, joined by ','. */
struct seen {
	char level[16], format[16], pending[256];
	int threads;
	uint64_t kv_index;
};

static struct seen in_force(struct t *t)
{
	struct config_store *store = config_live_store(t->live);
	const struct config *c = config_store_get(store);
	struct seen s = {0};
	size_t pos = 0;

	snprintf(s.level, sizeof(s.level), "%s", c->log_level);
	snprintf(s.format, sizeof(s.format), "%s", c->log_format);
	s.threads = c->threads;
	s.kv_index = c->kv_index;
	for (size_t i = 0; i < c->n_pending_restart; i++)
		pos += (size_t)snprintf(s.pending + pos, sizeof(s.pending) - pos, "%s%s",
					i ? "," : "", c->pending_restart[i]);
	config_store_put(store, c);
	return s;
}

/* true when the metrics text holds 'line' as a whole line. */
static bool metric_line(struct t *t, const char *line)
{
	struct buf out;
	bool found = false;

	buf_init(&out, 1 << 20);
	assert_int_equal(metrics_render(t->metrics, &out), MN_OK);
	for (char *p = out.data; p && (p = strstr(p, line)) != NULL; p++)
		if ((p == out.data || p[-1] == '\n') && p[strlen(line)] == '\n')
			found = true;
	buf_release(&out);
	return found;
}

/* The first load reads both prefixes once (plain reads) and layers them:
 * config/shared/'s log.format, the node's log.level and server.threads;
 * nothing to warn of; --check-config's description names both listings
 * with their key counts and indexes; no listing refused. */
static void test_first_load(void **state)
{
	struct t *t = *state;
	struct buf warnings, out;
	struct seen s;

	add_kv_rules(t);
	buf_init(&warnings, 1 << 16);
	create(t, &warnings);
	assert_int_equal(warnings.len, 0);
	buf_release(&warnings);
	s = in_force(t);
	assert_string_equal(s.format, "text");
	assert_string_equal(s.level, "info");
	assert_int_equal(s.threads, 8);
	assert_int_equal(s.kv_index, 15);
	assert_string_equal(s.pending, "");
	assert_false(config_live_content_trouble(t->live));
	assert_int_equal(fake_calls(t->ft, t->r_shared), 1);
	assert_int_equal(fake_calls(t->ft, t->r_users), 1);
	assert_int_equal(fake_seen(t->ft, "index="), 0);

	buf_init(&out, 1 << 16);
	config_live_describe(t->live, &out);
	assert_non_null(out.data);
	assert_non_null(strstr(out.data, "file /nonexistent/meshnode-test-live.cfg: not there, "
					 "defaults used\n"));
	assert_non_null(strstr(out.data,
			       "consul kv config/shared/ at " AGENT ": 1 keys, index 13\n"
			       "consul kv config/users/ at " AGENT ": 2 keys, index 15\n"));
	buf_release(&out);
	assert_true(
		metric_line(t, "meshnode_config_kv_listing_refused{prefix=\"config/shared/\"} 0"));
	assert_true(
		metric_line(t, "meshnode_config_kv_listing_refused{prefix=\"config/users/\"} 0"));
	assert_int_equal(applied_calls(t), 0);
}

/* Followed through the watches, from the first load's indexes: a dynamic
 * setting edited goes live (the apply callback sees the old and the new
 * value, one line says what changed); a static one changed keeps its
 * running value and is named pending restart, with a warning once; an
 * invalid value is refused (the value in force stays, the reload counted
 * rejected, the warning logged once); a key removed falls back to its
 * default; every key removed (404) likewise. */
static void test_kv_edits_followed(void **state)
{
	struct t *t = *state;
	struct seen s;

	add_kv_rules(t);
	create(t, NULL);
	assert_int_equal(config_live_follow(t->live, t->consul), MN_OK);
	/* both watches block from the indexes already read */
	assert_true(fake_wait_held(t->ft, t->r_shared, 1, POLL_MS));
	assert_true(fake_wait_held(t->ft, t->r_users, 1, POLL_MS));
	assert_int_equal(fake_seen(t->ft, "config/shared/?recurse=true&index=13"), 1);
	assert_int_equal(fake_seen(t->ft, "config/users/?recurse=true&index=15"), 1);

	/* a dynamic setting edited */
	fake_set_answer(t->ft, t->r_users, &t->ans[A_DYNAMIC]);
	assert_true(wait_applied(t, 1));
	s = in_force(t);
	assert_string_equal(s.level, "debug");
	assert_int_equal(s.threads, 8);
	assert_int_equal(s.kv_index, 16);
	pthread_mutex_lock(&t->applied.lock);
	assert_string_equal(t->applied.old_level, "info");
	assert_string_equal(t->applied.next_level, "debug");
	pthread_mutex_unlock(&t->applied.lock);
	assert_int_equal(logcap_wait(t->log,
				     "configuration reloaded (config/users/) at kv index 16"
				     " in ",
				     1, POLL_MS),
			 1);
	assert_int_equal(logcap_count(t->log, "at kv index 16 in "), 1);
	assert_int_equal(logcap_count(t->log, "ms: 1 setting changed"), 1);
	assert_int_equal(logcap_count(t->log, "log.level: info -> debug (kv)"), 1);
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"success\"} 1"));

	/* a static setting changed: pending restart, the running value stays */
	fake_set_answer(t->ft, t->r_users, &t->ans[A_STATIC]);
	assert_true(wait_applied(t, 2));
	s = in_force(t);
	assert_int_equal(s.threads, 8);
	assert_string_equal(s.pending, "server.threads");
	assert_string_equal(s.level, "debug");
	assert_int_equal(logcap_wait(t->log,
				     "'server.threads' changed; it is a static setting "
				     "and takes effect after a restart",
				     1, POLL_MS),
			 1);
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"success\"} 2"));

	/* an invalid value: refused, the value in force stays */
	fake_set_answer(t->ft, t->r_users, &t->ans[A_INVALID]);
	assert_true(wait_applied(t, 3));
	s = in_force(t);
	assert_string_equal(s.level, "debug");
	assert_int_equal(s.kv_index, 18);
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"rejected\"} 1"));
	assert_int_equal(logcap_wait(t->log, INVALID_WARNING, 1, POLL_MS), 1);
	assert_int_equal(logcap_count(t->log, "at kv index 18 in "), 1);
	/* the static change is not warned of again */
	assert_int_equal(logcap_count(t->log, "'server.threads' changed"), 1);

	/* SIGHUP while the value is still there: reloaded, the refusal
	 * said again only at debug level, counted once */
	config_live_reload(t->live);
	assert_int_equal(applied_calls(t), 4);
	assert_int_equal(logcap_count(t->log, INVALID_WARNING), 1);
	assert_int_equal(logcap_count(t->log, "keeping the value in force (still)"), 1);
	assert_int_equal(logcap_count(t->log, "configuration reloaded (SIGHUP) at kv index 18"), 1);
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"rejected\"} 1"));
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"success\"} 3"));

	/* the key removed: back to its default */
	fake_set_answer(t->ft, t->r_users, &t->ans[A_REMOVED]);
	assert_true(wait_applied(t, 5));
	s = in_force(t);
	assert_string_equal(s.level, "info");
	assert_int_equal(s.threads, 8);
	assert_string_equal(s.pending, "server.threads");
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"success\"} 4"));
	/* the refused value gone: nothing more said of it */
	assert_int_equal(logcap_count(t->log, INVALID_WARNING), 1);
	assert_int_equal(logcap_wait(t->log, "log.level: debug -> info (default)", 1, POLL_MS), 1);

	/* every key of the prefix removed: 404 */
	fake_set_answer(t->ft, t->r_users, &t->ans[A_EMPTY]);
	assert_true(wait_applied(t, 6));
	s = in_force(t);
	assert_string_equal(s.level, "info");
	assert_string_equal(s.format, "text"); /* config/shared/ untouched */
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"success\"} 5"));
	assert_true(config_live_stop(t->live));
	assert_int_equal(applied_calls(t), 6);
}

/* The agent down at start: the node starts from defaults, says why KV was
 * not read (a warning, not content trouble); once the agent answers, the
 * watches read both prefixes and one reload brings KV in. */
static void test_agent_down_then_back(void **state)
{
	struct t *t = *state;
	struct buf warnings, out;
	struct fake_answer refused = {.fail = MN_UNAVAILABLE};
	struct seen s;

	add_kv_rules(t);
	fake_set_answer(t->ft, t->r_shared, &refused);
	fake_set_answer(t->ft, t->r_users, &refused);
	buf_init(&warnings, 1 << 16);
	create(t, &warnings);
	assert_non_null(warnings.data);
	assert_non_null(strstr(warnings.data, "consul kv not read from " AGENT
					      ": fake: " AGENT SHARED_URL " failed\n"));
	buf_release(&warnings);
	assert_false(config_live_content_trouble(t->live));
	s = in_force(t);
	assert_string_equal(s.format, "json");
	assert_int_equal(s.threads, 512);
	buf_init(&out, 1 << 16);
	config_live_describe(t->live, &out);
	assert_non_null(strstr(out.data, "consul kv at " AGENT ": not read (fake: "));
	buf_release(&out);

	/* the agent answers again: a watch per prefix, from a plain read */
	assert_int_equal(config_live_follow(t->live, t->consul), MN_OK);
	fake_set_answer(t->ft, t->r_users, &t->ans[A_FIRST]);
	/* one prefix known is not enough: its values alone would be a
	 * configuration without the other's */
	assert_true(fake_wait_held(t->ft, t->r_users, 1, POLL_MS));
	assert_int_equal(applied_calls(t), 0);
	fake_set_answer(t->ft, t->r_shared, &t->ans[A_SHARED]);
	assert_true(wait_applied(t, 1));
	s = in_force(t);
	assert_string_equal(s.format, "text");
	assert_string_equal(s.level, "info");
	assert_int_equal(s.threads, 512); /* static: waits for a restart */
	assert_string_equal(s.pending, "server.threads");
	assert_int_equal(logcap_wait(t->log, "log.format: json -> text (kv)", 1, POLL_MS), 1);
	assert_true(config_live_stop(t->live));
	assert_int_equal(applied_calls(t), 1);
}

/* config/shared/'s plain reads (SIGHUP's) wait at a gate the test opens;
 * its blocking queries (the watch's) hang until cancelled. */
static void gated(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct t *t = ctx;
	bool watch = strstr(req->url, "index=") != NULL;

	pthread_mutex_lock(&t->gate_lock);
	if (!watch) {
		t->gate_reads++;
		t->gate_waiting++;
	}
	while (!(req->cancel && atomic_load(req->cancel)) && (watch || !t->gate_open)) {
		pthread_mutex_unlock(&t->gate_lock);
		usleep(1000);
		pthread_mutex_lock(&t->gate_lock);
	}
	if (!watch)
		t->gate_waiting--;
	pthread_mutex_unlock(&t->gate_lock);
	if (req->cancel && atomic_load(req->cancel)) {
		ans->fail = MN_IO;
		return;
	}
	*ans = t->ans[A_SHARED];
}

static unsigned gate_read(struct t *t, const unsigned *v)
{
	unsigned n;

	pthread_mutex_lock(&t->gate_lock);
	n = *v;
	pthread_mutex_unlock(&t->gate_lock);
	return n;
}

/* SIGHUPs while a reload waits for the agent are served by one more
 * reload, not one each: the first request starts a reload (held at the
 * gate), the next one waits, the two after it join it (and say so). */
static void test_sighup_requests_coalesce(void **state)
{
	struct t *t = *state;
	uint64_t end;

	t->r_shared = fake_rule_add(
		t->ft, &(struct fake_rule){
			       .method = "GET", .url_has = SHARED_URL, .fn = gated, .fn_ctx = t});
	t->r_users = fake_rule_add(t->ft, &(struct fake_rule){.method = "GET",
							      .url_has = USERS_URL,
							      .blocking = true,
							      .ans = t->ans[A_FIRST]});
	pthread_mutex_lock(&t->gate_lock);
	t->gate_open = true; /* the first load's read */
	pthread_mutex_unlock(&t->gate_lock);
	create(t, NULL);
	assert_int_equal(config_live_follow(t->live, t->consul), MN_OK);
	pthread_mutex_lock(&t->gate_lock);
	t->gate_open = false;
	pthread_mutex_unlock(&t->gate_lock);
	assert_int_equal(gate_read(t, &t->gate_reads), 1);

	assert_int_equal(config_live_request_reload(t->live), MN_OK);
	end = clock_monotonic_ms() + POLL_MS;
	while (gate_read(t, &t->gate_waiting) == 0 && clock_monotonic_ms() < end)
		usleep(1000);
	assert_int_equal(gate_read(t, &t->gate_waiting), 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(config_live_request_reload(t->live), MN_OK);
	assert_int_equal(logcap_count(t->log, "a reload is already waiting: this SIGHUP joins it"),
			 2);
	pthread_mutex_lock(&t->gate_lock);
	t->gate_open = true;
	pthread_mutex_unlock(&t->gate_lock);
	assert_true(wait_applied(t, 2));
	assert_int_equal(logcap_wait(t->log, "configuration reloaded (SIGHUP)", 2, POLL_MS), 2);
	/* and no third: a moment more changes nothing */
	usleep(200 * 1000);
	assert_int_equal(applied_calls(t), 2);
	assert_int_equal(gate_read(t, &t->gate_reads), 3);
	assert_true(metric_line(t, "meshnode_config_reloads_total{result=\"success\"} 2"));
	assert_true(config_live_stop(t->live));
	/* after the stop a request does nothing */
	assert_int_equal(config_live_request_reload(t->live), MN_OK);
	usleep(50 * 1000);
	assert_int_equal(gate_read(t, &t->gate_reads), 3);
}

/* A stop while a SIGHUP's read waits for the agent cancels the read: the
 * reload publishes nothing and the stop returns at once. */
static void test_stop_cancels_reload_in_progress(void **state)
{
	struct t *t = *state;
	uint64_t end, t0;

	t->r_shared = fake_rule_add(
		t->ft, &(struct fake_rule){
			       .method = "GET", .url_has = SHARED_URL, .fn = gated, .fn_ctx = t});
	t->r_users = fake_rule_add(t->ft, &(struct fake_rule){.method = "GET",
							      .url_has = USERS_URL,
							      .blocking = true,
							      .ans = t->ans[A_FIRST]});
	pthread_mutex_lock(&t->gate_lock);
	t->gate_open = true;
	pthread_mutex_unlock(&t->gate_lock);
	create(t, NULL);
	assert_int_equal(config_live_follow(t->live, t->consul), MN_OK);
	pthread_mutex_lock(&t->gate_lock);
	t->gate_open = false;
	pthread_mutex_unlock(&t->gate_lock);
	assert_int_equal(config_live_request_reload(t->live), MN_OK);
	end = clock_monotonic_ms() + POLL_MS;
	while (gate_read(t, &t->gate_waiting) == 0 && clock_monotonic_ms() < end)
		usleep(1000);
	assert_int_equal(gate_read(t, &t->gate_waiting), 1);
	t0 = clock_monotonic_ms();
	assert_true(config_live_stop(t->live));
	assert_true(clock_monotonic_ms() - t0 < 1000);
	assert_int_equal(applied_calls(t), 0);
	assert_int_equal(logcap_count(t->log, "configuration reloaded"), 0);
	assert_int_equal(logcap_count(t->log, "SIGHUP: consul kv not read again"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv_edits_followed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_down_then_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sighup_requests_coalesce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_cancels_reload_in_progress, setup,
						teardown),
	};

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
