#include "peers/peer_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/hash.h"
#include "core/log.h"
#include "peers/balancer.h"
#include "peers/breaker.h"
#include "peers/retry.h"

#define DEFAULT_MAX_RESPONSE (1u << 20)
/* Handles kept for reuse, in shards a thread keeps to: a handle that
 * moves between threads costs about 5 us a call (its buffers freed into
 * another thread's malloc arena), an eighth of a call on loopback. */
#define POOL_SHARDS 8
#define POOL_SHARD_MAX 8
#define RETRY_BASE_MS 20
#define RETRY_CAP_MS 200
/* Instances one call may pass over: its attempts (retries are at most 10)
 * and the picks another call took first. */
#define TRIED_MAX 32

/* What the node remembers of one instance across snapshots. Shared by the
 * service's index and every table that lists it; freed with the last. An
 * instance is the pair (Consul node, service ID): Consul keeps IDs unique
 * per agent only, and two machines cloned with one hostname register the
 * same default ID; one timing out must not open the other's circuit. */
struct inst_state {
	char *node;
	char *id;
	uint64_t hash;
	struct inst_state *hnext;     /* index chain (svc->lock) */
	uint64_t seen;                /* last table built with it (svc->lock) */
	atomic_uint refs;
	atomic_uint inflight;
	atomic_bool closed;           /* br.state == BREAKER_CLOSED, readable
					 without the lock: a pick looks at it first */
	const char *service;          /* the service's name, for logs; lives
					 as long as the client */
	pthread_mutex_t lock;         /* everything below */
	struct breaker br;
	unsigned recent_failures;     /* consecutive */
	uint64_t calls, failures;
	char last_error[160];
};

struct peer_service;

/* A snapshot's instances with their states, in the snapshot's order:
 * peer_snapshot.prepared. */
struct peer_table {
	struct peer_service *svc;
	size_t n;
	struct inst_state *st[];
};

struct peer_service {
	char *name;
	struct lb_state lb;
	atomic_uint reserve_next;     /* where the next reserve pick starts */
	pthread_mutex_t lock;         /* the index */
	struct inst_state **buckets;  /* by id hash; power-of-two count */
	size_t nbuckets, count;
	uint64_t generation;          /* tables built */
	struct peer_service *next;
};

struct pool_shard {
	pthread_mutex_t lock;
	struct httpc *h[POOL_SHARD_MAX];
	size_t n;
};

struct peer_client {
	struct resolver *resolver;
	const struct mn_clock *clock;
	const struct httpc_transport *transport;
	struct peer_metrics m;
	pthread_mutex_t lock;         /* services */
	struct peer_service *services;
	struct pool_shard pool[POOL_SHARDS];
	uint64_t rng;
};

/* ---- instance states ---------------------------------------------------- */

/* FNV-1a over the node, a NUL, and the ID. */
static uint64_t instance_hash(const char *node, const char *id)
{
	return hash_str(hash_byte(hash_str(HASH_START, node), '\0'), id);
}

static void state_unref(struct inst_state *st)
{
	if (st && atomic_fetch_sub(&st->refs, 1) == 1) {
		pthread_mutex_destroy(&st->lock);
		free(st->node);
		free(st->id);
		free(st);
	}
}

static bool index_grow(struct peer_service *svc)
{
	size_t n = svc->nbuckets ? svc->nbuckets * 2 : 64;
	struct inst_state **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return false;
	for (size_t i = 0; i < svc->nbuckets; i++) {
		for (struct inst_state *st = svc->buckets[i], *next; st; st = next) {
			next = st->hnext;
			st->hnext = b[st->hash & (n - 1)];
			b[st->hash & (n - 1)] = st;
		}
	}
	free(svc->buckets);
	svc->buckets = b;
	svc->nbuckets = n;
	return true;
}

/* The state of instance ('node', 'id'), created closed on first sight.
 * svc->lock held. */
static struct inst_state *index_get(struct peer_service *svc, const char *node, const char *id)
{
	uint64_t h = instance_hash(node, id);
	struct inst_state *st;

	if (svc->nbuckets) {
		for (st = svc->buckets[h & (svc->nbuckets - 1)]; st; st = st->hnext)
			if (st->hash == h && strcmp(st->id, id) == 0 && strcmp(st->node, node) == 0)
				return st;
	}
	if (svc->count + 1 > svc->nbuckets / 4 * 3 && !index_grow(svc))
		return NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->id = strdup(id)) == NULL || (st->node = strdup(node)) == NULL) {
		if (st)
			free(st->id);
		free(st);
		return NULL;
	}
	st->hash = h;
	st->service = svc->name;
	atomic_init(&st->refs, 1); /* the index's */
	atomic_init(&st->inflight, 0);
	pthread_mutex_init(&st->lock, NULL);
	breaker_init(&st->br);
	atomic_init(&st->closed, true);
	st->hnext = svc->buckets[h & (svc->nbuckets - 1)];
	svc->buckets[h & (svc->nbuckets - 1)] = st;
	svc->count++;
	return st;
}

/* Forgets instances that left Consul's answer (not in the table of
 * generation 'gen') and have no call out, once they outnumber the live
 * ones: a node outlives many deployments of its peers. svc->lock held. */
static void index_prune(struct peer_service *svc, uint64_t gen, size_t live)
{
	if (svc->count <= 2 * live + 8)
		return;
	for (size_t i = 0; i < svc->nbuckets; i++) {
		struct inst_state **pp = &svc->buckets[i];

		while (*pp) {
			struct inst_state *st = *pp;

			if (st->seen != gen && atomic_load(&st->inflight) == 0) {
				*pp = st->hnext;
				svc->count--;
				state_unref(st);
			} else {
				pp = &st->hnext;
			}
		}
	}
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

void *peer_client_prepare(void *ctx, const struct peer_snapshot *snap)
{
	struct peer_client *pc = ctx;
	struct peer_service *svc = service_get(pc, snap->service);
	struct peer_table *t;
	uint64_t gen;

	if (svc == NULL)
		return NULL;
	t = malloc(sizeof(*t) + (snap->n + snap->reserve) * sizeof(t->st[0]));
	if (t == NULL)
		return NULL;
	t->svc = svc;
	t->n = 0;
	pthread_mutex_lock(&svc->lock);
	gen = ++svc->generation;
	for (size_t i = 0; i < snap->n + snap->reserve; i++) {
		const struct consul_instance *in = &snap->inst[i];
		struct inst_state *st = index_get(svc, in->node ? in->node : "", in->id);

		if (st == NULL)
			break;
		st->seen = gen;
		atomic_fetch_add(&st->refs, 1);
		t->st[t->n++] = st;
	}
	if (t->n == snap->n + snap->reserve)
		index_prune(svc, gen, t->n);
	pthread_mutex_unlock(&svc->lock);
	if (t->n < snap->n + snap->reserve) {
		peer_client_release(pc, t);
		return NULL;
	}
	return t;
}

void peer_client_release(void *ctx, void *prepared)
{
	struct peer_table *t = prepared;

	(void)ctx;
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++)
		state_unref(t->st[i]);
	free(t);
}

/* ---- the client ---------------------------------------------------------- */

struct peer_client *peer_client_create(const struct mn_clock *clock,
				       const struct peer_metrics *metrics,
				       const struct httpc_transport *transport)
{
	struct peer_client *pc = calloc(1, sizeof(*pc));

	if (pc == NULL)
		return NULL;
	pc->clock = clock ? clock : &clock_system;
	pc->transport = transport ? transport : &httpc_libcurl;
	if (metrics)
		pc->m = *metrics;
	pc->rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)pc;
	pthread_mutex_init(&pc->lock, NULL);
	for (size_t i = 0; i < POOL_SHARDS; i++)
		pthread_mutex_init(&pc->pool[i].lock, NULL);
	return pc;
}

void peer_client_attach(struct peer_client *pc, struct resolver *resolver)
{
	pc->resolver = resolver;
}

void peer_client_destroy(struct peer_client *pc)
{
	struct peer_service *svc, *next;

	if (pc == NULL)
		return;
	for (svc = pc->services; svc; svc = next) {
		next = svc->next;
		for (size_t i = 0; i < svc->nbuckets; i++) {
			for (struct inst_state *st = svc->buckets[i], *sn; st; st = sn) {
				sn = st->hnext;
				state_unref(st);
			}
		}
		free(svc->buckets);
		free(svc->name);
		pthread_mutex_destroy(&svc->lock);
		free(svc);
	}
	for (size_t i = 0; i < POOL_SHARDS; i++) {
		for (size_t k = 0; k < pc->pool[i].n; k++)
			pc->transport->destroy(pc->transport->ctx, pc->pool[i].h[k]);
		pthread_mutex_destroy(&pc->pool[i].lock);
	}
	pthread_mutex_destroy(&pc->lock);
	free(pc);
}

/* The calling thread's pool shard, the same one for all its calls. */
static struct pool_shard *pool_shard(struct peer_client *pc)
{
	static atomic_uint next;
	static _Thread_local unsigned mine; /* shard + 1; 0: not chosen yet */

	if (mine == 0)
		mine = atomic_fetch_add(&next, 1) % POOL_SHARDS + 1;
	return &pc->pool[mine - 1];
}

static struct httpc *handle_acquire(struct peer_client *pc)
{
	struct pool_shard *sh = pool_shard(pc);
	struct httpc *h = NULL;

	pthread_mutex_lock(&sh->lock);
	if (sh->n)
		h = sh->h[--sh->n];
	pthread_mutex_unlock(&sh->lock);
	return h ? h : pc->transport->create(pc->transport->ctx);
}

static void handle_release(struct peer_client *pc, struct httpc *h)
{
	struct pool_shard *sh = pool_shard(pc);

	pthread_mutex_lock(&sh->lock);
	if (sh->n < POOL_SHARD_MAX) {
		sh->h[sh->n++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&sh->lock);
	if (h)
		pc->transport->destroy(pc->transport->ctx, h);
}

static bool hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static char *hex_put(char *out, uint64_t v, int digits)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
	return out + digits;
}

#define TRACEPARENT_HEADER "traceparent: "

/* The traceparent header for the call (W3C trace context): the caller's
 * trace id with a new span id of ours, or a new trace when the caller sent
 * none (or a malformed one). Written by hand: it is on every call. */
static void make_traceparent(const char *in, char out[80])
{
	static _Thread_local uint64_t rng; /* per thread: no lock on the call path */
	char *o = out + sizeof(TRACEPARENT_HEADER) - 1;

	if (rng == 0)
		rng = (clock_monotonic_ns() ^ (uint64_t)(uintptr_t)&o) | 1;
	memcpy(out, TRACEPARENT_HEADER "00-", sizeof(TRACEPARENT_HEADER) + 2);
	o += 3;
	if (in && strlen(in) == 55 && in[2] == '-' && in[35] == '-' && in[52] == '-' &&
	    hex_run(in, 2) && hex_run(in + 3, 32) && hex_run(in + 36, 16) && hex_run(in + 53, 2)) {
		memcpy(o, in + 3, 32);
		o += 32;
		*o++ = '-';
		o = hex_put(o, mn_rand_next(&rng) | 1, 16);
		*o++ = '-';
		memcpy(o, in + 53, 2);
		o += 2;
	} else {
		o = hex_put(o, mn_rand_next(&rng), 16);
		o = hex_put(o, mn_rand_next(&rng), 16);
		*o++ = '-';
		o = hex_put(o, mn_rand_next(&rng) | 1, 16);
		memcpy(o, "-01", 3);
		o += 3;
	}
	*o = '\0';
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

/* One attempt on instance 'in': the connection within connect_ms, the
 * whole exchange within timeout_ms, and every byte sent acknowledged by
 * the instance's host within connect_ms too: a host cut off while a call
 * was out on a kept-alive connection is given up on in about connect_ms,
 * however long the request may take, and the call retried elsewhere. */
static enum mn_err attempt(struct peer_client *pc, const struct peer_request *req,
			   const struct consul_instance *in, uint64_t timeout_ms,
			   uint64_t connect_ms, const char *traceparent_header,
			   struct httpc_response *res, char *err, size_t errlen)
{
	char url[1024], rid[128];
	const char *headers[4] = {NULL, NULL, NULL, NULL};
	const char *scheme = "http";
	json_t *ms = json_object_get(in->meta, "scheme");
	size_t nh = 0;
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
	headers[nh++] = traceparent_header;
	if (req->body)
		headers[nh++] = "Content-Type: application/json";
	h = handle_acquire(pc);
	if (h == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	if (connect_ms == 0 || connect_ms > timeout_ms)
		connect_ms = timeout_ms;
	e = pc->transport->perform(pc->transport->ctx, h,
			  &(struct httpc_request){
				  .method = req->method,
				  .url = url,
				  .headers = headers,
				  .body = req->body,
				  .body_len = req->body_len,
				  .timeout_ms = (long)timeout_ms,
				  .connect_timeout_ms = (long)connect_ms,
				  .ack_timeout_ms = connect_ms < timeout_ms ? (long)connect_ms : 0,
				  .max_response = req->max_response ? req->max_response
								    : DEFAULT_MAX_RESPONSE,
			  },
			  res, err, errlen);
	handle_release(pc, h);
	return e;
}

/* Records an attempt's result on the instance's state. */
static void record(struct inst_state *st, enum peer_failure f, uint64_t now,
		   const struct peer_settings *s, const char *msg)
{
	atomic_fetch_sub(&st->inflight, 1);
	pthread_mutex_lock(&st->lock);
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
			log_warn("peers", "instance '%s' on node '%s' of '%s' ejected for %llu ms: "
				 "%s", st->id, st->node, st->service,
				 (unsigned long long)s->breaker_open_ms, msg);
		breaker_trip(&st->br, now);
	} else {
		breaker_failure(&st->br, now, s->breaker_failures);
	}
out:
	atomic_store(&st->closed, st->br.state == BREAKER_CLOSED);
	pthread_mutex_unlock(&st->lock);
}

/* What one call's balancer sees: the table (its first n instances; the
 * reserve after them), and the instances the call passed over already. */
struct pick {
	const struct peer_table *t;
	size_t n, reserve;
	uint64_t now, open_ms;
	size_t tried[TRIED_MAX];
	size_t ntried;
};

static bool pick_tried(const struct pick *p, size_t i)
{
	for (size_t k = 0; k < p->ntried; k++)
		if (p->tried[k] == i)
			return true;
	return false;
}

static bool pick_eligible(void *ctx, size_t i)
{
	struct pick *p = ctx;
	struct inst_state *st = p->t->st[i];
	bool ok;

	if (pick_tried(p, i))
		return false;
	if (atomic_load(&st->closed))
		return true; /* pick_take() decides under the lock */
	pthread_mutex_lock(&st->lock);
	ok = breaker_would_allow(&st->br, p->now, p->open_ms);
	pthread_mutex_unlock(&st->lock);
	return ok;
}

static unsigned pick_inflight(void *ctx, size_t i)
{
	const struct pick *p = ctx;

	return atomic_load(&p->t->st[i]->inflight);
}

/* Takes instance 'idx' for the call's next attempt when its circuit lets
 * the call through (it then counts as in flight); either way the call has
 * tried it. */
static bool pick_try(struct pick *p, size_t idx)
{
	struct inst_state *st = p->t->st[idx];
	bool ok;

	pthread_mutex_lock(&st->lock);
	ok = breaker_allow(&st->br, p->now, p->open_ms);
	if (ok)
		st->calls++;
	atomic_store(&st->closed, st->br.state == BREAKER_CLOSED);
	pthread_mutex_unlock(&st->lock);
	p->tried[p->ntried++] = idx;
	if (ok)
		atomic_fetch_add(&st->inflight, 1);
	return ok;
}

/* An instance for the next attempt, taken, or LB_NONE. */
static size_t pick_take(const struct lb_strategy *lb, struct pick *p)
{
	struct lb_view v = {p->t ? p->n : 0, pick_eligible, pick_inflight, p};

	while (p->t && p->ntried < TRIED_MAX) {
		size_t idx = lb->pick(&p->t->svc->lb, &v);

		if (idx == LB_NONE)
			return LB_NONE;
		if (pick_try(p, idx))
			return idx;
		/* another call took the half-open probe first */
	}
	return LB_NONE;
}

/* An instance of the reserve for the next attempt, taken, or LB_NONE:
 * when no passing instance can take the call, the registered ones Consul
 * does not believe in, one after the other across calls. */
static size_t pick_reserve(struct pick *p)
{
	unsigned start;

	if (p->t == NULL || p->reserve == 0)
		return LB_NONE;
	start = atomic_fetch_add(&p->t->svc->reserve_next, 1);
	for (size_t k = 0; k < p->reserve && p->ntried < TRIED_MAX; k++) {
		size_t idx = p->n + (start + k) % p->reserve;

		if (!pick_tried(p, idx) && pick_try(p, idx))
			return idx;
	}
	return LB_NONE;
}

/* The client's clock at monotonic time 'ns': the system clock's from the
 * time already read (a clock read costs on some VMs, and a call reads the
 * time around each attempt anyway), an injected one's asked. */
static uint64_t call_now(const struct peer_client *pc, uint64_t ns)
{
	return pc->clock == &clock_system ? ns / 1000000u : clock_now(pc->clock);
}

static enum mn_err get_snapshot(struct peer_client *pc, const char *service,
				const struct peer_settings *s, const struct peer_snapshot **snap,
				char *err, size_t errlen)
{
	if (pc->resolver == NULL)
		return mn_error(err, errlen, MN_INTERNAL, "no resolver attached");
	return resolver_get_via(pc->resolver, service, s->tag, s->dns, snap, err, errlen);
}

enum mn_err peer_call(struct peer_client *pc, const struct peer_settings *s,
		      const struct peer_request *req, struct httpc_response *res, char *err,
		      size_t errlen)
{
	const struct lb_strategy *lb = lb_find(s->lb && *s->lb ? s->lb : "round_robin");
	const struct peer_snapshot *snap;
	struct backoff backoff;
	struct pick p;
	char traceparent[80], msg[256] = "";
	enum mn_err ret = MN_UNAVAILABLE;
	unsigned attempts = 0;
	struct httpc_response best;   /* a 5xx answer kept while a retry goes out */
	uint64_t now, deadline, t0;   /* t0: when the attempt started, ns */

	if (lb == NULL)
		return mn_error(err, errlen, MN_INVALID, "unknown load balancing '%s'", s->lb);
	ret = get_snapshot(pc, req->service, s, &snap, msg, sizeof(msg));
	if (ret != MN_OK) {
		metric_inc(pc->m.requests, (const char *[]){req->service, "no_instance"});
		return mn_error(err, errlen, ret, "%s", msg);
	}
	/* the call's time starts once it has instances: a first use waits for
	 * Consul's first answer before */
	t0 = clock_monotonic_ns();
	now = call_now(pc, t0);
	httpc_response_init(&best);
	ret = MN_UNAVAILABLE;
	p = (struct pick){.t = snap->prepared,
			  .n = snap->n,
			  .reserve = snap->reserve,
			  .now = now,
			  .open_ms = s->breaker_open_ms};
	make_traceparent(req->traceparent, traceparent);
	backoff_init(&backoff, RETRY_BASE_MS, RETRY_CAP_MS, t0 ^ (uintptr_t)&backoff);
	deadline = now + s->timeout_ms * (s->retries + 1);

	for (;;) {
		const struct consul_instance *in;
		struct inst_state *st;
		enum peer_failure f;
		uint64_t t1, delay;
		size_t idx;
		enum mn_err e;

		p.now = now;
		idx = pick_take(lb, &p);
		if (idx == LB_NONE && (idx = pick_reserve(&p)) != LB_NONE)
			log_debug("peers", "'%s %s': no passing instance of '%s' could take it; "
				  "trying '%s' on node '%s', registered but not passing",
				  req->method, req->path, req->service, snap->inst[idx].id,
				  snap->inst[idx].node);
		if (idx == LB_NONE) {
			if (attempts == 0)
				snprintf(msg, sizeof(msg), "%s",
					 !snap->known ? "consul has not answered yet"
					 : snap->n == 0 ? "no passing instance"
							: "every instance's circuit is open");
			break;
		}
		in = &snap->inst[idx];
		st = p.t->st[idx];

		e = attempt(pc, req, in, s->timeout_ms < deadline - now ? s->timeout_ms
									  : deadline - now,
			    s->connect_timeout_ms, traceparent, res, msg, sizeof(msg));
		f = classify(e, res);
		if (f == PEER_FAIL_5XX)
			snprintf(msg, sizeof(msg), "answered %ld", res->status);
		t1 = clock_monotonic_ns();
		now = call_now(pc, t1);
		record(st, f, now, s, msg);
		metric_inc(pc->m.requests, (const char *[]){req->service, outcome_name(f)});
		metric_observe(pc->m.duration, (const char *[]){req->service},
			       (double)(t1 - t0) / 1e9);
		attempts++;
		if (f == PEER_FAIL_NONE || f == PEER_FAIL_5XX)
			ret = MN_OK; /* an answer, perhaps the best there is */
		else
			ret = MN_UNAVAILABLE;
		if (f == PEER_FAIL_NONE || !retry_allowed(req->method, f, attempts, s->retries) ||
		    !retry_delay(&backoff, now, deadline, &delay))
			break;
		if (f == PEER_FAIL_5XX) {
			/* the answer stays the call's unless a retry does better */
			httpc_response_release(&best);
			best = *res;
			httpc_response_init(res);
		}
		log_debug("peers", "retrying '%s %s' on another instance of '%s' after: %s",
			  req->method, req->path, req->service, msg);
		clock_sleep_ms(delay);
		t0 = clock_monotonic_ns();
		now = call_now(pc, t0);
		if (now >= deadline)
			break;
	}
	if (best.status && (ret != MN_OK || res->status == 0)) {
		/* no attempt after a 5xx answered (they failed, or none could
		 * go): the 5xx is the best answer there is */
		httpc_response_release(res);
		*res = best;
		httpc_response_init(&best);
		ret = MN_OK;
	}
	httpc_response_release(&best);
	if (ret != MN_OK) {
		mn_error(err, errlen, MN_UNAVAILABLE, "%s: %s (%u attempt%s)", req->service, msg,
			 attempts, attempts == 1 ? "" : "s");
		if (attempts == 0)
			metric_inc(pc->m.requests, (const char *[]){req->service, "no_instance"});
	}
	resolver_put(snap);
	return ret;
}

uint64_t peer_client_retry_after_ms(struct peer_client *pc, const char *service,
				    const struct peer_settings *s)
{
	uint64_t breaker_open_ms = s->breaker_open_ms;
	uint64_t now = clock_now(pc->clock), best = 0;
	const struct peer_snapshot *snap;
	const struct peer_table *t;
	char err[256];

	if (get_snapshot(pc, service, s, &snap, err, sizeof(err)) != MN_OK)
		return 0;
	t = snap->prepared;
	for (size_t i = 0; t && i < t->n; i++) {
		struct inst_state *st = t->st[i];
		uint64_t until;

		pthread_mutex_lock(&st->lock);
		until = st->br.opened_at + breaker_open_ms;
		if (st->br.state == BREAKER_OPEN && until > now && (best == 0 || until - now < best))
			best = until - now;
		pthread_mutex_unlock(&st->lock);
	}
	resolver_put(snap);
	return best;
}

/* An instance's circuit as a caller would find it: an open circuit past its
 * time is ready for a probe. The state's lock held. */
static enum breaker_state circuit_now(const struct inst_state *st, uint64_t now, uint64_t open_ms)
{
	if (st->br.state == BREAKER_OPEN && breaker_would_allow(&st->br, now, open_ms))
		return BREAKER_HALF_OPEN;
	return st->br.state;
}

enum mn_err peer_client_view(struct peer_client *pc, const char *service,
			     const struct peer_settings *s, size_t offset, size_t limit,
			     json_t **out, char *err, size_t errlen)
{
	uint64_t breaker_open_ms = s->breaker_open_ms;
	const struct peer_snapshot *snap;
	const struct peer_table *t;
	json_t *view, *list;
	uint64_t now;
	enum mn_err e;

	*out = NULL;
	e = get_snapshot(pc, service, s, &snap, err, errlen);
	if (e != MN_OK)
		return e;
	now = clock_now(pc->clock); /* after a first use's wait */
	t = snap->prepared;
	list = json_array();
	view = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:o}", "service",
			 service, "tag", snap->tag, "known", snap->known, "index",
			 (json_int_t)snap->index, "age_ms",
			 (json_int_t)(now > snap->changed_ms ? now - snap->changed_ms : 0),
			 "stale_ms", (json_int_t)resolver_stale_ms(pc->resolver, service), "panic",
			 snap->panic, "instances_passing", (json_int_t)snap->passing,
			 "instances_registered", (json_int_t)snap->registered, "instances_total",
			 (json_int_t)snap->n, "instances", list);
	if (view && (json_object_set_new(view, "instances_reserve",
					 json_integer((json_int_t)snap->reserve)) != 0 ||
		     json_object_set_new(view, "discovery",
					 json_string(s->dns ? "dns" : "http")) != 0)) {
		json_decref(view);
		view = NULL;
	}
	for (size_t i = offset; view && t && i < snap->n && i - offset < limit; i++) {
		const struct consul_instance *in = &snap->inst[i];
		struct inst_state *st = t->st[i];
		json_t *one;

		pthread_mutex_lock(&st->lock);
		one = json_pack(
			"{s:s, s:s, s:s, s:i, s:O, s:O, s:b, s:s, s:I, s:I, s:I, s:I, s:s}", "id",
			in->id, "node", in->node, "address", in->address, "port", in->port, "tags",
			in->tags, "meta", in->meta, "passing", in->passing, "circuit",
			breaker_state_name(circuit_now(st, now, breaker_open_ms)), "inflight",
			(json_int_t)atomic_load(&st->inflight), "recent_failures",
			(json_int_t)st->recent_failures, "calls", (json_int_t)st->calls, "failures",
			(json_int_t)st->failures, "last_error", st->last_error);
		pthread_mutex_unlock(&st->lock);
		if (one == NULL || json_array_append_new(list, one) != 0) {
			json_decref(view);
			view = NULL;
		}
	}
	resolver_put(snap);
	if (view == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	*out = view;
	return MN_OK;
}

void peer_client_foreach_instance(const struct peer_snapshot *snap,
				  void (*fn)(void *ctx, const char *service, const char *node,
					     const char *instance, const char *state),
				  void *ctx)
{
	const struct peer_table *t = snap->prepared;

	for (size_t i = 0; t && i < t->n; i++) {
		enum breaker_state state;

		pthread_mutex_lock(&t->st[i]->lock);
		state = t->st[i]->br.state;
		pthread_mutex_unlock(&t->st[i]->lock);
		fn(ctx, snap->service, t->st[i]->node, snap->inst[i].id,
		   breaker_state_name(state));
	}
}
