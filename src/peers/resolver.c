#include "peers/resolver.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/watch.h"
#include "core/log.h"

#define DEFAULT_FIRST_WAIT_MS 2000
#define NAME_MAX_LEN 128

struct snapshot {
	struct peer_snapshot pub;     /* first: callers see only this */
	atomic_uint refs;
	char *service;
	char *tag;
	struct consul_instance *inst;
};

/* One followed (service, tag). */
struct followed {
	struct resolver *r;
	char *service;
	char *tag;
	struct snapshot *current;     /* under r->lock; never NULL */
	uint64_t first_deadline;      /* first users wait until then */
	struct watch *watch;
	struct followed *next;
};

struct resolver {
	struct consul *consul;
	const struct mn_clock *clock;
	uint64_t first_wait_ms, wait_ms, backoff_cap_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;          /* a first answer arrived */
	struct followed *list;
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

static void snapshot_free(struct snapshot *s)
{
	consul_instances_free(s->inst, s->pub.n);
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

static struct snapshot *snapshot_new(const char *service, const char *tag,
				     struct consul_instance *inst, size_t n, uint64_t index,
				     uint64_t now, bool known)
{
	struct snapshot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->service = strdup(service);
	s->tag = strdup(tag);
	if (s->service == NULL || s->tag == NULL) {
		free(s->service);
		free(s->tag);
		free(s);
		return NULL;
	}
	s->inst = inst;
	atomic_init(&s->refs, 1);
	s->pub = (struct peer_snapshot){s->service, s->tag, inst, n, index, now, known};
	return s;
}

/* ---- watch callbacks (on the watch thread) ----------------------------- */

static void on_health_change(void *ctx, const char *body, size_t len, uint64_t index,
			     bool not_found)
{
	struct followed *f = ctx;
	struct resolver *r = f->r;
	struct consul_instance *inst = NULL;
	struct snapshot *next, *old;
	struct buf rejected;
	size_t n = 0;
	char err[256];

	buf_init(&rejected, 1 << 14);
	if (!not_found && consul_health_parse(body, len, &inst, &n, &rejected, err, sizeof(err)) !=
				  MN_OK) {
		log_warn("peers", "health answer for '%s' not understood: %s", f->service, err);
		goto out;
	}
	for (char *line = rejected.data, *nl; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		log_warn("peers", "service '%s': %s; instance refused", f->service, line);
		if (nl == NULL)
			break;
	}
	next = snapshot_new(f->service, f->tag, inst, n, index, clock_now(r->clock), true);
	if (next == NULL) {
		consul_instances_free(inst, n);
		log_error("peers", "out of memory updating '%s'", f->service);
		goto out;
	}
	pthread_mutex_lock(&r->lock);
	old = f->current;
	f->current = next;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	log_info("peers", "service '%s'%s%s: %zu passing instance%s at index %llu", f->service,
		 *f->tag ? " tag " : "", f->tag, n, n == 1 ? "" : "s", (unsigned long long)index);
	resolver_put(&old->pub);
out:
	buf_release(&rejected);
}

/* ---- the resolver ------------------------------------------------------ */

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
	pthread_mutex_init(&r->lock, NULL);
	if (clock_cond_init(&r->cond) != 0) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	return r;
}

static void followed_free(struct followed *f)
{
	if (f->current)
		resolver_put(&f->current->pub);
	free(f->service);
	free(f->tag);
	free(f);
}

void resolver_destroy(struct resolver *r)
{
	struct followed *f, *next;

	if (r == NULL)
		return;
	/* stop every watch first: their callbacks take r->lock */
	for (f = r->list; f; f = f->next)
		watch_stop(f->watch);
	for (f = r->list; f; f = next) {
		next = f->next;
		followed_free(f);
	}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static struct followed *find_locked(struct resolver *r, const char *service, const char *tag)
{
	for (struct followed *f = r->list; f; f = f->next)
		if (strcmp(f->service, service) == 0 && strcmp(f->tag, tag) == 0)
			return f;
	return NULL;
}

/* Starts following (service, tag). Lock held. */
static struct followed *follow_locked(struct resolver *r, const char *service, const char *tag)
{
	struct followed *f = calloc(1, sizeof(*f));
	char path[512];
	char *etag = NULL;

	if (f == NULL)
		return NULL;
	f->r = r;
	f->service = strdup(service);
	f->tag = strdup(tag);
	if (*tag && (etag = httpc_escape(tag)) == NULL)
		goto out_free;
	if (f->service == NULL || f->tag == NULL)
		goto out_free;
	f->current = snapshot_new(service, tag, NULL, 0, 0, clock_now(r->clock), false);
	if (f->current == NULL)
		goto out_free;
	f->first_deadline = clock_now(r->clock) + r->first_wait_ms;
	snprintf(path, sizeof(path), "/v1/health/service/%s?passing=1%s%s", service,
		 etag ? "&tag=" : "", etag ? etag : "");
	free(etag);
	etag = NULL;
	f->watch = watch_start(&(struct watch_opts){
		.consul = r->consul,
		.op = "health_watch",
		.path = path,
		.wait_ms = r->wait_ms,
		.backoff_cap_ms = r->backoff_cap_ms,
		.on_change = on_health_change,
		.ctx = f,
		.clock = r->clock,
	});
	if (f->watch == NULL)
		goto out_free;
	f->next = r->list;
	r->list = f;
	log_info("peers", "following service '%s'%s%s in consul", service, *tag ? " tag " : "",
		 tag);
	return f;

out_free:
	free(etag);
	followed_free(f);
	return NULL;
}

const struct peer_snapshot *resolver_get(struct resolver *r, const char *service,
					 const char *tag)
{
	struct followed *f;
	struct snapshot *s;

	if (tag == NULL)
		tag = "";
	if (!resolver_name_valid(service))
		return NULL;
	pthread_mutex_lock(&r->lock);
	f = find_locked(r, service, tag);
	if (f == NULL && (f = follow_locked(r, service, tag)) == NULL) {
		pthread_mutex_unlock(&r->lock);
		return NULL;
	}
	while (!f->current->pub.known) {
		uint64_t now = clock_now(r->clock);
		struct timespec ts;

		if (now >= f->first_deadline)
			break;
		ts = clock_deadline_ms(f->first_deadline - now);
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
			break;
	}
	s = f->current;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&r->lock);
	return &s->pub;
}

uint64_t resolver_stale_ms(struct resolver *r, const char *service, const char *tag)
{
	struct followed *f;
	uint64_t stale = 0;

	pthread_mutex_lock(&r->lock);
	f = find_locked(r, service, tag ? tag : "");
	if (f)
		stale = watch_stale_ms(f->watch);
	pthread_mutex_unlock(&r->lock);
	return stale;
}

void resolver_foreach(struct resolver *r,
		      void (*fn)(void *ctx, const struct peer_snapshot *s, uint64_t stale_ms),
		      void *ctx)
{
	pthread_mutex_lock(&r->lock);
	for (struct followed *f = r->list; f; f = f->next)
		fn(ctx, &f->current->pub, watch_stale_ms(f->watch));
	pthread_mutex_unlock(&r->lock);
}
