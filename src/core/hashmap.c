#include "core/hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/clock.h"

#define HASHMAP_FIRST_CAP 16

void hashmap_init(struct hashmap *m, size_t entry_size)
{
	uint64_t rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)m;

	m->hashes = NULL;
	m->entries = NULL;
	m->size = entry_size ? (entry_size + 7) & ~(size_t)7 : 8;
	m->n = 0;
	m->cap = 0;
	m->seed = mn_rand_next(&rng);
}

void hashmap_release(struct hashmap *m)
{
	free(m->hashes);
	m->hashes = NULL;
	m->entries = NULL;
	m->n = 0;
	m->cap = 0;
}

/* The first empty place for 'hash' in a table of 'cap' places. */
static size_t empty_place(const uint64_t *hashes, size_t cap, uint64_t hash)
{
	size_t mask = cap - 1, i;

	for (i = (size_t)hash & mask; hashes[i] != 0; i = (i + 1) & mask)
		;
	return i;
}

static enum mn_err hashmap_resize(struct hashmap *m, size_t cap)
{
	uint64_t *hashes;
	char *entries;

	if (cap > SIZE_MAX / (sizeof(*hashes) + m->size))
		return MN_NOMEM;
	hashes = calloc(cap, sizeof(*hashes) + m->size);
	if (hashes == NULL)
		return MN_NOMEM;
	entries = (char *)(hashes + cap);
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (m->hashes[i] == 0)
			continue;
		j = empty_place(hashes, cap, m->hashes[i]);
		hashes[j] = m->hashes[i];
		memcpy(entries + j * m->size, hashmap_entry_at(m, i), m->size);
	}
	free(m->hashes);
	m->hashes = hashes;
	m->entries = entries;
	m->cap = cap;
	return MN_OK;
}

enum mn_err hashmap_reserve(struct hashmap *m, size_t n)
{
	size_t cap = m->cap ? m->cap : HASHMAP_FIRST_CAP;

	if (n > SIZE_MAX / 4)
		return MN_NOMEM;
	while (cap < 2 * n)
		cap *= 2;
	return cap == m->cap ? MN_OK : hashmap_resize(m, cap);
}

void *hashmap_insert(struct hashmap *m, uint64_t hash)
{
	void *e;
	size_t i;

	if ((m->n + 1) * 2 > m->cap && hashmap_reserve(m, m->n + 1) != MN_OK)
		return NULL;
	i = empty_place(m->hashes, m->cap, hash);
	m->hashes[i] = hash | HASHMAP_USED;
	e = hashmap_entry_at(m, i);
	memset(e, 0, m->size);
	m->n++;
	return e;
}

/* Backward shift: walks the cluster after the hole and moves into it each
 * entry whose home place is not between the hole and itself (a lookup for
 * it, starting at its home, would otherwise stop at the hole). A table at
 * most half full always has an empty place to end the walk. */
void hashmap_remove(struct hashmap *m, void *entry)
{
	size_t mask = m->cap - 1;
	size_t hole = (size_t)((char *)entry - (char *)m->entries) / m->size;

	for (size_t i = (hole + 1) & mask; m->hashes[i] != 0; i = (i + 1) & mask) {
		size_t home = (size_t)m->hashes[i] & mask;

		/* home cyclically in (hole, i]: the entry stays */
		if (((i - home) & mask) < ((i - hole) & mask))
			continue;
		m->hashes[hole] = m->hashes[i];
		memcpy(hashmap_entry_at(m, hole), hashmap_entry_at(m, i), m->size);
		hole = i;
	}
	m->hashes[hole] = 0;
	m->n--;
}

void *hashmap_next(const struct hashmap *m, size_t *i)
{
	for (; *i < m->cap; (*i)++) {
		if (m->hashes[*i] != 0)
			return hashmap_entry_at(m, (*i)++);
	}
	return NULL;
}
