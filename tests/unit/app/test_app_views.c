#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "app_views.h"

/* A config from environment variables (NULL-terminated). */
static struct config *config_env(const char **env)
{
	struct config_sources src = {.environ = (char *const *)env, .hostname = "h"};
	struct config *cfg;

	assert_int_equal(config_load(&src, &cfg, NULL, NULL), MN_OK);
	return cfg;
}

static void test_users_node_calls_only_named_peers(void **state)
{
	const char *env[] = {"MESHNODE_SERVICE_MODULES=users",
			     "MESHNODE_PEERS_BILLING_TIMEOUT_MS=700", NULL};
	struct config *cfg = config_env(env);
	(void)state;

	assert_true(config_view_peer_allowed(cfg, "billing"));
	assert_false(config_view_peer_allowed(cfg, "users"));
	assert_false(config_view_peer_allowed(cfg, "rabbitmq"));
	assert_false(config_view_peer_allowed(cfg, "other"));
	config_free(cfg);
}

static void test_orders_node_calls_users(void **state)
{
	const char *env[] = {"MESHNODE_SERVICE_MODULES=orders", NULL};
	struct config *cfg = config_env(env);
	(void)state;

	assert_true(config_view_peer_allowed(cfg, "users"));
	/* events off: the broker's service is no peer */
	assert_false(config_view_peer_allowed(cfg, "rabbitmq"));
	assert_false(config_view_peer_allowed(cfg, "billing"));
	config_free(cfg);
}

/* The broker found through Consul is followed; one at a fixed address is
 * not, nor is it on a node without the orders module. */
static void test_broker_service_allowed_only_when_found_through_consul(void **state)
{
	const char *through_consul[] = {"MESHNODE_SERVICE_MODULES=orders",
					"MESHNODE_EVENTS_ENABLED=true",
					"MESHNODE_EVENTS_BROKER_SERVICE=amqp", NULL};
	const char *fixed[] = {"MESHNODE_SERVICE_MODULES=orders", "MESHNODE_EVENTS_ENABLED=true",
			       "MESHNODE_EVENTS_BROKER_SERVICE=amqp",
			       "MESHNODE_EVENTS_BROKER_ADDRESS=127.0.0.1:5672", NULL};
	const char *users_node[] = {"MESHNODE_SERVICE_MODULES=users",
				    "MESHNODE_EVENTS_ENABLED=true",
				    "MESHNODE_EVENTS_BROKER_SERVICE=amqp", NULL};
	struct config *cfg;
	(void)state;

	cfg = config_env(through_consul);
	assert_true(config_view_peer_allowed(cfg, "amqp"));
	assert_false(config_view_peer_allowed(cfg, "rabbitmq"));
	config_free(cfg);
	cfg = config_env(fixed);
	assert_false(config_view_peer_allowed(cfg, "amqp"));
	assert_true(config_view_peer_allowed(cfg, "users"));
	config_free(cfg);
	cfg = config_env(users_node);
	assert_false(config_view_peer_allowed(cfg, "amqp"));
	config_free(cfg);
}

/* The peer settings source and the resolver's hooks read the config in
 * force: a config published since is seen at the next call. */
static void test_peer_views_follow_the_store(void **state)
{
	const char *before[] = {"MESHNODE_SERVICE_MODULES=users",
				"MESHNODE_PEERS_BILLING_TIMEOUT_MS=700",
				"MESHNODE_PEERS_BILLING_PANIC_THRESHOLD=30", NULL};
	const char *after[] = {"MESHNODE_SERVICE_MODULES=users",
			       "MESHNODE_PEERS_BILLING_TIMEOUT_MS=900", NULL};
	struct config *cfg_before = config_env(before);
	struct config_store *store = config_store_create(cfg_before);
	struct peer_settings_source src = config_view_peer_settings(store);
	struct config_view_resolver v = {.store = store};
	struct resolver_opts o = {0};
	struct peer_settings ps;
	const void *token;
	(void)state;

	/* the store holds cfg_before until the next publish */
	token = src.get(src.ctx, "billing", &ps);
	assert_string_equal(ps.name, "billing");
	assert_int_equal(ps.timeout_ms, 700);
	assert_int_equal(ps.panic_threshold, 30);
	config_view_resolver_opts(cfg_before, &v, &o);
	assert_ptr_equal(o.ctx, &v);
	assert_int_equal(o.wait_ms, cfg_before->consul_watch_wait_ms);
	assert_int_equal(o.max_services, cfg_before->consul_watch_max_services);
	assert_int_equal(o.max_response, cfg_before->consul_watch_max_bytes);
	assert_int_equal(o.idle_ms, cfg_before->consul_watch_idle_ms);
	assert_string_equal(o.dns_server, cfg_before->consul_dns_address);
	assert_true(o.allowed(o.ctx, "billing"));
	assert_false(o.allowed(o.ctx, "users"));
	assert_int_equal(o.panic_threshold(o.ctx, "billing"), 30);
	/* a peer not configured: the defaults' threshold */
	assert_int_equal(o.panic_threshold(o.ctx, "users"), 50);

	config_store_publish(store, config_env(after));
	/* the strings of the first read stay valid until put() */
	assert_string_equal(ps.name, "billing");
	src.put(src.ctx, token);
	token = src.get(src.ctx, "billing", &ps);
	assert_int_equal(ps.timeout_ms, 900);
	assert_int_equal(ps.panic_threshold, 50);
	src.put(src.ctx, token);
	assert_int_equal(o.panic_threshold(o.ctx, "billing"), 50);
	token = src.get(src.ctx, "nobody", &ps);
	assert_null(ps.name);
	assert_int_equal(ps.timeout_ms, 5000);
	src.put(src.ctx, token);
	config_store_destroy(store);
}

static void test_events_views(void **state)
{
	const char *env[] = {"MESHNODE_SERVICE_MODULES=orders",
			     "MESHNODE_EVENTS_ENABLED=true",
			     "MESHNODE_EVENTS_BROKER_SERVICE=amqp",
			     "MESHNODE_EVENTS_BROKER_ADDRESS=127.0.0.1:5672",
			     "MESHNODE_EVENTS_VHOST=/v",
			     "MESHNODE_EVENTS_USER=u",
			     "MESHNODE_EVENTS_PASSWORD=p",
			     "MESHNODE_EVENTS_QUEUE=q",
			     "MESHNODE_EVENTS_BATCH_SIZE=7",
			     "MESHNODE_EVENTS_RETENTION_MS=5000",
			     NULL};
	struct config_store *store = config_store_create(config_env(env));
	struct events_settings s;
	(void)state;

	memset(&s, 0xff, sizeof(s));
	config_view_events_settings(store, &s);
	assert_true(s.enabled);
	assert_string_equal(s.broker_service, "amqp");
	assert_string_equal(s.broker_address, "127.0.0.1:5672");
	assert_string_equal(s.vhost, "/v");
	assert_string_equal(s.user, "u");
	assert_string_equal(s.password, "p");
	assert_string_equal(s.queue, "q");
	assert_int_equal(s.batch_size, 7);
	assert_int_equal(s.retention_ms, 5000);
	assert_true(config_view_events_enabled(store));

	const char *off[] = {"MESHNODE_SERVICE_MODULES=orders", NULL};

	config_store_publish(store, config_env(off));
	assert_false(config_view_events_enabled(store));
	config_view_events_settings(store, &s);
	assert_false(s.enabled);
	assert_string_equal(s.broker_service, "rabbitmq");
	assert_string_equal(s.broker_address, "");
	assert_int_equal(s.batch_size, 100);
	config_store_destroy(store);
}

static void test_consul_service(void **state)
{
	const char *env[] = {"MESHNODE_SERVICE_ADDRESS=127.0.0.2", "MESHNODE_SERVICE_PORT=8181",
			     "MESHNODE_SERVICE_ID=users-1", "MESHNODE_SERVICE_NAME=users", NULL};
	struct config *cfg = config_env(env);
	struct consul_service svc;
	char url[300];
	(void)state;

	config_view_consul_service(cfg, &svc, url, sizeof(url));
	assert_string_equal(url, "http://127.0.0.2:8181/health");
	assert_ptr_equal(svc.check_url, url);
	assert_string_equal(svc.id, "users-1");
	assert_string_equal(svc.name, "users");
	assert_string_equal(svc.address, "127.0.0.2");
	assert_int_equal(svc.port, 8181);
	assert_string_equal(svc.version, MESHNODE_VERSION);
	assert_int_equal(svc.n_tags, cfg->n_service_tags);
	assert_int_equal(svc.n_meta, cfg->n_service_meta);
	assert_int_equal(svc.check_interval_ms, cfg->consul_check_interval_ms);
	assert_int_equal(svc.check_timeout_ms, cfg->consul_check_timeout_ms);
	assert_int_equal(svc.deregister_after_ms, cfg->consul_deregister_critical_after_ms);
	config_free(cfg);
}

static void test_http_server(void **state)
{
	const char *env[] = {"MESHNODE_SERVICE_ADDRESS=127.0.0.3",
			     "MESHNODE_SERVICE_PORT=8282",
			     "MESHNODE_SERVER_THREADS=9",
			     "MESHNODE_SERVER_READ_TIMEOUT_MS=1234",
			     "MESHNODE_SERVER_IDLE_TIMEOUT_MS=4321",
			     "MESHNODE_SERVER_MAX_BODY_BYTES=2048",
			     NULL};
	struct config *cfg = config_env(env);
	struct http_server_opts o = {.port = -1};
	(void)state;

	config_view_http_server(cfg, &o);
	assert_string_equal(o.address, "127.0.0.3");
	assert_int_equal(o.port, 8282);
	assert_int_equal(o.threads, 9);
	assert_int_equal(o.read_timeout_ms, 1234);
	assert_int_equal(o.idle_timeout_ms, 4321);
	assert_int_equal(o.max_body_bytes, 2048);
	assert_null(o.router);
	config_free(cfg);
}

/* With the admin listener on, the agent's check goes to it (an unspecified
 * admin.address reached on loopback); the service keeps its own address
 * and port in the catalog. */
static void test_check_url_follows_the_admin_listener(void **state)
{
	const char *on[] = {"MESHNODE_SERVICE_ADDRESS=10.0.0.5", "MESHNODE_SERVICE_PORT=8181",
			    "MESHNODE_ADMIN_PORT=9191", NULL};
	const char *any[] = {"MESHNODE_SERVICE_ADDRESS=0.0.0.0", "MESHNODE_SERVICE_PORT=8181",
			     "MESHNODE_ADMIN_ADDRESS=0.0.0.0", "MESHNODE_ADMIN_PORT=9191", NULL};
	const char *given[] = {"MESHNODE_SERVICE_ADDRESS=0.0.0.0", "MESHNODE_SERVICE_PORT=8181",
			       "MESHNODE_ADMIN_ADDRESS=10.0.0.6", "MESHNODE_ADMIN_PORT=9191", NULL};
	/* off: as it always was, service.address as given (0.0.0.0 too) */
	const char *off[] = {"MESHNODE_SERVICE_ADDRESS=0.0.0.0", "MESHNODE_SERVICE_PORT=8181",
			     "MESHNODE_ADMIN_ADDRESS=10.0.0.6", NULL};
	struct consul_service svc;
	struct config *cfg;
	char url[300];
	(void)state;

	cfg = config_env(on);
	config_view_consul_service(cfg, &svc, url, sizeof(url));
	assert_string_equal(url, "http://127.0.0.1:9191/health");
	assert_string_equal(svc.address, "10.0.0.5");
	assert_int_equal(svc.port, 8181);
	config_free(cfg);
	cfg = config_env(any);
	config_view_check_url(cfg, url, sizeof(url));
	assert_string_equal(url, "http://127.0.0.1:9191/health");
	config_free(cfg);
	cfg = config_env(given);
	config_view_check_url(cfg, url, sizeof(url));
	assert_string_equal(url, "http://10.0.0.6:9191/health");
	config_free(cfg);
	cfg = config_env(off);
	config_view_consul_service(cfg, &svc, url, sizeof(url));
	assert_string_equal(url, "http://0.0.0.0:8181/health");
	assert_int_equal(svc.port, 8181);
	config_free(cfg);
}

/* The admin listener: the server's protections as the service port's,
 * its own address, port and few workers; nothing when it is off. */
static void test_admin_server(void **state)
{
	const char *on[] = {"MESHNODE_SERVICE_PORT=8282",
			    "MESHNODE_SERVER_THREADS=9",
			    "MESHNODE_SERVER_READ_TIMEOUT_MS=1234",
			    "MESHNODE_SERVER_IDLE_TIMEOUT_MS=4321",
			    "MESHNODE_SERVER_MAX_BODY_BYTES=2048",
			    "MESHNODE_ADMIN_PORT=9393",
			    "MESHNODE_ADMIN_ADDRESS=127.0.0.4",
			    "MESHNODE_ADMIN_THREADS=3",
			    NULL};
	const char *off[] = {"MESHNODE_ADMIN_ADDRESS=127.0.0.4", NULL};
	struct http_server_opts o = {.port = -1};
	struct config *cfg;
	(void)state;

	cfg = config_env(off);
	assert_false(config_view_admin_server(cfg, &o));
	assert_int_equal(o.port, -1);
	assert_null(o.address);
	config_free(cfg);
	cfg = config_env(on);
	assert_true(config_view_admin_server(cfg, &o));
	assert_string_equal(o.address, "127.0.0.4");
	assert_int_equal(o.port, 9393);
	assert_int_equal(o.threads, 3);
	assert_int_equal(o.read_timeout_ms, 1234);
	assert_int_equal(o.idle_timeout_ms, 4321);
	assert_int_equal(o.max_body_bytes, 2048);
	config_free(cfg);
}

/* No registrar running: a changed maintenance flag goes nowhere. */
static void test_maintenance_without_registrar(void **state)
{
	const char *off[] = {NULL};
	const char *on[] = {"MESHNODE_MAINTENANCE=true", NULL};
	struct config *a = config_env(off), *b = config_env(on);
	struct registrar *_Atomic none = NULL;
	(void)state;

	assert_false(a->maintenance);
	assert_true(b->maintenance);
	config_view_apply_maintenance(&none, a, b);
	config_free(a);
	config_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_users_node_calls_only_named_peers),
		cmocka_unit_test(test_orders_node_calls_users),
		cmocka_unit_test(test_broker_service_allowed_only_when_found_through_consul),
		cmocka_unit_test(test_peer_views_follow_the_store),
		cmocka_unit_test(test_events_views),
		cmocka_unit_test(test_consul_service),
		cmocka_unit_test(test_http_server),
		cmocka_unit_test(test_check_url_follows_the_admin_listener),
		cmocka_unit_test(test_admin_server),
		cmocka_unit_test(test_maintenance_without_registrar),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
