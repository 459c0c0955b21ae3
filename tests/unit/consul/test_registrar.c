/* The registrar (src/consul/registrar.c) through the Consul client's
 * transport seam: a table-driven fake (tests/unit/peers/fake_transport.h)
 * answering what a real consul 1.8.7 -dev agent answered
 * (tests/fixtures/consul/registrar/, captured by
 * tests/fixtures/consul/live/capture.py). The check URL is a closed port of
 * 127.0.0.1 (the registrar's own GET of it is refused at once, so the
 * check is registered critical), but in one test where a listener of the
 * test answers it 200 (the node's health endpoint, not the agent). The registrar waits on the real clock
 * (its reconcile second, its backoff): the tests use a small backoff and
 * assert only bounds that a loaded machine cannot break. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "consul/registrar.h"
#include "fixture.h"
#include "log_capture.h"
#include "peers/fake_transport.h"

#define SERVICE_ID "users-test-8080"
#define AGENT	   "http://127.0.0.1:8500"
#define POLL_MS	   5000 /* bound of every wait on the real clock */

/* An agent answer captured with `curl -si`: status and body. */
struct answer {
	char *text;
	long status;
	const char *body;
};

static void answer_load(struct answer *a, const char *name)
{
	size_t len;
	char *sep;

	a->text = fixture_read(name, &len);
	assert_int_equal(sscanf(a->text, "HTTP/1.1 %ld", &a->status), 1);
	sep = strstr(a->text, "\n\n");
	assert_non_null(sep);
	*sep = '\0';
	a->body = sep + 2;
}

enum register_mode { REG_OK, REG_REFUSED, REG_HANG };

/* What the fake agent holds and answers; guarded by 'lock'. */
struct agent {
	pthread_mutex_t lock;
	struct answer registered, found, gone, ok;
	bool holds; /* the service is registered */
	enum register_mode mode;
	unsigned refusals_left;	    /* REG_REFUSED: this many, then REG_OK */
	unsigned registers;	    /* register calls that reached the fn */
	char *last_body;	    /* of the last register call */
	uint64_t first_ms, last_ms; /* of the register calls */
};

struct t {
	struct fake_transport *ft;
	struct consul *consul;
	struct agent agent;
	int r_exists, r_register, r_deregister, r_maint;
	int log;
};

static void fill(struct fake_answer *ans, const struct answer *a)
{
	ans->status = a->status;
	ans->body = a->body;
}

static void on_exists(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct agent *ag = ctx;

	(void)req;
	pthread_mutex_lock(&ag->lock);
	fill(ans, ag->holds ? &ag->found : &ag->gone);
	pthread_mutex_unlock(&ag->lock);
}

static void on_register(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct agent *ag = ctx;
	enum register_mode mode;
	uint64_t now = clock_monotonic_ms();

	pthread_mutex_lock(&ag->lock);
	ag->registers++;
	if (ag->registers == 1)
		ag->first_ms = now;
	ag->last_ms = now;
	free(ag->last_body);
	ag->last_body = strndup(req->body ? req->body : "", req->body_len);
	mode = ag->mode;
	if (mode == REG_REFUSED && ag->refusals_left-- == 0)
		mode = ag->mode = REG_OK;
	if (mode == REG_OK) {
		ag->holds = true;
		fill(ans, &ag->registered);
	}
	pthread_mutex_unlock(&ag->lock);
	if (mode == REG_REFUSED) {
		ans->fail = MN_UNAVAILABLE; /* connection refused: nothing sent */
	} else if (mode == REG_HANG) {
		/* an agent that accepts and never answers: until the stop */
		while (!(req->cancel && atomic_load(req->cancel)))
			usleep(1000);
		ans->fail = MN_IO;
	}
}

static void on_deregister(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct agent *ag = ctx;

	(void)req;
	pthread_mutex_lock(&ag->lock);
	ag->holds = false;
	fill(ans, &ag->ok);
	pthread_mutex_unlock(&ag->lock);
}

static void on_maintenance(void *ctx, const struct httpc_request *req, struct fake_answer *ans)
{
	struct agent *ag = ctx;

	(void)req;
	pthread_mutex_lock(&ag->lock);
	fill(ans, ag->holds ? &ag->ok : &ag->gone);
	pthread_mutex_unlock(&ag->lock);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	char err[256];

	assert_non_null(t);
	pthread_mutex_init(&t->agent.lock, NULL);
	answer_load(&t->agent.registered, "consul/registrar/register_ok.http");
	answer_load(&t->agent.found, "consul/registrar/service_found.http");
	answer_load(&t->agent.gone, "consul/registrar/service_gone.http");
	answer_load(&t->agent.ok, "consul/registrar/deregister_ok.http");
	assert_int_equal(t->agent.gone.status, 404);
	t->ft = fake_create();
	t->r_exists =
		fake_rule_add(t->ft, &(struct fake_rule){.method = "GET",
							 .url_has = "/v1/agent/service/" SERVICE_ID,
							 .fn = on_exists,
							 .fn_ctx = &t->agent});
	t->r_register =
		fake_rule_add(t->ft, &(struct fake_rule){.method = "PUT",
							 .url_has = "/v1/agent/service/register",
							 .fn = on_register,
							 .fn_ctx = &t->agent});
	t->r_deregister = fake_rule_add(
		t->ft, &(struct fake_rule){.method = "PUT",
					   .url_has = "/v1/agent/service/deregister/" SERVICE_ID,
					   .fn = on_deregister,
					   .fn_ctx = &t->agent});
	t->r_maint = fake_rule_add(
		t->ft, &(struct fake_rule){.method = "PUT",
					   .url_has = "/v1/agent/service/maintenance/" SERVICE_ID,
					   .fn = on_maintenance,
					   .fn_ctx = &t->agent});
	t->consul =
		consul_create(&(struct consul_opts){.address = AGENT, .transport = &t->ft->iface},
			      err, sizeof(err));
	assert_non_null(t->consul);
	t->log = logcap_start(MN_LOG_DEBUG);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	logcap_stop(t->log);
	consul_destroy(t->consul);
	assert_int_equal(fake_handles_live(t->ft), 0);
	assert_int_equal(fake_unexpected(t->ft), 0);
	fake_destroy(t->ft);
	free(t->agent.registered.text);
	free(t->agent.found.text);
	free(t->agent.gone.text);
	free(t->agent.ok.text);
	free(t->agent.last_body);
	pthread_mutex_destroy(&t->agent.lock);
	free(t);
	return 0;
}

static const char *const tags[] = {"v1", "primary"};
static const char *const meta_keys[] = {"team"};
static const char *const meta_values[] = {"core"};

static const struct consul_service svc = {
	.id = SERVICE_ID,
	.name = "users",
	.tags = tags,
	.n_tags = 2,
	.meta_keys = meta_keys,
	.meta_values = meta_values,
	.n_meta = 1,
	.version = "0.1.0",
	.address = "127.0.0.1",
	.port = 8080,
	.check_url = "http://127.0.0.1:1/health",
	.check_interval_ms = 10000,
	.check_timeout_ms = 2000,
	.deregister_after_ms = 60000,
};

static unsigned registers(struct t *t)
{
	unsigned n;

	pthread_mutex_lock(&t->agent.lock);
	n = t->agent.registers;
	pthread_mutex_unlock(&t->agent.lock);
	return n;
}

/* The last register body, parsed (new reference). */
static json_t *last_body(struct t *t)
{
	json_error_t jerr;
	json_t *o;

	pthread_mutex_lock(&t->agent.lock);
	assert_non_null(t->agent.last_body);
	o = json_loads(t->agent.last_body, 0, &jerr);
	pthread_mutex_unlock(&t->agent.lock);
	assert_non_null(o);
	return o;
}

static const char *str_at(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	assert_non_null(s);
	return s;
}

/* One registration: the body the agent gets names the service, its id,
 * address, port, tags, meta (version included) and its HTTP check, which
 * starts critical (no Status) as the check URL did not answer. The
 * registrar says registered, logs it once, and on stop deregisters with
 * the agent calls' usual bound and says so. */
static void test_registers_then_deregisters_on_stop(void **state)
{
	struct t *t = *state;
	struct fake_request req;
	struct registrar *r;
	char err[256];
	json_t *o, *check, *tag_list, *meta;

	r = registrar_start(t->consul, &svc, false, 20, 40);
	assert_non_null(r);
	assert_true(registrar_wait(r, POLL_MS));
	assert_true(registrar_registered(r));
	assert_int_equal(registers(t), 1);
	registrar_last_error(r, err, sizeof(err));
	assert_string_equal(err, "");

	o = last_body(t);
	assert_string_equal(str_at(o, "ID"), SERVICE_ID);
	assert_string_equal(str_at(o, "Name"), "users");
	assert_string_equal(str_at(o, "Address"), "127.0.0.1");
	assert_int_equal(json_integer_value(json_object_get(o, "Port")), 8080);
	tag_list = json_object_get(o, "Tags");
	assert_int_equal(json_array_size(tag_list), 2);
	assert_string_equal(json_string_value(json_array_get(tag_list, 0)), "v1");
	assert_string_equal(json_string_value(json_array_get(tag_list, 1)), "primary");
	meta = json_object_get(o, "Meta");
	assert_string_equal(str_at(meta, "version"), "0.1.0");
	assert_string_equal(str_at(meta, "team"), "core");
	check = json_object_get(o, "Check");
	assert_non_null(check);
	assert_string_equal(str_at(check, "HTTP"), "http://127.0.0.1:1/health");
	assert_string_equal(str_at(check, "Interval"), "10000ms");
	assert_string_equal(str_at(check, "Timeout"), "2000ms");
	assert_string_equal(str_at(check, "DeregisterCriticalServiceAfter"), "60000ms");
	assert_null(json_object_get(check, "Status")); /* critical until checked */
	json_decref(o);
	assert_int_equal(logcap_wait(t->log,
				     "registered service 'users' as '" SERVICE_ID
				     "' with the agent at " AGENT ", check critical until the "
				     "agent's first check (http://127.0.0.1:1/health: ",
				     1, POLL_MS),
			 1);

	registrar_stop(r);
	assert_false(registrar_registered(r));
	assert_int_equal(fake_calls(t->ft, t->r_deregister), 1);
	assert_true(fake_last(t->ft, "/deregister/", &req));
	assert_string_equal(req.method, "PUT");
	assert_int_equal(req.timeout_ms, 5000); /* confirmed: the usual bound */
	assert_int_equal(logcap_count(t->log, "deregistered '" SERVICE_ID "'"), 1);
	registrar_stop(r); /* a second stop does nothing */
	assert_int_equal(fake_calls(t->ft, t->r_deregister), 1);
	registrar_destroy(r);
	assert_int_equal(registers(t), 1);
}

/* The agent loses the service (restarted with -dev, deregistered by
 * hand): the registrar's once-a-second look finds it gone (404), says so,
 * looks again and registers it again, once, and says it did. */
static void test_service_lost_is_registered_again(void **state)
{
	struct t *t = *state;
	struct registrar *r;

	r = registrar_start(t->consul, &svc, false, 20, 40);
	assert_non_null(r);
	assert_true(registrar_wait(r, POLL_MS));
	/* the first look, a second later, finds it there: no new registration */
	assert_true(fake_wait_seen(t->ft, "/v1/agent/service/" SERVICE_ID, 1, POLL_MS));
	assert_int_equal(registers(t), 1);

	pthread_mutex_lock(&t->agent.lock);
	t->agent.holds = false; /* the agent lost it */
	pthread_mutex_unlock(&t->agent.lock);
	assert_int_equal(logcap_wait(t->log, "the agent no longer holds service '" SERVICE_ID "'",
				     1, POLL_MS),
			 1);
	assert_int_equal(logcap_wait(t->log,
				     "the agent had lost service '" SERVICE_ID
				     "'; registered it again (check critical until the agent's "
				     "first check)",
				     1, POLL_MS),
			 1);
	assert_int_equal(registers(t), 2);
	assert_true(registrar_wait(r, POLL_MS));
	registrar_destroy(r);
	assert_int_equal(fake_calls(t->ft, t->r_deregister), 1);
	assert_int_equal(registers(t), 2);
}

/* An agent that refuses connections: the registrar retries with its
 * capped backoff (never faster than half the base between two tries),
 * logs the failure once, keeps it as the last error, and registers when
 * the agent answers, clearing the error; registered in the end, it is
 * deregistered on stop. */
static void test_agent_down_then_up_backs_off(void **state)
{
	struct t *t = *state;
	struct registrar *r;
	char err[256];
	uint64_t span;
	unsigned n;

	pthread_mutex_lock(&t->agent.lock);
	t->agent.mode = REG_REFUSED;
	t->agent.refusals_left = 6;
	pthread_mutex_unlock(&t->agent.lock);
	r = registrar_start(t->consul, &svc, false, 40, 80);
	assert_non_null(r);
	assert_true(registrar_wait(r, POLL_MS));
	n = registers(t);
	assert_int_equal(n, 7);
	pthread_mutex_lock(&t->agent.lock);
	span = t->agent.last_ms - t->agent.first_ms;
	pthread_mutex_unlock(&t->agent.lock);
	/* six waits of at least half of 40, 80, 80, ... ms */
	assert_true(span >= 20 + 5 * 40);
	assert_int_equal(logcap_count(t->log, "registration at " AGENT " failed: "), 1);
	assert_int_equal(logcap_count(t->log, "registration retry in "), 5);
	registrar_last_error(r, err, sizeof(err));
	assert_string_equal(err, "");
	registrar_destroy(r);
	assert_int_equal(fake_calls(t->ft, t->r_deregister), 1);
}

/* Stopped while the agent still refuses: no register reached it, so no
 * deregistration is sent; the last error says why it is not registered. */
static void test_never_reached_is_not_deregistered(void **state)
{
	struct t *t = *state;
	struct registrar *r;
	char err[256];

	pthread_mutex_lock(&t->agent.lock);
	t->agent.mode = REG_REFUSED;
	t->agent.refusals_left = 1000000;
	pthread_mutex_unlock(&t->agent.lock);
	r = registrar_start(t->consul, &svc, false, 20, 40);
	assert_non_null(r);
	assert_true(fake_wait_seen(t->ft, "/register", 2, POLL_MS));
	assert_false(registrar_registered(r));
	registrar_last_error(r, err, sizeof(err));
	assert_non_null(strstr(err, "fake: " AGENT "/v1/agent/service/register failed"));
	registrar_destroy(r);
	assert_int_equal(fake_calls(t->ft, t->r_deregister), 0);
	assert_int_equal(logcap_count(t->log, "deregister"), 0);
}

/* A register the agent accepted and never answered: not registered; the
 * stop cancels the call in flight at once and, as the register may have
 * reached the agent, deregisters with the 500 ms bound of an unconfirmed
 * registration (not the usual 5 s), logging it at debug level only when
 * the deregistration fails. */
static void test_unconfirmed_registration_short_deregister(void **state)
{
	struct t *t = *state;
	struct fake_request req;
	struct registrar *r;
	uint64_t t0;

	pthread_mutex_lock(&t->agent.lock);
	t->agent.mode = REG_HANG;
	pthread_mutex_unlock(&t->agent.lock);
	r = registrar_start(t->consul, &svc, false, 20, 40);
	assert_non_null(r);
	assert_true(fake_wait_seen(t->ft, "/register", 1, POLL_MS));
	assert_false(registrar_wait(r, 100));
	t0 = clock_monotonic_ms();
	registrar_stop(r);
	assert_true(clock_monotonic_ms() - t0 < POLL_MS);
	assert_int_equal(registers(t), 1);
	assert_int_equal(fake_calls(t->ft, t->r_deregister), 1);
	assert_true(fake_last(t->ft, "/deregister/", &req));
	assert_int_equal(req.timeout_ms, 500);
	/* the cancelled call is no failure: nothing recorded, nothing logged */
	assert_int_equal(logcap_count(t->log, "failed"), 0);
	assert_int_equal(logcap_count(t->log, "deregistered '" SERVICE_ID "'"), 1);
	registrar_destroy(r);
}

/* In maintenance from the start: the check is registered critical even
 * if its URL answered (here it does not), then maintenance is put on; off
 * when asked, each logged. */
static void test_maintenance_on_then_off(void **state)
{
	struct t *t = *state;
	struct fake_request req;
	struct registrar *r;
	json_t *o;

	r = registrar_start(t->consul, &svc, true, 20, 40);
	assert_non_null(r);
	assert_int_equal(
		logcap_wait(t->log, "maintenance mode on for '" SERVICE_ID "'", 1, POLL_MS), 1);
	assert_true(fake_last(t->ft, "/maintenance/", &req));
	assert_non_null(strstr(req.url, "?enable=true&reason=maintenance"));
	o = last_body(t);
	assert_null(json_object_get(json_object_get(o, "Check"), "Status"));
	json_decref(o);
	assert_int_equal(logcap_count(t->log, "/health: maintenance mode)"), 1);

	registrar_set_maintenance(r, false);
	assert_int_equal(
		logcap_wait(t->log, "maintenance mode off for '" SERVICE_ID "'", 1, POLL_MS), 1);
	assert_true(fake_last(t->ft, "/maintenance/", &req));
	assert_non_null(strstr(req.url, "?enable=false&"));
	assert_int_equal(fake_calls(t->ft, t->r_maint), 2);
	registrar_destroy(r);
}

/* The node's own health endpoint, as the registrar GETs it before
 * registering: a listener on a free port of 127.0.0.1 that answers every
 * request 200 (not the agent: the check URL is the node's). */
struct health_endpoint {
	int fd;
	int port;
	pthread_t thread;
	atomic_bool stop;
	atomic_uint served;
};

static void *health_main(void *arg)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				     "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
	struct health_endpoint *he = arg;

	while (!atomic_load(&he->stop)) {
		struct pollfd pfd = {.fd = he->fd, .events = POLLIN};
		char req[1024];
		int c;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		c = accept(he->fd, NULL, NULL);
		if (c < 0)
			continue;
		/* one read is the whole of a small GET on loopback */
		if (read(c, req, sizeof(req)) > 0 && write(c, answer, sizeof(answer) - 1) > 0)
			atomic_fetch_add(&he->served, 1);
		close(c);
	}
	return NULL;
}

static void health_start(struct health_endpoint *he)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	he->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(he->fd >= 0);
	assert_int_equal(bind(he->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(he->fd, 8), 0);
	assert_int_equal(getsockname(he->fd, (struct sockaddr *)&a, &len), 0);
	he->port = ntohs(a.sin_port);
	atomic_store(&he->stop, false);
	atomic_store(&he->served, 0);
	assert_int_equal(pthread_create(&he->thread, NULL, health_main, he), 0);
}

static void health_stop(struct health_endpoint *he)
{
	atomic_store(&he->stop, true);
	pthread_join(he->thread, NULL);
	close(he->fd);
}

/* The check URL answers: the registration starts the check passing (so
 * the node is in ?passing at once, not after the agent's first check),
 * says so, and does so again after the agent lost the service. */
static void test_check_answering_registers_passing(void **state)
{
	struct t *t = *state;
	struct health_endpoint he;
	struct consul_service s = svc;
	struct registrar *r;
	char url[64], line[256];
	json_t *o;

	health_start(&he);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", he.port);
	s.check_url = url;
	r = registrar_start(t->consul, &s, false, 20, 40);
	assert_non_null(r);
	assert_true(registrar_wait(r, POLL_MS));
	assert_int_equal(atomic_load(&he.served), 1);
	o = last_body(t);
	assert_string_equal(str_at(json_object_get(o, "Check"), "Status"), "passing");
	assert_string_equal(str_at(json_object_get(o, "Check"), "HTTP"), url);
	json_decref(o);
	snprintf(line, sizeof(line),
		 "registered service 'users' as '" SERVICE_ID "' with the agent at " AGENT
		 ", check passing (%s answered)",
		 url);
	assert_int_equal(logcap_wait(t->log, line, 1, POLL_MS), 1);

	pthread_mutex_lock(&t->agent.lock);
	t->agent.holds = false;
	pthread_mutex_unlock(&t->agent.lock);
	assert_int_equal(logcap_wait(t->log,
				     "the agent had lost service '" SERVICE_ID
				     "'; registered it again (check passing)",
				     1, POLL_MS),
			 1);
	assert_int_equal(atomic_load(&he.served), 2);
	registrar_destroy(r);
	health_stop(&he);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers_then_deregisters_on_stop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_service_lost_is_registered_again, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_agent_down_then_up_backs_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_reached_is_not_deregistered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unconfirmed_registration_short_deregister,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_maintenance_on_then_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_answering_registers_passing, setup,
						teardown),
	};

	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
