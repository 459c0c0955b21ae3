/* A hash map from strings to size_t values, for lookups by name that must
 * stay O(1) however many names outside input brings (KV keys, log lines).
 * A core/hashmap.h map, at most half full; the hash is FNV-1a with the
 * map's random seed, so colliding names cannot be chosen in advance.
 *
 * The keys are borrowed, not copied: each must stay alive and unchanged
 * while it is in the map. There is no removal: the users build a map, look
 * up in it and throw it away. */
#ifndef MESHNODE_CORE_STRMAP_H
#define MESHNODE_CORE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/hashmap.h"

struct strmap_entry {
	const char *key; /* borrowed */
	size_t value;
};

/* A typed layer over core/hashmap.h: entries are struct strmap_entry. */
struct strmap {
	struct hashmap map;
};

/* An empty map (no allocation). */
void strmap_init(struct strmap *m);

/* Frees the map's table (never the keys); the map may be reused after
 * strmap_init(). */
void strmap_release(struct strmap *m);

/* Makes room for 'n' keys in all, so that putting them allocates nothing
 * more (one allocation instead of a doubling chain when the count is known
 * in advance). MN_NOMEM; the map is then unchanged. */
enum mn_err strmap_reserve(struct strmap *m, size_t n);

/* Maps 'key' (borrowed) to 'value', replacing the value of an equal key
 * already there (the key in the map stays the first one put). MN_NOMEM
 * when the table cannot grow; the map is then unchanged. */
enum mn_err strmap_put(struct strmap *m, const char *key, size_t value);

/* true when 'key' is in the map, with its value in *value (may be NULL). */
bool strmap_get(const struct strmap *m, const char *key, size_t *value);

#endif
