#include "store/memory_rows.h"

#include <stdlib.h>
#include <string.h>

static int64_t row_id(const void *rows, size_t i, size_t size, size_t id_offset)
{
	int64_t id;

	memcpy(&id, (const char *)rows + i * size + id_offset, sizeof(id));
	return id;
}

ssize_t memory_rows_find(const void *rows, size_t n, size_t size, size_t id_offset, int64_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int64_t at = row_id(rows, mid, size, id_offset);

		if (at == id)
			return (ssize_t)mid;
		if (at < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

enum mn_err memory_rows_page(const void *rows, size_t n, size_t size, size_t limit, size_t offset,
			     enum mn_err (*copy)(void *dst, const void *src),
			     void (*release)(void *copies, size_t made), void **out, size_t *count)
{
	size_t k = 0;
	char *copies;

	*out = NULL;
	*count = 0;
	if (offset < n)
		k = n - offset < limit ? n - offset : limit;
	if (k == 0)
		return MN_OK;
	copies = calloc(k, size);
	if (copies == NULL)
		return MN_NOMEM;
	for (size_t i = 0; i < k; i++) {
		enum mn_err err = copy(copies + i * size, (const char *)rows + (offset + i) * size);

		if (err != MN_OK) {
			release(copies, i);
			return err;
		}
	}
	*out = copies;
	*count = k;
	return MN_OK;
}
