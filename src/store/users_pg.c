/* PostgreSQL users repository: its statements over the shared connection
 * pool (store/pg_pool.h), which holds the connections, the error mapping
 * and the schema (store/migrate.h: ids from an identity column, emails
 * unique without regard to ASCII case by a unique index, so a taken email
 * is refused by the database itself, across every node, with 23505). */
#include <stdlib.h>

#include "store/drivers.h"
#include "store/pg_pool.h"

static const struct pg_stmt st_insert = {
	"users_insert", "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id", 2};
static const struct pg_stmt st_get = {"users_get",
				      "SELECT id, name, email FROM users WHERE id = $1", 1};
static const struct pg_stmt st_list = {
	"users_list", "SELECT id, name, email FROM users ORDER BY id LIMIT $1 OFFSET $2", 2};
static const struct pg_stmt st_update = {"users_update",
					 "UPDATE users SET name = $2, email = $3 WHERE id = $1", 3};
static const struct pg_stmt st_delete = {"users_delete", "DELETE FROM users WHERE id = $1", 1};

struct pg_repo {
	struct users_repo base;
	struct pg_repo_base pg;
};

static enum mn_err row_to_user(const PGresult *r, int row, void *out)
{
	return user_set(out, pg_cell_int(r, row, 0), PQgetvalue(r, row, 1),
			PQgetisnull(r, row, 2) ? NULL : PQgetvalue(r, row, 2));
}

static void users_release(void *users, size_t n)
{
	user_list_free(users, n);
}

static enum mn_err pg_create(struct users_repo *repo, const char *name, const char *email,
			     struct user *out, char *errbuf, size_t errlen)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	const char *params[] = {name, email};
	PGresult *r;
	enum mn_err err = pg_pool_exec(s->pg.pool, &st_insert, params, s->pg.writes,
				       "users insert", &r, errbuf, errlen);

	if (err == MN_OK)
		err = PQntuples(r) == 1 ? user_set(out, pg_cell_int(r, 0, 0), name, email)
					: MN_INTERNAL;
	PQclear(r);
	return err;
}

static enum mn_err pg_get(struct users_repo *repo, int64_t id, struct user *out)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	return pg_pool_get(s->pg.pool, &st_get, id, "users select", row_to_user, out);
}

static enum mn_err pg_list(struct users_repo *repo, size_t limit, size_t offset, struct user **out,
			   size_t *n)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	return pg_pool_page(s->pg.pool, &st_list, limit, offset, "users list", sizeof(**out),
			    row_to_user, users_release, (void **)out, n);
}

static enum mn_err pg_update(struct users_repo *repo, int64_t id, const char *name,
			     const char *email, struct user *out, char *errbuf, size_t errlen)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct pg_num n;
	const char *params[] = {pg_num(&n, id), name, email};
	PGresult *r;
	enum mn_err err = pg_pool_exec(s->pg.pool, &st_update, params, s->pg.writes,
				       "users update", &r, errbuf, errlen);

	if (err == MN_OK)
		err = atoi(PQcmdTuples(r)) == 0 ? MN_NOT_FOUND : user_set(out, id, name, email);
	PQclear(r);
	return err;
}

static enum mn_err pg_remove(struct users_repo *repo, int64_t id, char *errbuf, size_t errlen)
{
	struct pg_repo *s = (struct pg_repo *)repo;
	struct pg_num n;
	const char *params[] = {pg_num(&n, id)};
	PGresult *r;
	enum mn_err err = pg_pool_exec(s->pg.pool, &st_delete, params, s->pg.writes,
				       "users delete", &r, errbuf, errlen);

	if (err == MN_OK && atoi(PQcmdTuples(r)) == 0)
		err = MN_NOT_FOUND;
	PQclear(r);
	return err;
}

static void pg_destroy(struct users_repo *repo)
{
	struct pg_repo *s = (struct pg_repo *)repo;

	pg_repo_base_release(&s->pg);
	free(s);
}

static const struct users_repo_ops pg_ops = {
	pg_create, pg_get, pg_list, pg_update, pg_remove, pg_destroy,
};

struct users_repo *users_repo_pg_new(struct pg_pool *pool, struct pg_writes *writes)
{
	struct pg_repo *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base.ops = &pg_ops;
	pg_repo_base_init(&s->pg, pool, writes);
	return &s->base;
}
