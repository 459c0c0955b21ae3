#include "config/live.h"

#include <pthread.h>
#include <stdatomic.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/kv.h"
#include "consul/watch.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/strmap.h"
#include "core/worker.h"

/* The agent is local: an agent that comes back must find the KV followed
 * within a second or two, so retries are capped at one second. */
#define KV_WATCH_BACKOFF_CAP_MS 1000
/* A KV listing this large, once replaced or refused, leaves that much freed
 * memory in malloc's arenas: it is handed back to the system. */
#define KV_TRIM_KEYS 1000
#define KV_TRIM_BYTES (1u << 20)
/* One reload logs at most this many changed settings, then a count: a KV
 * import of thousands of keys is a few lines, not thousands. */
#define CHANGE_LINES_MAX 50
/* The KV reads at start and on SIGHUP, both prefixes together: a local
 * agent answers in milliseconds; one that accepts and never answers must
 * neither hold the start (the node then starts from file and environment
 * and the watches bring KV in when the agent answers, as with an agent
 * that is down) nor a reload (the listings last read stay). */
#define KV_START_TIMEOUT_MS 1000
#define KV_RELOAD_TIMEOUT_MS 2000
/* How long config_live_stop() waits for a reload in progress: its reads
 * are cancelled and the file is never read blocking, so only the rebuild
 * itself (bounded by the caps) is left. */
#define RELOADER_JOIN_MS 1000

/* What one read of a KV prefix gave. */
struct kv_listing {
	struct consul_kv *pairs;
	size_t n;
	uint64_t index;              /* X-Consul-Index of the read */
	size_t bytes;                /* of its keys and values */
	bool refused;                /* over consul.kv_max_keys or kv_max_bytes:
					no pairs, only the index */
	char why[160];               /* when refused, why */
};

/* One watched KV prefix and the last good listing read from it. */
struct kv_source {
	struct config_live *live;
	const char *prefix;          /* NULL: not used (the node's prefix is
					config/shared/ itself) */
	struct kv_listing last;      /* the last listing within the caps */
	bool known;                  /* read at least once */
	bool refused;                /* its latest listing is over the caps */
	struct watch *watch;
};

struct config_live {
	struct config_live_opts opts;
	struct config_store *store;  /* the config in force */
	const struct config *boot;   /* the first config: static settings */
	pthread_mutex_t lock;        /* one reload at a time; guards what follows */
	struct config_file_layer *file; /* the file as last loaded */
	struct kv_source kv[2];      /* config/shared/, then the node's prefix */
	bool kv_read;                /* the first load read KV */
	char kv_error[512];          /* why it did not */
	char *last_warnings;         /* the warnings of the last load, as lines
					cut in place */
	struct strmap last_warned;   /* those lines, borrowed from last_warnings */
	struct consul *consul;       /* borrowed, from config_live_follow() */
	struct metric_family *reloads;
	struct metric_family *kv_refused;
	/* the reload thread: SIGHUPs are requests it takes, coalesced */
	pthread_mutex_t req_lock;    /* guards what follows, never held long */
	struct worker reloader;      /* started by the first request, stopped
					by config_live_stop(); its cancel flag
					aborts the reload's reads */
	bool reload_pending;
	bool abandoned;              /* the reloader did not end in time */
};

/* ---- KV listings ------------------------------------------------------- */

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

/* true when the two listings hold the same keys and values. */
static bool kv_listing_same(const struct consul_kv *a, size_t na, const struct consul_kv *b,
			    size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		if (strcmp(a[i].key, b[i].key) != 0)
			return false;
		if ((a[i].value == NULL) != (b[i].value == NULL) ||
		    (a[i].value && strcmp(a[i].value, b[i].value) != 0))
			return false;
	}
	return true;
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
 * kv->refused with its index, no pairs and kv->why. */
static enum mn_err read_kv_prefix(const struct config *base, struct consul *c, struct httpc *h,
				  const char *prefix, long timeout_ms, const atomic_bool *cancel,
				  struct kv_listing *kv, char *err, size_t errlen)
{
	enum mn_err ret;

	memset(kv, 0, sizeof(*kv));
	ret = consul_kv_list_within(c, h, prefix, (size_t)base->consul_kv_max_bytes, timeout_ms,
				    cancel, &kv->pairs, &kv->n, &kv->index, err, errlen);
	if (ret != MN_OK && ret != MN_TOO_LARGE)
		return ret;
	if (config_kv_listing_fits(base, kv->n, ret == MN_TOO_LARGE, kv->why, sizeof(kv->why))) {
		kv->bytes = kv_listing_bytes(kv->pairs, kv->n);
		return MN_OK;
	}
	consul_kv_free(kv->pairs, kv->n);
	kv->pairs = NULL;
	kv->n = 0;
	kv->refused = true;
	return MN_OK;
}

/* Reads config/shared/ and the node's prefix of 'base' (one listing when
 * they are the same) into kv[0] and kv[1] through 'c' (NULL: a client made
 * for this read, from 'env', over 'transport'); on failure both are left
 * empty. A listing over the caps is kv[i].refused, with a line in
 * 'warnings' when not NULL: the other one is still used. */
static enum mn_err read_kv(const struct config *base, struct consul *c, char *const *env,
			   const struct httpc_transport *transport, struct kv_listing kv[2],
			   struct buf *warnings, uint64_t timeout_ms, const atomic_bool *cancel,
			   char *err, size_t errlen)
{
	const char *prefixes[2] = {"config/shared/", base->consul_kv_prefix};
	uint64_t deadline = clock_monotonic_ns() / 1000000 + timeout_ms;
	struct consul *own = NULL;
	struct httpc *h = NULL;
	enum mn_err ret = MN_OK;

	memset(kv, 0, 2 * sizeof(*kv));
	if (c == NULL)
		c = own = consul_create_env_transport(base->consul_address, base->consul_token,
						      env, transport, err, errlen);
	if (c == NULL)
		return MN_INVALID;
	h = consul_conn_create(c);
	if (h == NULL) {
		ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < 2 && ret == MN_OK; i++) {
		if (i == 1 && strcmp(prefixes[1], prefixes[0]) == 0)
			break;
		uint64_t now = clock_monotonic_ns() / 1000000;

		if (now >= deadline) {
			ret = mn_error(err, errlen, MN_TIMEOUT, "no answer within %llu ms",
				       (unsigned long long)timeout_ms);
			break;
		}
		ret = read_kv_prefix(base, c, h, prefixes[i], (long)(deadline - now), cancel,
				     &kv[i], err, errlen);
		if (ret == MN_OK && kv[i].refused && warnings)
			buf_printf(warnings, "kv listing of '%s' refused: %s; starting without "
				   "the keys of this prefix\n", prefixes[i], kv[i].why);
	}
	if (ret != MN_OK) {
		for (size_t i = 0; i < 2; i++)
			consul_kv_free(kv[i].pairs, kv[i].n);
		memset(kv, 0, 2 * sizeof(*kv));
	}
	consul_conn_destroy(c, h);
out:
	consul_destroy(own);
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

/* ---- warnings and what changed ----------------------------------------- */

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

/* Takes the lines of 'warnings' (its content) as the ones the next load is
 * compared with (a hash set: linear in the number of lines); when 'log',
 * logs those the last load did not give at warn level, the others at debug:
 * a refused value stays in KV until someone fixes it, and is logged when it
 * appears, not again on every later reload. true when some line is new.
 * Called with the lock held, or before any thread. */
static bool warnings_remember(struct config_live *live, struct buf *warnings, bool log)
{
	char *text = buf_steal(warnings, NULL);
	struct strmap seen;
	bool fresh = false;

	strmap_init(&seen);
	for (char *cur = text, *line; (line = next_line(&cur)) != NULL;) {
		if (strmap_get(&live->last_warned, line, NULL)) {
			if (log)
				log_debug("config", "%s (still)", line);
		} else {
			if (log)
				log_warn("config", "%s", line);
			fresh = true;
		}
		/* out of memory: the line is only logged again next time */
		strmap_put(&seen, line, 0);
	}
	strmap_release(&live->last_warned);
	free(live->last_warnings);
	live->last_warned = seen;
	live->last_warnings = text;
	return fresh;
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

static bool listed(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* Logs a reload: one summary line, then what changed, one line per
 * setting, and the static settings newly waiting for a restart. */
static void log_reload(const struct config *old, const struct config *next, const char *why,
		       uint64_t index, uint64_t t0)
{
	struct buf lines;
	size_t changed;

	buf_init(&lines, 1 << 16);
	changed = config_changes(old, next, &lines, CHANGE_LINES_MAX);
	log_info("config", "configuration reloaded (%s) at kv index %llu in %.1f ms: %zu "
		 "setting%s changed", why, (unsigned long long)index,
		 (double)(clock_monotonic_ns() - t0) / 1e6, changed, changed == 1 ? "" : "s");
	for (char *cur = lines.data, *line; (line = next_line(&cur)) != NULL;)
		log_info("config", "%s", line);
	buf_release(&lines);
	for (size_t i = 0; i < next->n_pending_restart; i++)
		if (!listed(old->pending_restart, old->n_pending_restart, next->pending_restart[i]))
			log_warn("config", "'%s' changed; it is a static setting and takes effect "
				 "after a restart", next->pending_restart[i]);
}

static void count_reload(struct config_live *live, const char *result)
{
	if (live->reloads)
		metric_inc(live->reloads, (const char *[]){result});
}

/* ---- reload ------------------------------------------------------------ */

/* Builds the whole configuration again from the file as last loaded, KV as
 * last read and the environment, validates it against the config in force
 * and publishes it. Called with the lock held. */
static void reload_locked(struct config_live *live, const char *why)
{
	const struct kv_listing kv[2] = {live->kv[0].last, live->kv[1].last};
	struct config_kv_pair *pairs;
	uint64_t t0 = clock_monotonic_ns();
	struct buf errors, warnings;
	const struct config *old;
	struct config *next = NULL;
	enum log_level level;
	uint64_t index;
	size_t n;
	bool rejected;

	pairs = kv_pairs(kv, &n, &index);
	if (pairs == NULL) {
		log_error("config", "out of memory reloading the configuration");
		return;
	}
	old = config_store_get(live->store);
	struct config_sources src = {
		.file = live->file,
		.environ = live->opts.environ,
		.kv = pairs,
		.n_kv = n,
		.kv_index = index,
		.running = old,
	};
	buf_init(&errors, 1 << 16);
	buf_init(&warnings, 1 << 16);
	if (config_load(&src, &next, &errors, &warnings) != MN_OK) {
		/* the file as loaded or the environment is wrong for a new
		 * value of a setting they feed: nothing changes */
		for (char *cur = errors.data, *line; (line = next_line(&cur)) != NULL;)
			log_error("config", "reload (%s) refused: %s", why, line);
		count_reload(live, "rejected");
		goto out;
	}
	/* a refused value is counted when it appears, like it is logged */
	rejected = warnings_remember(live, &warnings, true);
	count_reload(live, rejected ? "rejected" : "success");
	/* the reload is logged under the more verbose of the two levels: the
	 * change that makes the log quieter is still written */
	if (log_level_parse(next->log_level, &level) && level < log_get_level()) {
		apply_log_settings(next);
		log_reload(old, next, why, index, t0);
	} else {
		log_reload(old, next, why, index, t0);
		apply_log_settings(next);
	}
	if (live->opts.apply)
		live->opts.apply(live->opts.ctx, old, next);
	config_store_publish(live->store, next);
out:
	config_store_put(live->store, old);
	buf_release(&errors);
	buf_release(&warnings);
	free(pairs);
}

/* Until every prefix has answered once, a reload would drop the values of
 * the silent one (read at startup) for a moment. */
static bool kv_all_known(const struct config_live *live)
{
	for (size_t i = 0; i < 2; i++)
		if (live->kv[i].prefix && !live->kv[i].known)
			return false;
	return true;
}

static void kv_refused_gauge(struct config_live *live, const char *prefix, bool refused)
{
	if (live->kv_refused)
		metric_set(live->kv_refused, (const char *[]){prefix}, refused ? 1 : 0);
}

/* The latest listing of 'kv' is over the caps ('why'): it is refused whole
 * and the last good listing stays in force. Logged and counted once when
 * the prefix goes over; while it stays over, later listings only at debug
 * level. true when a reload is due (a first answer, refused: the node goes
 * on without this prefix). Called with the lock held. */
static bool kv_refuse_locked(struct kv_source *kv, const char *why)
{
	struct config_live *live = kv->live;
	bool was_known = kv->known;

	if (!kv->refused) {
		log_warn("config", "kv listing of '%s' refused: %s; the configuration in force "
			 "stays", kv->prefix, why);
		count_reload(live, "rejected");
		kv_refused_gauge(live, kv->prefix, true);
		kv->refused = true;
	} else {
		log_debug("config", "kv listing of '%s' still refused: %s", kv->prefix, why);
	}
	kv->known = true;
	return !was_known && kv_all_known(live);
}

/* A listing within the caps becomes the one in force for its prefix
 * (taking 'pairs'). true when a reload is due: it differs from the last
 * one, or it is the prefix's first. Called with the lock held. */
static bool kv_accept_locked(struct kv_source *kv, struct consul_kv *pairs, size_t n,
			     uint64_t index)
{
	struct config_live *live = kv->live;
	bool was_known = kv->known;

	if (kv->refused) {
		log_info("config", "kv listing of '%s' accepted again (%zu keys)", kv->prefix, n);
		kv_refused_gauge(live, kv->prefix, false);
		kv->refused = false;
	}
	kv->known = true;
	/* the same keys and values: nothing to rebuild (a SIGHUP read the
	 * listing a watch then delivers, an index that moved elsewhere) */
	if (was_known && kv_listing_same(kv->last.pairs, kv->last.n, pairs, n)) {
		consul_kv_free(pairs, n);
		kv->last.index = index;
		return false;
	}
	consul_kv_free(kv->last.pairs, kv->last.n);
	kv->last = (struct kv_listing){.pairs = pairs, .n = n, .index = index,
				       .bytes = kv_listing_bytes(pairs, n)};
	return kv_all_known(live);
}

static void on_kv_change(void *ctx, const char *body, size_t len, uint64_t index, bool not_found)
{
	struct kv_source *kv = ctx;
	struct config_live *live = kv->live;
	struct consul_kv *pairs = NULL;
	size_t n = 0;
	bool trim, due;
	char err[256];

	if (!not_found && consul_kv_parse(body, len, &pairs, &n, err, sizeof(err)) != MN_OK) {
		log_warn("config", "kv listing of '%s' not understood: %s", kv->prefix, err);
		return;
	}
	pthread_mutex_lock(&live->lock);
	trim = kv_listing_big(n, len) || kv_listing_big(kv->last.n, kv->last.bytes);
	if (!config_kv_listing_fits(live->boot, n, false, err, sizeof(err))) {
		consul_kv_free(pairs, n);
		due = kv_refuse_locked(kv, err);
	} else {
		due = kv_accept_locked(kv, pairs, n, index);
	}
	if (due)
		reload_locked(live, kv->prefix);
	if (trim)
		kv_memory_trim();
	pthread_mutex_unlock(&live->lock);
}

/* The watch could not read the listing whole: over consul.kv_max_bytes
 * (MN_TOO_LARGE). Other failures are the watch's own to report. */
static void on_kv_error(void *ctx, enum mn_err err, const char *msg)
{
	struct kv_source *kv = ctx;
	struct config_live *live = kv->live;
	char why[160];

	(void)msg;
	if (err != MN_TOO_LARGE)
		return;
	config_kv_listing_fits(live->boot, 0, true, why, sizeof(why));
	pthread_mutex_lock(&live->lock);
	if (kv_refuse_locked(kv, why))
		reload_locked(live, kv->prefix);
	if (kv_listing_big(0, (size_t)live->boot->consul_kv_max_bytes))
		kv_memory_trim();
	pthread_mutex_unlock(&live->lock);
}

/* ---- the engine -------------------------------------------------------- */

enum mn_err config_live_create(const struct config_live_opts *opts, struct config_live **out,
			       struct buf *errors, struct buf *warnings)
{
	struct config_live *live = calloc(1, sizeof(*live));
	struct config *base = NULL, *cfg = NULL;
	struct kv_listing kv[2] = {{0}};
	struct config_kv_pair *pairs = NULL;
	struct buf own, first;
	enum mn_err ret;
	char err[512];

	*out = NULL;
	if (live == NULL)
		return MN_NOMEM;
	live->opts = *opts;
	pthread_mutex_init(&live->lock, NULL);
	pthread_mutex_init(&live->req_lock, NULL);
	if (worker_init(&live->reloader, &live->req_lock, NULL) != MN_OK) {
		pthread_mutex_destroy(&live->req_lock);
		pthread_mutex_destroy(&live->lock);
		free(live);
		return MN_NOMEM;
	}
	strmap_init(&live->last_warned);
	buf_init(&own, 1 << 16);
	buf_init(&first, 1 << 16);
	struct config_sources src = {.environ = opts->environ};

	ret = config_file_layer_read(opts->file_path, opts->file_optional, &live->file, errors);
	if (ret != MN_OK)
		goto fail;
	src.file = live->file;
	/* Pass one, without KV, names the service, its KV prefix and the
	 * agent to ask; pass two layers KV in between file and environment. */
	ret = config_load(&src, &base, errors, &first);
	if (ret != MN_OK)
		goto fail;
	if (read_kv(base, NULL, opts->environ, opts->transport, kv, &own, KV_START_TIMEOUT_MS,
		    opts->cancel, err, sizeof(err)) != MN_OK) {
		/* pass one is the configuration: its warnings are the load's */
		memcpy(live->kv_error, err, sizeof(live->kv_error));
		if (first.len)
			buf_append(&own, first.data, first.len);
		buf_printf(&own, "consul kv not read from %s: %s\n", base->consul_address, err);
		cfg = base;
		base = NULL;
	} else {
		live->kv_read = true;
		pairs = kv_pairs(kv, &src.n_kv, &src.kv_index);
		if (pairs == NULL) {
			ret = MN_NOMEM;
			goto fail;
		}
		src.kv = pairs;
		ret = config_load(&src, &cfg, errors, &own);
		if (ret != MN_OK)
			goto fail;
	}
	live->store = config_store_create(cfg);
	if (live->store == NULL) {
		config_destroy(cfg);
		ret = MN_NOMEM;
		goto fail;
	}
	live->boot = config_store_get(live->store);
	live->kv[0].prefix = "config/shared/";
	if (strcmp(live->boot->consul_kv_prefix, live->kv[0].prefix) != 0)
		live->kv[1].prefix = live->boot->consul_kv_prefix;
	for (size_t i = 0; i < 2; i++) {
		live->kv[i].live = live;
		live->kv[i].last = kv[i];
		live->kv[i].last.refused = false;
		live->kv[i].known = live->kv_read;
		live->kv[i].refused = kv[i].refused;
	}
	apply_log_settings(live->boot);
	if (warnings && own.len)
		buf_append(warnings, own.data, own.len);
	warnings_remember(live, &own, false);
	if (kv[0].refused || kv[1].refused ||
	    kv_listing_big(kv[0].n + kv[1].n, kv[0].bytes + kv[1].bytes))
		kv_memory_trim();
	free(pairs);
	config_destroy(base);
	buf_release(&first);
	*out = live;
	return MN_OK;
fail:
	for (size_t i = 0; i < 2; i++)
		consul_kv_free(kv[i].pairs, kv[i].n);
	free(pairs);
	config_destroy(base);
	buf_release(&own);
	buf_release(&first);
	config_live_destroy(live);
	return ret;
}

struct config_store *config_live_store(struct config_live *live)
{
	return live->store;
}

void config_live_describe(const struct config_live *live, struct buf *out)
{
	const char *path = config_file_layer_path(live->file);

	if (config_file_layer_found(live->file))
		buf_printf(out, "file %s: %zu keys\n", path, config_file_layer_count(live->file));
	else
		buf_printf(out, "file %s: not there, defaults used\n", path);
	if (!live->kv_read) {
		buf_printf(out, "consul kv at %s: not read (%s)\n", live->boot->consul_address,
			   live->kv_error);
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		const struct kv_source *kv = &live->kv[i];

		if (kv->prefix == NULL)
			continue;
		if (kv->refused)
			buf_printf(out, "consul kv %s at %s: refused (over the caps)\n", kv->prefix,
				   live->boot->consul_address);
		else
			buf_printf(out, "consul kv %s at %s: %zu keys, index %llu\n", kv->prefix,
				   live->boot->consul_address, kv->last.n,
				   (unsigned long long)kv->last.index);
	}
}

bool config_live_content_trouble(const struct config_live *live)
{
	return live->boot->n_warnings > 0 || live->kv[0].refused || live->kv[1].refused;
}

enum mn_err config_live_metrics(struct config_live *live, struct metrics *registry)
{
	static const char *const result_labels[] = {"result"};
	static const char *const prefix_labels[] = {"prefix"};

	live->reloads = metrics_counter(registry, "meshnode_config_reloads_total",
					"Configuration reloads, by result.", 1, result_labels);
	/* labels: config/shared/ and the node's prefix, nothing else */
	live->kv_refused = metrics_gauge(registry, "meshnode_config_kv_listing_refused",
					 "1 while the latest KV listing of the prefix is over "
					 "consul.kv_max_keys or consul.kv_max_bytes (its last good "
					 "listing stays in force).",
					 1, prefix_labels);
	if (live->reloads == NULL || live->kv_refused == NULL)
		return MN_NOMEM;
	pthread_mutex_lock(&live->lock);
	for (size_t i = 0; i < 2; i++)
		if (live->kv[i].prefix)
			kv_refused_gauge(live, live->kv[i].prefix, live->kv[i].refused);
	pthread_mutex_unlock(&live->lock);
	return MN_OK;
}

enum mn_err config_live_follow(struct config_live *live, struct consul *consul)
{
	live->consul = consul;
	for (size_t i = 0; i < 2 && live->kv[i].prefix; i++) {
		char path[1024];

		snprintf(path, sizeof(path), "/v1/kv/%s?recurse=true", live->kv[i].prefix);
		live->kv[i].watch = watch_start(&(struct watch_opts){
			.consul = consul,
			.op = "kv_watch",
			.path = path,
			.start_index = live->kv[i].known ? live->kv[i].last.index : 0,
			.wait_ms = (uint64_t)live->boot->consul_watch_wait_ms,
			.backoff_cap_ms = KV_WATCH_BACKOFF_CAP_MS,
			.max_response = (size_t)live->boot->consul_kv_max_bytes,
			.on_change = on_kv_change,
			.on_error = on_kv_error,
			.ctx = &live->kv[i],
		});
		if (live->kv[i].watch == NULL)
			return MN_NOMEM;
	}
	return MN_OK;
}

void config_live_reload(struct config_live *live)
{
	struct config_file_layer *file = NULL;
	struct kv_listing kv[2];
	struct buf errors;
	bool kv_ok;
	char err[512];

	/* the reads happen outside the lock: a watch may deliver meanwhile */
	buf_init(&errors, 1 << 16);
	if (config_file_layer_read(live->opts.file_path, live->opts.file_optional, &file,
				   &errors) != MN_OK) {
		if (atomic_load(&live->reloader.cancel)) {
			/* stopping meanwhile (a read held up by a stalled file
			 * system): the metrics may be gone, nothing is touched */
			buf_release(&errors);
			return;
		}
		for (char *cur = errors.data, *line; (line = next_line(&cur)) != NULL;)
			log_error("config", "reload (SIGHUP) refused: %s", line);
		log_error("config", "the configuration in force stays; fix the file and send "
			  "SIGHUP again");
		pthread_mutex_lock(&live->lock);
		count_reload(live, "rejected");
		pthread_mutex_unlock(&live->lock);
		buf_release(&errors);
		return;
	}
	buf_release(&errors);
	if (atomic_load(&live->reloader.cancel)) {
		config_file_layer_free(file);
		return;
	}
	kv_ok = live->consul &&
		read_kv(live->boot, live->consul, live->opts.environ, NULL, kv, NULL,
			KV_RELOAD_TIMEOUT_MS, &live->reloader.cancel, err, sizeof(err)) == MN_OK;
	if (live->consul && !kv_ok && !atomic_load(&live->reloader.cancel))
		log_warn("config", "SIGHUP: consul kv not read again (%s); the listings last "
			 "read stay", err);

	pthread_mutex_lock(&live->lock);
	if (atomic_load(&live->reloader.cancel)) {
		/* stopping: nothing is published any more */
		pthread_mutex_unlock(&live->lock);
		config_file_layer_free(file);
		for (size_t i = 0; kv_ok && i < 2; i++)
			consul_kv_free(kv[i].pairs, kv[i].n);
		return;
	}
	config_file_layer_free(live->file);
	live->file = file;
	for (size_t i = 0; kv_ok && i < 2; i++) {
		struct kv_source *src = &live->kv[i];

		if (src->prefix == NULL)
			continue;
		if (kv[i].refused)
			kv_refuse_locked(src, kv[i].why);
		else
			kv_accept_locked(src, kv[i].pairs, kv[i].n, kv[i].index);
		kv[i].pairs = NULL;
		kv[i].n = 0;
	}
	/* one reload, whatever changed */
	reload_locked(live, "SIGHUP");
	pthread_mutex_unlock(&live->lock);
}

/* A SIGHUP waits for the reloader. req_lock held. */
static bool reload_wanted(void *ctx)
{
	return ((struct config_live *)ctx)->reload_pending;
}

static void *reloader_main(void *arg)
{
	struct config_live *live = arg;

	pthread_mutex_lock(&live->req_lock);
	while (worker_wait_locked(&live->reloader, WORKER_FOREVER, reload_wanted, live) !=
	       WORKER_STOPPING) {
		/* every SIGHUP until now is served by this one reload */
		live->reload_pending = false;
		pthread_mutex_unlock(&live->req_lock);
		config_live_reload(live);
		pthread_mutex_lock(&live->req_lock);
	}
	pthread_mutex_unlock(&live->req_lock);
	return NULL;
}

enum mn_err config_live_request_reload(struct config_live *live)
{
	enum mn_err ret = MN_OK;

	pthread_mutex_lock(&live->req_lock);
	if (worker_stopping(&live->reloader))
		goto out;
	if (!live->reloader.started &&
	    worker_start(&live->reloader, reloader_main, live) != MN_OK) {
		ret = MN_NOMEM;
		goto out;
	}
	if (live->reload_pending)
		log_info("config", "a reload is already waiting: this SIGHUP joins it");
	live->reload_pending = true;
	pthread_cond_broadcast(&live->reloader.cond);
out:
	pthread_mutex_unlock(&live->req_lock);
	return ret;
}

bool config_live_stop(struct config_live *live)
{
	if (live == NULL)
		return true;
	worker_stop(&live->reloader);
	for (size_t i = 0; i < 2; i++) {
		watch_stop(live->kv[i].watch);
		live->kv[i].watch = NULL;
	}
	if (!worker_join(&live->reloader, RELOADER_JOIN_MS)) {
		/* it publishes nothing any more (cancel is set); what it may
		 * still touch is never freed */
		log_warn("config", "the reload in progress did not end within %d ms; left behind",
			 RELOADER_JOIN_MS);
		live->abandoned = true;
	}
	return !live->abandoned;
}

void config_live_destroy(struct config_live *live)
{
	if (live == NULL)
		return;
	config_live_stop(live);
	if (live->abandoned)
		return; /* the process is about to exit */
	for (size_t i = 0; i < 2; i++)
		consul_kv_free(live->kv[i].last.pairs, live->kv[i].last.n);
	if (live->store) {
		config_store_put(live->store, live->boot);
		config_store_destroy(live->store);
	}
	config_file_layer_free(live->file);
	strmap_release(&live->last_warned);
	free(live->last_warnings);
	pthread_mutex_destroy(&live->lock);
	worker_release(&live->reloader);
	pthread_mutex_destroy(&live->req_lock);
	free(live);
}
