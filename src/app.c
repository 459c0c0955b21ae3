#include "app.h"

#include <pthread.h>
#include <signal.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "consul/agent.h"
#include "consul/consul_metrics.h"
#include "consul/kv.h"
#include "consul/registrar.h"
#include "consul/watch.h"
#include "config/live.h"
#include "config/store.h"
#include "core/log.h"
#include "core/strmap.h"
#include "http/http_metrics.h"
#include "http/server.h"
#include "peers/peer_client.h"
#include "peers/peers_metrics.h"
#include "peers/peers_handlers.h"
#include "peers/resolver.h"
#include "peers/users_peer_http.h"
#include "orders/orders_handlers.h"
#include "orders/orders_service.h"
#include "store/store_metrics.h"
#include "store/store.h"
#include "http/system_handlers.h"
#include "metrics/metrics.h"
#include "events/events_metrics.h"
#include "events/publisher.h"
#include "users/users_handlers.h"
#include "users/users_service.h"

/* How long a node with consul.required waits for its first registration. */
#define REQUIRED_REGISTRATION_MS 10000
#define REGISTER_BACKOFF_BASE_MS 250
/* The agent is local: a refused connection to it costs nothing, and an
 * agent that comes back must find the node registered and its peers
 * followed within a second or two, so retries are capped at one second. */
#define REGISTER_BACKOFF_CAP_MS 1000
#define WATCH_BACKOFF_CAP_MS 1000

/* The node's own metrics and each module's families, registered by the
 * module. */
struct app_metrics {
	struct metrics *registry;
	struct http_metrics http;
	struct consul_metrics consul;
	struct metric_family *kv_index;
	struct metric_family *build_info;
	struct metric_family *ready;
	struct peers_metrics peers;
	struct store_metrics store;
	struct events_publisher_opts events; /* only its metric families */
};

struct app {
	const struct app_opts *opts;
	struct config_live *live;    /* file, KV and environment, followed */
	const struct config *cfg;    /* the boot config: static settings */
	struct config_store *store;  /* the config in force (the live engine's) */
	struct app_metrics m;
	struct store db;             /* the repositories and the store's probe */
	struct users_service *users;
	struct orders_service *orders;
	struct users_peer_http users_peer_http;
	struct users_peer users_peer;
	struct http_router *router;
	struct system_handlers system;
	struct http_server *server;
	struct consul *consul;
	struct consul_service service;
	char check_url[300];
	struct registrar *registrar;
	struct resolver *resolver;
	struct peer_client *peers;
	struct peer_settings_source peer_settings;
	struct peers_handlers peers_handlers;
	struct events_publisher *events; /* nodes with the orders module */
	atomic_bool stopping;
	/* signals, taken by their own thread from the start of app_run on */
	pthread_t signal_thread;
	bool signal_thread_started;
	pthread_mutex_t signal_lock;
	pthread_cond_t signal_wake;  /* a stop or a SIGHUP arrived */
	atomic_bool stop_requested;  /* SIGTERM or SIGINT: start-up steps look */
	unsigned hups;               /* SIGHUPs taken, guarded by signal_lock */
};

/* ---- metrics ---------------------------------------------------------- */

/* The node's own gauges: the KV index in force and readiness. */
static void collect(struct metrics *m, void *ctx)
{
	struct app *app = ctx;

	(void)m;
	const struct config *cfg = config_store_get(app->store);

	metric_set(app->m.kv_index, NULL, (double)cfg->kv_index);
	config_store_put(app->store, cfg);
	metric_set(app->m.ready, NULL, system_handlers_is_ready(&app->system) ? 1 : 0);
}

/* Each module registers its families, in the order /metrics shows them. */
static enum mn_err metrics_setup(struct app *app)
{
	static const char *const version_labels[] = {"version"};
	struct app_metrics *m = &app->m;

	m->registry = metrics_create();
	if (m->registry == NULL)
		return MN_NOMEM;
	if (http_metrics_register(&m->http, m->registry) != MN_OK ||
	    consul_metrics_register(&m->consul, m->registry) != MN_OK)
		return MN_NOMEM;
	m->kv_index = metrics_gauge(m->registry, "meshnode_config_kv_index",
				    "The Consul KV index of the configuration in force.", 0, NULL);
	m->ready = metrics_gauge(m->registry, "meshnode_ready",
				 "1 while the node reports ready.", 0, NULL);
	m->build_info = metrics_gauge(m->registry, "meshnode_build_info",
				      "Build information; the value is always 1.", 1, version_labels);
	if (!m->kv_index || !m->ready || !m->build_info ||
	    peers_metrics_register(&m->peers, m->registry) != MN_OK ||
	    store_metrics_register(&m->store, m->registry, &app->db) != MN_OK ||
	    events_metrics_register(&m->events, m->registry) != MN_OK ||
	    metrics_register_process(m->registry) != MN_OK ||
	    config_live_metrics(app->live, m->registry) != MN_OK)
		return MN_NOMEM;
	metric_set(m->build_info, (const char *[]){MESHNODE_VERSION}, 1);
	return metrics_on_collect(m->registry, collect, app);
}

/* ---- live configuration ------------------------------------------------ */

/* What a new configuration changes in the node beyond what readers of the
 * store see at once: the maintenance mode held by the registrar. */
static void apply_config(void *ctx, const struct config *old, const struct config *next)
{
	struct app *app = ctx;

	if (app->registrar && next->maintenance != old->maintenance)
		registrar_set_maintenance(app->registrar, next->maintenance);
}

/* ---- lifecycle -------------------------------------------------------- */

/* peers.<name>.* are dynamic: each call reads the config in force. */
static const void *peer_settings_get(void *ctx, const char *service, struct peer_settings *s)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);

	/* its strings stay the config's, held until peer_settings_put() */
	*s = *config_peer_get(cfg, service);
	return cfg;
}

static void peer_settings_put(void *ctx, const void *token)
{
	struct app *app = ctx;

	config_store_put(app->store, token);
}

/* The services this node may call: those its modules need, and those
 * named under peers.<name> in the configuration in force. */
static bool peer_allowed(void *ctx, const char *service)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);
	bool ok = (config_has_module(cfg, "orders") && strcmp(service, "users") == 0) ||
		  config_peer_get(cfg, service)->name != NULL ||
		  /* the broker, found through Consul by the publisher */
		  (config_has_module(cfg, "orders") && cfg->events_enabled &&
		   !cfg->events_broker_address[0] &&
		   strcmp(service, cfg->events_broker_service) == 0);

	config_store_put(app->store, cfg);
	return ok;
}

/* ---- events --------------------------------------------------------------- */

/* events.* in force, for the publisher's each round. */
static void events_settings_get(void *ctx, struct events_settings *s)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);

	s->enabled = cfg->events_enabled;
	snprintf(s->broker_service, sizeof(s->broker_service), "%s", cfg->events_broker_service);
	snprintf(s->broker_address, sizeof(s->broker_address), "%s", cfg->events_broker_address);
	snprintf(s->vhost, sizeof(s->vhost), "%s", cfg->events_vhost);
	snprintf(s->user, sizeof(s->user), "%s", cfg->events_user);
	snprintf(s->password, sizeof(s->password), "%s", cfg->events_password);
	snprintf(s->queue, sizeof(s->queue), "%s", cfg->events_queue);
	s->batch_size = (unsigned)cfg->events_batch_size;
	s->retention_ms = (uint64_t)cfg->events_retention_ms;
	config_store_put(app->store, cfg);
}

static bool events_enabled(void *ctx)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);
	bool on = cfg->events_enabled;

	config_store_put(app->store, cfg);
	return on;
}

static void events_stored(void *ctx)
{
	events_publisher_notify(((struct app *)ctx)->events);
}

/* peers.<name>.panic_threshold in force: the resolver asks at each
 * answer and every second. */
static unsigned peer_panic_threshold(void *ctx, const char *service)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);
	unsigned threshold = (unsigned)config_peer_get(cfg, service)->panic_threshold;

	config_store_put(app->store, cfg);
	return threshold;
}

static void *peer_prepare(void *ctx, const struct peer_snapshot *snap)
{
	return peer_client_prepare(((struct app *)ctx)->peers, snap);
}

static void peer_release(void *ctx, void *prepared)
{
	peer_client_release(((struct app *)ctx)->peers, prepared);
}

/* The resolver follows a peer service from its first use on, within the
 * configured bounds. */
static enum mn_err peers_setup(struct app *app)
{
	app->peers = peer_client_create(NULL, &app->m.peers.calls, NULL);
	if (app->peers == NULL)
		return MN_NOMEM;
	app->resolver = resolver_create(&(struct resolver_opts){
		.consul = app->consul,
		.wait_ms = (uint64_t)app->cfg->consul_watch_wait_ms,
		.backoff_cap_ms = WATCH_BACKOFF_CAP_MS,
		.max_services = (size_t)app->cfg->consul_watch_max_services,
		.max_response = (size_t)app->cfg->consul_watch_max_bytes,
		.dns_server = app->cfg->consul_dns_address,
		.idle_ms = (uint64_t)app->cfg->consul_watch_idle_ms,
		.allowed = peer_allowed,
		.panic_threshold = peer_panic_threshold,
		.prepare = peer_prepare,
		.release = peer_release,
		.ctx = app,
	});
	if (app->resolver == NULL)
		return MN_NOMEM;
	peer_client_attach(app->peers, app->resolver);
	app->m.peers.resolver = app->resolver;
	app->peer_settings = (struct peer_settings_source){peer_settings_get, peer_settings_put, app};
	return MN_OK;
}

static enum mn_err routes_setup(struct app *app)
{
	enum mn_err err;

	app->router = http_router_create();
	if (app->router == NULL)
		return MN_NOMEM;
	app->system = (struct system_handlers){
		.config = app->store,
		.metrics = app->m.registry,
		.stopping = &app->stopping,
		.store = &app->db,
	};
	err = system_handlers_register(app->router, &app->system);
	if (err != MN_OK)
		return err;
	app->peers_handlers = (struct peers_handlers){app->peers, &app->peer_settings};
	err = peers_handlers_register(app->router, &app->peers_handlers);
	if (err != MN_OK)
		return err;
	if (config_has_module(app->cfg, "users")) {
		app->users = users_service_create(app->db.users);
		if (app->users == NULL)
			return MN_NOMEM;
		err = users_handlers_register(app->router, app->users);
		if (err != MN_OK)
			return err;
	}
	if (config_has_module(app->cfg, "orders")) {
		app->users_peer_http = (struct users_peer_http){app->peers, &app->peer_settings,
								 "users"};
		app->users_peer = users_peer_http(&app->users_peer_http);
		app->orders = orders_service_create(app->db.orders, &app->users_peer);
		if (app->orders == NULL)
			return MN_NOMEM;
		struct events_publisher_opts eo = app->m.events;

		eo.source = app->db.outbox;
		eo.resolver = app->resolver;
		eo.settings = events_settings_get;
		eo.ctx = app;
		app->events = events_publisher_start(&eo);
		if (app->events == NULL)
			return MN_NOMEM;
		app->system.events = app->events;
		orders_service_set_events(app->orders, &(struct orders_events){
							       .enabled = events_enabled,
							       .stored = events_stored,
							       .ctx = app,
						       });
		err = orders_handlers_register(app->router, app->orders);
		if (err != MN_OK)
			return err;
	}
	return MN_OK;
}

/* A 404 that says which module serves a path this node's modules do not:
 * "/orders is served by the 'orders' module, ...". */
static bool explain_not_found(void *ctx, const char *path, char *msg, size_t len)
{
	static const char *const modules[] = {"users", "orders"};
	struct app *app = ctx;

	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		size_t n = strlen(modules[i]);

		if (path[0] != '/' || strncmp(path + 1, modules[i], n) != 0 ||
		    (path[1 + n] != '\0' && path[1 + n] != '/') ||
		    config_has_module(app->cfg, modules[i]))
			continue;
		snprintf(msg, len, "/%s is served by the '%s' module, which this node does not "
			 "run (service.modules)", modules[i], modules[i]);
		return true;
	}
	return false;
}

static void service_setup(struct app *app)
{
	const struct config *cfg = app->cfg;

	snprintf(app->check_url, sizeof(app->check_url), "http://%s:%d/health",
		 cfg->service_address, cfg->service_port);
	app->service = (struct consul_service){
		.id = cfg->service_id,
		.name = cfg->service_name,
		.tags = (const char *const *)cfg->service_tags,
		.n_tags = cfg->n_service_tags,
		.meta_keys = (const char *const *)cfg->service_meta_keys,
		.meta_values = (const char *const *)cfg->service_meta_values,
		.n_meta = cfg->n_service_meta,
		.version = MESHNODE_VERSION,
		.address = cfg->service_address,
		.port = cfg->service_port,
		.check_url = app->check_url,
		.check_interval_ms = cfg->consul_check_interval_ms,
		.check_timeout_ms = cfg->consul_check_timeout_ms,
		.deregister_after_ms = cfg->consul_deregister_critical_after_ms,
	};
}

/* Every open connection holds a descriptor, and an attack opens many: the
 * soft limit is raised to the hard one (nginx's worker_rlimit_nofile), so
 * the configured threads, not a default of 1024, bound the node. */
static void fd_limit_raise(int threads)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)threads * 2 + 64)
		log_warn("app", "open file limit %llu is low for %d server threads",
			 (unsigned long long)rl.rlim_cur, threads);
}

/* The signal thread: SIGTERM, SIGINT and SIGHUP (blocked in every thread)
 * are taken here and only noted, so they are heard whatever the main
 * thread is doing: starting, or asking for a reload. It ends with the
 * first SIGTERM or SIGINT; later ones stay blocked, as a stop is under way. */
static void *signal_main(void *arg)
{
	struct app *app = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* cancelled (signal_thread_stop()) in sigwait only: never while it
	 * holds signal_lock or the log's lock */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	for (;;) {
		int rc;

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		rc = sigwait(&set, &sig);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (rc != 0)
			continue;
		pthread_mutex_lock(&app->signal_lock);
		if (sig == SIGHUP)
			app->hups++;
		else
			atomic_store(&app->stop_requested, true);
		pthread_cond_signal(&app->signal_wake);
		pthread_mutex_unlock(&app->signal_lock);
		if (sig != SIGHUP) {
			log_info("app", "%s received, stopping",
				 sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return NULL;
		}
	}
}

static bool signal_thread_start(struct app *app)
{
	pthread_mutex_init(&app->signal_lock, NULL);
	pthread_cond_init(&app->signal_wake, NULL);
	app->signal_thread_started =
		pthread_create(&app->signal_thread, NULL, signal_main, app) == 0;
	return app->signal_thread_started;
}

static void signal_thread_stop(struct app *app)
{
	if (!app->signal_thread_started)
		return;
	/* sigwait is its only cancellation point; a thread that took its
	 * stop has ended or is about to */
	pthread_cancel(app->signal_thread);
	pthread_join(app->signal_thread, NULL);
	pthread_mutex_destroy(&app->signal_lock);
	pthread_cond_destroy(&app->signal_wake);
}

/* true once SIGTERM or SIGINT came: start-up steps stop there. */
static bool stop_requested(struct app *app)
{
	return atomic_load(&app->stop_requested);
}

/* Waits for SIGTERM or SIGINT; a SIGHUP asks the live configuration's
 * reload thread for a reload and is never waited for, so a reload stuck
 * on a slow agent never delays a stop. */
static void wait_for_stop(struct app *app)
{
	unsigned seen = 0;

	pthread_mutex_lock(&app->signal_lock);
	for (;;) {
		while (!atomic_load(&app->stop_requested) && app->hups == seen)
			pthread_cond_wait(&app->signal_wake, &app->signal_lock);
		if (atomic_load(&app->stop_requested))
			break;
		seen = app->hups;
		pthread_mutex_unlock(&app->signal_lock);
		log_info("app", "SIGHUP received: reloading the file and consul kv");
		if (config_live_request_reload(app->live) != MN_OK)
			log_error("app", "cannot start the reload thread: SIGHUP ignored");
		pthread_mutex_lock(&app->signal_lock);
	}
	pthread_mutex_unlock(&app->signal_lock);
}

/* consul.required: the first registration, within REQUIRED_REGISTRATION_MS,
 * looked for in short steps so that a stop meanwhile is not kept waiting.
 * true when registered or told to stop (wait_for_stop() then returns at
 * once). */
static bool registration_wait(struct app *app)
{
	for (int waited = 0; waited < REQUIRED_REGISTRATION_MS; waited += 100) {
		if (stop_requested(app) || registrar_wait(app->registrar, 100))
			return true;
	}
	return registrar_registered(app->registrar);
}

/* Frees the node once its server is stopped. false, with nothing freed,
 * when a reload was left behind: it may still touch all of it (the
 * process is about to exit). */
static bool app_teardown(struct app *app)
{
	/* the server is stopped: no order comes; what is not confirmed
	 * stays in the outbox for the next start */
	events_publisher_stop(app->events);
	store_probe_stop(&app->db); /* before what it pings */
	if (!config_live_stop(app->live))
		return false;
	/* no reload reaches what follows */
	registrar_destroy(app->registrar); /* the server is stopped: no reader left */
	/* the watches first: they build tables of the client's states */
	resolver_destroy(app->resolver);
	peer_client_destroy(app->peers);
	consul_destroy(app->consul);
	http_router_destroy(app->router);
	users_service_destroy(app->users);
	orders_service_destroy(app->orders);
	store_close(&app->db);
	metrics_destroy(app->m.registry);
	if (app->store)
		config_store_put(app->store, app->cfg);
	config_live_destroy(app->live);
	return true;
}

/* Logs the lines of a buffer of messages at warn level. */
static void log_lines(const char *component, const struct buf *b)
{
	const char *line = b->data, *nl;

	while (line && *line) {
		nl = strchr(line, '\n');
		log_warn(component, "%.*s", (int)(nl ? nl - line : (ptrdiff_t)strlen(line)), line);
		line = nl ? nl + 1 : line + strlen(line);
	}
}

int app_run(const struct app_opts *opts)
{
	struct app app = {.opts = opts};
	struct config_live_opts live_opts = {
		.file_path = opts->config_path,
		.file_optional = !opts->config_path_given,
		.environ = opts->environ,
		.apply = apply_config,
		.ctx = &app,
	};
	struct buf errors, warnings;
	enum mn_err store_err = MN_OK;
	char err[512];
	sigset_t set;
	int code = 1;

	/* Signals are taken by the signal thread alone: block them before
	 * any thread (civetweb's, curl's, ours) exists so all inherit the
	 * mask, and start it first, so that a stop during start-up is heard. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (!signal_thread_start(&app)) {
		log_error("app", "cannot start the signal thread");
		return 1;
	}
	live_opts.cancel = &app.stop_requested;

	if (httpc_global_init() != MN_OK) {
		log_error("app", "cannot initialise libcurl");
		signal_thread_stop(&app);
		return 1;
	}
	buf_init(&errors, 1 << 16);
	buf_init(&warnings, 1 << 16);
	/* The KV watches go on from this read rather than read again. */
	if (config_live_create(&live_opts, &app.live, &errors, &warnings) != MN_OK) {
		fprintf(stderr, "%s", errors.data ? errors.data : "configuration error\n");
		code = 2;
		goto out;
	}
	app.store = config_live_store(app.live);
	app.cfg = config_store_get(app.store);
	log_lines("config", &warnings);
	if (stop_requested(&app))
		goto out_stopped;
	log_info("app", "meshnode %s starting as '%s' (%s)", MESHNODE_VERSION, app.cfg->service_id,
		 app.cfg->service_name);

	app.consul = consul_create_env(app.cfg->consul_address, app.cfg->consul_token,
				       opts->environ, err, sizeof(err));
	if (app.consul == NULL) {
		log_error("consul", "%s", err);
		goto out;
	}
	if (metrics_setup(&app) != MN_OK || (store_err = store_open(app.cfg, &app.db)) != MN_OK ||
	    peers_setup(&app) != MN_OK || routes_setup(&app) != MN_OK) {
		log_error("app", "cannot set up the node");
		if (store_err == MN_CONFIG)
			code = 2; /* the database refused what the configuration says */
		goto out;
	}
	if (stop_requested(&app))
		goto out_stopped;
	consul_set_observer(app.consul, consul_metrics_observe, &app.m.consul);

	fd_limit_raise(app.cfg->threads);
	static const char *const drain_paths[] = {"/health", "/ready", "/metrics", NULL};
	struct http_server_opts sopts = {
		.address = app.cfg->service_address,
		.port = app.cfg->service_port,
		.threads = app.cfg->threads,
		.read_timeout_ms = app.cfg->read_timeout_ms,
		.idle_timeout_ms = app.cfg->idle_timeout_ms,
		.max_body_bytes = app.cfg->max_body_bytes,
		.router = app.router,
		.drain_paths = drain_paths,
		.observe = http_metrics_observe,
		.observe_ctx = &app.m.http,
		.explain_not_found = explain_not_found,
		.explain_ctx = &app,
	};
	app.server = http_server_start(&sopts, err, sizeof(err));
	if (app.server == NULL) {
		log_error("http", "%s", err);
		goto out;
	}
	log_info("http", "listening on %s:%d with %d threads", app.cfg->service_address,
		 app.cfg->service_port, app.cfg->threads);

	/* Only now, the store open and the listener up: the registrar sees
	 * /health answer before it lets the check start passing. */
	service_setup(&app);
	if (app.cfg->consul_register) {
		app.registrar = registrar_start(app.consul, &app.service, app.cfg->maintenance,
						REGISTER_BACKOFF_BASE_MS, REGISTER_BACKOFF_CAP_MS);
		if (app.registrar == NULL) {
			log_error("consul", "cannot start the registration thread");
			goto out_stop_server;
		}
		/* civetweb's workers read them already (/ready, /metrics) */
		atomic_store(&app.system.registrar, app.registrar);
		atomic_store(&app.m.consul.registrar, app.registrar);
	} else {
		log_info("consul", "consul.register is false: the agent's configuration "
			 "registers '%s'; this node neither registers nor deregisters it",
			 app.cfg->service_id);
	}
	if (config_live_follow(app.live, app.consul) != MN_OK) {
		log_error("config", "cannot start the consul kv watches");
		goto out_stop_server;
	}
	if (app.cfg->consul_required && app.registrar && !registration_wait(&app)) {
		log_error("consul", "consul.required is set and the agent at %s did not accept the registration",
			  app.cfg->consul_address);
		goto out_stop_server;
	}

	wait_for_stop(&app); /* at once when a stop came during start-up */
	code = 0;
	atomic_store(&app.stopping, true); /* /ready turns 503 */
	http_server_drain(app.server);     /* new work is refused, keep-alive ends */
	/* no reload may reach the registrar now; one left behind still may,
	 * so app_teardown() frees nothing then */
	config_live_stop(app.live);
	registrar_stop(app.registrar);     /* deregisters; /ready may still read it */

out_stop_server:
	if (!http_server_stop_within(app.server, app.cfg->shutdown_timeout_ms)) {
		log_warn("app", "in-flight requests still running after %d ms; exiting anyway",
			 app.cfg->shutdown_timeout_ms);
		/* Worker threads may still touch what teardown would free. */
		buf_release(&errors);
		buf_release(&warnings);
		return code;
	}
	log_info("app", "stopped");
	goto out;
out_stopped:
	log_info("app", "stopped during start-up");
	code = 0;
out:
	if (!app_teardown(&app)) {
		/* the reload left behind may still use libcurl */
		buf_release(&errors);
		buf_release(&warnings);
		return code;
	}
	signal_thread_stop(&app);
	buf_release(&errors);
	buf_release(&warnings);
	httpc_global_cleanup();
	return code;
}
