#include "peers/resolver.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/dns.h"
#include "consul/watch.h"
#include "core/log.h"
#include "core/worker.h"

#define DEFAULT_FIRST_WAIT_MS 2000
#define DEFAULT_MAX_SERVICES 32
#define DEFAULT_MAX_RESPONSE (64u << 20)
#define NAME_MAX_LEN 128
#define SWEEP_EVERY_MS 1000
/* Refused instances logged one line each, per answer; then a count. */
#define REJECTED_LINES_MAX 5

/* The instances of one answer, in the order snapshots use them: the
 * passing ones, then the others, then those in maintenance (never used),
 * each group in Consul's order. Shared by the snapshots made of one answer:
 * a changed panic threshold publishes the same instances again. */
struct inst_set {
	atomic_uint refs;
	struct consul_instance *v;
	size_t n;	   /* all of them, maintenance included */
	size_t registered; /* those not in maintenance */
	size_t passing;
};

struct snapshot {
	struct peer_snapshot pub;     /* first: callers see only this */
	atomic_uint refs;
	struct resolver *r;
	char *service;
	char *tag;
	struct inst_set *set; /* NULL before Consul's first answer */
	unsigned threshold;   /* the panic threshold it was decided with */
};

/* One followed service. */
struct followed {
	struct resolver *r;
	char *service;
	char *tag;
	struct snapshot *current;     /* under r->lock; never NULL */
	uint64_t first_deadline;      /* first users wait until then */
	atomic_bool used;             /* a resolver_get since the last sweep */
	uint64_t used_ms;             /* when a sweep last saw it used (r->lock) */
	struct watch *watch;          /* discovery through blocking queries, */
	struct dns_watch *dns;        /* or through Consul's DNS interface */
	bool connect;                 /* Connect endpoints: /v1/health/connect,
					 <name>.connect.consul */
	uint64_t id;                  /* tells it from a later follower of the
					 same service */
	const char *why_stopped;      /* set when it leaves r->list */
	struct followed *next;
};

struct resolver {
	struct consul *consul;
	const struct mn_clock *clock;
	uint64_t first_wait_ms, wait_ms, backoff_cap_ms, idle_ms;
	size_t max_services, max_response;
	char *dns_server;             /* NULL: no DNS discovery */
	uint64_t dns_refresh_ms;
	bool (*allowed)(void *ctx, const char *service);
	unsigned (*panic_threshold)(void *ctx, const char *service);
	void *(*prepare)(void *ctx, const struct peer_snapshot *s);
	void (*release)(void *ctx, void *prepared);
	void *ctx;
	pthread_mutex_t lock;
	struct worker sweeper;        /* the sweeper's thread; its condition
					 also says a first answer arrived, or
					 the sweeper has work */
	struct followed *list;        /* followed now */
	size_t n_followed;
	uint64_t next_id;
	struct followed *retired;     /* left the list; the sweeper stops them */
};

bool resolver_name_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

bool resolver_panic(size_t passing, size_t registered, unsigned threshold)
{
	if (threshold > 100)
		threshold = 100;
	return threshold > 0 && registered > 0 && passing * 100 < (size_t)threshold * registered;
}

static void inst_set_put(struct inst_set *set)
{
	if (set && atomic_fetch_sub(&set->refs, 1) == 1) {
		consul_instances_free(set->v, set->n);
		free(set);
	}
}

/* The parsed instances 'v' (n of them, taken: freed on failure too) as a
 * new set; NULL when out of memory. */
static struct inst_set *inst_set_take(struct consul_instance *v, size_t n)
{
	struct inst_set *set = calloc(1, sizeof(*set));
	struct consul_instance *sorted = malloc((n ? n : 1) * sizeof(*sorted));
	size_t k = 0;

	if (set == NULL || sorted == NULL) {
		free(set);
		free(sorted);
		consul_instances_free(v, n);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!v[i].maintenance && v[i].passing)
			sorted[k++] = v[i];
	set->passing = k;
	for (size_t i = 0; i < n; i++)
		if (!v[i].maintenance && !v[i].passing)
			sorted[k++] = v[i];
	set->registered = k;
	for (size_t i = 0; i < n; i++)
		if (v[i].maintenance)
			sorted[k++] = v[i];
	free(v); /* the instances moved, the array goes */
	atomic_init(&set->refs, 1);
	set->v = sorted;
	set->n = n;
	return set;
}

/* The panic threshold of 'service' in force. */
static unsigned threshold_of(struct resolver *r, const char *service)
{
	return r->panic_threshold ? r->panic_threshold(r->ctx, service) : 0;
}

static void snapshot_free(struct snapshot *s)
{
	if (s->pub.prepared && s->r->release)
		s->r->release(s->r->ctx, s->pub.prepared);
	inst_set_put(s->set);
	free(s->service);
	free(s->tag);
	free(s);
}

void resolver_put(const struct peer_snapshot *ps)
{
	struct snapshot *s = (struct snapshot *)ps;

	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		snapshot_free(s);
}

/* A snapshot of 'set' (NULL: none yet; its reference taken, dropped on
 * failure too) in panic or not as decided with 'threshold'; NULL when out
 * of memory. */
static struct snapshot *snapshot_new(struct resolver *r, const char *service, const char *tag,
				     struct inst_set *set, unsigned threshold, uint64_t index,
				     uint64_t now, bool known)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	bool panic;

	if (s == NULL)
		goto out_set;
	s->r = r;
	s->service = strdup(service);
	s->tag = strdup(tag);
	if (s->service == NULL || s->tag == NULL)
		goto out_free;
	s->set = set;
	s->threshold = threshold;
	atomic_init(&s->refs, 1);
	panic = set && resolver_panic(set->passing, set->registered, threshold);
	s->pub = (struct peer_snapshot){
		.service = s->service,
		.tag = s->tag,
		.inst = set ? set->v : NULL,
		.n = set ? (panic ? set->registered : set->passing) : 0,
		/* with panic off (threshold 0) an operator wants the passing
		 * ones only */
		.reserve = set && !panic && threshold ? set->registered - set->passing : 0,
		.passing = set ? set->passing : 0,
		.registered = set ? set->registered : 0,
		.panic = panic,
		.index = index,
		.changed_ms = now,
		.known = known,
	};
	return s;

out_free:
	free(s->service);
	free(s->tag);
	free(s);
out_set:
	inst_set_put(set);
	return NULL;
}

/* The work proportional to the mesh happens here, once per snapshot on
 * the watch or sweep thread, never on a call. false when out of memory
 * (s released). */
static bool snapshot_prepare(struct resolver *r, struct snapshot *s)
{
	if (s->pub.n + s->pub.reserve && r->prepare &&
	    (s->pub.prepared = r->prepare(r->ctx, &s->pub)) == NULL) {
		log_error("peers", "out of memory updating '%s'", s->service);
		resolver_put(&s->pub);
		return false;
	}
	return true;
}

/* One line when a service enters panic and one when it leaves it, however
 * many answers it takes. */
static void log_panic_change(const struct snapshot *old, const struct snapshot *next)
{
	const struct peer_snapshot *s = &next->pub;

	if (s->panic && !old->pub.panic)
		log_warn("peers",
			 "service '%s'%s%s in panic: %zu of %zu instances passing, below "
			 "peers.%s.panic_threshold (%u%%); calling all %zu until enough pass again",
			 s->service, *s->tag ? " tag " : "", s->tag, s->passing, s->registered,
			 s->service, next->threshold, s->n);
	else if (!s->panic && old->pub.panic)
		log_info("peers",
			 "service '%s'%s%s out of panic: %zu of %zu instances passing "
			 "(peers.%s.panic_threshold %u%%); calling the passing ones again",
			 s->service, *s->tag ? " tag " : "", s->tag, s->passing, s->registered,
			 s->service, next->threshold);
}

/* ---- watch callbacks (on the watch thread) ----------------------------- */

/* One line per refused instance, the first few; then how many more. */
static void log_rejected(const struct followed *f, char *lines)
{
	size_t shown = 0, more = 0;

	for (char *line = lines, *nl; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (shown < REJECTED_LINES_MAX) {
			log_warn("peers", "service '%s': %s; instance refused", f->service, line);
			shown++;
		} else {
			more++;
		}
		if (nl == NULL)
			break;
	}
	if (more)
		log_warn("peers", "service '%s': %zu more instances refused", f->service, more);
}

/* Makes 'next' f's current snapshot (taking its reference) unless f's
 * current one is no longer 'expected' (NULL: whichever it is). Lock held.
 * Returns the snapshot replaced (the caller's reference now), or NULL when
 * next was not published (and is still the caller's). */
static struct snapshot *swap_locked(struct followed *f, struct snapshot *next,
				    const struct snapshot *expected)
{
	struct snapshot *old = f->current;

	if (expected && old != expected)
		return NULL;
	f->current = next;
	pthread_cond_broadcast(&f->r->sweeper.cond);
	return old;
}

/* Publishes the instances of 'set' (taken) at 'index' as f's snapshot and
 * logs it; t0 is when the answer arrived (monotonic ns). */
static void publish(struct followed *f, struct inst_set *set, uint64_t index, uint64_t t0)
{
	struct resolver *r = f->r;
	struct snapshot *next, *old;
	char away[64] = "";

	next = snapshot_new(r, f->service, f->tag, set, threshold_of(r, f->service), index,
			    clock_now(r->clock), true);
	if (next == NULL) {
		log_error("peers", "out of memory updating '%s'", f->service);
		return;
	}
	next->pub.connect = f->connect;
	if (!snapshot_prepare(r, next))
		return;
	/* a reference of our own for the lines below: a sweep may replace
	 * and free next as soon as the lock is let go */
	atomic_fetch_add(&next->refs, 1);
	pthread_mutex_lock(&r->lock);
	old = swap_locked(f, next, NULL);
	pthread_mutex_unlock(&r->lock);
	if (set->n > set->registered)
		snprintf(away, sizeof(away), " (%zu in maintenance left out)",
			 set->n - set->registered);
	log_info("peers",
		 "service '%s'%s%s: %zu of %zu instance%s passing%s%s at %s %llu "
		 "(parsed and published in %.1f ms)",
		 f->service, *f->tag ? " tag " : "", f->tag, set->passing, set->registered,
		 set->registered == 1 ? "" : "s", away, next->pub.panic ? ", in panic" : "",
		 f->dns ? (f->connect ? "Connect DNS answer" : "DNS answer")
			: (f->connect ? "Connect index" : "index"), (unsigned long long)index,
		 (double)(clock_monotonic_ns() - t0) / 1e6);
	log_panic_change(old, next);
	resolver_put(&old->pub);
	resolver_put(&next->pub);
}

static void on_health_change(void *ctx, const char *body, size_t len, uint64_t index,
			     bool not_found)
{
	struct followed *f = ctx;
	struct consul_instance *inst = NULL;
	struct inst_set *set;
	struct buf rejected;
	uint64_t t0 = clock_monotonic_ns();
	size_t n = 0;
	char err[256];

	buf_init(&rejected, 1 << 14);
	if (!not_found && consul_health_parse(body, len, &inst, &n, &rejected, err, sizeof(err)) !=
				  MN_OK) {
		log_warn("peers", "health answer for '%s' not understood: %s", f->service, err);
		goto out;
	}
	log_rejected(f, rejected.data);
	if ((set = inst_set_take(inst, n)) == NULL) {
		log_error("peers", "out of memory updating '%s'", f->service);
		goto out;
	}
	publish(f, set, index, t0);
out:
	buf_release(&rejected);
}

/* A DNS answer that changed the instances: every one of them passes (the
 * agent's DNS answers with those only), so there is no panic. */
static void on_dns_change(void *ctx, struct consul_instance *inst, size_t n, uint64_t index)
{
	struct followed *f = ctx;
	uint64_t t0 = clock_monotonic_ns();
	struct inst_set *set = inst_set_take(inst, n);

	if (set == NULL) {
		log_error("peers", "out of memory updating '%s'", f->service);
		return;
	}
	publish(f, set, index, t0);
}

/* An answer over max_response: the last view stays, and its staleness
 * grows (watch_stale_ms); other failures the watch logs itself. */
static void on_health_error(void *ctx, enum mn_err err, const char *msg)
{
	struct followed *f = ctx;

	if (err == MN_TOO_LARGE)
		log_warn("peers", "health answer for '%s' refused: %s; the last view stays",
			 f->service, msg);
}

/* ---- following and letting go ------------------------------------------ */

static void followed_free(struct followed *f)
{
	if (f->current)
		resolver_put(&f->current->pub);
	free(f->service);
	free(f->tag);
	free(f);
}

static struct followed *find_locked(struct resolver *r, const char *service)
{
	for (struct followed *f = r->list; f; f = f->next)
		if (strcmp(f->service, service) == 0)
			return f;
	return NULL;
}

/* Takes f off the list for the sweeper to stop. Lock held. */
static void retire_locked(struct resolver *r, struct followed *f, const char *why)
{
	struct followed **pp;

	for (pp = &r->list; *pp && *pp != f; pp = &(*pp)->next)
		;
	if (*pp == NULL)
		return;
	*pp = f->next;
	r->n_followed--;
	f->why_stopped = why;
	f->next = r->retired;
	r->retired = f;
	pthread_cond_broadcast(&r->sweeper.cond);
}

/* Stops the watches of a list taken off the resolver, then frees them. */
static size_t stop_all(struct followed *f)
{
	size_t n = 0;

	for (struct followed *next; f; f = next, n++) {
		next = f->next;
		watch_stop(f->watch);
		dns_watch_stop(f->dns);
		if (f->why_stopped)
			log_info("peers", "stopped following service '%s'%s%s: %s", f->service,
				 *f->tag ? " tag " : "", f->tag, f->why_stopped);
		followed_free(f);
	}
	return n;
}

/* Publishes again, decided anew, the snapshot of each followed service
 * whose panic its threshold now decides otherwise: the same instances and
 * index, a new table. A changed threshold so applies within a sweep, not
 * at the next answer, which may be minutes away. */
static void sweep_panic(struct resolver *r)
{
	struct snapshot **snaps;
	uint64_t *ids;
	size_t n = 0;

	if (r->panic_threshold == NULL)
		return;
	/* the callback reads the configuration: asked without the lock,
	 * about references taken under it */
	pthread_mutex_lock(&r->lock);
	snaps = calloc(r->n_followed + 1, sizeof(*snaps));
	ids = calloc(r->n_followed + 1, sizeof(*ids));
	for (struct followed *f = r->list; snaps && ids && f; f = f->next) {
		if (f->current->pub.registered == 0)
			continue;
		snaps[n] = f->current;
		atomic_fetch_add(&f->current->refs, 1);
		ids[n++] = f->id;
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		struct snapshot *s = snaps[i], *next, *old = NULL;
		unsigned threshold = threshold_of(r, s->service);
		struct followed *f;

		/* the threshold turned 0 or from 0 changes the reserve too */
		if (resolver_panic(s->pub.passing, s->pub.registered, threshold) == s->pub.panic &&
		    (threshold == 0) == (s->threshold == 0))
			goto next_one;
		atomic_fetch_add(&s->set->refs, 1);
		next = snapshot_new(r, s->service, s->tag, s->set, threshold, s->pub.index,
				    clock_now(r->clock), true);
		if (next)
			next->pub.connect = s->pub.connect;
		if (next == NULL || !snapshot_prepare(r, next))
			goto next_one;
		atomic_fetch_add(&next->refs, 1);
		pthread_mutex_lock(&r->lock);
		/* an answer may have come meanwhile: it was decided with the
		 * threshold in force and wins */
		f = find_locked(r, s->service);
		if (f && f->id == ids[i])
			old = swap_locked(f, next, s);
		pthread_mutex_unlock(&r->lock);
		if (old) {
			log_panic_change(old, next);
			resolver_put(&old->pub);
		} else {
			resolver_put(&next->pub); /* the reference swap_locked did not take */
		}
		resolver_put(&next->pub);
	next_one:
		resolver_put(&s->pub);
	}
	free(snaps);
	free(ids);
}

size_t resolver_sweep(struct resolver *r)
{
	uint64_t now = clock_now(r->clock);
	struct followed *f, *next, *gone;
	size_t n = 0, i = 0;
	char **names;

	/* The allowed callback reads the configuration: ask it without the
	 * resolver's lock, about a copy of the names. */
	pthread_mutex_lock(&r->lock);
	names = calloc(r->n_followed + 1, sizeof(*names));
	for (f = r->list; names && f; f = f->next)
		if ((names[n] = strdup(f->service)) != NULL)
			n++;
	pthread_mutex_unlock(&r->lock);
	for (i = 0; names && i < n; i++) {
		if (r->allowed == NULL || r->allowed(r->ctx, names[i])) {
			free(names[i]);
			names[i] = NULL;
		}
	}
	pthread_mutex_lock(&r->lock);
	for (f = r->list; f; f = next) {
		next = f->next;
		if (atomic_exchange(&f->used, false))
			f->used_ms = now;
		if (r->idle_ms && now > f->used_ms && now - f->used_ms >= r->idle_ms) {
			retire_locked(r, f, "idle");
			continue;
		}
		for (i = 0; names && i < n; i++)
			if (names[i] && strcmp(names[i], f->service) == 0)
				break;
		if (names && i < n)
			retire_locked(r, f, "no longer a peer of this node");
	}
	gone = r->retired;
	r->retired = NULL;
	pthread_mutex_unlock(&r->lock);
	for (i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	n = stop_all(gone);
	sweep_panic(r);
	return n;
}

/* A watch was retired: the sweeper stops it at once. Lock held. */
static bool has_retired(void *ctx)
{
	return ((struct resolver *)ctx)->retired != NULL;
}

static void *sweeper_main(void *arg)
{
	struct resolver *r = arg;

	pthread_mutex_lock(&r->lock);
	while (worker_wait_locked(&r->sweeper, SWEEP_EVERY_MS, has_retired, r) !=
	       WORKER_STOPPING) {
		pthread_mutex_unlock(&r->lock);
		resolver_sweep(r);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct resolver *resolver_create(const struct resolver_opts *opts)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->consul = opts->consul;
	r->clock = opts->clock ? opts->clock : &clock_system;
	r->first_wait_ms = opts->first_wait_ms ? opts->first_wait_ms : DEFAULT_FIRST_WAIT_MS;
	r->wait_ms = opts->wait_ms;
	r->backoff_cap_ms = opts->backoff_cap_ms;
	r->idle_ms = opts->idle_ms;
	r->max_services = opts->max_services ? opts->max_services : DEFAULT_MAX_SERVICES;
	r->max_response = opts->max_response ? opts->max_response : DEFAULT_MAX_RESPONSE;
	if (opts->dns_server && (r->dns_server = strdup(opts->dns_server)) == NULL) {
		free(r);
		return NULL;
	}
	r->dns_refresh_ms = opts->dns_refresh_ms;
	r->allowed = opts->allowed;
	r->panic_threshold = opts->panic_threshold;
	r->prepare = opts->prepare;
	r->release = opts->release;
	r->ctx = opts->ctx;
	pthread_mutex_init(&r->lock, NULL);
	if (worker_init(&r->sweeper, &r->lock, NULL) != MN_OK)
		goto out_mutex;
	if (worker_start(&r->sweeper, sweeper_main, r) != MN_OK)
		goto out_worker;
	return r;

out_worker:
	worker_release(&r->sweeper);
out_mutex:
	pthread_mutex_destroy(&r->lock);
	free(r->dns_server);
	free(r);
	return NULL;
}

void resolver_destroy(struct resolver *r)
{
	struct followed *all;

	if (r == NULL)
		return;
	worker_stop(&r->sweeper);
	worker_join(&r->sweeper, -1);
	/* stop every watch first: their callbacks take r->lock */
	stop_all(r->retired);
	for (all = r->list; all; all = all->next)
		all->why_stopped = NULL;
	stop_all(r->list);
	worker_release(&r->sweeper);
	pthread_mutex_destroy(&r->lock);
	free(r->dns_server);
	free(r);
}

/* The staleness of f's view, whichever way it is followed. */
static uint64_t followed_stale_ms(struct followed *f)
{
	return f->dns ? dns_watch_stale_ms(f->dns) : watch_stale_ms(f->watch);
}

/* The DNS name of (service, tag): [<tag>.]<service>.service.consul, or
 * for Connect <service>.connect.consul (the agent, 1.8.7 tried, answers
 * those SRV records with the Connect-native instances and the proxies in
 * front of the service, and knows no tag there); false when it is not a
 * valid one (a tag with a space, a tag with Connect). */
static bool dns_name(const char *service, const char *tag, bool connect, char *name, size_t cap)
{
	unsigned char q[512];

	if (connect && *tag)
		return false;
	snprintf(name, cap, "%s%s%s.%s.consul", tag, *tag ? "." : "", service,
		 connect ? "connect" : "service");
	return consul_dns_query(name, 0, q, sizeof(q)) != 0;
}

/* Starts following (service, tag) through Consul's DNS interface. Lock
 * held. */
static bool follow_dns_locked(struct resolver *r, struct followed *f)
{
	char name[300];

	if (!dns_name(f->service, f->tag, f->connect, name, sizeof(name)))
		return false;
	f->dns = dns_watch_start(&(struct dns_watch_opts){
		.server = r->dns_server,
		.name = name,
		.refresh_ms = r->dns_refresh_ms,
		.service = f->service,
		.on_change = on_dns_change,
		.ctx = f,
	});
	return f->dns != NULL;
}

/* Starts following (service, tag), through DNS when 'dns', its Connect
 * endpoints when 'connect'. Lock held. */
static struct followed *follow_locked(struct resolver *r, const char *service, const char *tag,
				      bool dns, bool connect)
{
	struct followed *f = calloc(1, sizeof(*f));
	char path[512];
	char *etag = NULL;
	uint64_t now = clock_now(r->clock);

	if (f == NULL)
		return NULL;
	f->r = r;
	f->id = ++r->next_id;
	f->service = strdup(service);
	f->tag = strdup(tag);
	f->connect = connect;
	atomic_init(&f->used, false);
	f->used_ms = now;
	if (*tag && (etag = httpc_escape(tag)) == NULL)
		goto out_free;
	if (f->service == NULL || f->tag == NULL)
		goto out_free;
	f->current = snapshot_new(r, service, tag, NULL, 0, 0, now, false);
	if (f->current == NULL)
		goto out_free;
	f->current->pub.connect = connect;
	f->first_deadline = now + r->first_wait_ms;
	if (dns) {
		free(etag);
		etag = NULL;
		if (!follow_dns_locked(r, f))
			goto out_free;
		goto listed;
	}
	/* every registered instance with its checks, not ?passing: the
	 * panic threshold needs how many there are; the Connect endpoint
	 * answers in the same form, the proxies in front of the service
	 * (their address and port) with the Connect-native instances */
	snprintf(path, sizeof(path), "/v1/health/%s/%s%s%s", connect ? "connect" : "service",
		 service, etag ? "?tag=" : "", etag ? etag : "");
	free(etag);
	etag = NULL;
	f->watch = watch_start(&(struct watch_opts){
		.consul = r->consul,
		.op = "health_watch",
		.path = path,
		.wait_ms = r->wait_ms,
		.backoff_cap_ms = r->backoff_cap_ms,
		.max_response = r->max_response,
		.on_change = on_health_change,
		.on_error = on_health_error,
		.ctx = f,
		.clock = r->clock,
	});
	if (f->watch == NULL)
		goto out_free;
listed:
	f->next = r->list;
	r->list = f;
	r->n_followed++;
	log_info("peers", "following service '%s'%s%s in consul%s%s%s", service,
		 *tag ? " tag " : "", tag, connect ? " (Connect)" : "",
		 dns ? " through DNS at " : "", dns ? r->dns_server : "");
	return f;

out_free:
	free(etag);
	followed_free(f);
	return NULL;
}

/* Why f cannot serve (tag, dns, connect): its tag or its way changed;
 * NULL when it can. */
static const char *mismatch(const struct followed *f, const char *tag, bool dns, bool connect)
{
	if (strcmp(f->tag, tag) != 0)
		return "its tag changed";
	if ((f->dns != NULL) != dns)
		return dns ? "its discovery changed to dns" : "its discovery changed to http";
	if (f->connect != connect)
		return connect ? "its calls changed to Connect" : "its calls changed to plain HTTP";
	return NULL;
}

enum mn_err resolver_get(struct resolver *r, const char *service, const char *tag,
			 const struct peer_snapshot **out, char *err, size_t errlen)
{
	return resolver_get_for(r, service, tag, false, false, out, err, errlen);
}

enum mn_err resolver_get_for(struct resolver *r, const char *service, const char *tag, bool dns,
			     bool connect, const struct peer_snapshot **out, char *err,
			     size_t errlen)
{
	struct followed *f;
	struct snapshot *s;
	const char *why;

	*out = NULL;
	if (tag == NULL)
		tag = "";
	if (!resolver_name_valid(service))
		return mn_error(err, errlen, MN_INVALID, "invalid service name");
	if (dns && r->dns_server == NULL)
		return mn_error(err, errlen, MN_INVALID,
				"discovery through DNS needs the agent's DNS address");
	pthread_mutex_lock(&r->lock);
	f = find_locked(r, service);
	if (f && (why = mismatch(f, tag, dns, connect)) != NULL) {
		/* peers.<name>.tag or .discovery changed: one watch per
		 * service, the new one */
		retire_locked(r, f, why);
		f = NULL;
	}
	if (f == NULL) {
		pthread_mutex_unlock(&r->lock);
		if (r->allowed && !r->allowed(r->ctx, service))
			return mn_error(err, errlen, MN_NOT_FOUND,
					"service '%s' is not a peer of this node: its modules do "
					"not call it and no peers.%s setting names it",
					service, service);
		pthread_mutex_lock(&r->lock);
		f = find_locked(r, service); /* another caller may have started it */
		if (f && (why = mismatch(f, tag, dns, connect)) != NULL) {
			retire_locked(r, f, why);
			f = NULL;
		}
	}
	if (f == NULL && dns) {
		/* checked once, when the service starts to be followed, not on
		 * every call */
		char name[300];

		if (connect && *tag) {
			pthread_mutex_unlock(&r->lock);
			return mn_error(err, errlen, MN_INVALID,
					"service '%s': Consul's DNS has no tag for Connect "
					"(<name>.connect.consul): set peers.%s.tag to \"\" or "
					"peers.%s.discovery to \"http\"",
					service, service, service);
		}
		if (!dns_name(service, tag, false, name, sizeof(name))) {
			pthread_mutex_unlock(&r->lock);
			return mn_error(err, errlen, MN_INVALID,
					"'%s' is not a DNS name: the tag must be letters, digits, "
					"'-' or '_'", name);
		}
	}
	if (f == NULL && r->n_followed >= r->max_services) {
		pthread_mutex_unlock(&r->lock);
		return mn_error(err, errlen, MN_UNAVAILABLE,
				"cannot follow service '%s': %zu services are followed already "
				"(consul.watch_max_services)",
				service, r->max_services);
	}
	if (f == NULL && (f = follow_locked(r, service, tag, dns, connect)) == NULL) {
		pthread_mutex_unlock(&r->lock);
		return mn_error(err, errlen, MN_NOMEM, "cannot follow service '%s': out of memory",
				service);
	}
	/* a flag, not a time: no clock read on a call; the sweep dates it */
	if (!atomic_load_explicit(&f->used, memory_order_relaxed))
		atomic_store(&f->used, true);
	s = f->current;
	atomic_fetch_add(&s->refs, 1);
	if (!s->pub.known) {
		/* The wait lets go of the lock: f may be retired and freed
		 * meanwhile, so it is found again by name and id each time. */
		uint64_t id = f->id;
		struct snapshot *first = s;

		for (;;) {
			uint64_t now = clock_now(r->clock);
			struct timespec ts;

			if (now >= f->first_deadline)
				break;
			ts = clock_deadline_ms(f->first_deadline - now);
			if (pthread_cond_timedwait(&r->sweeper.cond, &r->lock, &ts) == ETIMEDOUT)
				break;
			f = find_locked(r, service);
			if (f == NULL || f->id != id || f->current->pub.known)
				break;
		}
		f = find_locked(r, service);
		if (f && f->id == id && f->current != first) {
			s = f->current;
			atomic_fetch_add(&s->refs, 1);
			pthread_mutex_unlock(&r->lock);
			resolver_put(&first->pub);
			*out = &s->pub;
			return MN_OK;
		}
	}
	pthread_mutex_unlock(&r->lock);
	*out = &s->pub;
	return MN_OK;
}

uint64_t resolver_stale_ms(struct resolver *r, const char *service)
{
	struct followed *f;
	uint64_t stale = 0;

	pthread_mutex_lock(&r->lock);
	f = find_locked(r, service);
	if (f)
		stale = followed_stale_ms(f);
	pthread_mutex_unlock(&r->lock);
	return stale;
}

void resolver_foreach(struct resolver *r,
		      void (*fn)(void *ctx, const struct peer_snapshot *s, uint64_t stale_ms),
		      void *ctx)
{
	struct snapshot **snaps;
	uint64_t *stale;
	size_t n = 0;

	/* references taken under the lock, fn called without it: fn may
	 * walk thousands of instances */
	pthread_mutex_lock(&r->lock);
	snaps = calloc(r->n_followed + 1, sizeof(*snaps));
	stale = calloc(r->n_followed + 1, sizeof(*stale));
	for (struct followed *f = r->list; snaps && stale && f; f = f->next) {
		snaps[n] = f->current;
		atomic_fetch_add(&f->current->refs, 1);
		stale[n++] = followed_stale_ms(f);
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		fn(ctx, &snaps[i]->pub, stale[i]);
		resolver_put(&snaps[i]->pub);
	}
	free(snaps);
	free(stale);
}

size_t resolver_followed(struct resolver *r)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	n = r->n_followed;
	pthread_mutex_unlock(&r->lock);
	return n;
}
