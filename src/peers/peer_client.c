/* The peer client: its lifecycle, the resolver whose snapshots it reads,
 * and the pool of transport handles its calls reuse. A call is peer_call.c,
 * the instance states peer_instances.c, the view peer_view.c. */
#include "peers/peer_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "peer_internal.h"

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

enum mn_err peer_client_set_connect(struct peer_client *pc, struct connect_identity *id)
{
	struct connect_outbound *co = NULL;

	if (id && (co = connect_outbound_create(id)) == NULL)
		return MN_NOMEM;
	connect_outbound_destroy(pc->outbound);
	pc->outbound = co;
	return MN_OK;
}

void peer_client_destroy(struct peer_client *pc)
{
	struct peer_service *svc, *next;

	if (pc == NULL)
		return;
	connect_outbound_destroy(pc->outbound);
	for (svc = pc->services; svc; svc = next) {
		next = svc->next;
		peer_service_destroy(svc);
	}
	for (size_t i = 0; i < POOL_SHARDS; i++) {
		for (size_t k = 0; k < pc->pool[i].n; k++)
			pc->transport->destroy(pc->transport->ctx, pc->pool[i].h[k]);
		pthread_mutex_destroy(&pc->pool[i].lock);
	}
	pthread_mutex_destroy(&pc->lock);
	free(pc);
}

enum mn_err peer_client_snapshot(struct peer_client *pc, const char *service,
				 const struct peer_settings *s, const struct peer_snapshot **snap,
				 char *err, size_t errlen)
{
	if (pc->resolver == NULL)
		return mn_error(err, errlen, MN_INTERNAL, "no resolver attached");
	return resolver_get_for(pc->resolver, service, s->tag, s->dns,
				pc->outbound != NULL && s->connect, snap, err, errlen);
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

struct httpc *peer_client_handle_acquire(struct peer_client *pc)
{
	struct pool_shard *sh = pool_shard(pc);
	struct httpc *h = NULL;

	pthread_mutex_lock(&sh->lock);
	if (sh->n)
		h = sh->h[--sh->n];
	pthread_mutex_unlock(&sh->lock);
	return h ? h : pc->transport->create(pc->transport->ctx);
}

void peer_client_handle_release(struct peer_client *pc, struct httpc *h)
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
