/* A peer service's instance states by instance (Consul node, service ID),
 * on the core hash map (core/hashmap.h): each entry is one state pointer,
 * the state holding the index's reference. The caller holds the service's
 * lock around every function here. */
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "peer_internal.h"

struct instance_key {
	const char *node;
	const char *id;
};

/* FNV-1a over the map's seed, the node, a NUL, and the ID. */
static uint64_t instance_hash(const struct peer_index *ix, const char *node, const char *id)
{
	return hash_mix(hash_str(hash_byte(hash_str(HASH_START ^ ix->map.seed, node), '\0'), id));
}

static bool state_is(const void *entry, const void *key)
{
	const struct inst_state *st = *(struct inst_state *const *)entry;
	const struct instance_key *k = key;

	return strcmp(st->id, k->id) == 0 && strcmp(st->node, k->node) == 0;
}

struct inst_state *peer_index_find(const struct peer_index *ix, const char *node, const char *id)
{
	struct instance_key k = {node, id};
	struct inst_state **e;

	if (ix->map.n == 0)
		return NULL;
	e = hashmap_find(&ix->map, instance_hash(ix, node, id), state_is, &k);
	return e ? *e : NULL;
}

bool peer_index_insert(struct peer_index *ix, struct inst_state *st)
{
	struct inst_state **e;

	if (ix->map.size == 0)
		hashmap_init(&ix->map, sizeof(struct inst_state *));
	e = hashmap_insert(&ix->map, instance_hash(ix, st->node, st->id));
	if (e == NULL)
		return false;
	*e = st;
	return true;
}

size_t peer_index_count(const struct peer_index *ix)
{
	return ix->map.n;
}

/* Two passes: the callback sees each state once (a removal's backward
 * shift may move a seen entry to a place not yet walked), then the marked
 * ones are taken out, looking again at a place an entry was shifted into. */
void peer_index_foreach(struct peer_index *ix, bool (*fn)(void *ctx, struct inst_state *st),
			void *ctx)
{
	struct inst_state **e;
	size_t i = 0, n = 0;

	while ((e = hashmap_next(&ix->map, &i)) != NULL) {
		(*e)->index_gone = fn(ctx, *e);
		n += (*e)->index_gone;
	}
	for (i = 0; n > 0 && i < ix->map.cap;) {
		struct inst_state *st;

		if (ix->map.hashes[i] == 0) {
			i++;
			continue;
		}
		e = hashmap_entry_at(&ix->map, i);
		st = *e;
		if (!st->index_gone) {
			i++;
			continue;
		}
		hashmap_remove(&ix->map, e);
		inst_state_unref(st);
		n--;
	}
}

void peer_index_release(struct peer_index *ix)
{
	struct inst_state **e;
	size_t i = 0;

	while ((e = hashmap_next(&ix->map, &i)) != NULL)
		inst_state_unref(*e);
	hashmap_release(&ix->map);
	*ix = (struct peer_index){0};
}
