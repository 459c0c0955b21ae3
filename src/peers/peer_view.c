/* What the node shows of a peer service: the GET /peers/{service} view
 * (the snapshot and each instance's health and circuit) and the circuits
 * the peers metrics report. */
#include <pthread.h>
#include <stdatomic.h>

#include "peer_internal.h"

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
	e = peer_client_snapshot(pc, service, s, &snap, err, errlen);
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
	if (view &&
	    (json_object_set_new(view, "instances_reserve",
				 json_integer((json_int_t)snap->reserve)) != 0 ||
	     json_object_set_new(view, "discovery", json_string(s->dns ? "dns" : "http")) != 0 ||
	     json_object_set_new(view, "connect", json_boolean(snap->connect)) != 0)) {
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
		fn(ctx, snap->service, t->st[i]->node, snap->inst[i].id, breaker_state_name(state));
	}
}
