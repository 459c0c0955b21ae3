/* The users repository: where users live. Three implementations behind one
 * interface, opened by the store (store/store.h, whose drivers are in
 * store/drivers.h): SQLite (the default, WAL mode), PostgreSQL and memory.
 * The store owns the database (its pool, readiness, write state); a
 * repository is its users' part. All calls are safe from many threads at
 * once. */
#ifndef MESHNODE_USERS_USERS_REPO_H
#define MESHNODE_USERS_USERS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
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
	void (*destroy)(struct users_repo *r);
};

/* Implementations embed this as their first member. */
struct users_repo {
	const struct users_repo_ops *ops;
};

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

/* Frees the repository (not the store's database); NULL is a no-op. */
void users_repo_destroy(struct users_repo *r);

#endif
