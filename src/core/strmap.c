#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/hash.h"

#define STRMAP_FIRST_CAP 64

void strmap_init(struct strmap *m)
{
	uint64_t rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)m;

	m->entries = NULL;
	m->n = 0;
	m->cap = 0;
	m->seed = mn_rand_next(&rng);
}

void strmap_release(struct strmap *m)
{
	free(m->entries);
	m->entries = NULL;
	m->n = 0;
	m->cap = 0;
}

static uint64_t strmap_hash(const struct strmap *m, const char *key)
{
	return hash_mix(hash_str(HASH_START ^ m->seed, key));
}

/* The place of 'key' in the table: its entry, or the empty one where it
 * would go. The table is never full. */
static struct strmap_entry *strmap_place(struct strmap_entry *entries, size_t cap, const char *key,
					 uint64_t hash)
{
	size_t mask = cap - 1;

	for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
		struct strmap_entry *e = &entries[i];

		if (e->key == NULL || (e->hash == hash && strcmp(e->key, key) == 0))
			return e;
	}
}

/* Moves the entries to a table of 'cap' places. */
static enum mn_err strmap_resize(struct strmap *m, size_t cap)
{
	struct strmap_entry *entries;

	if (cap > SIZE_MAX / sizeof(*entries))
		return MN_NOMEM;
	entries = calloc(cap, sizeof(*entries));
	if (entries == NULL)
		return MN_NOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->entries[i].key)
			*strmap_place(entries, cap, m->entries[i].key, m->entries[i].hash) =
				m->entries[i];
	free(m->entries);
	m->entries = entries;
	m->cap = cap;
	return MN_OK;
}

enum mn_err strmap_reserve(struct strmap *m, size_t n)
{
	size_t cap = m->cap ? m->cap : STRMAP_FIRST_CAP;

	if (n > SIZE_MAX / 4)
		return MN_NOMEM;
	while (cap < 2 * n)
		cap *= 2;
	return cap == m->cap ? MN_OK : strmap_resize(m, cap);
}

enum mn_err strmap_put(struct strmap *m, const char *key, size_t value)
{
	uint64_t hash = strmap_hash(m, key);
	struct strmap_entry *e;

	if ((m->n + 1) * 2 > m->cap && strmap_reserve(m, m->n + 1) != MN_OK)
		return MN_NOMEM;
	e = strmap_place(m->entries, m->cap, key, hash);
	if (e->key == NULL) {
		e->key = key;
		e->hash = hash;
		m->n++;
	}
	e->value = value;
	return MN_OK;
}

bool strmap_get(const struct strmap *m, const char *key, size_t *value)
{
	const struct strmap_entry *e;

	if (m->n == 0)
		return false;
	e = strmap_place(m->entries, m->cap, key, strmap_hash(m, key));
	if (e->key == NULL)
		return false;
	if (value)
		*value = e->value;
	return true;
}
