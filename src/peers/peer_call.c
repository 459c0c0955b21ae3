/* One call to a peer service: an instance picked by the service's
 * balancing strategy among those whose circuit lets the call through (the
 * reserve when none can), one attempt at a time with a per-attempt timeout
 * inside the call's deadline, retries on other instances, and each
 * attempt's result recorded on its instance's circuit. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/backoff.h"
#include "core/log.h"
#include "peers/retry.h"
#include "peer_internal.h"

#define DEFAULT_MAX_RESPONSE (1u << 20)
/* A Connect call's TLS handshake, beyond the TCP connect's connect_ms: a
 * meshnode server may ask its agent for an authorization decision (500 ms
 * at most, connect/authz.h) before it answers, and a loaded host adds the
 * handshake's own CPU. */
#define CONNECT_HANDSHAKE_MS 1000
#define RETRY_BASE_MS	     20
#define RETRY_CAP_MS	     200
/* Instances one call may pass over: its attempts (retries are at most 10)
 * and the picks another call took first. */
#define TRIED_MAX 32

static const char *outcome_name(enum peer_failure f)
{
	switch (f) {
	case PEER_FAIL_NONE: return "success";
	case PEER_FAIL_CONNECT: return "connect_error";
	case PEER_FAIL_TIMEOUT: return "timeout";
	case PEER_FAIL_5XX: return "server_error";
	case PEER_FAIL_IO: return "error";
	case PEER_FAIL_IDENTITY: return "tls_identity";
	}
	return "error";
}

static enum peer_failure classify(enum mn_err e, const struct httpc_response *res,
				  bool identity_refused)
{
	if (identity_refused)
		return PEER_FAIL_IDENTITY;
	if (e == MN_OK)
		return res->status >= 500 ? PEER_FAIL_5XX : PEER_FAIL_NONE;
	if (e == MN_UNAVAILABLE || !res->sent)
		return PEER_FAIL_CONNECT;
	return e == MN_TIMEOUT ? PEER_FAIL_TIMEOUT : PEER_FAIL_IO;
}

/* A Connect attempt's TLS: the leaf, key and roots of 'm', the peer
 * expected checked in the handshake, HTTP/1.1 only; the URL's host names
 * the identity expected (connect/outbound.h) and CONNECT_TO reaches the
 * instance's address with it. false, the reason in 'err', when the
 * instance cannot be named so. */
static bool connect_setup(const struct connect_material *m, const struct peer_request *req,
			  const struct consul_instance *in, struct connect_outbound_peer *peer,
			  struct httpc_tls *tls, char *url, size_t url_size, char *connect_to,
			  size_t connect_to_size, char *err, size_t errlen)
{
	char host[256];

	if (connect_outbound_host(host, sizeof(host), req->service, in->dc, m->snap->trust_domain,
				  err, errlen) != MN_OK)
		return false;
	*peer = (struct connect_outbound_peer){.m = m, .service = req->service, .dc = in->dc};
	*tls = (struct httpc_tls){
		.ca_pem = m->ca_pem,
		.ca_pem_len = m->ca_pem_len,
		.cert_pem = m->cert_pem,
		.cert_pem_len = m->cert_pem_len,
		.key_pem = m->key_pem,
		.key_pem_len = m->key_pem_len,
		.no_verify_host = true,
		.http1 = true,
		.ssl_ctx_fn = connect_outbound_ssl_ctx,
		.ssl_ctx_arg = peer,
	};
	snprintf(url, url_size, "https://%s:%d%s", host, in->port, req->path);
	snprintf(connect_to, connect_to_size,
		 strchr(in->address, ':') ? "%s:%d:[%s]:%d" : "%s:%d:%s:%d", host, in->port,
		 in->address, in->port);
	return true;
}

/* One attempt on instance 'in': the connection within connect_ms, the
 * whole exchange within timeout_ms, and every byte sent acknowledged by
 * the instance's host within connect_ms too: a host cut off while a call
 * was out on a kept-alive connection is given up on in about connect_ms,
 * however long the request may take, and the call retried elsewhere.
 * With 'm' (Connect's material) over mutual TLS; *identity_refused says
 * the peer's certificate was refused. */
static enum mn_err attempt(struct peer_client *pc, const struct peer_request *req,
			   const struct consul_instance *in, const struct connect_material *m,
			   uint64_t timeout_ms, uint64_t connect_ms, const char *traceparent_header,
			   struct httpc_response *res, bool *identity_refused, char *err,
			   size_t errlen)
{
	char url[1024], rid[128], connect_to[800];
	struct connect_outbound_peer peer;
	struct httpc_tls tls;
	const char *headers[4] = {NULL, NULL, NULL, NULL};
	const char *scheme = "http";
	json_t *ms = json_object_get(in->meta, "scheme");
	size_t nh = 0;
	uint64_t connect_total_ms;
	struct httpc *h;
	enum mn_err e;

	*identity_refused = false;
	if (m) {
		if (!connect_setup(m, req, in, &peer, &tls, url, sizeof(url), connect_to,
				   sizeof(connect_to), err, errlen)) {
			res->status = 0;
			res->sent = false;
			return MN_INVALID;
		}
	} else {
		if (json_is_string(ms) && strcmp(json_string_value(ms), "https") == 0)
			scheme = "https";
		snprintf(url, sizeof(url),
			 strchr(in->address, ':') ? "%s://[%s]:%d%s" : "%s://%s:%d%s", scheme,
			 in->address, in->port, req->path);
	}
	if (req->request_id && !strpbrk(req->request_id, "\r\n")) {
		snprintf(rid, sizeof(rid), "X-Request-ID: %.100s", req->request_id);
		headers[nh++] = rid;
	}
	headers[nh++] = traceparent_header;
	if (req->body)
		headers[nh++] = "Content-Type: application/json";
	h = peer_client_handle_acquire(pc);
	if (h == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	if (connect_ms == 0 || connect_ms > timeout_ms)
		connect_ms = timeout_ms;
	/* libcurl's connect phase takes in the TLS handshake, and a Connect
	 * server's is always a full one, which may wait on its agent's
	 * authorize answer (CONNECT_HANDSHAKE_MS): the TCP connect keeps
	 * connect_ms, the handshake gets its own allowance */
	connect_total_ms = connect_ms;
	if (m)
		connect_total_ms = connect_ms + CONNECT_HANDSHAKE_MS < timeout_ms
					   ? connect_ms + CONNECT_HANDSHAKE_MS
					   : timeout_ms;
	e = pc->transport->perform(
		pc->transport->ctx, h,
		&(struct httpc_request){
			.method = req->method,
			.url = url,
			.headers = headers,
			.body = req->body,
			.body_len = req->body_len,
			.timeout_ms = (long)timeout_ms,
			.connect_timeout_ms = (long)connect_total_ms,
			.ack_timeout_ms = connect_ms < timeout_ms ? (long)connect_ms : 0,
			.max_response =
				req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE,
			.tls = m ? &tls : NULL,
			.connect_to = m ? connect_to : NULL,
		},
		res, err, errlen);
	peer_client_handle_release(pc, h);
	if (m && e != MN_OK && peer.checked && peer.result != CONNECT_VERIFY_OK) {
		char uri[SPIFFE_TRUST_DOMAIN_MAX + 3 * SPIFFE_NAME_MAX + SPIFFE_SERVICE_MAX + 64];

		if (!spiffe_id_format(&peer.presented, uri, sizeof(uri)))
			snprintf(uri, sizeof(uri), "none");
		*identity_refused = true;
		mn_error(err, errlen, MN_UNAVAILABLE,
			 "TLS identity refused: %s (presented '%s', expected service '%s'%s%s)",
			 connect_verify_reason(peer.result), uri, req->service,
			 *in->dc ? " in " : "", in->dc);
	}
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
		st->identity_logged[0] = '\0';
		goto out;
	}
	st->failures++;
	st->recent_failures++;
	snprintf(st->last_error, sizeof(st->last_error), "%s", msg);
	if (f == PEER_FAIL_IDENTITY) {
		/* a peer that is not who it should be stays so: one line per
		 * instance and reason, not one per probe */
		if (strncmp(st->identity_logged, msg, sizeof(st->identity_logged) - 1) != 0)
			log_warn("peers",
				 "instance '%s' on node '%s' of '%s' ejected for %llu ms: %s",
				 st->id, st->node, st->service,
				 (unsigned long long)s->breaker_open_ms, msg);
		snprintf(st->identity_logged, sizeof(st->identity_logged), "%s", msg);
		breaker_trip(&st->br, now);
	} else if (f == PEER_FAIL_CONNECT || f == PEER_FAIL_TIMEOUT) {
		if (st->br.state != BREAKER_OPEN)
			log_warn("peers",
				 "instance '%s' on node '%s' of '%s' ejected for %llu ms: "
				 "%s",
				 st->id, st->node, st->service,
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

enum mn_err peer_call(struct peer_client *pc, const struct peer_settings *s,
		      const struct peer_request *req, struct httpc_response *res, char *err,
		      size_t errlen)
{
	const struct lb_strategy *lb = lb_find(s->lb && *s->lb ? s->lb : "round_robin");
	const struct peer_snapshot *snap;
	struct connect_material *m = NULL;
	struct backoff backoff;
	struct pick p;
	char traceparent[80], msg[256] = "";
	enum mn_err ret = MN_UNAVAILABLE;
	unsigned attempts = 0;
	struct httpc_response best; /* a 5xx answer kept while a retry goes out */
	uint64_t now, deadline, t0; /* t0: when the attempt started, ns */

	if (lb == NULL)
		return mn_error(err, errlen, MN_INVALID, "unknown load balancing '%s'", s->lb);
	ret = peer_client_snapshot(pc, req->service, s, &snap, msg, sizeof(msg));
	if (ret != MN_OK) {
		metric_inc(pc->m.requests, (const char *[]){req->service, "no_instance"});
		return mn_error(err, errlen, ret, "%s", msg);
	}
	if (snap->connect && pc->outbound &&
	    (m = connect_outbound_material(pc->outbound, &ret, msg, sizeof(msg))) == NULL) {
		resolver_put(snap);
		metric_inc(pc->m.requests, (const char *[]){req->service, "no_identity"});
		return mn_error(err, errlen, ret == MN_NOMEM ? MN_NOMEM : MN_UNAVAILABLE, "%s: %s",
				req->service, msg);
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
	peer_traceparent(req->traceparent, traceparent);
	backoff_init(&backoff, RETRY_BASE_MS, RETRY_CAP_MS, t0 ^ (uintptr_t)&backoff);
	deadline = now + s->timeout_ms * (s->retries + 1);

	for (;;) {
		const struct consul_instance *in;
		struct inst_state *st;
		enum peer_failure f;
		uint64_t t1, delay;
		bool refused;
		size_t idx;
		enum mn_err e;

		p.now = now;
		idx = pick_take(lb, &p);
		if (idx == LB_NONE && (idx = pick_reserve(&p)) != LB_NONE)
			log_debug("peers",
				  "'%s %s': no passing instance of '%s' could take it; "
				  "trying '%s' on node '%s', registered but not passing",
				  req->method, req->path, req->service, snap->inst[idx].id,
				  snap->inst[idx].node);
		if (idx == LB_NONE) {
			if (attempts == 0)
				snprintf(msg, sizeof(msg), "%s",
					 !snap->known	? "consul has not answered yet"
					 : snap->n == 0 ? "no passing instance"
							: "every instance's circuit is open");
			break;
		}
		in = &snap->inst[idx];
		st = p.t->st[idx];

		e = attempt(pc, req, in, m,
			    s->timeout_ms < deadline - now ? s->timeout_ms : deadline - now,
			    s->connect_timeout_ms, traceparent, res, &refused, msg, sizeof(msg));
		f = classify(e, res, refused);
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
	connect_material_release(m);
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

	if (peer_client_snapshot(pc, service, s, &snap, err, sizeof(err)) != MN_OK)
		return 0;
	t = snap->prepared;
	for (size_t i = 0; t && i < t->n; i++) {
		struct inst_state *st = t->st[i];
		uint64_t until;

		pthread_mutex_lock(&st->lock);
		until = st->br.opened_at + breaker_open_ms;
		if (st->br.state == BREAKER_OPEN && until > now &&
		    (best == 0 || until - now < best))
			best = until - now;
		pthread_mutex_unlock(&st->lock);
	}
	resolver_put(snap);
	return best;
}
