#include "users/users_repo.h"

enum mn_err users_repo_create_user(struct users_repo *r, const char *name, const char *email,
				   struct user *out, char *err, size_t errlen)
{
	return r->ops->create(r, name, email, out, err, errlen);
}

enum mn_err users_repo_get(struct users_repo *r, int64_t id, struct user *out)
{
	return r->ops->get(r, id, out);
}

enum mn_err users_repo_list(struct users_repo *r, size_t limit, size_t offset, struct user **out,
			    size_t *n)
{
	return r->ops->list(r, limit, offset, out, n);
}

enum mn_err users_repo_update(struct users_repo *r, int64_t id, const char *name, const char *email,
			      struct user *out, char *err, size_t errlen)
{
	return r->ops->update(r, id, name, email, out, err, errlen);
}

enum mn_err users_repo_delete(struct users_repo *r, int64_t id, char *err, size_t errlen)
{
	return r->ops->remove(r, id, err, errlen);
}

void users_repo_destroy(struct users_repo *r)
{
	if (r)
		r->ops->destroy(r);
}
