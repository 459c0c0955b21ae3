/* A table-driven HTTP transport for unit tests (struct httpc_transport),
 * fed with answers captured from the real agent. Each request goes to the
 * first rule whose method and URL substring match it (or to nothing: a
 * counted MN_IO). A rule answers a status, a body and an X-Consul-Index, or
 * fails like httpc_perform does (MN_UNAVAILABLE: the connection was refused,
 * nothing sent; MN_TIMEOUT and MN_IO: sent, unless not_sent says the time ran
 * out while connecting), or asks a callback. A rule may also hold its
 * requests the way an agent holds a blocking query: until it is cancelled,
 * until a given index is published, or, for ?index=N, until an index above
 * N is published or the query's wait= passes.
 *
 * The fake counts calls per rule, keeps the last FAKE_LOG_MAX requests (URL,
 * headers, timeout) for assertions, and counts the handles made and freed.
 * Thread-safe: watch threads and caller threads use it at once. Held
 * requests look at *req->cancel every few milliseconds, as the libcurl
 * transport does every 50. Header-only; include after <cmocka.h>. */
#ifndef MESHNODE_TESTS_FAKE_TRANSPORT_H
#define MESHNODE_TESTS_FAKE_TRANSPORT_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "http/client.h"

#define FAKE_RULES_MAX 32
#define FAKE_LOG_MAX   512
#define FAKE_TEXT_MAX  512
/* How often a held request looks at its cancel flag. */
#define FAKE_POLL_MS 5

struct fake_answer {
	enum mn_err fail; /* MN_OK: the answer below; else this failure */
	bool not_sent;	  /* with MN_TIMEOUT or MN_IO: nothing went out
			     (MN_UNAVAILABLE never sends) */
	long status;	  /* 0 means 200 */
	const char *body; /* borrowed; NULL: empty */
	size_t body_len;  /* 0: strlen(body) */
	uint64_t index;	  /* X-Consul-Index; 0: no such header */
};

struct fake_rule {
	const char *method;	/* NULL: any */
	const char *url_has;	/* a substring of the URL; NULL: any */
	struct fake_answer ans; /* what it answers now (fake_publish changes it) */
	bool blocking;		/* ?index=N waits while ans.index <= N, as Consul
				   does, until a publish, wait= or cancel */
	bool hang;		/* never answers: its cancel flag ends it, or its
				   timeout (real time) when it has none */
	uint64_t hold_until;	/* no answer before ans.index reaches this */
	uint64_t elapse_ms;	/* the answer takes this long on the test's clock */
	/* Or the answer comes from fn, called without the fake's lock (it may
	 * block, publish or move the clock); the body it names must stay valid
	 * until fn returns, it is copied then. */
	void (*fn)(void *ctx, const struct httpc_request *req, struct fake_answer *ans);
	void *fn_ctx;
};

struct fake_request {
	char method[16];
	char url[FAKE_TEXT_MAX];
	char headers[FAKE_TEXT_MAX]; /* "Name: value" lines joined by '\n' */
	long timeout_ms;
	long ack_timeout_ms;
	int rule; /* -1: none matched */
};

struct fake_transport {
	struct httpc_transport iface; /* pass &ft->iface */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a request, a publish, a close */
	struct fake_rule rules[FAKE_RULES_MAX];
	unsigned calls[FAKE_RULES_MAX];
	unsigned held[FAKE_RULES_MAX]; /* requests held by each rule now */
	size_t n_rules;
	unsigned total, unmatched, cancelled;
	unsigned misuse;		       /* a NULL or foreign handle */
	struct fake_request log[FAKE_LOG_MAX]; /* the last FAKE_LOG_MAX */
	size_t n_log;			       /* logged ever */
	int handles_live;
	unsigned handles_made;
	void (*elapse)(void *ctx, uint64_t ms); /* moves the test's clock */
	void *elapse_ctx;
};

/* What the fake hands out as a struct httpc: callers never look inside. */
struct fake_handle {
	struct fake_transport *ft;
	unsigned serial;
};

/* ---- the transport ------------------------------------------------------ */

static struct httpc *fake_handle_create(void *ctx)
{
	struct fake_transport *ft = ctx;
	struct fake_handle *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->ft = ft;
	pthread_mutex_lock(&ft->lock);
	h->serial = ++ft->handles_made;
	ft->handles_live++;
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
	return (struct httpc *)h;
}

static void fake_handle_destroy(void *ctx, struct httpc *h)
{
	struct fake_transport *ft = ctx;

	if (h == NULL)
		return;
	pthread_mutex_lock(&ft->lock);
	if (((struct fake_handle *)h)->ft != ft)
		ft->misuse++;
	free(h);
	ft->handles_live--;
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
}

static bool fake_matches(const struct fake_rule *r, const struct httpc_request *req)
{
	return (r->method == NULL || strcmp(r->method, req->method) == 0) &&
	       (r->url_has == NULL || strstr(req->url, r->url_has) != NULL);
}

/* N of "index=N" in the query; 0 when absent (a plain read). */
static uint64_t fake_query_u64(const char *url, const char *key)
{
	const char *q = strchr(url, '?'), *p;
	size_t klen = strlen(key);

	for (p = q; p; p = strchr(p + 1, '&'))
		if (strncmp(p + 1, key, klen) == 0 && p[1 + klen] == '=')
			return strtoull(p + 2 + klen, NULL, 10);
	return 0;
}

/* wait=Xms or wait=Xs of a blocking query, in ms; 0 when absent. */
static uint64_t fake_query_wait_ms(const char *url)
{
	const char *p = strstr(url, "wait=");
	char *end;
	uint64_t v;

	if (p == NULL)
		return 0;
	v = strtoull(p + 5, &end, 10);
	return strncmp(end, "ms", 2) == 0 ? v : v * 1000;
}

static void fake_log_locked(struct fake_transport *ft, const struct httpc_request *req, int rule)
{
	struct fake_request *l = &ft->log[ft->n_log++ % FAKE_LOG_MAX];
	size_t pos = 0;

	snprintf(l->method, sizeof(l->method), "%s", req->method);
	snprintf(l->url, sizeof(l->url), "%s", req->url);
	l->headers[0] = '\0';
	for (const char *const *h = req->headers; h && *h && pos < sizeof(l->headers); h++)
		pos += (size_t)snprintf(l->headers + pos, sizeof(l->headers) - pos, "%s%s",
					pos ? "\n" : "", *h);
	l->timeout_ms = req->timeout_ms;
	l->ack_timeout_ms = req->ack_timeout_ms;
	l->rule = rule;
}

static enum mn_err fake_fill(const struct httpc_request *req, const struct fake_answer *a,
			     struct httpc_response *res, char *err, size_t errlen)
{
	size_t len = a->body ? (a->body_len ? a->body_len : strlen(a->body)) : 0;

	if (a->fail != MN_OK) {
		res->sent = a->fail != MN_UNAVAILABLE && !a->not_sent;
		return mn_error(err, errlen, a->fail, "fake: %s failed", req->url);
	}
	res->sent = true;
	/* headers come before the body: an answer over the cap still has
	 * its index, as with libcurl */
	if (a->index && req->capture_header &&
	    strcasecmp(req->capture_header, "X-Consul-Index") == 0)
		snprintf(res->captured, sizeof(res->captured), "%" PRIu64, a->index);
	if (len && buf_append(&res->body, a->body, len) != MN_OK)
		return mn_error(err, errlen, MN_TOO_LARGE, "response larger than %zu bytes",
				req->max_response);
	res->status = a->status ? a->status : 200;
	return MN_OK;
}

static enum mn_err fake_perform(void *ctx, struct httpc *h, const struct httpc_request *req,
				struct httpc_response *res, char *err, size_t errlen)
{
	struct fake_transport *ft = ctx;
	struct fake_answer ans;
	struct fake_rule rule;
	uint64_t want, wait_ms, start;
	enum mn_err e;
	int i;

	res->status = 0;
	res->captured[0] = '\0';
	res->sent = false;
	buf_release(&res->body);
	buf_init(&res->body, req->max_response);

	pthread_mutex_lock(&ft->lock);
	if (h == NULL || ((struct fake_handle *)h)->ft != ft)
		ft->misuse++;
	for (i = 0; i < (int)ft->n_rules && !fake_matches(&ft->rules[i], req); i++)
		;
	ft->total++;
	if (i == (int)ft->n_rules) {
		ft->unmatched++;
		fake_log_locked(ft, req, -1);
		pthread_cond_broadcast(&ft->cond);
		pthread_mutex_unlock(&ft->lock);
		return mn_error(err, errlen, MN_IO, "fake: no rule for %s %s", req->method,
				req->url);
	}
	ft->calls[i]++;
	fake_log_locked(ft, req, i);
	pthread_cond_broadcast(&ft->cond);
	rule = ft->rules[i];

	if (rule.fn) {
		pthread_mutex_unlock(&ft->lock);
		ans = (struct fake_answer){0};
		rule.fn(rule.fn_ctx, req, &ans);
		return fake_fill(req, &ans, res, err, errlen);
	}

	/* Held: blocking queries, first answers that come later, dead agents. */
	want = rule.blocking ? fake_query_u64(req->url, "index") : 0;
	wait_ms = rule.blocking && want ? fake_query_wait_ms(req->url) : 0;
	start = clock_monotonic_ms();
	ft->held[i]++;
	pthread_cond_broadcast(&ft->cond);
	for (;;) {
		const struct fake_rule *r = &ft->rules[i];
		bool ready = !r->hang && r->ans.index >= r->hold_until;
		uint64_t now = clock_monotonic_ms();
		struct timespec ts;

		if (req->cancel && atomic_load(req->cancel)) {
			ft->held[i]--;
			ft->cancelled++;
			pthread_mutex_unlock(&ft->lock);
			res->sent = true;
			return mn_error(err, errlen, MN_IO, "cancelled");
		}
		if (ready && (want == 0 || r->ans.index > want))
			break;
		if (ready && wait_ms && now >= start + wait_ms)
			break; /* the wait passed: Consul answers what it has */
		if (req->cancel == NULL && req->timeout_ms &&
		    now >= start + (uint64_t)req->timeout_ms) {
			ft->held[i]--;
			pthread_mutex_unlock(&ft->lock);
			res->sent = true;
			return mn_error(err, errlen, MN_TIMEOUT, "fake: %s timed out", req->url);
		}
		ts = clock_deadline_ms(FAKE_POLL_MS);
		pthread_cond_timedwait(&ft->cond, &ft->lock, &ts);
	}
	ft->held[i]--;
	/* copied under the lock: a publish may replace the body right after */
	ans = ft->rules[i].ans;
	if (rule.elapse_ms) {
		pthread_mutex_unlock(&ft->lock);
		if (ft->elapse)
			ft->elapse(ft->elapse_ctx, rule.elapse_ms);
		pthread_mutex_lock(&ft->lock);
		ans = ft->rules[i].ans;
	}
	e = fake_fill(req, &ans, res, err, errlen);
	pthread_mutex_unlock(&ft->lock);
	return e;
}

/* ---- the test's side ---------------------------------------------------- */

/* A new fake with no rule. */
static inline struct fake_transport *fake_create(void)
{
	struct fake_transport *ft = calloc(1, sizeof(*ft));

	assert_non_null(ft);
	ft->iface =
		(struct httpc_transport){fake_handle_create, fake_handle_destroy, fake_perform, ft};
	pthread_mutex_init(&ft->lock, NULL);
	assert_int_equal(clock_cond_init(&ft->cond), 0);
	return ft;
}

/* Frees the fake; whatever used it must be gone. */
static inline void fake_destroy(struct fake_transport *ft)
{
	if (ft == NULL)
		return;
	pthread_cond_destroy(&ft->cond);
	pthread_mutex_destroy(&ft->lock);
	free(ft);
}

/* Adds a rule after the others (first match wins); returns its number. */
static inline int fake_rule_add(struct fake_transport *ft, const struct fake_rule *r)
{
	int i;

	pthread_mutex_lock(&ft->lock);
	assert_true(ft->n_rules < FAKE_RULES_MAX);
	i = (int)ft->n_rules++;
	ft->rules[i] = *r;
	pthread_mutex_unlock(&ft->lock);
	return i;
}

/* Rule 'i' answers 'a' from now on; held requests look again. */
static inline void fake_set_answer(struct fake_transport *ft, int i, const struct fake_answer *a)
{
	pthread_mutex_lock(&ft->lock);
	ft->rules[i].ans = *a;
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
}

/* Rule 'i' answers 200 with 'body' (borrowed) at 'index' from now on: what
 * a write to the catalog does to a blocking query. */
static inline void fake_publish(struct fake_transport *ft, int i, const char *body, uint64_t index)
{
	fake_set_answer(ft, i, &(struct fake_answer){.body = body, .index = index});
}

/* Rule 'i' stops or starts hanging. */
static inline void fake_set_hang(struct fake_transport *ft, int i, bool hang)
{
	pthread_mutex_lock(&ft->lock);
	ft->rules[i].hang = hang;
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
}

/* A counter of the fake, read under its lock. */
static inline unsigned fake_read(struct fake_transport *ft, const unsigned *counter)
{
	unsigned n;

	pthread_mutex_lock(&ft->lock);
	n = *counter;
	pthread_mutex_unlock(&ft->lock);
	return n;
}

static inline unsigned fake_calls(struct fake_transport *ft, int i)
{
	return fake_read(ft, &ft->calls[i]);
}

static inline unsigned fake_total(struct fake_transport *ft)
{
	return fake_read(ft, &ft->total);
}

/* Requests no rule matched, and handles misused: 0 in a sound test. */
static inline unsigned fake_unexpected(struct fake_transport *ft)
{
	return fake_read(ft, &ft->unmatched) + fake_read(ft, &ft->misuse);
}

/* Held requests that ended because their cancel flag turned true. */
static inline unsigned fake_cancelled(struct fake_transport *ft)
{
	return fake_read(ft, &ft->cancelled);
}

static inline int fake_handles_live(struct fake_transport *ft)
{
	int n;

	pthread_mutex_lock(&ft->lock);
	n = ft->handles_live;
	pthread_mutex_unlock(&ft->lock);
	return n;
}

static unsigned fake_seen_locked(const struct fake_transport *ft, const char *url_has)
{
	size_t first = ft->n_log > FAKE_LOG_MAX ? ft->n_log - FAKE_LOG_MAX : 0;
	unsigned n = 0;

	for (size_t k = first; k < ft->n_log; k++)
		if (url_has == NULL || strstr(ft->log[k % FAKE_LOG_MAX].url, url_has))
			n++;
	return n;
}

/* Requests among the last FAKE_LOG_MAX whose URL contains 'url_has'. */
static inline unsigned fake_seen(struct fake_transport *ft, const char *url_has)
{
	unsigned n;

	pthread_mutex_lock(&ft->lock);
	n = fake_seen_locked(ft, url_has);
	pthread_mutex_unlock(&ft->lock);
	return n;
}

/* The last request whose URL contains 'url_has' in *out; false when none. */
static inline bool fake_last(struct fake_transport *ft, const char *url_has,
			     struct fake_request *out)
{
	size_t first = ft->n_log > FAKE_LOG_MAX ? ft->n_log - FAKE_LOG_MAX : 0;
	bool found = false;

	pthread_mutex_lock(&ft->lock);
	for (size_t k = ft->n_log; k > first && !found; k--) {
		if (strstr(ft->log[(k - 1) % FAKE_LOG_MAX].url, url_has)) {
			*out = ft->log[(k - 1) % FAKE_LOG_MAX];
			found = true;
		}
	}
	pthread_mutex_unlock(&ft->lock);
	return found;
}

/* Waits (real time, bounded) until done(ft, arg) holds, looking again at
 * each request, publish or handle change; true when it did. */
static inline bool fake_wait(struct fake_transport *ft, uint64_t timeout_ms,
			     bool (*done)(const struct fake_transport *ft, const void *arg),
			     const void *arg)
{
	uint64_t end = clock_monotonic_ms() + timeout_ms;
	bool ok;

	pthread_mutex_lock(&ft->lock);
	while (!(ok = done(ft, arg)) && clock_monotonic_ms() < end) {
		struct timespec ts = clock_deadline_ms(FAKE_POLL_MS);

		pthread_cond_timedwait(&ft->cond, &ft->lock, &ts);
	}
	pthread_mutex_unlock(&ft->lock);
	return ok;
}

struct fake_count_arg {
	const char *url_has;
	int i;
	unsigned n;
};

static bool fake_seen_done(const struct fake_transport *ft, const void *arg)
{
	const struct fake_count_arg *a = arg;

	return fake_seen_locked(ft, a->url_has) >= a->n;
}

static bool fake_held_done(const struct fake_transport *ft, const void *arg)
{
	const struct fake_count_arg *a = arg;

	return ft->held[a->i] >= a->n;
}

static bool fake_handles_done(const struct fake_transport *ft, const void *arg)
{
	const struct fake_count_arg *a = arg;

	return ft->handles_live == a->i;
}

/* Until at least n logged requests contain 'url_has'. */
static inline bool fake_wait_seen(struct fake_transport *ft, const char *url_has, unsigned n,
				  uint64_t timeout_ms)
{
	struct fake_count_arg a = {url_has, 0, n};

	return fake_wait(ft, timeout_ms, fake_seen_done, &a);
}

/* Until at least n requests are held by rule i. */
static inline bool fake_wait_held(struct fake_transport *ft, int i, unsigned n, uint64_t timeout_ms)
{
	struct fake_count_arg a = {NULL, i, n};

	return fake_wait(ft, timeout_ms, fake_held_done, &a);
}

/* Until exactly n handles are alive: one per running watch thread, plus
 * those the peer client keeps in its pool. */
static inline bool fake_wait_handles(struct fake_transport *ft, int n, uint64_t timeout_ms)
{
	struct fake_count_arg a = {NULL, n, 0};

	return fake_wait(ft, timeout_ms, fake_handles_done, &a);
}

#endif
