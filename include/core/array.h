/* Growing arrays: one helper for the "double when full" step that every
 * growable array in the project needs. */
#ifndef MESHNODE_CORE_ARRAY_H
#define MESHNODE_CORE_ARRAY_H

#include <stdbool.h>
#include <stddef.h>

/* Makes room for one more element in *items (holding n of *alloc, each
 * 'size' bytes): doubles the allocation, starting at 'first'. false when
 * out of memory, leaving *items and *alloc as they were. */
bool array_reserve(void *items, size_t *alloc, size_t n, size_t size, size_t first);

#endif
