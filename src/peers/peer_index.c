/* A peer service's instance states by instance (Consul node, service ID):
 * chained buckets, grown by doubling at three quarters full. The caller
 * holds the service's lock around every function here. */
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "peer_internal.h"

/* FNV-1a over the node, a NUL, and the ID. */
static uint64_t instance_hash(const char *node, const char *id)
{
	return hash_str(hash_byte(hash_str(HASH_START, node), '\0'), id);
}

static bool index_grow(struct peer_index *ix)
{
	size_t n = ix->nbuckets ? ix->nbuckets * 2 : 64;
	struct inst_state **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return false;
	for (size_t i = 0; i < ix->nbuckets; i++) {
		for (struct inst_state *st = ix->buckets[i], *next; st; st = next) {
			next = st->hnext;
			st->hnext = b[st->hash & (n - 1)];
			b[st->hash & (n - 1)] = st;
		}
	}
	free(ix->buckets);
	ix->buckets = b;
	ix->nbuckets = n;
	return true;
}

struct inst_state *peer_index_find(const struct peer_index *ix, const char *node, const char *id)
{
	uint64_t h = instance_hash(node, id);

	if (ix->nbuckets) {
		for (struct inst_state *st = ix->buckets[h & (ix->nbuckets - 1)]; st;
		     st = st->hnext)
			if (st->hash == h && strcmp(st->id, id) == 0 && strcmp(st->node, node) == 0)
				return st;
	}
	return NULL;
}

bool peer_index_insert(struct peer_index *ix, struct inst_state *st)
{
	if (ix->count + 1 > ix->nbuckets / 4 * 3 && !index_grow(ix))
		return false;
	st->hash = instance_hash(st->node, st->id);
	st->hnext = ix->buckets[st->hash & (ix->nbuckets - 1)];
	ix->buckets[st->hash & (ix->nbuckets - 1)] = st;
	ix->count++;
	return true;
}

size_t peer_index_count(const struct peer_index *ix)
{
	return ix->count;
}

void peer_index_foreach(struct peer_index *ix, bool (*fn)(void *ctx, struct inst_state *st),
			void *ctx)
{
	for (size_t i = 0; i < ix->nbuckets; i++) {
		struct inst_state **pp = &ix->buckets[i];

		while (*pp) {
			struct inst_state *st = *pp;

			if (fn(ctx, st)) {
				*pp = st->hnext;
				ix->count--;
				inst_state_unref(st);
			} else {
				pp = &st->hnext;
			}
		}
	}
}

void peer_index_release(struct peer_index *ix)
{
	for (size_t i = 0; i < ix->nbuckets; i++) {
		for (struct inst_state *st = ix->buckets[i], *sn; st; st = sn) {
			sn = st->hnext;
			inst_state_unref(st);
		}
	}
	free(ix->buckets);
	*ix = (struct peer_index){0};
}
