#include "core/strmap.h"

#include <string.h>

#include "core/hash.h"

void strmap_init(struct strmap *m)
{
	hashmap_init(&m->map, sizeof(struct strmap_entry));
}

void strmap_release(struct strmap *m)
{
	hashmap_release(&m->map);
}

static uint64_t strmap_hash(const struct strmap *m, const char *key)
{
	return hash_mix(hash_str(HASH_START ^ m->map.seed, key));
}

static bool strmap_key_is(const void *entry, const void *key)
{
	return strcmp(((const struct strmap_entry *)entry)->key, key) == 0;
}

enum mn_err strmap_reserve(struct strmap *m, size_t n)
{
	return hashmap_reserve(&m->map, n);
}

enum mn_err strmap_put(struct strmap *m, const char *key, size_t value)
{
	uint64_t hash = strmap_hash(m, key);
	struct strmap_entry *e = hashmap_find(&m->map, hash, strmap_key_is, key);

	if (e == NULL) {
		e = hashmap_insert(&m->map, hash);
		if (e == NULL)
			return MN_NOMEM;
		e->key = key;
	}
	e->value = value;
	return MN_OK;
}

bool strmap_get(const struct strmap *m, const char *key, size_t *value)
{
	const struct strmap_entry *e =
		hashmap_find(&m->map, strmap_hash(m, key), strmap_key_is, key);

	if (e == NULL)
		return false;
	if (value)
		*value = e->value;
	return true;
}
