/* The reads every SQLite repository makes the same way: one row by id and
 * a page of rows, on a connection taken for a request (store/sqlite_pool.h). */
#include <stdint.h>
#include <stdlib.h>

#include "store/sqlite_pool.h"

enum mn_err sqlite_pool_get(struct sqlite_pool *p, size_t stmt, int64_t id, const char *what,
			    enum mn_err (*row)(sqlite3_stmt *st, void *out), void *out)
{
	struct sqlite_conn *c;
	sqlite3_stmt *st;
	enum mn_err err;
	int rc;

	if ((err = sqlite_pool_take(p, &c, NULL, 0)) != MN_OK)
		return err;
	st = c->stmt[stmt];
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		err = row(st, out);
	else if (rc == SQLITE_DONE)
		err = MN_NOT_FOUND;
	else
		err = sqlite_pool_read_error(c, rc, what);
	sqlite3_reset(st);
	sqlite_pool_release(p, c);
	return err;
}

enum mn_err sqlite_pool_page(struct sqlite_pool *p, size_t stmt, size_t limit, size_t offset,
			     const char *what, size_t size,
			     enum mn_err (*row)(sqlite3_stmt *st, void *element),
			     void (*release)(void *elements, size_t n), void **out, size_t *n)
{
	struct sqlite_conn *c;
	sqlite3_stmt *st;
	char *elements = NULL;
	enum mn_err err = MN_OK;
	size_t count = 0;
	int rc = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if ((err = sqlite_pool_take(p, &c, NULL, 0)) != MN_OK)
		return err;
	st = c->stmt[stmt];
	if (limit == 0)
		goto out_release;
	elements = calloc(limit, size);
	if (elements == NULL) {
		err = MN_NOMEM;
		goto out_release;
	}
	sqlite3_bind_int64(st, 1, limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit);
	sqlite3_bind_int64(st, 2, offset > INT64_MAX ? INT64_MAX : (sqlite3_int64)offset);
	while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		err = row(st, elements + count * size);
		if (err != MN_OK)
			break;
		count++;
	}
	if (err == MN_OK && count < limit && rc != SQLITE_DONE)
		err = sqlite_pool_read_error(c, rc, what);
	sqlite3_reset(st);
	if (err != MN_OK || count == 0) {
		release(elements, count);
		goto out_release;
	}
	*out = elements;
	*n = count;
out_release:
	sqlite_pool_release(p, c);
	return err;
}
