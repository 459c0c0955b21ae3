/* The project's one hash map: open addressing with linear probing over a
 * hash the caller computes, entries of a fixed size stored in the table,
 * equality by a callback, removal by backward shift (no tombstones), at
 * most half full. strmap (strings to size_t), the metric series of a
 * family, the memory store's email index and the peer client's instance
 * states (src/peers/peer_index.c) are built on it.
 *
 * How to use it, e.g. for a table of 'struct peer_state *' by name:
 *
 *     struct hashmap idx;
 *     hashmap_init(&idx, sizeof(struct peer_state *));
 *     uint64_t h = hash_mix(hash_str(HASH_START ^ idx.seed, name));
 *     struct peer_state **e = hashmap_find(&idx, h, state_is, name);
 *     if (e == NULL && (e = hashmap_insert(&idx, h)) != NULL)
 *         *e = state;                          (NULL: out of memory)
 *     ...
 *     hashmap_remove(&idx, e);
 *     hashmap_release(&idx);                   (the entries' own memory is
 *                                               the caller's to free)
 *
 * The hash: take core/hash.h with the map's 'seed' folded into the start
 * (so that colliding keys cannot be chosen in advance) and hash_mix() at the
 * end (the low bits pick the place). The top bit of a hash is not kept: two
 * hashes that differ only there are told apart by the equality callback.
 *
 * Entry pointers (from find, insert, next) stay valid only until the next
 * insert, reserve or remove on the map. The map does no locking. */
#ifndef MESHNODE_CORE_HASHMAP_H
#define MESHNODE_CORE_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* true when the entry at 'entry' has the key 'key' (whatever the caller
 * passes to hashmap_find(): a string, a struct with context). */
typedef bool hashmap_eq_fn(const void *entry, const void *key);

struct hashmap {
	uint64_t *hashes; /* cap places; 0: empty; NULL until the first insert */
	void *entries;	  /* cap entries of 'size' bytes, in the same block */
	size_t size;	  /* bytes per entry, rounded up to a multiple of 8 */
	size_t n;	  /* entries in the map */
	size_t cap;	  /* a power of two, or 0 */
	uint64_t seed;	  /* random per map, for the caller's hash */
};

#define HASHMAP_USED (1ULL << 63)

/* An empty map of entries of 'entry_size' bytes (no allocation); entries
 * are aligned to 8 bytes. Picks the map's random seed. */
void hashmap_init(struct hashmap *m, size_t entry_size);

/* Frees the table (never what the entries point to). The map is then
 * empty and may be used again, with the same entry size and seed. */
void hashmap_release(struct hashmap *m);

/* Makes room for 'n' entries in all, so that inserting up to that many
 * allocates nothing more. MN_NOMEM; the map is then unchanged. */
enum mn_err hashmap_reserve(struct hashmap *m, size_t n);

/* A new, zeroed entry for 'hash', to be filled by the caller; no check is
 * made that an equal key is absent (find first). NULL when the table
 * cannot grow; the map is then unchanged. */
void *hashmap_insert(struct hashmap *m, uint64_t hash);

/* Takes 'entry' (a pointer from find, insert or next) out of the map,
 * moving back the entries that probed past it. */
void hashmap_remove(struct hashmap *m, void *entry);

/* The next entry at or after place *i (start with *i = 0), *i then past
 * it; NULL when there is none. Order is the table's, not insertion's. */
void *hashmap_next(const struct hashmap *m, size_t *i);

static inline void *hashmap_entry_at(const struct hashmap *m, size_t i)
{
	return (char *)m->entries + i * m->size;
}

/* The entry with 'hash' for which eq(entry, key) holds, or NULL. Inline so
 * that a constant 'eq' is inlined into the probe loop (the metric series
 * lookup is on every request). */
static inline void *hashmap_find(const struct hashmap *m, uint64_t hash, hashmap_eq_fn *eq,
				 const void *key)
{
	uint64_t want = hash | HASHMAP_USED;
	size_t mask;

	if (m->n == 0)
		return NULL;
	mask = m->cap - 1;
	for (size_t i = (size_t)hash & mask; m->hashes[i] != 0; i = (i + 1) & mask) {
		void *e = hashmap_entry_at(m, i);

		if (m->hashes[i] == want && eq(e, key))
			return e;
	}
	return NULL;
}

#endif
