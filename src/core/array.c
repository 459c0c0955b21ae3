#include "core/array.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool array_reserve(void *items, size_t *alloc, size_t n, size_t size, size_t first)
{
	void *p, *old;
	size_t grown;

	if (n < *alloc)
		return true;
	grown = *alloc ? *alloc * 2 : first;
	if (grown < n + 1 || grown > SIZE_MAX / size)
		return false;
	memcpy(&old, items, sizeof(old));
	p = realloc(old, grown * size);
	if (p == NULL)
		return false;
	memcpy(items, &p, sizeof(p));
	*alloc = grown;
	return true;
}
