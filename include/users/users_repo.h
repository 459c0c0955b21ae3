/* The users repository: where users live. Three implementations behind one
 * interface: SQLite (the default, WAL mode), PostgreSQL and memory. All
 * calls are safe from many threads at once. */
#ifndef MESHNODE_USERS_USERS_REPO_H
#define MESHNODE_USERS_USERS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "store/store_fault.h"
#include "users/user.h"

struct users_repo;

/* What an implementation provides; callers use the functions below. */
struct users_repo_ops {
	enum mn_err (*create)(struct users_repo *r, const char *name, const char *email,
			      struct user *out, char *err, size_t errlen);
	enum mn_err (*get)(struct users_repo *r, int64_t id, struct user *out);
	enum mn_err (*list)(struct users_repo *r, size_t limit, size_t offset, struct user **out,
			    size_t *n);
	enum mn_err (*update)(struct users_repo *r, int64_t id, const char *name, const char *email,
			      struct user *out, char *err, size_t errlen);
	enum mn_err (*remove)(struct users_repo *r, int64_t id, char *err, size_t errlen);
	enum mn_err (*ping)(struct users_repo *r, char *err, size_t errlen);
	void (*health)(struct users_repo *r, struct store_health *out);
	void (*destroy)(struct users_repo *r);
};

/* Implementations embed this as their first member. */
struct users_repo {
	const struct users_repo_ops *ops;
};

/* Opens (creating when missing, with parent directories) a SQLite database:
 * WAL journal, synchronous=NORMAL, busy_timeout 5 s, so several processes
 * may share the file; file modes and write failures as store/sqlite_pool.h
 * says. Emails are unique without regard to ASCII case: a unique index on
 * email COLLATE NOCASE is made at open, and when rows already in the file
 * collide that way the node still opens it (saying so in the log) and the
 * writes themselves refuse any new collision. NULL on failure with the
 * reason in err. */
struct users_repo *users_repo_sqlite_open(const char *path, char *err, size_t errlen);
/* The same with how long a request may wait in the store (NULL:
 * STORE_LIMITS_DEFAULT; sqlite_pool.h). */
struct users_repo *users_repo_sqlite_open_with(const char *path, const struct store_limits *limits,
					   char *err, size_t errlen);

/* A new in-memory repository (database.driver = "memory"); NULL when out
 * of memory. */
struct users_repo *users_repo_memory_create(void);

struct pg_pool;

/* A repository over a PostgreSQL pool (database.driver = "postgres"; see
 * store/pg_pool.h), which it keeps a reference to: the pool's migrations
 * made its table and the unique index on the email folded to ASCII lower
 * case. A store that cannot answer gives MN_UNAVAILABLE ("the database is
 * unavailable"). NULL when out of memory. */
struct users_repo *users_repo_pg_open(struct pg_pool *pool);

/* Stores a new user; out receives it with its id (caller releases).
 * MN_CONFLICT when another user has the email, compared without regard to
 * ASCII case (NULL emails never conflict). The writes (create, update,
 * delete) answer MN_UNAVAILABLE when the store cannot write now, with err
 * (optional) saying why in words for the client ("the store cannot write:
 * disk full"). */
enum mn_err users_repo_create_user(struct users_repo *r, const char *name, const char *email,
				   struct user *out, char *err, size_t errlen);

/* MN_NOT_FOUND when no user has this id. */
enum mn_err users_repo_get(struct users_repo *r, int64_t id, struct user *out);

/* Users ordered by id; *out is a new array of *n users (free with
 * user_list_free(), NULL when *n is 0). */
enum mn_err users_repo_list(struct users_repo *r, size_t limit, size_t offset, struct user **out,
			    size_t *n);

/* Replaces name and email; MN_NOT_FOUND, MN_CONFLICT (as for create) or
 * MN_UNAVAILABLE. */
enum mn_err users_repo_update(struct users_repo *r, int64_t id, const char *name, const char *email,
			      struct user *out, char *err, size_t errlen);

/* MN_NOT_FOUND when no user has this id, or MN_UNAVAILABLE. */
enum mn_err users_repo_delete(struct users_repo *r, int64_t id, char *err, size_t errlen);

/* Readiness: MN_OK when the store answers and can write; MN_UNAVAILABLE
 * with err (optional) saying why ("cannot write: disk full"). */
enum mn_err users_repo_ping(struct users_repo *r, char *err, size_t errlen);

/* The write state (what the memory store reports: no fault, no failure). */
void users_repo_health(struct users_repo *r, struct store_health *out);

/* Closes and frees; NULL is a no-op. */
void users_repo_destroy(struct users_repo *r);

#endif
