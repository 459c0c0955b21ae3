/* What the memory repositories do alike over their rows, arrays sorted by
 * id (store/drivers.h): find a row by id and copy a page of them. The
 * caller holds its repository's lock. */
#ifndef MESHNODE_STORE_MEMORY_ROWS_H
#define MESHNODE_STORE_MEMORY_ROWS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

/* The index of the row whose id (an int64_t at id_offset in each row of
 * 'size' bytes) is 'id' in the n rows sorted by id, or -1. */
ssize_t memory_rows_find(const void *rows, size_t n, size_t size, size_t id_offset, int64_t id);

/* Rows offset.. of the n, at most 'limit', copied: *out a new array of
 * *count rows of 'size' bytes, each made by copy(dst, src) (NULL and 0 for
 * none). When a copy fails, release(copies, made) frees those made, and
 * its error is returned (MN_NOMEM when the array cannot be had). */
enum mn_err memory_rows_page(const void *rows, size_t n, size_t size, size_t limit, size_t offset,
			     enum mn_err (*copy)(void *dst, const void *src),
			     void (*release)(void *copies, size_t made), void **out, size_t *count);

#endif
