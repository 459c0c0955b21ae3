#include "peers/peer_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/log.h"
#include "peers/balancer.h"
#include "peers/breaker.h"
#include "peers/retry.h"

#define DEFAULT_MAX_RESPONSE (1u << 20)
#define POOL_MAX 64
#define RETRY_BASE_MS 20
#define RETRY_CAP_MS 200

/* What the node remembers of one instance across snapshots. */
struct inst_state {
	char *id;
	struct breaker br;
	unsigned inflight;
	unsigned recent_failures;    /* consecutive */
	uint64_t calls, failures;
	char last_error[160];
};

struct peer_service {
	char *name;
	pthread_mutex_t lock;        /* everything below */
	struct lb_state lb;
	struct inst_state **st;      /* pointers: entries never move */
	size_t n, cap;
	struct peer_service *next;
};

struct peer_client {
	struct resolver *resolver;
	const struct mn_clock *clock;
	struct peer_metrics m;
	pthread_mutex_t lock;        /* services and the handle pool */
	struct peer_service *services;
	struct httpc *pool[POOL_MAX];
	size_t pool_n;
	uint64_t rng;
};

struct peer_client *peer_client_create(struct resolver *resolver, const struct mn_clock *clock,
				       const struct peer_metrics *metrics)
{
	struct peer_client *pc = calloc(1, sizeof(*pc));

	if (pc == NULL)
		return NULL;
	pc->resolver = resolver;
	pc->clock = clock ? clock : &clock_system;
	if (metrics)
		pc->m = *metrics;
	pc->rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)pc;
	pthread_mutex_init(&pc->lock, NULL);
	return pc;
}

void peer_client_destroy(struct peer_client *pc)
{
	struct peer_service *svc, *next;

	if (pc == NULL)
		return;
	for (svc = pc->services; svc; svc = next) {
		next = svc->next;
		for (size_t i = 0; i < svc->n; i++) {
			free(svc->st[i]->id);
			free(svc->st[i]);
		}
		free(svc->st);
		free(svc->name);
		pthread_mutex_destroy(&svc->lock);
		free(svc);
	}
	for (size_t i = 0; i < pc->pool_n; i++)
		httpc_destroy(pc->pool[i]);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
}

static struct peer_service *service_get(struct peer_client *pc, const char *name)
{
	struct peer_service *svc;

	pthread_mutex_lock(&pc->lock);
	for (svc = pc->services; svc; svc = svc->next)
		if (strcmp(svc->name, name) == 0)
			goto out;
	svc = calloc(1, sizeof(*svc));
	if (svc == NULL)
		goto out;
	svc->name = strdup(name);
	if (svc->name == NULL) {
		free(svc);
		svc = NULL;
		goto out;
	}
	pthread_mutex_init(&svc->lock, NULL);
	lb_state_init(&svc->lb, mn_rand_next(&pc->rng));
	svc->next = pc->services;
	pc->services = svc;
out:
	pthread_mutex_unlock(&pc->lock);
	return svc;
}

/* The state of instance 'id', created closed on first sight. svc->lock held. */
static struct inst_state *state_for(struct peer_service *svc, const char *id)
{
	struct inst_state *st;

	for (size_t i = 0; i < svc->n; i++)
		if (strcmp(svc->st[i]->id, id) == 0)
			return svc->st[i];
	if (svc->n == svc->cap) {
		size_t cap = svc->cap ? svc->cap * 2 : 8;
		struct inst_state **grown = realloc(svc->st, cap * sizeof(*grown));

		if (grown == NULL)
			return NULL;
		svc->st = grown;
		svc->cap = cap;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->id = strdup(id)) == NULL) {
		free(st);
		return NULL;
	}
	breaker_init(&st->br);
	svc->st[svc->n++] = st;
	return st;
}

/* Forgets instances that left Consul's answer and have no call out, once
 * they outnumber the live ones: a node outlives many deployments of its
 * peers. svc->lock held. */
static void prune_locked(struct peer_service *svc, const struct peer_snapshot *snap)
{
	size_t kept = 0;

	if (svc->n <= 2 * snap->n + 8)
		return;
	for (size_t i = 0; i < svc->n; i++) {
		struct inst_state *st = svc->st[i];
		bool live = st->inflight > 0;

		for (size_t j = 0; !live && j < snap->n; j++)
			live = strcmp(snap->inst[j].id, st->id) == 0;
		if (live) {
			svc->st[kept++] = st;
		} else {
			free(st->id);
			free(st);
		}
	}
	svc->n = kept;
}

static struct httpc *handle_acquire(struct peer_client *pc)
{
	struct httpc *h = NULL;

	pthread_mutex_lock(&pc->lock);
	if (pc->pool_n)
		h = pc->pool[--pc->pool_n];
	pthread_mutex_unlock(&pc->lock);
	return h ? h : httpc_create();
}

static void handle_release(struct peer_client *pc, struct httpc *h)
{
	pthread_mutex_lock(&pc->lock);
	if (pc->pool_n < POOL_MAX) {
		pc->pool[pc->pool_n++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&pc->lock);
	httpc_destroy(h);
}

static bool hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* W3C trace context for the call: the caller's trace id with a new span id
 * of ours, or a new trace when the caller sent none (or a malformed one). */
static void make_traceparent(const char *in, char out[64])
{
	static _Thread_local uint64_t rng; /* per thread: no lock on the call path */
	char trace[33];
	uint64_t a, b, span;

	if (rng == 0)
		rng = (clock_monotonic_ns() ^ (uint64_t)(uintptr_t)&trace) | 1;
	a = mn_rand_next(&rng);
	b = mn_rand_next(&rng);
	span = mn_rand_next(&rng) | 1;
	if (in && strlen(in) == 55 && in[2] == '-' && in[35] == '-' && in[52] == '-' &&
	    hex_run(in, 2) && hex_run(in + 3, 32) && hex_run(in + 36, 16) && hex_run(in + 53, 2)) {
		memcpy(trace, in + 3, 32);
		trace[32] = '\0';
		snprintf(out, 64, "00-%s-%016llx-%.2s", trace, (unsigned long long)span, in + 53);
	} else {
		snprintf(out, 64, "00-%016llx%016llx-%016llx-01", (unsigned long long)a,
			 (unsigned long long)b, (unsigned long long)span);
	}
}

static const char *outcome_name(enum peer_failure f)
{
	switch (f) {
	case PEER_FAIL_NONE:
		return "success";
	case PEER_FAIL_CONNECT:
		return "connect_error";
	case PEER_FAIL_TIMEOUT:
		return "timeout";
	case PEER_FAIL_5XX:
		return "server_error";
	case PEER_FAIL_IO:
		return "error";
	}
	return "error";
}

static enum peer_failure classify(enum mn_err e, const struct httpc_response *res)
{
	if (e == MN_OK)
		return res->status >= 500 ? PEER_FAIL_5XX : PEER_FAIL_NONE;
	if (e == MN_UNAVAILABLE || !res->sent)
		return PEER_FAIL_CONNECT;
	return e == MN_TIMEOUT ? PEER_FAIL_TIMEOUT : PEER_FAIL_IO;
}

/* One attempt on instance 'in'. */
static enum mn_err attempt(struct peer_client *pc, const struct peer_request *req,
			   const struct consul_instance *in, uint64_t timeout_ms,
			   const char *traceparent, struct httpc_response *res, char *err,
			   size_t errlen)
{
	char url[1024], rid[128], tp[80];
	const char *headers[5] = {"Accept: application/json", NULL, NULL, NULL, NULL};
	const char *scheme = "http";
	json_t *ms = json_object_get(in->meta, "scheme");
	size_t nh = 1;
	struct httpc *h;
	enum mn_err e;

	if (json_is_string(ms) && strcmp(json_string_value(ms), "https") == 0)
		scheme = "https";
	snprintf(url, sizeof(url), strchr(in->address, ':') ? "%s://[%s]:%d%s" : "%s://%s:%d%s",
		 scheme, in->address, in->port, req->path);
	if (req->request_id && !strpbrk(req->request_id, "\r\n")) {
		snprintf(rid, sizeof(rid), "X-Request-ID: %.100s", req->request_id);
		headers[nh++] = rid;
	}
	snprintf(tp, sizeof(tp), "traceparent: %s", traceparent);
	headers[nh++] = tp;
	if (req->body)
		headers[nh++] = "Content-Type: application/json";
	h = handle_acquire(pc);
	if (h == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	e = httpc_perform(h,
			  &(struct httpc_request){
				  .method = req->method,
				  .url = url,
				  .headers = headers,
				  .body = req->body,
				  .body_len = req->body_len,
				  .timeout_ms = (long)timeout_ms,
				  .connect_timeout_ms = (long)timeout_ms,
				  .max_response = req->max_response ? req->max_response
								    : DEFAULT_MAX_RESPONSE,
			  },
			  res, err, errlen);
	handle_release(pc, h);
	return e;
}

/* Records an attempt's result on the instance's state. */
static void record(struct peer_service *svc, const char *id, enum peer_failure f, uint64_t now,
		   const struct peer_settings *s, const char *msg)
{
	struct inst_state *st;

	pthread_mutex_lock(&svc->lock);
	st = state_for(svc, id);
	if (st == NULL)
		goto out;
	st->inflight--;
	if (f == PEER_FAIL_NONE) {
		breaker_success(&st->br);
		st->recent_failures = 0;
		goto out;
	}
	st->failures++;
	st->recent_failures++;
	snprintf(st->last_error, sizeof(st->last_error), "%s", msg);
	if (f == PEER_FAIL_CONNECT || f == PEER_FAIL_TIMEOUT) {
		if (st->br.state != BREAKER_OPEN)
			log_warn("peers", "instance '%s' of '%s' ejected for %llu ms: %s", id,
				 svc->name, (unsigned long long)s->breaker_open_ms, msg);
		breaker_trip(&st->br, now);
	} else {
		breaker_failure(&st->br, now, s->breaker_failures);
	}
out:
	pthread_mutex_unlock(&svc->lock);
}

enum mn_err peer_call(struct peer_client *pc, const struct peer_settings *s,
		      const struct peer_request *req, struct httpc_response *res, char *err,
		      size_t errlen)
{
	const struct lb_strategy *lb = lb_find(s->lb && *s->lb ? s->lb : "round_robin");
	const struct peer_snapshot *snap;
	struct lb_candidate *cand = NULL;
	struct peer_service *svc;
	bool *tried = NULL;
	struct backoff backoff;
	char traceparent[64], msg[256] = "";
	enum mn_err ret = MN_UNAVAILABLE;
	unsigned attempts = 0;
	uint64_t now = clock_now(pc->clock), deadline;

	if (lb == NULL)
		return mn_error(err, errlen, MN_INVALID, "unknown load balancing '%s'", s->lb);
	svc = service_get(pc, req->service);
	if (svc == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	snap = resolver_get(pc->resolver, req->service, s->tag);
	if (snap == NULL)
		return mn_error(err, errlen, MN_INVALID, "invalid peer service name");
	cand = calloc(snap->n + 1, sizeof(*cand));
	tried = calloc(snap->n + 1, sizeof(*tried));
	if (cand == NULL || tried == NULL) {
		free(cand);
		free(tried);
		resolver_put(snap);
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	}
	make_traceparent(req->traceparent, traceparent);
	backoff_init(&backoff, RETRY_BASE_MS, RETRY_CAP_MS, 0);
	deadline = now + s->timeout_ms * (s->retries + 1);

	for (;;) {
		const struct consul_instance *in;
		enum peer_failure f;
		struct inst_state *st;
		uint64_t t0, delay;
		size_t idx;
		enum mn_err e;

		pthread_mutex_lock(&svc->lock);
		if (attempts == 0)
			prune_locked(svc, snap);
		for (size_t i = 0; i < snap->n; i++) {
			st = state_for(svc, snap->inst[i].id);
			cand[i].eligible = st && !tried[i] &&
					   breaker_would_allow(&st->br, now, s->breaker_open_ms);
			cand[i].inflight = st ? st->inflight : 0;
		}
		idx = lb->pick(&svc->lb, cand, snap->n);
		if (idx != LB_NONE) {
			st = state_for(svc, snap->inst[idx].id);
			breaker_allow(&st->br, now, s->breaker_open_ms);
			st->inflight++;
			st->calls++;
		}
		pthread_mutex_unlock(&svc->lock);
		if (idx == LB_NONE) {
			if (attempts == 0)
				snprintf(msg, sizeof(msg), "%s",
					 !snap->known ? "consul has not answered yet"
					 : snap->n == 0 ? "no passing instance"
							: "every instance's circuit is open");
			break;
		}
		tried[idx] = true;
		in = &snap->inst[idx];

		t0 = clock_monotonic_ns();
		e = attempt(pc, req, in, s->timeout_ms < deadline - now ? s->timeout_ms
									  : deadline - now,
			    traceparent, res, msg, sizeof(msg));
		f = classify(e, res);
		if (f == PEER_FAIL_5XX)
			snprintf(msg, sizeof(msg), "answered %ld", res->status);
		now = clock_now(pc->clock);
		record(svc, in->id, f, now, s, msg);
		metric_inc(pc->m.requests, (const char *[]){req->service, outcome_name(f)});
		metric_observe(pc->m.duration, (const char *[]){req->service},
			       (double)(clock_monotonic_ns() - t0) / 1e9);
		attempts++;
		if (f == PEER_FAIL_NONE || f == PEER_FAIL_5XX)
			ret = MN_OK; /* an answer, perhaps the best there is */
		else
			ret = MN_UNAVAILABLE;
		if (f == PEER_FAIL_NONE || !retry_allowed(req->method, f, attempts, s->retries) ||
		    !retry_delay(&backoff, now, deadline, &delay))
			break;
		log_debug("peers", "retrying '%s %s' on another instance of '%s' after: %s",
			  req->method, req->path, req->service, msg);
		clock_sleep_ms(delay);
		now = clock_now(pc->clock);
		if (now >= deadline)
			break;
	}
	if (ret != MN_OK) {
		mn_error(err, errlen, MN_UNAVAILABLE, "%s: %s (%u attempt%s)", req->service, msg,
			 attempts, attempts == 1 ? "" : "s");
		if (attempts == 0)
			metric_inc(pc->m.requests, (const char *[]){req->service, "no_instance"});
	}
	free(cand);
	free(tried);
	resolver_put(snap);
	return ret;
}

uint64_t peer_client_retry_after_ms(struct peer_client *pc, const char *service,
				    uint64_t breaker_open_ms)
{
	uint64_t now = clock_now(pc->clock), best = 0;
	struct peer_service *svc = service_get(pc, service);

	if (svc == NULL)
		return 0;
	pthread_mutex_lock(&svc->lock);
	for (size_t i = 0; i < svc->n; i++) {
		const struct breaker *b = &svc->st[i]->br;
		uint64_t until = b->opened_at + breaker_open_ms;

		if (b->state == BREAKER_OPEN && until > now && (best == 0 || until - now < best))
			best = until - now;
	}
	pthread_mutex_unlock(&svc->lock);
	return best;
}

json_t *peer_client_view(struct peer_client *pc, const char *service, const char *tag,
			 uint64_t breaker_open_ms)
{
	const struct peer_snapshot *snap = resolver_get(pc->resolver, service, tag);
	struct peer_service *svc;
	uint64_t now = clock_now(pc->clock);
	json_t *out, *list;

	if (snap == NULL)
		return NULL;
	svc = service_get(pc, service);
	list = json_array();
	out = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:o}", "service", service, "tag",
			snap->tag, "known", snap->known, "index", (json_int_t)snap->index,
			"age_ms", (json_int_t)(now - snap->changed_ms), "stale_ms",
			(json_int_t)resolver_stale_ms(pc->resolver, service, tag), "instances", list);
	if (out == NULL || svc == NULL)
		goto out;
	pthread_mutex_lock(&svc->lock);
	for (size_t i = 0; i < snap->n; i++) {
		const struct consul_instance *in = &snap->inst[i];
		struct inst_state *st = state_for(svc, in->id);
		enum breaker_state state = st ? st->br.state : BREAKER_CLOSED;

		/* an open circuit past its time is ready for a probe */
		if (st && state == BREAKER_OPEN && breaker_would_allow(&st->br, now, breaker_open_ms))
			state = BREAKER_HALF_OPEN;
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:s, s:i, s:O, s:O, s:s, s:I, s:I, s:I, s:I, s:s}",
					"id", in->id, "node", in->node, "address", in->address,
					"port", in->port, "tags", in->tags, "meta", in->meta,
					"circuit", breaker_state_name(state), "inflight",
					(json_int_t)(st ? st->inflight : 0), "recent_failures",
					(json_int_t)(st ? st->recent_failures : 0), "calls",
					(json_int_t)(st ? st->calls : 0), "failures",
					(json_int_t)(st ? st->failures : 0), "last_error",
					st ? st->last_error : ""));
	}
	pthread_mutex_unlock(&svc->lock);
out:
	resolver_put(snap);
	return out;
}

void peer_client_foreach_instance(struct peer_client *pc,
				  void (*fn)(void *ctx, const char *service, const char *instance,
					     const char *state),
				  void *ctx)
{
	pthread_mutex_lock(&pc->lock);
	for (struct peer_service *svc = pc->services; svc; svc = svc->next) {
		pthread_mutex_lock(&svc->lock);
		for (size_t i = 0; i < svc->n; i++)
			fn(ctx, svc->name, svc->st[i]->id, breaker_state_name(svc->st[i]->br.state));
		pthread_mutex_unlock(&svc->lock);
	}
	pthread_mutex_unlock(&pc->lock);
}
