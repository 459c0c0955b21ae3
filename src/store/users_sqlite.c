/* SQLite users repository: its table and statements over the shared
 * connection pool (store/sqlite_pool.h), which holds the durability and
 * sharing rules and the write state. */
#include <sqlite3.h>
#include <stdlib.h>

#include "core/log.h"
#include "store/drivers.h"
#include "store/sqlite_pool.h"

enum stmt { ST_INSERT, ST_GET, ST_LIST, ST_UPDATE, ST_DELETE, ST_COUNT };

/* The writes check that no other user has the email, ASCII case folded,
 * themselves: a file whose old rows collide that way has no unique index
 * to do it (see email_index()). One statement is atomic, as SQLite runs it
 * under the write lock; where the index exists it refuses the same rows. */
const char *const users_sqlite_stmts[ST_COUNT] = {
	[ST_INSERT] = "INSERT INTO users (name, email) SELECT ?1, ?2"
		      " WHERE ?2 IS NULL"
		      " OR NOT EXISTS (SELECT 1 FROM users WHERE email = ?2 COLLATE NOCASE)",
	[ST_GET] = "SELECT id, name, email FROM users WHERE id = ?1",
	[ST_LIST] = "SELECT id, name, email FROM users ORDER BY id LIMIT ?1 OFFSET ?2",
	[ST_UPDATE] = "UPDATE users SET name = ?2, email = ?3 WHERE id = ?1"
		      " AND (?3 IS NULL OR NOT EXISTS (SELECT 1 FROM users"
		      " WHERE email = ?3 COLLATE NOCASE AND id <> ?1))",
	[ST_DELETE] = "DELETE FROM users WHERE id = ?1",
};

const size_t users_sqlite_stmt_count = ST_COUNT;

/* The table is made by the store's migrations (store/migrate.h). Files
 * made before emails were compared without case have `email TEXT UNIQUE`;
 * the unique index below makes that constraint redundant. */
static const char unique_index_sql[] =
	"CREATE UNIQUE INDEX IF NOT EXISTS users_email_nocase ON users (email COLLATE NOCASE)";
/* Only for speed, while the unique index cannot be made. */
static const char lookup_index_sql[] =
	"CREATE INDEX IF NOT EXISTS users_email_nocase_lookup ON users (email COLLATE NOCASE)";
static const char drop_lookup_index_sql[] = "DROP INDEX IF EXISTS users_email_nocase_lookup";
static const char collisions_sql[] =
	"SELECT count(*) FROM (SELECT 1 FROM users WHERE email IS NOT NULL"
	" GROUP BY email COLLATE NOCASE HAVING count(*) > 1)";

struct sqlite_repo {
	struct users_repo base;
	struct sqlite_pool *pool; /* the store's, borrowed */
	size_t first;		  /* of its statements in the pool's */
};

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static enum mn_err row_to_user(sqlite3_stmt *st, void *out)
{
	return user_set(out, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
			(const char *)sqlite3_column_text(st, 2));
}

/* A users write for sqlite_pool_write(): one statement, 'st', over the
 * fields below. */
struct user_write {
	struct sqlite_write base;
	size_t first, st; /* the repository's first statement; first + enum stmt */
	int64_t id;
	const char *name, *email;
	int64_t rowid; /* of an insert */
};

static int run_user_write(struct sqlite_conn *c, struct sqlite_write *w)
{
	struct user_write *u = (struct user_write *)w;
	sqlite3_stmt *st = c->stmt[u->st];
	int rc;

	switch (u->st - u->first) {
	case ST_INSERT:
		sqlite3_bind_text(st, 1, u->name, -1, SQLITE_STATIC);
		bind_text_or_null(st, 2, u->email);
		break;
	case ST_UPDATE:
		sqlite3_bind_int64(st, 1, u->id);
		sqlite3_bind_text(st, 2, u->name, -1, SQLITE_STATIC);
		bind_text_or_null(st, 3, u->email);
		break;
	default:
		sqlite3_bind_int64(st, 1, u->id);
		break;
	}
	rc = sqlite3_step(st);
	u->rowid = sqlite3_last_insert_rowid(c->db);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static enum mn_err sq_create(struct users_repo *r, const char *name, const char *email,
			     struct user *out, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct user_write u = {
		.base = {.run = run_user_write, .what = "users insert"},
		.first = s->first,
		.st = s->first + ST_INSERT,
		.name = name,
		.email = email,
	};
	enum mn_err err = sqlite_pool_write(s->pool, &u.base, errbuf, errlen);

	if (err == MN_OK && u.base.changes == 0)
		return MN_CONFLICT; /* the email is taken */
	if (err == MN_OK)
		err = user_set(out, u.rowid, name, email);
	return err;
}

static enum mn_err sq_get(struct users_repo *r, int64_t id, struct user *out)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;

	return sqlite_pool_get(s->pool, s->first + ST_GET, id, "users select", row_to_user, out);
}

static void users_release(void *users, size_t n)
{
	user_list_free(users, n);
}

static enum mn_err sq_list(struct users_repo *r, size_t limit, size_t offset, struct user **out,
			   size_t *n)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;

	return sqlite_pool_page(s->pool, s->first + ST_LIST, limit, offset, "users list",
				sizeof(**out), row_to_user, users_release, (void **)out, n);
}

/* After an update that changed no row: MN_CONFLICT when user 'id' exists
 * (its new email is taken), MN_NOT_FOUND when it does not. */
static enum mn_err update_miss(struct sqlite_conn *c, size_t first, int64_t id)
{
	sqlite3_stmt *st = c->stmt[first + ST_GET];
	enum mn_err err;
	int rc;

	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		err = MN_CONFLICT;
	else if (rc == SQLITE_DONE)
		err = MN_NOT_FOUND;
	else
		err = sqlite_pool_read_error(c, rc, "users select");
	sqlite3_reset(st);
	return err;
}

static enum mn_err sq_update(struct users_repo *r, int64_t id, const char *name, const char *email,
			     struct user *out, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct user_write u = {
		.base = {.run = run_user_write, .what = "users update"},
		.first = s->first,
		.st = s->first + ST_UPDATE,
		.id = id,
		.name = name,
		.email = email,
	};
	enum mn_err err = sqlite_pool_write(s->pool, &u.base, errbuf, errlen);
	struct sqlite_conn *c;

	if (err != MN_OK)
		return err;
	if (u.base.changes > 0)
		return user_set(out, id, name, email);
	err = sqlite_pool_take(s->pool, &c, errbuf, errlen);
	if (err != MN_OK)
		return err;
	err = update_miss(c, s->first, id);
	sqlite_pool_release(s->pool, c);
	return err;
}

static enum mn_err sq_remove(struct users_repo *r, int64_t id, char *errbuf, size_t errlen)
{
	struct sqlite_repo *s = (struct sqlite_repo *)r;
	struct user_write u = {
		.base = {.run = run_user_write, .what = "users delete"},
		.first = s->first,
		.st = s->first + ST_DELETE,
		.id = id,
	};
	enum mn_err err = sqlite_pool_write(s->pool, &u.base, errbuf, errlen);

	if (err == MN_OK && u.base.changes == 0)
		err = MN_NOT_FOUND;
	return err;
}

static void sq_destroy(struct users_repo *r)
{
	free(r);
}

static const struct users_repo_ops sqlite_ops = {
	sq_create, sq_get, sq_list, sq_update, sq_remove, sq_destroy,
};

/* The unique index on email COLLATE NOCASE. Rows written before emails
 * were compared without case may collide; the node still starts with them:
 * they stay as they are, the log says how many addresses collide, and a
 * plain index keeps the writes' own check fast until they are fixed and
 * the next start makes the unique one. */
static void email_index(struct sqlite_pool *pool, const char *path)
{
	struct sqlite_conn *c = sqlite_pool_acquire(pool);
	sqlite3_stmt *st = NULL;
	long long n = -1;
	int rc;

	rc = sqlite3_exec(c->db, unique_index_sql, NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		/* Only speed is lost when this fails: the next start retries. */
		sqlite3_exec(c->db, drop_lookup_index_sql, NULL, NULL, NULL);
		goto out_release;
	}
	if (rc != SQLITE_CONSTRAINT) {
		log_warn("store",
			 "cannot create the unique email index in '%s': %s; new users "
			 "and updates are still refused an email that is taken",
			 path, sqlite3_errmsg(c->db));
		goto out_lookup;
	}
	if (sqlite3_prepare_v2(c->db, collisions_sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	log_warn("store",
		 "'%s' has users whose emails differ only in case (%lld addresses, rows from "
		 "before that rule): they are left as they are, new users and updates are "
		 "refused an email that is taken, and the unique index is made at the first "
		 "start after they are fixed",
		 path, n);
out_lookup:
	sqlite3_exec(c->db, lookup_index_sql, NULL, NULL, NULL);
out_release:
	sqlite_pool_release(pool, c);
}

struct users_repo *users_repo_sqlite_new(struct sqlite_pool *pool, size_t first, const char *path)
{
	struct sqlite_repo *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base.ops = &sqlite_ops;
	s->pool = pool;
	s->first = first;
	email_index(s->pool, path);
	return &s->base;
}
