#include "app.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consul/agent.h"
#include "consul/kv.h"
#include "consul/registrar.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"
#include "http/system_handlers.h"
#include "metrics/metrics.h"
#include "store/users_repo.h"
#include "users/users_handlers.h"
#include "users/users_service.h"

/* How long a node with consul.required waits for its first registration. */
#define REQUIRED_REGISTRATION_MS 10000
#define REGISTER_BACKOFF_BASE_MS 250
#define REGISTER_BACKOFF_CAP_MS 10000

struct app_metrics {
	struct metrics *registry;
	struct metric_family *http_requests;
	struct metric_family *http_duration;
	struct metric_family *consul_requests;
	struct metric_family *consul_registered;
	struct metric_family *config_reloads;
	struct metric_family *kv_index;
	struct metric_family *build_info;
	struct metric_family *ready;
};

struct app {
	struct config *cfg;
	struct app_metrics m;
	struct users_repo *users_repo;
	struct users_service *users;
	struct http_router *router;
	struct system_handlers system;
	struct http_server *server;
	struct consul *consul;
	struct consul_service service;
	char check_url[300];
	struct registrar *registrar;
	atomic_bool stopping;
};

static const char *env_get(char *const *env, const char *name)
{
	size_t len = strlen(name);

	for (; env && *env; env++)
		if (strncmp(*env, name, len) == 0 && (*env)[len] == '=')
			return *env + len + 1;
	return NULL;
}

static struct consul *consul_from_config(const struct config *cfg, char *const *env, char *err,
					 size_t errlen)
{
	struct consul_opts opts = {
		.address = cfg->consul_address,
		.token = cfg->consul_token,
		.tls = {env_get(env, "CONSUL_CACERT"), env_get(env, "CONSUL_CLIENT_CERT"),
			env_get(env, "CONSUL_CLIENT_KEY")},
	};

	return consul_create(&opts, err, errlen);
}

/* Reads config/shared/ and the node's prefix; the two listings are handed
 * to the config loader as one list, shared first. */
static enum mn_err read_kv(const struct config *base, char *const *env, struct consul_kv **all,
			   size_t *n_all, uint64_t *index, char *err, size_t errlen)
{
	const char *prefixes[2] = {"config/shared/", base->consul_kv_prefix};
	struct consul *c = consul_from_config(base, env, err, errlen);
	struct httpc *h = httpc_create();
	enum mn_err ret = MN_OK;

	*all = NULL;
	*n_all = 0;
	*index = 0;
	if (c == NULL || h == NULL) {
		ret = c ? mn_error(err, errlen, MN_NOMEM, "out of memory") : MN_INVALID;
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		struct consul_kv *kv, *grown;
		size_t n;
		uint64_t idx;

		if (i == 1 && strcmp(prefixes[1], prefixes[0]) == 0)
			break;
		ret = consul_kv_list(c, h, prefixes[i], &kv, &n, &idx, err, errlen);
		if (ret != MN_OK)
			goto out;
		grown = realloc(*all, (*n_all + n + 1) * sizeof(*grown));
		if (grown == NULL) {
			consul_kv_free(kv, n);
			ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
			goto out;
		}
		if (n)
			memcpy(grown + *n_all, kv, n * sizeof(*kv));
		free(kv); /* the entries moved into *all */
		*all = grown;
		*n_all += n;
		if (idx > *index)
			*index = idx;
	}
out:
	if (ret != MN_OK) {
		consul_kv_free(*all, *n_all);
		*all = NULL;
		*n_all = 0;
	}
	httpc_destroy(h);
	consul_destroy(c);
	return ret;
}

enum mn_err app_load_config(const struct app_opts *opts, struct config **out, struct buf *errors,
			    struct buf *warnings)
{
	struct config_sources src = {
		.file_path = opts->config_path,
		.file_optional = !opts->config_path_given,
		.environ = opts->environ,
	};
	struct config *base = NULL;
	struct consul_kv *kv = NULL;
	struct config_kv_pair *pairs = NULL;
	size_t n_kv = 0;
	uint64_t index = 0;
	char err[512];
	enum mn_err ret;

	/* Pass one, without KV, names the service, its KV prefix and the
	 * agent to ask; pass two layers KV in between file and environment. */
	ret = config_load(&src, &base, errors, NULL);
	if (ret != MN_OK)
		return ret;
	if (read_kv(base, opts->environ, &kv, &n_kv, &index, err, sizeof(err)) != MN_OK) {
		if (warnings)
			buf_printf(warnings, "consul kv not read from %s: %s\n", base->consul_address, err);
		*out = base;
		return MN_OK;
	}
	pairs = calloc(n_kv + 1, sizeof(*pairs));
	if (pairs == NULL) {
		ret = MN_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < n_kv; i++)
		pairs[i] = (struct config_kv_pair){kv[i].key, kv[i].value};
	src.kv = pairs;
	src.n_kv = n_kv;
	src.kv_index = index;
	ret = config_load(&src, out, errors, warnings);
out:
	free(pairs);
	consul_kv_free(kv, n_kv);
	config_destroy(base);
	return ret;
}

json_t *app_config_json(const struct config *cfg)
{
	return json_pack("{s:o, s:I}", "settings", config_to_json(cfg), "kv_index",
			 (json_int_t)cfg->kv_index);
}

/* ---- metrics ---------------------------------------------------------- */

static const char *method_label(const char *m)
{
	static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return "OTHER"; /* a client cannot mint label values */
}

static void observe_http(void *ctx, const char *method, const char *route, int status,
			 double seconds)
{
	struct app *app = ctx;
	char code[8];
	const char *m = method_label(method);
	const char *endpoint = route ? route : "unmatched";

	snprintf(code, sizeof(code), "%d", status);
	metric_inc(app->m.http_requests, (const char *[]){m, endpoint, code});
	metric_observe(app->m.http_duration, (const char *[]){m, endpoint}, seconds);
	log_debug("http", "%s %s %d %.3f ms", m, endpoint, status, seconds * 1000.0);
}

static const char *result_label(enum mn_err e)
{
	switch (e) {
	case MN_OK: return "success";
	case MN_NOT_FOUND: return "not_found";
	case MN_FORBIDDEN: return "forbidden";
	case MN_UNAVAILABLE:
	case MN_TIMEOUT: return "unreachable";
	default: return "error";
	}
}

static void observe_consul(void *ctx, const char *op, enum mn_err result)
{
	struct app *app = ctx;

	metric_inc(app->m.consul_requests, (const char *[]){op, result_label(result)});
}

static bool app_ready(void *ctx, json_t *body);

static void collect(struct metrics *m, void *ctx)
{
	struct app *app = ctx;
	json_t *scratch = json_object();

	(void)m;
	metric_set(app->m.consul_registered, NULL,
		   app->registrar && registrar_registered(app->registrar) ? 1 : 0);
	metric_set(app->m.kv_index, NULL, (double)app->cfg->kv_index);
	metric_set(app->m.ready, NULL, scratch && app_ready(app, scratch) ? 1 : 0);
	json_decref(scratch);
}

static enum mn_err metrics_setup(struct app *app)
{
	static const char *const http_labels[] = {"method", "endpoint", "status"};
	static const char *const op_labels[] = {"op", "result"};
	static const char *const result_labels[] = {"result"};
	static const char *const version_labels[] = {"version"};
	struct app_metrics *m = &app->m;

	m->registry = metrics_create();
	if (m->registry == NULL)
		return MN_NOMEM;
	m->http_requests = metrics_counter(m->registry, "http_requests_total",
					   "HTTP requests answered, by method, route pattern and status.",
					   3, http_labels);
	m->http_duration = metrics_histogram(m->registry, "http_request_duration_seconds",
					     "Time to answer HTTP requests, by method and route pattern.",
					     2, http_labels, metrics_http_buckets,
					     metrics_http_buckets_count);
	m->consul_requests = metrics_counter(m->registry, "meshnode_consul_requests_total",
					     "Calls to the Consul agent, by operation and result.", 2,
					     op_labels);
	m->consul_registered = metrics_gauge(m->registry, "meshnode_consul_registered",
					     "1 while the agent holds this node's registration.", 0, NULL);
	m->config_reloads = metrics_counter(m->registry, "meshnode_config_reloads_total",
					    "Configuration reloads, by result.", 1, result_labels);
	m->kv_index = metrics_gauge(m->registry, "meshnode_config_kv_index",
				    "The Consul KV index of the configuration in force.", 0, NULL);
	m->ready = metrics_gauge(m->registry, "meshnode_ready",
				 "1 while the node reports ready.", 0, NULL);
	m->build_info = metrics_gauge(m->registry, "meshnode_build_info",
				      "Build information; the value is always 1.", 1, version_labels);
	if (!m->http_requests || !m->http_duration || !m->consul_requests ||
	    !m->consul_registered || !m->config_reloads || !m->kv_index || !m->ready ||
	    !m->build_info || metrics_register_process(m->registry) != MN_OK)
		return MN_NOMEM;
	metric_set(m->build_info, (const char *[]){MESHNODE_VERSION}, 1);
	return metrics_on_collect(m->registry, collect, app);
}

/* ---- system endpoints ------------------------------------------------- */

static bool app_ready(void *ctx, json_t *body)
{
	struct app *app = ctx;
	bool ok = true;
	char err[256];

	if (atomic_load(&app->stopping)) {
		json_object_set_new(body, "reason", json_string("stopping"));
		ok = false;
	}
	if (app->users_repo) {
		bool store_ok = users_repo_ping(app->users_repo) == MN_OK;

		json_object_set_new(body, "store", json_string(store_ok ? "ok" : "unavailable"));
		ok = ok && store_ok;
	}
	if (app->registrar) {
		bool registered = registrar_registered(app->registrar);

		json_object_set_new(body, "consul",
				    json_string(registered ? "registered" : "not registered"));
		registrar_last_error(app->registrar, err, sizeof(err));
		if (!registered && err[0])
			json_object_set_new(body, "consul_error", json_string(err));
	}
	return ok;
}

static json_t *app_config_for_http(void *ctx)
{
	struct app *app = ctx;

	return app_config_json(app->cfg);
}

static enum mn_err app_metrics_text(void *ctx, struct buf *out)
{
	struct app *app = ctx;

	return metrics_render(app->m.registry, out);
}

/* ---- lifecycle -------------------------------------------------------- */

static enum mn_err store_open(struct app *app)
{
	char err[256];

	if (strcmp(app->cfg->database_driver, "memory") == 0) {
		app->users_repo = users_repo_memory_create();
		if (app->users_repo == NULL) {
			log_error("store", "cannot create the in-memory store");
			return MN_NOMEM;
		}
		return MN_OK;
	}
	app->users_repo = users_repo_sqlite_open(app->cfg->database_path, err, sizeof(err));
	if (app->users_repo == NULL) {
		log_error("store", "cannot open '%s': %s", app->cfg->database_path, err);
		return MN_IO;
	}
	log_info("store", "sqlite database '%s' open", app->cfg->database_path);
	return MN_OK;
}

static enum mn_err routes_setup(struct app *app)
{
	enum mn_err err;

	app->router = http_router_create();
	if (app->router == NULL)
		return MN_NOMEM;
	app->system = (struct system_handlers){app_ready, app_config_for_http, app_metrics_text, app};
	err = system_handlers_register(app->router, &app->system);
	if (err != MN_OK)
		return err;
	if (config_has_module(app->cfg, "users")) {
		app->users = users_service_create(app->users_repo);
		if (app->users == NULL)
			return MN_NOMEM;
		err = users_handlers_register(app->router, app->users);
		if (err != MN_OK)
			return err;
	}
	return MN_OK;
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

static void *server_stop_thread(void *arg)
{
	http_server_stop(arg);
	return NULL;
}

/* Stops the server, letting in-flight requests finish within the drain
 * bound. false when the bound passed first (the server is then abandoned:
 * the process is about to exit). */
static bool server_drain(struct http_server *s, int timeout_ms)
{
	struct timespec deadline;
	pthread_t t;

	if (pthread_create(&t, NULL, server_stop_thread, s) != 0) {
		http_server_stop(s);
		return true;
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	if (pthread_timedjoin_np(t, NULL, &deadline) != 0) {
		pthread_detach(t);
		return false;
	}
	return true;
}

/* Waits for SIGTERM or SIGINT (blocked in every thread, taken here). */
static void wait_for_stop(void)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("app", "SIGHUP received; live reload is not available in this build");
			continue;
		}
		log_info("app", "%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		return;
	}
}

static void apply_log_settings(const struct config *cfg)
{
	enum log_level level;
	enum log_format format;

	if (log_level_parse(cfg->log_level, &level))
		log_set_level(level);
	if (log_format_parse(cfg->log_format, &format))
		log_set_format(format);
}

static void app_teardown(struct app *app)
{
	registrar_stop(app->registrar);
	consul_destroy(app->consul);
	http_router_destroy(app->router);
	users_service_destroy(app->users);
	users_repo_destroy(app->users_repo);
	metrics_destroy(app->m.registry);
	config_destroy(app->cfg);
}

int app_run(const struct app_opts *opts)
{
	struct app app = {0};
	struct buf errors, warnings;
	char err[512];
	sigset_t set;
	int code = 1;

	/* Signals are taken by the main thread alone: block them before any
	 * thread (civetweb's, curl's, ours) exists so all inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (httpc_global_init() != MN_OK) {
		log_error("app", "cannot initialise libcurl");
		return 1;
	}
	buf_init(&errors, 1 << 16);
	buf_init(&warnings, 1 << 16);
	if (app_load_config(opts, &app.cfg, &errors, &warnings) != MN_OK) {
		fprintf(stderr, "%s", errors.data ? errors.data : "configuration error\n");
		code = 2;
		goto out;
	}
	apply_log_settings(app.cfg);
	if (warnings.len) {
		for (char *line = strtok(warnings.data, "\n"); line; line = strtok(NULL, "\n"))
			log_warn("config", "%s", line);
	}
	log_info("app", "meshnode %s starting as '%s' (%s)", MESHNODE_VERSION, app.cfg->service_id,
		 app.cfg->service_name);
	if (config_has_module(app.cfg, "orders")) {
		log_error("app", "module 'orders' is not available in this build");
		code = 2;
		goto out;
	}

	if (metrics_setup(&app) != MN_OK || store_open(&app) != MN_OK || routes_setup(&app) != MN_OK) {
		log_error("app", "cannot set up the node");
		goto out;
	}

	struct http_server_opts sopts = {
		.address = app.cfg->service_address,
		.port = app.cfg->service_port,
		.threads = app.cfg->threads,
		.read_timeout_ms = app.cfg->read_timeout_ms,
		.idle_timeout_ms = app.cfg->idle_timeout_ms,
		.max_body_bytes = app.cfg->max_body_bytes,
		.router = app.router,
		.observe = observe_http,
		.observe_ctx = &app,
	};
	app.server = http_server_start(&sopts, err, sizeof(err));
	if (app.server == NULL) {
		log_error("http", "%s", err);
		goto out;
	}
	log_info("http", "listening on %s:%d with %d threads", app.cfg->service_address,
		 app.cfg->service_port, app.cfg->threads);

	app.consul = consul_from_config(app.cfg, opts->environ, err, sizeof(err));
	if (app.consul == NULL) {
		log_error("consul", "%s", err);
		goto out_stop_server;
	}
	consul_set_observer(app.consul, observe_consul, &app);
	service_setup(&app);
	app.registrar = registrar_start(app.consul, &app.service, REGISTER_BACKOFF_BASE_MS,
					REGISTER_BACKOFF_CAP_MS);
	if (app.registrar == NULL) {
		log_error("consul", "cannot start the registration thread");
		goto out_stop_server;
	}
	if (app.cfg->consul_required && !registrar_wait(app.registrar, REQUIRED_REGISTRATION_MS)) {
		log_error("consul", "consul.required is set and the agent at %s did not accept the registration",
			  app.cfg->consul_address);
		goto out_stop_server;
	}

	wait_for_stop();
	code = 0;
	atomic_store(&app.stopping, true); /* /ready turns 503 */
	registrar_stop(app.registrar);     /* deregisters */
	app.registrar = NULL;

out_stop_server:
	if (!server_drain(app.server, app.cfg->shutdown_timeout_ms)) {
		log_warn("app", "in-flight requests still running after %d ms; exiting anyway",
			 app.cfg->shutdown_timeout_ms);
		/* Worker threads may still touch what teardown would free. */
		buf_release(&errors);
		buf_release(&warnings);
		return code;
	}
	log_info("app", "stopped");
out:
	app_teardown(&app);
	buf_release(&errors);
	buf_release(&warnings);
	httpc_global_cleanup();
	return code;
}
