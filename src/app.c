#include "app.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "consul/agent.h"
#include "consul/consul_metrics.h"
#include "consul/registrar.h"
#include "config/live.h"
#include "config/store.h"
#include "app_connect.h"
#include "app_views.h"
#include "connect/connect_metrics.h"
#include "core/clock.h"
#include "core/fd_limit.h"
#include "core/log.h"
#include "core/signals.h"
#include "http/http_metrics.h"
#include "http/server.h"
#include "http/system_metrics.h"
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
#define ADMIN_STOP_MIN_MS 1000

/* Each module's metric families, registered by the module. */
struct app_metrics {
	struct metrics *registry;
	struct http_metrics http;
	struct consul_metrics consul;
	struct system_metrics system; /* the node's own gauges */
	struct peers_metrics peers;
	struct store_metrics store;
	struct events_publisher_opts events; /* only its metric families */
	struct connect_metrics connect;      /* with connect.enabled */
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
	struct http_router *router;       /* the service port's */
	struct http_router *admin_router; /* the admin listener's; NULL when off */
	struct system_handlers system;
	struct http_server *server;
	struct http_server *admin;        /* NULL when admin.port is 0 */
	struct consul *consul;
	struct consul_service service;
	char check_url[300];
	struct registrar *registrar;
	struct resolver *resolver;
	struct peer_client *peers;
	struct config_view_resolver resolver_view;
	struct peer_settings_source peer_settings;
	struct peers_handlers peers_handlers;
	struct events_publisher *events; /* nodes with the orders module */
	struct app_connect *connect;     /* NULL unless connect.enabled */
	atomic_bool stopping;
	struct signals *signals;     /* taken by their own thread from the start */
};

/* Each module registers its families, in the order /metrics shows them. */
static enum mn_err metrics_setup(struct app *app)
{
	struct app_metrics *m = &app->m;

	m->registry = metrics_create();
	if (m->registry == NULL)
		return MN_NOMEM;
	if (http_metrics_register(&m->http, m->registry) != MN_OK ||
	    consul_metrics_register(&m->consul, m->registry) != MN_OK ||
	    system_metrics_register(&m->system, m->registry, &app->system) != MN_OK ||
	    peers_metrics_register(&m->peers, m->registry) != MN_OK ||
	    store_metrics_register(&m->store, m->registry, &app->db) != MN_OK ||
	    events_metrics_register(&m->events, m->registry) != MN_OK ||
	    (app->cfg->connect_enabled &&
	     connect_metrics_register(&m->connect, m->registry) != MN_OK) ||
	    metrics_register_process(m->registry) != MN_OK ||
	    config_live_metrics(app->live, m->registry) != MN_OK)
		return MN_NOMEM;
	return MN_OK;
}

/* The orders service's events hooks, over one ctx: events.enabled in
 * force, and a new event for the publisher. */
static bool events_enabled(void *ctx)
{
	return config_view_events_enabled(((struct app *)ctx)->store);
}

static void events_stored(void *ctx)
{
	events_publisher_notify(((struct app *)ctx)->events);
}

/* The resolver follows a peer service from its first use on, within the
 * configured bounds. */
static enum mn_err peers_setup(struct app *app)
{
	app->peers = peer_client_create(NULL, &app->m.peers.calls, NULL);
	if (app->peers == NULL)
		return MN_NOMEM;
	struct resolver_opts o = {.consul = app->consul, .backoff_cap_ms = WATCH_BACKOFF_CAP_MS};

	app->resolver_view = (struct config_view_resolver){app->store, app->peers};
	config_view_resolver_opts(app->cfg, &app->resolver_view, &o);
	app->resolver = resolver_create(&o);
	if (app->resolver == NULL)
		return MN_NOMEM;
	peer_client_attach(app->peers, app->resolver);
	app->m.peers.resolver = app->resolver;
	app->peer_settings = config_view_peer_settings(app->store);
	return MN_OK;
}

static enum mn_err routes_setup(struct app *app)
{
	enum mn_err err;

	app->router = http_router_create();
	if (app->router == NULL)
		return MN_NOMEM;
	/* with the admin listener on, the node's own routes are served there
	 * only: the service port answers them 404 like any unknown path */
	struct http_router *own = app->router;

	if (app->cfg->admin_port != 0) {
		app->admin_router = own = http_router_create();
		if (own == NULL)
			return MN_NOMEM;
	}
	app->system = (struct system_handlers){
		.config = app->store,
		.metrics = app->m.registry,
		.stopping = &app->stopping,
		.store = &app->db,
	};
	err = system_handlers_register(own, &app->system);
	if (err != MN_OK)
		return err;
	app->peers_handlers = (struct peers_handlers){app->peers, &app->peer_settings};
	err = peers_handlers_register(own, &app->peers_handlers);
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
		eo.settings = config_view_events_settings;
		eo.ctx = app->store;
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

/* Waits for SIGTERM or SIGINT; a SIGHUP asks the live configuration's
 * reload thread for a reload and is never waited for, so a reload stuck
 * on a slow agent never delays a stop. */
static void wait_for_stop(struct app *app)
{
	while (signals_next(app->signals) == SIGHUP) {
		log_info("app", "SIGHUP received: reloading the file and consul kv");
		if (config_live_request_reload(app->live) != MN_OK)
			log_error("app", "cannot start the reload thread: SIGHUP ignored");
	}
}

/* On the signal thread: a stop is said at once. */
static void signal_taken(void *ctx, int sig)
{
	(void)ctx;
	if (sig != SIGHUP)
		log_info("app", "%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* The service listener first, within server.shutdown_timeout_ms; then the
 * admin listener, which answered /health and /ready all along, within what
 * is left of it but at least ADMIN_STOP_MIN_MS (its requests are short).
 * false when either is still running past its bound. */
static bool listeners_stop(struct app *app)
{
	uint64_t t0 = clock_monotonic_ns(), spent_ms;
	int left = app->cfg->shutdown_timeout_ms;

	if (!http_server_stop_within(app->server, left))
		return false;
	spent_ms = (clock_monotonic_ns() - t0) / 1000000u;
	left = spent_ms < (uint64_t)left ? left - (int)spent_ms : 0;
	return http_server_stop_within(app->admin,
				       left > ADMIN_STOP_MIN_MS ? left : ADMIN_STOP_MIN_MS);
}

/* The admin listener, when admin.port is set: false (logged) when it
 * cannot listen. */
static bool admin_start(struct app *app, const struct http_server_opts *aopts)
{
	struct http_server_opts o = *aopts;
	char err[512];

	if (!config_view_admin_server(app->cfg, &o))
		return true;
	app->admin = http_server_start(&o, err, sizeof(err));
	if (app->admin == NULL) {
		log_error("http", "admin listener (admin.address, admin.port): %s", err);
		return false;
	}
	log_info("http",
		 "admin listener on %s:%d with %d threads: /health, /ready, "
		 "/metrics, /config, /peers/{service}",
		 app->cfg->admin_address, app->cfg->admin_port, app->cfg->admin_threads);
	return true;
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
	/* no handshake, request or call out left; its watches use consul */
	app_connect_destroy(app->connect);
	consul_destroy(app->consul);
	http_router_destroy(app->router);
	http_router_destroy(app->admin_router);
	users_service_destroy(app->users);
	orders_service_destroy(app->orders);
	store_close(&app->db);
	metrics_destroy(app->m.registry);
	if (app->store)
		config_store_put(app->store, app->cfg);
	config_live_destroy(app->live);
	return true;
}

int app_run(const struct app_opts *opts)
{
	struct app app = {.opts = opts};
	struct config_live_opts live_opts = {
		.file_path = opts->config_path,
		.file_optional = !opts->config_path_given,
		.environ = opts->environ,
		.apply = config_view_apply_maintenance,
		.ctx = &app.system.registrar,
	};
	struct buf errors, warnings;
	enum mn_err store_err = MN_OK;
	char err[512];
	unsigned long long fds;
	int code = 1;

	/* Started before any other thread (civetweb's, curl's, ours) exists,
	 * so all inherit its signal mask and a stop during start-up is heard. */
	app.signals = signals_start(signal_taken, NULL);
	if (app.signals == NULL) {
		log_error("app", "cannot start the signal thread");
		return 1;
	}
	live_opts.cancel = signals_stop_flag(app.signals);

	if (httpc_global_init() != MN_OK) {
		log_error("app", "cannot initialise libcurl");
		signals_stop(app.signals);
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
	log_write_lines(MN_LOG_WARN, "config", warnings.data);
	if (signals_stop_requested(app.signals))
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
	if (signals_stop_requested(app.signals))
		goto out_stopped;
	consul_set_observer(app.consul, consul_metrics_observe, &app.m.consul);

	int threads = app.cfg->threads + (app.cfg->admin_port ? app.cfg->admin_threads : 0);

	if (!fd_limit_raise(threads, &fds))
		log_warn("app", "open file limit %llu is low for %d server threads", fds, threads);
	if (app.cfg->connect_enabled) {
		/* before any listener: the TLS runtime comes first */
		app.connect = app_connect_start(
			&(struct app_connect_opts){opts->tls_dir, app.consul, app.cfg, app.store,
						   &app.m.connect},
			err, sizeof(err));
		if (app.connect == NULL) {
			log_error("connect", "%s", err);
			goto out;
		}
		app.system.connect_view = app_connect_health;
		app.system.connect_ctx = app.connect;
		/* peers.<name>.connect decides per peer; calls start later */
		if (app.peers &&
		    peer_client_set_connect(app.peers, app_connect_identity(app.connect)) != MN_OK) {
			log_error("connect", "out of memory");
			goto out;
		}
	}
	static const char *const drain_paths[] = {"/health", "/ready", "/metrics", NULL};
	struct http_server_opts sopts = {
		.router = app.router,
		.drain_paths = drain_paths,
		.observe = http_metrics_observe,
		.observe_ctx = &app.m.http,
		.explain_not_found = system_handlers_explain_not_found,
		.explain_ctx = &app.system,
	}, aopts = sopts;

	config_view_http_server(app.cfg, &sopts);
	/* the same protections, the node's own routes, its own few workers */
	aopts.router = app.admin_router;
	aopts.explain_not_found = NULL;
	if (app.connect) {
		/* the admin listener first: it answers /health while the node
		 * waits for its leaf; no leaf, no TLS: the service port opens
		 * once one came */
		if (!admin_start(&app, &aopts))
			goto out_stop_server;
		if (app_connect_wait(app.connect, APP_CONNECT_FIRST_LEAF_MS,
				     signals_stop_flag(app.signals), err, sizeof(err)) != MN_OK) {
			log_error("connect", "%s", err);
			goto out_stop_server;
		}
		if (signals_stop_requested(app.signals)) {
			code = 0;
			goto out_stop_server;
		}
		app_connect_server(app.connect, &sopts);
	}
	app.server = http_server_start(&sopts, err, sizeof(err));
	if (app.server == NULL) {
		log_error("http", "%s", err);
		goto out_stop_server;
	}
	log_info("http", "listening on %s:%d with %d threads%s", app.cfg->service_address,
		 app.cfg->service_port, app.cfg->threads,
		 app.connect ? " in mutual TLS (Connect native)" : "");
	if (!app.connect && !admin_start(&app, &aopts))
		goto out_stop_server;

	/* Only now, the store open and the listener up: the registrar sees
	 * /health answer before it lets the check start passing. */
	config_view_consul_service(app.cfg, &app.service, app.check_url, sizeof(app.check_url));
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
	/* true also when a stop came meanwhile: wait_for_stop() returns at once */
	if (app.cfg->consul_required && app.registrar &&
	    !registrar_wait_registered(app.registrar, REQUIRED_REGISTRATION_MS,
				       signals_stop_flag(app.signals))) {
		log_error("consul", "consul.required is set and the agent at %s did not accept the registration",
			  app.cfg->consul_address);
		goto out_stop_server;
	}

	wait_for_stop(&app); /* at once when a stop came during start-up */
	code = 0;
	atomic_store(&app.stopping, true); /* /ready turns 503, on both listeners */
	http_server_drain(app.server);     /* new work is refused, keep-alive ends */
	http_server_drain(app.admin);      /* it still answers /health, /ready, /metrics */
	/* no reload may reach the registrar now; one left behind still may,
	 * so app_teardown() frees nothing then */
	config_live_stop(app.live);
	registrar_stop(app.registrar);     /* deregisters; /ready may still read it */

out_stop_server:
	if (!listeners_stop(&app)) {
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
	signals_stop(app.signals);
	buf_release(&errors);
	buf_release(&warnings);
	httpc_global_cleanup();
	return code;
}
