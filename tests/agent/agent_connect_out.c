/* Calls out over Connect against a real Consul agent (tests/agent/README.md:
 * run by tests/integration/test_agent_programs.py with CONSUL_HTTP_ADDR
 * set). This program is "orders", a Connect-native service with its
 * identity followed from the agent (connect/identity.h); "billing" is a
 * plain HTTP server of its own (http/server.h) behind `consul connect proxy
 * -service billing -register`, which the program starts and kills by PID
 * (atexit too, so a failed assertion leaves no proxy behind).
 *
 * - a peer client with Connect finds the proxy through
 *   /v1/health/connect/billing and gets the plain server's answer over
 *   mutual TLS (the server saw the request, with its X-Request-ID);
 * - a hundred calls reuse one kept-alive TLS connection (libcurl's count of
 *   new connections), and the cost of a call over mTLS through the proxy
 *   against a plain call on a kept-alive connection is printed;
 * - a client that expects "users", pointed at the billing proxy (a "users"
 *   instance registered at its port), is refused: outcome "tls_identity",
 *   the plain server never reached;
 * - peers.billing.connect = false calls the plain server directly, found
 *   through /v1/health/service/billing;
 * - a CA rotation (a new private key written to the CA configuration)
 *   while calls go on: no call fails, and once the node's leaf is
 *   re-signed the next call makes a new connection with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_env.h"
#include "connect/identity.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/client.h"
#include "http/http.h"
#include "http/router.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "peers/peer_client.h"
#include "peers/peers_metrics.h"
#include "peers/resolver.h"

#define CALLS 200

static pid_t proxy_pid = -1;

static atomic_uint billing_seen;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_request_id[128];

static void kill_proxy(void)
{
	if (proxy_pid > 0) {
		kill(proxy_pid, SIGKILL);
		waitpid(proxy_pid, NULL, 0);
		proxy_pid = -1;
	}
}

/* GET /bill: the plain billing service's answer, counted. */
static void bill(const struct http_request *req, struct http_response *res, void *ctx)
{
	static const char body[] = "{\"billed\":true}";
	(void)ctx;

	atomic_fetch_add(&billing_seen, 1);
	pthread_mutex_lock(&seen_lock);
	snprintf(last_request_id, sizeof(last_request_id), "%s",
		 req->request_id ? req->request_id : "");
	pthread_mutex_unlock(&seen_lock);
	http_reply_raw(res, 200, "application/json", body, strlen(body));
}

static void register_service(struct consul *c, const char *id, const char *name, int port,
			     bool native)
{
	char req[256];

	snprintf(req, sizeof(req),
		 "{\"ID\":\"%s\",\"Name\":\"%s\",\"Address\":\"127.0.0.1\",\"Port\":%d%s}", id,
		 name, port, native ? ",\"Connect\":{\"Native\":true}" : "");
	agent_do(c, "PUT", "/v1/agent/service/register", req, NULL, 0);
}

/* The agent's own binary: test_agent_programs.py passes it. */
static const char *consul_binary(void)
{
	const char *bin = getenv("CONSUL_BIN");

	if (bin == NULL || *bin == '\0')
		fail_msg("CONSUL_BIN is not set: run through tests/integration/test_agent_programs.py");
	return bin;
}

static void start_proxy(int service_port, int listen_port)
{
	char service_addr[64], listen_addr[64], http_addr[256];
	const char *agent = getenv("CONSUL_HTTP_ADDR");
	const char *bin = consul_binary();
	const char *args[] = {bin,	   "connect",	    "proxy",	  "-service",
			      "billing",   "-service-addr", service_addr, "-listen",
			      listen_addr, "-register",	    "-http-addr", http_addr,
			      NULL};
	char *argv[sizeof(args) / sizeof(args[0])];
	extern char **environ;

	snprintf(service_addr, sizeof(service_addr), "127.0.0.1:%d", service_port);
	snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%d", listen_port);
	snprintf(http_addr, sizeof(http_addr), "%s", agent);
	/* posix_spawn's argv is char *const[]: copies of the strings */
	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		argv[i] = args[i] ? strdup(args[i]) : NULL;
	if (posix_spawnp(&proxy_pid, bin, NULL, NULL, argv, environ) != 0)
		fail_msg("cannot start %s connect proxy", bin);
	for (size_t i = 0; argv[i]; i++)
		free(argv[i]);
}

struct world {
	struct consul *consul;
	struct connect_identity *id;
	struct metrics *registry;
	struct peers_metrics pm;
	struct peer_client *pc;
	struct resolver *resolver;
	struct http_server *billing;
	struct http_router *router;
	int billing_port, proxy_port;
};

static struct world w;

static struct resolver *make_resolver(struct peer_client *pc)
{
	struct resolver *r = resolver_create(&(struct resolver_opts){
		.consul = w.consul,
		.first_wait_ms = 3000,
		.wait_ms = 5000,
		.prepare = peer_client_prepare,
		.release = peer_client_release,
		.ctx = pc,
	});

	assert_non_null(r);
	peer_client_attach(pc, r);
	return r;
}

static struct peer_settings settings(const char *name, bool connect)
{
	return (struct peer_settings){
		.name = name,
		.timeout_ms = 5000,
		.connect_timeout_ms = 1000,
		.retries = 2,
		.lb = "round_robin",
		.breaker_failures = 5,
		.breaker_open_ms = 10000,
		.connect = connect,
	};
}

/* One GET /bill to 'service'; the call's result, the answer in *res. */
static enum mn_err call(struct peer_client *pc, const struct peer_settings *s,
			const char *request_id, struct httpc_response *res, char *err,
			size_t errlen)
{
	httpc_response_release(res);
	httpc_response_init(res);
	return peer_call(pc, s,
			 &(struct peer_request){.service = s->name,
						.method = "GET",
						.path = "/bill",
						.request_id = request_id},
			 res, err, errlen);
}

static int setup(void **state)
{
	char err[256];
	struct http_server_opts opts = {
		.address = "127.0.0.1",
		.threads = 8,
		.read_timeout_ms = 5000,
		.idle_timeout_ms = 30000,
		.max_body_bytes = 1 << 16,
	};
	(void)state;

	if (agent_env_check(state) != 0)
		return -1;
	atexit(kill_proxy);
	log_set_level(MN_LOG_INFO);
	w.consul = agent_consul(err, sizeof(err));
	if (w.consul == NULL)
		return -1;
	w.router = http_router_create();
	if (w.router == NULL || http_router_add(w.router, "GET", "/bill", bill, NULL) != MN_OK)
		return -1;
	opts.router = w.router;
	w.billing = http_server_start(&opts, err, sizeof(err));
	if (w.billing == NULL) {
		fprintf(stderr, "billing server: %s\n", err);
		return -1;
	}
	w.billing_port = http_server_port(w.billing);
	w.proxy_port = agent_free_port();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kill_proxy();
	resolver_destroy(w.resolver);
	peer_client_destroy(w.pc);
	connect_identity_destroy(w.id);
	metrics_destroy(w.registry);
	http_server_stop(w.billing);
	http_router_destroy(w.router);
	consul_destroy(w.consul);
	return 0;
}

static double rendered(const char *series)
{
	struct buf text;
	const char *at;
	double v = 0;

	buf_init(&text, 1 << 20);
	assert_int_equal(metrics_render(w.registry, &text), MN_OK);
	at = text.data ? strstr(text.data, series) : NULL;
	if (at)
		v = strtod(at + strlen(series), NULL);
	buf_release(&text);
	return v;
}

static void test_connect_calls(void **state)
{
	struct peer_settings s = settings("billing", true);
	struct httpc_response res;
	char err[512];
	enum mn_err e = MN_UNAVAILABLE;
	long connects = 0;
	uint64_t t0, mtls_ns;
	(void)state;

	register_service(w.consul, "orders-1", "orders", 9443, true);
	register_service(w.consul, "billing-1", "billing", w.billing_port, false);
	w.id = connect_identity_start(&(struct connect_identity_opts){.consul = w.consul,
								      .service = "orders",
								      .wait_ms = 5000},
				      err, sizeof(err));
	assert_non_null(w.id);
	assert_int_equal(connect_identity_wait_ready(w.id, 10000), MN_OK);
	start_proxy(w.billing_port, w.proxy_port);

	w.registry = metrics_create();
	assert_non_null(w.registry);
	assert_int_equal(peers_metrics_register(&w.pm, w.registry), MN_OK);
	w.pc = peer_client_create(NULL, &w.pm.calls, NULL);
	assert_non_null(w.pc);
	assert_int_equal(peer_client_set_connect(w.pc, w.id), MN_OK);
	w.resolver = make_resolver(w.pc);
	w.pm.resolver = w.resolver;

	/* the proxy registers itself and passes its TTL check within a
	 * second or two */
	httpc_response_init(&res);
	for (int i = 0; i < 150; i++) {
		e = call(w.pc, &s, "first-call", &res, err, sizeof(err));
		if (e == MN_OK)
			break;
		clock_sleep_ms(100);
	}
	if (e != MN_OK)
		fail_msg("no call through the billing proxy: %s", err);
	assert_int_equal(res.status, 200);
	assert_non_null(strstr(res.body.data, "\"billed\":true"));
	assert_true(atomic_load(&billing_seen) >= 1);
	pthread_mutex_lock(&seen_lock);
	assert_string_equal(last_request_id, "first-call");
	pthread_mutex_unlock(&seen_lock);

	/* kept alive: the calls after the first make no new connection */
	t0 = clock_monotonic_ns();
	for (int i = 0; i < CALLS; i++) {
		e = call(w.pc, &s, NULL, &res, err, sizeof(err));
		if (e != MN_OK || res.status != 200)
			fail_msg("call %d: %s (%ld)", i, err, res.status);
		connects += res.connects;
	}
	mtls_ns = clock_monotonic_ns() - t0;
	printf("mTLS through the proxy: %d calls, %ld new connections, %.1f us a call\n", CALLS,
	       connects, (double)mtls_ns / CALLS / 1e3);
	assert_true(connects <= 1);
	assert_true(rendered("meshnode_peer_requests_total{service=\"billing\",outcome="
			     "\"success\"} ") >= CALLS);

	/* the plain service, directly, on a kept-alive connection */
	{
		struct peer_settings plain = settings("billing", false);
		unsigned before;
		uint64_t plain_ns;

		connects = 0;
		e = call(w.pc, &plain, NULL, &res, err, sizeof(err));
		if (e != MN_OK)
			fail_msg("plain call: %s", err);
		before = atomic_load(&billing_seen);
		t0 = clock_monotonic_ns();
		for (int i = 0; i < CALLS; i++) {
			e = call(w.pc, &plain, NULL, &res, err, sizeof(err));
			if (e != MN_OK || res.status != 200)
				fail_msg("plain call %d: %s (%ld)", i, err, res.status);
			connects += res.connects;
		}
		plain_ns = clock_monotonic_ns() - t0;
		assert_int_equal(atomic_load(&billing_seen) - before, CALLS);
		printf("plain HTTP, direct:     %d calls, %ld new connections, %.1f us a call "
		       "(mTLS through the proxy costs %.1f us more)\n",
		       CALLS, connects, (double)plain_ns / CALLS / 1e3,
		       ((double)mtls_ns - (double)plain_ns) / CALLS / 1e3);
		assert_true(connects <= 1);
	}
	httpc_response_release(&res);
}

/* A client expecting "users" that finds the billing proxy: refused by the
 * handshake's identity check. */
static void test_wrong_identity_refused(void **state)
{
	struct peer_settings s = settings("users", true);
	struct httpc_response res;
	unsigned before = atomic_load(&billing_seen);
	char err[512] = "";
	enum mn_err e = MN_OK;
	(void)state;

	assert_non_null(w.pc);
	register_service(w.consul, "users-impostor", "users", w.proxy_port, true);
	httpc_response_init(&res);
	for (int i = 0; i < 50; i++) {
		e = call(w.pc, &s, NULL, &res, err, sizeof(err));
		if (strstr(err, "TLS identity refused"))
			break;
		clock_sleep_ms(100);
	}
	printf("refused: %s\n", err);
	assert_int_equal(e, MN_UNAVAILABLE);
	assert_non_null(strstr(err, "identity of another service"));
	assert_non_null(strstr(err, "/svc/billing"));
	assert_true(rendered("meshnode_peer_requests_total{service=\"users\",outcome="
			     "\"tls_identity\"} ") >= 1);
	assert_int_equal(atomic_load(&billing_seen), before);
	httpc_response_release(&res);
	agent_do(w.consul, "PUT", "/v1/agent/service/deregister/users-impostor", NULL, NULL, 0);
}

struct caller {
	atomic_bool stop;
	unsigned calls, failures;
	long connects_after; /* new connections once the generation moved */
	uint64_t generation_before;
	char last_err[600];
};

static void *keep_calling(void *arg)
{
	struct caller *cl = arg;
	struct peer_settings s = settings("billing", true);
	struct httpc_response res;

	httpc_response_init(&res);
	while (!atomic_load(&cl->stop)) {
		char err[512];
		enum mn_err e = call(w.pc, &s, NULL, &res, err, sizeof(err));

		cl->calls++;
		if (e != MN_OK || res.status != 200) {
			cl->failures++;
			snprintf(cl->last_err, sizeof(cl->last_err), "%s (%ld)", err, res.status);
		}
		clock_sleep_ms(5);
	}
	httpc_response_release(&res);
	return NULL;
}

static void new_ca_key(char *pem, size_t size)
{
	FILE *p = popen("openssl ecparam -name prime256v1 -genkey -noout", "r");
	size_t n;

	assert_non_null(p);
	n = fread(pem, 1, size - 1, p);
	pem[n] = '\0';
	assert_int_equal(pclose(p), 0);
	assert_non_null(strstr(pem, "BEGIN EC PRIVATE KEY"));
}

static void test_ca_rotation_during_calls(void **state)
{
	struct peer_settings s = settings("billing", true);
	struct connect_snapshot *before, *after = NULL;
	struct httpc_response res;
	struct caller cl = {0};
	char key[1024], err[512], *req;
	uint64_t written_ms, resigned_ms;
	pthread_t th;
	json_t *conf;
	(void)state;

	assert_non_null(w.pc);
	before = connect_identity_get(w.id);
	assert_non_null(before);
	assert_int_equal(pthread_create(&th, NULL, keep_calling, &cl), 0);
	clock_sleep_ms(200);

	new_ca_key(key, sizeof(key));
	conf = json_pack("{s:s, s:{s:s, s:s}}", "Provider", "consul", "Config", "LeafCertTTL",
			 "72h", "PrivateKey", key);
	req = json_dumps(conf, JSON_COMPACT);
	assert_non_null(req);
	agent_do(w.consul, "PUT", "/v1/connect/ca/configuration", req, NULL, 0);
	written_ms = clock_monotonic_ms();
	free(req);
	json_decref(conf);

	/* the node's leaf re-signed by the new root: the agent re-signs
	 * leaves at a random point within 30 s of a root change (Consul
	 * 1.8's caChangeJitterWindow, agent/cache-types/connect_ca_leaf.go) */
	for (int i = 0; i < 800; i++) {
		connect_snapshot_release(after);
		after = connect_identity_get(w.id);
		if (after && strcmp(after->leaf_serial, before->leaf_serial) != 0 &&
		    strcmp(after->active_root_id, before->active_root_id) != 0)
			break;
		clock_sleep_ms(50);
	}
	resigned_ms = clock_monotonic_ms();
	assert_non_null(after);
	assert_string_not_equal(after->leaf_serial, before->leaf_serial);
	clock_sleep_ms(1500); /* calls go on with the new leaf and roots */
	atomic_store(&cl.stop, true);
	pthread_join(th, NULL);
	printf("CA rotation: %u calls during it, %u failed; leaf generation %llu -> %llu, "
	       "re-signed %.1f s after the write\n",
	       cl.calls, cl.failures, (unsigned long long)before->generation,
	       (unsigned long long)after->generation, (double)(resigned_ms - written_ms) / 1e3);
	if (cl.failures)
		fail_msg("%u calls failed during the rotation, the last: %s", cl.failures,
			 cl.last_err);
	assert_true(cl.calls > 20);

	/* the leaf in use now is the new one: the material's blobs changed,
	 * so a call makes a new connection (the old one was kept for the old
	 * blobs, never reused with the new) and the proxy takes it */
	httpc_response_init(&res);
	{
		struct connect_snapshot *now = connect_identity_get(w.id);
		uint64_t gen = now->generation;
		long connects = 0;

		connect_snapshot_release(now);
		/* a handle of another pool shard may still hold only old
		 * connections; one call per shard at most sees a new one */
		for (int i = 0; i < 4; i++) {
			assert_int_equal(call(w.pc, &s, NULL, &res, err, sizeof(err)), MN_OK);
			assert_int_equal(res.status, 200);
			connects += res.connects;
		}
		now = connect_identity_get(w.id);
		assert_true(now->generation == gen);
		connect_snapshot_release(now);
		printf("after the rotation: %ld new connection(s) in 4 calls\n", connects);
		assert_true(connects >= 1);
	}
	httpc_response_release(&res);
	connect_snapshot_release(before);
	connect_snapshot_release(after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_calls),
		cmocka_unit_test(test_wrong_identity_refused),
		cmocka_unit_test(test_ca_rotation_during_calls),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
