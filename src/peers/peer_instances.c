/* What the node remembers of each instance of a peer service (its circuit,
 * calls in flight, counts), kept in the service's index across snapshots,
 * and the table of those states each snapshot carries: built once per
 * snapshot on the watch thread (the resolver's prepare hook), so that a
 * call finds an instance's state by its place in the snapshot. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "peer_internal.h"

void inst_state_unref(struct inst_state *st)
{
	if (st && atomic_fetch_sub(&st->refs, 1) == 1) {
		pthread_mutex_destroy(&st->lock);
		free(st->node);
		free(st->id);
		free(st);
	}
}

/* The state of instance ('node', 'id'), created closed on first sight.
 * svc->lock held. */
static struct inst_state *index_get(struct peer_service *svc, const char *node, const char *id)
{
	struct inst_state *st = peer_index_find(&svc->index, node, id);

	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->id = strdup(id)) == NULL || (st->node = strdup(node)) == NULL) {
		if (st)
			free(st->id);
		free(st);
		return NULL;
	}
	st->service = svc->name;
	atomic_init(&st->refs, 1); /* the index's */
	atomic_init(&st->inflight, 0);
	pthread_mutex_init(&st->lock, NULL);
	breaker_init(&st->br);
	atomic_init(&st->closed, true);
	if (!peer_index_insert(&svc->index, st)) {
		inst_state_unref(st);
		return NULL;
	}
	return st;
}

/* Whether 'st' left Consul's answer (not in the table of generation
 * *ctx) and has no call out. */
static bool prune_unseen(void *ctx, struct inst_state *st)
{
	const uint64_t *gen = ctx;

	return st->seen != *gen && atomic_load(&st->inflight) == 0;
}

/* Forgets instances that left Consul's answer (not in the table of
 * generation 'gen') and have no call out, once they outnumber the live
 * ones: a node outlives many deployments of its peers. svc->lock held. */
static void index_prune(struct peer_service *svc, uint64_t gen, size_t live)
{
	if (peer_index_count(&svc->index) <= 2 * live + 8)
		return;
	peer_index_foreach(&svc->index, prune_unseen, &gen);
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

void peer_service_destroy(struct peer_service *svc)
{
	peer_index_release(&svc->index);
	free(svc->name);
	pthread_mutex_destroy(&svc->lock);
	free(svc);
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
		inst_state_unref(t->st[i]);
	free(t);
}
