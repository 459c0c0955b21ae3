#include "connect/authz.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/watch.h"
#include "core/hash.h"
#include "core/hashmap.h"
#include "core/log.h"

/* "<namespace>/<service>" */
#define KEY_MAX (SPIFFE_NAME_MAX + 1 + SPIFFE_SERVICE_MAX + 1)
/* An authorize answer: a boolean and a reason of at most
 * CONNECT_REASON_MAX bytes, each of which JSON may write as \uXXXX. */
#define AUTHORIZE_ANSWER_MAX (8 * CONNECT_REASON_MAX)
/* The match answer: the intentions naming the target, each under 1 KiB. */
#define MATCH_ANSWER_MAX CONNECT_ANSWER_MAX
#define MATCH_TIMEOUT_MS 5000
/* Idle agent connections kept for the checks (one per concurrent call). */
#define POOL_MAX 8

/* What the node remembers of one source: its decision while valid, what
 * was last logged of it and its metric label. */
struct authz_entry {
	char key[KEY_MAX];
	char source[SPIFFE_SERVICE_MAX + 1];
	struct authz_entry *older, *newer; /* insertion order */
	bool valid;			   /* a decision is stored */
	bool allowed;
	uint64_t expires;
	char *reason; /* while valid */
	bool logged;
	enum connect_authz_result last_logged;
	int label; /* index in labels, -1: "other" */
};

/* One authorize call in flight for a source, and who waits on it. */
struct authz_flight {
	struct authz_flight *next;
	char key[KEY_MAX];
	unsigned refs;
	bool done;
	struct connect_authz_decision d;
};

struct connect_authorizer {
	struct consul *consul;
	char *target;
	size_t capacity;
	uint64_t ttl_ms, grace_ms;
	long deadline_ms;
	bool (*fail_open)(void *ctx);
	void *fail_open_ctx;
	const struct mn_clock *clock;
	struct metric_family *metric;

	pthread_mutex_t lock;
	pthread_cond_t cond;	/* a flight landed */
	struct hashmap entries; /* struct authz_entry * by key */
	struct authz_entry *oldest, *newest;
	struct authz_flight *flights;
	struct httpc *pool[POOL_MAX];
	size_t n_pool;
	char labels[AUTHZ_METRIC_SOURCES_MAX][SPIFFE_SERVICE_MAX + 1];
	size_t n_labels;

	/* the watch's state, under lock */
	bool failing;	     /* an error came after the watch's last answer */
	bool blind;	     /* failing past the grace: nothing cached */
	uint64_t fail_since; /* clock: the first failure of the streak */
	uint64_t err_at_sys; /* system clock: the last failure */
	uint64_t settle_at;  /* clock: the second clear; 0: none */
	bool have_match;
	uint64_t match_hash;

	atomic_uint_fast64_t generation;
	atomic_uint_fast64_t due_at; /* clock: settle or grace end; 0: none */
	atomic_bool stopping;
	struct watch *watch;
	struct httpc *follow_h; /* the watch thread's, for the match reads */
	char *match_path;
};

const char *connect_authz_result_name(enum connect_authz_result r)
{
	switch (r) {
	case CONNECT_AUTHZ_ALLOW: return "allow";
	case CONNECT_AUTHZ_DENY: return "deny";
	case CONNECT_AUTHZ_ERROR_OPEN: return "error_open";
	case CONNECT_AUTHZ_ERROR_CLOSED: return "error_closed";
	}
	return "deny";
}

/* ---- the cache ------------------------------------------------------------ */

static bool entry_is(const void *entry, const void *key)
{
	return strcmp((*(struct authz_entry *const *)entry)->key, key) == 0;
}

static uint64_t key_hash(const struct connect_authorizer *a, const char *key)
{
	return hash_mix(hash_str(HASH_START ^ a->entries.seed, key));
}

static void entry_forget(struct authz_entry *e)
{
	free(e->reason);
	e->reason = NULL;
	e->valid = false;
}

static void entry_unlink(struct connect_authorizer *a, struct authz_entry *e)
{
	if (e->older)
		e->older->newer = e->newer;
	else
		a->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		a->newest = e->older;
}

static int label_index_locked(struct connect_authorizer *a, const char *source)
{
	for (size_t i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i], source) == 0)
			return (int)i;
	if (a->n_labels == AUTHZ_METRIC_SOURCES_MAX)
		return -1;
	memcpy(a->labels[a->n_labels], source, strlen(source) + 1);
	return (int)a->n_labels++;
}

/* The entry of 'key', made when missing (the oldest evicted at capacity);
 * NULL when out of memory. */
static struct authz_entry *entry_get_locked(struct connect_authorizer *a, const char *key,
					    const char *source)
{
	uint64_t h = key_hash(a, key);
	struct authz_entry **slot = hashmap_find(&a->entries, h, entry_is, key), *e;

	if (slot)
		return *slot;
	if (a->entries.n >= a->capacity) {
		struct authz_entry *old = a->oldest;

		slot = hashmap_find(&a->entries, key_hash(a, old->key), entry_is, old->key);
		hashmap_remove(&a->entries, slot);
		entry_unlink(a, old);
		entry_forget(old);
		free(old);
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	slot = hashmap_insert(&a->entries, h);
	if (slot == NULL) {
		free(e);
		return NULL;
	}
	*slot = e;
	memcpy(e->key, key, strlen(key) + 1);
	memcpy(e->source, source, strlen(source) + 1);
	e->label = label_index_locked(a, source);
	e->older = a->newest;
	if (a->newest)
		a->newest->newer = e;
	else
		a->oldest = e;
	a->newest = e;
	return e;
}

/* Drops every decision (the log state stays) and moves the generation on. */
static void bump_locked(struct connect_authorizer *a)
{
	for (struct authz_entry *e = a->oldest; e; e = e->newer)
		entry_forget(e);
	atomic_fetch_add(&a->generation, 1);
}

static void update_due_locked(struct connect_authorizer *a)
{
	uint64_t due = a->settle_at, grace_end = a->fail_since + a->grace_ms;

	if (a->failing && !a->blind && (due == 0 || grace_end < due))
		due = grace_end;
	atomic_store(&a->due_at, due ? due : 0);
}

/* The watch answered after its last failure. */
static bool watch_recovered_locked(struct connect_authorizer *a)
{
	uint64_t since_err = clock_monotonic_ms() - a->err_at_sys;

	return a->watch && watch_stale_ms(a->watch) < since_err;
}

/* What falls due with time: the settle's second clear, the end of the
 * grace of a failing watch, and the watch coming back. */
static void maintain_locked(struct connect_authorizer *a, uint64_t now)
{
	if (a->settle_at && now >= a->settle_at) {
		a->settle_at = 0;
		bump_locked(a);
	}
	if (a->failing && watch_recovered_locked(a)) {
		if (a->blind)
			log_info("connect",
				 "intentions of '%s' followed again: decisions cached again",
				 a->target);
		a->failing = a->blind = false;
	} else if (a->failing && !a->blind && now >= a->fail_since + a->grace_ms) {
		a->blind = true;
		bump_locked(a);
		log_warn("connect",
			 "intentions of '%s' not followed for %llu ms: cached decisions dropped, "
			 "every check asks the agent",
			 a->target, (unsigned long long)(now - a->fail_since));
	}
	update_due_locked(a);
}

/* ---- the watch ------------------------------------------------------------- */

/* The intentions changed, or may have: reads those that name the target and
 * moves the generation on when they differ from the last read. Watch thread. */
static void follow_match(struct connect_authorizer *a)
{
	struct httpc_response res;
	char err[256];
	enum mn_err e = MN_NOMEM;
	uint64_t h = 0;
	bool settle;

	if (a->follow_h == NULL)
		a->follow_h = consul_conn_create(a->consul);
	httpc_response_init(&res);
	if (a->follow_h)
		e = consul_call(a->consul, a->follow_h,
				&(struct consul_call){
					.op = "connect_intention_match",
					.method = "GET",
					.path = a->match_path,
					.timeout_ms = MATCH_TIMEOUT_MS,
					.max_response = MATCH_ANSWER_MAX,
					.cancel = &a->stopping,
				},
				&res, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "out of memory");
	if (e == MN_OK)
		h = watch_hash(res.body.data ? res.body.data : "", res.body.len);
	httpc_response_release(&res);
	if (atomic_load(&a->stopping))
		return;

	pthread_mutex_lock(&a->lock);
	a->failing = a->blind = false; /* the watch answered */
	settle = a->have_match;	       /* a change, not the first read */
	if (e != MN_OK) {
		/* something changed and what is not known: drop everything */
		log_warn("connect", "intentions of '%s' changed, cannot read them: %s", a->target,
			 err);
		a->have_match = false;
	} else if (a->have_match && h == a->match_hash) {
		update_due_locked(a);
		pthread_mutex_unlock(&a->lock);
		return;
	} else {
		log_info("connect", "intentions naming '%s' %s: cached decisions dropped",
			 a->target, a->have_match ? "changed" : "read");
		a->have_match = true;
		a->match_hash = h;
	}
	bump_locked(a);
	if (settle)
		a->settle_at = clock_now(a->clock) + AUTHZ_SETTLE_MS;
	update_due_locked(a);
	pthread_mutex_unlock(&a->lock);
}

static void on_change(void *ctx, const char *body, size_t len, uint64_t index, bool not_found)
{
	(void)body;
	(void)len;
	(void)index;
	(void)not_found;
	follow_match(ctx);
}

static void on_error(void *ctx, enum mn_err err, const char *msg)
{
	struct connect_authorizer *a = ctx;

	(void)msg; /* the watch logs its failures */
	if (err == MN_TOO_LARGE) {
		/* an answer all the same, at an index that may be new */
		follow_match(a);
		return;
	}
	pthread_mutex_lock(&a->lock);
	if (!a->failing) {
		a->failing = true;
		a->fail_since = clock_now(a->clock);
	}
	a->err_at_sys = clock_monotonic_ms();
	update_due_locked(a);
	pthread_mutex_unlock(&a->lock);
}

/* ---- create, destroy ---------------------------------------------------------- */

/* The watch's path: the intentions list filtered to those whose destination
 * is the target or "*", a superset of what the match answer holds. The
 * match endpoint itself blocks on ?index= but sends no X-Consul-Index in
 * Consul 1.8.7, so a watch cannot follow it; the list does. */
static char *watch_path_new(const char *target)
{
	char expr[2 * SPIFFE_SERVICE_MAX + 64], *esc, *path = NULL;

	snprintf(expr, sizeof(expr), "DestinationName == \"%s\" or DestinationName == \"*\"",
		 target);
	esc = httpc_escape(expr);
	if (esc && asprintf(&path, "/v1/connect/intentions?filter=%s", esc) < 0)
		path = NULL;
	free(esc);
	return path;
}

struct connect_authorizer *connect_authz_create(const struct connect_authz_opts *opts, char *err,
						size_t errlen)
{
	struct connect_authorizer *a;
	char *watch_path = NULL;

	if (opts->target == NULL ||
	    spiffe_service_problem(opts->target, strlen(opts->target)) != NULL) {
		mn_error(err, errlen, MN_INVALID,
			 "connect authz: target '%.*s' is not a service name", SPIFFE_SERVICE_MAX,
			 opts->target ? opts->target : "");
		return NULL;
	}
	if (opts->capacity > AUTHZ_CAPACITY_MAX) {
		mn_error(err, errlen, MN_INVALID, "connect authz: capacity %zu is over %d",
			 opts->capacity, AUTHZ_CAPACITY_MAX);
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		goto out_nomem;
	a->consul = opts->consul;
	a->capacity = opts->capacity ? opts->capacity : AUTHZ_CAPACITY_DEFAULT;
	a->ttl_ms = opts->ttl_ms ? opts->ttl_ms : AUTHZ_TTL_DEFAULT_MS;
	a->grace_ms = opts->stale_grace_ms ? opts->stale_grace_ms : AUTHZ_GRACE_DEFAULT_MS;
	a->deadline_ms = opts->deadline_ms > 0 ? opts->deadline_ms : AUTHZ_DEADLINE_DEFAULT_MS;
	a->fail_open = opts->fail_open;
	a->fail_open_ctx = opts->fail_open_ctx;
	a->clock = opts->clock ? opts->clock : &clock_system;
	a->metric = opts->metric;
	atomic_init(&a->generation, 1);
	atomic_init(&a->due_at, 0);
	atomic_init(&a->stopping, false);
	hashmap_init(&a->entries, sizeof(struct authz_entry *));
	a->target = strdup(opts->target);
	if (a->target == NULL)
		goto out_free_handle;
	if (asprintf(&a->match_path, "/v1/connect/intentions/match?by=destination&name=%s",
		     a->target) < 0) {
		a->match_path = NULL;
		goto out_free_target;
	}
	watch_path = watch_path_new(a->target);
	if (watch_path == NULL)
		goto out_free_match_path;
	if (hashmap_reserve(&a->entries, a->capacity) != MN_OK)
		goto out_free_watch_path;
	if (pthread_mutex_init(&a->lock, NULL) != 0)
		goto out_free_map;
	if (clock_cond_init(&a->cond) != 0)
		goto out_free_mutex;
	a->watch = watch_start(&(struct watch_opts){
		.consul = a->consul,
		.op = "connect_intentions_watch",
		.path = watch_path,
		.wait_ms = opts->watch_wait_ms ? opts->watch_wait_ms : AUTHZ_WATCH_WAIT_DEFAULT_MS,
		.min_interval_ms = opts->watch_min_interval_ms,
		.max_response = MATCH_ANSWER_MAX,
		.on_change = on_change,
		.on_error = on_error,
		.ctx = a,
	});
	if (a->watch == NULL)
		goto out_free_cond;
	free(watch_path);
	return a;

out_free_cond:
	pthread_cond_destroy(&a->cond);
out_free_mutex:
	pthread_mutex_destroy(&a->lock);
out_free_map:
	hashmap_release(&a->entries);
out_free_watch_path:
	free(watch_path);
out_free_match_path:
	free(a->match_path);
out_free_target:
	free(a->target);
out_free_handle:
	free(a);
out_nomem:
	mn_error(err, errlen, MN_NOMEM, "connect authz: out of memory");
	return NULL;
}

void connect_authz_destroy(struct connect_authorizer *a)
{
	struct authz_entry *e, *next;

	if (a == NULL)
		return;
	atomic_store(&a->stopping, true);
	watch_stop(a->watch);
	consul_conn_destroy(a->consul, a->follow_h);
	for (size_t i = 0; i < a->n_pool; i++)
		consul_conn_destroy(a->consul, a->pool[i]);
	for (e = a->oldest; e; e = next) {
		next = e->newer;
		entry_forget(e);
		free(e);
	}
	while (a->flights) {
		struct authz_flight *f = a->flights;

		a->flights = f->next;
		free(f);
	}
	hashmap_release(&a->entries);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a->match_path);
	free(a->target);
	free(a);
}

/* ---- checks ----------------------------------------------------------------- */

uint64_t connect_authz_generation(struct connect_authorizer *a)
{
	uint64_t due = atomic_load(&a->due_at);

	if (due && clock_now(a->clock) >= due) {
		pthread_mutex_lock(&a->lock);
		maintain_locked(a, clock_now(a->clock));
		pthread_mutex_unlock(&a->lock);
	}
	return atomic_load(&a->generation);
}

size_t connect_authz_sources(struct connect_authorizer *a)
{
	size_t n;

	pthread_mutex_lock(&a->lock);
	n = a->entries.n;
	pthread_mutex_unlock(&a->lock);
	return n;
}

void connect_authz_clear(struct connect_authorizer *a)
{
	pthread_mutex_lock(&a->lock);
	bump_locked(a);
	pthread_mutex_unlock(&a->lock);
}

static void set_reason(struct connect_authz_decision *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_reason(struct connect_authz_decision *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
}

/* No decision from the agent: connect.authz_fail_open decides. Without the
 * lock (the getter reads the configuration). */
static void decide_error(struct connect_authorizer *a, struct connect_authz_decision *d)
{
	bool open = a->fail_open && a->fail_open(a->fail_open_ctx);

	d->allowed = open;
	d->result = open ? CONNECT_AUTHZ_ERROR_OPEN : CONNECT_AUTHZ_ERROR_CLOSED;
	d->kept = false;
}

/* POST /v1/agent/connect/authorize: MN_OK with the agent's decision in *d,
 * else the error with why in d->reason. */
static enum mn_err ask_agent(struct connect_authorizer *a, struct httpc *h, const char *uri,
			     const char *serial, struct connect_authz_decision *d)
{
	struct httpc_response res;
	struct connect_authz answer;
	char err[CONNECT_REASON_MAX];
	enum mn_err e;
	json_t *req;
	char *body;

	req = json_pack("{s:s, s:s, s:s}", "Target", a->target, "ClientCertURI", uri,
			"ClientCertSerial", serial ? serial : "");
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (body == NULL) {
		set_reason(d, "no decision: out of memory");
		return MN_NOMEM;
	}
	httpc_response_init(&res);
	e = consul_call(a->consul, h,
			&(struct consul_call){
				.op = "connect_authorize",
				.method = "POST",
				.path = "/v1/agent/connect/authorize",
				.body = body,
				.body_len = strlen(body),
				.timeout_ms = a->deadline_ms,
				.max_response = AUTHORIZE_ANSWER_MAX,
			},
			&res, err, sizeof(err));
	free(body);
	if (e == MN_OK)
		e = connect_authz_parse(res.body.data ? res.body.data : "", res.body.len, &answer,
					err, sizeof(err));
	httpc_response_release(&res);
	if (e != MN_OK) {
		set_reason(d, "no decision from the agent: %s", err);
		return e;
	}
	d->allowed = answer.authorized;
	d->result = answer.authorized ? CONNECT_AUTHZ_ALLOW : CONNECT_AUTHZ_DENY;
	memcpy(d->reason, answer.reason, sizeof(d->reason));
	return MN_OK;
}

/* The count, and the line when the source's result changed. */
static void note_locked(struct connect_authorizer *a, struct authz_entry *e, const char *source,
			const char *uri, const struct connect_authz_decision *d)
{
	const char *label = e ? (e->label >= 0 ? a->labels[e->label] : "other") : "other";
	const char *result = connect_authz_result_name(d->result);

	metric_inc(a->metric, (const char *[]){label, result});
	if (e && e->logged && e->last_logged == d->result)
		return;
	if (e) {
		e->logged = true;
		e->last_logged = d->result;
	}
	if (d->result == CONNECT_AUTHZ_ALLOW)
		log_info("connect", "caller '%s' (%s) of '%s': allow: %s", source, uri, a->target,
			 d->reason);
	else
		log_warn("connect", "caller '%s' (%s) of '%s': %s: %s", source, uri, a->target,
			 result, d->reason);
}

static struct authz_flight *flight_find_locked(struct connect_authorizer *a, const char *key)
{
	for (struct authz_flight *f = a->flights; f; f = f->next)
		if (strcmp(f->key, key) == 0)
			return f;
	return NULL;
}

static void flight_put_locked(struct connect_authorizer *a, struct authz_flight *f)
{
	struct authz_flight **p;

	if (--f->refs > 0)
		return;
	for (p = &a->flights; *p != f; p = &(*p)->next)
		;
	*p = f->next;
	free(f);
}

/* Waits on another caller's call; false when it did not land in time. */
static bool flight_join_locked(struct connect_authorizer *a, struct authz_flight *f,
			       struct connect_authz_decision *out)
{
	struct timespec deadline = clock_deadline_ms((uint64_t)a->deadline_ms);
	bool landed;

	f->refs++;
	while (!f->done)
		if (pthread_cond_timedwait(&a->cond, &a->lock, &deadline) != 0 && !f->done)
			break;
	landed = f->done;
	if (landed) {
		*out = f->d;
		out->cached = false;
		out->joined = true;
	}
	flight_put_locked(a, f);
	return landed;
}

static struct httpc *pool_take_locked(struct connect_authorizer *a)
{
	return a->n_pool ? a->pool[--a->n_pool] : NULL;
}

/* Gives 'h' back; returns it when the pool is full (to be destroyed). */
static struct httpc *pool_put_locked(struct connect_authorizer *a, struct httpc *h)
{
	if (h == NULL || a->n_pool == POOL_MAX)
		return h;
	a->pool[a->n_pool++] = h;
	return NULL;
}

/* A call of our own for 'key', shared with whoever joins it. Lock held on
 * entry and on return (released around the call). */
static void flight_lead_locked(struct connect_authorizer *a, const char *key, const char *source,
			       const char *uri, const char *serial,
			       struct connect_authz_decision *out)
{
	struct authz_flight *f = calloc(1, sizeof(*f));
	uint64_t gen0 = atomic_load(&a->generation);
	struct httpc *h = pool_take_locked(a), *extra;
	enum mn_err e = MN_NOMEM;

	memset(out, 0, sizeof(*out));
	if (f) {
		memcpy(f->key, key, strlen(key) + 1);
		f->refs = 1;
		f->next = a->flights;
		a->flights = f;
	}
	pthread_mutex_unlock(&a->lock);

	if (h == NULL)
		h = consul_conn_create(a->consul);
	if (h)
		e = ask_agent(a, h, uri, serial, out);
	else
		set_reason(out, "no decision: out of memory");
	if (e != MN_OK)
		decide_error(a, out);

	pthread_mutex_lock(&a->lock);
	extra = pool_put_locked(a, h);
	out->generation = atomic_load(&a->generation);
	/* An answer given while the intentions changed may predate the change;
	 * one given while they cannot be followed may be overtaken unseen. */
	if (e == MN_OK && !a->failing && !a->blind && out->generation == gen0) {
		struct authz_entry *en = entry_get_locked(a, key, source);
		char *reason = strdup(out->reason);

		if (en && reason) {
			entry_forget(en);
			en->valid = true;
			en->allowed = out->allowed;
			en->reason = reason;
			en->expires = clock_now(a->clock) + a->ttl_ms;
			out->kept = true;
		} else {
			free(reason);
		}
	}
	if (f) {
		f->d = *out;
		f->done = true;
		pthread_cond_broadcast(&a->cond);
		flight_put_locked(a, f);
	}
	if (extra) {
		pthread_mutex_unlock(&a->lock);
		consul_conn_destroy(a->consul, extra);
		pthread_mutex_lock(&a->lock);
	}
}

/* The caller is a service identity and its URI names it: else why not. */
static const char *caller_problem(const struct spiffe_id *caller, const char *uri)
{
	struct spiffe_id parsed;
	size_t len;

	if (caller == NULL || caller->kind != SPIFFE_SERVICE)
		return "not a service identity";
	if (uri == NULL || (len = strnlen(uri, SPIFFE_URI_MAX + 1)) > SPIFFE_URI_MAX)
		return "no certificate URI, or one too long";
	if (spiffe_parse(uri, len, &parsed, NULL, 0) != MN_OK)
		return "its certificate URI is not a service identity";
	if (strcmp(parsed.ns, caller->ns) != 0 || strcmp(parsed.service, caller->service) != 0)
		return "its certificate URI names another service";
	return NULL;
}

bool connect_authz_check(struct connect_authorizer *a, const struct spiffe_id *caller,
			 const char *caller_uri, const char *serial,
			 struct connect_authz_decision *out)
{
	const char *problem = caller_problem(caller, caller_uri);
	char key[KEY_MAX];
	struct authz_entry *e, **slot;
	struct authz_flight *f;
	uint64_t now;

	memset(out, 0, sizeof(*out));
	if (problem) {
		out->result = CONNECT_AUTHZ_DENY;
		out->generation = atomic_load(&a->generation);
		set_reason(out, "caller refused: %s", problem);
		metric_inc(a->metric, (const char *[]){"other", "deny"});
		log_debug("connect", "caller of '%s' refused: %s", a->target, problem);
		return false;
	}
	snprintf(key, sizeof(key), "%s/%s", caller->ns, caller->service);

	pthread_mutex_lock(&a->lock);
	now = clock_now(a->clock);
	maintain_locked(a, now);
	slot = hashmap_find(&a->entries, key_hash(a, key), entry_is, key);
	e = slot ? *slot : NULL;
	if (e && e->valid && now < e->expires && !a->blind) {
		out->allowed = e->allowed;
		out->result = e->allowed ? CONNECT_AUTHZ_ALLOW : CONNECT_AUTHZ_DENY;
		out->cached = true;
		out->kept = true;
		out->generation = atomic_load(&a->generation);
		memcpy(out->reason, e->reason, strlen(e->reason) + 1);
	} else if ((f = flight_find_locked(a, key)) != NULL) {
		if (!flight_join_locked(a, f, out)) {
			pthread_mutex_unlock(&a->lock);
			set_reason(out, "no decision from the agent within %ld ms", a->deadline_ms);
			decide_error(a, out);
			out->joined = true;
			pthread_mutex_lock(&a->lock);
			out->generation = atomic_load(&a->generation);
		}
	} else {
		flight_lead_locked(a, key, caller->service, caller_uri, serial, out);
	}
	e = entry_get_locked(a, key, caller->service);
	note_locked(a, e, caller->service, caller_uri, out);
	pthread_mutex_unlock(&a->lock);
	return out->allowed;
}
