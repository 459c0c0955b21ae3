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
#include <time.h>

#include "consul/agent.h"
#include "consul/kv.h"
#include "consul/registrar.h"
#include "consul/watch.h"
#include "config/store.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/strmap.h"
#include "http/server.h"
#include "peers/peer_client.h"
#include "peers/peers_handlers.h"
#include "peers/resolver.h"
#include "peers/users_peer_http.h"
#include "orders/orders_handlers.h"
#include "orders/orders_service.h"
#include "store/orders_repo.h"
#include "http/system_handlers.h"
#include "metrics/metrics.h"
#include "store/users_repo.h"
#include "users/users_handlers.h"
#include "users/users_service.h"

/* How long a node with consul.required waits for its first registration. */
#define REQUIRED_REGISTRATION_MS 10000
#define REGISTER_BACKOFF_BASE_MS 250
/* The agent is local: a refused connection to it costs nothing, and an
 * agent that comes back must find the node registered and its KV followed
 * within a second or two, so retries are capped at one second. */
#define REGISTER_BACKOFF_CAP_MS 1000
#define KV_WATCH_BACKOFF_CAP_MS 1000
/* A KV listing this large, once replaced or refused, leaves that much freed
 * memory in malloc's arenas: it is handed back to the system. */
#define KV_TRIM_KEYS 1000
#define KV_TRIM_BYTES (1u << 20)

struct app_metrics {
	struct metrics *registry;
	struct metric_family *http_requests;
	struct metric_family *http_duration;
	struct metric_family *consul_requests;
	struct metric_family *consul_registered;
	struct metric_family *config_reloads;
	struct metric_family *kv_index;
	struct metric_family *kv_refused;
	struct metric_family *build_info;
	struct metric_family *ready;
	struct metric_family *peer_requests;
	struct metric_family *peer_duration;
	struct metric_family *peer_instances;
	struct metric_family *peer_stale;
	struct metric_family *peer_circuit;
	struct metric_family *store_write_failures;
};

/* What one read of a KV prefix gave. */
struct kv_listing {
	struct consul_kv *pairs;
	size_t n;
	uint64_t index;              /* X-Consul-Index of the read */
	size_t bytes;                /* of its keys and values */
	bool refused;                /* over consul.kv_max_keys or kv_max_bytes:
					no pairs, only the index */
};

/* One watched KV prefix and the last good listing read from it. */
struct kv_source {
	struct app *app;
	const char *prefix;          /* NULL: not used (the node's prefix is
					config/shared/ itself) */
	struct kv_listing last;      /* the last listing within the caps */
	bool known;                  /* read at least once */
	bool refused;                /* its latest listing is over the caps */
	struct watch *watch;
};

struct app {
	const struct app_opts *opts;
	const struct config *cfg;    /* the boot config: static settings */
	struct config_store *store;  /* the config in force */
	pthread_mutex_t reload_lock; /* one reload at a time; guards kv[] */
	struct kv_source kv[2];      /* config/shared/, then the node's prefix */
	char *last_warnings;         /* the warnings of the last load, as lines
					cut in place; guarded by reload_lock */
	struct strmap last_warned;   /* those lines, borrowed from last_warnings */
	struct app_metrics m;
	struct users_repo *users_repo;
	struct users_service *users;
	struct orders_repo *orders_repo;
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

/* A boolean variable as Consul's tools read one (true/t/1, false/f/0, any
 * case); 'dflt' when unset or anything else. */
static bool env_bool(char *const *env, const char *name, bool dflt)
{
	const char *v = env_get(env, name);

	if (v && (strcasecmp(v, "true") == 0 || strcasecmp(v, "t") == 0 || strcmp(v, "1") == 0))
		return true;
	if (v && (strcasecmp(v, "false") == 0 || strcasecmp(v, "f") == 0 || strcmp(v, "0") == 0))
		return false;
	return dflt;
}

/* The agent client, with TLS set as Consul's own tools read it from the
 * environment: CONSUL_HTTP_SSL=true means https whatever the address says,
 * CONSUL_HTTP_SSL_VERIFY=false turns verification off. */
static struct consul *consul_from_config(const struct config *cfg, char *const *env, char *err,
					 size_t errlen)
{
	char address[512];
	struct consul_opts opts = {
		.address = cfg->consul_address,
		.token = cfg->consul_token,
		.tls = {env_get(env, "CONSUL_CACERT"), env_get(env, "CONSUL_CLIENT_CERT"),
			env_get(env, "CONSUL_CLIENT_KEY"), !env_bool(env, "CONSUL_HTTP_SSL_VERIFY", true)},
		.server_name = env_get(env, "CONSUL_TLS_SERVER_NAME"),
	};

	if (env_bool(env, "CONSUL_HTTP_SSL", false) && strncmp(cfg->consul_address, "http://", 7) == 0) {
		snprintf(address, sizeof(address), "https://%s", cfg->consul_address + 7);
		opts.address = address;
	}
	return consul_create(&opts, err, errlen);
}

/* The size of a listing's keys and values. */
static size_t kv_listing_bytes(const struct consul_kv *pairs, size_t n)
{
	size_t bytes = 0;

	for (size_t i = 0; i < n; i++)
		bytes += strlen(pairs[i].key) + (pairs[i].value ? strlen(pairs[i].value) : 0);
	return bytes;
}

static bool kv_listing_big(size_t n, size_t bytes)
{
	return n > KV_TRIM_KEYS || bytes > KV_TRIM_BYTES;
}

/* Hands the memory freed with a big listing back to the system: glibc
 * keeps freed memory in its arenas (the watch threads' arenas, where the
 * listings are parsed), so without this the RSS of a flood stays after
 * the keys are gone. */
static void kv_memory_trim(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

/* Reads one prefix, within the caps of 'base': a refused listing is
 * kv->refused with its index and no pairs, and one line in 'warnings'. */
static enum mn_err read_kv_prefix(const struct config *base, struct consul *c, struct httpc *h,
				  const char *prefix, struct kv_listing *kv, struct buf *warnings,
				  char *err, size_t errlen)
{
	enum mn_err ret;
	char why[160];

	ret = consul_kv_list(c, h, prefix, (size_t)base->consul_kv_max_bytes, &kv->pairs, &kv->n,
			     &kv->index, err, errlen);
	if (ret != MN_OK && ret != MN_TOO_LARGE)
		return ret;
	if (config_kv_listing_fits(base, kv->n, ret == MN_TOO_LARGE, why, sizeof(why))) {
		kv->bytes = kv_listing_bytes(kv->pairs, kv->n);
		return MN_OK;
	}
	consul_kv_free(kv->pairs, kv->n);
	kv->pairs = NULL;
	kv->n = 0;
	kv->refused = true;
	if (warnings)
		buf_printf(warnings, "kv listing of '%s' refused: %s; starting without the keys "
			   "of this prefix\n", prefix, why);
	return MN_OK;
}

/* Reads config/shared/ and the node's prefix (one listing when they are
 * the same) into kv[0] and kv[1]; on failure both are left empty. A
 * listing over the caps is refused (kv_listing.refused) with a line in
 * 'warnings': the other one is still used. */
static enum mn_err read_kv(const struct config *base, char *const *env, struct kv_listing kv[2],
			   struct buf *warnings, char *err, size_t errlen)
{
	const char *prefixes[2] = {"config/shared/", base->consul_kv_prefix};
	struct consul *c = consul_from_config(base, env, err, errlen);
	struct httpc *h = c ? consul_conn_create(c) : NULL;
	enum mn_err ret = MN_OK;

	memset(kv, 0, 2 * sizeof(*kv));
	if (c == NULL || h == NULL) {
		ret = c ? mn_error(err, errlen, MN_NOMEM, "out of memory") : MN_INVALID;
		goto out;
	}
	for (size_t i = 0; i < 2 && ret == MN_OK; i++) {
		if (i == 1 && strcmp(prefixes[1], prefixes[0]) == 0)
			break;
		ret = read_kv_prefix(base, c, h, prefixes[i], &kv[i], warnings, err, errlen);
	}
	if (ret != MN_OK) {
		for (size_t i = 0; i < 2; i++)
			consul_kv_free(kv[i].pairs, kv[i].n);
		memset(kv, 0, 2 * sizeof(*kv));
	}
out:
	if (c)
		consul_conn_destroy(c, h);
	consul_destroy(c);
	return ret;
}

/* The pairs of both listings as the config loader takes them, shared
 * first (a new array of *n borrowing the listings' strings), and the
 * highest index. NULL when out of memory. */
static struct config_kv_pair *kv_pairs(const struct kv_listing kv[2], size_t *n, uint64_t *index)
{
	struct config_kv_pair *pairs = calloc(kv[0].n + kv[1].n + 1, sizeof(*pairs));

	*n = 0;
	*index = 0;
	if (pairs == NULL)
		return NULL;
	for (size_t i = 0; i < 2; i++) {
		for (size_t j = 0; j < kv[i].n; j++)
			pairs[(*n)++] = (struct config_kv_pair){kv[i].pairs[j].key,
								kv[i].pairs[j].value};
		if (kv[i].index > *index)
			*index = kv[i].index;
	}
	return pairs;
}

/* app_load_config, keeping what KV gave in kv[2] for the caller to free;
 * *kv_read tells whether the agent answered. */
static enum mn_err load_config(const struct app_opts *opts, struct config **out,
			       struct buf *errors, struct buf *warnings, struct kv_listing kv[2],
			       bool *kv_read)
{
	struct config_sources src = {
		.file_path = opts->config_path,
		.file_optional = !opts->config_path_given,
		.environ = opts->environ,
	};
	struct config *base = NULL;
	struct config_kv_pair *pairs;
	char err[512];
	enum mn_err ret;

	/* Pass one, without KV, names the service, its KV prefix and the
	 * agent to ask; pass two layers KV in between file and environment. */
	memset(kv, 0, 2 * sizeof(*kv));
	*kv_read = false;
	ret = config_load(&src, &base, errors, NULL);
	if (ret != MN_OK)
		return ret;
	if (read_kv(base, opts->environ, kv, warnings, err, sizeof(err)) != MN_OK) {
		if (warnings)
			buf_printf(warnings, "consul kv not read from %s: %s\n", base->consul_address, err);
		*out = base;
		return MN_OK;
	}
	*kv_read = true;
	pairs = kv_pairs(kv, &src.n_kv, &src.kv_index);
	if (pairs == NULL) {
		ret = MN_NOMEM;
		goto out;
	}
	src.kv = pairs;
	ret = config_load(&src, out, errors, warnings);
	free(pairs);
out:
	config_destroy(base);
	return ret;
}

enum mn_err app_load_config(const struct app_opts *opts, struct config **out, struct buf *errors,
			    struct buf *warnings)
{
	struct kv_listing kv[2];
	bool kv_read;
	enum mn_err ret = load_config(opts, out, errors, warnings, kv, &kv_read);

	for (size_t i = 0; i < 2; i++)
		consul_kv_free(kv[i].pairs, kv[i].n);
	return ret;
}

json_t *app_config_json(const struct config *cfg)
{
	json_t *pending = json_array();

	for (size_t i = 0; pending && i < cfg->n_pending_restart; i++)
		json_array_append_new(pending, json_string(cfg->pending_restart[i]));
	return json_pack("{s:o, s:I, s:o}", "settings", config_to_json(cfg), "kv_index",
			 (json_int_t)cfg->kv_index, "pending_restart", pending);
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
			 double seconds, const char *request_id)
{
	struct app *app = ctx;
	char code[8];
	const char *m = method_label(method);
	const char *endpoint = route ? route : "unmatched";

	snprintf(code, sizeof(code), "%d", status);
	metric_inc(app->m.http_requests, (const char *[]){m, endpoint, code});
	metric_observe(app->m.http_duration, (const char *[]){m, endpoint}, seconds);
	log_debug("http", "%s %s %d %.3f ms request %s", m, endpoint, status, seconds * 1000.0,
		  request_id);
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

/* 0 closed, 1 half open, 2 open. Only circuits that are not closed have a
 * series: a mesh of 10,000 instances would otherwise make 10,000 of them. */
static void collect_circuit(void *ctx, const char *service, const char *instance,
			    const char *state)
{
	struct app *app = ctx;
	double v = strcmp(state, "open") == 0 ? 2 : strcmp(state, "half_open") == 0 ? 1 : 0;

	if (v > 0)
		metric_set(app->m.peer_circuit, (const char *[]){service, instance}, v);
}

static void collect_peer_view(void *ctx, const struct peer_snapshot *snap, uint64_t stale_ms)
{
	struct app *app = ctx;

	metric_set(app->m.peer_instances, (const char *[]){snap->service}, (double)snap->n);
	metric_set(app->m.peer_stale, (const char *[]){snap->service}, (double)stale_ms / 1000.0);
	peer_client_foreach_instance(snap, collect_circuit, app);
}

static void collect(struct metrics *m, void *ctx)
{
	struct app *app = ctx;
	json_t *scratch = json_object();

	(void)m;
	metric_set(app->m.consul_registered, NULL,
		   app->registrar && registrar_registered(app->registrar) ? 1 : 0);
	const struct config *cfg = config_store_get(app->store);

	metric_set(app->m.kv_index, NULL, (double)cfg->kv_index);
	config_store_put(app->store, cfg);
	metric_set(app->m.ready, NULL, scratch && app_ready(app, scratch) ? 1 : 0);
	json_decref(scratch);
	if (app->users_repo || app->orders_repo) {
		struct store_health sum = {0}, h;

		if (app->users_repo) {
			users_repo_health(app->users_repo, &h);
			store_health_add(&sum, &h);
		}
		if (app->orders_repo) {
			orders_repo_health(app->orders_repo, &h);
			store_health_add(&sum, &h);
		}
		for (int k = STORE_FAULT_NONE + 1; k < STORE_FAULT_COUNT; k++)
			metric_set_counter(app->m.store_write_failures,
					   (const char *[]){store_fault_label(k)},
					   (double)sum.write_failures[k]);
	}
	/* the series of services no longer followed and of circuits closed
	 * since go: only what is set now stays */
	metric_sweep_begin(app->m.peer_instances);
	metric_sweep_begin(app->m.peer_stale);
	metric_sweep_begin(app->m.peer_circuit);
	if (app->resolver)
		resolver_foreach(app->resolver, collect_peer_view, app);
	metric_sweep_end(app->m.peer_instances);
	metric_sweep_end(app->m.peer_stale);
	metric_sweep_end(app->m.peer_circuit);
}

static enum mn_err metrics_setup(struct app *app)
{
	static const char *const http_labels[] = {"method", "endpoint", "status"};
	static const char *const op_labels[] = {"op", "result"};
	static const char *const result_labels[] = {"result"};
	static const char *const version_labels[] = {"version"};
	static const char *const peer_labels[] = {"service", "outcome"};
	static const char *const circuit_labels[] = {"service", "instance"};
	static const char *const kind_labels[] = {"kind"};
	static const char *const prefix_labels[] = {"prefix"};
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
	/* labels: config/shared/ and the node's prefix, nothing else */
	m->kv_refused = metrics_gauge(m->registry, "meshnode_config_kv_listing_refused",
				      "1 while the latest KV listing of the prefix is over "
				      "consul.kv_max_keys or consul.kv_max_bytes (its last good "
				      "listing stays in force).",
				      1, prefix_labels);
	m->ready = metrics_gauge(m->registry, "meshnode_ready",
				 "1 while the node reports ready.", 0, NULL);
	m->build_info = metrics_gauge(m->registry, "meshnode_build_info",
				      "Build information; the value is always 1.", 1, version_labels);
	m->peer_requests = metrics_counter(m->registry, "meshnode_peer_requests_total",
					   "Attempts of calls to peer services, by service and outcome.",
					   2, peer_labels);
	m->peer_duration = metrics_histogram(m->registry, "meshnode_peer_request_duration_seconds",
					     "Time of attempts of calls to peer services.", 1,
					     peer_labels, metrics_http_buckets,
					     metrics_http_buckets_count);
	m->peer_instances = metrics_gauge(m->registry, "meshnode_peer_instances",
					  "Passing instances of a peer service in the node's view.", 1,
					  peer_labels);
	m->peer_stale = metrics_gauge(m->registry, "meshnode_peer_view_stale_seconds",
				      "How long the view of a peer service has been out of touch "
				      "with Consul (0 while the agent answers).",
				      1, peer_labels);
	m->peer_circuit = metrics_gauge(m->registry, "meshnode_peer_circuit_state",
					"Circuit of a peer instance: 0 closed, 1 half open, 2 open.",
					2, circuit_labels);
	m->store_write_failures = metrics_counter(
		m->registry, "meshnode_store_write_failures_total",
		"Writes the store could not make, by kind: disk_full, read_only, io.", 1,
		kind_labels);
	if (!m->http_requests || !m->http_duration || !m->consul_requests ||
	    !m->consul_registered || !m->config_reloads || !m->kv_index || !m->kv_refused ||
	    !m->ready ||
	    !m->build_info || !m->peer_requests || !m->peer_duration || !m->peer_instances ||
	    !m->peer_stale || !m->peer_circuit || !m->store_write_failures ||
	    metrics_register_process(m->registry) != MN_OK)
		return MN_NOMEM;
	metric_set(m->build_info, (const char *[]){MESHNODE_VERSION}, 1);
	for (size_t i = 0; i < 2; i++)
		if (app->kv[i].prefix)
			metric_set(m->kv_refused, (const char *[]){app->kv[i].prefix},
				   app->kv[i].refused ? 1 : 0);
	return metrics_on_collect(m->registry, collect, app);
}

/* ---- system endpoints ------------------------------------------------- */

static bool app_ready(void *ctx, json_t *body)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);
	json_t *pending = json_array();
	bool ok = true;
	char err[256];

	/* what an operator looks for: still ready in maintenance (Consul
	 * takes the node out of ?passing), and what waits for a restart */
	json_object_set_new(body, "maintenance", json_boolean(cfg->maintenance));
	for (size_t i = 0; pending && i < cfg->n_pending_restart; i++)
		json_array_append_new(pending, json_string(cfg->pending_restart[i]));
	json_object_set_new(body, "pending_restart", pending);
	config_store_put(app->store, cfg);
	if (atomic_load(&app->stopping)) {
		json_object_set_new(body, "reason", json_string("stopping"));
		ok = false;
	}
	if (app->users_repo || app->orders_repo) {
		char why[128] = "unavailable";
		bool store_ok = (!app->users_repo ||
				 users_repo_ping(app->users_repo, why, sizeof(why)) == MN_OK) &&
				(!app->orders_repo ||
				 orders_repo_ping(app->orders_repo, why, sizeof(why)) == MN_OK);

		json_object_set_new(body, "store", json_string(store_ok ? "ok" : why));
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
	const struct config *cfg = config_store_get(app->store);
	json_t *o = app_config_json(cfg);

	config_store_put(app->store, cfg);
	return o;
}

static enum mn_err app_metrics_text(void *ctx, struct buf *out)
{
	struct app *app = ctx;

	return metrics_render(app->m.registry, out);
}

/* ---- live configuration ------------------------------------------------ */

static void apply_log_settings(const struct config *cfg)
{
	enum log_level level;
	enum log_format format;

	if (log_level_parse(cfg->log_level, &level))
		log_set_level(level);
	if (log_format_parse(cfg->log_format, &format))
		log_set_format(format);
}

/* The next line of a buffer of messages, cut in place; NULL at the end and
 * for an empty buffer (whose data may be NULL). */
static char *next_line(char **cursor)
{
	char *line = *cursor, *nl;

	if (line == NULL || *line == '\0')
		return NULL;
	nl = strchr(line, '\n');
	if (nl) {
		*nl = '\0';
		*cursor = nl + 1;
	} else {
		*cursor = line + strlen(line);
	}
	return line;
}

/* Logs the lines of 'warnings' (taking its content) that the last load
 * did not give, at warn level, the others at debug: a refused value stays
 * in KV until someone fixes it, and is logged when it appears, not again
 * on every later reload. The lines become the ones the next load is
 * compared with (a hash set: linear in the number of lines). true when
 * some line is new. Called with reload_lock held, or before any thread. */
static bool warnings_log_new(struct app *app, struct buf *warnings)
{
	char *text = buf_steal(warnings, NULL);
	struct strmap seen;
	bool fresh = false;

	strmap_init(&seen);
	for (char *cur = text, *line; (line = next_line(&cur)) != NULL;) {
		if (strmap_get(&app->last_warned, line, NULL)) {
			log_debug("config", "%s (still)", line);
		} else {
			log_warn("config", "%s", line);
			fresh = true;
		}
		/* out of memory: the line is only logged again next time */
		strmap_put(&seen, line, 0);
	}
	strmap_release(&app->last_warned);
	free(app->last_warnings);
	app->last_warned = seen;
	app->last_warnings = text;
	return fresh;
}

static bool listed(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* Makes a new config in force: dynamic settings at once, static changes
 * reported (once each) as waiting for a restart. */
static void apply_config(struct app *app, const struct config *old, const struct config *next)
{
	apply_log_settings(next);
	if (app->registrar && next->maintenance != old->maintenance)
		registrar_set_maintenance(app->registrar, next->maintenance);
	for (size_t i = 0; i < next->n_pending_restart; i++)
		if (!listed(old->pending_restart, old->n_pending_restart, next->pending_restart[i]))
			log_warn("config", "'%s' changed; it is a static setting and takes effect "
				 "after a restart", next->pending_restart[i]);
}

/* Builds the whole configuration again from file, KV as last read and
 * environment, validates it against the config in force and publishes it.
 * Called with reload_lock held. */
static void reload_locked(struct app *app, const char *why)
{
	const struct kv_listing kv[2] = {app->kv[0].last, app->kv[1].last};
	struct config_kv_pair *pairs;
	uint64_t t0 = clock_monotonic_ns();
	struct buf errors, warnings;
	const struct config *old;
	struct config *next = NULL;
	uint64_t index;
	bool rejected;
	size_t n;

	pairs = kv_pairs(kv, &n, &index);
	if (pairs == NULL) {
		log_error("config", "out of memory reloading the configuration");
		return;
	}
	old = config_store_get(app->store);
	struct config_sources src = {
		.file_path = app->opts->config_path,
		.file_optional = !app->opts->config_path_given,
		.environ = app->opts->environ,
		.kv = pairs,
		.n_kv = n,
		.kv_index = index,
		.running = old,
	};
	buf_init(&errors, 1 << 16);
	buf_init(&warnings, 1 << 16);
	if (config_load(&src, &next, &errors, &warnings) != MN_OK) {
		/* A file that no longer loads (after SIGHUP): nothing changes. */
		for (char *cur = errors.data, *line; (line = next_line(&cur)) != NULL;)
			log_error("config", "reload (%s) refused: %s", why, line);
		metric_inc(app->m.config_reloads, (const char *[]){"rejected"});
		goto out;
	}
	/* A refused value is counted when it appears, like it is logged. */
	rejected = warnings_log_new(app, &warnings);
	metric_inc(app->m.config_reloads, (const char *[]){rejected ? "rejected" : "success"});
	log_info("config", "configuration reloaded (%s) at kv index %llu in %.1f ms", why,
		 (unsigned long long)index, (double)(clock_monotonic_ns() - t0) / 1e6);
	apply_config(app, old, next);
	config_store_publish(app->store, next);
out:
	config_store_put(app->store, old);
	buf_release(&errors);
	buf_release(&warnings);
	free(pairs);
}

/* Until every prefix has answered once, a reload would drop the values of
 * the silent one (read at startup) for a moment. */
static bool kv_all_known(const struct app *app)
{
	for (size_t i = 0; i < 2; i++)
		if (app->kv[i].prefix && !app->kv[i].known)
			return false;
	return true;
}

/* The latest listing of 'kv' is over the caps ('why'): it is refused whole
 * and the last good listing stays in force. Logged and counted once when
 * the prefix goes over; while it stays over, later listings only at debug
 * level. Called with reload_lock held. */
static void kv_refuse_locked(struct kv_source *kv, const char *why)
{
	struct app *app = kv->app;
	bool was_known = kv->known;

	if (!kv->refused) {
		log_warn("config", "kv listing of '%s' refused: %s; the configuration in force "
			 "stays", kv->prefix, why);
		metric_inc(app->m.config_reloads, (const char *[]){"rejected"});
		metric_set(app->m.kv_refused, (const char *[]){kv->prefix}, 1);
		kv->refused = true;
	} else {
		log_debug("config", "kv listing of '%s' still refused: %s", kv->prefix, why);
	}
	kv->known = true;
	/* a first answer, refused: the node goes on without this prefix */
	if (!was_known && kv_all_known(app))
		reload_locked(app, kv->prefix);
}

static void on_kv_change(void *ctx, const char *body, size_t len, uint64_t index, bool not_found)
{
	struct kv_source *kv = ctx;
	struct app *app = kv->app;
	struct consul_kv *pairs = NULL;
	size_t n = 0;
	bool trim;
	char err[256];

	if (!not_found && consul_kv_parse(body, len, &pairs, &n, err, sizeof(err)) != MN_OK) {
		log_warn("config", "kv listing of '%s' not understood: %s", kv->prefix, err);
		return;
	}
	pthread_mutex_lock(&app->reload_lock);
	trim = kv_listing_big(n, len) || kv_listing_big(kv->last.n, kv->last.bytes);
	if (!config_kv_listing_fits(app->cfg, n, false, err, sizeof(err))) {
		consul_kv_free(pairs, n);
		kv_refuse_locked(kv, err);
		goto out;
	}
	if (kv->refused) {
		log_info("config", "kv listing of '%s' accepted again (%zu keys)", kv->prefix, n);
		metric_set(app->m.kv_refused, (const char *[]){kv->prefix}, 0);
		kv->refused = false;
	}
	consul_kv_free(kv->last.pairs, kv->last.n);
	kv->last = (struct kv_listing){pairs, n, index, kv_listing_bytes(pairs, n), false};
	kv->known = true;
	if (kv_all_known(app))
		reload_locked(app, kv->prefix);
out:
	if (trim)
		kv_memory_trim();
	pthread_mutex_unlock(&app->reload_lock);
}

/* The watch could not read the listing whole: over consul.kv_max_bytes
 * (MN_TOO_LARGE). Other failures are the watch's own to report. */
static void on_kv_error(void *ctx, enum mn_err err, const char *msg)
{
	struct kv_source *kv = ctx;
	struct app *app = kv->app;
	char why[160];

	(void)msg;
	if (err != MN_TOO_LARGE)
		return;
	config_kv_listing_fits(app->cfg, 0, true, why, sizeof(why));
	pthread_mutex_lock(&app->reload_lock);
	kv_refuse_locked(kv, why);
	if (kv_listing_big(0, (size_t)app->cfg->consul_kv_max_bytes))
		kv_memory_trim();
	pthread_mutex_unlock(&app->reload_lock);
}

/* Starts following config/shared/ and the node's prefix. The last values
 * read stay in force while the agent is away. */
static enum mn_err watches_start(struct app *app)
{
	for (size_t i = 0; i < 2 && app->kv[i].prefix; i++) {
		char path[1024];

		snprintf(path, sizeof(path), "/v1/kv/%s?recurse=true", app->kv[i].prefix);
		app->kv[i].watch = watch_start(&(struct watch_opts){
			.consul = app->consul,
			.op = "kv_watch",
			.path = path,
			.start_index = app->kv[i].known ? app->kv[i].last.index : 0,
			.wait_ms = (uint64_t)app->cfg->consul_watch_wait_ms,
			.backoff_cap_ms = KV_WATCH_BACKOFF_CAP_MS,
			.max_response = (size_t)app->cfg->consul_kv_max_bytes,
			.on_change = on_kv_change,
			.on_error = on_kv_error,
			.ctx = &app->kv[i],
		});
		if (app->kv[i].watch == NULL)
			return MN_NOMEM;
	}
	return MN_OK;
}

/* SIGHUP: the file again, and a fresh read of KV. */
static void reload_on_signal(struct app *app)
{
	log_info("app", "SIGHUP received: reloading the file and consul kv");
	pthread_mutex_lock(&app->reload_lock);
	reload_locked(app, "SIGHUP");
	pthread_mutex_unlock(&app->reload_lock);
	for (size_t i = 0; i < 2; i++)
		if (app->kv[i].watch)
			watch_refresh(app->kv[i].watch);
}

/* ---- lifecycle -------------------------------------------------------- */

/* The repositories of the modules in service.modules, in one database. */
static enum mn_err store_open(struct app *app)
{
	bool memory = strcmp(app->cfg->database_driver, "memory") == 0;
	const char *path = app->cfg->database_path;
	char err[256];

	if (config_has_module(app->cfg, "users")) {
		app->users_repo = memory ? users_repo_memory_create()
					 : users_repo_sqlite_open(path, err, sizeof(err));
		if (app->users_repo == NULL)
			goto out_fail;
	}
	if (config_has_module(app->cfg, "orders")) {
		app->orders_repo = memory ? orders_repo_memory_create()
					  : orders_repo_sqlite_open(path, err, sizeof(err));
		if (app->orders_repo == NULL)
			goto out_fail;
	}
	if (!memory)
		log_info("store", "sqlite database '%s' open", path);
	return MN_OK;

out_fail:
	if (memory)
		log_error("store", "cannot create the in-memory store");
	else
		log_error("store", "cannot open '%s': %s", path, err);
	return memory ? MN_NOMEM : MN_IO;
}

/* peers.<name>.* are dynamic: each call reads the config in force. */
static const void *peer_settings_get(void *ctx, const char *service, struct peer_settings *s)
{
	struct app *app = ctx;
	const struct config *cfg = config_store_get(app->store);
	const struct config_peer *p = config_peer_get(cfg, service);

	*s = (struct peer_settings){
		.timeout_ms = (uint64_t)p->timeout_ms,
		.retries = (unsigned)p->retries,
		.lb = p->lb,
		.tag = p->tag,
		.breaker_failures = (unsigned)p->breaker_failures,
		.breaker_open_ms = (uint64_t)p->breaker_open_ms,
	};
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
		  config_peer_get(cfg, service)->name != NULL;

	config_store_put(app->store, cfg);
	return ok;
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
	app->peers = peer_client_create(NULL,
					&(struct peer_metrics){app->m.peer_requests,
							       app->m.peer_duration},
					NULL);
	if (app->peers == NULL)
		return MN_NOMEM;
	app->resolver = resolver_create(&(struct resolver_opts){
		.consul = app->consul,
		.wait_ms = (uint64_t)app->cfg->consul_watch_wait_ms,
		.backoff_cap_ms = KV_WATCH_BACKOFF_CAP_MS,
		.max_services = (size_t)app->cfg->consul_watch_max_services,
		.max_response = (size_t)app->cfg->consul_watch_max_bytes,
		.idle_ms = (uint64_t)app->cfg->consul_watch_idle_ms,
		.allowed = peer_allowed,
		.prepare = peer_prepare,
		.release = peer_release,
		.ctx = app,
	});
	if (app->resolver == NULL)
		return MN_NOMEM;
	peer_client_attach(app->peers, app->resolver);
	app->peer_settings = (struct peer_settings_source){peer_settings_get, peer_settings_put, app};
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
	app->peers_handlers = (struct peers_handlers){app->peers, &app->peer_settings};
	err = peers_handlers_register(app->router, &app->peers_handlers);
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
	if (config_has_module(app->cfg, "orders")) {
		app->users_peer_http = (struct users_peer_http){app->peers, &app->peer_settings,
								 "users"};
		app->users_peer = users_peer_http(&app->users_peer_http);
		app->orders = orders_service_create(app->orders_repo, &app->users_peer);
		if (app->orders == NULL)
			return MN_NOMEM;
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

/* Waits for SIGTERM or SIGINT (blocked in every thread, taken here);
 * SIGHUP reloads. */
static void wait_for_stop(struct app *app)
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
			reload_on_signal(app);
			continue;
		}
		log_info("app", "%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		return;
	}
}

static void app_teardown(struct app *app)
{
	for (size_t i = 0; i < 2; i++) {
		watch_stop(app->kv[i].watch);
		consul_kv_free(app->kv[i].last.pairs, app->kv[i].last.n);
	}
	registrar_destroy(app->registrar); /* the server is stopped: no reader left */
	/* the watches first: they build tables of the client's states */
	resolver_destroy(app->resolver);
	peer_client_destroy(app->peers);
	consul_destroy(app->consul);
	http_router_destroy(app->router);
	users_service_destroy(app->users);
	users_repo_destroy(app->users_repo);
	orders_service_destroy(app->orders);
	orders_repo_destroy(app->orders_repo);
	metrics_destroy(app->m.registry);
	if (app->store) {
		config_store_put(app->store, app->cfg);
		config_store_destroy(app->store);
	}
	strmap_release(&app->last_warned);
	free(app->last_warnings);
	pthread_mutex_destroy(&app->reload_lock);
}

int app_run(const struct app_opts *opts)
{
	struct app app = {.opts = opts};
	struct kv_listing startup_kv[2];
	struct config *loaded;
	bool kv_read;
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
	strmap_init(&app.last_warned);
	pthread_mutex_init(&app.reload_lock, NULL);
	/* The KV watches go on from this read rather than read again. */
	if (load_config(opts, &loaded, &errors, &warnings, startup_kv, &kv_read) != MN_OK) {
		for (size_t i = 0; i < 2; i++)
			consul_kv_free(startup_kv[i].pairs, startup_kv[i].n);
		fprintf(stderr, "%s", errors.data ? errors.data : "configuration error\n");
		code = 2;
		goto out;
	}
	for (size_t i = 0; i < 2; i++)
		app.kv[i] = (struct kv_source){.app = &app, .last = startup_kv[i], .known = kv_read,
					       .refused = startup_kv[i].refused};
	app.store = config_store_create(loaded);
	if (app.store == NULL) {
		log_error("app", "out of memory");
		goto out;
	}
	app.cfg = config_store_get(app.store);
	app.kv[0].prefix = "config/shared/";
	if (strcmp(app.cfg->consul_kv_prefix, app.kv[0].prefix) != 0)
		app.kv[1].prefix = app.cfg->consul_kv_prefix;
	apply_log_settings(app.cfg);
	warnings_log_new(&app, &warnings);
	if (startup_kv[0].refused || startup_kv[1].refused ||
	    kv_listing_big(startup_kv[0].n + startup_kv[1].n,
			   startup_kv[0].bytes + startup_kv[1].bytes))
		kv_memory_trim();
	log_info("app", "meshnode %s starting as '%s' (%s)", MESHNODE_VERSION, app.cfg->service_id,
		 app.cfg->service_name);

	app.consul = consul_from_config(app.cfg, opts->environ, err, sizeof(err));
	if (app.consul == NULL) {
		log_error("consul", "%s", err);
		goto out;
	}
	if (metrics_setup(&app) != MN_OK || store_open(&app) != MN_OK ||
	    peers_setup(&app) != MN_OK || routes_setup(&app) != MN_OK) {
		log_error("app", "cannot set up the node");
		goto out;
	}
	consul_set_observer(app.consul, observe_consul, &app);

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
		.observe = observe_http,
		.observe_ctx = &app,
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
	app.registrar = registrar_start(app.consul, &app.service, app.cfg->maintenance,
					REGISTER_BACKOFF_BASE_MS, REGISTER_BACKOFF_CAP_MS);
	if (app.registrar == NULL) {
		log_error("consul", "cannot start the registration thread");
		goto out_stop_server;
	}
	if (watches_start(&app) != MN_OK) {
		log_error("config", "cannot start the consul kv watches");
		goto out_stop_server;
	}
	if (app.cfg->consul_required && !registrar_wait(app.registrar, REQUIRED_REGISTRATION_MS)) {
		log_error("consul", "consul.required is set and the agent at %s did not accept the registration",
			  app.cfg->consul_address);
		goto out_stop_server;
	}

	wait_for_stop(&app);
	code = 0;
	atomic_store(&app.stopping, true); /* /ready turns 503 */
	http_server_drain(app.server);     /* new work is refused, keep-alive ends */
	for (size_t i = 0; i < 2; i++) {   /* no reload may reach the registrar now */
		watch_stop(app.kv[i].watch);
		app.kv[i].watch = NULL;
	}
	registrar_stop(app.registrar);     /* deregisters; /ready may still read it */

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
