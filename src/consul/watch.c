#include "consul/watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/kv.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/worker.h"

#define DEFAULT_WAIT_MS (5 * 60 * 1000)
#define DEFAULT_MIN_INTERVAL_MS 100
#define DEFAULT_BACKOFF_BASE_MS 250
#define DEFAULT_BACKOFF_CAP_MS 30000
#define DEFAULT_MAX_RESPONSE (16u << 20)
/* Time for the answer itself, on top of the agent's wait and jitter. */
#define CALL_MARGIN_MS 5000

/* ---- the rules -------------------------------------------------------- */

uint64_t watch_next_index(uint64_t sent, uint64_t got)
{
	if (got == 0 || got < sent)
		return 1; /* missing, or went backwards (agent restarted): start over */
	return got;
}

bool watch_is_change(bool first, uint64_t last_index, uint64_t last_hash, uint64_t index,
		     uint64_t hash)
{
	return first || (index != last_index && hash != last_hash);
}

uint64_t watch_call_timeout_ms(uint64_t wait_ms) { return wait_ms + wait_ms / 16 + CALL_MARGIN_MS; }

uint64_t watch_hash(const char *body, size_t len)
{
	return hash_bytes(HASH_START, body, len);
}

uint64_t watch_answer_hash(const char *body, size_t len, bool not_found)
{
	return watch_hash(body, len) ^ (uint64_t)not_found;
}

void watch_state_init(struct watch_state *s, uint64_t min_interval_ms, uint64_t backoff_base_ms,
		      uint64_t backoff_cap_ms, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->min_interval_ms = min_interval_ms;
	backoff_init(&s->backoff, backoff_base_ms, backoff_cap_ms, seed);
	s->rng = s->backoff.rng ^ 0x5851F42D4C957F2DULL;
}

void watch_state_resume(struct watch_state *s, uint64_t index)
{
	s->sent = index;
	s->last_index = index;
	s->last_hash = 0; /* the body read is not known here: any body differs */
	s->delivered = index != 0;
}

uint64_t watch_state_delay(const struct watch_state *s, uint64_t now)
{
	return s->next_start > now ? s->next_start - now : 0;
}

uint64_t watch_state_start(struct watch_state *s, uint64_t now)
{
	uint64_t jitter = s->min_interval_ms / 2 + 1;

	s->next_start = now + s->min_interval_ms + mn_rand_next(&s->rng) % jitter;
	return s->sent;
}

bool watch_state_answer(struct watch_state *s, uint64_t index, uint64_t hash)
{
	bool deliver = watch_is_change(!s->delivered, s->last_index, s->last_hash, index, hash);

	s->sent = watch_next_index(s->sent, index);
	backoff_reset(&s->backoff);
	if (deliver) {
		s->last_index = index;
		s->last_hash = hash;
		s->delivered = true;
	}
	return deliver;
}

void watch_state_too_large(struct watch_state *s, uint64_t index)
{
	s->sent = watch_next_index(s->sent, index);
	backoff_reset(&s->backoff);
	s->last_index = index;
	s->last_hash = 0; /* nothing read: any body that fits differs */
	s->delivered = true;
}

uint64_t watch_state_failed(struct watch_state *s, uint64_t now)
{
	uint64_t delay = backoff_next(&s->backoff);

	s->sent = 0;
	if (now + delay > s->next_start)
		s->next_start = now + delay;
	return delay;
}

/* ---- the thread ------------------------------------------------------- */

struct watch {
	struct consul *consul;
	char *op;
	char *path;
	uint64_t wait_ms;
	size_t max_response;
	watch_change_fn on_change;
	watch_error_fn on_error;
	void *ctx;
	const struct mn_clock *clock;
	struct watch_state state;  /* under lock */
	enum mn_err failing;       /* under lock: the last call's error, MN_OK
				      while the agent answers */
	uint64_t last_answer;      /* under lock: when the last complete, successful
				      answer arrived (the start before the first) */
	pthread_mutex_t lock;
	struct worker worker;      /* the thread; its cancel flag cuts the call
				      in flight short on stop */
};

/* One call to the agent with 'index' (0: a plain read). */
static enum mn_err watch_call(struct watch *w, struct httpc *h, uint64_t index,
			      struct httpc_response *res, char *err, size_t errlen)
{
	char path[2048];
	int n;

	if (index == 0)
		n = snprintf(path, sizeof(path), "%s", w->path);
	else
		n = snprintf(path, sizeof(path), "%s%cindex=%llu&wait=%llums", w->path,
			     strchr(w->path, '?') ? '&' : '?', (unsigned long long)index,
			     (unsigned long long)w->wait_ms);
	if (n < 0 || (size_t)n >= sizeof(path))
		return mn_error(err, errlen, MN_INVALID, "watch path too long");
	return consul_call(w->consul, h,
			   &(struct consul_call){
				   .op = w->op,
				   .method = "GET",
				   .path = path,
				   .timeout_ms = (long)watch_call_timeout_ms(index ? w->wait_ms : 0),
				   .max_response = w->max_response,
				   .cancel = &w->worker.cancel,
			   },
			   res, err, errlen);
}

/* One warning per kind of failure, quiet while it repeats, and a line when
 * the agent answers again; what was last delivered stays in force
 * meanwhile. Lock held. */
static void note_outcome_locked(struct watch *w, enum mn_err e, const char *err)
{
	if (e == MN_OK) {
		if (w->failing != MN_OK)
			log_info("consul", "watch of %s answering again", w->path);
		w->failing = MN_OK;
		w->last_answer = clock_now(w->clock);
		return;
	}
	if (e != w->failing)
		log_warn("consul", "watch of %s failed: %s; keeping what it last read", w->path,
			 err);
	else
		log_debug("consul", "watch of %s: %s", w->path, err);
	w->failing = e;
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	struct httpc *h = consul_conn_create(w->consul);
	struct httpc_response res;
	char err[512];

	if (h == NULL) {
		log_error("consul", "watch %s: out of memory", w->path);
		return NULL;
	}
	httpc_response_init(&res);
	pthread_mutex_lock(&w->lock);
	while (!worker_stopping(&w->worker)) {
		uint64_t delay = watch_state_delay(&w->state, clock_now(w->clock)), index;
		bool deliver = false, not_found = false;
		enum mn_err e;
		bool too_large;

		if (delay) {
			worker_wait_locked(&w->worker, delay, NULL, NULL);
			continue;
		}
		atomic_store(&w->worker.cancel, false);
		index = watch_state_start(&w->state, clock_now(w->clock));
		pthread_mutex_unlock(&w->lock);

		e = watch_call(w, h, index, &res, err, sizeof(err));
		if (atomic_load(&w->worker.cancel)) {
			/* Stopped: the blocked call was cut short. */
			pthread_mutex_lock(&w->lock);
			continue;
		}
		if (e == MN_NOT_FOUND) {
			/* A KV prefix with no keys: an answer, with an empty body. */
			not_found = true;
			buf_release(&res.body);
			e = MN_OK;
		}
		/* Over max_response, with the index captured from the headers:
		 * an answer at that index (watch_error_fn), not a failure. */
		too_large = e == MN_TOO_LARGE && consul_index_parse(res.captured) != 0;
		pthread_mutex_lock(&w->lock);
		if (e == MN_OK) {
			const char *body = res.body.data ? res.body.data : "";

			deliver = watch_state_answer(&w->state, consul_index_parse(res.captured),
						     watch_answer_hash(body, res.body.len, not_found));
		} else if (too_large) {
			watch_state_too_large(&w->state, consul_index_parse(res.captured));
		} else {
			watch_state_failed(&w->state, clock_now(w->clock));
		}
		if (too_large) {
			/* the agent answers, but what it has is not read: the
			 * staleness clock keeps running */
			uint64_t last = w->last_answer;

			note_outcome_locked(w, MN_OK, err);
			w->last_answer = last;
		} else {
			note_outcome_locked(w, e, err);
		}
		pthread_mutex_unlock(&w->lock);

		/* Callbacks run without the lock. */
		if (e != MN_OK && w->on_error)
			w->on_error(w->ctx, e, err);
		if (deliver)
			w->on_change(w->ctx, res.body.data ? res.body.data : "", res.body.len,
				     consul_index_parse(res.captured), not_found);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	httpc_response_release(&res);
	consul_conn_destroy(w->consul, h);
	return NULL;
}

struct watch *watch_start(const struct watch_opts *opts)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->consul = opts->consul;
	w->op = strdup(opts->op ? opts->op : "watch");
	w->path = strdup(opts->path);
	w->wait_ms = opts->wait_ms ? opts->wait_ms : DEFAULT_WAIT_MS;
	w->max_response = opts->max_response ? opts->max_response : DEFAULT_MAX_RESPONSE;
	w->on_change = opts->on_change;
	w->on_error = opts->on_error;
	w->ctx = opts->ctx;
	w->clock = opts->clock ? opts->clock : &clock_system;
	watch_state_init(&w->state,
			 opts->min_interval_ms ? opts->min_interval_ms : DEFAULT_MIN_INTERVAL_MS,
			 opts->backoff_base_ms ? opts->backoff_base_ms : DEFAULT_BACKOFF_BASE_MS,
			 opts->backoff_cap_ms ? opts->backoff_cap_ms : DEFAULT_BACKOFF_CAP_MS, 0);
	watch_state_resume(&w->state, opts->start_index);
	w->last_answer = clock_now(w->clock);
	if (w->op == NULL || w->path == NULL)
		goto out_free;
	if (pthread_mutex_init(&w->lock, NULL) != 0)
		goto out_free;
	if (worker_init(&w->worker, &w->lock, NULL) != MN_OK)
		goto out_mutex;
	if (worker_start(&w->worker, watch_main, w) != MN_OK)
		goto out_worker;
	return w;

out_worker:
	worker_release(&w->worker);
out_mutex:
	pthread_mutex_destroy(&w->lock);
out_free:
	free(w->op);
	free(w->path);
	free(w);
	return NULL;
}

void watch_stop(struct watch *w)
{
	if (w == NULL)
		return;
	worker_stop(&w->worker);
	worker_join(&w->worker, -1);
	worker_release(&w->worker);
	pthread_mutex_destroy(&w->lock);
	free(w->op);
	free(w->path);
	free(w);
}

uint64_t watch_stale_ms(struct watch *w)
{
	uint64_t stale, now;

	if (w == NULL)
		return 0;
	pthread_mutex_lock(&w->lock);
	now = clock_now(w->clock);
	stale = now > w->last_answer ? now - w->last_answer : 0;
	pthread_mutex_unlock(&w->lock);
	return stale;
}
